//! TestCluster under load: 10,000 ConfigMaps loaded, then get, list, watch and apply keep
//! working. Prints the resident memory and the request rates it measured.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::{StreamExt, TryStreamExt};
use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, WatchEvent, WatchParams},
};
use serde_json::json;

const OBJECTS: usize = 10_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn config_map(i: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i:05}"), "labels": {"shard": (i % 10).to_string()}},
        "data": {"index": i.to_string(), "payload": "x".repeat(200)}})
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let before = rss_kib();
    let cluster = rt
        .block_on(TestCluster::start(TestClusterOptions::default()))
        .expect("start");
    let client = rt.block_on(cluster.client()).expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");

    // Load 10,000 objects with server-side apply, 16 requests in flight.
    let started = Instant::now();
    rt.block_on(async {
        futures::stream::iter(0..OBJECTS)
            .map(|i| {
                let api = api.clone();
                async move {
                    api.patch(
                        &format!("cm-{i:05}"),
                        &PatchParams::apply("bench"),
                        &Patch::Apply(config_map(i)),
                    )
                    .await
                    .map(|_| ())
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
    })
    .expect("load");
    let load = started.elapsed();
    let after = rss_kib();
    println!(
        "testcluster: loaded {OBJECTS} ConfigMaps by apply in {:.2?} ({:.0} applies/s); RSS {} MiB -> {} MiB (+{} MiB)",
        load,
        OBJECTS as f64 / load.as_secs_f64(),
        before / 1024,
        after / 1024,
        after.saturating_sub(before) / 1024
    );

    // A full list, a paged list, a label-selected list and a watch from 0 all still work.
    let started = Instant::now();
    let all = rt.block_on(api.list(&ListParams::default())).expect("list");
    println!(
        "testcluster: list of {} objects in {:.2?}",
        all.items.len(),
        started.elapsed()
    );
    assert_eq!(all.items.len(), OBJECTS);
    let shard = rt
        .block_on(api.list(&ListParams::default().labels("shard=3")))
        .expect("list");
    assert_eq!(shard.items.len(), OBJECTS / 10);
    let started = Instant::now();
    let initial = rt.block_on(async {
        let mut s = api
            .watch(&WatchParams::default().timeout(30), "0")
            .await
            .expect("watch")
            .boxed();
        let mut n = 0;
        while n < OBJECTS {
            match tokio::time::timeout(Duration::from_secs(30), s.try_next()).await {
                Ok(Ok(Some(WatchEvent::Added(_)))) => n += 1,
                Ok(Ok(Some(_))) => {}
                _ => break,
            }
        }
        n
    });
    println!(
        "testcluster: watch from 0 delivered {initial} ADDED events in {:.2?}",
        started.elapsed()
    );
    assert_eq!(initial, OBJECTS);

    let mut group = c.benchmark_group("testcluster_10k");
    group.sample_size(20);
    group.bench_function("get", |b| {
        b.iter(|| rt.block_on(api.get("cm-04242")).expect("get"))
    });
    group.bench_function("list_page_500", |b| {
        b.iter(|| {
            rt.block_on(api.list(&ListParams::default().limit(500)))
                .expect("list")
        })
    });
    let mut n = 0u64;
    group.bench_function("apply_change", |b| {
        b.iter(|| {
            n += 1;
            let mut cm = config_map(7);
            cm["data"]["index"] = json!(n.to_string());
            rt.block_on(api.patch("cm-00007", &PatchParams::apply("bench"), &Patch::Apply(cm)))
                .expect("apply")
        })
    });
    group.finish();
    // Request rate over a fixed window of gets.
    let started = Instant::now();
    let gets = 2_000;
    rt.block_on(async {
        futures::stream::iter(0..gets)
            .map(|i| {
                let api = api.clone();
                async move { api.get(&format!("cm-{:05}", i * 5)).await.map(|_| ()) }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
    })
    .expect("gets");
    println!(
        "testcluster: {gets} gets in {:.2?} ({:.0} requests/s) with {OBJECTS} objects stored; final RSS {} MiB",
        started.elapsed(),
        gets as f64 / started.elapsed().as_secs_f64(),
        rss_kib() / 1024
    );
    drop(cluster);
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! gitops-events: dispatch throughput to local HTTP sinks with 10 providers, peak memory, and
//! memory while one provider hangs.
//!
//! Every sink is a real HTTP server on 127.0.0.1 (axum) behind a `generic` provider, so each
//! notification is serialised, POSTed and answered. Run with
//! `cargo bench -p gitops-benches --bench events`.

#![allow(clippy::unwrap_used, missing_docs)] // a bench fails loudly on purpose

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gitops_events::{
    Alert, Dispatcher, Event, EventSource, ObjectReference, ProviderConfig, ProviderOptions,
    ProviderType, RetryPolicy, Severity, build_notifier,
};

const PROVIDERS: usize = 10;
const BATCH: u64 = 1_000;

/// Reads a `/proc/self/status` field in KiB (Linux only; 0 elsewhere).
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A sink that counts requests; `hang` makes it never answer.
async fn sink(counter: Arc<AtomicU64>, hang: bool) -> String {
    let app = Router::new().route(
        "/hook",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                if hang {
                    std::future::pending::<()>().await;
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

fn event(i: u64) -> Event {
    let mut o = ObjectReference::new("Kustomization", "flux-system", format!("app-{}", i % 50));
    o.api_version = "kustomize.toolkit.fluxcd.io/v1".into();
    Event::new(
        o,
        Severity::Info,
        "ReconciliationSucceeded",
        format!("applied revision {i}"),
    )
    .with_reporting_controller("kustomize-controller")
    .with_revision(format!("main@sha1:{i:040x}"))
}

fn all() -> Vec<EventSource> {
    vec![EventSource {
        kind: "Kustomization".into(),
        name: "*".into(),
        ..Default::default()
    }]
}

async fn setup(hung: usize, queue: usize) -> (Dispatcher, Vec<Arc<AtomicU64>>) {
    let mut builder = Dispatcher::builder().rate_limit(Duration::ZERO);
    let mut counters = Vec::new();
    for p in 0..PROVIDERS {
        let counter = Arc::new(AtomicU64::new(0));
        let url = sink(counter.clone(), p < hung).await;
        counters.push(counter);
        let name = format!("sink-{p}");
        let notifier = build_notifier(&ProviderConfig::new(ProviderType::Generic, url)).unwrap();
        let options = ProviderOptions {
            timeout: Duration::from_secs(3600),
            retry: RetryPolicy::none(),
            queue_capacity: queue,
        };
        builder = builder
            .provider(name.clone(), notifier, options)
            .alert(Alert::new("flux-system", &name, &name, all()));
    }
    (builder.build(), counters)
}

fn dispatch_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (dispatcher, counters) = rt.block_on(setup(0, 100_000));
    let rss_before = proc_status_kib("VmRSS:");
    let mut next = 0u64;
    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Elements(BATCH * PROVIDERS as u64));
    group.sample_size(10);
    group.bench_function("dispatch_1000_events_to_10_http_sinks", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target: u64 = counters
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .sum::<u64>()
                    + BATCH * PROVIDERS as u64;
                for _ in 0..BATCH {
                    let report = dispatcher.dispatch(&event(next));
                    assert_eq!(report.queued(), PROVIDERS);
                    next += 1;
                }
                rt.block_on(async {
                    while counters
                        .iter()
                        .map(|c| c.load(Ordering::Relaxed))
                        .sum::<u64>()
                        < target
                    {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                });
            }
            start.elapsed()
        })
    });
    group.finish();
    eprintln!(
        "events: {next} events x {PROVIDERS} providers delivered; RSS {} KiB -> {} KiB, peak RSS (VmHWM) {} KiB",
        rss_before,
        proc_status_kib("VmRSS:"),
        proc_status_kib("VmHWM:")
    );
}

fn hung_provider_memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let queue = 1_024;
    let (dispatcher, counters) = rt.block_on(setup(1, queue));
    let rss_before = proc_status_kib("VmRSS:");
    let mut next = 0u64;
    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Elements(BATCH * PROVIDERS as u64));
    group.sample_size(10);
    group.bench_function("dispatch_1000_events_one_of_10_sinks_hung", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target: u64 = counters[1..]
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .sum::<u64>()
                    + BATCH * (PROVIDERS as u64 - 1);
                for _ in 0..BATCH {
                    dispatcher.dispatch(&event(next));
                    next += 1;
                }
                rt.block_on(async {
                    while counters[1..]
                        .iter()
                        .map(|c| c.load(Ordering::Relaxed))
                        .sum::<u64>()
                        < target
                    {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                });
            }
            start.elapsed()
        })
    });
    group.finish();
    let hung = dispatcher.stats("sink-0").unwrap();
    eprintln!(
        "events (one hung sink): {next} events dispatched; hung provider queued {} (capacity {queue} + 1 in flight), dropped {}; RSS {} KiB -> {} KiB, peak RSS (VmHWM) {} KiB",
        hung.queued,
        hung.dropped,
        rss_before,
        proc_status_kib("VmRSS:"),
        proc_status_kib("VmHWM:")
    );
    assert!(
        hung.queued <= queue as u64 + 1,
        "the hung provider's queue stayed bounded"
    );
}

criterion_group!(benches, dispatch_throughput, hung_provider_memory);
criterion_main!(benches);

//! Server-side apply of a 1,000-object set on the in-process TestCluster: first apply, no-op
//! re-apply (with the manager's record, and with a fresh manager that dry-runs every object as
//! Flux does), and a one-object change. Wall time by criterion; API requests from the
//! TestCluster's request log, printed once before the timings.

use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gitops_apply::{
    ApplyOptions, Owner, ResourceManager, kube::core::DynamicObject, yaml::read_objects,
};
use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
use tokio::runtime::Runtime;

const NAMESPACES: usize = 10;
const PER_KIND: usize = 33;

/// 10 Namespaces and, in each, 33 ConfigMaps, 33 ServiceAccounts and 33 Services: 1,000 objects.
fn object_set(changed: bool) -> Vec<DynamicObject> {
    let mut yaml = String::new();
    for n in 0..NAMESPACES {
        let ns = format!("team-{n:02}");
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
        ));
        for i in 0..PER_KIND {
            let value = if changed && n == 0 && i == 0 {
                "changed"
            } else {
                "v1"
            };
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i:03}\n  namespace: {ns}\n  labels:\n    app: app-{i:03}\ndata:\n  setting: \"{value}\"\n  index: \"{i}\"\n\
                 ---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app-{i:03}\n  namespace: {ns}\n\
                 ---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i:03}\n  namespace: {ns}\nspec:\n  selector:\n    app: app-{i:03}\n  ports:\n  - name: http\n    port: 80\n    protocol: TCP\n    targetPort: 8080\n"
            ));
        }
    }
    let objects = read_objects(&yaml, "bench").expect("generated YAML parses");
    assert_eq!(objects.len(), NAMESPACES * (1 + 3 * PER_KIND));
    objects
}

fn owner() -> Owner {
    Owner::new(
        "gitops-bench",
        "kustomize.toolkit.fluxcd.io",
        "bench",
        "flux-system",
    )
}

struct Applied {
    cluster: TestCluster,
    manager: ResourceManager,
}

async fn fresh() -> Applied {
    let cluster = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("test cluster starts");
    let client = cluster.client().await.expect("client");
    Applied {
        manager: ResourceManager::new(client, owner()),
        cluster,
    }
}

async fn applied(set: &[DynamicObject]) -> Applied {
    let state = fresh().await;
    state
        .manager
        .apply_all_staged(set, &ApplyOptions::default())
        .await
        .expect("first apply");
    state
}

/// Runs each scenario once and prints wall time and the API requests it made.
fn report(rt: &Runtime, set: &[DynamicObject], changed: &[DynamicObject]) {
    let n = set.len();
    let line = |name: &str, state: &Applied, started: Instant, outcome: String| {
        let requests = state.cluster.requests();
        let dry = requests
            .iter()
            .filter(|r| r.query.contains("dryRun"))
            .count();
        println!(
            "apply/{name}: {n} objects, {:>7.1} ms, {:>5} API requests ({:.1}% of N), {dry} dry-runs; {outcome}",
            started.elapsed().as_secs_f64() * 1e3,
            requests.len(),
            requests.len() as f64 * 100.0 / n as f64,
        );
    };
    rt.block_on(async {
        let state = fresh().await;
        state.cluster.clear_requests();
        let started = Instant::now();
        let set_out = state
            .manager
            .apply_all_staged(set, &ApplyOptions::default())
            .await
            .expect("apply");
        line(
            "first",
            &state,
            started,
            format!("{} created", set_out.count(gitops_apply::Action::Created)),
        );

        state.cluster.clear_requests();
        let started = Instant::now();
        let out = state
            .manager
            .apply_all_staged(set, &ApplyOptions::default())
            .await
            .expect("apply");
        line(
            "noop",
            &state,
            started,
            format!("{} unchanged", out.count(gitops_apply::Action::Unchanged)),
        );

        let flux_like = Applied {
            manager: ResourceManager::new(state.cluster.client().await.expect("client"), owner()),
            cluster: state.cluster,
        };
        flux_like.cluster.clear_requests();
        let started = Instant::now();
        let out = flux_like
            .manager
            .apply_all_staged(set, &ApplyOptions::default())
            .await
            .expect("apply");
        line(
            "noop_per_object_dry_run",
            &flux_like,
            started,
            format!("{} unchanged", out.count(gitops_apply::Action::Unchanged)),
        );

        let state = Applied {
            manager: ResourceManager::new(
                flux_like.cluster.client().await.expect("client"),
                owner(),
            ),
            cluster: flux_like.cluster,
        };
        state
            .manager
            .apply_all_staged(set, &ApplyOptions::default())
            .await
            .expect("warm");
        state.cluster.clear_requests();
        let started = Instant::now();
        let out = state
            .manager
            .apply_all_staged(changed, &ApplyOptions::default())
            .await
            .expect("apply");
        line(
            "one_change",
            &state,
            started,
            format!("{} configured", out.count(gitops_apply::Action::Configured)),
        );
    });
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let set = object_set(false);
    let changed = object_set(true);
    report(&rt, &set, &changed);

    let mut group = c.benchmark_group("apply_1000");
    group.sample_size(10);
    group.bench_function("first", |b| {
        b.iter_batched(
            || rt.block_on(fresh()),
            |state| {
                rt.block_on(
                    state
                        .manager
                        .apply_all_staged(&set, &ApplyOptions::default()),
                )
                .expect("apply");
                state
            },
            BatchSize::PerIteration,
        )
    });
    let warm = rt.block_on(applied(&set));
    group.bench_function("noop", |b| {
        b.iter(|| {
            rt.block_on(
                warm.manager
                    .apply_all_staged(&set, &ApplyOptions::default()),
            )
            .expect("apply")
        })
    });
    group.bench_function("noop_per_object_dry_run", |b| {
        b.iter(|| {
            warm.manager.forget_applied_state();
            rt.block_on(
                warm.manager
                    .apply_all_staged(&set, &ApplyOptions::default()),
            )
            .expect("apply")
        })
    });
    // Each iteration applies the other version of the set: exactly one object changes.
    let flip = std::cell::Cell::new(false);
    group.bench_function("one_change", |b| {
        b.iter(|| {
            flip.set(!flip.get());
            let next = if flip.get() { &changed } else { &set };
            rt.block_on(
                warm.manager
                    .apply_all_staged(next, &ApplyOptions::default()),
            )
            .expect("apply")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

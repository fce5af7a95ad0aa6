//! gitops-manager under load: its resident memory idle, and while it reconciles N Kustomizations
//! of M objects each (default 100 × 20) from one GitRepository on TestCluster, with the wall
//! time, the manager's own CPU time and the throughput. Not a criterion bench: the figures are
//! those of a separate process (the release `gitops-manager` binary), read from `/proc`.
//!
//! Run with `scripts/bench-manager` (it builds the binaries first), or:
//!   GITOPS_MANAGER=target/release/gitops-manager cargo bench -p gitops-benches --bench manager
//! Knobs: BENCH_KUSTOMIZATIONS (100), BENCH_OBJECTS (20, at least 8), BENCH_CONCURRENT (20,
//! Flux's benchmark setting for kustomize-controller), BENCH_ROUNDS (1; later rounds request a
//! reconcile of every Kustomization with nothing changed).
//!
//! Flux's published figures (fluxcd/flux-benchmark, Flux v2.4, kustomize-controller with 2 CPU
//! and `--concurrent 20`): 100 Kustomizations in 27 s at 32 MiB, 1,000 in 4m15s at 175 MiB
//! (source-controller 38 MiB and 67 MiB beside it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitops_apply::{ApplyOptions, Owner, ResourceManager};
use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
use gitops_testkit::fixture::GitFixture;
use gitops_testkit::servers::GitHttpServer;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::json;

const NS: &str = "flux-system";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One process's figures from /proc.
struct Proc {
    pid: u32,
    ticks_per_second: f64,
}

impl Proc {
    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") as f64 / 1024.0
    }

    fn peak_rss_mib(&self) -> f64 {
        self.status_kib("VmHWM:") as f64 / 1024.0
    }

    /// User + system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at ") ".
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
            .sum();
        ticks / self.ticks_per_second
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The objects of one application: a Namespace, then ConfigMaps, Secrets, ServiceAccounts, a
/// Role and RoleBinding, Services and a Deployment, `count` in all.
fn app_objects(app: usize, count: usize) -> String {
    let ns = format!("app-{app:03}");
    let mut docs = vec![format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
    )];
    docs.push(format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      serviceAccountName: web\n      containers:\n      - name: web\n        image: ghcr.io/stefanprodan/podinfo:6.7.1\n        envFrom:\n        - configMapRef:\n            name: settings-0\n        ports:\n        - containerPort: 9898\n"
    ));
    docs.push(format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 9898\n"
    ));
    docs.push(format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n  namespace: {ns}\n"
    ));
    docs.push(format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: web\n  namespace: {ns}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, watch]\n"
    ));
    docs.push(format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: web\n  namespace: {ns}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: web\nsubjects:\n- kind: ServiceAccount\n  name: web\n  namespace: {ns}\n"
    ));
    let mut i = 0;
    while docs.len() < count {
        docs.push(if i % 3 == 2 {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token-{i}\n  namespace: {ns}\nstringData:\n  token: s3cr3t-{app}-{i}\n"
            )
        } else {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\n  namespace: {ns}\ndata:\n  LOG_LEVEL: info\n  INDEX: \"{i}\"\n  PAYLOAD: {}\n",
                "x".repeat(256)
            )
        });
        i += 1;
    }
    docs.join("---\n")
}

fn dynamic_api(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn ready_at(object: &DynamicObject, revision_suffix: &str, after: Option<&str>) -> bool {
    let status = &object.data["status"];
    let ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let revision_ok = status["lastAppliedRevision"]
        .as_str()
        .is_some_and(|r| r.ends_with(revision_suffix));
    let handled = after.is_none_or(|a| status["lastHandledReconcileAt"].as_str() == Some(a));
    ready && revision_ok && handled
}

struct Manager(Child);

impl Drop for Manager {
    /// SIGTERM first, so the manager shuts down gracefully and removes its temporary artifact
    /// store and extractions (a killed one leaves them behind); SIGKILL after 10 s.
    fn drop(&mut self) {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if terminated {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(self.0.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn manager_binary() -> PathBuf {
    std::env::var_os("GITOPS_MANAGER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/gitops-manager")
        })
}

fn main() {
    // `cargo bench` passes --bench; there is nothing to filter.
    gitops_testkit::cluster::install_crypto_provider();
    let kustomizations = env_usize("BENCH_KUSTOMIZATIONS", 100);
    let objects = env_usize("BENCH_OBJECTS", 20).max(8);
    let concurrent = env_usize("BENCH_CONCURRENT", 20);
    let rounds = env_usize("BENCH_ROUNDS", 1).max(1);
    let binary = manager_binary();
    assert!(
        binary.is_file(),
        "{} not found: build it with cargo build --release -p gitops-examples --bin gitops-manager, or set GITOPS_MANAGER",
        binary.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(binary, kustomizations, objects, concurrent, rounds));
}

async fn run(
    binary: PathBuf,
    kustomizations: usize,
    objects: usize,
    concurrent: usize,
    rounds: usize,
) {
    let cluster = TestCluster::start(TestClusterOptions {
        simulate_controllers: true,
        rollout_delay: Duration::from_millis(100),
        ..TestClusterOptions::default()
    })
    .await
    .expect("cluster");
    let client = cluster.client().await.expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).expect("kubeconfig");

    // The CRDs, as committed under examples/deploy/crds/.
    let crd_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy/crds");
    let mut crds = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&crd_dir)
        .expect("examples/deploy/crds")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("crd file");
        crds.extend(gitops_apply::yaml::read_objects(&text, &f.to_string_lossy()).expect("crds"));
    }
    crds.extend(
        gitops_apply::yaml::read_objects(
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n"),
            "namespace",
        )
        .expect("namespace"),
    );
    let installer = ResourceManager::new(
        client.clone(),
        Owner::new("bench", "bench.gitops", "crds", NS),
    );
    installer
        .apply_all_staged(&crds, &ApplyOptions::default())
        .await
        .expect("CRDs installed");

    // The repository: apps/app-NNN/objects.yaml, plain directories (Flux's generated
    // kustomization).
    let fixture = GitFixture::new().expect("fixture");
    let repo = fixture.repo("fleet").expect("repo");
    for app in 0..kustomizations {
        repo.write(
            &format!("apps/app-{app:03}/objects.yaml"),
            app_objects(app, objects),
        )
        .expect("write");
    }
    let commit = repo.commit("fleet").expect("commit");
    fixture.publish(&repo, "fleet.git").expect("publish");
    let git = GitHttpServer::start(fixture.serve_dir()).expect("git server");

    // The manager, idle.
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    };
    let health = free_port();
    let child = Command::new(&binary)
        .args(["--kubeconfig", &kubeconfig.to_string_lossy()])
        .args(["--enable-leader-election", "false"])
        .args(["--concurrent", &concurrent.to_string()])
        .args(["--health-addr", &format!("127.0.0.1:{health}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--bind",
            "127.0.0.1",
            "--storage-port",
            "0",
            "--events-port",
            "0",
            "--receiver-port",
            "0",
        ])
        .env("GITOPS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start gitops-manager");
    let manager = Manager(child);
    let proc = Proc {
        pid: manager.0.id(),
        ticks_per_second: clock_ticks(),
    };
    let own = Proc {
        pid: std::process::id(),
        ticks_per_second: proc.ticks_per_second,
    };
    assert!(
        ready_probe(health).await,
        "gitops-manager never became ready"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = proc.rss_mib();
    println!(
        "gitops-manager idle (every controller running, nothing to reconcile): RSS {idle_rss:.1} MiB"
    );

    // The source first, so the figures are those of the Kustomizations.
    let repos = dynamic_api(
        &client,
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
    );
    let apply = PatchParams::apply("bench").force();
    repos
        .patch(
            "fleet",
            &apply,
            &Patch::Apply(json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": {"name": "fleet", "namespace": NS},
                "spec": {"url": git.url_for("fleet.git"), "interval": "1h", "ref": {"branch": "main"}}
            })),
        )
        .await
        .expect("GitRepository");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = repos.get("fleet").await.expect("get");
        if r.data["status"]["artifact"]["revision"]
            .as_str()
            .is_some_and(|rev| rev.ends_with(&commit))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GitRepository never got its artifact"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let ks_api = dynamic_api(
        &client,
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
        "kustomizations",
    );
    let cpu_before = proc.cpu_seconds();
    let own_before = own.cpu_seconds();
    let started = Instant::now();
    for app in 0..kustomizations {
        let name = format!("app-{app:03}");
        ks_api
            .patch(
                &name,
                &apply,
                &Patch::Apply(json!({
                    "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                    "metadata": {"name": name, "namespace": NS},
                    "spec": {
                        "interval": "1h", "prune": true, "path": format!("./apps/{name}"),
                        "sourceRef": {"kind": "GitRepository", "name": "fleet"}
                    }
                })),
            )
            .await
            .expect("Kustomization");
    }
    let peak_seen = wait_all(&ks_api, &proc, kustomizations, &commit, None).await;
    let elapsed = started.elapsed();
    let cpu = proc.cpu_seconds() - cpu_before;
    let own_cpu = own.cpu_seconds() - own_before;
    let peak = proc.peak_rss_mib().max(peak_seen);
    report(
        "first reconcile (everything created)",
        kustomizations,
        objects,
        concurrent,
        elapsed,
        (cpu, own_cpu),
        peak,
    );
    for round in 1..rounds {
        let at = format!("round-{round}");
        let cpu_before = proc.cpu_seconds();
        let own_before = own.cpu_seconds();
        let started = Instant::now();
        for app in 0..kustomizations {
            let patch =
                json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": at}}});
            ks_api
                .patch(
                    &format!("app-{app:03}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .expect("annotate");
        }
        let peak_seen = wait_all(&ks_api, &proc, kustomizations, &commit, Some(&at)).await;
        let elapsed = started.elapsed();
        let cpu = proc.cpu_seconds() - cpu_before;
        let own_cpu = own.cpu_seconds() - own_before;
        report(
            &format!("requested reconcile {round} (nothing changed)"),
            kustomizations,
            objects,
            concurrent,
            elapsed,
            (cpu, own_cpu),
            proc.peak_rss_mib().max(peak_seen),
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "gitops-manager after the run: RSS {:.1} MiB",
        proc.rss_mib()
    );
    let stored = cluster.snapshot().len();
    println!("TestCluster holds {stored} objects");
    drop(manager);
}

async fn ready_probe(port: u16) -> bool {
    // A plain HTTP/1.0 GET on /readyz, polled (no HTTP client dependency needed).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let _ = s
                .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            if buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200") {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Polls until every Kustomization is Ready at the commit (and has handled `after`); returns
/// the largest RSS seen meanwhile.
async fn wait_all(
    api: &Api<DynamicObject>,
    proc: &Proc,
    count: usize,
    commit: &str,
    after: Option<&str>,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(1800);
    // Every poll lists (and TestCluster serializes) every Kustomization with its status: at
    // most about 1,000 per second, so the bench's own polling does not compete with the
    // manager for the CPU (100 every 100 ms, 1,000 every second).
    let every = Duration::from_millis(100).max(Duration::from_millis(count as u64));
    let mut peak: f64 = 0.0;
    loop {
        peak = peak.max(proc.rss_mib());
        let list = api.list(&ListParams::default()).await.expect("list");
        let ready = list
            .items
            .iter()
            .filter(|k| ready_at(k, commit, after))
            .count();
        if ready == count {
            return peak;
        }
        assert!(
            Instant::now() < deadline,
            "only {ready}/{count} Kustomizations Ready after 30 minutes"
        );
        tokio::time::sleep(every).await;
    }
}

fn report(
    what: &str,
    kustomizations: usize,
    objects: usize,
    concurrent: usize,
    elapsed: Duration,
    // The manager's CPU seconds, and this process's (TestCluster and the bench).
    (cpu, cluster_cpu): (f64, f64),
    peak: f64,
) {
    let secs = elapsed.as_secs_f64();
    let per_second = kustomizations as f64 / secs;
    let per_cpu_second = kustomizations as f64 / cpu.max(1e-9);
    println!(
        "{what}: {kustomizations} Kustomizations x {objects} objects ({} objects), --concurrent {concurrent}",
        kustomizations * objects
    );
    println!(
        "  wall {secs:.2} s = {per_second:.1} Kustomizations/s; gitops-manager CPU {cpu:.2} s = {per_cpu_second:.1} Kustomizations per CPU-second; peak RSS {peak:.1} MiB"
    );
    // TestCluster serves the API in this process: on the same cores, its CPU is time the
    // manager may wait for.
    println!("  TestCluster and the bench (this process) meanwhile: CPU {cluster_cpu:.2} s");
    // Flux v2.4 (fluxcd/flux-benchmark): 100 Kustomizations in 27 s with kustomize-controller
    // limited to 2 CPU, i.e. at least 100 / (27 s x 2 CPU) = 1.85 per CPU-second; 32 MiB, with
    // source-controller at 38 MiB beside it.
    let flux_per_cpu_second = 100.0 / (27.0 * 2.0);
    println!(
        "  vs Flux (100 in 27 s on 2 CPU, >= {flux_per_cpu_second:.2}/CPU-s; kustomize-controller 32 MiB + source-controller 38 MiB): {:.1}x per CPU-second, {:.0}% of Flux's memory",
        per_cpu_second / flux_per_cpu_second,
        peak / (32.0 + 38.0) * 100.0
    );
}

//! `gitops-manager`: two replicas elect one leader on a Lease, and the other takes over when
//! the leader stops; the leader serves Flux's metric names and reconciles.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitops_testkit::cluster::{DenyRules, TestCluster, TestClusterOptions};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Replica {
    child: Child,
    health: u16,
    metrics: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(kubeconfig: &std::path::Path, identity: &str) -> Replica {
    start_with(kubeconfig, identity, &[])
}

fn start_with(kubeconfig: &std::path::Path, identity: &str, extra: &[&str]) -> Replica {
    let health = free_port();
    let metrics = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_gitops-manager"))
        .args(["--kubeconfig", &kubeconfig.to_string_lossy()])
        .args([
            "--identity",
            identity,
            "--lease-duration",
            "4",
            "--leader-election-namespace",
            "default",
        ])
        .args(["--health-addr", &format!("127.0.0.1:{health}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
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
        .args(extra)
        .env("GITOPS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start gitops-manager");
    Replica {
        child,
        health,
        metrics,
    }
}

async fn status(port: u16, path: &str) -> Option<u16> {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("gitops-manager-leader-election")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_elect_one_leader_and_fail_over() {
    gitops_testkit::cluster::install_crypto_provider();
    let cluster = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("cluster");
    let client = cluster.client().await.expect("client");
    gitops_examples::crds::install(&client).await.expect("crds");
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");

    let mut a = start(&kubeconfig, "replica-a");
    until(
        "replica-a ready (leader)",
        Duration::from_secs(20),
        async || status(a.health, "/readyz").await == Some(200),
    )
    .await;
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-a"));
    let b = start(&kubeconfig, "replica-b");
    until("replica-b alive", Duration::from_secs(20), async || {
        status(b.health, "/healthz").await == Some(200)
    })
    .await;
    assert_eq!(
        status(b.health, "/readyz").await,
        Some(503),
        "the follower does not reconcile"
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-a"));

    // The leader reconciles and serves Flux's metric names.
    let repos: Api<gitops_examples::source::GitRepository> =
        Api::namespaced(client.clone(), "default");
    let repo: gitops_examples::source::GitRepository = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "paused", "namespace": "default"},
        "spec": {"url": "https://example.invalid/repo.git", "interval": "1h", "suspend": true}
    }))
    .expect("object");
    repos
        .create(&Default::default(), &repo)
        .await
        .expect("create");
    let metrics_port = a.metrics;
    until(
        "gotk_suspend_status on /metrics",
        Duration::from_secs(20),
        async || {
            let text = match reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            text.lines().any(|l| {
                l.starts_with("gotk_suspend_status{")
                    && l.contains("kind=\"GitRepository\"")
                    && l.contains("name=\"paused\"")
                    && l.ends_with(" 1")
            })
        },
    )
    .await;

    // SIGTERM: graceful shutdown releases the Lease; the follower takes over.
    let pid = a.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exit = a.child.wait().expect("wait");
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    until(
        "replica-b takes over",
        Duration::from_secs(20),
        async || status(b.health, "/readyz").await == Some(200),
    )
    .await;
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-b"));
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_delay_flags_bound_the_retries_of_a_failing_reconcile() {
    gitops_testkit::cluster::install_crypto_provider();
    let cluster = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("cluster");
    let client = cluster.client().await.expect("client");
    gitops_examples::crds::install(&client).await.expect("crds");
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "flux-system"}}))
            .expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    // Every patch of a Kustomization is refused, so its first reconcile (adding the finalizer)
    // fails at the API and is retried on the back-off of the flags.
    cluster.set_authorizer(std::sync::Arc::new(DenyRules::new().deny(
        "*",
        "patch",
        "kustomizations",
    )));
    let replica = start_with(
        &kubeconfig,
        "retrying",
        &[
            "--enable-leader-election",
            "false",
            "--min-retry-delay",
            "200ms",
            "--max-retry-delay",
            "400ms",
        ],
    );
    until("the manager ready", Duration::from_secs(20), async || {
        status(replica.health, "/readyz").await == Some(200)
    })
    .await;
    let kustomizations: Api<gitops_examples::kustomize::Kustomization> =
        Api::namespaced(client.clone(), "flux-system");
    let ks = serde_json::from_value(serde_json::json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "retrying", "namespace": "flux-system"},
        "spec": {"interval": "1h", "prune": true, "path": "./",
                 "sourceRef": {"kind": "GitRepository", "name": "absent"}}
    }))
    .expect("kustomization");
    kustomizations
        .create(&PostParams::default(), &ks)
        .await
        .expect("create");
    // When each refused patch arrived.
    let refused = || {
        cluster
            .requests()
            .iter()
            .filter(|r| {
                r.verb == "patch" && r.status == 403 && r.path.ends_with("/kustomizations/retrying")
            })
            .count()
    };
    let started = Instant::now();
    let mut arrivals: Vec<Instant> = Vec::new();
    while arrivals.len() < 7 && started.elapsed() < Duration::from_secs(20) {
        let n = refused();
        while arrivals.len() < n {
            arrivals.push(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // With Flux's defaults (750 ms doubling) the seventh attempt would come after 47 s.
    assert!(
        arrivals.len() >= 7,
        "only {} attempts in 20 s: the retry delays are not the flags' ({:?})",
        arrivals.len(),
        arrivals.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
    );
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    // Never sooner than --min-retry-delay (less the polling step), and the doubling stops at
    // --max-retry-delay: the later retries come at about 400 ms, not 800 ms, 1.6 s, 3.2 s...
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(170)),
        "a retry came sooner than --min-retry-delay: {gaps:?}"
    );
    let total: Duration = gaps[2..].iter().sum();
    assert!(
        total < Duration::from_millis(4 * 400 + 1500),
        "retries later than --max-retry-delay: {gaps:?}"
    );
}

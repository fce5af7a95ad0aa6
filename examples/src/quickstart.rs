//! The flow behind `gitops quickstart`: a local Git server with the demo repository, the
//! reference controllers in-process, a GitRepository, a Kustomization, a Provider posting to
//! a local webhook and an Alert; then a second commit (an edit and a removed object) and its
//! reconcile.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gitops_events::Event;
use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
use gitops_testkit::fixture::{GitFixture, GitRepo};
use gitops_testkit::servers::GitHttpServer;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::kustomize::Kustomization;
use crate::meta;
use crate::runtime::{ControllerOptions, Controllers};
use crate::source::GitRepository;

/// The demo repository's files (`examples/quickstart/`), built into the binary.
pub const DEMO_FILES: &[(&str, &str)] = &[
    ("README.md", include_str!("../quickstart/README.md")),
    (
        "base/kustomization.yaml",
        include_str!("../quickstart/base/kustomization.yaml"),
    ),
    (
        "base/deployment.yaml",
        include_str!("../quickstart/base/deployment.yaml"),
    ),
    (
        "base/service.yaml",
        include_str!("../quickstart/base/service.yaml"),
    ),
    (
        "base/configmap.yaml",
        include_str!("../quickstart/base/configmap.yaml"),
    ),
    (
        "overlays/demo/kustomization.yaml",
        include_str!("../quickstart/overlays/demo/kustomization.yaml"),
    ),
    (
        "overlays/demo/namespace.yaml",
        include_str!("../quickstart/overlays/demo/namespace.yaml"),
    ),
    (
        "overlays/demo/replicas.yaml",
        include_str!("../quickstart/overlays/demo/replicas.yaml"),
    ),
    (
        "charts/cache/Chart.yaml",
        include_str!("../quickstart/charts/cache/Chart.yaml"),
    ),
    (
        "charts/cache/values.yaml",
        include_str!("../quickstart/charts/cache/values.yaml"),
    ),
    (
        "charts/cache/templates/_helpers.tpl",
        include_str!("../quickstart/charts/cache/templates/_helpers.tpl"),
    ),
    (
        "charts/cache/templates/configmap.yaml",
        include_str!("../quickstart/charts/cache/templates/configmap.yaml"),
    ),
    (
        "charts/cache/templates/deployment.yaml",
        include_str!("../quickstart/charts/cache/templates/deployment.yaml"),
    ),
    (
        "charts/cache/templates/service.yaml",
        include_str!("../quickstart/charts/cache/templates/service.yaml"),
    ),
];

/// The namespace the Flux objects live in.
pub const FLUX_NAMESPACE: &str = "flux-system";

/// Why the quickstart failed, naming the step.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct QuickstartError {
    /// The step that failed.
    pub step: &'static str,
    /// What failed.
    pub message: String,
}

fn fail<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> QuickstartError {
    move |e| QuickstartError {
        step,
        message: e.to_string(),
    }
}

/// Options of [`run`].
#[derive(Debug, Clone, Default)]
pub struct QuickstartOptions {
    /// Run against this cluster instead of an embedded TestCluster.
    pub kubeconfig: Option<PathBuf>,
    /// The limit of each wait (default 60 s).
    pub timeout: Option<Duration>,
}

/// What the quickstart observed.
#[derive(Debug, Clone, Default)]
pub struct QuickstartReport {
    /// The first revision applied.
    pub first_revision: String,
    /// The second revision applied.
    pub second_revision: String,
    /// The inventory ids after the first reconcile.
    pub first_inventory: Vec<String>,
    /// The inventory ids after the second reconcile.
    pub second_inventory: Vec<String>,
    /// The change log of the first reconcile, as the webhook received it.
    pub first_changes: String,
    /// The change log of the second reconcile, as the webhook received it.
    pub second_changes: String,
    /// Every event the webhook received, in order (`reason: message`).
    pub events: Vec<String>,
    /// The ConfigMap's `PODINFO_UI_MESSAGE` after the second reconcile.
    pub final_message: Option<String>,
    /// Whether the Service exists after the second reconcile.
    pub service_exists: bool,
    /// `redis.conf` of the Helm chart's ConfigMap (`demo/podinfo-cache-config`) at the end.
    pub cache_config: Option<String>,
}

/// A local HTTP sink for the generic webhook provider.
struct Sink {
    url: String,
    events: Arc<Mutex<Vec<Event>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn start_sink() -> Result<Sink, QuickstartError> {
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let store = events.clone();
    let router = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                match serde_json::from_slice::<Event>(&body) {
                    Ok(event) => {
                        store.lock().unwrap_or_else(|e| e.into_inner()).push(event);
                        axum::http::StatusCode::OK
                    }
                    Err(_) => axum::http::StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(fail("starting the webhook sink"))?;
    let addr = listener
        .local_addr()
        .map_err(fail("starting the webhook sink"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Sink {
        url: format!("http://{addr}/"),
        events,
        stop: Some(stop),
    })
}

impl Sink {
    fn snapshot(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn apply_yaml<K>(
    api: &Api<K>,
    name: &str,
    object: serde_json::Value,
) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply("gitops-quickstart").force(),
        &Patch::Apply(&object),
    )
    .await
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout`.
async fn wait_for<T, F, Fut>(
    what: &'static str,
    timeout: Duration,
    mut check: F,
) -> Result<T, QuickstartError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            return Err(QuickstartError {
                step: what,
                message: format!(
                    "timed out after {timeout:?}{}",
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(": {last}")
                    }
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready_message(conditions: &[meta::Condition]) -> String {
    meta::find_condition(conditions, meta::READY)
        .map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
        .unwrap_or_else(|| "no Ready condition yet".to_string())
}

/// The Kustomization once it is Ready at `revision` (any revision when `None`).
async fn kustomization_ready(
    api: &Api<Kustomization>,
    revision: Option<&str>,
) -> Result<Option<Kustomization>, String> {
    let ks = api.get("demo").await.map_err(|e| e.to_string())?;
    let Some(status) = &ks.status else {
        return Ok(None);
    };
    let at = status.last_applied_revision.as_deref();
    let ready = meta::is_ready(&status.conditions, ks.metadata.generation)
        && revision.is_none_or(|r| at == Some(r));
    if ready {
        Ok(Some(ks))
    } else {
        Err(ready_message(&status.conditions))
    }
}

fn inventory_ids(ks: &Kustomization) -> Vec<String> {
    ks.status
        .as_ref()
        .and_then(|s| s.inventory.as_ref())
        .map(|i| i.entries.iter().map(|e| e.id.clone()).collect())
        .unwrap_or_default()
}

fn event_line(e: &Event) -> String {
    format!(
        "{} {} {}: {}",
        e.severity.as_str(),
        e.involved_object.kind,
        e.reason,
        e.message.replace('\n', "; ")
    )
}

/// Runs the whole quickstart, writing progress to `out`.
pub async fn run(
    options: QuickstartOptions,
    out: &mut (dyn Write + Send),
) -> Result<QuickstartReport, QuickstartError> {
    gitops_testkit::cluster::install_crypto_provider();
    let started = Instant::now();
    let timeout = options.timeout.unwrap_or(Duration::from_secs(60));
    let mut say = |line: String| {
        let _ = writeln!(out, "[{:>5.1}s] {line}", started.elapsed().as_secs_f64());
        let _ = out.flush();
    };

    // 1. The cluster.
    let (_cluster, client, client_config): (Option<TestCluster>, Client, Option<kube::Config>) =
        match &options.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .map_err(fail("reading the kubeconfig"))?;
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .map_err(fail("loading the kubeconfig"))?;
                let client =
                    Client::try_from(config.clone()).map_err(fail("connecting to the cluster"))?;
                say(format!("Using the cluster of {}", path.display()));
                (None, client, Some(config))
            }
            None => {
                let cluster = TestCluster::start(TestClusterOptions {
                    simulate_controllers: true,
                    rollout_delay: Duration::from_millis(300),
                    ..TestClusterOptions::default()
                })
                .await
                .map_err(fail("starting the embedded cluster"))?;
                let client = cluster
                    .client()
                    .await
                    .map_err(fail("connecting to the embedded cluster"))?;
                say(format!(
                    "Started the embedded Kubernetes API server on {} (simulated rollouts on)",
                    cluster.url()
                ));
                (Some(cluster), client, None)
            }
        };

    // 2. The Git server and the demo repository.
    let fixture = GitFixture::new().map_err(fail("creating the demo repository"))?;
    let repo = fixture
        .repo("demo")
        .map_err(fail("creating the demo repository"))?;
    for (path, text) in DEMO_FILES {
        repo.write(path, text)
            .map_err(fail("writing the demo repository"))?;
    }
    let first_commit = repo.commit("Deploy podinfo").map_err(fail("committing"))?;
    fixture
        .publish(&repo, "demo.git")
        .map_err(fail("publishing the demo repository"))?;
    let git = GitHttpServer::start(fixture.serve_dir()).map_err(fail("starting the Git server"))?;
    let git_url = git.url_for("demo.git");
    say(format!(
        "Serving the demo repository at {git_url} (commit {})",
        &first_commit[..12.min(first_commit.len())]
    ));

    // 3. The webhook the Alert posts to, the CRDs, the controllers.
    let sink = start_sink().await?;
    say(format!("Listening for notifications on {}", sink.url));
    crate::crds::install(&client)
        .await
        .map_err(fail("installing the CRDs"))?;
    say("Installed the CRDs: GitRepository, Kustomization, Provider, Alert, Receiver".to_string());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    apply_yaml(
        &namespaces,
        FLUX_NAMESPACE,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FLUX_NAMESPACE}
        }),
    )
    .await
    .map_err(fail("creating the flux-system namespace"))?;
    let controllers = Controllers::start(
        client.clone(),
        ControllerOptions {
            requeue_dependency: Duration::from_secs(1),
            source_retry_interval: Duration::from_secs(2),
            client_config,
            ..ControllerOptions::default()
        },
    )
    .await
    .map_err(fail("starting the controllers"))?;
    say(format!(
        "Started the controllers (artifacts on {}, events on {})",
        controllers.artifact_url, controllers.events_url
    ));

    let result = flow(
        &client,
        &controllers,
        &sink,
        &repo,
        &fixture,
        &git_url,
        timeout,
        &mut say,
    )
    .await;
    controllers.shutdown().await;
    drop(git);
    let report = result?;
    say(format!("Done in {:.1}s", started.elapsed().as_secs_f64()));
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn flow(
    client: &Client,
    controllers: &Controllers,
    sink: &Sink,
    repo: &GitRepo,
    fixture: &GitFixture,
    git_url: &str,
    timeout: Duration,
    say: &mut impl FnMut(String),
) -> Result<QuickstartReport, QuickstartError> {
    let mut report = QuickstartReport::default();
    let ns = FLUX_NAMESPACE;
    let providers: Api<crate::notification::Provider> = Api::namespaced(client.clone(), ns);
    let alerts: Api<crate::notification::Alert> = Api::namespaced(client.clone(), ns);
    apply_yaml(
        &providers,
        "webhook",
        serde_json::json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
            "metadata": {"name": "webhook", "namespace": ns},
            "spec": {"type": "generic", "address": sink.url}
        }),
    )
    .await
    .map_err(fail("creating the Provider"))?;
    apply_yaml(&alerts, "demo", serde_json::json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
        "metadata": {"name": "demo", "namespace": ns},
        "spec": {
            "providerRef": {"name": "webhook"},
            "eventSeverity": "info",
            "eventSources": [{"kind": "GitRepository", "name": "*"}, {"kind": "Kustomization", "name": "*"}]
        }
    }))
    .await
    .map_err(fail("creating the Alert"))?;
    wait_for("waiting for the Alert to be served", timeout, || async {
        Ok((controllers.alerts() >= 1).then_some(()))
    })
    .await?;
    say(
        "Created Provider/webhook (generic) and Alert/demo (GitRepository/*, Kustomization/*)"
            .to_string(),
    );

    let repos: Api<GitRepository> = Api::namespaced(client.clone(), ns);
    apply_yaml(
        &repos,
        "demo",
        serde_json::json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "demo", "namespace": ns},
            "spec": {"url": git_url, "interval": "10m", "ref": {"branch": "main"}}
        }),
    )
    .await
    .map_err(fail("creating the GitRepository"))?;
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), ns);
    apply_yaml(
        &kustomizations,
        "demo",
        serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "demo", "namespace": ns},
            "spec": {
                "interval": "10m", "timeout": "1m", "prune": true, "wait": true,
                "path": "./overlays/demo",
                "sourceRef": {"kind": "GitRepository", "name": "demo"}
            }
        }),
    )
    .await
    .map_err(fail("creating the Kustomization"))?;
    say("Created GitRepository/demo (branch main) and Kustomization/demo (./overlays/demo, prune, wait)".to_string());

    let artifact = wait_for(
        "waiting for GitRepository/demo to be Ready",
        timeout,
        || async {
            let r = repos.get("demo").await.map_err(|e| e.to_string())?;
            let Some(status) = &r.status else {
                return Ok(None);
            };
            if meta::is_ready(&status.conditions, r.metadata.generation) {
                Ok(status.artifact.clone())
            } else {
                Err(ready_message(&status.conditions))
            }
        },
    )
    .await?;
    say(format!(
        "GitRepository/demo is Ready: artifact {} ({} bytes, {})",
        artifact.revision,
        artifact.size.unwrap_or_default(),
        artifact.digest.clone().unwrap_or_default()
    ));

    let ks = wait_for(
        "waiting for Kustomization/demo to be Ready",
        timeout,
        || kustomization_ready(&kustomizations, Some(&artifact.revision)),
    )
    .await?;
    report.first_revision = artifact.revision.clone();
    report.first_inventory = inventory_ids(&ks);
    say(format!(
        "Kustomization/demo is Ready and healthy: {} ({} objects in the inventory)",
        ks.status
            .as_ref()
            .map(|s| ready_message(&s.conditions))
            .unwrap_or_default(),
        report.first_inventory.len()
    ));
    report.first_changes = wait_for(
        "waiting for the first change set event",
        timeout,
        || async {
            Ok(sink
                .snapshot()
                .iter()
                .find(|e| {
                    e.involved_object.kind == "Kustomization"
                        && e.reason == "ReconciliationSucceeded"
                })
                .map(|e| e.message.clone()))
        },
    )
    .await?;
    for line in report.first_changes.lines() {
        say(format!("  {line}"));
    }
    let seen = sink.snapshot().len();
    say(format!("The webhook received {seen} events:"));
    for e in sink.snapshot() {
        say(format!("  {}", event_line(&e)));
    }

    // 4. A second commit: edit the ConfigMap, remove the Service.
    repo.write(
        "base/configmap.yaml",
        include_str!("../quickstart/base/configmap.yaml").replace(
            "Hello from the GitOps Toolkit for Rust",
            "Hello again: second commit",
        ),
    )
    .map_err(fail("editing the demo repository"))?;
    repo.write(
        "base/kustomization.yaml",
        include_str!("../quickstart/base/kustomization.yaml").replace("  - service.yaml\n", ""),
    )
    .map_err(fail("editing the demo repository"))?;
    repo.remove("base/service.yaml")
        .map_err(fail("editing the demo repository"))?;
    let second_commit = repo
        .commit("Change the message, remove the Service")
        .map_err(fail("committing"))?;
    fixture
        .publish(repo, "demo.git")
        .map_err(fail("publishing the demo repository"))?;
    say(format!(
        "Committed {}: edit ConfigMap/podinfo-config, remove Service/podinfo",
        &second_commit[..12.min(second_commit.len())]
    ));
    let requested = meta::now_rfc3339();
    repos
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {meta::RECONCILE_REQUEST_ANNOTATION: requested}}
            })),
        )
        .await
        .map_err(fail("requesting a reconcile"))?;
    say(format!(
        "Annotated GitRepository/demo with {}={requested}",
        meta::RECONCILE_REQUEST_ANNOTATION
    ));
    let second_revision = wait_for("waiting for the new artifact", timeout, || async {
        let r = repos.get("demo").await.map_err(|e| e.to_string())?;
        Ok(r.status
            .and_then(|s| s.artifact)
            .map(|a| a.revision)
            .filter(|rev| rev.ends_with(&second_commit)))
    })
    .await?;
    say(format!(
        "GitRepository/demo stored artifact {second_revision}"
    ));
    let ks = wait_for(
        "waiting for Kustomization/demo to apply the new revision",
        timeout,
        || kustomization_ready(&kustomizations, Some(&second_revision)),
    )
    .await?;
    report.second_revision = second_revision.clone();
    report.second_inventory = inventory_ids(&ks);
    report.second_changes = wait_for(
        "waiting for the second change set event",
        timeout,
        || async {
            Ok(sink
                .snapshot()
                .iter()
                .skip(seen)
                .find(|e| {
                    e.involved_object.kind == "Kustomization"
                        && e.reason == "ReconciliationSucceeded"
                })
                .map(|e| e.message.clone()))
        },
    )
    .await?;
    say(format!("Kustomization/demo applied {second_revision}:"));
    for line in report.second_changes.lines() {
        say(format!("  {line}"));
    }
    say("The webhook received:".to_string());
    for e in sink.snapshot().iter().skip(seen) {
        say(format!("  {}", event_line(e)));
    }
    report.events = sink
        .snapshot()
        .iter()
        .map(|e| format!("{}: {}", e.reason, e.message))
        .collect();
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "demo");
    report.final_message = config_maps
        .get("podinfo-config")
        .await
        .ok()
        .and_then(|c| c.data)
        .and_then(|d| d.get("PODINFO_UI_MESSAGE").cloned());
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "demo");
    report.service_exists = services
        .get_opt("podinfo")
        .await
        .map_err(fail("reading Service/demo/podinfo"))?
        .is_some();
    report.cache_config = config_maps
        .get_opt("podinfo-cache-config")
        .await
        .map_err(fail("reading ConfigMap/demo/podinfo-cache-config"))?
        .and_then(|c| c.data)
        .and_then(|d| d.get("redis.conf").cloned());
    let _ = ks.name_any();
    Ok(report)
}

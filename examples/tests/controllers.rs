//! The reference controllers on TestCluster with a real git server (git http-backend):
//! Flux's documented objects reconcile to Ready with the right status.

use std::time::{Duration, Instant};

use gitops_examples::kustomize::Kustomization;
use gitops_examples::meta;
use gitops_examples::notification::Receiver;
use gitops_examples::runtime::{ControllerOptions, Controllers};
use gitops_examples::source::GitRepository;
use gitops_testkit::cluster::{DenyRules, TestCluster, TestClusterOptions};
use gitops_testkit::fixture::{GitFixture, GitRepo};
use gitops_testkit::servers::GitHttpServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};

const NS: &str = "flux-system";
const WAIT: Duration = Duration::from_secs(30);

struct Env {
    cluster: TestCluster,
    client: Client,
    fixture: GitFixture,
    repo: GitRepo,
    _git: GitHttpServer,
    url: String,
    controllers: Option<Controllers>,
}

impl Env {
    /// A cluster with the CRDs, a `flux-system` namespace, the repository `app.git` holding
    /// `files`, and the controllers running.
    async fn start(files: &[(&str, &str)]) -> Env {
        gitops_testkit::cluster::install_crypto_provider();
        let cluster = TestCluster::start(TestClusterOptions {
            simulate_controllers: true,
            rollout_delay: Duration::from_millis(200),
            ..TestClusterOptions::default()
        })
        .await
        .expect("cluster");
        let client = cluster.client().await.expect("client");
        gitops_examples::crds::install(&client).await.expect("crds");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        apply(
            &namespaces,
            NS,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        )
        .await;
        let fixture = GitFixture::new().expect("fixture");
        let repo = fixture.repo("app").expect("repo");
        for (path, text) in files {
            repo.write(path, text).expect("write");
        }
        repo.commit("first").expect("commit");
        fixture.publish(&repo, "app.git").expect("publish");
        let git = GitHttpServer::start(fixture.serve_dir()).expect("git server");
        let url = git.url_for("app.git");
        let client_config =
            kube::Config::from_custom_kubeconfig(cluster.kubeconfig(), &Default::default())
                .await
                .expect("client config");
        let controllers = Controllers::start(
            client.clone(),
            ControllerOptions {
                requeue_dependency: Duration::from_millis(300),
                source_retry_interval: Duration::from_secs(1),
                client_config: Some(client_config),
                ..ControllerOptions::default()
            },
        )
        .await
        .expect("controllers");
        Env {
            cluster,
            client,
            fixture,
            repo,
            _git: git,
            url,
            controllers: Some(controllers),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Commits `files` (None removes), publishes, and returns the new commit id.
    fn commit(&self, files: &[(&str, Option<&str>)]) -> String {
        for (path, text) in files {
            match text {
                Some(t) => self.repo.write(path, t).expect("write"),
                None => self.repo.remove(path).expect("remove"),
            }
        }
        let id = self.repo.commit("change").expect("commit");
        self.fixture
            .publish(&self.repo, "app.git")
            .expect("publish");
        id
    }

    async fn git_repository(&self, name: &str, interval: &str) {
        apply(
            &self.api::<GitRepository>(),
            name,
            serde_json::json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"url": self.url, "interval": interval, "ref": {"branch": "main"}}
            }),
        )
        .await;
    }

    async fn kustomization(&self, name: &str, spec: serde_json::Value) {
        let mut full = serde_json::json!({
            "interval": "1h", "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": "app"}
        });
        if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
            full.extend(extra.clone());
        }
        apply(
            &self.api::<Kustomization>(),
            name,
            serde_json::json!({
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                "metadata": {"name": name, "namespace": NS},
                "spec": full
            }),
        )
        .await;
    }

    async fn request_reconcile<K>(&self, name: &str) -> String
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let value = format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let patch = serde_json::json!({"metadata": {"annotations": {meta::RECONCILE_REQUEST_ANNOTATION: value}}});
        self.api::<K>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
        value
    }

    async fn stop(mut self) {
        if let Some(c) = self.controllers.take() {
            c.shutdown().await;
        }
    }
}

async fn apply<K>(api: &Api<K>, name: &str, object: serde_json::Value) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&object),
    )
    .await
    .expect("apply")
}

/// Polls until `check` gives `Some`; panics with the last observation on timeout.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (Option<T>, String)>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let (value, seen) = check().await;
        if let Some(v) = value {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ready(conditions: &[meta::Condition]) -> Option<&meta::Condition> {
    meta::find_condition(conditions, meta::READY)
}

/// Waits until the Kustomization is Ready at a revision ending in `commit`.
async fn ks_ready_at(env: &Env, name: &str, commit: &str) -> Kustomization {
    let api = env.api::<Kustomization>();
    until(
        &format!("Kustomization {name} Ready at {commit}"),
        || async {
            let ks = api.get(name).await.expect("get");
            let status = ks.status.clone().unwrap_or_default();
            let ok = meta::is_ready(&status.conditions, ks.metadata.generation)
                && status
                    .last_applied_revision
                    .as_deref()
                    .is_some_and(|r| r.ends_with(commit));
            (ok.then_some(ks), format!("{status:?}"))
        },
    )
    .await
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
";
const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n";
fn config_map(color: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: apps\ndata:\n  color: {color}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_repository_and_kustomization_with_prune_and_health_checks_reach_ready() {
    let cm = config_map("blue");
    // A plain directory of YAML (no kustomization.yaml): Flux's generated-kustomization rule.
    let env = Env::start(&[
        ("deploy/ns.yaml", NAMESPACE),
        ("deploy/web.yaml", DEPLOYMENT),
        ("deploy/settings.yaml", &cm),
        ("deploy/notes.txt", "not yaml"),
    ])
    .await;
    env.git_repository("app", "1h").await;
    env.kustomization("apps", serde_json::json!({
        "path": "./deploy",
        "healthChecks": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "apps"}]
    }))
    .await;
    let head = env.repo.head().expect("head");

    let repo = until("GitRepository Ready", || async {
        let r = env.api::<GitRepository>().get("app").await.expect("get");
        let ok = r
            .status
            .as_ref()
            .is_some_and(|s| meta::is_ready(&s.conditions, r.metadata.generation));
        (ok.then(|| r.clone()), format!("{:?}", r.status))
    })
    .await;
    let status = repo.status.expect("status");
    let artifact = status.artifact.expect("artifact");
    assert_eq!(artifact.revision, format!("main@sha1:{head}"));
    assert!(
        artifact
            .digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:") && d.len() == 71),
        "{artifact:?}"
    );
    assert!(
        artifact.path.starts_with("gitrepository/flux-system/app/")
            && artifact.path.ends_with(".tar.gz"),
        "{}",
        artifact.path
    );
    assert!(
        artifact.url.ends_with(&artifact.path) && artifact.url.starts_with("http://127.0.0.1:"),
        "{}",
        artifact.url
    );
    assert!(artifact.size.is_some_and(|s| s > 0));
    assert!(!artifact.last_update_time.is_empty());
    assert_eq!(status.observed_generation, Some(1));
    let in_storage = meta::find_condition(&status.conditions, meta::ARTIFACT_IN_STORAGE)
        .expect("ArtifactInStorage");
    assert_eq!(
        (in_storage.status.as_str(), in_storage.reason.as_str()),
        ("True", "Succeeded")
    );
    let r = ready(&status.conditions).expect("Ready");
    assert_eq!(
        r.message,
        format!("stored artifact for revision 'main@sha1:{head}'")
    );
    assert!(meta::find_condition(&status.conditions, meta::RECONCILING).is_none());

    let ks = ks_ready_at(&env, "apps", &head).await;
    let status = ks.status.expect("status");
    assert_eq!(status.last_attempted_revision, status.last_applied_revision);
    let r = ready(&status.conditions).expect("Ready");
    assert_eq!(
        (r.reason.as_str(), r.message.as_str()),
        (
            "ReconciliationSucceeded",
            format!("Applied revision: main@sha1:{head}").as_str()
        )
    );
    let healthy = meta::find_condition(&status.conditions, meta::HEALTHY).expect("Healthy");
    assert_eq!(healthy.status, "True");
    let mut ids: Vec<String> = status
        .inventory
        .expect("inventory")
        .entries
        .iter()
        .map(|e| format!("{} {}", e.id, e.v))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "_apps__Namespace v1",
            "apps_settings__ConfigMap v1",
            "apps_web_apps_Deployment v1"
        ]
    );

    // Owner labels as kustomize-controller writes them.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), "apps");
    let web = deployments.get("web").await.expect("deployment");
    let labels = web.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels
            .get("kustomize.toolkit.fluxcd.io/name")
            .map(String::as_str),
        Some("apps")
    );
    assert_eq!(
        labels
            .get("kustomize.toolkit.fluxcd.io/namespace")
            .map(String::as_str),
        Some(NS)
    );

    // A Kubernetes Event on the GitRepository, as source-controller records.
    let events: Api<k8s_openapi::api::events::v1::Event> = env.api();
    until("a NewArtifact Kubernetes Event", || async {
        let list = events.list(&Default::default()).await.expect("list events");
        let found = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("NewArtifact")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("app")
                && e.reporting_controller.as_deref() == Some("source-controller")
                && e.note.as_deref().is_some_and(|n| n.contains(&head))
        });
        (found.then_some(()), format!("{} events", list.items.len()))
    })
    .await;

    // Prune: remove the ConfigMap from Git.
    let second = env.commit(&[("deploy/settings.yaml", None)]);
    env.request_reconcile::<GitRepository>("app").await;
    ks_ready_at(&env, "apps", &second).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    assert!(
        config_maps
            .get_opt("settings")
            .await
            .expect("get")
            .is_none(),
        "pruned"
    );
    assert!(deployments.get_opt("web").await.expect("get").is_some());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_waits_for_the_dependency() {
    let cm = config_map("green");
    let env = Env::start(&[("infra/ns.yaml", NAMESPACE), ("apps/settings.yaml", &cm)]).await;
    env.git_repository("app", "1h").await;
    env.kustomization(
        "apps",
        serde_json::json!({"path": "./apps", "dependsOn": [{"name": "infra"}]}),
    )
    .await;
    let api = env.api::<Kustomization>();
    until("apps waiting for infra", || async {
        let ks = api.get("apps").await.expect("get");
        let c = ks
            .status
            .as_ref()
            .and_then(|s| ready(&s.conditions).cloned());
        let ok = c.as_ref().is_some_and(|c| {
            c.status == "False"
                && c.reason == "DependencyNotReady"
                && c.message == "dependency 'flux-system/infra' is not ready"
        });
        (ok.then_some(()), format!("{c:?}"))
    })
    .await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    assert!(
        config_maps
            .get_opt("settings")
            .await
            .expect("get")
            .is_none(),
        "nothing applied before the dependency is ready"
    );
    env.kustomization("infra", serde_json::json!({"path": "./infra"}))
        .await;
    let head = env.repo.head().expect("head");
    ks_ready_at(&env, "infra", &head).await;
    ks_ready_at(&env, "apps", &head).await;
    assert!(
        config_maps
            .get_opt("settings")
            .await
            .expect("get")
            .is_some()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_build_substitutes_from_a_config_map() {
    let manifest = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${APP_NAME}\n  namespace: apps\nspec:\n  replicas: ${REPLICAS:=1}\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels:\n        app: web\n        color: ${COLOR}\n    spec:\n      containers:\n        - name: web\n          image: nginx:${TAG:=latest}\n";
    let env = Env::start(&[("deploy/all.yaml", manifest)]).await;
    apply(&env.api::<ConfigMap>(), "cluster-vars", serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-vars", "namespace": NS},
        "data": {"APP_NAME": "from-configmap", "REPLICAS": "3", "COLOR": "red"}
    }))
    .await;
    env.git_repository("app", "1h").await;
    env.kustomization("apps", serde_json::json!({
        "path": "./deploy",
        "postBuild": {
            "substitute": {"APP_NAME": "web"},
            "substituteFrom": [{"kind": "ConfigMap", "name": "cluster-vars"}, {"kind": "Secret", "name": "absent", "optional": true}]
        }
    }))
    .await;
    ks_ready_at(&env, "apps", &env.repo.head().expect("head")).await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), "apps");
    let web = deployments
        .get("web")
        .await
        .expect("substitute wins over substituteFrom");
    let spec = web.spec.expect("spec");
    assert_eq!(spec.replicas, Some(3), "a substituted number is a number");
    let template = spec.template;
    assert_eq!(
        template
            .metadata
            .and_then(|m| m.labels)
            .and_then(|l| l.get("color").cloned())
            .as_deref(),
        Some("red")
    );
    assert_eq!(
        template.spec.expect("pod").containers[0].image.as_deref(),
        Some("nginx:latest")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_stops_changes_while_others_go_on() {
    let frozen_ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: frozen\n";
    let live_ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: live\n";
    let cm = |ns: &str, v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {ns}\ndata:\n  v: \"{v}\"\n"
        )
    };
    let env = Env::start(&[
        ("frozen/ns.yaml", frozen_ns),
        ("frozen/cm.yaml", &cm("frozen", "1")),
        ("live/ns.yaml", live_ns),
        ("live/cm.yaml", &cm("live", "1")),
    ])
    .await;
    env.git_repository("app", "1h").await;
    env.kustomization("frozen", serde_json::json!({"path": "./frozen"}))
        .await;
    env.kustomization("live", serde_json::json!({"path": "./live"}))
        .await;
    let head = env.repo.head().expect("head");
    ks_ready_at(&env, "frozen", &head).await;
    ks_ready_at(&env, "live", &head).await;
    env.kustomization(
        "frozen",
        serde_json::json!({"path": "./frozen", "suspend": true}),
    )
    .await;
    let second = env.commit(&[
        ("frozen/cm.yaml", Some(&cm("frozen", "2"))),
        ("live/cm.yaml", Some(&cm("live", "2"))),
    ]);
    env.request_reconcile::<GitRepository>("app").await;
    env.request_reconcile::<Kustomization>("frozen").await;
    // The live one applies the new revision; the suspended one, triggered by the same source
    // change and by requestedAt, keeps its old revision and objects.
    ks_ready_at(&env, "live", &second).await;
    let frozen = env.api::<Kustomization>().get("frozen").await.expect("get");
    assert!(
        frozen
            .status
            .and_then(|s| s.last_applied_revision)
            .is_some_and(|r| r.ends_with(&head))
    );
    let frozen_cm: Api<ConfigMap> = Api::namespaced(env.client.clone(), "frozen");
    let live_cm: Api<ConfigMap> = Api::namespaced(env.client.clone(), "live");
    let v = |c: ConfigMap| c.data.and_then(|d| d.get("v").cloned());
    assert_eq!(
        v(live_cm.get("settings").await.expect("live")).as_deref(),
        Some("2")
    );
    assert_eq!(
        v(frozen_cm.get("settings").await.expect("frozen")).as_deref(),
        Some("1")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_at_triggers_a_reconcile() {
    let cm = config_map("one");
    let env = Env::start(&[("deploy/ns.yaml", NAMESPACE), ("deploy/cm.yaml", &cm)]).await;
    env.git_repository("app", "1h").await;
    env.kustomization("apps", serde_json::json!({"path": "./deploy"}))
        .await;
    ks_ready_at(&env, "apps", &env.repo.head().expect("head")).await;
    // A new commit is not seen before the 1h interval, unless a reconcile is requested.
    let second = env.commit(&[("deploy/cm.yaml", Some(&config_map("two")))]);
    let requested = env.request_reconcile::<GitRepository>("app").await;
    // A reconcile already under way may pick up the commit first; the request must still be
    // handled, and the new artifact must appear.
    until("the new artifact and the request handled", || async {
        let r = env.api::<GitRepository>().get("app").await.expect("get");
        let status = r.status.unwrap_or_default();
        let rev = status.artifact.as_ref().map(|a| a.revision.clone());
        let handled = status.last_handled_reconcile_at;
        (
            (rev.as_deref().is_some_and(|rev| rev.ends_with(&second))
                && handled.as_deref() == Some(requested.as_str()))
            .then_some(()),
            format!("{rev:?}, handled {handled:?}"),
        )
    })
    .await;
    ks_ready_at(&env, "apps", &second).await;
    let requested = env.request_reconcile::<Kustomization>("apps").await;
    until("Kustomization lastHandledReconcileAt", || async {
        let ks = env.api::<Kustomization>().get("apps").await.expect("get");
        let handled = ks.status.and_then(|s| s.last_handled_reconcile_at);
        (
            (handled.as_deref() == Some(requested.as_str())).then_some(()),
            format!("{handled:?}"),
        )
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_commit_keeps_the_previous_objects_and_reports_the_build_error() {
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ns.yaml\n  - cm.yaml\n";
    let cm = config_map("stable");
    let env = Env::start(&[
        ("deploy/kustomization.yaml", kustomization),
        ("deploy/ns.yaml", NAMESPACE),
        ("deploy/cm.yaml", &cm),
    ])
    .await;
    env.git_repository("app", "1h").await;
    env.kustomization("apps", serde_json::json!({"path": "./deploy"}))
        .await;
    let first = env.repo.head().expect("head");
    let before = ks_ready_at(&env, "apps", &first).await;
    // Broken: the ConfigMap changes, and the kustomization names a file that does not exist.
    let broken = env.commit(&[
        ("deploy/cm.yaml", Some(&config_map("changed"))),
        (
            "deploy/kustomization.yaml",
            Some(&format!("{kustomization}  - missing.yaml\n")),
        ),
    ]);
    env.request_reconcile::<GitRepository>("app").await;
    let api = env.api::<Kustomization>();
    let failed = until("Ready=False BuildFailed", || async {
        let ks = api.get("apps").await.expect("get");
        let s = ks.status.clone().unwrap_or_default();
        let c = ready(&s.conditions).cloned();
        let ok = c
            .as_ref()
            .is_some_and(|c| c.status == "False" && c.reason == "BuildFailed")
            && s.last_attempted_revision
                .as_deref()
                .is_some_and(|r| r.ends_with(&broken));
        (ok.then_some(ks), format!("{s:?}"))
    })
    .await;
    let status = failed.status.expect("status");
    let message = &ready(&status.conditions).expect("Ready").message;
    assert!(message.contains("missing.yaml"), "{message}");
    assert!(
        status
            .last_applied_revision
            .as_deref()
            .is_some_and(|r| r.ends_with(&first))
    );
    assert_eq!(
        status.inventory,
        before.status.and_then(|s| s.inventory),
        "inventory unchanged"
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    let live = config_maps
        .get("settings")
        .await
        .expect("the previous object stays");
    assert_eq!(
        live.data.and_then(|d| d.get("color").cloned()).as_deref(),
        Some("stable"),
        "nothing applied"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_gets_its_webhook_path_and_triggers_its_resources() {
    let env = Env::start(&[("deploy/ns.yaml", NAMESPACE)]).await;
    env.git_repository("app", "1h").await;
    apply(&env.api::<Secret>(), "webhook-token", serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "webhook-token", "namespace": NS},
        "stringData": {"token": "s3cr3t"}
    }))
    .await;
    apply(&env.api::<Receiver>(), "generic-receiver", serde_json::json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
        "metadata": {"name": "generic-receiver", "namespace": NS},
        "spec": {
            "type": "generic",
            "secretRef": {"name": "webhook-token"},
            "resources": [{"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": "app"}]
        }
    }))
    .await;
    let expected = gitops_events::webhook_path("s3cr3t", "generic-receiver", NS);
    let receiver = until("Receiver Ready", || async {
        let r = env
            .api::<Receiver>()
            .get("generic-receiver")
            .await
            .expect("get");
        let ok = r
            .status
            .as_ref()
            .is_some_and(|s| meta::is_ready(&s.conditions, r.metadata.generation));
        (ok.then(|| r.clone()), format!("{:?}", r.status))
    })
    .await;
    let status = receiver.status.expect("status");
    assert_eq!(status.webhook_path.as_deref(), Some(expected.as_str()));
    assert_eq!(
        ready(&status.conditions).expect("Ready").message,
        format!("Receiver initialized for path: {expected}")
    );

    let url = env
        .controllers
        .as_ref()
        .expect("running")
        .receiver_url
        .join(&expected)
        .expect("url");
    let http = reqwest::Client::new();
    let unknown = env
        .controllers
        .as_ref()
        .expect("running")
        .receiver_url
        .join("/hook/0000")
        .expect("url");
    assert_eq!(
        http.post(unknown)
            .body("{}")
            .send()
            .await
            .expect("post")
            .status()
            .as_u16(),
        404
    );
    let answer = http
        .post(url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert!(answer.status().is_success(), "{}", answer.status());
    until("requestedAt handled by the GitRepository", || async {
        let r = env.api::<GitRepository>().get("app").await.expect("get");
        let annotated = r
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(meta::RECONCILE_REQUEST_ANNOTATION).cloned());
        let handled = r
            .status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.clone());
        (
            (annotated.is_some() && annotated == handled).then_some(()),
            format!("{annotated:?} {handled:?}"),
        )
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_overrides_target_namespace_prefix_images_and_patches() {
    let env = Env::start(&[
        ("deploy/web.yaml", DEPLOYMENT),
        ("deploy/settings.yaml", &config_map("blue")),
    ])
    .await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    apply(&namespaces, "tenant", serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant"}})).await;
    env.git_repository("app", "1h").await;
    env.kustomization(
        "apps",
        serde_json::json!({
            "path": "./deploy",
            "targetNamespace": "tenant",
            "namePrefix": "t1-",
            "images": [{"name": "nginx", "newTag": "1.28"}],
            "patches": [{
                "patch": "- op: replace\n  path: /spec/replicas\n  value: 5\n",
                "target": {"kind": "Deployment", "name": "web"}
            }]
        }),
    )
    .await;
    let ks = ks_ready_at(&env, "apps", &env.repo.head().expect("head")).await;
    let mut ids: Vec<String> = ks
        .status
        .and_then(|s| s.inventory)
        .expect("inventory")
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "tenant_t1-settings__ConfigMap",
            "tenant_t1-web_apps_Deployment"
        ]
    );
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), "tenant");
    let spec = deployments
        .get("t1-web")
        .await
        .expect("deployment")
        .spec
        .expect("spec");
    assert_eq!(spec.replicas, Some(5));
    assert_eq!(
        spec.template.spec.expect("pod").containers[0]
            .image
            .as_deref(),
        Some("nginx:1.28")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pruning_kustomization_deletes_what_it_applied() {
    let env = Env::start(&[
        ("keep/ns.yaml", NAMESPACE),
        ("deploy/settings.yaml", &config_map("blue")),
    ])
    .await;
    env.git_repository("app", "1h").await;
    env.kustomization(
        "infra",
        serde_json::json!({"path": "./keep", "prune": false}),
    )
    .await;
    env.kustomization(
        "apps",
        serde_json::json!({"path": "./deploy", "dependsOn": [{"name": "infra"}]}),
    )
    .await;
    let head = env.repo.head().expect("head");
    ks_ready_at(&env, "infra", &head).await;
    let ks = ks_ready_at(&env, "apps", &head).await;
    assert_eq!(
        ks.metadata.finalizers.as_deref(),
        Some(&["finalizers.fluxcd.io".to_string()][..])
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    assert!(
        config_maps
            .get_opt("settings")
            .await
            .expect("get")
            .is_some()
    );
    let api = env.api::<Kustomization>();
    api.delete("apps", &Default::default())
        .await
        .expect("delete apps");
    until("apps gone with its ConfigMap", || async {
        let ks = api.get_opt("apps").await.expect("get");
        let cm = config_maps.get_opt("settings").await.expect("get");
        (
            (ks.is_none() && cm.is_none()).then_some(()),
            format!("ks {} cm {}", ks.is_some(), cm.is_some()),
        )
    })
    .await;
    // Without prune, deleting the Kustomization leaves its objects.
    api.delete("infra", &Default::default())
        .await
        .expect("delete infra");
    until("infra gone", || async {
        let ks = api.get_opt("infra").await.expect("get");
        (ks.is_none().then_some(()), format!("{ks:?}"))
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    assert!(
        namespaces.get_opt("apps").await.expect("get").is_some(),
        "prune: false keeps objects"
    );
    env.stop().await;
}

/// Waits until the Kustomization is Ready=False with `reason` (and, when given, at `commit`).
async fn ks_failed(env: &Env, name: &str, reason: &str, commit: Option<&str>) -> Kustomization {
    let api = env.api::<Kustomization>();
    until(
        &format!("Kustomization {name} Ready=False {reason}"),
        || async {
            let ks = api.get(name).await.expect("get");
            let s = ks.status.clone().unwrap_or_default();
            let ok = ready(&s.conditions)
                .is_some_and(|c| c.status == "False" && c.reason == reason)
                && s.observed_generation == ks.metadata.generation
                && commit.is_none_or(|c| {
                    s.last_attempted_revision
                        .as_deref()
                        .is_some_and(|r| r.ends_with(c))
                });
            (ok.then_some(ks), format!("{s:?}"))
        },
    )
    .await
}

fn ready_message(ks: &Kustomization) -> String {
    ks.status
        .as_ref()
        .and_then(|s| ready(&s.conditions))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

const TENANT_FILES: [(&str, &str); 2] = [
    (
        "tenant/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tenant-settings\n  namespace: flux-system\ndata:\n  color: blue\n",
    ),
    (
        "tenant/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: tenant-web\n  namespace: flux-system\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: tenant-web}\n  template:\n    metadata:\n      labels: {app: tenant-web}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_impersonation_is_enforced_and_a_denied_apply_leaves_nothing_behind() {
    let env = Env::start(&TENANT_FILES).await;
    let restricted = format!("system:serviceaccount:{NS}:restricted");
    // A service account without any rights.
    env.cluster
        .set_authorizer(std::sync::Arc::new(DenyRules::new().deny(
            &restricted,
            "*",
            "*",
        )));
    env.git_repository("app", "1h").await;
    env.kustomization(
        "tenant",
        serde_json::json!({"path": "./tenant", "serviceAccountName": "restricted"}),
    )
    .await;
    let head = env.repo.head().expect("head");
    let failed = ks_failed(&env, "tenant", "ReconciliationFailed", Some(&head)).await;
    let message = ready_message(&failed);
    assert!(
        message.contains("flux-system/tenant-") && message.contains("forbidden"),
        "{message}"
    );
    // Nothing of the set was applied: the ConfigMap, allowed on its own, is not there either.
    let config_maps: Api<ConfigMap> = env.api();
    assert!(
        config_maps
            .get_opt("tenant-settings")
            .await
            .expect("get")
            .is_none(),
        "half-applied"
    );
    assert!(
        failed
            .status
            .as_ref()
            .and_then(|s| s.inventory.as_ref())
            .is_none_or(|i| i.entries.is_empty()),
        "nothing recorded"
    );
    let requests = env.cluster.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.user == restricted && r.status == 403),
        "the apply was made as the service account"
    );
    // The event carries Flux's reason.
    let events: Api<k8s_openapi::api::events::v1::Event> = env.api();
    until("a ReconciliationFailed event", || async {
        let list = events.list(&Default::default()).await.expect("events");
        let found = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("ReconciliationFailed")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("tenant")
        });
        (found.then_some(()), format!("{} events", list.items.len()))
    })
    .await;

    // Another service account with the rights: applied, as that account.
    env.kustomization(
        "tenant",
        serde_json::json!({"path": "./tenant", "serviceAccountName": "deployer"}),
    )
    .await;
    let ks = ks_ready_at(&env, "tenant", &head).await;
    assert_eq!(
        ks.status.and_then(|s| s.inventory).map(|i| i.entries.len()),
        Some(2)
    );
    assert!(
        config_maps
            .get_opt("tenant-settings")
            .await
            .expect("get")
            .is_some()
    );
    let deployer = format!("system:serviceaccount:{NS}:deployer");
    assert!(
        env.cluster
            .requests()
            .iter()
            .any(|r| r.user == deployer && r.verb == "patch" && (200..300).contains(&r.status)),
        "applied as the deployer service account"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_config_secret_ref_applies_to_another_cluster() {
    let env = Env::start(&[
        (
            "remote/ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: edge\n",
        ),
        (
            "remote/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: edge-settings\n  namespace: edge\ndata:\n  site: remote\n",
        ),
    ])
    .await;
    let remote = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("second cluster");
    let remote_client = remote.client().await.expect("remote client");
    // A Secret without a kubeconfig key first: Flux's error, nothing applied anywhere.
    apply(
        &env.api::<Secret>(),
        "edge-kubeconfig",
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "edge-kubeconfig", "namespace": NS},
            "stringData": {"config": remote.kubeconfig_yaml()}
        }),
    )
    .await;
    env.git_repository("app", "1h").await;
    env.kustomization(
        "edge",
        serde_json::json!({"path": "./remote", "kubeConfig": {"secretRef": {"name": "edge-kubeconfig"}}}),
    )
    .await;
    let failed = ks_failed(&env, "edge", "ReconciliationFailed", None).await;
    let message = ready_message(&failed);
    assert!(
        message.contains("does not contain a 'value' or 'value.yaml' key"),
        "{message}"
    );
    assert!(
        !message.contains("BEGIN") && !message.contains("certificate-authority"),
        "no secret content in the message"
    );
    // Flux's second key, `value.yaml`.
    let secrets: Api<Secret> = env.api();
    secrets
        .delete("edge-kubeconfig", &Default::default())
        .await
        .expect("delete");
    apply(
        &secrets,
        "edge-kubeconfig",
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "edge-kubeconfig", "namespace": NS},
            "stringData": {"value.yaml": remote.kubeconfig_yaml()}
        }),
    )
    .await;
    env.request_reconcile::<Kustomization>("edge").await;
    let ks = ks_ready_at(&env, "edge", &env.repo.head().expect("head")).await;
    let mut ids: Vec<String> = ks
        .status
        .and_then(|s| s.inventory)
        .expect("inventory")
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["_edge__Namespace", "edge_edge-settings__ConfigMap"]);
    let remote_cms: Api<ConfigMap> = Api::namespaced(remote_client.clone(), "edge");
    let cm = remote_cms
        .get("edge-settings")
        .await
        .expect("on the remote cluster");
    assert_eq!(
        cm.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kustomize.toolkit.fluxcd.io/name"))
            .map(String::as_str),
        Some("edge")
    );
    let local_ns: Api<Namespace> = Api::all(env.client.clone());
    assert!(
        local_ns.get_opt("edge").await.expect("get").is_none(),
        "nothing applied to the controller's cluster"
    );
    // Deleting the Kustomization prunes on the remote cluster too.
    env.api::<Kustomization>()
        .delete("edge", &Default::default())
        .await
        .expect("delete");
    until("the remote ConfigMap pruned", || async {
        let gone = remote_cms
            .get_opt("edge-settings")
            .await
            .expect("get")
            .is_none();
        (gone.then_some(()), "still there".to_string())
    })
    .await;
    env.stop().await;
}

fn job(image: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  namespace: flux-system\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: migrate\n          image: {image}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_recreates_an_object_whose_immutable_field_changed() {
    let env = Env::start(&[("jobs/job.yaml", &job("migrate:1"))]).await;
    env.git_repository("app", "1h").await;
    env.kustomization("jobs", serde_json::json!({"path": "./jobs"}))
        .await;
    ks_ready_at(&env, "jobs", &env.repo.head().expect("head")).await;
    let jobs: Api<Job> = env.api();
    let uid = jobs.get("migrate").await.expect("job").metadata.uid;
    // An immutable change without force: Ready=False, the Job stays as it was.
    let second = env.commit(&[("jobs/job.yaml", Some(&job("migrate:2")))]);
    env.request_reconcile::<GitRepository>("app").await;
    let failed = ks_failed(&env, "jobs", "ReconciliationFailed", Some(&second)).await;
    let message = ready_message(&failed);
    assert!(message.contains("Job/flux-system/migrate"), "{message}");
    assert_eq!(
        jobs.get("migrate").await.expect("job").metadata.uid,
        uid,
        "not recreated without force"
    );
    // With force: deleted and created again.
    env.kustomization("jobs", serde_json::json!({"path": "./jobs", "force": true}))
        .await;
    ks_ready_at(&env, "jobs", &second).await;
    let live = jobs.get("migrate").await.expect("job");
    assert_ne!(live.metadata.uid, uid, "recreated");
    let image = live
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.first().and_then(|c| c.image.clone()));
    assert_eq!(image.as_deref(), Some("migrate:2"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_resource_filter_selects_which_resources_are_asked_to_reconcile() {
    let env = Env::start(&[("deploy/ns.yaml", NAMESPACE)]).await;
    env.git_repository("app", "1h").await;
    env.git_repository("other", "1h").await;
    apply(&env.api::<Secret>(), "webhook-token", serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "webhook-token", "namespace": NS},
        "stringData": {"token": "s3cr3t"}
    }))
    .await;
    let receiver = |name: &str, filter: &str| {
        serde_json::json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "type": "generic",
                "secretRef": {"name": "webhook-token"},
                "resources": [{"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": "*"}],
                "resourceFilter": filter
            }
        })
    };
    let receivers = env.api::<Receiver>();
    apply(
        &receivers,
        "filtered",
        receiver("filtered", "res.metadata.name == req.repository"),
    )
    .await;
    apply(
        &receivers,
        "broken",
        receiver("broken", "res.metadata.name =="),
    )
    .await;
    let path = until("Receiver filtered Ready", || async {
        let r = receivers.get("filtered").await.expect("get");
        let path = r.status.as_ref().and_then(|s| {
            meta::is_ready(&s.conditions, r.metadata.generation)
                .then(|| s.webhook_path.clone())
                .flatten()
        });
        (path, format!("{:?}", r.status))
    })
    .await;
    // An expression that does not compile: not Ready, and says why.
    until("Receiver broken not Ready", || async {
        let r = receivers.get("broken").await.expect("get");
        let c = r
            .status
            .as_ref()
            .and_then(|s| ready(&s.conditions).cloned());
        let ok = c
            .as_ref()
            .is_some_and(|c| c.status == "False" && c.message.contains("invalid CEL expression"));
        (ok.then_some(()), format!("{c:?}"))
    })
    .await;

    let requested = |name: &'static str| {
        let api = env.api::<GitRepository>();
        async move {
            api.get(name)
                .await
                .expect("get")
                .metadata
                .annotations
                .and_then(|a| a.get(meta::RECONCILE_REQUEST_ANNOTATION).cloned())
        }
    };
    let url = env
        .controllers
        .as_ref()
        .expect("running")
        .receiver_url
        .join(&path)
        .expect("url");
    let answer = reqwest::Client::new()
        .post(url.clone())
        .header("content-type", "application/json")
        .body(r#"{"repository": "other"}"#)
        .send()
        .await
        .expect("post");
    assert!(answer.status().is_success(), "{}", answer.status());
    until("GitRepository other asked to reconcile", || async {
        let v = requested("other").await;
        (v.clone(), format!("{v:?}"))
    })
    .await;
    assert_eq!(requested("app").await, None, "app was filtered out");
    // Another body selects the other repository.
    let answer = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(r#"{"repository": "app"}"#)
        .send()
        .await
        .expect("post");
    assert!(answer.status().is_success(), "{}", answer.status());
    until("GitRepository app asked to reconcile", || async {
        let v = requested("app").await;
        (v.clone(), format!("{v:?}"))
    })
    .await;
    env.stop().await;
}

const SPROCKET_FILES: [(&str, &str); 2] = [
    (
        "gears/crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: sprockets.example.com\nspec:\n  group: example.com\n  names:\n    kind: Sprocket\n    listKind: SprocketList\n    plural: sprockets\n    singular: sprocket\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    subresources:\n      status: {}\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n",
    ),
    (
        "gears/sprocket.yaml",
        "apiVersion: example.com/v1\nkind: Sprocket\nmetadata:\n  name: main\n  namespace: flux-system\nspec:\n  teeth: 12\n",
    ),
];

fn sprockets(client: &Client) -> Api<kube::core::DynamicObject> {
    let resource = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("example.com", "v1", "Sprocket"),
        "sprockets",
    );
    Api::namespaced_with(client.clone(), NS, &resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_exprs_decide_when_a_custom_resource_is_ready() {
    let env = Env::start(&SPROCKET_FILES).await;
    env.git_repository("app", "1h").await;
    let head = env.repo.head().expect("head");
    // A bad expression is refused before anything is applied.
    env.kustomization(
        "bad-cel",
        serde_json::json!({"path": "./gears", "wait": true, "healthCheckExprs": [
            {"apiVersion": "example.com/v1", "kind": "Sprocket", "current": "status.phase =="}
        ]}),
    )
    .await;
    let failed = ks_failed(&env, "bad-cel", "InvalidCELExpression", Some(&head)).await;
    let message = ready_message(&failed);
    assert!(
        message.contains("healthCheckExprs[0] (example.com/v1 Sprocket)"),
        "{message}"
    );
    env.api::<Kustomization>()
        .delete("bad-cel", &Default::default())
        .await
        .expect("delete bad-cel");

    env.kustomization(
        "gears",
        serde_json::json!({"path": "./gears", "wait": true, "timeout": "20s", "healthCheckExprs": [
            {"apiVersion": "example.com/v1", "kind": "Sprocket",
             "current": "status.phase == 'Running'", "failed": "status.phase == 'Broken'"}
        ]}),
    )
    .await;
    // kstatus alone would call a Sprocket without conditions ready at once; the expression
    // keeps the Kustomization waiting until the operator (this test) says Running.
    let api = sprockets(&env.client);
    until("the Sprocket applied", || async {
        let found = api.get_opt("main").await.expect("get").is_some();
        (found.then_some(()), format!("exists: {found}"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ks = env.api::<Kustomization>().get("gears").await.expect("get");
    assert!(
        !meta::is_ready(
            &ks.status.clone().unwrap_or_default().conditions,
            ks.metadata.generation
        ),
        "Ready before the Sprocket runs: {:?}",
        ks.status
    );
    let phase = |phase: &str| serde_json::json!({"status": {"phase": phase}});
    api.patch_status(
        "main",
        &PatchParams::default(),
        &Patch::Merge(phase("Running")),
    )
    .await
    .expect("status");
    ks_ready_at(&env, "gears", &head).await;

    // Broken: the next reconcile fails its health check, saying which expression held.
    api.patch_status(
        "main",
        &PatchParams::default(),
        &Patch::Merge(phase("Broken")),
    )
    .await
    .expect("status");
    env.request_reconcile::<Kustomization>("gears").await;
    let failed = ks_failed(&env, "gears", "HealthCheckFailed", Some(&head)).await;
    let message = ready_message(&failed);
    assert!(
        message.contains("Sprocket/flux-system/main") && message.contains("failed is true"),
        "{message}"
    );
    env.stop().await;
}

//! The source controllers on TestCluster with real servers: Debian's docker-registry
//! (htpasswd), a Helm repository built by helm 3.17.3 (`helm package` + `helm repo index`)
//! served over HTTP with Basic auth, moto's S3 server, and git http-backend. Flux's documented
//! objects reconcile to Ready with Flux's revisions; wrong credentials and missing chart
//! versions give Flux's reasons; suspend stops changes; deleting a source removes its
//! artifacts; old artifacts are garbage-collected by Flux's retention. Needs `GITOPS_HELM`
//! (scripts/test exports it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gitops_examples::meta::{self, Condition};
use gitops_examples::runtime::{ControllerOptions, Controllers};
use gitops_examples::source::{
    Bucket, GitRepository, HelmChart, HelmRepository, OCIRepository, SOURCE_FINALIZER,
};
use gitops_source::{OciAuth, PushOptions, push_artifact};
use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
use gitops_testkit::fixture::{GitFixture, GitRepo};
use gitops_testkit::servers::{GitHttpServer, HelmRepoServer, OciRegistry, S3Server};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use sha2::Digest as _;

const NS: &str = "flux-system";
const WAIT: Duration = Duration::from_secs(40);

struct Env {
    _cluster: TestCluster,
    client: Client,
    store: tempfile::TempDir,
    controllers: Option<Controllers>,
}

impl Env {
    async fn start() -> Env {
        gitops_testkit::cluster::install_crypto_provider();
        let cluster = TestCluster::start(TestClusterOptions::default())
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
        let store = tempfile::tempdir().expect("store");
        let controllers = Controllers::start(
            client.clone(),
            ControllerOptions {
                store_dir: Some(store.path().to_path_buf()),
                source_retry_interval: Duration::from_millis(500),
                ..ControllerOptions::default()
            },
        )
        .await
        .expect("controllers");
        Env {
            _cluster: cluster,
            client,
            store,
            controllers: Some(controllers),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Applies a Flux object given as YAML (Flux's documented examples, verbatim but for the
    /// addresses of the local servers).
    async fn apply_yaml<K>(&self, yaml: &str) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("YAML");
        let name = value["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        apply(&self.api::<K>(), &name, value).await
    }

    async fn secret(&self, name: &str, string_data: serde_json::Value, type_: &str) {
        let mut data = serde_json::Map::new();
        if let Some(map) = string_data.as_object() {
            for (k, v) in map {
                use base64::Engine as _;
                let text = v.as_str().expect("string value");
                data.insert(
                    k.clone(),
                    base64::engine::general_purpose::STANDARD
                        .encode(text)
                        .into(),
                );
            }
        }
        apply(
            &self.api::<Secret>(),
            name,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret", "type": type_,
                "metadata": {"name": name, "namespace": NS}, "data": data
            }),
        )
        .await;
    }

    async fn patch_spec<K>(&self, name: &str, spec: serde_json::Value)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("patch spec");
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

    /// The artifact files of `kind/name` in the store.
    fn stored_files(&self, kind: &str, name: &str) -> Vec<String> {
        let dir = self.store.path().join(kind).join(NS).join(name);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of a source object as JSON (every kind has the same status shape at the top).
fn status_of<K: serde::Serialize>(obj: &K) -> serde_json::Value {
    serde_json::to_value(obj).expect("json")["status"].clone()
}

fn conditions_of(status: &serde_json::Value) -> Vec<Condition> {
    serde_json::from_value(status["conditions"].clone()).unwrap_or_default()
}

/// Waits until `name` is Ready=True for its generation and returns its status.
async fn wait_ready<K>(env: &Env, name: &str) -> serde_json::Value
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api = env.api::<K>();
    until(&format!("{name} Ready"), || async {
        let obj = api.get(name).await.expect("get");
        let status = status_of(&obj);
        let ok = meta::is_ready(&conditions_of(&status), obj.meta().generation)
            && status["observedGeneration"].as_i64() == obj.meta().generation;
        (ok.then_some(status.clone()), status.to_string())
    })
    .await
}

/// Waits until `name` is Ready=False with `reason` and returns the Ready condition.
async fn wait_failed<K>(env: &Env, name: &str, reason: &str) -> Condition
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api = env.api::<K>();
    until(&format!("{name} Ready=False {reason}"), || async {
        let obj = api.get(name).await.expect("get");
        let status = status_of(&obj);
        let ready = meta::find_condition(&conditions_of(&status), meta::READY).cloned();
        let hit = ready
            .clone()
            .filter(|c| c.status == "False" && c.reason == reason);
        (hit, status.to_string())
    })
    .await
}

/// Downloads the artifact at `url` and checks its size and `sha256:` digest.
async fn download_matches(artifact: &serde_json::Value) -> Vec<u8> {
    let url = artifact["url"].as_str().expect("artifact.url");
    let bytes = reqwest::get(url)
        .await
        .expect("GET artifact")
        .error_for_status()
        .expect("artifact served")
        .bytes()
        .await
        .expect("body")
        .to_vec();
    let digest = format!("sha256:{}", hex(&sha2::Sha256::digest(&bytes)));
    assert_eq!(artifact["digest"], digest.as_str(), "digest of {url}");
    assert_eq!(artifact["size"].as_u64(), Some(bytes.len() as u64));
    bytes
}

/// Checks Flux's `status.url`: the stable link `<kind>/<ns>/<name>/<alias>` next to the
/// artifact (not the versioned artifact URL), serving the same bytes as `status.artifact.url`.
async fn assert_latest_link(status: &serde_json::Value, kind: &str, name: &str, alias: &str) {
    let link = status["url"].as_str().expect("status.url");
    let versioned = status["artifact"]["url"].as_str().expect("artifact.url");
    assert!(
        link.ends_with(&format!("/{kind}/{NS}/{name}/{alias}")),
        "{link}"
    );
    assert_ne!(link, versioned);
    let get = |url: String| async move {
        reqwest::get(&url)
            .await
            .expect("GET")
            .error_for_status()
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .bytes()
            .await
            .expect("body")
    };
    assert_eq!(
        get(link.to_string()).await,
        get(versioned.to_string()).await,
        "{link} and {versioned} differ"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn helm() -> PathBuf {
    PathBuf::from(
        std::env::var_os("GITOPS_HELM")
            .expect("GITOPS_HELM must point at the helm 3.17.3 oracle (scripts/test sets it)"),
    )
}

fn run_helm(args: &[&str]) {
    let home = tempfile::tempdir().expect("tmp");
    let out = Command::new(helm())
        .args(args)
        .env("HELM_CONFIG_HOME", home.path())
        .env("HELM_CACHE_HOME", home.path())
        .env("HELM_DATA_HOME", home.path())
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chart_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sources/charts/app")
}

/// A Helm repository with app 1.0.0 and 1.1.0, packaged and indexed by helm.
fn helm_repository_dir() -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("tmp");
    let out = repo.path().to_str().expect("utf-8");
    for version in ["1.0.0", "1.1.0"] {
        run_helm(&[
            "package",
            chart_fixture().to_str().expect("utf-8"),
            "--version",
            version,
            "-d",
            out,
        ]);
    }
    run_helm(&["repo", "index", out]);
    repo
}

/// The file names inside a `tar.gz`.
fn tar_entries(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut names: Vec<String> = archive
        .entries()
        .expect("tar")
        .filter_map(Result::ok)
        .filter(|e| e.header().entry_type().is_file())
        .map(|e| e.path().expect("path").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_repository_from_flux_docs_reaches_ready_and_wrong_credentials_fail() {
    let registry = OciRegistry::builder()
        .basic_auth("flux", "s3cret-pass")
        .start()
        .expect("registry");
    let url = registry.oci_url("manifests/podinfo");
    let content = tempfile::tempdir().expect("tmp");
    std::fs::write(content.path().join("deploy.yaml"), "kind: ConfigMap\n").expect("write");
    let mut opts = PushOptions::new(
        "https://github.com/stefanprodan/podinfo",
        format!("6.1.6@sha1:{}", "4".repeat(40)),
    );
    opts.tag = "latest".into();
    opts.insecure = true;
    opts.auth = OciAuth::Basic {
        username: "flux".into(),
        password: "s3cret-pass".into(),
    };
    let pushed = push_artifact(&url, content.path(), &opts)
        .await
        .expect("push");

    let env = Env::start().await;
    let docker_config = |password: &str| {
        serde_json::json!({
            ".dockerconfigjson": serde_json::json!({"auths": {registry.host(): {
                "username": "flux", "password": password
            }}})
            .to_string()
        })
    };
    env.secret(
        "regcred",
        docker_config("s3cret-pass"),
        "kubernetes.io/dockerconfigjson",
    )
    .await;
    env.secret(
        "wrongcred",
        docker_config("wrong-pass"),
        "kubernetes.io/dockerconfigjson",
    )
    .await;
    // Flux's example (fluxcd.io/flux/components/source/ocirepositories), pointed at the local
    // registry with its pull secret.
    let example = |name: &str, secret: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: {name}
  namespace: {NS}
spec:
  interval: 5m0s
  url: {url}
  ref:
    tag: latest
  insecure: true
  secretRef:
    name: {secret}
"
        )
    };
    env.apply_yaml::<OCIRepository>(&example("podinfo", "regcred"))
        .await;
    let status = wait_ready::<OCIRepository>(&env, "podinfo").await;
    let artifact = &status["artifact"];
    assert_eq!(artifact["revision"], format!("latest@{}", pushed.digest));
    assert_eq!(
        artifact["metadata"]["org.opencontainers.image.source"],
        "https://github.com/stefanprodan/podinfo"
    );
    assert_eq!(
        artifact["metadata"]["org.opencontainers.image.revision"],
        format!("6.1.6@sha1:{}", "4".repeat(40))
    );
    assert_latest_link(&status, "ocirepository", "podinfo", "latest.tar.gz").await;
    let ready = meta::find_condition(&conditions_of(&status), meta::READY)
        .cloned()
        .expect("Ready");
    assert_eq!(
        ready.message,
        format!("stored artifact for digest 'latest@{}'", pushed.digest)
    );
    assert!(
        meta::find_condition(&conditions_of(&status), meta::ARTIFACT_IN_STORAGE)
            .is_some_and(|c| c.status == "True")
    );
    let bytes = download_matches(artifact).await;
    assert_eq!(tar_entries(&bytes), vec!["deploy.yaml".to_string()]);
    let repo = env
        .api::<OCIRepository>()
        .get("podinfo")
        .await
        .expect("get");
    assert!(
        repo.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&SOURCE_FINALIZER.to_string())
    );

    // Pinned by digest (Flux's revision is then the bare digest), the content layer copied
    // verbatim by the layer selector.
    env.apply_yaml::<OCIRepository>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: pinned
  namespace: {NS}
spec:
  interval: 5m0s
  url: {url}
  ref:
    digest: {}
  layerSelector:
    mediaType: application/vnd.cncf.flux.content.v1.tar+gzip
    operation: copy
  insecure: true
  secretRef:
    name: regcred
",
        pushed.digest
    ))
    .await;
    let status = wait_ready::<OCIRepository>(&env, "pinned").await;
    assert_eq!(status["artifact"]["revision"], pushed.digest.to_string());
    assert_eq!(
        status["observedLayerSelector"],
        serde_json::json!({
            "mediaType": "application/vnd.cncf.flux.content.v1.tar+gzip",
            "operation": "copy"
        })
    );
    let layer = download_matches(&status["artifact"]).await;
    assert_eq!(
        format!("sha256:{}", hex(&sha2::Sha256::digest(&layer))),
        pushed.layer_digest
    );

    // A Flux field this controller does not implement stalls the object and says which.
    env.apply_yaml::<OCIRepository>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: verified
  namespace: {NS}
spec:
  interval: 5m0s
  url: {url}
  verify:
    provider: cosign
"
    ))
    .await;
    let failed = wait_failed::<OCIRepository>(&env, "verified", "UnsupportedField").await;
    assert_eq!(
        failed.message,
        "spec.verify is not supported by this controller"
    );
    let status = status_of(
        &env.api::<OCIRepository>()
            .get("verified")
            .await
            .expect("get"),
    );
    assert!(
        meta::find_condition(&conditions_of(&status), meta::STALLED)
            .is_some_and(|c| c.status == "True")
    );

    // A wrong password: Flux's OCIArtifactPullFailed, retried, and the secret is not shown.
    env.apply_yaml::<OCIRepository>(&example("wrong", "wrongcred"))
        .await;
    let failed = wait_failed::<OCIRepository>(&env, "wrong", "OCIArtifactPullFailed").await;
    assert!(!failed.message.contains("wrong-pass"), "{}", failed.message);
    let status = status_of(&env.api::<OCIRepository>().get("wrong").await.expect("get"));
    assert!(
        meta::find_condition(&conditions_of(&status), meta::RECONCILING)
            .is_some_and(|c| c.status == "True")
    );
    assert!(status["artifact"].is_null());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_repository_and_charts_from_it_follow_flux() {
    let repo_dir = helm_repository_dir();
    let server = HelmRepoServer::builder()
        .basic_auth("helm", "chart-pass")
        .start(repo_dir.path())
        .expect("helm server");
    let index = std::fs::read(repo_dir.path().join("index.yaml")).expect("index");
    let index_revision = format!("sha256:{}", hex(&sha2::Sha256::digest(&index)));

    let env = Env::start().await;
    env.secret(
        "helm-auth",
        serde_json::json!({"username": "helm", "password": "chart-pass"}),
        "Opaque",
    )
    .await;
    env.secret(
        "helm-wrong",
        serde_json::json!({"username": "helm", "password": "nope"}),
        "Opaque",
    )
    .await;
    let repository = |name: &str, secret: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: {name}
  namespace: {NS}
spec:
  interval: 5m0s
  url: {}
  secretRef:
    name: {secret}
",
            server.url()
        )
    };
    env.apply_yaml::<HelmRepository>(&repository("podinfo", "helm-auth"))
        .await;
    let status = wait_ready::<HelmRepository>(&env, "podinfo").await;
    assert_eq!(status["artifact"]["revision"], index_revision.as_str());
    assert_latest_link(&status, "helmrepository", "podinfo", "index.yaml").await;
    assert_eq!(download_matches(&status["artifact"]).await, index);

    // Flux's HelmChart example: the newest 1.x.
    let chart = |name: &str, version: &str, repo: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata:
  name: {name}
  namespace: {NS}
spec:
  interval: 5m0s
  chart: app
  reconcileStrategy: ChartVersion
  sourceRef:
    kind: HelmRepository
    name: {repo}
  version: '{version}'
"
        )
    };
    env.apply_yaml::<HelmChart>(&chart("app", "1.x", "podinfo"))
        .await;
    let status = wait_ready::<HelmChart>(&env, "app").await;
    assert_eq!(status["artifact"]["revision"], "1.1.0");
    assert_eq!(status["observedChartName"], "app");
    assert_eq!(
        status["observedSourceArtifactRevision"],
        index_revision.as_str()
    );
    assert!(
        status["artifact"]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("app-1.1.0.tgz")),
        "{status}"
    );
    let package = download_matches(&status["artifact"]).await;
    assert!(tar_entries(&package).contains(&"app/Chart.yaml".to_string()));
    assert_latest_link(&status, "helmchart", "app", "latest.tar.gz").await;
    let ready = meta::find_condition(&conditions_of(&status), meta::READY)
        .cloned()
        .expect("Ready");
    assert_eq!(ready.message, "pulled 'app' chart with version '1.1.0'");
    assert_eq!(ready.reason, "ChartPullSucceeded");

    // Nothing changed (same spec, same index artifact): a requested reconcile downloads
    // nothing and keeps the chart.
    let index_gets = || {
        server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("index.yaml"))
            .count()
    };
    let before = index_gets();
    let token = env.request_reconcile::<HelmChart>("app").await;
    let charts = env.api::<HelmChart>();
    let again = until("the requested HelmChart reconcile", || async {
        let status = status_of(&charts.get("app").await.expect("get"));
        let done = status["lastHandledReconcileAt"] == token.as_str();
        (done.then_some(status.clone()), status.to_string())
    })
    .await;
    assert_eq!(again["artifact"], status["artifact"]);
    assert_eq!(index_gets(), before, "the chart fetched the index again");

    // No such version: Flux's InvalidChartReference (BuildFailed).
    env.apply_yaml::<HelmChart>(&chart("missing", "9.9.9", "podinfo"))
        .await;
    let failed = wait_failed::<HelmChart>(&env, "missing", "InvalidChartReference").await;
    assert!(failed.message.contains("9.9.9"), "{}", failed.message);
    let status = status_of(&env.api::<HelmChart>().get("missing").await.expect("get"));
    assert!(
        meta::find_condition(&conditions_of(&status), "BuildFailed")
            .is_some_and(|c| c.status == "True")
    );

    // A wrong password: Flux's "failed to fetch Helm repository index" (reason Failed); a
    // chart from it follows it: no artifact, NoSourceArtifact.
    env.apply_yaml::<HelmRepository>(&repository("locked", "helm-wrong"))
        .await;
    let failed = wait_failed::<HelmRepository>(&env, "locked", "Failed").await;
    assert!(
        failed
            .message
            .starts_with("failed to fetch Helm repository index"),
        "{}",
        failed.message
    );
    assert!(!failed.message.contains("nope"), "{}", failed.message);
    env.apply_yaml::<HelmChart>(&chart("orphan", "*", "locked"))
        .await;
    let failed = wait_failed::<HelmChart>(&env, "orphan", "NoSourceArtifact").await;
    assert_eq!(
        failed.message,
        "no artifact available for HelmRepository source 'locked'"
    );

    // Fixing the Secret makes the repository, then the chart, Ready (the chart watches it).
    env.patch_spec::<HelmRepository>(
        "locked",
        serde_json::json!({"secretRef": {"name": "helm-auth"}}),
    )
    .await;
    wait_ready::<HelmRepository>(&env, "locked").await;
    let status = wait_ready::<HelmChart>(&env, "orphan").await;
    assert_eq!(status["artifact"]["revision"], "1.1.0");

    // An OCI HelmRepository is a static object, as in Flux: no finalizer, no status.
    env.apply_yaml::<HelmRepository>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: oci-charts
  namespace: {NS}
spec:
  type: oci
  url: oci://ghcr.io/stefanprodan/charts
"
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let oci = env
        .api::<HelmRepository>()
        .get("oci-charts")
        .await
        .expect("get");
    assert!(oci.status.is_none(), "{:?}", oci.status);
    assert!(oci.metadata.finalizers.unwrap_or_default().is_empty());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_chart_from_an_oci_helm_repository() {
    let repo_dir = helm_repository_dir();
    let registry = OciRegistry::start().expect("registry");
    for version in ["1.0.0", "1.1.0"] {
        let package = repo_dir.path().join(format!("app-{version}.tgz"));
        run_helm(&[
            "push",
            package.to_str().expect("utf-8"),
            &registry.oci_url("charts"),
            "--plain-http",
        ]);
    }
    let env = Env::start().await;
    // Flux's OCI HelmRepository example, with the chart pulled by a HelmChart.
    env.apply_yaml::<HelmRepository>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: {NS}
spec:
  type: oci
  insecure: true
  interval: 5m0s
  url: {}
",
        registry.oci_url("charts")
    ))
    .await;
    let chart = |name: &str, version: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata:
  name: {name}
  namespace: {NS}
spec:
  interval: 5m0s
  chart: app
  sourceRef:
    kind: HelmRepository
    name: podinfo
  version: '{version}'
"
        )
    };
    env.apply_yaml::<HelmChart>(&chart("app", "1.0.x")).await;
    let status = wait_ready::<HelmChart>(&env, "app").await;
    assert_eq!(status["artifact"]["revision"], "1.0.0");
    assert!(
        status["observedSourceArtifactRevision"].is_null(),
        "{status}"
    );
    let package = download_matches(&status["artifact"]).await;
    assert!(tar_entries(&package).contains(&"app/Chart.yaml".to_string()));
    env.apply_yaml::<HelmChart>(&chart("latest", "*")).await;
    let status = wait_ready::<HelmChart>(&env, "latest").await;
    assert_eq!(status["artifact"]["revision"], "1.1.0");
    env.apply_yaml::<HelmChart>(&chart("none", "3.x")).await;
    wait_failed::<HelmChart>(&env, "none", "InvalidChartReference").await;
    env.stop().await;
}

/// A git repository holding the chart fixture under `charts/app`, served by git http-backend.
fn chart_git_repository() -> (GitFixture, GitRepo, GitHttpServer) {
    let fixture = GitFixture::new().expect("fixture");
    let repo = fixture.repo("charts").expect("repo");
    for entry in walkdir::WalkDir::new(chart_fixture()) {
        let entry = entry.expect("walk");
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(chart_fixture())
                .expect("below the fixture");
            let text = std::fs::read_to_string(entry.path()).expect("read");
            repo.write(&format!("charts/app/{}", rel.display()), text)
                .expect("write");
        }
    }
    repo.commit("chart").expect("commit");
    fixture.publish(&repo, "charts.git").expect("publish");
    let server = GitHttpServer::start(fixture.serve_dir()).expect("git server");
    (fixture, repo, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_chart_from_a_git_repository_path() {
    let (fixture, repo, server) = chart_git_repository();
    let env = Env::start().await;
    env.apply_yaml::<GitRepository>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: charts
  namespace: {NS}
spec:
  interval: 5m0s
  url: {}
  ref:
    branch: main
",
        server.url_for("charts.git")
    ))
    .await;
    let git = wait_ready::<GitRepository>(&env, "charts").await;
    let git_revision = git["artifact"]["revision"]
        .as_str()
        .expect("revision")
        .to_string();
    env.apply_yaml::<HelmChart>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata:
  name: app
  namespace: {NS}
spec:
  interval: 5m0s
  chart: ./charts/app
  sourceRef:
    kind: GitRepository
    name: charts
  valuesFiles:
    - charts/app/values.yaml
    - charts/app/values-prod.yaml
"
    ))
    .await;
    let status = wait_ready::<HelmChart>(&env, "app").await;
    let generation = env
        .api::<HelmChart>()
        .get("app")
        .await
        .expect("get")
        .metadata
        .generation
        .expect("generation");
    // Flux: values files merged give `+<generation>` to the chart version.
    assert_eq!(
        status["artifact"]["revision"],
        format!("1.0.0+{generation}")
    );
    assert_eq!(status["observedChartName"], "app");
    assert_eq!(
        status["observedSourceArtifactRevision"],
        git_revision.as_str()
    );
    assert_eq!(
        status["observedValuesFiles"],
        serde_json::json!(["charts/app/values.yaml", "charts/app/values-prod.yaml"])
    );
    let ready = meta::find_condition(&conditions_of(&status), meta::READY)
        .cloned()
        .expect("Ready");
    assert_eq!(
        ready.message,
        format!("packaged 'app' chart with version '1.0.0+{generation}'")
    );
    assert_eq!(ready.reason, "ChartPackageSucceeded");
    let package = download_matches(&status["artifact"]).await;
    assert!(tar_entries(&package).contains(&"app/values.yaml".to_string()));

    // The Revision strategy: the chart version gets the first 12 hex of the source revision.
    env.apply_yaml::<HelmChart>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata:
  name: app-rev
  namespace: {NS}
spec:
  interval: 5m0s
  chart: ./charts/app
  reconcileStrategy: Revision
  sourceRef:
    kind: GitRepository
    name: charts
"
    ))
    .await;
    let status = wait_ready::<HelmChart>(&env, "app-rev").await;
    let commit = git_revision.rsplit(':').next().expect("hex");
    assert_eq!(
        status["artifact"]["revision"],
        format!("1.0.0+{}", &commit[..12])
    );

    // A new chart version in Git: the GitRepository moves, the chart follows.
    let chart_yaml = std::fs::read_to_string(chart_fixture().join("Chart.yaml"))
        .expect("Chart.yaml")
        .replace("version: 1.0.0", "version: 1.2.0");
    repo.write("charts/app/Chart.yaml", chart_yaml)
        .expect("write");
    repo.commit("bump").expect("commit");
    fixture.publish(&repo, "charts.git").expect("publish");
    env.request_reconcile::<GitRepository>("charts").await;
    let api = env.api::<HelmChart>();
    let want = format!("1.2.0+{generation}");
    until("HelmChart at 1.2.0", || async {
        let status = status_of(&api.get("app").await.expect("get"));
        let ok = status["artifact"]["revision"] == want.as_str()
            && status["observedSourceArtifactRevision"] != git_revision.as_str();
        (ok.then_some(()), status.to_string())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_from_flux_docs_reaches_ready_and_suspend_stops_changes() {
    let s3 = S3Server::builder()
        .bucket("podinfo")
        .require_auth()
        .start()
        .expect("moto");
    s3.put_object("deploy/app.yaml", b"kind: ConfigMap\n")
        .expect("put");
    s3.put_object("README.md", b"# docs\n").expect("put");
    let env = Env::start().await;
    env.secret(
        "minio-bucket-secret",
        serde_json::json!({"accesskey": s3.access_key(), "secretkey": s3.secret_key()}),
        "Opaque",
    )
    .await;
    env.secret(
        "wrong-bucket-secret",
        serde_json::json!({"accesskey": s3.access_key(), "secretkey": "not-the-key"}),
        "Opaque",
    )
    .await;
    env.secret(
        "half-bucket-secret",
        serde_json::json!({"accesskey": s3.access_key()}),
        "Opaque",
    )
    .await;
    // Flux's example (fluxcd.io/flux/components/source/buckets), pointed at moto.
    let example = |name: &str, secret: &str, bucket: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: Bucket
metadata:
  name: {name}
  namespace: {NS}
spec:
  interval: 5m0s
  endpoint: {}
  insecure: true
  secretRef:
    name: {secret}
  bucketName: {bucket}
",
            s3.host()
        )
    };
    env.apply_yaml::<Bucket>(&example("minio-bucket", "minio-bucket-secret", "podinfo"))
        .await;
    let status = wait_ready::<Bucket>(&env, "minio-bucket").await;
    let first = status["artifact"]["revision"]
        .as_str()
        .expect("revision")
        .to_string();
    assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
    assert_latest_link(&status, "bucket", "minio-bucket", "latest.tar.gz").await;
    let bytes = download_matches(&status["artifact"]).await;
    assert_eq!(
        tar_entries(&bytes),
        vec!["README.md".to_string(), "deploy/app.yaml".to_string()]
    );

    // A wrong secret key (moto checks signatures here) and a bucket that does not exist:
    // Flux's BucketOperationFailed; a Secret without `secretkey`: AuthenticationFailed.
    env.apply_yaml::<Bucket>(&example("wrong", "wrong-bucket-secret", "podinfo"))
        .await;
    let failed = wait_failed::<Bucket>(&env, "wrong", "BucketOperationFailed").await;
    assert!(
        !failed.message.contains("not-the-key"),
        "{}",
        failed.message
    );
    env.apply_yaml::<Bucket>(&example("missing", "minio-bucket-secret", "no-such-bucket"))
        .await;
    let failed = wait_failed::<Bucket>(&env, "missing", "BucketOperationFailed").await;
    assert!(
        failed.message.contains("no-such-bucket"),
        "{}",
        failed.message
    );
    env.apply_yaml::<Bucket>(&example("half", "half-bucket-secret", "podinfo"))
        .await;
    let failed = wait_failed::<Bucket>(&env, "half", "AuthenticationFailed").await;
    assert!(failed.message.contains("'secretkey'"), "{}", failed.message);

    // The failing Buckets keep retrying (from every half second, backing off); moto's seeding
    // window (put_object with signatures enforced) needs a quiet server, so they go first.
    let buckets = env.api::<Bucket>();
    for name in ["wrong", "missing", "half"] {
        buckets
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    until("the failing Buckets deleted", || async {
        let mut left = Vec::new();
        for name in ["wrong", "missing", "half"] {
            if buckets.get_opt(name).await.expect("get").is_some() {
                left.push(name);
            }
        }
        (left.is_empty().then_some(()), format!("{left:?}"))
    })
    .await;

    // Suspended: a new object and a reconcile request change nothing.
    env.patch_spec::<Bucket>("minio-bucket", serde_json::json!({"suspend": true}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    s3.put_object("deploy/extra.yaml", b"kind: Secret\n")
        .expect("put");
    env.request_reconcile::<Bucket>("minio-bucket").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = status_of(&env.api::<Bucket>().get("minio-bucket").await.expect("get"));
    assert_eq!(status["artifact"]["revision"], first.as_str());

    // Resumed: the new object is in a new revision.
    env.patch_spec::<Bucket>("minio-bucket", serde_json::json!({"suspend": false}))
        .await;
    let api = env.api::<Bucket>();
    let status = until("Bucket at a new revision", || async {
        let status = status_of(&api.get("minio-bucket").await.expect("get"));
        let moved = status["artifact"]["revision"]
            .as_str()
            .is_some_and(|r| r != first);
        (moved.then_some(status.clone()), status.to_string())
    })
    .await;
    let bytes = download_matches(&status["artifact"]).await;
    assert!(tar_entries(&bytes).contains(&"deploy/extra.yaml".to_string()));
    // The stable link moved to the new revision.
    assert_latest_link(&status, "bucket", "minio-bucket", "latest.tar.gz").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_artifacts_are_collected_and_deleting_sources_removes_theirs() {
    let (fixture, repo, server) = chart_git_repository();
    let repo_dir = helm_repository_dir();
    let helm_server = HelmRepoServer::start(repo_dir.path()).expect("helm server");
    let env = Env::start().await;
    env.apply_yaml::<GitRepository>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: charts
  namespace: {NS}
spec:
  interval: 5m0s
  url: {}
  ref:
    branch: main
",
        server.url_for("charts.git")
    ))
    .await;
    env.apply_yaml::<HelmRepository>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: {NS}
spec:
  interval: 5m0s
  url: {}
",
        helm_server.url()
    ))
    .await;
    env.apply_yaml::<HelmChart>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata:
  name: app
  namespace: {NS}
spec:
  interval: 5m0s
  chart: app
  sourceRef:
    kind: HelmRepository
    name: podinfo
"
    ))
    .await;
    let mut revision = wait_ready::<GitRepository>(&env, "charts").await["artifact"]["revision"]
        .as_str()
        .expect("revision")
        .to_string();
    wait_ready::<HelmRepository>(&env, "podinfo").await;
    wait_ready::<HelmChart>(&env, "app").await;

    // Three more commits: Flux's retention keeps the last two artifacts.
    let api = env.api::<GitRepository>();
    for n in 0..3 {
        repo.write("charts/app/notes.txt", format!("change {n}"))
            .expect("write");
        repo.commit("change").expect("commit");
        fixture.publish(&repo, "charts.git").expect("publish");
        env.request_reconcile::<GitRepository>("charts").await;
        let previous = revision.clone();
        revision = until("a new GitRepository revision", || async {
            let status = status_of(&api.get("charts").await.expect("get"));
            let r = status["artifact"]["revision"].as_str().map(str::to_string);
            (r.filter(|r| *r != previous), status.to_string())
        })
        .await;
    }
    let files = env.stored_files("gitrepository", "charts");
    assert_eq!(files.len(), 2, "{files:?}");
    let current = status_of(&api.get("charts").await.expect("get"))["artifact"]["path"]
        .as_str()
        .expect("path")
        .rsplit('/')
        .next()
        .expect("file")
        .to_string();
    assert!(files.contains(&current), "{files:?} lacks {current}");

    // Deleting the sources removes their artifacts, then the finalizer lets them go.
    assert!(!env.stored_files("helmrepository", "podinfo").is_empty());
    assert!(!env.stored_files("helmchart", "app").is_empty());
    let dp = DeleteParams::default();
    api.delete("charts", &dp).await.expect("delete");
    env.api::<HelmChart>()
        .delete("app", &dp)
        .await
        .expect("delete");
    env.api::<HelmRepository>()
        .delete("podinfo", &dp)
        .await
        .expect("delete");
    let charts = env.api::<HelmChart>();
    let repos = env.api::<HelmRepository>();
    until("the sources deleted", || async {
        let left = (
            api.get_opt("charts").await.expect("get").is_some(),
            charts.get_opt("app").await.expect("get").is_some(),
            repos.get_opt("podinfo").await.expect("get").is_some(),
        );
        (
            (left == (false, false, false)).then_some(()),
            format!("{left:?}"),
        )
    })
    .await;
    for (kind, name) in [
        ("gitrepository", "charts"),
        ("helmchart", "app"),
        ("helmrepository", "podinfo"),
    ] {
        assert!(
            env.stored_files(kind, name).is_empty(),
            "{kind}/{name}: {:?}",
            env.stored_files(kind, name)
        );
        assert!(!env.store.path().join(kind).join(NS).join(name).exists());
    }
    env.stop().await;
}

/// `spec.certSecretRef` with Flux's keys (`ca.crt`, `tls.crt`, `tls.key`) against servers that
/// require client certificates: Debian's docker-registry with `http.tls.clientcas` (an
/// OCIRepository, and an OCI HelmRepository whose chart a HelmChart pulls) and an HTTPS Helm
/// repository requiring client certificates (a HelmRepository and a HelmChart from it), and
/// moto behind a TLS front requiring them (a Bucket). With
/// the certificate they reach Ready with an artifact; with only the CA the TLS handshake is
/// refused and Ready=False carries Flux's reason and the server's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_secret_ref_gives_mutual_tls_to_oci_helm_and_bucket_sources() {
    let registry = OciRegistry::builder()
        .require_client_certificates()
        .start()
        .expect("registry");
    let ca_pem = registry.ca_pem().expect("CA").to_string();
    let issued = registry.client_cert().expect("client certificate").clone();
    let url = registry.oci_url("manifests/mtls");
    let content = tempfile::tempdir().expect("tmp");
    std::fs::write(content.path().join("deploy.yaml"), "kind: ConfigMap\n").expect("write");
    let mut opts = PushOptions::new("https://example.com/mtls", "v1");
    opts.tag = "v1".into();
    opts.tls.ca_pem = Some(ca_pem.as_bytes().to_vec());
    opts.tls.client_identity_pem = Some((
        issued.cert_pem.as_bytes().to_vec(),
        issued.key_pem.as_bytes().to_vec(),
    ));
    let pushed = push_artifact(&url, content.path(), &opts)
        .await
        .expect("push over mutual TLS");
    // helm 3.17 talks plain HTTP to 127.0.0.1 registries, so the chart is pushed to a plain
    // registry by helm and its storage (docker-registry's filesystem layout) copied into the
    // mutual-TLS one.
    let repo_dir = helm_repository_dir();
    let plain = OciRegistry::start().expect("plain registry");
    let package = repo_dir.path().join("app-1.1.0.tgz");
    run_helm(&[
        "push",
        package.to_str().expect("utf-8"),
        &plain.oci_url("charts"),
        "--plain-http",
    ]);
    copy_tree(plain.storage_dir(), registry.storage_dir());
    // The HTTPS Helm repository shares the registry's CA, so one Secret serves both.
    let helm_server = HelmRepoServer::builder()
        .tls_with_ca(registry.ca().expect("CA"))
        .require_client_cert()
        .start(repo_dir.path())
        .expect("helm server");

    let env = Env::start().await;
    env.secret(
        "mtls-certs",
        serde_json::json!({
            "ca.crt": ca_pem,
            "tls.crt": issued.cert_pem,
            "tls.key": issued.key_pem,
        }),
        "Opaque",
    )
    .await;
    env.secret("ca-only", serde_json::json!({ "ca.crt": ca_pem }), "Opaque")
        .await;

    let oci = |name: &str, secret: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: {name}
  namespace: {NS}
spec:
  interval: 5m0s
  url: {url}
  ref:
    tag: v1
  certSecretRef:
    name: {secret}
"
        )
    };
    env.apply_yaml::<OCIRepository>(&oci("mtls", "mtls-certs"))
        .await;
    let status = wait_ready::<OCIRepository>(&env, "mtls").await;
    assert_eq!(
        status["artifact"]["revision"],
        format!("v1@{}", pushed.digest)
    );
    let bytes = download_matches(&status["artifact"]).await;
    assert_eq!(tar_entries(&bytes), vec!["deploy.yaml".to_string()]);

    env.apply_yaml::<OCIRepository>(&oci("no-client-cert", "ca-only"))
        .await;
    let failed =
        wait_failed::<OCIRepository>(&env, "no-client-cert", "OCIArtifactPullFailed").await;
    assert!(
        failed.message.contains(&registry.host()),
        "{}",
        failed.message
    );
    assert!(
        !failed.message.contains("PRIVATE KEY"),
        "{}",
        failed.message
    );
    let status = status_of(
        &env.api::<OCIRepository>()
            .get("no-client-cert")
            .await
            .expect("get"),
    );
    assert!(status["artifact"].is_null(), "{status}");

    // An OCI HelmRepository and a HelmChart pulled through it with the same Secret.
    env.apply_yaml::<HelmRepository>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: oci-charts
  namespace: {NS}
spec:
  type: oci
  interval: 5m0s
  url: {}
  certSecretRef:
    name: mtls-certs
",
        registry.oci_url("charts")
    ))
    .await;
    let chart = |name: &str, repo: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata:
  name: {name}
  namespace: {NS}
spec:
  interval: 5m0s
  chart: app
  sourceRef:
    kind: HelmRepository
    name: {repo}
  version: '1.x'
"
        )
    };
    env.apply_yaml::<HelmChart>(&chart("oci-app", "oci-charts"))
        .await;
    let status = wait_ready::<HelmChart>(&env, "oci-app").await;
    assert_eq!(status["artifact"]["revision"], "1.1.0");
    let package = download_matches(&status["artifact"]).await;
    assert!(tar_entries(&package).contains(&"app/Chart.yaml".to_string()));

    // An HTTPS HelmRepository requiring client certificates, and a chart from it.
    let https = |name: &str, secret: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: {name}
  namespace: {NS}
spec:
  interval: 5m0s
  url: {}
  certSecretRef:
    name: {secret}
",
            helm_server.url()
        )
    };
    env.apply_yaml::<HelmRepository>(&https("https-charts", "mtls-certs"))
        .await;
    let status = wait_ready::<HelmRepository>(&env, "https-charts").await;
    let index = std::fs::read(repo_dir.path().join("index.yaml")).expect("index");
    assert_eq!(download_matches(&status["artifact"]).await, index);
    env.apply_yaml::<HelmChart>(&chart("https-app", "https-charts"))
        .await;
    let status = wait_ready::<HelmChart>(&env, "https-app").await;
    assert_eq!(status["artifact"]["revision"], "1.1.0");
    let package = download_matches(&status["artifact"]).await;
    assert!(tar_entries(&package).contains(&"app/Chart.yaml".to_string()));

    env.apply_yaml::<HelmRepository>(&https("https-no-client-cert", "ca-only"))
        .await;
    let failed = wait_failed::<HelmRepository>(&env, "https-no-client-cert", "Failed").await;
    assert!(
        failed
            .message
            .starts_with("failed to fetch Helm repository index"),
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains(&helm_server.addr().to_string()),
        "{}",
        failed.message
    );

    // An S3 endpoint behind TLS requiring client certificates (same CA): a Bucket with the
    // certificate reaches Ready with the objects; with only the CA the handshake is refused.
    let s3 = S3Server::builder()
        .tls_with_ca(registry.ca().expect("CA"))
        .require_client_cert()
        .start()
        .expect("moto behind TLS");
    s3.put_object("deploy/app.yaml", b"kind: ConfigMap\n")
        .expect("put");
    env.secret(
        "bucket-keys",
        serde_json::json!({"accesskey": s3.access_key(), "secretkey": s3.secret_key()}),
        "Opaque",
    )
    .await;
    let bucket = |name: &str, secret: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: Bucket
metadata:
  name: {name}
  namespace: {NS}
spec:
  interval: 5m0s
  endpoint: {}
  bucketName: {}
  secretRef:
    name: bucket-keys
  certSecretRef:
    name: {secret}
",
            s3.host(),
            s3.bucket()
        )
    };
    env.apply_yaml::<Bucket>(&bucket("mtls-bucket", "mtls-certs"))
        .await;
    let status = wait_ready::<Bucket>(&env, "mtls-bucket").await;
    let package = download_matches(&status["artifact"]).await;
    assert!(
        tar_entries(&package).contains(&"deploy/app.yaml".to_string()),
        "{:?}",
        tar_entries(&package)
    );
    env.apply_yaml::<Bucket>(&bucket("bucket-no-client-cert", "ca-only"))
        .await;
    let failed =
        wait_failed::<Bucket>(&env, "bucket-no-client-cert", "BucketOperationFailed").await;
    assert!(
        failed.message.contains(&s3.addr().to_string()),
        "{}",
        failed.message
    );
    env.stop().await;
}

/// Copies the files below `from` into `to`, keeping relative paths.
fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let target = to.join(entry.path().strip_prefix(from).expect("below the root"));
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Flux's retry back-off: a HelmRepository whose index is missing is retried after 0.5 s (the
/// test's minimum delay), then 1 s, 2 s, 4 s, ... rather than every 0.5 s; once the index is
/// there, a reconcile request (`flux reconcile source helm`) brings it to Ready at once,
/// whatever the pending back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_sources_back_off_and_recover_once_fixed() {
    let repo_dir = helm_repository_dir();
    let served = tempfile::tempdir().expect("tmp");
    let server = HelmRepoServer::start(served.path()).expect("helm server");
    let env = Env::start().await;
    env.apply_yaml::<HelmRepository>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: late
  namespace: {NS}
spec:
  interval: 1m0s
  url: {}
",
        server.url()
    ))
    .await;
    wait_failed::<HelmRepository>(&env, "late", "Failed").await;
    let index_gets = || {
        server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("index.yaml"))
            .count()
    };
    // Seven seconds of failures: a fixed 0.5 s retry would fetch 14 times; the back-off
    // (0.5 + 1 + 2 + 4 s) at most 5 times from the first failure.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let fetches = index_gets();
    assert!(
        (2..=6).contains(&fetches),
        "{fetches} index fetches in 7 s of failures"
    );

    for entry in std::fs::read_dir(repo_dir.path()).expect("repository") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), served.path().join(entry.file_name())).expect("copy");
    }
    let token = env.request_reconcile::<HelmRepository>("late").await;
    let api = env.api::<HelmRepository>();
    let status = until("the fixed HelmRepository Ready", || async {
        let status = status_of(&api.get("late").await.expect("get"));
        let ready = meta::find_condition(&conditions_of(&status), meta::READY)
            .is_some_and(|c| c.status == "True");
        let ok = ready && status["lastHandledReconcileAt"] == token.as_str();
        (ok.then_some(status.clone()), status.to_string())
    })
    .await;
    let index = std::fs::read(served.path().join("index.yaml")).expect("index");
    assert_eq!(download_matches(&status["artifact"]).await, index);
    env.stop().await;
}

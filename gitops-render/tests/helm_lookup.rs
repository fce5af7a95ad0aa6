//! `lookup` against a cluster: the `lookup` fixture chart rendered with a [`KubeLookup`] on the
//! in-process Kubernetes API server. Offline (no client) the same chart renders exactly as
//! `helm template` does (`helm_fixtures`, fixture `lookup`); with a client it sees Helm's
//! lookup semantics: the object, `{}` when it is missing, the list with `items` each carrying
//! its kind and apiVersion, cluster-scoped kinds ignoring the namespace.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gitops_render::helm::lookup::KubeLookup;
use gitops_render::helm::{Lookup, RenderOptions, template};
use gitops_testkit::cluster::{TestCluster, TestClusterOptions, install_crypto_provider};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, PostParams};

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/helm/lookup/chart")
}

fn render(lookup: Option<Arc<dyn Lookup + Send + Sync>>) -> Result<String, String> {
    let opts = RenderOptions {
        release_name: "rel".into(),
        namespace: "demo".into(),
        kube_version: "v1.31.0".into(),
        lookup,
        ..RenderOptions::default()
    };
    template(&chart(), &opts)
        .map(|r| r.to_helm_output())
        .map_err(|e| e.to_string())
}

async fn create<K>(api: &Api<K>, obj: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_reads_objects_lists_and_cluster_scoped_kinds() {
    install_crypto_provider();
    let cluster = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("test cluster");
    let client = cluster.client().await.expect("client");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in ["demo", "other", "team-a"] {
        create(
            &namespaces,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "demo");
    create(
        &cms,
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "demo"}, "data": {"color": "blue"}}),
    )
    .await;
    for (ns, name) in [("demo", "db"), ("demo", "api"), ("other", "elsewhere")] {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        create(
            &secrets,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": ns}, "stringData": {"k": "v"}}),
        )
        .await;
    }

    let config = kube::Config::from_custom_kubeconfig(cluster.kubeconfig(), &Default::default())
        .await
        .expect("config");
    let lookup: Arc<dyn Lookup + Send + Sync> =
        Arc::new(KubeLookup::new(config).expect("lookup client"));
    // Rendering is synchronous: run it off the runtime's workers, as callers should.
    let out = tokio::task::spawn_blocking(move || render(Some(lookup)))
        .await
        .expect("render thread")
        .expect("renders");
    let want = r#"---
# Source: lookup/templates/report.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: report
data:
  color: "blue"
  name: "settings"
  missing: "{}"
  missingIsEmpty: "true"
  listKind: "SecretList"
  secrets: api=Secret/v1;db=Secret/v1;
  namespace: "team-a"
  namespaceWithNamespace: "team-a"
"#;
    assert_eq!(out, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_of_an_unknown_kind_is_an_error_and_offline_is_empty() {
    install_crypto_provider();
    let cluster = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("test cluster");
    let config = kube::Config::from_custom_kubeconfig(cluster.kubeconfig(), &Default::default())
        .await
        .expect("config");
    let lookup = KubeLookup::new(config).expect("lookup client");
    let err = tokio::task::spawn_blocking(move || {
        let found = lookup.lookup("v1", "NoSuchKind", "demo", "x");
        let missing = lookup.lookup("v1", "ConfigMap", "demo", "absent");
        (found, missing)
    })
    .await
    .expect("lookup thread");
    assert!(
        matches!(&err.0, Err(e) if e.to_string().contains("NoSuchKind")),
        "{:?}",
        err.0
    );
    assert!(matches!(err.1, Ok(None)), "{:?}", err.1);
    let offline = render(None).expect("renders offline");
    assert!(offline.contains("color: \"none\""), "{offline}");
    assert!(offline.contains("listKind: \"none\""), "{offline}");
}

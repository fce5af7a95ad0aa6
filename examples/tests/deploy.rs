//! examples/deploy builds with the Kustomize engine, lists every generated CRD, and applies
//! cleanly to a Kubernetes API server.

use std::path::PathBuf;

use gitops_apply::{Applier as _, ApplyOptions, Owner, ResourceManager};
use gitops_render::kustomize::{BuildOptions, build};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_manifests_build_and_apply() {
    gitops_testkit::cluster::install_crypto_provider();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let built = build(&dir, &BuildOptions::default()).expect("examples/deploy builds");
    let kinds: Vec<String> = built
        .resources
        .iter()
        .map(|r| format!("{}/{}", r.kind(), r.name()))
        .collect();
    for (_, crd) in gitops_examples::crds::all() {
        let name = crd.metadata.name.expect("name");
        assert!(
            kinds.contains(&format!("CustomResourceDefinition/{name}")),
            "{name} in {kinds:?}"
        );
    }
    for expected in [
        "Deployment/gitops-manager",
        "Service/gitops-manager",
        "Service/webhook-receiver",
        "ClusterRole/gitops-manager",
        "Role/gitops-manager-leader-election",
        "ServiceAccount/gitops-manager",
    ] {
        assert!(
            kinds.contains(&expected.to_string()),
            "{expected} in {kinds:?}"
        );
    }
    let objects: Vec<gitops_render::DynamicObject> = built
        .resources
        .iter()
        .map(|r| serde_json::from_value(r.value.to_json()).expect("object"))
        .collect();
    let cluster = gitops_testkit::cluster::TestCluster::start(Default::default())
        .await
        .expect("cluster");
    let manager = ResourceManager::new(
        cluster.client().await.expect("client"),
        Owner::new("test", "gitops.toolkit", "deploy", "default"),
    );
    let changes = manager
        .apply(&objects, &ApplyOptions::default())
        .await
        .expect("applies");
    assert_eq!(changes.len(), objects.len());
    assert!(
        changes
            .to_string()
            .contains("Deployment/flux-system/gitops-manager created"),
        "{changes}"
    );
}

//! The CRDs under examples/deploy/crds/ are what the Rust types generate, carry Flux's
//! group/version/kind and required fields, and are accepted by a Kubernetes API server.

use std::path::PathBuf;

use gitops_examples::crds;

fn crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/crds")
}

#[test]
fn committed_crds_equal_the_generated_ones() {
    let dir = crd_dir();
    let write = std::env::var_os("GITOPS_WRITE_CRDS").is_some();
    for (file, crd) in crds::all() {
        let text = crds::to_yaml(&crd).expect("CRD serialises");
        let path = dir.join(file);
        if write {
            std::fs::create_dir_all(&dir).expect("crd dir");
            std::fs::write(&path, &text).expect("write CRD");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with GITOPS_WRITE_CRDS=1)",
                path.display()
            )
        });
        assert_eq!(
            committed, text,
            "{file} differs from the types (regenerate with GITOPS_WRITE_CRDS=1)"
        );
    }
}

#[test]
fn flux_group_versions_kinds_and_required_fields() {
    let by_name: std::collections::BTreeMap<String, serde_json::Value> = crds::all()
        .into_iter()
        .map(|(_, crd)| {
            let v = serde_json::to_value(&crd).expect("json");
            (v["metadata"]["name"].as_str().expect("name").to_string(), v)
        })
        .collect();
    let expect = [
        (
            "gitrepositories.source.toolkit.fluxcd.io",
            "GitRepository",
            "v1",
            vec!["interval", "url"],
        ),
        (
            "ocirepositories.source.toolkit.fluxcd.io",
            "OCIRepository",
            "v1",
            vec!["interval", "url"],
        ),
        (
            "helmrepositories.source.toolkit.fluxcd.io",
            "HelmRepository",
            "v1",
            vec!["url"],
        ),
        (
            "helmcharts.source.toolkit.fluxcd.io",
            "HelmChart",
            "v1",
            vec!["chart", "interval", "sourceRef"],
        ),
        (
            "buckets.source.toolkit.fluxcd.io",
            "Bucket",
            "v1",
            vec!["bucketName", "endpoint", "interval"],
        ),
        (
            "kustomizations.kustomize.toolkit.fluxcd.io",
            "Kustomization",
            "v1",
            vec!["interval", "prune", "sourceRef"],
        ),
        (
            "providers.notification.toolkit.fluxcd.io",
            "Provider",
            "v1beta3",
            vec!["type"],
        ),
        (
            "alerts.notification.toolkit.fluxcd.io",
            "Alert",
            "v1beta3",
            vec!["eventSources", "providerRef"],
        ),
        (
            "receivers.notification.toolkit.fluxcd.io",
            "Receiver",
            "v1",
            vec!["resources", "secretRef", "type"],
        ),
    ];
    for (name, kind, version, required) in expect {
        let crd = by_name.get(name).unwrap_or_else(|| panic!("no CRD {name}"));
        assert_eq!(crd["spec"]["names"]["kind"], kind);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["name"], version);
        let mut got: Vec<String> = v["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"]
            .as_array()
            .expect("required list")
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect();
        got.sort();
        assert_eq!(got, required, "{name} required fields");
    }
    // Flux's defaults, so Flux's YAML that leaves them out means the same.
    let spec_of = |name: &str| {
        by_name[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]
            .clone()
    };
    let chart = spec_of("helmcharts.source.toolkit.fluxcd.io");
    assert_eq!(chart["version"]["default"], "*");
    assert_eq!(chart["reconcileStrategy"]["default"], "ChartVersion");
    assert_eq!(
        chart["sourceRef"]["properties"]["kind"]["enum"],
        serde_json::json!(["HelmRepository", "GitRepository", "Bucket"])
    );
    let oci = spec_of("ocirepositories.source.toolkit.fluxcd.io");
    assert_eq!(oci["timeout"]["default"], "60s");
    assert_eq!(oci["provider"]["default"], "generic");
    assert_eq!(
        oci["layerSelector"]["properties"]["operation"]["enum"],
        serde_json::json!(["extract", "copy"])
    );
    let bucket = spec_of("buckets.source.toolkit.fluxcd.io");
    assert_eq!(bucket["provider"]["default"], "generic");
    let helm_repo = spec_of("helmrepositories.source.toolkit.fluxcd.io");
    assert_eq!(
        helm_repo["type"]["enum"],
        serde_json::json!(["default", "oci"])
    );
    let git = &by_name["gitrepositories.source.toolkit.fluxcd.io"]["spec"]["versions"][0];
    assert_eq!(git["subresources"]["status"], serde_json::json!({}));
    let artifact = &git["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["artifact"]
        ["properties"];
    for field in [
        "path",
        "url",
        "revision",
        "digest",
        "size",
        "lastUpdateTime",
    ] {
        assert!(artifact.get(field).is_some(), "status.artifact.{field}");
    }
}

#[tokio::test]
async fn a_kubernetes_api_server_establishes_them() {
    gitops_testkit::cluster::install_crypto_provider();
    let cluster = gitops_testkit::cluster::TestCluster::start(Default::default())
        .await
        .expect("test cluster");
    let client = cluster.client().await.expect("client");
    crds::install(&client).await.expect("install CRDs");
    use kube::api::{Api, PostParams};
    let repos: Api<gitops_examples::source::GitRepository> =
        Api::namespaced(client.clone(), "default");
    let repo: gitops_examples::source::GitRepository = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "podinfo", "namespace": "default"},
        "spec": {"url": "https://github.com/stefanprodan/podinfo", "interval": "5m", "ref": {"branch": "master"}}
    }))
    .expect("Flux's documented GitRepository parses");
    let created = repos
        .create(&PostParams::default(), &repo)
        .await
        .expect("created");
    assert_eq!(
        created.spec.reference.and_then(|r| r.branch).as_deref(),
        Some("master")
    );
    // The schema's required fields are enforced by the server (TestCluster does not check
    // `pattern`; a real API server also refuses an invalid interval).
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let gvk = GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "GitRepository");
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(client, "default", &ApiResource::from_gvk(&gvk));
    let no_url: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "no-url", "namespace": "default"},
        "spec": {"interval": "5m"}
    }))
    .expect("object");
    let err = dynamic
        .create(&PostParams::default(), &no_url)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("spec.url"), "{err}");
}

//! The applier against the in-process API server of gitops-testkit.

use std::{sync::Arc, time::Duration};

use gitops_apply::{
    Action, ApplyFailure, ApplyOptions, ChangeSet, Impersonation, Inventory, Owner, PruneOptions,
    ReconcileOptions, ResourceManager, Status, WaitError,
    client::{client_from_kubeconfig, client_from_kubeconfig_file},
    kube::{
        Api, Client,
        api::{Patch, PatchParams, PostParams},
        core::DynamicObject,
    },
    yaml::read_objects,
};
use gitops_testkit::cluster::{DenyRules, Fault, FaultAction, TestCluster, TestClusterOptions};
use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::Job,
    core::v1::{ConfigMap, Namespace},
};
use serde_json::json;

const MANAGER: &str = "gitops-test";
const GROUP: &str = "kustomize.toolkit.fluxcd.io";

fn owner() -> Owner {
    Owner::new(MANAGER, GROUP, "apps", "flux-system")
}

fn testdata(name: &str) -> Vec<DynamicObject> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    read_objects(&text, &path).expect("fixture parses")
}

fn objects(yaml: &str) -> Vec<DynamicObject> {
    read_objects(yaml, "inline").expect("inline YAML parses")
}

fn lines(set: &ChangeSet) -> Vec<String> {
    set.entries.iter().map(|e| e.to_string()).collect()
}

async fn start(options: TestClusterOptions) -> (TestCluster, Client) {
    let cluster = TestCluster::start(options).await.expect("cluster starts");
    let client = cluster.client().await.expect("client");
    (cluster, client)
}

fn config_maps(ns: &str, names: &[&str]) -> String {
    let mut out = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
    for name in names {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n  key: {name}-value\n"
        ));
    }
    out
}

fn dry_runs(cluster: &TestCluster) -> usize {
    cluster
        .requests()
        .iter()
        .filter(|r| r.query.contains("dryRun"))
        .count()
}

#[tokio::test]
async fn first_apply_creates_second_is_unchanged_with_and_without_the_fast_path() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    let set = testdata("app.yaml");
    let first = rm
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    assert_eq!(
        lines(&first),
        vec![
            "Namespace/podinfo created",
            "ConfigMap/podinfo/podinfo-config created",
            "Secret/podinfo/podinfo-token created",
            "Service/podinfo/podinfo created",
            "Deployment/podinfo/podinfo created",
        ]
    );
    let second = rm
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("re-applies");
    assert_eq!(second.count(Action::Unchanged), 5, "{second}");
    // A new manager knows nothing: every object goes through the dry-run comparison.
    let fresh = ResourceManager::new(client.clone(), owner());
    let third = fresh
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("re-applies");
    assert_eq!(third.count(Action::Unchanged), 5, "{third}");
    let cm: Api<ConfigMap> = Api::namespaced(client, "podinfo");
    let live = cm.get("podinfo-config").await.expect("exists");
    let labels = live.metadata.labels.expect("owner labels");
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
        Some("flux-system")
    );
}

#[tokio::test]
async fn a_no_op_reapply_lists_per_kind_and_namespace_and_dry_runs_nothing() {
    let (cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client, owner());
    let set = testdata("app.yaml");
    rm.apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    // Status writes (a controller finishing the rollout) do not make objects drift.
    cluster.complete_rollouts();
    cluster.clear_requests();
    let again = rm
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("re-applies");
    assert_eq!(again.count(Action::Unchanged), 5);
    let requests = cluster.requests();
    assert_eq!(dry_runs(&cluster), 0, "{requests:#?}");
    // One LIST per (kind, namespace): Namespace, ConfigMap, Secret, Service, Deployment.
    assert_eq!(requests.len(), 5, "{requests:#?}");
    assert!(requests.iter().all(|r| r.verb == "list"), "{requests:#?}");
}

#[tokio::test]
async fn a_foreign_server_side_apply_is_detected_and_reverted() {
    let (cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    let set = testdata("app.yaml");
    rm.apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), "podinfo");
    let intruder = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "podinfo-config", "namespace": "podinfo"}, "data": {"color": "red"}});
    cm.patch(
        "podinfo-config",
        &PatchParams::apply("intruder").force(),
        &Patch::Apply(&intruder),
    )
    .await
    .expect("foreign apply");
    cluster.clear_requests();
    let again = rm
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("re-applies");
    let cm_ref = again
        .entries
        .iter()
        .find(|e| e.object.kind == "ConfigMap")
        .expect("entry");
    assert_eq!(cm_ref.action, Action::Configured, "{again}");
    assert_eq!(again.count(Action::Unchanged), 4, "{again}");
    assert_eq!(dry_runs(&cluster), 1, "only the edited object is dry-run");
    let live = cm.get("podinfo-config").await.expect("exists");
    assert_eq!(
        live.data.expect("data").get("color").map(String::as_str),
        Some("blue")
    );
}

#[tokio::test]
async fn a_kubectl_scale_is_detected_diffed_reverted_and_taken_over() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    let set = testdata("app.yaml");
    rm.apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    let deploy: Api<Deployment> = Api::namespaced(client.clone(), "podinfo");
    let params = PatchParams {
        field_manager: Some("kubectl".into()),
        ..PatchParams::default()
    };
    deploy
        .patch(
            "podinfo",
            &params,
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("kubectl-style update");
    let diffs = rm.diff(&set).await.expect("diffs");
    let d = diffs
        .iter()
        .find(|d| d.object.kind == "Deployment")
        .expect("deployment diff");
    assert_eq!(d.action, Action::Configured);
    assert!(d.diff.contains("-  replicas: 5"), "{}", d.diff);
    assert!(d.diff.contains("+  replicas: 2"), "{}", d.diff);
    assert!(
        diffs
            .iter()
            .filter(|d| d.object.kind != "Deployment")
            .all(|d| d.action == Action::Unchanged)
    );
    let secret_diff = diffs
        .iter()
        .find(|d| d.object.kind == "Secret")
        .expect("secret");
    assert!(!secret_diff.diff.contains("s3cr3t"));

    let again = rm
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("re-applies");
    assert!(
        lines(&again).contains(&"Deployment/podinfo/podinfo configured".to_string()),
        "{again}"
    );
    let live = deploy.get("podinfo").await.expect("exists");
    assert_eq!(live.spec.expect("spec").replicas, Some(2));
    let managers: Vec<String> = live
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.subresource.as_deref() != Some("status"))
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        !managers.iter().any(|m| m.starts_with("kubectl")),
        "{managers:?}"
    );
    let diffs = rm.diff(&set).await.expect("diffs");
    assert!(
        diffs
            .iter()
            .all(|d| d.action == Action::Unchanged && d.diff.is_empty())
    );
}

#[tokio::test]
async fn kubectl_client_side_apply_fields_and_annotation_are_taken_over() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "legacy"}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), "legacy");
    let old = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "legacy",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"mode\":\"old\",\"obsolete\":\"yes\"}}"}},
        "data": {"mode": "old", "obsolete": "yes"}});
    let params = PostParams {
        field_manager: Some("kubectl-client-side-apply".into()),
        ..PostParams::default()
    };
    cm.create(&params, &serde_json::from_value(old).expect("cm"))
        .await
        .expect("created by kubectl");
    let set = objects(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: legacy\ndata:\n  mode: new\n",
    );
    let applied = rm
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    assert_eq!(
        lines(&applied),
        vec!["ConfigMap/legacy/settings configured"]
    );
    let live = cm.get("settings").await.expect("exists");
    let data = live.data.expect("data");
    assert_eq!(data.get("mode").map(String::as_str), Some("new"));
    assert!(
        !data.contains_key("obsolete"),
        "field of kubectl was not removed: {data:?}"
    );
    assert!(
        !live
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("kubectl.kubernetes.io/last-applied-configuration")
    );
}

#[tokio::test]
async fn flux_annotations_skip_merge_and_create_only() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pre = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "merged", "namespace": "default", "labels": {"team": "ops"}}, "data": {"a": "1"}});
    let params = PostParams {
        field_manager: Some("kubectl".into()),
        ..PostParams::default()
    };
    cm.create(&params, &serde_json::from_value(pre).expect("cm"))
        .await
        .expect("pre-existing");
    let set = |value: &str| {
        objects(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: off\n  namespace: default\n  annotations:\n    kustomize.toolkit.fluxcd.io/reconcile: disabled\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ignored\n  namespace: default\n  annotations:\n    kustomize.toolkit.fluxcd.io/ssa: Ignore\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: once\n  namespace: default\n  annotations:\n    kustomize.toolkit.fluxcd.io/ssa: IfNotPresent\ndata:\n  v: \"{value}\"\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: merged\n  namespace: default\n  annotations:\n    kustomize.toolkit.fluxcd.io/ssa: Merge\ndata:\n  b: \"{value}\"\n"
        ))
    };
    let first = rm
        .apply_all_staged(&set("1"), &ApplyOptions::default())
        .await
        .expect("applies");
    assert_eq!(
        lines(&first),
        vec![
            "ConfigMap/default/ignored skipped",
            "ConfigMap/default/merged configured",
            "ConfigMap/default/off skipped",
            "ConfigMap/default/once created",
        ]
    );
    assert!(cm.get_opt("off").await.expect("get").is_none());
    assert!(cm.get_opt("ignored").await.expect("get").is_none());
    let merged = cm.get("merged").await.expect("exists");
    assert_eq!(
        merged
            .metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("ops")
    );
    let data = merged.data.expect("data");
    assert_eq!(
        data.get("a").map(String::as_str),
        Some("1"),
        "Merge keeps kubectl's fields"
    );
    let second = rm
        .apply_all_staged(&set("2"), &ApplyOptions::default())
        .await
        .expect("applies");
    assert!(
        lines(&second).contains(&"ConfigMap/default/once skipped".to_string()),
        "{second}"
    );
    let once = cm.get("once").await.expect("exists");
    assert_eq!(
        once.data.expect("data").get("v").map(String::as_str),
        Some("1")
    );
}

#[tokio::test]
async fn removed_objects_are_pruned_unless_disabled_or_not_ours() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    let mut full = objects(&config_maps("shop", &["a", "b"]));
    full.extend(objects(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  namespace: shop\n  annotations:\n    kustomize.toolkit.fluxcd.io/prune: Disabled\n",
    ));
    let opts = ReconcileOptions {
        prune: Some(PruneOptions::default()),
        ..ReconcileOptions::default()
    };
    let first = rm
        .reconcile(&full, &Inventory::new(), &opts)
        .await
        .expect("reconciles");
    assert_eq!(first.inventory.len(), 4);
    // An object in the inventory that another owner has since claimed is not ours to delete.
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "claimed", "namespace": "shop",
        "labels": {"kustomize.toolkit.fluxcd.io/name": "other", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}});
    cm.create(
        &PostParams::default(),
        &serde_json::from_value(other).expect("cm"),
    )
    .await
    .expect("created");
    let mut previous = first.inventory.clone();
    previous.add(
        &gitops_apply::ObjectRef::new("", "ConfigMap", "shop", "claimed"),
        "v1",
    );

    let smaller = objects(&config_maps("shop", &["a"]));
    let second = rm
        .reconcile(&smaller, &previous, &opts)
        .await
        .expect("reconciles");
    let l = lines(&second.change_set);
    assert!(l.contains(&"ConfigMap/shop/b deleted".to_string()), "{l:?}");
    assert!(
        l.contains(&"ConfigMap/shop/keep skipped".to_string()),
        "{l:?}"
    );
    assert!(
        l.contains(&"ConfigMap/shop/claimed skipped".to_string()),
        "{l:?}"
    );
    assert!(cm.get_opt("b").await.expect("get").is_none());
    assert!(cm.get_opt("keep").await.expect("get").is_some());
    assert!(cm.get_opt("claimed").await.expect("get").is_some());
    assert_eq!(
        serde_json::to_value(&second.inventory).expect("json"),
        json!({"entries": [{"id": "_shop__Namespace", "v": "v1"}, {"id": "shop_a__ConfigMap", "v": "v1"}]})
    );
}

#[tokio::test]
async fn prune_waits_for_termination_when_asked() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    let opts = ReconcileOptions {
        prune: Some(PruneOptions::default()),
        ..ReconcileOptions::default()
    };
    let first = rm
        .reconcile(
            &objects(&config_maps("wt", &["x", "y"])),
            &Inventory::new(),
            &opts,
        )
        .await
        .expect("ok");
    let wait_opts = ReconcileOptions {
        prune: Some(PruneOptions {
            policy: gitops_apply::DeletionPolicy::WaitForTermination,
            timeout: Duration::from_secs(10),
        }),
        ..ReconcileOptions::default()
    };
    let second = rm
        .reconcile(
            &objects(&config_maps("wt", &["x"])),
            &first.inventory,
            &wait_opts,
        )
        .await
        .expect("ok");
    assert!(lines(&second.change_set).contains(&"ConfigMap/wt/y deleted".to_string()));
    let cm: Api<ConfigMap> = Api::namespaced(client, "wt");
    assert!(cm.get_opt("y").await.expect("get").is_none());
}

fn job(image: &str, force_annotation: bool) -> Vec<DynamicObject> {
    let annotations = if force_annotation {
        "  annotations:\n    kustomize.toolkit.fluxcd.io/force: Enabled\n"
    } else {
        ""
    };
    objects(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: before\n  namespace: default\n---\n\
         apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  namespace: default\n{annotations}spec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: migrate\n        image: {image}\n"
    ))
}

#[tokio::test]
async fn an_immutable_change_fails_then_succeeds_with_force() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    rm.apply_all_staged(&job("migrate:1", false), &ApplyOptions::default())
        .await
        .expect("applies");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let uid = jobs.get("migrate").await.expect("exists").metadata.uid;

    let err = rm
        .apply_all_staged(&job("migrate:2", false), &ApplyOptions::default())
        .await
        .expect_err("immutable change without force");
    assert!(
        matches!(err.failure, ApplyFailure::Immutable { .. }),
        "{err}"
    );
    assert_eq!(
        err.object().map(ToString::to_string).as_deref(),
        Some("Job/default/migrate")
    );
    // The ConfigMap shares the Job's stage, which fails its dry-run as a whole.
    assert!(lines(&err.partial).is_empty(), "{:?}", lines(&err.partial));

    let forced = ApplyOptions {
        force: true,
        wait_timeout: Duration::from_secs(10),
        ..ApplyOptions::default()
    };
    let ok = rm
        .apply_all_staged(&job("migrate:2", false), &forced)
        .await
        .expect("recreates");
    assert!(
        lines(&ok).contains(&"Job/default/migrate created".to_string()),
        "{ok}"
    );
    let live = jobs.get("migrate").await.expect("exists");
    assert_ne!(live.metadata.uid, uid, "the Job was recreated");

    // The per-object annotation does the same without the global option.
    let by_annotation = ApplyOptions {
        wait_timeout: Duration::from_secs(10),
        ..ApplyOptions::default()
    };
    let ok = rm
        .apply_all_staged(&job("migrate:3", true), &by_annotation)
        .await
        .expect("recreates");
    assert!(
        lines(&ok).contains(&"Job/default/migrate created".to_string()),
        "{ok}"
    );
}

#[tokio::test]
async fn a_crd_and_its_custom_resources_apply_in_one_set() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    let set = testdata("crd-and-cr.yaml");
    let first = rm
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    assert_eq!(
        lines(&first),
        vec![
            "CustomResourceDefinition/widgets.example.com created",
            "Widget/default/gear created"
        ]
    );
    let second = rm
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("re-applies");
    assert_eq!(second.count(Action::Unchanged), 2, "{second}");
}

#[tokio::test]
async fn an_impersonated_user_who_is_denied_gets_an_error_and_nothing_is_recorded() {
    let (cluster, client) = start(TestClusterOptions::default()).await;
    cluster.set_authorizer(Arc::new(DenyRules::new().deny(
        "mallory",
        "patch",
        "configmaps",
    )));
    let mallory = client_from_kubeconfig(
        cluster.kubeconfig(),
        None,
        Some(&Impersonation::User {
            name: "mallory".into(),
            groups: vec![],
        }),
    )
    .await
    .expect("client");
    let rm = ResourceManager::new(mallory, owner());
    let err = rm
        .apply_all_staged(
            &objects(&config_maps("tenant", &["cfg"])),
            &ApplyOptions::default(),
        )
        .await
        .expect_err("denied");
    assert_eq!(
        err.object().map(ToString::to_string).as_deref(),
        Some("ConfigMap/tenant/cfg"),
        "{err}"
    );
    assert!(err.to_string().contains("dry-run apply failed"), "{err}");
    assert_eq!(lines(&err.partial), vec!["Namespace/tenant created"]);
    let cm: Api<ConfigMap> = Api::namespaced(client, "tenant");
    assert!(cm.get_opt("cfg").await.expect("get").is_none());
    assert!(
        cluster
            .requests()
            .iter()
            .any(|r| r.user == "mallory" && r.status == 403)
    );
}

#[tokio::test]
async fn an_object_refused_in_dry_run_leaves_the_rest_of_its_stage_unapplied() {
    let (cluster, client) = start(TestClusterOptions::default()).await;
    cluster.set_authorizer(Arc::new(
        DenyRules::new().deny("mallory", "patch", "secrets"),
    ));
    let mallory = client_from_kubeconfig(
        cluster.kubeconfig(),
        None,
        Some(&Impersonation::User {
            name: "mallory".into(),
            groups: vec![],
        }),
    )
    .await
    .expect("client");
    let rm = ResourceManager::new(mallory, owner());
    let yaml = format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: tenant\nstringData:\n  k: v\n",
        config_maps("tenant", &["cfg"])
    );
    let err = rm
        .apply_all_staged(&objects(&yaml), &ApplyOptions::default())
        .await
        .expect_err("denied");
    assert_eq!(
        err.object().map(ToString::to_string).as_deref(),
        Some("Secret/tenant/s"),
        "{err}"
    );
    // The ConfigMap shares the Secret's stage and sorts before it: it must not be written.
    assert_eq!(lines(&err.partial), vec!["Namespace/tenant created"]);
    let cm: Api<ConfigMap> = Api::namespaced(client, "tenant");
    assert!(cm.get_opt("cfg").await.expect("get").is_none());
}

async fn fault_mid_apply(action: FaultAction) {
    let (cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    let opts = ReconcileOptions {
        prune: Some(PruneOptions::default()),
        ..ReconcileOptions::default()
    };
    let first = rm
        .reconcile(
            &objects(&config_maps("faulty", &["a", "b", "old"])),
            &Inventory::new(),
            &opts,
        )
        .await
        .expect("reconciles");
    let mut next = objects(&config_maps("faulty", &["a", "b"]));
    for obj in &mut next {
        if obj.metadata.name.as_deref() == Some("b") {
            obj.data["data"]["key"] = json!("changed");
        }
    }
    cluster.inject(Fault::new("patch", "configmaps", action).named("b"));
    let err = rm
        .reconcile(&next, &first.inventory, &opts)
        .await
        .expect_err("fault");
    assert_eq!(
        err.error.object().map(ToString::to_string).as_deref(),
        Some("ConfigMap/faulty/b"),
        "{err}"
    );
    assert_eq!(
        lines(&err.error.partial),
        vec!["Namespace/faulty unchanged"],
        "b's stage fails its dry-run as a whole: nothing of it is applied or reported"
    );
    // Nothing pruned, and the inventory to record still lists everything of the previous one.
    let cm: Api<ConfigMap> = Api::namespaced(client, "faulty");
    assert!(cm.get_opt("old").await.expect("get").is_some());
    for entry in &first.inventory.entries {
        assert!(err.inventory.entries.contains(entry), "{entry:?} lost");
    }
    cluster.clear_faults();
    let healed = rm
        .reconcile(&next, &err.inventory, &opts)
        .await
        .expect("reconciles");
    let l = lines(&healed.change_set);
    assert!(
        l.contains(&"ConfigMap/faulty/b configured".to_string()),
        "{l:?}"
    );
    assert!(
        l.contains(&"ConfigMap/faulty/old deleted".to_string()),
        "{l:?}"
    );
}

#[tokio::test]
async fn a_server_error_mid_apply_returns_the_partial_set_and_prunes_nothing() {
    fault_mid_apply(FaultAction::ServerError(500)).await;
}

#[tokio::test]
async fn a_connection_reset_mid_apply_returns_the_partial_set_and_prunes_nothing() {
    fault_mid_apply(FaultAction::ConnectionReset).await;
}

fn deployment(name: &str) -> Vec<DynamicObject> {
    objects(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: app\n        image: nginx:1.27\n"
    ))
}

#[tokio::test]
async fn health_wait_succeeds_when_the_rollout_completes() {
    let (_cluster, client) = start(TestClusterOptions {
        simulate_controllers: true,
        ..TestClusterOptions::default()
    })
    .await;
    let rm = ResourceManager::new(client, owner());
    let set = deployment("ready");
    rm.apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    rm.wait(&set, Duration::from_secs(20))
        .await
        .expect("becomes ready");
}

#[tokio::test]
async fn health_wait_fails_fast_on_progress_deadline_exceeded() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client.clone(), owner());
    let set = deployment("stuck");
    rm.apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    // Act as the deployment controller: the rollout timed out.
    let deploy: Api<Deployment> = Api::namespaced(client, "default");
    let generation = deploy
        .get("stuck")
        .await
        .expect("exists")
        .metadata
        .generation;
    let status = json!({"status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
        "unavailableReplicas": 1, "conditions": [{"type": "Progressing", "status": "False",
        "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"stuck-1\" has timed out progressing."}]}});
    deploy
        .patch_status("stuck", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("status written");
    // A long timeout: only fail-fast can end the wait with `Failed` rather than `Timeout`.
    let err = rm
        .wait(&set, Duration::from_secs(120))
        .await
        .expect_err("failed rollout");
    match err {
        WaitError::Failed { object, message } => {
            assert_eq!(object.to_string(), "Deployment/default/stuck");
            assert!(message.contains("Progress deadline exceeded"), "{message}");
        }
        other => panic!("expected fail-fast, got {other}"),
    }
}

#[tokio::test]
async fn health_wait_times_out_with_a_report_of_what_is_not_ready() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client, owner());
    let mut set = deployment("slow");
    set.extend(objects(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n  namespace: default\n",
    ));
    rm.apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    let err = rm
        .wait(&set, Duration::from_secs(1))
        .await
        .expect_err("times out");
    match err {
        WaitError::Timeout { not_ready } => {
            assert_eq!(not_ready.len(), 1, "{not_ready:?}");
            assert_eq!(not_ready[0].object.to_string(), "Deployment/default/slow");
            assert_eq!(not_ready[0].status, Status::InProgress);
        }
        other => panic!("expected a timeout, got {other}"),
    }
}

#[tokio::test]
async fn a_remote_cluster_from_a_kubeconfig_file() {
    let (cluster, _client) = start(TestClusterOptions::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&path).expect("written");
    let client = client_from_kubeconfig_file(&path, Some("testcluster"), None)
        .await
        .expect("client");
    let rm = ResourceManager::new(client, owner());
    let set = objects(&config_maps("remote", &["c"]));
    let done = rm
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    assert_eq!(done.count(Action::Created), 2);
}

#[tokio::test]
async fn a_new_crd_in_an_already_discovered_group_is_found() {
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let rm = ResourceManager::new(client, owner());
    let mut set = testdata("crd-and-cr.yaml");
    rm.apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    // Same group and version, new kind: the cached discovery of example.com/v1 lacks it.
    set.extend(objects(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gadgets.example.com\nspec:\n  group: example.com\n  names:\n    kind: Gadget\n    listKind: GadgetList\n    plural: gadgets\n    singular: gadget\n  scope: Cluster\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n---\n\
         apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: lever\n  namespace: stray\n",
    ));
    let second = rm
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    assert_eq!(
        lines(&second),
        vec![
            "CustomResourceDefinition/gadgets.example.com created",
            "CustomResourceDefinition/widgets.example.com unchanged",
            // Cluster-scoped: the stray namespace is dropped.
            "Gadget/lever created",
            "Widget/default/gear unchanged",
        ]
    );
}

const SPROCKETS: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: sprockets.example.com\nspec:\n  group: example.com\n  names:\n    kind: Sprocket\n    listKind: SprocketList\n    plural: sprockets\n    singular: sprocket\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    subresources:\n      status: {}\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n---\napiVersion: example.com/v1\nkind: Sprocket\nmetadata:\n  name: ok\n  namespace: default\nspec:\n  teeth: 12\n---\napiVersion: example.com/v1\nkind: Sprocket\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  teeth: 0\n";

async fn set_phase(client: &Client, name: &str, phase: &str) {
    let resource = gitops_apply::kube::core::ApiResource::from_gvk_with_plural(
        &gitops_apply::kube::core::GroupVersionKind::gvk("example.com", "v1", "Sprocket"),
        "sprockets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .expect("status written");
}

#[tokio::test]
async fn cel_health_checks_decide_the_health_of_the_kind_they_name() {
    use gitops_apply::health_exprs::{HealthCheckExprSpec, HealthCheckExprs};
    let (_cluster, client) = start(TestClusterOptions::default()).await;
    let set = objects(SPROCKETS);
    let plain = ResourceManager::new(client.clone(), owner());
    plain
        .apply_all_staged(&set, &ApplyOptions::default())
        .await
        .expect("applies");
    let ok = &set[1..2];
    let bad = &set[2..3];
    // kstatus alone: a kind with no conditions is Current as soon as it exists.
    plain
        .wait(&set[1..], Duration::from_secs(5))
        .await
        .expect("kstatus finds them current");

    let checks = HealthCheckExprs::compile(&[HealthCheckExprSpec {
        api_version: "example.com/v1".into(),
        kind: "Sprocket".into(),
        current: "status.phase == 'Running'".into(),
        failed: Some("status.phase == 'Broken'".into()),
        in_progress: None,
    }])
    .expect("compiles");
    let rm = ResourceManager::new(client.clone(), owner()).with_health_checks(checks);
    // No status yet: the expressions cannot be evaluated, so the wait keeps watching and its
    // timeout report says why.
    match rm.wait(ok, Duration::from_secs(1)).await {
        Err(WaitError::Timeout { not_ready }) => {
            assert_eq!(not_ready.len(), 1, "{not_ready:?}");
            assert_eq!(not_ready[0].object.to_string(), "Sprocket/default/ok");
            assert_eq!(not_ready[0].status, Status::Unknown);
            assert!(
                not_ready[0].message.contains("failed expression"),
                "{}",
                not_ready[0].message
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // Running a moment later: the wait ends when `current` becomes true.
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            set_phase(&client, "ok", "Starting").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            set_phase(&client, "ok", "Running").await;
        })
    };
    rm.wait(ok, Duration::from_secs(20))
        .await
        .expect("current once Running");
    writer.await.expect("writer");
    // Broken: `failed` ends the wait at once, long before its timeout.
    set_phase(&client, "bad", "Broken").await;
    match rm.wait(bad, Duration::from_secs(120)).await {
        Err(WaitError::Failed { object, message }) => {
            assert_eq!(object.to_string(), "Sprocket/default/bad");
            assert!(message.contains("failed is true"), "{message}");
        }
        other => panic!("expected fail-fast, got {other:?}"),
    }
}

#[tokio::test]
async fn managers_sharing_a_discovery_cache_ask_the_server_once_per_group_version() {
    let (cluster, client) = start(TestClusterOptions::default()).await;
    let discovery_requests = |cluster: &TestCluster| {
        cluster
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v1" || r.path == "/apis/apps/v1")
            .count()
    };
    let shared = Arc::new(gitops_apply::DiscoveryCache::new());
    let set = |name: &str| {
        let mut set = objects(&config_maps(name, &["a"]));
        set.extend(deployment(name));
        set
    };
    let first = ResourceManager::new(
        client.clone(),
        Owner::new(MANAGER, GROUP, "one", "flux-system"),
    )
    .with_discovery_cache(shared.clone());
    first
        .apply_all_staged(&set("one"), &ApplyOptions::default())
        .await
        .expect("applies");
    let after_first = discovery_requests(&cluster);
    assert!(
        after_first >= 2,
        "the first manager discovers v1 and apps/v1"
    );
    let second = ResourceManager::new(
        client.clone(),
        Owner::new(MANAGER, GROUP, "two", "flux-system"),
    )
    .with_discovery_cache(shared);
    second
        .apply_all_staged(&set("two"), &ApplyOptions::default())
        .await
        .expect("applies");
    assert_eq!(
        discovery_requests(&cluster),
        after_first,
        "the second manager found every kind in the shared cache"
    );
    // A manager with a cache of its own asks again.
    let third = ResourceManager::new(client, Owner::new(MANAGER, GROUP, "three", "flux-system"));
    third
        .apply_all_staged(&set("three"), &ApplyOptions::default())
        .await
        .expect("applies");
    assert!(discovery_requests(&cluster) > after_first);
}

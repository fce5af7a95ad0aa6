//! Server-side apply, patches and dry-run through kube::Client.

use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

async fn cluster() -> (TestCluster, Client) {
    let c = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("start");
    let client = c.client().await.expect("client");
    (c, client)
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn fields(obj: &ConfigMap, manager: &str) -> Value {
    obj.metadata
        .managed_fields
        .as_ref()
        .expect("managedFields")
        .iter()
        .find(|m| m.manager.as_deref() == Some(manager))
        .and_then(|m| m.fields_v1.as_ref())
        .map(|f| f.0.clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn apply_creates_records_ownership_and_prunes_what_is_no_longer_applied() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let pp = PatchParams::apply("flux");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app", "labels": {"team": "a"}}, "data": {"a": "1", "b": "2"}});
    let created = api
        .patch("app", &pp, &Patch::Apply(&cfg))
        .await
        .expect("apply create");
    assert_eq!(
        fields(&created, "flux"),
        json!({"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {"f:team": {}}}})
    );
    let entry = &created.metadata.managed_fields.as_ref().expect("mf")[0];
    assert_eq!(entry.operation.as_deref(), Some("Apply"));
    assert_eq!(entry.api_version.as_deref(), Some("v1"));
    let rv = created.metadata.resource_version.clone();
    // Re-applying the same configuration is a no-op.
    let again = api
        .patch("app", &pp, &Patch::Apply(&cfg))
        .await
        .expect("noop apply");
    assert_eq!(again.metadata.resource_version, rv);
    // Dropping `b` from the configuration removes it.
    let cfg2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"a": "1"}});
    let pruned = api
        .patch("app", &pp, &Patch::Apply(&cfg2))
        .await
        .expect("apply");
    assert_eq!(
        pruned
            .data
            .expect("data")
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec!["a".to_string()]
    );
    assert!(pruned.metadata.labels.is_none_or(|l| l.is_empty()));
}

#[tokio::test]
async fn conflicts_name_managers_and_fields_and_force_takes_ownership() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("shared".into());
    cm.data = Some(
        [
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "1".to_string()),
        ]
        .into(),
    );
    api.create(
        &PostParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &cm,
    )
    .await
    .expect("create");
    // Applying the same values is shared ownership, not a conflict.
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"a": "1"}});
    api.patch("shared", &PatchParams::apply("flux"), &Patch::Apply(&same))
        .await
        .expect("shared");
    // Different values conflict.
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"a": "2", "b": "2"}});
    let err = api_err(
        api.patch("shared", &PatchParams::apply("flux"), &Patch::Apply(&cfg))
            .await
            .expect_err("conflict"),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 2 conflicts: conflicts with \"kubectl-edit\" using v1:\n- .data.a\n- .data.b"
    );
    let causes = err.details.expect("details").causes;
    assert_eq!(causes.len(), 2);
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].field, ".data.a");
    // Force takes the fields over.
    let forced = api
        .patch(
            "shared",
            &PatchParams::apply("flux").force(),
            &Patch::Apply(&cfg),
        )
        .await
        .expect("force");
    assert_eq!(forced.data.as_ref().expect("data")["a"], "2");
    assert_eq!(
        fields(&forced, "flux"),
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );
    // kubectl-edit keeps only the map itself (the `.` entry its create recorded).
    assert_eq!(fields(&forced, "kubectl-edit"), json!({"f:data": {}}));
}

#[tokio::test]
async fn apply_requires_a_field_manager_and_dry_run_stores_nothing() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}, "data": {"a": "1"}});
    let err = api_err(
        api.patch(
            "dry",
            &PatchParams {
                field_manager: None,
                ..Default::default()
            },
            &Patch::Apply(&cfg),
        )
        .await
        .expect_err("no manager"),
    );
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let rv_before = c.resource_version();
    let out = api
        .patch(
            "dry",
            &PatchParams::apply("flux").dry_run(),
            &Patch::Apply(&cfg),
        )
        .await
        .expect("dry run");
    assert_eq!(out.data.expect("data")["a"], "1");
    assert!(api.get_opt("dry").await.expect("get").is_none());
    assert_eq!(c.resource_version(), rv_before);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("dry2".into());
    api.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &cm,
    )
    .await
    .expect("dry create");
    assert!(api.get_opt("dry2").await.expect("get").is_none());
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    api.delete(
        "dry2",
        &DeleteParams {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .expect("dry delete");
    assert!(api.get_opt("dry2").await.expect("get").is_some());
}

#[tokio::test]
async fn patches_merge_lists_by_their_keys() {
    let (_c, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
          "spec": {"containers": [{"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}]},
                                  {"name": "side", "image": "busybox:1"}]}}}});
    api.patch("web", &PatchParams::apply("flux"), &Patch::Apply(&d))
        .await
        .expect("apply");
    // Strategic merge: the `web` container is merged by name, env merged by name.
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "2"}]}]}}}});
    let out = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(&smp))
        .await
        .expect("smp");
    let pod = out.spec.expect("spec").template.spec.expect("pod");
    assert_eq!(pod.containers.len(), 2);
    assert_eq!(pod.containers[0].image.as_deref(), Some("nginx:2"));
    let env: Vec<String> = pod.containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env, vec!["A", "B"]);
    // Merge patch replaces lists wholesale.
    let mp =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x:1"}]}}}});
    let out = api
        .patch("web", &PatchParams::default(), &Patch::Merge(&mp))
        .await
        .expect("merge");
    assert_eq!(
        out.spec
            .expect("spec")
            .template
            .spec
            .expect("pod")
            .containers
            .len(),
        1
    );
    // JSON patch, including a failing test operation.
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]))
            .expect("patch");
    let out = api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .expect("json patch");
    assert_eq!(out.spec.expect("spec").replicas, Some(4));
    // Apply merges by keys: a second manager adds a container without touching the first.
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "mesh", "image": "envoy:1"}]}}}});
    let out = api
        .patch(
            "web",
            &PatchParams::apply("mesh-injector"),
            &Patch::Apply(&sidecar),
        )
        .await
        .expect("apply sidecar");
    let names: Vec<String> = out
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["only", "mesh"]);
}

#[tokio::test]
async fn status_subresource_is_separate_from_the_main_resource() {
    let (_c, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
          "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}},
        "status": {"replicas": 5}});
    let created = api
        .patch("web", &PatchParams::apply("flux"), &Patch::Apply(&d))
        .await
        .expect("apply");
    assert_eq!(
        created.status.and_then(|s| s.replicas),
        None,
        "status is ignored on the main resource"
    );
    let st = json!({"status": {"replicas": 2, "observedGeneration": 1}, "spec": {"replicas": 9}});
    let out = api
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .expect("status");
    assert_eq!(out.status.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        out.spec.as_ref().and_then(|s| s.replicas),
        Some(1),
        "spec is ignored on /status"
    );
    assert_eq!(out.metadata.generation, Some(1));
}

#[tokio::test]
async fn field_validation_strict_rejects_and_warn_drops_unknown_fields() {
    use kube::api::ValidationDirective;
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "v"}, "data": {"a": "1"}, "bogus": {"x": 1}});
    let strict = PatchParams::apply("flux").validation(ValidationDirective::Strict);
    let err = api_err(
        api.patch("v", &strict, &Patch::Apply(&cfg))
            .await
            .expect_err("strict"),
    );
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"bogus\""
    );
    let warn = PatchParams::apply("flux").validation(ValidationDirective::Warn);
    let made = api
        .patch("v", &warn, &Patch::Apply(&cfg))
        .await
        .expect("warn");
    assert_eq!(made.data.expect("data")["a"], "1");
}

#[tokio::test]
async fn the_scale_subresource_reads_and_writes_replicas() {
    let (_c, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
          "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}});
    api.patch("web", &PatchParams::apply("flux"), &Patch::Apply(&d))
        .await
        .expect("apply");
    let scale = api.get_scale("web").await.expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(
        scale.status.and_then(|s| s.selector).as_deref(),
        Some("app=web")
    );
    let scaled = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("patch scale");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(5));
    let d = api.get("web").await.expect("get");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(5));
    assert_eq!(d.metadata.generation, Some(2));
}

#[tokio::test]
async fn omitted_port_protocols_are_defaulted_before_list_items_are_matched() {
    use k8s_openapi::api::core::v1::Service;
    let (_c, client) = cluster().await;
    let pp = PatchParams::apply("flux");

    // Service ports are keyed by port+protocol: an apply that leaves `protocol` out must
    // address the stored TCP port, not add a second one, and a re-apply must be a no-op.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}});
    let first = services
        .patch("web", &pp, &Patch::Apply(&svc))
        .await
        .expect("apply service");
    let again = services
        .patch("web", &pp, &Patch::Apply(&svc))
        .await
        .expect("re-apply service");
    let ports = again
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .expect("ports");
    assert_eq!(ports.len(), 1, "one port, not a duplicate: {ports:?}");
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(
        first.metadata.resource_version, again.metadata.resource_version,
        "re-applying the same configuration changes nothing"
    );
    let owned = again
        .metadata
        .managed_fields
        .as_ref()
        .expect("managedFields")[0]
        .fields_v1
        .as_ref()
        .expect("fieldsV1")
        .0
        .clone();
    assert!(
        owned["f:spec"]["f:ports"]
            .get(r#"k:{"port":80,"protocol":"TCP"}"#)
            .is_some(),
        "the port is owned under its defaulted key: {owned}"
    );

    // Container ports are keyed by containerPort+protocol, in every pod template.
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                "ports": [{"containerPort": 8080}]}]}}}});
    let first = deployments
        .patch("web", &pp, &Patch::Apply(&deploy))
        .await
        .expect("apply deployment");
    let again = deployments
        .patch("web", &pp, &Patch::Apply(&deploy))
        .await
        .expect("re-apply deployment");
    let container = &again
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
        .containers[0];
    let ports = container.ports.clone().expect("container ports");
    assert_eq!(
        ports.len(),
        1,
        "one container port, not a duplicate: {ports:?}"
    );
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(
        first.metadata.resource_version,
        again.metadata.resource_version
    );
}

//! CustomResourceDefinitions, kube-runtime (watcher, reflector, Controller) against TestCluster.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, CustomResource, CustomResourceExt, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    core::{DynamicObject, GroupVersionKind},
    discovery::{self, Discovery},
    runtime::{
        Controller,
        controller::Action,
        reflector,
        wait::{await_condition, conditions},
        watcher::{self, Event},
    },
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A test kind.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wd"
)]
pub struct WidgetSpec {
    /// Size.
    pub size: i64,
    /// Mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// Status of a Widget.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct WidgetStatus {
    /// Last reconciled generation.
    pub observed: i64,
}

async fn cluster_with_crd() -> (TestCluster, Client) {
    let c = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("start");
    let client = c.client().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd = serde_json::to_value(Widget::crd()).expect("crd json");
    // Add an enum and a default to the generated schema.
    let spec_schema =
        &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    spec_schema["properties"]["mode"]["enum"] = json!(["fast", "slow"]);
    spec_schema["properties"]["mode"]["default"] = json!("slow");
    crd["spec"]["versions"][0]["selectableFields"] = json!([{"jsonPath": ".spec.mode"}]);
    let crd: CustomResourceDefinition = serde_json::from_value(crd).expect("crd");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create crd");
    let established = await_condition(
        crds,
        "widgets.example.com",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(5), established)
        .await
        .expect("established in time")
        .expect("wait");
    (c, client)
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crd_is_served_validated_defaulted_and_its_deletion_removes_objects() {
    let (_c, client) = cluster_with_crd().await;
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("widgets.example.com")
        .await
        .expect("crd");
    let conds = crd.status.and_then(|s| s.conditions).expect("conditions");
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "NamesAccepted" && c.status == "True")
    );
    // Discovery sees it.
    let d = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let (ar, _) = d
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .expect("served");
    assert_eq!(ar.plural, "widgets");
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let w = api
        .create(
            &PostParams::default(),
            &Widget::new(
                "a",
                WidgetSpec {
                    size: 1,
                    mode: None,
                },
            ),
        )
        .await
        .expect("create");
    assert_eq!(
        w.spec.mode.as_deref(),
        Some("slow"),
        "schema default applied"
    );
    assert_eq!(w.metadata.generation, Some(1));
    // Unknown fields are pruned; Strict validation rejects them.
    let dynapi: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let obj: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "b"}, "spec": {"size": 2, "bogus": true}}))
        .expect("obj");
    let made = dynapi
        .create(&PostParams::default(), &obj)
        .await
        .expect("create with unknown field");
    assert!(made.data["spec"].get("bogus").is_none());
    let strict = PostParams {
        field_manager: None,
        dry_run: false,
    };
    let _ = strict;
    let obj_c: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "c"}, "spec": {"size": "big", "mode": "medium"}}))
        .expect("obj");
    let err = api_err(
        dynapi
            .create(&PostParams::default(), &obj_c)
            .await
            .expect_err("invalid"),
    );
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "Widget.example.com \"c\" is invalid: [spec.mode: Unsupported value: \"medium\": supported values: \"fast\", \"slow\", spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"]"
    );
    // selectableFields make field selectors work on custom resources.
    let fast: Widget = Widget::new(
        "fast",
        WidgetSpec {
            size: 1,
            mode: Some("fast".into()),
        },
    );
    api.create(&PostParams::default(), &fast)
        .await
        .expect("fast");
    let selected = api
        .list(&ListParams::default().fields("spec.mode=fast"))
        .await
        .expect("field selector");
    assert_eq!(
        selected
            .items
            .iter()
            .map(|w| w.name_any())
            .collect::<Vec<_>>(),
        vec!["fast"]
    );
    let err = api_err(
        api.list(&ListParams::default().fields("spec.size=1"))
            .await
            .expect_err("not selectable"),
    );
    assert_eq!(err.message, "field label not supported: spec.size");
    // Strategic merge patch is not available for custom resources.
    let err = api_err(
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 3}})),
        )
        .await
        .expect_err("415"),
    );
    assert_eq!(err.code, 415);
    // Status subresource: spec changes bump generation, status changes do not.
    let w = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}})),
        )
        .await
        .expect("patch");
    assert_eq!(w.metadata.generation, Some(2));
    let w = api
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observed": 2}})),
        )
        .await
        .expect("status");
    assert_eq!(w.metadata.generation, Some(2));
    assert_eq!(w.status.map(|s| s.observed), Some(2));
    // Deleting the CRD deletes its objects and stops serving the kind.
    Api::<CustomResourceDefinition>::all(client.clone())
        .delete("widgets.example.com", &DeleteParams::default())
        .await
        .expect("delete crd");
    for _ in 0..100 {
        if Api::<CustomResourceDefinition>::all(client.clone())
            .get_opt("widgets.example.com")
            .await
            .expect("get")
            .is_none()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = api_err(api.list(&ListParams::default()).await.expect_err("gone"));
    assert_eq!(err.code, 404);
    // Recreating the CRD shows no leftover objects.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .expect("recreate");
    assert!(
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    let _ = discovery::pinned_kind(
        &client,
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
    )
    .await
    .expect("pinned");
}

#[tokio::test]
async fn watcher_and_reflector_see_events_in_order() {
    let (_c, client) = cluster_with_crd().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    for i in 0..3 {
        api.create(
            &PostParams::default(),
            &Widget::new(
                &format!("w{i}"),
                WidgetSpec {
                    size: i,
                    mode: None,
                },
            ),
        )
        .await
        .expect("create");
    }
    let (reader, writer) = reflector::store::<Widget>();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(api.clone(), watcher::Config::default()),
    );
    let mut stream = stream.boxed();
    let mut events = Vec::new();
    let collect = async {
        while let Some(ev) = stream.next().await {
            let ev = ev.expect("watch event");
            match ev {
                Event::Init => events.push("init".to_string()),
                Event::InitApply(o) => events.push(format!("initapply {}", o.name_any())),
                Event::InitDone => {
                    events.push("initdone".to_string());
                    api.create(
                        &PostParams::default(),
                        &Widget::new(
                            "late",
                            WidgetSpec {
                                size: 9,
                                mode: None,
                            },
                        ),
                    )
                    .await
                    .expect("late");
                    api.patch(
                        "w0",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"size": 10}})),
                    )
                    .await
                    .expect("patch");
                    api.delete("w1", &DeleteParams::default())
                        .await
                        .expect("delete");
                }
                Event::Apply(o) => events.push(format!("apply {} {}", o.name_any(), o.spec.size)),
                Event::Delete(o) => {
                    events.push(format!("delete {}", o.name_any()));
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .expect("events in time");
    assert_eq!(
        events,
        vec![
            "init",
            "initapply w0",
            "initapply w1",
            "initapply w2",
            "initdone",
            "apply late 9",
            "apply w0 10",
            "delete w1"
        ]
    );
    let mut names: Vec<String> = reader.state().iter().map(|w| w.name_any()).collect();
    names.sort();
    assert_eq!(names, vec!["late", "w0", "w2"]);
}

#[tokio::test]
async fn a_controller_reconciles_custom_resources() {
    let (_c, client) = cluster_with_crd().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &Widget::new(
            "ctl",
            WidgetSpec {
                size: 3,
                mode: None,
            },
        ),
    )
    .await
    .expect("create");
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(#[from] kube::Error);
    async fn reconcile(w: Arc<Widget>, api: Arc<Api<Widget>>) -> Result<Action, E> {
        let generation = w.metadata.generation.unwrap_or_default();
        let patch = json!({"apiVersion": "example.com/v1", "kind": "Widget", "status": {"observed": generation}});
        api.patch_status(
            &w.name_any(),
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(&patch),
        )
        .await?;
        Ok(Action::await_change())
    }
    let ctl_api = Arc::new(api.clone());
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            ctl_api,
        )
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);
    let mut observed = None;
    for _ in 0..200 {
        if let Some(s) = api.get("ctl").await.expect("get").status {
            observed = Some(s.observed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(observed, Some(1));
    api.patch(
        "ctl",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 4}})),
    )
    .await
    .expect("bump");
    let mut observed = None;
    for _ in 0..200 {
        let s = api
            .get("ctl")
            .await
            .expect("get")
            .status
            .map(|s| s.observed);
        if s == Some(2) {
            observed = s;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.abort();
    assert_eq!(observed, Some(2));
    let w = api.get("ctl").await.expect("get");
    let managers: Vec<(String, String, String)> = w
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.operation.unwrap_or_default(),
                m.subresource.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("widget-controller".into(), "Apply".into(), "status".into())),
        "{managers:?}"
    );
}

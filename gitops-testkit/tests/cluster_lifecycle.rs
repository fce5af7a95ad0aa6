//! Deletion semantics: propagation policies and the garbage collector, deletecollection,
//! preconditions; streaming lists (sendInitialEvents).

use std::time::Duration;

use futures::StreamExt;
use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, PostParams, Preconditions},
    runtime::watcher,
};
use serde_json::json;

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

async fn owner_and_child(api: &Api<ConfigMap>, owner: &str, child: &str) {
    let o = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": owner}})).expect("cm"),
        )
        .await
        .expect("owner");
    let child_cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": child, "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": o.uid().expect("uid")}]}}))
        .expect("child");
    api.create(&PostParams::default(), &child_cm)
        .await
        .expect("child");
}

async fn eventually_gone(api: &Api<ConfigMap>, name: &str) -> bool {
    for _ in 0..100 {
        if api.get_opt(name).await.expect("get").is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn propagation_policies_follow_the_garbage_collector() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    // Background: the owner goes at once, the dependent right after.
    owner_and_child(&api, "bg", "bg-child").await;
    api.delete("bg", &DeleteParams::background())
        .await
        .expect("delete");
    assert!(api.get_opt("bg").await.expect("get").is_none());
    assert!(eventually_gone(&api, "bg-child").await);
    // Orphan: the dependent stays, without its ownerReference.
    owner_and_child(&api, "or", "or-child").await;
    api.delete("or", &DeleteParams::orphan())
        .await
        .expect("delete");
    assert!(eventually_gone(&api, "or").await);
    let child = api.get("or-child").await.expect("orphan kept");
    assert!(child.metadata.owner_references.is_none_or(|r| r.is_empty()));
    // Foreground: the owner waits (foregroundDeletion finalizer) until dependents are gone.
    owner_and_child(&api, "fg", "fg-child").await;
    let mut held: ConfigMap = api.get("fg-child").await.expect("child");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.replace("fg-child", &PostParams::default(), &held)
        .await
        .expect("hold child");
    api.delete("fg", &DeleteParams::foreground())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let owner = api.get("fg").await.expect("owner waits");
    assert!(owner.metadata.deletion_timestamp.is_some());
    assert_eq!(
        owner.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    let mut child = api.get("fg-child").await.expect("child");
    assert!(child.metadata.deletion_timestamp.is_some());
    child.metadata.finalizers = None;
    api.replace("fg-child", &PostParams::default(), &child)
        .await
        .expect("release");
    assert!(eventually_gone(&api, "fg").await);
}

#[tokio::test]
async fn deletecollection_and_preconditions() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for (name, tier) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": tier}}}))
                .expect("cm");
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    let out = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("tier=x"),
        )
        .await
        .expect("deletecollection");
    let deleted: Vec<String> = out
        .left()
        .expect("a list")
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(deleted, vec!["a", "b"]);
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(left, vec!["c"]);
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let err = api_err(api.delete("c", &dp).await.expect_err("precondition"));
    assert_eq!(err.code, 409);
    assert!(err.message.starts_with("Operation cannot be fulfilled on configmaps \"c\": Precondition failed: UID in precondition: not-the-uid, UID in object meta: "), "{}", err.message);
}

#[tokio::test]
async fn streaming_lists_send_initial_events_then_a_bookmark() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..3 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}})).expect("cm");
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    let cfg = watcher::Config::default().streaming_lists();
    let mut stream = watcher::watcher(api, cfg).boxed();
    let mut names = Vec::new();
    let collect = async {
        while let Some(ev) = stream.next().await {
            match ev.expect("event") {
                watcher::Event::InitApply(o) => names.push(o.name_any()),
                watcher::Event::InitDone => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), collect)
        .await
        .expect("initial events end with a bookmark");
    assert_eq!(names, vec!["s0", "s1", "s2"]);
}

#[tokio::test]
async fn without_the_namespace_controller_a_namespace_waits_for_finalize() {
    use k8s_openapi::api::core::v1::Namespace;
    let c = TestCluster::start(TestClusterOptions {
        namespace_lifecycle: false,
        ..Default::default()
    })
    .await
    .expect("start");
    let client = c.client().await.expect("client");
    let nss: Api<Namespace> = Api::all(client);
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "stuck"}})).expect("ns"),
    )
    .await
    .expect("create");
    nss.delete("stuck", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ns = nss.get("stuck").await.expect("still there");
    assert_eq!(
        ns.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Terminating")
    );
    assert_eq!(
        ns.spec.as_ref().and_then(|s| s.finalizers.clone()),
        Some(vec!["kubernetes".to_string()])
    );
    // A plain update cannot drop spec.finalizers; /finalize can, and that completes the deletion.
    let mut cleared = ns.clone();
    cleared.spec.as_mut().expect("spec").finalizers = Some(vec![]);
    let still = nss
        .replace("stuck", &PostParams::default(), &cleared)
        .await
        .expect("update");
    assert_eq!(
        still.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_string()])
    );
    let mut cleared = nss.get("stuck").await.expect("get");
    cleared.spec.as_mut().expect("spec").finalizers = Some(vec![]);
    nss.replace_subresource("finalize", "stuck", &PostParams::default(), &cleared)
        .await
        .expect("finalize");
    assert!(nss.get_opt("stuck").await.expect("get").is_none());
}

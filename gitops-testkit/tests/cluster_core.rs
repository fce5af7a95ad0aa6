//! TestCluster through kube::Client: discovery, CRUD, errors, list/watch, defaulting.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace, Secret, Service},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams},
    discovery::{Discovery, Scope},
};
use serde_json::json;

async fn cluster() -> (TestCluster, Client) {
    let c = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("start");
    let client = c.client().await.expect("client");
    (c, client)
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn discovery_reports_builtin_kinds_with_scope_and_short_names() {
    let (_c, client) = cluster().await;
    let v = client.apiserver_version().await.expect("version");
    assert_eq!(v.git_version, "v1.32.0");
    let d = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let apps = d.get("apps").expect("apps group");
    let (ar, caps) = apps
        .recommended_resources()
        .into_iter()
        .find(|(ar, _)| ar.kind == "Deployment")
        .expect("deployments");
    assert_eq!(ar.plural, "deployments");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "deployments/status" || s.plural == "status")
    );
    let agg = Discovery::new(client)
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    let core = agg.get("").expect("core group");
    let (ns, caps) = core
        .recommended_resources()
        .into_iter()
        .find(|(ar, _)| ar.kind == "Namespace")
        .expect("namespaces");
    assert_eq!(ns.plural, "namespaces");
    assert_eq!(caps.scope, Scope::Cluster);
}

#[tokio::test]
async fn crud_sets_system_metadata_and_uses_optimistic_concurrency() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &cm("a", &[("k", "v")]))
        .await
        .expect("create");
    let uid = created.metadata.uid.clone().expect("uid");
    assert_eq!(uid.len(), 36);
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1: u64 = created
        .metadata
        .resource_version
        .clone()
        .expect("rv")
        .parse()
        .expect("numeric rv");
    assert!(
        created.metadata.generation.is_none(),
        "ConfigMaps carry no generation"
    );
    let mf = created
        .metadata
        .managed_fields
        .clone()
        .expect("managedFields");
    assert_eq!(mf[0].operation.as_deref(), Some("Update"));
    assert_eq!(
        mf[0].fields_v1.as_ref().expect("fieldsV1").0,
        json!({"f:data": {".": {}, "f:k": {}}})
    );

    let err = api_err(
        api.create(&PostParams::default(), &cm("a", &[]))
            .await
            .expect_err("exists"),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "AlreadyExists");
    assert_eq!(err.message, "configmaps \"a\" already exists");

    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .expect("update");
    let rv2: u64 = updated
        .metadata
        .resource_version
        .clone()
        .expect("rv")
        .parse()
        .expect("rv");
    assert!(rv2 > rv1);
    // The stale copy now conflicts.
    let err = api_err(
        api.replace("a", &PostParams::default(), &changed)
            .await
            .expect_err("stale"),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // A no-op update keeps the resourceVersion.
    let same = api
        .replace("a", &PostParams::default(), &updated)
        .await
        .expect("noop update");
    assert_eq!(
        same.metadata.resource_version,
        updated.metadata.resource_version
    );

    let err = api_err(api.get("missing").await.expect_err("404"));
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "configmaps \"missing\" not found");

    // Namespaces must exist.
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let err = api_err(
        other
            .create(&PostParams::default(), &cm("x", &[]))
            .await
            .expect_err("no ns"),
    );
    assert_eq!(err.code, 404);
    assert_eq!(err.message, "namespaces \"nope\" not found");

    // generateName.
    let mut g = cm("", &[]);
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let made = api
        .create(&PostParams::default(), &g)
        .await
        .expect("generateName");
    let name = made.metadata.name.expect("name");
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Invalid names answer 422 with the validation message.
    let err = api_err(
        api.create(&PostParams::default(), &cm("Bad_Name", &[]))
            .await
            .expect_err("invalid"),
    );
    assert_eq!(err.code, 422);
    assert!(err.message.starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", err.message);

    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(api.get_opt("a").await.expect("get_opt").is_none());
    assert!(
        c.requests()
            .iter()
            .any(|r| r.verb == "delete" && r.path == "/api/v1/namespaces/default/configmaps/a")
    );
}

#[tokio::test]
async fn list_supports_selectors_and_pagination() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..7 {
        let mut m = cm(&format!("cm-{i}"), &[]);
        m.metadata.labels = Some(
            [(
                "parity".to_string(),
                if i % 2 == 0 { "even" } else { "odd" }.to_string(),
            )]
            .into(),
        );
        api.create(&PostParams::default(), &m)
            .await
            .expect("create");
    }
    let even = api
        .list(&ListParams::default().labels("parity=even"))
        .await
        .expect("list");
    assert_eq!(even.items.len(), 4);
    let named = api
        .list(&ListParams::default().fields("metadata.name=cm-3"))
        .await
        .expect("list");
    assert_eq!(named.items.len(), 1);
    let err = api_err(
        api.list(&ListParams::default().fields("spec.x=1"))
            .await
            .expect_err("bad field"),
    );
    assert_eq!(err.code, 400);
    assert_eq!(err.message, "field label not supported: spec.x");
    let page1 = api
        .list(&ListParams::default().limit(3))
        .await
        .expect("page 1");
    assert_eq!(page1.items.len(), 3);
    assert_eq!(page1.metadata.remaining_item_count, Some(4));
    let token = page1.metadata.continue_.clone().expect("continue");
    let page2 = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(page2.items.len(), 3);
    let page3 = api
        .list(
            &ListParams::default()
                .limit(3)
                .continue_token(page2.metadata.continue_.as_deref().expect("continue")),
        )
        .await
        .expect("page 3");
    assert_eq!(page3.items.len(), 1);
    assert!(page3.metadata.continue_.is_none());
    let mut all: Vec<String> = page1
        .items
        .into_iter()
        .chain(page2.items)
        .chain(page3.items)
        .filter_map(|c| c.metadata.name)
        .collect();
    all.dedup();
    assert_eq!(all.len(), 7);
}

#[tokio::test]
async fn watch_streams_events_in_order_and_answers_gone_for_old_versions() {
    let c = TestCluster::start(TestClusterOptions {
        history_limit: 5,
        ..Default::default()
    })
    .await
    .expect("start");
    let client = c.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = api
        .create(&PostParams::default(), &cm("w", &[("n", "0")]))
        .await
        .expect("create");
    let rv = first.metadata.resource_version.clone().expect("rv");
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .expect("watch")
        .boxed();
    let mut latest = first;
    for n in 1..=2 {
        latest.data = Some([("n".to_string(), n.to_string())].into());
        latest = api
            .replace("w", &PostParams::default(), &latest)
            .await
            .expect("update");
    }
    api.delete("w", &DeleteParams::default())
        .await
        .expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("event in time")
            .expect("ok")
            .expect("some");
        match ev {
            WatchEvent::Modified(o) => {
                seen.push(format!("MODIFIED {}", o.data.unwrap_or_default()["n"]))
            }
            WatchEvent::Deleted(o) => {
                seen.push(format!("DELETED {}", o.metadata.name.unwrap_or_default()))
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, vec!["MODIFIED 1", "MODIFIED 2", "DELETED w"]);
    // Push the first revisions out of the (tiny) history: watching from them is 410 Gone.
    for i in 0..6 {
        api.create(&PostParams::default(), &cm(&format!("f{i}"), &[]))
            .await
            .expect("create");
    }
    let mut old = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    match old.try_next().await.expect("ok").expect("event") {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(
                e.message
                    .starts_with(&format!("too old resource version: {rv} (")),
                "{}",
                e.message
            );
        }
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_sends_bookmarks_when_asked() {
    let c = TestCluster::start(TestClusterOptions {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .expect("start");
    let client = c.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let list = api.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.expect("rv");
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(3), stream.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("event");
    assert!(matches!(ev, WatchEvent::Bookmark(_)), "{ev:?}");
}

#[tokio::test]
async fn defaults_and_immutable_fields_follow_the_api() {
    let (_c, client) = cluster().await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
                 "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}
    })).expect("deployment");
    let created = deps
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let spec = created.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("RollingUpdate")
    );
    let c0 = &spec.template.spec.as_ref().expect("pod spec").containers[0];
    assert_eq!(c0.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c0.ports.as_ref().expect("ports")[0].protocol.as_deref(),
        Some("TCP")
    );
    assert_eq!(created.metadata.generation, Some(1));
    // Changing the selector is rejected.
    let mut changed = created.clone();
    changed.spec.as_mut().expect("spec").selector.match_labels =
        Some([("app".to_string(), "other".to_string())].into());
    changed
        .spec
        .as_mut()
        .expect("spec")
        .template
        .metadata
        .as_mut()
        .expect("meta")
        .labels = Some([("app".to_string(), "other".to_string())].into());
    let err = api_err(
        deps.replace("web", &PostParams::default(), &changed)
            .await
            .expect_err("immutable"),
    );
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"other\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    );
    // Generation moves with spec changes only.
    let mut labelled = created.clone();
    labelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    let l = deps
        .replace("web", &PostParams::default(), &labelled)
        .await
        .expect("label");
    assert_eq!(l.metadata.generation, Some(1));
    let mut scaled = l.clone();
    scaled.spec.as_mut().expect("spec").replicas = Some(3);
    let s = deps
        .replace("web", &PostParams::default(), &scaled)
        .await
        .expect("scale");
    assert_eq!(s.metadata.generation, Some(2));

    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})).expect("svc");
    let created = svcs
        .create(&PostParams::default(), &svc)
        .await
        .expect("svc");
    let sspec = created.spec.clone().expect("spec");
    assert_eq!(sspec.type_.as_deref(), Some("ClusterIP"));
    let port = &sspec.ports.as_ref().expect("ports")[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert!(
        sspec
            .cluster_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
    let mut moved = created.clone();
    moved.spec.as_mut().expect("spec").cluster_ip = Some("10.96.200.200".into());
    moved.spec.as_mut().expect("spec").cluster_ips = Some(vec!["10.96.200.200".into()]);
    let err = api_err(
        svcs.replace("web", &PostParams::default(), &moved)
            .await
            .expect_err("immutable ip"),
    );
    assert_eq!(err.code, 422);
    assert!(err.message.contains("spec.clusterIPs[0]: Invalid value: []string{\"10.96.200.200\"}: may not change once set"), "{}", err.message);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}, "immutable": true})).expect("secret");
    let s = secrets
        .create(&PostParams::default(), &s)
        .await
        .expect("secret");
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert!(s.string_data.is_none());
    assert_eq!(
        s.data.as_ref().expect("data")["password"].0,
        b"hunter2".to_vec()
    );
    let mut s2 = s.clone();
    s2.data = Some(
        [(
            "password".to_string(),
            k8s_openapi::ByteString(b"x".to_vec()),
        )]
        .into(),
    );
    let err = api_err(
        secrets
            .replace("s", &PostParams::default(), &s2)
            .await
            .expect_err("immutable secret"),
    );
    assert_eq!(
        err.message,
        "Secret \"s\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
}

#[tokio::test]
async fn finalizers_defer_deletion_and_namespaces_take_their_contents() {
    let (_c, client) = cluster().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns");
    let created = nss.create(&PostParams::default(), &ns).await.expect("ns");
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Active")
    );
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &held)
        .await
        .expect("held");
    api.create(&PostParams::default(), &cm("free", &[]))
        .await
        .expect("free");
    api.delete("held", &DeleteParams::default())
        .await
        .expect("delete held");
    let h = api.get("held").await.expect("still there");
    assert!(h.metadata.deletion_timestamp.is_some());
    nss.delete("team", &DeleteParams::default())
        .await
        .expect("delete ns");
    let terminating = nss.get("team").await.expect("terminating");
    assert_eq!(
        terminating.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    let err = api_err(
        api.create(&PostParams::default(), &cm("late", &[]))
            .await
            .expect_err("terminating"),
    );
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "configmaps \"late\" is forbidden: unable to create new content in namespace team because it is being terminated"
    );
    // Releasing the finalizer lets the namespace finish.
    let mut h = api.get("held").await.expect("held");
    h.metadata.finalizers = None;
    api.replace("held", &PostParams::default(), &h)
        .await
        .expect("release");
    for _ in 0..100 {
        if nss.get_opt("team").await.expect("get").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(nss.get_opt("team").await.expect("get").is_none());
    assert!(
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn tls_kubeconfig_carries_the_generated_ca() {
    let c = TestCluster::start(TestClusterOptions {
        tls: true,
        ..Default::default()
    })
    .await
    .expect("start");
    assert!(c.url().starts_with("https://127.0.0.1:"));
    let kc = c.kubeconfig();
    let cluster = kc.clusters[0].cluster.as_ref().expect("cluster");
    assert!(cluster.certificate_authority_data.is_some());
    let client = c.client().await.expect("client");
    let api: Api<Namespace> = Api::all(client);
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list over TLS")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"default".to_string()));
}

#[tokio::test]
async fn dropping_the_cluster_stops_the_server_and_its_watches() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut stream = api
        .watch(&WatchParams::default().timeout(60), "0")
        .await
        .expect("watch")
        .boxed();
    drop(c);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = stream.next().await {
            if ev.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the watch stream ends when the cluster is dropped"
    );
    assert!(
        api.list(&ListParams::default()).await.is_err(),
        "no server answers any more"
    );
}

#[tokio::test]
async fn metadata_only_requests_answer_partial_object_metadata() {
    use kube::{
        core::PartialObjectMeta,
        runtime::{WatchStreamExt, watcher},
    };
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut m = cm("meta", &[("big", "value")]);
    m.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
    api.create(&PostParams::default(), &m)
        .await
        .expect("create");
    let pm = api.get_metadata("meta").await.expect("get_metadata");
    assert_eq!(pm.metadata.labels.as_ref().expect("labels")["app"], "x");
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .expect("list_metadata");
    assert_eq!(list.items.len(), 1);
    let mut stream = watcher(
        Api::<PartialObjectMeta<ConfigMap>>::namespaced(client, "default"),
        watcher::Config::default(),
    )
    .applied_objects()
    .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("in time")
        .expect("some")
        .expect("ok");
    assert_eq!(first.metadata.name.as_deref(), Some("meta"));
}

//! Impersonation and authorization, fault injection, simulated controllers, inspection.

use std::{sync::Arc, time::Duration};

use gitops_testkit::cluster::{DenyRules, Fault, FaultAction, TestCluster, TestClusterOptions};
use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::Job,
    core::v1::{ConfigMap, Pod},
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn impersonating(c: &TestCluster, user: &str) -> Client {
    let mut config = Config::from_custom_kubeconfig(c.kubeconfig(), &Default::default())
        .await
        .expect("config");
    config.auth_info.impersonate = Some(user.to_string());
    Client::try_from(config).expect("client")
}

#[tokio::test]
async fn impersonated_users_meet_the_authorizer() {
    let c = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("start");
    c.set_authorizer(Arc::new(
        DenyRules::new().deny("bob", "delete", "configmaps").deny(
            "testcluster-admin",
            "impersonate",
            "users",
        ),
    ));
    let admin = c.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("x".into());
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    // The admin may not impersonate at all under these rules.
    let bob = impersonating(&c, "bob").await;
    let bob_api: Api<ConfigMap> = Api::namespaced(bob, "default");
    let err = api_err(bob_api.get("x").await.expect_err("impersonation denied"));
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "users \"bob\" is forbidden: User \"testcluster-admin\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    // Allow impersonation; bob can read but not delete.
    c.set_authorizer(Arc::new(DenyRules::new().deny(
        "bob",
        "delete",
        "configmaps",
    )));
    bob_api.get("x").await.expect("bob reads");
    let err = api_err(
        bob_api
            .delete("x", &DeleteParams::default())
            .await
            .expect_err("bob may not delete"),
    );
    assert_eq!(err.code, 403);
    assert_eq!(err.reason, "Forbidden");
    assert_eq!(
        err.message,
        "configmaps \"x\" is forbidden: User \"bob\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    let log = c.requests();
    assert!(
        log.iter()
            .any(|r| r.user == "bob" && r.verb == "get" && r.status == 200)
    );
    assert!(
        log.iter()
            .any(|r| r.user == "bob" && r.verb == "delete" && r.status == 403)
    );
}

#[tokio::test]
async fn faults_are_injected_per_verb_resource_and_name() {
    let c = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("start");
    let client = c.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("f".into());
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    c.inject(
        Fault::new("get", "configmaps", FaultAction::ServerError(500))
            .named("f")
            .times(1),
    );
    let err = api_err(api.get("f").await.expect_err("500"));
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    api.get("f").await.expect("the fault applied once");
    // kube::Client retries 503 and 429 by itself: the log shows the failed attempt first.
    c.clear_requests();
    c.inject(
        Fault::new("get", "configmaps", FaultAction::ServerError(503))
            .named("f")
            .times(1),
    );
    api.get("f").await.expect("retried after 503");
    c.inject(
        Fault::new(
            "list",
            "configmaps",
            FaultAction::TooManyRequests { retry_after: 1 },
        )
        .times(1),
    );
    api.list(&ListParams::default())
        .await
        .expect("retried after 429");
    let statuses: Vec<(String, u16)> = c
        .requests()
        .into_iter()
        .map(|r| (r.verb, r.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("get".to_string(), 503),
            ("get".to_string(), 200),
            ("list".to_string(), 429),
            ("list".to_string(), 200)
        ]
    );
    c.inject(Fault::new("patch", "configmaps", FaultAction::Conflict).times(1));
    let err = api_err(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "b"}})),
        )
        .await
        .expect_err("409"),
    );
    assert_eq!(err.code, 409);
    c.inject(Fault::new("delete", "configmaps", FaultAction::ConnectionReset).times(1));
    let e = api
        .delete("f", &DeleteParams::default())
        .await
        .expect_err("reset");
    assert!(
        !matches!(e, kube::Error::Api(_)),
        "a transport error, not a Status: {e:?}"
    );
    c.inject(
        Fault::new(
            "get",
            "configmaps",
            FaultAction::Latency(Duration::from_millis(300)),
        )
        .times(1),
    );
    let started = std::time::Instant::now();
    api.get("f").await.expect("slow get");
    assert!(started.elapsed() >= Duration::from_millis(300));
    c.clear_faults();
    api.delete("f", &DeleteParams::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn a_closed_watch_is_resumed_by_the_watcher() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let c = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("start");
    let client = c.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    c.inject(
        Fault::new(
            "watch",
            "configmaps",
            FaultAction::CloseWatch(Duration::from_millis(100)),
        )
        .times(1),
    );
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(Ok(cm)) = stream.next().await {
            let _ = tx.send(cm.metadata.name.unwrap_or_default());
        }
    });
    // The first watch is closed by the server after 100ms; the object comes after that.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("after-close".into());
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("in time")
        .expect("some");
    task.abort();
    assert_eq!(got, "after-close");
    let watches = c.requests().iter().filter(|r| r.verb == "watch").count();
    assert!(
        watches >= 2,
        "the watch was re-established ({watches} watch requests)"
    );
}

fn deployment() -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
          "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}})
}

#[tokio::test]
async fn without_controllers_workloads_stay_unready_until_told() {
    let c = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("start");
    let client = c.client().await.expect("client");
    let api: Api<Deployment> = Api::namespaced(client, "default");
    api.patch("web", &PatchParams::apply("t"), &Patch::Apply(deployment()))
        .await
        .expect("apply");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = api.get("web").await.expect("get");
    assert!(
        d.status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .is_none()
    );
    c.complete_rollouts();
    let d = api.get("web").await.expect("get");
    let s = d.status.expect("status");
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(s.ready_replicas, Some(2));
    let conds = s.conditions.expect("conditions");
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Progressing"
                && c.reason.as_deref() == Some("NewReplicaSetAvailable"))
    );
}

#[tokio::test]
async fn simulated_controllers_complete_rollouts_jobs_and_pods() {
    let c = TestCluster::start(TestClusterOptions {
        simulate_controllers: true,
        rollout_delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .expect("start");
    let client = c.client().await.expect("client");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deps.patch("web", &PatchParams::apply("t"), &Patch::Apply(deployment()))
        .await
        .expect("apply");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job: Job = serde_json::from_value(
        json!({"metadata": {"name": "once"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}}}),
    )
    .expect("job");
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("job");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})).expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    let mut done = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let d = deps.get("web").await.expect("d");
        let j = jobs.get("once").await.expect("j");
        let p = pods.get("p").await.expect("p");
        let d_ok = d.status.and_then(|s| s.available_replicas) == Some(2);
        let j_ok = j
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Complete"));
        let p_ok = p.status.and_then(|s| s.phase).as_deref() == Some("Running");
        if d_ok && j_ok && p_ok {
            done = true;
            break;
        }
    }
    assert!(done, "deployment, job and pod all reported ready");
    let job2: Job = serde_json::from_value(
        json!({"metadata": {"name": "doomed"}, "spec": {"suspend": true, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}}}),
    )
    .expect("job");
    jobs.create(&PostParams::default(), &job2)
        .await
        .expect("job2");
    c.fail_job("default", "doomed").expect("fail");
    let j = jobs.get("doomed").await.expect("j");
    assert!(j.status.and_then(|s| s.conditions).is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == "Failed" && c.reason.as_deref() == Some("BackoffLimitExceeded"))
    }));
    let snapshot = c.snapshot();
    assert!(
        snapshot
            .iter()
            .any(|o| o["kind"] == "Job" && o["metadata"]["name"] == "doomed")
    );
}

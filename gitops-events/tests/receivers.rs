//! Receivers served on 127.0.0.1 and called over HTTP: valid and invalid signatures and
//! tokens, wrong event types, malformed payloads, oversized bodies, unknown paths.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use gitops_events::providers::HmacAlgorithm;
use gitops_events::{
    ReceiverConfig, ReceiverType, ReconcileRequest, ReconcileTrigger, ResourceRef, TriggerError,
    async_trait,
};
use serde_json::json;

#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<ReconcileRequest>>,
    fail: bool,
}

#[async_trait]
impl ReconcileTrigger for Recorder {
    async fn reconcile(&self, request: ReconcileRequest) -> Result<(), TriggerError> {
        if self.fail {
            return Err(TriggerError("cluster unreachable".into()));
        }
        self.requests.lock().unwrap().push(request);
        Ok(())
    }
}

const TOKEN: &str = "s3cr3t-webhook-token";

struct Harness {
    base: String,
    recorder: Arc<Recorder>,
    client: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(receivers: Vec<ReceiverConfig>, limit: usize, fail: bool) -> Self {
        let recorder = Arc::new(Recorder {
            fail,
            ..Default::default()
        });
        let app = gitops_events::receiver::router(receivers, recorder.clone(), limit);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Harness {
            base,
            recorder,
            client: reqwest::Client::new(),
            _task: task,
        }
    }

    async fn post(
        &self,
        receiver: &ReceiverConfig,
        headers: &[(&str, String)],
        body: impl Into<Vec<u8>>,
    ) -> (u16, String) {
        let mut req = self
            .client
            .post(format!("{}{}", self.base, receiver.webhook_path()));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.body(body.into()).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    fn triggered(&self) -> usize {
        self.recorder.requests.lock().unwrap().len()
    }
}

fn receiver(t: ReceiverType, events: &[&str]) -> ReceiverConfig {
    let mut r = ReceiverConfig::new("flux-system", format!("{t}-receiver"), t, TOKEN);
    r.events = events.iter().map(|s| s.to_string()).collect();
    r.resources = vec![ResourceRef {
        api_version: "source.toolkit.fluxcd.io/v1".into(),
        kind: "GitRepository".into(),
        name: "webapp".into(),
        ..Default::default()
    }];
    r
}

fn sign(algo: HmacAlgorithm, body: &[u8]) -> String {
    format!(
        "{}={}",
        algo.as_str(),
        algo.sign_hex(TOKEN.as_bytes(), body)
    )
}

#[tokio::test]
async fn generic_accepts_at_its_path_and_404s_elsewhere() {
    let r = receiver(ReceiverType::Generic, &[]);
    let h = Harness::start(vec![r.clone()], 1024, false).await;
    assert_eq!(h.post(&r, &[], "{}").await.0, 200);
    let req = h.recorder.requests.lock().unwrap()[0].clone();
    assert_eq!(req.receiver_name, "generic-receiver");
    assert_eq!(
        req.resources[0].namespace, "flux-system",
        "defaulted to the receiver's"
    );
    let other = ReceiverConfig::new(
        "flux-system",
        "generic-receiver",
        ReceiverType::Generic,
        "wrong-token",
    );
    let (status, _) = h.post(&other, &[], "{}").await;
    assert_eq!(status, 404);
    assert_eq!(h.triggered(), 1);
}

#[tokio::test]
async fn generic_hmac_signatures() {
    let r = receiver(ReceiverType::GenericHmac, &[]);
    let h = Harness::start(vec![r.clone()], 1024, false).await;
    let body = br#"{"x":1}"#;
    for algo in [
        HmacAlgorithm::Sha1,
        HmacAlgorithm::Sha256,
        HmacAlgorithm::Sha512,
    ] {
        let (status, _) = h
            .post(&r, &[("X-Signature", sign(algo, body))], body.to_vec())
            .await;
        assert_eq!(status, 200, "{algo:?}");
    }
    let (status, text) = h
        .post(
            &r,
            &[("X-Signature", sign(HmacAlgorithm::Sha256, b"other"))],
            body.to_vec(),
        )
        .await;
    assert_eq!((status, text.trim()), (401, "invalid X-Signature"));
    assert_eq!(h.post(&r, &[], body.to_vec()).await.0, 401);
    assert_eq!(
        h.post(&r, &[("X-Signature", "md5=00".into())], body.to_vec())
            .await
            .0,
        401
    );
    assert_eq!(h.triggered(), 3);
}

#[tokio::test]
async fn github_signatures_events_and_ping() {
    let r = receiver(ReceiverType::GitHub, &["push"]);
    let h = Harness::start(vec![r.clone()], 1024, false).await;
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let ok256 = ("X-Hub-Signature-256", sign(HmacAlgorithm::Sha256, &body));
    let (status, _) = h
        .post(
            &r,
            &[ok256.clone(), ("X-GitHub-Event", "push".into())],
            body.clone(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        h.recorder.requests.lock().unwrap()[0].event.as_deref(),
        Some("push")
    );
    // Legacy SHA-1 header.
    let ok1 = ("X-Hub-Signature", sign(HmacAlgorithm::Sha1, &body));
    assert_eq!(
        h.post(&r, &[ok1, ("X-GitHub-Event", "push".into())], body.clone())
            .await
            .0,
        200
    );
    // Wrong signature, missing signature.
    let bad = (
        "X-Hub-Signature-256",
        sign(HmacAlgorithm::Sha256, b"tampered"),
    );
    assert_eq!(
        h.post(&r, &[bad, ("X-GitHub-Event", "push".into())], body.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        h.post(&r, &[("X-GitHub-Event", "push".into())], body.clone())
            .await
            .0,
        401
    );
    // Event type not accepted.
    let (status, text) = h
        .post(
            &r,
            &[ok256.clone(), ("X-GitHub-Event", "issues".into())],
            body.clone(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(text.contains("issues"), "{text}");
    // Ping answers without reconciling.
    let (status, text) = h
        .post(
            &r,
            &[ok256, ("X-GitHub-Event", "ping".into())],
            body.clone(),
        )
        .await;
    assert_eq!((status, text.trim()), (200, "pong"));
    assert_eq!(h.triggered(), 2);
}

#[tokio::test]
async fn gitlab_token_and_event() {
    let r = receiver(ReceiverType::GitLab, &["Push Hook", "Tag Push Hook"]);
    let h = Harness::start(vec![r.clone()], 1024, false).await;
    let ok = ("X-Gitlab-Token", TOKEN.to_string());
    assert_eq!(
        h.post(
            &r,
            &[ok.clone(), ("X-Gitlab-Event", "Push Hook".into())],
            "{}"
        )
        .await
        .0,
        200
    );
    assert_eq!(
        h.post(
            &r,
            &[
                ("X-Gitlab-Token", "nope".into()),
                ("X-Gitlab-Event", "Push Hook".into())
            ],
            "{}"
        )
        .await
        .0,
        401
    );
    assert_eq!(
        h.post(
            &r,
            &[ok, ("X-Gitlab-Event", "Merge Request Hook".into())],
            "{}"
        )
        .await
        .0,
        400
    );
    assert_eq!(h.triggered(), 1);
}

#[tokio::test]
async fn bitbucket_server_hmac_and_ping() {
    let r = receiver(ReceiverType::Bitbucket, &["repo:refs_changed"]);
    let h = Harness::start(vec![r.clone()], 1024, false).await;
    let body = br#"{"eventKey":"repo:refs_changed"}"#.to_vec();
    let sig = ("X-Hub-Signature", sign(HmacAlgorithm::Sha256, &body));
    assert_eq!(
        h.post(
            &r,
            &[sig.clone(), ("X-Event-Key", "repo:refs_changed".into())],
            body.clone()
        )
        .await
        .0,
        200
    );
    assert_eq!(
        h.post(
            &r,
            &[sig.clone(), ("X-Event-Key", "diagnostics:ping".into())],
            body.clone()
        )
        .await
        .0,
        200
    );
    assert_eq!(
        h.post(
            &r,
            &[sig, ("X-Event-Key", "pr:opened".into())],
            body.clone()
        )
        .await
        .0,
        400
    );
    let bad = ("X-Hub-Signature", sign(HmacAlgorithm::Sha256, b"x"));
    assert_eq!(
        h.post(
            &r,
            &[bad, ("X-Event-Key", "repo:refs_changed".into())],
            body
        )
        .await
        .0,
        401
    );
    assert_eq!(h.triggered(), 1);
}

#[tokio::test]
async fn harbor_authorization_header() {
    let r = receiver(ReceiverType::Harbor, &[]);
    let h = Harness::start(vec![r.clone()], 1024, false).await;
    assert_eq!(
        h.post(&r, &[("Authorization", TOKEN.into())], "{}").await.0,
        200
    );
    assert_eq!(
        h.post(&r, &[("Authorization", "Bearer x".into())], "{}")
            .await
            .0,
        401
    );
    assert_eq!(h.post(&r, &[], "{}").await.0, 401);
    assert_eq!(h.triggered(), 1);
}

#[tokio::test]
async fn registry_payload_checks() {
    let dockerhub = receiver(ReceiverType::DockerHub, &[]);
    let quay = receiver(ReceiverType::Quay, &[]);
    let acr = receiver(ReceiverType::Acr, &[]);
    let gcr = receiver(ReceiverType::Gcr, &[]);
    let nexus = receiver(ReceiverType::Nexus, &[]);
    let h = Harness::start(
        vec![
            dockerhub.clone(),
            quay.clone(),
            acr.clone(),
            gcr.clone(),
            nexus.clone(),
        ],
        4096,
        false,
    )
    .await;
    let dh =
        json!({"push_data": {"tag": "1.2.3"}, "repository": {"repo_name": "org/app"}}).to_string();
    assert_eq!(h.post(&dockerhub, &[], dh).await.0, 200);
    assert_eq!(h.post(&dockerhub, &[], r#"{"push_data":{}}"#).await.0, 400);
    assert_eq!(h.post(&dockerhub, &[], "not json").await.0, 400);

    let q = json!({"docker_url": "quay.io/org/app", "updated_tags": ["1.2.3"]}).to_string();
    assert_eq!(h.post(&quay, &[], q).await.0, 200);
    assert_eq!(h.post(&quay, &[], r#"{"docker_url":"x"}"#).await.0, 400);

    let a = json!({"action": "push", "target": {"repository": "app", "tag": "1"}, "request": {"host": "r.azurecr.io"}}).to_string();
    assert_eq!(h.post(&acr, &[], a).await.0, 200);
    assert_eq!(h.post(&acr, &[], r#"{"target":{}}"#).await.0, 400);

    let data = |action: &str| {
        base64::engine::general_purpose::STANDARD.encode(
            json!({"action": action, "digest": "gcr.io/p/app@sha256:00", "tag": "gcr.io/p/app:1"})
                .to_string(),
        )
    };
    let insert =
        json!({"message": {"data": data("INSERT"), "messageId": "1"}, "subscription": "s"})
            .to_string();
    let delete =
        json!({"message": {"data": data("DELETE"), "messageId": "2"}, "subscription": "s"})
            .to_string();
    assert_eq!(h.post(&gcr, &[], insert).await.0, 200);
    assert_eq!(h.post(&gcr, &[], delete).await.0, 400);
    assert_eq!(
        h.post(&gcr, &[], r#"{"message":{"data":"!!"}}"#).await.0,
        400
    );

    let n = br#"{"action":"CREATED","repositoryName":"maven-releases"}"#.to_vec();
    let sig = HmacAlgorithm::Sha1.sign_hex(TOKEN.as_bytes(), &n);
    assert_eq!(
        h.post(&nexus, &[("X-Nexus-Webhook-Signature", sig)], n.clone())
            .await
            .0,
        200
    );
    assert_eq!(
        h.post(&nexus, &[("X-Nexus-Webhook-Signature", "00".into())], n)
            .await
            .0,
        401
    );
    assert_eq!(h.triggered(), 5);
}

#[tokio::test]
async fn cdevents_type_checks() {
    let r = receiver(
        ReceiverType::CdEvents,
        &["dev.cdevents.change.merged.0.2.0"],
    );
    let h = Harness::start(vec![r.clone()], 4096, false).await;
    let event = |t: &str| {
        json!({
            "context": {"version": "0.4.1", "id": "1", "source": "/ci", "type": t, "timestamp": "2024-01-01T00:00:00Z"},
            "subject": {"id": "c1", "source": "/ci", "content": {}},
        })
        .to_string()
    };
    let merged = "dev.cdevents.change.merged.0.2.0";
    assert_eq!(
        h.post(&r, &[("Ce-Type", merged.into())], event(merged))
            .await
            .0,
        200
    );
    assert_eq!(
        h.post(&r, &[], event("dev.cdevents.change.created.0.2.0"))
            .await
            .0,
        400,
        "type not in the events list"
    );
    assert_eq!(
        h.post(
            &r,
            &[("Ce-Type", "dev.cdevents.other.0.1.0".into())],
            event(merged)
        )
        .await
        .0,
        400,
        "Ce-Type contradicts the payload"
    );
    assert_eq!(h.post(&r, &[], event("com.example.thing")).await.0, 400);
    assert_eq!(h.triggered(), 1);
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_validation() {
    let r = receiver(ReceiverType::Generic, &[]);
    let h = Harness::start(vec![r.clone()], 1024, false).await;
    assert_eq!(h.post(&r, &[], vec![b'a'; 1024]).await.0, 200);
    assert_eq!(h.post(&r, &[], vec![b'a'; 1025]).await.0, 413);
    assert_eq!(h.triggered(), 1);
}

#[tokio::test]
async fn trigger_failures_answer_500() {
    let r = receiver(ReceiverType::Generic, &[]);
    let h = Harness::start(vec![r.clone()], 1024, true).await;
    let (status, text) = h.post(&r, &[], "{}").await;
    assert_eq!(status, 500);
    assert!(!text.contains(TOKEN));
}

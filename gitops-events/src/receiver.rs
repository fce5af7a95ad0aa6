//! Receivers: inbound webhooks from Git hosts and registries that ask for an immediate
//! reconciliation (Flux's `Receiver`).
//!
//! Each receiver listens at `/hook/<hex sha256(token + name + namespace)>`. A request is
//! checked as its sender signs it (HMAC signatures, shared tokens, payload shapes; all
//! comparisons in constant time), filtered by event type, and then handed to a
//! [`ReconcileTrigger`] as a [`ReconcileRequest`]. Answers: `200` accepted (or a ping), `400`
//! malformed payload or event type not accepted, `401` missing or wrong signature/token,
//! `404` no receiver at this path, `413` body over the size limit, `500` the trigger failed.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::Secret;
use crate::providers::HmacAlgorithm;

/// The default limit of a webhook body: 3 MiB (GitHub's push payloads stay well under).
pub const DEFAULT_BODY_LIMIT: usize = 3 * 1024 * 1024;

/// The receiver types, by Flux's `.spec.type` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiverType {
    /// `generic`: the secret path is the only check.
    Generic,
    /// `generic-hmac`: `X-Signature: <sha1|sha256|sha512>=<hex HMAC of the body>`.
    GenericHmac,
    /// `github` (and Gitea): `X-Hub-Signature-256` / `X-Hub-Signature`, `X-GitHub-Event`.
    GitHub,
    /// `gitlab`: `X-Gitlab-Token`, `X-Gitlab-Event`.
    GitLab,
    /// `bitbucket` (Server / Data Center): `X-Hub-Signature` HMAC-SHA256, `X-Event-Key`.
    Bitbucket,
    /// `harbor`: `Authorization` equals the token.
    Harbor,
    /// `dockerhub`: the payload must be a Docker Hub push.
    DockerHub,
    /// `quay`: the payload must be a Quay push.
    Quay,
    /// `nexus`: `X-Nexus-Webhook-Signature` HMAC-SHA1.
    Nexus,
    /// `gcr`: a Pub/Sub push of a Container Registry `INSERT` notification.
    Gcr,
    /// `acr`: an Azure Container Registry push payload.
    Acr,
    /// `cdevents`: a CDEvents payload, its type filtered.
    CdEvents,
}

impl ReceiverType {
    /// All types.
    pub const ALL: [ReceiverType; 12] = [
        ReceiverType::Generic,
        ReceiverType::GenericHmac,
        ReceiverType::GitHub,
        ReceiverType::GitLab,
        ReceiverType::Bitbucket,
        ReceiverType::Harbor,
        ReceiverType::DockerHub,
        ReceiverType::Quay,
        ReceiverType::Nexus,
        ReceiverType::Gcr,
        ReceiverType::Acr,
        ReceiverType::CdEvents,
    ];

    /// Flux's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverType::Generic => "generic",
            ReceiverType::GenericHmac => "generic-hmac",
            ReceiverType::GitHub => "github",
            ReceiverType::GitLab => "gitlab",
            ReceiverType::Bitbucket => "bitbucket",
            ReceiverType::Harbor => "harbor",
            ReceiverType::DockerHub => "dockerhub",
            ReceiverType::Quay => "quay",
            ReceiverType::Nexus => "nexus",
            ReceiverType::Gcr => "gcr",
            ReceiverType::Acr => "acr",
            ReceiverType::CdEvents => "cdevents",
        }
    }
}

impl fmt::Display for ReceiverType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for an unknown receiver type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown receiver type {0:?}")]
pub struct UnknownReceiverType(pub String);

impl FromStr for ReceiverType {
    type Err = UnknownReceiverType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReceiverType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownReceiverType(s.to_string()))
    }
}

/// An object a receiver asks to reconcile (`.spec.resources[]`): a name, or `*` with labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// `apiVersion`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Name, or `*`.
    pub name: String,
    /// Namespace (the receiver's when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Labels selecting objects when the name is `*`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_labels: std::collections::BTreeMap<String, String>,
}

/// One receiver.
#[derive(Clone)]
pub struct ReceiverConfig {
    /// The receiver's namespace.
    pub namespace: String,
    /// The receiver's name.
    pub name: String,
    /// Its type.
    pub receiver_type: ReceiverType,
    /// The shared token (HMAC key, expected header value, path salt).
    pub token: Secret,
    /// Event types to accept (empty: all).
    pub events: Vec<String>,
    /// What to reconcile.
    pub resources: Vec<ResourceRef>,
}

impl fmt::Debug for ReceiverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverConfig")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("receiver_type", &self.receiver_type)
            .field("token", &self.token)
            .field("events", &self.events)
            .field("resources", &self.resources)
            .finish()
    }
}

impl ReceiverConfig {
    /// A receiver with no event filter and no resources.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        receiver_type: ReceiverType,
        token: impl Into<Secret>,
    ) -> Self {
        ReceiverConfig {
            namespace: namespace.into(),
            name: name.into(),
            receiver_type,
            token: token.into(),
            events: Vec::new(),
            resources: Vec::new(),
        }
    }

    /// The webhook path, `/hook/<hex sha256(token + name + namespace)>` (Flux's
    /// `.status.webhookPath`).
    pub fn webhook_path(&self) -> String {
        webhook_path(self.token.expose(), &self.name, &self.namespace)
    }
}

/// `/hook/<hex sha256(token + name + namespace)>`.
pub fn webhook_path(token: &str, name: &str, namespace: &str) -> String {
    let digest = Sha256::digest(format!("{token}{name}{namespace}").as_bytes());
    format!("/hook/{}", hex::encode(digest))
}

/// "Reconcile these resources now", from an accepted webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileRequest {
    /// The receiver's namespace.
    pub receiver_namespace: String,
    /// The receiver's name.
    pub receiver_name: String,
    /// The receiver's type.
    pub receiver_type: String,
    /// The event type the sender declared, when it declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// What to reconcile (namespaces defaulted to the receiver's).
    pub resources: Vec<ResourceRef>,
}

impl fmt::Display for ReconcileRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({}",
            self.receiver_namespace, self.receiver_name, self.receiver_type
        )?;
        if let Some(e) = &self.event {
            write!(f, ", event {e:?}")?;
        }
        f.write_str("): ")?;
        if self.resources.is_empty() {
            return f.write_str("reconcile (no resources configured)");
        }
        f.write_str("reconcile ")?;
        for (i, r) in self.resources.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}/{}/{}", r.kind, r.namespace, r.name)?;
            if !r.match_labels.is_empty() {
                let labels: Vec<String> = r
                    .match_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                write!(f, " [{}]", labels.join(","))?;
            }
        }
        Ok(())
    }
}

/// The failure a trigger reports (the webhook gets a 500).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TriggerError(pub String);

/// Acts on accepted webhooks, for example by setting `reconcile.fluxcd.io/requestedAt`.
#[async_trait]
pub trait ReconcileTrigger: Send + Sync {
    /// Requests a reconciliation of the resources.
    async fn reconcile(&self, request: ReconcileRequest) -> Result<(), TriggerError>;
}

#[derive(Clone)]
struct ServerState {
    receivers: Arc<HashMap<String, Arc<ReceiverConfig>>>,
    trigger: Arc<dyn ReconcileTrigger>,
}

/// An axum router serving `POST /hook/{digest}` for the receivers, with a body limit.
pub fn router(
    receivers: Vec<ReceiverConfig>,
    trigger: Arc<dyn ReconcileTrigger>,
    body_limit: usize,
) -> Router {
    let map = receivers
        .into_iter()
        .map(|r| {
            let path = r.webhook_path();
            let digest = path.trim_start_matches("/hook/").to_string();
            (digest, Arc::new(r))
        })
        .collect();
    Router::new()
        .route("/hook/{digest}", post(handle))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(ServerState {
            receivers: Arc::new(map),
            trigger,
        })
}

/// Serves a router on a listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short explanation (never containing secrets).
    pub message: String,
}

impl Rejection {
    fn unauthorized(msg: impl Into<String>) -> Self {
        Rejection {
            status: StatusCode::UNAUTHORIZED,
            message: msg.into(),
        }
    }
    fn bad_request(msg: impl Into<String>) -> Self {
        Rejection {
            status: StatusCode::BAD_REQUEST,
            message: msg.into(),
        }
    }
}

/// What validation concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Reconcile; the declared event type, if any.
    Accept(Option<String>),
    /// A ping: answer 200, reconcile nothing.
    Ping,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn check_event(receiver: &ReceiverConfig, event: &str) -> Result<(), Rejection> {
    if receiver.events.is_empty()
        || receiver
            .events
            .iter()
            .any(|e| e.eq_ignore_ascii_case(event))
    {
        Ok(())
    } else {
        Err(Rejection::bad_request(format!(
            "event type {event:?} is not accepted by this receiver"
        )))
    }
}

fn json_object(body: &[u8], what: &str) -> Result<serde_json::Map<String, Value>, Rejection> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Rejection::bad_request(format!(
            "the {what} payload is not a JSON object"
        ))),
        Err(e) => Err(Rejection::bad_request(format!(
            "the {what} payload is not JSON: {e}"
        ))),
    }
}

fn require_str(
    obj: &serde_json::Map<String, Value>,
    path: &[&str],
    what: &str,
) -> Result<String, Rejection> {
    let mut v: Option<&Value> = None;
    for (i, key) in path.iter().enumerate() {
        v = if i == 0 {
            obj.get(*key)
        } else {
            v.and_then(|x| x.get(*key))
        };
    }
    v.and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            Rejection::bad_request(format!(
                "the {what} payload lacks the string field {}",
                path.join(".")
            ))
        })
}

/// Checks one request against one receiver.
pub fn validate(
    receiver: &ReceiverConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verdict, Rejection> {
    let token = receiver.token.expose();
    match receiver.receiver_type {
        ReceiverType::Generic => Ok(Verdict::Accept(None)),
        ReceiverType::GenericHmac => {
            let sig = header(headers, "X-Signature")
                .ok_or_else(|| Rejection::unauthorized("missing X-Signature header"))?;
            let (algo, hex) = sig
                .split_once('=')
                .ok_or_else(|| Rejection::unauthorized("malformed X-Signature header"))?;
            let algo: HmacAlgorithm = algo
                .parse()
                .map_err(|_| Rejection::unauthorized("unsupported X-Signature hash function"))?;
            if algo.verify_hex(token.as_bytes(), body, hex) {
                Ok(Verdict::Accept(None))
            } else {
                Err(Rejection::unauthorized("invalid X-Signature"))
            }
        }
        ReceiverType::GitHub => {
            let (algo, sig) = if let Some(s) = header(headers, "X-Hub-Signature-256") {
                (HmacAlgorithm::Sha256, s.strip_prefix("sha256="))
            } else if let Some(s) = header(headers, "X-Hub-Signature") {
                (HmacAlgorithm::Sha1, s.strip_prefix("sha1="))
            } else {
                return Err(Rejection::unauthorized(
                    "missing X-Hub-Signature-256 or X-Hub-Signature header",
                ));
            };
            let sig = sig.ok_or_else(|| Rejection::unauthorized("malformed signature header"))?;
            if !algo.verify_hex(token.as_bytes(), body, sig) {
                return Err(Rejection::unauthorized("invalid signature"));
            }
            let event = header(headers, "X-GitHub-Event")
                .ok_or_else(|| Rejection::bad_request("missing X-GitHub-Event header"))?;
            if event == "ping" {
                return Ok(Verdict::Ping);
            }
            check_event(receiver, event)?;
            Ok(Verdict::Accept(Some(event.to_string())))
        }
        ReceiverType::GitLab => {
            let got = header(headers, "X-Gitlab-Token")
                .ok_or_else(|| Rejection::unauthorized("missing X-Gitlab-Token header"))?;
            if !ct_eq(got, token) {
                return Err(Rejection::unauthorized("invalid X-Gitlab-Token"));
            }
            let event = header(headers, "X-Gitlab-Event")
                .ok_or_else(|| Rejection::bad_request("missing X-Gitlab-Event header"))?;
            check_event(receiver, event)?;
            Ok(Verdict::Accept(Some(event.to_string())))
        }
        ReceiverType::Bitbucket => {
            let event = header(headers, "X-Event-Key")
                .ok_or_else(|| Rejection::bad_request("missing X-Event-Key header"))?;
            let sig = header(headers, "X-Hub-Signature")
                .ok_or_else(|| Rejection::unauthorized("missing X-Hub-Signature header"))?;
            let hex = sig
                .strip_prefix("sha256=")
                .ok_or_else(|| Rejection::unauthorized("malformed X-Hub-Signature header"))?;
            if !HmacAlgorithm::Sha256.verify_hex(token.as_bytes(), body, hex) {
                return Err(Rejection::unauthorized("invalid X-Hub-Signature"));
            }
            if event == "diagnostics:ping" {
                return Ok(Verdict::Ping);
            }
            check_event(receiver, event)?;
            json_object(body, "bitbucket")?;
            Ok(Verdict::Accept(Some(event.to_string())))
        }
        ReceiverType::Harbor => {
            let got = header(headers, "Authorization")
                .ok_or_else(|| Rejection::unauthorized("missing Authorization header"))?;
            if ct_eq(got, token) {
                Ok(Verdict::Accept(None))
            } else {
                Err(Rejection::unauthorized("invalid Authorization header"))
            }
        }
        ReceiverType::DockerHub => {
            let obj = json_object(body, "dockerhub")?;
            require_str(&obj, &["push_data", "tag"], "dockerhub")?;
            require_str(&obj, &["repository", "repo_name"], "dockerhub")?;
            Ok(Verdict::Accept(None))
        }
        ReceiverType::Quay => {
            let obj = json_object(body, "quay")?;
            require_str(&obj, &["docker_url"], "quay")?;
            if !obj.get("updated_tags").is_some_and(Value::is_array) {
                return Err(Rejection::bad_request(
                    "the quay payload lacks the array field updated_tags",
                ));
            }
            Ok(Verdict::Accept(None))
        }
        ReceiverType::Nexus => {
            let sig = header(headers, "X-Nexus-Webhook-Signature").ok_or_else(|| {
                Rejection::unauthorized("missing X-Nexus-Webhook-Signature header")
            })?;
            if !HmacAlgorithm::Sha1.verify_hex(token.as_bytes(), body, sig) {
                return Err(Rejection::unauthorized("invalid X-Nexus-Webhook-Signature"));
            }
            let obj = json_object(body, "nexus")?;
            let action = require_str(&obj, &["action"], "nexus")?;
            Ok(Verdict::Accept(Some(action)))
        }
        ReceiverType::Gcr => {
            let obj = json_object(body, "gcr")?;
            let data = require_str(&obj, &["message", "data"], "gcr")?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|_| Rejection::bad_request("gcr message.data is not base64"))?;
            let notification = json_object(&decoded, "gcr notification")?;
            let action = require_str(&notification, &["action"], "gcr notification")?;
            if action != "INSERT" {
                return Err(Rejection::bad_request(format!(
                    "gcr action {action:?} is not INSERT"
                )));
            }
            Ok(Verdict::Accept(Some(action)))
        }
        ReceiverType::Acr => {
            let obj = json_object(body, "acr")?;
            require_str(&obj, &["target", "repository"], "acr")?;
            require_str(&obj, &["request", "host"], "acr")?;
            let action = obj
                .get("action")
                .and_then(Value::as_str)
                .map(str::to_string);
            Ok(Verdict::Accept(action))
        }
        ReceiverType::CdEvents => {
            let obj = json_object(body, "cdevents")?;
            let kind = require_str(&obj, &["context", "type"], "cdevents")?;
            require_str(&obj, &["context", "id"], "cdevents")?;
            require_str(&obj, &["context", "source"], "cdevents")?;
            if !kind.starts_with("dev.cdevents.") {
                return Err(Rejection::bad_request(format!(
                    "{kind:?} is not a CDEvents type (dev.cdevents.…)"
                )));
            }
            if !obj.get("subject").is_some_and(Value::is_object) {
                return Err(Rejection::bad_request(
                    "the cdevents payload lacks a subject",
                ));
            }
            if let Some(ce) = header(headers, "Ce-Type")
                && ce != kind
            {
                return Err(Rejection::bad_request(format!(
                    "Ce-Type {ce:?} does not match the payload type {kind:?}"
                )));
            }
            check_event(receiver, &kind)?;
            Ok(Verdict::Accept(Some(kind)))
        }
    }
}

async fn handle(
    State(state): State<ServerState>,
    Path(digest): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(receiver) = state.receivers.get(&digest).cloned() else {
        return (StatusCode::NOT_FOUND, "no receiver at this path\n").into_response();
    };
    let verdict = match validate(&receiver, &headers, &body) {
        Ok(v) => v,
        Err(r) => {
            tracing::warn!(receiver = %format!("{}/{}", receiver.namespace, receiver.name), status = %r.status, reason = %r.message, "webhook refused");
            return (r.status, format!("{}\n", r.message)).into_response();
        }
    };
    let event = match verdict {
        Verdict::Ping => return (StatusCode::OK, "pong\n").into_response(),
        Verdict::Accept(event) => event,
    };
    let resources = receiver
        .resources
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r.namespace.is_empty() {
                r.namespace = receiver.namespace.clone();
            }
            r
        })
        .collect();
    let request = ReconcileRequest {
        receiver_namespace: receiver.namespace.clone(),
        receiver_name: receiver.name.clone(),
        receiver_type: receiver.receiver_type.to_string(),
        event,
        resources,
    };
    match state.trigger.reconcile(request).await {
        Ok(()) => {
            tracing::info!(receiver = %format!("{}/{}", receiver.namespace, receiver.name), "reconciliation requested");
            (StatusCode::OK, "reconciliation requested\n").into_response()
        }
        Err(e) => {
            tracing::error!(receiver = %format!("{}/{}", receiver.namespace, receiver.name), error = %e, "reconcile trigger failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "reconcile trigger failed\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_path_is_sha256_of_token_name_namespace() {
        let p = webhook_path("token", "name", "ns");
        assert_eq!(
            p,
            format!("/hook/{}", hex::encode(Sha256::digest(b"tokennamens")))
        );
        assert_eq!(p.len(), "/hook/".len() + 64);
    }

    #[test]
    fn receiver_types_round_trip() {
        for t in ReceiverType::ALL {
            assert_eq!(t.as_str().parse::<ReceiverType>(), Ok(t));
        }
    }

    #[test]
    fn debug_hides_token() {
        let r = ReceiverConfig::new("ns", "n", ReceiverType::GitHub, "s3cr3t-token");
        assert!(!format!("{r:?}").contains("s3cr3t-token"));
    }
}

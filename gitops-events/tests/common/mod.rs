//! A real HTTP server on 127.0.0.1 that records every request and answers from a script.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// The request target as sent: a path (`/a?b`) or, through a proxy, an absolute URI.
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn path(&self) -> &str {
        self.uri.path()
    }
    pub fn path_and_query(&self) -> String {
        self.uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

type Script = dyn Fn(&Recorded, usize) -> (u16, String, Option<Duration>) + Send + Sync;

#[derive(Clone)]
struct ServerState {
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Script>,
}

/// The server; stops when dropped.
pub struct RecordingServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingServer {
    /// Answers every request 200 with `{}`.
    pub async fn ok() -> Self {
        Self::scripted(|_, _| (200, "{}".to_string(), None)).await
    }

    /// Answers request number `n` (0-based) as the script says: status, body, optional delay.
    pub async fn scripted(
        script: impl Fn(&Recorded, usize) -> (u16, String, Option<Duration>) + Send + Sync + 'static,
    ) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            requests: requests.clone(),
            script: Arc::new(script),
        };
        let app = Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        RecordingServer {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (at most 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        for _ in 0..1000 {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} requests, got {}", self.requests().len());
    }
}

async fn record(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let rec = Recorded {
        method,
        uri,
        headers,
        body,
    };
    let n = {
        let mut all = state.requests.lock().unwrap();
        all.push(rec.clone());
        all.len() - 1
    };
    let (status, body, delay) = (state.script)(&rec, n);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    (
        StatusCode::from_u16(status).unwrap(),
        [("Content-Type", "application/json")],
        body,
    )
}

/// A Flux-like Kustomization event.
pub fn kustomization_event(
    severity: gitops_events::Severity,
    reason: &str,
    message: &str,
) -> gitops_events::Event {
    let mut o = gitops_events::ObjectReference::new("Kustomization", "flux-system", "apps");
    o.api_version = "kustomize.toolkit.fluxcd.io/v1".into();
    o.uid = "7d0cdc51-ddcf-4743-b223-83ca5c699632".into();
    let mut e = gitops_events::Event::new(o, severity, reason, message)
        .with_reporting_controller("kustomize-controller");
    e.timestamp = "2024-05-06T07:08:09Z".parse().unwrap();
    e
}

pub const SHA: &str = "8a0e3b4c5d6f708192a3b4c5d6e7f8091a2b3c4d";

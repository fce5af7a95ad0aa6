//! The emitter against a real HTTP server: header, body, retries on 5xx and connection
//! errors, no retry on 4xx.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::time::Duration;

use common::{RecordingServer, kustomization_event};
use gitops_events::{EmitError, Event, EventEmitter, RetryPolicy, Severity};

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
    }
}

#[tokio::test]
async fn posts_the_event_json_with_the_component_header() {
    let server = RecordingServer::ok().await;
    let emitter = EventEmitter::new(&server.url("/"), "source-controller")
        .unwrap()
        .with_retry(fast_retry());
    let mut event = kustomization_event(Severity::Info, "ArtifactUpToDate", "stored artifact");
    event.reporting_controller.clear();
    emitter.emit(&event).await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path(), "/");
    assert_eq!(r.header("gotk-component"), Some("source-controller"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let sent: Event = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(sent.reporting_controller, "source-controller");
    assert_eq!(sent.message, "stored artifact");
}

#[tokio::test]
async fn retries_on_500_then_succeeds() {
    let server = RecordingServer::scripted(|_, n| {
        if n < 2 {
            (500, "try later".into(), None)
        } else {
            (202, String::new(), None)
        }
    })
    .await;
    let emitter = EventEmitter::new(&server.url("/"), "kustomize-controller")
        .unwrap()
        .with_retry(fast_retry());
    emitter
        .emit(&kustomization_event(Severity::Error, "R", "m"))
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn does_not_retry_on_400_or_429() {
    for status in [400u16, 429] {
        let server = RecordingServer::scripted(move |_, _| (status, "no".into(), None)).await;
        let emitter = EventEmitter::new(&server.url("/"), "kustomize-controller")
            .unwrap()
            .with_retry(fast_retry());
        let err = emitter
            .emit(&kustomization_event(Severity::Error, "R", "m"))
            .await
            .unwrap_err();
        assert_eq!(
            server.requests().len(),
            1,
            "status {status} must not be retried"
        );
        match err {
            EmitError::Http {
                attempts, source, ..
            } => {
                assert_eq!(attempts, 1);
                assert_eq!(source.status().map(|s| s.as_u16()), Some(status));
            }
            other => panic!("unexpected error {other}"),
        }
    }
}

#[tokio::test]
async fn retries_connection_errors_and_gives_up() {
    // A port nobody listens on: bind, read the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let emitter = EventEmitter::new(&format!("http://127.0.0.1:{port}/"), "c")
        .unwrap()
        .with_retry(RetryPolicy {
            max_retries: 2,
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(5),
        });
    let err = emitter
        .emit(&kustomization_event(Severity::Info, "R", "m"))
        .await
        .unwrap_err();
    match err {
        EmitError::Http { attempts, .. } => assert_eq!(attempts, 3),
        other => panic!("unexpected error {other}"),
    }
}

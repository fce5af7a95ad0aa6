//! The whole loop over HTTP: a controller's emitter posts to the event server, the dispatcher
//! matches an alert, and a generic provider delivers to a sink.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::time::Duration;

use common::{RecordingServer, kustomization_event};
use gitops_events::server::{DEFAULT_EVENT_BODY_LIMIT, event_router};
use gitops_events::{
    Alert, Dispatcher, EmitError, Event, EventEmitter, EventSource, FloodControl, ProviderConfig,
    ProviderOptions, ProviderType, RetryPolicy, Severity, build_notifier,
};

fn all() -> Vec<EventSource> {
    vec![EventSource {
        kind: "Kustomization".into(),
        name: "*".into(),
        ..Default::default()
    }]
}

async fn serve(dispatcher: Dispatcher) -> String {
    let app = event_router(dispatcher, None, DEFAULT_EVENT_BODY_LIMIT);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/")
}

#[tokio::test]
async fn emitter_to_server_to_provider() {
    let sink = RecordingServer::ok().await;
    let notifier = build_notifier(&ProviderConfig::new(
        ProviderType::Generic,
        sink.url("/sink"),
    ))
    .unwrap();
    let dispatcher = Dispatcher::builder()
        .provider("sink", notifier, ProviderOptions::default())
        .alert(Alert::new("flux-system", "all", "sink", all()))
        .build();
    let endpoint = serve(dispatcher.clone()).await;
    let emitter = EventEmitter::new(&endpoint, "kustomize-controller")
        .unwrap()
        .with_retry(RetryPolicy::none());
    let event = kustomization_event(Severity::Error, "HealthCheckFailed", "timeout")
        .with_revision("main@sha1:abc");
    emitter.emit(&event).await.unwrap();
    // The duplicate is refused with 429, and the emitter does not retry it.
    match emitter.emit(&event).await.unwrap_err() {
        EmitError::Http {
            attempts, source, ..
        } => {
            assert_eq!(attempts, 1);
            assert_eq!(source.status().map(|s| s.as_u16()), Some(429));
        }
        other => panic!("unexpected {other}"),
    }
    let got = sink.wait_for(1).await;
    let delivered: Event = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(delivered.message, "timeout");
    assert_eq!(
        delivered.metadata.get("revision").map(String::as_str),
        Some("main@sha1:abc")
    );
    assert_eq!(
        got[0].header("gotk-component"),
        Some("kustomize-controller")
    );

    let resp = reqwest::Client::new()
        .post(&endpoint)
        .body("not an event")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    dispatcher.shutdown().await;
    assert_eq!(sink.requests().len(), 1);
}

#[tokio::test]
async fn group_windows_close_without_further_events() {
    let sink = RecordingServer::ok().await;
    let notifier = build_notifier(&ProviderConfig::new(
        ProviderType::Generic,
        sink.url("/sink"),
    ))
    .unwrap();
    let alert =
        Alert::new("flux-system", "grouped", "sink", all()).with_flood_control(FloodControl {
            group_window: Some(Duration::from_millis(100)),
            ..Default::default()
        });
    let dispatcher = Dispatcher::builder()
        .provider("sink", notifier, ProviderOptions::default())
        .alert(alert)
        .build();
    for m in ["one", "two"] {
        dispatcher.dispatch(&kustomization_event(Severity::Error, "R", m));
    }
    // No further dispatch and no explicit flush: the dispatcher's own ticker sends the group.
    let got = sink.wait_for(1).await;
    let delivered: Event = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(delivered.message, "one\ntwo");
}

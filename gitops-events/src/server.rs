//! The event server: the HTTP endpoint controllers post events to (notification-controller's
//! `:9090`), feeding a [`Dispatcher`].
//!
//! Answers `202 Accepted` when the event was taken (whether or not an alert matched it),
//! `429 Too Many Requests` when it duplicates one dispatched within the rate-limit window,
//! `400` when the body is not an event, and `413` over the body limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::dispatch::Dispatcher;
use crate::event::{Event, ObjectReference};

/// The default limit of an event body: 3 MiB.
pub const DEFAULT_EVENT_BODY_LIMIT: usize = 3 * 1024 * 1024;

/// Looks up an object's labels, for alerts with `matchLabels` (Flux reads them from the API
/// server).
#[async_trait]
pub trait LabelLookup: Send + Sync {
    /// The object's labels, or `None` when it cannot be read.
    async fn labels(&self, object: &ObjectReference) -> Option<BTreeMap<String, String>>;
}

#[derive(Clone)]
struct EventState {
    dispatcher: Dispatcher,
    labels: Option<Arc<dyn LabelLookup>>,
}

/// A router taking `POST /` (and any other path, as Flux does) with one event each.
pub fn event_router(
    dispatcher: Dispatcher,
    labels: Option<Arc<dyn LabelLookup>>,
    body_limit: usize,
) -> Router {
    Router::new()
        .route("/", post(handle))
        .route("/{*rest}", post(handle))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(EventState { dispatcher, labels })
}

async fn handle(State(state): State<EventState>, body: Bytes) -> Response {
    let event: Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "decoding the event failed");
            return (StatusCode::BAD_REQUEST, format!("invalid event: {e}\n")).into_response();
        }
    };
    let labels = match &state.labels {
        Some(lookup) => lookup.labels(&event.involved_object).await,
        None => None,
    };
    let report = state
        .dispatcher
        .dispatch_with_labels(&event, labels.as_ref());
    if report.rate_limited {
        StatusCode::TOO_MANY_REQUESTS.into_response()
    } else {
        StatusCode::ACCEPTED.into_response()
    }
}

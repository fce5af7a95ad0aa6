//! The emitter: how a controller POSTs its events to an event endpoint (Flux's
//! `--events-addr`, notification-controller's `:9090`).

use std::time::Duration;

use reqwest::Method;
use url::Url;

use crate::event::Event;
use crate::http::{self, HttpError, HttpOptions, Request, RetryPolicy};

/// The header naming the component that sent an event.
pub const COMPONENT_HEADER: &str = "Gotk-Component";

/// What emitting an event can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The event endpoint URL does not parse.
    #[error("invalid event endpoint URL: {0}")]
    InvalidUrl(#[from] url::ParseError),
    /// The event did not serialise.
    #[error("encoding event about {object}: {source}")]
    Encode {
        /// The involved object.
        object: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The endpoint refused the event, or could not be reached after retrying.
    #[error("posting event about {object} failed after {attempts} attempt(s): {source}")]
    Http {
        /// The involved object.
        object: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: HttpError,
    },
}

/// Posts events to an event endpoint with the `Gotk-Component` header, retrying connection
/// errors, timeouts and 5xx answers (never 4xx: a 429 means "rate limited", a 400 "bad
/// event", and retrying either would not help).
#[derive(Debug, Clone)]
pub struct EventEmitter {
    client: reqwest::Client,
    url: Url,
    component: String,
    retry: RetryPolicy,
}

impl EventEmitter {
    /// An emitter for `endpoint` (for example `http://notification-controller.flux-system.svc/`)
    /// sending as `component` (for example `kustomize-controller`), with Flux's defaults: a 5 s
    /// timeout per request and 4 retries.
    pub fn new(endpoint: &str, component: impl Into<String>) -> Result<Self, EmitError> {
        let options = HttpOptions {
            timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let client = options.build_client().map_err(|source| EmitError::Http {
            object: String::new(),
            attempts: 0,
            source,
        })?;
        Ok(EventEmitter {
            client,
            url: Url::parse(endpoint)?,
            component: component.into(),
            retry: RetryPolicy {
                max_retries: 4,
                min_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(5),
            },
        })
    }

    /// Replaces the HTTP client (timeout, proxy, CA).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The component name sent in `Gotk-Component`.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// POSTs one event. The event's `reportingController` is set to the component when empty.
    pub async fn emit(&self, event: &Event) -> Result<(), EmitError> {
        let object = event.involved_object.to_string();
        let mut event = event.clone();
        if event.reporting_controller.is_empty() {
            event.reporting_controller = self.component.clone();
        }
        let req = Request::json(Method::POST, self.url.clone(), &event)
            .map_err(|source| EmitError::Encode {
                object: object.clone(),
                source,
            })?
            .header(COMPONENT_HEADER, self.component.clone());
        let retryable = |e: &HttpError| match e {
            HttpError::Transport { .. } | HttpError::Timeout { .. } => true,
            HttpError::Status { status, .. } => status.is_server_error(),
            HttpError::Config(_) => false,
        };
        let (result, attempts) = self
            .retry
            .run(retryable, || http::send(&self.client, &req))
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(source) => {
                tracing::warn!(object = %object, attempts, error = %source, "event not delivered");
                Err(EmitError::Http {
                    object,
                    attempts,
                    source,
                })
            }
        }
    }
}

//! The [`Notifier`] trait (one provider) and what sending can fail with.

use async_trait::async_trait;

use crate::event::Event;
use crate::http::HttpError;

/// What sending one event through one provider can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The service could not be reached or answered with an error status.
    #[error("{provider}: {source}")]
    Http {
        /// The provider type or name.
        provider: String,
        /// The HTTP error (status and the service's answer, or the transport error).
        #[source]
        source: HttpError,
    },
    /// The service answered 2xx but said it refused the message (Slack's `ok: false`).
    #[error("{provider}: the service refused the message: {reason}")]
    Refused {
        /// The provider type or name.
        provider: String,
        /// The service's reason.
        reason: String,
    },
    /// This event cannot be sent by this provider (a commit status without a revision).
    #[error("{provider}: cannot send the event about {object}: {reason}")]
    Event {
        /// The provider type or name.
        provider: String,
        /// The involved object, `Kind/namespace/name`.
        object: String,
        /// Why.
        reason: String,
    },
    /// The provider is misconfigured (bad address, missing token).
    #[error("{provider}: invalid configuration: {reason}")]
    Config {
        /// The provider type or name.
        provider: String,
        /// Why.
        reason: String,
    },
    /// The provider did not finish within its timeout.
    #[error("{provider}: no answer within {after:?}")]
    Timeout {
        /// The provider type or name.
        provider: String,
        /// The timeout.
        after: std::time::Duration,
    },
    /// A payload did not serialise.
    #[error("{provider}: encoding the payload: {source}")]
    Encode {
        /// The provider type or name.
        provider: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl NotifyError {
    /// Whether trying again may help: transport errors, timeouts, 429 and 5xx answers.
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Http { source, .. } => source.is_retryable(),
            NotifyError::Timeout { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn config(provider: &str, reason: impl Into<String>) -> Self {
        NotifyError::Config {
            provider: provider.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn event(provider: &str, event: &Event, reason: impl Into<String>) -> Self {
        NotifyError::Event {
            provider: provider.to_string(),
            object: event.involved_object.to_string(),
            reason: reason.into(),
        }
    }
}

/// One notification provider: sends one event to one service.
///
/// Implementations are object safe and async; the [`Dispatcher`](crate::Dispatcher) holds
/// them as `Arc<dyn Notifier>` and adds matching, rate limiting, timeouts, retries and
/// bounded queues around them, so an implementation only builds and sends its request.
/// Returning `Ok(())` without sending is right for events a provider ignores by design
/// (commit statuses skip `Progressing` events, as Flux does).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends one event.
    async fn send(&self, event: &Event) -> Result<(), NotifyError>;
}

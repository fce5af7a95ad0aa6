//! Posting controller events to the notification endpoint, as Flux's controllers do.

use gitops_events::{Event, EventEmitter, ObjectReference, Severity};
use kube::{Resource, ResourceExt};

/// Posts events about objects to an event endpoint (when one is configured), without making
/// the reconcile wait for the delivery.
#[derive(Clone, Default)]
pub struct EventRecorder {
    emitter: Option<EventEmitter>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("enabled", &self.emitter.is_some())
            .finish()
    }
}

impl EventRecorder {
    /// A recorder posting through `emitter`, or discarding events when `None`.
    pub fn new(emitter: Option<EventEmitter>) -> Self {
        Self { emitter }
    }

    /// Posts one event about `object`; `revision` becomes the `revision` metadata.
    pub fn record<K>(
        &self,
        object: &K,
        severity: Severity,
        reason: &str,
        message: &str,
        revision: Option<&str>,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let Some(emitter) = self.emitter.clone() else {
            return;
        };
        let mut reference = ObjectReference::new(
            K::kind(&()).as_ref(),
            object.namespace().unwrap_or_default().as_str(),
            object.name_any().as_str(),
        );
        reference.api_version = K::api_version(&()).into_owned();
        reference.uid = object.uid().unwrap_or_default();
        reference.resource_version = object.resource_version().unwrap_or_default();
        let mut event = Event::new(reference, severity, reason, message);
        if let Some(revision) = revision {
            event = event.with_revision(revision);
        }
        tokio::spawn(async move {
            if let Err(error) = emitter.emit(&event).await {
                tracing::warn!(%error, "posting an event failed");
            }
        });
    }
}

//! Recording controller events as Flux's controllers do: a Kubernetes Event on the object, and
//! the same event posted to the notification endpoint.

use gitops_events::{Event, EventEmitter, ObjectReference, Severity};
use kube::{Resource, ResourceExt};

/// Posts events about objects to an event endpoint (when one is configured), without making
/// the reconcile wait for the delivery.
#[derive(Clone, Default)]
pub struct EventRecorder {
    emitter: Option<EventEmitter>,
    kubernetes: Option<kube::runtime::events::Recorder>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("notifications", &self.emitter.is_some())
            .field("kubernetes_events", &self.kubernetes.is_some())
            .finish()
    }
}

impl EventRecorder {
    /// A recorder posting through `emitter`, or discarding events when `None`.
    pub fn new(emitter: Option<EventEmitter>) -> Self {
        Self {
            emitter,
            kubernetes: None,
        }
    }

    /// Also records each event as a Kubernetes Event (`events.k8s.io/v1`) reported by
    /// `controller`.
    pub fn with_kubernetes_events(mut self, client: kube::Client, controller: &str) -> Self {
        let reporter = kube::runtime::events::Reporter {
            controller: controller.to_string(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        self.kubernetes = Some(kube::runtime::events::Recorder::new(client, reporter));
        self
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
        if let Some(recorder) = self.kubernetes.clone() {
            let reference = object.object_ref(&());
            let note: String = message.chars().take(1024).collect();
            let event = kube::runtime::events::Event {
                type_: match severity {
                    Severity::Error => kube::runtime::events::EventType::Warning,
                    _ => kube::runtime::events::EventType::Normal,
                },
                reason: reason.to_string(),
                note: Some(note),
                action: reason.to_string(),
                secondary: None,
            };
            tokio::spawn(async move {
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(%error, "recording a Kubernetes Event failed");
                }
            });
        }
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

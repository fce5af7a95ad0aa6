//! # gitops-events: the fourth stage of the GitOps pipeline
//!
//! Tells people and systems what happened, and lets Git hosts and registries say when to
//! reconcile: what Flux's notification-controller does, as a library.
//!
//! At the centre is the object-safe, async [`Notifier`] trait: one provider sending one
//! [`Event`]. The [`Dispatcher`] drives many of them: it matches events to [`Alert`]s
//! (event sources with `*` and `matchLabels`, severity, inclusion and exclusion regexes),
//! merges metadata with Flux's precedence, drops duplicates with Flux's event key over a
//! window (5 minutes by default), and hands each notification to its provider's bounded
//! queue, where a worker sends it with a timeout and retries. A hung provider fills only its
//! own queue; overflow is counted and logged.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use gitops_events::{
//!     Alert, Dispatcher, Event, EventSource, Notifier, NotifyError, ObjectReference,
//!     ProviderOptions, Severity, async_trait,
//! };
//!
//! /// A provider of our own: keeps what it is sent.
//! #[derive(Default)]
//! struct Inbox(Mutex<Vec<String>>);
//!
//! #[async_trait]
//! impl Notifier for Inbox {
//!     async fn send(&self, event: &Event) -> Result<(), NotifyError> {
//!         self.0.lock().unwrap().push(format!("{}: {}", event.object_title(), event.message));
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let inbox = Arc::new(Inbox::default());
//! let dispatcher = Dispatcher::builder()
//!     .provider("inbox", inbox.clone(), ProviderOptions::default())
//!     .alert(Alert::new("flux-system", "all-kustomizations", "inbox", vec![EventSource {
//!         kind: "Kustomization".into(),
//!         name: "*".into(),
//!         ..Default::default()
//!     }]))
//!     .build();
//!
//! let mut apps = ObjectReference::new("Kustomization", "flux-system", "apps");
//! apps.api_version = "kustomize.toolkit.fluxcd.io/v1".into();
//! let event = Event::new(apps, Severity::Error, "HealthCheckFailed", "timeout waiting for Deployment/podinfo")
//!     .with_reporting_controller("kustomize-controller")
//!     .with_revision("main@sha1:0c9c2e41d2f94f9b9c419b6f0c6b5a8e01234567");
//!
//! assert_eq!(dispatcher.dispatch(&event).queued(), 1);
//! assert!(dispatcher.dispatch(&event).rate_limited, "the same event within 5 minutes is dropped");
//! dispatcher.shutdown().await;
//! assert_eq!(
//!     *inbox.0.lock().unwrap(),
//!     ["kustomization/apps.flux-system: timeout waiting for Deployment/podinfo"]
//! );
//! # }
//! ```
//!
//! The built-in providers ([`providers`], built from a [`ProviderConfig`] with
//! [`build_notifier`]) send exactly the requests their services expect: generic webhooks
//! (with HMAC signatures), Slack, Microsoft Teams, Discord, Rocket.Chat, Google Chat,
//! Telegram, Matrix, Webex, PagerDuty, Opsgenie, Alertmanager, Grafana, Datadog, Sentry, and
//! Git commit statuses on GitHub, GitLab, Gitea, Bitbucket Cloud and Server, and Azure DevOps.
//!
//! Controllers post their events with the [`EventEmitter`] (the `Gotk-Component` header,
//! retries on connection errors and 5xx) to the [`server`]'s endpoint, which feeds a
//! dispatcher. Inbound, the [`receiver`] module serves Flux's
//! `/hook/<sha256>` webhooks and calls a [`ReconcileTrigger`] for each accepted one.
//!
//! Beyond Flux, each alert can opt into [`FloodControl`]: grouping per object and revision,
//! "alert after N occurrences", and one recovery message when an error clears.

pub mod alert;
pub mod crd;
pub mod dispatch;
pub mod emitter;
pub mod event;
pub mod http;
pub mod notifier;
pub mod providers;
pub mod receiver;
pub mod server;

pub use alert::{Alert, AlertError, AlertSpec, EventSource, FloodControl, Match, ProviderRef};
pub use async_trait::async_trait;
pub use dispatch::{
    AlertOutcome, Clock, DEFAULT_RATE_LIMIT, DispatchReport, Dispatcher, DispatcherBuilder,
    ManualClock, ProviderOptions, ProviderStats, SystemClock,
};
pub use emitter::{COMPONENT_HEADER, EmitError, EventEmitter};
pub use event::{Event, ObjectReference, Severity};
pub use http::{HttpOptions, RetryPolicy, Secret};
pub use notifier::{Notifier, NotifyError};
pub use providers::{ProviderConfig, ProviderType, build_notifier};
pub use receiver::{
    ReceiverConfig, ReceiverType, ReconcileRequest, ReconcileTrigger, ResourceRef, TriggerError,
    webhook_path,
};

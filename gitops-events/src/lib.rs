//! # gitops-events: the fourth stage of the GitOps pipeline
//!
//! Tells people and systems what happened, and lets Git hosts and registries tell us when to
//! reconcile: Flux's event model and JSON schema, alerts with source and severity matching,
//! deduplication and rate limits, outbound providers (Slack, Microsoft Teams, Discord, generic
//! webhooks with HMAC, commit statuses, …) and inbound webhook receivers. This is what Flux's
//! notification-controller does, as a library.
//!
//! The crate's centre is the object-safe, async `Notifier` trait (one provider), driven by a
//! `Dispatcher` that applies alerts.
//!
//! Status: the workspace scaffolding. Events, providers and receivers arrive with issue #8.
//! See `STATUS.md`.

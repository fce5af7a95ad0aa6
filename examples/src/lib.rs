//! # gitops-examples: the toolkit assembled
//!
//! The `gitops` command-line tool (`src/bin/gitops`), and reference controllers that speak
//! Flux's own CRDs, so Flux's YAML works unchanged:
//!
//! - [`source`]: `GitRepository`, `OCIRepository`, `HelmRepository`, `HelmChart` and `Bucket`
//!   (`source.toolkit.fluxcd.io/v1`), acquired with `gitops-source` into an artifact store
//!   served over HTTP;
//! - [`kustomize`]: `Kustomization` (`kustomize.toolkit.fluxcd.io/v1`), fetched, built with
//!   `gitops-render`, substituted, applied, pruned and health-checked with `gitops-apply`;
//! - [`notification`]: `Provider` and `Alert` (`notification.toolkit.fluxcd.io/v1beta3`) feeding
//!   a `gitops-events` dispatcher through the event endpoint the other controllers post to,
//!   and `Receiver` (`notification.toolkit.fluxcd.io/v1`).
//!
//! [`crds`] generates the CustomResourceDefinitions from the Rust types, [`runtime`] starts
//! every controller in-process, and [`quickstart`] is the flow behind `gitops quickstart`.

pub mod crds;
pub mod events;
pub mod kustomize;
pub mod meta;
pub mod metrics;
pub mod notification;
pub mod quickstart;
pub mod runtime;
pub mod source;

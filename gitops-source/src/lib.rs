//! # gitops-source: the first stage of the GitOps pipeline
//!
//! Turns a source into a reproducible, verified `tar.gz` artifact with a `sha256:` digest and a
//! Flux revision string (`main@sha1:<hex>`, `<tag>@sha256:<hex>`, `sha256:<hex>`), stores it,
//! garbage-collects old ones, serves them over HTTP and downloads them again with digest
//! verification and safe extraction — what Flux's source-controller does, as a library.
//!
//! The centre is the object-safe, async [`Source`] trait: given the last artifact, acquire a
//! new one into an [`ArtifactStore`] or report the last one unchanged.
//!
//! Modules, each usable alone: [`revision`] (revision and digest strings), [`semver`]
//! (Masterminds constraints), [`sourceignore`] (Flux's ignore layering), [`archive`]
//! (reproducible tar.gz), [`store`] (layout, atomic writes, locks, GC).

pub mod archive;
pub mod artifact;
pub mod error;
pub mod fetch;
pub mod git;
pub mod revision;
pub mod semver;
pub mod server;
pub mod sourceignore;
pub mod store;

pub use artifact::{Acquired, Artifact, Source};
pub use error::SourceError;
pub use fetch::{FetchLimits, Fetched, fetch_artifact};
pub use git::{GitAuth, GitReference, GitSource, ProxySettings};
pub use revision::{Algorithm, Digest, Revision};
pub use server::ArtifactServer;
pub use store::{ArtifactStore, ObjectRef, Retention};

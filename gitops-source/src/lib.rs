//! # gitops-source: the first stage of the GitOps pipeline
//!
//! Turns a Git repository, a Helm repository, an OCI artifact or an S3 bucket into a
//! reproducible, verified `tar.gz` artifact with a `sha256:` digest and a Flux revision string
//! (`main@sha1:<hex>`, `<tag>@sha256:<hex>`, `sha256:<hex>`), stores it, garbage-collects old
//! ones, serves them over HTTP and downloads them again with digest verification and safe
//! extraction. This is what Flux's source-controller does, as a library.
//!
//! The crate's centre is the object-safe, async `Source` trait: given a spec and the last
//! artifact, acquire a new artifact or report the last one unchanged. Built-in sources
//! implement it; a third party can add its own without forking.
//!
//! Status: the workspace scaffolding. The Git source, the artifact model, storage and serving
//! arrive with issue #3; OCI, Helm and bucket sources with issue #9. See `STATUS.md`.

//! # gitops-source: the first stage of the GitOps pipeline
//!
//! Turns a source into a reproducible, verified `tar.gz` artifact with a `sha256:` digest and a
//! Flux revision string (`main@sha1:<hex>`, `v1.2.3@sha1:<hex>`, `sha256:<hex>`, a bare chart
//! version `1.2.3+abcdef123456` for Helm charts), stores it,
//! garbage-collects old ones, serves them over HTTP and downloads them again with digest
//! verification and safe extraction — what Flux's source-controller does, as a library.
//!
//! The centre is the object-safe, async [`Source`] trait: given the last artifact, acquire a
//! new one into an [`ArtifactStore`] or report the last one unchanged. [`GitSource`] is the
//! built-in Git implementation; a third party implements `Source` for its own kind.
//!
//! ```
//! use gitops_source::{Acquired, ArtifactStore, GitReference, GitSource, ObjectRef, Source};
//! # fn git(dir: &std::path::Path, args: &[&str]) {
//! #     let ok = std::process::Command::new("git").args(args).current_dir(dir)
//! #         .env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_CONFIG_NOSYSTEM", "1")
//! #         .env("GIT_AUTHOR_NAME", "a").env("GIT_AUTHOR_EMAIL", "a@b")
//! #         .env("GIT_COMMITTER_NAME", "a").env("GIT_COMMITTER_EMAIL", "a@b")
//! #         .status().expect("git").success();
//! #     assert!(ok);
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let repo = tmp.path().join("app");
//! # std::fs::create_dir_all(repo.join("deploy"))?;
//! # std::fs::write(repo.join("deploy/app.yaml"), "kind: ConfigMap\n")?;
//! # git(tmp.path(), &["init", "-q", "-b", "main", "app"]);
//! # git(&repo, &["add", "-A"]);
//! # git(&repo, &["commit", "-q", "-m", "first"]);
//! # let url = format!("file://{}", repo.display());
//! // Where artifacts live: <root>/gitrepository/<namespace>/<name>/<commit>.tar.gz
//! let store = ArtifactStore::new(tmp.path().join("artifacts"))?;
//!
//! // What to acquire: any of https://, http://, ssh://, git://, file:// URLs.
//! let mut source = GitSource::new(url, ObjectRef::new("GitRepository", "flux-system", "app")?);
//! source.reference = GitReference { branch: Some("main".into()), ..Default::default() };
//!
//! let artifact = source.acquire(None, &store).await?.into_artifact();
//! assert!(artifact.revision.to_string().starts_with("main@sha1:"));
//! assert!(artifact.digest.to_string().starts_with("sha256:"));
//!
//! // Nothing changed upstream: one ls-refs round trip, no fetch, the same artifact.
//! let again = source.acquire(Some(&artifact), &store).await?;
//! assert_eq!(again, Acquired::Unchanged(artifact));
//! # Ok(()) }
//! ```
//!
//! ## Modules, each usable alone
//!
//! | module | what |
//! |---|---|
//! | [`revision`] | [`Revision`] and [`Digest`]: Flux's strings as types (digests, `<name>@<digest>`, HelmChart chart versions), `Display`/`FromStr` round trip |
//! | [`semver`] | Masterminds constraint semantics (`>=1.0.0 <2.0.0`, `~1.2`, `^1`, `1.x`, `\|\|`, hyphen ranges, pre-releases) |
//! | [`sourceignore`] | Flux's ignore layering: VCS, default exclusions, `.sourceignore` at any depth, spec ignore |
//! | [`archive`] | reproducible `tar.gz` (uid/gid 0, no names, zero mtimes, 0600/0700/0750, sorted, no symlinks) |
//! | [`store`] | [`ArtifactStore`]: `<kind>/<ns>/<name>/<file>`, atomic writes, per-object lock, retention GC |
//! | [`server`] | [`ArtifactServer`]: GET/HEAD/ranges over axum, no listings, no traversal |
//! | [`fetch`] | [`fetch_artifact`]: timeout and retries, digest verified before extraction, safe extraction with caps |
//! | [`git`] | [`GitSource`] on gix: reference precedence, shallow (depth 1) fetch, ls-refs short cut, sparse checkout, submodules, auth, HTTP(S) and SOCKS5 proxies |
//! | [`bucket`] | [`BucketSource`] on object_store (S3 API): prefix, ignore rules on keys, `sha256` revision over sorted keys and etags, parallel download, unchanged listing downloads nothing |
//! | [`helm`] | [`HelmRepositorySource`] (index.yaml, size limit, one streaming parse) and [`HelmChartSource`] (repository chart with digest check, `oci://` chart, or a chart directory in an artifact; values files; revision = chart version with Flux's build-metadata suffixes) |
//! | [`oci`] | [`OciSource`] on oci-client: tag/semver/digest, layer selector, Basic / registry token flow / bearer / docker config auth (credential helpers for files), manifest-digest short cut; [`push_artifact`] as `flux push artifact` |
//!
//! Errors are one enum, [`SourceError`], whose variants name the URL, reference or path and
//! whose [`SourceError::reason`] gives a stable condition reason (`AuthenticationFailed`,
//! `HostKeyMismatch`, `ReferenceNotFound`, `NoMatchingTag`, `NetworkError`, `Timeout`,
//! `DigestMismatch`, `UnsafeArchive`, …). No secret is ever part of an error or a log line.

pub mod archive;
pub mod artifact;
pub mod bucket;
pub mod error;
pub mod fetch;
pub mod git;
pub mod helm;
pub mod oci;
pub mod revision;
pub mod semver;
pub mod server;
pub mod signature;
pub mod sourceignore;
pub mod store;
mod tls;

pub use artifact::{Acquired, Artifact, Source};
pub use bucket::{BucketCredentials, BucketSource};
pub use error::SourceError;
pub use fetch::{FetchLimits, Fetched, fetch_artifact};
pub use git::{GitAuth, GitReference, GitSource, ProxySettings};
pub use helm::{ChartOrigin, HelmChartSource, HelmHttp, HelmRepositorySource, ReconcileStrategy};
pub use oci::{
    LayerOperation, LayerSelector, OciAuth, OciReference, OciSource, PushOptions, push_artifact,
};
pub use revision::{Algorithm, Digest, Revision};
pub use server::ArtifactServer;
pub use signature::{GitVerification, VerifyMode};
pub use store::{ArtifactStore, ObjectRef, Retention};

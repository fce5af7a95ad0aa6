//! The crate's error type: what failed, and where (URL, reference, path).

use std::path::PathBuf;
use std::time::Duration;

use crate::revision::Digest;

/// Why acquiring, storing or fetching an artifact failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server refused the credentials (or required some and none were given).
    #[error("authentication failed for {url}: {message}")]
    AuthenticationFailed {
        /// The remote URL (without credentials).
        url: String,
        /// What the server or client said.
        message: String,
    },
    /// The SSH host key is unknown or does not match `known_hosts`.
    #[error("host key verification failed for {url}: {message}")]
    HostKeyMismatch {
        /// The remote URL.
        url: String,
        /// What ssh said.
        message: String,
    },
    /// The branch, tag, ref name or commit does not exist on the remote.
    #[error("reference {reference} not found in {url}")]
    ReferenceNotFound {
        /// The remote URL.
        url: String,
        /// The reference asked for (`branch main`, `tag v1.0.0`, `commit <sha>`, …).
        reference: String,
    },
    /// No tag satisfies the semver range.
    #[error("no tag in {url} satisfies the semver range {range:?}")]
    NoMatchingTag {
        /// The remote URL.
        url: String,
        /// The range.
        range: String,
    },
    /// The remote could not be reached or the transfer broke.
    #[error("network error talking to {url}: {message}")]
    Network {
        /// The remote URL.
        url: String,
        /// The underlying error, flattened.
        message: String,
    },
    /// An operation did not finish in time.
    #[error("{operation} of {url} timed out after {after:?}")]
    Timeout {
        /// The remote URL.
        url: String,
        /// What was being done (`git fetch`, `download`).
        operation: &'static str,
        /// The limit.
        after: Duration,
    },
    /// A downloaded or stored file does not have the expected digest.
    #[error("digest mismatch for {url}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Where the file came from.
        url: String,
        /// The expected digest.
        expected: Digest,
        /// The computed digest.
        actual: Digest,
    },
    /// An archive entry tries to escape the target or breaks a limit.
    #[error("unsafe archive from {url}: entry {entry:?}: {reason}")]
    UnsafeArchive {
        /// Where the archive came from.
        url: String,
        /// The offending entry path (as written in the archive).
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// The spec given to a source is not valid (bad URL, bad range, conflicting options).
    #[error("invalid source spec: {0}")]
    InvalidSpec(String),
    /// Any other Git failure.
    #[error("git operation on {url} failed: {message}")]
    Git {
        /// The remote URL.
        url: String,
        /// The underlying error, flattened.
        message: String,
    },
    /// Writing to the artifact store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Loading ignore rules failed.
    #[error(transparent)]
    Ignore(#[from] crate::sourceignore::IgnoreError),
    /// An OCI registry operation failed (see [`crate::oci::OciError`]).
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
    /// A commit or tag signature was missing, untrusted or invalid.
    #[error("signature verification failed for {url}: {source}")]
    Verification {
        /// The remote URL (without credentials).
        url: String,
        /// What failed.
        source: crate::signature::VerifyError,
    },
    /// A Helm repository or chart operation failed (see [`crate::helm::HelmError`]).
    #[error(transparent)]
    Helm(#[from] crate::helm::HelmError),
    /// Listing or downloading a bucket failed (see [`crate::bucket::BucketError`]).
    #[error(transparent)]
    Bucket(#[from] crate::bucket::BucketError),
    /// Local filesystem work (checkout, temporary directories) failed.
    #[error("I/O on {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl SourceError {
    /// A stable, CamelCase name of the failure, usable as a Kubernetes condition reason
    /// (`AuthenticationFailed`, `ReferenceNotFound`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::AuthenticationFailed { .. } => "AuthenticationFailed",
            SourceError::HostKeyMismatch { .. } => "HostKeyMismatch",
            SourceError::ReferenceNotFound { .. } => "ReferenceNotFound",
            SourceError::NoMatchingTag { .. } => "NoMatchingTag",
            SourceError::Network { .. } => "NetworkError",
            SourceError::Timeout { .. } => "Timeout",
            SourceError::DigestMismatch { .. } => "DigestMismatch",
            SourceError::UnsafeArchive { .. } => "UnsafeArchive",
            SourceError::InvalidSpec(_) => "InvalidSpec",
            SourceError::Git { .. } => "GitOperationFailed",
            SourceError::Store(_) => "StorageOperationFailed",
            SourceError::Ignore(_) => "InvalidIgnoreRules",
            SourceError::Io { .. } => "IOError",
            SourceError::Oci(_) => "OCIOperationFailed",
            SourceError::Verification { .. } => "InvalidCommitSignature",
            SourceError::Helm(_) => "IndexationFailed",
            SourceError::Bucket(_) => "BucketOperationFailed",
        }
    }
}

//! A native Kustomize engine whose output is the same as `kubectl kustomize` (kustomize v5.5).
//!
//! Filled in by issue #4.

use std::path::PathBuf;

/// Why a kustomize build failed.
#[derive(Debug, thiserror::Error)]
pub enum KustomizeError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

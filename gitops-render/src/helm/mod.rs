//! A native Helm chart engine whose output is the same as `helm template` (Helm 3.17).
//!
//! Filled in by issue #5.

use std::path::PathBuf;

/// Why a chart failed to load or render.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

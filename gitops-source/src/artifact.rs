//! The artifact model and the `Source` trait at the centre of the crate.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::SourceError;
use crate::revision::{Digest, Revision};
use crate::store::ArtifactStore;

/// A stored, verified archive of a source at one revision: what source-controller writes into
/// `.status.artifact`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// The revision the artifact was built from, such as `main@sha1:<hex>`.
    pub revision: Revision,
    /// `sha256:` digest of the archive file.
    pub digest: Digest,
    /// Size of the archive file in bytes.
    pub size: u64,
    /// Path of the archive relative to the store root: `<kind>/<namespace>/<name>/<file>`.
    pub path: PathBuf,
    /// Where the store's HTTP server serves the archive, when the store has a base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<url::Url>,
    /// Free-form metadata (OCI annotations, the source's configuration fingerprint, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// When the archive was written.
    pub last_update_time: jiff::Timestamp,
}

impl Artifact {
    /// The archive's file name (the last component of [`Artifact::path`]).
    pub fn file_name(&self) -> Option<&str> {
        self.path.file_name().and_then(|n| n.to_str())
    }
}

/// The outcome of [`Source::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The source still is at the last artifact's revision and configuration; nothing was
    /// downloaded or written.
    Unchanged(Artifact),
    /// A new artifact was written to the store.
    New(Artifact),
}

impl Acquired {
    /// The artifact, new or unchanged.
    pub fn artifact(&self) -> &Artifact {
        match self {
            Acquired::Unchanged(a) | Acquired::New(a) => a,
        }
    }

    /// Takes the artifact out.
    pub fn into_artifact(self) -> Artifact {
        match self {
            Acquired::Unchanged(a) | Acquired::New(a) => a,
        }
    }

    /// Whether a new artifact was written.
    pub fn is_new(&self) -> bool {
        matches!(self, Acquired::New(_))
    }
}

/// A source of artifacts: a Git repository, an OCI repository, a bucket, or your own.
///
/// Implementations hold their spec (URL, reference, credentials, ignore rules). `acquire`
/// compares the source's current revision with `last` and either reports it unchanged or
/// writes a new archive into `store` and returns it. The trait is object safe, so a caller can
/// hold `Box<dyn Source>`.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// Acquires the source, or reports that `last` is still current.
    async fn acquire(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError>;
}

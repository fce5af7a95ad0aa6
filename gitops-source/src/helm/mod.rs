//! Helm repositories and charts (Flux's `HelmRepository` and `HelmChart`).
//!
//! [`HelmRepositorySource`] downloads a repository's `index.yaml` (HTTP(S), Basic auth, custom
//! CA, mutual TLS) under a size limit, streaming it to disk while hashing it, parses it once
//! (unknown fields skipped) to validate it, and stores the exact bytes as
//! `index-<hex>.yaml` with the revision `sha256:<hex>` of the index.
//!
//! [`HelmChartSource`] produces a packaged chart `<name>-<version>.tgz`, either from a Helm
//! repository (chart name plus a Masterminds version constraint, default `*`: the newest stable
//! version; the download is checked against the index digest), from an OCI registry (charts as
//! `helm push` stores them: `oci://host/path/<chart>:<version>`, the chart layer's digest
//! verified while pulling), or from a chart directory inside
//! an acquired Git or bucket artifact (packaged as `helm package` lays it out, honouring
//! `.helmignore`). `values_files` are merged in order and packaged as the chart's
//! `values.yaml`.
//!
//! Revisions follow Flux: [`Artifact::revision`] is the bare chart version
//! ([`Revision::chart_version`]), `1.2.3`, with build metadata set as Flux sets it (Masterminds'
//! `SetMetadata`, so the version is normalised): `+<generation>` when values files are merged,
//! `+<first 12 hex of the source revision digest>` with the `Revision` reconcile strategy, both
//! joined by a dot for a directory chart (`1.2.3+abcdef123456.4`). When the version carries
//! metadata the packaged `Chart.yaml` says so too and the file is `<name>-<version>.tgz` with the
//! full version, as in Flux. The package digest is [`Artifact::digest`]; the chart revision is
//! also in the metadata under [`CHART_REVISION_KEY`].

mod index;

pub use index::{ChartVersion, IndexFile};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use crate::artifact::{Acquired, Artifact, Source};
use crate::error::SourceError;
use crate::fetch::{FetchLimits, extract_tar_gz};
use crate::revision::{Algorithm, Digest, Revision};
use crate::store::{ArtifactStore, ObjectRef};

/// The media type of the chart layer `helm push` writes to OCI registries; select it with
/// [`crate::oci::LayerSelector`] and [`crate::oci::LayerOperation::Copy`] to acquire an OCI chart
/// as its `.tgz`.
pub const HELM_CHART_LAYER_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// Metadata key: the chart revision as Flux writes it (`1.2.3`, `1.2.3+4`, `1.2.3+abcdef012345`).
pub const CHART_REVISION_KEY: &str = "source.gitops.dev/chart-revision";
/// Metadata key: the fingerprint of the chart configuration (values files, strategy).
pub const CONFIG_DIGEST_KEY: &str = "source.gitops.dev/config-digest";

/// What failed reading a Helm repository or packaging a chart.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// The index is not a valid Helm repository index (or breaks the parsing limits).
    #[error("invalid Helm repository index {url}: {message}")]
    InvalidIndex {
        /// Where it came from.
        url: String,
        /// What the parser said.
        message: String,
    },
    /// The index has no chart of that name.
    #[error("chart {chart:?} not found in {url}")]
    ChartNotFound {
        /// The repository.
        url: String,
        /// The chart name.
        chart: String,
    },
    /// No version of the chart satisfies the constraint.
    #[error("no version of chart {chart:?} in {url} satisfies {constraint:?}")]
    NoMatchingVersion {
        /// The repository.
        url: String,
        /// The chart name.
        chart: String,
        /// The constraint.
        constraint: String,
    },
    /// The version constraint does not parse.
    #[error("invalid chart version constraint {constraint:?}: {message}")]
    InvalidVersion {
        /// The constraint.
        constraint: String,
        /// Why.
        message: String,
    },
    /// A download is over its size limit.
    #[error("{url} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The chart (directory or package) is not a valid chart.
    #[error("invalid chart at {path}: {message}")]
    InvalidChart {
        /// The path in the artifact or package.
        path: String,
        /// Why.
        message: String,
    },
    /// A values file is missing or not a YAML mapping.
    #[error("values file {path}: {message}")]
    ValuesFile {
        /// The path as given.
        path: String,
        /// Why.
        message: String,
    },
    /// The TLS or client settings are unusable.
    #[error("HTTP client settings: {0}")]
    Client(String),
}

/// How to talk to a Helm repository over HTTP(S). `Debug` never prints a secret.
#[derive(Clone, Default)]
pub struct HelmHttp {
    /// Basic credentials (user name, password).
    pub basic: Option<(String, String)>,
    /// Send the credentials to chart URLs on other hosts than the index (Flux's
    /// `passCredentials`); off by default.
    pub pass_credentials: bool,
    /// Extra trusted CA certificates (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Limit for each request.
    pub timeout: Duration,
}

impl std::fmt::Debug for HelmHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelmHttp")
            .field("basic_user", &self.basic.as_ref().map(|(u, _)| u))
            .field("pass_credentials", &self.pass_credentials)
            .field("ca_pem", &self.ca_pem.is_some())
            .field("client_identity", &self.client_identity_pem.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HelmHttp {
    fn client(&self) -> Result<reqwest::Client, SourceError> {
        let mut builder = reqwest::Client::builder()
            .timeout(if self.timeout.is_zero() {
                Duration::from_secs(60)
            } else {
                self.timeout
            })
            .connect_timeout(Duration::from_secs(30));
        builder = crate::tls::configure(
            builder,
            self.ca_pem.as_deref(),
            self.client_identity_pem.as_ref(),
        )
        .map_err(HelmError::Client)?;
        Ok(builder
            .build()
            .map_err(|e| HelmError::Client(e.to_string()))?)
    }
}

/// Streams `url` into `dest`, hashing it, refusing more than `limit` bytes.
async fn download(
    client: &reqwest::Client,
    url: &url::Url,
    basic: Option<&(String, String)>,
    dest: &Path,
    limit: u64,
    what: &str,
) -> Result<(Digest, u64), SourceError> {
    let shown = redact(url);
    let network = |message: String| SourceError::Network {
        url: shown.clone(),
        message,
    };
    let mut request = client.get(url.clone());
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            network(format!("{what}: request timed out"))
        } else {
            network(format!("{what}: {}", flatten(&e)))
        }
    })?;
    let status = response.status();
    match status.as_u16() {
        200..=299 => {}
        401 | 403 => {
            return Err(SourceError::AuthenticationFailed {
                url: shown,
                message: format!("HTTP {status}"),
            });
        }
        404 => {
            return Err(SourceError::ReferenceNotFound {
                url: shown,
                reference: what.to_owned(),
            });
        }
        _ => return Err(network(format!("{what}: HTTP {status}"))),
    }
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(HelmError::TooLarge { url: shown, limit }.into());
    }
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|source| SourceError::Io {
            path: dest.to_path_buf(),
            source,
        })?;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| network(format!("{what}: {}", flatten(&e))))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(HelmError::TooLarge { url: shown, limit }.into());
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|source| SourceError::Io {
                path: dest.to_path_buf(),
                source,
            })?;
    }
    file.flush().await.map_err(|source| SourceError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    Ok((Digest::from_sha256(hasher), size))
}

fn redact(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

fn flatten(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn temp_dir() -> Result<tempfile::TempDir, SourceError> {
    tempfile::Builder::new()
        .prefix("gitops-helm-")
        .tempdir()
        .map_err(io_err(&std::env::temp_dir()))
}

fn join_err(e: tokio::task::JoinError) -> SourceError {
    SourceError::Io {
        path: PathBuf::from("<blocking task>"),
        source: std::io::Error::other(e.to_string()),
    }
}

/// The repository URL as a base for relative chart URLs (with a trailing slash).
fn base_url(url: &str) -> Result<url::Url, SourceError> {
    let mut u = url::Url::parse(url)
        .map_err(|e| SourceError::InvalidSpec(format!("Helm repository URL {url:?}: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(SourceError::InvalidSpec(format!(
            "Helm repository URL {url:?}: scheme must be http or https"
        )));
    }
    if !u.path().ends_with('/') {
        let path = format!("{}/", u.path());
        u.set_path(&path);
    }
    Ok(u)
}

/// A Helm repository index, acquired as an artifact (Flux's `HelmRepository`, type `default`).
#[derive(Debug, Clone)]
pub struct HelmRepositorySource {
    /// `http(s)://host/path`; the index is `<url>/index.yaml`.
    pub url: String,
    /// Credentials and TLS.
    pub http: HelmHttp,
    /// The largest index accepted (Flux: 50 MiB).
    pub max_index_bytes: u64,
    /// The object the artifacts belong to in the store.
    pub object: ObjectRef,
}

/// An index downloaded to a temporary file and parsed.
struct FetchedIndex {
    index: IndexFile,
    digest: Digest,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl HelmRepositorySource {
    /// A source for `url` with Flux's defaults (50 MiB index limit, 60 s timeout).
    pub fn new(url: impl Into<String>, object: ObjectRef) -> Self {
        HelmRepositorySource {
            url: url.into(),
            http: HelmHttp {
                timeout: Duration::from_secs(60),
                ..HelmHttp::default()
            },
            max_index_bytes: 50 * 1024 * 1024,
            object,
        }
    }

    fn index_url(&self) -> Result<url::Url, SourceError> {
        base_url(&self.url)?
            .join("index.yaml")
            .map_err(|e| SourceError::InvalidSpec(format!("index URL: {e}")))
    }

    /// Downloads the index to a temporary file; parses it unless `skip_parse_for` equals its
    /// digest (the caller already has that index).
    async fn fetch_index(
        &self,
        skip_parse_for: Option<&Digest>,
    ) -> Result<FetchedIndex, SourceError> {
        let client = self.http.client()?;
        let url = self.index_url()?;
        let dir = temp_dir()?;
        let file = dir.path().join("index.yaml");
        let (digest, _) = download(
            &client,
            &url,
            self.http.basic.as_ref(),
            &file,
            self.max_index_bytes,
            "index.yaml",
        )
        .await?;
        let index = if skip_parse_for == Some(&digest) {
            IndexFile::default()
        } else {
            let path = file.clone();
            let max = self.max_index_bytes;
            let origin = redact(&url);
            tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&path).map_err(io_err(&path))?;
                IndexFile::from_reader(std::io::BufReader::new(f), max, &origin)
                    .map_err(SourceError::from)
            })
            .await
            .map_err(join_err)??
        };
        Ok(FetchedIndex {
            index,
            digest,
            file,
            _dir: dir,
        })
    }
}

#[async_trait::async_trait]
impl Source for HelmRepositorySource {
    async fn acquire(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError> {
        let last_digest = last
            .filter(|a| store.exists(&a.path))
            .and_then(|a| a.revision.digest().cloned());
        let fetched = self.fetch_index(last_digest.as_ref()).await?;
        let revision = Revision::bare(fetched.digest.clone());
        if let Some(last) = last
            && last.revision == revision
            && store.exists(&last.path)
        {
            return Ok(Acquired::Unchanged(last.clone()));
        }
        let file_name = format!("index-{}.yaml", fetched.digest.hex());
        let object = self.object.clone();
        let store_owned = store.clone();
        let path = fetched.file.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&path).map_err(io_err(&path))?;
            store_owned
                .write_file(&object, &file_name, &mut f)
                .map_err(SourceError::from)
        })
        .await
        .map_err(join_err)??;
        let entries: usize = fetched.index.entries.values().map(Vec::len).sum();
        tracing::info!(url = %self.url, %revision, charts = fetched.index.entries.len(), versions = entries, "Helm repository index stored");
        let artifact = Artifact {
            revision,
            digest: stored.digest,
            size: stored.size,
            url: store.url_for(&stored.path),
            path: stored.path,
            metadata: BTreeMap::new(),
            last_update_time: jiff::Timestamp::now(),
        };
        if let Err(error) = store.gc(&self.object, Some(&artifact.path)) {
            tracing::warn!(%error, "artifact garbage collection failed");
        }
        Ok(Acquired::New(artifact))
    }
}

/// When a chart from a Git or bucket artifact gets a new artifact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReconcileStrategy {
    /// Only when the chart version (or the configuration) changes.
    #[default]
    ChartVersion,
    /// On every new source revision: the revision gets `+<12 hex of the source digest>`.
    Revision,
}

/// Where a chart comes from.
#[derive(Debug, Clone)]
pub enum ChartOrigin {
    /// A chart in a Helm repository, by name and version constraint.
    Repository {
        /// The repository (URL, credentials).
        repository: HelmRepositorySource,
        /// The chart name.
        chart: String,
        /// A Masterminds constraint (`*` when empty).
        version: String,
    },
    /// A chart in an OCI registry as `helm push` stores it: the repository
    /// `oci://host/path/<chart>`, tags are versions (`+` written as `_`).
    Oci {
        /// The registry repository of the chart (URL, credentials, TLS, timeout); its
        /// reference and layer selector are set from `version`.
        registry: crate::oci::OciSource,
        /// An exact version (pulled by tag, no listing) or a Masterminds constraint over the
        /// tags (`*` when empty).
        version: String,
    },
    /// A chart directory inside an acquired (extracted) Git or bucket artifact.
    Directory {
        /// The extracted artifact root.
        root: PathBuf,
        /// The chart's path below the root (`charts/app`).
        path: String,
        /// The artifact's revision (for the `Revision` strategy suffix).
        source_revision: Revision,
    },
}

/// A packaged chart, acquired as an artifact (Flux's `HelmChart`).
#[derive(Debug, Clone)]
pub struct HelmChartSource {
    /// Where the chart comes from.
    pub origin: ChartOrigin,
    /// Values files merged in order and packaged as `values.yaml`: paths inside the chart for
    /// a repository chart, below the artifact root for a directory chart.
    pub values_files: Vec<String>,
    /// Skip missing values files instead of failing.
    pub ignore_missing_values_files: bool,
    /// When a directory chart gets a new artifact.
    pub reconcile_strategy: ReconcileStrategy,
    /// The object's `metadata.generation`, appended as `+<generation>` to the revision of a
    /// repository chart with values files (Flux's rule).
    pub generation: Option<i64>,
    /// The largest chart package accepted (Flux: 10 MiB).
    pub max_chart_bytes: u64,
    /// The object the artifacts belong to in the store.
    pub object: ObjectRef,
}

#[derive(serde::Deserialize)]
struct ChartMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
}

impl HelmChartSource {
    /// A chart from a repository.
    pub fn from_repository(
        repository: HelmRepositorySource,
        chart: impl Into<String>,
        version: impl Into<String>,
        object: ObjectRef,
    ) -> Self {
        Self::with_origin(
            ChartOrigin::Repository {
                repository,
                chart: chart.into(),
                version: version.into(),
            },
            object,
        )
    }

    /// A chart from an OCI registry: `registry.url` is `oci://host/path/<chart>`.
    pub fn from_oci(
        registry: crate::oci::OciSource,
        version: impl Into<String>,
        object: ObjectRef,
    ) -> Self {
        Self::with_origin(
            ChartOrigin::Oci {
                registry,
                version: version.into(),
            },
            object,
        )
    }

    /// A chart from a directory inside an extracted artifact.
    pub fn from_directory(
        root: impl Into<PathBuf>,
        path: impl Into<String>,
        source_revision: Revision,
        object: ObjectRef,
    ) -> Self {
        Self::with_origin(
            ChartOrigin::Directory {
                root: root.into(),
                path: path.into(),
                source_revision,
            },
            object,
        )
    }

    fn with_origin(origin: ChartOrigin, object: ObjectRef) -> Self {
        HelmChartSource {
            origin,
            values_files: Vec::new(),
            ignore_missing_values_files: false,
            reconcile_strategy: ReconcileStrategy::default(),
            generation: None,
            max_chart_bytes: 10 * 1024 * 1024,
            object,
        }
    }

    /// The fingerprint of the configuration that shapes the package.
    pub fn config_digest(&self) -> Digest {
        let mut h = sha2::Sha256::new();
        for f in &self.values_files {
            h.update(f.as_bytes());
            h.update(b"\0");
        }
        h.update(if self.ignore_missing_values_files {
            b"m1"
        } else {
            b"m0"
        });
        h.update(match self.reconcile_strategy {
            ReconcileStrategy::ChartVersion => b"\0v".as_slice(),
            ReconcileStrategy::Revision => b"\0r".as_slice(),
        });
        Digest::from_sha256(h)
    }

    fn unchanged(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
        chart_revision: &str,
    ) -> Option<Artifact> {
        let last = last?;
        (last.revision.as_chart_version() == Some(chart_revision)
            && last.metadata.get(CONFIG_DIGEST_KEY) == Some(&self.config_digest().to_string())
            && store.exists(&last.path))
        .then(|| last.clone())
    }

    async fn acquire_from_repository(
        &self,
        repository: &HelmRepositorySource,
        chart: &str,
        version: &str,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError> {
        let constraint = if version.trim().is_empty() {
            "*"
        } else {
            version
        };
        let fetched = repository.fetch_index(None).await?;
        let index_url = repository.index_url()?;
        let shown = redact(&index_url);
        let selected = fetched.index.select(chart, constraint, &shown)?.clone();
        // Flux: the generation becomes the build metadata when values files are merged.
        let metadata = match self.generation {
            Some(generation) if !self.values_files.is_empty() => generation.to_string(),
            _ => String::new(),
        };
        let chart_revision = chart_revision(&selected.version, &metadata, &shown)?;
        if let Some(artifact) = self.unchanged(last, store, &chart_revision) {
            return Ok(Acquired::Unchanged(artifact));
        }
        let first = selected
            .urls
            .first()
            .ok_or_else(|| HelmError::InvalidIndex {
                url: shown.clone(),
                message: format!("chart {chart} {} has no URLs", selected.version),
            })?;
        let base = base_url(&repository.url)?;
        let chart_url = base.join(first).map_err(|e| HelmError::InvalidIndex {
            url: shown.clone(),
            message: format!("chart URL {first:?}: {e}"),
        })?;
        let same_host = chart_url.host_str() == base.host_str()
            && chart_url.port_or_known_default() == base.port_or_known_default();
        let basic = repository
            .http
            .basic
            .as_ref()
            .filter(|_| same_host || repository.http.pass_credentials);
        let client = repository.http.client()?;
        let work = temp_dir()?;
        let package = work.path().join("chart.tgz");
        let (digest, _) = download(
            &client,
            &chart_url,
            basic,
            &package,
            self.max_chart_bytes,
            &format!("chart {chart} {}", selected.version),
        )
        .await?;
        if let Some(expected) = selected.digest.as_deref().filter(|d| !d.is_empty()) {
            let expected = Digest::new(Algorithm::Sha256, expected.trim_start_matches("sha256:"))
                .map_err(|e| HelmError::InvalidIndex {
                url: shown.clone(),
                message: format!("digest of {chart} {}: {e}", selected.version),
            })?;
            if expected != digest {
                return Err(SourceError::DigestMismatch {
                    url: redact(&chart_url),
                    expected,
                    actual: digest,
                });
            }
        }
        let file_name = format!("{chart}-{chart_revision}.tgz");
        let packaged_version = (chart_revision != selected.version).then(|| chart_revision.clone());
        let stored = self
            .store_remote_package(
                store,
                work,
                package,
                file_name,
                packaged_version,
                redact(&chart_url),
            )
            .await?;
        Ok(Acquired::New(self.finish(
            store,
            stored,
            &chart_revision,
        )?))
    }

    /// Stores a downloaded chart package: verbatim, or — with values files or a version with
    /// build metadata — unpacked, values merged into values.yaml, version set, packaged again.
    async fn store_remote_package(
        &self,
        store: &ArtifactStore,
        work: tempfile::TempDir,
        package: PathBuf,
        file_name: String,
        packaged_version: Option<String>,
        origin: String,
    ) -> Result<crate::store::StoredFile, SourceError> {
        let this = self.clone();
        let store_owned = store.clone();
        tokio::task::spawn_blocking(move || -> Result<_, SourceError> {
            if this.values_files.is_empty() && packaged_version.is_none() {
                let mut f = std::fs::File::open(&package).map_err(io_err(&package))?;
                return Ok(store_owned.write_file(&this.object, &file_name, &mut f)?);
            }
            // Unpack, merge the values files into values.yaml, package again.
            let unpacked = work.path().join("unpacked");
            std::fs::create_dir_all(&unpacked).map_err(io_err(&unpacked))?;
            let f = std::fs::File::open(&package).map_err(io_err(&package))?;
            extract_tar_gz(
                std::io::BufReader::new(f),
                &unpacked,
                FetchLimits::default(),
                &origin,
            )?;
            let chart_dir = unpacked.join(chart_top_dir(&unpacked, &origin)?);
            if let Some(version) = &packaged_version {
                set_chart_version(&chart_dir, version, &origin)?;
            }
            let values = merge_values_files(
                &chart_dir,
                &this.values_files,
                this.ignore_missing_values_files,
            )?;
            write_values(&chart_dir.join("values.yaml"), &values)?;
            let (stored, _) = store_owned.archive_dir(&this.object, &file_name, &unpacked, None)?;
            Ok(stored)
        })
        .await
        .map_err(join_err)?
    }

    async fn acquire_from_oci(
        &self,
        registry: &crate::oci::OciSource,
        version: &str,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError> {
        use crate::oci::{LayerOperation, LayerSelector, OciReference, OciRepositoryUrl};
        let repo = OciRepositoryUrl::parse(&registry.url)?;
        let shown = repo.to_string();
        let chart = repo
            .repository
            .rsplit('/')
            .next()
            .unwrap_or(&repo.repository)
            .to_owned();
        let constraint = version.trim();
        let mut oci = registry.clone();
        oci.layer_selector = LayerSelector {
            media_type: Some(HELM_CHART_LAYER_MEDIA_TYPE.to_owned()),
            operation: LayerOperation::Copy,
        };
        oci.ignore = None;
        oci.max_layer_bytes = self.max_chart_bytes;
        // An exact version is pulled by its tag without listing (as Flux does); a range is
        // resolved over the tags. Helm writes `+` as `_` in tags.
        let tag = if !constraint.is_empty() && crate::semver::Version::parse(constraint).is_ok() {
            constraint.replace('+', "_")
        } else {
            oci.reference = OciReference {
                semver: Some(
                    if constraint.is_empty() {
                        "*"
                    } else {
                        constraint
                    }
                    .to_owned(),
                ),
                ..OciReference::default()
            };
            oci.resolve_tag().await?
        };
        let chart_version = tag.replace('_', "+");
        let metadata = match self.generation {
            Some(generation) if !self.values_files.is_empty() => generation.to_string(),
            _ => String::new(),
        };
        let chart_revision = chart_revision(&chart_version, &metadata, &shown)?;
        if let Some(artifact) = self.unchanged(last, store, &chart_revision) {
            return Ok(Acquired::Unchanged(artifact));
        }
        oci.reference = OciReference {
            tag: Some(tag.clone()),
            ..OciReference::default()
        };
        let work = temp_dir()?;
        let pulled_store = ArtifactStore::new(work.path().join("pulled"))?;
        let pulled = oci.acquire(None, &pulled_store).await?.into_artifact();
        let package = pulled_store.local_path(&pulled.path);
        // The package must be this chart at this version.
        let listed = {
            let package = package.clone();
            let origin = format!("{shown}:{tag}");
            tokio::task::spawn_blocking(move || package_chart_meta(&package, &origin))
                .await
                .map_err(join_err)??
        };
        if listed.name != chart || listed.version != chart_version {
            return Err(HelmError::InvalidChart {
                path: format!("{shown}:{tag}"),
                message: format!(
                    "the package holds chart {:?} version {:?}, expected {chart:?} {chart_version:?}",
                    listed.name, listed.version
                ),
            }
            .into());
        }
        let file_name = format!("{chart}-{chart_revision}.tgz");
        let packaged_version = (chart_revision != chart_version).then(|| chart_revision.clone());
        let stored = self
            .store_remote_package(
                store,
                work,
                package,
                file_name,
                packaged_version,
                format!("{shown}:{tag}"),
            )
            .await?;
        Ok(Acquired::New(self.finish(
            store,
            stored,
            &chart_revision,
        )?))
    }

    fn finish(
        &self,
        store: &ArtifactStore,
        stored: crate::store::StoredFile,
        chart_revision: &str,
    ) -> Result<Artifact, SourceError> {
        let revision =
            Revision::chart_version(chart_revision).map_err(|e| HelmError::InvalidChart {
                path: stored.path.display().to_string(),
                message: e.to_string(),
            })?;
        let mut metadata = BTreeMap::new();
        metadata.insert(CHART_REVISION_KEY.to_owned(), chart_revision.to_owned());
        metadata.insert(
            CONFIG_DIGEST_KEY.to_owned(),
            self.config_digest().to_string(),
        );
        let artifact = Artifact {
            revision,
            digest: stored.digest,
            size: stored.size,
            url: store.url_for(&stored.path),
            path: stored.path,
            metadata,
            last_update_time: jiff::Timestamp::now(),
        };
        tracing::info!(revision = %artifact.revision, "Helm chart packaged");
        if let Err(error) = store.gc(&self.object, Some(&artifact.path)) {
            tracing::warn!(%error, "artifact garbage collection failed");
        }
        Ok(artifact)
    }

    fn acquire_from_directory(
        &self,
        root: &Path,
        path: &str,
        source_revision: &Revision,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError> {
        let rel = Path::new(path.trim_start_matches("./"));
        if rel.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        }) {
            return Err(SourceError::InvalidSpec(format!(
                "chart path {path:?} must stay inside the artifact"
            )));
        }
        let chart_dir = root.join(rel);
        let meta = read_chart_meta(&chart_dir, path)?;
        // Flux: `<first 12 hex of the source digest>` with the Revision strategy, then
        // `.<generation>` (or `<generation>` alone) when values files are merged.
        let mut metadata = String::new();
        if self.reconcile_strategy == ReconcileStrategy::Revision {
            let Some(digest) = source_revision.digest() else {
                return Err(SourceError::InvalidSpec(format!(
                    "the Revision strategy needs a source revision with a digest, got {source_revision}"
                )));
            };
            let hex = digest.hex();
            metadata.push_str(&hex[..hex.len().min(12)]);
        }
        if let Some(generation) = self.generation
            && !self.values_files.is_empty()
        {
            if !metadata.is_empty() {
                metadata.push('.');
            }
            metadata.push_str(&generation.to_string());
        }
        let chart_revision = chart_revision(&meta.version, &metadata, path)?;
        if let Some(artifact) = self.unchanged(last, store, &chart_revision) {
            return Ok(Acquired::Unchanged(artifact));
        }
        let work = temp_dir()?;
        let staged = work.path().join(&meta.name);
        copy_chart(&chart_dir, &staged)?;
        if chart_revision != meta.version {
            set_chart_version(&staged, &chart_revision, path)?;
        }
        if !self.values_files.is_empty() {
            let values =
                merge_values_files(root, &self.values_files, self.ignore_missing_values_files)?;
            write_values(&staged.join("values.yaml"), &values)?;
        }
        let file_name = format!("{}-{chart_revision}.tgz", meta.name);
        let (stored, _) = store.archive_dir(&self.object, &file_name, work.path(), None)?;
        Ok(Acquired::New(self.finish(
            store,
            stored,
            &chart_revision,
        )?))
    }
}

#[async_trait::async_trait]
impl Source for HelmChartSource {
    async fn acquire(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError> {
        match &self.origin {
            ChartOrigin::Repository {
                repository,
                chart,
                version,
            } => {
                let timeout = repository.http.timeout.max(Duration::from_secs(1)) * 3;
                match tokio::time::timeout(
                    timeout,
                    self.acquire_from_repository(repository, chart, version, last, store),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(SourceError::Timeout {
                        url: repository.url.clone(),
                        operation: "Helm chart pull",
                        after: timeout,
                    }),
                }
            }
            ChartOrigin::Oci { registry, version } => {
                let timeout = registry.timeout.max(Duration::from_secs(1)) * 3;
                match tokio::time::timeout(
                    timeout,
                    self.acquire_from_oci(registry, version, last, store),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(SourceError::Timeout {
                        url: registry.url.clone(),
                        operation: "Helm chart pull",
                        after: timeout,
                    }),
                }
            }
            ChartOrigin::Directory {
                root,
                path,
                source_revision,
            } => {
                let this = self.clone();
                let (root, path, rev) = (root.clone(), path.clone(), source_revision.clone());
                let last = last.cloned();
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    this.acquire_from_directory(&root, &path, &rev, last.as_ref(), &store)
                })
                .await
                .map_err(join_err)?
            }
        }
    }
}

/// The chart revision Flux writes: the version verbatim without metadata, else the version
/// with its build metadata replaced (Masterminds' `SetMetadata(..).String()`, normalised).
fn chart_revision(version: &str, metadata: &str, shown: &str) -> Result<String, SourceError> {
    if metadata.is_empty() {
        return Ok(version.to_owned());
    }
    let invalid = |e: crate::semver::SemverError| HelmError::InvalidChart {
        path: shown.to_owned(),
        message: format!("setting build metadata {metadata:?} on version {version:?}: {e}"),
    };
    Ok(crate::semver::Version::parse(version)
        .and_then(|v| v.with_build_metadata(metadata))
        .map_err(invalid)?
        .to_string())
}

/// Rewrites the top-level `version:` of `Chart.yaml` in `chart_dir` (the packaged chart then
/// carries the revision's build metadata, as Flux's packaging does).
fn set_chart_version(chart_dir: &Path, version: &str, shown: &str) -> Result<(), SourceError> {
    let file = chart_dir.join("Chart.yaml");
    let text = std::fs::read_to_string(&file).map_err(io_err(&file))?;
    let mut found = false;
    let mut out = String::with_capacity(text.len() + version.len());
    for line in text.split_inclusive('\n') {
        let key = line.split(':').next().unwrap_or("");
        if !found && key.trim_end() == "version" && !line.starts_with([' ', '\t']) {
            found = true;
            out.push_str("version: ");
            out.push_str(version);
            out.push('\n');
        } else {
            out.push_str(line);
        }
    }
    if !found {
        return Err(HelmError::InvalidChart {
            path: shown.to_owned(),
            message: "Chart.yaml has no top-level version line to set".into(),
        }
        .into());
    }
    std::fs::write(&file, out).map_err(io_err(&file))?;
    let meta = read_chart_meta(chart_dir, shown)?;
    if meta.version != version {
        return Err(HelmError::InvalidChart {
            path: shown.to_owned(),
            message: format!(
                "Chart.yaml version reads {:?} after setting {version:?}",
                meta.version
            ),
        }
        .into());
    }
    Ok(())
}

fn read_chart_meta(chart_dir: &Path, shown: &str) -> Result<ChartMeta, SourceError> {
    let file = chart_dir.join("Chart.yaml");
    let text = std::fs::read_to_string(&file).map_err(|e| HelmError::InvalidChart {
        path: shown.to_owned(),
        message: format!("reading Chart.yaml: {e}"),
    })?;
    let meta: ChartMeta = serde_saphyr::from_str(&text).map_err(|e| HelmError::InvalidChart {
        path: shown.to_owned(),
        message: format!("Chart.yaml: {e}"),
    })?;
    if meta.name.is_empty() || meta.version.is_empty() {
        return Err(HelmError::InvalidChart {
            path: shown.to_owned(),
            message: "Chart.yaml needs a name and a version".into(),
        }
        .into());
    }
    crate::semver::Version::parse(&meta.version).map_err(|e| HelmError::InvalidChart {
        path: shown.to_owned(),
        message: format!("version {:?} is not semver: {e}", meta.version),
    })?;
    if meta.name.contains(['/', '\\']) || meta.name.starts_with('.') {
        return Err(HelmError::InvalidChart {
            path: shown.to_owned(),
            message: format!("chart name {:?} is not a valid file name", meta.name),
        }
        .into());
    }
    Ok(meta)
}

/// The name and version in the `Chart.yaml` of a chart package (`<chart>/Chart.yaml` in the
/// `.tgz`), read without unpacking anything else.
fn package_chart_meta(package: &Path, origin: &str) -> Result<ChartMeta, SourceError> {
    let invalid = |message: String| HelmError::InvalidChart {
        path: origin.to_owned(),
        message,
    };
    let f = std::fs::File::open(package).map_err(io_err(package))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("reading the package: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("reading the package: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| invalid(format!("reading the package: {e}")))?
            .into_owned();
        let parts: Vec<_> = path.components().collect();
        if parts.len() == 2 && path.file_name().is_some_and(|n| n == "Chart.yaml") {
            if entry.size() > 1024 * 1024 {
                return Err(invalid("Chart.yaml is larger than 1 MiB".into()).into());
            }
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text)
                .map_err(|e| invalid(format!("reading Chart.yaml: {e}")))?;
            let meta: ChartMeta =
                serde_saphyr::from_str(&text).map_err(|e| invalid(format!("Chart.yaml: {e}")))?;
            return Ok(meta);
        }
    }
    Err(invalid("the package has no <chart>/Chart.yaml".into()).into())
}

/// The single top-level directory of an unpacked chart package.
fn chart_top_dir(unpacked: &Path, origin: &str) -> Result<PathBuf, SourceError> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(unpacked).map_err(io_err(unpacked))? {
        let entry = entry.map_err(io_err(unpacked))?;
        if entry.file_type().map_err(io_err(unpacked))?.is_dir() {
            dirs.push(PathBuf::from(entry.file_name()));
        }
    }
    match dirs.as_slice() {
        [one] if unpacked.join(one).join("Chart.yaml").is_file() => Ok(one.clone()),
        _ => Err(HelmError::InvalidChart {
            path: origin.to_owned(),
            message: "the package must hold one chart directory with a Chart.yaml".into(),
        }
        .into()),
    }
}

/// Copies a chart directory, leaving out what `.helmignore` excludes (gitignore syntax, as
/// `helm package` applies it) and symlinks.
fn copy_chart(from: &Path, to: &Path) -> Result<(), SourceError> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(from);
    let helmignore = from.join(".helmignore");
    if helmignore.is_file()
        && let Some(e) = builder.add(&helmignore)
    {
        return Err(HelmError::InvalidChart {
            path: helmignore.display().to_string(),
            message: e.to_string(),
        }
        .into());
    }
    let rules = builder.build().map_err(|e| HelmError::InvalidChart {
        path: helmignore.display().to_string(),
        message: e.to_string(),
    })?;
    copy_tree(from, from, to, &rules)
}

fn copy_tree(
    base: &Path,
    dir: &Path,
    to: &Path,
    rules: &ignore::gitignore::Gitignore,
) -> Result<(), SourceError> {
    std::fs::create_dir_all(to).map_err(io_err(to))?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let ty = entry.file_type().map_err(io_err(&path))?;
        let rel = path.strip_prefix(base).unwrap_or(&path);
        if rules
            .matched_path_or_any_parents(rel, ty.is_dir())
            .is_ignore()
        {
            continue;
        }
        let target = to.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(base, &path, &target, rules)?;
        } else if ty.is_file() {
            std::fs::copy(&path, &target).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// Merges YAML mapping files in order (later keys win, maps merge deeply).
fn merge_values_files(
    base: &Path,
    files: &[String],
    ignore_missing: bool,
) -> Result<serde_json::Value, SourceError> {
    let mut merged = serde_json::Value::Object(serde_json::Map::new());
    for file in files {
        let rel = Path::new(file.trim_start_matches("./"));
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(HelmError::ValuesFile {
                path: file.clone(),
                message: "must be a relative path inside the source".into(),
            }
            .into());
        }
        let path = base.join(rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && ignore_missing => continue,
            Err(e) => {
                return Err(HelmError::ValuesFile {
                    path: file.clone(),
                    message: e.to_string(),
                }
                .into());
            }
        };
        let value: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_saphyr::from_str(&text).map_err(|e| HelmError::ValuesFile {
                path: file.clone(),
                message: e.to_string(),
            })?
        };
        let value = match value {
            serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
            v @ serde_json::Value::Object(_) => v,
            _ => {
                return Err(HelmError::ValuesFile {
                    path: file.clone(),
                    message: "is not a YAML mapping".into(),
                }
                .into());
            }
        };
        merge_into(&mut merged, value);
    }
    Ok(merged)
}

fn merge_into(target: &mut serde_json::Value, overlay: serde_json::Value) {
    match (target, overlay) {
        (serde_json::Value::Object(t), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match t.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_into(existing, v)
                    }
                    _ => {
                        t.insert(k, v);
                    }
                }
            }
        }
        (t, o) => *t = o,
    }
}

fn write_values(path: &Path, values: &serde_json::Value) -> Result<(), SourceError> {
    let text = serde_saphyr::to_string(values).map_err(|e| HelmError::ValuesFile {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_merge_deeply_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("a.yaml"),
            "image: {repo: a, tag: '1'}\nlist: [1, 2]\n",
        )
        .expect("w");
        std::fs::write(dir.path().join("b.yaml"), "image: {tag: '2'}\nlist: [3]\n").expect("w");
        let merged = merge_values_files(dir.path(), &["a.yaml".into(), "b.yaml".into()], false)
            .expect("merges");
        assert_eq!(
            merged,
            serde_json::json!({"image": {"repo": "a", "tag": "2"}, "list": [3]})
        );
        assert!(matches!(
            merge_values_files(dir.path(), &["missing.yaml".into()], false),
            Err(SourceError::Helm(HelmError::ValuesFile { .. }))
        ));
        assert!(merge_values_files(dir.path(), &["missing.yaml".into()], true).is_ok());
        assert!(merge_values_files(dir.path(), &["../a.yaml".into()], true).is_err());
    }
}

//! OCI artifacts (Flux's `OCIRepository`) on `oci-client`: acquire and push.
//!
//! A repository is `oci://host[:port]/path/to/repo` (no tag or digest in the URL). The
//! reference precedence is Flux's: `tag` < `semver` (tags filtered by `semver_filter` first) <
//! `digest`; nothing set means the tag `latest`. The revision is `<tag>@sha256:<manifest
//! digest>` (bare `sha256:<digest>` when pinned by digest), and the manifest annotations
//! (`org.opencontainers.image.source`, `.revision`, `.created`) end up in the artifact
//! metadata. When the manifest digest equals the last artifact's (and the configuration did not
//! change), no layer is downloaded.
//!
//! [`push_artifact`] builds and pushes an artifact the way `flux push artifact` does: a
//! reproducible `tar.gz` of a directory as the one layer
//! ([`FLUX_CONTENT_MEDIA_TYPE`]), an empty config ([`FLUX_CONFIG_MEDIA_TYPE`]), the three
//! annotations on the manifest.

mod auth;
mod push;

pub use auth::OciAuth;
pub use push::{PushOptions, Pushed, push_artifact};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientIdentity, ClientProtocol,
};
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::Digest as _;

use crate::artifact::{Acquired, Artifact, Source};
use crate::error::SourceError;
use crate::fetch::{FetchLimits, extract_tar_gz};
use crate::revision::{Digest, Revision};
use crate::semver::Constraints;
use crate::sourceignore::IgnoreRules;
use crate::store::{ArtifactStore, ObjectRef};

/// Media type of the config of artifacts pushed by Flux (`flux push artifact`).
pub const FLUX_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.flux.config.v1+json";
/// Media type of the content layer of Flux artifacts: a `tar.gz` of the files.
pub const FLUX_CONTENT_MEDIA_TYPE: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";
/// Annotation: when the artifact was created (RFC 3339).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Annotation: where the content came from (a Git URL, say).
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
/// Annotation: the revision of the source (`main@sha1:<hex>`), Flux's "origin revision".
pub const ANNOTATION_REVISION: &str = "org.opencontainers.image.revision";
/// The metadata key holding the fingerprint of the configuration (layer selector, ignore
/// rules) an artifact was built with; a change forces a rebuild.
pub const CONFIG_DIGEST_KEY: &str = "source.gitops.dev/config-digest";

/// What failed talking to a registry or handling an OCI artifact (besides authentication,
/// missing references and transport errors, which are [`SourceError`] variants of their own).
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The `oci://` URL is not valid.
    #[error("invalid OCI repository URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// No layer of the manifest has the selected media type.
    #[error("no layer with media type {media_type:?} in {reference} (layers: {available:?})")]
    LayerNotFound {
        /// The reference (`host/repo@digest`).
        reference: String,
        /// The media type asked for.
        media_type: String,
        /// The media types present.
        available: Vec<String>,
    },
    /// The manifest has no layers.
    #[error("manifest of {reference} has no layers")]
    NoLayers {
        /// The reference.
        reference: String,
    },
    /// A layer is bigger than the limit.
    #[error("layer {digest} of {reference} is {size} bytes, over the limit of {limit}")]
    LayerTooLarge {
        /// The reference.
        reference: String,
        /// The layer digest.
        digest: String,
        /// Its size.
        size: i64,
        /// The limit.
        limit: u64,
    },
    /// The `semver_filter` is not a valid regular expression.
    #[error("invalid semverFilter {filter:?}: {reason}")]
    InvalidFilter {
        /// The filter.
        filter: String,
        /// Why.
        reason: String,
    },
    /// A docker `config.json` could not be used (the message never holds a secret).
    #[error("docker config: {0}")]
    DockerConfig(String),
    /// A docker credential helper (`docker-credential-<name> get`) failed (the message never
    /// holds a secret).
    #[error("docker credential helper docker-credential-{helper} for {registry}: {message}")]
    CredentialHelper {
        /// The helper's name (`pass`, `secretservice`, `ecr-login`, …).
        helper: String,
        /// The registry asked for.
        registry: String,
        /// What went wrong.
        message: String,
    },
    /// The CA certificate could not be loaded.
    #[error("CA certificate: {0}")]
    Certificate(String),
    /// The client certificate or its key (mutual TLS) could not be loaded (the message never
    /// holds key material).
    #[error("client certificate: {0}")]
    ClientCertificate(String),
    /// The registry answered something else the client could not handle.
    #[error("OCI operation {operation} on {reference} failed: {message}")]
    Registry {
        /// What was being done (`pull manifest`, `list tags`, `push`).
        operation: &'static str,
        /// The reference.
        reference: String,
        /// The underlying error.
        message: String,
    },
}

/// Which manifest of the repository to acquire. Precedence: `digest` > `semver` > `tag`;
/// nothing set means the tag `latest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciReference {
    /// A tag.
    pub tag: Option<String>,
    /// A Masterminds semver range over the tags.
    pub semver: Option<String>,
    /// A regular expression the tags must match before the semver range picks one.
    pub semver_filter: Option<String>,
    /// A manifest digest `sha256:<hex>`.
    pub digest: Option<String>,
}

/// What to do with the selected layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LayerOperation {
    /// Extract the layer (`tar.gz`) and store a reproducible archive of its files, minus the
    /// ignore rules (Flux's default).
    #[default]
    Extract,
    /// Store the layer bytes verbatim.
    Copy,
}

/// Which layer of the manifest becomes the artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerSelector {
    /// The media type of the layer; `None` takes the first layer.
    pub media_type: Option<String>,
    /// Extract or copy.
    pub operation: LayerOperation,
}

/// TLS settings for registries (Flux's `certSecretRef`: `ca.crt`, `tls.crt`, `tls.key`).
/// `Debug` never prints key material.
#[derive(Clone, Default)]
pub struct OciTls {
    /// Extra trusted CA certificates (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate (chain, leaf first) and private key for mutual TLS
    /// (`tls.crt` + `tls.key`), presented to registries that require client certificates.
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for OciTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciTls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .field("client_identity_pem", &self.client_identity_pem.is_some())
            .finish()
    }
}

/// An OCI repository, acquired as an artifact (Flux's `OCIRepository`).
#[derive(Debug, Clone)]
pub struct OciSource {
    /// `oci://host[:port]/repo`.
    pub url: String,
    /// Which manifest.
    pub reference: OciReference,
    /// Which layer, and what to do with it.
    pub layer_selector: LayerSelector,
    /// Credentials.
    pub auth: OciAuth,
    /// Talk plain HTTP to the registry.
    pub insecure: bool,
    /// Extra CA certificates.
    pub tls: OciTls,
    /// A spec-level ignore list (gitignore syntax) replacing Flux's default exclusions.
    pub ignore: Option<String>,
    /// An HTTP(S) or SOCKS5 proxy for the registry (Flux's `proxySecretRef`); without one,
    /// none is used.
    pub proxy: Option<crate::git::ProxySettings>,
    /// The limit for each registry operation.
    pub timeout: Duration,
    /// The largest layer accepted, in bytes.
    pub max_layer_bytes: u64,
    /// The object the artifacts belong to in the store.
    pub object: ObjectRef,
}

/// A parsed `oci://host[:port]/repo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRepositoryUrl {
    /// `host[:port]`.
    pub registry: String,
    /// `path/to/repo`.
    pub repository: String,
}

impl OciRepositoryUrl {
    /// Parses `oci://host[:port]/repo`, refusing tags and digests in the URL.
    pub fn parse(url: &str) -> Result<Self, OciError> {
        let invalid = |reason: &str| OciError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("oci://")
            .ok_or_else(|| invalid("must start with oci://"))?;
        let (registry, repository) = rest
            .split_once('/')
            .ok_or_else(|| invalid("missing repository path"))?;
        let repository = repository.trim_end_matches('/');
        if registry.is_empty() || repository.is_empty() {
            return Err(invalid("missing registry host or repository path"));
        }
        if repository.contains('@')
            || repository
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'))
        {
            return Err(invalid(
                "the URL must not contain a tag or digest; use the reference",
            ));
        }
        let ok = repository.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
        if !ok {
            return Err(invalid(
                "repository path components are lowercase letters, digits and . _ -",
            ));
        }
        if registry.contains('@') {
            return Err(invalid("credentials do not belong in the URL"));
        }
        Ok(OciRepositoryUrl {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
        })
    }

    /// A reference to `tag` in this repository.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tag.to_owned(),
        )
    }

    /// A reference to `digest` in this repository.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            digest.to_owned(),
        )
    }
}

impl std::fmt::Display for OciRepositoryUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)
    }
}

/// Builds an `oci-client` client for the settings.
pub(crate) fn build_client(
    insecure: bool,
    tls: &OciTls,
    timeout: Duration,
    proxy_url: Option<&str>,
) -> Result<Client, OciError> {
    let mut config = ClientConfig {
        https_proxy: proxy_url.map(str::to_owned),
        http_proxy: proxy_url.map(str::to_owned),
        protocol: if insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        read_timeout: Some(timeout),
        connect_timeout: Some(timeout.min(Duration::from_secs(30))),
        ..ClientConfig::default()
    };
    if let Some(pem) = &tls.ca_pem {
        let cert = Certificate {
            encoding: CertificateEncoding::Pem,
            data: pem.clone(),
        };
        reqwest::Certificate::try_from(&cert).map_err(|e| OciError::Certificate(e.to_string()))?;
        config.extra_root_certificates.push(cert);
    }
    if let Some((cert_pem, key_pem)) = &tls.client_identity_pem {
        let identity = ClientIdentity {
            cert_pem: cert_pem.clone(),
            key_pem: key_pem.clone(),
        };
        // Checked here so a bad certificate or key is named as such; reqwest's message never
        // holds the key.
        reqwest::Identity::try_from(&identity)
            .map_err(|e| OciError::ClientCertificate(e.to_string()))?;
        config.client_identity = Some(identity);
    }
    Client::try_from(config).map_err(|e| OciError::Certificate(e.to_string()))
}

/// The proxy URL (credentials as user info) for the client, if any.
pub(crate) fn proxy_url(
    proxy: Option<&crate::git::ProxySettings>,
) -> Result<Option<String>, SourceError> {
    proxy
        .map(crate::git::ProxySettings::url_with_credentials)
        .transpose()
}

/// Maps an `oci-client` error to the crate's error, naming the reference.
pub(crate) fn map_oci_error(
    err: OciDistributionError,
    operation: &'static str,
    reference: &str,
    what: &str,
) -> SourceError {
    use OciDistributionError as E;
    let not_found = || SourceError::ReferenceNotFound {
        url: reference.to_owned(),
        reference: what.to_owned(),
    };
    let auth = |message: String| SourceError::AuthenticationFailed {
        url: reference.to_owned(),
        message,
    };
    match err {
        E::AuthenticationFailure(m) => auth(m),
        E::UnauthorizedError { .. } => auth("the registry refused the credentials".into()),
        E::ImageManifestNotFoundError(_) => not_found(),
        E::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}", e.code))
                .collect();
            let joined = codes.join(",").to_ascii_uppercase();
            if joined.contains("UNAUTHORIZED") || joined.contains("DENIED") {
                auth(format!("registry answered {}", codes.join(", ")))
            } else if joined.contains("UNKNOWN") {
                not_found()
            } else {
                SourceError::Oci(OciError::Registry {
                    operation,
                    reference: reference.to_owned(),
                    message: envelope
                        .errors
                        .iter()
                        .map(|e| format!("{:?}: {}", e.code, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                })
            }
        }
        E::ServerError {
            code: 401 | 403, ..
        } => auth("the registry refused the credentials".into()),
        E::ServerError { code: 404, .. } => not_found(),
        E::RequestError(e) if e.is_timeout() => SourceError::Network {
            url: reference.to_owned(),
            message: format!("{operation} timed out"),
        },
        E::RequestError(e) => SourceError::Network {
            url: reference.to_owned(),
            message: flatten(&e),
        },
        E::DigestError(e) => SourceError::Oci(OciError::Registry {
            operation,
            reference: reference.to_owned(),
            message: format!("digest verification failed: {e}"),
        }),
        other => SourceError::Oci(OciError::Registry {
            operation,
            reference: reference.to_owned(),
            message: other.to_string(),
        }),
    }
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

impl OciSource {
    /// A source for `url` with defaults: tag `latest`, first layer extracted, anonymous,
    /// HTTPS, 60 s timeout, 100 MiB layer limit.
    pub fn new(url: impl Into<String>, object: ObjectRef) -> Self {
        OciSource {
            url: url.into(),
            reference: OciReference::default(),
            layer_selector: LayerSelector::default(),
            auth: OciAuth::Anonymous,
            insecure: false,
            tls: OciTls::default(),
            ignore: None,
            proxy: None,
            timeout: Duration::from_secs(60),
            max_layer_bytes: 100 * 1024 * 1024,
            object,
        }
    }

    /// The fingerprint of everything besides the manifest that shapes the archive.
    pub fn config_digest(&self) -> Digest {
        let mut h = sha2::Sha256::new();
        h.update(b"layer\0");
        h.update(
            self.layer_selector
                .media_type
                .as_deref()
                .unwrap_or("\u{1}")
                .as_bytes(),
        );
        h.update(match self.layer_selector.operation {
            LayerOperation::Extract => b"\0extract\0".as_slice(),
            LayerOperation::Copy => b"\0copy\0".as_slice(),
        });
        h.update(b"ignore\0");
        h.update(self.ignore.as_deref().unwrap_or("\u{1}").as_bytes());
        Digest::from_sha256(h)
    }

    /// Resolves the reference to the tag it names (listing the tags for a semver range), for
    /// callers that need the tag before pulling (Helm charts: the tag is the chart version).
    pub(crate) async fn resolve_tag(&self) -> Result<String, SourceError> {
        let repo = OciRepositoryUrl::parse(&self.url)?;
        let proxy = proxy_url(self.proxy.as_ref())?;
        let client = build_client(self.insecure, &self.tls, self.timeout, proxy.as_deref())?;
        let auth = self.auth.to_registry_auth();
        let repo_name = repo.to_string();
        client
            .auth(&repo.with_tag("latest"), &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| map_oci_error(e, "authenticate", &repo_name, "/v2/"))?;
        match self.resolve(&client, &repo).await? {
            (Some(tag), _) => Ok(tag),
            (None, _) => Err(SourceError::InvalidSpec(format!(
                "{repo_name}: a digest reference names no tag"
            ))),
        }
    }

    /// Resolves the reference to `(tag name for the revision, reference to pull)`.
    async fn resolve(
        &self,
        client: &Client,
        repo: &OciRepositoryUrl,
    ) -> Result<(Option<String>, Reference), SourceError> {
        let auth = self.auth.to_registry_auth();
        if let Some(digest) = &self.reference.digest {
            Digest::new(
                crate::revision::Algorithm::Sha256,
                digest.trim_start_matches("sha256:"),
            )
            .map_err(|e| SourceError::InvalidSpec(format!("digest {digest:?}: {e}")))?;
            return Ok((None, repo.with_digest(digest)));
        }
        if let Some(range) = &self.reference.semver {
            let constraints = Constraints::parse(range)
                .map_err(|e| SourceError::InvalidSpec(format!("semver {range:?}: {e}")))?;
            let filter = match &self.reference.semver_filter {
                Some(f) => Some(regex::Regex::new(f).map_err(|e| {
                    SourceError::Oci(OciError::InvalidFilter {
                        filter: f.clone(),
                        reason: e.to_string(),
                    })
                })?),
                None => None,
            };
            let probe = repo.with_tag("latest");
            let tags = client
                .list_tags(&probe, &auth, None, None)
                .await
                .map_err(|e| map_oci_error(e, "list tags", &repo.to_string(), "tags"))?
                .tags;
            let candidates = tags
                .iter()
                .filter(|t| filter.as_ref().is_none_or(|f| f.is_match(t)))
                .map(String::as_str);
            let Some((tag, _)) = constraints.select_highest(candidates) else {
                return Err(SourceError::NoMatchingTag {
                    url: repo.to_string(),
                    range: range.clone(),
                });
            };
            return Ok((Some(tag.to_owned()), repo.with_tag(tag)));
        }
        let tag = self.reference.tag.as_deref().unwrap_or("latest");
        Ok((Some(tag.to_owned()), repo.with_tag(tag)))
    }

    async fn acquire_inner(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError> {
        let repo = OciRepositoryUrl::parse(&self.url)?;
        let proxy = proxy_url(self.proxy.as_ref())?;
        let client = build_client(self.insecure, &self.tls, self.timeout, proxy.as_deref())?;
        let auth = self.auth.to_registry_auth();
        let probe = repo.with_tag("latest");
        let repo_name = repo.to_string();
        client
            .auth(&probe, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| map_oci_error(e, "authenticate", &repo_name, "/v2/"))?;
        let (tag, reference) = self.resolve(&client, &repo).await?;
        let what = match (&tag, &self.reference.digest) {
            (_, Some(d)) => format!("digest {d}"),
            (Some(t), None) => format!("tag {t}"),
            (None, None) => "latest".to_owned(),
        };
        // HEAD of the manifest first: an unchanged digest needs nothing more.
        let manifest_digest = client
            .fetch_manifest_digest(&reference, &auth)
            .await
            .map_err(|e| map_oci_error(e, "resolve manifest", &repo_name, &what))?;
        let digest = parse_sha256(&manifest_digest, &repo_name)?;
        let revision = match &tag {
            Some(t) => Revision::named(t.clone(), digest.clone()),
            None => Revision::bare(digest.clone()),
        };
        let config = self.config_digest().to_string();
        if let Some(last) = last
            && last.revision == revision
            && last.metadata.get(CONFIG_DIGEST_KEY) == Some(&config)
            && store.exists(&last.path)
        {
            tracing::debug!(url = %repo_name, %revision, "OCI artifact unchanged");
            return Ok(Acquired::Unchanged(last.clone()));
        }
        let pinned = repo.with_digest(&manifest_digest);
        let (manifest, _) = client
            .pull_image_manifest(&pinned, &auth)
            .await
            .map_err(|e| map_oci_error(e, "pull manifest", &repo_name, &what))?;
        let pinned_name = format!("{}@{}", repo_name, manifest_digest);
        let layer = match &self.layer_selector.media_type {
            Some(mt) => manifest
                .layers
                .iter()
                .find(|l| &l.media_type == mt)
                .ok_or_else(|| OciError::LayerNotFound {
                    reference: pinned_name.clone(),
                    media_type: mt.clone(),
                    available: manifest
                        .layers
                        .iter()
                        .map(|l| l.media_type.clone())
                        .collect(),
                })?,
            None => manifest.layers.first().ok_or_else(|| OciError::NoLayers {
                reference: pinned_name.clone(),
            })?,
        };
        if layer.size < 0 || layer.size as u64 > self.max_layer_bytes {
            return Err(OciError::LayerTooLarge {
                reference: pinned_name,
                digest: layer.digest.clone(),
                size: layer.size,
                limit: self.max_layer_bytes,
            }
            .into());
        }
        let work = tempfile::Builder::new()
            .prefix("gitops-oci-")
            .tempdir()
            .map_err(|source| SourceError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let blob_path = work.path().join("layer");
        let file = tokio::fs::File::create(&blob_path)
            .await
            .map_err(|source| SourceError::Io {
                path: blob_path.clone(),
                source,
            })?;
        // `pull_blob` verifies the layer digest while streaming to the file.
        client
            .pull_blob(&pinned, layer, file)
            .await
            .map_err(|e| map_oci_error(e, "pull layer", &pinned_name, &layer.digest))?;

        let mut metadata: BTreeMap<String, String> =
            manifest.annotations.clone().unwrap_or_default();
        metadata.insert(CONFIG_DIGEST_KEY.to_owned(), config);
        let object = self.object.clone();
        let store_owned = store.clone();
        let operation = self.layer_selector.operation;
        let ignore = self.ignore.clone();
        let file_name = format!("{}.tar.gz", digest.hex());
        let origin = pinned_name.clone();
        let stored = tokio::task::spawn_blocking(move || -> Result<_, SourceError> {
            match operation {
                LayerOperation::Copy => {
                    let mut f =
                        std::fs::File::open(&blob_path).map_err(|source| SourceError::Io {
                            path: blob_path.clone(),
                            source,
                        })?;
                    Ok(store_owned.write_file(&object, &file_name, &mut f)?)
                }
                LayerOperation::Extract => {
                    let f = std::fs::File::open(&blob_path).map_err(|source| SourceError::Io {
                        path: blob_path.clone(),
                        source,
                    })?;
                    let dest: PathBuf = work.path().join("content");
                    std::fs::create_dir_all(&dest).map_err(|source| SourceError::Io {
                        path: dest.clone(),
                        source,
                    })?;
                    extract_tar_gz(
                        std::io::BufReader::new(f),
                        &dest,
                        FetchLimits::default(),
                        &origin,
                    )?;
                    let rules = IgnoreRules::load(&dest, ignore.as_deref())?;
                    let (stored, _) =
                        store_owned.archive_dir(&object, &file_name, &dest, Some(&rules))?;
                    Ok(stored)
                }
            }
        })
        .await
        .map_err(|e| SourceError::Io {
            path: PathBuf::from(&self.url),
            source: std::io::Error::other(e.to_string()),
        })??;
        let artifact = Artifact {
            revision,
            digest: stored.digest,
            size: stored.size,
            url: store.url_for(&stored.path),
            path: stored.path,
            metadata,
            last_update_time: jiff::Timestamp::now(),
        };
        tracing::info!(url = %repo_name, revision = %artifact.revision, digest = %artifact.digest, "OCI artifact written");
        if let Err(error) = store.gc(&self.object, Some(&artifact.path)) {
            tracing::warn!(%error, "artifact garbage collection failed");
        }
        Ok(Acquired::New(artifact))
    }
}

fn parse_sha256(digest: &str, url: &str) -> Result<Digest, SourceError> {
    digest.parse::<Digest>().map_err(|e| {
        SourceError::Oci(OciError::Registry {
            operation: "resolve manifest",
            reference: url.to_owned(),
            message: format!("registry returned an unusable digest {digest:?}: {e}"),
        })
    })
}

#[async_trait::async_trait]
impl Source for OciSource {
    async fn acquire(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError> {
        match tokio::time::timeout(self.timeout, self.acquire_inner(last, store)).await {
            Ok(result) => result,
            Err(_) => Err(SourceError::Timeout {
                url: self.url.clone(),
                operation: "OCI pull",
                after: self.timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing_follows_flux() {
        let u = OciRepositoryUrl::parse("oci://127.0.0.1:5000/org/app").expect("valid");
        assert_eq!(u.registry, "127.0.0.1:5000");
        assert_eq!(u.repository, "org/app");
        assert_eq!(u.to_string(), "oci://127.0.0.1:5000/org/app");
        for bad in [
            "https://h/app",
            "oci://h",
            "oci://h/app:v1",
            "oci://h/app@sha256:00",
            "oci://h/App",
            "oci://u:p@h/app",
        ] {
            assert!(OciRepositoryUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_digest_tracks_layer_selector_and_ignore() {
        let obj = ObjectRef::new("OCIRepository", "ns", "n").expect("valid");
        let a = OciSource::new("oci://h/app", obj);
        let mut b = a.clone();
        b.layer_selector.operation = LayerOperation::Copy;
        let mut c = a.clone();
        c.ignore = Some("*.md".into());
        assert_ne!(a.config_digest(), b.config_digest());
        assert_ne!(a.config_digest(), c.config_digest());
        assert_eq!(a.config_digest(), a.clone().config_digest());
    }
}

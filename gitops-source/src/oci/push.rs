//! `flux push artifact`: a directory as a Flux OCI artifact.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use oci_client::RegistryOperation;
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};

use super::{
    ANNOTATION_CREATED, ANNOTATION_REVISION, ANNOTATION_SOURCE, FLUX_CONFIG_MEDIA_TYPE,
    FLUX_CONTENT_MEDIA_TYPE, OciAuth, OciRepositoryUrl, OciTls, build_client, map_oci_error,
    proxy_url,
};
use crate::archive::write_tar_gz;
use crate::error::SourceError;
use crate::revision::Digest;
use crate::sourceignore::IgnoreRules;

/// What to push, and where.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// `org.opencontainers.image.source`: where the content came from.
    pub source: String,
    /// `org.opencontainers.image.revision`: the source revision (`main@sha1:<hex>`).
    pub revision: String,
    /// The tag to push (`latest` by default).
    pub tag: String,
    /// More manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Ignore patterns (gitignore syntax) replacing Flux's default exclusions; `.sourceignore`
    /// files in the directory apply too.
    pub ignore: Option<String>,
    /// Credentials.
    pub auth: OciAuth,
    /// Plain HTTP.
    pub insecure: bool,
    /// Extra CA certificates.
    pub tls: OciTls,
    /// An HTTP(S) or SOCKS5 proxy for the registry.
    pub proxy: Option<crate::git::ProxySettings>,
    /// The limit for each registry operation.
    pub timeout: Duration,
    /// `org.opencontainers.image.created`; now when `None`.
    pub created: Option<jiff::Timestamp>,
}

impl PushOptions {
    /// Options with the two required annotations, tag `latest`, HTTPS, anonymous.
    pub fn new(source: impl Into<String>, revision: impl Into<String>) -> Self {
        PushOptions {
            source: source.into(),
            revision: revision.into(),
            tag: "latest".into(),
            annotations: BTreeMap::new(),
            ignore: None,
            auth: OciAuth::Anonymous,
            insecure: false,
            tls: OciTls::default(),
            proxy: None,
            timeout: Duration::from_secs(60),
            created: None,
        }
    }
}

/// What was pushed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pushed {
    /// `host/repo:tag@sha256:<hex>`.
    pub reference: String,
    /// The manifest digest.
    pub digest: Digest,
    /// The content layer digest.
    pub layer_digest: String,
    /// The manifest annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Packs `dir` as a reproducible `tar.gz` (Flux's ignore rules) and pushes it to `url`
/// (`oci://host[:port]/repo`) as a Flux artifact tagged `options.tag`.
pub async fn push_artifact(
    url: &str,
    dir: &Path,
    options: &PushOptions,
) -> Result<Pushed, SourceError> {
    let repo = OciRepositoryUrl::parse(url)?;
    if options.tag.is_empty()
        || options.tag.len() > 128
        || !options
            .tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        || options.tag.starts_with(['.', '-'])
    {
        return Err(SourceError::InvalidSpec(format!(
            "tag {:?} is not a valid OCI tag",
            options.tag
        )));
    }
    let dir_owned = dir.to_path_buf();
    let ignore = options.ignore.clone();
    let layer_bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, SourceError> {
        let rules = IgnoreRules::load(&dir_owned, ignore.as_deref())?;
        let (_, bytes) = write_tar_gz(&dir_owned, Some(&rules), Vec::new())
            .map_err(|e| SourceError::Store(e.into()))?;
        Ok(bytes)
    })
    .await
    .map_err(|e| SourceError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })??;

    let created = options.created.unwrap_or_else(jiff::Timestamp::now);
    let mut annotations = options.annotations.clone();
    annotations.insert(
        ANNOTATION_CREATED.to_owned(),
        created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    annotations.insert(ANNOTATION_SOURCE.to_owned(), options.source.clone());
    annotations.insert(ANNOTATION_REVISION.to_owned(), options.revision.clone());

    let layer = ImageLayer::new(layer_bytes, FLUX_CONTENT_MEDIA_TYPE.to_owned(), None);
    let config = Config::new(b"{}".to_vec(), FLUX_CONFIG_MEDIA_TYPE.to_owned(), None);
    let mut manifest = OciImageManifest::build(
        std::slice::from_ref(&layer),
        &config,
        Some(annotations.clone()),
    );
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_owned());
    let layer_digest = manifest
        .layers
        .first()
        .map(|l| l.digest.clone())
        .unwrap_or_default();

    let proxy = proxy_url(options.proxy.as_ref())?;
    let client = build_client(
        options.insecure,
        &options.tls,
        options.timeout,
        proxy.as_deref(),
    )?;
    let auth = options.auth.to_registry_auth();
    let reference = repo.with_tag(&options.tag);
    let name = format!("{}:{}", repo, options.tag);
    let work = async {
        client
            .auth(&reference, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| map_oci_error(e, "authenticate", &name, "/v2/"))?;
        client
            .push(&reference, &[layer], config, &auth, Some(manifest))
            .await
            .map_err(|e| map_oci_error(e, "push", &name, &options.tag))?;
        client
            .fetch_manifest_digest(&reference, &auth)
            .await
            .map_err(|e| map_oci_error(e, "resolve pushed manifest", &name, &options.tag))
    };
    let manifest_digest = match tokio::time::timeout(options.timeout, work).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(SourceError::Timeout {
                url: name,
                operation: "OCI push",
                after: options.timeout,
            });
        }
    };
    let digest = super::parse_sha256(&manifest_digest, &name)?;
    tracing::info!(reference = %name, digest = %digest, "OCI artifact pushed");
    Ok(Pushed {
        reference: format!(
            "{}/{}:{}@{}",
            repo.registry, repo.repository, options.tag, digest
        ),
        digest,
        layer_digest,
        annotations,
    })
}

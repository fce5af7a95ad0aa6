//! S3-compatible buckets (Flux's `Bucket`, provider `generic`/`aws` with static keys) on
//! `object_store`.
//!
//! The bucket is listed (optionally under a prefix), keys excluded by the ignore rules are
//! dropped (Flux's layering: a `.sourceignore` object at the bucket root, the spec `ignore`
//! list, default exclusions), and the revision is `sha256:<hex>` over the sorted listing, one
//! `<key> <etag>\n` line per object, as source-controller computes it. An unchanged listing
//! downloads nothing; otherwise the objects are downloaded in parallel into a temporary tree
//! (keys as paths, checked to stay inside) and archived reproducibly.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt as _};
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use crate::artifact::{Acquired, Artifact, Source};
use crate::error::SourceError;
use crate::revision::{Digest, Revision};
use crate::sourceignore::{IGNORE_FILE, IgnoreRules};
use crate::store::{ArtifactStore, ObjectRef};

/// Metadata key holding the fingerprint of the ignore configuration.
pub const CONFIG_DIGEST_KEY: &str = "source.gitops.dev/config-digest";

/// What failed listing or downloading a bucket.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The bucket does not exist (or is not visible with these credentials).
    #[error("bucket {bucket:?} at {endpoint}: {message}")]
    Listing {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What the store said.
        message: String,
    },
    /// An object could not be downloaded.
    #[error("object {key:?} in bucket {bucket:?}: {message}")]
    Object {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What failed.
        message: String,
    },
    /// A key cannot be a path inside the artifact (`..`, absolute).
    #[error("object key {key:?} in bucket {bucket:?} is not a safe relative path")]
    UnsafeKey {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The client settings are unusable.
    #[error("bucket client settings: {0}")]
    Client(String),
}

/// Static credentials. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BucketCredentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
}

impl std::fmt::Debug for BucketCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// An S3-compatible bucket, acquired as an artifact.
#[derive(Clone)]
pub struct BucketSource {
    /// `host[:port]` (Flux style) or a full `http(s)://` URL.
    pub endpoint: String,
    /// The region to sign for (`us-east-1` when empty).
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// Only keys under this prefix.
    pub prefix: Option<String>,
    /// Credentials; `None` sends unsigned requests.
    pub credentials: Option<BucketCredentials>,
    /// Plain HTTP.
    pub insecure: bool,
    /// Extra trusted CA certificates (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and private key (PEM) presented for mutual TLS (Flux's
    /// `certSecretRef` with `tls.crt` and `tls.key`).
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Spec-level ignore patterns (gitignore syntax) replacing the default exclusions.
    pub ignore: Option<String>,
    /// An HTTP(S) or SOCKS5 proxy for the endpoint (Flux's `proxySecretRef`).
    pub proxy: Option<crate::git::ProxySettings>,
    /// Limit for the whole acquisition.
    pub timeout: Duration,
    /// Parallel downloads.
    pub concurrency: usize,
    /// The object the artifacts belong to in the store.
    pub object: ObjectRef,
}

impl BucketSource {
    /// A source with defaults: `us-east-1`, HTTPS, no prefix, 60 s, 8 parallel downloads.
    pub fn new(endpoint: impl Into<String>, bucket: impl Into<String>, object: ObjectRef) -> Self {
        BucketSource {
            endpoint: endpoint.into(),
            region: String::new(),
            bucket: bucket.into(),
            prefix: None,
            credentials: None,
            proxy: None,
            insecure: false,
            ca_pem: None,
            client_identity_pem: None,
            ignore: None,
            timeout: Duration::from_secs(60),
            concurrency: 8,
            object,
        }
    }

    fn endpoint_url(&self) -> String {
        if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else if self.insecure {
            format!("http://{}", self.endpoint)
        } else {
            format!("https://{}", self.endpoint)
        }
    }

    /// The HTTP client for the endpoint: our own reqwest client (object_store's cannot present
    /// a client certificate), with what object_store would set: the timeout, the proxy, extra
    /// CAs, HTTPS only unless insecure, and no transparent decompression (object sizes come
    /// from `Content-Length`).
    fn http_client(&self) -> Result<reqwest::Client, SourceError> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(30))
            .https_only(!self.insecure)
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate();
        if let Some(proxy) = &self.proxy {
            let proxy = reqwest::Proxy::all(proxy.url_with_credentials()?).map_err(|e| {
                BucketError::Client(format!("proxy: {}", flatten(&e.without_url())))
            })?;
            builder = builder.proxy(proxy);
        }
        // The error names neither the key nor its bytes.
        builder = crate::tls::configure(
            builder,
            self.ca_pem.as_deref(),
            self.client_identity_pem.as_ref(),
        )
        .map_err(BucketError::Client)?;
        Ok(builder
            .build()
            .map_err(|e| BucketError::Client(flatten(&e)))?)
    }

    fn client(&self) -> Result<Arc<dyn ObjectStore>, SourceError> {
        let options = ClientOptions::new()
            .with_allow_http(self.insecure)
            .with_timeout(self.timeout);
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(self.endpoint_url())
            .with_region(if self.region.is_empty() {
                "us-east-1"
            } else {
                &self.region
            })
            .with_bucket_name(&self.bucket)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(self.insecure)
            .with_client_options(options)
            .with_http_connector(Connector(self.http_client()?));
        builder = match &self.credentials {
            Some(c) => builder
                .with_access_key_id(&c.access_key)
                .with_secret_access_key(&c.secret_key),
            None => builder.with_skip_signature(true),
        };
        let store = builder
            .build()
            .map_err(|e| BucketError::Client(e.to_string()))?;
        Ok(Arc::new(store))
    }

    /// The fingerprint of the ignore configuration.
    pub fn config_digest(&self) -> Digest {
        let mut h = sha2::Sha256::new();
        h.update(b"ignore\0");
        h.update(self.ignore.as_deref().unwrap_or("\u{1}").as_bytes());
        Digest::from_sha256(h)
    }

    fn map_err(&self, err: object_store::Error) -> SourceError {
        let endpoint = self.endpoint_url();
        let message = flatten(&err);
        let code = s3_error_code(&message);
        // object_store types 401/403 for object requests, but a refused listing arrives as a
        // generic error carrying the status and the S3 error code.
        let refused = matches!(
            err,
            object_store::Error::Unauthenticated { .. }
                | object_store::Error::PermissionDenied { .. }
        ) || code.is_some_and(|c| S3_AUTH_CODES.contains(&c))
            || message.contains("status code: 401")
            || message.contains("status code: 403");
        if refused {
            return SourceError::AuthenticationFailed {
                url: format!("{endpoint}/{}", self.bucket),
                message: match code {
                    Some(code) => format!("the bucket refused the credentials ({code})"),
                    None => "the bucket refused the credentials".into(),
                },
            };
        }
        BucketError::Listing {
            endpoint,
            bucket: self.bucket.clone(),
            message,
        }
        .into()
    }

    async fn acquire_inner(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError> {
        let client = self.client()?;
        let prefix = self
            .prefix
            .as_deref()
            .filter(|p| !p.trim_matches('/').is_empty())
            .map(|p| object_store::path::Path::from(p.trim_matches('/')));
        let mut listing: BTreeMap<String, String> = BTreeMap::new();
        let mut stream = client.list(prefix.as_ref());
        while let Some(meta) = stream.try_next().await.map_err(|e| self.map_err(e))? {
            let key = meta.location.to_string();
            if key.is_empty() || key.ends_with('/') {
                continue;
            }
            listing.insert(key, meta.e_tag.unwrap_or_default());
        }

        // Ignore rules: a root `.sourceignore` object plus the spec list, applied to keys.
        let work = tempfile::Builder::new()
            .prefix("gitops-bucket-")
            .tempdir()
            .map_err(|source| SourceError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let tree = work.path().join("tree");
        std::fs::create_dir_all(&tree).map_err(|source| SourceError::Io {
            path: tree.clone(),
            source,
        })?;
        // Like source-controller, the root `.sourceignore` applies whatever the prefix.
        match client
            .get(&object_store::path::Path::from(IGNORE_FILE))
            .await
        {
            Ok(result) => {
                let bytes = result.bytes().await.map_err(|e| self.map_err(e))?;
                let path = tree.join(IGNORE_FILE);
                std::fs::write(&path, &bytes).map_err(|source| SourceError::Io { path, source })?;
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.map_err(e)),
        }
        let rules = IgnoreRules::load(&tree, self.ignore.as_deref())?;
        let mut kept: Vec<(&String, &String)> = Vec::new();
        for (key, etag) in &listing {
            let path = safe_key(key).ok_or_else(|| BucketError::UnsafeKey {
                bucket: self.bucket.clone(),
                key: key.clone(),
            })?;
            if ancestors_or_self_ignored(&rules, &path) {
                continue;
            }
            kept.push((key, etag));
        }
        let mut h = sha2::Sha256::new();
        for (key, etag) in &kept {
            h.update(format!("{key} {etag}\n").as_bytes());
        }
        let digest = Digest::from_sha256(h);
        let revision = Revision::bare(digest.clone());
        let config = self.config_digest().to_string();
        if let Some(last) = last
            && last.revision == revision
            && last.metadata.get(CONFIG_DIGEST_KEY) == Some(&config)
            && store.exists(&last.path)
        {
            return Ok(Acquired::Unchanged(last.clone()));
        }
        let keys: Vec<String> = kept
            .iter()
            .filter(|(k, _)| k.as_str() != IGNORE_FILE)
            .map(|(k, _)| (*k).clone())
            .collect();
        let downloads: Vec<_> = keys
            .iter()
            .cloned()
            .map(|key| {
                let client = client.clone();
                let tree = tree.clone();
                async move { self.download(&client, &key, &tree).await }
            })
            .collect();
        futures::stream::iter(downloads)
            .buffer_unordered(self.concurrency.max(1))
            .boxed()
            .try_collect::<Vec<()>>()
            .await?;
        let object = self.object.clone();
        let store_owned = store.clone();
        let ignore = self.ignore.clone();
        let file = format!("{}.tar.gz", digest.hex());
        let stored = tokio::task::spawn_blocking(move || -> Result<_, SourceError> {
            let rules = IgnoreRules::load(&tree, ignore.as_deref())?;
            let (stored, _) = store_owned.archive_dir(&object, &file, &tree, Some(&rules))?;
            drop(work);
            Ok(stored)
        })
        .await
        .map_err(|e| SourceError::Io {
            path: PathBuf::from(&self.bucket),
            source: std::io::Error::other(e.to_string()),
        })??;
        let mut metadata = BTreeMap::new();
        metadata.insert(CONFIG_DIGEST_KEY.to_owned(), config);
        let artifact = Artifact {
            revision,
            digest: stored.digest,
            size: stored.size,
            url: store.url_for(&stored.path),
            path: stored.path,
            metadata,
            last_update_time: jiff::Timestamp::now(),
        };
        tracing::info!(bucket = %self.bucket, objects = keys.len(), revision = %artifact.revision, "bucket artifact written");
        if let Err(error) = store.gc(&self.object, Some(&artifact.path)) {
            tracing::warn!(%error, "artifact garbage collection failed");
        }
        Ok(Acquired::New(artifact))
    }

    async fn download(
        &self,
        client: &Arc<dyn ObjectStore>,
        key: &str,
        tree: &Path,
    ) -> Result<(), SourceError> {
        let object_err = |message: String| BucketError::Object {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message,
        };
        let rel = safe_key(key).ok_or_else(|| BucketError::UnsafeKey {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        })?;
        let target = tree.join(rel);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| SourceError::Io {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        let result = client
            .get(&object_store::path::Path::from(key))
            .await
            .map_err(|e| object_err(flatten(&e)))?;
        let mut file =
            tokio::fs::File::create(&target)
                .await
                .map_err(|source| SourceError::Io {
                    path: target.clone(),
                    source,
                })?;
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| object_err(flatten(&e)))?;
            file.write_all(&chunk)
                .await
                .map_err(|source| SourceError::Io {
                    path: target.clone(),
                    source,
                })?;
        }
        file.flush().await.map_err(|source| SourceError::Io {
            path: target.clone(),
            source,
        })?;
        Ok(())
    }
}

/// A key as a relative path, or `None` when it would leave the tree.
fn safe_key(key: &str) -> Option<PathBuf> {
    let path = Path::new(key);
    if key.contains('\\')
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    Some(path.to_path_buf())
}

fn ancestors_or_self_ignored(rules: &IgnoreRules, path: &Path) -> bool {
    if rules.is_ignored(path, false) {
        return true;
    }
    path.ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .any(|dir| rules.is_ignored(dir, true))
}

/// The error and its sources, skipping a source whose text the message already holds
/// (object_store repeats the server's answer at every level).
fn flatten(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The S3 error code in a server answer (`<Code>SignatureDoesNotMatch</Code>`), if any.
fn s3_error_code(message: &str) -> Option<&str> {
    let start = message.find("<Code>")? + "<Code>".len();
    let len = message[start..].find("</Code>")?;
    Some(&message[start..start + len])
}

/// S3 error codes that mean the credentials were refused (wrong key id, wrong secret, expired
/// or invalid token) or do not grant access.
const S3_AUTH_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "InvalidSecurity",
];

#[async_trait::async_trait]
impl Source for BucketSource {
    async fn acquire(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError> {
        match tokio::time::timeout(self.timeout, self.acquire_inner(last, store)).await {
            Ok(r) => r,
            Err(_) => Err(SourceError::Timeout {
                url: format!("{}/{}", self.endpoint_url(), self.bucket),
                operation: "bucket download",
                after: self.timeout,
            }),
        }
    }
}

impl std::fmt::Debug for BucketSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketSource")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("credentials", &self.credentials)
            .field("insecure", &self.insecure)
            .field("ca_pem", &self.ca_pem.is_some())
            .field("client_identity", &self.client_identity_pem.is_some())
            .field("ignore", &self.ignore)
            .field("proxy", &self.proxy)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("object", &self.object)
            .finish()
    }
}

/// Hands object_store our reqwest client (see [`BucketSource::http_client`]).
#[derive(Debug)]
struct Connector(reqwest::Client);

impl object_store::client::HttpConnector for Connector {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<object_store::client::HttpClient> {
        Ok(object_store::client::HttpClient::new(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_stay_inside() {
        assert!(safe_key("a/b.yaml").is_some());
        assert!(safe_key("../x").is_none());
        assert!(safe_key("/etc/passwd").is_none());
        assert!(safe_key("a/../../x").is_none());
        assert!(safe_key("a\\b").is_none());
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = BucketCredentials {
            access_key: "AK".into(),
            secret_key: "topsecret".into(),
        };
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}

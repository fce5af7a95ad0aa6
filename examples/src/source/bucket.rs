//! Flux's `Bucket` (`source.toolkit.fluxcd.io/v1`) and its controller: download an
//! S3-compatible bucket (provider `generic`) with [`gitops_source::BucketSource`] and publish
//! it with Flux's revision `sha256:<hex>`.

use std::sync::Arc;
use std::time::Duration;

use gitops_source::{BucketCredentials, BucketSource, Source as _, SourceError};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ArtifactStatus, Failure, KindContext, STORAGE_OPERATION_FAILED, SourceContext,
    SourceControllerError, SourceObject, collect_garbage, drive, duration, impl_source_status,
    last_artifact, object_ref, report_failure, report_ready, secret_data, start_status,
};
use crate::meta::{self, Condition, LocalObjectReference};

/// `Bucket.spec`.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "Bucket",
    plural = "buckets",
    namespaced,
    status = "BucketStatus",
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BucketSpec {
    /// The S3 API flavour; only `generic` (static keys or anonymous) is supported by this
    /// controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "provider_schema")]
    pub provider: Option<String>,
    /// The bucket.
    pub bucket_name: String,
    /// The endpoint, `host[:port]`.
    pub endpoint: String,
    /// Plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// The region to sign requests for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Only the objects below this key prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A Secret with `accesskey` and `secretkey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// A Secret with a CA certificate (`ca.crt`) for the endpoint, and optionally a client
    /// certificate and key (`tls.crt`, `tls.key`) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// How often to check the bucket.
    #[schemars(schema_with = "meta::duration_schema")]
    pub interval: String,
    /// The limit of the download (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "timeout_schema")]
    pub timeout: Option<String>,
    /// Ignore patterns (gitignore syntax), replacing the default exclusions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<String>,
    /// Stop reconciling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// A security token service for temporary credentials (accepted, not supported: the
    /// object stalls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::opaque_object_schema")]
    pub sts: Option<serde_json::Value>,
    /// A Secret with the address of a proxy (accepted, not supported: the object stalls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
}

fn provider_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::string_default_schema("generic", Some(&["generic", "aws", "gcp", "azure"]))
}

fn timeout_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = super::string_default_schema("60s", None);
    schema.insert("pattern".into(), meta::DURATION_PATTERN.into());
    schema
}

/// `Bucket.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketStatus {
    /// The last generation reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, ArtifactInStorage, FetchFailed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the last artifact is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The last artifact stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactStatus>,
    /// The ignore patterns of the last artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_ignore: Option<String>,
    /// The last `reconcile.fluxcd.io/requestedAt` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

impl SourceObject for Bucket {
    const KIND: &'static str = "Bucket";
    type Status = BucketStatus;
    fn suspended(&self) -> bool {
        self.spec.suspend == Some(true)
    }
    fn status_or_default(&self) -> BucketStatus {
        self.status.clone().unwrap_or_default()
    }
}

impl_source_status!(BucketStatus);

/// Runs the Bucket controller on all namespaces.
pub(crate) async fn run(ctx: Arc<SourceContext>, config: watcher::Config, concurrency: u16) {
    let api: Api<Bucket> = Api::all(ctx.client.clone());
    super::run_controller(ctx, api, config, concurrency, |obj, ctx| {
        drive(obj, ctx, reconcile_once)
    })
    .await;
}

/// The download a Bucket spec asks for, with its Secrets' credentials.
async fn bucket_source(client: &Client, bucket: &Bucket) -> Result<BucketSource, Failure> {
    let namespace = bucket.namespace().unwrap_or_default();
    let spec = &bucket.spec;
    if let Some(provider) = spec.provider.as_deref().filter(|p| *p != "generic") {
        return Err(Failure::stalled(
            "InvalidProvider",
            format!("spec.provider '{provider}': only 'generic' is supported by this controller"),
        ));
    }
    super::refuse_unsupported(&[
        ("sts", spec.sts.is_some()),
        ("proxySecretRef", spec.proxy_secret_ref.is_some()),
    ])?;
    if spec.endpoint.contains("://") {
        return Err(Failure::stalled(
            "URLInvalid",
            format!(
                "spec.endpoint '{}' must be host[:port] without a scheme (spec.insecure selects http)",
                spec.endpoint
            ),
        ));
    }
    let mut source = BucketSource::new(
        spec.endpoint.clone(),
        spec.bucket_name.clone(),
        object_ref(bucket)?,
    );
    source.region = spec.region.clone().unwrap_or_default();
    source.prefix = spec.prefix.clone().filter(|p| !p.is_empty());
    source.insecure = spec.insecure.unwrap_or(false);
    source.ignore = spec.ignore.clone();
    source.timeout =
        duration("timeout", spec.timeout.as_deref())?.unwrap_or(Duration::from_secs(60));
    if let Some(secret_ref) = &spec.secret_ref {
        let data = secret_data(client, &namespace, &secret_ref.name).await?;
        let text = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
        let (Some(access_key), Some(secret_key)) = (text("accesskey"), text("secretkey")) else {
            return Err(Failure::retry(
                meta::FETCH_FAILED,
                "AuthenticationFailed",
                format!(
                    "invalid '{namespace}/{}' secret data: required fields 'accesskey' and 'secretkey'",
                    secret_ref.name
                ),
            ));
        };
        source.credentials = Some(BucketCredentials {
            access_key,
            secret_key,
        });
    }
    let certs = super::cert_secret(client, &namespace, spec.cert_secret_ref.as_ref()).await?;
    source.ca_pem = certs.ca_pem;
    source.client_identity_pem = certs.client_identity_pem;
    Ok(source)
}

fn fetch_failure(error: &SourceError) -> Failure {
    let message = error.to_string();
    match error {
        SourceError::Store(_) | SourceError::Io { .. } => {
            Failure::retry(STORAGE_OPERATION_FAILED, "ArchiveOperationFailed", message)
        }
        _ => Failure::retry(meta::FETCH_FAILED, "BucketOperationFailed", message),
    }
}

async fn reconcile_once(
    bucket: Arc<Bucket>,
    ctx: Arc<KindContext>,
) -> Result<Action, SourceControllerError> {
    let mut status = start_status(&*bucket);
    let interval = match duration("interval", Some(&bucket.spec.interval)) {
        Ok(i) => i,
        Err(failure) => return report_failure(&ctx, &*bucket, status, failure).await,
    };
    let source = match bucket_source(&ctx.client, &bucket).await {
        Ok(s) => s,
        Err(failure) => return report_failure(&ctx, &*bucket, status, failure).await,
    };
    let last = last_artifact(&ctx.store, status.artifact.as_ref());
    match source.acquire(last.as_ref(), &ctx.store).await {
        Ok(acquired) => {
            let is_new = acquired.is_new();
            let artifact = acquired.into_artifact();
            if is_new {
                collect_garbage(&ctx.store, &source.object, &artifact);
            }
            let revision = artifact.revision.to_string();
            let message = format!("stored artifact: revision '{revision}'");
            let stored = ArtifactStatus::from_artifact(&artifact);
            status.url = super::latest_url(
                &ctx.store,
                &*bucket,
                "latest.tar.gz",
                &artifact,
                status.url.take(),
            )
            .await;
            status.artifact = Some(stored);
            status.observed_ignore = bucket.spec.ignore.clone();
            report_ready(
                &ctx,
                &*bucket,
                status,
                super::SUCCEEDED,
                &message,
                is_new.then_some(revision.as_str()),
                interval,
            )
            .await
        }
        Err(error) => report_failure(&ctx, &*bucket, status, fetch_failure(&error)).await,
    }
}

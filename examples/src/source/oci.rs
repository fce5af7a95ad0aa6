//! Flux's `OCIRepository` (`source.toolkit.fluxcd.io/v1`, as Flux 2.6 and later serve it) and
//! its controller: pull an OCI artifact with [`gitops_source::OciSource`] and publish it with
//! Flux's revision `<tag>@sha256:<manifest digest>`.

use std::sync::Arc;
use std::time::Duration;

use gitops_source::oci::OciRepositoryUrl;
use gitops_source::{
    LayerOperation, LayerSelector, OciAuth, OciReference, OciSource, Source as _, SourceError,
};
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

/// `OCIRepository.spec`.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "OCIRepository",
    plural = "ocirepositories",
    shortname = "ocirepo",
    namespaced,
    status = "OCIRepositoryStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OCIRepositorySpec {
    /// The repository: `oci://host[:port]/path` (no tag or digest).
    #[schemars(regex(pattern = r"^oci://.*$"))]
    pub url: String,
    /// Which manifest (default: the tag `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub reference: Option<OCIRepositoryRef>,
    /// Which layer becomes the artifact, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_selector: Option<OCILayerSelector>,
    /// The OIDC provider for registry login; only `generic` (the Secret's credentials) is
    /// supported by this controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "provider_schema")]
    pub provider: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret with the registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// A Secret with a CA certificate (`ca.crt`) for the registry, and `tls.crt`/`tls.key`
    /// for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// How often to check the repository.
    #[schemars(schema_with = "meta::duration_schema")]
    pub interval: String,
    /// The limit of the registry operations (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "timeout_schema")]
    pub timeout: Option<String>,
    /// Ignore patterns (gitignore syntax), replacing the default exclusions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<String>,
    /// Talk plain HTTP to the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Stop reconciling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Signature verification (accepted, not supported: the object stalls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::opaque_object_schema")]
    pub verify: Option<serde_json::Value>,
    /// A ServiceAccount whose image pull secrets to use (accepted, not supported: the object
    /// stalls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// A Secret with the address of a proxy (accepted, not supported: the object stalls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
}

fn provider_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::string_default_schema("generic", Some(&["generic", "aws", "azure", "gcp"]))
}

fn timeout_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = super::string_default_schema("60s", None);
    schema.insert("pattern".into(), meta::DURATION_PATTERN.into());
    schema
}

/// `OCIRepository.spec.ref`: `digest` wins over `semver`, which wins over `tag`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OCIRepositoryRef {
    /// A manifest digest (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// A semver range over the tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// A regular expression the tags must match before the semver range picks one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver_filter: Option<String>,
    /// A tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `OCIRepository.spec.layerSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OCILayerSelector {
    /// The media type of the layer (default: the first layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `extract` (default) or `copy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "operation_schema")]
    pub operation: Option<String>,
}

fn operation_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["extract", "copy"]})
}

/// `OCIRepository.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OCIRepositoryStatus {
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
    /// The layer selector of the last artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_layer_selector: Option<OCILayerSelector>,
    /// The last `reconcile.fluxcd.io/requestedAt` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

impl SourceObject for OCIRepository {
    const KIND: &'static str = "OCIRepository";
    type Status = OCIRepositoryStatus;
    fn suspended(&self) -> bool {
        self.spec.suspend == Some(true)
    }
    fn status_or_default(&self) -> OCIRepositoryStatus {
        self.status.clone().unwrap_or_default()
    }
}

impl_source_status!(OCIRepositoryStatus);

/// Runs the OCIRepository controller on all namespaces.
pub(crate) async fn run(ctx: Arc<SourceContext>, config: watcher::Config, concurrency: u16) {
    let api: Api<OCIRepository> = Api::all(ctx.client.clone());
    super::run_controller(ctx, api, config, concurrency, |obj, ctx| {
        drive(obj, ctx, reconcile_once)
    })
    .await;
}

/// The acquisition an OCIRepository spec asks for, with its Secrets' credentials.
async fn oci_source(client: &Client, repo: &OCIRepository) -> Result<OciSource, Failure> {
    let namespace = repo.namespace().unwrap_or_default();
    let spec = &repo.spec;
    let url = OciRepositoryUrl::parse(&spec.url)
        .map_err(|e| Failure::stalled("URLInvalid", e.to_string()))?;
    if let Some(provider) = spec.provider.as_deref().filter(|p| *p != "generic") {
        return Err(Failure::stalled(
            "InvalidProvider",
            format!("spec.provider '{provider}': only 'generic' is supported by this controller"),
        ));
    }
    super::refuse_unsupported(&[
        ("verify", spec.verify.is_some()),
        ("serviceAccountName", spec.service_account_name.is_some()),
        ("proxySecretRef", spec.proxy_secret_ref.is_some()),
    ])?;
    let mut source = OciSource::new(spec.url.clone(), object_ref(repo)?);
    if let Some(r) = &spec.reference {
        source.reference = OciReference {
            tag: r.tag.clone(),
            semver: r.semver.clone(),
            semver_filter: r.semver_filter.clone(),
            digest: r.digest.clone(),
        };
    }
    if let Some(selector) = &spec.layer_selector {
        source.layer_selector = LayerSelector {
            media_type: selector.media_type.clone(),
            operation: match selector.operation.as_deref() {
                None | Some("extract") => LayerOperation::Extract,
                Some("copy") => LayerOperation::Copy,
                Some(other) => {
                    return Err(Failure::stalled(
                        "InvalidLayerSelector",
                        format!("spec.layerSelector.operation '{other}': expected extract or copy"),
                    ));
                }
            },
        };
    }
    source.insecure = spec.insecure.unwrap_or(false);
    source.ignore = spec.ignore.clone();
    source.timeout =
        duration("timeout", spec.timeout.as_deref())?.unwrap_or(Duration::from_secs(60));
    if let Some(secret_ref) = &spec.secret_ref {
        let data = secret_data(client, &namespace, &secret_ref.name).await?;
        let config = data.get(".dockerconfigjson").ok_or_else(|| {
            Failure::retry(
                meta::FETCH_FAILED,
                "AuthenticationFailed",
                format!(
                    "secret '{namespace}/{}' has no '.dockerconfigjson' key",
                    secret_ref.name
                ),
            )
        })?;
        source.auth = OciAuth::from_docker_config(config, &url.registry).map_err(|e| {
            Failure::retry(
                meta::FETCH_FAILED,
                "AuthenticationFailed",
                format!("secret '{namespace}/{}': {e}", secret_ref.name),
            )
        })?;
    }
    let certs = super::cert_secret(client, &namespace, spec.cert_secret_ref.as_ref()).await?;
    source.tls.ca_pem = certs.ca_pem;
    source.tls.client_identity_pem = certs.client_identity_pem;
    Ok(source)
}

/// Flux's reasons for a failed pull.
fn pull_failure(error: &SourceError) -> Failure {
    let message = error.to_string();
    match error {
        SourceError::Store(_) | SourceError::Io { .. } => {
            Failure::retry(STORAGE_OPERATION_FAILED, "ArchiveOperationFailed", message)
        }
        SourceError::UnsafeArchive { .. } => {
            Failure::retry(meta::FETCH_FAILED, "OCILayerOperationFailed", message)
        }
        SourceError::InvalidSpec(_) => Failure::stalled("InvalidSpec", message),
        _ => Failure::retry(meta::FETCH_FAILED, "OCIArtifactPullFailed", message),
    }
}

async fn reconcile_once(
    repo: Arc<OCIRepository>,
    ctx: Arc<KindContext>,
) -> Result<Action, SourceControllerError> {
    let mut status = start_status(&*repo);
    let interval = match duration("interval", Some(&repo.spec.interval)) {
        Ok(i) => i,
        Err(failure) => return report_failure(&ctx, &*repo, status, failure).await,
    };
    let source = match oci_source(&ctx.client, &repo).await {
        Ok(s) => s,
        Err(failure) => return report_failure(&ctx, &*repo, status, failure).await,
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
            let message = format!("stored artifact for digest '{revision}'");
            let stored = ArtifactStatus::from_artifact(&artifact);
            status.url = super::latest_url(
                &ctx.store,
                &*repo,
                "latest.tar.gz",
                &artifact,
                status.url.take(),
            )
            .await;
            status.artifact = Some(stored);
            status.observed_ignore = repo.spec.ignore.clone();
            status.observed_layer_selector = repo.spec.layer_selector.clone();
            report_ready(
                &ctx,
                &*repo,
                status,
                super::SUCCEEDED,
                &message,
                is_new.then_some(revision.as_str()),
                interval,
            )
            .await
        }
        Err(error) => report_failure(&ctx, &*repo, status, pull_failure(&error)).await,
    }
}

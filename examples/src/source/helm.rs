//! Flux's `HelmRepository` and `HelmChart` (`source.toolkit.fluxcd.io/v1`) and their
//! controllers.
//!
//! A `HelmRepository` of type `default` stores the repository's `index.yaml` as its artifact
//! (revision `sha256:<hex>`); one of type `oci` is, as in Flux, a static object the controller
//! leaves alone (no artifact, no status). A `HelmChart` packages a chart from a
//! `HelmRepository` (by name and version constraint; for type `oci` pulled from the registry
//! repository `<url>/<chart>`, tags as versions) or from a directory of a
//! `GitRepository` or `Bucket` artifact; its revision is the bare chart version, as Flux
//! writes it, and it follows its source: no ready source artifact, no chart.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use gitops_source::oci::OciRepositoryUrl;
use gitops_source::{
    FetchLimits, HelmChartSource, HelmRepositorySource, OciAuth, OciSource, ReconcileStrategy,
    Revision, Source as _, SourceError, helm::HelmError,
};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef as WatchRef;
use kube::runtime::watcher;
use kube::{Client, CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ArtifactStatus, BUILD_FAILED, Bucket, Failure, GitRepository, KindContext, SOURCE_FINALIZER,
    STORAGE_OPERATION_FAILED, SourceContext, SourceControllerError, SourceObject, collect_garbage,
    drive, duration, impl_source_status, last_artifact, object_ref, report_failure, report_ready,
    secret_data, start_status,
};
use crate::meta::{self, Condition, LocalObjectReference};

/// `HelmRepository.spec`.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "HelmRepository",
    plural = "helmrepositories",
    shortname = "helmrepo",
    namespaced,
    status = "HelmRepositoryStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HelmRepositorySpec {
    /// The repository URL: `http(s)://` for type `default`, `oci://` for type `oci`.
    #[schemars(regex(pattern = r"^(http|https|oci)://.*$"))]
    pub url: String,
    /// A Secret with `username` and `password` (type `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// A Secret with `ca.crt`, and `tls.crt`/`tls.key` for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// Send the credentials to chart URLs on other hosts than the index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_credentials: Option<bool>,
    /// How often to check the index (unset: only on changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_duration_schema")]
    pub interval: Option<String>,
    /// Plain HTTP to an OCI registry (type `oci`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// The limit of the index download (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_duration_schema")]
    pub timeout: Option<String>,
    /// Stop reconciling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// `default` (an HTTP/S repository with an `index.yaml`) or `oci`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    #[schemars(schema_with = "type_schema")]
    pub type_: Option<String>,
    /// The OIDC provider for OCI registry login (`generic`: the Secret's credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "provider_schema")]
    pub provider: Option<String>,
    /// Flux's provisional cross-namespace access list (not implemented by Flux either:
    /// accepted and ignored, as Flux does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::opaque_object_schema")]
    pub access_from: Option<serde_json::Value>,
}

fn optional_duration_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "pattern": meta::DURATION_PATTERN})
}

fn type_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["default", "oci"]})
}

fn provider_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::string_default_schema("generic", Some(&["generic", "aws", "azure", "gcp"]))
}

/// `HelmRepository.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmRepositoryStatus {
    /// The last generation reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, ArtifactInStorage, FetchFailed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the stored index is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The last index stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactStatus>,
    /// The last `reconcile.fluxcd.io/requestedAt` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

impl HelmRepository {
    fn is_oci(&self) -> bool {
        self.spec.type_.as_deref() == Some("oci")
    }
}

impl SourceObject for HelmRepository {
    const KIND: &'static str = "HelmRepository";
    type Status = HelmRepositoryStatus;
    fn suspended(&self) -> bool {
        self.spec.suspend == Some(true)
    }
    fn status_or_default(&self) -> HelmRepositoryStatus {
        self.status.clone().unwrap_or_default()
    }
}

/// `HelmChart.spec`.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "HelmChart",
    plural = "helmcharts",
    shortname = "hc",
    namespaced,
    status = "HelmChartStatus",
    printcolumn = r#"{"name":"Chart","type":"string","jsonPath":".spec.chart"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Source Kind","type":"string","jsonPath":".spec.sourceRef.kind"}"#,
    printcolumn = r#"{"name":"Source Name","type":"string","jsonPath":".spec.sourceRef.name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HelmChartSpec {
    /// The chart name (HelmRepository) or its path in the source (GitRepository, Bucket).
    pub chart: String,
    /// A semver range (HelmRepository charts; default `*`: the newest stable version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "version_schema")]
    pub version: Option<String>,
    /// Where the chart comes from.
    pub source_ref: HelmChartSourceRef,
    /// How often to check the source.
    #[schemars(schema_with = "meta::duration_schema")]
    pub interval: String,
    /// `ChartVersion` (default): a new artifact when the version changes; `Revision`: on every
    /// new source revision too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "strategy_schema")]
    pub reconcile_strategy: Option<String>,
    /// Values files merged in order into the packaged `values.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_files: Option<Vec<String>>,
    /// Skip missing values files instead of failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_missing_values_files: Option<bool>,
    /// Stop reconciling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Signature verification of OCI charts (accepted, not supported: the object stalls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::opaque_object_schema")]
    pub verify: Option<serde_json::Value>,
}

fn version_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::string_default_schema("*", None)
}

fn strategy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::string_default_schema("ChartVersion", Some(&["ChartVersion", "Revision"]))
}

/// `HelmChart.spec.sourceRef`: a source in the chart's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmChartSourceRef {
    /// The API version of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `HelmRepository`, `GitRepository` or `Bucket`.
    #[schemars(schema_with = "source_kind_schema")]
    pub kind: String,
    /// The source's name.
    pub name: String,
}

fn source_kind_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["HelmRepository", "GitRepository", "Bucket"]})
}

/// `HelmChart.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmChartStatus {
    /// The last generation reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The source artifact revision the last chart was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_source_artifact_revision: Option<String>,
    /// The chart name of the last artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_chart_name: Option<String>,
    /// The values files of the last artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_values_files: Option<Vec<String>>,
    /// Ready, Reconciling, Stalled, ArtifactInStorage, FetchFailed, BuildFailed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the last chart package is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The last chart package stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactStatus>,
    /// The last `reconcile.fluxcd.io/requestedAt` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

impl SourceObject for HelmChart {
    const KIND: &'static str = "HelmChart";
    type Status = HelmChartStatus;
    fn suspended(&self) -> bool {
        self.spec.suspend == Some(true)
    }
    fn status_or_default(&self) -> HelmChartStatus {
        self.status.clone().unwrap_or_default()
    }
}

impl_source_status!(HelmRepositoryStatus, HelmChartStatus);

/// Runs the HelmRepository controller on all namespaces.
pub(crate) async fn run_repositories(
    ctx: Arc<SourceContext>,
    config: watcher::Config,
    concurrency: u16,
) {
    let api: Api<HelmRepository> = Api::all(ctx.client.clone());
    super::run_controller(ctx, api, config, concurrency, reconcile_repository).await;
}

async fn reconcile_repository(
    repo: Arc<HelmRepository>,
    ctx: Arc<KindContext>,
) -> Result<Action, SourceControllerError> {
    if repo.is_oci() {
        // Flux: an OCI HelmRepository is a static object; a finalizer left from a time it was
        // of type `default` is removed with its artifacts.
        release_static(&repo, &ctx).await?;
        return Ok(Action::await_change());
    }
    drive(repo, ctx, reconcile_repository_once).await
}

/// Removes the finalizer (and the artifacts) of an OCI HelmRepository.
async fn release_static(
    repo: &HelmRepository,
    ctx: &SourceContext,
) -> Result<(), SourceControllerError> {
    let finalizers = repo.finalizers();
    if !finalizers.iter().any(|f| f == SOURCE_FINALIZER) {
        return Ok(());
    }
    if let Ok(object) = object_ref(repo) {
        let dir = ctx.store.local_path(&object.dir());
        if dir.exists()
            && let Err(error) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(dir = %dir.display(), %error, "removing artifacts");
        }
    }
    let kept: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != SOURCE_FINALIZER)
        .cloned()
        .collect();
    super::set_finalizers(ctx, repo, kept).await
}

/// The index download a HelmRepository spec asks for, with its Secrets' credentials.
async fn repository_source(
    client: &Client,
    repo: &HelmRepository,
) -> Result<HelmRepositorySource, Failure> {
    let namespace = repo.namespace().unwrap_or_default();
    let spec = &repo.spec;
    if !(spec.url.starts_with("http://") || spec.url.starts_with("https://")) {
        return Err(Failure::stalled(
            "URLInvalid",
            format!(
                "invalid Helm repository URL '{}': expected http:// or https:// for type default",
                spec.url
            ),
        ));
    }
    let mut source = HelmRepositorySource::new(spec.url.clone(), object_ref(repo)?);
    source.http.timeout =
        duration("timeout", spec.timeout.as_deref())?.unwrap_or(Duration::from_secs(60));
    source.http.pass_credentials = spec.pass_credentials.unwrap_or(false);
    if let Some(secret_ref) = &spec.secret_ref {
        let data = secret_data(client, &namespace, &secret_ref.name).await?;
        let text = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
        source.http.basic = text("username").zip(text("password"));
        if source.http.basic.is_none() {
            return Err(Failure::retry(
                meta::FETCH_FAILED,
                "AuthenticationFailed",
                format!(
                    "invalid '{namespace}/{}' secret data: required fields 'username' and 'password'",
                    secret_ref.name
                ),
            ));
        }
    }
    let certs = super::cert_secret(client, &namespace, spec.cert_secret_ref.as_ref()).await?;
    source.http.ca_pem = certs.ca_pem;
    source.http.client_identity_pem = certs.client_identity_pem;
    Ok(source)
}

async fn reconcile_repository_once(
    repo: Arc<HelmRepository>,
    ctx: Arc<KindContext>,
) -> Result<Action, SourceControllerError> {
    let mut status = start_status(&*repo);
    let interval = match duration("interval", repo.spec.interval.as_deref()) {
        Ok(i) => i,
        Err(failure) => return report_failure(&ctx, &*repo, status, failure).await,
    };
    let source = match repository_source(&ctx.client, &repo).await {
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
            let message = format!("stored artifact: revision '{revision}'");
            let stored = ArtifactStatus::from_artifact(&artifact);
            status.url = super::latest_url(
                &ctx.store,
                &*repo,
                "index.yaml",
                &artifact,
                status.url.take(),
            )
            .await;
            status.artifact = Some(stored);
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
        Err(error) => {
            let failure = match &error {
                SourceError::Store(_) | SourceError::Io { .. } => Failure::retry(
                    STORAGE_OPERATION_FAILED,
                    "ArchiveOperationFailed",
                    error.to_string(),
                ),
                _ => Failure::retry(
                    meta::FETCH_FAILED,
                    "Failed",
                    format!("failed to fetch Helm repository index: {error}"),
                ),
            };
            report_failure(&ctx, &*repo, status, failure).await
        }
    }
}

/// Runs the HelmChart controller on all namespaces; a change of a HelmRepository,
/// GitRepository or Bucket triggers the charts built from it.
pub(crate) async fn run_charts(ctx: Arc<SourceContext>, config: watcher::Config, concurrency: u16) {
    let client = ctx.client.clone();
    let ctx = Arc::new(KindContext::new(ctx));
    let controller = Controller::new(Api::<HelmChart>::all(client.clone()), config.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let store = controller.store();
    let charts_of = move |kind: &'static str| {
        let store = store.clone();
        move |namespace: Option<String>, name: String| {
            store
                .state()
                .into_iter()
                .filter(|c| {
                    c.spec.source_ref.kind == kind
                        && c.spec.source_ref.name == name
                        && c.namespace() == namespace
                })
                .map(|c| WatchRef::from_obj(&*c))
                .collect::<Vec<_>>()
        }
    };
    let (of_repo, of_git, of_bucket) = (
        charts_of("HelmRepository"),
        charts_of("GitRepository"),
        charts_of("Bucket"),
    );
    controller
        .watches(
            Api::<HelmRepository>::all(client.clone()),
            watcher::Config::default(),
            move |o| of_repo(o.namespace(), o.name_any()),
        )
        .watches(
            Api::<GitRepository>::all(client.clone()),
            watcher::Config::default(),
            move |o| of_git(o.namespace(), o.name_any()),
        )
        .watches(
            Api::<Bucket>::all(client),
            watcher::Config::default(),
            move |o| of_bucket(o.namespace(), o.name_any()),
        )
        .run(
            |obj, ctx| drive(obj, ctx, reconcile_chart_once),
            |chart: Arc<HelmChart>, error: &SourceControllerError, ctx: Arc<KindContext>| {
                super::error_policy(&*chart, error, &ctx)
            },
            ctx,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "HelmChart reconcile");
            }
        })
        .await;
}

/// A source's ready artifact, or Flux's reason why there is none.
struct SourceArtifact {
    artifact: ArtifactStatus,
}

fn ready_artifact(
    kind: &str,
    name: &str,
    conditions: &[Condition],
    generation: Option<i64>,
    observed_generation: Option<i64>,
    artifact: Option<&ArtifactStatus>,
) -> Result<SourceArtifact, Failure> {
    let no_artifact = || {
        Failure::retry(
            meta::FETCH_FAILED,
            "NoSourceArtifact",
            format!("no artifact available for {kind} source '{name}'"),
        )
    };
    let ready = meta::is_ready(conditions, None) && observed_generation == generation;
    match artifact {
        Some(artifact) if ready => Ok(SourceArtifact {
            artifact: artifact.clone(),
        }),
        _ => Err(no_artifact()),
    }
}

fn source_unavailable(kind: &str, namespace: &str, name: &str, why: &str) -> Failure {
    Failure::retry(
        meta::FETCH_FAILED,
        "SourceUnavailable",
        format!("failed to get source: {kind} '{namespace}/{name}' {why}"),
    )
}

/// Flux's reasons for a failed chart build.
fn build_failure(error: &SourceError) -> Failure {
    let message = error.to_string();
    match error {
        SourceError::Store(_) | SourceError::Io { .. } => {
            Failure::retry(STORAGE_OPERATION_FAILED, "ArchiveOperationFailed", message)
        }
        SourceError::Helm(
            HelmError::ChartNotFound { .. }
            | HelmError::NoMatchingVersion { .. }
            | HelmError::InvalidVersion { .. },
        )
        | SourceError::NoMatchingTag { .. }
        | SourceError::ReferenceNotFound { .. } => Failure::retry(
            BUILD_FAILED,
            "InvalidChartReference",
            format!("invalid chart reference: {message}"),
        ),
        SourceError::Helm(HelmError::ValuesFile { .. }) => Failure::retry(
            BUILD_FAILED,
            "ValuesFilesError",
            format!("values files merge error: {message}"),
        ),
        SourceError::Helm(HelmError::InvalidChart { .. }) => Failure::retry(
            BUILD_FAILED,
            "ChartPackageError",
            format!("chart package error: {message}"),
        ),
        _ => Failure::retry(
            BUILD_FAILED,
            "ChartPullError",
            format!("chart pull error: {message}"),
        ),
    }
}

/// Where a chart's source stands: the acquisition to run, with the source revision.
enum ChartPlan {
    Repository {
        source: Box<HelmChartSource>,
        revision: Option<String>,
    },
    Directory {
        archive: std::path::PathBuf,
        revision: String,
    },
}

async fn plan_chart(ctx: &SourceContext, chart: &HelmChart) -> Result<ChartPlan, Failure> {
    let namespace = chart.namespace().unwrap_or_default();
    let source_ref = &chart.spec.source_ref;
    let name = &source_ref.name;
    let get_failed =
        |e: kube::Error| source_unavailable(&source_ref.kind, &namespace, name, &format!(": {e}"));
    super::refuse_unsupported(&[("verify", chart.spec.verify.is_some())])?;
    let object = object_ref(chart)?;
    match source_ref.kind.as_str() {
        "HelmRepository" => {
            let api: Api<HelmRepository> = Api::namespaced(ctx.client.clone(), &namespace);
            let repo = api
                .get_opt(name)
                .await
                .map_err(get_failed)?
                .ok_or_else(|| {
                    source_unavailable("HelmRepository", &namespace, name, "not found")
                })?;
            let version = chart
                .spec
                .version
                .clone()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "*".to_string());
            if repo.is_oci() {
                // Flux: no artifact to wait for; the chart is pulled from the registry.
                let registry = oci_chart_registry(&ctx.client, &repo, &chart.spec.chart).await?;
                let mut source = HelmChartSource::from_oci(registry, version, object);
                configure(&mut source, chart)?;
                return Ok(ChartPlan::Repository {
                    source: Box::new(source),
                    revision: None,
                });
            }
            let status = repo.status.clone().unwrap_or_default();
            let ready = ready_artifact(
                "HelmRepository",
                name,
                &status.conditions,
                repo.meta().generation,
                status.observed_generation,
                status.artifact.as_ref(),
            )?;
            let repository = repository_source(&ctx.client, &repo).await?;
            let mut source = HelmChartSource::from_repository(
                repository,
                chart.spec.chart.clone(),
                version,
                object,
            );
            configure(&mut source, chart)?;
            Ok(ChartPlan::Repository {
                source: Box::new(source),
                revision: Some(ready.artifact.revision),
            })
        }
        kind @ ("GitRepository" | "Bucket") => {
            let (conditions, generation, observed, artifact) = if kind == "GitRepository" {
                let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), &namespace);
                let obj = api
                    .get_opt(name)
                    .await
                    .map_err(get_failed)?
                    .ok_or_else(|| source_unavailable(kind, &namespace, name, "not found"))?;
                let s = obj.status.clone().unwrap_or_default();
                (
                    s.conditions,
                    obj.meta().generation,
                    s.observed_generation,
                    s.artifact,
                )
            } else {
                let api: Api<Bucket> = Api::namespaced(ctx.client.clone(), &namespace);
                let obj = api
                    .get_opt(name)
                    .await
                    .map_err(get_failed)?
                    .ok_or_else(|| source_unavailable(kind, &namespace, name, "not found"))?;
                let s = obj.status.clone().unwrap_or_default();
                (
                    s.conditions,
                    obj.meta().generation,
                    s.observed_generation,
                    s.artifact,
                )
            };
            let ready = ready_artifact(
                kind,
                name,
                &conditions,
                generation,
                observed,
                artifact.as_ref(),
            )?;
            let archive = std::path::PathBuf::from(&ready.artifact.path);
            if !ctx.store.exists(&archive) {
                return Err(Failure::retry(
                    meta::FETCH_FAILED,
                    "NoSourceArtifact",
                    format!("artifact of {kind} source '{name}' is not in storage"),
                ));
            }
            Ok(ChartPlan::Directory {
                archive,
                revision: ready.artifact.revision,
            })
        }
        other => Err(Failure::stalled(
            "UnsupportedSourceKind",
            format!("unsupported source kind '{other}'"),
        )),
    }
}

/// The registry repository of chart `chart` below an OCI HelmRepository
/// (`oci://host/path` + `/chart`), with its credentials: a `kubernetes.io/dockerconfigjson`
/// Secret or `username`/`password`, as Flux accepts.
async fn oci_chart_registry(
    client: &Client,
    repo: &HelmRepository,
    chart: &str,
) -> Result<OciSource, Failure> {
    let namespace = repo.namespace().unwrap_or_default();
    let spec = &repo.spec;
    if let Some(provider) = spec.provider.as_deref().filter(|p| *p != "generic") {
        return Err(Failure::stalled(
            "InvalidProvider",
            format!("spec.provider '{provider}': only 'generic' is supported by this controller"),
        ));
    }
    let url = format!("{}/{chart}", spec.url.trim_end_matches('/'));
    let parsed = OciRepositoryUrl::parse(&url).map_err(|e| {
        Failure::retry(
            BUILD_FAILED,
            "InvalidChartReference",
            format!("invalid chart reference: {e}"),
        )
    })?;
    let mut source = OciSource::new(url, object_ref(repo)?);
    source.insecure = spec.insecure.unwrap_or(false);
    source.timeout =
        duration("timeout", spec.timeout.as_deref())?.unwrap_or(Duration::from_secs(60));
    if let Some(secret_ref) = &spec.secret_ref {
        let data = secret_data(client, &namespace, &secret_ref.name).await?;
        let auth_failed =
            |message: String| Failure::retry(meta::FETCH_FAILED, "AuthenticationFailed", message);
        source.auth = if let Some(config) = data.get(".dockerconfigjson") {
            OciAuth::from_docker_config(config, &parsed.registry).map_err(|e| {
                auth_failed(format!("secret '{namespace}/{}': {e}", secret_ref.name))
            })?
        } else {
            let text = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
            match (text("username"), text("password")) {
                (Some(username), Some(password)) => OciAuth::Basic { username, password },
                _ => {
                    return Err(auth_failed(format!(
                        "invalid '{namespace}/{}' secret data: expected '.dockerconfigjson' or \
                         'username' and 'password'",
                        secret_ref.name
                    )));
                }
            }
        };
    }
    let certs = super::cert_secret(client, &namespace, spec.cert_secret_ref.as_ref()).await?;
    source.tls.ca_pem = certs.ca_pem;
    source.tls.client_identity_pem = certs.client_identity_pem;
    Ok(source)
}

/// Values files, their strategy and the generation, as the spec says.
fn configure(source: &mut HelmChartSource, chart: &HelmChart) -> Result<(), Failure> {
    source.values_files = chart.spec.values_files.clone().unwrap_or_default();
    source.ignore_missing_values_files = chart.spec.ignore_missing_values_files.unwrap_or(false);
    source.generation = chart.meta().generation;
    source.reconcile_strategy = match chart.spec.reconcile_strategy.as_deref() {
        None | Some("ChartVersion") => ReconcileStrategy::ChartVersion,
        Some("Revision") => ReconcileStrategy::Revision,
        Some(other) => {
            return Err(Failure::stalled(
                "InvalidReconcileStrategy",
                format!("spec.reconcileStrategy '{other}': expected ChartVersion or Revision"),
            ));
        }
    };
    Ok(())
}

/// Extracts the source artifact and builds the chart from the directory `chart.spec.chart`.
async fn acquire_from_directory(
    ctx: &SourceContext,
    chart: &HelmChart,
    archive: &std::path::Path,
    revision: &str,
    last: Option<&gitops_source::Artifact>,
) -> Result<Result<gitops_source::Acquired, SourceError>, Failure> {
    let source_revision: Revision = revision.parse().map_err(|e| {
        Failure::retry(
            meta::FETCH_FAILED,
            "NoSourceArtifact",
            format!("source revision '{revision}': {e}"),
        )
    })?;
    let dir = tempfile::Builder::new()
        .prefix("gitops-helmchart-")
        .tempdir()
        .map_err(|e| {
            Failure::retry(
                STORAGE_OPERATION_FAILED,
                "ArchiveOperationFailed",
                format!("temporary directory: {e}"),
            )
        })?;
    let file = ctx.store.local_path(archive);
    let root = dir.path().to_path_buf();
    let extracted = tokio::task::spawn_blocking(move || {
        let reader = std::fs::File::open(&file).map_err(|e| e.to_string())?;
        gitops_source::fetch::extract_tar_gz(
            std::io::BufReader::new(reader),
            &root,
            FetchLimits::default(),
            &file.display().to_string(),
        )
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    if let Err(message) = extracted {
        return Err(Failure::retry(
            STORAGE_OPERATION_FAILED,
            "ArchiveOperationFailed",
            format!("extracting the source artifact: {message}"),
        ));
    }
    let mut source = HelmChartSource::from_directory(
        dir.path(),
        chart.spec.chart.trim_start_matches("./").to_string(),
        source_revision,
        object_ref(chart)?,
    );
    configure(&mut source, chart)?;
    let result = source.acquire(last, &ctx.store).await;
    drop(dir);
    Ok(result)
}

async fn reconcile_chart_once(
    chart: Arc<HelmChart>,
    ctx: Arc<KindContext>,
) -> Result<Action, SourceControllerError> {
    let mut status = start_status(&*chart);
    let interval = match duration("interval", Some(&chart.spec.interval)) {
        Ok(i) => i,
        Err(failure) => return report_failure(&ctx, &*chart, status, failure).await,
    };
    let plan = match plan_chart(&ctx, &chart).await {
        Ok(p) => p,
        Err(failure) => return report_failure(&ctx, &*chart, status, failure).await,
    };
    let last = last_artifact(&ctx.store, status.artifact.as_ref());
    // The same spec and the same source artifact give the same chart: keep the last one
    // without downloading anything (an OCI HelmRepository has no artifact to compare).
    let (source_revision, pulled) = match &plan {
        ChartPlan::Repository { revision, .. } => (revision.clone(), true),
        ChartPlan::Directory { revision, .. } => (Some(revision.clone()), false),
    };
    let unchanged = last.clone().filter(|_| {
        source_revision.is_some()
            && status.observed_generation == chart.meta().generation
            && status.observed_source_artifact_revision == source_revision
    });
    let result = match (unchanged, plan) {
        (Some(last), _) => Ok(gitops_source::Acquired::Unchanged(last)),
        (None, ChartPlan::Repository { source, .. }) => {
            source.acquire(last.as_ref(), &ctx.store).await
        }
        (None, ChartPlan::Directory { archive, revision }) => {
            match acquire_from_directory(&ctx, &chart, &archive, &revision, last.as_ref()).await {
                Ok(r) => r,
                Err(failure) => {
                    return report_failure(&ctx, &*chart, status, failure).await;
                }
            }
        }
    };
    match result {
        Ok(acquired) => {
            let is_new = acquired.is_new();
            let artifact = acquired.into_artifact();
            if let Ok(object) = object_ref(&*chart)
                && is_new
            {
                collect_garbage(&ctx.store, &object, &artifact);
            }
            let revision = artifact.revision.to_string();
            let chart_name = artifact
                .file_name()
                .and_then(|f| f.strip_suffix(".tgz"))
                .and_then(|f| f.strip_suffix(&format!("-{revision}")))
                .unwrap_or(&chart.spec.chart)
                .to_string();
            let message = if pulled {
                format!("pulled '{chart_name}' chart with version '{revision}'")
            } else {
                format!("packaged '{chart_name}' chart with version '{revision}'")
            };
            let stored = ArtifactStatus::from_artifact(&artifact);
            status.url = super::latest_url(
                &ctx.store,
                &*chart,
                "latest.tar.gz",
                &artifact,
                status.url.take(),
            )
            .await;
            status.artifact = Some(stored);
            status.observed_chart_name = Some(chart_name);
            status.observed_source_artifact_revision = source_revision;
            status.observed_values_files = chart.spec.values_files.clone();
            report_ready(
                &ctx,
                &*chart,
                status,
                if pulled {
                    "ChartPullSucceeded"
                } else {
                    "ChartPackageSucceeded"
                },
                &message,
                is_new.then_some(revision.as_str()),
                interval,
            )
            .await
        }
        Err(error) => report_failure(&ctx, &*chart, status, build_failure(&error)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(status: &str) -> Condition {
        Condition {
            type_: meta::READY.into(),
            status: status.into(),
            observed_generation: Some(2),
            last_transition_time: "2026-01-02T03:04:05Z".into(),
            reason: "Succeeded".into(),
            message: String::new(),
        }
    }

    #[test]
    fn a_chart_follows_its_source_readiness() {
        let artifact = ArtifactStatus {
            revision: "sha256:00".into(),
            ..ArtifactStatus::default()
        };
        let ready = [condition("True")];
        let ok = ready_artifact(
            "HelmRepository",
            "repo",
            &ready,
            Some(2),
            Some(2),
            Some(&artifact),
        );
        assert_eq!(
            ok.map(|a| a.artifact.revision).ok().as_deref(),
            Some("sha256:00")
        );
        // Not ready, not reconciled at its generation yet, or no artifact: NoSourceArtifact.
        for (conditions, observed, artifact) in [
            (vec![condition("False")], Some(2), Some(&artifact)),
            (ready.to_vec(), Some(1), Some(&artifact)),
            (ready.to_vec(), Some(2), None),
            (Vec::new(), Some(2), Some(&artifact)),
        ] {
            let failure = ready_artifact(
                "HelmRepository",
                "repo",
                &conditions,
                Some(2),
                observed,
                artifact,
            )
            .err()
            .expect("no ready artifact");
            assert_eq!(failure.reason, "NoSourceArtifact");
            assert_eq!(
                failure.message,
                "no artifact available for HelmRepository source 'repo'"
            );
            assert!(!failure.stalled);
        }
    }

    #[test]
    fn chart_build_failures_carry_flux_reasons() {
        let missing = SourceError::Helm(HelmError::NoMatchingVersion {
            url: "http://h".into(),
            chart: "app".into(),
            constraint: "9.9.9".into(),
        });
        let f = build_failure(&missing);
        assert_eq!(
            (f.condition, f.reason.as_str()),
            (BUILD_FAILED, "InvalidChartReference")
        );
        assert!(
            f.message.starts_with("invalid chart reference: "),
            "{}",
            f.message
        );
        let values = SourceError::Helm(HelmError::ValuesFile {
            path: "values-prod.yaml".into(),
            message: "not found".into(),
        });
        assert_eq!(build_failure(&values).reason, "ValuesFilesError");
        let chart = SourceError::Helm(HelmError::InvalidChart {
            path: "charts/app".into(),
            message: "no Chart.yaml".into(),
        });
        assert_eq!(build_failure(&chart).reason, "ChartPackageError");
    }
}

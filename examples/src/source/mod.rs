//! Flux's sources (`source.toolkit.fluxcd.io/v1`) and their controllers: `GitRepository`,
//! `OCIRepository`, `HelmRepository`, `HelmChart` and `Bucket`, each acquired with
//! `gitops-source` into one [`ArtifactStore`] served over HTTP, and published in
//! `status.artifact` with Flux's revision strings, conditions and events.
//!
//! Every kind carries Flux's finalizer ([`SOURCE_FINALIZER`]): deleting an object removes its
//! artifacts from the store. Old artifacts are garbage-collected after each new one by the
//! store's retention (Flux's defaults: the last 2, for one minute).

mod bucket;
mod git;
mod helm;
mod oci;

pub use bucket::{Bucket, BucketSpec, BucketStatus};
pub use git::{GitRepository, GitRepositoryRef, GitRepositorySpec, GitRepositoryStatus, reconcile};
pub use helm::{
    HelmChart, HelmChartSourceRef, HelmChartSpec, HelmChartStatus, HelmRepository,
    HelmRepositorySpec, HelmRepositoryStatus,
};
pub use oci::{
    OCILayerSelector, OCIRepository, OCIRepositoryRef, OCIRepositorySpec, OCIRepositoryStatus,
};

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gitops_events::Severity;
use gitops_source::{Artifact, ArtifactStore, ObjectRef};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::events::EventRecorder;
use crate::meta::{self, Condition};

/// The finalizer Flux's source-controller puts on every source: removed once the object's
/// artifacts are gone from storage.
pub const SOURCE_FINALIZER: &str = "finalizers.fluxcd.io";

/// The reason of a successful reconcile (every kind but HelmChart).
pub(crate) const SUCCEEDED: &str = "Succeeded";

/// Condition type (HelmChart): building the chart failed.
pub const BUILD_FAILED: &str = "BuildFailed";
/// Condition type: writing or reading the storage failed.
pub const STORAGE_OPERATION_FAILED: &str = "StorageOperationFailed";

/// Flux's `Artifact` status shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStatus {
    /// Path relative to the store root (`gitrepository/<ns>/<name>/<digest>.tar.gz`).
    pub path: String,
    /// Where the artifact is served.
    pub url: String,
    /// The source revision (`main@sha1:<hex>`, `latest@sha256:<hex>`, `sha256:<hex>`,
    /// `1.2.3`).
    pub revision: String,
    /// The archive digest (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When the archive was written.
    pub last_update_time: String,
    /// Archive size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Metadata of the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl ArtifactStatus {
    /// The status shape of a stored artifact.
    pub fn from_artifact(artifact: &Artifact) -> Self {
        ArtifactStatus {
            path: artifact.path.to_string_lossy().into_owned(),
            url: artifact
                .url
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            revision: artifact.revision.to_string(),
            digest: Some(artifact.digest.to_string()),
            last_update_time: artifact.last_update_time.to_string(),
            size: i64::try_from(artifact.size).ok(),
            metadata: (!artifact.metadata.is_empty()).then(|| artifact.metadata.clone()),
        }
    }

    /// The stored artifact this status describes, when every field parses.
    pub fn to_artifact(&self) -> Option<Artifact> {
        Some(Artifact {
            revision: self.revision.parse().ok()?,
            digest: self.digest.as_deref()?.parse().ok()?,
            size: u64::try_from(self.size?).ok()?,
            path: PathBuf::from(&self.path),
            url: url::Url::parse(&self.url).ok(),
            metadata: self.metadata.clone().unwrap_or_default(),
            last_update_time: self.last_update_time.parse().ok()?,
        })
    }
}

/// Why a source reconcile failed (the failures of the source itself are written to its
/// status; these are failures to talk to the cluster).
#[derive(Debug, thiserror::Error)]
pub enum SourceControllerError {
    /// A Kubernetes API request failed.
    #[error("{what} of {kind} {namespace}/{name}: {source}")]
    Kube {
        /// What was being done.
        what: &'static str,
        /// The object's kind.
        kind: &'static str,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// The GitRepository controller's error (the same for every source kind).
pub type GitRepositoryError = SourceControllerError;

/// What the source controllers need.
pub struct SourceContext {
    /// The cluster.
    pub client: Client,
    /// Where artifacts are written (with the base URL of its HTTP server).
    pub store: ArtifactStore,
    /// Where events go.
    pub events: EventRecorder,
    /// The delay before retrying a failed reconcile the first time (Flux's
    /// `--min-retry-delay`, 750 ms): each consecutive failure of the same object doubles it, up
    /// to `max_retry_delay` (Flux's `--max-retry-delay`), and a success starts over. A
    /// failure is retried on this schedule whatever `spec.interval` says, as controller-runtime's
    /// rate limiter does for Flux; a spec change is reconciled at once.
    pub retry_interval: Duration,
    /// The longest delay between retries of a failing source (Flux's `--max-retry-delay`,
    /// [`MAX_RETRY_DELAY`] by default).
    pub max_retry_delay: Duration,
}

/// Flux's default `--max-retry-delay`: the longest delay between retries of a failing object.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);

/// The context of one source kind's controller: the shared [`SourceContext`] and the
/// consecutive failures of each object (namespace, name), from which the retry delay grows.
pub(crate) struct KindContext {
    shared: Arc<SourceContext>,
    failures: crate::kustomize::FailureCounts,
}

impl std::ops::Deref for KindContext {
    type Target = SourceContext;
    fn deref(&self) -> &SourceContext {
        &self.shared
    }
}

impl KindContext {
    /// A context with no failures counted.
    pub(crate) fn new(shared: Arc<SourceContext>) -> Self {
        KindContext {
            shared,
            failures: crate::kustomize::FailureCounts::default(),
        }
    }

    /// Flux's back-off: from the context's retry interval up to its maximum retry delay.
    fn backoff(&self) -> crate::kustomize::Backoff {
        crate::kustomize::Backoff {
            min: self.shared.retry_interval,
            max: self.shared.max_retry_delay.max(self.shared.retry_interval),
        }
    }

    /// Counts one more consecutive failure of `namespace/name` and returns the delay before
    /// its retry.
    pub(crate) fn next_retry(&self, namespace: &str, name: &str) -> Duration {
        self.backoff().delay(self.failures.record(namespace, name))
    }

    /// Forgets the failures of `namespace/name` (it succeeded, or is gone).
    pub(crate) fn reset_retries(&self, namespace: &str, name: &str) {
        self.failures.reset(namespace, name);
    }
}

/// A reconcile that failed at the API level is retried with Flux's back-off.
pub(crate) fn error_policy<K: SourceObject>(
    obj: &K,
    error: &SourceControllerError,
    ctx: &KindContext,
) -> Action {
    let delay = ctx.next_retry(&obj.namespace().unwrap_or_default(), &obj.name_any());
    tracing::debug!(%error, kind = K::KIND, ?delay, "reconcile failed, retrying");
    Action::requeue(delay)
}

/// The GitRepository controller's context (the same for every source kind).
pub type GitRepositoryContext = SourceContext;

/// Runs the GitRepository controller alone until the stream ends.
pub async fn run(
    ctx: Arc<SourceContext>,
    api: Api<GitRepository>,
    config: watcher::Config,
    concurrency: u16,
) {
    git::run(ctx, api, config, concurrency).await;
}

/// Runs every source controller (GitRepository, OCIRepository, HelmRepository, HelmChart,
/// Bucket) on all namespaces until their streams end.
pub async fn run_all(ctx: Arc<SourceContext>, config: watcher::Config, concurrency: u16) {
    let client = ctx.client.clone();
    futures::join!(
        git::run(
            ctx.clone(),
            Api::all(client.clone()),
            config.clone(),
            concurrency
        ),
        oci::run(ctx.clone(), config.clone(), concurrency),
        helm::run_repositories(ctx.clone(), config.clone(), concurrency),
        helm::run_charts(ctx.clone(), config.clone(), concurrency),
        bucket::run(ctx, config, concurrency),
    );
}

/// Runs the controller of one source kind until its stream ends: `reconcile` per object, a
/// failed reconcile retried with Flux's back-off.
pub(crate) async fn run_controller<K, F, Fut>(
    ctx: Arc<SourceContext>,
    api: Api<K>,
    config: watcher::Config,
    concurrency: u16,
    reconcile: F,
) where
    K: SourceObject,
    F: FnMut(Arc<K>, Arc<KindContext>) -> Fut,
    Fut: Future<Output = Result<Action, SourceControllerError>> + Send + 'static,
{
    use futures::StreamExt as _;
    let ctx = Arc::new(KindContext::new(ctx));
    kube::runtime::Controller::new(api, config)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .run(
            reconcile,
            |obj: Arc<K>, error: &SourceControllerError, ctx: Arc<KindContext>| {
                error_policy(&*obj, error, &ctx)
            },
            ctx,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, kind = K::KIND, "reconcile");
            }
        })
        .await;
}

/// A failure written to a source's status.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The negative condition set beside `Ready=False` (`FetchFailed`, `BuildFailed`, ...).
    pub condition: &'static str,
    /// Flux's reason.
    pub reason: String,
    /// For people.
    pub message: String,
    /// The spec cannot work until it changes (`Stalled=True`, no retry).
    pub stalled: bool,
}

impl Failure {
    /// A failure retried after the retry interval.
    pub fn retry(condition: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Failure {
            condition,
            reason: reason.to_string(),
            message: message.into(),
            stalled: false,
        }
    }

    /// A failure that needs a spec change.
    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Failure {
            condition: meta::STALLED,
            reason: reason.to_string(),
            message: message.into(),
            stalled: true,
        }
    }
}

/// The status fields every source kind shares.
pub(crate) trait SourceStatus: Serialize + Default + Clone + Send {
    /// The conditions.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// `status.observedGeneration`.
    fn set_observed_generation(&mut self, generation: Option<i64>);
    /// `status.lastHandledReconcileAt`.
    fn set_last_handled_reconcile_at(&mut self, value: String);
}

macro_rules! impl_source_status {
    ($($t:ty),*) => {$(
        impl crate::source::SourceStatus for $t {
            fn conditions_mut(&mut self) -> &mut Vec<crate::meta::Condition> {
                &mut self.conditions
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
            fn set_last_handled_reconcile_at(&mut self, value: String) {
                self.last_handled_reconcile_at = Some(value);
            }
        }
    )*};
}
pub(crate) use impl_source_status;

/// What a source object offers the shared reconcile driver.
pub(crate) trait SourceObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The kind, as in the API.
    const KIND: &'static str;
    /// The status type.
    type Status: SourceStatus;
    /// `spec.suspend`.
    fn suspended(&self) -> bool;
    /// The current status (default when unset).
    fn status_or_default(&self) -> Self::Status;
}

/// The reference of `obj` in the artifact store.
pub(crate) fn object_ref<K: SourceObject>(obj: &K) -> Result<ObjectRef, Failure> {
    ObjectRef::new(
        K::KIND,
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
    )
    .map_err(|e| Failure::stalled("InvalidName", e.to_string()))
}

/// The status to start a reconcile from: the current one, with the handled
/// `reconcile.fluxcd.io/requestedAt` value.
pub(crate) fn start_status<K: SourceObject>(obj: &K) -> K::Status {
    let mut status = obj.status_or_default();
    if let Some(requested) = obj.annotations().get(meta::RECONCILE_REQUEST_ANNOTATION) {
        status.set_last_handled_reconcile_at(requested.clone());
    }
    status
}

/// One measured reconcile of a source, on the object as the API server holds it now:
/// deletion (artifacts removed, then the finalizer), the finalizer added, suspend honoured,
/// then `apply`.
pub(crate) async fn drive<K, F, Fut>(
    obj: Arc<K>,
    ctx: Arc<KindContext>,
    apply: F,
) -> Result<Action, SourceControllerError>
where
    K: SourceObject,
    F: FnOnce(Arc<K>, Arc<KindContext>) -> Fut,
    Fut: Future<Output = Result<Action, SourceControllerError>>,
{
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    // The watch cache may not hold the status the previous reconcile of this object just
    // wrote (a trigger from another watch queued behind it): read the object itself, so a
    // reconcile never redoes work from a status that is already replaced.
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let obj = match api.get_opt(&name).await {
        Ok(Some(fresh)) => Arc::new(fresh),
        Ok(None) => return Ok(Action::await_change()),
        Err(source) => {
            return Err(SourceControllerError::Kube {
                what: "reading",
                kind: K::KIND,
                namespace,
                name,
                source,
            });
        }
    };
    let suspended = obj.suspended();
    let run = async {
        let has_finalizer = obj.finalizers().iter().any(|f| f == SOURCE_FINALIZER);
        if obj.meta().deletion_timestamp.is_some() {
            if has_finalizer {
                remove_artifacts(&ctx.store, &*obj);
                let kept: Vec<String> = obj
                    .finalizers()
                    .iter()
                    .filter(|f| *f != SOURCE_FINALIZER)
                    .cloned()
                    .collect();
                set_finalizers(&ctx, &*obj, kept).await?;
            }
            ctx.reset_retries(&namespace, &name);
            return Ok(Action::await_change());
        }
        if !has_finalizer {
            let mut all = obj.finalizers().to_vec();
            all.push(SOURCE_FINALIZER.to_string());
            set_finalizers(&ctx, &*obj, all).await?;
        }
        if obj.suspended() {
            tracing::debug!(kind = K::KIND, %name, "suspended");
            return Ok(Action::await_change());
        }
        apply(obj.clone(), ctx.clone()).await
    };
    crate::metrics::measure(K::KIND, &namespace, &name, suspended, run).await
}

/// Sets `metadata.finalizers` with a merge patch guarded by the resource version the
/// reconcile saw (a conflicting writer makes it fail and the reconcile retry).
async fn set_finalizers<K: SourceObject>(
    ctx: &SourceContext,
    obj: &K,
    finalizers: Vec<String>,
) -> Result<(), SourceControllerError> {
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| SourceControllerError::Kube {
        what: "updating the finalizers",
        kind: K::KIND,
        namespace,
        name: obj.name_any(),
        source,
    })
}

/// Removes every artifact of `obj` from the store (the object is being deleted).
fn remove_artifacts<K: SourceObject>(store: &ArtifactStore, obj: &K) {
    let Ok(object) = object_ref(obj) else { return };
    let dir = store.local_path(&object.dir());
    if !dir.exists() {
        return;
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => tracing::info!(kind = K::KIND, dir = %dir.display(), "artifacts removed"),
        Err(error) => {
            tracing::warn!(kind = K::KIND, dir = %dir.display(), %error, "removing artifacts")
        }
    }
}

/// Writes `status`, wrapping the error.
pub(crate) async fn write_status<K: SourceObject>(
    ctx: &SourceContext,
    obj: &K,
    status: &mut K::Status,
) -> Result<(), SourceControllerError> {
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let conditions = status.conditions_mut().clone();
    meta::write_status(&api, K::KIND, obj, status, &conditions)
        .await
        .map_err(|source| SourceControllerError::Kube {
            what: "writing the status",
            kind: K::KIND,
            namespace,
            name: obj.name_any(),
            source,
        })
}

/// Writes a failure into the status (`Ready=False` with Flux's reason, and `Stalled` or
/// `Reconciling`), records a warning event, and says when to try again: a stalled object
/// waits for a change, any other failure is retried with Flux's back-off (as Flux, whatever
/// `spec.interval` says).
pub(crate) async fn report_failure<K: SourceObject>(
    ctx: &KindContext,
    obj: &K,
    mut status: K::Status,
    failure: Failure,
) -> Result<Action, SourceControllerError> {
    let generation = obj.meta().generation;
    let conditions = status.conditions_mut();
    meta::set_condition(
        conditions,
        meta::READY,
        false,
        &failure.reason,
        &failure.message,
        generation,
    );
    if failure.stalled {
        meta::set_condition(
            conditions,
            meta::STALLED,
            true,
            &failure.reason,
            &failure.message,
            generation,
        );
        meta::remove_condition(conditions, meta::RECONCILING);
        status.set_observed_generation(generation);
    } else {
        meta::set_condition(
            conditions,
            failure.condition,
            true,
            &failure.reason,
            &failure.message,
            generation,
        );
        meta::set_condition(
            conditions,
            meta::RECONCILING,
            true,
            "ProgressingWithRetry",
            &failure.message,
            generation,
        );
    }
    write_status(ctx, obj, &mut status).await?;
    ctx.events.record(
        obj,
        Severity::Error,
        &failure.reason,
        &failure.message,
        None,
    );
    Ok(if failure.stalled {
        ctx.reset_retries(&obj.namespace().unwrap_or_default(), &obj.name_any());
        Action::await_change()
    } else {
        Action::requeue(ctx.next_retry(&obj.namespace().unwrap_or_default(), &obj.name_any()))
    })
}

/// Writes a success into the status (`Ready=True` and `ArtifactInStorage=True` with
/// `reason`, the failure conditions removed), records an event for a new revision (Flux's
/// `NewArtifact` when the reason is the generic `Succeeded`, the reason itself otherwise), and
/// requeues at the interval.
pub(crate) async fn report_ready<K: SourceObject>(
    ctx: &KindContext,
    obj: &K,
    mut status: K::Status,
    reason: &str,
    message: &str,
    new_revision: Option<&str>,
    interval: Option<Duration>,
) -> Result<Action, SourceControllerError> {
    let generation = obj.meta().generation;
    status.set_observed_generation(generation);
    let conditions = status.conditions_mut();
    meta::set_condition(conditions, meta::READY, true, reason, message, generation);
    meta::set_condition(
        conditions,
        meta::ARTIFACT_IN_STORAGE,
        true,
        reason,
        message,
        generation,
    );
    for gone in [
        meta::RECONCILING,
        meta::STALLED,
        meta::FETCH_FAILED,
        BUILD_FAILED,
        STORAGE_OPERATION_FAILED,
    ] {
        meta::remove_condition(conditions, gone);
    }
    write_status(ctx, obj, &mut status).await?;
    ctx.reset_retries(&obj.namespace().unwrap_or_default(), &obj.name_any());
    if let Some(revision) = new_revision {
        let event = if reason == SUCCEEDED {
            "NewArtifact"
        } else {
            reason
        };
        ctx.events
            .record(obj, Severity::Info, event, message, Some(revision));
    }
    Ok(interval.map_or_else(Action::await_change, Action::requeue))
}

/// Removes old artifacts of `object` by the store's retention, keeping `current`.
pub(crate) fn collect_garbage(store: &ArtifactStore, object: &ObjectRef, current: &Artifact) {
    match store.gc(object, Some(&current.path)) {
        Ok(removed) if !removed.is_empty() => {
            tracing::debug!(
                kind = object.kind(),
                removed = removed.len(),
                "old artifacts removed"
            )
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "garbage-collecting old artifacts"),
    }
}

/// Flux's stable link to the latest artifact of `obj` for `status.url`:
/// `<kind>/<ns>/<name>/<alias>` (`latest.tar.gz`, or `index.yaml` for a HelmRepository) in
/// the store, pointed at `artifact`. Best effort, as Flux: when the alias cannot be written the
/// previous value stays and a warning is logged.
pub(crate) async fn latest_url<K: SourceObject>(
    store: &ArtifactStore,
    obj: &K,
    alias: &'static str,
    artifact: &Artifact,
    previous: Option<String>,
) -> Option<String> {
    let Ok(object) = object_ref(obj) else {
        return previous;
    };
    let (store_owned, current) = (store.clone(), artifact.path.clone());
    let result = tokio::task::spawn_blocking(move || {
        store_owned
            .set_alias(&object, alias, &current)
            .map(|relative| store_owned.url_for(&relative))
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match result {
        Ok(url) => url.map(String::from).or(previous),
        Err(error) => {
            tracing::warn!(
                kind = K::KIND,
                name = %obj.name_any(),
                %error,
                "failed to update the status URL alias"
            );
            previous
        }
    }
}

/// The last artifact of a status, when its file is still in the store.
pub(crate) fn last_artifact(
    store: &ArtifactStore,
    artifact: Option<&ArtifactStatus>,
) -> Option<Artifact> {
    artifact
        .and_then(ArtifactStatus::to_artifact)
        .filter(|a| store.exists(&a.path))
}

/// A duration field, parsed; an invalid one stalls the object.
pub(crate) fn duration(field: &str, value: Option<&str>) -> Result<Option<Duration>, Failure> {
    value
        .map(|v| {
            meta::parse_duration(v)
                .map_err(|e| Failure::stalled("InvalidDuration", format!("spec.{field}: {e}")))
        })
        .transpose()
}

/// The data of a Secret in `namespace`; a missing or unreadable Secret is an
/// `AuthenticationFailed` failure (retried: the Secret may appear).
pub(crate) async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, Failure> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let failed =
        |message: String| Failure::retry(meta::FETCH_FAILED, "AuthenticationFailed", message);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| failed(format!("failed to get secret '{namespace}/{name}': {e}")))?
        .ok_or_else(|| {
            failed(format!(
                "failed to get secret '{namespace}/{name}': not found"
            ))
        })?;
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.entry(k).or_insert_with(|| v.into_bytes());
    }
    Ok(data)
}

/// The TLS material of a `certSecretRef` Secret, as Flux reads it: `ca.crt`, and `tls.crt`
/// with `tls.key` for mutual TLS.
#[derive(Default)]
pub(crate) struct CertSecret {
    /// Extra trusted CA certificates (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate chain and key (PEM), when both keys are present.
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// Reads the `certSecretRef` Secret in `namespace`, if the spec names one.
pub(crate) async fn cert_secret(
    client: &Client,
    namespace: &str,
    reference: Option<&crate::meta::LocalObjectReference>,
) -> Result<CertSecret, Failure> {
    let Some(reference) = reference else {
        return Ok(CertSecret::default());
    };
    let mut data = secret_data(client, namespace, &reference.name).await?;
    let ca_pem = data.remove("ca.crt");
    let client_identity_pem = data.remove("tls.crt").zip(data.remove("tls.key"));
    Ok(CertSecret {
        ca_pem,
        client_identity_pem,
    })
}

/// Flux fields this controller accepts in the schema (so Flux's YAML applies unchanged) but
/// does not implement: any of them set stalls the object with `UnsupportedField`, naming it,
/// rather than silently doing something else than Flux.
pub(crate) fn refuse_unsupported(fields: &[(&str, bool)]) -> Result<(), Failure> {
    let set: Vec<&str> = fields
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
    if set.is_empty() {
        return Ok(());
    }
    Err(Failure::stalled(
        "UnsupportedField",
        format!(
            "{} not supported by this controller",
            set.iter()
                .map(|f| format!("spec.{f}"))
                .collect::<Vec<_>>()
                .join(", ")
                + if set.len() == 1 { " is" } else { " are" }
        ),
    ))
}

/// The schema of a Flux object field this controller keeps opaque.
pub(crate) fn opaque_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The schema of a string with a default (Flux's `+kubebuilder:default`).
pub(crate) fn string_default_schema(default: &str, values: Option<&[&str]>) -> schemars::Schema {
    let mut schema = serde_json::json!({"type": "string", "default": default});
    if let Some(values) = values {
        schema["enum"] = serde_json::json!(values);
    }
    schemars::Schema::try_from(schema).expect("a JSON object is a schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(revision: &str) -> ArtifactStatus {
        ArtifactStatus {
            path: "helmchart/ns/app/app-1.1.0.tgz".into(),
            url: "http://127.0.0.1:9090/helmchart/ns/app/app-1.1.0.tgz".into(),
            revision: revision.into(),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            last_update_time: "2026-01-02T03:04:05Z".into(),
            size: Some(42),
            metadata: None,
        }
    }

    #[test]
    fn artifact_status_round_trips_every_flux_revision_shape() {
        for revision in [
            format!("main@sha1:{}", "b".repeat(40)),
            format!("latest@sha256:{}", "c".repeat(64)),
            format!("sha256:{}", "d".repeat(64)),
            "1.1.0".to_string(),
            "1.0.0+abcdef012345".to_string(),
        ] {
            let s = status(&revision);
            let artifact = s
                .to_artifact()
                .unwrap_or_else(|| panic!("{revision} parses"));
            assert_eq!(ArtifactStatus::from_artifact(&artifact), s, "{revision}");
        }
        let mut broken = status("1.1.0");
        broken.digest = Some("md5:00".into());
        assert!(broken.to_artifact().is_none());
    }

    fn kind_context(retry_interval: Duration) -> (KindContext, tempfile::TempDir) {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let dir = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::new(dir.path()).expect("store");
        let shared = SourceContext {
            client,
            store,
            events: EventRecorder::new(None),
            retry_interval,
            max_retry_delay: MAX_RETRY_DELAY,
        };
        (KindContext::new(Arc::new(shared)), dir)
    }

    #[tokio::test]
    async fn consecutive_failures_back_off_per_object_up_to_15_minutes() {
        let (ctx, _dir) = kind_context(Duration::from_millis(750));
        let delays: Vec<Duration> = (0..5).map(|_| ctx.next_retry("ns", "a")).collect();
        assert_eq!(
            delays,
            [750, 1500, 3000, 6000, 12_000].map(Duration::from_millis)
        );
        // Another object of the kind has its own count.
        assert_eq!(ctx.next_retry("ns", "b"), Duration::from_millis(750));
        assert_eq!(ctx.next_retry("other", "a"), Duration::from_millis(750));
        // Flux's --max-retry-delay bounds it.
        let last = (0..40).map(|_| ctx.next_retry("ns", "a")).last();
        assert_eq!(last, Some(MAX_RETRY_DELAY));
        // A success (or deletion) starts over.
        ctx.reset_retries("ns", "a");
        assert_eq!(ctx.next_retry("ns", "a"), Duration::from_millis(750));
        // A minimum above the maximum is never shortened.
        let (slow, _dir) = kind_context(Duration::from_secs(3600));
        assert_eq!(slow.next_retry("ns", "a"), Duration::from_secs(3600));
        assert_eq!(slow.next_retry("ns", "a"), Duration::from_secs(3600));
    }

    #[test]
    fn unsupported_fields_are_named() {
        assert!(refuse_unsupported(&[("verify", false)]).is_ok());
        let f = refuse_unsupported(&[("verify", true), ("sts", false), ("include", true)])
            .expect_err("refused");
        assert!(f.stalled);
        assert_eq!(f.reason, "UnsupportedField");
        assert_eq!(
            f.message,
            "spec.verify, spec.include are not supported by this controller"
        );
    }

    #[test]
    fn durations_stall_when_invalid() {
        assert_eq!(
            duration("interval", Some("5m0s")).ok().flatten(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(duration("timeout", None).ok().flatten(), None);
        let failure = duration("interval", Some("5 minutes")).expect_err("invalid");
        assert!(failure.stalled);
        assert!(
            failure.message.starts_with("spec.interval:"),
            "{}",
            failure.message
        );
    }
}

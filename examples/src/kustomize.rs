//! Flux's `Kustomization` (`kustomize.toolkit.fluxcd.io/v1`) and its controller: fetch the
//! source's artifact by URL and digest, build it with the Kustomize engine of
//! `gitops-render`, substitute variables, apply with `gitops-apply`, prune what left the set,
//! wait for health, and record the inventory in the status.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gitops_apply::client::client_from_kubeconfig;
use gitops_apply::health_exprs::{HealthCheckExprSpec, HealthCheckExprs};
use gitops_apply::{
    ApplyOptions, DiscoveryCache, Impersonation, Inventory, InventoryEntry, Owner, PruneOptions,
    ReconcileOptions, ResourceManager,
};
use gitops_events::Severity;
use gitops_render::DynamicObject;
use gitops_render::flux::{FluxKustomization, Substitution, clean_relative};
use gitops_source::{Digest, FetchLimits};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Client, CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::EventRecorder;
use crate::meta::{self, Condition};
use crate::source::GitRepository;

pub mod artifacts;

pub use artifacts::{Artifact, ArtifactCache, ArtifactCacheError, Lease};

/// The owner label group of objects a Kustomization applies.
pub const OWNER_GROUP: &str = "kustomize.toolkit.fluxcd.io";
/// The field manager of kustomize-controller.
pub const FIELD_MANAGER: &str = "kustomize-controller";
/// The label or annotation that turns post-build substitution off for one object.
pub const SUBSTITUTE_ANNOTATION: &str = gitops_render::flux::SUBSTITUTE_KEY;

/// `Kustomization.spec`.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kustomize.toolkit.fluxcd.io",
    version = "v1",
    kind = "Kustomization",
    plural = "kustomizations",
    shortname = "ks",
    namespaced,
    status = "KustomizationStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KustomizationSpec {
    /// Kustomizations that must be Ready before this one is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<meta::NamespacedObjectReference>>,
    /// How often to reconcile.
    #[schemars(schema_with = "meta::duration_schema")]
    pub interval: String,
    /// How soon to retry a failed reconcile (default: `interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "meta::duration_schema")]
    pub retry_interval: Option<String>,
    /// A kubeconfig Secret: apply to that cluster instead of the controller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_config: Option<KubeConfigReference>,
    /// The directory inside the artifact (default: the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Variables to substitute after the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_build: Option<PostBuild>,
    /// Delete objects that left the set.
    pub prune: bool,
    /// Objects whose health gates Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<Vec<HealthCheckReference>>,
    /// A name prefix for every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// A name suffix for every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    /// Kustomize patches (strategic merge or JSON 6902), optionally targeted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches: Option<Vec<KustomizePatch>>,
    /// Image overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<KustomizeImage>>,
    /// Kustomize components to include (local paths relative to `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
    /// Skip components whose directory does not exist instead of failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_missing_components: Option<bool>,
    /// Labels and annotations set on every object's metadata after the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_metadata: Option<CommonMetadata>,
    /// The service account (in the Kustomization's namespace) every apply, prune and health
    /// check impersonates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The source of the artifact.
    pub source_ref: CrossNamespaceSourceReference,
    /// Stop reconciling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// The namespace every namespaced object is put in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// The limit of apply, health checks and prune (default: `interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "meta::duration_schema")]
    pub timeout: Option<String>,
    /// Recreate objects whose change hits an immutable field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    /// Wait for every applied object to be ready (replaces `healthChecks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    /// CEL health checks for kinds whose status kstatus cannot judge (Flux's RFC-0009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_exprs: Option<Vec<CustomHealthCheck>>,
}

/// `spec.healthCheckExprs[]`: CEL expressions over the live object deciding the health of
/// every object of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomHealthCheck {
    /// The API version of the kind (only its group is matched).
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// True when the object has reached its desired state.
    pub current: String,
    /// True when the object is still making progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<String>,
    /// True when the object failed to reach its desired state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// A Kustomization's compiled `healthCheckExprs`, with the text they came from (part of the
/// cached resource manager's identity, so that an edit takes effect).
#[derive(Default)]
struct HealthChecks {
    compiled: HealthCheckExprs,
    key: String,
}

impl HealthChecks {
    fn of(spec: &KustomizationSpec) -> Result<Self, Failure> {
        let entries = spec.health_check_exprs.as_deref().unwrap_or_default();
        if entries.is_empty() {
            return Ok(Self::default());
        }
        let specs: Vec<HealthCheckExprSpec> = entries
            .iter()
            .map(|c| HealthCheckExprSpec {
                api_version: c.api_version.clone(),
                kind: c.kind.clone(),
                current: c.current.clone(),
                in_progress: c.in_progress.clone(),
                failed: c.failed.clone(),
            })
            .collect();
        let compiled = HealthCheckExprs::compile(&specs)
            .map_err(|e| Failure::new("InvalidCELExpression", e.to_string()))?;
        Ok(Self {
            compiled,
            key: serde_json::to_string(&specs).unwrap_or_default(),
        })
    }
}

/// `spec.patches[]`: a strategic merge or JSON 6902 patch, optionally targeted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KustomizePatch {
    /// The patch document (YAML or JSON).
    pub patch: String,
    /// Which objects it applies to (default: the objects its own metadata names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PatchSelector>,
}

/// `spec.patches[].target`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchSelector {
    /// API group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (a regex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace (a regex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// An annotation selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<String>,
}

/// `spec.images[]`: kustomize's image override.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeImage {
    /// The image name to match.
    pub name: String,
    /// A new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// A new tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    /// A digest, replacing the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// `spec.commonMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommonMetadata {
    /// Labels added to (or replacing those of) every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to (or replacing those of) every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `spec.kubeConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeConfigReference {
    /// The Secret holding the kubeconfig (`value` or `value.yaml`).
    pub secret_ref: meta::SecretKeyReference,
}

/// `spec.sourceRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceSourceReference {
    /// The source's API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `GitRepository` (`OCIRepository` and `Bucket` are not served by these controllers yet).
    pub kind: String,
    /// The source's name.
    pub name: String,
    /// The source's namespace (default: the Kustomization's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `spec.healthChecks[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckReference {
    /// The object's API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `spec.postBuild`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostBuild {
    /// Variables, winning over `substituteFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substitute: Option<BTreeMap<String, String>>,
    /// ConfigMaps and Secrets whose data are variables, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substitute_from: Option<Vec<SubstituteReference>>,
}

/// `spec.postBuild.substituteFrom[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubstituteReference {
    /// `ConfigMap` or `Secret`.
    pub kind: String,
    /// The object's name (in the Kustomization's namespace).
    pub name: String,
    /// Skip the reference when the object does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// `status.inventory`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceInventory {
    /// One entry per applied object.
    pub entries: Vec<ResourceRef>,
}

/// `status.inventory.entries[]`: Flux's id (`<ns>_<name>_<group>_<kind>`) and version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceRef {
    /// `<namespace>_<name>_<group>_<kind>`.
    pub id: String,
    /// The API version (`v1`).
    pub v: String,
}

/// `Kustomization.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizationStatus {
    /// The last generation reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, Healthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The revision last applied successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The revision last attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The last `reconcile.fluxcd.io/requestedAt` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The objects applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<ResourceInventory>,
}

/// Why a Kustomization reconcile failed at the API level (failures of the pipeline are
/// written to the status instead).
#[derive(Debug, thiserror::Error)]
pub enum KustomizationError {
    /// A Kubernetes API request failed.
    #[error("{what} of Kustomization {namespace}/{name}: {source}")]
    Kube {
        /// What was being done.
        what: &'static str,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Adding or running the finalizer failed.
    #[error("finalizer of Kustomization {namespace}/{name}: {message}")]
    Finalizer {
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// What failed.
        message: String,
    },
}

/// What the Kustomization controller needs.
pub struct KustomizationContext {
    /// The cluster.
    pub client: Client,
    /// The configuration `client` was built from: `serviceAccountName` impersonates on top of
    /// it. Without it, a Kustomization with `serviceAccountName` fails (and says why).
    pub client_config: Option<kube::Config>,
    /// Where events go.
    pub events: EventRecorder,
    /// How long to wait before checking a dependency again (Flux's `--requeue-dependency`).
    pub requeue_dependency: Duration,
    /// Limits of artifact downloads.
    pub fetch_limits: FetchLimits,
    /// The back-off of reconciles that fail at the API level (Flux's `--min-retry-delay` and
    /// `--max-retry-delay`: 750 ms doubling up to 15 min).
    pub retry_backoff: Backoff,
    /// Verified extractions of artifacts, shared by the Kustomizations of a source.
    pub artifacts: ArtifactCache,
    managers: Mutex<Managers>,
    /// Discovery of the controller's cluster, shared by every Kustomization applying there
    /// (as itself or impersonating); a `kubeConfig` cluster gets a cache of its own.
    discovery: Arc<DiscoveryCache>,
    failures: FailureCounts,
}

/// Resource managers by Kustomization (namespace, name), with the identity they act as.
type Managers = HashMap<(String, String), (String, Arc<ResourceManager>)>;

/// An exponential back-off: `min`, doubled per consecutive failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(750),
            max: Duration::from_secs(15 * 60),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(31));
        self.min.saturating_mul(factor).min(self.max)
    }
}

/// Consecutive failures per object (namespace, name), the count [`Backoff::delay`] takes.
#[derive(Debug, Default)]
pub(crate) struct FailureCounts(Mutex<HashMap<(String, String), u32>>);

impl FailureCounts {
    /// Counts one more consecutive failure of `namespace/name` and returns the count.
    pub(crate) fn record(&self, namespace: &str, name: &str) -> u32 {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts
            .entry((namespace.to_string(), name.to_string()))
            .or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets the failures of `namespace/name` (it succeeded, or is gone).
    pub(crate) fn reset(&self, namespace: &str, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_string(), name.to_string()));
    }
}

/// Extracted artifact bytes kept on disk beyond the builds in flight.
const ARTIFACT_CACHE_BYTES: u64 = 1024 * 1024 * 1024;
/// How long an unused artifact extraction is kept.
const ARTIFACT_CACHE_IDLE: Duration = Duration::from_secs(60 * 60);

/// The default key of a kubeConfig Secret, then the one Flux falls back to.
const KUBECONFIG_KEYS: [&str; 2] = ["value", "value.yaml"];

impl KustomizationContext {
    /// A context with Flux's defaults (dependencies checked again after 30 s).
    pub fn new(client: Client, events: EventRecorder) -> Self {
        Self {
            client,
            client_config: None,
            events,
            requeue_dependency: Duration::from_secs(30),
            fetch_limits: FetchLimits::default(),
            retry_backoff: Backoff::default(),
            artifacts: ArtifactCache::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
                ARTIFACT_CACHE_BYTES,
                ARTIFACT_CACHE_IDLE,
            ),
            managers: Mutex::new(HashMap::new()),
            discovery: Arc::new(DiscoveryCache::new()),
            failures: FailureCounts::default(),
        }
    }

    /// The same context, impersonating on top of `config` (the one `client` came from).
    pub fn with_client_config(mut self, config: kube::Config) -> Self {
        self.client_config = Some(config);
        self
    }

    /// The resource manager of a Kustomization: on the controller's cluster as the controller,
    /// or impersonating `serviceAccountName`, or on the cluster of `kubeConfig` (impersonating
    /// the service account there when both are set), as Flux does.
    async fn manager(
        &self,
        ks: &Kustomization,
        checks: &HealthChecks,
    ) -> Result<Arc<ResourceManager>, Failure> {
        let namespace = ks.namespace().unwrap_or_default();
        let name = ks.name_any();
        let impersonation = ks
            .spec
            .service_account_name
            .as_ref()
            .filter(|sa| !sa.is_empty())
            .map(|sa| Impersonation::ServiceAccount {
                namespace: namespace.clone(),
                name: sa.clone(),
            });
        let fail = |m: String| Failure::new("ReconciliationFailed", m);
        // The identity decides whether a cached manager can be reused.
        let (identity, client) = match &ks.spec.kube_config {
            Some(reference) => {
                let (kubeconfig, version) =
                    read_kubeconfig(&self.client, &namespace, &reference.secret_ref).await?;
                let identity = format!(
                    "kubeconfig:{}@{version}:{}{}",
                    reference.secret_ref.name,
                    impersonation
                        .as_ref()
                        .map(Impersonation::user_name)
                        .unwrap_or_default(),
                    checks.key
                );
                if let Some(m) = self.cached(&namespace, &name, &identity) {
                    return Ok(m);
                }
                let client = client_from_kubeconfig(kubeconfig, None, impersonation.as_ref())
                    .await
                    .map_err(|e| fail(format!("failed to build kube client: {e}")))?;
                (identity, client)
            }
            None => match &impersonation {
                None => (format!("controller{}", checks.key), self.client.clone()),
                Some(imp) => {
                    let user = imp.user_name();
                    let identity = format!("{user}{}", checks.key);
                    if let Some(m) = self.cached(&namespace, &name, &identity) {
                        return Ok(m);
                    }
                    let mut config = self.client_config.clone().ok_or_else(|| {
                        fail(format!(
                            "failed to build kube client: impersonating '{user}' needs the controller's client configuration"
                        ))
                    })?;
                    imp.apply_to(&mut config);
                    let client = Client::try_from(config)
                        .map_err(|e| fail(format!("failed to build kube client: {e}")))?;
                    (identity, client)
                }
            },
        };
        if let Some(m) = self.cached(&namespace, &name, &identity) {
            return Ok(m);
        }
        let mut manager = ResourceManager::new(
            client,
            Owner::new(FIELD_MANAGER, OWNER_GROUP, &name, &namespace),
        )
        .with_health_checks(checks.compiled.clone());
        if ks.spec.kube_config.is_none() {
            manager = manager.with_discovery_cache(self.discovery.clone());
        }
        let manager = Arc::new(manager);
        self.managers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace, name), (identity, manager.clone()));
        Ok(manager)
    }

    fn cached(&self, namespace: &str, name: &str, identity: &str) -> Option<Arc<ResourceManager>> {
        let managers = self.managers.lock().unwrap_or_else(|e| e.into_inner());
        managers
            .get(&(namespace.to_string(), name.to_string()))
            .filter(|(id, _)| id == identity)
            .map(|(_, m)| m.clone())
    }

    fn forget(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.managers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        self.failures.reset(namespace, name);
    }

    /// Counts one more consecutive API-level failure and returns the delay before the retry.
    fn next_retry(&self, namespace: &str, name: &str) -> Duration {
        self.retry_backoff
            .delay(self.failures.record(namespace, name))
    }

    fn reset_retries(&self, namespace: &str, name: &str) {
        self.failures.reset(namespace, name);
    }
}

/// Reads the kubeconfig of `spec.kubeConfig.secretRef` (key `key`, else `value`, else
/// `value.yaml`) and the Secret's resource version.
async fn read_kubeconfig(
    client: &Client,
    namespace: &str,
    reference: &meta::SecretKeyReference,
) -> Result<(Kubeconfig, String), Failure> {
    let fail = |m: String| Failure::new("ReconciliationFailed", m);
    let id = format!("{namespace}/{}", reference.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(&reference.name)
        .await
        .map_err(|e| fail(format!("unable to read KubeConfig secret '{id}': {e}")))?
        .ok_or_else(|| {
            fail(format!(
                "unable to read KubeConfig secret '{id}': not found"
            ))
        })?;
    let data = secret.data.unwrap_or_default();
    let keys: Vec<&str> = match reference.key.as_deref() {
        Some(key) if !key.is_empty() => vec![key],
        _ => KUBECONFIG_KEYS.to_vec(),
    };
    let bytes = keys.iter().find_map(|k| data.get(*k)).ok_or_else(|| {
        fail(format!(
            "KubeConfig secret '{id}' does not contain a '{}' key with a kubeconfig",
            keys.join("' or '")
        ))
    })?;
    let text = std::str::from_utf8(&bytes.0).map_err(|_| {
        fail(format!(
            "KubeConfig secret '{id}': the kubeconfig is not UTF-8"
        ))
    })?;
    // The parse error names the position only, never the (secret) content.
    let kubeconfig =
        Kubeconfig::from_yaml(text).map_err(|e| fail(format!("KubeConfig secret '{id}': {e}")))?;
    Ok((
        kubeconfig,
        secret.metadata.resource_version.unwrap_or_default(),
    ))
}

/// kubectl's client-side apply annotation (a full copy of the object).
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

const RECONCILIATION_SUCCEEDED: &str = "ReconciliationSucceeded";

/// Runs the Kustomization controller; a change of a GitRepository's artifact triggers the
/// Kustomizations that use it.
pub async fn run(
    ctx: Arc<KustomizationContext>,
    api: Api<Kustomization>,
    sources: Api<GitRepository>,
    config: watcher::Config,
    concurrency: u16,
) {
    // As Flux's predicates: a Kustomization is reconciled when its spec (generation), its
    // `reconcile.fluxcd.io/requestedAt`, its finalizers or its deletion change, not when the
    // controller's own status write comes back through the watch.
    let (reader, writer) = reflector::store();
    // The store keeps every Kustomization: without managedFields and kubectl's last-applied
    // annotation (as Flux's cache transforms), which the reconcile never reads.
    let trigger = watcher(api, config)
        .default_backoff()
        .modify(|ks: &mut Kustomization| {
            ks.metadata.managed_fields = None;
            if let Some(annotations) = ks.metadata.annotations.as_mut() {
                annotations.remove(LAST_APPLIED_ANNOTATION);
            }
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(reconcile_trigger, PredicateConfig::default());
    let controller = Controller::for_stream(trigger, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let store = controller.store();
    // A source triggers its Kustomizations when its artifact revision changes (Flux's
    // SourceRevisionChangePredicate), not on every status write.
    let revisions: Mutex<HashMap<(String, String), Option<String>>> = Mutex::new(HashMap::new());
    controller
        .watches(
            sources,
            watcher::Config::default(),
            move |repo: GitRepository| {
                let namespace = repo.namespace().unwrap_or_default();
                let name = repo.name_any();
                let revision = repo
                    .status
                    .as_ref()
                    .and_then(|s| s.artifact.as_ref())
                    .map(|a| a.revision.clone());
                let previous = revisions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((namespace.clone(), name.clone()), revision.clone());
                if previous == Some(revision) {
                    return Vec::new();
                }
                store
                    .state()
                    .into_iter()
                    .filter(|k| {
                        let src = &k.spec.source_ref;
                        src.kind == "GitRepository"
                            && src.name == name
                            && src
                                .namespace
                                .clone()
                                .or_else(|| k.namespace())
                                .is_some_and(|ns| ns == namespace)
                    })
                    .map(|k| ObjectRef::from_obj(&*k))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "Kustomization reconcile");
            }
        })
        .await;
}

/// What makes a Kustomization worth reconciling again: generation, requestedAt, finalizers,
/// deletion.
fn reconcile_trigger(ks: &Kustomization) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    ks.metadata.generation.hash(&mut hasher);
    ks.annotations()
        .get(meta::RECONCILE_REQUEST_ANNOTATION)
        .hash(&mut hasher);
    ks.metadata.finalizers.hash(&mut hasher);
    ks.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

/// A reconcile that failed at the API level is retried with Flux's exponential back-off.
fn error_policy(
    ks: Arc<Kustomization>,
    error: &KustomizationError,
    ctx: Arc<KustomizationContext>,
) -> Action {
    let delay = ctx.next_retry(&ks.namespace().unwrap_or_default(), &ks.name_any());
    tracing::debug!(%error, ?delay, "Kustomization reconcile failed, retrying");
    Action::requeue(delay)
}

/// Why the pipeline failed, as written to `Ready=False`.
struct Failure {
    reason: &'static str,
    message: String,
    /// The source is not there yet: no event, check again after the dependency delay (as Flux).
    source_not_ready: bool,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            source_not_ready: false,
        }
    }

    fn source_not_ready(message: impl Into<String>) -> Self {
        Self {
            source_not_ready: true,
            ..Self::new("ArtifactFailed", message)
        }
    }
}

async fn patch_status(
    api: &Api<Kustomization>,
    ks: &Kustomization,
    status: &KustomizationStatus,
) -> Result<(), KustomizationError> {
    meta::write_status(api, "Kustomization", ks, status, &status.conditions)
        .await
        .map_err(|source| KustomizationError::Kube {
            what: "writing the status",
            namespace: ks.namespace().unwrap_or_default(),
            name: ks.name_any(),
            source,
        })
}

/// One reconcile of a Kustomization, measured (`gotk_reconcile_duration_seconds`,
/// `gotk_suspend_status`).
pub async fn reconcile(
    ks: Arc<Kustomization>,
    ctx: Arc<KustomizationContext>,
) -> Result<Action, KustomizationError> {
    let namespace = ks.namespace().unwrap_or_default();
    let name = ks.name_any();
    let suspended = ks.spec.suspend == Some(true);
    let result = crate::metrics::measure(
        "Kustomization",
        &namespace,
        &name,
        suspended,
        reconcile_once(ks, ctx.clone()),
    )
    .await;
    if result.is_ok() {
        ctx.reset_retries(&namespace, &name);
    }
    result
}

/// Flux's finalizer: a deleted Kustomization with `prune` deletes what it applied.
pub const FINALIZER: &str = "finalizers.fluxcd.io";

async fn reconcile_once(
    ks: Arc<Kustomization>,
    ctx: Arc<KustomizationContext>,
) -> Result<Action, KustomizationError> {
    let namespace = ks.namespace().unwrap_or_default();
    let api: Api<Kustomization> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = ks.name_any();
    let finalizers = ks.metadata.finalizers.clone().unwrap_or_default();
    let has = finalizers.iter().any(|f| f == FINALIZER);
    let kube_err = |what: &'static str| {
        let (namespace, name) = (namespace.clone(), name.clone());
        move |source| KustomizationError::Kube {
            what,
            namespace,
            name,
            source,
        }
    };
    if ks.metadata.deletion_timestamp.is_some() {
        if !has {
            return Ok(Action::await_change());
        }
        let action = cleanup(ks.clone(), ctx.clone()).await?;
        let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
        // resourceVersion makes the patch fail rather than drop a finalizer added meanwhile.
        let patch = serde_json::json!({"metadata": {
            "finalizers": rest,
            "resourceVersion": ks.metadata.resource_version,
        }});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err("removing the finalizer"))?;
        return Ok(action);
    }
    if !has {
        let mut with = finalizers.clone();
        with.push(FINALIZER.to_string());
        let patch = serde_json::json!({"metadata": {
            "finalizers": with,
            "resourceVersion": ks.metadata.resource_version,
        }});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err("adding the finalizer"))?;
        // The update triggers the next reconcile.
        return Ok(Action::await_change());
    }
    reconcile_apply(ks, ctx).await
}

/// On deletion: prune the inventory (when `prune` is on and the object is not suspended),
/// then let the object go.
async fn cleanup(
    ks: Arc<Kustomization>,
    ctx: Arc<KustomizationContext>,
) -> Result<Action, KustomizationError> {
    let namespace = ks.namespace().unwrap_or_default();
    let name = ks.name_any();
    if ks.spec.prune && ks.spec.suspend != Some(true) {
        let inventory = Inventory {
            entries: ks
                .status
                .as_ref()
                .and_then(|s| s.inventory.as_ref())
                .map(|inv| {
                    inv.entries
                        .iter()
                        .map(|e| InventoryEntry {
                            id: e.id.clone(),
                            v: e.v.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        let objects = inventory.objects().unwrap_or_default();
        let manager = match ctx.manager(&ks, &HealthChecks::default()).await {
            Ok(manager) => manager,
            Err(failure) => {
                // As Flux: without a client the objects cannot be pruned; say so and let the
                // Kustomization go rather than block its deletion forever.
                ctx.events.record(
                    &*ks,
                    Severity::Error,
                    "PruneFailed",
                    &format!("unable to prune objects: {}", failure.message),
                    None,
                );
                ctx.forget(&namespace, &name);
                return Ok(Action::await_change());
            }
        };
        match manager.prune(&objects, &PruneOptions::default()).await {
            Ok(pruned) => {
                let log = pruned.change_log();
                if !log.is_empty() {
                    ctx.events
                        .record(&*ks, Severity::Info, "Pruned", log.trim_end(), None);
                }
            }
            Err(error) => {
                // Keep the finalizer: the next attempt retries what is left.
                ctx.events.record(
                    &*ks,
                    Severity::Error,
                    "PruneFailed",
                    &error.to_string(),
                    None,
                );
                return Err(KustomizationError::Finalizer {
                    namespace,
                    name,
                    message: format!("pruning the inventory: {error}"),
                });
            }
        }
    }
    ctx.forget(&namespace, &name);
    Ok(Action::await_change())
}

async fn reconcile_apply(
    ks: Arc<Kustomization>,
    ctx: Arc<KustomizationContext>,
) -> Result<Action, KustomizationError> {
    if ks.spec.suspend == Some(true) {
        return Ok(Action::await_change());
    }
    let namespace = ks.namespace().unwrap_or_default();
    let api: Api<Kustomization> = Api::namespaced(ctx.client.clone(), &namespace);
    let generation = ks.metadata.generation;
    let interval = meta::parse_duration(&ks.spec.interval).unwrap_or(Duration::from_secs(600));
    let retry = ks
        .spec
        .retry_interval
        .as_deref()
        .and_then(|t| meta::parse_duration(t).ok())
        .unwrap_or(interval);
    let mut status = ks.status.clone().unwrap_or_default();
    if let Some(requested) = ks.annotations().get(meta::RECONCILE_REQUEST_ANNOTATION) {
        status.last_handled_reconcile_at = Some(requested.clone());
    }

    // Dependencies first: nothing is fetched while one is not Ready.
    if let Some(not_ready) = first_unready_dependency(&ctx.client, &ks).await {
        let message = format!("dependency '{not_ready}' is not ready");
        meta::set_condition(
            &mut status.conditions,
            meta::READY,
            false,
            "DependencyNotReady",
            &message,
            generation,
        );
        patch_status(&api, &ks, &status).await?;
        ctx.events
            .record(&*ks, Severity::Info, "DependencyNotReady", &message, None);
        return Ok(Action::requeue(ctx.requeue_dependency));
    }

    let started = Instant::now();
    let outcome = run_pipeline(&ks, &ctx, &mut status).await;
    status.observed_generation = generation;
    let action = match outcome {
        Ok((revision, change_log, checked)) => {
            let message = format!("Applied revision: {revision}");
            meta::set_condition(
                &mut status.conditions,
                meta::READY,
                true,
                RECONCILIATION_SUCCEEDED,
                &message,
                generation,
            );
            if checked {
                let health = format!("Health check passed in {:.1?}", started.elapsed());
                meta::set_condition(
                    &mut status.conditions,
                    meta::HEALTHY,
                    true,
                    "Succeeded",
                    &health,
                    generation,
                );
            }
            meta::remove_condition(&mut status.conditions, meta::RECONCILING);
            meta::remove_condition(&mut status.conditions, meta::STALLED);
            status.last_applied_revision = Some(revision.clone());
            patch_status(&api, &ks, &status).await?;
            if !change_log.is_empty() {
                ctx.events.record(
                    &*ks,
                    Severity::Info,
                    RECONCILIATION_SUCCEEDED,
                    change_log.trim_end(),
                    Some(&revision),
                );
            }
            Action::requeue(interval)
        }
        Err(failure) => {
            meta::set_condition(
                &mut status.conditions,
                meta::READY,
                false,
                failure.reason,
                &failure.message,
                generation,
            );
            if failure.reason == "HealthCheckFailed" {
                meta::set_condition(
                    &mut status.conditions,
                    meta::HEALTHY,
                    false,
                    "HealthCheckFailed",
                    &failure.message,
                    generation,
                );
            }
            patch_status(&api, &ks, &status).await?;
            if failure.source_not_ready {
                // As Flux: no event, retry at retryInterval (the source's watch triggers sooner
                // when its artifact appears).
                return Ok(Action::requeue(retry));
            }
            ctx.events.record(
                &*ks,
                Severity::Error,
                failure.reason,
                &failure.message,
                status.last_attempted_revision.as_deref(),
            );
            Action::requeue(retry)
        }
    };
    Ok(action)
}

/// The first dependency that is not Ready for its current generation, as `namespace/name`.
async fn first_unready_dependency(client: &Client, ks: &Kustomization) -> Option<String> {
    let own_ns = ks.namespace().unwrap_or_default();
    for dep in ks.spec.depends_on.iter().flatten() {
        let ns = dep.namespace.clone().unwrap_or_else(|| own_ns.clone());
        let api: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
        let ready = match api.get_opt(&dep.name).await {
            Ok(Some(other)) => other.status.as_ref().is_some_and(|s| {
                meta::is_ready(&s.conditions, other.metadata.generation)
                    && s.observed_generation == other.metadata.generation
            }),
            _ => false,
        };
        if !ready {
            return Some(format!("{ns}/{}", dep.name));
        }
    }
    None
}

/// Fetch, build, substitute, apply, prune, wait. Returns the revision, the change log and
/// whether health was checked.
async fn run_pipeline(
    ks: &Kustomization,
    ctx: &KustomizationContext,
    status: &mut KustomizationStatus,
) -> Result<(String, String, bool), Failure> {
    let namespace = ks.namespace().unwrap_or_default();
    let spec = &ks.spec;
    if spec.source_ref.kind != "GitRepository" {
        return Err(Failure::new(
            "ArtifactFailed",
            format!(
                "source kind '{}' is not supported (GitRepository is)",
                spec.source_ref.kind
            ),
        ));
    }
    let source_ns = spec
        .source_ref
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.clone());
    let source_id = format!("GitRepository/{source_ns}/{}", spec.source_ref.name);
    let repos: Api<GitRepository> = Api::namespaced(ctx.client.clone(), &source_ns);
    let repo = match repos.get_opt(&spec.source_ref.name).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(Failure::source_not_ready(format!(
                "Source '{source_id}' not found"
            )));
        }
        Err(e) => {
            return Err(Failure::new(
                "ArtifactFailed",
                format!("reading Source '{source_id}': {e}"),
            ));
        }
    };
    let Some(artifact) = repo.status.as_ref().and_then(|s| s.artifact.clone()) else {
        return Err(Failure::source_not_ready(format!(
            "Source '{source_id}' is not ready, artifact not found"
        )));
    };
    let revision = artifact.revision.clone();
    status.last_attempted_revision = Some(revision.clone());

    // Fetch and verify.
    let url = url::Url::parse(&artifact.url).map_err(|e| {
        Failure::new(
            "ArtifactFailed",
            format!("artifact URL '{}': {e}", artifact.url),
        )
    })?;
    let digest: Digest = artifact
        .digest
        .as_deref()
        .ok_or_else(|| {
            Failure::new(
                "ArtifactFailed",
                format!("Source '{source_id}' artifact has no digest"),
            )
        })?
        .parse()
        .map_err(|e| Failure::new("ArtifactFailed", format!("artifact digest: {e}")))?;
    // One verified extraction per artifact digest, shared by the source's Kustomizations.
    let artifact = ctx
        .artifacts
        .fetch(&source_id, &url, &digest, ctx.fetch_limits)
        .await
        .map_err(|e| Failure::new("ArtifactFailed", e.to_string()))?;

    // Variables first (they live in the cluster), then build off the async threads: rendering
    // big trees is CPU work.
    let rel = clean_relative(Path::new(spec.path.as_deref().unwrap_or("./"))).ok_or_else(|| {
        Failure::new(
            "BuildFailed",
            format!(
                "path '{}' leaves the artifact",
                spec.path.clone().unwrap_or_default()
            ),
        )
    })?;
    let vars = match &spec.post_build {
        Some(post_build) => Some(substitution_vars(&ctx.client, &namespace, post_build).await?),
        None => None,
    };
    // This build's private working copy (Flux's build writes into the tree).
    let mut lease = artifact
        .lease()
        .await
        .map_err(|e| Failure::new("ArtifactFailed", e.to_string()))?;
    let spec_for_build = spec.clone();
    let (objects, lease) = tokio::task::spawn_blocking(move || {
        let before = lease.snapshot(&rel);
        let built = build(lease.root(), &rel, &spec_for_build, vars);
        lease.restore(&rel, &before);
        (built, lease)
    })
    .await
    .map_err(|e| Failure::new("BuildFailed", format!("build task: {e}")))?;
    // The copy goes back to the pool before the (long) apply.
    drop(lease);
    let objects = objects?;

    // Apply, prune, wait.
    let manager = ctx.manager(ks, &HealthChecks::of(&ks.spec)?).await?;
    let previous = Inventory {
        entries: status
            .inventory
            .as_ref()
            .map(|inv| {
                inv.entries
                    .iter()
                    .map(|e| InventoryEntry {
                        id: e.id.clone(),
                        v: e.v.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    let interval = meta::parse_duration(&spec.interval).unwrap_or(Duration::from_secs(600));
    let timeout = spec
        .timeout
        .as_deref()
        .and_then(|t| meta::parse_duration(t).ok())
        .unwrap_or(interval);
    let wait_all = spec.wait == Some(true);
    let opts = ReconcileOptions {
        apply: ApplyOptions {
            force: spec.force == Some(true),
            wait_timeout: timeout,
            ..ApplyOptions::default()
        },
        prune: spec.prune.then(|| PruneOptions {
            timeout,
            ..PruneOptions::default()
        }),
        wait: wait_all.then_some(timeout),
    };
    let done = match manager.reconcile(&objects, &previous, &opts).await {
        Ok(done) => done,
        Err(failed) => {
            status.inventory = Some(inventory_status(&failed.inventory));
            let reason = if matches!(failed.error.failure, gitops_apply::ApplyFailure::Wait(_)) {
                "HealthCheckFailed"
            } else {
                "ReconciliationFailed"
            };
            return Err(Failure::new(reason, failed.error.to_string()));
        }
    };
    status.inventory = Some(inventory_status(&done.inventory));
    let mut checked = wait_all;
    if !wait_all {
        let checks: Vec<DynamicObject> = spec
            .health_checks
            .iter()
            .flatten()
            .map(|h| health_check_object(h, &namespace))
            .collect();
        if !checks.is_empty() {
            checked = true;
            manager
                .wait(&checks, timeout)
                .await
                .map_err(|e| Failure::new("HealthCheckFailed", e.to_string()))?;
        }
    }
    Ok((revision, done.change_set.change_log(), checked))
}

fn inventory_status(inventory: &Inventory) -> ResourceInventory {
    ResourceInventory {
        entries: inventory
            .entries
            .iter()
            .map(|e| ResourceRef {
                id: e.id.clone(),
                v: e.v.clone(),
            })
            .collect(),
    }
}

fn health_check_object(h: &HealthCheckReference, default_ns: &str) -> DynamicObject {
    let mut object = DynamicObject {
        types: Some(kube::api::TypeMeta {
            api_version: h.api_version.clone().unwrap_or_else(|| "v1".to_string()),
            kind: h.kind.clone(),
        }),
        metadata: Default::default(),
        data: serde_json::Value::Object(Default::default()),
    };
    object.metadata.name = Some(h.name.clone());
    object.metadata.namespace = Some(
        h.namespace
            .clone()
            .unwrap_or_else(|| default_ns.to_string()),
    );
    object
}

/// Builds `rel` inside `root` with gitops-render's Flux layer: the generated kustomization for
/// a plain directory, the spec's overrides, a build confined to the artifact root, post-build
/// substitution when `postBuild` is set, then `commonMetadata`.
fn build(
    root: &Path,
    rel: &Path,
    spec: &KustomizationSpec,
    vars: Option<BTreeMap<String, String>>,
) -> Result<Vec<DynamicObject>, Failure> {
    let fail = |m: String| Failure::new("BuildFailed", m);
    // The Flux layer reads the spec with Flux's own field names.
    let flux: FluxKustomization = serde_json::to_value(spec)
        .and_then(serde_json::from_value)
        .map_err(|e| fail(format!("reading the spec: {e}")))?;
    let substitution = vars.map(|vars| Substitution {
        vars,
        strict: false,
    });
    let built = flux
        .build_with(root, rel, substitution.as_ref())
        .map_err(|e| fail(e.to_string()))?;
    built
        .resources
        .iter()
        .map(|r| {
            serde_json::from_value::<DynamicObject>(r.value.to_json()).map_err(|e| {
                fail(format!(
                    "{}/{}: not a Kubernetes object: {e}",
                    r.kind(),
                    r.name()
                ))
            })
        })
        .collect()
}

/// The variables of `postBuild`: `substituteFrom` in order, then `substitute` on top.
async fn substitution_vars(
    client: &Client,
    namespace: &str,
    post_build: &PostBuild,
) -> Result<BTreeMap<String, String>, Failure> {
    let mut vars = BTreeMap::new();
    for reference in post_build.substitute_from.iter().flatten() {
        let optional = reference.optional == Some(true);
        let missing = |kind: &str| {
            Failure::new(
                "BuildFailed",
                format!(
                    "substitute from '{kind}/{namespace}/{}' failed: not found",
                    reference.name
                ),
            )
        };
        match reference.kind.as_str() {
            "ConfigMap" => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                match api.get_opt(&reference.name).await {
                    Ok(Some(cm)) => vars.extend(cm.data.unwrap_or_default()),
                    Ok(None) if optional => {}
                    Ok(None) => return Err(missing("ConfigMap")),
                    Err(e) => {
                        return Err(Failure::new(
                            "BuildFailed",
                            format!("reading ConfigMap '{namespace}/{}': {e}", reference.name),
                        ));
                    }
                }
            }
            "Secret" => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                match api.get_opt(&reference.name).await {
                    Ok(Some(secret)) => {
                        for (k, v) in secret.data.unwrap_or_default() {
                            vars.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                        }
                        vars.extend(secret.string_data.unwrap_or_default());
                    }
                    Ok(None) if optional => {}
                    Ok(None) => return Err(missing("Secret")),
                    Err(e) => {
                        return Err(Failure::new(
                            "BuildFailed",
                            format!("reading Secret '{namespace}/{}': {e}", reference.name),
                        ));
                    }
                }
            }
            other => {
                return Err(Failure::new(
                    "BuildFailed",
                    format!("substituteFrom kind '{other}' is not ConfigMap or Secret"),
                ));
            }
        }
    }
    vars.extend(post_build.substitute.clone().unwrap_or_default());
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_doubles_from_750ms_up_to_15_minutes() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_millis(750));
        assert_eq!(b.delay(2), Duration::from_millis(1500));
        assert_eq!(b.delay(5), Duration::from_millis(12_000));
        assert_eq!(b.delay(11), Duration::from_millis(768_000));
        assert_eq!(b.delay(12), Duration::from_secs(900));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(900));
    }

    #[tokio::test]
    async fn consecutive_failures_back_off_per_object_and_a_success_resets() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let mut ctx = KustomizationContext::new(client, EventRecorder::new(None));
        ctx.retry_backoff = Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(4),
        };
        let delays: Vec<Duration> = (0..4).map(|_| ctx.next_retry("ns", "a")).collect();
        assert_eq!(delays, [1, 2, 4, 4].map(Duration::from_secs));
        // Another object has its own count.
        assert_eq!(ctx.next_retry("ns", "b"), Duration::from_secs(1));
        ctx.reset_retries("ns", "a");
        assert_eq!(ctx.next_retry("ns", "a"), Duration::from_secs(1));
    }
}

//! `ResourceManager`: staged server-side apply, drift detection, takeover, prune and wait on a
//! `kube::Client`.

// Failures carry the object they are about; they are the cold path, so their size is fine.
#![allow(clippy::result_large_err)]

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, stream};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    core::{ApiResource, DynamicObject, GroupVersion},
    discovery::{self, Scope},
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    changeset::{Action, ChangeSet},
    diff::{DiffError, unified_diff},
    error::{ApplyError, ApplyFailure, WaitError, is_immutable_error},
    health::Health,
    health_exprs::HealthCheckExprs,
    inventory::Inventory,
    normalize::{has_drifted, normalize, sorted_keys},
    object::{ObjectRef, split_api_version},
    options::{
        ApplyOptions, DeletionPolicy, LAST_APPLIED_ANNOTATION, Owner, PruneOptions, SsaPolicy,
        force_enabled, prune_disabled, reconcile_disabled,
    },
    sort::{self, Stage},
    wait::{WaitMode, Waiter},
};

/// Field managers whose fields are rewritten to ours before applying (Flux's defaults):
/// `kubectl` (prefix: `kubectl`, `kubectl-client-side-apply`, `kubectl-edit`, ...) for both
/// Apply and Update, and `before-first-apply` for Update.
const TAKEOVER_PREFIXES: &[&str] = &["kubectl"];
const TAKEOVER_UPDATE_MANAGERS: &[&str] = &["before-first-apply"];

/// A kind the cluster serves: its resource and whether it is namespaced.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub(crate) resource: ApiResource,
    pub(crate) namespaced: bool,
}

/// What we last knew about an object we applied or found in sync: digests of the desired
/// object and of the live object at that moment. Used for the no-op fast path.
///
/// A controller keeps one per object it manages (20,000 for 1,000 Kustomizations of 20), so
/// it is compact: the first 128 bits of each SHA-256 digest (a false match needs a 128-bit
/// collision), keyed by [`RecordKey`] rather than by the object's four strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    desired: [u8; 16],
    live: [u8; 16],
}

impl Record {
    fn new(desired: &[u8; 32], live: &[u8; 32]) -> Self {
        Self {
            desired: half(desired),
            live: half(live),
        }
    }
}

/// The first 128 bits of a SHA-256 digest.
fn half(digest: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// An object's identity in the records: the first 128 bits of the SHA-256 of its group, kind,
/// namespace and name (each length-prefixed, so no two identities share an encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct RecordKey([u8; 16]);

impl RecordKey {
    fn of(oref: &ObjectRef) -> Self {
        let mut hasher = Sha256::new();
        for part in [&oref.group, &oref.kind, &oref.namespace, &oref.name] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        Self(half(&hasher.finalize().into()))
    }
}

/// Discovery results (kinds by API group and version) that several [`ResourceManager`]s of
/// one cluster can share, so that a controller with many owners keeps one copy and asks the
/// API server once per group-version instead of once per owner. Give each cluster its own.
#[derive(Debug, Default)]
pub struct DiscoveryCache {
    kinds: tokio::sync::Mutex<HashMap<(String, String), Arc<KindsOf>>>,
}

/// The kinds one group-version serves, by kind.
type KindsOf = HashMap<String, Resolved>;

impl DiscoveryCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

/// One object of the set, prepared for applying.
#[derive(Clone, Debug)]
struct Desired {
    object: DynamicObject,
    oref: ObjectRef,
    api_version: String,
    version: String,
    digest: [u8; 32],
    resolved: Option<Resolved>,
}

/// What the per-object phase decided.
#[derive(Debug)]
enum Plan {
    Skip,
    Unchanged { live: [u8; 32] },
    Apply { create: bool },
    Recreate,
}

/// The drift of one object, as [`ResourceManager::diff`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectDiff {
    /// The object.
    pub object: ObjectRef,
    /// What an apply would do: `Created`, `Configured`, `Unchanged` or `Skipped`.
    pub action: Action,
    /// The unified YAML diff (empty when unchanged or skipped), Secret values masked.
    pub diff: String,
}

/// The outcome of [`ResourceManager::reconcile`].
#[derive(Clone, Debug, Default)]
pub struct Reconciled {
    /// What apply and prune did.
    pub change_set: ChangeSet,
    /// The inventory to record: everything the set holds.
    pub inventory: Inventory,
}

/// A reconcile that failed: the error (with its partial change set) and the inventory to
/// record, which never loses an entry of the previous inventory that was not deleted.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ReconcileError {
    /// What failed (displayed as this error, so not repeated as its source).
    pub error: ApplyError,
    /// The inventory to record: the previous one plus whatever was applied before the failure.
    pub inventory: Inventory,
}

/// Options of [`ResourceManager::reconcile`].
#[derive(Clone, Debug, Default)]
pub struct ReconcileOptions {
    /// How to apply.
    pub apply: ApplyOptions,
    /// Prune what left the set (`None`: keep it).
    pub prune: Option<PruneOptions>,
    /// Wait until every applied object is Current, with this timeout (`None`: do not wait).
    pub wait: Option<Duration>,
}

/// Applies sets of objects to one cluster as one owner (see the crate docs).
pub struct ResourceManager {
    client: Client,
    owner: Owner,
    concurrency: usize,
    health_checks: HealthCheckExprs,
    discovery: Arc<DiscoveryCache>,
    records: Mutex<HashMap<RecordKey, Record>>,
}

impl std::fmt::Debug for ResourceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceManager")
            .field("owner", &self.owner)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn to_value(obj: &DynamicObject, oref: &ObjectRef) -> Result<Value, ApplyFailure> {
    serde_json::to_value(obj).map_err(|source| ApplyFailure::Encode {
        object: oref.clone(),
        source,
    })
}

/// The digest of a live object as far as apply is concerned: its normalised content (no
/// status, no server metadata), whether it is being deleted, and who owns which fields
/// (manager, operation, subresource, fields; not the timestamps). Status-subresource entries
/// are left out: status writes do not change what an apply would do.
fn live_fingerprint(live: &Value) -> [u8; 32] {
    let managers: Vec<Value> = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            let mut list: Vec<Value> = entries
                .iter()
                .filter(|e| e.get("subresource").and_then(Value::as_str) != Some("status"))
                .map(|e| {
                    serde_json::json!([
                        e.get("manager"),
                        e.get("operation"),
                        e.get("subresource"),
                        e.get("apiVersion"),
                        e.get("fieldsV1"),
                    ])
                })
                .collect();
            list.sort_by_key(|v| sorted_keys(v).to_string());
            list
        })
        .unwrap_or_default();
    let deleting = live.pointer("/metadata/deletionTimestamp").is_some();
    let doc =
        serde_json::json!({"content": normalize(live), "managers": managers, "deleting": deleting});
    sha(sorted_keys(&doc).to_string().as_bytes())
}

/// List and watch items come without `apiVersion` and `kind`; put them back, so that the
/// object reads the same as one from a GET or an apply.
pub(crate) fn with_type_meta(mut obj: DynamicObject, resource: &ApiResource) -> DynamicObject {
    if obj.types.as_ref().is_none_or(|t| t.kind.is_empty()) {
        obj.types = Some(kube::core::TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
    }
    obj
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// Deep-merges two `fieldsV1` trees.
fn merge_fields(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge_fields(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (into, from) if into.is_null() => *into = from.clone(),
        _ => {}
    }
}

/// The JSON patch that hands the fields of `kubectl`, `before-first-apply` and the override
/// managers (and our own old Update entries) to our manager as an Apply entry, and removes
/// the last-applied annotation. `None` when there is nothing to take over.
pub(crate) fn takeover_patch(
    live: &Value,
    field_manager: &str,
    override_managers: &[String],
) -> Option<json_patch::Patch> {
    let entries = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let taken = |e: &Value| {
        let manager = e.get("manager").and_then(Value::as_str).unwrap_or_default();
        let op = e
            .get("operation")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let sub = e
            .get("subresource")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if sub == "status" {
            return false;
        }
        (TAKEOVER_PREFIXES.iter().any(|p| manager.starts_with(p))
            && (op == "Apply" || op == "Update"))
            || (TAKEOVER_UPDATE_MANAGERS.contains(&manager) && op == "Update")
            || (manager == field_manager && op == "Update")
            || override_managers.iter().any(|m| m == manager)
    };
    let has_last_applied = live
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(LAST_APPLIED_ANNOTATION));
    let any_taken = entries.iter().any(taken);
    if !any_taken && !has_last_applied {
        return None;
    }
    let mut ops = vec![serde_json::json!({
        "op": "test", "path": "/metadata/resourceVersion",
        "value": live.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)
    })];
    if any_taken {
        let mut kept: Vec<Value> = Vec::new();
        let mut merged: Option<Value> = None;
        let mut api_version: Option<Value> = None;
        let mut time: Option<Value> = None;
        for e in &entries {
            let ours = e.get("manager").and_then(Value::as_str) == Some(field_manager)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
                && e.get("subresource")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty();
            if taken(e) || ours {
                let fields = e
                    .get("fieldsV1")
                    .cloned()
                    .unwrap_or(Value::Object(Default::default()));
                match &mut merged {
                    Some(m) => merge_fields(m, &fields),
                    None => merged = Some(fields),
                }
                if ours || api_version.is_none() {
                    api_version = e.get("apiVersion").cloned();
                }
                // The newest timestamp of the merged entries (RFC 3339 strings order by time).
                if let Some(t) = e.get("time").filter(|t| t.is_string())
                    && time.as_ref().is_none_or(|cur| cur.as_str() < t.as_str())
                {
                    time = Some(t.clone());
                }
            } else {
                kept.push(e.clone());
            }
        }
        let mut entry = serde_json::json!({
            "manager": field_manager,
            "operation": "Apply",
            "apiVersion": api_version.unwrap_or(Value::Null),
            "fieldsType": "FieldsV1",
            "fieldsV1": merged.unwrap_or(Value::Object(Default::default())),
        });
        if let (Some(t), Some(map)) = (time, entry.as_object_mut()) {
            map.insert("time".into(), t);
        }
        kept.push(entry);
        ops.push(
            serde_json::json!({"op": "replace", "path": "/metadata/managedFields", "value": kept}),
        );
    }
    if has_last_applied {
        ops.push(serde_json::json!({
            "op": "remove",
            "path": format!("/metadata/annotations/{}", LAST_APPLIED_ANNOTATION.replace('~', "~0").replace('/', "~1")),
        }));
    }
    serde_json::from_value(Value::Array(ops)).ok()
}

impl ResourceManager {
    /// A manager applying as `owner` through `client` (4 objects dry-run concurrently).
    pub fn new(client: Client, owner: Owner) -> Self {
        Self {
            client,
            owner,
            concurrency: 4,
            health_checks: HealthCheckExprs::default(),
            discovery: Arc::new(DiscoveryCache::new()),
            records: Mutex::new(HashMap::new()),
        }
    }

    /// Sets how many objects are read and dry-run concurrently (at least 1). Real applies
    /// stay sequential, in Flux's order.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Uses these CEL health checks (Flux's `healthCheckExprs`) instead of kstatus for the
    /// kinds they name, in every wait.
    pub fn with_health_checks(mut self, checks: HealthCheckExprs) -> Self {
        self.health_checks = checks;
        self
    }

    /// An object's health: by a CEL health check for its kind when one was given, else by
    /// kstatus ([`crate::health::compute`]).
    pub fn health(&self, obj: &Value) -> Health {
        self.health_checks
            .health(obj)
            .unwrap_or_else(|| crate::health::compute(obj))
    }

    /// Shares `cache` with other managers of the same cluster (instead of a cache of its
    /// own).
    pub fn with_discovery_cache(mut self, cache: Arc<DiscoveryCache>) -> Self {
        self.discovery = cache;
        self
    }

    /// The owner identity.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Forgets what the no-op fast path knows, so the next apply dry-runs every object.
    pub fn forget_applied_state(&self) {
        self.records_lock().clear();
    }

    fn records_lock(&self) -> std::sync::MutexGuard<'_, HashMap<RecordKey, Record>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts).
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves a kind through the discovery cache (one request per group-version, cached;
    /// kinds not found are not cached, so a CRD applied later is found on the next lookup).
    pub(crate) async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<Resolved>, kube::Error> {
        let (group, version) = split_api_version(api_version);
        let key = (group.to_string(), version.to_string());
        let cached = self.discovery.kinds.lock().await.get(&key).cloned();
        if let Some(r) = cached.as_ref().and_then(|kinds| kinds.get(kind)) {
            return Ok(Some(r.clone()));
        }
        // The lock is not held across the request: another manager may fetch the same group
        // at the same time, and the later insert wins with equal content.
        let gv = GroupVersion::gv(group, version);
        let api_group = match discovery::pinned_group(&self.client, &gv).await {
            Ok(g) => g,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(kube::Error::Discovery(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let kinds: HashMap<String, Resolved> = api_group
            .versioned_resources(version)
            .into_iter()
            .filter(|(ar, _)| !ar.plural.contains('/'))
            .map(|(ar, caps)| {
                (
                    ar.kind.clone(),
                    Resolved {
                        namespaced: caps.scope == Scope::Namespaced,
                        resource: ar,
                    },
                )
            })
            .collect();
        let found = kinds.get(kind).cloned();
        self.discovery
            .kinds
            .lock()
            .await
            .insert(key, Arc::new(kinds));
        Ok(found)
    }

    /// Drops cached discovery for a group (after its CRD changed).
    async fn invalidate_group(&self, group: &str) {
        self.discovery
            .kinds
            .lock()
            .await
            .retain(|(g, _), _| g != group);
    }

    pub(crate) fn api(&self, r: &Resolved, namespace: &str) -> Api<DynamicObject> {
        if r.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &r.resource)
        } else {
            Api::all_with(self.client.clone(), &r.resource)
        }
    }

    fn prepare(&self, objects: &[DynamicObject]) -> Result<Vec<Desired>, ApplyFailure> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(objects.len());
        for (i, obj) in objects.iter().enumerate() {
            let oref = ObjectRef::from_object(obj, i)?;
            if !seen.insert(oref.clone()) {
                return Err(ApplyFailure::Duplicate { object: oref });
            }
            let mut object = obj.clone();
            self.owner.set_labels(&mut object);
            object.metadata.managed_fields = None;
            object.metadata.resource_version = None;
            object.metadata.uid = None;
            object.metadata.creation_timestamp = None;
            object.metadata.generation = None;
            let api_version = object
                .types
                .as_ref()
                .map(|t| t.api_version.clone())
                .unwrap_or_default();
            let version = split_api_version(&api_version).1.to_string();
            out.push(Desired {
                object,
                oref,
                api_version,
                version,
                digest: [0; 32],
                resolved: None,
            });
        }
        Ok(out)
    }

    /// Resolves kinds and fixes scopes: cluster-scoped objects lose a stray namespace,
    /// namespaced objects must have one. Then computes each desired digest.
    async fn resolve_all(&self, items: &mut [&mut Desired]) -> Result<(), ApplyFailure> {
        for d in items.iter_mut() {
            if reconcile_disabled(&d.object) || SsaPolicy::of(&d.object) == SsaPolicy::Ignore {
                continue;
            }
            let resolved = self
                .resolve(&d.api_version, &d.oref.kind)
                .await
                .map_err(|source| ApplyFailure::Discovery { source })?
                .ok_or_else(|| ApplyFailure::UnknownKind {
                    object: d.oref.clone(),
                    kind: d.oref.kind.clone(),
                    api_version: d.api_version.clone(),
                })?;
            if resolved.namespaced {
                if d.oref.namespace.is_empty() {
                    return Err(ApplyFailure::MissingNamespace {
                        object: d.oref.clone(),
                    });
                }
            } else if !d.oref.namespace.is_empty() {
                d.oref.namespace.clear();
                d.object.metadata.namespace = None;
            }
            let value = to_value(&d.object, &d.oref)?;
            d.digest = sha(sorted_keys(&value).to_string().as_bytes());
            d.resolved = Some(resolved);
        }
        Ok(())
    }

    /// Applies the set in Flux's stages (see the crate docs). On error, the returned error
    /// carries the change set of everything done before it.
    pub async fn apply_all_staged(
        &self,
        objects: &[DynamicObject],
        opts: &ApplyOptions,
    ) -> Result<ChangeSet, ApplyError> {
        let mut change_set = ChangeSet::new();
        let mut desired = self
            .prepare(objects)
            .map_err(|f| ApplyError::new(f, ChangeSet::new()))?;
        let refs: Vec<ObjectRef> = desired.iter().map(|d| d.oref.clone()).collect();
        let stages = sort::stages(&refs, &opts.custom_stage_kinds);
        for (stage, indices) in stages {
            let stage_set = self
                .apply_stage(&mut desired, &indices, opts, &mut change_set)
                .await?;
            if stage == Stage::Rest {
                continue;
            }
            let changed: Vec<(ObjectRef, String)> = stage_set
                .entries
                .iter()
                .filter(|e| matches!(e.action, Action::Created | Action::Configured))
                .map(|e| (e.object.clone(), e.version.clone()))
                .collect();
            if changed.is_empty() {
                continue;
            }
            self.waiter()
                .wait(&changed, opts.wait_timeout, WaitMode::Ready)
                .await
                .map_err(|e| ApplyError::new(ApplyFailure::Wait(e), change_set.clone()))?;
            for &i in &indices {
                let d = &desired[i];
                if d.oref.kind == "CustomResourceDefinition"
                    && let Some(group) =
                        d.object.data.pointer("/spec/group").and_then(Value::as_str)
                {
                    self.invalidate_group(group).await;
                }
            }
        }
        Ok(change_set)
    }

    async fn apply_stage(
        &self,
        desired: &mut [Desired],
        indices: &[usize],
        opts: &ApplyOptions,
        change_set: &mut ChangeSet,
    ) -> Result<ChangeSet, ApplyError> {
        {
            let mut items: Vec<&mut Desired> = desired
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| indices.contains(i))
                .map(|(_, d)| d)
                .collect();
            self.resolve_all(&mut items)
                .await
                .map_err(|f| ApplyError::new(f, change_set.clone()))?;
        }
        let items: Vec<&Desired> = indices.iter().map(|&i| &desired[i]).collect();
        let live_view = self.live_view(&items).await;
        let mut futures = Vec::with_capacity(items.len());
        for d in &items {
            futures.push(self.plan(d, live_view.get(&d.oref), opts));
        }
        let plans: Vec<Result<Plan, ApplyFailure>> = stream::iter(futures)
            .buffered(self.concurrency)
            .collect()
            .await;
        // Every object of the stage passes its dry-run before any of them is written, as
        // Flux's ApplyAll does: an object the server refuses leaves the stage untouched.
        let plans: Vec<Plan> = plans
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|f| ApplyError::new(f, change_set.clone()))?;
        let mut stage_set = ChangeSet::new();
        for (d, plan) in items.iter().zip(plans) {
            let action = self
                .execute(d, plan, opts)
                .await
                .map_err(|f| ApplyError::new(f, change_set.clone()))?;
            change_set.push(d.oref.clone(), d.version.clone(), action);
            stage_set.push(d.oref.clone(), d.version.clone(), action);
        }
        Ok(stage_set)
    }

    /// The cached live view: for objects we have a record of, one LIST per (kind,
    /// namespace) with our owner labels. Objects missing from it take the full path.
    async fn live_view(&self, items: &[&Desired]) -> HashMap<ObjectRef, Value> {
        let mut buckets: BTreeMap<(String, String, String), Resolved> = BTreeMap::new();
        {
            let records = self.records_lock();
            for d in items {
                if let Some(r) = &d.resolved
                    && records.contains_key(&RecordKey::of(&d.oref))
                {
                    buckets.insert(
                        (
                            d.api_version.clone(),
                            d.oref.kind.clone(),
                            d.oref.namespace.clone(),
                        ),
                        r.clone(),
                    );
                }
            }
        }
        let mut view = HashMap::new();
        let selector = self.owner.label_selector();
        for ((_, _, namespace), resolved) in buckets {
            let api = self.api(&resolved, &namespace);
            match api.list(&ListParams::default().labels(&selector)).await {
                Ok(list) => {
                    for obj in list.items {
                        let obj = with_type_meta(obj, &resolved.resource);
                        let oref = ObjectRef::new(
                            resolved.resource.group.clone(),
                            resolved.resource.kind.clone(),
                            obj.metadata.namespace.clone().unwrap_or_default(),
                            obj.metadata.name.clone().unwrap_or_default(),
                        );
                        if let Ok(v) = serde_json::to_value(&obj) {
                            view.insert(oref, v);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(kind = %resolved.resource.kind, %namespace, error = %e,
                        "live view list failed; falling back to per-object reads");
                }
            }
        }
        view
    }

    async fn plan(
        &self,
        d: &Desired,
        hint: Option<&Value>,
        opts: &ApplyOptions,
    ) -> Result<Plan, ApplyFailure> {
        let policy = SsaPolicy::of(&d.object);
        if reconcile_disabled(&d.object) || policy == SsaPolicy::Ignore {
            return Ok(Plan::Skip);
        }
        let Some(resolved) = &d.resolved else {
            return Err(ApplyFailure::UnknownKind {
                object: d.oref.clone(),
                kind: d.oref.kind.clone(),
                api_version: d.api_version.clone(),
            });
        };
        // The no-op fast path: same desired object, live object unchanged since we last saw it
        // in sync (see the crate docs for the rule).
        if let Some(live) = hint {
            let fingerprint = live_fingerprint(live);
            let known = self.records_lock().get(&RecordKey::of(&d.oref)).copied();
            if known == Some(Record::new(&d.digest, &fingerprint)) {
                return Ok(if policy == SsaPolicy::IfNotPresent {
                    Plan::Skip
                } else {
                    Plan::Unchanged { live: fingerprint }
                });
            }
        }
        let api = self.api(resolved, &d.oref.namespace);
        let req = |operation: &'static str| {
            let object = d.oref.clone();
            move |source| ApplyFailure::Request {
                object,
                operation,
                source,
            }
        };
        let mut live: Option<Value> = match api.get_opt(&d.oref.name).await.map_err(req("get"))? {
            Some(obj) => Some(to_value(&obj, &d.oref)?),
            None => None,
        };
        if policy == SsaPolicy::IfNotPresent && live.is_some() {
            return Ok(Plan::Skip);
        }
        let mut taken_over = false;
        if policy == SsaPolicy::Override
            && let Some(current) = &live
            && let Some(patch) =
                takeover_patch(current, &self.owner.field_manager, &opts.override_managers)
        {
            let patched = api
                .patch(
                    &d.oref.name,
                    &PatchParams::default(),
                    &Patch::<()>::Json(patch),
                )
                .await
                .map_err(req("managed fields takeover"))?;
            tracing::debug!(object = %d.oref, "took over fields of kubectl / before-first-apply");
            live = Some(to_value(&patched, &d.oref)?);
            taken_over = true;
        }
        let params = PatchParams::apply(&self.owner.field_manager)
            .force()
            .dry_run();
        let dry = match api
            .patch(&d.oref.name, &params, &Patch::Apply(&d.object))
            .await
        {
            Ok(dry) => dry,
            Err(e) if live.is_some() && is_immutable_error(&e) => {
                if opts.force || force_enabled(&d.object) {
                    return Ok(Plan::Recreate);
                }
                let message = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                return Err(ApplyFailure::Immutable {
                    object: d.oref.clone(),
                    message,
                });
            }
            Err(e) => return Err(req("dry-run apply")(e)),
        };
        let Some(live) = live else {
            return Ok(Plan::Apply { create: true });
        };
        let dry = to_value(&dry, &d.oref)?;
        if taken_over || has_drifted(&live, &dry) {
            Ok(Plan::Apply { create: false })
        } else {
            Ok(Plan::Unchanged {
                live: live_fingerprint(&live),
            })
        }
    }

    async fn execute(
        &self,
        d: &Desired,
        plan: Plan,
        opts: &ApplyOptions,
    ) -> Result<Action, ApplyFailure> {
        let record = |live: [u8; 32]| {
            self.records_lock()
                .insert(RecordKey::of(&d.oref), Record::new(&d.digest, &live));
        };
        match plan {
            Plan::Skip => {
                self.records_lock().remove(&RecordKey::of(&d.oref));
                Ok(Action::Skipped)
            }
            Plan::Unchanged { live } => {
                record(live);
                Ok(Action::Unchanged)
            }
            Plan::Apply { create } => {
                let applied = self.apply_one(d).await?;
                record(live_fingerprint(&applied));
                Ok(if create {
                    Action::Created
                } else {
                    Action::Configured
                })
            }
            Plan::Recreate => {
                let resolved = d
                    .resolved
                    .as_ref()
                    .ok_or_else(|| ApplyFailure::UnknownKind {
                        object: d.oref.clone(),
                        kind: d.oref.kind.clone(),
                        api_version: d.api_version.clone(),
                    })?;
                let api = self.api(resolved, &d.oref.namespace);
                tracing::info!(object = %d.oref, "immutable field changed: deleting to recreate");
                match api.delete(&d.oref.name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(source) => {
                        return Err(ApplyFailure::Request {
                            object: d.oref.clone(),
                            operation: "delete",
                            source,
                        });
                    }
                }
                self.waiter()
                    .wait(
                        &[(d.oref.clone(), d.version.clone())],
                        opts.wait_timeout,
                        WaitMode::Gone,
                    )
                    .await?;
                let applied = self.apply_one(d).await?;
                record(live_fingerprint(&applied));
                Ok(Action::Created)
            }
        }
    }

    async fn apply_one(&self, d: &Desired) -> Result<Value, ApplyFailure> {
        let resolved = d
            .resolved
            .as_ref()
            .ok_or_else(|| ApplyFailure::UnknownKind {
                object: d.oref.clone(),
                kind: d.oref.kind.clone(),
                api_version: d.api_version.clone(),
            })?;
        let api = self.api(resolved, &d.oref.namespace);
        let params = PatchParams::apply(&self.owner.field_manager).force();
        let applied = api
            .patch(&d.oref.name, &params, &Patch::Apply(&d.object))
            .await
            .map_err(|source| ApplyFailure::Request {
                object: d.oref.clone(),
                operation: "apply",
                source,
            })?;
        to_value(&applied, &d.oref)
    }

    pub(crate) fn waiter(&self) -> Waiter<'_> {
        Waiter { manager: self }
    }

    /// Waits until every object is Current (kstatus), watching each one; fails fast when one
    /// is Failed; on timeout, reports every object not ready and why.
    pub async fn wait(
        &self,
        objects: &[DynamicObject],
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let mut targets = Vec::new();
        for (i, obj) in objects.iter().enumerate() {
            let Ok(oref) = ObjectRef::from_object(obj, i) else {
                continue;
            };
            let version = obj
                .types
                .as_ref()
                .map(|t| split_api_version(&t.api_version).1.to_string())
                .unwrap_or_default();
            targets.push((oref, version));
        }
        self.waiter().wait(&targets, timeout, WaitMode::Ready).await
    }

    /// Waits until the objects of a change set (all but the deleted and skipped) are Current.
    pub async fn wait_for_change_set(
        &self,
        set: &ChangeSet,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let targets: Vec<(ObjectRef, String)> = set
            .entries
            .iter()
            .filter(|e| !matches!(e.action, Action::Deleted | Action::Skipped))
            .map(|e| (e.object.clone(), e.version.clone()))
            .collect();
        self.waiter().wait(&targets, timeout, WaitMode::Ready).await
    }

    /// Waits until the objects are gone.
    pub async fn wait_for_termination(
        &self,
        objects: &[(ObjectRef, String)],
        timeout: Duration,
    ) -> Result<(), WaitError> {
        self.waiter().wait(objects, timeout, WaitMode::Gone).await
    }

    /// Deletes stale objects (as from [`Inventory::stale`]), in reverse apply order. An object is
    /// deleted only when it carries our owner labels and not `prune: disabled`; otherwise it
    /// is `skipped`. Objects already gone are left out of the change set.
    pub async fn prune(
        &self,
        stale: &[(ObjectRef, String)],
        opts: &PruneOptions,
    ) -> Result<ChangeSet, ApplyError> {
        let mut ordered: Vec<&(ObjectRef, String)> = stale.iter().collect();
        ordered.sort_by(|a, b| sort::compare_for_delete(&a.0, &b.0));
        let mut change_set = ChangeSet::new();
        let mut deleted = Vec::new();
        let params = match opts.policy {
            DeletionPolicy::Background | DeletionPolicy::WaitForTermination => {
                DeleteParams::background()
            }
            DeletionPolicy::Foreground => DeleteParams::foreground(),
            DeletionPolicy::Orphan => DeleteParams::orphan(),
        };
        for (oref, version) in ordered {
            let api_version = if oref.group.is_empty() {
                version.clone()
            } else {
                format!("{}/{}", oref.group, version)
            };
            let resolved = self
                .resolve(&api_version, &oref.kind)
                .await
                .map_err(|source| {
                    ApplyError::new(ApplyFailure::Discovery { source }, change_set.clone())
                })?;
            // A kind the cluster no longer serves has no objects left to delete.
            let Some(resolved) = resolved else { continue };
            let api = self.api(&resolved, &oref.namespace);
            let fail = |operation: &'static str, source, cs: &ChangeSet| {
                ApplyError::new(
                    ApplyFailure::Request {
                        object: oref.clone(),
                        operation,
                        source,
                    },
                    cs.clone(),
                )
            };
            let live = match api.get_opt(&oref.name).await {
                Ok(Some(live)) => live,
                Ok(None) => continue,
                Err(e) => return Err(fail("get", e, &change_set)),
            };
            if !self.owner.owns(live.metadata.labels.as_ref()) || prune_disabled(&live) {
                change_set.push(oref.clone(), version.clone(), Action::Skipped);
                continue;
            }
            match api.delete(&oref.name, &params).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(fail("delete", e, &change_set)),
            }
            self.records_lock().remove(&RecordKey::of(oref));
            change_set.push(oref.clone(), version.clone(), Action::Deleted);
            deleted.push((oref.clone(), version.clone()));
        }
        if opts.policy == DeletionPolicy::WaitForTermination && !deleted.is_empty() {
            self.waiter()
                .wait(&deleted, opts.timeout, WaitMode::Gone)
                .await
                .map_err(|e| ApplyError::new(ApplyFailure::Wait(e), change_set.clone()))?;
        }
        Ok(change_set)
    }

    /// Apply, then (only when the apply succeeded) prune what left the set, then wait.
    ///
    /// Nothing is pruned when the apply fails: the error carries the partial change set and
    /// an inventory that is the previous one plus what was applied, never smaller.
    pub async fn reconcile(
        &self,
        objects: &[DynamicObject],
        previous: &Inventory,
        opts: &ReconcileOptions,
    ) -> Result<Reconciled, ReconcileError> {
        let change_set = match self.apply_all_staged(objects, &opts.apply).await {
            Ok(set) => set,
            Err(error) => {
                let mut inventory = previous.clone();
                inventory.add_change_set(&error.partial);
                return Err(ReconcileError { error, inventory });
            }
        };
        let mut inventory = Inventory::from_change_set(&change_set);
        let mut out = Reconciled {
            change_set,
            inventory: inventory.clone(),
        };
        if let Some(prune) = &opts.prune {
            let stale = previous.stale(&inventory).map_err(|e| ReconcileError {
                error: ApplyError::new(ApplyFailure::InvalidObject(e), out.change_set.clone()),
                inventory: {
                    let mut keep = previous.clone();
                    keep.add_change_set(&out.change_set);
                    keep
                },
            })?;
            match self.prune(&stale, prune).await {
                Ok(pruned) => out.change_set.extend(pruned),
                Err(mut error) => {
                    // Keep every stale object that was not deleted, so the next run retries it.
                    let deleted: HashSet<ObjectRef> = error
                        .partial
                        .entries
                        .iter()
                        .filter(|e| e.action == Action::Deleted)
                        .map(|e| e.object.clone())
                        .collect();
                    for (oref, v) in &stale {
                        if !deleted.contains(oref) {
                            inventory.add(oref, v);
                        }
                    }
                    let mut partial = out.change_set.clone();
                    partial.extend(std::mem::take(&mut error.partial));
                    error.partial = partial;
                    return Err(ReconcileError { error, inventory });
                }
            }
        }
        if let Some(timeout) = opts.wait {
            self.wait_for_change_set(&out.change_set, timeout)
                .await
                .map_err(|e| ReconcileError {
                    error: ApplyError::new(ApplyFailure::Wait(e), out.change_set.clone()),
                    inventory: inventory.clone(),
                })?;
        }
        out.inventory = inventory;
        Ok(out)
    }

    /// The drift of each object against the cluster, without changing anything: a server-side
    /// dry-run apply per object compared with the live object, in Flux's order. Objects of a
    /// kind the cluster does not serve yet (their CRD is in the set) diff against nothing.
    pub async fn diff(&self, objects: &[DynamicObject]) -> Result<Vec<ObjectDiff>, ApplyError> {
        let mut desired = self
            .prepare(objects)
            .map_err(|f| ApplyError::new(f, ChangeSet::new()))?;
        desired.sort_by(|a, b| sort::compare(&a.oref, &b.oref));
        let mut out = Vec::new();
        let fail = |f: ApplyFailure| ApplyError::new(f, ChangeSet::new());
        let diff_err = |_: &ObjectRef, e: DiffError| fail(ApplyFailure::Diff(e));
        for d in &mut desired {
            let policy = SsaPolicy::of(&d.object);
            if reconcile_disabled(&d.object) || policy == SsaPolicy::Ignore {
                out.push(ObjectDiff {
                    object: d.oref.clone(),
                    action: Action::Skipped,
                    diff: String::new(),
                });
                continue;
            }
            let resolved = self
                .resolve(&d.api_version, &d.oref.kind)
                .await
                .map_err(|source| fail(ApplyFailure::Discovery { source }))?;
            let Some(resolved) = resolved else {
                let value = to_value(&d.object, &d.oref).map_err(fail)?;
                let diff = unified_diff(&d.oref, None, &value).map_err(|e| diff_err(&d.oref, e))?;
                out.push(ObjectDiff {
                    object: d.oref.clone(),
                    action: Action::Created,
                    diff,
                });
                continue;
            };
            if !resolved.namespaced {
                d.oref.namespace.clear();
                d.object.metadata.namespace = None;
            } else if d.oref.namespace.is_empty() {
                return Err(fail(ApplyFailure::MissingNamespace {
                    object: d.oref.clone(),
                }));
            }
            let api = self.api(&resolved, &d.oref.namespace);
            let req = |operation: &'static str, oref: &ObjectRef| {
                let object = oref.clone();
                move |source| {
                    fail(ApplyFailure::Request {
                        object,
                        operation,
                        source,
                    })
                }
            };
            let live = api
                .get_opt(&d.oref.name)
                .await
                .map_err(req("get", &d.oref))?;
            let live = match live {
                Some(l) => Some(to_value(&l, &d.oref).map_err(fail)?),
                None => None,
            };
            if policy == SsaPolicy::IfNotPresent && live.is_some() {
                out.push(ObjectDiff {
                    object: d.oref.clone(),
                    action: Action::Skipped,
                    diff: String::new(),
                });
                continue;
            }
            let params = PatchParams::apply(&self.owner.field_manager)
                .force()
                .dry_run();
            let dry = match api
                .patch(&d.oref.name, &params, &Patch::Apply(&d.object))
                .await
            {
                Ok(dry) => to_value(&dry, &d.oref).map_err(fail)?,
                // The namespace may be part of the same set and not exist yet.
                Err(e) if live.is_none() && is_not_found(&e) => {
                    to_value(&d.object, &d.oref).map_err(fail)?
                }
                Err(e) => return Err(req("dry-run apply", &d.oref)(e)),
            };
            let action = match &live {
                None => Action::Created,
                Some(l) if has_drifted(l, &dry) => Action::Configured,
                Some(_) => Action::Unchanged,
            };
            let diff = if action == Action::Unchanged {
                String::new()
            } else {
                unified_diff(&d.oref, live.as_ref(), &dry).map_err(|e| diff_err(&d.oref, e))?
            };
            out.push(ObjectDiff {
                object: d.oref.clone(),
                action,
                diff,
            });
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl crate::Applier for ResourceManager {
    async fn apply(
        &self,
        objects: &[DynamicObject],
        opts: &ApplyOptions,
    ) -> Result<ChangeSet, ApplyError> {
        self.apply_all_staged(objects, opts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_keys_tell_identities_apart_even_when_their_parts_concatenate_alike() {
        let key = |g: &str, k: &str, ns: &str, n: &str| RecordKey::of(&ObjectRef::new(g, k, ns, n));
        assert_eq!(
            key("apps", "Deployment", "a", "web"),
            key("apps", "Deployment", "a", "web")
        );
        assert_ne!(
            key("", "ConfigMap", "ab", "c"),
            key("", "ConfigMap", "a", "bc")
        );
        assert_ne!(key("", "ConfigMap", "a", "x"), key("", "Secret", "a", "x"));
        assert_ne!(key("a", "", "", ""), key("", "a", "", ""));
        // Records compare on both digests.
        let (d, l) = ([1u8; 32], [2u8; 32]);
        assert_eq!(Record::new(&d, &l), Record::new(&d, &l));
        assert_ne!(Record::new(&d, &l), Record::new(&l, &d));
    }

    #[test]
    fn takeover_rewrites_kubectl_and_before_first_apply_to_our_apply_entry() {
        let live = json!({"metadata": {"resourceVersion": "42",
        "annotations": {LAST_APPLIED_ANNOTATION: "{}", "keep": "me"},
        "managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "before-first-apply", "operation": "Update", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}}}},
            {"manager": "gitops", "operation": "Apply", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}},
            {"manager": "hpa", "operation": "Update", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:paused": {}}}}
        ]}});
        let patch = takeover_patch(&live, "gitops", &[]).expect("something to take over");
        let ops = serde_json::to_value(&patch).expect("serialisable");
        assert_eq!(
            ops[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": "42"})
        );
        let fields = &ops[1]["value"];
        let managers: Vec<&str> = fields
            .as_array()
            .expect("list")
            .iter()
            .map(|e| e["manager"].as_str().expect("manager"))
            .collect();
        assert_eq!(managers, vec!["kube-controller-manager", "hpa", "gitops"]);
        assert_eq!(fields[2]["operation"], "Apply");
        assert_eq!(
            fields[2]["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}, "f:template": {}},
            "f:metadata": {"f:labels": {"f:a": {}}}})
        );
        assert_eq!(
            ops[2],
            json!({"op": "remove",
            "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"})
        );
    }

    #[test]
    fn no_takeover_when_only_our_apply_and_foreign_managers() {
        let live = json!({"metadata": {"resourceVersion": "1", "managedFields": [
            {"manager": "gitops", "operation": "Apply", "fieldsV1": {}},
            {"manager": "other", "operation": "Apply", "fieldsV1": {}}]}});
        assert!(takeover_patch(&live, "gitops", &[]).is_none());
        let patch =
            takeover_patch(&live, "gitops", &["other".to_string()]).expect("override manager");
        let ops = serde_json::to_value(&patch).expect("serialisable");
        assert_eq!(ops[1]["value"].as_array().expect("list").len(), 1);
    }

    #[test]
    fn fingerprint_ignores_status_and_status_managers_but_not_content_or_owners() {
        let base = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "1",
            "managedFields": [{"manager": "gitops", "operation": "Apply", "fieldsV1": {"f:data": {}},
                               "time": "2026-01-01T00:00:00Z"}]}, "data": {"a": "1"}});
        let mut status_only = base.clone();
        status_only["metadata"]["resourceVersion"] = json!("2");
        status_only["status"] = json!({"x": 1});
        status_only["metadata"]["managedFields"].as_array_mut().expect("list").push(
            json!({"manager": "ctrl", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}}));
        assert_eq!(live_fingerprint(&base), live_fingerprint(&status_only));
        let mut edited = base.clone();
        edited["data"]["a"] = json!("2");
        assert_ne!(live_fingerprint(&base), live_fingerprint(&edited));
        let mut co_owned = base.clone();
        co_owned["metadata"]["managedFields"].as_array_mut().expect("list").push(
            json!({"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:data": {"f:a": {}}}}));
        assert_ne!(live_fingerprint(&base), live_fingerprint(&co_owned));
    }
}

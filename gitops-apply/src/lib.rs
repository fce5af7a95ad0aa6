//! # gitops-apply: make a cluster match a set of objects, and say exactly what changed
//!
//! The centre of the crate is the object-safe, async [`Applier`] trait: objects in, a
//! [`ChangeSet`] out (`Kind/namespace/name created|configured|unchanged|deleted|skipped`), or an
//! [`ApplyError`] naming the object that failed and carrying the partial change set.
//! [`ResourceManager`] implements it on a `kube::Client` the way `fluxcd/pkg/ssa` does for
//! Flux's kustomize- and helm-controller.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use gitops_apply::{Applier, ApplyOptions, Owner, ResourceManager, yaml::read_objects};
//! use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
//!
//! // Any kube::Client will do; this one talks to the in-process test API server.
//! let cluster = TestCluster::start(TestClusterOptions::default()).await?;
//! let owner = Owner::new("gitops-example", "kustomize.toolkit.fluxcd.io", "apps", "flux-system");
//! let applier: Box<dyn Applier> = Box::new(ResourceManager::new(cluster.client().await?, owner));
//!
//! let objects = read_objects(
//!     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: apps\ndata:\n  color: blue\n\
//!      ---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
//!     "inline",
//! )?;
//! let changes = applier.apply(&objects, &ApplyOptions::default()).await?;
//! assert_eq!(changes.to_string(), "Namespace/apps created\nConfigMap/apps/settings created\n");
//!
//! let again = applier.apply(&objects, &ApplyOptions::default()).await?;
//! assert_eq!(again.to_string(), "Namespace/apps unchanged\nConfigMap/apps/settings unchanged\n");
//! # Ok(()) }
//! ```
//!
//! ## What an apply does
//!
//! - **Stages** ([`sort`]): CRDs, Namespaces and ClusterRoles first, then waits until CRDs are
//!   Established and Namespaces Active; then kinds ending in `Class`; then optional custom-stage
//!   kinds; then everything else. Within a stage, Flux's kind order, ties by namespace then name.
//!   Every object of a stage passes its dry-run before any of them is written, so an object
//!   the server refuses leaves its whole stage unapplied. Only objects created or configured in
//!   a stage are waited for.
//! - **Discovery**: kinds resolve through a cache of one discovery request per group-version.
//!   Kinds not found are not cached and a CRD applied in the set drops its group from the cache,
//!   so custom resources in the same set resolve after their CRD.
//! - **Per object** ([`ResourceManager::apply_all_staged`]): owner labels `<group>/name` and
//!   `<group>/namespace` are set; `reconcile: disabled` and `ssa: Ignore` are `skipped`; the live
//!   object is read; `ssa: IfNotPresent` skips an existing object; unless `ssa: Merge`, fields of
//!   `kubectl` (any `kubectl*` manager, Apply or Update), `before-first-apply`, our own old
//!   Update entries and [`ApplyOptions::override_managers`] are rewritten to our Apply entry and
//!   `kubectl.kubernetes.io/last-applied-configuration` is removed, so the apply can remove their
//!   fields; then a server-side **dry-run** apply (forced, our field manager) is compared with the
//!   live object ([`normalize::has_drifted`]: labels, annotations, and everything but
//!   `metadata` and `status`, after normalising Secret `stringData` and default port protocols).
//!   Only a drifted object gets the real apply (`created`/`configured`); the others are
//!   `unchanged` and keep their resourceVersion. Dry-runs run concurrently (4 by default);
//!   applies are sequential in order.
//! - **Immutable fields** ([`is_immutable_error`]): a dry-run answered with Invalid (or
//!   Conflict/Forbidden) and "field is immutable"/"is immutable"/"immutable field" fails the
//!   apply, unless [`ApplyOptions::force`] or `kustomize.toolkit.fluxcd.io/force: Enabled`: then
//!   the object is deleted, waited for until gone, and created again.
//! - **Errors** stop the apply; the [`ApplyError`] names the object and the operation and holds
//!   the change set of everything done before.
//!
//! ## The no-op rule: an unchanged set does not cost one dry-run per object
//!
//! Flux dry-runs every object on every reconcile (N GETs and N dry-run PATCHes for N
//! objects). A [`ResourceManager`] remembers, per object it applied or found in sync, a digest
//! of the desired object and a fingerprint of the live object at that moment: its normalised
//! content (no status, no server metadata), whether it is being deleted, and its field owners
//! (manager, operation, subresource, API version and field set of every managedFields entry
//! except status-subresource ones; timestamps excluded).
//!
//! On the next apply, for the objects it has a record of, it reads the live state with **one
//! LIST per (kind, namespace)**, selected by our owner labels. An object whose desired digest
//! and live fingerprint both equal the record is `unchanged` without a GET or a dry-run.
//! Anything else takes the full per-object path above: a new or edited desired object, an
//! object missing from the LIST (deleted, or its owner labels removed), any change of its
//! content, labels or annotations by anyone, any new, removed or changed non-status field
//! owner (another manager's apply, a `kubectl edit`/`scale`-style update, a takeover
//! candidate), a deletion in progress. Status writes by controllers do not count. The rule is
//! sound because a server-side apply's result depends only on the live object, its field
//! owners and the applied configuration, and all three are what was last verified in sync.
//! A LIST that fails (for example, forbidden to an impersonated tenant) makes its objects take
//! the full path. The record lives in memory: the first apply of a new manager pays the full
//! per-object cost, as Flux does ([`ResourceManager::forget_applied_state`] forces that).
//! The tests `a_no_op_reapply_lists_per_kind_and_namespace_and_dry_runs_nothing`,
//! `a_foreign_server_side_apply_is_detected_and_reverted` and
//! `a_kubectl_scale_is_detected_diffed_reverted_and_taken_over` prove both halves.
//!
//! ## Inventory, prune, health
//!
//! - [`Inventory`] holds Flux's entries `{id: "<ns>_<name>_<group>_<kind>", v: "<version>"}` and
//!   serialises to Flux's `.status.inventory` shape; [`Inventory::stale`] is old minus new.
//! - [`ResourceManager::prune`] deletes stale objects in reverse order, only those carrying our
//!   owner labels and not `kustomize.toolkit.fluxcd.io/prune: Disabled` (the others are
//!   `skipped`), with a [`DeletionPolicy`]: background, foreground, orphan, or wait for
//!   termination.
//! - [`ResourceManager::reconcile`] applies, then prunes only when the apply succeeded: after
//!   any failure nothing is pruned and the inventory it returns is the previous one plus what
//!   was applied, never smaller.
//! - [`health::compute`] gives kstatus' `Current`, `InProgress`, `Failed`, `Terminating` for
//!   Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod, Job, CronJob, PVC, Service
//!   (LoadBalancer), PodDisruptionBudget, CRD, Namespace, and any kind with `Ready`,
//!   `Reconciling`, `Stalled` and `observedGeneration`; [`ResourceManager::wait`] watches each
//!   object, fails fast on `Failed` and reports every object not ready, with its reason, on
//!   timeout.
//! - [`health_exprs`] are Flux's `healthCheckExprs`: CEL `current` / `inProgress` / `failed`
//!   expressions per kind, used instead of kstatus for that kind in every wait
//!   ([`ResourceManager::with_health_checks`]).
//!
//! ## Clients
//!
//! [`client`] builds clients from a kubeconfig (a remote cluster, Flux's `kubeConfig`) or the
//! environment, optionally impersonating a service account or a user (Flux's
//! `serviceAccountName`).
//!
//! ## Not done
//!
//! Flux's `ignore` rules (JSON-pointer paths excluded from drift), managed-fields API-version
//! migration, the cleanup of Flux v1 labels and CRD `caBundle` stripping are not implemented. [`ResourceManager::diff`] does not take over `kubectl`
//! fields (it changes nothing), so it can show a field owned by kubectl as unchanged where the
//! apply would remove it.

pub mod changeset;
pub mod client;
pub mod diff;
pub mod error;
pub mod health;
pub mod health_exprs;
pub mod inventory;
pub mod manager;
pub mod normalize;
pub mod object;
pub mod options;
pub mod sort;
mod wait;
pub mod yaml;

pub use changeset::{Action, ChangeSet, ChangeSetEntry};
pub use client::{ClientError, Impersonation};
pub use error::{ApplyError, ApplyFailure, NotReady, WaitError, is_immutable_error};
pub use health::{Health, Status};
pub use inventory::{Inventory, InventoryEntry};
pub use manager::{
    DiscoveryCache, ObjectDiff, ReconcileError, ReconcileOptions, Reconciled, ResourceManager,
};
pub use object::{ObjMetadata, ObjectRef, ObjectRefError};
pub use options::{ApplyOptions, DeletionPolicy, Owner, PruneOptions, SsaPolicy};

/// Re-exported so callers build clients and objects with the same kube version.
pub use kube;

use kube::core::DynamicObject;

/// Makes a cluster match a set of objects and says what changed. Object-safe, so callers can
/// hold a `Box<dyn Applier>`; [`ResourceManager`] is the built-in implementation.
#[async_trait::async_trait]
pub trait Applier: Send + Sync {
    /// Applies the objects; on error, the error carries the partial change set.
    async fn apply(
        &self,
        objects: &[DynamicObject],
        opts: &ApplyOptions,
    ) -> Result<ChangeSet, ApplyError>;
}

//! # gitops-apply: the third stage of the GitOps pipeline
//!
//! Work in progress; see the crate docs once the `ResourceManager` lands.

pub mod changeset;
pub mod client;
pub mod diff;
pub mod error;
pub mod health;
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
pub use manager::{ObjectDiff, ReconcileError, ReconcileOptions, Reconciled, ResourceManager};
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

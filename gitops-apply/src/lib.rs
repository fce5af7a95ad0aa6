//! # gitops-apply: the third stage of the GitOps pipeline
//!
//! Work in progress; see the crate docs once the `ResourceManager` lands.

pub mod changeset;
pub mod diff;
pub mod error;
pub mod health;
pub mod inventory;
pub mod normalize;
pub mod object;
pub mod options;
pub mod sort;

pub use changeset::{Action, ChangeSet, ChangeSetEntry};
pub use error::{ApplyError, ApplyFailure, NotReady, WaitError, is_immutable_error};
pub use health::{Health, Status};
pub use inventory::{Inventory, InventoryEntry};
pub use object::{ObjMetadata, ObjectRef, ObjectRefError};
pub use options::{ApplyOptions, DeletionPolicy, Owner, PruneOptions, SsaPolicy};

/// Re-exported so callers build clients and objects with the same kube version.
pub use kube;

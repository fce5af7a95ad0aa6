//! The inventory: which objects a set applied, in Flux's status shape, and which are stale.

use std::collections::BTreeSet;

use crate::{
    changeset::ChangeSet,
    object::{ObjectRef, ObjectRefError},
};

/// One inventory entry in Flux's status shape: `{id: "<ns>_<name>_<group>_<kind>", v: "<version>"}`.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct InventoryEntry {
    /// `<namespace>_<name>_<group>_<kind>`.
    pub id: String,
    /// The API version the object was applied with, as `v1`.
    pub v: String,
}

/// The objects a set applied, as Flux writes it to `.status.inventory`:
/// `{"entries": [{"id": ..., "v": ...}]}`, entries sorted by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inventory {
    /// The entries, sorted by id, without duplicates.
    pub entries: Vec<InventoryEntry>,
}

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The inventory of everything a change set handled (every action: an object skipped by
    /// `reconcile: disabled` is still part of the set and must not be pruned).
    pub fn from_change_set(set: &ChangeSet) -> Self {
        let mut inv = Self::new();
        inv.add_change_set(set);
        inv
    }

    /// Adds (or updates the version of) the objects of a change set.
    pub fn add_change_set(&mut self, set: &ChangeSet) {
        for e in &set.entries {
            self.add(&e.object, &e.version);
        }
    }

    /// Adds (or updates the version of) one object.
    pub fn add(&mut self, object: &ObjectRef, version: &str) {
        let id = object.inventory_id();
        match self.entries.binary_search_by(|e| e.id.cmp(&id)) {
            Ok(i) => self.entries[i].v = version.to_string(),
            Err(i) => self.entries.insert(
                i,
                InventoryEntry {
                    id,
                    v: version.to_string(),
                },
            ),
        }
    }

    /// Removes one object.
    pub fn remove(&mut self, object: &ObjectRef) {
        let id = object.inventory_id();
        self.entries.retain(|e| e.id != id);
    }

    /// True when the inventory lists the object.
    pub fn contains(&self, object: &ObjectRef) -> bool {
        let id = object.inventory_id();
        self.entries.binary_search_by(|e| e.id.cmp(&id)).is_ok()
    }

    /// The objects, with their versions.
    pub fn objects(&self) -> Result<Vec<(ObjectRef, String)>, ObjectRefError> {
        self.entries
            .iter()
            .map(|e| Ok((ObjectRef::parse_inventory_id(&e.id)?, e.v.clone())))
            .collect()
    }

    /// The objects in `self` (the old inventory) and not in `new`: what a prune deletes.
    /// Kind names compare exactly; an object whose only change is its API version is not stale.
    pub fn stale(&self, new: &Inventory) -> Result<Vec<(ObjectRef, String)>, ObjectRefError> {
        let keep: BTreeSet<&str> = new.entries.iter().map(|e| e.id.as_str()).collect();
        self.entries
            .iter()
            .filter(|e| !keep.contains(e.id.as_str()))
            .map(|e| Ok((ObjectRef::parse_inventory_id(&e.id)?, e.v.clone())))
            .collect()
    }

    /// Reads Flux's status shape `{"entries": [{"id": ..., "v": ...}]}`.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let mut inv: Inventory = serde_json::from_str(text)?;
        inv.entries.sort();
        inv.entries.dedup_by(|a, b| a.id == b.id);
        Ok(inv)
    }

    /// Writes Flux's status shape, pretty-printed.
    pub fn to_json(&self) -> String {
        // A struct of strings always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::Action;

    #[test]
    fn serialises_to_fluxs_status_shape_sorted_by_id() {
        let mut set = ChangeSet::new();
        set.push(
            ObjectRef::new("apps", "Deployment", "web", "frontend"),
            "v1",
            Action::Created,
        );
        set.push(
            ObjectRef::new("", "Namespace", "", "web"),
            "v1",
            Action::Unchanged,
        );
        set.push(
            ObjectRef::new("", "Secret", "web", "token"),
            "v1",
            Action::Skipped,
        );
        let inv = Inventory::from_change_set(&set);
        assert_eq!(
            serde_json::to_value(&inv).expect("serialisable"),
            serde_json::json!({"entries": [
                {"id": "_web__Namespace", "v": "v1"},
                {"id": "web_frontend_apps_Deployment", "v": "v1"},
                {"id": "web_token__Secret", "v": "v1"},
            ]})
        );
        let back: Inventory =
            serde_json::from_value(serde_json::to_value(&inv).expect("serialisable"))
                .expect("round trip");
        assert_eq!(back, inv);
    }

    #[test]
    fn stale_is_old_minus_new() {
        let mut old = Inventory::new();
        old.add(&ObjectRef::new("", "ConfigMap", "a", "keep"), "v1");
        old.add(&ObjectRef::new("", "ConfigMap", "a", "gone"), "v1");
        old.add(
            &ObjectRef::new("batch", "CronJob", "a", "upgrade"),
            "v1beta1",
        );
        let mut new = Inventory::new();
        new.add(&ObjectRef::new("", "ConfigMap", "a", "keep"), "v1");
        new.add(&ObjectRef::new("batch", "CronJob", "a", "upgrade"), "v1");
        new.add(&ObjectRef::new("", "ConfigMap", "a", "added"), "v1");
        let stale = old.stale(&new).expect("valid ids");
        assert_eq!(
            stale,
            vec![(
                ObjectRef::new("", "ConfigMap", "a", "gone"),
                "v1".to_string()
            )]
        );
        assert!(new.stale(&new).expect("valid ids").is_empty());
        assert_eq!(new.len(), 3);
        assert!(new.contains(&ObjectRef::new("", "ConfigMap", "a", "added")));
    }
}

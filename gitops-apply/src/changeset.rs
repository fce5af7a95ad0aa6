//! The change set: what an apply or prune did to each object, in Flux's vocabulary.

use std::fmt;

use crate::object::ObjectRef;

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The object did not exist and was created.
    Created,
    /// The object existed, had drifted, and was changed.
    Configured,
    /// The object existed and matched the desired state.
    Unchanged,
    /// The object was deleted (pruned, or deleted to recreate it).
    Deleted,
    /// The object was left alone (`reconcile: disabled`, `ssa: Ignore`, `ssa: IfNotPresent` on an
    /// existing object, or `prune: disabled` / foreign owner labels during prune).
    Skipped,
}

impl Action {
    /// The word Flux prints: `created`, `configured`, `unchanged`, `deleted`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
            Action::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeSetEntry {
    /// The object.
    pub object: ObjectRef,
    /// The API version the object was applied with (`v1`, `v1beta1`), for the inventory.
    pub version: String,
    /// What happened.
    pub action: Action,
}

impl fmt::Display for ChangeSetEntry {
    /// `Kind/namespace/name action`, cluster-scoped objects without the namespace part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.object, self.action)
    }
}

/// The ordered list of what an operation did, one entry per object.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeSet {
    /// Entries in the order the objects were handled.
    pub entries: Vec<ChangeSetEntry>,
}

impl ChangeSet {
    /// An empty change set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one entry.
    pub fn push(&mut self, object: ObjectRef, version: impl Into<String>, action: Action) {
        self.entries.push(ChangeSetEntry {
            object,
            version: version.into(),
            action,
        });
    }

    /// Appends all entries of another change set.
    pub fn extend(&mut self, other: ChangeSet) {
        self.entries.extend(other.entries);
    }

    /// True when nothing was handled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many entries have this action.
    pub fn count(&self, action: Action) -> usize {
        self.entries.iter().filter(|e| e.action == action).count()
    }

    /// The action recorded for an object, if it is in the set.
    pub fn action_of(&self, object: &ObjectRef) -> Option<Action> {
        self.entries
            .iter()
            .find(|e| &e.object == object)
            .map(|e| e.action)
    }

    /// True when some entry created, configured or deleted an object.
    pub fn has_changes(&self) -> bool {
        self.entries.iter().any(|e| {
            matches!(
                e.action,
                Action::Created | Action::Configured | Action::Deleted
            )
        })
    }

    /// The change log Flux puts in its event: only entries that changed something.
    pub fn change_log(&self) -> String {
        self.entries
            .iter()
            .filter(|e| e.action != Action::Unchanged && e.action != Action::Skipped)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for ChangeSet {
    /// One `Kind/namespace/name action` line per entry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(f, "{entry}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_prints_one_line_per_entry_in_fluxs_form() {
        let mut set = ChangeSet::new();
        set.push(
            ObjectRef::new("", "Namespace", "", "apps"),
            "v1",
            Action::Created,
        );
        set.push(
            ObjectRef::new("apps", "Deployment", "apps", "web"),
            "v1",
            Action::Configured,
        );
        set.push(
            ObjectRef::new("", "ConfigMap", "apps", "cfg"),
            "v1",
            Action::Unchanged,
        );
        assert_eq!(
            set.to_string(),
            "Namespace/apps created\nDeployment/apps/web configured\nConfigMap/apps/cfg unchanged\n"
        );
        assert_eq!(
            set.change_log(),
            "Namespace/apps created\nDeployment/apps/web configured"
        );
        assert!(set.has_changes());
        assert_eq!(set.count(Action::Unchanged), 1);
    }

    #[test]
    fn unchanged_and_skipped_are_not_changes() {
        let mut set = ChangeSet::new();
        set.push(
            ObjectRef::new("", "Secret", "a", "s"),
            "v1",
            Action::Skipped,
        );
        set.push(
            ObjectRef::new("", "Secret", "a", "t"),
            "v1",
            Action::Unchanged,
        );
        assert!(!set.has_changes());
        assert_eq!(set.change_log(), "");
    }
}

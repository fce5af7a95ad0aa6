//! Options: owner identity, apply options, Flux's per-object annotations, prune options.

use std::{collections::BTreeMap, time::Duration};

use kube::core::DynamicObject;

/// `kustomize.toolkit.fluxcd.io/ssa`: `Override` (default), `Merge`, `IfNotPresent`, `Ignore`.
pub const SSA_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/ssa";
/// `kustomize.toolkit.fluxcd.io/force: Enabled`: recreate the object on an immutable-field change.
pub const FORCE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/force";
/// `kustomize.toolkit.fluxcd.io/prune: Disabled`: never garbage-collect the object.
pub const PRUNE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/prune";
/// `kustomize.toolkit.fluxcd.io/reconcile: disabled`: do not apply the object.
pub const RECONCILE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// The annotation client-side `kubectl apply` leaves behind; removed on takeover.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How one object is applied, from its `kustomize.toolkit.fluxcd.io/ssa` annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SsaPolicy {
    /// Apply and revert foreign edits, taking over fields of `kubectl` and `before-first-apply`.
    #[default]
    Override,
    /// Apply, but leave other managers' fields and metadata alone (no takeover).
    Merge,
    /// Create the object when missing; never change an existing one.
    IfNotPresent,
    /// Never apply the object.
    Ignore,
}

impl SsaPolicy {
    /// The policy an object asks for (case-insensitive, unknown values mean `Override`).
    pub fn of(obj: &DynamicObject) -> Self {
        match annotation(obj, SSA_ANNOTATION)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("merge") => SsaPolicy::Merge,
            Some("ifnotpresent") => SsaPolicy::IfNotPresent,
            Some("ignore") => SsaPolicy::Ignore,
            _ => SsaPolicy::Override,
        }
    }
}

/// The value of an annotation, if set.
pub fn annotation<'a>(obj: &'a DynamicObject, key: &str) -> Option<&'a str> {
    obj.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn annotation_is(obj: &DynamicObject, key: &str, value: &str) -> bool {
    annotation(obj, key).is_some_and(|v| v.eq_ignore_ascii_case(value))
}

/// True when the object carries `kustomize.toolkit.fluxcd.io/force: Enabled`.
pub fn force_enabled(obj: &DynamicObject) -> bool {
    annotation_is(obj, FORCE_ANNOTATION, "enabled")
}

/// True when the object carries `kustomize.toolkit.fluxcd.io/prune: Disabled`.
pub fn prune_disabled(obj: &DynamicObject) -> bool {
    annotation_is(obj, PRUNE_ANNOTATION, "disabled")
}

/// True when the object carries `kustomize.toolkit.fluxcd.io/reconcile: disabled`.
pub fn reconcile_disabled(obj: &DynamicObject) -> bool {
    annotation_is(obj, RECONCILE_ANNOTATION, "disabled")
}

/// Who applies: the field manager written into `managedFields`, and the owner written into
/// Flux's owner labels `<group>/name` and `<group>/namespace` on every applied object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The SSA field manager, as `kustomize-controller`.
    pub field_manager: String,
    /// The label prefix, as `kustomize.toolkit.fluxcd.io`.
    pub group: String,
    /// The owner's name (the Kustomization's name, for Flux).
    pub name: String,
    /// The owner's namespace.
    pub namespace: String,
}

impl Owner {
    /// An owner identity.
    pub fn new(
        field_manager: impl Into<String>,
        group: impl Into<String>,
        name: impl Into<String>,
        namespace: impl Into<String>,
    ) -> Self {
        Self {
            field_manager: field_manager.into(),
            group: group.into(),
            name: name.into(),
            namespace: namespace.into(),
        }
    }

    /// The owner labels: `<group>/name` and `<group>/namespace`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (format!("{}/name", self.group), self.name.clone()),
            (format!("{}/namespace", self.group), self.namespace.clone()),
        ])
    }

    /// The owner labels as a label selector, `<group>/name=N,<group>/namespace=NS`.
    pub fn label_selector(&self) -> String {
        self.labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// True when the object carries exactly our owner labels.
    pub fn owns(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let Some(labels) = labels else { return false };
        self.labels()
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
    }

    /// Writes the owner labels into an object's metadata.
    pub fn set_labels(&self, obj: &mut DynamicObject) {
        let labels = obj.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(self.labels());
    }
}

/// Options of one apply.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Recreate every object whose change hits an immutable field (per object: the
    /// `kustomize.toolkit.fluxcd.io/force: Enabled` annotation).
    pub force: bool,
    /// How long a stage waits for CRDs to be Established and Namespaces to be Active.
    pub wait_timeout: Duration,
    /// Field managers whose fields are taken over (rewritten to ours) before applying, in
    /// addition to `kubectl` (Apply and Update) and `before-first-apply`. Flux's
    /// `--override-manager`.
    pub override_managers: Vec<String>,
    /// Extra kinds applied in their own stage after CRDs and classes (Flux's
    /// `--custom-apply-stage-kinds`), as `group/Kind` or `Kind`.
    pub custom_stage_kinds: Vec<String>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            force: false,
            wait_timeout: Duration::from_secs(60),
            override_managers: Vec::new(),
            custom_stage_kinds: Vec::new(),
        }
    }
}

/// What happens to a pruned object's dependents, and whether prune waits for it to be gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Delete with background propagation (Flux's default, `MirrorPrune`).
    #[default]
    Background,
    /// Delete with foreground propagation.
    Foreground,
    /// Delete and orphan dependents.
    Orphan,
    /// Delete in the background, then wait until the objects are gone (bounded by the timeout).
    WaitForTermination,
}

/// Options of one prune.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Propagation and waiting.
    pub policy: DeletionPolicy,
    /// Bound for [`DeletionPolicy::WaitForTermination`].
    pub timeout: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            policy: DeletionPolicy::Background,
            timeout: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(annotations: &[(&str, &str)]) -> DynamicObject {
        let mut o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}
        }))
        .expect("valid object");
        o.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        o
    }

    #[test]
    fn ssa_policy_reads_fluxs_annotation_case_insensitively() {
        assert_eq!(SsaPolicy::of(&obj(&[])), SsaPolicy::Override);
        assert_eq!(
            SsaPolicy::of(&obj(&[(SSA_ANNOTATION, "Merge")])),
            SsaPolicy::Merge
        );
        assert_eq!(
            SsaPolicy::of(&obj(&[(SSA_ANNOTATION, "IfNotPresent")])),
            SsaPolicy::IfNotPresent
        );
        assert_eq!(
            SsaPolicy::of(&obj(&[(SSA_ANNOTATION, "ignore")])),
            SsaPolicy::Ignore
        );
        assert!(force_enabled(&obj(&[(FORCE_ANNOTATION, "Enabled")])));
        assert!(!force_enabled(&obj(&[(FORCE_ANNOTATION, "false")])));
        assert!(prune_disabled(&obj(&[(PRUNE_ANNOTATION, "disabled")])));
        assert!(reconcile_disabled(&obj(&[(
            RECONCILE_ANNOTATION,
            "Disabled"
        )])));
    }

    #[test]
    fn owner_labels_use_fluxs_form() {
        let owner = Owner::new(
            "kustomize-controller",
            "kustomize.toolkit.fluxcd.io",
            "apps",
            "flux-system",
        );
        assert_eq!(
            owner.label_selector(),
            "kustomize.toolkit.fluxcd.io/name=apps,kustomize.toolkit.fluxcd.io/namespace=flux-system"
        );
        let mut o = obj(&[]);
        assert!(!owner.owns(o.metadata.labels.as_ref()));
        owner.set_labels(&mut o);
        assert!(owner.owns(o.metadata.labels.as_ref()));
        let other = Owner::new(
            "kustomize-controller",
            "kustomize.toolkit.fluxcd.io",
            "infra",
            "flux-system",
        );
        assert!(!other.owns(o.metadata.labels.as_ref()));
    }
}

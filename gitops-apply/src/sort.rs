//! Flux's apply order: stages, then kind order, ties by namespace then name.
//!
//! Kinds with a known place come first, in this order: CustomResourceDefinition, Namespace,
//! ClusterRole, ClusterClass, RuntimeClass, PriorityClass, StorageClass, VolumeSnapshotClass,
//! IngressClass, GatewayClass, ClusterRoleBinding, ResourceQuota, ServiceAccount, Role,
//! RoleBinding, ConfigMap, Secret, Service, LimitRange, Deployment, StatefulSet, CronJob,
//! PodDisruptionBudget. Every other kind follows, alphabetically by kind; the webhook
//! configurations (Mutating, then Validating) come last so they cannot block the objects they
//! would admit.

use std::cmp::Ordering;

use crate::object::ObjectRef;

const FIRST: &[&str] = &[
    "CustomResourceDefinition",
    "Namespace",
    "ClusterRole",
    "ClusterClass",
    "RuntimeClass",
    "PriorityClass",
    "StorageClass",
    "VolumeSnapshotClass",
    "IngressClass",
    "GatewayClass",
    "ClusterRoleBinding",
    "ResourceQuota",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "LimitRange",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];

const LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The rank of a kind: known-first kinds by position, then the rest (compared by name),
/// then the webhook configurations.
fn rank(kind: &str) -> (u8, usize) {
    if let Some(i) = FIRST.iter().position(|k| *k == kind) {
        (0, i)
    } else if let Some(i) = LAST.iter().position(|k| *k == kind) {
        (2, i)
    } else {
        (1, 0)
    }
}

/// Flux's order between two objects: kind order, then kind name, then group, namespace, name.
pub fn compare(a: &ObjectRef, b: &ObjectRef) -> Ordering {
    rank(&a.kind)
        .cmp(&rank(&b.kind))
        .then_with(|| a.kind.cmp(&b.kind))
        .then_with(|| a.group.cmp(&b.group))
        .then_with(|| a.namespace.cmp(&b.namespace))
        .then_with(|| a.name.cmp(&b.name))
}

/// The reverse order, used to delete (webhooks first, CRDs and Namespaces last).
pub fn compare_for_delete(a: &ObjectRef, b: &ObjectRef) -> Ordering {
    compare(b, a)
}

/// The stage of an object in a staged apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// CRDs, Namespaces and ClusterRoles: applied first, then waited for.
    ClusterDefinitions,
    /// Kinds whose name ends in `Class`: applied, then waited for.
    Classes,
    /// Kinds named in `ApplyOptions::custom_stage_kinds`.
    Custom,
    /// Everything else.
    Rest,
}

/// The stage of an object, given the custom stage kinds (`Kind` or `group/Kind`).
pub fn stage_of(obj: &ObjectRef, custom_kinds: &[String]) -> Stage {
    if obj.is_cluster_definition() {
        Stage::ClusterDefinitions
    } else if obj.is_class() {
        Stage::Classes
    } else if custom_kinds.iter().any(|k| match k.rsplit_once('/') {
        Some((group, kind)) => group == obj.group && kind == obj.kind,
        None => *k == obj.kind,
    }) {
        Stage::Custom
    } else {
        Stage::Rest
    }
}

/// Splits indices of `refs` into non-empty stages, each sorted in Flux's order.
pub fn stages(refs: &[ObjectRef], custom_kinds: &[String]) -> Vec<(Stage, Vec<usize>)> {
    let mut out: Vec<(Stage, Vec<usize>)> = Vec::new();
    for stage in [
        Stage::ClusterDefinitions,
        Stage::Classes,
        Stage::Custom,
        Stage::Rest,
    ] {
        let mut idx: Vec<usize> = (0..refs.len())
            .filter(|&i| stage_of(&refs[i], custom_kinds) == stage)
            .collect();
        idx.sort_by(|&a, &b| compare(&refs[a], &refs[b]));
        if !idx.is_empty() {
            out.push((stage, idx));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(group: &str, kind: &str, ns: &str, name: &str) -> ObjectRef {
        ObjectRef::new(group, kind, ns, name)
    }

    #[test]
    fn sorts_in_fluxs_kind_order_with_ties_by_namespace_then_name() {
        let mut refs = vec![
            r(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
                "",
                "v",
            ),
            r("apps", "Deployment", "b", "web"),
            r("networking.k8s.io", "Ingress", "a", "web"),
            r("apps", "Deployment", "a", "zeta"),
            r("apps", "Deployment", "a", "alpha"),
            r("", "Service", "a", "web"),
            r("", "Namespace", "", "a"),
            r(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "",
                "x.example.com",
            ),
            r(
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
                "",
                "m",
            ),
            r("", "ConfigMap", "a", "cfg"),
            r("batch", "Job", "a", "migrate"),
            r("", "ServiceAccount", "a", "sa"),
        ];
        refs.sort_by(compare);
        let order: Vec<String> = refs.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            order,
            vec![
                "CustomResourceDefinition/x.example.com",
                "Namespace/a",
                "ServiceAccount/a/sa",
                "ConfigMap/a/cfg",
                "Service/a/web",
                "Deployment/a/alpha",
                "Deployment/a/zeta",
                "Deployment/b/web",
                "Ingress/a/web",
                "Job/a/migrate",
                "MutatingWebhookConfiguration/m",
                "ValidatingWebhookConfiguration/v",
            ]
        );
    }

    #[test]
    fn stages_put_definitions_first_then_classes_then_custom_then_rest() {
        let refs = vec![
            r("apps", "Deployment", "a", "web"),
            r("storage.k8s.io", "StorageClass", "", "fast"),
            r("", "Namespace", "", "a"),
            r("rbac.authorization.k8s.io", "ClusterRole", "", "reader"),
            r("example.com", "Widget", "a", "w"),
            r(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "",
                "widgets.example.com",
            ),
        ];
        let stages = stages(&refs, &["example.com/Widget".to_string()]);
        let names: Vec<(Stage, Vec<String>)> = stages
            .into_iter()
            .map(|(s, idx)| (s, idx.iter().map(|&i| refs[i].to_string()).collect()))
            .collect();
        assert_eq!(
            names,
            vec![
                (
                    Stage::ClusterDefinitions,
                    vec![
                        "CustomResourceDefinition/widgets.example.com".to_string(),
                        "Namespace/a".to_string(),
                        "ClusterRole/reader".to_string()
                    ]
                ),
                (Stage::Classes, vec!["StorageClass/fast".to_string()]),
                (Stage::Custom, vec!["Widget/a/w".to_string()]),
                (Stage::Rest, vec!["Deployment/a/web".to_string()]),
            ]
        );
    }
}

//! The resource types the server serves: built-in kinds and those of established CRDs.

use serde_json::{Value, json};

/// The standard verbs of a fully-featured resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A served resource type (one group/version/resource).
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group (`""` for core).
    pub group: String,
    /// Version served.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular resource name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names (`kubectl get deploy`).
    pub short_names: Vec<String>,
    /// Categories (`kubectl get all`).
    pub categories: Vec<String>,
    /// Whether `/status` is a subresource.
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained.
    pub tracks_generation: bool,
    /// For custom resources: the version's `openAPIV3Schema`.
    pub schema: Option<Value>,
    /// For custom resources: the CRD name.
    pub crd: Option<String>,
    /// For custom resources: additionalPrinterColumns of the version.
    pub printer_columns: Vec<Value>,
    /// For custom resources: the version's `selectableFields` JSON paths.
    pub selectable_fields: Vec<String>,
}

impl ResourceType {
    /// `group/version` or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether `/scale` is served (Deployments, StatefulSets, ReplicaSets, ReplicationControllers).
    pub fn scale_subresource(&self) -> bool {
        !self.is_custom()
            && matches!(
                (self.group.as_str(), self.kind.as_str()),
                ("apps", "Deployment" | "StatefulSet" | "ReplicaSet")
                    | ("", "ReplicationController")
            )
    }

    /// Whether this is a custom resource.
    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    /// The `APIResource` entry of `/api/v1` or `/apis/G/V`.
    pub fn api_resource(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ALL_VERBS,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if self.scale_subresource() {
            out.push(json!({
                "name": format!("{}/scale", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }

    /// The aggregated discovery (`apidiscovery.k8s.io/v2`) `APIResourceDiscovery` entry.
    pub fn resource_discovery(&self) -> Value {
        let mut r = json!({
            "resource": self.plural,
            "responseKind": {"group": self.group, "version": self.version, "kind": self.kind},
            "scope": if self.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": self.singular,
            "verbs": ALL_VERBS,
        });
        if !self.short_names.is_empty() {
            r["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            r["categories"] = json!(self.categories);
        }
        let mut subs = Vec::new();
        if self.status_subresource {
            subs.push(json!({
                "subresource": "status",
                "responseKind": {"group": self.group, "version": self.version, "kind": self.kind},
                "verbs": ["get", "patch", "update"],
            }));
        }
        if self.scale_subresource() {
            subs.push(json!({
                "subresource": "scale",
                "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                "verbs": ["get", "patch", "update"],
            }));
        }
        if !subs.is_empty() {
            r["subresources"] = Value::Array(subs);
        }
        r
    }
}

struct B(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
    bool,
    bool,
);

// group, version, kind, plural, namespaced, shortNames, categories, status subresource, generation
const BUILTINS: &[B] = &[
    B(
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        &["ns"],
        &[],
        true,
        false,
    ),
    B(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        &["cm"],
        &[],
        false,
        false,
    ),
    B("", "v1", "Secret", "secrets", true, &[], &[], false, false),
    B(
        "",
        "v1",
        "Service",
        "services",
        true,
        &["svc"],
        &["all"],
        true,
        false,
    ),
    B(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        &[],
        false,
        false,
    ),
    B(
        "",
        "v1",
        "Pod",
        "pods",
        true,
        &["po"],
        &["all"],
        true,
        false,
    ),
    B(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        &[],
        true,
        false,
    ),
    B(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        &[],
        true,
        false,
    ),
    B(
        "",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        &[],
        false,
        false,
    ),
    B(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        &["ep"],
        &[],
        false,
        false,
    ),
    B("", "v1", "Node", "nodes", false, &["no"], &[], true, false),
    B(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
        &["rc"],
        &["all"],
        true,
        true,
    ),
    B(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
        &[],
        true,
        false,
    ),
    B(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        &["limits"],
        &[],
        false,
        false,
    ),
    B(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        &["all"],
        true,
        true,
    ),
    B(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        &["all"],
        true,
        true,
    ),
    B(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        &["all"],
        true,
        true,
    ),
    B(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        &["all"],
        true,
        true,
    ),
    B(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "batch",
        "v1",
        "Job",
        "jobs",
        true,
        &[],
        &["all"],
        true,
        true,
    ),
    B(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        &["cj"],
        &["all"],
        true,
        true,
    ),
    B(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        &["ing"],
        &[],
        true,
        true,
    ),
    B(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        &[],
        &[],
        false,
        true,
    ),
    B(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
        &[],
        false,
        true,
    ),
    B(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        &["api-extensions"],
        true,
        true,
    ),
    B(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        &[],
        &[],
        false,
        false,
    ),
    B(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        &[],
        false,
        false,
    ),
    B(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        &[],
        true,
        true,
    ),
    B(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
        &["all"],
        true,
        false,
    ),
    B(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
        &[],
        false,
        false,
    ),
    B(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        &[],
        &["api-extensions"],
        false,
        true,
    ),
    B(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        &[],
        &["api-extensions"],
        false,
        true,
    ),
    B(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        &[],
        false,
        false,
    ),
];

/// The built-in resource types.
pub fn builtins() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| ResourceType {
            group: b.0.into(),
            version: b.1.into(),
            kind: b.2.into(),
            plural: b.3.into(),
            singular: b.2.to_ascii_lowercase(),
            namespaced: b.4,
            short_names: b.5.iter().map(|s| s.to_string()).collect(),
            categories: b.6.iter().map(|s| s.to_string()).collect(),
            status_subresource: b.7,
            tracks_generation: b.8,
            schema: None,
            crd: None,
            printer_columns: Vec::new(),
            selectable_fields: Vec::new(),
        })
        .collect()
}

/// The resource types an established CRD serves (one per served version).
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let crd_name = crd["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut out = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() != Some(true) {
            continue;
        }
        out.push(ResourceType {
            group: group.clone(),
            version: v["name"].as_str().unwrap_or_default().to_string(),
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: strs(&names["shortNames"]),
            categories: strs(&names["categories"]),
            status_subresource: v["subresources"].get("status").is_some(),
            tracks_generation: true,
            schema: v["schema"].get("openAPIV3Schema").cloned(),
            crd: Some(crd_name.clone()),
            printer_columns: v["additionalPrinterColumns"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            selectable_fields: v["selectableFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["jsonPath"].as_str().map(str::to_string))
                .collect(),
        });
    }
    out
}

/// Orders versions as Kubernetes does (GA > beta > alpha, then by number, others last).
pub fn version_priority(v: &str) -> (u8, u64, u64, String) {
    let rest = match v.strip_prefix('v') {
        Some(r) => r,
        None => return (0, 0, 0, v.to_string()),
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (0, 0, 0, v.to_string());
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0, String::new());
    }
    for (prefix, level) in [("beta", 2u8), ("alpha", 1u8)] {
        if let Some(n) = tail.strip_prefix(prefix)
            && let Ok(minor) = n.parse::<u64>()
        {
            return (level, major, minor, String::new());
        }
    }
    (0, 0, 0, v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v2", "v1beta1", "v1", "foo"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, vec!["v2", "v1", "v1beta1", "v1alpha1", "foo"]);
    }
}

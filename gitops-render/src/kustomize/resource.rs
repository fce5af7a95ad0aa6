//! One object in a build, with the identity history kustomize keeps.

use std::path::PathBuf;

use crate::yaml::{Map, Value};

/// A resource being built: the object and what kustomize remembers about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The object.
    pub value: Value,
    /// The file it was read from (absolute), when read from a file.
    pub origin: Option<PathBuf>,
    /// Names and namespaces it had before, oldest first (kustomize's "previous ids").
    pub(crate) prev: Vec<(String, String)>,
    /// Generated with a name-hash suffix still to add.
    pub(crate) needs_hash: bool,
    /// Generator behaviour for merging into an earlier generated object.
    pub(crate) behavior: Option<String>,
    /// Builds (kustomization ids) it passed through, innermost first.
    pub(crate) lineage: Vec<usize>,
    /// Made by a generator.
    pub(crate) generated: bool,
    /// The kustomization file and builtin kind that generated it.
    pub(crate) gen_origin: Option<(PathBuf, String)>,
    /// Builtin transformers that changed it: (kustomization file, kind).
    pub(crate) transforms: Vec<(PathBuf, String)>,
    /// Vars bound to this object when they were declared.
    pub(crate) ref_vars: Vec<String>,
}

/// A group/version/kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        Self {
            group,
            version,
            kind: kind.to_string(),
        }
    }

    /// kustomize's `Gvk.String()`: `group_version_kind` with `~G`/`~V`/`~K` for blanks.
    pub fn sort_string(&self) -> String {
        let g = if self.group.is_empty() {
            "~G"
        } else {
            &self.group
        };
        let v = if self.version.is_empty() {
            "~V"
        } else {
            &self.version
        };
        let k = if self.kind.is_empty() {
            "~K"
        } else {
            &self.kind
        };
        format!("{g}_{v}_{k}")
    }

    /// Whether objects of this kind live outside namespaces.
    pub fn is_cluster_scoped(&self) -> bool {
        is_cluster_scoped_kind(&self.group, &self.kind)
    }
}

pub(crate) fn is_cluster_scoped_kind(group: &str, kind: &str) -> bool {
    let builtin_group = matches!(
        group,
        "" | "rbac.authorization.k8s.io"
            | "apiextensions.k8s.io"
            | "storage.k8s.io"
            | "scheduling.k8s.io"
            | "node.k8s.io"
            | "policy"
            | "certificates.k8s.io"
            | "networking.k8s.io"
            | "flowcontrol.apiserver.k8s.io"
            | "admissionregistration.k8s.io"
            | "apiregistration.k8s.io"
            | "authentication.k8s.io"
            | "authorization.k8s.io"
            | "extensions"
    );
    if !builtin_group {
        return false;
    }
    match kind {
        "Namespace"
        | "Node"
        | "PersistentVolume"
        | "ComponentStatus"
        | "ClusterRole"
        | "ClusterRoleBinding"
        | "CustomResourceDefinition"
        | "StorageClass"
        | "VolumeAttachment"
        | "CSIDriver"
        | "CSINode"
        | "PriorityClass"
        | "RuntimeClass"
        | "PodSecurityPolicy"
        | "CertificateSigningRequest"
        | "IngressClass"
        | "FlowSchema"
        | "PriorityLevelConfiguration"
        | "ValidatingAdmissionPolicy"
        | "ValidatingAdmissionPolicyBinding"
        | "MutatingWebhookConfiguration"
        | "ValidatingWebhookConfiguration"
        | "TokenReview"
        | "SelfSubjectAccessReview"
        | "SelfSubjectRulesReview"
        | "SubjectAccessReview"
        | "IPAddress"
        | "ServiceCIDR" => true,
        "APIService" => group == "apiregistration.k8s.io",
        _ => false,
    }
}

impl Resource {
    /// Wraps an object that was not read from a file.
    pub fn from_value(value: Value) -> Self {
        Self::new(value, None)
    }

    /// Wraps an object read from `origin`.
    pub(crate) fn new(value: Value, origin: Option<PathBuf>) -> Self {
        Self {
            value,
            origin,
            prev: Vec::new(),
            needs_hash: false,
            behavior: None,
            lineage: Vec::new(),
            generated: false,
            gen_origin: None,
            transforms: Vec::new(),
            ref_vars: Vec::new(),
        }
    }

    pub(crate) fn map_mut(&mut self) -> &mut Map {
        if !matches!(self.value, Value::Map(_)) {
            self.value = Value::Map(Map::new());
        }
        match &mut self.value {
            Value::Map(m) => m,
            _ => unreachable!("just made a map"),
        }
    }

    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.value.str_at(&["apiVersion"]).unwrap_or("")
    }

    /// `kind`.
    pub fn kind(&self) -> &str {
        self.value.str_at(&["kind"]).unwrap_or("")
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.value.str_at(&["metadata", "name"]).unwrap_or("")
    }

    /// `metadata.namespace` (empty when unset).
    pub fn namespace(&self) -> &str {
        self.value.str_at(&["metadata", "namespace"]).unwrap_or("")
    }

    pub(crate) fn gvk(&self) -> Gvk {
        Gvk::from_api_version(self.api_version(), self.kind())
    }

    /// The namespace kustomize uses for identity ("default" when unset, "" when cluster-scoped).
    pub(crate) fn effective_ns(&self) -> String {
        effective_ns(&self.gvk(), self.namespace())
    }

    /// The original (first) name.
    pub(crate) fn org_name(&self) -> &str {
        self.prev
            .first()
            .map(|p| p.0.as_str())
            .unwrap_or(self.name())
    }

    /// The original namespace.
    pub(crate) fn org_ns(&self) -> &str {
        self.prev
            .first()
            .map(|p| p.1.as_str())
            .unwrap_or(self.namespace())
    }

    /// All names it has had, including the current one.
    pub(crate) fn all_names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.prev
            .iter()
            .map(|(n, ns)| (n.as_str(), ns.as_str()))
            .chain(std::iter::once((self.name(), self.namespace())))
    }

    /// Records the current name/namespace before a change.
    pub(crate) fn remember_id(&mut self) {
        let cur = (self.name().to_string(), self.namespace().to_string());
        if self.prev.last() != Some(&cur) {
            self.prev.push(cur);
        }
    }

    pub(crate) fn set_name(&mut self, name: &str) {
        if name == self.name() {
            return;
        }
        self.remember_id();
        metadata_mut(self.map_mut()).insert("name".into(), Value::Str(name.to_string()));
    }

    pub(crate) fn set_namespace(&mut self, ns: &str) {
        if ns == self.namespace() {
            return;
        }
        self.remember_id();
        metadata_mut(self.map_mut()).insert("namespace".into(), Value::Str(ns.to_string()));
    }

    /// kustomize's id string for messages.
    pub(crate) fn id_string(&self) -> String {
        let gvk = self.gvk();
        let mut s = gvk.kind.clone();
        if !gvk.version.is_empty() {
            s.push('.');
            s.push_str(&gvk.version);
        }
        if !gvk.group.is_empty() {
            s.push('.');
            s.push_str(&gvk.group);
        }
        s.push('/');
        s.push_str(self.name());
        s.push('.');
        s.push_str(self.namespace());
        s
    }

    /// Labels.
    pub(crate) fn labels(&self) -> Option<&Map> {
        self.value
            .get_path(&["metadata", "labels"])
            .and_then(Value::as_map)
    }

    /// Annotations.
    pub(crate) fn annotations(&self) -> Option<&Map> {
        self.value
            .get_path(&["metadata", "annotations"])
            .and_then(Value::as_map)
    }
}

pub(crate) fn effective_ns(gvk: &Gvk, ns: &str) -> String {
    if gvk.is_cluster_scoped() {
        String::new()
    } else if ns.is_empty() {
        "default".to_string()
    } else {
        ns.to_string()
    }
}

pub(crate) fn metadata_mut(m: &mut Map) -> &mut Map {
    let md = m
        .entry("metadata".to_string())
        .or_insert_with(|| Value::Map(Map::new()));
    if !matches!(md, Value::Map(_)) {
        *md = Value::Map(Map::new());
    }
    match md {
        Value::Map(m) => m,
        _ => unreachable!("just made a map"),
    }
}

/// Gets or creates a child mapping.
pub(crate) fn child_map<'a>(m: &'a mut Map, key: &str) -> &'a mut Map {
    let v = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Map(Map::new()));
    if !matches!(v, Value::Map(_)) {
        *v = Value::Map(Map::new());
    }
    match v {
        Value::Map(m) => m,
        _ => unreachable!("just made a map"),
    }
}

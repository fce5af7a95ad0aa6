//! What the server knows of an object's structure: list types and merge keys, atomic maps,
//! and (for managedFields) which maps are Go value structs that always exist.
//!
//! Built-in kinds use a table of the `+listType`/`+listMapKey`/`patchMergeKey` markers of the
//! Kubernetes API types for the lists that matter; custom resources read their CRD schema's
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`.

use serde_json::Value;

/// How a list merges (server-side apply and strategic merge patch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars.
    Set,
    /// A map keyed by these fields (the first one is the strategic-merge-patch key).
    Map(Vec<String>),
}

/// The structure knowledge for one kind.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    kind: &'a str,
    schema: Option<&'a Value>,
    custom: bool,
}

impl<'a> Shape<'a> {
    /// The shape of a built-in kind.
    pub fn builtin(kind: &'a str) -> Self {
        Shape {
            kind,
            schema: None,
            custom: false,
        }
    }

    /// The shape of a custom resource with its version's `openAPIV3Schema`.
    pub fn custom(kind: &'a str, schema: Option<&'a Value>) -> Self {
        Shape {
            kind,
            schema,
            custom: true,
        }
    }

    fn schema_at(&self, path: &[String]) -> Option<&'a Value> {
        let mut s = self.schema?;
        for seg in path {
            while let Some(items) = s.get("items") {
                s = items;
            }
            if let Some(p) = s.get("properties").and_then(|p| p.get(seg.as_str())) {
                s = p;
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                s = ap;
            } else {
                return None;
            }
        }
        Some(s)
    }

    /// The list type of the list at `path` (field names from the root, list items skipped).
    pub fn list_type(&self, path: &[String]) -> ListType {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["metadata", "finalizers"] => return ListType::Set,
            ["metadata", "ownerReferences"] => return ListType::Map(vec!["uid".into()]),
            ["metadata", "managedFields"] => return ListType::Atomic,
            _ => {}
        }
        if self.custom {
            let Some(s) = self.schema_at(path) else {
                return ListType::Atomic;
            };
            return match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListType::Set,
                Some("map") => ListType::Map(
                    s.get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|k| k.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                _ => ListType::Atomic,
            };
        }
        let last = p.last().copied().unwrap_or_default();
        let in_container = p.len() >= 2
            && matches!(
                p[p.len() - 2],
                "containers" | "initContainers" | "ephemeralContainers"
            );
        let keys: &[&str] = match last {
            "containers" | "initContainers" | "ephemeralContainers" => &["name"],
            "ports" if in_container => &["containerPort", "protocol"],
            "ports" if self.kind == "Service" && p == ["spec", "ports"] => &["port", "protocol"],
            "env" | "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"
            | "webhooks" => &["name"],
            "volumeMounts" => &["mountPath"],
            "volumeDevices" => &["devicePath"],
            "conditions" => &["type"],
            "hostAliases" => &["ip"],
            "topologySpreadConstraints" => &["topologyKey", "whenUnsatisfiable"],
            _ => return ListType::Atomic,
        };
        ListType::Map(keys.iter().map(|s| s.to_string()).collect())
    }

    /// Whether the map at `path` is atomic (owned and replaced as a whole).
    pub fn map_atomic(&self, path: &[String]) -> bool {
        if path.first().map(String::as_str) == Some("metadata") {
            return false;
        }
        if self.custom {
            return self
                .schema_at(path)
                .and_then(|s| s.get("x-kubernetes-map-type"))
                .and_then(Value::as_str)
                == Some("atomic");
        }
        let last = path.last().map(String::as_str).unwrap_or_default();
        match last {
            "podSelector" | "namespaceSelector" | "labelSelector" | "roleRef" => true,
            "selector" => !matches!(self.kind, "Service" | "ReplicationController"),
            _ => false,
        }
    }

    /// Whether the map at `path` exists in a zero-value object (a Go value struct, or a field
    /// without `omitempty`), so creating it is not an "added" field of its own in managedFields.
    pub fn zero_present(&self, path: &[String]) -> bool {
        if self.custom {
            return false;
        }
        let mut parent_ok = true;
        for (i, seg) in path.iter().enumerate() {
            let ok = match seg.as_str() {
                "metadata" | "spec" | "status" => i == 0 || parent_ok,
                "template" | "strategy" | "updateStrategy" | "jobTemplate" => i > 0 && parent_ok,
                // `containers` is serialized as `null` in a zero PodSpec (no omitempty).
                "containers" => i > 0 && i + 1 == path.len() && parent_ok,
                _ => false,
            };
            parent_ok = ok;
        }
        parent_ok && !path.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn builtin_lists_use_the_api_markers() {
        let d = Shape::builtin("Deployment");
        assert_eq!(
            d.list_type(&p("spec.template.spec.containers")),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(
            d.list_type(&p("spec.template.spec.containers.ports")),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(
            d.list_type(&p("spec.template.spec.containers.args")),
            ListType::Atomic
        );
        assert!(d.map_atomic(&p("spec.selector")));
        assert!(!Shape::builtin("Service").map_atomic(&p("spec.selector")));
        assert!(d.zero_present(&p("spec.template.spec")));
        assert!(!d.zero_present(&p("spec.strategy.rollingUpdate")));
    }

    #[test]
    fn custom_lists_read_the_schema() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                      "items": {"type": "object", "properties": {"tags": {"type": "array", "x-kubernetes-list-type": "set"}}}}}}}});
        let s = Shape::custom("Foo", Some(&schema));
        assert_eq!(
            s.list_type(&p("spec.items")),
            ListType::Map(vec!["id".into()])
        );
        assert_eq!(s.list_type(&p("spec.items.tags")), ListType::Set);
        assert_eq!(s.list_type(&p("spec.other")), ListType::Atomic);
    }
}

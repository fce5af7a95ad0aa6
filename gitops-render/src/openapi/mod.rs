//! OpenAPI schemas as kustomize's strategic merge reads them.
//!
//! kustomize (kyaml) decides how to merge a list from the OpenAPI schema of the field: a list
//! whose `x-kubernetes-patch-strategy` includes `merge` is merged element by element on its
//! `x-kubernetes-list-map-keys` (else its `x-kubernetes-patch-merge-key`); every other list,
//! and every list of a kind the schema does not know, is replaced. This module holds such
//! schemas: the built-in one kustomize v5.5 embeds (Kubernetes v1.21.2, generated into
//! `kubernetes_v1_21_2.json` by `gen_builtin.py` from the copy inside `kubectl`) and custom
//! ones a kustomization names under `openapi: {path: ...}`.
//!
//! A [`Schema`] is a set of definitions indexed by their `x-kubernetes-group-version-kind`;
//! [`Schema::for_type`] finds a resource's schema and [`Schema::field`] /
//! [`Schema::elements`] walk it, following `$ref`s as kyaml does.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde_json::Value as Json;

/// One schema node: what kyaml's walker reads of an OpenAPI schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// `$ref`, as written (`#/definitions/NAME`).
    pub reference: Option<String>,
    /// `type` (one or more).
    pub types: Vec<String>,
    /// `properties`.
    pub properties: HashMap<String, Node>,
    /// `items` of an array.
    pub items: Option<Box<Node>>,
    /// `additionalProperties` of a map.
    pub additional: Option<Box<Node>>,
    /// `x-kubernetes-patch-strategy`.
    pub patch_strategy: Option<String>,
    /// `x-kubernetes-patch-merge-key`.
    pub merge_key: Option<String>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: Vec<String>,
}

impl Node {
    fn from_json(v: &Json) -> Node {
        let Some(m) = v.as_object() else {
            return Node::default();
        };
        let s = |k: &str| m.get(k).and_then(Json::as_str).map(str::to_string);
        let types = match m.get("type") {
            Some(Json::String(t)) => vec![t.clone()],
            Some(Json::Array(a)) => a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let properties = m
            .get("properties")
            .and_then(Json::as_object)
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), Node::from_json(v)))
                    .collect()
            })
            .unwrap_or_default();
        let items = match m.get("items") {
            Some(i @ Json::Object(_)) => Some(Box::new(Node::from_json(i))),
            // A list of schemas (tuple form): kyaml's spec keeps the first for `Items.Schema`
            // only when there is a single one.
            _ => None,
        };
        let additional = match m.get("additionalProperties") {
            Some(a @ Json::Object(_)) => Some(Box::new(Node::from_json(a))),
            _ => None,
        };
        let list_map_keys = m
            .get("x-kubernetes-list-map-keys")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Node {
            reference: s("$ref"),
            types,
            properties,
            items,
            additional,
            patch_strategy: s("x-kubernetes-patch-strategy"),
            merge_key: s("x-kubernetes-patch-merge-key"),
            list_map_keys,
        }
    }

    /// kyaml's `PatchStrategyAndKeyList`: the strategy and the merge keys (the list-map
    /// keys when given, else the merge key); `None` without a strategy.
    pub fn strategy_and_keys(&self) -> Option<(&str, Vec<&str>)> {
        let strategy = self.patch_strategy.as_deref()?;
        let keys = if !self.list_map_keys.is_empty() {
            self.list_map_keys.iter().map(String::as_str).collect()
        } else {
            self.merge_key.iter().map(String::as_str).collect()
        };
        Some((strategy, keys))
    }

    /// Whether the list this node describes is merged element by element.
    pub fn merges(&self) -> bool {
        self.patch_strategy
            .as_deref()
            .is_some_and(|s| s.split(',').any(|p| p == "merge"))
    }
}

/// A set of OpenAPI definitions indexed by resource type.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    defs: HashMap<String, Node>,
    /// `(apiVersion, kind)` to definition name.
    by_type: HashMap<(String, String), String>,
}

/// Why a schema document could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid OpenAPI schema: {0}")]
pub struct SchemaError(pub String);

impl Schema {
    /// Reads a swagger document (`{"definitions": {...}}`) given as JSON.
    pub fn from_json(doc: &Json) -> Result<Schema, SchemaError> {
        let Some(root) = doc.as_object() else {
            return Err(SchemaError("the document is not a mapping".into()));
        };
        let mut s = Schema::default();
        let Some(defs) = root.get("definitions") else {
            return Ok(s);
        };
        let Some(defs) = defs.as_object() else {
            return Err(SchemaError("definitions must be a mapping".into()));
        };
        for (name, d) in defs {
            if let Some(Json::Array(gvks)) = d.get("x-kubernetes-group-version-kind") {
                for g in gvks {
                    let (Some(kind), Some(version)) = (
                        g.get("kind").and_then(Json::as_str),
                        g.get("version").and_then(Json::as_str),
                    ) else {
                        continue;
                    };
                    let api = match g.get("group").and_then(Json::as_str) {
                        Some(group) if !group.is_empty() => format!("{group}/{version}"),
                        _ => version.to_string(),
                    };
                    s.by_type.insert((api, kind.to_string()), name.clone());
                }
            }
            s.defs.insert(name.clone(), Node::from_json(d));
        }
        Ok(s)
    }

    /// `self` with `over`'s definitions added, replacing same-named ones (kyaml indexing a
    /// second document into its global schema).
    pub fn with(&self, over: &Schema) -> Schema {
        let mut s = self.clone();
        for (k, v) in &over.defs {
            s.defs.insert(k.clone(), v.clone());
        }
        for (k, v) in &over.by_type {
            s.by_type.insert(k.clone(), v.clone());
        }
        s
    }

    /// The built-in schema of kustomize v5.5 (Kubernetes v1.21.2).
    pub fn builtin() -> Arc<Schema> {
        BUILTIN.clone()
    }

    /// The schema of a resource type, if the schema defines it.
    pub fn for_type(&self, api_version: &str, kind: &str) -> Option<&Node> {
        let name = self
            .by_type
            .get(&(api_version.to_string(), kind.to_string()))?;
        self.defs.get(name)
    }

    /// Follows `$ref`s to the node they name (`None` when one cannot be resolved).
    pub fn resolve<'a>(&'a self, mut n: &'a Node) -> Option<&'a Node> {
        let mut hops = 0;
        while let Some(r) = &n.reference {
            let name = r.strip_prefix("#/definitions/")?;
            n = self.defs.get(name)?;
            hops += 1;
            if hops > 64 {
                return None;
            }
        }
        Some(n)
    }

    /// kyaml's `Field`: the schema of a mapping's field (a property, else the value schema of
    /// a map), references resolved.
    pub fn field<'a>(&'a self, n: &'a Node, name: &str) -> Option<&'a Node> {
        let f = match n.properties.get(name) {
            Some(f) => f,
            None => n.additional.as_deref()?,
        };
        self.resolve(f)
    }

    /// kyaml's `Elements`: the schema of an array's items, references resolved.
    pub fn elements<'a>(&'a self, n: &'a Node) -> Option<&'a Node> {
        if n.types.len() != 1 || n.types[0] != "array" {
            return None;
        }
        self.resolve(n.items.as_deref()?)
    }
}

static BUILTIN_JSON: &str = include_str!("kubernetes_v1_21_2.json");

static BUILTIN: LazyLock<Arc<Schema>> = LazyLock::new(|| {
    let doc: Json =
        serde_json::from_str(BUILTIN_JSON).expect("the embedded OpenAPI schema is valid JSON");
    Arc::new(Schema::from_json(&doc).expect("the embedded OpenAPI schema has definitions"))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schema_has_kubernetes_merge_keys() {
        let s = Schema::builtin();
        let dep = s.for_type("apps/v1", "Deployment").expect("Deployment");
        let spec = s.field(dep, "spec").expect("spec");
        let pod = s
            .field(s.field(spec, "template").expect("template"), "spec")
            .expect("pod spec");
        let containers = s.field(pod, "containers").expect("containers");
        assert!(containers.merges());
        assert_eq!(
            containers.strategy_and_keys(),
            Some(("merge", vec!["name"]))
        );
        let c = s.elements(containers).expect("container");
        let ports = s.field(c, "ports").expect("ports");
        assert_eq!(
            ports.strategy_and_keys(),
            Some(("merge", vec!["containerPort", "protocol"]))
        );
        let volumes = s.field(pod, "volumes").expect("volumes");
        assert_eq!(
            volumes.strategy_and_keys(),
            Some(("merge,retainKeys", vec!["name"]))
        );
        // Lists without a strategy are replaced.
        assert!(!s.field(c, "args").expect("args").merges());
        let rb = s
            .for_type("rbac.authorization.k8s.io/v1", "RoleBinding")
            .expect("RoleBinding");
        assert!(!s.field(rb, "subjects").expect("subjects").merges());
        // Maps give the schema of their values.
        let md = s.field(dep, "metadata").expect("metadata");
        assert!(s.field(md, "labels").is_some());
        assert!(s.field(md, "finalizers").expect("finalizers").merges());
        // Kinds newer than v1.21 or removed before it are unknown.
        assert!(s.for_type("extensions/v1beta1", "Deployment").is_none());
        assert!(s.for_type("example.com/v1", "Widget").is_none());
    }
}

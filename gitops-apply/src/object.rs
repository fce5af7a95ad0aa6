//! Object identity: `ObjectRef` (group, kind, namespace, name) and Flux's inventory id format.

use std::{fmt, str::FromStr};

use kube::core::DynamicObject;

/// The identity of one Kubernetes object: API group, kind, namespace (empty when
/// cluster-scoped) and name. The version is not part of the identity, as in Flux's `ObjMetadata`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ObjectRef {
    /// API group, empty for the core group (`""` for `v1` kinds).
    pub group: String,
    /// Kind, as in `Deployment`.
    pub kind: String,
    /// Namespace, empty for cluster-scoped objects (or namespaced objects without one yet).
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Flux's alias: the same identity is called `ObjMetadata` in `fluxcd/pkg/ssa`.
pub type ObjMetadata = ObjectRef;

/// Why a string is not an inventory id, or an object has no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectRefError {
    /// The id does not have the four `_`-separated parts `<ns>_<name>_<group>_<kind>`.
    #[error("inventory id {id:?} is not of the form <namespace>_<name>_<group>_<kind>")]
    InvalidId {
        /// The id as given.
        id: String,
    },
    /// An object lacks `apiVersion`, `kind` or `metadata.name`.
    #[error("object #{index} has no {field}")]
    MissingField {
        /// Position of the object in the set.
        index: usize,
        /// The missing field, as in `metadata.name`.
        field: &'static str,
    },
}

impl ObjectRef {
    /// Builds a reference from its parts.
    pub fn new(
        group: impl Into<String>,
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The identity of a dynamic object, or the field it lacks (`index` names it in errors).
    pub fn from_object(obj: &DynamicObject, index: usize) -> Result<Self, ObjectRefError> {
        let types = obj.types.as_ref().ok_or(ObjectRefError::MissingField {
            index,
            field: "apiVersion",
        })?;
        if types.api_version.is_empty() {
            return Err(ObjectRefError::MissingField {
                index,
                field: "apiVersion",
            });
        }
        if types.kind.is_empty() {
            return Err(ObjectRefError::MissingField {
                index,
                field: "kind",
            });
        }
        let name = obj.metadata.name.clone().filter(|n| !n.is_empty()).ok_or(
            ObjectRefError::MissingField {
                index,
                field: "metadata.name",
            },
        )?;
        let (group, _) = split_api_version(&types.api_version);
        Ok(Self {
            group: group.to_string(),
            kind: types.kind.clone(),
            namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            name,
        })
    }

    /// Flux's inventory id `<namespace>_<name>_<group>_<kind>`. A `:` in the name (RBAC names
    /// such as `system:metrics`) is written `__`, as cli-utils does, so the id stays parseable.
    pub fn inventory_id(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.namespace,
            self.name.replace(':', "__"),
            self.group,
            self.kind
        )
    }

    /// Parses Flux's inventory id (the inverse of [`ObjectRef::inventory_id`]).
    pub fn parse_inventory_id(id: &str) -> Result<Self, ObjectRefError> {
        let invalid = || ObjectRefError::InvalidId { id: id.to_string() };
        let parts: Vec<&str> = id.split('_').collect();
        if parts.len() < 4 {
            return Err(invalid());
        }
        let namespace = parts[0];
        let kind = parts[parts.len() - 1];
        let group = parts[parts.len() - 2];
        let name = parts[1..parts.len() - 2].join("_").replace("__", ":");
        if kind.is_empty() || name.is_empty() {
            return Err(invalid());
        }
        Ok(Self::new(group, kind, namespace, name))
    }

    /// True when the object is one of the kinds that define the cluster's schema or scopes
    /// (CRD, Namespace, ClusterRole): Flux applies them first and waits for them.
    pub fn is_cluster_definition(&self) -> bool {
        matches!(
            (self.group.as_str(), self.kind.as_str()),
            ("apiextensions.k8s.io", "CustomResourceDefinition")
                | ("", "Namespace")
                | ("rbac.authorization.k8s.io", "ClusterRole")
        )
    }

    /// True for kinds ending in `Class` (StorageClass, IngressClass, ...), Flux's second stage.
    pub fn is_class(&self) -> bool {
        self.kind.ends_with("Class")
    }
}

impl fmt::Display for ObjectRef {
    /// `Kind/namespace/name`, or `Kind/name` for cluster-scoped objects, as Flux's change log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl FromStr for ObjectRef {
    type Err = ObjectRefError;

    /// Parses the inventory id form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_inventory_id(s)
    }
}

/// Splits `group/version` (or a bare `version` for the core group) into its parts.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_id_round_trips_namespaced_and_cluster_scoped() {
        let deploy = ObjectRef::new("apps", "Deployment", "podinfo", "frontend");
        assert_eq!(deploy.inventory_id(), "podinfo_frontend_apps_Deployment");
        assert_eq!(
            ObjectRef::parse_inventory_id("podinfo_frontend_apps_Deployment"),
            Ok(deploy)
        );
        let ns = ObjectRef::new("", "Namespace", "", "podinfo");
        assert_eq!(ns.inventory_id(), "_podinfo__Namespace");
        assert_eq!(ns.inventory_id().parse::<ObjectRef>(), Ok(ns));
    }

    #[test]
    fn inventory_id_escapes_colons_in_rbac_names() {
        let role = ObjectRef::new(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "",
            "system:metrics",
        );
        let id = role.inventory_id();
        assert_eq!(id, "_system__metrics_rbac.authorization.k8s.io_ClusterRole");
        assert_eq!(ObjectRef::parse_inventory_id(&id), Ok(role));
    }

    #[test]
    fn malformed_ids_are_rejected() {
        assert!(ObjectRef::parse_inventory_id("a_b_c").is_err());
        assert!(ObjectRef::parse_inventory_id("ns__apps_").is_err());
    }

    #[test]
    fn display_omits_empty_namespace() {
        assert_eq!(
            ObjectRef::new("", "ConfigMap", "default", "x").to_string(),
            "ConfigMap/default/x"
        );
        assert_eq!(
            ObjectRef::new("", "Namespace", "", "x").to_string(),
            "Namespace/x"
        );
    }

    #[test]
    fn from_object_requires_identity_fields() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod"}
        }))
        .expect("valid object");
        assert_eq!(
            ObjectRef::from_object(&obj, 0),
            Ok(ObjectRef::new("apps", "Deployment", "prod", "web"))
        );
        let nameless: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {}
        }))
        .expect("valid object");
        assert_eq!(
            ObjectRef::from_object(&nameless, 3),
            Err(ObjectRefError::MissingField {
                index: 3,
                field: "metadata.name"
            })
        );
    }
}

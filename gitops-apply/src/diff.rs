//! The drift report: a unified YAML diff per object, without server noise, Secret values masked.

use serde_json::Value;

use crate::{
    normalize::{normalize, sorted_keys},
    object::ObjectRef,
};

/// Why a diff could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The object could not be written as YAML.
    #[error("cannot write {object} as YAML: {source}")]
    Yaml {
        /// The object.
        object: String,
        /// The serialiser's error.
        source: serde_saphyr::ser::Error,
    },
}

const MASK: &str = "*** (masked)";
const MASK_BEFORE: &str = "*** (before)";
const MASK_AFTER: &str = "*** (after)";

/// Replaces Secret values in `data` and `stringData` with masks. Values equal on both sides
/// become the same mask; different values get distinct masks, so the diff shows *that* a key
/// changed without showing either value.
pub fn mask_secret_values(live: &mut Option<Value>, desired: &mut Value) {
    let is_secret = |v: &Value| {
        v.get("kind").and_then(Value::as_str) == Some("Secret")
            && v.get("apiVersion").and_then(Value::as_str) == Some("v1")
    };
    if !is_secret(desired) && !live.as_ref().is_some_and(is_secret) {
        return;
    }
    for field in ["data", "stringData"] {
        let live_values = live
            .as_ref()
            .and_then(|l| l.get(field))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let desired_values = desired
            .get(field)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(map) = desired.get_mut(field).and_then(Value::as_object_mut) {
            for (k, v) in map.iter_mut() {
                let same = live_values.get(k) == Some(v);
                *v = Value::String(if same { MASK } else { MASK_AFTER }.into());
            }
        }
        if let Some(map) = live
            .as_mut()
            .and_then(|l| l.get_mut(field))
            .and_then(Value::as_object_mut)
        {
            for (k, v) in map.iter_mut() {
                let same = desired_values.get(k) == Some(v);
                *v = Value::String(if same { MASK } else { MASK_BEFORE }.into());
            }
        }
    }
}

/// A unified diff from `live` (absent when the object does not exist) to `desired`, both
/// normalised, as YAML. Empty when they are the same. Headers name the object.
pub fn unified_diff(
    object: &ObjectRef,
    live: Option<&Value>,
    desired: &Value,
) -> Result<String, DiffError> {
    let mut live = live.map(|v| sorted_keys(&normalize(v)));
    let mut desired = sorted_keys(&normalize(desired));
    mask_secret_values(&mut live, &mut desired);
    let to_yaml = |v: &Value| {
        serde_saphyr::to_string(v).map_err(|source| DiffError::Yaml {
            object: object.to_string(),
            source,
        })
    };
    let before = match &live {
        Some(v) => to_yaml(v)?,
        None => String::new(),
    };
    let after = to_yaml(&desired)?;
    if before == after {
        return Ok(String::new());
    }
    let diff = similar::TextDiff::from_lines(&before, &after);
    Ok(diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{object}"), &format!("merged/{object}"))
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_shows_changed_fields_without_managed_fields_noise() {
        let obj = ObjectRef::new("apps", "Deployment", "a", "web");
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "a", "resourceVersion": "12",
                         "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {"replicas": 5}, "status": {"replicas": 5}});
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "a"}, "spec": {"replicas": 2}});
        let diff = unified_diff(&obj, Some(&live), &desired).expect("renders");
        assert!(
            diff.starts_with("--- live/Deployment/a/web\n+++ merged/Deployment/a/web\n"),
            "{diff}"
        );
        assert!(diff.contains("-  replicas: 5\n"), "{diff}");
        assert!(diff.contains("+  replicas: 2\n"), "{diff}");
        assert!(!diff.contains("managedFields"), "{diff}");
        assert!(!diff.contains("resourceVersion"), "{diff}");
        assert!(!diff.contains("status"), "{diff}");
        assert_eq!(
            unified_diff(&obj, Some(&desired), &desired).expect("renders"),
            ""
        );
    }

    #[test]
    fn secret_values_never_appear_in_a_diff() {
        let obj = ObjectRef::new("", "Secret", "a", "db");
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "a"},
                          "data": {"user": "YWRtaW4=", "password": "b2xkLXBhc3N3b3Jk"}});
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "a"},
                             "stringData": {"user": "admin", "password": "new-password"}});
        let diff = unified_diff(&obj, Some(&live), &desired).expect("renders");
        for secret in [
            "YWRtaW4=",
            "b2xkLXBhc3N3b3Jk",
            "new-password",
            "bmV3LXBhc3N3b3Jk",
            "admin",
        ] {
            assert!(!diff.contains(secret), "leaked {secret}: {diff}");
        }
        assert!(
            diff.contains("-  password: '*** (before)'")
                || diff.contains("-  password: \"*** (before)\""),
            "{diff}"
        );
        assert!(diff.contains("*** (after)"), "{diff}");
        assert!(
            !diff.contains("+  user"),
            "unchanged key shown as changed: {diff}"
        );
    }

    #[test]
    fn key_order_is_not_a_change() {
        let obj = ObjectRef::new("", "Service", "a", "s");
        let live = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}});
        let desired = json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "s"},
            "spec": {"ports": [{"protocol": "TCP", "port": 80}], "type": "ClusterIP"}});
        assert_eq!(
            unified_diff(&obj, Some(&live), &desired).expect("renders"),
            ""
        );
    }

    #[test]
    fn new_object_diffs_against_nothing() {
        let obj = ObjectRef::new("", "ConfigMap", "a", "c");
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
        let diff = unified_diff(&obj, None, &desired).expect("renders");
        assert!(diff.contains("+kind: ConfigMap"), "{diff}");
        assert!(
            !diff
                .lines()
                .any(|l| l.starts_with('-') && !l.starts_with("---")),
            "{diff}"
        );
    }
}

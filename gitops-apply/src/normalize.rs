//! Drift normalisation: the parts of an object that are not desired state are stripped, and
//! equivalent spellings are made equal, before a live object is compared with a desired one.
//!
//! - `status` and server-owned metadata (`managedFields`, `resourceVersion`, `uid`,
//!   `generation`, `creationTimestamp`, `selfLink`, deletion fields) are removed;
//! - empty `labels` / `annotations` maps are removed (absent and empty mean the same);
//! - a Secret's `stringData` is folded into `data` as base64, as the API server does;
//! - container and Service ports without `protocol` get the API default `TCP`.

use base64::Engine as _;
use serde_json::{Map, Value};

const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Returns the object normalised for comparison (see the module docs).
pub fn normalize(obj: &Value) -> Value {
    let mut out = obj.clone();
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    map.remove("status");
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in SERVER_METADATA {
            meta.remove(*key);
        }
        for key in ["labels", "annotations"] {
            if meta
                .get(key)
                .is_some_and(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty))
            {
                meta.remove(key);
            }
        }
    }
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if api_version == "v1" && kind == "Secret" {
        fold_string_data(map);
    }
    default_port_protocols(map, &kind);
    out
}

fn fold_string_data(secret: &mut Map<String, Value>) {
    let Some(Value::Object(string_data)) = secret.remove("stringData") else {
        return;
    };
    let data = secret
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = match &v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            data.insert(
                k,
                Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

fn default_protocol(ports: Option<&mut Value>) {
    if let Some(Value::Array(ports)) = ports {
        for port in ports {
            if let Some(p) = port.as_object_mut() {
                p.entry("protocol")
                    .or_insert_with(|| Value::String("TCP".into()));
            }
        }
    }
}

fn pod_spec_ports(spec: Option<&mut Value>) {
    let Some(spec) = spec.and_then(Value::as_object_mut) else {
        return;
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for c in containers {
                default_protocol(c.get_mut("ports"));
            }
        }
    }
}

fn default_port_protocols(map: &mut Map<String, Value>, kind: &str) {
    let spec = map.get_mut("spec");
    match kind {
        "Service" => default_protocol(spec.and_then(|s| s.get_mut("ports"))),
        "Pod" => pod_spec_ports(spec),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => pod_spec_ports(
            spec.and_then(|s| s.get_mut("template"))
                .and_then(|t| t.get_mut("spec")),
        ),
        "CronJob" => pod_spec_ports(
            spec.and_then(|s| s.get_mut("jobTemplate"))
                .and_then(|j| j.get_mut("spec"))
                .and_then(|s| s.get_mut("template"))
                .and_then(|t| t.get_mut("spec")),
        ),
        _ => {}
    }
}

/// The value with every mapping's keys in sorted order: two objects that differ only in key
/// order print (and hash) the same.
pub fn sorted_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted_keys(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

/// True when `desired` (for Flux: the server-side dry-run result) differs from `live` in
/// labels, annotations, or anything outside `metadata` and `status`, after normalisation.
pub fn has_drifted(live: &Value, desired: &Value) -> bool {
    let live = normalize(live);
    let desired = normalize(desired);
    let meta = |v: &Value, key: &str| v.get("metadata").and_then(|m| m.get(key)).cloned();
    if meta(&live, "labels") != meta(&desired, "labels")
        || meta(&live, "annotations") != meta(&desired, "annotations")
    {
        return true;
    }
    let body = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
        }
        v
    };
    body(&live) != body(&desired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_status_and_server_metadata() {
        let live = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "a", "uid": "1", "resourceVersion": "7",
                         "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
                         "managedFields": [{"manager": "x"}], "labels": {}},
            "data": {"k": "v"}, "status": {"x": 1}
        });
        assert_eq!(
            normalize(&live),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "namespace": "a"}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn folds_secret_string_data_into_base64_data() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                             "data": {"a": "YQ=="}, "stringData": {"b": "hello"}});
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                          "data": {"a": "YQ==", "b": "aGVsbG8="}});
        assert_eq!(normalize(&desired), normalize(&live));
        assert!(!has_drifted(&live, &desired));
        let changed = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                             "stringData": {"a": "a", "b": "bye"}});
        assert!(has_drifted(&live, &changed));
    }

    #[test]
    fn defaults_port_protocols_on_services_and_pod_templates() {
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}}}});
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}});
        assert!(!has_drifted(&live, &desired));
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                         "spec": {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 80}]}});
        assert_eq!(
            normalize(&svc)["spec"]["ports"],
            json!([{"port": 53, "protocol": "UDP"}, {"port": 80, "protocol": "TCP"}])
        );
    }

    #[test]
    fn label_annotation_and_spec_changes_are_drift_but_status_is_not() {
        let base = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"a": "1"}, "annotations": {"x": "y"}},
            "spec": {"replicas": 2}, "status": {"readyReplicas": 2}});
        let mut other = base.clone();
        other["status"]["readyReplicas"] = json!(0);
        other["metadata"]["resourceVersion"] = json!("99");
        assert!(!has_drifted(&base, &other));
        let mut scaled = base.clone();
        scaled["spec"]["replicas"] = json!(3);
        assert!(has_drifted(&base, &scaled));
        let mut relabelled = base.clone();
        relabelled["metadata"]["labels"]["a"] = json!("2");
        assert!(has_drifted(&base, &relabelled));
        let mut annotated = base.clone();
        annotated["metadata"]["annotations"]["z"] = json!("w");
        assert!(has_drifted(&base, &annotated));
    }
}

//! Built-in kinds: decoding (typed round trip that drops unknown fields), defaulting, status
//! resets, and validation including immutable fields, after the kube-apiserver registry
//! strategies and `k8s.io/kubernetes/pkg/apis/*/v1/defaults.go`.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{
    registry::ResourceType,
    server::Inner,
    status::{self, ApiError, Cause},
    store::State,
};

macro_rules! round_trip {
    ($v:expr, $t:ty) => {
        serde_json::from_value::<$t>($v.clone())
            .map_err(|e| e.to_string())
            .and_then(|o| serde_json::to_value(o).map_err(|e| e.to_string()))
    };
}

fn typed_round_trip(group: &str, kind: &str, v: &Value) -> Option<Result<Value, String>> {
    use k8s_openapi::api as a;
    Some(match (group, kind) {
        ("", "Namespace") => round_trip!(v, a::core::v1::Namespace),
        ("", "ConfigMap") => round_trip!(v, a::core::v1::ConfigMap),
        ("", "Secret") => round_trip!(v, a::core::v1::Secret),
        ("", "Service") => round_trip!(v, a::core::v1::Service),
        ("", "ServiceAccount") => round_trip!(v, a::core::v1::ServiceAccount),
        ("", "Pod") => round_trip!(v, a::core::v1::Pod),
        ("", "PersistentVolumeClaim") => round_trip!(v, a::core::v1::PersistentVolumeClaim),
        ("", "PersistentVolume") => round_trip!(v, a::core::v1::PersistentVolume),
        ("", "Event") => round_trip!(v, a::core::v1::Event),
        ("", "Endpoints") => round_trip!(v, a::core::v1::Endpoints),
        ("", "Node") => round_trip!(v, a::core::v1::Node),
        ("", "ReplicationController") => round_trip!(v, a::core::v1::ReplicationController),
        ("", "ResourceQuota") => round_trip!(v, a::core::v1::ResourceQuota),
        ("", "LimitRange") => round_trip!(v, a::core::v1::LimitRange),
        ("apps", "Deployment") => round_trip!(v, a::apps::v1::Deployment),
        ("apps", "StatefulSet") => round_trip!(v, a::apps::v1::StatefulSet),
        ("apps", "DaemonSet") => round_trip!(v, a::apps::v1::DaemonSet),
        ("apps", "ReplicaSet") => round_trip!(v, a::apps::v1::ReplicaSet),
        ("apps", "ControllerRevision") => round_trip!(v, a::apps::v1::ControllerRevision),
        ("batch", "Job") => round_trip!(v, a::batch::v1::Job),
        ("batch", "CronJob") => round_trip!(v, a::batch::v1::CronJob),
        ("networking.k8s.io", "Ingress") => round_trip!(v, a::networking::v1::Ingress),
        ("networking.k8s.io", "IngressClass") => round_trip!(v, a::networking::v1::IngressClass),
        ("networking.k8s.io", "NetworkPolicy") => round_trip!(v, a::networking::v1::NetworkPolicy),
        ("rbac.authorization.k8s.io", "Role") => round_trip!(v, a::rbac::v1::Role),
        ("rbac.authorization.k8s.io", "RoleBinding") => round_trip!(v, a::rbac::v1::RoleBinding),
        ("rbac.authorization.k8s.io", "ClusterRole") => round_trip!(v, a::rbac::v1::ClusterRole),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            round_trip!(v, a::rbac::v1::ClusterRoleBinding)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => round_trip!(
            v,
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition
        ),
        ("coordination.k8s.io", "Lease") => round_trip!(v, a::coordination::v1::Lease),
        ("events.k8s.io", "Event") => round_trip!(v, a::events::v1::Event),
        ("policy", "PodDisruptionBudget") => round_trip!(v, a::policy::v1::PodDisruptionBudget),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            round_trip!(v, a::autoscaling::v2::HorizontalPodAutoscaler)
        }
        ("storage.k8s.io", "StorageClass") => round_trip!(v, a::storage::v1::StorageClass),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            round_trip!(v, a::admissionregistration::v1::ValidatingWebhookConfiguration)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            round_trip!(v, a::admissionregistration::v1::MutatingWebhookConfiguration)
        }
        ("scheduling.k8s.io", "PriorityClass") => round_trip!(v, a::scheduling::v1::PriorityClass),
        _ => return None,
    })
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, c| !c.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn unknown_fields(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match o.get(k) {
                    Some(ov) => unknown_fields(v, ov, &p, out),
                    None if !v.is_null() => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o.iter()).enumerate() {
                unknown_fields(iv, ov, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// Decodes a built-in object through its typed form: unknown fields are dropped (and
/// returned), type errors answer 400 as the API server's decoder does.
pub fn decode(rt: &ResourceType, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    let mut input = obj.clone();
    input["apiVersion"] = json!(rt.api_version());
    input["kind"] = json!(rt.kind);
    drop_nulls(&mut input);
    let Some(result) = typed_round_trip(&rt.group, &rt.kind, &input) else {
        return Ok(Vec::new());
    };
    let out = result.map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            rt.kind, rt.version, rt.kind
        ))
    })?;
    let mut unknown = Vec::new();
    unknown_fields(&input, &out, "", &mut unknown);
    *obj = out;
    Ok(unknown)
}

fn set_default(m: &mut Value, key: &str, v: Value) {
    if let Some(o) = m.as_object_mut()
        && o.get(key).is_none_or(Value::is_null)
    {
        o.insert(key.into(), v);
    }
}

/// Defaults the key fields of associative lists in an applied configuration before it is
/// merged, as kube-apiserver does: a port's `protocol` is part of its list key
/// (`containerPort`+`protocol`, Service `port`+`protocol`) and defaults to `TCP`, so an apply
/// that leaves it out addresses the same list item as the stored, defaulted object.
pub fn default_apply_list_keys(rt: &ResourceType, config: &mut Value) {
    if rt.is_custom() {
        return;
    }
    if rt.kind == "Service"
        && let Some(ports) = config
            .pointer_mut("/spec/ports")
            .and_then(Value::as_array_mut)
    {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    default_container_port_keys(config);
}

fn default_container_port_keys(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if matches!(
                    key.as_str(),
                    "containers" | "initContainers" | "ephemeralContainers"
                ) {
                    for c in child.as_array_mut().into_iter().flatten() {
                        let ports = c.get_mut("ports").and_then(Value::as_array_mut);
                        for p in ports.into_iter().flatten() {
                            set_default(p, "protocol", json!("TCP"));
                        }
                    }
                } else {
                    default_container_port_keys(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(default_container_port_keys),
        _ => {}
    }
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    if !v[key].is_object() {
        v[key] = json!({});
    }
    &mut v[key]
}

fn default_container(c: &mut Value) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c["image"].as_str().unwrap_or_default().to_string();
    let last = image.rsplit('/').next().unwrap_or_default();
    let tagged = last.contains(':') && !last.ends_with(":latest") || image.contains('@');
    set_default(
        c,
        "imagePullPolicy",
        json!(if tagged { "IfNotPresent" } else { "Always" }),
    );
    set_default(c, "resources", json!({}));
    if let Some(ports) = c["ports"].as_array_mut() {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    if let Some(env) = c["env"].as_array_mut() {
        for e in env {
            if let Some(fr) = e.pointer_mut("/valueFrom/fieldRef") {
                set_default(fr, "apiVersion", json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if c[probe].is_object() {
            let p = &mut c[probe];
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            if p["httpGet"].is_object() {
                set_default(&mut p["httpGet"], "scheme", json!("HTTP"));
                set_default(&mut p["httpGet"], "path", json!("/"));
            }
        }
    }
}

fn default_pod_spec(spec: &mut Value, is_pod: bool) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec[list].as_array_mut() {
            cs.iter_mut().for_each(default_container);
        }
    }
    if let Some(vols) = spec["volumes"].as_array_mut() {
        for v in vols {
            for src in ["configMap", "secret"] {
                if v[src].is_object() {
                    set_default(&mut v[src], "defaultMode", json!(420));
                }
            }
        }
    }
    if is_pod {
        set_default(spec, "enableServiceLinks", json!(true));
        set_default(spec, "serviceAccountName", json!("default"));
        let sa = spec["serviceAccountName"].clone();
        set_default(spec, "serviceAccount", sa);
        set_default(spec, "priority", json!(0));
        set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

fn default_template(spec: &mut Value) {
    if spec["template"]["spec"].is_object() {
        default_pod_spec(&mut spec["template"]["spec"], false);
    }
}

fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in spec["containers"].as_array().into_iter().flatten() {
        let r = &c["resources"];
        let (req, lim) = (&r["requests"], &r["limits"]);
        if req.as_object().is_some_and(|m| !m.is_empty())
            || lim.as_object().is_some_and(|m| !m.is_empty())
        {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.get(res);
            let q = req.get(res).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        _ => "Burstable",
    }
}

/// Status of a just-created object, as the registry strategies' PrepareForCreate set it.
fn initial_status(rt: &ResourceType, obj: &Value) -> Option<Value> {
    Some(match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment")
        | ("batch", "Job")
        | ("batch", "CronJob")
        | ("networking.k8s.io", "Ingress") => {
            if rt.kind == "Ingress" {
                json!({"loadBalancer": {}})
            } else {
                json!({})
            }
        }
        ("apps", "StatefulSet") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", "DaemonSet") => {
            json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0})
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => json!({"replicas": 0}),
        ("policy", "PodDisruptionBudget") => {
            json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0})
        }
        ("autoscaling", "HorizontalPodAutoscaler") => json!({"desiredReplicas": 0}),
        ("", "Pod") => json!({"phase": "Pending", "qosClass": qos_class(&obj["spec"])}),
        ("", "Service") => json!({"loadBalancer": {}}),
        ("", "PersistentVolumeClaim") | ("", "PersistentVolume") => json!({"phase": "Pending"}),
        ("", "Namespace") => json!({"phase": "Active"}),
        _ => return None,
    })
}

/// Applies defaults and the registry strategies' preparation (status reset on create,
/// Secret stringData, Service IP allocation and carry-over, Job selectors).
pub fn prepare(inner: &Inner, st: &State, rt: &ResourceType, old: Option<&Value>, obj: &mut Value) {
    if rt.is_custom() {
        return;
    }
    if old.is_none()
        && rt.status_subresource
        && let Some(s) = initial_status(rt, obj)
    {
        obj["status"] = s;
    }
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            obj_mut(obj_mut(obj, "metadata"), "labels")["kubernetes.io/metadata.name"] =
                json!(name);
            if old.is_none() {
                set_default(obj_mut(obj, "spec"), "finalizers", json!(["kubernetes"]));
            } else if let Some(o) = old {
                obj["spec"] = o["spec"].clone();
            }
        }
        ("", "Secret") => {
            set_default(obj, "type", json!("Opaque"));
            if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
                && let Some(sd) = sd.as_object()
            {
                let data = obj_mut(obj, "data");
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    data[k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                }
            }
        }
        ("", "Pod") => default_pod_spec(obj_mut(obj, "spec"), true),
        ("", "Service") => prepare_service(inner, st, old, obj),
        ("", "PersistentVolumeClaim") => {
            set_default(obj_mut(obj, "spec"), "volumeMode", json!("Filesystem"))
        }
        ("", "ReplicationController") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("apps", "Deployment") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = obj_mut(spec, "strategy");
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = obj_mut(strategy, "rollingUpdate");
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
            default_template(spec);
        }
        ("apps", "StatefulSet") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "revisionHistoryLimit", json!(10));
            let us = obj_mut(spec, "updateStrategy");
            set_default(us, "type", json!("RollingUpdate"));
            if us["type"] == "RollingUpdate" {
                set_default(obj_mut(us, "rollingUpdate"), "partition", json!(0));
            }
            let pol = obj_mut(spec, "persistentVolumeClaimRetentionPolicy");
            set_default(pol, "whenDeleted", json!("Retain"));
            set_default(pol, "whenScaled", json!("Retain"));
            default_template(spec);
        }
        ("apps", "DaemonSet") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "revisionHistoryLimit", json!(10));
            let us = obj_mut(spec, "updateStrategy");
            set_default(us, "type", json!("RollingUpdate"));
            if us["type"] == "RollingUpdate" {
                let ru = obj_mut(us, "rollingUpdate");
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
            default_template(spec);
        }
        ("apps", "ReplicaSet") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("batch", "Job") => prepare_job(old, obj),
        ("batch", "CronJob") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            if spec["jobTemplate"]["spec"].is_object() {
                default_template(&mut spec["jobTemplate"]["spec"]);
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            if let Some(subjects) = obj["subjects"].as_array_mut() {
                for s in subjects {
                    if matches!(s["kind"].as_str(), Some("User" | "Group")) {
                        set_default(s, "apiGroup", json!("rbac.authorization.k8s.io"));
                    }
                }
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let spec = obj_mut(obj, "spec");
            let kind = spec["names"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if spec["names"].is_object() {
                set_default(
                    &mut spec["names"],
                    "singular",
                    json!(kind.to_ascii_lowercase()),
                );
                set_default(&mut spec["names"], "listKind", json!(format!("{kind}List")));
            }
            set_default(spec, "conversion", json!({"strategy": "None"}));
        }
        _ => {}
    }
}

fn prepare_service(inner: &Inner, st: &State, old: Option<&Value>, obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let ty = spec["type"].as_str().unwrap_or_default().to_string();
    if let Some(ports) = spec["ports"].as_array_mut() {
        for p in ports.iter_mut() {
            set_default(p, "protocol", json!("TCP"));
            let port = p["port"].clone();
            set_default(p, "targetPort", port);
        }
    }
    if ty == "ExternalName" {
        return;
    }
    // Allocated fields survive an update that omits them.
    if let Some(o) = old {
        for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if spec.get(k).is_none_or(Value::is_null)
                && let Some(v) = o["spec"].get(k)
            {
                spec[k] = v.clone();
            }
        }
        if let (Some(ports), Some(old_ports)) =
            (spec["ports"].as_array_mut(), o["spec"]["ports"].as_array())
        {
            for p in ports.iter_mut() {
                if p.get("nodePort").is_none()
                    && let Some(op) = old_ports
                        .iter()
                        .find(|op| op["port"] == p["port"] && op["protocol"] == p["protocol"])
                    && let Some(np) = op.get("nodePort")
                {
                    p["nodePort"] = np.clone();
                }
            }
        }
    }
    if spec.get("clusterIP").is_none_or(|v| v.is_null() || v == "") {
        let ip = inner.alloc_ip(st);
        spec["clusterIP"] = json!(ip);
    }
    if spec.get("clusterIPs").is_none_or(Value::is_null) {
        let ip = spec["clusterIP"].clone();
        spec["clusterIPs"] = json!([ip]);
    }
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
        if ty == "LoadBalancer" {
            set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
        }
        let n = spec["ports"].as_array().map_or(0, Vec::len);
        for i in 0..n {
            if spec["ports"][i].get("nodePort").is_none() {
                let np = inner.alloc_node_port(st);
                spec["ports"][i]["nodePort"] = json!(np);
            }
        }
    }
}

fn prepare_job(old: Option<&Value>, obj: &mut Value) {
    let uid = obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = obj_mut(obj, "spec");
    if spec.get("completions").is_none() && spec.get("parallelism").is_none() {
        spec["completions"] = json!(1);
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    if spec.get("podFailurePolicy").is_none() {
        set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    }
    if old.is_none() && spec["manualSelector"].as_bool() != Some(true) {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let labels = obj_mut(obj_mut(obj_mut(spec, "template"), "metadata"), "labels");
        labels["batch.kubernetes.io/controller-uid"] = json!(uid);
        labels["batch.kubernetes.io/job-name"] = json!(name);
        labels["controller-uid"] = json!(uid);
        labels["job-name"] = json!(name);
    }
    default_template(spec);
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain.
pub fn is_subdomain(s: &str) -> bool {
    s.split('.').all(is_label)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Validates object metadata (name format, labels).
pub fn validate_meta(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        causes.push(status::required(
            "metadata.name",
            "name or generateName is required",
        ));
        return causes;
    }
    let is_rbac = rt.group == "rbac.authorization.k8s.io";
    let (ok, msg, max) = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => (is_label(name), LABEL_MSG, 63),
        ("", "Service") => (
            is_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
            DNS1035_MSG,
            63,
        ),
        _ if is_rbac => (
            !name.contains('/') && !name.contains('%') && name != "." && name != "..",
            "may not contain '/' or '%'",
            usize::MAX,
        ),
        _ if rt.is_custom() || rt.kind == "CustomResourceDefinition" => {
            (is_subdomain(name), SUBDOMAIN_MSG, 253)
        }
        _ => (is_subdomain(name), SUBDOMAIN_MSG, 253),
    };
    if name.len() > max {
        causes.push(status::invalid_value(
            "metadata.name",
            &json!(name),
            &format!("must be no more than {max} characters"),
        ));
    } else if !ok {
        causes.push(status::invalid_value("metadata.name", &json!(name), msg));
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            let s = v.as_str().unwrap_or_default();
            if s.len() > 63 {
                causes.push(status::invalid_value(
                    "metadata.labels",
                    &json!(s),
                    "must be no more than 63 characters",
                ));
            } else if !is_label_value(s) {
                causes.push(status::invalid_value(
                    "metadata.labels",
                    &json!(s),
                    LABEL_VALUE_MSG,
                ));
            }
            let key_name = k.rsplit('/').next().unwrap_or_default();
            if key_name.is_empty()
                || key_name.len() > 63
                || !key_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                causes.push(status::invalid_value(
                    "metadata.labels",
                    &json!(k),
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                ));
            }
        }
    }
    causes
}

fn go_string_map(m: &Value) -> String {
    match m.as_object() {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{:?}:{:?}", k, m[*k].as_str().unwrap_or_default()))
                .collect();
            format!("map[string]string{{{}}}", parts.join(", "))
        }
    }
}

fn go_label_selector(s: &Value) -> String {
    let exprs = match s["matchExpressions"].as_array() {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(a) => {
            let parts: Vec<String> = a
                .iter()
                .map(|e| {
                    let vals: Vec<String> = e["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| format!("{:?}", v.as_str().unwrap_or_default()))
                        .collect();
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:[]string{{{}}}}}",
                        e["key"].as_str().unwrap_or_default(),
                        e["operator"].as_str().unwrap_or_default(),
                        vals.join(", ")
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", parts.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(&s["matchLabels"])
    )
}

fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let ml_ok = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let me_ok = selector["matchExpressions"].as_array().is_none_or(|a| {
        a.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let vals: Vec<&Value> = e["values"]
                .as_array()
                .map(|v| v.iter().collect())
                .unwrap_or_default();
            let got = labels.get(key);
            match e["operator"].as_str() {
                Some("In") => got.is_some_and(|g| vals.contains(&g)),
                Some("NotIn") => got.is_none_or(|g| !vals.contains(&g)),
                Some("Exists") => got.is_some(),
                Some("DoesNotExist") => got.is_none(),
                _ => false,
            }
        })
    });
    ml_ok && me_ok
}

fn validate_pod_spec(spec: &Value, field: &str, causes: &mut Vec<Cause>) {
    match spec["containers"].as_array() {
        None => causes.push(status::required(&format!("{field}.containers"), "")),
        Some(a) if a.is_empty() => {
            causes.push(status::required(&format!("{field}.containers"), ""))
        }
        Some(a) => {
            for (i, c) in a.iter().enumerate() {
                if c["name"].as_str().unwrap_or_default().is_empty() {
                    causes.push(status::required(
                        &format!("{field}.containers[{i}].name"),
                        "",
                    ));
                }
                if c["image"].as_str().unwrap_or_default().is_empty() {
                    causes.push(status::required(
                        &format!("{field}.containers[{i}].image"),
                        "",
                    ));
                }
            }
        }
    }
}

fn validate_workload(
    obj: &Value,
    old: Option<&Value>,
    causes: &mut Vec<Cause>,
    needs_selector: bool,
) {
    let spec = &obj["spec"];
    let selector = &spec["selector"];
    if needs_selector && !selector.is_object() {
        causes.push(status::required("spec.selector", ""));
    } else if selector.is_object() {
        let empty = selector["matchLabels"]
            .as_object()
            .is_none_or(|m| m.is_empty())
            && selector["matchExpressions"]
                .as_array()
                .is_none_or(|a| a.is_empty());
        if empty && needs_selector {
            causes.push(status::invalid_value(
                "spec.selector",
                &json!(go_label_selector(selector)),
                "empty selector is invalid for deployment",
            ));
        } else if !selector_matches(selector, &spec["template"]["metadata"]["labels"]) {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: {}: `selector` does not match template `labels`",
                    go_string_map(&spec["template"]["metadata"]["labels"])
                ),
                field: "spec.template.metadata.labels".into(),
            });
        }
    }
    if spec["template"]["spec"].is_object() || needs_selector {
        validate_pod_spec(&spec["template"]["spec"], "spec.template.spec", causes);
    }
    if let Some(o) = old
        && o["spec"]["selector"] != *selector
    {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {}: field is immutable",
                go_label_selector(selector)
            ),
            field: "spec.selector".into(),
        });
    }
    if let Some(r) = spec["replicas"].as_i64()
        && r < 0
    {
        causes.push(status::invalid_value(
            "spec.replicas",
            &json!(r),
            "must be greater than or equal to 0",
        ));
    }
}

fn immutable_data(kind: &str, old: &Value, obj: &Value, causes: &mut Vec<Cause>) {
    if old["immutable"].as_bool() != Some(true) {
        return;
    }
    let msg = "field is immutable when `immutable` is set";
    if obj["immutable"] != old["immutable"] {
        causes.push(status::forbidden("immutable", msg));
    }
    if obj["data"] != old["data"] {
        causes.push(status::forbidden("data", msg));
    }
    if kind == "ConfigMap" && obj["binaryData"] != old["binaryData"] {
        causes.push(status::forbidden("binaryData", msg));
    }
}

fn config_keys(obj: &Value, fields: &[&str], causes: &mut Vec<Cause>) {
    for field in fields {
        for k in obj[*field]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let ok = !k.is_empty()
                && k.len() <= 253
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && k != "."
                && k != ".."
                && !k.starts_with("..");
            if !ok {
                causes.push(status::invalid_value(
                    &format!("{field}[{k}]"),
                    &json!(k),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
        }
    }
}

/// Validates a built-in object (required fields, immutable fields on update).
pub fn validate(rt: &ResourceType, old: Option<&Value>, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment") | ("apps", "ReplicaSet") | ("apps", "DaemonSet") => {
            validate_workload(obj, old, &mut causes, true)
        }
        ("apps", "StatefulSet") => {
            validate_workload(obj, None, &mut causes, true);
            if let Some(o) = old {
                let strip = |v: &Value| {
                    let mut s = v["spec"].clone();
                    if let Some(m) = s.as_object_mut() {
                        for k in [
                            "replicas",
                            "ordinals",
                            "template",
                            "updateStrategy",
                            "persistentVolumeClaimRetentionPolicy",
                            "minReadySeconds",
                        ] {
                            m.remove(k);
                        }
                    }
                    s
                };
                if strip(o) != strip(obj) {
                    causes.push(status::forbidden(
                        "spec",
                        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                    ));
                }
            }
        }
        ("batch", "Job") => {
            let rp = obj["spec"]["template"]["spec"]["restartPolicy"]
                .as_str()
                .unwrap_or_default();
            if !matches!(rp, "OnFailure" | "Never") {
                causes.push(status::not_supported(
                    "spec.template.spec.restartPolicy",
                    &json!(rp),
                    &["OnFailure".into(), "Never".into()],
                ));
            }
            validate_pod_spec(
                &obj["spec"]["template"]["spec"],
                "spec.template.spec",
                &mut causes,
            );
            if let Some(o) = old {
                if o["spec"]["selector"] != obj["spec"]["selector"] {
                    causes.push(Cause {
                        reason: "FieldValueInvalid".into(),
                        message: format!(
                            "Invalid value: {}: field is immutable",
                            go_label_selector(&obj["spec"]["selector"])
                        ),
                        field: "spec.selector".into(),
                    });
                }
                if o["spec"]["template"] != obj["spec"]["template"] {
                    causes.push(Cause {
                        reason: "FieldValueInvalid".into(),
                        message: "Invalid value: core.PodTemplateSpec{...}: field is immutable"
                            .into(),
                        field: "spec.template".into(),
                    });
                }
                if o["spec"]["completions"] != obj["spec"]["completions"] {
                    causes.push(status::invalid_value(
                        "spec.completions",
                        &obj["spec"]["completions"],
                        "field is immutable",
                    ));
                }
            }
        }
        ("", "Pod") => validate_pod_spec(&obj["spec"], "spec", &mut causes),
        ("", "Service") => {
            let spec = &obj["spec"];
            let headless = spec["clusterIP"] == "None";
            if spec["type"] != "ExternalName"
                && !headless
                && spec["ports"].as_array().is_none_or(|a| a.is_empty())
            {
                causes.push(status::required("spec.ports", ""));
            }
            if let Some(o) = old
                && o["spec"]["type"] != "ExternalName"
                && spec["type"] != "ExternalName"
                && o["spec"]["clusterIPs"] != spec["clusterIPs"]
            {
                let ips: Vec<String> = spec["clusterIPs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| format!("{:?}", v.as_str().unwrap_or_default()))
                    .collect();
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: []string{{{}}}: may not change once set",
                        ips.join(", ")
                    ),
                    field: "spec.clusterIPs[0]".into(),
                });
            }
        }
        ("", "ConfigMap") => {
            config_keys(obj, &["data", "binaryData"], &mut causes);
            if let Some(o) = old {
                immutable_data("ConfigMap", o, obj, &mut causes);
            }
        }
        ("", "Secret") => {
            config_keys(obj, &["data"], &mut causes);
            if let Some(o) = old {
                immutable_data("Secret", o, obj, &mut causes);
                if o["type"] != obj["type"] {
                    causes.push(status::invalid_value(
                        "type",
                        &obj["type"],
                        "field is immutable",
                    ));
                }
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(o) = old {
                let strip = |v: &Value| {
                    let mut s = v["spec"].clone();
                    if let Some(r) = s.get_mut("resources").and_then(Value::as_object_mut) {
                        r.remove("requests");
                    }
                    if let Some(m) = s.as_object_mut() {
                        m.remove("volumeAttributesClassName");
                    }
                    s
                };
                if strip(o) != strip(obj) {
                    causes.push(Cause {
                        reason: "FieldValueForbidden".into(),
                        message: "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into(),
                        field: "spec".into(),
                    });
                }
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            if let Some(o) = old
                && o["roleRef"] != obj["roleRef"]
            {
                let r = &obj["roleRef"];
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}: cannot change roleRef",
                        r["apiGroup"].as_str().unwrap_or_default(),
                        r["kind"].as_str().unwrap_or_default(),
                        r["name"].as_str().unwrap_or_default()
                    ),
                    field: "roleRef".into(),
                });
            }
        }
        _ => {}
    }
    let _ = Map::<String, Value>::new();
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_print_like_go() {
        assert_eq!(
            go_label_selector(&json!({"matchLabels": {"app": "web"}})),
            "v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
    }

    #[test]
    fn names_follow_rfc_1123() {
        assert!(is_subdomain("a.b-c"));
        assert!(!is_subdomain("Bad_Name"));
        assert!(!is_subdomain("-a"));
    }
}

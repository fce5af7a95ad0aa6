//! Health with kstatus rules: `Current`, `InProgress`, `Failed`, `Terminating`, `NotFound`.
//!
//! Generic rules come first for every kind: a `deletionTimestamp` means `Terminating`; a
//! `status.observedGeneration` behind `metadata.generation` means `InProgress`; a
//! `Reconciling=True` condition means `InProgress` and `Stalled=True` means `Failed`. Then the
//! kind's own rule (Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod, Job, CronJob, PVC,
//! Service, PodDisruptionBudget, CRD, Namespace), and for any other kind the standard `Ready`
//! condition (`True` is `Current`, `False` is `InProgress`); a kind with no conditions is
//! `Current` once it exists.

use std::fmt;

use serde_json::Value;

/// The kstatus status of one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Status {
    /// The object has reached its desired state.
    Current,
    /// The object is making progress towards its desired state.
    InProgress,
    /// The object failed to reach its desired state and will not without a change.
    Failed,
    /// The object is being deleted.
    Terminating,
    /// The object does not exist.
    NotFound,
    /// The status could not be read.
    Unknown,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Current => "Current",
            Status::InProgress => "InProgress",
            Status::Failed => "Failed",
            Status::Terminating => "Terminating",
            Status::NotFound => "NotFound",
            Status::Unknown => "Unknown",
        })
    }
}

/// A status and the reason for it, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The status.
    pub status: Status,
    /// Why, as `Ready: 1/3`.
    pub message: String,
}

impl Health {
    fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

fn int(obj: &Value, path: &[&str]) -> Option<i64> {
    let mut v = obj;
    for p in path {
        v = v.get(p)?;
    }
    v.as_i64()
}

fn string<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = obj;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str()
}

/// One entry of `status.conditions`.
struct Condition<'a> {
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<Condition<'a>> {
    obj.get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .map(|c| Condition {
            status: c.get("status").and_then(Value::as_str).unwrap_or_default(),
            reason: c.get("reason").and_then(Value::as_str).unwrap_or_default(),
            message: c.get("message").and_then(Value::as_str).unwrap_or_default(),
        })
}

fn condition_true<'a>(obj: &'a Value, kind: &str) -> Option<Condition<'a>> {
    condition(obj, kind).filter(|c| c.status == "True")
}

/// Computes the health of an object from its JSON (as read from the API server).
pub fn compute(obj: &Value) -> Health {
    if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return Health::new(Status::Terminating, "Resource scheduled for deletion");
    }
    let kind = string(obj, &["kind"]).unwrap_or_default();
    let group = string(obj, &["apiVersion"])
        .and_then(|v| v.rsplit_once('/').map(|(g, _)| g))
        .unwrap_or_default();
    // observedGeneration: once a controller reports it, it must have seen the latest spec.
    if let (Some(generation), Some(observed)) = (
        int(obj, &["metadata", "generation"]),
        int(obj, &["status", "observedGeneration"]),
    ) && observed != generation
    {
        return Health::new(
            Status::InProgress,
            format!(
                "{kind} generation is {generation}, but latest observed generation is {observed}"
            ),
        );
    }
    if let Some(c) = condition_true(obj, "Reconciling") {
        return Health::new(Status::InProgress, reason_message("Reconciling", &c));
    }
    if let Some(c) = condition_true(obj, "Stalled") {
        return Health::new(Status::Failed, reason_message("Stalled", &c));
    }
    match (group, kind) {
        ("apps", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps", "DaemonSet") => daemon_set(obj),
        ("apps", "ReplicaSet") => replica_set(obj),
        ("", "Pod") => pod(obj),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => Health::new(Status::Current, "CronJob is always Current"),
        ("", "PersistentVolumeClaim") => pvc(obj),
        ("", "Service") => service(obj),
        ("policy", "PodDisruptionBudget") => pdb(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj),
        ("", "Namespace") => namespace(obj),
        _ => generic(obj),
    }
}

fn reason_message(what: &str, c: &Condition<'_>) -> String {
    match (c.reason.is_empty(), c.message.is_empty()) {
        (true, true) => format!("{what} condition is True"),
        (false, true) => format!("{what}: {}", c.reason),
        (_, false) => format!("{what}: {}", c.message),
    }
}

fn generic(obj: &Value) -> Health {
    match condition(obj, "Ready") {
        Some(c) if c.status == "True" => Health::new(Status::Current, "Resource is Ready"),
        Some(c) if c.status == "False" => {
            Health::new(Status::InProgress, reason_message("Ready=False", &c))
        }
        Some(_) => Health::new(Status::InProgress, "Ready condition is Unknown"),
        None => Health::new(Status::Current, "Resource is current"),
    }
}

/// Controllers that report `observedGeneration` have not looked at a new object until they do.
fn observed(obj: &Value, kind: &str) -> Option<Health> {
    if int(obj, &["status", "observedGeneration"]).is_none() {
        return Some(Health::new(
            Status::InProgress,
            format!("{kind} has not been observed by its controller yet"),
        ));
    }
    None
}

fn deployment(obj: &Value) -> Health {
    if let Some(h) = observed(obj, "Deployment") {
        return h;
    }
    if let Some(c) = condition(obj, "Progressing")
        && c.reason == "ProgressDeadlineExceeded"
    {
        return Health::new(
            Status::Failed,
            format!("Progress deadline exceeded: {}", c.message),
        );
    }
    let spec = int(obj, &["spec", "replicas"]).unwrap_or(1);
    let replicas = int(obj, &["status", "replicas"]).unwrap_or(0);
    let updated = int(obj, &["status", "updatedReplicas"]).unwrap_or(0);
    let ready = int(obj, &["status", "readyReplicas"]).unwrap_or(0);
    let available = int(obj, &["status", "availableReplicas"]).unwrap_or(0);
    if spec > replicas {
        return Health::new(Status::InProgress, format!("Replicas: {replicas}/{spec}"));
    }
    if spec > updated {
        return Health::new(Status::InProgress, format!("Updated: {updated}/{spec}"));
    }
    if replicas > spec {
        return Health::new(
            Status::InProgress,
            format!("Pending termination: {}", replicas - spec),
        );
    }
    if updated > available {
        return Health::new(
            Status::InProgress,
            format!("Available: {available}/{updated}"),
        );
    }
    if spec > ready {
        return Health::new(Status::InProgress, format!("Ready: {ready}/{spec}"));
    }
    if spec > 0 && condition_true(obj, "Available").is_none() {
        return Health::new(Status::InProgress, "Deployment not Available");
    }
    Health::new(
        Status::Current,
        format!("Deployment is available. Replicas: {replicas}"),
    )
}

fn stateful_set(obj: &Value) -> Health {
    if let Some(h) = observed(obj, "StatefulSet") {
        return h;
    }
    if string(obj, &["spec", "updateStrategy", "type"]) == Some("OnDelete") {
        return Health::new(
            Status::Current,
            "StatefulSet is using the OnDelete update strategy",
        );
    }
    let spec = int(obj, &["spec", "replicas"]).unwrap_or(1);
    let replicas = int(obj, &["status", "replicas"]).unwrap_or(0);
    let ready = int(obj, &["status", "readyReplicas"]).unwrap_or(0);
    let current = int(obj, &["status", "currentReplicas"]).unwrap_or(0);
    let updated = int(obj, &["status", "updatedReplicas"]).unwrap_or(0);
    if spec > replicas {
        return Health::new(Status::InProgress, format!("Replicas: {replicas}/{spec}"));
    }
    if spec > ready {
        return Health::new(Status::InProgress, format!("Ready: {ready}/{spec}"));
    }
    if replicas > spec {
        return Health::new(
            Status::InProgress,
            format!("Pending termination: {}", replicas - spec),
        );
    }
    if let Some(partition) = int(
        obj,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
    ) && partition > 0
    {
        let want = (spec - partition).max(0);
        if updated < want {
            return Health::new(
                Status::InProgress,
                format!("Partitioned roll out in progress. updated: {updated}/{want}"),
            );
        }
        return Health::new(
            Status::Current,
            format!("Partitioned roll out complete. updated: {updated}/{want}"),
        );
    }
    if spec > current {
        return Health::new(Status::InProgress, format!("Current: {current}/{spec}"));
    }
    let current_rev = string(obj, &["status", "currentRevision"]);
    let update_rev = string(obj, &["status", "updateRevision"]);
    if current_rev != update_rev {
        return Health::new(
            Status::InProgress,
            "Waiting for the updated revision to become current",
        );
    }
    Health::new(
        Status::Current,
        format!("All replicas scheduled as expected. Replicas: {replicas}"),
    )
}

fn daemon_set(obj: &Value) -> Health {
    if let Some(h) = observed(obj, "DaemonSet") {
        return h;
    }
    let desired = int(obj, &["status", "desiredNumberScheduled"]).unwrap_or(0);
    let current = int(obj, &["status", "currentNumberScheduled"]).unwrap_or(0);
    let updated = int(obj, &["status", "updatedNumberScheduled"]).unwrap_or(0);
    let available = int(obj, &["status", "numberAvailable"]).unwrap_or(0);
    let ready = int(obj, &["status", "numberReady"]).unwrap_or(0);
    if desired > current {
        return Health::new(Status::InProgress, format!("Current: {current}/{desired}"));
    }
    if desired > updated {
        return Health::new(Status::InProgress, format!("Updated: {updated}/{desired}"));
    }
    if desired > available {
        return Health::new(
            Status::InProgress,
            format!("Available: {available}/{desired}"),
        );
    }
    if desired > ready {
        return Health::new(Status::InProgress, format!("Ready: {ready}/{desired}"));
    }
    Health::new(
        Status::Current,
        format!("All replicas scheduled as expected. Replicas: {desired}"),
    )
}

fn replica_set(obj: &Value) -> Health {
    if let Some(h) = observed(obj, "ReplicaSet") {
        return h;
    }
    if let Some(c) = condition_true(obj, "ReplicaFailure") {
        return Health::new(Status::InProgress, reason_message("ReplicaFailure", &c));
    }
    let spec = int(obj, &["spec", "replicas"]).unwrap_or(1);
    let replicas = int(obj, &["status", "replicas"]).unwrap_or(0);
    let labelled = int(obj, &["status", "fullyLabeledReplicas"]).unwrap_or(0);
    let available = int(obj, &["status", "availableReplicas"]).unwrap_or(0);
    let ready = int(obj, &["status", "readyReplicas"]).unwrap_or(0);
    if spec > labelled {
        return Health::new(Status::InProgress, format!("Labelled: {labelled}/{spec}"));
    }
    if spec > available {
        return Health::new(Status::InProgress, format!("Available: {available}/{spec}"));
    }
    if spec > ready {
        return Health::new(Status::InProgress, format!("Ready: {ready}/{spec}"));
    }
    if replicas > spec {
        return Health::new(
            Status::InProgress,
            format!("Pending termination: {}", replicas - spec),
        );
    }
    Health::new(
        Status::Current,
        format!("ReplicaSet is available. Replicas: {replicas}"),
    )
}

fn pod(obj: &Value) -> Health {
    let phase = string(obj, &["status", "phase"]).unwrap_or_default();
    let crash_looping = || {
        ["containerStatuses", "initContainerStatuses"]
            .iter()
            .filter_map(|list| {
                obj.pointer(&format!("/status/{list}"))
                    .and_then(Value::as_array)
            })
            .flatten()
            .find_map(|cs| {
                let reason = cs
                    .pointer("/state/waiting/reason")
                    .and_then(Value::as_str)?;
                matches!(
                    reason,
                    "CrashLoopBackOff"
                        | "ImagePullBackOff"
                        | "ErrImagePull"
                        | "CreateContainerConfigError"
                        | "InvalidImageName"
                )
                .then(|| {
                    format!(
                        "Container {} is waiting: {reason}",
                        cs.get("name").and_then(Value::as_str).unwrap_or("?")
                    )
                })
            })
    };
    match phase {
        "Succeeded" => Health::new(Status::Current, "Pod has completed successfully"),
        "Failed" => Health::new(Status::Failed, "Pod has completed, but not successfully"),
        "Running" => {
            if condition_true(obj, "Ready").is_some() {
                Health::new(Status::Current, "Pod is Ready")
            } else if let Some(reason) = crash_looping() {
                Health::new(Status::Failed, reason)
            } else {
                Health::new(Status::InProgress, "Pod is running but is not Ready")
            }
        }
        "Pending" => {
            if let Some(c) = condition(obj, "PodScheduled")
                && c.status == "False"
                && c.reason == "Unschedulable"
            {
                return Health::new(Status::InProgress, "Pod could not be scheduled");
            }
            if let Some(reason) = crash_looping() {
                return Health::new(Status::Failed, reason);
            }
            Health::new(Status::InProgress, "Pod is in the Pending phase")
        }
        _ => Health::new(Status::InProgress, "Pod phase not available"),
    }
}

fn job(obj: &Value) -> Health {
    let parallelism = int(obj, &["spec", "parallelism"]).unwrap_or(1);
    let completions = int(obj, &["spec", "completions"]).unwrap_or(parallelism);
    let succeeded = int(obj, &["status", "succeeded"]).unwrap_or(0);
    let active = int(obj, &["status", "active"]).unwrap_or(0);
    let failed = int(obj, &["status", "failed"]).unwrap_or(0);
    if condition_true(obj, "Complete").is_some() {
        return Health::new(
            Status::Current,
            format!("Job Completed. succeeded: {succeeded}/{completions}"),
        );
    }
    if let Some(c) = condition_true(obj, "Failed") {
        return Health::new(
            Status::Failed,
            format!("Job Failed. failed: {failed}/{completions}: {}", c.reason),
        );
    }
    if string(obj, &["status", "startTime"]).is_none() {
        return Health::new(Status::InProgress, "Job not started");
    }
    Health::new(
        Status::InProgress,
        format!("Job in progress. success: {succeeded}, active: {active}, failed: {failed}"),
    )
}

fn pvc(obj: &Value) -> Health {
    match string(obj, &["status", "phase"]) {
        Some("Bound") => Health::new(Status::Current, "PVC is Bound"),
        Some("Lost") => Health::new(Status::Failed, "PVC lost its volume"),
        other => Health::new(
            Status::InProgress,
            format!("PVC is not Bound. phase: {}", other.unwrap_or("<none>")),
        ),
    }
}

fn service(obj: &Value) -> Health {
    if string(obj, &["spec", "type"]) == Some("LoadBalancer") {
        let ingress = obj
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !ingress {
            return Health::new(Status::InProgress, "Pending external IP");
        }
    }
    Health::new(Status::Current, "Service is ready")
}

fn pdb(obj: &Value) -> Health {
    if let Some(h) = observed(obj, "PodDisruptionBudget") {
        return h;
    }
    let current = int(obj, &["status", "currentHealthy"]).unwrap_or(0);
    let desired = int(obj, &["status", "desiredHealthy"]).unwrap_or(0);
    if current < desired {
        return Health::new(
            Status::InProgress,
            format!("Budget not met. healthy replicas: {current}/{desired}"),
        );
    }
    Health::new(
        Status::Current,
        format!("Budget is met. Replicas: {current}/{desired}"),
    )
}

fn crd(obj: &Value) -> Health {
    if let Some(c) = condition(obj, "NamesAccepted")
        && c.status == "False"
    {
        return Health::new(Status::Failed, reason_message("NamesAccepted=False", &c));
    }
    match condition(obj, "Established") {
        Some(c) if c.status == "True" => Health::new(Status::Current, "CRD is established"),
        Some(c) => Health::new(Status::InProgress, reason_message("Established", &c)),
        None => Health::new(Status::InProgress, "Install in progress"),
    }
}

fn namespace(obj: &Value) -> Health {
    match string(obj, &["status", "phase"]) {
        Some("Active") => Health::new(Status::Current, "Namespace is Active"),
        Some("Terminating") => Health::new(Status::Terminating, "Namespace is terminating"),
        other => Health::new(
            Status::InProgress,
            format!("Namespace phase is {}", other.unwrap_or("<none>")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(spec_replicas: i64, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "a", "generation": 2},
               "spec": {"replicas": spec_replicas}, "status": status})
    }

    #[test]
    fn deployment_rules() {
        let ready = deploy(
            3,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
            "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [{"type": "Available", "status": "True"},
                           {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}),
        );
        assert_eq!(compute(&ready).status, Status::Current);
        let rolling = deploy(
            3,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
            "readyReplicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(
            compute(&rolling),
            Health::new(Status::InProgress, "Updated: 1/3")
        );
        let stale = deploy(
            3,
            json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3,
            "readyReplicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(compute(&stale).status, Status::InProgress);
        assert!(compute(&stale).message.contains("observed generation is 1"));
        let unobserved = deploy(1, json!({}));
        assert_eq!(compute(&unobserved).status, Status::InProgress);
        let deadline = deploy(
            3,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet \"web-5d\" has timed out progressing."}]}),
        );
        let h = compute(&deadline);
        assert_eq!(h.status, Status::Failed);
        assert!(h.message.contains("timed out progressing"), "{}", h.message);
        let surplus = deploy(
            1,
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1}),
        );
        assert_eq!(
            compute(&surplus),
            Health::new(Status::InProgress, "Pending termination: 1")
        );
    }

    #[test]
    fn statefulset_and_daemonset_rules() {
        let sts = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "generation": 1}, "spec": {"replicas": 2}, "status": status})
        };
        assert_eq!(compute(&sts(json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
            "currentReplicas": 2, "updatedReplicas": 2, "currentRevision": "db-1", "updateRevision": "db-1"}))).status,
            Status::Current);
        assert_eq!(compute(&sts(json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
            "currentReplicas": 2, "updatedReplicas": 1, "currentRevision": "db-1", "updateRevision": "db-2"}))).status,
            Status::InProgress);
        assert_eq!(
            compute(&sts(
                json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 1})
            )),
            Health::new(Status::InProgress, "Ready: 1/2")
        );
        let ds = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "generation": 4}, "status": status})
        };
        assert_eq!(compute(&ds(json!({"observedGeneration": 4, "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3, "numberReady": 3}))).status,
            Status::Current);
        assert_eq!(
            compute(&ds(
                json!({"observedGeneration": 4, "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2, "numberReady": 2})
            )),
            Health::new(Status::InProgress, "Available: 2/3")
        );
    }

    #[test]
    fn replicaset_pod_job_cronjob_rules() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r", "generation": 1},
            "spec": {"replicas": 2}, "status": {"observedGeneration": 1, "replicas": 2, "fullyLabeledReplicas": 2,
            "availableReplicas": 1, "readyReplicas": 2}});
        assert_eq!(
            compute(&rs),
            Health::new(Status::InProgress, "Available: 1/2")
        );
        let pod = |status: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": status});
        assert_eq!(
            compute(&pod(
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
            ))
            .status,
            Status::Current
        );
        assert_eq!(
            compute(&pod(json!({"phase": "Succeeded"}))).status,
            Status::Current
        );
        assert_eq!(
            compute(&pod(json!({"phase": "Failed"}))).status,
            Status::Failed
        );
        let crash = compute(&pod(
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        ));
        assert_eq!(
            crash,
            Health::new(Status::Failed, "Container app is waiting: CrashLoopBackOff")
        );
        assert_eq!(
            compute(&pod(
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable"}]})
            ))
            .message,
            "Pod could not be scheduled"
        );
        let job = |status: Value| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {"completions": 1}, "status": status})
        };
        assert_eq!(
            compute(&job(
                json!({"startTime": "2026-01-01T00:00:00Z", "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}]})
            ))
            .status,
            Status::Current
        );
        assert_eq!(
            compute(&job(
                json!({"startTime": "2026-01-01T00:00:00Z", "failed": 6,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
            ))
            .status,
            Status::Failed
        );
        assert_eq!(
            compute(&job(
                json!({"startTime": "2026-01-01T00:00:00Z", "active": 1})
            ))
            .status,
            Status::InProgress
        );
        let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"}, "spec": {"schedule": "* * * * *"}});
        assert_eq!(compute(&cron).status, Status::Current);
    }

    #[test]
    fn pvc_service_pdb_crd_namespace_rules() {
        let pvc = |phase: &str| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "d"}, "status": {"phase": phase}});
        assert_eq!(compute(&pvc("Bound")).status, Status::Current);
        assert_eq!(compute(&pvc("Pending")).status, Status::InProgress);
        let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}});
        assert_eq!(
            compute(&lb),
            Health::new(Status::InProgress, "Pending external IP")
        );
        let mut lb_ready = lb.clone();
        lb_ready["status"]["loadBalancer"]["ingress"] = json!([{"ip": "10.0.0.1"}]);
        assert_eq!(compute(&lb_ready).status, Status::Current);
        let cluster_ip = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "ClusterIP"}});
        assert_eq!(compute(&cluster_ip).status, Status::Current);
        let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p", "generation": 1},
            "status": {"observedGeneration": 1, "currentHealthy": 1, "desiredHealthy": 2}});
        assert_eq!(compute(&pdb).status, Status::InProgress);
        let crd = |conds: Value| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"}, "status": {"conditions": conds}})
        };
        assert_eq!(compute(&crd(json!([{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}]))).status, Status::Current);
        assert_eq!(compute(&crd(json!([]))).status, Status::InProgress);
        assert_eq!(
            compute(&crd(
                json!([{"type": "NamesAccepted", "status": "False", "reason": "ListKindConflict"}])
            ))
            .status,
            Status::Failed
        );
        let ns = |phase: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}, "status": {"phase": phase}});
        assert_eq!(compute(&ns("Active")).status, Status::Current);
        assert_eq!(compute(&ns("Terminating")).status, Status::Terminating);
    }

    #[test]
    fn generic_kinds_follow_ready_reconciling_stalled_and_observed_generation() {
        let cr = |generation: i64, status: Value| {
            json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization", "metadata": {"name": "k", "generation": generation}, "status": status})
        };
        assert_eq!(compute(&cr(2, json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}))).status, Status::Current);
        assert_eq!(compute(&cr(3, json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}))).status, Status::InProgress);
        assert_eq!(
            compute(&cr(
                2,
                json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "False", "reason": "BuildFailed", "message": "kustomize build failed"}]})
            )),
            Health::new(Status::InProgress, "Ready=False: kustomize build failed")
        );
        assert_eq!(compute(&cr(2, json!({"observedGeneration": 2, "conditions": [{"type": "Stalled", "status": "True", "reason": "InvalidPath"}]}))).status, Status::Failed);
        assert_eq!(compute(&cr(2, json!({"conditions": [{"type": "Reconciling", "status": "True", "reason": "Progressing"}]}))).status, Status::InProgress);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert_eq!(compute(&cm).status, Status::Current);
        let mut deleting = cm.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(compute(&deleting).status, Status::Terminating);
    }
}

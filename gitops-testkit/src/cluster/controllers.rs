//! What runs beside the API server: the CRD cleanup finalizer (part of kube-apiserver), the
//! namespace lifecycle and garbage collector (kube-controller-manager, on by default), and
//! optional simulated workload controllers that report rollouts complete.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{
    crd::CLEANUP_FINALIZER,
    registry::ResourceType,
    server::{self, Inner, now},
    status::ApiError,
    store::{ResKey, State, obj_key},
};

const MANAGER: &str = "kube-controller-manager";

/// Runs until aborted.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut last_rv = 0;
    let tick = Duration::from_millis(50);
    loop {
        tokio::select! {
            _ = inner.changed.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
        let rv = inner.current_rv();
        if rv == last_rv && pending.is_empty() {
            continue;
        }
        let mut st = inner.lock_state();
        lifecycle(&inner, &mut st);
        if inner.opts.simulate_controllers {
            workloads(&inner, &mut st, Some(&mut pending));
        }
        last_rv = st.rv;
    }
}

/// Completes every pending rollout now.
pub(crate) fn reconcile_all(inner: &Inner, _force: bool) {
    let mut st = inner.lock_state();
    lifecycle(inner, &mut st);
    workloads(inner, &mut st, None);
}

fn rtype(st: &State, group: &str, kind: &str) -> Option<ResourceType> {
    st.type_for_kind(group, kind).cloned()
}

fn all_of(st: &State, group: &str, plural: &str) -> Vec<Arc<Value>> {
    st.list(&(group.to_string(), plural.to_string()), "")
}

fn lifecycle(inner: &Inner, st: &mut State) {
    // CRD cleanup (kube-apiserver's apiextensions finalizer).
    if let Some(crd_rt) = rtype(st, "apiextensions.k8s.io", "CustomResourceDefinition") {
        for crd in all_of(st, "apiextensions.k8s.io", "customresourcedefinitions") {
            if crd["metadata"].get("deletionTimestamp").is_none() {
                continue;
            }
            let fins: Vec<Value> = crd["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !fins.iter().any(|f| f == CLEANUP_FINALIZER) {
                continue;
            }
            let group = crd["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let plural = crd["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let cr_rt = st
                .types
                .iter()
                .find(|t| t.group == group && t.plural == plural)
                .cloned();
            let objs = all_of(st, &group, &plural);
            if let Some(cr_rt) = &cr_rt {
                for o in &objs {
                    if o["metadata"].get("deletionTimestamp").is_none() {
                        let _ = server::delete_object(inner, st, cr_rt, o, "Background", false);
                    }
                }
            }
            if all_of(st, &group, &plural).is_empty() {
                remove_finalizer(inner, st, &crd_rt, &crd, CLEANUP_FINALIZER);
            }
        }
    }
    if !inner.opts.namespace_lifecycle {
        return;
    }
    // Namespace lifecycle.
    if let Some(ns_rt) = rtype(st, "", "Namespace") {
        for ns in all_of(st, "", "namespaces") {
            if ns["metadata"].get("deletionTimestamp").is_none() {
                continue;
            }
            let name = ns["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let types: Vec<ResourceType> =
                st.types.iter().filter(|t| t.namespaced).cloned().collect();
            let mut seen: Vec<ResKey> = Vec::new();
            let mut remaining = 0;
            for t in types {
                let res = (t.group.clone(), t.plural.clone());
                if seen.contains(&res) {
                    continue;
                }
                seen.push(res.clone());
                for o in st.list(&res, &name) {
                    remaining += 1;
                    if o["metadata"].get("deletionTimestamp").is_none() {
                        let _ = server::delete_object(inner, st, &t, &o, "Background", false);
                    }
                }
            }
            let left: usize = seen.iter().map(|r| st.list(r, &name).len()).sum();
            if left == 0 || remaining == 0 {
                let spec_fins = ns["spec"]["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !spec_fins.is_empty() {
                    let mut next = (*ns).clone();
                    next["spec"]["finalizers"] = json!([]);
                    st.put(&("".into(), "namespaces".into()), next);
                }
                let now_ns = st.get(&("".into(), "namespaces".into()), &obj_key(&ns));
                if let Some(n) = now_ns
                    && n["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|a| a.is_empty())
                {
                    st.remove(&("".into(), "namespaces".into()), &obj_key(&n));
                }
                let _ = &ns_rt;
            }
        }
    }
    // Foreground and orphan finalizers of the garbage collector.
    let types = st.types.clone();
    for t in &types {
        let res = (t.group.clone(), t.plural.clone());
        let deleting: Vec<Arc<Value>> = st
            .list(&res, "")
            .into_iter()
            .filter(|o| o["metadata"].get("deletionTimestamp").is_some())
            .collect();
        for o in deleting {
            let fins: Vec<Value> = o["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let uid = o["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if fins.iter().any(|f| f == "orphan") {
                orphan_dependents(st, &uid);
                remove_finalizer(inner, st, t, &o, "orphan");
            } else if fins.iter().any(|f| f == "foregroundDeletion") {
                let deps = dependents(st, &uid);
                for (dt, d) in &deps {
                    if d["metadata"].get("deletionTimestamp").is_none() {
                        let _ = server::delete_object(inner, st, dt, d, "Foreground", false);
                    }
                }
                if dependents(st, &uid).is_empty() {
                    remove_finalizer(inner, st, t, &o, "foregroundDeletion");
                }
            }
        }
    }
}

fn remove_finalizer(
    inner: &Inner,
    st: &mut State,
    rt: &ResourceType,
    obj: &Value,
    finalizer: &str,
) {
    let Some(current) = st.get(&(rt.group.clone(), rt.plural.clone()), &obj_key(obj)) else {
        return;
    };
    let mut next = (*current).clone();
    if let Some(f) = next["metadata"]["finalizers"].as_array_mut() {
        f.retain(|x| x != finalizer);
    }
    let (ns, name) = obj_key(obj);
    let t = server::internal_target(rt, &ns, &name, "");
    if let Err(e) = server::controller_update(inner, st, &t, next, MANAGER) {
        tracing::debug!(error = %e, name, "removing finalizer {finalizer}");
    }
}

fn dependents(st: &State, uid: &str) -> Vec<(ResourceType, Arc<Value>)> {
    st.dependents_of(uid)
        .into_iter()
        .filter_map(|((g, p), o)| {
            st.types
                .iter()
                .find(|t| t.group == g && t.plural == p)
                .map(|t| (t.clone(), o))
        })
        .collect()
}

fn orphan_dependents(st: &mut State, uid: &str) {
    for (t, d) in dependents(st, uid) {
        let mut next = (*d).clone();
        if let Some(refs) = next["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"] != uid);
            if refs.is_empty()
                && let Some(m) = next["metadata"].as_object_mut()
            {
                m.remove("ownerReferences");
            }
        }
        st.put(&(t.group.clone(), t.plural.clone()), next);
    }
}

/// Background cascading deletion: deletes the dependents of `gone` that have no other owner left.
pub(crate) fn collect_garbage(inner: &Inner, st: &mut State, gone: &Value) {
    let uid = gone["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if uid.is_empty() {
        return;
    }
    for (t, d) in dependents(st, &uid) {
        let other_owner_alive = d["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["uid"] != uid.as_str())
            .any(|r| {
                let ruid = r["uid"].as_str().unwrap_or_default();
                st.objects
                    .values()
                    .any(|m| m.values().any(|o| o["metadata"]["uid"] == ruid))
            });
        if other_owner_alive || d["metadata"].get("deletionTimestamp").is_some() {
            continue;
        }
        let _ = server::delete_object(inner, st, &t, &d, "Background", false);
    }
}

fn cond(t: &str, reason: &str, message: &str, ts: &str, with_update: bool) -> Value {
    let mut c = json!({"type": t, "status": "True", "lastTransitionTime": ts, "reason": reason, "message": message});
    if with_update {
        c["lastUpdateTime"] = json!(ts);
    }
    c
}

fn short_hash(s: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = h.finish();
    (0..10)
        .map(|_| {
            let c = ALPHA[(n % ALPHA.len() as u64) as usize] as char;
            n /= ALPHA.len() as u64;
            c
        })
        .collect()
}

fn complete_status(kind: &str, o: &Value) -> Option<Value> {
    let observed = o["metadata"]["generation"].clone();
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    let replicas = o["spec"]["replicas"].as_i64().unwrap_or(1);
    let ts = now();
    let hash = short_hash(&o["spec"]["template"].to_string());
    let mut s = match kind {
        "Deployment" => json!({
            "observedGeneration": observed, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [
                cond("Available", "MinimumReplicasAvailable", "Deployment has minimum availability.", &ts, true),
                cond("Progressing", "NewReplicaSetAvailable", &format!("ReplicaSet \"{name}-{}\" has successfully progressed.", &hash[..10]), &ts, true),
            ]
        }),
        "StatefulSet" => json!({
            "observedGeneration": observed, "replicas": replicas, "readyReplicas": replicas, "currentReplicas": replicas,
            "updatedReplicas": replicas, "availableReplicas": replicas,
            "currentRevision": format!("{name}-{}", &hash[..10]), "updateRevision": format!("{name}-{}", &hash[..10]), "collisionCount": 0,
        }),
        "DaemonSet" => json!({
            "observedGeneration": observed, "currentNumberScheduled": 1, "desiredNumberScheduled": 1, "numberMisscheduled": 0,
            "numberReady": 1, "numberAvailable": 1, "updatedNumberScheduled": 1,
        }),
        "ReplicaSet" => json!({
            "observedGeneration": observed, "replicas": replicas, "fullyLabeledReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
        }),
        "Job" => {
            let completions = o["spec"]["completions"].as_i64().unwrap_or(1);
            json!({
                "startTime": ts, "completionTime": ts, "succeeded": completions, "ready": 0, "terminating": 0,
                "uncountedTerminatedPods": {},
                "conditions": [
                    cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods", &ts, false),
                    cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods", &ts, false),
                ]
            })
        }
        "Pod" => {
            let statuses: Vec<Value> = o["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": ts}}}))
                .collect();
            json!({
                "phase": "Running", "podIP": "10.244.0.10", "podIPs": [{"ip": "10.244.0.10"}], "hostIP": "172.18.0.2", "startTime": ts,
                "qosClass": o["status"]["qosClass"].clone(),
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
                    {"type": "Ready", "status": "True", "lastTransitionTime": ts},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": ts},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
                ],
                "containerStatuses": statuses,
            })
        }
        _ => return None,
    };
    if (kind == "Deployment" || kind == "ReplicaSet")
        && replicas == 0
        && let Some(m) = s.as_object_mut()
    {
        m.remove("readyReplicas");
        m.remove("availableReplicas");
    }
    Some(s)
}

fn is_complete(kind: &str, o: &Value) -> bool {
    let s = &o["status"];
    match kind {
        "Job" => s["conditions"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True"
            })
        }),
        "Pod" => s["phase"] == "Running" || s["phase"] == "Succeeded" || s["phase"] == "Failed",
        _ => {
            let want = complete_status(kind, o);
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
                    for c in cs.iter_mut() {
                        if let Some(m) = c.as_object_mut() {
                            m.remove("lastUpdateTime");
                            m.remove("lastTransitionTime");
                        }
                    }
                }
                v
            };
            want.is_some_and(|w| strip(&w) == strip(s))
        }
    }
}

fn workloads(inner: &Inner, st: &mut State, mut pending: Option<&mut HashMap<String, Instant>>) {
    let delay = inner.opts.rollout_delay;
    for (group, kind) in [
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("batch", "Job"),
        ("", "Pod"),
    ] {
        let Some(rt) = rtype(st, group, kind) else {
            continue;
        };
        for o in st.list(&(rt.group.clone(), rt.plural.clone()), "") {
            if o["metadata"].get("deletionTimestamp").is_some() || is_complete(kind, &o) {
                continue;
            }
            if kind == "Job" && o["spec"]["suspend"].as_bool() == Some(true) {
                continue;
            }
            let key = format!(
                "{}/{}",
                o["metadata"]["uid"].as_str().unwrap_or_default(),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            );
            if let Some(p) = pending.as_deref_mut() {
                let since = *p.entry(key.clone()).or_insert_with(Instant::now);
                if since.elapsed() < delay {
                    continue;
                }
                p.remove(&key);
            }
            let Some(status) = complete_status(kind, &o) else {
                continue;
            };
            let mut next = (*o).clone();
            next["status"] = status;
            let (ns, name) = obj_key(&o);
            let t = server::internal_target(&rt, &ns, &name, "status");
            if let Err(e) = server::controller_update(inner, st, &t, next, MANAGER) {
                tracing::debug!(error = %e, kind, name, "simulated controller status update");
            }
        }
    }
    if let Some(p) = pending {
        p.retain(|_, since| since.elapsed() < Duration::from_secs(600));
    }
}

/// Marks a Job failed as the Job controller does when the backoff limit is exceeded.
pub(crate) fn fail_job(inner: &Inner, namespace: &str, name: &str) -> Result<(), ApiError> {
    let mut st = inner.lock_state();
    let rt =
        rtype(&st, "batch", "Job").ok_or_else(|| ApiError::not_found("batch", "jobs", name))?;
    let o = st
        .get(
            &("batch".into(), "jobs".into()),
            &(namespace.into(), name.into()),
        )
        .ok_or_else(|| ApiError::not_found("batch", "jobs", name))?;
    let ts = now();
    let backoff = o["spec"]["backoffLimit"].as_i64().unwrap_or(6);
    let mut next = (*o).clone();
    next["status"] = json!({
        "startTime": ts, "failed": backoff + 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
        "conditions": [
            cond("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit", &ts, false),
            cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", &ts, false),
        ]
    });
    let t = server::internal_target(&rt, namespace, name, "status");
    server::controller_update(inner, &mut st, &t, next, MANAGER).map(|_| ())
}

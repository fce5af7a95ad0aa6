//! Shapes shared by Flux's APIs (`fluxcd/pkg/apis/meta`): conditions, object references,
//! durations, and the annotation that requests a reconcile.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The annotation whose new value asks a controller to reconcile now.
pub const RECONCILE_REQUEST_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// Condition type: the object is reconciled and its status reflects its spec.
pub const READY: &str = "Ready";
/// Condition type: a reconcile is in progress or will be retried.
pub const RECONCILING: &str = "Reconciling";
/// Condition type: the object cannot be reconciled until its spec changes.
pub const STALLED: &str = "Stalled";
/// Condition type (GitRepository): the artifact of `status.artifact` is in storage.
pub const ARTIFACT_IN_STORAGE: &str = "ArtifactInStorage";
/// Condition type (GitRepository): the last fetch failed.
pub const FETCH_FAILED: &str = "FetchFailed";
/// Condition type (Kustomization): the health checks passed.
pub const HEALTHY: &str = "Healthy";

/// A `metav1.Condition`, as Flux's status conditions are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type (`Ready`, `Reconciling`, ...).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// A CamelCase reason.
    pub reason: String,
    /// A message for people.
    pub message: String,
}

/// `{name}`: an object in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// The object's name.
    pub name: String,
}

/// `{name, namespace}`: an object, in the referrer's namespace when `namespace` is unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamespacedObjectReference {
    /// The object's name.
    pub name: String,
    /// The object's namespace (default: the referrer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `{name, key}`: a key of a Secret in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyReference {
    /// The Secret's name.
    pub name: String,
    /// The key (default depends on the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The Go duration pattern Flux's CRDs validate `interval`-like fields with.
pub const DURATION_PATTERN: &str = "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$";

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a Go duration such as 30s, 5m or 1h30m")]
pub struct DurationError(pub String);

/// Parses a Go duration as Flux's CRDs accept it (`1h30m`, `90s`, `1.5m`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_string());
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let (scale, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            return Err(err());
        };
        total += number * scale;
        rest = &rest[len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// The current time as Kubernetes writes it (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}

/// Sets (or replaces) a condition; the transition time changes only when the status does.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" };
    let now = now_rfc3339();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = now;
        }
        c.status = status.to_string();
        c.reason = reason.to_string();
        c.message = message.to_string();
        c.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            observed_generation: generation,
            last_transition_time: now,
            reason: reason.to_string(),
            message: message.to_string(),
        });
    }
    // Flux keeps Ready first, then Reconciling/Stalled, then the rest.
    conditions.sort_by_key(|c| match c.type_.as_str() {
        READY => 0,
        RECONCILING => 1,
        STALLED => 2,
        _ => 3,
    });
}

/// Removes a condition.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The condition of `type_`, when set.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `Ready` is `True` and was set for `generation`.
pub fn is_ready(conditions: &[Condition], generation: Option<i64>) -> bool {
    find_condition(conditions, READY).is_some_and(|c| {
        c.status == "True" && (generation.is_none() || c.observed_generation == generation)
    })
}

/// The schema of a Go duration field (Flux validates them with [`DURATION_PATTERN`]).
pub(crate) fn duration_schema(_gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": DURATION_PATTERN,
    })
}

/// Writes `status` to the status subresource of `object` (`kind`) as a merge patch, and records
/// its Ready condition as `gotk_reconcile_condition`.
pub async fn write_status<K>(
    api: &kube::Api<K>,
    kind: &'static str,
    object: &K,
    status: &impl serde::Serialize,
    conditions: &[Condition],
) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use kube::ResourceExt as _;
    let namespace = object.namespace().unwrap_or_default();
    crate::metrics::record_condition(kind, &namespace, &object.name_any(), conditions);
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &object.name_any(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn transition_time_moves_only_with_status() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            RECONCILING,
            true,
            "Progressing",
            "a",
            Some(1),
        );
        set_condition(&mut conditions, READY, false, "Failed", "b", Some(1));
        assert_eq!(conditions[0].type_, READY);
        let before = conditions[0].last_transition_time.clone();
        conditions[0].last_transition_time = "2000-01-01T00:00:00Z".into();
        set_condition(&mut conditions, READY, false, "Failed", "c", Some(2));
        assert_eq!(conditions[0].last_transition_time, "2000-01-01T00:00:00Z");
        assert_eq!(conditions[0].message, "c");
        set_condition(&mut conditions, READY, true, "Succeeded", "d", Some(2));
        assert_ne!(conditions[0].last_transition_time, "2000-01-01T00:00:00Z");
        assert!(!before.is_empty());
        assert!(is_ready(&conditions, Some(2)));
        assert!(!is_ready(&conditions, Some(3)));
        remove_condition(&mut conditions, RECONCILING);
        assert_eq!(conditions.len(), 1);
    }
}

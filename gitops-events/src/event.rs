//! Flux's event model: the JSON a controller POSTs to notification-controller.
//!
//! The schema is `fluxcd/pkg/apis/event/v1beta1.Event`: `involvedObject` (a Kubernetes object
//! reference), `severity` (`info` or `error`), `timestamp` (RFC 3339, second precision, UTC),
//! `message`, `reason`, `metadata` (string map, controller keys prefixed with the object's API
//! group, for example `kustomize.toolkit.fluxcd.io/revision`), `reportingController` and
//! `reportingInstance`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The metadata key suffix for the revision an object was reconciled at.
pub const META_REVISION_KEY: &str = "revision";
/// The metadata key suffix for the revision of the origin source (OCI artifacts built from Git).
pub const META_ORIGIN_REVISION_KEY: &str = "originRevision";
/// The metadata key suffix for a token that makes otherwise identical events distinct.
pub const META_TOKEN_KEY: &str = "token";
/// The metadata key suffix for an artifact checksum (dropped before alerting, as Flux does).
pub const META_CHECKSUM_KEY: &str = "checksum";
/// The metadata key suffix for an artifact digest (dropped before alerting, as Flux does).
pub const META_DIGEST_KEY: &str = "digest";
/// The metadata key suffix a controller sets to flag an event for commit-status updates.
pub const META_COMMIT_STATUS_KEY: &str = "commit_status";
/// The API group of event annotations: an object annotated `event.toolkit.fluxcd.io/<key>`
/// contributes `<key>` to the metadata of its events.
pub const EVENT_GROUP: &str = "event.toolkit.fluxcd.io";
/// The reason Flux controllers give to "reconciliation in progress" events.
pub const PROGRESSING_REASON: &str = "Progressing";

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Something happened as expected.
    Info,
    /// Something failed.
    Error,
}

impl Severity {
    /// Flux's wire name: `info` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a severity is neither `info` nor `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event severity {0:?}: expected \"info\" or \"error\"")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(Severity::Info),
            "error" => Ok(Severity::Error),
            other => Err(UnknownSeverity(other.to_string())),
        }
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The Kubernetes object an event is about (`corev1.ObjectReference`, empty fields omitted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// The object's kind, for example `Kustomization`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The object's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The object's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The object's UID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The object's `apiVersion`, for example `kustomize.toolkit.fluxcd.io/v1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// The object's resourceVersion when the event was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// A field path inside the object, rarely set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field_path: String,
}

impl ObjectReference {
    /// A reference with kind, namespace and name set.
    pub fn new(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        ObjectReference {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// The API group of `apiVersion` (`""` for the core group).
    pub fn group(&self) -> &str {
        match self.api_version.split_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }
}

impl fmt::Display for ObjectReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// One event, in Flux's JSON schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The object the event is about.
    pub involved_object: ObjectReference,
    /// `info` or `error`.
    pub severity: Severity,
    /// When the event happened (serialised as RFC 3339 with second precision, in UTC).
    #[serde(with = "rfc3339_seconds")]
    pub timestamp: jiff::Timestamp,
    /// A human-readable description.
    pub message: String,
    /// A short machine-readable reason in UpperCamelCase, for example `ReconciliationSucceeded`.
    pub reason: String,
    /// Extra key/value pairs (revision, summary, annotations, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The controller that emitted the event, for example `kustomize-controller`.
    #[serde(default)]
    pub reporting_controller: String,
    /// The controller instance (pod) that emitted the event.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reporting_instance: String,
}

impl Event {
    /// An event about `object`, stamped now, with no metadata.
    pub fn new(
        object: ObjectReference,
        severity: Severity,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Event {
            involved_object: object,
            severity,
            timestamp: jiff::Timestamp::now(),
            message: message.into(),
            reason: reason.into(),
            metadata: BTreeMap::new(),
            reporting_controller: String::new(),
            reporting_instance: String::new(),
        }
    }

    /// Sets the reporting controller.
    pub fn with_reporting_controller(mut self, controller: impl Into<String>) -> Self {
        self.reporting_controller = controller.into();
        self
    }

    /// Adds one metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds the revision under the object's group, `<group>/revision`, as controllers do.
    pub fn with_revision(self, revision: impl Into<String>) -> Self {
        let key = self.group_key(META_REVISION_KEY);
        self.with_metadata(key, revision)
    }

    /// `<group>/<suffix>` for the involved object's API group (just `suffix` for the core group).
    pub fn group_key(&self, suffix: &str) -> String {
        let group = self.involved_object.group();
        if group.is_empty() {
            suffix.to_string()
        } else {
            format!("{group}/{suffix}")
        }
    }

    /// A metadata value looked up by its short key, then under the object's group prefix.
    pub fn meta(&self, short_key: &str) -> Option<&str> {
        self.metadata
            .get(short_key)
            .or_else(|| self.metadata.get(&self.group_key(short_key)))
            .map(String::as_str)
    }

    /// The revision for commit statuses: the origin revision when there is one (an OCI
    /// artifact built from Git), otherwise the revision.
    pub fn revision(&self) -> Option<&str> {
        self.meta(META_ORIGIN_REVISION_KEY)
            .or_else(|| self.meta(META_REVISION_KEY))
    }

    /// Whether the event has the given reason.
    pub fn has_reason(&self, reason: &str) -> bool {
        self.reason == reason
    }

    /// Flux's event key: the hex SHA-256 of `event/name=…/namespace=…/kind=…/message=…` plus
    /// the origin revision, revision and token metadata when present. The dispatcher rate
    /// limits identical keys; providers may use it as an idempotency token.
    pub fn key(&self) -> String {
        let o = &self.involved_object;
        let mut comps = vec![
            "event".to_string(),
            format!("name={}", o.name),
            format!("namespace={}", o.namespace),
            format!("kind={}", o.kind),
            format!("message={}", self.message),
        ];
        for (suffix, label) in [
            (META_ORIGIN_REVISION_KEY, "originRevision"),
            (META_REVISION_KEY, "revision"),
            (META_TOKEN_KEY, "token"),
        ] {
            if let Some(v) = self.metadata.get(&self.group_key(suffix)) {
                comps.push(format!("{label}={v}"));
            }
        }
        hex::encode(Sha256::digest(comps.join("/").as_bytes()))
    }

    /// `kind/name.namespace` with the kind in lower case: how chat providers title an event.
    pub fn object_title(&self) -> String {
        let o = &self.involved_object;
        format!("{}/{}.{}", o.kind.to_lowercase(), o.name, o.namespace)
    }
}

/// Serde helpers for Kubernetes' `metav1.Time`: RFC 3339, whole seconds, UTC (`Z`).
pub mod rfc3339_seconds {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Formats `2006-01-02T15:04:05Z`.
    pub fn format(ts: &jiff::Timestamp) -> String {
        ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// Serialises a timestamp.
    pub fn serialize<S: Serializer>(ts: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(ts))
    }

    /// Parses any RFC 3339 timestamp (offsets and fractions accepted).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<jiff::Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<jiff::Timestamp>()
            .map_err(|e| serde::de::Error::custom(format!("invalid RFC 3339 timestamp {s:?}: {e}")))
    }
}

/// Splits an UpperCamelCase reason into lower-case words, as Flux does for commit-status
/// descriptions: `ReconciliationSucceeded` → `reconciliation succeeded`.
pub fn reason_words(reason: &str) -> String {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Lower,
        Upper,
        Digit,
        Other,
    }
    let class = |c: char| {
        if c.is_lowercase() {
            Class::Lower
        } else if c.is_uppercase() {
            Class::Upper
        } else if c.is_numeric() {
            Class::Digit
        } else {
            Class::Other
        }
    };
    let mut runs: Vec<Vec<char>> = Vec::new();
    let mut last: Option<Class> = None;
    for c in reason.chars() {
        let cl = class(c);
        match (last, runs.last_mut()) {
            (Some(l), Some(run)) if l == cl => run.push(c),
            _ => runs.push(vec![c]),
        }
        last = Some(cl);
    }
    // "PDFLoader" splits as "PDF", "Loader": move the last upper-case letter of a run into
    // the lower-case run that follows.
    for i in 0..runs.len().saturating_sub(1) {
        let starts_upper = runs[i].first().is_some_and(|c| c.is_uppercase());
        let next_lower = runs[i + 1].first().is_some_and(|c| c.is_lowercase());
        if starts_upper
            && next_lower
            && let Some(c) = runs[i].pop()
        {
            runs[i + 1].insert(0, c);
        }
    }
    runs.into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| r.into_iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_words_split_like_flux() {
        assert_eq!(
            reason_words("ReconciliationSucceeded"),
            "reconciliation succeeded"
        );
        assert_eq!(reason_words("HealthCheckFailed"), "health check failed");
        assert_eq!(reason_words("PDFLoader"), "pdf loader");
        assert_eq!(reason_words("Progressing"), "progressing");
    }

    #[test]
    fn severity_parses_only_flux_names() {
        assert_eq!("info".parse::<Severity>(), Ok(Severity::Info));
        assert_eq!("error".parse::<Severity>(), Ok(Severity::Error));
        assert!("warning".parse::<Severity>().is_err());
    }

    #[test]
    fn group_and_keys() {
        let mut o = ObjectReference::new("Kustomization", "flux-system", "apps");
        o.api_version = "kustomize.toolkit.fluxcd.io/v1".into();
        let e = Event::new(o, Severity::Info, "ReconciliationSucceeded", "ok")
            .with_revision("main@sha1:abc");
        assert_eq!(
            e.metadata
                .get("kustomize.toolkit.fluxcd.io/revision")
                .map(String::as_str),
            Some("main@sha1:abc")
        );
        assert_eq!(e.revision(), Some("main@sha1:abc"));
    }

    #[test]
    fn event_key_changes_with_revision_and_message_only() {
        let mut o = ObjectReference::new("Kustomization", "flux-system", "apps");
        o.api_version = "kustomize.toolkit.fluxcd.io/v1".into();
        let a = Event::new(o.clone(), Severity::Info, "A", "msg").with_revision("r1");
        let mut b = a.clone();
        b.reason = "B".into();
        b.timestamp = jiff::Timestamp::UNIX_EPOCH;
        assert_eq!(
            a.key(),
            b.key(),
            "reason and timestamp are not part of the key"
        );
        let c = a.clone().with_revision("r2");
        assert_ne!(a.key(), c.key());
        let mut d = a.clone();
        d.message = "other".into();
        assert_ne!(a.key(), d.key());
        // The documented preimage.
        let expected = hex::encode(Sha256::digest(
            b"event/name=apps/namespace=flux-system/kind=Kustomization/message=msg/revision=r1",
        ));
        assert_eq!(a.key(), expected);
    }
}

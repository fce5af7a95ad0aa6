//! Alerts: which events go to which provider, and with what metadata (Flux's `Alert`).

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::event::{
    EVENT_GROUP, Event, META_CHECKSUM_KEY, META_DIGEST_KEY, ObjectReference, Severity,
};

/// What building an alert can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A regular expression in `inclusionList` or `exclusionList` does not compile.
    #[error(
        "alert {namespace}/{name}: {field}[{index}] {pattern:?} is not a valid regex: {source}"
    )]
    Regex {
        /// The alert's namespace.
        namespace: String,
        /// The alert's name.
        name: String,
        /// `inclusionList` or `exclusionList`.
        field: &'static str,
        /// The index in the list.
        index: usize,
        /// The pattern.
        pattern: String,
        /// The regex error.
        #[source]
        source: regex::Error,
    },
    /// The summary is longer than Flux allows.
    #[error("alert {namespace}/{name}: summary is {len} characters, at most 255 are allowed")]
    SummaryTooLong {
        /// The alert's namespace.
        namespace: String,
        /// The alert's name.
        name: String,
        /// Its length.
        len: usize,
    },
}

/// One entry of `eventSources`: events about objects of this kind and name (`*` for all) in
/// this namespace (the alert's when empty), optionally only objects with these labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    /// The kind, for example `Kustomization`.
    pub kind: String,
    /// The name, or `*`.
    pub name: String,
    /// The namespace; empty means the alert's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Labels the object must carry (only with name `*`, as in Flux).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// Flux's `Alert.spec` (notification.toolkit.fluxcd.io/v1beta3), plus this crate's
/// flood-control options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertSpec {
    /// The provider events go to.
    pub provider_ref: ProviderRef,
    /// Which objects' events match.
    pub event_sources: Vec<EventSource>,
    /// `info` (all events) or `error` (errors only). Default `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_severity: Option<Severity>,
    /// Regexes: when set, the message must match one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inclusion_list: Vec<String>,
    /// Regexes: a message matching one of them is dropped (wins over inclusion).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusion_list: Vec<String>,
    /// Metadata added to every event of this alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_metadata: BTreeMap<String, String>,
    /// A summary added as the `summary` metadata (deprecated in Flux, still honoured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// When true, the alert matches nothing.
    #[serde(default)]
    pub suspend: bool,
}

/// `providerRef`: a provider in the alert's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRef {
    /// The provider's name.
    pub name: String,
}

/// Flood control beyond Flux (notification-controller issues 158, 284, 1386): all optional,
/// all off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodControl {
    /// Send an error only once the same object has failed this many times in a row (counted
    /// on every matching error event, duplicates included). 0 and 1 mean "at once".
    pub min_occurrences: u32,
    /// Once an error was sent for an object, send one recovery message at the next info event
    /// about it (even for `eventSeverity: error` alerts), then stay quiet until it fails again.
    pub recovery: bool,
    /// Group events about one object and revision arriving within this window into one
    /// notification.
    pub group_window: Option<Duration>,
}

/// A compiled alert.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The alert's namespace.
    pub namespace: String,
    /// The alert's name.
    pub name: String,
    /// The provider it sends to.
    pub provider: String,
    sources: Vec<EventSource>,
    severity: Severity,
    inclusion: Vec<Regex>,
    exclusion: Vec<Regex>,
    event_metadata: BTreeMap<String, String>,
    summary: Option<String>,
    suspend: bool,
    /// Flood control.
    pub flood: FloodControl,
}

/// Why an alert does or does not take an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The event goes to the alert's provider.
    Matched,
    /// No event source matches the object (or its labels).
    NoSource,
    /// The alert wants errors only.
    Severity,
    /// The inclusion list is set and no regex matches.
    NotIncluded,
    /// A regex of the exclusion list matches.
    Excluded,
    /// The alert is suspended.
    Suspended,
    /// The event comes from another namespace and cross-namespace references are blocked
    /// (Flux's `--no-cross-namespace-refs`).
    CrossNamespace,
}

impl Alert {
    /// Compiles a spec.
    pub fn from_spec(
        namespace: impl Into<String>,
        name: impl Into<String>,
        spec: &AlertSpec,
    ) -> Result<Self, AlertError> {
        let namespace = namespace.into();
        let name = name.into();
        let compile = |field: &'static str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(index, pattern)| {
                    Regex::new(pattern).map_err(|source| AlertError::Regex {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        field,
                        index,
                        pattern: pattern.clone(),
                        source,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let inclusion = compile("inclusionList", &spec.inclusion_list)?;
        let exclusion = compile("exclusionList", &spec.exclusion_list)?;
        if let Some(s) = &spec.summary
            && s.chars().count() > 255
        {
            return Err(AlertError::SummaryTooLong {
                namespace,
                name,
                len: s.chars().count(),
            });
        }
        Ok(Alert {
            provider: spec.provider_ref.name.clone(),
            sources: spec.event_sources.clone(),
            severity: spec.event_severity.unwrap_or(Severity::Info),
            inclusion,
            exclusion,
            event_metadata: spec.event_metadata.clone(),
            summary: spec.summary.clone().filter(|s| !s.is_empty()),
            suspend: spec.suspend,
            flood: FloodControl::default(),
            namespace,
            name,
        })
    }

    /// A simple alert: all events of `kind` objects named `name` (or `*`) in `namespace` go
    /// to `provider`.
    pub fn new(namespace: &str, name: &str, provider: &str, sources: Vec<EventSource>) -> Self {
        let spec = AlertSpec {
            provider_ref: ProviderRef {
                name: provider.to_string(),
            },
            event_sources: sources,
            ..Default::default()
        };
        // No regex and no summary: compiling cannot fail.
        match Alert::from_spec(namespace, name, &spec) {
            Ok(a) => a,
            Err(e) => unreachable!("an alert without regexes always compiles: {e}"),
        }
    }

    /// Sets the flood control options.
    pub fn with_flood_control(mut self, flood: FloodControl) -> Self {
        self.flood = flood;
        self
    }

    /// Only errors.
    pub fn errors_only(mut self) -> Self {
        self.severity = Severity::Error;
        self
    }

    /// The severity filter.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// Whether the alert is suspended.
    pub fn is_suspended(&self) -> bool {
        self.suspend
    }

    /// Whether an event about `object` (with `labels`, when known) comes from one of the
    /// alert's sources.
    pub fn source_matches(
        &self,
        object: &ObjectReference,
        labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        self.sources.iter().any(|s| {
            let ns = if s.namespace.is_empty() {
                &self.namespace
            } else {
                &s.namespace
            };
            if object.namespace != *ns || object.kind != s.kind {
                return false;
            }
            if s.name == "*" {
                if s.match_labels.is_empty() {
                    return true;
                }
                // Labels unknown: a selector cannot match (Flux's failed lookup does the same).
                labels.is_some_and(|l| s.match_labels.iter().all(|(k, v)| l.get(k) == Some(v)))
            } else {
                object.name == s.name
            }
        })
    }

    /// Decides whether the alert takes an event, in Flux's order: suspension, exclusion,
    /// inclusion, then source and severity.
    pub fn matches(&self, event: &Event, labels: Option<&BTreeMap<String, String>>) -> Match {
        if self.suspend {
            return Match::Suspended;
        }
        if self.exclusion.iter().any(|r| r.is_match(&event.message)) {
            return Match::Excluded;
        }
        if !self.inclusion.is_empty() && !self.inclusion.iter().any(|r| r.is_match(&event.message))
        {
            return Match::NotIncluded;
        }
        if !self.source_matches(&event.involved_object, labels) {
            return Match::NoSource;
        }
        if self.severity == Severity::Error && event.severity != Severity::Error {
            return Match::Severity;
        }
        Match::Matched
    }

    /// The event as this alert's provider receives it: metadata merged with Flux's
    /// precedence, lowest first — the object's `event.toolkit.fluxcd.io/*` annotations, the
    /// alert's `eventMetadata`, the alert's `summary`, then the controller's
    /// `<group>/*` metadata. Prefixes are stripped; overridden keys are logged.
    pub fn notification(&self, event: &Event) -> Event {
        let mut out = event.clone();
        out.metadata = merge_metadata(
            event,
            &self.event_metadata,
            self.summary.as_deref(),
            &format!("{}/{}", self.namespace, self.name),
        );
        out
    }
}

/// The event as a provider receives it without an alert: metadata cleaned up and merged as
/// [`Alert::notification`] does, with no alert metadata (for sending one event directly, as
/// `gitops notify` does).
pub fn for_provider(event: &Event) -> Event {
    let mut out = event.clone();
    out.metadata = merge_metadata(event, &BTreeMap::new(), None, "-");
    out
}

/// Keeps only the metadata Flux alerts on: keys under `event.toolkit.fluxcd.io/` or the
/// involved object's group, without the checksum and digest entries.
pub fn cleanup_metadata(event: &Event) -> BTreeMap<String, String> {
    let group = event.involved_object.group();
    let object_prefix = format!("{group}/");
    let event_prefix = format!("{EVENT_GROUP}/");
    let excluded = [
        format!("{object_prefix}{META_CHECKSUM_KEY}"),
        format!("{object_prefix}{META_DIGEST_KEY}"),
    ];
    event
        .metadata
        .iter()
        .filter(|(k, _)| !excluded.iter().any(|x| x.eq_ignore_ascii_case(k)))
        .filter(|(k, _)| {
            k.starts_with(&event_prefix) || (!group.is_empty() && k.starts_with(&object_prefix))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn merge_metadata(
    event: &Event,
    alert_metadata: &BTreeMap<String, String>,
    summary: Option<&str>,
    alert: &str,
) -> BTreeMap<String, String> {
    let group = event.involved_object.group();
    let object_prefix = format!("{group}/");
    let event_prefix = format!("{EVENT_GROUP}/");
    let cleaned = cleanup_metadata(event);
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let put = |out: &mut BTreeMap<String, String>, k: &str, v: &str, from: &str| {
        if let Some(old) = out.insert(k.to_string(), v.to_string())
            && old != v
        {
            tracing::warn!(
                alert,
                key = k,
                overridden_by = from,
                "event metadata key overridden"
            );
        }
    };
    for (k, v) in &cleaned {
        if let Some(short) = k.strip_prefix(&event_prefix) {
            put(&mut out, short, v, "object annotation");
        }
    }
    for (k, v) in alert_metadata {
        put(&mut out, k, v, "alert eventMetadata");
    }
    if let Some(s) = summary {
        put(&mut out, "summary", s, "alert summary");
    }
    if !group.is_empty() && group != EVENT_GROUP {
        for (k, v) in &cleaned {
            if let Some(short) = k.strip_prefix(&object_prefix) {
                put(&mut out, short, v, "controller metadata");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kustomization(name: &str) -> ObjectReference {
        let mut o = ObjectReference::new("Kustomization", "flux-system", name);
        o.api_version = "kustomize.toolkit.fluxcd.io/v1".into();
        o
    }

    fn source(kind: &str, name: &str) -> EventSource {
        EventSource {
            kind: kind.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn sources_kind_name_star_namespace() {
        let a = Alert::new(
            "flux-system",
            "a",
            "slack",
            vec![source("Kustomization", "apps")],
        );
        assert!(a.source_matches(&kustomization("apps"), None));
        assert!(!a.source_matches(&kustomization("infra"), None));
        let star = Alert::new(
            "flux-system",
            "a",
            "slack",
            vec![source("Kustomization", "*")],
        );
        assert!(star.source_matches(&kustomization("infra"), None));
        let mut other_ns = kustomization("apps");
        other_ns.namespace = "team-a".into();
        assert!(
            !star.source_matches(&other_ns, None),
            "namespace defaults to the alert's"
        );
        let explicit = Alert::new(
            "flux-system",
            "a",
            "slack",
            vec![EventSource {
                namespace: "team-a".into(),
                ..source("Kustomization", "*")
            }],
        );
        assert!(explicit.source_matches(&other_ns, None));
        let mut hr = kustomization("apps");
        hr.kind = "HelmRelease".into();
        assert!(!star.source_matches(&hr, None));
    }

    #[test]
    fn match_labels_need_labels() {
        let mut s = source("Kustomization", "*");
        s.match_labels.insert("env".into(), "prod".into());
        let a = Alert::new("flux-system", "a", "slack", vec![s]);
        let prod = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let dev = BTreeMap::from([("env".to_string(), "dev".to_string())]);
        assert!(a.source_matches(&kustomization("x"), Some(&prod)));
        assert!(!a.source_matches(&kustomization("x"), Some(&dev)));
        assert!(!a.source_matches(&kustomization("x"), None));
    }

    #[test]
    fn severity_inclusion_exclusion() {
        let spec = AlertSpec {
            provider_ref: ProviderRef { name: "p".into() },
            event_sources: vec![source("Kustomization", "*")],
            inclusion_list: vec!["^Applied".into(), "failed".into()],
            exclusion_list: vec!["timeout".into()],
            ..Default::default()
        };
        let a = Alert::from_spec("flux-system", "a", &spec).unwrap();
        let ev = |sev, msg: &str| Event::new(kustomization("apps"), sev, "R", msg);
        assert_eq!(
            a.matches(&ev(Severity::Info, "Applied revision"), None),
            Match::Matched
        );
        assert_eq!(
            a.matches(&ev(Severity::Info, "nothing"), None),
            Match::NotIncluded
        );
        assert_eq!(
            a.matches(
                &ev(Severity::Error, "health check failed after timeout"),
                None
            ),
            Match::Excluded,
            "exclusion wins over inclusion"
        );
        let errors = a.clone().errors_only();
        assert_eq!(
            errors.matches(&ev(Severity::Info, "Applied"), None),
            Match::Severity
        );
        assert_eq!(
            errors.matches(&ev(Severity::Error, "failed"), None),
            Match::Matched
        );
        let bad = AlertSpec {
            exclusion_list: vec!["(".into()],
            ..spec
        };
        let err = Alert::from_spec("ns", "bad", &bad).unwrap_err().to_string();
        assert!(err.contains("exclusionList[0]"), "{err}");
    }

    #[test]
    fn metadata_precedence() {
        let e = Event::new(kustomization("apps"), Severity::Info, "R", "m")
            .with_metadata("kustomize.toolkit.fluxcd.io/revision", "main@sha1:abc")
            .with_metadata("kustomize.toolkit.fluxcd.io/checksum", "dropped")
            .with_metadata("event.toolkit.fluxcd.io/team", "from-annotation")
            .with_metadata("event.toolkit.fluxcd.io/env", "annotation-env")
            .with_metadata("event.toolkit.fluxcd.io/revision", "annotation-rev")
            .with_metadata("other.io/ignored", "x");
        let spec = AlertSpec {
            provider_ref: ProviderRef { name: "p".into() },
            event_sources: vec![source("Kustomization", "*")],
            event_metadata: BTreeMap::from([
                ("env".to_string(), "alert-env".to_string()),
                ("summary".to_string(), "alert-meta-summary".to_string()),
                ("cluster".to_string(), "prod-eu".to_string()),
            ]),
            summary: Some("the summary".into()),
            ..Default::default()
        };
        let a = Alert::from_spec("flux-system", "a", &spec).unwrap();
        let n = a.notification(&e);
        let expected = BTreeMap::from([
            ("team".to_string(), "from-annotation".to_string()),
            ("env".to_string(), "alert-env".to_string()),
            ("cluster".to_string(), "prod-eu".to_string()),
            ("summary".to_string(), "the summary".to_string()),
            ("revision".to_string(), "main@sha1:abc".to_string()),
        ]);
        assert_eq!(n.metadata, expected);
    }
}

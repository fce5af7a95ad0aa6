//! The event JSON is Flux's, byte for byte.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use gitops_events::{Event, Severity};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn info_event_round_trips_byte_for_byte() {
    let json = fixture("flux-event-info.json");
    let event: Event = serde_json::from_str(&json).unwrap();
    assert_eq!(event.severity, Severity::Info);
    assert_eq!(event.involved_object.kind, "Kustomization");
    assert_eq!(event.involved_object.group(), "kustomize.toolkit.fluxcd.io");
    assert_eq!(event.involved_object.resource_version, "123456");
    assert_eq!(event.reason, "ReconciliationSucceeded");
    assert_eq!(
        event.reporting_instance,
        "kustomize-controller-7f5c6b9d4-abcde"
    );
    assert_eq!(
        event.revision(),
        Some("main@sha1:8a0e3b4c5d6f708192a3b4c5d6e7f8091a2b3c4d")
    );
    assert_eq!(event.timestamp.as_second(), 1714979289);
    assert_eq!(serde_json::to_string(&event).unwrap(), json);
}

#[test]
fn error_event_without_optional_fields_round_trips() {
    let json = fixture("flux-event-error.json");
    let event: Event = serde_json::from_str(&json).unwrap();
    assert_eq!(event.severity, Severity::Error);
    assert!(event.metadata.is_empty());
    assert!(event.reporting_instance.is_empty());
    let out = serde_json::to_string(&event).unwrap();
    assert_eq!(out, json);
    assert!(
        !out.contains("metadata"),
        "empty metadata is omitted as Go's omitempty does"
    );
}

#[test]
fn timestamps_with_offsets_and_fractions_normalise_to_utc_seconds() {
    let json = fixture("flux-event-error.json").replace(
        "2024-05-06T07:10:00Z",
        "2024-05-06T09:10:00.123456789+02:00",
    );
    let event: Event = serde_json::from_str(&json).unwrap();
    let out = serde_json::to_string(&event).unwrap();
    assert!(
        out.contains("\"timestamp\":\"2024-05-06T07:10:00Z\""),
        "{out}"
    );
}

#[test]
fn unknown_severity_and_bad_timestamp_are_errors() {
    let json = fixture("flux-event-error.json");
    let bad = json.replace("\"error\"", "\"warning\"");
    let err = serde_json::from_str::<Event>(&bad).unwrap_err().to_string();
    assert!(err.contains("warning"), "{err}");
    let bad = json.replace("2024-05-06T07:10:00Z", "yesterday");
    assert!(serde_json::from_str::<Event>(&bad).is_err());
}

//! Reconcile metrics with Flux's names, through the `metrics` facade (nothing is recorded
//! until a binary installs a recorder, such as `gitops-manager`'s Prometheus exporter).

use std::time::Duration;

use crate::meta::{self, Condition};

/// `gotk_reconcile_duration_seconds`: how long a reconcile took.
pub const RECONCILE_DURATION: &str = "gotk_reconcile_duration_seconds";
/// The buckets of [`RECONCILE_DURATION`], Flux's (`prometheus.ExponentialBuckets(10e-3, 10, 5)`).
pub const RECONCILE_DURATION_BUCKETS: [f64; 5] = [0.01, 0.1, 1.0, 10.0, 100.0];
/// `gotk_reconcile_condition`: 1 for the object's current Ready status, 0 for the others.
pub const RECONCILE_CONDITION: &str = "gotk_reconcile_condition";
/// `gotk_suspend_status`: 1 when the object is suspended.
pub const SUSPEND_STATUS: &str = "gotk_suspend_status";

/// The labels of one object. `kind` and the other fixed values are borrowed, not copied: the
/// exporter keeps every series' labels for as long as it runs (several series per object).
fn labels(kind: &'static str, namespace: &str, name: &str) -> Vec<metrics::Label> {
    vec![
        metrics::Label::from_static_parts("kind", kind),
        metrics::Label::new("name", name.to_string()),
        metrics::Label::new("namespace", namespace.to_string()),
    ]
}

/// Records how long one reconcile of `kind` `namespace/name` took.
pub fn record_duration(kind: &'static str, namespace: &str, name: &str, took: Duration) {
    metrics::histogram!(RECONCILE_DURATION, labels(kind, namespace, name))
        .record(took.as_secs_f64());
}

/// Records the Ready condition of `kind` `namespace/name`.
pub fn record_condition(kind: &'static str, namespace: &str, name: &str, conditions: &[Condition]) {
    let current = meta::find_condition(conditions, meta::READY)
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown");
    for status in ["True", "False", "Unknown", "Deleted"] {
        let mut with = labels(kind, namespace, name);
        with.push(metrics::Label::from_static_parts("type", meta::READY));
        with.push(metrics::Label::from_static_parts("status", status));
        metrics::gauge!(RECONCILE_CONDITION, with).set(if status == current { 1.0 } else { 0.0 });
    }
}

/// Records whether `kind` `namespace/name` is suspended.
pub fn record_suspend(kind: &'static str, namespace: &str, name: &str, suspended: bool) {
    metrics::gauge!(SUSPEND_STATUS, labels(kind, namespace, name)).set(if suspended {
        1.0
    } else {
        0.0
    });
}

/// Runs one reconcile of `kind` `namespace/name`, recording whether the object is suspended
/// (`gotk_suspend_status`) and how long the reconcile took (`gotk_reconcile_duration_seconds`).
pub async fn measure<T>(
    kind: &'static str,
    namespace: &str,
    name: &str,
    suspended: bool,
    reconcile: impl std::future::Future<Output = T>,
) -> T {
    let started = std::time::Instant::now();
    record_suspend(kind, namespace, name, suspended);
    let result = reconcile.await;
    record_duration(kind, namespace, name, started.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux_series_and_labels_are_recorded() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(RECONCILE_DURATION.to_string()),
                &RECONCILE_DURATION_BUCKETS,
            )
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        let mut conditions = Vec::new();
        meta::set_condition(&mut conditions, meta::READY, false, "Failed", "no", Some(1));
        metrics::with_local_recorder(&recorder, || {
            record_condition("Kustomization", "ns", "app", &conditions);
            record_suspend("Kustomization", "ns", "app", true);
            record_duration("Kustomization", "ns", "app", Duration::from_millis(50));
        });
        let text = handle.render();
        let has = |line: &str| text.lines().any(|l| l == line);
        for (status, value) in [("True", 0), ("False", 1), ("Unknown", 0), ("Deleted", 0)] {
            let line = format!(
                "gotk_reconcile_condition{{kind=\"Kustomization\",name=\"app\",namespace=\"ns\",type=\"Ready\",status=\"{status}\"}} {value}"
            );
            assert!(has(&line), "{line} missing in:\n{text}");
        }
        assert!(
            has("gotk_suspend_status{kind=\"Kustomization\",name=\"app\",namespace=\"ns\"} 1"),
            "{text}"
        );
        assert!(
            has(
                "gotk_reconcile_duration_seconds_bucket{kind=\"Kustomization\",name=\"app\",namespace=\"ns\",le=\"0.1\"} 1"
            ),
            "{text}"
        );
    }
}

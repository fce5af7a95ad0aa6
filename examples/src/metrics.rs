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

fn labels(kind: &'static str, namespace: &str, name: &str) -> [(&'static str, String); 3] {
    [
        ("kind", kind.to_string()),
        ("name", name.to_string()),
        ("namespace", namespace.to_string()),
    ]
}

/// Records how long one reconcile of `kind` `namespace/name` took.
pub fn record_duration(kind: &'static str, namespace: &str, name: &str, took: Duration) {
    metrics::histogram!(RECONCILE_DURATION, &labels(kind, namespace, name))
        .record(took.as_secs_f64());
}

/// Records the Ready condition of `kind` `namespace/name`.
pub fn record_condition(kind: &'static str, namespace: &str, name: &str, conditions: &[Condition]) {
    let labels = labels(kind, namespace, name);
    let current = meta::find_condition(conditions, meta::READY)
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown");
    for status in ["True", "False", "Unknown", "Deleted"] {
        let mut with = labels.to_vec();
        with.push(("type", meta::READY.to_string()));
        with.push(("status", status.to_string()));
        metrics::gauge!(RECONCILE_CONDITION, &with).set(if status == current { 1.0 } else { 0.0 });
    }
}

/// Records whether `kind` `namespace/name` is suspended.
pub fn record_suspend(kind: &'static str, namespace: &str, name: &str, suspended: bool) {
    metrics::gauge!(SUSPEND_STATUS, &labels(kind, namespace, name)).set(if suspended {
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

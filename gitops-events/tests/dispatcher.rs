//! The dispatcher: alert filters, the dedup window on a controllable clock, timeouts,
//! retries, bounded queues with a hung provider, and flood control.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{RecordingServer, kustomization_event};
use gitops_events::{
    Alert, AlertOutcome, AlertSpec, Dispatcher, Event, EventSource, FloodControl, ManualClock,
    Match, Notifier, NotifyError, ProviderConfig, ProviderOptions, ProviderRef, ProviderType,
    RetryPolicy, Severity, async_trait, build_notifier,
};

/// Keeps what it receives; optionally hangs or fails first.
#[derive(Default)]
struct Inbox {
    events: Mutex<Vec<Event>>,
    hang_first: u32,
    fail_config: bool,
    calls: AtomicU32,
}

#[async_trait]
impl Notifier for Inbox {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.hang_first {
            std::future::pending::<()>().await;
        }
        if self.fail_config {
            return Err(NotifyError::Config {
                provider: "inbox".into(),
                reason: "broken on purpose".into(),
            });
        }
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }
}

impl Inbox {
    fn messages(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.message.clone())
            .collect()
    }
}

fn all_kustomizations() -> Vec<EventSource> {
    vec![EventSource {
        kind: "Kustomization".into(),
        name: "*".into(),
        ..Default::default()
    }]
}

fn fast() -> ProviderOptions {
    ProviderOptions {
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 3,
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        },
        queue_capacity: 64,
    }
}

fn event(severity: Severity, message: &str) -> Event {
    kustomization_event(severity, "R", message)
        .with_metadata("kustomize.toolkit.fluxcd.io/revision", "main@sha1:abc")
}

#[tokio::test]
async fn dedup_window_uses_flux_key_and_the_clock() {
    let clock = Arc::new(ManualClock::new());
    let inbox = Arc::new(Inbox::default());
    let d = Dispatcher::builder()
        .provider("inbox", inbox.clone(), fast())
        .alert(Alert::new(
            "flux-system",
            "a",
            "inbox",
            all_kustomizations(),
        ))
        .clock(clock.clone())
        .build();
    let e = event(Severity::Error, "health check failed");
    assert_eq!(d.dispatch(&e).queued(), 1);
    clock.advance(Duration::from_secs(60));
    let mut later = e.clone();
    later.timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    later.reason = "OtherReason".into();
    let r = d.dispatch(&later);
    assert!(
        r.rate_limited,
        "same object, message and revision: a duplicate"
    );
    assert_eq!(r.queued(), 0);
    let new_rev = e
        .clone()
        .with_metadata("kustomize.toolkit.fluxcd.io/revision", "main@sha1:def");
    assert_eq!(d.dispatch(&new_rev).queued(), 1, "a new revision is news");
    clock.advance(Duration::from_secs(239));
    assert!(
        d.dispatch(&e).rate_limited,
        "4m59s after the first: still inside 5m"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(d.dispatch(&e).queued(), 1, "5m after the first: sent again");
    d.shutdown().await;
    assert_eq!(inbox.messages().len(), 3);
}

#[tokio::test]
async fn alert_filters_select_what_each_provider_gets() {
    let errors = Arc::new(Inbox::default());
    let everything = Arc::new(Inbox::default());
    let spec = AlertSpec {
        provider_ref: ProviderRef {
            name: "errors".into(),
        },
        event_sources: all_kustomizations(),
        event_severity: Some(Severity::Error),
        exclusion_list: vec!["context deadline".into()],
        ..Default::default()
    };
    let d = Dispatcher::builder()
        .provider("errors", errors.clone(), fast())
        .provider("everything", everything.clone(), fast())
        .alert(Alert::from_spec("flux-system", "errors", &spec).unwrap())
        .alert(Alert::new(
            "flux-system",
            "all",
            "everything",
            all_kustomizations(),
        ))
        .rate_limit(Duration::ZERO)
        .build();
    d.dispatch(&event(Severity::Info, "applied"));
    d.dispatch(&event(Severity::Error, "health check failed"));
    let r = d.dispatch(&event(Severity::Error, "context deadline exceeded"));
    assert!(r.alerts.contains(&(
        "flux-system/errors".into(),
        AlertOutcome::Filtered(Match::Excluded)
    )));
    let mut helm = event(Severity::Error, "helm failed");
    helm.involved_object.kind = "HelmRelease".into();
    let r = d.dispatch(&helm);
    assert_eq!(r.queued(), 0);
    d.shutdown().await;
    assert_eq!(errors.messages(), ["health check failed"]);
    assert_eq!(
        everything.messages(),
        [
            "applied",
            "health check failed",
            "context deadline exceeded"
        ]
    );
}

#[tokio::test]
async fn match_labels_use_the_labels_given() {
    let inbox = Arc::new(Inbox::default());
    let mut source = all_kustomizations();
    source[0]
        .match_labels
        .insert("env".into(), "production".into());
    let d = Dispatcher::builder()
        .provider("inbox", inbox.clone(), fast())
        .alert(Alert::new("flux-system", "prod", "inbox", source))
        .rate_limit(Duration::ZERO)
        .build();
    let prod = BTreeMap::from([("env".to_string(), "production".to_string())]);
    let dev = BTreeMap::from([("env".to_string(), "dev".to_string())]);
    assert_eq!(
        d.dispatch_with_labels(&event(Severity::Info, "p"), Some(&prod))
            .queued(),
        1
    );
    assert_eq!(
        d.dispatch_with_labels(&event(Severity::Info, "d"), Some(&dev))
            .queued(),
        0
    );
    assert_eq!(d.dispatch(&event(Severity::Info, "unknown")).queued(), 0);
    d.shutdown().await;
    assert_eq!(inbox.messages(), ["p"]);
}

#[tokio::test]
async fn alert_metadata_reaches_the_provider_merged() {
    let inbox = Arc::new(Inbox::default());
    let spec = AlertSpec {
        provider_ref: ProviderRef {
            name: "inbox".into(),
        },
        event_sources: all_kustomizations(),
        event_metadata: BTreeMap::from([("cluster".to_string(), "eu-1".to_string())]),
        summary: Some("production".into()),
        ..Default::default()
    };
    let d = Dispatcher::builder()
        .provider("inbox", inbox.clone(), fast())
        .alert(Alert::from_spec("flux-system", "a", &spec).unwrap())
        .build();
    d.dispatch(
        &event(Severity::Info, "m").with_metadata("kustomize.toolkit.fluxcd.io/checksum", "x"),
    );
    d.shutdown().await;
    let got = inbox.events.lock().unwrap()[0].metadata.clone();
    assert_eq!(
        got,
        BTreeMap::from([
            ("cluster".to_string(), "eu-1".to_string()),
            ("revision".to_string(), "main@sha1:abc".to_string()),
            ("summary".to_string(), "production".to_string()),
        ])
    );
}

#[tokio::test]
async fn a_hung_provider_neither_blocks_others_nor_grows_its_queue() {
    let hung = Arc::new(Inbox {
        hang_first: u32::MAX,
        ..Default::default()
    });
    let fast_inbox = Arc::new(Inbox::default());
    let hung_options = ProviderOptions {
        timeout: Duration::from_secs(3600),
        retry: RetryPolicy::none(),
        queue_capacity: 8,
    };
    let d = Dispatcher::builder()
        .provider("hung", hung.clone(), hung_options)
        .provider("fast", fast_inbox.clone(), fast())
        .alert(Alert::new("flux-system", "h", "hung", all_kustomizations()))
        .alert(Alert::new("flux-system", "f", "fast", all_kustomizations()))
        .build();
    for i in 0..50 {
        d.dispatch(&event(Severity::Info, &format!("event {i}")));
        // Let the fast worker drain (its queue holds 64, so this is only pacing).
        tokio::task::yield_now().await;
    }
    for _ in 0..500 {
        if fast_inbox.messages().len() == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        fast_inbox.messages().len(),
        50,
        "the fast provider got everything"
    );
    let stats = d.stats("hung").unwrap();
    assert_eq!(stats.sent, 0);
    // One notification is in flight, eight wait; the rest were dropped and counted.
    assert_eq!(stats.queued + stats.dropped, 50);
    assert!(stats.queued <= 9, "{stats:?}");
    assert!(stats.dropped >= 41, "{stats:?}");
    assert_eq!(d.stats("fast").unwrap().dropped, 0);
    // Shutdown does not wait an hour for the hung provider.
    assert!(!d.shutdown_within(Duration::from_millis(100)).await);
    assert_eq!(
        d.dispatch(&event(Severity::Info, "late")).alerts[0].1,
        AlertOutcome::Closed
    );
}

#[tokio::test]
async fn timeouts_are_retried_then_succeed() {
    let flaky = Arc::new(Inbox {
        hang_first: 2,
        ..Default::default()
    });
    let options = ProviderOptions {
        timeout: Duration::from_millis(50),
        ..fast()
    };
    let d = Dispatcher::builder()
        .provider("flaky", flaky.clone(), options)
        .alert(Alert::new(
            "flux-system",
            "a",
            "flaky",
            all_kustomizations(),
        ))
        .build();
    d.dispatch(&event(Severity::Error, "boom"));
    d.shutdown().await;
    let stats = d.stats("flaky").unwrap();
    assert_eq!((stats.sent, stats.retries, stats.failed), (1, 2, 0));
    assert_eq!(flaky.messages(), ["boom"]);
}

#[tokio::test]
async fn configuration_errors_are_not_retried() {
    let broken = Arc::new(Inbox {
        fail_config: true,
        ..Default::default()
    });
    let d = Dispatcher::builder()
        .provider("broken", broken.clone(), fast())
        .alert(Alert::new(
            "flux-system",
            "a",
            "broken",
            all_kustomizations(),
        ))
        .build();
    d.dispatch(&event(Severity::Error, "boom"));
    d.shutdown().await;
    let stats = d.stats("broken").unwrap();
    assert_eq!((stats.sent, stats.retries, stats.failed), (0, 0, 1));
    assert_eq!(broken.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http_provider_retries_500_then_succeeds_and_never_retries_400() {
    let server = RecordingServer::scripted(|r, n| {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if body["message"] == "bad" {
            (400, "bad request".into(), None)
        } else if n < 2 {
            (500, "oops".into(), None)
        } else {
            (200, "{}".into(), None)
        }
    })
    .await;
    let generic = build_notifier(&ProviderConfig::new(
        ProviderType::Generic,
        server.url("/hook"),
    ))
    .unwrap();
    let d = Dispatcher::builder()
        .provider("webhook", generic, fast())
        .alert(Alert::new(
            "flux-system",
            "a",
            "webhook",
            all_kustomizations(),
        ))
        .build();
    d.dispatch(&event(Severity::Error, "good"));
    d.shutdown().await;
    assert_eq!(server.requests().len(), 3);
    let stats = d.stats("webhook").unwrap();
    assert_eq!((stats.sent, stats.retries, stats.failed), (1, 2, 0));

    let generic = build_notifier(&ProviderConfig::new(
        ProviderType::Generic,
        server.url("/hook"),
    ))
    .unwrap();
    let d = Dispatcher::builder()
        .provider("webhook", generic, fast())
        .alert(Alert::new(
            "flux-system",
            "a",
            "webhook",
            all_kustomizations(),
        ))
        .build();
    d.dispatch(&event(Severity::Error, "bad"));
    d.shutdown().await;
    assert_eq!(
        server.requests().len(),
        4,
        "a 400 is answered once, not retried"
    );
    let stats = d.stats("webhook").unwrap();
    assert_eq!((stats.sent, stats.retries, stats.failed), (0, 0, 1));
}

#[tokio::test]
async fn alert_after_n_occurrences() {
    let inbox = Arc::new(Inbox::default());
    let alert = Alert::new("flux-system", "a", "inbox", all_kustomizations()).with_flood_control(
        FloodControl {
            min_occurrences: 3,
            ..Default::default()
        },
    );
    let d = Dispatcher::builder()
        .provider("inbox", inbox.clone(), fast())
        .alert(alert)
        .build();
    let e = event(Severity::Error, "failing");
    assert_eq!(d.dispatch(&e).alerts[0].1, AlertOutcome::Held(1));
    assert_eq!(d.dispatch(&e).alerts[0].1, AlertOutcome::Held(2));
    assert_eq!(d.dispatch(&e).alerts[0].1, AlertOutcome::Queued);
    // A success resets the count.
    d.dispatch(&event(Severity::Info, "fixed"));
    assert_eq!(
        d.dispatch(&event(Severity::Error, "again")).alerts[0].1,
        AlertOutcome::Held(1)
    );
    d.shutdown().await;
    assert_eq!(inbox.messages(), ["failing", "fixed"]);
}

#[tokio::test]
async fn one_recovery_message_when_an_error_clears() {
    let inbox = Arc::new(Inbox::default());
    let alert = Alert::new("flux-system", "a", "inbox", all_kustomizations())
        .errors_only()
        .with_flood_control(FloodControl {
            recovery: true,
            ..Default::default()
        });
    let d = Dispatcher::builder()
        .provider("inbox", inbox.clone(), fast())
        .alert(alert)
        .build();
    assert_eq!(
        d.dispatch(&event(Severity::Info, "fine")).alerts[0].1,
        AlertOutcome::Filtered(Match::Severity)
    );
    assert_eq!(d.dispatch(&event(Severity::Error, "broken")).queued(), 1);
    assert_eq!(
        d.dispatch(&event(Severity::Info, "applied")).alerts[0].1,
        AlertOutcome::RecoveryQueued
    );
    assert_eq!(
        d.dispatch(&event(Severity::Info, "applied again")).alerts[0].1,
        AlertOutcome::Filtered(Match::Severity)
    );
    d.shutdown().await;
    assert_eq!(inbox.messages(), ["broken", "Recovered: applied"]);
    let recovered = inbox.events.lock().unwrap()[1].clone();
    assert_eq!(recovered.reason, "Recovered");
    assert_eq!(recovered.severity, Severity::Info);
}

#[tokio::test]
async fn grouping_per_object_and_revision() {
    let clock = Arc::new(ManualClock::new());
    let inbox = Arc::new(Inbox::default());
    let alert = Alert::new("flux-system", "a", "inbox", all_kustomizations()).with_flood_control(
        FloodControl {
            group_window: Some(Duration::from_secs(30)),
            ..Default::default()
        },
    );
    let d = Dispatcher::builder()
        .provider("inbox", inbox.clone(), fast())
        .alert(alert)
        .clock(clock.clone())
        .build();
    for m in ["a failed", "b failed", "a failed again"] {
        assert_eq!(
            d.dispatch(&event(Severity::Error, m)).alerts[0].1,
            AlertOutcome::Grouped
        );
        clock.advance(Duration::from_secs(5));
    }
    let other_rev = event(Severity::Info, "applied")
        .with_metadata("kustomize.toolkit.fluxcd.io/revision", "main@sha1:fff");
    d.dispatch(&other_rev);
    assert_eq!(d.flush_due(), 0, "no window closed yet");
    clock.advance(Duration::from_secs(15));
    assert_eq!(d.flush_due(), 1, "the first group's 30 s are over");
    clock.advance(Duration::from_secs(30));
    assert_eq!(d.flush_due(), 1);
    d.shutdown().await;
    let got = inbox.events.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].message, "a failed\nb failed\na failed again");
    assert_eq!(got[0].severity, Severity::Error);
    assert_eq!(got[1].message, "applied");
}

#[tokio::test]
async fn cross_namespace_events_can_be_blocked() {
    let inbox = Arc::new(Inbox::default());
    let sources = vec![EventSource {
        kind: "Kustomization".into(),
        name: "*".into(),
        namespace: "team-a".into(),
        ..Default::default()
    }];
    let build = |block: bool| {
        Dispatcher::builder()
            .provider("inbox", inbox.clone(), fast())
            .alert(Alert::new("flux-system", "a", "inbox", sources.clone()))
            .rate_limit(Duration::ZERO)
            .no_cross_namespace_refs(block)
            .build()
    };
    let mut e = event(Severity::Info, "from team-a");
    e.involved_object.namespace = "team-a".into();
    let open = build(false);
    assert_eq!(open.dispatch(&e).queued(), 1);
    open.shutdown().await;
    let blocked = build(true);
    assert_eq!(
        blocked.dispatch(&e).alerts[0].1,
        AlertOutcome::Filtered(Match::CrossNamespace)
    );
    blocked.shutdown().await;
    assert_eq!(inbox.messages(), ["from team-a"]);
}

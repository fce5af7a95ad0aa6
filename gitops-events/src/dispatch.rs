//! The [`Dispatcher`]: matches events to alerts, rate limits duplicates with Flux's key, and
//! hands each notification to its provider's bounded queue, where a worker sends it with a
//! timeout and retries. A slow or hung provider fills only its own queue: the others keep
//! going, and memory stays bounded (overflow is counted and logged).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alert::{Alert, Match};
use crate::event::{Event, Severity};
use crate::http::RetryPolicy;
use crate::notifier::{Notifier, NotifyError};

/// Flux's default `--rate-limit-interval`.
pub const DEFAULT_RATE_LIMIT: Duration = Duration::from_secs(5 * 60);

/// A monotonic clock, so tests can move time instead of sleeping.
pub trait Clock: Send + Sync {
    /// Time elapsed since an arbitrary, fixed origin.
    fn now(&self) -> Duration;
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let n = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(n, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// How the dispatcher drives one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderOptions {
    /// The timeout of one attempt (Flux's `Provider.spec.timeout`, default 20 s).
    pub timeout: Duration,
    /// Retries of retryable failures (connection errors, timeouts, 429, 5xx).
    pub retry: RetryPolicy,
    /// How many notifications may wait for this provider; more are dropped and counted.
    pub queue_capacity: usize,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            timeout: crate::providers::DEFAULT_PROVIDER_TIMEOUT,
            retry: RetryPolicy::default(),
            queue_capacity: 1024,
        }
    }
}

/// Counters of one provider.
#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
}

/// A snapshot of one provider's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderStats {
    /// Notifications accepted into the queue.
    pub queued: u64,
    /// Notifications the provider accepted.
    pub sent: u64,
    /// Notifications that failed for good (after retries).
    pub failed: u64,
    /// Retries made.
    pub retries: u64,
    /// Notifications dropped because the queue was full.
    pub dropped: u64,
}

/// What happened to an event for one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertOutcome {
    /// Queued for the provider.
    Queued,
    /// A recovery message was queued.
    RecoveryQueued,
    /// The provider's queue was full: dropped and counted.
    QueueFull,
    /// Held back until the object has failed `min_occurrences` times (the count so far).
    Held(u32),
    /// Added to a group sent when its window closes.
    Grouped,
    /// The alert did not take the event.
    Filtered(Match),
    /// The alert names a provider the dispatcher does not have.
    UnknownProvider,
    /// The dispatcher is shutting down.
    Closed,
}

/// What the dispatcher did with one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Per alert (`namespace/name`), what happened.
    pub alerts: Vec<(String, AlertOutcome)>,
    /// True when an identical event was dispatched within the rate-limit window, so nothing
    /// was sent (Flux answers 429 to the sender in this case).
    pub rate_limited: bool,
}

impl DispatchReport {
    /// How many notifications (including recovery messages) were queued.
    pub fn queued(&self) -> usize {
        self.alerts
            .iter()
            .filter(|(_, o)| matches!(o, AlertOutcome::Queued | AlertOutcome::RecoveryQueued))
            .count()
    }
}

struct ProviderHandle {
    tx: Mutex<Option<mpsc::Sender<Event>>>,
    counters: Arc<Counters>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// Fixed-window duplicate suppression keyed by [`Event::key`].
struct RateLimiter {
    window: Duration,
    seen: HashMap<String, Duration>,
}

impl RateLimiter {
    fn allow(&mut self, key: String, now: Duration) -> bool {
        if self.window.is_zero() {
            return true;
        }
        if self.seen.len() >= 4096 {
            let window = self.window;
            self.seen.retain(|_, t| now.saturating_sub(*t) < window);
        }
        match self.seen.get(&key) {
            Some(t) if now.saturating_sub(*t) < self.window => false,
            _ => {
                self.seen.insert(key, now);
                true
            }
        }
    }
}

struct Group {
    deadline: Duration,
    provider: String,
    events: Vec<Event>,
}

#[derive(Default)]
struct FloodState {
    /// Consecutive error events per (alert index, object).
    errors: HashMap<(usize, String), u32>,
    /// Objects an error was sent for, per alert.
    failing: HashMap<(usize, String), ()>,
    /// Open groups per (alert index, object, revision).
    groups: BTreeMap<(usize, String, String), Group>,
}

struct Inner {
    alerts: Vec<Alert>,
    providers: HashMap<String, ProviderHandle>,
    limiter: Mutex<RateLimiter>,
    flood: Mutex<FloodState>,
    clock: Arc<dyn Clock>,
    no_cross_namespace_refs: bool,
}

/// Builds a [`Dispatcher`].
pub struct DispatcherBuilder {
    providers: Vec<(String, Arc<dyn Notifier>, ProviderOptions)>,
    alerts: Vec<Alert>,
    rate_limit: Duration,
    clock: Arc<dyn Clock>,
    no_cross_namespace_refs: bool,
}

impl Default for DispatcherBuilder {
    fn default() -> Self {
        DispatcherBuilder {
            providers: Vec::new(),
            alerts: Vec::new(),
            rate_limit: DEFAULT_RATE_LIMIT,
            clock: Arc::new(SystemClock::default()),
            no_cross_namespace_refs: false,
        }
    }
}

impl DispatcherBuilder {
    /// Adds a provider under a name alerts refer to.
    pub fn provider(
        mut self,
        name: impl Into<String>,
        notifier: Arc<dyn Notifier>,
        options: ProviderOptions,
    ) -> Self {
        self.providers.push((name.into(), notifier, options));
        self
    }

    /// Adds an alert.
    pub fn alert(mut self, alert: Alert) -> Self {
        self.alerts.push(alert);
        self
    }

    /// Sets the rate-limit window (zero disables rate limiting).
    pub fn rate_limit(mut self, window: Duration) -> Self {
        self.rate_limit = window;
        self
    }

    /// Blocks alerts from taking events about objects in other namespaces (Flux's
    /// `--no-cross-namespace-refs`, for multi-tenant clusters).
    pub fn no_cross_namespace_refs(mut self, block: bool) -> Self {
        self.no_cross_namespace_refs = block;
        self
    }

    /// Sets the clock used for rate limiting and flood control.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts one worker task per provider on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime (the workers need one).
    pub fn build(self) -> Dispatcher {
        let mut providers = HashMap::new();
        for (name, notifier, options) in self.providers {
            let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
            let counters = Arc::new(Counters::default());
            let worker = tokio::spawn(worker(
                name.clone(),
                notifier,
                options,
                rx,
                counters.clone(),
            ));
            providers.insert(
                name,
                ProviderHandle {
                    tx: Mutex::new(Some(tx)),
                    counters,
                    worker: Mutex::new(Some(worker)),
                },
            );
        }
        let tick = self
            .alerts
            .iter()
            .filter_map(|a| a.flood.group_window)
            .min()
            .map(|w| (w / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                alerts: self.alerts,
                providers,
                limiter: Mutex::new(RateLimiter {
                    window: self.rate_limit,
                    seen: HashMap::new(),
                }),
                flood: Mutex::new(FloodState::default()),
                clock: self.clock,
                no_cross_namespace_refs: self.no_cross_namespace_refs,
            }),
        };
        if let Some(tick) = tick {
            // Closes group windows even when no further event arrives; holds only a weak
            // reference, so it ends with the dispatcher.
            let weak = Arc::downgrade(&dispatcher.inner);
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(tick);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    let Some(inner) = weak.upgrade() else { break };
                    Dispatcher { inner }.flush_due();
                }
            });
        }
        dispatcher
    }
}

async fn worker(
    name: String,
    notifier: Arc<dyn Notifier>,
    options: ProviderOptions,
    mut rx: mpsc::Receiver<Event>,
    counters: Arc<Counters>,
) {
    while let Some(event) = rx.recv().await {
        let (result, attempts) = options
            .retry
            .run(NotifyError::is_retryable, || async {
                match tokio::time::timeout(options.timeout, notifier.send(&event)).await {
                    Ok(r) => r,
                    Err(_) => Err(NotifyError::Timeout {
                        provider: name.clone(),
                        after: options.timeout,
                    }),
                }
            })
            .await;
        counters
            .retries
            .fetch_add(u64::from(attempts.saturating_sub(1)), Ordering::Relaxed);
        match result {
            Ok(()) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(provider = %name, object = %event.involved_object, attempts, "notification sent");
            }
            Err(err) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(provider = %name, object = %event.involved_object, attempts, error = %err, "failed to send notification");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of counters or maps that
    // stay consistent enough to keep dispatching.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Matches events to alerts and sends them through their providers' bounded queues.
///
/// Cloning is cheap (shared state).
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("alerts", &self.inner.alerts.len())
            .field(
                "providers",
                &self.inner.providers.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Dispatcher {
    /// A builder with Flux's defaults (5 min rate limit, system clock).
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder::default()
    }

    /// Dispatches an event whose object's labels are unknown (alerts with `matchLabels`
    /// will not match it).
    pub fn dispatch(&self, event: &Event) -> DispatchReport {
        self.dispatch_with_labels(event, None)
    }

    /// Dispatches an event; `labels` are the involved object's labels, for `matchLabels`.
    /// Never blocks: notifications are queued.
    pub fn dispatch_with_labels(
        &self,
        event: &Event,
        labels: Option<&BTreeMap<String, String>>,
    ) -> DispatchReport {
        let now = self.inner.clock.now();
        self.flush_due_at(now);
        let object = event.involved_object.to_string();
        let mut report = DispatchReport::default();
        // (alert index, notification, is_recovery)
        let mut sends: Vec<(usize, Event, bool)> = Vec::new();
        {
            let mut flood = lock(&self.inner.flood);
            for (i, alert) in self.inner.alerts.iter().enumerate() {
                let id = format!("{}/{}", alert.namespace, alert.name);
                let state_key = (i, object.clone());
                if self.inner.no_cross_namespace_refs
                    && event.involved_object.namespace != alert.namespace
                {
                    if alert.source_matches(&event.involved_object, labels) {
                        tracing::warn!(alert = %id, object = %object, "cross-namespace event blocked");
                    }
                    report
                        .alerts
                        .push((id, AlertOutcome::Filtered(Match::CrossNamespace)));
                    continue;
                }
                let verdict = alert.matches(event, labels);
                // Recovery: an info event about an object this alert reported failing.
                if alert.flood.recovery
                    && event.severity == Severity::Info
                    && !alert.is_suspended()
                    && alert.source_matches(&event.involved_object, labels)
                    && flood.failing.remove(&state_key).is_some()
                {
                    flood.errors.remove(&state_key);
                    let mut recovered = alert.notification(event);
                    recovered.reason = "Recovered".to_string();
                    recovered.message = format!("Recovered: {}", event.message);
                    sends.push((i, recovered, true));
                    continue;
                }
                if verdict != Match::Matched {
                    if event.severity == Severity::Info
                        && alert.source_matches(&event.involved_object, labels)
                    {
                        flood.errors.remove(&state_key);
                    }
                    report.alerts.push((id, AlertOutcome::Filtered(verdict)));
                    continue;
                }
                if event.severity == Severity::Error {
                    let count = flood.errors.entry(state_key.clone()).or_insert(0);
                    *count = count.saturating_add(1);
                    let count = *count;
                    if alert.flood.min_occurrences > 1 && count < alert.flood.min_occurrences {
                        report.alerts.push((id, AlertOutcome::Held(count)));
                        continue;
                    }
                } else {
                    flood.errors.remove(&state_key);
                }
                sends.push((i, alert.notification(event), false));
            }
        }
        if sends.is_empty() {
            return report;
        }
        let has_regular = sends.iter().any(|(_, _, recovery)| !recovery);
        if has_regular && !lock(&self.inner.limiter).allow(event.key(), now) {
            report.rate_limited = true;
            tracing::debug!(object = %object, "duplicate event within the rate-limit window: discarded");
            // Recovery messages are single by construction: they still go out.
            sends.retain(|(_, _, recovery)| *recovery);
        }
        for (i, notification, recovery) in sends {
            let alert = &self.inner.alerts[i];
            let id = format!("{}/{}", alert.namespace, alert.name);
            if !recovery && notification.severity == Severity::Error && alert.flood.recovery {
                lock(&self.inner.flood)
                    .failing
                    .insert((i, object.clone()), ());
            }
            if let (Some(window), false) = (alert.flood.group_window, recovery) {
                let revision = notification.revision().unwrap_or("").to_string();
                let mut flood = lock(&self.inner.flood);
                flood
                    .groups
                    .entry((i, object.clone(), revision))
                    .or_insert_with(|| Group {
                        deadline: now + window,
                        provider: alert.provider.clone(),
                        events: Vec::new(),
                    })
                    .events
                    .push(notification);
                report.alerts.push((id, AlertOutcome::Grouped));
                continue;
            }
            let outcome = match self.enqueue(&alert.provider, notification) {
                AlertOutcome::Queued if recovery => AlertOutcome::RecoveryQueued,
                other => other,
            };
            report.alerts.push((id, outcome));
        }
        report
    }

    fn enqueue(&self, provider: &str, event: Event) -> AlertOutcome {
        let Some(handle) = self.inner.providers.get(provider) else {
            tracing::error!(provider, object = %event.involved_object, "alert refers to an unknown provider");
            return AlertOutcome::UnknownProvider;
        };
        let tx = lock(&handle.tx).clone();
        let Some(tx) = tx else {
            return AlertOutcome::Closed;
        };
        match tx.try_send(event) {
            Ok(()) => {
                handle.counters.queued.fetch_add(1, Ordering::Relaxed);
                AlertOutcome::Queued
            }
            Err(err) => {
                let dropped = handle.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the first drop and then every 1000th, not every one: a hung provider
                // must not flood the logs either.
                if dropped == 1 || dropped % 1000 == 0 {
                    let event = err.into_inner();
                    tracing::warn!(provider, object = %event.involved_object, dropped, "provider queue full: notification dropped");
                }
                AlertOutcome::QueueFull
            }
        }
    }

    /// Sends the groups whose window has closed; returns how many were sent. Dispatching
    /// calls this too; call it from a timer when events are rare.
    pub fn flush_due(&self) -> usize {
        self.flush_due_at(self.inner.clock.now())
    }

    fn flush_due_at(&self, now: Duration) -> usize {
        let due: Vec<Group> = {
            let mut flood = lock(&self.inner.flood);
            if flood.groups.is_empty() {
                return 0;
            }
            let keys: Vec<_> = flood
                .groups
                .iter()
                .filter(|(_, g)| g.deadline <= now)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| flood.groups.remove(&k))
                .collect()
        };
        let n = due.len();
        for group in due {
            if let Some(event) = merge_group(group.events) {
                self.enqueue(&group.provider, event);
            }
        }
        n
    }

    /// The counters of a provider.
    pub fn stats(&self, provider: &str) -> Option<ProviderStats> {
        self.inner.providers.get(provider).map(|h| ProviderStats {
            queued: h.counters.queued.load(Ordering::Relaxed),
            sent: h.counters.sent.load(Ordering::Relaxed),
            failed: h.counters.failed.load(Ordering::Relaxed),
            retries: h.counters.retries.load(Ordering::Relaxed),
            dropped: h.counters.dropped.load(Ordering::Relaxed),
        })
    }

    /// Stops accepting notifications, sends every open group, and waits until each
    /// provider's queue is drained (a hung provider holds this up to its timeout and
    /// retries per queued notification; see [`Dispatcher::shutdown_within`]).
    pub async fn shutdown(&self) {
        self.close();
        let workers: Vec<JoinHandle<()>> = self
            .inner
            .providers
            .values()
            .filter_map(|h| lock(&h.worker).take())
            .collect();
        for w in workers {
            if let Err(e) = w.await {
                tracing::error!(error = %e, "notification worker ended abnormally");
            }
        }
    }

    /// Like [`Dispatcher::shutdown`], but gives up after `limit`: workers still busy are
    /// aborted and their queued notifications dropped. Returns whether everything was sent.
    pub async fn shutdown_within(&self, limit: Duration) -> bool {
        self.close();
        let deadline = tokio::time::Instant::now() + limit;
        let mut drained = true;
        for (name, handle) in &self.inner.providers {
            let worker = lock(&handle.worker).take();
            let Some(mut w) = worker else { continue };
            match tokio::time::timeout_at(deadline, &mut w).await {
                Ok(Err(e)) => {
                    tracing::error!(provider = %name, error = %e, "notification worker ended abnormally")
                }
                Ok(Ok(())) => {}
                Err(_) => {
                    w.abort();
                    drained = false;
                    tracing::warn!(provider = %name, "notifications still queued at shutdown: dropped");
                }
            }
        }
        drained
    }

    fn close(&self) {
        self.flush_due_at(Duration::MAX);
        for handle in self.inner.providers.values() {
            lock(&handle.tx).take();
        }
    }
}

/// One notification for a group: the first event's object and metadata, error severity when
/// any event was an error, the distinct messages in order, the last reason.
fn merge_group(events: Vec<Event>) -> Option<Event> {
    let mut iter = events.into_iter();
    let mut merged = iter.next()?;
    let mut messages = vec![merged.message.clone()];
    for e in iter {
        if e.severity == Severity::Error {
            merged.severity = Severity::Error;
        }
        if !messages.contains(&e.message) {
            messages.push(e.message.clone());
        }
        merged.reason = e.reason;
        merged.timestamp = e.timestamp;
        for (k, v) in e.metadata {
            merged.metadata.insert(k, v);
        }
    }
    merged.message = messages.join("\n");
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_fixed_window() {
        let mut r = RateLimiter {
            window: Duration::from_secs(300),
            seen: HashMap::new(),
        };
        assert!(r.allow("k".into(), Duration::from_secs(0)));
        assert!(!r.allow("k".into(), Duration::from_secs(299)));
        assert!(r.allow("other".into(), Duration::from_secs(299)));
        assert!(r.allow("k".into(), Duration::from_secs(300)));
    }

    #[test]
    fn group_merge() {
        let o = crate::event::ObjectReference::new("Kustomization", "ns", "a");
        let a = Event::new(o.clone(), Severity::Info, "Progressing", "one");
        let b = Event::new(o.clone(), Severity::Error, "HealthCheckFailed", "two");
        let c = Event::new(o, Severity::Error, "HealthCheckFailed", "two");
        let m = merge_group(vec![a, b, c]).unwrap();
        assert_eq!(m.severity, Severity::Error);
        assert_eq!(m.message, "one\ntwo");
        assert_eq!(m.reason, "HealthCheckFailed");
    }
}

//! The running alert channels: which events each takes ([`Filter`]), the
//! de-duplication state they share (dedup.rs) and its file, one bounded
//! queue and worker task per channel, the keeper that sends what a
//! cooldown owes and saves the state off the daemon's thread, and the event
//! sink that feeds them all. The daemon's thread only filters, de-duplicates
//! and queues, under a lock held for microseconds.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::dedup::{self, StateFile, Verdict};
use super::delivery::{deliver, Delivered, RetryPolicy, DELIVERY};
use super::secret::Redactor;
use super::{notifier, Alert, AlertError, ChannelSpec, Notifier};
use crate::config::AlertConfig;
use crate::events::{Event, EventSink, Severity, Slot};
use crate::fsutil::{load_or_move_aside, write_atomic, Corrupt, LoadError};

/// Which events a channel takes.
struct Filter {
    min_severity: Severity,
    units: Vec<glob::Pattern>,
    checks: Vec<glob::Pattern>,
}

impl Filter {
    fn new(c: &AlertConfig) -> Filter {
        let compile = |v: &[String]| {
            v.iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect::<Vec<_>>()
        };
        Filter {
            min_severity: c.min_severity,
            units: compile(&c.units),
            checks: compile(&c.checks),
        }
    }

    /// Each filter given constrains its own dimension; an event about
    /// neither a unit nor a check (unitwatchd itself) passes both. A
    /// resolution of a problem this channel told of passes `min_severity`.
    fn passes(&self, e: &Event, resolves_sent_problem: bool) -> bool {
        let matches = |pats: &[glob::Pattern], v: Option<&str>| {
            pats.is_empty() || v.is_none_or(|v| pats.iter().any(|p| p.matches(v)))
        };
        (e.severity >= self.min_severity || (e.is_resolution() && resolves_sent_problem))
            && matches(&self.units, e.unit.as_deref())
            && matches(&self.checks, e.check.as_deref())
    }
}

pub use crate::snapshot::AlertChannelView as ChannelView;

struct Channel {
    spec: ChannelSpec,
    notifier: Box<dyn Notifier>,
    redactor: Redactor,
    filter: Filter,
    queue: Mutex<VecDeque<Alert>>,
    wake: Notify,
    view: Mutex<ChannelView>,
    /// Set while deliveries fail: one journal error per episode.
    failing: AtomicBool,
    /// Set while an alert is being tried.
    busy: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Channel {
    fn push(&self, alert: Alert) {
        let mut q = lock(&self.queue);
        if q.len() >= self.spec.config.queue_size {
            q.pop_front();
            let mut v = lock(&self.view);
            v.dropped_total += 1;
            if v.dropped_total == 1 || v.dropped_total.is_power_of_two() {
                log::warn!(
                    unitwatch_channel = self.spec.name.as_str();
                    "alert channel {}: {} alerts wait; dropped the oldest ({} so far)",
                    self.spec.name,
                    self.spec.config.queue_size,
                    v.dropped_total
                );
            }
        }
        q.push_back(alert);
        drop(q);
        self.wake.notify_one();
    }

    async fn work(self: Arc<Self>) {
        loop {
            // Taken off the queue while it is tried: the queue holds only
            // alerts waiting, and what it drops was never tried.
            let next = {
                let mut q = lock(&self.queue);
                let a = q.pop_front();
                self.busy.store(a.is_some(), Ordering::Relaxed);
                a
            };
            let Some(alert) = next else {
                self.wake.notified().await;
                continue;
            };
            let out = deliver(
                self.notifier.as_ref(),
                &alert,
                DELIVERY,
                self.spec.config.timeout,
                &self.redactor,
            )
            .await;
            self.record(&alert, out);
        }
    }

    /// Anything waiting or being tried?
    fn pending(&self) -> bool {
        self.busy.load(Ordering::Relaxed) || !lock(&self.queue).is_empty()
    }

    fn record(&self, alert: &Alert, out: Delivered) {
        let name = self.spec.name.as_str();
        let mut v = lock(&self.view);
        match out {
            Ok(attempts) => {
                v.sent_total += 1;
                v.last_success_at =
                    Some(humantime::format_rfc3339_millis(SystemTime::now()).to_string());
                v.last_error = None;
                if self.failing.swap(false, Ordering::Relaxed) {
                    log::info!(unitwatch_channel = name; "alert channel {name} delivers again");
                }
                log::debug!(
                    unitwatch_channel = name;
                    "alert channel {name}: delivered {} after {attempts} attempt(s)",
                    alert.event
                );
            }
            Err((e, attempts)) => {
                v.failed_total += 1;
                v.last_error = Some(e.message.clone());
                // Not UNITWATCH_EVENT=: that field marks events themselves.
                let what = match alert.check.as_deref().or(alert.unit.as_deref()) {
                    Some(s) => format!("{} of {s}", alert.event),
                    None => alert.event.clone(),
                };
                if !self.failing.swap(true, Ordering::Relaxed) {
                    log::error!(
                        unitwatch_channel = name, unitwatch_alert = alert.event.as_str();
                        "alert channel {name} ({}): gave up on {what} after {attempts} attempt(s): {}; further failures are counted (unitwatch_alerts_failed_total) and not logged until a delivery works",
                        self.notifier.destination(),
                        e.message
                    );
                } else {
                    log::debug!(
                        unitwatch_channel = name;
                        "alert channel {name}: gave up on {what}: {}",
                        e.message
                    );
                }
            }
        }
    }

    fn view(&self) -> ChannelView {
        let mut v = lock(&self.view).clone();
        v.queued = lock(&self.queue).len();
        v
    }
}

/// What the event sink, the workers and the state keeper share.
struct Inner {
    channels: Vec<Arc<Channel>>,
    state: Mutex<StateFile>,
    state_path: PathBuf,
    dirty: AtomicBool,
    changed: Notify,
    writing: Mutex<()>,
    host: String,
}

impl Inner {
    fn on_event(&self, e: &Event, at: SystemTime) {
        if e.quiet {
            return;
        }
        let subject = dedup::subject(e);
        let mut state = lock(&self.state);
        let mut decided = false;
        for ch in &self.channels {
            // Every channel has its entry from the start: no allocation here.
            let Some(st) = state.channels.get_mut(&ch.spec.name) else {
                continue;
            };
            if !ch.filter.passes(e, st.is_open(subject)) {
                continue;
            }
            decided = true;
            match st.decide(e, at, ch.spec.config.cooldown) {
                Verdict::Send { suppressed, since } => {
                    let mut a = Alert::from_event(e, at, &self.host);
                    a.suppressed = suppressed;
                    a.suppressed_since = since;
                    ch.push(a);
                }
                Verdict::Suppress => lock(&ch.view).suppressed_total += 1,
            }
        }
        drop(state);
        // An event no channel takes changes no state: nothing to write.
        if decided {
            self.dirty.store(true, Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// Sends what is owed and prunes; returns when next to look, and the
    /// state's bytes when it changed (written by [`Inner::persist`], off
    /// the lock).
    fn tend(&self, now: SystemTime) -> (Option<SystemTime>, Option<Vec<u8>>) {
        let mut state = lock(&self.state);
        let mut next: Option<SystemTime> = None;
        for ch in &self.channels {
            let cooldown = ch.spec.config.cooldown;
            let Some(st) = state.channels.get_mut(&ch.spec.name) else {
                continue;
            };
            for owed in st.take_owed(now, cooldown) {
                let e = owed.held.event();
                let mut a = Alert::from_event(&e, owed.held.at.0, &self.host);
                a.suppressed = owed.suppressed;
                a.suppressed_since = owed.since;
                a.late = true;
                ch.push(a);
                self.dirty.store(true, Ordering::Relaxed);
            }
            let before = st.keys.len();
            st.prune(now, cooldown);
            if st.keys.len() != before {
                self.dirty.store(true, Ordering::Relaxed);
            }
            next = match (next, st.next_owed(cooldown)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return (next, None);
        }
        let names: Vec<&str> = self.channels.iter().map(|c| c.spec.name.as_str()).collect();
        // Channels no longer configured are forgotten.
        state.channels.retain(|n, _| names.contains(&n.as_str()));
        let mut json = serde_json::to_vec_pretty(&*state).expect("alert state serializes");
        json.push(b'\n');
        (next, Some(json))
    }

    /// Writes the state (atomically); one writer at a time, so that a late
    /// write of older bytes cannot follow the last one.
    fn persist(&self, bytes: &[u8]) {
        let _one = lock(&self.writing);
        if let Err(e) = write_atomic(&self.state_path, bytes, 0o640) {
            log::error!("{e}");
            self.dirty.store(true, Ordering::Relaxed);
        }
    }
}

/// Loads alerts.json; a corrupt one is moved aside and reported, never
/// fatal (the worst outcome is one alert sent twice).
pub fn load_state(
    path: &std::path::Path,
    now: SystemTime,
) -> Result<(StateFile, Option<Corrupt>), AlertError> {
    let (state, corrupt) = load_or_move_aside(path, now, StateFile::parse).map_err(|e| {
        let source = match e {
            LoadError::Read(s) | LoadError::MoveAside { source: s, .. } => s,
        };
        AlertError::StateRead {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let state = state.unwrap_or(StateFile {
        schema_version: dedup::SCHEMA_VERSION,
        ..Default::default()
    });
    Ok((state, corrupt))
}

struct Sink(Weak<Inner>);

impl EventSink for Sink {
    fn event(&self, e: &Event, at: SystemTime) {
        if let Some(inner) = self.0.upgrade() {
            inner.on_event(e, at);
        }
    }
}

/// The running alert channels. Dropping it stops the tasks.
pub struct Alerts {
    inner: Arc<Inner>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Alerts {
    /// Starts a worker per channel and the state keeper (on the current
    /// Tokio runtime), and routes events to them.
    pub fn start(specs: &[ChannelSpec], state_path: PathBuf) -> Result<Alerts, AlertError> {
        let mut channels = Vec::new();
        for spec in specs {
            let notifier = notifier(spec)?;
            let view = ChannelView {
                name: spec.name.clone(),
                kind: spec.config.kind.as_str().into(),
                destination: notifier.destination(),
                ..Default::default()
            };
            channels.push(Arc::new(Channel {
                redactor: spec.redactor(),
                filter: Filter::new(&spec.config),
                notifier,
                spec: spec.clone(),
                queue: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                view: Mutex::new(view),
                failing: AtomicBool::new(false),
                busy: AtomicBool::new(false),
            }));
        }
        let (mut state, corrupt) = load_state(&state_path, SystemTime::now())?;
        for c in &channels {
            state.channels.entry(c.spec.name.clone()).or_default();
        }
        if let Some(c) = corrupt {
            log::warn!(
                "{}: corrupt alert state ({}); moved aside to {}: an alert may be sent twice",
                state_path.display(),
                c.reason,
                c.moved_to.display()
            );
        }
        let inner = Arc::new(Inner {
            channels,
            state: Mutex::new(state),
            state_path,
            dirty: AtomicBool::new(false),
            changed: Notify::new(),
            writing: Mutex::new(()),
            host: crate::host_name(),
        });
        let workers: Vec<_> = inner
            .channels
            .iter()
            .map(|c| tokio::spawn(c.clone().work()))
            .collect();
        let keeper = tokio::spawn(keep_state(inner.clone()));
        crate::events::set_sink(Slot::Alerts, Some(Arc::new(Sink(Arc::downgrade(&inner)))));
        Ok(Alerts {
            inner,
            workers,
            keeper,
        })
    }

    pub fn view(&self) -> Vec<ChannelView> {
        self.inner.channels.iter().map(|c| c.view()).collect()
    }

    /// Stops taking events and saves the state (with what is owed queued),
    /// now; the future it returns gives the queues up to `grace` to drain
    /// (an alert of the last moments should still go out), then ends the
    /// workers. On a reload the daemon runs that future on a task of its
    /// own, so that a channel that hangs costs the supervisor loop nothing,
    /// and the new channels, which read the state at start, find it saved.
    /// Deliveries change no state, so saving before the drain loses none.
    pub fn retire(self, grace: Duration) -> impl std::future::Future<Output = ()> + Send {
        crate::events::set_sink(Slot::Alerts, None);
        self.keeper.abort();
        self.inner.dirty.store(true, Ordering::Relaxed);
        if let (_, Some(bytes)) = self.inner.tend(SystemTime::now()) {
            self.inner.persist(&bytes);
        }
        async move {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.inner.channels.iter().any(|c| c.pending()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(self);
        }
    }

    /// [`Alerts::retire`], waited for: at the daemon's exit.
    pub async fn shutdown(self, grace: Duration) {
        self.retire(grace).await
    }
}

impl Drop for Alerts {
    fn drop(&mut self) {
        for t in &self.workers {
            t.abort();
        }
        self.keeper.abort();
    }
}

async fn keep_state(inner: Arc<Inner>) {
    loop {
        let (next, bytes) = inner.tend(SystemTime::now());
        if let Some(bytes) = bytes {
            // The fsyncs off the daemon's thread: its runtime has only that
            // one, and a restart must not wait for a disk.
            let i = inner.clone();
            let _ = tokio::task::spawn_blocking(move || i.persist(&bytes)).await;
        }
        let wait = next.map(|t| t.duration_since(SystemTime::now()).unwrap_or_default());
        tokio::select! {
            _ = inner.changed.notified() => {}
            _ = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// `unitwatchd alert test`: one test alert to each channel (or the one
/// named), with up to 3 attempts each; the outcome per channel.
pub async fn send_test(
    specs: &[ChannelSpec],
    only: Option<&str>,
) -> Result<Vec<(String, String, Result<(u32, Duration), String>)>, AlertError> {
    if let Some(n) = only {
        if !specs.iter().any(|s| s.name == n) {
            return Err(AlertError::NoSuchChannel(n.into()));
        }
    }
    let host = crate::host_name();
    let policy = RetryPolicy {
        attempts: 3,
        ..DELIVERY
    };
    let mut out = Vec::new();
    for spec in specs.iter().filter(|s| only.is_none_or(|n| s.name == n)) {
        let n = notifier(spec)?;
        let alert = Alert::test(&spec.name, &host);
        let started = Instant::now();
        let r = deliver(
            n.as_ref(),
            &alert,
            policy,
            spec.config.timeout,
            &spec.redactor(),
        )
        .await;
        let r = r
            .map(|a| (a, started.elapsed()))
            .map_err(|(e, a)| format!("{} (after {a} attempt(s))", e.message));
        out.push((spec.name.clone(), n.destination(), r));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_constrain_their_own_dimension() {
        let mut c: AlertConfig = toml::from_str(
            "type = \"webhook\"\nurl = \"http://x.test/\"\nmin_severity = \"error\"\nunits = [\"bot-*.service\"]",
        )
        .unwrap();
        let f = Filter::new(&c);
        let ev = |sev, unit: Option<&str>| {
            let mut e = Event::new(crate::events::Kind::UnitFailed, sev, "m");
            e.unit = unit.map(str::to_string);
            e
        };
        assert!(f.passes(&ev(Severity::Error, Some("bot-1.service")), false));
        assert!(!f.passes(&ev(Severity::Error, Some("web.service")), false));
        assert!(!f.passes(&ev(Severity::Warning, Some("bot-1.service")), false));
        // About unitwatchd itself: no unit to filter on.
        assert!(f.passes(&ev(Severity::Critical, None), false));
        // A resolution passes min_severity only after a problem was sent.
        let mut back = Event::new(crate::events::Kind::UnitRecovered, Severity::Info, "m");
        back.unit = Some("bot-1.service".into());
        assert!(!f.passes(&back, false));
        assert!(f.passes(&back, true));
        c.checks = vec!["disk:*".into()];
        let f = Filter::new(&c);
        let mut disk = Event::new(crate::events::Kind::CheckChanged, Severity::Error, "m");
        disk.check = Some("memory:utilization".into());
        assert!(!f.passes(&disk, false));
    }
}

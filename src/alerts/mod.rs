//! Alerts: events that reach a person, once, with the right severity.
//!
//! Every event goes to the journal (events.rs); this module sends the ones
//! a person should hear of to the `[[alert]]` channels. Each channel type
//! is one module, registered in [`notifier`], the one list of them, as a
//! [`Notifier`]: discord.rs and slack.rs render their JSON and share the
//! chat webhook's delivery (http.rs); webhook.rs and email.rs deliver
//! their own way. The
//! daemon's thread only filters, de-duplicates (dedup.rs) and queues, under
//! a lock held for microseconds; each channel has its own bounded queue and
//! worker task that delivers with a timeout and retries, so a dead or slow
//! channel never holds up the supervisor or another channel.

mod dedup;
mod discord;
mod email;
mod http;
pub mod secret;
mod slack;
mod webhook;

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::config::{AlertConfig, AlertType, Config};
use crate::events::{Event, EventSink, Severity, Slot};
use crate::fsutil::{load_or_move_aside, write_atomic, Corrupt, LoadError};
pub use dedup::{StateFile, Verdict};
use secret::{Redactor, Secret};

/// Why the alert channels could not be set up (at start: exit 78; on
/// reload: the new configuration is rejected). Delivery failures at run
/// time are not errors of this kind: they are retried, logged and counted.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert channel {channel}: {key} {path}: cannot read: {source}")]
    SecretFile {
        channel: String,
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("alert channel {channel}: {message}")]
    Secret { channel: String, message: String },
    #[error("alert channel {channel}: {message}")]
    Setup { channel: String, message: String },
    #[error("{path}: cannot read alert state: {source}")]
    StateRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no alert channel is named {0:?} (see [[alert]] name in the configuration)")]
    NoSuchChannel(String),
}

/// What a channel sends: an event, or a test, rendered for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub severity: Severity,
    /// The event's name (`unit-failed`), or `test`.
    pub event: String,
    pub title: String,
    pub unit: Option<String>,
    pub check: Option<String>,
    pub message: String,
    pub host: String,
    pub at: SystemTime,
    /// Alerts like this one held back since the last one sent.
    pub suppressed: u64,
    pub suppressed_since: Option<SystemTime>,
    /// Ends a problem (firing -> resolved).
    pub resolved: bool,
    /// Held back by the cooldown and sent when it ended.
    pub late: bool,
    pub test: bool,
}

impl Alert {
    pub fn from_event(e: &Event, at: SystemTime, host: &str) -> Alert {
        Alert {
            severity: e.severity,
            event: e.kind.as_str().to_string(),
            title: title(e),
            unit: e.unit.clone(),
            check: e.check.clone(),
            message: e.message.clone(),
            host: host.to_string(),
            at,
            suppressed: 0,
            suppressed_since: None,
            resolved: e.is_resolution(),
            late: false,
            test: false,
        }
    }

    /// The alert `unitwatchd alert test` sends.
    pub fn test(channel: &str, host: &str) -> Alert {
        Alert {
            severity: Severity::Info,
            event: "test".into(),
            title: "Test alert".into(),
            unit: None,
            check: None,
            message: format!(
                "A test alert from unitwatchd on {host} to channel {channel}: if you read this, alerts reach you here."
            ),
            host: host.to_string(),
            at: SystemTime::now(),
            suppressed: 0,
            suppressed_since: None,
            resolved: false,
            late: false,
            test: true,
        }
    }

    /// A line about what the cooldown held back, if anything.
    pub fn note(&self) -> Option<String> {
        let since = self
            .suppressed_since
            .map(|t| format!(" since {}", humantime::format_rfc3339_seconds(t)))
            .unwrap_or_default();
        match (self.late, self.suppressed) {
            (true, 0) => Some("Held back by the cooldown, sent when it ended.".into()),
            (true, n) => Some(format!(
                "Held back by the cooldown, sent when it ended; {n} more like it{since}."
            )),
            (false, 0) => None,
            (false, n) => Some(format!(
                "{n} more like it{since} were not sent separately (cooldown)."
            )),
        }
    }

    /// `[unitwatch] CRITICAL host: title`, for email subjects and fallbacks.
    pub fn headline(&self) -> String {
        format!("{} {}: {}", self.severity.label(), self.host, self.title)
    }
}

fn title(e: &Event) -> String {
    use crate::events::Kind;
    let what = match e.kind {
        Kind::CheckChanged => match e.severity {
            Severity::Info => "Check passing",
            Severity::Warning => "Check warning",
            _ => "Check failing",
        },
        k => k.title(),
    };
    match e.check.as_deref().or(e.unit.as_deref()) {
        Some(s) => format!("{what}: {s}"),
        None => what.to_string(),
    }
}

/// A delivery that did not work, and whether trying again may help.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryError {
    pub message: String,
    pub retry: Retry,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retry {
    /// The request itself is wrong (4xx): the same again would fail too.
    Never,
    /// 5xx, network, timeout: after a growing wait.
    Backoff,
    /// The service said when (429 `retry_after`).
    After(Duration),
}

impl DeliveryError {
    pub fn new(retry: Retry, message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
            retry,
        }
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// One way of reaching a person. `send` makes one attempt; timeouts and
/// retries are the worker's.
pub trait Notifier: Send + Sync {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a>;
    /// Where it sends, for logs: no secret in it.
    fn destination(&self) -> String;
}

/// A channel's configuration with its secrets read.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSpec {
    pub name: String,
    pub config: AlertConfig,
    pub url: Option<Secret>,
    pub secret: Option<Secret>,
    pub password: Option<Secret>,
}

impl ChannelSpec {
    /// Every secret of the channel, to be kept out of its messages.
    pub fn redactor(&self) -> Redactor {
        let mut r = Redactor::default();
        for s in [&self.url, &self.secret, &self.password]
            .into_iter()
            .flatten()
        {
            r.add(s);
        }
        r
    }
}

/// Reads the secrets of every `[[alert]]` channel.
pub fn resolve(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ChannelSpec>, AlertError> {
    let mut out = Vec::new();
    for (i, a) in config.alerts.iter().enumerate() {
        let name = AlertConfig::channel_name(&config.alerts, i);
        let read = |key, value, file, var| secret::resolve(&name, key, value, file, var, env);
        let url = read(
            "url",
            a.url.as_ref(),
            a.url_file.as_deref(),
            a.url_env.as_deref(),
        )?;
        if let Some(u) = &url {
            // Checked here for _file and _env; without the value in the
            // message, which is the secret.
            if crate::config::check_http_url(u.expose()).is_err() {
                return Err(AlertError::Secret {
                    channel: name,
                    message: "the webhook URL is not an http:// or https:// URL with a host".into(),
                });
            }
        }
        let secret = read(
            "secret",
            a.secret.as_ref(),
            a.secret_file.as_deref(),
            a.secret_env.as_deref(),
        )?;
        let password = read(
            "password",
            a.password.as_ref(),
            a.password_file.as_deref(),
            a.password_env.as_deref(),
        )?;
        out.push(ChannelSpec {
            name,
            config: a.clone(),
            url,
            secret,
            password,
        });
    }
    Ok(out)
}

/// The registry of channel types: one arm per module.
pub fn notifier(spec: &ChannelSpec) -> Result<Box<dyn Notifier>, AlertError> {
    Ok(match spec.config.kind {
        AlertType::Discord => Box::new(http::ChatHook::new(spec, discord::payload)?),
        AlertType::Slack => Box::new(http::ChatHook::new(spec, slack::payload)?),
        AlertType::Webhook => Box::new(webhook::Webhook::new(spec)?),
        AlertType::Email => Box::new(email::Email::new(spec)?),
    })
}

/// How long and how often one alert is tried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// The first wait after a failure; doubled after each.
    pub first_wait: Duration,
    /// A `retry_after` longer than this is not waited for.
    pub max_wait: Duration,
}

/// The daemon's: 6 attempts over about half a minute (1, 2, 4, 8, 16 s
/// between them), or as long as a 429 asks, up to 5 minutes.
pub const DELIVERY: RetryPolicy = RetryPolicy {
    attempts: 6,
    first_wait: Duration::from_secs(1),
    max_wait: Duration::from_secs(300),
};

/// One alert delivered: how many attempts it took.
pub type Delivered = Result<u32, (DeliveryError, u32)>;

/// Tries `alert` until it is delivered or `policy` says stop; each attempt
/// is bounded by `timeout`, and every message is cleaned of secrets.
pub async fn deliver(
    n: &dyn Notifier,
    alert: &Alert,
    policy: RetryPolicy,
    timeout: Duration,
    redactor: &Redactor,
) -> Delivered {
    let mut wait = policy.first_wait;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match tokio::time::timeout(timeout, n.send(alert)).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::new(
                Retry::Backoff,
                format!("no answer within {}", humantime::format_duration(timeout)),
            )),
        };
        let err = match result {
            Ok(()) => return Ok(attempt),
            Err(mut e) => {
                e.message = redactor.clean(&e.message);
                e
            }
        };
        let pause = match err.retry {
            Retry::Never => return Err((err, attempt)),
            Retry::After(d) if d > policy.max_wait => return Err((err, attempt)),
            Retry::After(d) => d,
            Retry::Backoff => {
                let w = wait;
                wait *= 2;
                w
            }
        };
        if attempt >= policy.attempts {
            return Err((err, attempt));
        }
        log::debug!(
            "alert {}: attempt {attempt} failed ({}); next in {}",
            alert.event,
            err.message,
            humantime::format_duration(pause)
        );
        tokio::time::sleep(pause).await;
    }
}

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
    use std::sync::atomic::AtomicU32;

    /// Answers from a script, one per attempt (pure retry logic: the real
    /// channels are tested against a real receiver in tests/alerts.rs).
    struct Scripted {
        answers: Mutex<VecDeque<Option<Result<(), DeliveryError>>>>,
        calls: AtomicU32,
    }

    impl Notifier for Scripted {
        fn send<'a>(&'a self, _: &'a Alert) -> SendFuture<'a> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let next = lock(&self.answers).pop_front().unwrap_or(Some(Ok(())));
            Box::pin(async move {
                match next {
                    Some(r) => r,
                    None => std::future::pending().await,
                }
            })
        }
        fn destination(&self) -> String {
            "scripted".into()
        }
    }

    fn scripted(a: Vec<Option<Result<(), DeliveryError>>>) -> Scripted {
        Scripted {
            answers: Mutex::new(a.into()),
            calls: AtomicU32::new(0),
        }
    }

    const FAST: RetryPolicy = RetryPolicy {
        attempts: 4,
        first_wait: Duration::from_millis(10),
        max_wait: Duration::from_secs(1),
    };

    fn alert() -> Alert {
        Alert::test("t", "h")
    }

    async fn run(n: &Scripted, timeout: Duration) -> Delivered {
        deliver(n, &alert(), FAST, timeout, &Redactor::default()).await
    }

    #[tokio::test]
    async fn retries_until_delivered_and_counts_attempts() {
        let n = scripted(vec![
            Some(Err(DeliveryError::new(Retry::Backoff, "500"))),
            None, // hangs: the timeout ends it
            Some(Err(DeliveryError::new(
                Retry::After(Duration::from_millis(5)),
                "429",
            ))),
        ]);
        let r = run(&n, Duration::from_millis(50)).await;
        assert_eq!(r, Ok(4));
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt_or_at_once_when_pointless() {
        let e = || Some(Err(DeliveryError::new(Retry::Backoff, "HTTP 503")));
        let n = scripted(vec![e(), e(), e(), e(), e()]);
        let (err, attempts) = run(&n, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!((attempts, err.message.as_str()), (4, "HTTP 503"));
        let n = scripted(vec![Some(Err(DeliveryError::new(
            Retry::Never,
            "HTTP 404",
        )))]);
        let r = run(&n, Duration::from_secs(1)).await;
        assert_eq!(r.unwrap_err().1, 1);
        // A 429 asking for longer than max_wait is not waited for.
        let n = scripted(vec![Some(Err(DeliveryError::new(
            Retry::After(Duration::from_secs(3600)),
            "HTTP 429",
        )))]);
        let r = run(&n, Duration::from_secs(1)).await;
        assert_eq!(r.unwrap_err().1, 1);
    }

    #[tokio::test]
    async fn messages_are_cleaned_of_secrets() {
        let mut red = Redactor::default();
        red.add(&Secret::new("https://hooks.test/T000/B000/XXXXsecret"));
        let n = scripted(vec![Some(Err(DeliveryError::new(
            Retry::Never,
            "HTTP 404: no such hook /T000/B000/XXXXsecret",
        )))]);
        let (e, _) = deliver(&n, &alert(), FAST, Duration::from_secs(1), &red)
            .await
            .unwrap_err();
        assert_eq!(e.message, "HTTP 404: no such hook [redacted]");
    }

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

    #[test]
    fn titles_name_what_happened_to_what() {
        use crate::events::Kind;
        let e = Event::new(Kind::CheckChanged, Severity::Warning, "m").check("disk:/:utilization");
        assert_eq!(title(&e), "Check warning: disk:/:utilization");
        let e = Event::new(Kind::DaemonStarted, Severity::Info, "m");
        assert_eq!(title(&e), "unitwatchd started");
        let mut a = Alert::test("c", "h");
        a.suppressed = 3;
        a.suppressed_since = Some(SystemTime::UNIX_EPOCH);
        assert_eq!(
            a.note().unwrap(),
            "3 more like it since 1970-01-01T00:00:00Z were not sent separately (cooldown)."
        );
    }
}

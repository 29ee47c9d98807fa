//! The supervisor daemon: one loop that reacts to systemd's signals at once,
//! sweeps everything every `interval` as a safety net, restarts failed units
//! on their backoff schedule, and publishes status.json and sd_notify status.
//!
//! All state changes happen on this one task, so there are no locks; the only
//! awaits are D-Bus calls to systemd and the timers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use crate::alerts::{AlertError, Alerts, ChannelSpec};
use crate::backoff::{BackoffStore, Decision, Policy, StateError, UnitBackoff};
use crate::checks::{self, Check, CheckContext, CheckResult, Status};
use crate::config::{Config, ConfigError};
use crate::events::{Event, Kind, Severity};
use crate::fsutil::{ensure_dir, WriteError};
use crate::notify;
use crate::snapshot::{BackoffView, Snapshot, SystemdReach, UnitView, SCHEMA_VERSION};
use crate::systemd::{Change, Signals, Systemd, SystemdError};
use crate::telemetry::{Settings, Telemetry, TelemetryError};
use crate::units::{UnitStatus, UnitTable};

/// How long a failed unit with `Restart=` gets for systemd to take it into
/// `auto-restart` (it does so in the same event-loop turn; this is margin).
const SETTLE: Duration = Duration::from_millis(250);

/// How long one attempt to reach systemd over D-Bus may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait between attempts to reach a lost bus.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// A request file left by `unitwatchd backoff reset` for a running daemon.
pub const RESET_REQUEST: &str = "backoff.reset-request";

/// Errors that stop the daemon; the binary maps them to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Alerts(#[from] AlertError),
}

/// The process environment, for the settings that honour OTEL_* variables.
pub fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn fmt_delay(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        humantime::format_duration(d).to_string()
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Everything the supervisor knows; owned by the loop in [`run`].
pub struct Supervisor {
    config_path: PathBuf,
    config: Config,
    policy: Policy,
    checks: Vec<Box<dyn Check>>,
    results: Vec<CheckResult>,
    units: UnitTable,
    /// D-Bus object path -> unit name, and back.
    by_path: HashMap<String, String>,
    paths: HashMap<String, String>,
    /// Units seen down since they were last active: their return is news.
    down: HashSet<String>,
    /// Failed units with `Restart=` set, until systemd has had its say: in
    /// systemd 252 a service passes through `failed` on its way to
    /// `auto-restart`, so a failure is only news if it stays.
    settling: HashMap<String, SystemTime>,
    store: BackoffStore,
    dirty: bool,
    bus: Option<Systemd>,
    bus_error: Option<String>,
    started_at: SystemTime,
    status_line: String,
    /// The OTLP export and what it was started with.
    telemetry: Option<(Settings, Telemetry)>,
    /// The alert channels and what they were started with.
    alerts: Option<(Vec<ChannelSpec>, Alerts)>,
}

impl Supervisor {
    /// Prepares directories and loads the backoff state; a corrupt state
    /// file is moved aside and reported, never fatal.
    pub fn new(config_path: &Path, config: Config) -> Result<Self, DaemonError> {
        ensure_dir(&config.daemon.state_dir)?;
        ensure_dir(&config.daemon.runtime_dir)?;
        let now = SystemTime::now();
        let (store, corrupt) = BackoffStore::load(&config.backoff_path(), now)?;
        if let Some(c) = corrupt {
            Event::new(
                Kind::StateCorrupt,
                Severity::Error,
                format!(
                    "{}: corrupt backoff state ({}); moved aside to {} and starting fresh",
                    config.backoff_path().display(),
                    c.reason,
                    c.moved_to.display()
                ),
            )
            .emit();
        }
        Ok(Supervisor {
            config_path: config_path.to_path_buf(),
            policy: Policy::from(&config.backoff),
            checks: checks::build_all(&config),
            results: Vec::new(),
            units: UnitTable::new(),
            by_path: HashMap::new(),
            paths: HashMap::new(),
            down: HashSet::new(),
            settling: HashMap::new(),
            store,
            dirty: false,
            bus: None,
            bus_error: Some("not connected yet".into()),
            started_at: now,
            status_line: "starting".into(),
            telemetry: None,
            alerts: None,
            config,
        })
    }

    /// Starts, restarts or stops the alert channels to match `specs`.
    /// When nothing changed they keep running, with their queues; any
    /// change restarts them all (their cooldowns carry over in alerts.json).
    pub async fn set_alerts(&mut self, specs: Vec<ChannelSpec>) -> Result<(), AlertError> {
        if self.alerts.as_ref().map(|(s, _)| s) == Some(&specs)
            || (self.alerts.is_none() && specs.is_empty())
        {
            return Ok(());
        }
        if let Some((_, old)) = self.alerts.take() {
            // Its drain (a hung channel's in-flight delivery) on its own
            // task: the loop goes on handling failures meanwhile.
            tokio::spawn(old.retire(Duration::from_secs(2)));
        }
        if !specs.is_empty() {
            let a = Alerts::start(&specs, self.config.alerts_state_path())?;
            self.alerts = Some((specs, a));
        }
        Ok(())
    }

    /// Starts, restarts or stops the OTLP export to match `settings`. The
    /// old export's last flush runs on its own task, bounded (5 s).
    pub fn set_telemetry(&mut self, settings: Option<Settings>) {
        if self.telemetry.as_ref().map(|(s, _)| s) == settings.as_ref() {
            return;
        }
        if let Some((_, old)) = self.telemetry.take() {
            tokio::spawn(old.stop());
        }
        self.telemetry = settings.map(|s| (s.clone(), Telemetry::start(s)));
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn unit_names(&self) -> Vec<String> {
        self.config
            .units
            .iter()
            .map(|u| u.name.to_string())
            .collect()
    }

    /// Connects and subscribes; on failure records why and returns None.
    async fn connect(&mut self) -> Option<Signals> {
        log::debug!("connecting to systemd over D-Bus");
        let attempt = async {
            // Bounded: the loop must keep sweeping (and pinging the watchdog)
            // while a restarting dbus-daemon leaves the socket unanswered.
            let bus = Systemd::connect_timeout(CONNECT_TIMEOUT).await?;
            let stream = bus.subscribe().await?;
            Ok::<_, SystemdError>((bus, stream))
        };
        match attempt.await {
            Ok((bus, stream)) => {
                if self.bus_error.as_deref() != Some("not connected yet") {
                    Event::new(
                        Kind::SystemdReconnected,
                        Severity::Info,
                        "reconnected to systemd over D-Bus",
                    )
                    .emit();
                }
                self.bus = Some(bus);
                self.bus_error = None;
                Some(stream)
            }
            Err(e) => {
                let first = self.bus_error.as_deref() == Some("not connected yet");
                let msg = e.to_string();
                if first || self.bus_error.as_deref() != Some(msg.as_str()) {
                    Event::new(
                        Kind::SystemdUnreachable,
                        Severity::Error,
                        format!("cannot reach systemd: {msg}"),
                    )
                    .emit();
                }
                self.bus_error = Some(msg);
                None
            }
        }
    }

    /// The bus went away: unit checks say so until it is back.
    fn lost_bus(&mut self, why: &str) {
        if self.bus.take().is_some() {
            Event::new(
                Kind::SystemdUnreachable,
                Severity::Error,
                format!("lost the connection to systemd: {why}; reconnecting"),
            )
            .emit();
        }
        self.bus_error = Some(format!("lost the connection to systemd: {why}"));
        self.run_checks(None);
        self.publish();
    }

    /// Re-reads every watched unit and handles whatever moved since the
    /// last look (a signal may have been missed, or this is the first look).
    async fn refresh_units(&mut self) -> Result<(), SystemdError> {
        let Some(bus) = &self.bus else {
            return Ok(());
        };
        let fresh = read_units(bus, &self.config, &self.units).await?;
        // The whole table is updated before any reaction, so that checks
        // run during a reaction see every unit's current state.
        let mut moved = Vec::new();
        for (name, path, status) in fresh {
            self.by_path.insert(path.clone(), name.clone());
            self.paths.insert(name.clone(), path);
            let changed = self.units.get(&name).is_none_or(|p| {
                (&p.active_state, &p.sub_state) != (&status.active_state, &status.sub_state)
            });
            let prev = self.units.insert(name.clone(), status);
            if changed {
                moved.push((name, prev));
            }
        }
        for (name, prev) in moved {
            self.on_transition(&name, prev).await;
        }
        Ok(())
    }

    /// A unit's ActiveState or SubState changed (or was seen the first time).
    async fn on_transition(&mut self, name: &str, prev: Option<UnitStatus>) {
        let now = SystemTime::now();
        let cur = self.units[name].clone();
        let was = |f: fn(&UnitStatus) -> bool| prev.as_ref().is_some_and(f);
        // Any move ends a settle window; a new failure opens a new one below.
        self.settling.remove(name);
        if cur.is_auto_restarting() && !was(UnitStatus::is_auto_restarting) {
            self.store.entry(name).record_systemd_restart(now);
            self.dirty = true;
            self.down.insert(name.to_string());
            let result = self.fresh_result(name).await;
            Event::new(
                Kind::UnitFailed,
                Severity::Error,
                format!(
                    "{name} exited (Result={}); systemd's Restart= is starting it again",
                    result.as_deref().unwrap_or("unknown")
                ),
            )
            .unit(name)
            .emit();
        } else if cur.is_failed()
            && !was(UnitStatus::is_failed)
            && !(prev.is_none() && self.store.entry(name).pending_restart_at.is_some())
        {
            // (At first sight with a restart already planned, this failure is
            // the one unitwatch knew of before it restarted: not news.)
            self.down.insert(name.to_string());
            if prev.is_some() && self.systemd_may_restart(name).await {
                self.settling.insert(name.to_string(), now + SETTLE);
                self.run_checks(Some(name));
                return;
            }
            self.announce_failure(name, now, false).await;
        } else if cur.is_active() && self.down.remove(name) {
            Event::new(
                Kind::UnitRecovered,
                Severity::Info,
                format!("{name} is active again"),
            )
            .unit(name)
            .emit();
        } else if !cur.is_active() && prev.is_none() {
            // First sight of a unit that is not running.
            self.down.insert(name.to_string());
        }
        self.run_checks(Some(name));
        self.supervise_unit(name, now).await;
    }

    /// Does the unit have `Restart=` set, so that systemd may bring it back
    /// itself? Read at the failure, since the unit file may have changed.
    async fn systemd_may_restart(&self, name: &str) -> bool {
        let (Some(bus), Some(path)) = (&self.bus, self.paths.get(name)) else {
            return false;
        };
        bus.restart_setting(name, path)
            .await
            .is_ok_and(|r| r != "no")
    }

    /// Logs a failure (with systemd's `Result`, read now: it can arrive in a
    /// separate signal after ActiveState) and records it.
    async fn announce_failure(&mut self, name: &str, now: SystemTime, systemd_gave_up: bool) {
        let result = self.fresh_result(name).await;
        self.store.entry(name).record_failure(now);
        self.dirty = true;
        let result = result.unwrap_or_else(|| "unknown".into());
        let msg = if result == "start-limit-hit" {
            format!("{name} failed: systemd's start limit was hit (Result=start-limit-hit)")
        } else if systemd_gave_up {
            format!("{name} failed (Result={result}) and systemd's Restart= gave up on it (start limit hit, or Restart= does not cover this result)")
        } else {
            format!("{name} failed (Result={result})")
        };
        Event::new(Kind::UnitFailed, Severity::Error, msg)
            .unit(name)
            .emit();
    }

    /// The unit's `Result`, read from systemd now (it can arrive in a
    /// separate signal after ActiveState), stored in the table.
    async fn fresh_result(&mut self, name: &str) -> Option<String> {
        if let (Some(bus), Some(path)) = (&self.bus, self.paths.get(name)) {
            if let Ok(Some(r)) = bus.result(name, path).await {
                if let Some(s) = self.units.get_mut(name) {
                    s.result = Some(r);
                }
            }
        }
        self.units.get(name).and_then(|u| u.result.clone())
    }

    /// Failures that systemd did not take back within the settle window are
    /// unitwatch's to handle.
    async fn settle_due(&mut self) {
        let now = SystemTime::now();
        let due: Vec<String> = self
            .settling
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.settling.remove(&name);
            if self.units.get(&name).is_some_and(UnitStatus::is_failed) {
                self.announce_failure(&name, now, true).await;
                self.supervise_unit(&name, now).await;
            }
        }
        self.persist();
        self.publish();
    }

    /// Runs all checks, or only those about `unit`, and logs status changes.
    fn run_checks(&mut self, unit: Option<&str>) {
        let ctx = CheckContext {
            now: SystemTime::now(),
            units: &self.units,
            systemd_error: self.bus_error.as_deref(),
            proc_dir: &self.config.daemon.proc_dir,
        };
        let first = self.results.len() != self.checks.len();
        let mut fresh = Vec::with_capacity(self.checks.len());
        for (i, c) in self.checks.iter().enumerate() {
            let keep = !first && unit.is_some_and(|u| c.unit() != Some(u));
            if keep {
                fresh.push(self.results[i].clone());
                continue;
            }
            let r = checks::run_one(c.as_ref(), &ctx);
            let before = if first {
                None
            } else {
                Some(self.results[i].status)
            };
            log_check_change(&r, before);
            fresh.push(r);
        }
        self.results = fresh;
    }

    /// Is `unit` healthy: active, and every heartbeat tied to it fresh?
    fn healthy(&self, unit: &str) -> bool {
        self.units.get(unit).is_some_and(UnitStatus::is_active)
            && self
                .results
                .iter()
                .filter(|r| r.measurement == "age" && r.unit.as_deref() == Some(unit))
                .all(|r| r.status == Status::Pass)
    }

    /// Decides on one unit: plan a restart, note health, or leave it.
    async fn supervise_unit(&mut self, name: &str, now: SystemTime) {
        let Some(cfg) = self.config.unit(name) else {
            return;
        };
        if !cfg.restart {
            return;
        }
        let Some(cur) = self.units.get(name).cloned() else {
            return;
        };
        if self.healthy(name) {
            let out = self.store.entry(name).record_healthy(now, &self.policy);
            if out.cancelled {
                self.dirty = true;
                log::info!(unitwatch_unit = name; "planned restart of {name} cancelled: it is healthy again");
            }
            if out.reset {
                self.dirty = true;
                Event::new(
                    Kind::BackoffReset,
                    Severity::Info,
                    format!(
                        "{name} healthy for {}: backoff starts over at {}",
                        fmt_delay(self.policy.reset_after),
                        fmt_delay(self.policy.initial)
                    ),
                )
                .unit(name)
                .quiet()
                .emit();
            }
            return;
        }
        if cur.is_failed() && !self.settling.contains_key(name) {
            let reason = if cur.start_limit_hit() {
                "start-limit-hit"
            } else {
                "failed"
            };
            self.plan(name, now, reason);
        } else if cur.is_active() {
            self.heartbeat_restart(name, now).await;
        }
    }

    /// A stale heartbeat of an active unit restarts it, once the unit has
    /// been up for `max_age` (a fresh start gets time to write its first one).
    async fn heartbeat_restart(&mut self, name: &str, now: SystemTime) {
        let stale: Vec<(String, Duration)> = self
            .config
            .heartbeats
            .iter()
            .filter(|h| h.restart_unit.as_ref().is_some_and(|u| u.as_str() == name))
            .filter(|h| {
                let key = format!("heartbeat:{}:age", h.path.display());
                self.results
                    .iter()
                    .any(|r| r.key == key && r.status != Status::Pass)
            })
            .map(|h| (h.path.display().to_string(), h.max_age))
            .collect();
        let Some(max_age) = stale.iter().map(|s| s.1).max() else {
            return;
        };
        if self.store.entry(name).pending_restart_at.is_some() {
            return;
        }
        let (Some(bus), Some(path)) = (&self.bus, self.paths.get(name)) else {
            return;
        };
        let up_since = match bus.active_enter(path).await {
            Ok(t) => t,
            Err(e) => {
                log::warn!(unitwatch_unit = name; "cannot read ActiveEnterTimestamp of {name}: {e}");
                return;
            }
        };
        let up_for = up_since.and_then(|t| now.duration_since(t).ok());
        if up_for.is_some_and(|d| d < max_age) {
            return;
        }
        log::info!(
            unitwatch_unit = name;
            "{name} is active but its heartbeat is stale ({}): restarting it",
            stale.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", ")
        );
        self.store.entry(name).record_failure(now);
        self.plan(name, now, "heartbeat-stale");
    }

    fn plan(&mut self, name: &str, now: SystemTime, reason: &str) {
        let decision = self
            .store
            .entry(name)
            .plan_restart(now, &self.policy, reason);
        match decision {
            Decision::Schedule { delay, attempt, .. } => {
                self.dirty = true;
                Event::new(
                    Kind::RestartScheduled,
                    Severity::Warning,
                    format!(
                        "restarting {name} in {} (attempt {attempt}, reason: {reason})",
                        fmt_delay(delay)
                    ),
                )
                .unit(name)
                .delay(delay)
                // The failure and the restart itself reach alert channels.
                .quiet()
                .emit();
            }
            Decision::AlreadyScheduled { .. } => {}
            Decision::LimitReached { first, retry_at } => {
                if first {
                    self.dirty = true;
                    Event::new(
                        Kind::RestartLimit,
                        Severity::Critical,
                        format!(
                            "{name}: {} restarts in the last hour, the limit: not restarting it again before {} unless it recovers or `unitwatchd backoff reset {name}`",
                            self.policy.max_per_hour,
                            humantime::format_rfc3339_seconds(retry_at)
                        ),
                    )
                    .unit(name)
                    .emit();
                }
            }
        }
    }

    /// When the next planned restart is due.
    fn next_deadline(&self) -> Option<SystemTime> {
        self.bus.as_ref()?;
        self.store
            .units
            .iter()
            .filter(|(n, _)| self.config.unit(n).is_some_and(|u| u.restart))
            .filter_map(|(_, u)| u.pending_restart_at.map(|t| t.0))
            .min()
    }

    /// Issues every restart that is due.
    async fn restart_due(&mut self) {
        let now = SystemTime::now();
        let due: Vec<String> = self
            .store
            .units
            .iter()
            .filter(|(n, u)| {
                u.pending_restart_at.is_some_and(|t| t.0 <= now)
                    && self.config.unit(n).is_some_and(|c| c.restart)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let Some(bus) = &self.bus else { return };
            let entry = &self.store.units[&name];
            let reason = entry.pending_reason.clone().unwrap_or_default();
            let delay = entry.next_delay(&self.policy);
            // reset-failed also clears systemd's start-limit counter: without
            // it a unit whose Restart= burst hit the limit refuses the start
            // (systemd 252 then shows Result=exit-code, not start-limit-hit,
            // so the result alone cannot tell). unitwatch's own backoff and
            // hourly cap take the limit's place. Each call is a polkit check
            // (a few ms), so it is made only where the counter can be spent:
            // units with Restart=, or that say start-limit-hit.
            let status = self.units.get(&name);
            let needs_reset = status.is_some_and(UnitStatus::start_limit_hit)
                || (status.is_some_and(UnitStatus::is_failed)
                    && self.systemd_may_restart(&name).await);
            if needs_reset {
                if let Err(e) = bus.reset_failed(&name).await {
                    log::warn!(unitwatch_unit = name.as_str(); "{e}");
                }
            }
            let outcome = bus.restart(&name).await;
            let entry = self.store.entry(&name);
            entry.record_restart(now, &self.policy);
            let attempt = entry.attempts;
            self.dirty = true;
            // On disk before it is told: whoever reads the event (a person,
            // a test, an alert) finds the state that goes with it.
            self.persist();
            match outcome {
                Ok(()) => Event::new(
                    Kind::UnitRestarted,
                    Severity::Error,
                    format!(
                        "restarted {name} (attempt {attempt}, after {}, reason: {reason})",
                        fmt_delay(delay)
                    ),
                )
                .unit(&name)
                .delay(delay)
                .emit(),
                Err(e) => Event::new(
                    Kind::RestartFailed,
                    Severity::Critical,
                    format!("could not restart {name} (attempt {attempt}): {e}"),
                )
                .unit(&name)
                .emit(),
            }
        }
        self.persist();
        self.publish();
    }

    /// Writes backoff.json if anything changed; a failed write is logged and
    /// retried at the next change, never fatal.
    fn persist(&mut self) {
        if !self.dirty {
            return;
        }
        match self.store.save() {
            Ok(()) => self.dirty = false,
            Err(e) => log::error!("{e}"),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut snap = build_snapshot(&View {
            config: &self.config,
            policy: &self.policy,
            results: &self.results,
            units: &self.units,
            backoff: &self.store.units,
            bus_error: self.bus_error.as_deref(),
            started_at: self.started_at,
        });
        snap.telemetry = self.telemetry.as_ref().map(|(_, t)| t.view());
        snap.alerts = self
            .alerts
            .as_ref()
            .map(|(_, a)| a.view())
            .unwrap_or_default();
        snap
    }

    /// Writes status.json, sends STATUS= when it changed, and hands the
    /// snapshot to the OTLP export.
    fn publish(&mut self) {
        let snap = self.snapshot();
        if let Err(e) = snap.write(&self.config.status_path()) {
            log::error!("{e}");
        }
        if snap.summary != self.status_line {
            notify::status(&snap.summary);
            self.status_line = snap.summary.clone();
        }
        if let Some((_, t)) = &self.telemetry {
            t.update(std::sync::Arc::new(snap));
        }
    }

    /// The full safety-net pass: re-read units, run every check, decide.
    pub async fn sweep(&mut self) {
        #[cfg(feature = "test-hooks")]
        self.test_hang().await;
        if let Err(e) = self.refresh_units().await {
            self.lost_bus(&e.to_string());
        }
        self.run_checks(None);
        let now = SystemTime::now();
        for name in self.unit_names() {
            self.supervise_unit(&name, now).await;
        }
        self.persist();
        self.publish();
    }

    /// Test builds only: a file `test-hang-sweep` in the runtime directory
    /// makes this sweep wait forever, without blocking the thread, so the
    /// runtime and its other tasks (the OTLP export, alert workers) go on.
    /// The watchdog test proves that the pings stop all the same, which
    /// `kill -STOP` (every thread frozen) could not. The file is removed,
    /// so the daemon that systemd starts next runs normally.
    #[cfg(feature = "test-hooks")]
    async fn test_hang(&self) {
        let trigger = self.config.daemon.runtime_dir.join("test-hang-sweep");
        if std::fs::remove_file(&trigger).is_ok() {
            log::warn!("test hook: this sweep never completes");
            std::future::pending::<()>().await;
        }
    }

    /// Handles one unit property change from a signal.
    async fn on_change(&mut self, change: Change) {
        let Some(name) = self.by_path.get(&change.path).cloned() else {
            return;
        };
        let Some(status) = self.units.get_mut(&name) else {
            return;
        };
        let prev = status.clone();
        if change.apply(status) {
            self.on_transition(&name, Some(prev)).await;
            self.persist();
            self.publish();
        }
    }

    /// SIGHUP: re-read the config (a bad one is logged and the old kept) and
    /// apply any `backoff reset` request.
    pub async fn reload(&mut self) {
        notify::reloading();
        let loaded = Config::load(&self.config_path)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                let t = Settings::resolve(&c, &process_env).map_err(|e| e.to_string())?;
                let a = crate::alerts::resolve(&c, &process_env).map_err(|e| e.to_string())?;
                for spec in &a {
                    crate::alerts::notifier(spec).map_err(|e| e.to_string())?;
                }
                Ok((c, t, a))
            });
        match loaded {
            Ok((c, telemetry, alerts)) => {
                self.set_telemetry(telemetry);
                // The state file follows the new state_dir, if it moved.
                let state_dir_moved = c.daemon.state_dir != self.config.daemon.state_dir;
                if state_dir_moved {
                    if let Some((_, old)) = self.alerts.take() {
                        tokio::spawn(old.retire(Duration::from_secs(2)));
                    }
                }
                let changed = c != self.config;
                if changed {
                    self.policy = Policy::from(&c.backoff);
                    self.checks = checks::build_all(&c);
                    self.results.clear();
                    self.config = c;
                }
                if let Err(e) = self.set_alerts(alerts).await {
                    log::error!("alert channels not started: {e}");
                }
                Event::new(
                    Kind::ConfigReloaded,
                    Severity::Info,
                    format!(
                        "configuration reloaded from {}{}",
                        self.config_path.display(),
                        if changed { "" } else { " (unchanged)" }
                    ),
                )
                .quiet()
                .emit();
            }
            Err(e) => Event::new(
                Kind::ConfigRejected,
                Severity::Error,
                format!("new configuration rejected, keeping the running one: {e}"),
            )
            .emit(),
        }
        self.apply_reset_request();
        self.sweep().await;
        notify::ready(&self.status_line);
    }

    fn apply_reset_request(&mut self) {
        let path = self.config.daemon.state_dir.join(RESET_REQUEST);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let target = (line != "*").then_some(line);
            let n = self.store.reset(target);
            self.down.retain(|u| target.is_some_and(|t| t != u));
            Event::new(
                Kind::BackoffReset,
                Severity::Info,
                format!(
                    "backoff reset by request for {} ({n} entries)",
                    target.unwrap_or("all units")
                ),
            )
            .quiet()
            .emit();
            if let Some(t) = target {
                // The event goes to the unit's story too.
                log::debug!(unitwatch_unit = t; "backoff reset");
            }
        }
        self.dirty = true;
        self.persist();
        let _ = std::fs::remove_file(&path);
    }

    /// The sweep period: `interval`, shortened to half the watchdog period
    /// so that pings come in time.
    fn period(&self) -> Duration {
        let mut p = self.config.daemon.interval;
        if let Some(w) = notify::watchdog_period() {
            if p > w / 2 {
                log::warn!(
                    "daemon.interval {} is longer than half of WatchdogSec ({}): sweeping every {} instead",
                    fmt_delay(p),
                    fmt_delay(w),
                    fmt_delay(w / 2)
                );
                p = w / 2;
            }
        }
        p
    }
}

/// Reads every watched unit: one ListUnitsByNames for all of them, plus
/// `Result` for units that are down and `MemoryCurrent` for running units
/// with memory thresholds. `prev` supplies what signals told us already.
pub async fn read_units(
    bus: &Systemd,
    config: &Config,
    prev: &UnitTable,
) -> Result<Vec<(String, String, UnitStatus)>, SystemdError> {
    let names: Vec<String> = config.units.iter().map(|u| u.name.to_string()).collect();
    let listed = bus.list(&names).await?;
    let mut out = Vec::with_capacity(listed.len());
    for l in listed {
        let wants_memory = config
            .unit(&l.name)
            .is_some_and(|u| u.memory_warn.is_some() || u.memory_crit.is_some());
        let active = l.active_state == "active" || l.active_state == "reloading";
        let before = prev.get(&l.name);
        let result = if !active && l.load_state != "not-found" {
            bus.result(&l.name, &l.path).await?
        } else {
            before.and_then(|p| p.result.clone())
        };
        let memory_current = if wants_memory && active {
            bus.memory_current(&l.name, &l.path).await?
        } else {
            None
        };
        let status = UnitStatus {
            load_state: l.load_state,
            active_state: l.active_state,
            sub_state: l.sub_state,
            result,
            n_restarts: before.and_then(|p| p.n_restarts),
            memory_current,
        };
        out.push((l.name, l.path, status));
    }
    Ok(out)
}

/// What a snapshot is made of.
pub struct View<'a> {
    pub config: &'a Config,
    pub policy: &'a Policy,
    pub results: &'a [CheckResult],
    pub units: &'a UnitTable,
    pub backoff: &'a BTreeMap<String, UnitBackoff>,
    pub bus_error: Option<&'a str>,
    pub started_at: SystemTime,
}

/// The STATUS= line: "3 units ok, 1 failing: worker.service".
pub fn summary(results: &[CheckResult], bus_error: Option<&str>) -> String {
    let mut failing = Vec::new();
    let mut ok = 0;
    for r in results.iter().filter(|r| r.measurement == "state") {
        if r.status == Status::Pass {
            ok += 1;
        } else {
            failing.push(r.component.as_str());
        }
    }
    let mut s = format!("{ok} units ok");
    if !failing.is_empty() {
        s += &format!(", {} failing: {}", failing.len(), list(&failing));
    }
    let other: Vec<_> = results
        .iter()
        .filter(|r| r.measurement != "state" && r.status != Status::Pass)
        .map(|r| r.key.as_str())
        .collect();
    if !other.is_empty() {
        s += &format!("; {} checks not passing: {}", other.len(), list(&other));
    }
    if let Some(e) = bus_error {
        s = format!("systemd unreachable ({e}); {s}");
    }
    s
}

pub fn build_snapshot(v: &View<'_>) -> Snapshot {
    let now = SystemTime::now();
    let units = v
        .config
        .units
        .iter()
        .map(|u| {
            let name = u.name.to_string();
            let backoff = v
                .backoff
                .get(&name)
                .map(|b| BackoffView::of(b, v.policy, now))
                .unwrap_or_else(|| BackoffView {
                    next_delay_ms: v.policy.initial.as_millis() as u64,
                    ..Default::default()
                });
            let view = UnitView {
                state: v.units.get(&name).cloned(),
                restart: u.restart,
                backoff,
            };
            (name, view)
        })
        .collect();
    Snapshot {
        schema_version: SCHEMA_VERSION,
        status: checks::overall(v.results),
        summary: summary(v.results, v.bus_error),
        updated_at: humantime::format_rfc3339_millis(now).to_string(),
        started_at: humantime::format_rfc3339_millis(v.started_at).to_string(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        interval_ms: v.config.daemon.interval.as_millis() as u64,
        systemd: SystemdReach {
            reachable: v.bus_error.is_none(),
            error: v.bus_error.map(str::to_string),
        },
        checks: v.results.to_vec(),
        units,
        telemetry: None,
        alerts: Vec::new(),
    }
}

fn list(items: &[&str]) -> String {
    const MAX: usize = 5;
    let mut s = items
        .iter()
        .take(MAX)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX {
        s += &format!(" and {} more", items.len() - MAX);
    }
    s
}

/// Logs a check's status change (or its first non-pass status).
fn log_check_change(r: &CheckResult, before: Option<Status>) {
    if before == Some(r.status) || (before.is_none() && r.status == Status::Pass) {
        return;
    }
    let (kind, severity) = match r.status {
        Status::Pass => (Kind::CheckChanged, Severity::Info),
        Status::Warn if r.measurement == "age" => (Kind::HeartbeatStale, Severity::Warning),
        Status::Warn => (Kind::CheckChanged, Severity::Warning),
        Status::Fail => (Kind::CheckChanged, Severity::Error),
    };
    let from = before.map(Status::as_str).unwrap_or("unknown");
    let mut e = Event::new(
        kind,
        severity,
        format!(
            "{}: {} -> {}{}",
            r.key,
            from,
            r.status.as_str(),
            r.output
                .as_deref()
                .map(|o| format!(": {o}"))
                .unwrap_or_default()
        ),
    )
    .check(&r.key);
    if let Some(u) = &r.unit {
        e = e.unit(u);
    }
    if r.measurement == "state" {
        // A unit's state check: unit-failed and unit-recovered tell it.
        e = e.quiet();
    }
    e.emit();
}

async fn next_change(signals: &mut Option<Signals>) -> Option<Change> {
    match signals {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_wall(t: Option<SystemTime>) {
    match t {
        Some(t) => {
            let d = t.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(d).await
        }
        None => std::future::pending().await,
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> Result<(), DaemonError> {
    let config = Config::load(config_path)?;
    // Started first, so that events of the start (a corrupt state file)
    // are exported too.
    let telemetry =
        Settings::resolve(&config, &process_env)?.map(|s| (s.clone(), Telemetry::start(s)));
    let specs = crate::alerts::resolve(&config, &process_env)?;
    ensure_dir(&config.daemon.state_dir)?;
    let alerts = if specs.is_empty() {
        None
    } else {
        let a = Alerts::start(&specs, config.alerts_state_path())?;
        Some((specs, a))
    };
    let mut sup = Supervisor::new(config_path, config)?;
    sup.telemetry = telemetry;
    sup.alerts = alerts;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;

    let mut stream = sup.connect().await;
    sup.sweep().await;
    if sup.bus.is_none() {
        stream = None;
    }
    Event::new(
        Kind::DaemonStarted,
        Severity::Info,
        format!(
            "unitwatchd {} watching {} units, {} checks: {}",
            env!("CARGO_PKG_VERSION"),
            sup.config.units.len(),
            sup.checks.len(),
            sup.status_line
        ),
    )
    .emit();
    notify::ready(&sup.status_line);

    let new_ticker = |p: Duration| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    };
    let mut ticker = new_ticker(sup.period());
    // An absolute deadline, kept across iterations: a sleep made afresh in
    // each turn of the loop would never finish while the sweep ticker (as
    // short as the retry wait) keeps winning the select.
    let mut reconnect_at: Option<tokio::time::Instant> = None;
    loop {
        if stream.is_none() && reconnect_at.is_none() {
            reconnect_at = Some(tokio::time::Instant::now() + RECONNECT_EVERY);
        }
        let reconnect = async move {
            match reconnect_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = next_change(&mut stream) => match c {
                Some(change) => {
                    sup.on_change(change).await;
                    if stream.as_ref().is_some_and(Signals::take_overflow) {
                        log::warn!("signal queue overflowed: re-reading every unit");
                        sup.sweep().await;
                    }
                }
                None => { stream = None; sup.lost_bus("the bus closed the connection"); }
            },
            _ = ticker.tick() => {
                sup.sweep().await;
                if sup.bus.is_none() {
                    stream = None;
                }
                notify::watchdog(&sup.status_line);
            }
            _ = sleep_until_wall(sup.next_deadline()) => sup.restart_due().await,
            _ = sleep_until_wall(sup.settling.values().min().copied()) => sup.settle_due().await,
            _ = reconnect => {
                reconnect_at = None;
                stream = sup.connect().await;
                if stream.is_some() {
                    sup.sweep().await;
                }
            }
            _ = hup.recv() => {
                sup.reload().await;
                ticker = new_ticker(sup.period());
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify::stopping();
    sup.dirty = true;
    sup.persist();
    if let Some((_, a)) = sup.alerts.take() {
        a.shutdown(Duration::from_secs(3)).await;
    }
    if let Some((_, t)) = sup.telemetry.take() {
        t.shutdown().await;
    }
    log::info!("unitwatchd stopping");
    Ok(())
}

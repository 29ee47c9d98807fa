//! The supervisor daemon: one loop that reacts to systemd's signals at once,
//! sweeps everything every `interval` as a safety net, restarts failed units
//! on their backoff schedule, and publishes status.json and sd_notify status.
//!
//! All state changes happen on this one task, so there are no locks; the only
//! awaits are D-Bus calls to systemd and the timers. Probes (files, sockets,
//! HTTP, commands) run on tasks of their own and their results arrive here
//! as messages (checks.rs), so none of them can delay a failure's handling.
//!
//! This file holds the [`Supervisor`]'s state and its reactions to what
//! systemd says (transitions, sweeps, publishing); checks.rs the checks'
//! results, restart.rs the restarts, reload.rs what SIGHUP does, report.rs
//! the snapshot and the check events, run.rs the loop itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use crate::alerts::{AlertError, Alerts, ChannelSpec};
use crate::backoff::{BackoffStore, Decision, Policy, StateError, UnitBackoff};
use crate::checks::flap::Flap;
use crate::checks::runner::Runner;
use crate::checks::{self, CheckDef, CheckResult};
use crate::config::{Config, ConfigError};
use crate::events::{Event, Kind, Severity};
use crate::fsutil::{ensure_dir, WriteError};
use crate::notify;
use crate::snapshot::{BackoffView, Snapshot, SystemdReach, UnitView, SCHEMA_VERSION};
use crate::systemd::{Change, Signals, Systemd, SystemdError};
use crate::telemetry::{Settings, Telemetry, TelemetryError};
use crate::units::{UnitStatus, UnitTable};

mod checks_run;
mod reload;
mod report;
mod restart;
mod run;

use report::log_check_change;
pub use report::{build_snapshot, read_units, summary, View};
pub use run::run;

/// How long a failed unit with `Restart=` gets for systemd to take it into
/// `auto-restart` (it does so in the same event-loop turn; this is margin).
const SETTLE: Duration = Duration::from_millis(250);

/// How long a restart job may stay unseen before a unit still read as
/// `failed` is taken for failed again (systemd runs the job at once; this
/// is margin for a loaded machine).
const RESTART_JOB_GRACE: Duration = Duration::from_secs(5);

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
    checks: Vec<CheckDef>,
    /// One per check, in the order of `checks`.
    results: Vec<CheckResult>,
    flaps: Vec<Flap>,
    /// When each probe last reported (or the checks started), and whether
    /// it has been failed for saying nothing since.
    since: Vec<SystemTime>,
    stale: Vec<bool>,
    /// The probe tasks, and the generation of `checks` they run (a reload
    /// starts a new one; results of the old are dropped).
    runner: Option<Runner>,
    generation: u64,
    /// A snapshot is due by then: probe results that changed no status
    /// are published together, at most once a second.
    publish_at: Option<tokio::time::Instant>,
    /// When the last snapshot was written (by a sweep or for probes), and
    /// the buffer it was serialized into, kept for the next.
    published: tokio::time::Instant,
    publish_buf: Vec<u8>,
    /// How often the loop sweeps (and so publishes), as it last set it.
    sweep_every: Duration,
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
    /// Units restarted by unitwatch whose restart job systemd has not been
    /// seen to run yet: until a signal (or a read that is not `failed`)
    /// shows it did, a sweep's `failed` is the state from before the
    /// restart, not a new failure, and must not plan a second restart.
    restarting: HashMap<String, SystemTime>,
    /// The serial of systemd's reply to the last full read on this
    /// connection: a signal sent before it carries older state than the
    /// table holds and is not applied (`systemd::older`).
    listed_serial: Option<u32>,
    /// Each unit as the signals alone have shown it, to tell whether a
    /// signal older than the last read is news (`Change::skipped_move`).
    streamed: HashMap<String, UnitStatus>,
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
            checks: Vec::new(),
            results: Vec::new(),
            flaps: Vec::new(),
            since: Vec::new(),
            stale: Vec::new(),
            runner: None,
            generation: 0,
            publish_at: None,
            published: tokio::time::Instant::now(),
            publish_buf: Vec::new(),
            sweep_every: config.daemon.interval,
            units: UnitTable::new(),
            by_path: HashMap::new(),
            paths: HashMap::new(),
            down: HashSet::new(),
            settling: HashMap::new(),
            restarting: HashMap::new(),
            listed_serial: None,
            streamed: HashMap::new(),
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
                // Serials are per connection of systemd's: start afresh.
                self.listed_serial = None;
                self.streamed.clear();
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
        let (fresh, serial) = read_units(bus, &self.config, &self.units).await?;
        self.listed_serial = Some(serial);
        // The whole table is updated before any reaction, so that checks
        // run during a reaction see every unit's current state.
        let mut moved = Vec::new();
        for (name, path, status) in fresh {
            self.by_path.insert(path.clone(), name.clone());
            self.paths.insert(name.clone(), path);
            let changed = self.units.get(&name).is_none_or(|p| {
                (&p.active_state, &p.sub_state) != (&status.active_state, &status.sub_state)
            });
            if !status.is_failed() {
                self.restarting.remove(&name);
            }
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
        self.publish_at = None;
        self.published = tokio::time::Instant::now();
        let snap = self.snapshot();
        if let Err(e) = snap.write_with(&self.config.status_path(), &mut self.publish_buf) {
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
        self.stale_checks();
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

    /// Test builds only: while a file `trigger` is in the runtime
    /// directory, waits 300 ms without taking a signal, then reads every
    /// unit, so that the read's state is newer than the signals that wait
    /// in the queue (the order that, once in a while, made a spurious
    /// failure in CI). `once` removes the file. Called at a restart
    /// (`test-late-read-restart`, kept) and before a signal is handled
    /// (`test-late-read-signal`, used once).
    #[cfg(feature = "test-hooks")]
    async fn test_late_read(&mut self, trigger: &str, once: bool) {
        let trigger = self.config.daemon.runtime_dir.join(trigger);
        let present = if once {
            std::fs::remove_file(&trigger).is_ok()
        } else {
            trigger.exists()
        };
        if present {
            tokio::time::sleep(Duration::from_millis(300)).await;
            log::info!("test hook: reading the units ahead of the queued signals");
            if let Err(e) = self.refresh_units().await {
                self.lost_bus(&e.to_string());
            }
        }
    }

    /// Handles one unit property change from a signal.
    async fn on_change(&mut self, change: Change) {
        let Some(name) = self.by_path.get(&change.path).cloned() else {
            return;
        };
        #[cfg(feature = "test-hooks")]
        self.test_late_read("test-late-read-signal", true).await;
        if self
            .listed_serial
            .is_some_and(|listed| crate::systemd::older(change.serial, listed))
        {
            self.on_stale_change(&name, &change).await;
            return;
        }
        let Some(status) = self.units.get_mut(&name) else {
            return;
        };
        let prev = status.clone();
        let moved = change.apply(status);
        self.streamed.insert(name.clone(), status.clone());
        if moved {
            // systemd moved the unit: a restart job in flight has run.
            self.restarting.remove(&name);
            self.on_transition(&name, Some(prev)).await;
            self.persist();
            self.publish();
        }
    }

    /// A change systemd sent before the last full read, whose newer state
    /// the table holds. Applied over the read it would take the unit back
    /// in time, so it is held to the unit as the signals alone have shown
    /// it (`Change::skipped_move`). No news (systemd repeats `failed` around
    /// a `RestartUnit`) is dropped. A move the read skipped over (a crash
    /// that systemd's `Restart=` had undone by the read) is told as if the
    /// read had not been: the table follows the signals from there, and
    /// the stale signals after it lead back to the read's state.
    async fn on_stale_change(&mut self, name: &str, change: &Change) {
        let Some(read) = self.units.get(name).cloned() else {
            return;
        };
        let stream = self
            .streamed
            .entry(name.to_string())
            .or_insert_with(|| read.clone());
        let Some((from, moved)) = change.skipped_move(stream, &read) else {
            log::debug!(
                "{name}: signal {} is older than the last read and not news",
                change.serial
            );
            return;
        };
        log::debug!(
            "{name}: signal {} is older than the last read, which skipped {}/{}",
            change.serial,
            moved.active_state,
            moved.sub_state
        );
        self.units.insert(name.to_string(), moved);
        self.restarting.remove(name);
        self.on_transition(name, Some(from)).await;
        self.persist();
        self.publish();
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

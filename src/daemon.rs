//! The supervisor daemon: one loop that reacts to systemd's signals at once,
//! sweeps everything every `interval` as a safety net, restarts failed units
//! on their backoff schedule, and publishes status.json and sd_notify status.
//!
//! All state changes happen on this one task, so there are no locks; the only
//! awaits are D-Bus calls to systemd and the timers. Probes (files, sockets,
//! HTTP, commands) run on tasks of their own and their results arrive here
//! as messages (checks.rs), so none of them can delay a failure's handling.
//!
//! This file holds the [`Supervisor`]'s state and its reactions to a unit's
//! moves (transitions, sweeps, publishing); observe.rs what systemd says
//! (the connection, reads and signals), checks_run.rs the checks' results,
//! restart.rs the restarts, reload.rs what SIGHUP does, report.rs the
//! snapshot and the check events, run.rs the loop itself, hooks.rs the
//! test builds' hooks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use crate::alerts::{AlertError, Alerts, ChannelSpec};
use crate::backoff::{BackoffStore, Decision, Policy, StateError, UnitBackoff};
use crate::checks::flap::Flap;
use crate::checks::runner::Runner;
use crate::checks::{self, CheckDef};
use crate::config::{Config, ConfigError};
use crate::events::{Event, Kind, Severity};
use crate::fsutil::{ensure_dir, WriteError};
use crate::notify;
use crate::snapshot::{
    BackoffView, Snapshot, SnapshotRef, SystemdReach, UnitViewRef, SCHEMA_VERSION,
};
use crate::systemd::{Change, Signal, Signals, Systemd, SystemdError};
use crate::telemetry::{Settings, Telemetry, TelemetryError};
use crate::units::{UnitStatus, UnitTable};

mod checks_run;
mod containers;
#[cfg(feature = "test-hooks")]
mod hooks;
mod journal;
mod observe;
mod prefetch;
mod publisher;
mod reload;
mod report;
pub mod resources;
mod restart;
mod run;

use report::log_check_change;
pub use report::{build_snapshot, read_units, snapshot_ref, summary, View};
pub use run::run;

/// What a signal said of a move besides the state (nothing, for a read).
#[derive(Debug, Clone, Copy, Default)]
struct Told {
    /// The signal's serial on systemd's connection.
    serial: Option<u32>,
    /// systemd's own time of the move (`StateChangeTimestamp`).
    at: Option<SystemTime>,
}

impl Told {
    fn by(change: &Change) -> Told {
        Told {
            serial: Some(change.serial),
            at: change.changed_at(),
        }
    }
}

/// How long a failed unit with `Restart=` gets for systemd to take it into
/// `auto-restart` (it does so in the same event-loop turn; this is margin).
const SETTLE: Duration = Duration::from_millis(250);

/// How long a restart job may stay unseen before a unit still read as
/// `failed` is taken for failed again (systemd runs the job at once; this
/// is margin for a loaded machine).
const RESTART_JOB_GRACE: Duration = Duration::from_secs(5);

/// How long a snapshot waits after an event for the rest of its burst.
const PUBLISH_EVENT: Duration = Duration::from_millis(10);

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

/// Where each watched unit's config is, and which checks restart it.
#[derive(Default)]
struct Index {
    /// Unit name -> its position in `config.units`.
    units: HashMap<String, usize>,
    /// Unit name -> the positions in `checks` of those that restart it.
    restart_checks: HashMap<String, Vec<usize>>,
}

impl Index {
    fn new(config: &Config, checks: &[CheckDef]) -> Self {
        let mut restart_checks: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in checks.iter().enumerate() {
            if let (true, Some(u)) = (d.restart, &d.unit) {
                restart_checks.entry(u.to_string()).or_default().push(i);
            }
        }
        Index {
            units: config
                .units
                .iter()
                .enumerate()
                .map(|(i, u)| (u.name.to_string(), i))
                .collect(),
            restart_checks,
        }
    }
}

/// Everything the supervisor knows; owned by the loop in [`run`].
pub struct Supervisor {
    config_path: PathBuf,
    config: Config,
    policy: Policy,
    checks: Vec<CheckDef>,
    /// Indexes over `config` and `checks`, rebuilt with them: a sweep asks
    /// both for every unit, and a scan of 2,000 for each of 2,000 made
    /// the sweep's CPU grow with the square of the units.
    index: Index,
    /// One per check, in the order of `checks`.
    results: Vec<checks::Found>,
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
    /// When the last snapshot was published (by a sweep or for probes),
    /// and the task that writes them.
    published: tokio::time::Instant,
    publisher: publisher::Publisher,
    /// The task that writes backoff.json.
    state_writer: publisher::Publisher,
    /// How often the loop sweeps (and so publishes), as it last set it.
    sweep_every: Duration,
    units: UnitTable,
    /// What the engines last said of the watched containers, the tasks
    /// that watch them, and their news (daemon/containers.rs).
    containers: crate::containers::watch::ContainerTable,
    container_tasks: Vec<tokio::task::JoinHandle<()>>,
    container_news: Option<tokio::sync::mpsc::Receiver<crate::containers::watch::Message>>,
    container_cmds: HashMap<String, tokio::sync::mpsc::Sender<crate::containers::watch::Command>>,
    /// Watched containers whose recovery was asked of their watcher, and
    /// not answered yet.
    container_recovering: HashSet<String>,
    /// Restarted containers whose ready checks are awaited: when the
    /// restart was made, and the ready_timeout's end.
    container_ready: HashMap<String, (SystemTime, SystemTime)>,
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
    /// The signals older than the last read, replayed against it per unit
    /// to tell which of their moves are news (`replay`); no entry: no
    /// such signal since the read, and the signals agree with the table.
    streamed: HashMap<String, crate::replay::Replay>,
    /// Whether each unit has systemd's `Restart=`, as read ahead
    /// (`prefetch`) or at its last failure, dropped when systemd reloads:
    /// a failure and the restart it leads to need it, and a round trip to
    /// systemd at either would delay them.
    may_restart: HashMap<String, bool>,
    /// The read ahead of `may_restart`.
    prefetch: prefetch::Prefetch,
    /// The resource reader's read in flight (resources.rs).
    resources: resources::Reader,
    /// The journal checks' follower, while there are any.
    journal: Option<crate::checks::journal::follow::Follower>,
    /// The serial of the last signal that carried each unit's `Result`
    /// (the Service interface's change, which systemd sends just before
    /// the Unit's): the Unit's change that follows it at once has its
    /// `Result` in the table already.
    result_serial: HashMap<String, u32>,
    /// When systemd says a unit failed (the signal's `StateChangeTimestamp`),
    /// from the failure's signal until the restart it leads to is planned:
    /// the backoff's delay counts from it.
    failed_at: HashMap<String, SystemTime>,
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
            index: Index::new(&config, &[]),
            results: Vec::new(),
            flaps: Vec::new(),
            since: Vec::new(),
            stale: Vec::new(),
            runner: None,
            generation: 0,
            publish_at: None,
            published: tokio::time::Instant::now(),
            publisher: publisher::Publisher::start("the status snapshot"),
            state_writer: publisher::Publisher::start("the backoff state"),
            sweep_every: config.daemon.interval,
            units: UnitTable::new(),
            containers: Default::default(),
            container_tasks: Vec::new(),
            container_news: None,
            container_cmds: HashMap::new(),
            container_recovering: HashSet::new(),
            container_ready: HashMap::new(),
            by_path: HashMap::new(),
            paths: HashMap::new(),
            down: HashSet::new(),
            settling: HashMap::new(),
            restarting: HashMap::new(),
            listed_serial: None,
            streamed: HashMap::new(),
            may_restart: HashMap::new(),
            prefetch: prefetch::Prefetch::default(),
            resources: resources::Reader::default(),
            journal: None,
            result_serial: HashMap::new(),
            failed_at: HashMap::new(),
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

    /// The config of a watched unit, by the index (`Config::unit` scans).
    fn unit_config(&self, name: &str) -> Option<&crate::config::UnitConfig> {
        self.index.units.get(name).map(|&i| &self.config.units[i])
    }

    fn unit_names(&self) -> Vec<String> {
        self.config
            .units
            .iter()
            .map(|u| u.name.to_string())
            .collect()
    }

    /// A unit's ActiveState or SubState changed (or was seen the first time),
    /// as a signal told it or a read found it.
    async fn on_transition(&mut self, name: &str, prev: Option<UnitStatus>, told: Told) {
        let now = SystemTime::now();
        let cur = self.units[name].clone();
        // Only the move into `failed` that a restart will follow keeps it.
        self.failed_at.remove(name);
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
            if let Some(t) = told.at {
                self.failed_at.insert(name.to_string(), t);
            }
            // Each read is a round trip to systemd between the signal and
            // the failure told: none where the answer is known (Restart=
            // read ahead, Result from the signal just before), the others
            // at once.
            let result_known = told.serial.is_some_and(|serial| {
                self.result_serial.get(name) == Some(&serial.wrapping_sub(1))
            });
            let (may_restart, result) = if prev.is_some() {
                let (m, r) = match (self.may_restart.get(name).copied(), result_known) {
                    (Some(m), true) => (m, None),
                    (Some(m), false) => (m, self.read_result(name).await),
                    (None, true) => (self.systemd_may_restart(name).await, None),
                    (None, false) => {
                        tokio::join!(self.systemd_may_restart(name), self.read_result(name))
                    }
                };
                self.may_restart.insert(name.to_string(), m);
                (m, r)
            } else {
                (false, self.read_result(name).await)
            };
            self.store_result(name, result);
            if may_restart {
                self.settling.insert(name.to_string(), now + SETTLE);
                self.run_checks(Some(name));
                return;
            }
            self.announce_failure(name, now, false);
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

    /// Logs a failure (with systemd's `Result` as the table has it: read
    /// fresh by the caller, as it can arrive in a separate signal after
    /// ActiveState) and records it.
    fn announce_failure(&mut self, name: &str, now: SystemTime, systemd_gave_up: bool) {
        let result = self.units.get(name).and_then(|u| u.result.clone());
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
        let r = self.read_result(name).await;
        self.store_result(name, r);
        self.units.get(name).and_then(|u| u.result.clone())
    }

    /// The unit's `Result` as systemd has it now; None if it cannot say.
    async fn read_result(&self, name: &str) -> Option<String> {
        let (bus, path) = (self.bus.as_ref()?, self.paths.get(name)?);
        bus.result(name, path).await.ok().flatten()
    }

    fn store_result(&mut self, name: &str, result: Option<String>) {
        if let (Some(r), Some(s)) = (result, self.units.get_mut(name)) {
            s.result = Some(r);
        }
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
                self.fresh_result(&name).await;
                self.announce_failure(&name, now, true);
                self.supervise_unit(&name, now).await;
            }
        }
        self.persist();
        self.publish_soon();
    }

    /// Hands backoff.json to its writer if anything changed, or if the
    /// last write failed (logged by the writer, never fatal): retried at
    /// the next event or sweep.
    fn persist(&mut self) {
        if !self.dirty && !self.state_writer.last_write_failed() {
            return;
        }
        // Off the loop (see publisher): the next signal never waits for
        // the disk.
        let store = &self.store;
        self.state_writer
            .send(store.path().to_path_buf(), |b| store.serialize_into(b));
        self.dirty = false;
    }

    /// The full safety-net pass: re-read units, run every check, decide.
    pub async fn sweep(&mut self) {
        #[cfg(feature = "test-hooks")]
        self.test_hang().await;
        if let Err(e) = self.refresh_units().await {
            self.lost_bus(&e.to_string());
        }
        // The checks a resource read grades when its figures come in
        // (on_resources) wait for it: graded here too, on the last read's
        // figures, they cost a second grading of thousands of checks a
        // sweep at 2,000 units, and said nothing new.
        let read = self.prepare_resource_read();
        let later: HashSet<&str> = read.iter().flatten().map(|t| t.unit.as_str()).collect();
        self.run_checks_where(|d| !resources::graded_by_read(d, &later));
        self.stale_checks();
        let now = SystemTime::now();
        for name in self.unit_names() {
            self.supervise_unit(&name, now).await;
        }
        self.supervise_containers(now);
        self.persist();
        self.start_prefetch();
        // One snapshot a sweep: with a resource read started, when its
        // figures come in (on_resources), else now.
        if self.start_resource_read(read) {
            self.publish_by(tokio::time::Instant::now() + resources::READ_PUBLISH);
        } else {
            self.publish();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_finds_each_units_config_and_only_the_checks_that_restart_it() {
        let config = Config::parse(
            "[[unit]]\nname = \"a.service\"\n[[unit]]\nname = \"b.service\"\n\
             [[unit]]\nname = \"c.service\"\n\
             [[heartbeat]]\npath = \"/run/b\"\nmax_age = \"1m\"\nrestart_unit = \"b.service\"\n\
             [[heartbeat]]\npath = \"/run/c\"\nmax_age = \"1m\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let checks = checks::build_all(&config);
        let ix = Index::new(&config, &checks);
        for (i, u) in config.units.iter().enumerate() {
            assert_eq!(ix.units[u.name.as_str()], i);
        }
        // The units' state checks do not restart; b's heartbeat does, and
        // the heartbeat without restart_unit restarts nothing.
        assert_eq!(ix.restart_checks.len(), 1, "{:?}", ix.restart_checks);
        let b = &ix.restart_checks["b.service"];
        assert_eq!(b.len(), 1);
        assert!(checks[b[0]].restart && checks[b[0]].unit.as_deref() == Some("b.service"));
        assert_eq!(
            checks.iter().filter(|d| d.restart).count(),
            1,
            "every restarting check is in the index"
        );
    }
}

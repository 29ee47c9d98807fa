//! The `unitwatchd` command line: argument definitions (kept in the library
//! so man pages and completions can be generated from them) and the one-shot
//! commands (`check`, `config check`, `backoff show|reset`, `alert test`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};

use crate::backoff::{BackoffStore, Policy, UnitBackoff};
use crate::checks::{self, CheckContext};
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::daemon::{build_snapshot, read_units, resources, View, RESET_REQUEST};
use crate::snapshot::{BackoffView, Snapshot};
use crate::systemd::Systemd;
use crate::units::UnitTable;

/// Exit code for an invalid configuration (sysexits EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;
/// Exit code of `check --otlp` when the collector did not accept the
/// export (sysexits EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: i32 = 69;

#[derive(Debug, Parser)]
#[command(
    name = "unitwatchd",
    version,
    about = "systemd-native health supervisor: watches units, restarts them with backoff, reports health",
    long_about = "unitwatchd watches the systemd units named in its configuration over D-Bus, \
reacting to systemd's signals at once and sweeping everything periodically; checks heartbeat \
files, disks and memory; restarts failed units through systemd with an exponential backoff \
that survives its own restarts and reboots; logs every event to the journal with fields that \
journalctl filters on; and writes a status snapshot that unitwatch-http serves. Without a \
command it runs the daemon, as unitwatch.service does."
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', global = true, env = "UNITWATCH_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Log debug messages too.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor (the default; what the systemd unit starts).
    Run,
    /// Run every check once and print the result; exit 0 pass, 1 warn, 2 fail.
    Check {
        /// Print the status snapshot as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also send the result once over OTLP as [telemetry] says (enabled
        /// or not) and report whether the collector accepted it; exit 69
        /// if it did not.
        #[arg(long)]
        otlp: bool,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect or reset the restart backoff state.
    Backoff {
        #[command(subcommand)]
        command: BackoffCommand,
    },
    /// Alert channels ([[alert]] in the configuration).
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send a test alert to every channel (or the one named) and report
    /// each delivery; exit 0 when all arrived, 69 when one did not. Secrets
    /// are read as the daemon reads them: run it with the daemon's
    /// environment (/etc/default/unitwatch) when a channel uses *_env.
    Test {
        /// Only the channel with this name (the [[alert]] name, else its type).
        #[arg(long)]
        channel: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file without running; exit 0 valid, 78 invalid.
    Check,
    /// Exit 0 if UNIT is watched with `restart = true`, 1 if not (78 if the
    /// file is not TOML). The polkit rule asks this before it lets the
    /// unitwatch user restart a unit; only the [[unit]] tables are read, so
    /// a mistake elsewhere does not stop restarts.
    Watches { unit: String },
    /// Print the polkit rule that lists the units watched with `restart =
    /// true`, so that polkit allows their restarts without asking `config
    /// watches` each time; with --output, write it there instead (atomically,
    /// mode 0644). The service runs it as root at each start and reload,
    /// into /etc/polkit-1/rules.d/49-unitwatch-units.rules. The file is read
    /// as `config watches` reads it.
    PolkitRules {
        /// The rules file to write (its directory must exist).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the systemd drop-in for unitwatch.service that grants what the
    /// configuration needs beyond the shipped unit: today
    /// CAP_DAC_READ_SEARCH and a /proc showing other users' processes,
    /// only while a [[unit]] has fds_warn_percent or fds_crit_percent (to
    /// count another user's open descriptors), and the systemd-journal
    /// group, only while a journal check is configured (to read other
    /// units' journal entries), and the docker group, only while a
    /// [[container]] is configured and the group exists (to use dockerd's
    /// socket, which is root-equivalent). Nothing is printed when
    /// nothing is needed. With --output, write it there (atomically, mode
    /// 0644, creating its directory), or remove the file when nothing is
    /// needed. The package's systemd generator (unitwatch-generator) runs
    /// it at boot and at each daemon-reload.
    Privileges {
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackoffCommand {
    /// Show each unit's attempts, next delay and recent restarts.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Forget the backoff of UNIT (or of every unit): the next restart waits
    /// the initial delay again, and a restart limit is lifted.
    Reset { unit: Option<String> },
}

/// The `unitwatch-http` command line.
#[derive(Debug, Parser)]
#[command(
    name = "unitwatch-http",
    version,
    about = "serves unitwatch's health (/health, application/health+json), metrics (/metrics) and a status page (/)",
    long_about = "unitwatch-http serves what unitwatchd saw, read from its status snapshot \
(daemon.runtime_dir/status.json): /health for uptime monitors and load balancers, /metrics for \
Prometheus and a status page for a person. It never talks to systemd or to the daemon, so a \
request never waits on a check. It listens on the addresses of [http] listen in the \
configuration, or on the sockets systemd passes (socket activation)."
)]
pub struct HttpCli {
    /// Configuration file (its [http] section and daemon.runtime_dir).
    #[arg(long, short = 'c', env = "UNITWATCH_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Log debug messages too.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// `config watches UNIT`: is UNIT named with `restart = true` in the file?
/// Read leniently (see [`crate::config::restartable_units`]). The polkit
/// rule asks with whatever unit name a request carries, so a name that is
/// not one systemd would accept is refused before the file is read: it
/// says why, and is not watched.
pub fn watches(
    path: &Path,
    unit: &str,
) -> Result<Result<bool, String>, crate::config::ConfigError> {
    if let Err(why) = crate::config::UnitName::parse(unit) {
        return Ok(Err(why));
    }
    Ok(Ok(crate::config::restartable_units_in(path)?
        .iter()
        .any(|u| u.as_str() == unit)))
}

/// `config polkit-rules`: the rules file listing the units that `config
/// watches` would allow, read as it reads the file.
pub fn polkit_rules(path: &Path) -> Result<String, crate::config::ConfigError> {
    let units = crate::config::restartable_units_in(path)?;
    Ok(crate::polkit::rules(path, &units))
}

/// `config privileges`: the drop-in the configuration needs, if any.
pub fn privileges(config: &Config, path: &Path) -> Option<String> {
    let fds = crate::checks::unit_resources::counts_fds(config);
    let journal = crate::checks::journal::configured(config);
    let docker = crate::checks::container::engine_group(config);
    if !fds && !journal && docker.is_none() {
        return None;
    }
    let mut text = format!(
        "# Written by unitwatch-generator (unitwatchd config privileges) from\n\
         # {}; removed when nothing in it needs more than the shipped unit.\n",
        path.display()
    );
    if fds {
        text += "# A [[unit]] counts open file descriptors (fds_warn_percent,\n\
                 # fds_crit_percent), and those of another user's processes are\n\
                 # readable only with CAP_DAC_READ_SEARCH (their /proc/PID/fd is\n\
                 # mode 0500) and only in a /proc that shows them (ProtectProc=\n\
                 # invisible hides them).\n";
    }
    if journal {
        text += "# A [[check]] of type journal reads other units' journal entries,\n\
                 # which journald shows to members of systemd-journal only.\n";
    }
    if let Some(g) = docker {
        text += &format!(
            "# A [[container]] is watched through the engine's socket, which its\n\
             # group ({g}) may use. That access is root-equivalent: it is granted\n\
             # only while a [[container]] is configured.\n"
        );
    }
    text += "[Service]\n";
    if fds {
        text += "CapabilityBoundingSet=CAP_DAC_READ_SEARCH\n\
                 AmbientCapabilities=CAP_DAC_READ_SEARCH\n\
                 ProtectProc=default\n";
    }
    if journal {
        text += "SupplementaryGroups=systemd-journal\n";
    }
    if let Some(g) = docker {
        text += &format!("SupplementaryGroups={g}\n");
    }
    Some(text)
}

/// Writes (or, when `text` is none, removes) a generated file.
pub fn write_or_remove(out: &Path, text: Option<&str>) -> Result<(), String> {
    match text {
        Some(t) => {
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            crate::fsutil::write_atomic(out, t.as_bytes(), 0o644).map_err(|e| e.to_string())
        }
        None => match std::fs::remove_file(out) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", out.display())),
        },
    }
}

/// `alert test`: the report, and whether every channel took its alert.
pub async fn alert_test(config: &Config, channel: Option<&str>) -> Result<(String, bool), String> {
    let specs =
        crate::alerts::resolve(config, &crate::daemon::process_env).map_err(|e| e.to_string())?;
    if specs.is_empty() {
        return Err("no [[alert]] channel is configured".into());
    }
    let results = crate::alerts::send_test(&specs, channel)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    let mut all = true;
    for (name, dest, r) in results {
        match r {
            Ok((attempts, took)) => {
                let _ = writeln!(
                    out,
                    "{name} ({dest}): delivered in {} ms{}",
                    took.as_millis(),
                    if attempts > 1 {
                        format!(" after {attempts} attempts")
                    } else {
                        String::new()
                    }
                );
            }
            Err(e) => {
                all = false;
                let _ = writeln!(out, "{name} ({dest}): NOT delivered: {e}");
            }
        }
    }
    Ok((out, all))
}

/// `check --otlp`: one export of `snap` with the configured settings.
pub async fn check_otlp(config: &Config, snap: &Snapshot) -> Result<String, String> {
    let settings = crate::telemetry::Settings::for_config(config, &crate::daemon::process_env)
        .map_err(|e| e.to_string())?;
    crate::telemetry::export_once(settings, snap.clone())
        .await
        .map_err(|e| e.to_string())
}

/// Runs every check once, reading systemd if it can be reached.
pub async fn check_once(config: &Config) -> Snapshot {
    let mut units = UnitTable::new();
    let mut bus_error = None;
    if !config.units.is_empty() {
        match Systemd::connect_timeout(Duration::from_secs(3)).await {
            Ok(bus) => match read_units(&bus, config, &UnitTable::new()).await {
                Ok((rows, _)) => {
                    let paths = rows
                        .iter()
                        .map(|(n, p, _)| (n.clone(), p.clone()))
                        .collect();
                    units.extend(rows.into_iter().map(|(n, _, s)| (n, s)));
                    // The daemon's resource read, once (so no CPU figure,
                    // which needs two).
                    let targets = resources::targets(config, &units, &paths);
                    let found = resources::read_all(
                        &bus,
                        &crate::checks::unit_resources::Dirs::of(config),
                        targets,
                    )
                    .await;
                    resources::apply(&mut units, found);
                }
                Err(e) => bus_error = Some(e.to_string()),
            },
            Err(e) => bus_error = Some(e.to_string()),
        }
    }
    let defs = checks::build_all(config);
    let containers = crate::containers::watch::read_once(checks::container::engines(config)).await;
    // Journal checks count what the journal holds over their windows.
    let watches = checks::journal::watches(&defs);
    if !watches.is_empty() {
        let read = tokio::task::spawn_blocking(move || checks::journal::follow::read_once(watches));
        let _ = tokio::time::timeout(Duration::from_secs(30), read).await;
    }
    let now = SystemTime::now();
    let backoff = peek_backoff(&config.backoff_path()).unwrap_or_default();
    let results = checks::runner::run_all_once(
        &defs,
        &CheckContext {
            now,
            units: &units,
            backoff: &backoff,
            systemd_error: bus_error.as_deref(),
            containers: &containers,
        },
    )
    .await;
    build_snapshot(&View {
        config,
        policy: &Policy::from(&config.backoff),
        checks: &defs,
        results: &results,
        units: &units,
        backoff: &backoff,
        bus_error: bus_error.as_deref(),
        started_at: now,
    })
}

/// Reads backoff.json without touching it: a corrupt file is reported by
/// the CLI but only ever moved aside by the daemon.
fn peek_backoff(path: &Path) -> Result<BTreeMap<String, UnitBackoff>, String> {
    match std::fs::read(path) {
        Ok(bytes) => BackoffStore::parse(&bytes)
            .map_err(|e| format!("{}: corrupt backoff state: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!(
            "{}: cannot read backoff state: {e}",
            path.display()
        )),
    }
}

/// The check table printed by `unitwatchd check`.
pub fn render_table(snap: &Snapshot) -> String {
    let mut out = String::new();
    if let Some(e) = &snap.systemd.error {
        let _ = writeln!(
            out,
            "systemd: could not be reached, unit checks fail: {e}\n"
        );
    }
    let rows: Vec<[String; 4]> = snap
        .checks
        .iter()
        .map(|c| {
            [
                c.status.as_str().to_uppercase(),
                c.key.to_string(),
                c.display_value(),
                c.output.as_deref().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    let header = ["STATUS", "CHECK", "VALUE", "DETAIL"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(
        out,
        "\noverall: {} ({})",
        snap.status.as_str(),
        snap.summary
    );
    out
}

/// `backoff show`: a table or JSON of every unit with state.
pub fn backoff_show(config: &Config, json: bool) -> Result<String, String> {
    let units = peek_backoff(&config.backoff_path())?;
    let policy = Policy::from(&config.backoff);
    let now = SystemTime::now();
    let views: BTreeMap<_, _> = units
        .iter()
        .map(|(k, v)| (k.clone(), BackoffView::of(v, &policy, now)))
        .collect();
    if json {
        return Ok(serde_json::to_string_pretty(&views).expect("serializes") + "\n");
    }
    if views.is_empty() {
        return Ok(format!(
            "no backoff state in {} (no unit has needed a restart)\n",
            config.backoff_path().display()
        ));
    }
    let mut out = format!(
        "{:<32} {:>8} {:>10} {:>9} {:<25} {:<25} {}\n",
        "UNIT", "ATTEMPTS", "NEXT_DELAY", "LAST_HOUR", "LAST_FAILURE", "LAST_RESTART", "PENDING"
    );
    let ts = |t: &Option<crate::backoff::Timestamp>| t.map(|t| t.to_string()).unwrap_or("-".into());
    for (name, v) in &views {
        let pending = match (&v.pending_restart_at, v.limited) {
            (_, true) => "restart limit reached".to_string(),
            (Some(t), _) => format!("restart at {t}"),
            (None, _) => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<32} {:>8} {:>10} {:>9} {:<25} {:<25} {}",
            name,
            v.attempts,
            humantime::format_duration(Duration::from_millis(v.next_delay_ms)).to_string(),
            v.restarts_last_hour,
            ts(&v.last_failure),
            ts(&v.last_restart),
            pending
        );
    }
    Ok(out)
}

/// The pid of a running daemon that owns this configuration's state, if any.
fn running_daemon(config: &Config) -> Option<i32> {
    let snap = Snapshot::read(&config.status_path()).ok()?;
    let comm = config
        .daemon
        .proc_dir
        .join(snap.pid.to_string())
        .join("comm");
    let name = std::fs::read_to_string(comm).ok()?;
    (name.trim() == "unitwatchd" && snap.pid != std::process::id()).then_some(snap.pid as i32)
}

/// `backoff reset [UNIT]`. A running daemon owns the state, so it is asked
/// (request file + SIGHUP) and the call waits for it; otherwise the file is
/// edited directly.
pub fn backoff_reset(config: &Config, unit: Option<&str>) -> Result<String, String> {
    let target = unit.unwrap_or("all units");
    if let Some(pid) = running_daemon(config) {
        let req = config.daemon.state_dir.join(RESET_REQUEST);
        let line = format!("{}\n", unit.unwrap_or("*"));
        // Readable by the daemon, which runs as its own user.
        crate::fsutil::write_atomic(&req, line.as_bytes(), 0o644).map_err(|e| e.to_string())?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGHUP)
            .map_err(|e| format!("cannot signal unitwatchd (pid {pid}): {e}"))?;
        for _ in 0..100 {
            if !req.exists() {
                return Ok(format!(
                    "backoff reset for {target} (applied by unitwatchd, pid {pid})\n"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        return Err(format!(
            "unitwatchd (pid {pid}) did not pick up the reset request {} within 5s",
            req.display()
        ));
    }
    let (mut store, corrupt) =
        BackoffStore::load(&config.backoff_path(), SystemTime::now()).map_err(|e| e.to_string())?;
    if let Some(c) = corrupt {
        eprintln!(
            "warning: corrupt backoff state moved aside to {} ({})",
            c.moved_to.display(),
            c.reason
        );
    }
    let n = store.reset(unit);
    store.save().map_err(|e| e.to_string())?;
    Ok(format!(
        "backoff reset for {target} ({n} entries removed)\n"
    ))
}

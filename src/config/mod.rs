//! The configuration file: its schema, its defaults and its validation.
//!
//! Parsing and validation are two passes. serde (with `deny_unknown_fields`)
//! rejects unknown keys and values of the wrong shape; the validation pass
//! then checks what serde cannot (thresholds in order, unit names well
//! formed, references between sections). Both passes report `path:line:col:
//! key: message`, the validation pass by looking the key's span up in the
//! parsed document, so an operator is sent to the exact spot in the file.
//!
//! This file composes the sections and owns the supervisor's own (`[daemon]`,
//! `[backoff]`, `[[unit]]`, `[http]`). Each check kind's section and keys
//! belong to its file under `src/checks/` ([`crate::checks::KINDS`]); the
//! alert channels' to `alert.rs`, the OTLP export's to `telemetry.rs`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::checks::container::ContainerConfig;
use crate::checks::disk::DiskConfig;
use crate::checks::heartbeat::HeartbeatConfig;
use crate::checks::memory::MemoryConfig;
use crate::checks::pressure::PressureConfig;
use crate::checks::CheckTable;

mod alert;
pub(crate) mod locate;
mod telemetry;
mod values;

pub use alert::{AlertConfig, AlertType, SmtpTls};
use locate::{key_path_string, line_col, span_of, Problem};
pub use locate::{Bad, KeySeg};
pub use telemetry::{OtlpProtocol, TelemetryConfig};
pub use values::{
    check_http_url, check_percent_pair, duration, is_loopback_host, one_or_many, opt_duration,
    ByteSize, UnitName,
};

/// Where the daemon and the CLI look when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/unitwatch/unitwatch.toml";

/// An invalid or unreadable configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read configuration: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{col}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        col: usize,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub backoff: BackoffConfig,
    #[serde(default, rename = "unit")]
    pub units: Vec<UnitConfig>,
    /// `[[container]]`: checks::container reads and validates it.
    #[serde(default, rename = "container")]
    pub containers: Vec<ContainerConfig>,
    #[serde(default, rename = "heartbeat")]
    pub heartbeats: Vec<HeartbeatConfig>,
    #[serde(default, rename = "disk")]
    pub disks: Vec<DiskConfig>,
    #[serde(default)]
    pub memory: Option<MemoryConfig>,
    #[serde(default)]
    pub pressure: Option<PressureConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    /// `[telemetry]`: present turns OTLP export on (unless `enabled = false`).
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    /// `[[alert]]`: the alert channels, any number of each type.
    #[serde(default, rename = "alert")]
    pub alerts: Vec<AlertConfig>,
    /// `[[check]]`: checks of the kinds that take a `type` (tcp, http,
    /// command), each read and validated by its kind.
    #[serde(default, rename = "check")]
    pub checks: Vec<CheckTable>,
}

/// `[http]`: what unitwatch-http serves on (the daemon ignores it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// One address or several; ignored when systemd passes sockets.
    #[serde(default = "default_listen", deserialize_with = "one_or_many")]
    pub listen: Vec<String>,
    /// A file holding a bearer token that every endpoint but `/health`
    /// then requires.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_runtime_dir")]
    pub runtime_dir: PathBuf,
    /// Where procfs is mounted; tests point it at a fixture.
    #[serde(default = "default_proc_dir")]
    pub proc_dir: PathBuf,
    /// Where sysfs is mounted (DMI, to tell an Azure VM); tests use fixtures.
    #[serde(default = "default_sys_dir")]
    pub sys_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    #[serde(default = "default_backoff_initial", deserialize_with = "duration")]
    pub initial: Duration,
    #[serde(default = "default_backoff_factor")]
    pub factor: f64,
    #[serde(default = "default_backoff_max", deserialize_with = "duration")]
    pub max: Duration,
    #[serde(default = "default_reset_after", deserialize_with = "duration")]
    pub reset_after: Duration,
    #[serde(default = "default_max_restarts_per_hour")]
    pub max_restarts_per_hour: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitConfig {
    pub name: UnitName,
    /// `restart` as written; see [`UnitConfig::restart`].
    #[serde(default, rename = "restart")]
    pub restart_set: Option<bool>,
    #[serde(default)]
    pub memory_warn: Option<ByteSize>,
    #[serde(default)]
    pub memory_crit: Option<ByteSize>,
    // The resource keys: checks::unit_resources documents, validates and
    // grades them.
    #[serde(default)]
    pub fds_warn_percent: Option<f64>,
    #[serde(default)]
    pub fds_crit_percent: Option<f64>,
    #[serde(default)]
    pub tasks_warn: Option<u64>,
    #[serde(default)]
    pub tasks_crit: Option<u64>,
    #[serde(default)]
    pub cpu_warn_percent: Option<f64>,
    #[serde(default)]
    pub cpu_crit_percent: Option<f64>,
    #[serde(default)]
    pub swap_warn: Option<ByteSize>,
    #[serde(default)]
    pub swap_crit: Option<ByteSize>,
    #[serde(default)]
    pub restarts_warn: Option<u32>,
    /// Timers: how late a trigger may be (checks::unit_timer).
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_late: Option<Duration>,
}

impl UnitConfig {
    /// Does unitwatch restart the unit when it fails? `restart` as
    /// written, by default yes, except for a timer, which is never
    /// restarted (it is watched for firing on time; `restart = true` on one
    /// is a config error).
    pub fn restart(&self) -> bool {
        self.restart_set.unwrap_or(!self.is_timer())
    }
    pub fn is_timer(&self) -> bool {
        self.name.is_timer()
    }
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:8080".into()]
}
fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/unitwatch")
}
fn default_runtime_dir() -> PathBuf {
    PathBuf::from("/run/unitwatch")
}
fn default_proc_dir() -> PathBuf {
    PathBuf::from("/proc")
}
fn default_sys_dir() -> PathBuf {
    PathBuf::from("/sys")
}
fn default_backoff_initial() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff_factor() -> f64 {
    2.0
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}
fn default_reset_after() -> Duration {
    Duration::from_secs(600)
}
fn default_max_restarts_per_hour() -> u32 {
    5
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            interval: default_interval(),
            state_dir: default_state_dir(),
            runtime_dir: default_runtime_dir(),
            proc_dir: default_proc_dir(),
            sys_dir: default_sys_dir(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            token_file: None,
        }
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: default_backoff_initial(),
            factor: default_backoff_factor(),
            max: default_backoff_max(),
            reset_after: default_reset_after(),
            max_restarts_per_hour: default_max_restarts_per_hour(),
        }
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(&read_text(path)?, path)
    }

    /// Parses and validates `text`; `path` is used only in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
            let (line, col) = line_col(text, span.map(|s| s.start).unwrap_or(0));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                col,
                key,
                message,
            }
        };
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| invalid(e.span(), "(syntax)".into(), e.message().trim().to_string()))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let key = if key == "." {
                "(top level)".into()
            } else {
                key
            };
            invalid(inner.span(), key, inner.message().trim().to_string())
        })?;
        if let Some(p) = config.problems().into_iter().next() {
            let span = span_of(text, &p.key);
            return Err(invalid(span, key_path_string(&p.key), p.message));
        }
        Ok(config)
    }

    /// The validation pass: everything serde's shape checks cannot see.
    fn problems(&self) -> Vec<Problem> {
        use KeySeg::{Index, Key};
        let mut out = Vec::new();
        let mut bad = |key: Vec<KeySeg>, message: String| out.push(Problem { key, message });

        if self.daemon.interval < Duration::from_millis(100) {
            bad(
                vec![Key("daemon"), Key("interval")],
                "must be at least 100ms".into(),
            );
        }
        if let Some(t) = &self.telemetry {
            t.problems(&mut bad);
        }
        let b = &self.backoff;
        if b.initial.is_zero() {
            bad(
                vec![Key("backoff"), Key("initial")],
                "must be greater than zero".into(),
            );
        }
        if !(b.factor.is_finite() && b.factor >= 1.0) {
            bad(
                vec![Key("backoff"), Key("factor")],
                format!("must be a number >= 1.0, got {}", b.factor),
            );
        }
        if b.max < b.initial {
            bad(
                vec![Key("backoff"), Key("max")],
                format!(
                    "must not be less than backoff.initial ({})",
                    humantime::format_duration(b.initial)
                ),
            );
        }
        if b.max_restarts_per_hour == 0 {
            bad(
                vec![Key("backoff"), Key("max_restarts_per_hour")],
                "must be at least 1 (set restart = false on a unit to watch it only)".into(),
            );
        }

        let mut seen = HashSet::new();
        for (i, u) in self.units.iter().enumerate() {
            if !seen.insert(&u.name) {
                bad(
                    vec![Key("unit"), Index(i), Key("name")],
                    format!("unit {} is listed twice", u.name),
                );
            }
        }
        crate::checks::section_problems(self, &mut bad);
        if self.http.listen.is_empty() {
            bad(
                vec![Key("http"), Key("listen")],
                "needs at least one address (e.g. \"127.0.0.1:8080\")".into(),
            );
        }
        for (i, a) in self.http.listen.iter().enumerate() {
            if a.parse::<std::net::SocketAddr>().is_err() {
                bad(
                    vec![Key("http"), Key("listen"), Index(i)],
                    format!("{a:?} is not an IP address and port (e.g. \"127.0.0.1:8080\" or \"[::]:8080\")"),
                );
            }
        }
        if let Some(t) = &self.http.token_file {
            if !t.is_absolute() {
                bad(
                    vec![Key("http"), Key("token_file")],
                    format!("{} is not an absolute path", t.display()),
                );
            }
        }
        alert::alert_problems(&self.alerts, &mut bad);
        out
    }

    /// Path of the alert de-duplication state, next to backoff.json.
    pub fn alerts_state_path(&self) -> PathBuf {
        self.daemon.state_dir.join("alerts.json")
    }

    pub fn unit(&self, name: &str) -> Option<&UnitConfig> {
        self.units.iter().find(|u| u.name.as_str() == name)
    }

    /// Path of the persistent backoff state.
    pub fn backoff_path(&self) -> PathBuf {
        self.daemon.state_dir.join("backoff.json")
    }

    /// Path of the status snapshot that `unitwatch-http` serves.
    pub fn status_path(&self) -> PathBuf {
        self.daemon.runtime_dir.join("status.json")
    }
}

/// The units that `text` names with `restart = true`, read from the
/// `[[unit]]` tables alone: the polkit rule asks this, and a mistake
/// elsewhere in the file (which the daemon, keeping its running config,
/// survives) must not take the right to restart them away. A file that is
/// not TOML at all names nothing.
///
/// polkitd runs this once per restart of a unit as shipped, inside the
/// restart's time: so the document is parsed into toml's borrowed tree
/// (`DeTable`, strings not copied) and only the `[[unit]]` tables are
/// looked at, not built into a `toml::Table` of owned values.
/// The configuration file's text, or why it cannot be read.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// [`restartable_units`] of the file at `path`.
pub fn restartable_units_in(path: &Path) -> Result<Vec<UnitName>, ConfigError> {
    restartable_units(&read_text(path)?, path)
}

pub fn restartable_units(text: &str, path: &Path) -> Result<Vec<UnitName>, ConfigError> {
    use toml::de::{DeTable, DeValue};
    fn get<'a, 'i>(t: &'a DeTable<'i>, key: &str) -> Option<&'a DeValue<'i>> {
        t.iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v.get_ref())
    }
    let doc = DeTable::parse(text).map_err(|e| {
        let (line, col) = line_col(text, e.span().map(|s| s.start).unwrap_or(0));
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            col,
            key: "(syntax)".into(),
            message: e.message().trim().to_string(),
        }
    })?;
    let units = get(doc.get_ref(), "unit").and_then(DeValue::as_array);
    Ok(units
        .into_iter()
        .flatten()
        .filter_map(|u| u.get_ref().as_table())
        .filter(|u| get(u, "restart").and_then(DeValue::as_bool) != Some(false))
        .filter_map(|u| UnitName::parse(get(u, "name")?.as_str()?).ok())
        // A timer is never restarted (restart = true on one is invalid).
        .filter(|n| !n.is_timer())
        .collect())
}

#[cfg(test)]
mod tests;

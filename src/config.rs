//! The configuration file: its schema, its defaults and its validation.
//!
//! Parsing and validation are two passes. serde (with `deny_unknown_fields`)
//! rejects unknown keys and values of the wrong shape; [`Config::validate`]
//! then checks what serde cannot (thresholds in order, unit names well formed,
//! references between sections). Both passes report `path:line:col: key:
//! message`, the validation pass by looking the key's span up in the parsed
//! document, so an operator is sent to the exact spot in the file.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::alerts::secret::Secret;

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
    #[serde(default, rename = "heartbeat")]
    pub heartbeats: Vec<HeartbeatConfig>,
    #[serde(default, rename = "disk")]
    pub disks: Vec<DiskConfig>,
    #[serde(default)]
    pub memory: Option<MemoryConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    /// `[telemetry]`: present turns OTLP export on (unless `enabled = false`).
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    /// `[[alert]]`: the alert channels, any number of each type.
    #[serde(default, rename = "alert")]
    pub alerts: Vec<AlertConfig>,
}

/// The kinds of alert channel (`type` of an `[[alert]]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertType {
    Discord,
    Slack,
    Webhook,
    Email,
}

impl AlertType {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::Discord => "discord",
            AlertType::Slack => "slack",
            AlertType::Webhook => "webhook",
            AlertType::Email => "email",
        }
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption: only to a relay on this machine (loopback).
    None,
}

/// `[[alert]]`: one alert channel. One flat table for every type, so that a
/// key that does not apply to the type is named by the validation pass
/// (with its line) instead of being lost in an enum's error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// Names the channel in logs, metrics and `alert test --channel`;
    /// defaults to the type, numbered when a type is used more than once.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_min_severity")]
    pub min_severity: crate::events::Severity,
    /// Glob patterns: events about a unit go out only if it matches one.
    #[serde(default)]
    pub units: Vec<String>,
    /// Glob patterns: events about a check go out only if it matches one.
    #[serde(default)]
    pub checks: Vec<String>,
    #[serde(default = "default_cooldown", deserialize_with = "duration")]
    pub cooldown: Duration,
    #[serde(default = "default_alert_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_alert_queue_size")]
    pub queue_size: usize,
    /// The webhook URL (discord, slack, webhook): a secret, so it can come
    /// from a file or a variable of the environment instead.
    #[serde(default)]
    pub url: Option<Secret>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub url_env: Option<String>,
    /// Discord `<@USER_ID>` or `<@&ROLE_ID>`, Slack `<@U…>`, `<!here>` or
    /// `<!channel>`: added to CRITICAL alerts.
    #[serde(default)]
    pub mention: Option<String>,
    /// The webhook's HMAC-SHA256 key.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// email: the SMTP server's host name.
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "default_smtp_tls")]
    pub tls: SmtpTls,
    /// An extra CA certificate (PEM) to trust, for a relay with a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
}

/// How the wire format of OTLP is chosen (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::Grpc => "grpc",
        }
    }
}

/// `[telemetry]`: OTLP export of the metrics and events. Keys left out fall
/// back to the standard `OTEL_EXPORTER_OTLP_*` variables, then to the
/// defaults (see crate::telemetry::Settings).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The collector's base URL; `/v1/metrics` and `/v1/logs` are added for
    /// http/protobuf.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub protocol: Option<OtlpProtocol>,
    /// How often metrics are exported (events go out within seconds).
    #[serde(default = "default_telemetry_interval", deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// `name=value` lines sent as headers (or gRPC metadata) with every
    /// export, e.g. an API key; never logged.
    #[serde(default)]
    pub headers_file: Option<PathBuf>,
    /// Events held while the collector is away; past it the oldest go.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Azure's instance metadata service, asked once at start when the
    /// machine's DMI says it is an Azure VM (tests point it elsewhere).
    #[serde(default = "default_imds_endpoint")]
    pub imds_endpoint: String,
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
    #[serde(default = "default_true")]
    pub restart: bool,
    #[serde(default)]
    pub memory_warn: Option<ByteSize>,
    #[serde(default)]
    pub memory_crit: Option<ByteSize>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    pub path: PathBuf,
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
    #[serde(default)]
    pub restart_unit: Option<UnitName>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    pub path: PathBuf,
    #[serde(default = "default_disk_warn")]
    pub warn_percent: f64,
    #[serde(default = "default_disk_crit")]
    pub crit_percent: f64,
    /// Inode thresholds default to the space thresholds.
    #[serde(default)]
    pub inode_warn_percent: Option<f64>,
    #[serde(default)]
    pub inode_crit_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    #[serde(default = "default_mem_warn")]
    pub warn_percent: f64,
    #[serde(default = "default_mem_crit")]
    pub crit_percent: f64,
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
fn default_telemetry_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_queue_size() -> usize {
    1024
}
fn default_imds_endpoint() -> String {
    "http://169.254.169.254".into()
}
fn default_min_severity() -> crate::events::Severity {
    crate::events::Severity::Info
}
fn default_cooldown() -> Duration {
    Duration::from_secs(300)
}
fn default_alert_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_alert_queue_size() -> usize {
    100
}
fn default_signature_header() -> String {
    "X-Unitwatch-Signature".into()
}
fn default_smtp_tls() -> SmtpTls {
    SmtpTls::Starttls
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
fn default_true() -> bool {
    true
}
fn default_disk_warn() -> f64 {
    80.0
}
fn default_disk_crit() -> f64 {
    90.0
}
fn default_mem_warn() -> f64 {
    90.0
}
fn default_mem_crit() -> f64 {
    95.0
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

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: default_true(),
            endpoint: None,
            protocol: None,
            interval: default_telemetry_interval(),
            timeout: None,
            headers_file: None,
            queue_size: default_queue_size(),
            imds_endpoint: default_imds_endpoint(),
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

/// Durations are written as "10s", "5m", "1h 30m" or "100ms".
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(s.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?}: {e} (write e.g. \"10s\", \"5m\", \"100ms\")"
        ))
    })
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// `"a"` or `["a", "b"]`.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(s) => vec![s],
        Raw::Many(v) => v,
    })
}

/// A systemd unit name, checked on parse the way systemd checks it
/// (`unit_name_is_valid`): a name, an optional `@instance`, a known type suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitName(String);

const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

impl UnitName {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("unit name is empty".into());
        }
        if s.len() > 255 {
            return Err(format!("unit name {s:?} is longer than 255 characters"));
        }
        let Some((stem, suffix)) = s.rsplit_once('.') else {
            return Err(format!(
                "unit name {s:?} has no type suffix (e.g. \"{s}.service\")"
            ));
        };
        if !UNIT_TYPES.contains(&suffix) {
            return Err(format!(
                "unit name {s:?} has unknown type \".{suffix}\" (expected one of: {})",
                UNIT_TYPES.join(", ")
            ));
        }
        let (prefix, instance) = match stem.split_once('@') {
            Some((p, i)) => (p, Some(i)),
            None => (stem, None),
        };
        let ok = |c: char| c.is_ascii_alphanumeric() || ":-_.\\".contains(c);
        if prefix.is_empty() || !prefix.chars().all(ok) {
            return Err(format!(
                "unit name {s:?} is not valid: only ASCII letters, digits and \":-_.\\\" may precede the suffix"
            ));
        }
        if let Some(i) = instance {
            if i.is_empty() {
                return Err(format!(
                    "unit name {s:?} is a template: name an instance (e.g. \"{prefix}@1.{suffix}\")"
                ));
            }
            if !i.chars().all(|c| ok(c) || c == '@') {
                return Err(format!("unit name {s:?} has an invalid instance"));
            }
        }
        Ok(UnitName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UnitName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UnitName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A size in bytes, written as "1536MiB", "2GB" or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => s
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| ByteSize(b.as_u64()))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "invalid size {s:?}: {e} (write e.g. \"1536MiB\" or \"2GB\")"
                    ))
                }),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

/// One problem found by the validation pass, located by its key path.
struct Problem {
    key: Vec<KeySeg>,
    message: String,
}

#[derive(Clone)]
enum KeySeg {
    Key(&'static str),
    Index(usize),
}

fn key_path_string(key: &[KeySeg]) -> String {
    let mut s = String::new();
    for seg in key {
        match seg {
            KeySeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            KeySeg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
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
            if t.interval < Duration::from_secs(1) {
                bad(
                    vec![Key("telemetry"), Key("interval")],
                    "must be at least 1s".into(),
                );
            }
            if t.queue_size == 0 {
                bad(
                    vec![Key("telemetry"), Key("queue_size")],
                    "must be at least 1".into(),
                );
            }
            if t.timeout.is_some_and(|d| d.is_zero()) {
                bad(
                    vec![Key("telemetry"), Key("timeout")],
                    "must be greater than zero".into(),
                );
            }
            for (key, url) in [
                ("endpoint", t.endpoint.as_deref()),
                ("imds_endpoint", Some(t.imds_endpoint.as_str())),
            ] {
                if let Some(url) = url {
                    if let Err(m) = check_http_url(url) {
                        bad(vec![Key("telemetry"), Key(key)], m);
                    }
                }
            }
            if let Some(p) = &t.headers_file {
                if !p.is_absolute() {
                    bad(
                        vec![Key("telemetry"), Key("headers_file")],
                        format!("{} is not an absolute path", p.display()),
                    );
                }
            }
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
            if let (Some(w), Some(c)) = (u.memory_warn, u.memory_crit) {
                if w > c {
                    bad(
                        vec![Key("unit"), Index(i), Key("memory_warn")],
                        format!("{w} is above memory_crit ({c})"),
                    );
                }
            }
        }
        for (i, h) in self.heartbeats.iter().enumerate() {
            if !h.path.is_absolute() {
                bad(
                    vec![Key("heartbeat"), Index(i), Key("path")],
                    format!("{} is not an absolute path", h.path.display()),
                );
            }
            if h.max_age.is_zero() {
                bad(
                    vec![Key("heartbeat"), Index(i), Key("max_age")],
                    "must be greater than zero".into(),
                );
            }
            if let Some(u) = &h.restart_unit {
                if !self.units.iter().any(|x| &x.name == u) {
                    bad(
                        vec![Key("heartbeat"), Index(i), Key("restart_unit")],
                        format!("{u} is not a watched unit: add a [[unit]] with name = \"{u}\""),
                    );
                } else if self.units.iter().any(|x| &x.name == u && !x.restart) {
                    bad(
                        vec![Key("heartbeat"), Index(i), Key("restart_unit")],
                        format!("{u} has restart = false"),
                    );
                }
            }
        }
        for (i, d) in self.disks.iter().enumerate() {
            if !d.path.is_absolute() {
                bad(
                    vec![Key("disk"), Index(i), Key("path")],
                    format!("{} is not an absolute path", d.path.display()),
                );
            }
            check_percent_pair(
                &mut bad,
                vec![Key("disk"), Index(i)],
                ("warn_percent", d.warn_percent),
                ("crit_percent", d.crit_percent),
            );
            check_percent_pair(
                &mut bad,
                vec![Key("disk"), Index(i)],
                ("inode_warn_percent", d.inode_warn()),
                ("inode_crit_percent", d.inode_crit()),
            );
        }
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
        alert_problems(&self.alerts, &mut bad);
        if let Some(m) = &self.memory {
            check_percent_pair(
                &mut bad,
                vec![Key("memory")],
                ("warn_percent", m.warn_percent),
                ("crit_percent", m.crit_percent),
            );
        }
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
pub fn restartable_units(text: &str, path: &Path) -> Result<Vec<UnitName>, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let (line, col) = line_col(text, e.span().map(|s| s.start).unwrap_or(0));
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            col,
            key: "(syntax)".into(),
            message: e.message().trim().to_string(),
        }
    })?;
    let units = table.get("unit").and_then(toml::Value::as_array);
    Ok(units
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_table)
        .filter(|u| u.get("restart").and_then(toml::Value::as_bool) != Some(false))
        .filter_map(|u| UnitName::parse(u.get("name")?.as_str()?).ok())
        .collect())
}

impl AlertConfig {
    /// The channel's name: `name`, else the type, numbered from the second
    /// channel of a type on (`slack`, `slack-2`).
    pub fn channel_name(all: &[AlertConfig], i: usize) -> String {
        let a = &all[i];
        if let Some(n) = &a.name {
            return n.clone();
        }
        let nth = all[..i]
            .iter()
            .filter(|b| b.kind == a.kind && b.name.is_none())
            .count();
        if nth == 0 {
            a.kind.as_str().to_string()
        } else {
            format!("{}-{}", a.kind.as_str(), nth + 1)
        }
    }

    /// The SMTP port: `port`, else the one the TLS mode implies.
    pub fn smtp_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Tls => 465,
            SmtpTls::Starttls => 587,
            SmtpTls::None => 25,
        })
    }
}

/// The validation of the `[[alert]]` tables: the keys each type needs and
/// the ones it does not take, secrets given exactly one way.
fn alert_problems(alerts: &[AlertConfig], bad: &mut impl FnMut(Vec<KeySeg>, String)) {
    use KeySeg::{Index, Key};
    let mut names = HashSet::new();
    for (i, a) in alerts.iter().enumerate() {
        let at = |k: &'static str| vec![Key("alert"), Index(i), Key(k)];
        let ty = a.kind.as_str();
        let name = AlertConfig::channel_name(alerts, i);
        if !names.insert(name.clone()) {
            bad(at("name"), format!("another [[alert]] is named {name:?}"));
        }
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bad(
                at("name"),
                format!("{name:?}: use letters, digits, '-' or '_'"),
            );
        }
        if a.timeout.is_zero() {
            bad(at("timeout"), "must be greater than zero".into());
        }
        if a.queue_size == 0 {
            bad(at("queue_size"), "must be at least 1".into());
        }
        for (key, pats) in [("units", &a.units), ("checks", &a.checks)] {
            for (j, p) in pats.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(p) {
                    bad(
                        vec![Key("alert"), Index(i), Key(key), Index(j)],
                        format!("{p:?} is not a valid pattern: {e}"),
                    );
                }
            }
        }
        let http = a.kind != AlertType::Email;
        let sources = |v: bool, f: bool, e: bool| [v, f, e].iter().filter(|x| **x).count();
        let secret_once = |bad: &mut dyn FnMut(Vec<KeySeg>, String),
                           key: &'static str,
                           given: usize,
                           needed: bool| {
            if given > 1 {
                bad(
                    at(key),
                    format!("give {key}, {key}_file or {key}_env, only one of them"),
                );
            } else if given == 0 && needed {
                bad(
                    at("type"),
                    format!("a {ty} channel needs {key} (or {key}_file, or {key}_env)"),
                );
            }
        };
        secret_once(
            bad,
            "url",
            sources(a.url.is_some(), a.url_file.is_some(), a.url_env.is_some()),
            http,
        );
        // The value is a secret: the message names the key, not the URL.
        if a.url
            .as_ref()
            .is_some_and(|u| check_http_url(u.expose()).is_err())
        {
            bad(
                at("url"),
                "is not an http:// or https:// URL with a host".into(),
            );
        }
        let secrets = sources(
            a.secret.is_some(),
            a.secret_file.is_some(),
            a.secret_env.is_some(),
        );
        secret_once(bad, "secret", secrets, false);
        let passwords = sources(
            a.password.is_some(),
            a.password_file.is_some(),
            a.password_env.is_some(),
        );
        secret_once(bad, "password", passwords, false);
        for (key, p) in [
            ("url_file", &a.url_file),
            ("secret_file", &a.secret_file),
            ("password_file", &a.password_file),
            ("ca_file", &a.ca_file),
        ] {
            if p.as_ref().is_some_and(|p| !p.is_absolute()) {
                bad(at(key), "is not an absolute path".into());
            }
        }
        if let Some(m) = &a.mention {
            if !mention_ok(a.kind, m) {
                bad(
                    at("mention"),
                    match a.kind {
                        AlertType::Discord => {
                            format!("{m:?}: use <@USER_ID>, <@&ROLE_ID>, @here or @everyone")
                        }
                        _ => format!("{m:?}: use <@USER_ID>, <!subteam^ID>, <!here> or <!channel>"),
                    },
                );
            }
        }
        if a.signature_header.is_empty()
            || axum::http::HeaderName::from_bytes(a.signature_header.as_bytes()).is_err()
        {
            bad(
                at("signature_header"),
                format!("{:?} is not a valid header name", a.signature_header),
            );
        }
        // Keys that belong to other types: named, so a typo'd type or a
        // key copied from another channel is not silently ignored.
        let not_here: &[(&'static str, bool)] = &[
            (
                "mention",
                a.mention.is_some() && !matches!(a.kind, AlertType::Discord | AlertType::Slack),
            ),
            ("secret", secrets > 0 && a.kind != AlertType::Webhook),
            (
                "signature_header",
                a.signature_header != default_signature_header() && a.kind != AlertType::Webhook,
            ),
            ("server", a.server.is_some() && http),
            ("port", a.port.is_some() && http),
            ("tls", a.tls != default_smtp_tls() && http),
            ("ca_file", a.ca_file.is_some() && http),
            ("username", a.username.is_some() && http),
            ("password", passwords > 0 && http),
            ("from", a.from.is_some() && http),
            ("to", !a.to.is_empty() && http),
            ("url", a.url.is_some() && !http),
        ];
        for (key, wrong) in not_here {
            if *wrong {
                bad(at(key), format!("does not apply to a {ty} channel"));
            }
        }
        if a.kind == AlertType::Email {
            match &a.server {
                None => bad(at("type"), "an email channel needs server".into()),
                Some(s) if s.is_empty() || s.contains(['/', ' ', ':']) => {
                    bad(at("server"), format!("{s:?} is not a host name"))
                }
                _ => {}
            }
            match &a.from {
                None => bad(at("type"), "an email channel needs from".into()),
                Some(f) => {
                    if f.parse::<lettre::message::Mailbox>().is_err() {
                        bad(at("from"), format!("{f:?} is not an email address"));
                    }
                }
            }
            if a.to.is_empty() {
                bad(
                    at("type"),
                    "an email channel needs to (one address or more)".into(),
                );
            }
            for (j, t) in a.to.iter().enumerate() {
                if t.parse::<lettre::message::Mailbox>().is_err() {
                    bad(
                        vec![Key("alert"), Index(i), Key("to"), Index(j)],
                        format!("{t:?} is not an email address"),
                    );
                }
            }
            if passwords > 0 && a.username.is_none() {
                bad(at("username"), "a password needs a username".into());
            }
            if a.tls == SmtpTls::None
                && passwords > 0
                && !a.server.as_deref().is_some_and(is_loopback_host)
            {
                bad(
                    at("tls"),
                    "\"none\" would send the password in clear over the network: use \"starttls\" or \"tls\" (\"none\" is for a relay on this machine)".into(),
                );
            }
        }
    }
}

/// Is a `mention` well formed for the channel type?
fn mention_ok(kind: AlertType, m: &str) -> bool {
    let id = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    let inner = |s: &str, pre: &str| {
        s.strip_prefix(pre)
            .and_then(|r| r.strip_suffix('>'))
            .is_some_and(id)
    };
    match kind {
        AlertType::Discord => m == "@here" || m == "@everyone" || inner(m, "<@&") || inner(m, "<@"),
        AlertType::Slack => {
            m == "<!here>" || m == "<!channel>" || inner(m, "<!subteam^") || inner(m, "<@")
        }
        _ => false,
    }
}

/// `localhost` or a loopback address.
pub fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An http:// or https:// URL with a host.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    url.parse::<axum::http::Uri>()
        .map(|_| ())
        .map_err(|e| format!("{url:?} is not a valid URL: {e}"))
}

impl DiskConfig {
    pub fn inode_warn(&self) -> f64 {
        self.inode_warn_percent.unwrap_or(self.warn_percent)
    }
    pub fn inode_crit(&self) -> f64 {
        self.inode_crit_percent.unwrap_or(self.crit_percent)
    }
}

fn check_percent_pair(
    bad: &mut impl FnMut(Vec<KeySeg>, String),
    base: Vec<KeySeg>,
    warn: (&'static str, f64),
    crit: (&'static str, f64),
) {
    for (name, v) in [warn, crit] {
        if !(0.0..=100.0).contains(&v) {
            let mut k = base.clone();
            k.push(KeySeg::Key(name));
            bad(k, format!("must be between 0 and 100, got {v}"));
        }
    }
    if warn.1 > crit.1 {
        let mut k = base;
        k.push(KeySeg::Key(warn.0));
        bad(k, format!("{} is above {} ({})", warn.1, crit.0, crit.1));
    }
}

/// 1-based line and column (in characters) of byte offset `pos`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, text[line_start..pos].chars().count() + 1)
}

/// The span of the value at `key` in the document, or of the nearest table
/// that exists when the key itself is absent (a default was used).
fn span_of(text: &str, key: &[KeySeg]) -> Option<std::ops::Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut span = None;
    let mut cur: &DeValue<'_> = &DeValue::Table(root.get_ref().clone());
    for seg in key {
        let next = match (seg, cur) {
            (KeySeg::Key(k), DeValue::Table(t)) => t
                .iter()
                .find(|(name, _)| name.get_ref().as_ref() == *k)
                .map(|(_, v)| v),
            (KeySeg::Index(i), DeValue::Array(a)) => a.get(*i),
            _ => None,
        };
        match next {
            Some(v) => {
                span = Some(v.span());
                cur = v.get_ref();
            }
            None => break,
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("/etc/unitwatch/unitwatch.toml"))
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn full_example_parses_with_values() {
        let c = parse(
            r#"
[daemon]
interval = "10s"
state_dir = "/var/lib/unitwatch"
runtime_dir = "/run/unitwatch"
[backoff]
initial = "10s"
factor = 2.0
max = "300s"
reset_after = "10m"
max_restarts_per_hour = 5
[[unit]]
name = "faucet_worker.service"
restart = true
memory_warn = "1536MiB"
memory_crit = "1740MiB"
[[heartbeat]]
path = "/var/lib/faucet/heartbeat.txt"
max_age = "5m"
restart_unit = "faucet_worker.service"
[[disk]]
path = "/"
warn_percent = 80
crit_percent = 90
[memory]
warn_percent = 90
crit_percent = 95
"#,
        )
        .unwrap();
        assert_eq!(c.backoff.reset_after, Duration::from_secs(600));
        assert_eq!(c.units[0].memory_warn, Some(ByteSize(1536 * 1024 * 1024)));
        assert_eq!(c.heartbeats[0].max_age, Duration::from_secs(300));
        assert_eq!(
            c.heartbeats[0].restart_unit.as_ref().unwrap().as_str(),
            "faucet_worker.service"
        );
        assert_eq!(c.disks[0].inode_crit(), 90.0);
        assert_eq!(c.memory.unwrap().crit_percent, 95.0);
    }

    #[test]
    fn empty_telemetry_table_is_the_default() {
        let c = parse("[telemetry]\n").unwrap();
        assert_eq!(c.telemetry, Some(TelemetryConfig::default()));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.daemon.interval, Duration::from_secs(10));
        assert_eq!(c.backoff.initial, Duration::from_secs(10));
        assert_eq!(c.backoff.max, Duration::from_secs(300));
        assert_eq!(c.backoff.max_restarts_per_hour, 5);
        assert!(c.units.is_empty() && c.memory.is_none());
    }

    #[test]
    fn shipped_config_is_valid_and_states_the_defaults() {
        let shipped = parse(include_str!("../packaging/unitwatch.toml")).unwrap();
        let defaults = parse("").unwrap();
        assert_eq!(shipped.daemon, defaults.daemon);
        assert_eq!(shipped.backoff, defaults.backoff);
        assert_eq!(shipped.disks.len(), 1);
        assert_eq!(
            (shipped.disks[0].warn_percent, shipped.disks[0].crit_percent),
            (default_disk_warn(), default_disk_crit())
        );
        let m = shipped.memory.unwrap();
        assert_eq!(
            (m.warn_percent, m.crit_percent),
            (default_mem_warn(), default_mem_crit())
        );
    }

    #[test]
    fn unknown_key_names_file_line_col_and_key() {
        let e = err("[daemon]\ninterval = \"1s\"\nintervall = \"2s\"\n");
        assert!(
            e.starts_with(
                "/etc/unitwatch/unitwatch.toml:3:1: daemon.intervall: unknown field `intervall`"
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_duration_points_at_value() {
        let e = err("[backoff]\ninitial = \"10 parsecs\"\n");
        assert!(
            e.starts_with("/etc/unitwatch/unitwatch.toml:2:11: backoff.initial: "),
            "{e}"
        );
        assert!(e.contains("unknown time unit"), "{e}");
    }

    #[test]
    fn bad_unit_name_is_refused() {
        let e = err("[[unit]]\nname = \"worker\"\n");
        assert!(
            e.starts_with("/etc/unitwatch/unitwatch.toml:2:8: unit[0].name: "),
            "{e}"
        );
        assert!(e.contains("no type suffix"), "{e}");
        assert!(err("[[unit]]\nname = \"a b.service\"\n").contains("not valid"));
        assert!(err("[[unit]]\nname = \"x.servic\"\n").contains("unknown type"));
        assert!(err("[[unit]]\nname = \"x@.service\"\n").contains("template"));
        assert!(parse("[[unit]]\nname = \"getty@tty1.service\"\n").is_ok());
    }

    #[test]
    fn bad_size_is_refused() {
        let e = err("[[unit]]\nname = \"a.service\"\nmemory_warn = \"lots\"\n");
        assert!(e.contains("unit[0].memory_warn"), "{e}");
        assert!(e.contains("invalid size"), "{e}");
    }

    #[test]
    fn validation_errors_are_located() {
        let e = err("[[disk]]\npath = \"/\"\nwarn_percent = 95\ncrit_percent = 90\n");
        assert_eq!(
            e,
            "/etc/unitwatch/unitwatch.toml:3:16: disk[0].warn_percent: 95 is above crit_percent (90)"
        );
        let e =
            err("[[heartbeat]]\npath = \"/x\"\nmax_age = \"1m\"\nrestart_unit = \"a.service\"\n");
        assert!(
            e.starts_with("/etc/unitwatch/unitwatch.toml:4:16: heartbeat[0].restart_unit: a.service is not a watched unit"),
            "{e}"
        );
        let e = err("[[unit]]\nname = \"a.service\"\n[[unit]]\nname = \"a.service\"\n");
        assert!(
            e.contains(":4:8: unit[1].name: unit a.service is listed twice"),
            "{e}"
        );
        let e = err("[backoff]\nfactor = 0.5\n");
        assert!(
            e.contains(":2:10: backoff.factor: must be a number >= 1.0"),
            "{e}"
        );
    }

    #[test]
    fn alert_tables_are_checked_per_type() {
        let ok = parse(
            "[[alert]]\ntype = \"discord\"\nurl_env = \"DISCORD_URL\"\nmention = \"<@&42>\"\n\
             [[alert]]\ntype = \"webhook\"\nurl = \"https://h.test/x\"\nsecret_file = \"/etc/unitwatch/hmac\"\n\
             [[alert]]\ntype = \"webhook\"\nurl = \"https://h.test/y\"\n\
             [[alert]]\ntype = \"email\"\nserver = \"smtp.test\"\nfrom = \"unitwatch <u@x.test>\"\nto = [\"ops@x.test\"]\n",
        )
        .unwrap();
        let names: Vec<String> = (0..4)
            .map(|i| AlertConfig::channel_name(&ok.alerts, i))
            .collect();
        assert_eq!(names, ["discord", "webhook", "webhook-2", "email"]);
        assert_eq!(ok.alerts[0].cooldown, Duration::from_secs(300));
        assert_eq!(ok.alerts[3].smtp_port(), 587);

        let e = err("[[alert]]\ntype = \"slack\"\n");
        assert!(
            e.ends_with(":2:8: alert[0].type: a slack channel needs url (or url_file, or url_env)"),
            "{e}"
        );
        let e =
            err("[[alert]]\ntype = \"slack\"\nurl = \"https://h.test/T/B/C\"\nurl_env = \"X\"\n");
        assert!(
            e.contains(":3:7: alert[0].url: give url, url_file or url_env, only one of them"),
            "{e}"
        );
        let e = err(
            "[[alert]]\ntype = \"discord\"\nurl = \"https://h.test/x\"\nserver = \"smtp.test\"\n",
        );
        assert!(
            e.contains(":4:10: alert[0].server: does not apply to a discord channel"),
            "{e}"
        );
        let e =
            err("[[alert]]\ntype = \"discord\"\nurl = \"https://h.test/x\"\nmention = \"@ops\"\n");
        assert!(
            e.contains("alert[0].mention: \"@ops\": use <@USER_ID>"),
            "{e}"
        );
        let e = err("[[alert]]\ntype = \"pager\"\n");
        assert!(e.contains("alert[0].type: unknown variant `pager`"), "{e}");
        let e = err("[[alert]]\ntype = \"webhook\"\nurl = \"ftp://tok3n@h.test/\"\n");
        assert!(e.contains("alert[0].url: is not an http"), "{e}");
        assert!(!e.contains("tok3n"), "the URL is a secret: {e}");
        let e = err("[[alert]]\ntype = \"webhook\"\nname = \"a\"\nurl = \"http://h.test/\"\n[[alert]]\ntype = \"slack\"\nname = \"a\"\nurl = \"http://h.test/\"\n");
        assert!(
            e.contains("alert[1].name: another [[alert]] is named \"a\""),
            "{e}"
        );
        let e = err("[[alert]]\ntype = \"email\"\nserver = \"smtp.test\"\nfrom = \"u@x.test\"\nto = [\"o@x.test\"]\ntls = \"none\"\nusername = \"u\"\npassword_env = \"P\"\n");
        assert!(
            e.contains("alert[0].tls: \"none\" would send the password in clear"),
            "{e}"
        );
        // To a relay on this machine it is allowed.
        parse("[[alert]]\ntype = \"email\"\nserver = \"127.0.0.1\"\nfrom = \"u@x.test\"\nto = [\"o@x.test\"]\ntls = \"none\"\nusername = \"u\"\npassword_env = \"P\"\n").unwrap();
        let e = err("[[alert]]\ntype = \"email\"\nserver = \"smtp.test\"\nfrom = \"u@x.test\"\nto = [\"not an address\"]\n");
        assert!(
            e.contains("alert[0].to[0]: \"not an address\" is not an email address"),
            "{e}"
        );
        let e =
            err("[[alert]]\ntype = \"webhook\"\nurl = \"http://h.test/\"\nunits = [\"[bad\"]\n");
        assert!(
            e.contains("alert[0].units[0]: \"[bad\" is not a valid pattern"),
            "{e}"
        );
    }

    #[test]
    fn http_listen_takes_one_or_many_and_checks_them() {
        assert_eq!(parse("").unwrap().http.listen, vec!["127.0.0.1:8080"]);
        let c = parse("[http]\nlisten = \"0.0.0.0:80\"\n").unwrap();
        assert_eq!(c.http.listen, vec!["0.0.0.0:80"]);
        let c = parse("[http]\nlisten = [\"127.0.0.1:1\", \"[::1]:2\"]\n").unwrap();
        assert_eq!(c.http.listen.len(), 2);
        let e = err("[http]\nlisten = [\"127.0.0.1:1\", \"localhost:80\"]\n");
        assert!(
            e.contains(":2:26: http.listen[1]: \"localhost:80\" is not an IP address and port"),
            "{e}"
        );
        assert!(err("[http]\nlisten = []\n").contains("http.listen: needs at least one address"));
    }

    #[test]
    fn restartable_units_survive_mistakes_elsewhere() {
        let p = Path::new("u.toml");
        let names = |t: &str| {
            restartable_units(t, p).map(|v| v.iter().map(|u| u.to_string()).collect::<Vec<_>>())
        };
        let text = "[daemon]\nintervall = 3\n[[unit]]\nname = \"a.service\"\n[[unit]]\nname = \"b.service\"\nrestart = false\n[[unit]]\nname = \"worker\"\n";
        assert!(parse(text).is_err());
        assert_eq!(names(text).unwrap(), vec!["a.service"]);
        assert!(names("[[unit]\nname = ").is_err());
        assert_eq!(names("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn syntax_error_is_located() {
        let e = err("[daemon]\ninterval = \n");
        assert!(e.starts_with("/etc/unitwatch/unitwatch.toml:2:"), "{e}");
        assert!(e.contains("(syntax)"), "{e}");
    }

    #[test]
    fn wrong_type_is_refused() {
        let e = err("[[unit]]\nname = \"a.service\"\nrestart = \"yes\"\n");
        assert!(e.contains(":3:11: unit[0].restart: invalid type"), "{e}");
    }
}

//! Supervisor events, logged with structured fields.
//!
//! Under journald each event carries `UNITWATCH_EVENT`, `UNITWATCH_UNIT`,
//! `UNITWATCH_CHECK`, `UNITWATCH_SEVERITY`, `UNITWATCH_DELAY_MS` and
//! `UNITWATCH_DUE_USEC` (where they apply), so
//! `journalctl -u unitwatch UNITWATCH_UNIT=worker.service` tells one unit's
//! story. The fields are prefixed because systemd owns `UNIT=`.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use log::kv::{Key, Value};

/// Somewhere besides the journal that events go: the OTLP export and the
/// alert channels. A sink must not block: it queues and returns.
pub trait EventSink: Send + Sync {
    fn event(&self, event: &Event, at: SystemTime);
}

/// The places a sink can hold, so that each subsystem replaces its own
/// sink (on start, reload and stop) without touching the others'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Telemetry,
    Alerts,
}

static SINKS: RwLock<Vec<(Slot, Arc<dyn EventSink>)>> = RwLock::new(Vec::new());

/// Puts `sink` in `slot` (None empties it); every later [`Event::emit`]
/// feeds whatever the slots hold.
pub fn set_sink(slot: Slot, sink: Option<Arc<dyn EventSink>>) {
    let mut sinks = SINKS.write().unwrap_or_else(|e| e.into_inner());
    sinks.retain(|(s, _)| *s != slot);
    if let Some(sink) = sink {
        sinks.push((slot, sink));
    }
}

/// Severities, from least to most urgent; alert channels filter on them
/// (`min_severity`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[serde(alias = "INFO")]
    Info,
    #[serde(alias = "WARNING")]
    Warning,
    #[serde(alias = "ERROR")]
    Error,
    #[serde(alias = "CRITICAL")]
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
    /// As alerts show it: INFO, WARNING, ERROR, CRITICAL.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
        }
    }
    fn level(self) -> log::Level {
        match self {
            Severity::Info => log::Level::Info,
            Severity::Warning => log::Level::Warn,
            Severity::Error | Severity::Critical => log::Level::Error,
        }
    }
}

/// The kinds of event; their names are the `UNITWATCH_EVENT` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    DaemonStarted,
    UnitFailed,
    RestartScheduled,
    UnitRestarted,
    RestartFailed,
    UnitRecovered,
    RecoveryFailed,
    RestartLimit,
    BackoffReset,
    HeartbeatStale,
    CheckChanged,
    ConfigReloaded,
    ConfigRejected,
    StateCorrupt,
    SystemdUnreachable,
    SystemdReconnected,
}

impl Kind {
    /// Every kind, in the order the manual lists them.
    pub const ALL: [Kind; 16] = [
        Kind::DaemonStarted,
        Kind::UnitFailed,
        Kind::RestartScheduled,
        Kind::UnitRestarted,
        Kind::RestartFailed,
        Kind::UnitRecovered,
        Kind::RecoveryFailed,
        Kind::RestartLimit,
        Kind::BackoffReset,
        Kind::HeartbeatStale,
        Kind::CheckChanged,
        Kind::ConfigReloaded,
        Kind::ConfigRejected,
        Kind::StateCorrupt,
        Kind::SystemdUnreachable,
        Kind::SystemdReconnected,
    ];

    /// What the event means, for unitwatchd(8).
    pub fn describe(self) -> &'static str {
        match self {
            Kind::DaemonStarted => "the daemon started, with the number of units it watches",
            Kind::UnitFailed => "a watched unit entered the failed state (or stopped on its own)",
            Kind::RestartScheduled => "a restart is planned after the current backoff delay",
            Kind::UnitRestarted => "unitwatchd asked systemd to restart the unit",
            Kind::RestartFailed => "systemd refused or failed the restart request",
            Kind::UnitRecovered => "the unit is active again (a container with ready checks: they pass after its restart)",
            Kind::RecoveryFailed => {
                "a restarted container's ready checks did not pass within its ready_timeout (critical)"
            }
            Kind::RestartLimit => {
                "max_restarts_per_hour reached: no more restarts until recovery or a backoff reset (critical)"
            }
            Kind::BackoffReset => "the backoff of a unit started over (healthy for reset_after, or a reset)",
            Kind::HeartbeatStale => "a heartbeat file is missing or older than its max_age",
            Kind::CheckChanged => "a check changed its status (pass, warn, fail)",
            Kind::ConfigReloaded => "SIGHUP: the new configuration is in force",
            Kind::ConfigRejected => "SIGHUP: the new configuration is invalid; the running one is kept",
            Kind::StateCorrupt => "backoff.json could not be read; it was moved aside and replaced",
            Kind::SystemdUnreachable => "the system bus or systemd cannot be reached",
            Kind::SystemdReconnected => "the bus is back; everything was re-read",
        }
    }

    /// A short title, for alert messages.
    pub fn title(self) -> &'static str {
        match self {
            Kind::DaemonStarted => "unitwatchd started",
            Kind::UnitFailed => "Unit failed",
            Kind::RestartScheduled => "Restart scheduled",
            Kind::UnitRestarted => "Unit restarted",
            Kind::RestartFailed => "Restart failed",
            Kind::UnitRecovered => "Unit recovered",
            Kind::RecoveryFailed => "Recovery failed",
            Kind::RestartLimit => "Restart limit reached",
            Kind::BackoffReset => "Backoff reset",
            Kind::HeartbeatStale => "Heartbeat stale",
            Kind::CheckChanged => "Check changed",
            Kind::ConfigReloaded => "Configuration reloaded",
            Kind::ConfigRejected => "Configuration rejected",
            Kind::StateCorrupt => "State file corrupt",
            Kind::SystemdUnreachable => "systemd unreachable",
            Kind::SystemdReconnected => "systemd reachable again",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DaemonStarted => "daemon-started",
            Kind::UnitFailed => "unit-failed",
            Kind::RestartScheduled => "restart-scheduled",
            Kind::UnitRestarted => "unit-restarted",
            Kind::RestartFailed => "restart-failed",
            Kind::UnitRecovered => "unit-recovered",
            Kind::RecoveryFailed => "recovery-failed",
            Kind::RestartLimit => "restart-limit",
            Kind::BackoffReset => "backoff-reset",
            Kind::HeartbeatStale => "heartbeat-stale",
            Kind::CheckChanged => "check-changed",
            Kind::ConfigReloaded => "config-reloaded",
            Kind::ConfigRejected => "config-rejected",
            Kind::StateCorrupt => "state-corrupt",
            Kind::SystemdUnreachable => "systemd-unreachable",
            Kind::SystemdReconnected => "systemd-reconnected",
        }
    }
}

/// One event; build it with the helpers, then [`Event::emit`].
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    pub severity: Severity,
    pub unit: Option<String>,
    pub check: Option<String>,
    pub delay_ms: Option<u64>,
    /// When a planned restart is due, in µs since the epoch: the delay
    /// counts from systemd's own timestamp of the failure where a signal
    /// carried it, so this is that timestamp plus the delay.
    pub due_usec: Option<u64>,
    pub message: String,
    /// For the journal and the OTLP export only, not for alert channels:
    /// steps another event already tells a person about.
    pub quiet: bool,
}

impl Event {
    pub fn new(kind: Kind, severity: Severity, message: impl Into<String>) -> Self {
        Event {
            kind,
            severity,
            unit: None,
            check: None,
            delay_ms: None,
            due_usec: None,
            message: message.into(),
            quiet: false,
        }
    }
    /// Keeps the event out of alert channels (see [`Event::quiet`]).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }
    /// Does the event end a problem (a unit back, a check passing again)?
    pub fn is_resolution(&self) -> bool {
        match self.kind {
            Kind::UnitRecovered | Kind::SystemdReconnected => true,
            Kind::CheckChanged => self.severity == Severity::Info,
            _ => false,
        }
    }
    pub fn unit(mut self, unit: &str) -> Self {
        self.unit = Some(unit.to_string());
        self
    }
    pub fn check(mut self, check: &str) -> Self {
        self.check = Some(check.to_string());
        self
    }
    pub fn delay(mut self, d: std::time::Duration) -> Self {
        self.delay_ms = Some(d.as_millis() as u64);
        self
    }

    pub fn due(mut self, at: SystemTime) -> Self {
        self.due_usec = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_micros() as u64);
        self
    }

    /// Logs the event through whichever logger is installed.
    pub fn emit(&self) {
        let mut fields: Vec<(&str, Field<'_>)> = vec![
            ("unitwatch_event", Field::Str(self.kind.as_str())),
            ("unitwatch_severity", Field::Str(self.severity.as_str())),
        ];
        if let Some(u) = &self.unit {
            fields.push(("unitwatch_unit", Field::Str(u)));
        }
        if let Some(c) = &self.check {
            fields.push(("unitwatch_check", Field::Str(c)));
        }
        if let Some(d) = self.delay_ms {
            fields.push(("unitwatch_delay_ms", Field::U64(d)));
        }
        if let Some(t) = self.due_usec {
            fields.push(("unitwatch_due_usec", Field::U64(t)));
        }
        let kvs = Fields(&fields);
        log::logger().log(
            &log::Record::builder()
                .level(self.severity.level())
                .target("unitwatch::event")
                .args(format_args!("{}", self.message))
                .key_values(&kvs)
                .build(),
        );
        let now = SystemTime::now();
        for (_, sink) in SINKS.read().unwrap_or_else(|e| e.into_inner()).iter() {
            sink.event(self, now);
        }
    }
}

enum Field<'a> {
    Str(&'a str),
    U64(u64),
}

struct Fields<'a>(&'a [(&'a str, Field<'a>)]);

impl log::kv::Source for Fields<'_> {
    fn visit<'kvs>(
        &'kvs self,
        visitor: &mut dyn log::kv::VisitSource<'kvs>,
    ) -> Result<(), log::kv::Error> {
        for (k, v) in self.0 {
            let v = match v {
                Field::Str(s) => Value::from(*s),
                Field::U64(n) => Value::from(*n),
            };
            visitor.visit_pair(Key::from_str(k), v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            struct V(String);
            impl<'k> log::kv::VisitSource<'k> for V {
                fn visit_pair(&mut self, k: Key<'k>, v: Value<'k>) -> Result<(), log::kv::Error> {
                    self.0.push_str(&format!(" {}={}", k, v));
                    Ok(())
                }
            }
            let mut v = V(format!("{} {}", r.level(), r.args()));
            r.key_values().visit(&mut v).unwrap();
            SEEN.lock().unwrap().push(v.0);
        }
        fn flush(&self) {}
    }

    #[test]
    fn fields_are_attached() {
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Trace);
        Event::new(Kind::RestartScheduled, Severity::Error, "restart in 10s")
            .unit("a.service")
            .delay(std::time::Duration::from_secs(10))
            .emit();
        let seen = SEEN.lock().unwrap();
        assert!(seen.contains(&"ERROR restart in 10s unitwatch_event=restart-scheduled unitwatch_severity=error unitwatch_unit=a.service unitwatch_delay_ms=10000".to_string()), "{seen:?}");
    }

    struct Count(std::sync::atomic::AtomicUsize);
    impl EventSink for Count {
        fn event(&self, e: &Event, _: SystemTime) {
            // Other tests emit events in parallel: count only these.
            if e.message.starts_with("slot test") {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn each_slot_holds_its_own_sink() {
        let otlp = Arc::new(Count(Default::default()));
        let alerts = Arc::new(Count(Default::default()));
        set_sink(Slot::Telemetry, Some(otlp.clone()));
        set_sink(Slot::Alerts, Some(alerts.clone()));
        Event::new(Kind::DaemonStarted, Severity::Info, "slot test 1").emit();
        // Stopping the alerts (a reload without [[alert]]) leaves the export.
        set_sink(Slot::Alerts, None);
        Event::new(Kind::DaemonStarted, Severity::Info, "slot test 2").emit();
        set_sink(Slot::Telemetry, None);
        let n = |c: &Count| c.0.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!((n(&otlp), n(&alerts)), (2, 1));
    }
}

//! Health checks. Each kind of check is one file here, holding its config
//! section, its validation, its manual entries, the figures it exports and
//! the measuring itself; [`kind::KINDS`] lists them, and nothing outside
//! this directory knows a kind's fields.
//!
//! A check is built into a [`CheckDef`]: what it is about (its key, unit
//! and restart policy) and how it measures. State checks read systemd's
//! view of the units, which the supervisor keeps, and run on its loop in
//! microseconds, at once on a D-Bus signal. Probes (files, filesystems,
//! sockets, HTTP, commands) run on tasks of their own ([`runner`]), each on
//! its own interval and bounded by its own timeout, and report back as
//! messages, so none can hold the loop up.
//!
//! A check never returns an error: whatever goes wrong becomes a `fail`
//! with the reason in `output`, so one broken check cannot hide the others.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::Kind as EventKind;
use crate::units::UnitTable;

pub mod common;
pub mod flap;
pub mod kind;
pub mod runner;

// The kinds of check: a kind is a module, named once here.
kinds!(
    unit_state,
    unit_memory,
    unit_resources,
    unit_timer,
    heartbeat,
    disk,
    memory,
    pressure,
    tcp,
    http,
    command,
    freshness,
    journal
);

/// Declares each kind's module and lists the kinds: [`KINDS`] (what each
/// is: keys, figures, validation), [`BUILDS`] (how each builds its checks)
/// and [`METRICS`] (the figures alone, read out at compile time). Kept
/// apart so that unitwatch-http, which validates the configuration and
/// renders figures but builds no check, links none of the kinds'
/// measuring code (an HTTP client, X.509, a regex engine).
macro_rules! kinds {
    ($($kind:ident),* $(,)?) => {
        $(pub mod $kind;)*

        /// Every kind of check.
        pub const KINDS: &[&Kind] = &[$(&$kind::KIND),*];

        /// How each kind builds its checks, by name.
        pub const BUILDS: &[(&str, kind::Build)] = &[$(($kind::KIND.name, $kind::BUILD)),*];

        /// Every kind's exported figures, in the order of [`KINDS`].
        pub const METRICS: &[&[MetricDoc]] = &[$($kind::KIND.metrics),*];
    };
}
use kinds;

pub use common::CheckTable;
pub use kind::{build_all, metric_doc, section_problems, Kind, MetricDoc};

/// The three states of the health+json draft, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
    /// The CLI's exit code for this status.
    pub fn exit_code(self) -> i32 {
        self as i32
    }
}

/// What a check measures: `component:measurement` is its key everywhere
/// (status.json, /health, metrics, journal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckId {
    pub component: String,
    pub measurement: &'static str,
    /// health+json componentType: "component" for units, "system" for the host.
    pub component_type: &'static str,
}

impl CheckId {
    pub fn key(&self) -> String {
        format!("{}:{}", self.component, self.measurement)
    }
}

/// A figure a check measured, named for export. `/metrics` shows it as
/// `unitwatch_<name>{labels}` and the OTLP export under the name its kind's
/// [`MetricDoc`] gives; neither parses keys or knows the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The metric's name after `unitwatch_`, in base units
    /// (`probe_duration_seconds`, `disk_used_ratio`).
    pub name: String,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    pub value: f64,
}

impl Measurement {
    pub fn new(name: &str, value: f64) -> Self {
        Measurement {
            name: name.to_string(),
            labels: Labels::default(),
            value,
        }
    }
    pub fn label(mut self, k: &str, v: impl Into<String>) -> Self {
        self.labels.insert(k.to_string(), v.into());
        self
    }
}

/// A measurement's labels: a few pairs, kept sorted by name, serialized
/// as the map they are. A vector rather than a `BTreeMap`, whose first node
/// holds room for 11 pairs: at 2,000 units with every resource key on,
/// 12,000 one-label measurements kept about 550 bytes each in their maps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Sets `k` to `v`.
    pub fn insert(&mut self, k: String, v: String) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&k)) {
            Ok(i) => self.0[i].1 = v,
            Err(i) => self.0.insert(i, (k, v)),
        }
    }
    pub fn get(&self, k: &str) -> Option<&String> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(k))
            .ok()
            .map(|i| &self.0[i].1)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// By name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = String;
    fn index(&self, k: &str) -> &String {
        self.get(k).unwrap_or_else(|| panic!("no label {k:?}"))
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        Ok(Labels(m.into_iter().collect()))
    }
}

/// What one run of a check saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub observed_value: Value,
    pub observed_unit: Option<&'static str>,
    pub output: Option<String>,
    pub measurements: Vec<Measurement>,
}

impl Outcome {
    pub fn new(status: Status, value: impl Into<Value>, unit: Option<&'static str>) -> Self {
        Outcome {
            status,
            observed_value: value.into(),
            observed_unit: unit,
            output: None,
            measurements: Vec::new(),
        }
    }
    pub fn with_output(mut self, output: impl Into<String>) -> Self {
        self.output = Some(output.into());
        self
    }
    pub fn measure(mut self, m: Measurement) -> Self {
        self.measurements.push(m);
        self
    }
    /// A check that could not measure: fail, no value, the reason said.
    pub fn error(output: impl Into<String>) -> Self {
        Outcome::new(Status::Fail, Value::Null, None).with_output(output)
    }
}

/// Grades `value` against a warn and a crit threshold (inclusive).
pub fn grade(value: f64, warn: Option<f64>, crit: Option<f64>) -> Status {
    if crit.is_some_and(|c| value >= c) {
        Status::Fail
    } else if warn.is_some_and(|w| value >= w) {
        Status::Warn
    } else {
        Status::Pass
    }
}

/// Grades `value` against thresholds below which it is bad (inclusive).
pub fn grade_below(value: f64, warn: Option<f64>, crit: Option<f64>) -> Status {
    grade(-value, warn.map(|w| -w), crit.map(|c| -c))
}

/// The threshold a graded figure crossed: the critical one when it
/// failed, else the warning one (for saying which limit it was).
pub fn crossed<T>(status: Status, warn: Option<T>, crit: Option<T>) -> Option<T> {
    if status == Status::Fail {
        crit
    } else {
        warn
    }
}

/// Rounds a percentage for display and JSON.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Milliseconds of `d`, rounded to microseconds, for observed values.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// "250ms", "5s", "1m 30s".
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 || d >= Duration::from_secs(60) {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// What the state checks may look at.
pub struct CheckContext<'a> {
    pub now: SystemTime,
    pub units: &'a UnitTable,
    /// Each unit's restart history (for `restarts_warn`).
    pub backoff: &'a BTreeMap<String, crate::backoff::UnitBackoff>,
    /// Set when systemd cannot be reached: unit checks say so.
    pub systemd_error: Option<&'a str>,
}

impl CheckContext<'_> {
    /// systemd's view of `unit`, or the `fail` a unit check reports when it
    /// has none (systemd unreachable, or not asked yet).
    pub fn unit_status(&self, unit: &str) -> Result<&crate::units::UnitStatus, Outcome> {
        if let Some(e) = self.systemd_error {
            return Err(Outcome::error(format!("cannot reach systemd: {e}")));
        }
        self.units
            .get(unit)
            .ok_or_else(|| Outcome::error("systemd has not reported on this unit yet"))
    }
}

/// A check computed from systemd's view of the units: instant, no I/O.
pub trait StateCheck: Send + Sync {
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome;
    /// A check graded from what the journal follower counts: its part of
    /// the follower's work (the daemon starts one follower for them all).
    fn journal(&self) -> Option<Arc<journal::Watch>> {
        None
    }
}

/// What a probe gets for one run.
#[derive(Clone)]
pub struct ProbeCtx {
    /// The run must be over by then: a probe says what it was waiting
    /// for when the deadline passes ("no answer from ... within 5s").
    pub deadline: tokio::time::Instant,
    pub timeout: Duration,
    pub now: SystemTime,
}

/// A check that measures something outside the supervisor: it runs on a
/// task of its own and may take up to its timeout.
pub trait Probe: Send + Sync + 'static {
    fn run(self: Arc<Self>, ctx: ProbeCtx) -> BoxFuture<'static, Outcome>;
}

/// How a check measures.
#[derive(Clone)]
pub enum How {
    State(Arc<dyn StateCheck>),
    Probe(Arc<dyn Probe>),
}

/// One check, built from the configuration by its kind.
#[derive(Clone)]
pub struct CheckDef {
    pub id: CheckId,
    /// The unit the check is about: its result shows under
    /// `/health/service/{unit}`, and state checks re-run on its signals.
    pub unit: Option<String>,
    /// A failure restarts `unit` (on the backoff and the hourly cap).
    pub restart: bool,
    /// A failure restarts the unit only once it has been up this long, so
    /// a service just started has time to come up.
    pub grace: Duration,
    /// The reason such a restart gives (in its event and backoff.json).
    pub restart_reason: &'static str,
    /// Probes: how often and how long. State checks ignore both.
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive results before the shown status flips.
    pub fail_after: u32,
    pub pass_after: u32,
    /// A failure only warns.
    pub warn_only: bool,
    /// The event of a status change that is not a pass.
    pub event: EventKind,
    /// Status changes are told by other events (a unit's state check:
    /// unit-failed and unit-recovered).
    pub quiet: bool,
    pub how: How,
}

impl CheckDef {
    /// A check with the defaults every kind starts from.
    pub fn new(id: CheckId, how: How, interval: Duration) -> Self {
        CheckDef {
            id,
            unit: None,
            restart: false,
            grace: Duration::ZERO,
            restart_reason: "check-failed",
            interval,
            timeout: common::default_timeout(interval),
            fail_after: 1,
            pass_after: 1,
            warn_only: false,
            event: EventKind::CheckChanged,
            quiet: false,
            how,
        }
    }

    /// A check about a watched unit: its key `UNIT:MEASUREMENT`, shown
    /// under the unit, re-run on its signals (the unit kinds' checks).
    pub fn for_unit(unit: &str, measurement: &'static str, how: How, interval: Duration) -> Self {
        let mut def = CheckDef::new(
            CheckId {
                component: unit.to_string(),
                measurement,
                component_type: "component",
            },
            how,
            interval,
        );
        def.unit = Some(unit.to_string());
        def
    }

    pub fn is_probe(&self) -> bool {
        matches!(self.how, How::Probe(_))
    }

    /// The result of one run, as it goes into status.json.
    pub fn result(&self, mut o: Outcome, time: SystemTime, took: Duration) -> CheckResult {
        if self.warn_only && o.status == Status::Fail {
            o.status = Status::Warn;
        }
        CheckResult {
            key: self.id.key(),
            component: self.id.component.clone(),
            measurement: self.id.measurement.to_string(),
            component_type: self.id.component_type.to_string(),
            unit: self.unit.clone(),
            status: o.status,
            observed_value: o.observed_value,
            observed_unit: o.observed_unit.map(str::to_string),
            output: o.output,
            time: humantime::format_rfc3339_millis(time).to_string(),
            duration_us: took.as_micros() as u64,
            measurements: o.measurements,
            pending: false,
        }
    }

    /// A probe that has not reported yet.
    pub fn pending(&self, since: SystemTime) -> CheckResult {
        let mut r = self.result(
            Outcome::new(Status::Warn, Value::Null, None).with_output(format!(
                "no result yet (runs every {}, first run since {})",
                fmt_duration(self.interval),
                humantime::format_rfc3339_seconds(since)
            )),
            since,
            Duration::ZERO,
        );
        r.pending = true;
        r
    }
}

/// One check's result, as it goes into status.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub key: String,
    pub component: String,
    pub measurement: String,
    pub component_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub status: Status,
    pub observed_value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// RFC 3339, when the check ran.
    pub time: String,
    pub duration_us: u64,
    /// The figures it measured, for /metrics and the OTLP export.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    /// A probe that has not reported since the daemon (re)started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

impl CheckResult {
    /// The observed value for a person: "81.25 percent", "active", "-".
    pub fn display_value(&self) -> String {
        match (&self.observed_value, &self.observed_unit) {
            (Value::Null, _) => "-".to_string(),
            (Value::String(s), _) => s.clone(),
            (v, Some(u)) => format!("{v} {u}"),
            (v, None) => v.to_string(),
        }
    }
}

/// Runs a state check, timing it; a panic inside it becomes a `fail`.
pub fn run_state(def: &CheckDef, check: &dyn StateCheck, ctx: &CheckContext<'_>) -> CheckResult {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| check.run(ctx)))
        .unwrap_or_else(|_| Outcome::error("the check panicked; this is a bug in unitwatch"));
    def.result(outcome, ctx.now, start.elapsed())
}

/// Runs blocking work (a stat, a statvfs, a read of /proc) on tokio's
/// blocking pool. A call stuck in the kernel (a hung NFS mount) cannot be
/// cancelled, so `busy` keeps a second one from piling up behind it: the
/// check fails, saying so, until the first returns.
pub fn blocking<F>(busy: &Arc<AtomicBool>, what: String, f: F) -> BoxFuture<'static, Outcome>
where
    F: FnOnce() -> Outcome + Send + 'static,
{
    let busy = busy.clone();
    Box::pin(async move {
        if busy.swap(true, Ordering::AcqRel) {
            return Outcome::error(format!("{what} from an earlier run has not returned yet"));
        }
        let guard = busy.clone();
        let r = tokio::task::spawn_blocking(move || {
            let o = f();
            guard.store(false, Ordering::Release);
            o
        })
        .await;
        r.unwrap_or_else(|_| Outcome::error("the check panicked; this is a bug in unitwatch"))
    })
}

/// The worst status among `results`; pass when there are none.
pub fn overall<'a>(results: impl IntoIterator<Item = &'a CheckResult>) -> Status {
    results
        .into_iter()
        .map(|r| r.status)
        .max()
        .unwrap_or(Status::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Panics;
    impl StateCheck for Panics {
        fn run(&self, _: &CheckContext<'_>) -> Outcome {
            panic!("boom")
        }
    }

    #[test]
    fn a_panicking_check_fails_alone() {
        let units = UnitTable::new();
        let ctx = CheckContext {
            now: SystemTime::now(),
            units: &units,
            backoff: &Default::default(),
            systemd_error: None,
        };
        let id = CheckId {
            component: "x".into(),
            measurement: "y",
            component_type: "system",
        };
        let check = Arc::new(Panics);
        let def = CheckDef::new(id, How::State(check.clone()), Duration::from_secs(10));
        let r = run_state(&def, check.as_ref(), &ctx);
        assert_eq!(r.status, Status::Fail);
        assert!(r.output.as_deref().unwrap().contains("panicked"));
        assert_eq!(r.key, "x:y");
    }

    #[test]
    fn labels_stay_sorted_and_serialize_as_a_map() {
        let m = Measurement::new("x", 1.0)
            .label("unit", "b.service")
            .label("check", "c")
            .label("unit", "a.service");
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(
            j,
            r#"{"name":"x","labels":{"check":"c","unit":"a.service"},"value":1.0}"#
        );
        let back: Measurement = serde_json::from_str(&j).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.labels["unit"], "a.service");
        assert_eq!(back.labels.get("nope"), None);
        let bare = serde_json::to_string(&Measurement::new("y", 2.0)).unwrap();
        assert_eq!(bare, r#"{"name":"y","value":2.0}"#);
    }

    #[test]
    fn grading_is_inclusive_and_ordered() {
        assert_eq!(grade(79.9, Some(80.0), Some(90.0)), Status::Pass);
        assert_eq!(grade(80.0, Some(80.0), Some(90.0)), Status::Warn);
        assert_eq!(grade(90.0, Some(80.0), Some(90.0)), Status::Fail);
        assert_eq!(grade(99.0, None, None), Status::Pass);
        assert_eq!(grade_below(5.0, Some(10.0), Some(3.0)), Status::Warn);
        assert_eq!(grade_below(3.0, Some(10.0), Some(3.0)), Status::Fail);
        assert_eq!(grade_below(11.0, Some(10.0), Some(3.0)), Status::Pass);
        assert_eq!(Status::Fail.exit_code(), 2);
        assert_eq!(Status::Warn.exit_code(), 1);
    }

    #[test]
    fn warn_only_turns_a_failure_into_a_warning() {
        let check = Arc::new(Panics);
        let mut def = CheckDef::new(
            CheckId {
                component: "c".into(),
                measurement: "m",
                component_type: "component",
            },
            How::State(check),
            Duration::from_secs(1),
        );
        def.warn_only = true;
        let r = def.result(Outcome::error("down"), SystemTime::now(), Duration::ZERO);
        assert_eq!(r.status, Status::Warn);
        assert_eq!(def.timeout, Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_stuck_blocking_call_is_not_stacked() {
        let busy = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let first = blocking(&busy, "statvfs /x".into(), move || {
            let _ = rx.recv();
            Outcome::new(Status::Pass, 1, None)
        });
        let first = tokio::spawn(first);
        while !busy.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        let second = blocking(&busy, "statvfs /x".into(), || {
            Outcome::new(Status::Pass, 2, None)
        })
        .await;
        assert_eq!(second.status, Status::Fail);
        assert_eq!(
            second.output.as_deref(),
            Some("statvfs /x from an earlier run has not returned yet")
        );
        tx.send(()).unwrap();
        assert_eq!(first.await.unwrap().status, Status::Pass);
        assert!(!busy.load(Ordering::Acquire));
    }
}

//! Health checks: one module per check behind the [`Check`] trait, every
//! family registered in [`FAMILIES`], and one runner that times each check.
//!
//! A check never returns an error: whatever goes wrong becomes a `fail` with
//! the reason in `output`, so one broken check cannot hide the others.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::units::UnitTable;

pub mod disk;
pub mod heartbeat;
pub mod memory;
pub mod unit_memory;
pub mod unit_state;

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

/// What one run of a check saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub observed_value: Value,
    pub observed_unit: Option<&'static str>,
    pub output: Option<String>,
}

impl Outcome {
    pub fn new(status: Status, value: impl Into<Value>, unit: Option<&'static str>) -> Self {
        Outcome {
            status,
            observed_value: value.into(),
            observed_unit: unit,
            output: None,
        }
    }
    pub fn with_output(mut self, output: impl Into<String>) -> Self {
        self.output = Some(output.into());
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

/// Rounds a percentage for display and JSON.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// What the checks may look at.
pub struct CheckContext<'a> {
    pub now: SystemTime,
    pub units: &'a UnitTable,
    /// Set when systemd cannot be reached: unit checks say so.
    pub systemd_error: Option<&'a str>,
    pub proc_dir: &'a Path,
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

pub trait Check: Send + Sync {
    fn id(&self) -> &CheckId;
    /// The systemd unit this check is about, if any: such checks are re-run
    /// at once when a signal for that unit arrives.
    fn unit(&self) -> Option<&str> {
        None
    }
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome;
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
}

/// A figure a check measured, named for export: /metrics and the OTLP
/// export both read the checks through this, so they cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure<'a> {
    /// Seconds since the heartbeat file was last modified.
    HeartbeatAge { path: &'a str, seconds: f64 },
    /// Percent of the filesystem's space in use.
    DiskUsed { path: &'a str, percent: f64 },
    /// Percent of the filesystem's inodes in use.
    DiskInodes { path: &'a str, percent: f64 },
    /// Percent of the system's memory not available.
    MemoryUsed { percent: f64 },
}

impl CheckResult {
    /// What this check measured, if it is one of the exported figures.
    pub fn measure(&self) -> Option<Measure<'_>> {
        let v = self.observed_value.as_f64()?;
        let comp = self.component.as_str();
        Some(match self.measurement.as_str() {
            "age" => Measure::HeartbeatAge {
                path: comp.strip_prefix("heartbeat:")?,
                seconds: v,
            },
            "utilization" if comp == "memory" => Measure::MemoryUsed { percent: v },
            "utilization" => Measure::DiskUsed {
                path: comp.strip_prefix("disk:")?,
                percent: v,
            },
            "inodes" => Measure::DiskInodes {
                path: comp.strip_prefix("disk:")?,
                percent: v,
            },
            _ => return None,
        })
    }

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

/// A family builds its checks from the configuration.
pub type Family = fn(&Config) -> Vec<Box<dyn Check>>;

/// Every check family. A new check is a module plus one line here.
pub const FAMILIES: &[Family] = &[
    unit_state::build,
    unit_memory::build,
    heartbeat::build,
    disk::build,
    memory::build,
];

pub fn build_all(config: &Config) -> Vec<Box<dyn Check>> {
    FAMILIES.iter().flat_map(|f| f(config)).collect()
}

/// Runs one check, timing it; a panic inside it becomes a `fail`.
pub fn run_one(check: &dyn Check, ctx: &CheckContext<'_>) -> CheckResult {
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| check.run(ctx)))
        .unwrap_or_else(|_| Outcome::error("the check panicked; this is a bug in unitwatch"));
    let id = check.id();
    CheckResult {
        key: id.key(),
        component: id.component.clone(),
        measurement: id.measurement.to_string(),
        component_type: id.component_type.to_string(),
        unit: check.unit().map(str::to_string),
        status: outcome.status,
        observed_value: outcome.observed_value,
        observed_unit: outcome.observed_unit.map(str::to_string),
        output: outcome.output,
        time: humantime::format_rfc3339_millis(ctx.now).to_string(),
        duration_us: start.elapsed().as_micros() as u64,
    }
}

pub fn run_all(checks: &[Box<dyn Check>], ctx: &CheckContext<'_>) -> Vec<CheckResult> {
    checks.iter().map(|c| run_one(c.as_ref(), ctx)).collect()
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

    struct Panics(CheckId);
    impl Check for Panics {
        fn id(&self) -> &CheckId {
            &self.0
        }
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
            systemd_error: None,
            proc_dir: Path::new("/nonexistent"),
        };
        let checks: Vec<Box<dyn Check>> = vec![
            Box::new(Panics(CheckId {
                component: "x".into(),
                measurement: "y",
                component_type: "system",
            })),
            Box::new(memory::MemoryCheck::new(90.0, 95.0)),
        ];
        let r = run_all(&checks, &ctx);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].status, Status::Fail);
        assert!(r[0].output.as_deref().unwrap().contains("panicked"));
        // The second check still ran (and failed on its own terms).
        assert_eq!(r[1].key, "memory:utilization");
        assert!(r[1]
            .output
            .as_deref()
            .unwrap()
            .contains("/nonexistent/meminfo"));
    }

    #[test]
    fn grading_is_inclusive_and_ordered() {
        assert_eq!(grade(79.9, Some(80.0), Some(90.0)), Status::Pass);
        assert_eq!(grade(80.0, Some(80.0), Some(90.0)), Status::Warn);
        assert_eq!(grade(90.0, Some(80.0), Some(90.0)), Status::Fail);
        assert_eq!(grade(99.0, None, None), Status::Pass);
        assert_eq!(Status::Fail.exit_code(), 2);
        assert_eq!(Status::Warn.exit_code(), 1);
    }
}

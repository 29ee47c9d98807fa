//! Per-unit resources, keys of `[[unit]]`: open file descriptors against
//! each process's `RLIMIT_NOFILE`, tasks (`TasksCurrent`), CPU (the delta
//! of `CPUUsageNSec` over the last interval), swap (`MemorySwapCurrent`)
//! and restarts in the last hour (systemd's and unitwatch's).
//!
//! systemd signals none of these, so they are read, for the units with
//! thresholds only, by the daemon's resource reader (daemon/resources.rs)
//! on a task of its own after each sweep: at 2,000 units the reads must not
//! hold up the loop that handles failures. This file holds what that task
//! reads ([`read_targets`]) and the checks that grade the figures, which run on
//! the loop from the unit table like the unit's state check.
//!
//! A figure that cannot be read is a `fail` with the reason ("permission
//! denied reading /proc/812/fd"), never a 0; one systemd does not keep
//! (accounting off, no swap accounting on this kernel) warns, saying so.

use std::sync::Arc;
use std::time::SystemTime;

use crate::backoff::UnitBackoff;
use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::{
    crossed, grade, round2, CheckContext, CheckDef, How, Measurement, Outcome,
    StateCheck, Status,
};
use crate::config::{Bad, ByteSize, Config, KeySeg, UnitConfig};
use crate::manual::KeyDoc;
use crate::units::{Reading, Resources};

const FDS_OPEN: MetricDoc = MetricDoc {
    name: "unit_fds_open",
    help: "Open file descriptors of the unit's process nearest its RLIMIT_NOFILE",
    otlp: "unitwatch.unit.fds.open",
    otlp_unit: "{fd}",
    otlp_scale: 1.0,
};
const FDS_LIMIT: MetricDoc = MetricDoc {
    name: "unit_fds_limit",
    help: "The soft RLIMIT_NOFILE of the unit's process nearest it",
    otlp: "unitwatch.unit.fds.limit",
    otlp_unit: "{fd}",
    otlp_scale: 1.0,
};
const TASKS: MetricDoc = MetricDoc {
    name: "unit_tasks",
    help: "The unit's threads and processes (systemd's TasksCurrent)",
    otlp: "unitwatch.unit.tasks",
    otlp_unit: "{task}",
    otlp_scale: 1.0,
};
const CPU: MetricDoc = MetricDoc {
    name: "unit_cpu_usage_ratio",
    help: "CPU the unit used over the last interval, in cores (1 is one core busy), from CPUUsageNSec",
    otlp: "unitwatch.unit.cpu.usage",
    otlp_unit: "%",
    otlp_scale: 100.0,
};
const SWAP: MetricDoc = MetricDoc {
    name: "unit_swap_bytes",
    help: "The unit's MemorySwapCurrent (its cgroup's swap use)",
    otlp: "unitwatch.unit.swap",
    otlp_unit: "By",
    otlp_scale: 1.0,
};
const RESTARTS: MetricDoc = MetricDoc {
    name: "unit_all_restarts_last_hour",
    help: "Restarts of the unit within the last hour, by systemd's Restart= and by unitwatch together",
    otlp: "unitwatch.unit.restarts.last_hour",
    otlp_unit: "{restart}",
    otlp_scale: 1.0,
};

pub const KIND: Kind = Kind {
    name: "unit_resources",
    keys: &[
        KeyDoc::section("[unit]", "fds_warn_percent", "none", "70",
            "Warn when one of the unit's processes has this share of its RLIMIT_NOFILE open (every process in the unit's cgroup is counted; the worst is reported with its PID, count and limit). Counting another user's descriptors needs CAP_DAC_READ_SEARCH, which the package grants only while a fds_ key is configured (see the README)."),
        KeyDoc::section("[unit]", "fds_crit_percent", "none", "90",
            "Fail at this share of RLIMIT_NOFILE open in one of the unit's processes."),
        KeyDoc::section("[unit]", "tasks_warn", "none", "500",
            "Warn when the unit has this many threads and processes (systemd's TasksCurrent)."),
        KeyDoc::section("[unit]", "tasks_crit", "none", "1000",
            "Fail at this many threads and processes."),
        KeyDoc::section("[unit]", "cpu_warn_percent", "none", "80",
            "Warn when the unit used this much CPU over the last interval, 100 being one core busy (from the delta of CPUUsageNSec; needs CPUAccounting=yes on a cgroup v1 or hybrid host)."),
        KeyDoc::section("[unit]", "cpu_crit_percent", "none", "180",
            "Fail at this much CPU over the last interval (200 is two cores)."),
        KeyDoc::section("[unit]", "swap_warn", "none", "\"256MiB\"",
            "Warn when the unit's MemorySwapCurrent exceeds this size (systemd has the figure on the unified cgroup hierarchy with swap accounting; elsewhere the check warns that it has none)."),
        KeyDoc::section("[unit]", "swap_crit", "none", "\"1GiB\"",
            "Fail when the unit's MemorySwapCurrent exceeds this size."),
        KeyDoc::section("[unit]", "restarts_warn", "none", "5",
            "Warn when the unit was restarted more than this many times in the last hour, by systemd's Restart= and by unitwatch together: a crash loop."),
    ],
    metrics: &[FDS_OPEN, FDS_LIMIT, TASKS, CPU, SWAP, RESTARTS],
    make: Make::Section { problems },
};

pub const BUILD: Build = Build::Section(build);

/// Which figures a unit's config asks the reader for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    pub memory: bool,
    pub fds: bool,
    pub tasks: bool,
    pub cpu: bool,
    pub swap: bool,
    /// A timer: its schedule and its service's last result.
    pub timer: bool,
}

impl Wants {
    pub fn of(u: &UnitConfig) -> Wants {
        let set = |what: What| {
            thresholds(u)
                .iter()
                .any(|(w, warn, crit)| *w == what && (warn.is_some() || crit.is_some()))
        };
        Wants {
            timer: u.is_timer(),
            memory: u.memory_warn.is_some() || u.memory_crit.is_some(),
            fds: set(What::Fds),
            tasks: set(What::Tasks),
            cpu: set(What::Cpu),
            swap: set(What::Swap),
        }
    }
    /// Anything besides memory, which has a field of its own.
    pub fn resources(&self) -> bool {
        self.fds || self.tasks || self.cpu || self.swap || self.timer
    }
    pub fn any(&self) -> bool {
        self.memory || self.resources()
    }
}

/// Does the configuration count file descriptors (and so need the
/// privilege to see other users' descriptors)?
pub fn counts_fds(config: &Config) -> bool {
    config.units.iter().any(|u| Wants::of(u).fds)
}

fn problems(config: &Config, bad: &mut Bad<'_>) {
    use KeySeg::{Index, Key};
    for (i, u) in config.units.iter().enumerate() {
        let at = |k: &'static str| vec![Key("unit"), Index(i), Key(k)];
        for (what, w, c) in thresholds(u) {
            if let (Some(w), Some(c), (wk, Some(ck))) = (w, c, what.keys()) {
                if w > c {
                    bad(at(wk), format!("{w} is above {ck} ({c})"));
                }
            }
        }
        for (k, v) in [
            ("fds_warn_percent", u.fds_warn_percent),
            ("fds_crit_percent", u.fds_crit_percent),
        ] {
            if v.is_some_and(|v| !(v > 0.0 && v <= 100.0)) {
                bad(at(k), format!("must be above 0 and at most 100, got {}", v.unwrap()));
            }
        }
        for (k, v) in [
            ("cpu_warn_percent", u.cpu_warn_percent),
            ("cpu_crit_percent", u.cpu_crit_percent),
        ] {
            if v.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
                bad(at(k), format!("must be above 0 (100 is one core), got {}", v.unwrap()));
            }
        }
        if u.restarts_warn == Some(0) {
            bad(at("restarts_warn"), "must be at least 1 (it warns above this many)".into());
        }
    }
}

/// What one of the checks grades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Fds,
    Tasks,
    Cpu,
    Swap,
    Restarts,
}

impl What {
    fn measurement(self) -> &'static str {
        match self {
            What::Fds => "fds",
            What::Tasks => "tasks",
            What::Cpu => "cpu",
            What::Swap => "swap",
            What::Restarts => "restarts",
        }
    }

    /// Its warn key and its crit key (restarts only warn).
    fn keys(self) -> (&'static str, Option<&'static str>) {
        match self {
            What::Fds => ("fds_warn_percent", Some("fds_crit_percent")),
            What::Tasks => ("tasks_warn", Some("tasks_crit")),
            What::Cpu => ("cpu_warn_percent", Some("cpu_crit_percent")),
            What::Swap => ("swap_warn", Some("swap_crit")),
            What::Restarts => ("restarts_warn", None),
        }
    }
}

/// Each graded figure with its thresholds from the unit's keys, as
/// numbers: the one list the wants, the validation and the checks read.
fn thresholds(u: &UnitConfig) -> [(What, Option<f64>, Option<f64>); 5] {
    let b = |n: ByteSize| n.0 as f64;
    let c = |n: u64| n as f64;
    [
        (What::Fds, u.fds_warn_percent, u.fds_crit_percent),
        (What::Tasks, u.tasks_warn.map(c), u.tasks_crit.map(c)),
        (What::Cpu, u.cpu_warn_percent, u.cpu_crit_percent),
        (What::Swap, u.swap_warn.map(b), u.swap_crit.map(b)),
        (What::Restarts, u.restarts_warn.map(f64::from), None),
    ]
}

pub struct ResourceCheck {
    unit: crate::checks::Shared,
    what: What,
    warn: Option<f64>,
    crit: Option<f64>,
}

fn build(config: &Config) -> Vec<CheckDef> {
    let mut out = Vec::new();
    for u in &config.units {
        for (what, warn, crit) in thresholds(u) {
            if warn.is_none() && crit.is_none() {
                continue;
            }
            let check = Arc::new(ResourceCheck {
                unit: u.name.shared(),
                what,
                warn,
                crit,
            });
            out.push(CheckDef::for_unit(
                u.name.shared(),
                what.measurement(),
                How::State(check),
                config.daemon.interval,
            ));
        }
    }
    out
}

impl StateCheck for ResourceCheck {
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome {
        if self.what == What::Restarts {
            return self.restarts(ctx.backoff.get(&*self.unit), ctx.now);
        }
        let s = match ctx.unit_status(&self.unit) {
            Ok(s) => s,
            Err(o) => return o,
        };
        if !s.is_active() {
            return Outcome::new(Status::Pass, serde_json::Value::Null, None)
                .with_output("not running");
        }
        let Some(r) = &s.resources else {
            return not_read_yet();
        };
        match self.what {
            What::Fds => self.fds(r),
            What::Tasks => self.figure(r.tasks.as_ref(), "tasks", TASKS.name, |n| {
                format!("{n} tasks")
            }),
            What::Cpu => self.cpu(r),
            What::Swap => self.figure(r.swap.as_ref(), "bytes", SWAP.name, |n| {
                format!("{} of swap", ByteSize(n))
            }),
            What::Restarts => unreachable!("handled above"),
        }
    }
}

impl ResourceCheck {
    fn measure(&self, name: &'static str, v: f64) -> Measurement {
        Measurement::new(name, v).label("unit", self.unit.clone())
    }

    /// A figure that was not read: why, as a warning (systemd keeps no
    /// such figure) or a failure (reading it failed).
    fn value<T>(r: Option<&Reading<T>>) -> Result<&T, Outcome> {
        match r {
            None => Err(not_read_yet()),
            Some(Reading::Unavailable(why)) => {
                Err(Outcome::new(Status::Warn, serde_json::Value::Null, None)
                    .with_output(why.clone()))
            }
            Some(Reading::Error(why)) => Err(Outcome::error(why.clone())),
            Some(Reading::Value(v)) => Ok(v),
        }
    }

    /// "1,2 tasks (warn at 500)".
    fn said(&self, status: Status, what: String, limit: impl Fn(f64) -> String) -> Option<String> {
        let t = crossed(status, self.warn, self.crit)?;
        let word = if status == Status::Fail { "critical" } else { "warn" };
        (status != Status::Pass).then(|| format!("{what} ({word} at {})", limit(t)))
    }

    fn figure(
        &self,
        r: Option<&Reading<u64>>,
        unit: &'static str,
        metric: &'static str,
        say: impl Fn(u64) -> String,
    ) -> Outcome {
        let n = match Self::value(r) {
            Ok(n) => *n,
            Err(o) => return o,
        };
        let status = grade(n as f64, self.warn, self.crit);
        let mut o = Outcome::new(status, n, Some(unit)).measure(self.measure(metric, n as f64));
        if let Some(s) = self.said(status, say(n), |t| say(t as u64)) {
            o = o.with_output(s);
        }
        o
    }

    fn fds(&self, r: &Resources) -> Outcome {
        let f = match Self::value(r.fds.as_ref()) {
            Ok(f) => *f,
            Err(o) => return o,
        };
        if f.processes == 0 {
            return Outcome::new(Status::Pass, serde_json::Value::Null, None)
                .with_output("no processes");
        }
        let pct = f.percent();
        let status = grade(pct, self.warn, self.crit);
        let mut o = Outcome::new(status, round2(pct), Some("percent"))
            .measure(self.measure(FDS_OPEN.name, f.open as f64))
            .measure(self.measure(FDS_LIMIT.name, f.limit as f64));
        let limit = if f.limit == u64::MAX {
            "unlimited".to_string()
        } else {
            f.limit.to_string()
        };
        let what = format!(
            "pid {} has {} of {limit} file descriptors open ({:.1}%; {} process{} counted)",
            f.pid,
            f.open,
            pct,
            f.processes,
            if f.processes == 1 { "" } else { "es" }
        );
        o = o.with_output(match self.said(status, what.clone(), |t| format!("{t}%")) {
            Some(s) => s,
            None => what,
        });
        o
    }

    fn cpu(&self, r: &Resources) -> Outcome {
        if let Err(o) = Self::value(r.cpu_usage_nsec.as_ref()) {
            return o;
        }
        let Some(ppm) = r.cpu_ppm else {
            return Outcome::new(Status::Pass, serde_json::Value::Null, Some("percent"))
                .with_output("one read so far: the CPU of an interval needs two");
        };
        let pct = ppm as f64 / 10_000.0;
        let status = grade(pct, self.warn, self.crit);
        let mut o = Outcome::new(status, round2(pct), Some("percent"))
            .measure(self.measure(CPU.name, ppm as f64 / 1e6));
        if let Some(s) = self.said(status, format!("{pct:.1}% of a core"), |t| format!("{t}%")) {
            o = o.with_output(s);
        }
        o
    }

    fn restarts(&self, b: Option<&UnitBackoff>, now: SystemTime) -> Outcome {
        let (ours, systemds) = b
            .map(|b| (b.restarts_last_hour(now), b.systemd_restarts_last_hour(now)))
            .unwrap_or((0, 0));
        let n = ours + systemds;
        // "more than N restarts": the warning is above the figure.
        let status = match self.warn {
            Some(w) if n as f64 > w => Status::Warn,
            _ => Status::Pass,
        };
        let mut o = Outcome::new(status, n, Some("restarts"))
            .measure(self.measure(RESTARTS.name, n as f64));
        let what = format!("{n} restarts in the last hour ({systemds} by systemd's Restart=, {ours} by unitwatch)");
        o = o.with_output(if status == Status::Warn {
            format!("crash loop: {what}, more than {}", self.warn.unwrap_or_default())
        } else {
            what
        });
        o
    }
}

/// A unit just started has no figures until the reader's next read (at
/// the end of the next sweep): that is no warning.
pub fn not_read_yet() -> Outcome {
    Outcome::new(Status::Pass, serde_json::Value::Null, None)
        .with_output("not read yet (the figures are read after each sweep)")
}

mod read;
pub use read::{count_fds, read_targets, Dirs, Target, READ_TIMEOUT};

#[cfg(test)]
mod tests;

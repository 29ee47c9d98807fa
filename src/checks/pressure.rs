//! Pressure stall information, `[pressure]`: the share of the last minute
//! in which some task waited for the CPU, memory or I/O (`some avg60` of
//! /proc/pressure/cpu, memory and io), against `*_warn` and `*_crit`.
//!
//! Saturation shows here before utilisation does: a host at 60 % CPU whose
//! work queues behind one hot core, or one reclaiming memory all the time,
//! stalls its services while every usage figure looks fine.
//!
//! A kernel without PSI (built without CONFIG_PSI, or booted with psi=0)
//! has no /proc/pressure: that is said once, as a warning in the log when
//! the check first runs, and the check passes with "not available"; it is
//! the host's nature, not a failure to page anyone about.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::{
    blocking, crossed, grade, round2, CheckDef, CheckId, How, Measurement, Outcome, Probe,
    ProbeCtx, Status,
};
use crate::config::{Bad, Config, KeySeg};
use crate::manual::KeyDoc;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PressureConfig {
    #[serde(default)]
    pub cpu_warn: Option<f64>,
    #[serde(default)]
    pub cpu_crit: Option<f64>,
    #[serde(default)]
    pub memory_warn: Option<f64>,
    #[serde(default)]
    pub memory_crit: Option<f64>,
    #[serde(default)]
    pub io_warn: Option<f64>,
    #[serde(default)]
    pub io_crit: Option<f64>,
}

impl PressureConfig {
    /// (resource, warn, crit) for each resource with a threshold.
    fn resources(&self) -> Vec<(&'static str, Option<f64>, Option<f64>)> {
        [
            ("cpu", self.cpu_warn, self.cpu_crit),
            ("memory", self.memory_warn, self.memory_crit),
            ("io", self.io_warn, self.io_crit),
        ]
        .into_iter()
        .filter(|(_, w, c)| w.is_some() || c.is_some())
        .collect()
    }
}

const SOME: MetricDoc = MetricDoc {
    name: "pressure_some_avg60_ratio",
    help: "Share of the last minute in which some task stalled on the resource (PSI some avg60, 0-1)",
    otlp: "unitwatch.pressure.some_avg60",
    otlp_unit: "%",
    otlp_scale: 100.0,
};

pub const KIND: Kind = Kind {
    name: "pressure",
    keys: &[
        KeyDoc::section("pressure", "cpu_warn", "none", "20",
            "Warn when some task waited for a CPU this share (percent) of the last minute (some avg60 of /proc/pressure/cpu). The [pressure] table turns the checks on, one per resource with a threshold."),
        KeyDoc::section("pressure", "cpu_crit", "none", "50",
            "Fail at this share of the last minute stalled on the CPU."),
        KeyDoc::section("pressure", "memory_warn", "none", "5",
            "Warn when some task waited for memory (reclaim, swap-in) this share of the last minute (/proc/pressure/memory)."),
        KeyDoc::section("pressure", "memory_crit", "none", "20",
            "Fail at this share of the last minute stalled on memory."),
        KeyDoc::section("pressure", "io_warn", "none", "20",
            "Warn when some task waited for I/O this share of the last minute (/proc/pressure/io)."),
        KeyDoc::section("pressure", "io_crit", "none", "50",
            "Fail at this share of the last minute stalled on I/O."),
    ],
    metrics: &[SOME],
    make: Make::Section { problems },
};

pub const BUILD: Build = Build::Section(build);

fn problems(config: &Config, bad: &mut Bad<'_>) {
    let Some(p) = &config.pressure else { return };
    let at = |k: &'static str| vec![KeySeg::Key("pressure"), KeySeg::Key(k)];
    let keys = [
        ("cpu_warn", p.cpu_warn, "cpu_crit", p.cpu_crit),
        ("memory_warn", p.memory_warn, "memory_crit", p.memory_crit),
        ("io_warn", p.io_warn, "io_crit", p.io_crit),
    ];
    for (wk, w, ck, c) in keys {
        for (k, v) in [(wk, w), (ck, c)] {
            if let Some(v) = v.filter(|v| !(*v > 0.0 && *v <= 100.0)) {
                bad(at(k), format!("must be above 0 and at most 100, got {v}"));
            }
        }
        if let (Some(w), Some(c)) = (w, c) {
            if w > c {
                bad(at(wk), format!("{w} is above {ck} ({c})"));
            }
        }
    }
    if p.resources().is_empty() {
        bad(
            vec![KeySeg::Key("pressure")],
            "set a threshold (cpu_warn, memory_warn, io_warn or their _crit): nothing to check"
                .into(),
        );
    }
}

fn build(config: &Config) -> Vec<CheckDef> {
    let Some(p) = &config.pressure else {
        return Vec::new();
    };
    p.resources()
        .into_iter()
        .map(|(resource, warn, crit)| {
            let probe = PressureProbe {
                path: config.daemon.proc_dir.join("pressure").join(resource),
                resource,
                warn,
                crit,
                busy: Arc::default(),
                said_missing: AtomicBool::new(false),
            };
            CheckDef::new(
                CheckId {
                    component: "pressure".into(),
                    measurement: resource,
                    component_type: "system",
                },
                How::Probe(Arc::new(probe)),
                config.daemon.interval,
            )
        })
        .collect()
}

pub struct PressureProbe {
    path: PathBuf,
    resource: &'static str,
    warn: Option<f64>,
    crit: Option<f64>,
    busy: Arc<AtomicBool>,
    /// The kernel's lack of PSI is logged once.
    said_missing: AtomicBool,
}

impl Probe for PressureProbe {
    fn run(self: Arc<Self>, _ctx: ProbeCtx) -> BoxFuture<'static, Outcome> {
        let what = format!("a read of {}", self.path.display());
        blocking(&self.busy.clone(), what, move || self.measure())
    }
}

/// `some avg60` of a /proc/pressure file, in percent.
pub fn some_avg60(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg60="))?
        .parse()
        .ok()
}

impl PressureProbe {
    fn measure(&self) -> Outcome {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let why = format!(
                    "not available: this kernel has no pressure stall information ({} is missing: built without CONFIG_PSI, or booted with psi=0)",
                    self.path.display()
                );
                if !self.said_missing.swap(true, Ordering::Relaxed) {
                    log::warn!("pressure:{}: {why}", self.resource);
                }
                return Outcome::new(Status::Pass, serde_json::Value::Null, None).with_output(why);
            }
            Err(e) => return Outcome::error(format!("cannot read {}: {e}", self.path.display())),
        };
        let Some(pct) = some_avg60(&text) else {
            return Outcome::error(format!("{}: no \"some avg60=\" figure", self.path.display()));
        };
        let status = grade(pct, self.warn, self.crit);
        let mut o = Outcome::new(status, round2(pct), Some("percent")).measure(
            Measurement::new(SOME.name, pct / 100.0).label("resource", self.resource),
        );
        if let Some(t) = crossed(status, self.warn, self.crit).filter(|_| status != Status::Pass) {
            o = o.with_output(format!(
                "some task stalled on {} {pct:.2}% of the last minute ({} at {t}%)",
                self.resource,
                if status == Status::Fail { "critical" } else { "warn" }
            ));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(proc_dir: &Path, table: &str) -> Config {
        Config::parse(
            &format!("[daemon]\nproc_dir = {:?}\n[pressure]\n{table}\n", proc_dir),
            Path::new("t.toml"),
        )
        .unwrap()
    }

    fn run(def: &CheckDef) -> Outcome {
        let How::Probe(p) = &def.how else { panic!() };
        // Through the trait, as the runner does, on a runtime of its own.
        let p = p.clone();
        tokio::runtime::Runtime::new().unwrap().block_on(p.run(ProbeCtx {
            deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(1),
            now: std::time::SystemTime::now(),
        }))
    }

    #[test]
    fn some_avg60_is_graded_per_resource() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("pressure")).unwrap();
        let write = |res: &str, avg60: &str| {
            std::fs::write(
                d.path().join("pressure").join(res),
                format!("some avg10=1.00 avg60={avg60} avg300=0.50 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
            )
            .unwrap()
        };
        let cfg = config(d.path(), "cpu_warn = 20\ncpu_crit = 50\nio_crit = 30");
        let defs = build(&cfg);
        let keys: Vec<String> = defs.iter().map(|d| d.id.key()).collect();
        assert_eq!(keys, ["pressure:cpu", "pressure:io"]);
        write("cpu", "12.50");
        write("io", "31.00");
        let o = run(&defs[0]);
        assert_eq!((o.status, o.observed_value.clone()), (Status::Pass, serde_json::json!(12.5)));
        assert_eq!(
            o.measurements,
            [Measurement::new("pressure_some_avg60_ratio", 0.125).label("resource", "cpu")]
        );
        write("cpu", "25.00");
        let o = run(&defs[0]);
        assert_eq!(o.status, Status::Warn);
        assert_eq!(
            o.output.as_deref(),
            Some("some task stalled on cpu 25.00% of the last minute (warn at 20%)")
        );
        assert_eq!(run(&defs[1]).status, Status::Fail);
        std::fs::write(d.path().join("pressure/io"), "garbage\n").unwrap();
        assert_eq!(run(&defs[1]).status, Status::Fail, "an unreadable figure fails");
    }

    #[test]
    fn a_kernel_without_psi_is_not_available_not_failing() {
        let d = tempfile::tempdir().unwrap();
        assert!(!d.path().join("pressure/cpu").exists());
        let defs = build(&config(d.path(), "memory_warn = 5"));
        let o = run(&defs[0]);
        assert_eq!(o.status, Status::Pass);
        assert!(o.output.unwrap().starts_with("not available: this kernel has no pressure stall information"));
        assert!(o.measurements.is_empty(), "no figure is made up");
    }

    #[test]
    fn bad_thresholds_are_located() {
        let bad = |t: &str| {
            Config::parse(&format!("[pressure]\n{t}\n"), Path::new("t.toml"))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(bad("cpu_warn = 60\ncpu_crit = 50"), "t.toml:2:12: pressure.cpu_warn: 60 is above cpu_crit (50)");
        assert!(bad("io_warn = 150").contains("pressure.io_warn: must be above 0 and at most 100, got 150"));
        assert!(bad("").contains("nothing to check"));
        assert!(some_avg60("full avg60=1.00\n").is_none());
    }
}

//! System memory, `[memory]`: share of RAM not available to new work, from
//! `MemAvailable` in /proc/meminfo (the kernel's own estimate, which counts
//! reclaimable cache as available, unlike MemFree).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::{
    blocking, grade, round2, CheckDef, CheckId, How, Measurement, Outcome, Probe, ProbeCtx, Status,
};
use crate::config::{check_percent_pair, Bad, Config, KeySeg};
use crate::manual::KeyDoc;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    #[serde(default = "default_mem_warn")]
    pub warn_percent: f64,
    #[serde(default = "default_mem_crit")]
    pub crit_percent: f64,
}

pub fn default_mem_warn() -> f64 {
    90.0
}
pub fn default_mem_crit() -> f64 {
    95.0
}

const USED: MetricDoc = MetricDoc {
    name: "memory_used_ratio",
    help: "Share of the system's memory not available (1 - MemAvailable/MemTotal)",
    otlp: "health.memory_usage",
    otlp_unit: "%",
    otlp_scale: 100.0,
};

pub const KIND: Kind = Kind {
    name: "memory",
    keys: &[
        KeyDoc::section("memory", "warn_percent", "90", "90",
            "Warn when this much of the system's memory is in use (from MemAvailable). The [memory] table turns the check on."),
        KeyDoc::section("memory", "crit_percent", "95", "95",
            "Fail when this much of the system's memory is in use."),
    ],
    metrics: &[USED],
    make: Make::Section { problems },
};

pub const BUILD: Build = Build::Section(build);

fn problems(config: &Config, bad: &mut Bad<'_>) {
    if let Some(m) = &config.memory {
        check_percent_pair(
            bad,
            vec![KeySeg::Key("memory")],
            ("warn_percent", m.warn_percent),
            ("crit_percent", m.crit_percent),
        );
    }
}

pub struct MemoryProbe {
    proc_dir: PathBuf,
    warn: f64,
    crit: f64,
    busy: Arc<AtomicBool>,
}

impl MemoryProbe {
    pub fn new(proc_dir: &Path, warn: f64, crit: f64) -> Self {
        MemoryProbe {
            proc_dir: proc_dir.to_path_buf(),
            warn,
            crit,
            busy: Arc::default(),
        }
    }
}

fn build(config: &Config) -> Vec<CheckDef> {
    config
        .memory
        .iter()
        .map(|m| {
            let probe = MemoryProbe::new(&config.daemon.proc_dir, m.warn_percent, m.crit_percent);
            CheckDef::new(
                CheckId {
                    component: "memory".into(),
                    measurement: "utilization",
                    component_type: "system",
                },
                How::Probe(Arc::new(probe)),
                config.daemon.interval,
            )
        })
        .collect()
}

/// (MemTotal, MemAvailable) in kB.
pub fn read_meminfo(proc_dir: &Path) -> Result<(u64, u64), String> {
    let path = proc_dir.join("meminfo");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("{}: no {name} line", path.display()))
    };
    Ok((field("MemTotal")?, field("MemAvailable")?))
}

impl Probe for MemoryProbe {
    fn run(self: Arc<Self>, _ctx: ProbeCtx) -> BoxFuture<'static, Outcome> {
        let what = format!("a read of {}/meminfo", self.proc_dir.display());
        blocking(&self.busy.clone(), what, move || self.measure())
    }
}

impl MemoryProbe {
    fn measure(&self) -> Outcome {
        let (total, avail) = match read_meminfo(&self.proc_dir) {
            Ok(v) => v,
            Err(e) => return Outcome::error(e),
        };
        if total == 0 {
            return Outcome::error("MemTotal is 0");
        }
        let pct = (total.saturating_sub(avail)) as f64 * 100.0 / total as f64;
        let status = grade(pct, Some(self.warn), Some(self.crit));
        let o = Outcome::new(status, round2(pct), Some("percent"))
            .measure(Measurement::new(USED.name, round2(pct) / 100.0));
        match status {
            Status::Pass => o,
            _ => o.with_output(format!(
                "{:.1}% of memory in use, {} MiB available (warn at {}%, critical at {}%)",
                pct,
                avail / 1024,
                self.warn,
                self.crit
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_on(meminfo: &str) -> Outcome {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("meminfo"), meminfo).unwrap();
        MemoryProbe::new(d.path(), 90.0, 95.0).measure()
    }

    #[test]
    fn from_fixture() {
        let o = run_on(
            "MemTotal:       1000000 kB\nMemFree:          10000 kB\nMemAvailable:     80000 kB\n",
        );
        assert_eq!(o.status, Status::Warn);
        assert_eq!(o.observed_value, serde_json::json!(92.0));
        assert_eq!(o.measurements[0].value, 0.92);
        let o = run_on("MemTotal: 1000000 kB\nMemAvailable: 40000 kB\n");
        assert_eq!(o.status, Status::Fail);
        let o = run_on("MemTotal: 1000000 kB\nMemAvailable: 900000 kB\n");
        assert_eq!(
            (o.status, o.observed_value),
            (Status::Pass, serde_json::json!(10.0))
        );
        let o = run_on("MemTotal: 1000000 kB\n");
        assert_eq!(o.status, Status::Fail);
        assert!(o.output.unwrap().ends_with("no MemAvailable line"));
        let o = MemoryProbe::new(Path::new("/nonexistent"), 90.0, 95.0).measure();
        assert!(o.output.unwrap().contains("/nonexistent/meminfo"));
    }
}

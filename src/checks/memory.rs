//! System memory: share of RAM not available to new work, from
//! `MemAvailable` in /proc/meminfo (the kernel's own estimate, which counts
//! reclaimable cache as available, unlike MemFree).

use std::path::Path;

use crate::checks::{grade, round2, Check, CheckContext, CheckId, Outcome, Status};
use crate::config::Config;

pub struct MemoryCheck {
    id: CheckId,
    warn: f64,
    crit: f64,
}

impl MemoryCheck {
    pub fn new(warn: f64, crit: f64) -> Self {
        MemoryCheck {
            id: CheckId {
                component: "memory".into(),
                measurement: "utilization",
                component_type: "system",
            },
            warn,
            crit,
        }
    }
}

pub fn build(config: &Config) -> Vec<Box<dyn Check>> {
    config
        .memory
        .iter()
        .map(|m| Box::new(MemoryCheck::new(m.warn_percent, m.crit_percent)) as Box<dyn Check>)
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

impl Check for MemoryCheck {
    fn id(&self) -> &CheckId {
        &self.id
    }
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome {
        let (total, avail) = match read_meminfo(ctx.proc_dir) {
            Ok(v) => v,
            Err(e) => return Outcome::error(e),
        };
        if total == 0 {
            return Outcome::error("MemTotal is 0");
        }
        let pct = (total.saturating_sub(avail)) as f64 * 100.0 / total as f64;
        let status = grade(pct, Some(self.warn), Some(self.crit));
        let o = Outcome::new(status, round2(pct), Some("percent"));
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
    use crate::units::UnitTable;

    fn run_on(meminfo: &str) -> Outcome {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("meminfo"), meminfo).unwrap();
        let units = UnitTable::new();
        MemoryCheck::new(90.0, 95.0).run(&CheckContext {
            now: std::time::SystemTime::now(),
            units: &units,
            systemd_error: None,
            proc_dir: d.path(),
        })
    }

    #[test]
    fn from_fixture() {
        let o = run_on(
            "MemTotal:       1000000 kB\nMemFree:          10000 kB\nMemAvailable:     80000 kB\n",
        );
        assert_eq!(o.status, Status::Warn);
        assert_eq!(o.observed_value, serde_json::json!(92.0));
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
    }
}

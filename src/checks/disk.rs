//! Disk: space and inode use of the filesystem holding a path (statvfs).
//!
//! Space is computed as df does: used / (used + available to unprivileged
//! users), so the root-reserved blocks count as full, which is when writes
//! from the services start to fail.

use std::path::PathBuf;

use nix::sys::statvfs::statvfs;

use crate::checks::{grade, round2, Check, CheckContext, CheckId, Outcome, Status};
use crate::config::Config;

#[derive(Clone, Copy)]
enum Measure {
    Space,
    Inodes,
}

pub struct DiskCheck {
    id: CheckId,
    path: PathBuf,
    measure: Measure,
    warn: f64,
    crit: f64,
}

pub fn build(config: &Config) -> Vec<Box<dyn Check>> {
    let mut out: Vec<Box<dyn Check>> = Vec::new();
    for d in &config.disks {
        let component = format!("disk:{}", d.path.display());
        for (measure, measurement, warn, crit) in [
            (
                Measure::Space,
                "utilization",
                d.warn_percent,
                d.crit_percent,
            ),
            (Measure::Inodes, "inodes", d.inode_warn(), d.inode_crit()),
        ] {
            out.push(Box::new(DiskCheck {
                id: CheckId {
                    component: component.clone(),
                    measurement,
                    component_type: "system",
                },
                path: d.path.clone(),
                measure,
                warn,
                crit,
            }));
        }
    }
    out
}

/// Percent used of (used, available) counts; `None` when the filesystem
/// reports no such resource (e.g. inodes on btrfs).
fn percent_used(used: u64, avail: u64) -> Option<f64> {
    let total = used + avail;
    (total > 0).then(|| used as f64 * 100.0 / total as f64)
}

impl Check for DiskCheck {
    fn id(&self) -> &CheckId {
        &self.id
    }
    fn run(&self, _ctx: &CheckContext<'_>) -> Outcome {
        let st = match statvfs(&self.path) {
            Ok(s) => s,
            Err(e) => return Outcome::error(format!("statvfs {}: {e}", self.path.display())),
        };
        let (used, avail, what) = match self.measure {
            Measure::Space => (
                st.blocks().saturating_sub(st.blocks_free()),
                st.blocks_available(),
                "space",
            ),
            Measure::Inodes => (
                st.files().saturating_sub(st.files_free()),
                st.files_available(),
                "inodes",
            ),
        };
        let Some(pct) = percent_used(used, avail) else {
            return Outcome::new(Status::Pass, serde_json::Value::Null, Some("percent"))
                .with_output(format!("the filesystem reports no {what} count"));
        };
        let status = grade(pct, Some(self.warn), Some(self.crit));
        let o = Outcome::new(status, round2(pct), Some("percent"));
        match status {
            Status::Pass => o,
            Status::Warn => {
                o.with_output(format!("{what} {:.1}% used (warn at {}%)", pct, self.warn))
            }
            Status::Fail => o.with_output(format!(
                "{what} {:.1}% used (critical at {}%)",
                pct, self.crit
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_as_df_computes_it() {
        assert_eq!(percent_used(50, 50), Some(50.0));
        assert_eq!(percent_used(0, 0), None);
    }

    #[test]
    fn real_filesystem_matches_statvfs() {
        let c = Config::parse(
            "[[disk]]\npath = \"/\"\nwarn_percent = 0\ncrit_percent = 100\n[[disk]]\npath = \"/does/not/exist\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let checks = build(&c);
        assert_eq!(checks.len(), 4);
        assert_eq!(checks[0].id().key(), "disk:/:utilization");
        assert_eq!(checks[1].id().key(), "disk:/:inodes");
        let units = Default::default();
        let ctx = CheckContext {
            now: std::time::SystemTime::now(),
            units: &units,
            systemd_error: None,
            proc_dir: std::path::Path::new("/proc"),
        };
        let o = checks[0].run(&ctx);
        let st = statvfs("/").unwrap();
        let used = (st.blocks() - st.blocks_free()) as f64;
        let expect = used * 100.0 / (used + st.blocks_available() as f64);
        let got = o.observed_value.as_f64().unwrap();
        assert!((got - expect).abs() < 0.5, "{got} vs {expect}");
        // warn_percent = 0: any use warns.
        assert_eq!(o.status, Status::Warn);
        let o = checks[2].run(&ctx);
        assert_eq!(o.status, Status::Fail);
        assert!(o
            .output
            .unwrap()
            .starts_with("statvfs /does/not/exist: ENOENT"));
    }
}

//! Disk, `[[disk]]`: space and inode use of the filesystem holding a path
//! (statvfs).
//!
//! Space is computed as df does: used / (used + available to unprivileged
//! users), so the root-reserved blocks count as full, which is when writes
//! from the services start to fail.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use nix::sys::statvfs::statvfs;
use serde::Deserialize;

use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::{
    blocking, grade, round2, CheckDef, CheckId, How, Measurement, Outcome, Probe, ProbeCtx, Status,
};
use crate::config::{check_percent_pair, Bad, Config, KeySeg};
use crate::manual::KeyDoc;

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

pub fn default_disk_warn() -> f64 {
    80.0
}
pub fn default_disk_crit() -> f64 {
    90.0
}

impl DiskConfig {
    pub fn inode_warn(&self) -> f64 {
        self.inode_warn_percent.unwrap_or(self.warn_percent)
    }
    pub fn inode_crit(&self) -> f64 {
        self.inode_crit_percent.unwrap_or(self.crit_percent)
    }
}

const USED: MetricDoc = MetricDoc {
    name: "disk_used_ratio",
    help: "Share of the filesystem's space in use, as df counts it (0-1)",
    otlp: "health.disk_usage",
    otlp_unit: "%",
    otlp_scale: 100.0,
};
const INODES: MetricDoc = MetricDoc {
    name: "disk_inodes_used_ratio",
    help: "Share of the filesystem's inodes in use (0-1)",
    otlp: "health.disk_inode_usage",
    otlp_unit: "%",
    otlp_scale: 100.0,
};

pub const KIND: Kind = Kind {
    name: "disk",
    keys: &[
        KeyDoc::section("[disk]", "path", "required", "\"/\"",
            "Any path on the filesystem to check."),
        KeyDoc::section("[disk]", "warn_percent", "80", "80",
            "Warn when this much of the space is used, as df counts it (reserved blocks count as full)."),
        KeyDoc::section("[disk]", "crit_percent", "90", "90",
            "Fail when this much of the space is used."),
        KeyDoc::section("[disk]", "inode_warn_percent", "warn_percent", "85",
            "Warn on inode use of the same filesystem."),
        KeyDoc::section("[disk]", "inode_crit_percent", "crit_percent", "95",
            "Fail on inode use of the same filesystem."),
    ],
    metrics: &[USED, INODES],
    make: Make::Section { problems },
};

pub const BUILD: Build = Build::Section(build);

fn problems(config: &Config, bad: &mut Bad<'_>) {
    use KeySeg::{Index, Key};
    for (i, d) in config.disks.iter().enumerate() {
        if !d.path.is_absolute() {
            bad(
                vec![Key("disk"), Index(i), Key("path")],
                format!("{} is not an absolute path", d.path.display()),
            );
        }
        check_percent_pair(
            bad,
            vec![Key("disk"), Index(i)],
            ("warn_percent", d.warn_percent),
            ("crit_percent", d.crit_percent),
        );
        check_percent_pair(
            bad,
            vec![Key("disk"), Index(i)],
            ("inode_warn_percent", d.inode_warn()),
            ("inode_crit_percent", d.inode_crit()),
        );
    }
}

#[derive(Clone, Copy)]
enum Measure {
    Space,
    Inodes,
}

pub struct DiskProbe {
    path: PathBuf,
    measure: Measure,
    warn: f64,
    crit: f64,
    busy: Arc<AtomicBool>,
}

fn build(config: &Config) -> Vec<CheckDef> {
    let mut out = Vec::new();
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
            let probe = Arc::new(DiskProbe {
                path: d.path.clone(),
                measure,
                warn,
                crit,
                busy: Arc::default(),
            });
            out.push(CheckDef::new(
                CheckId {
                    component: component.as_str().into(),
                    measurement,
                    component_type: "system",
                },
                How::Probe(probe),
                config.daemon.interval,
            ));
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

impl Probe for DiskProbe {
    fn run(self: Arc<Self>, _ctx: ProbeCtx) -> BoxFuture<'static, Outcome> {
        let what = format!("statvfs {}", self.path.display());
        blocking(&self.busy.clone(), what, move || self.measure())
    }
}

impl DiskProbe {
    fn measure(&self) -> Outcome {
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
        let metric = match self.measure {
            Measure::Space => USED.name,
            Measure::Inodes => INODES.name,
        };
        let o = Outcome::new(status, round2(pct), Some("percent")).measure(
            Measurement::new(metric, round2(pct) / 100.0)
                .label("path", self.path.display().to_string()),
        );
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

    #[tokio::test]
    async fn real_filesystem_matches_statvfs() {
        let c = Config::parse(
            "[[disk]]\npath = \"/\"\nwarn_percent = 0\ncrit_percent = 100\n[[disk]]\npath = \"/does/not/exist\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let checks = build(&c);
        assert_eq!(checks.len(), 4);
        assert_eq!(checks[0].id.key(), "disk:/:utilization");
        assert_eq!(checks[1].id.key(), "disk:/:inodes");
        let o = crate::checks::runner::run_once(&checks[0]).await;
        let st = statvfs("/").unwrap();
        let used = (st.blocks() - st.blocks_free()) as f64;
        let expect = used * 100.0 / (used + st.blocks_available() as f64);
        let got = o.observed_value.as_f64().unwrap();
        assert!((got - expect).abs() < 0.5, "{got} vs {expect}");
        assert_eq!(o.measurements[0].name, "disk_used_ratio");
        assert!((o.measurements[0].value - got / 100.0).abs() < 1e-9);
        // warn_percent = 0: any use warns.
        assert_eq!(o.status, Status::Warn);
        let o = crate::checks::runner::run_once(&checks[2]).await;
        assert_eq!(o.status, Status::Fail);
        assert!(o
            .output
            .unwrap()
            .starts_with("statvfs /does/not/exist: ENOENT"));
    }
}

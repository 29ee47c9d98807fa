//! `[[check]] type = "freshness"`: is a data flow still flowing? The newest
//! of `path` (a file, a directory's newest entry, or a glob's newest match)
//! against `max_age_warn` and `max_age_crit`, and a file that must keep
//! growing by `min_growth` over `window`.
//!
//! Only the mtime counts, never the ctime: a chmod, a chown or a backup's
//! touch of metadata moves the ctime of a file nobody wrote, and `touch -d`
//! (how operators and tests age a file) sets the mtime alone.
//!
//! Growth is the bytes added between runs: a file that shrank or has a new
//! inode was rotated, and its new content counts as written since, so a
//! rotation in the middle of the window is not a stall.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::checks::common::{from_table, Common};
use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::{
    blocking, crossed, fmt_duration, grade, How, Measurement, Outcome, Probe, ProbeCtx, Status,
};
use crate::config::{opt_duration, ByteSize, Config, KeySeg};
use crate::manual::KeyDoc;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessConfig {
    pub path: PathBuf,
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_age_warn: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_age_crit: Option<Duration>,
    #[serde(default)]
    pub min_growth: Option<ByteSize>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub window: Option<Duration>,
}

const AGE: MetricDoc = MetricDoc {
    name: "freshness_age_seconds",
    help: "Time since the newest file of the check's path was last modified (mtime)",
    otlp: "unitwatch.freshness.age",
    otlp_unit: "s",
    otlp_scale: 1.0,
};
const GROWTH: MetricDoc = MetricDoc {
    name: "freshness_growth_bytes",
    help: "Bytes the check's file grew by over its window (rotations counted as new content)",
    otlp: "unitwatch.freshness.growth",
    otlp_unit: "By",
    otlp_scale: 1.0,
};

pub const KIND: Kind = Kind {
    name: "freshness",
    keys: &[
        KeyDoc::check("freshness", "path", "required", "\"/var/lib/pipeline/out\"",
            "An absolute path: a file (its mtime), a directory (its newest entry's), or a glob such as /var/lib/pipeline/*.parquet (the newest match's). Only the mtime counts, never the ctime, so touch -d ages a file for a test."),
        KeyDoc::check("freshness", "max_age_warn", "none", "\"5m\"",
            "Warn when the newest file was last modified longer ago than this."),
        KeyDoc::check("freshness", "max_age_crit", "none", "\"10m\"",
            "Fail when the newest file was last modified longer ago than this (a missing file, an empty directory and a glob matching nothing fail too)."),
        KeyDoc::check("freshness", "min_growth", "none", "\"1KiB\"",
            "path is a file that must grow by at least this much over window: a log or a data file. A truncation or a new inode (a rotation) counts the new content as growth, not as a stall."),
        KeyDoc::check("freshness", "window", "\"5m\" with min_growth", "\"5m\"",
            "The span min_growth is measured over; the check passes until it has watched the file for that long (since the daemon started)."),
    ],
    metrics: &[AGE, GROWTH],
    make: Make::Check {
        check,
        about: "Whether data keeps coming: the newest file of a path, directory or glob graded by its age (mtime), and a file's growth over a window.",
    },
};

pub const BUILD: Build = Build::Check(build);

type Problems = Vec<(Vec<KeySeg>, String)>;

const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

fn read(t: &toml::Table) -> Result<FreshnessConfig, Problems> {
    let c: FreshnessConfig = from_table(t.clone())?;
    let at = |k: &'static str| vec![KeySeg::Key(k)];
    let mut bad = Vec::new();
    if !c.path.is_absolute() {
        bad.push((at("path"), format!("{} is not an absolute path", c.path.display())));
    }
    let is_glob = is_glob(&c.path);
    if is_glob {
        if let Err(e) = glob::Pattern::new(&c.path.to_string_lossy()) {
            bad.push((at("path"), format!("not a valid glob: {e}")));
        }
    }
    if c.max_age_warn.is_none() && c.max_age_crit.is_none() && c.min_growth.is_none() {
        bad.push((
            at("path"),
            "set max_age_warn, max_age_crit or min_growth: nothing to check".into(),
        ));
    }
    if let (Some(w), Some(cr)) = (c.max_age_warn, c.max_age_crit) {
        if w > cr {
            bad.push((
                at("max_age_warn"),
                format!("{} is above max_age_crit ({})", fmt_duration(w), fmt_duration(cr)),
            ));
        }
    }
    for (k, d) in [("max_age_warn", c.max_age_warn), ("max_age_crit", c.max_age_crit), ("window", c.window)] {
        if d.is_some_and(|d| d.is_zero()) {
            bad.push((at(k), "must be greater than zero".into()));
        }
    }
    if c.window.is_some() && c.min_growth.is_none() {
        bad.push((at("window"), "window is the span of min_growth, which is not set".into()));
    }
    if c.min_growth.is_some() && is_glob {
        bad.push((at("min_growth"), "needs path to be one file, not a glob".into()));
    }
    if bad.is_empty() {
        Ok(c)
    } else {
        Err(bad)
    }
}

fn is_glob(p: &Path) -> bool {
    p.to_string_lossy().contains(['*', '?', '['])
}

fn check(t: &toml::Table, _: &Common, _: &Config) -> Result<(), Problems> {
    read(t).map(|_| ())
}

fn build(t: &toml::Table, _: &Common, _: &Config) -> Result<How, Problems> {
    let c = read(t)?;
    Ok(How::Probe(Arc::new(FreshnessProbe {
        window: c.window.unwrap_or(DEFAULT_WINDOW),
        config: c,
        busy: Arc::default(),
        growth: Mutex::default(),
    })))
}

pub struct FreshnessProbe {
    config: FreshnessConfig,
    window: Duration,
    busy: Arc<AtomicBool>,
    growth: Mutex<Growth>,
}

impl Probe for FreshnessProbe {
    fn run(self: Arc<Self>, ctx: ProbeCtx) -> BoxFuture<'static, Outcome> {
        let what = format!("stat {}", self.config.path.display());
        blocking(&self.busy.clone(), what, move || self.measure(ctx.now))
    }
}

/// The newest file of a path: its path and mtime.
fn newest(path: &Path) -> Result<(PathBuf, SystemTime), String> {
    let mtime = |p: &Path| {
        std::fs::symlink_metadata(p)
            .and_then(|m| m.modified())
            .map_err(|e| format!("cannot stat {}: {e}", p.display()))
    };
    let pick = |items: Vec<PathBuf>, empty: String| {
        let mut best: Option<(PathBuf, SystemTime)> = None;
        for p in items {
            // One that vanished between the listing and the stat is skipped.
            let Ok(t) = mtime(&p) else { continue };
            if best.as_ref().is_none_or(|(_, b)| t > *b) {
                best = Some((p, t));
            }
        }
        best.ok_or(empty)
    };
    if is_glob(path) {
        let pattern = path.to_string_lossy();
        let matches = glob::glob(&pattern)
            .map_err(|e| format!("not a valid glob: {e}"))?
            .filter_map(Result::ok)
            .collect();
        return pick(matches, format!("nothing matches {pattern}"));
    }
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} is missing", path.display()),
        _ => format!("cannot stat {}: {e}", path.display()),
    })?;
    if !meta.is_dir() {
        return Ok((path.to_path_buf(), meta.modified().map_err(|e| e.to_string())?));
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| format!("cannot list {}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pick(entries, format!("{} is empty", path.display()))
}

/// A file's size at one run, and which file it was.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: SystemTime,
    size: u64,
    inode: (u64, u64),
    /// Bytes written since the previous sample.
    added: u64,
}

/// The samples of the last window.
#[derive(Debug, Default)]
struct Growth {
    samples: VecDeque<Sample>,
    since: Option<SystemTime>,
}

impl Growth {
    /// Takes a sample in; returns the bytes added over `window` and
    /// whether a whole window has been watched.
    fn see(&mut self, at: SystemTime, size: u64, inode: (u64, u64), window: Duration) -> (u64, bool) {
        let added = match self.samples.back() {
            // The same file, longer or as long: what was appended.
            Some(p) if p.inode == inode && size >= p.size => size - p.size,
            // Rotated (a new inode) or truncated: its content is new.
            Some(_) => size,
            None => 0,
        };
        self.since.get_or_insert(at);
        self.samples.push_back(Sample { at, size, inode, added });
        while self
            .samples
            .front()
            .is_some_and(|s| at.duration_since(s.at).unwrap_or_default() > window)
        {
            self.samples.pop_front();
        }
        let watched = self
            .since
            .is_some_and(|s| at.duration_since(s).unwrap_or_default() >= window);
        // The oldest sample's own bytes came before the window began.
        let total = self.samples.iter().skip(1).map(|s| s.added).sum();
        (total, watched)
    }
}

impl FreshnessProbe {
    fn measure(&self, now: SystemTime) -> Outcome {
        let c = &self.config;
        let (file, mtime) = match newest(&c.path) {
            Ok(n) => n,
            Err(why) => return Outcome::error(why),
        };
        // A file from the future (a clock step) is fresh, not negative-aged.
        let age = now.duration_since(mtime).unwrap_or_default();
        let secs = (age.as_secs_f64() * 1000.0).round() / 1000.0;
        let label = c.path.display().to_string();
        let status = grade(
            age.as_secs_f64(),
            c.max_age_warn.map(|d| d.as_secs_f64()),
            c.max_age_crit.map(|d| d.as_secs_f64()),
        );
        let ago = humantime::format_duration(Duration::from_secs(age.as_secs())).to_string();
        let newest_said = if file == c.path {
            format!("last written {ago} ago")
        } else {
            format!("newest {} last written {ago} ago", file.display())
        };
        let mut said = match crossed(status, c.max_age_warn, c.max_age_crit) {
            Some(limit) if status != Status::Pass => format!(
                "{newest_said} ({} at {})",
                if status == Status::Fail { "critical" } else { "warn" },
                fmt_duration(limit)
            ),
            _ => newest_said,
        };
        let mut status = status;
        let mut growth = None;
        if let Some(min) = c.min_growth {
            match std::fs::metadata(&file) {
                Ok(m) if m.is_file() => {
                    use std::os::unix::fs::MetadataExt;
                    let (grew, watched) = self
                        .growth
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .see(now, m.len(), (m.dev(), m.ino()), self.window);
                    growth = Some(Measurement::new(GROWTH.name, grew as f64).label("path", label.as_str()));
                    let w = fmt_duration(self.window);
                    if !watched {
                        said += &format!("; grew {} so far, judged once watched for {w}", ByteSize(grew));
                    } else if grew < min.0 {
                        status = Status::Fail;
                        said = format!("grew {} in {w} (at least {min} expected); {said}", ByteSize(grew));
                    } else {
                        said += &format!("; grew {} in {w}", ByteSize(grew));
                    }
                }
                Ok(_) => return Outcome::error(format!("{} is not a file: min_growth needs one", file.display())),
                Err(e) => return Outcome::error(format!("cannot stat {}: {e}", file.display())),
            }
        }
        let mut o = Outcome::new(status, secs, Some("s"))
            .with_output(said)
            .measure(Measurement::new(AGE.name, secs).label("path", label));
        o.measurements.extend(growth);
        o
    }
}

#[cfg(test)]
mod tests;

//! The daemon's status snapshot as unitwatch-http holds it: read from
//! `<runtime_dir>/status.json` only when the file changed, parsed once, and
//! rendered once into every body a request may need.
//!
//! A request only clones an `Arc` of [`Rendered`]; it never reads a file or
//! waits on the daemon. What depends on the clock (is the snapshot stale?)
//! is decided per request from `updated_at`, which costs a subtraction.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::health::{self, Freshness, Health};
use super::metrics;
use crate::checks::Status;
use crate::snapshot::Snapshot;

/// A snapshot older than this many sweep intervals means the daemon is dead
/// or hung (it rewrites the file after every sweep).
pub const STALE_INTERVALS: u32 = 3;

/// How often the file's metadata is looked at.
pub const POLL: Duration = Duration::from_millis(100);

/// One snapshot and every body made from it.
pub struct Rendered {
    pub snapshot: Option<Snapshot>,
    /// Why there is no snapshot (missing, unreadable, invalid).
    pub error: Option<String>,
    pub updated_at: Option<SystemTime>,
    pub stale_after: Duration,
    pub host: String,
    /// Pre-rendered JSON for the fresh case.
    pub health: Bytes,
    pub detailed: Bytes,
    /// The metrics, but for the per-scrape families.
    pub metrics: metrics::Exposition,
}

impl Rendered {
    pub fn new(snapshot: Result<Snapshot, String>, host: &str) -> Rendered {
        let (snapshot, error) = match snapshot {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        let updated_at = snapshot
            .as_ref()
            .and_then(|s| humantime::parse_rfc3339_weak(&s.updated_at).ok());
        let stale_after = snapshot
            .as_ref()
            .map(|s| Duration::from_millis(s.interval_ms.max(1000)) * STALE_INTERVALS)
            .unwrap_or(Duration::ZERO);
        let health = to_bytes(&health::summary(snapshot.as_ref(), &Freshness::Fresh, host));
        let detailed = to_bytes(&health::detailed(
            snapshot.as_ref(),
            &Freshness::Fresh,
            host,
        ));
        Rendered {
            health,
            detailed,
            metrics: metrics::Exposition::new(snapshot.as_ref()),
            snapshot,
            error,
            updated_at,
            stale_after,
            host: host.to_string(),
        }
    }

    /// Fresh, stale or missing, now.
    pub fn freshness(&self, now: SystemTime) -> Freshness {
        let Some(snap) = &self.snapshot else {
            return Freshness::Missing(
                self.error
                    .clone()
                    .unwrap_or_else(|| "no status snapshot yet".into()),
            );
        };
        let Some(at) = self.updated_at else {
            return Freshness::Stale(format!(
                "status snapshot has an unreadable updated_at {:?}",
                snap.updated_at
            ));
        };
        let age = now.duration_since(at).unwrap_or_default();
        if age > self.stale_after {
            Freshness::Stale(format!(
                "status snapshot is {}s old (unitwatchd rewrites it every {}s): unitwatchd is dead or hung",
                age.as_secs(),
                snap.interval_ms / 1000
            ))
        } else {
            Freshness::Fresh
        }
    }

    /// Seconds since the daemon last wrote the snapshot.
    pub fn age(&self, now: SystemTime) -> Option<f64> {
        self.updated_at
            .map(|t| now.duration_since(t).unwrap_or_default().as_secs_f64())
    }

    /// The `/health` (or `/health/detailed`) body and status for now: the
    /// pre-rendered bytes when fresh, rendered anew otherwise.
    pub fn health(&self, now: SystemTime, detailed: bool) -> (Status, Bytes) {
        let fresh = self.freshness(now);
        if fresh == Freshness::Fresh {
            if let Some(s) = &self.snapshot {
                let body = if detailed {
                    &self.detailed
                } else {
                    &self.health
                };
                return (s.status, body.clone());
            }
        }
        let h = if detailed {
            health::detailed(self.snapshot.as_ref(), &fresh, &self.host)
        } else {
            health::summary(self.snapshot.as_ref(), &fresh, &self.host)
        };
        (h.status, to_bytes(&h))
    }

    /// `/health/service/{unit}`; `None` for a unit that is not watched.
    pub fn service(&self, now: SystemTime, unit: &str) -> Option<(Status, Bytes)> {
        let fresh = self.freshness(now);
        health::service(self.snapshot.as_ref(), &fresh, &self.host, unit)
            .map(|h| (h.status, to_bytes(&h)))
    }
}

pub fn to_bytes(h: &Health) -> Bytes {
    let mut v = serde_json::to_vec(h).expect("health serializes");
    v.push(b'\n');
    Bytes::from(v)
}

/// The shared, swappable current rendering.
#[derive(Clone)]
pub struct Source {
    current: Arc<RwLock<Arc<Rendered>>>,
}

impl Source {
    pub fn new(r: Rendered) -> Self {
        Source {
            current: Arc::new(RwLock::new(Arc::new(r))),
        }
    }

    pub fn get(&self) -> Arc<Rendered> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, r: Rendered) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r);
    }
}

/// What identifies one version of the file: the daemon replaces it by
/// rename, so the inode changes on every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        size: m.size(),
    })
}

/// Reads and renders `path`; errors become the reason the snapshot is missing.
pub fn load(path: &Path, host: &str) -> Rendered {
    let snap = match Snapshot::read(path) {
        Ok(s) => Ok(s),
        Err(crate::snapshot::ReadError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Err(format!(
                "no status snapshot at {}: is unitwatchd running?",
                path.display()
            ))
        }
        Err(e) => Err(e.to_string()),
    };
    Rendered::new(snap, host)
}

/// Keeps `source` in step with the file at `path`, forever.
pub async fn watch(path: PathBuf, host: String, source: Source) {
    // None: nothing loaded by this task yet, so the first look always loads
    // (the file may have changed since the caller's initial load).
    let mut last: Option<Option<Stamp>> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Some(stamp(&path));
        if now != last {
            last = now;
            let (p, h) = (path.clone(), host.clone());
            // Parsing and rendering a large snapshot is CPU work: keep it
            // off the threads that answer requests.
            match tokio::task::spawn_blocking(move || load(&p, &h)).await {
                Ok(r) => source.set(r),
                Err(e) => log::error!("rendering the status snapshot failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_snapshot(path: &Path, status: &str, updated_at: SystemTime) {
        let s = serde_json::json!({
            "schema_version": 1, "status": status, "summary": "1 units ok",
            "updated_at": humantime::format_rfc3339_millis(updated_at).to_string(),
            "started_at": "2026-11-23T09:00:00.000Z", "pid": 7, "version": "0.1.0",
            "interval_ms": 1000, "systemd": {"reachable": true}, "checks": [], "units": {}
        });
        crate::fsutil::write_atomic(path, s.to_string().as_bytes(), 0o644).unwrap();
    }

    #[test]
    fn missing_invalid_fresh_and_stale() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("status.json");
        let r = load(&p, "h");
        let now = SystemTime::now();
        assert!(
            matches!(r.freshness(now), Freshness::Missing(m) if m.contains("is unitwatchd running?"))
        );
        assert_eq!(r.health(now, false).0, Status::Fail);

        std::fs::write(&p, "{\"schema_version\": 1, \"stat").unwrap();
        let r = load(&p, "h");
        assert!(
            matches!(r.freshness(now), Freshness::Missing(m) if m.contains("invalid status snapshot"))
        );

        write_snapshot(&p, "pass", now);
        let r = load(&p, "h");
        assert_eq!(r.freshness(now), Freshness::Fresh);
        assert_eq!(r.health(now, false).0, Status::Pass);
        // interval 1s: stale after 3s.
        let later = now + Duration::from_millis(3500);
        assert!(
            matches!(r.freshness(later), Freshness::Stale(m) if m.starts_with("status snapshot is 3s old"))
        );
        let (s, body) = r.health(later, false);
        assert_eq!(s, Status::Fail);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "fail");
        assert_eq!(r.age(later).map(|a| a.round()), Some(4.0));
    }

    #[tokio::test]
    async fn watch_picks_up_replacements() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("status.json");
        let source = Source::new(load(&p, "h"));
        tokio::spawn(watch(p.clone(), "h".into(), source.clone()));
        assert!(source.get().snapshot.is_none());
        write_snapshot(&p, "warn", SystemTime::now());
        let mut seen = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(s) = &source.get().snapshot {
                seen = Some(s.status);
                break;
            }
        }
        assert_eq!(seen, Some(Status::Warn));
        std::fs::remove_file(&p).unwrap();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if source.get().snapshot.is_none() {
                return;
            }
        }
        panic!("removal of the snapshot was not noticed");
    }
}

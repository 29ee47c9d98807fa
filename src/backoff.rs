//! Restart backoff: the per-unit state machine and its persistent store.
//!
//! The state lives in `<state_dir>/backoff.json` and is rewritten atomically
//! on every change, so a restart of unitwatch (or of the machine) continues
//! the sequence where it was instead of hammering a broken unit from 10 s
//! again. Time is passed in, never read here, so the maths is unit-tested
//! with fixed clocks.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::BackoffConfig;
use crate::fsutil::{load_or_move_aside, write_atomic, LoadError, WriteError};

const HOUR: Duration = Duration::from_secs(3600);
const SCHEMA_VERSION: u32 = 1;

/// The tunables, from `[backoff]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
    pub reset_after: Duration,
    pub max_per_hour: u32,
}

impl From<&BackoffConfig> for Policy {
    fn from(b: &BackoffConfig) -> Self {
        Policy {
            initial: b.initial,
            factor: b.factor,
            max: b.max,
            reset_after: b.reset_after,
            max_per_hour: b.max_restarts_per_hour,
        }
    }
}

impl Policy {
    /// The delay that follows `delay`: multiplied by the factor, capped at max.
    pub fn next(&self, delay: Duration) -> Duration {
        let d = delay.max(self.initial).as_secs_f64() * self.factor;
        if d >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(d)
        }
    }
}

/// A wall-clock instant, stored as RFC 3339 so the file is readable and
/// survives reboots (a monotonic clock would not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s)
            .map(Timestamp)
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {s:?}: {e}")))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_seconds(self.0))
    }
}

/// One unit's restart history and plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitBackoff {
    /// Restarts done by unitwatch since the backoff was last reset.
    pub attempts: u32,
    /// The delay before the next restart, in milliseconds.
    pub next_delay_ms: u64,
    pub last_failure: Option<Timestamp>,
    pub last_restart: Option<Timestamp>,
    /// unitwatch's restarts within the last hour (the per-hour cap).
    pub restarts: Vec<Timestamp>,
    pub restarts_total: u64,
    /// Restarts that systemd's own `Restart=` did, as seen from signals.
    pub systemd_restarts_total: u64,
    /// When those of the last hour were seen (for `restarts_warn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub systemd_restarts: Vec<Timestamp>,
    pub pending_restart_at: Option<Timestamp>,
    pub pending_reason: Option<String>,
    /// Set while the per-hour cap holds restarts back.
    pub limited_since: Option<Timestamp>,
    /// In memory only: health is re-proven after unitwatch restarts, so a
    /// restart of the daemon never resets a unit's backoff early.
    #[serde(skip)]
    pub healthy_since: Option<SystemTime>,
}

/// What the supervisor should do about a failed unit.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Restart at `at`, after `delay`; it will be attempt number `attempt`.
    Schedule {
        at: SystemTime,
        delay: Duration,
        attempt: u32,
    },
    /// A restart is planned already.
    AlreadyScheduled { at: SystemTime },
    /// The per-hour cap is reached; `first` is true only the first time, so
    /// the critical event goes out once per episode.
    LimitReached { first: bool, retry_at: SystemTime },
}

/// What a healthy observation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HealthyOutcome {
    /// A planned restart is no longer needed.
    pub cancelled: bool,
    /// Healthy for `reset_after`: the sequence starts over.
    pub reset: bool,
}

/// Within the hour before `now` (a time ahead of it, a clock stepped
/// back, counts as within).
fn within_hour(t: &Timestamp, now: SystemTime) -> bool {
    now.duration_since(t.0).map(|a| a < HOUR).unwrap_or(true)
}

impl UnitBackoff {
    pub fn next_delay(&self, policy: &Policy) -> Duration {
        if self.next_delay_ms == 0 {
            policy.initial
        } else {
            Duration::from_millis(self.next_delay_ms)
        }
    }

    fn prune(&mut self, now: SystemTime) {
        self.restarts.retain(|t| within_hour(t, now));
    }

    pub fn restarts_last_hour(&self, now: SystemTime) -> usize {
        self.restarts.iter().filter(|t| within_hour(t, now)).count()
    }

    /// systemd's own restarts of the unit within the last hour.
    pub fn systemd_restarts_last_hour(&self, now: SystemTime) -> usize {
        self.systemd_restarts
            .iter()
            .filter(|t| within_hour(t, now))
            .count()
    }

    /// The unit was seen failing (a transition, not a steady state).
    pub fn record_failure(&mut self, now: SystemTime) {
        self.last_failure = Some(Timestamp(now));
        self.healthy_since = None;
    }

    /// systemd's `Restart=` is bringing the unit back itself.
    pub fn record_systemd_restart(&mut self, now: SystemTime) {
        self.record_failure(now);
        self.systemd_restarts_total += 1;
        self.systemd_restarts.retain(|t| within_hour(t, now));
        self.systemd_restarts.push(Timestamp(now));
    }

    /// Plans a restart of a failed unit: after the current delay, unless the
    /// per-hour cap is reached or a restart is already planned.
    pub fn plan_restart(&mut self, now: SystemTime, policy: &Policy, reason: &str) -> Decision {
        self.plan_restart_since(now, now, policy, reason)
    }

    /// [`plan_restart`](Self::plan_restart), the delay counted from
    /// `failed`, systemd's own timestamp of the failure, rather than from
    /// when unitwatch heard of it: the time the signal took to arrive is not
    /// added to the unit's downtime. Never from later than `now` (a clock
    /// stepped back); a failure older than the delay is due at once.
    pub fn plan_restart_since(
        &mut self,
        now: SystemTime,
        failed: SystemTime,
        policy: &Policy,
        reason: &str,
    ) -> Decision {
        self.healthy_since = None;
        self.prune(now);
        if let Some(at) = self.pending_restart_at {
            return Decision::AlreadyScheduled { at: at.0 };
        }
        if self.restarts.len() >= policy.max_per_hour as usize {
            let first = self.limited_since.is_none();
            if first {
                self.limited_since = Some(Timestamp(now));
            }
            let oldest = self.restarts.iter().min().map(|t| t.0).unwrap_or(now);
            return Decision::LimitReached {
                first,
                retry_at: oldest + HOUR,
            };
        }
        self.limited_since = None;
        let delay = self.next_delay(policy);
        let at = failed.min(now) + delay;
        self.pending_restart_at = Some(Timestamp(at));
        self.pending_reason = Some(reason.to_string());
        Decision::Schedule {
            at,
            delay,
            attempt: self.attempts + 1,
        }
    }

    /// A restart was issued (successfully or not: either way it was an
    /// attempt, and the next one waits longer).
    pub fn record_restart(&mut self, now: SystemTime, policy: &Policy) {
        self.prune(now);
        self.attempts += 1;
        self.restarts.push(Timestamp(now));
        self.restarts_total += 1;
        self.last_restart = Some(Timestamp(now));
        self.pending_restart_at = None;
        self.pending_reason = None;
        self.next_delay_ms = policy.next(self.next_delay(policy)).as_millis() as u64;
    }

    /// The unit was seen healthy.
    pub fn record_healthy(&mut self, now: SystemTime, policy: &Policy) -> HealthyOutcome {
        let mut out = HealthyOutcome {
            cancelled: self.pending_restart_at.take().is_some(),
            reset: false,
        };
        self.pending_reason = None;
        self.limited_since = None;
        let since = *self.healthy_since.get_or_insert(now);
        let dirty = self.attempts > 0 || self.next_delay(policy) != policy.initial;
        if dirty && now.duration_since(since).unwrap_or_default() >= policy.reset_after {
            self.attempts = 0;
            self.next_delay_ms = 0;
            out.reset = true;
        }
        out
    }

    /// Does this entry say anything worth keeping?
    fn is_blank(&self) -> bool {
        let blank = UnitBackoff {
            healthy_since: self.healthy_since,
            ..Default::default()
        };
        *self == blank
    }
}

#[derive(Serialize, Deserialize)]
struct BackoffFile {
    schema_version: u32,
    units: BTreeMap<String, UnitBackoff>,
}

/// A backoff file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: cannot read backoff state: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot move corrupt backoff state aside to {to}: {source}")]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
}

pub use crate::fsutil::Corrupt;

/// Every unit's backoff, bound to its file.
#[derive(Debug)]
pub struct BackoffStore {
    path: PathBuf,
    pub units: BTreeMap<String, UnitBackoff>,
}

impl BackoffStore {
    pub fn empty(path: &Path) -> Self {
        BackoffStore {
            path: path.to_path_buf(),
            units: BTreeMap::new(),
        }
    }

    /// Loads `path`. Missing: a fresh start. Corrupt or truncated: moved
    /// aside to `<path>.corrupt-<unix time>` and reported, and a fresh state
    /// is used, so a bad file never stops the supervisor. Unreadable (e.g.
    /// permissions): an error, since writing over it could lose good state.
    pub fn load(path: &Path, now: SystemTime) -> Result<(Self, Option<Corrupt>), StateError> {
        let (units, corrupt) = load_or_move_aside(path, now, Self::parse).map_err(|e| match e {
            LoadError::Read(source) => StateError::Read {
                path: path.to_path_buf(),
                source,
            },
            LoadError::MoveAside { to, source } => StateError::MoveAside {
                path: path.to_path_buf(),
                to,
                source,
            },
        })?;
        let store = BackoffStore {
            path: path.to_path_buf(),
            units: units.unwrap_or_default(),
        };
        Ok((store, corrupt))
    }

    /// Parses the file's bytes; the error says where and why it is bad.
    pub fn parse(bytes: &[u8]) -> Result<BTreeMap<String, UnitBackoff>, String> {
        match serde_json::from_slice::<BackoffFile>(bytes) {
            Ok(f) if f.schema_version == SCHEMA_VERSION => Ok(f.units),
            Ok(f) => Err(format!(
                "schema_version {} is not supported (expected {SCHEMA_VERSION})",
                f.schema_version
            )),
            Err(e) => Err(format!("line {} column {}: {e}", e.line(), e.column())),
        }
    }

    pub fn save(&self) -> Result<(), StateError> {
        let mut json = Vec::new();
        self.serialize_into(&mut json);
        write_atomic(&self.path, &json, 0o644)?;
        Ok(())
    }

    /// The file's bytes, into `buf` (cleared first): what [`save`] writes,
    /// and the daemon hands to its writer task.
    ///
    /// [`save`]: BackoffStore::save
    pub fn serialize_into(&self, buf: &mut Vec<u8>) {
        let file = BackoffFile {
            schema_version: SCHEMA_VERSION,
            units: self
                .units
                .iter()
                .filter(|(_, u)| !u.is_blank())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        buf.clear();
        serde_json::to_writer_pretty(&mut *buf, &file).expect("backoff state serializes");
        buf.push(b'\n');
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entry(&mut self, unit: &str) -> &mut UnitBackoff {
        self.units.entry(unit.to_string()).or_default()
    }

    /// Forgets one unit's history, or every unit's. Returns how many entries
    /// were removed.
    pub fn reset(&mut self, unit: Option<&str>) -> usize {
        match unit {
            Some(u) => usize::from(self.units.remove(u).is_some()),
            None => std::mem::take(&mut self.units).len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            initial: Duration::from_secs(10),
            factor: 2.0,
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
            max_per_hour: 5,
        }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn the_delay_counts_from_the_failure_not_from_its_news() {
        let p = policy();
        let mut u = UnitBackoff::default();
        let failed = t(10);
        let heard = failed + Duration::from_millis(4);
        match u.plan_restart_since(heard, failed, &p, "failed") {
            Decision::Schedule { at, delay, .. } => {
                assert_eq!(delay, p.initial);
                assert_eq!(at, failed + p.initial);
            }
            d => panic!("{d:?}"),
        }
        // A failure stamped after now (the clock stepped back): from now.
        let mut u = UnitBackoff::default();
        match u.plan_restart_since(t(10), t(20), &p, "failed") {
            Decision::Schedule { at, .. } => assert_eq!(at, t(10) + p.initial),
            d => panic!("{d:?}"),
        }
        // Heard of later than the delay: due at once (in the past).
        let mut u = UnitBackoff::default();
        match u.plan_restart_since(t(100), t(10), &p, "failed") {
            Decision::Schedule { at, .. } => assert!(at < t(100), "{at:?}"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn delays_double_to_the_cap() {
        let p = Policy {
            max_per_hour: 100,
            ..policy()
        };
        let mut u = UnitBackoff::default();
        let mut delays = vec![];
        let mut now = t(0);
        for _ in 0..8 {
            u.record_failure(now);
            match u.plan_restart(now, &p, "failed") {
                Decision::Schedule { delay, at, .. } => {
                    delays.push(delay.as_secs());
                    now = at;
                }
                d => panic!("{d:?}"),
            }
            u.record_restart(now, &p);
        }
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(u.attempts, 8);
    }

    #[test]
    fn a_second_failure_report_does_not_reschedule() {
        let mut u = UnitBackoff::default();
        let d1 = u.plan_restart(t(0), &policy(), "failed");
        let d2 = u.plan_restart(t(3), &policy(), "failed");
        assert_eq!(d2, Decision::AlreadyScheduled { at: t(10) });
        assert!(matches!(d1, Decision::Schedule { attempt: 1, .. }));
    }

    #[test]
    fn per_hour_cap_stops_and_reports_once_then_lifts() {
        let p = Policy {
            max_per_hour: 3,
            ..policy()
        };
        let mut u = UnitBackoff::default();
        for i in 0..3 {
            assert!(matches!(
                u.plan_restart(t(i * 100), &p, "failed"),
                Decision::Schedule { .. }
            ));
            u.record_restart(t(i * 100 + 50), &p);
        }
        assert_eq!(
            u.plan_restart(t(400), &p, "failed"),
            Decision::LimitReached {
                first: true,
                retry_at: t(50 + 3600)
            }
        );
        assert_eq!(
            u.plan_restart(t(500), &p, "failed"),
            Decision::LimitReached {
                first: false,
                retry_at: t(50 + 3600)
            }
        );
        assert_eq!(u.restarts_last_hour(t(500)), 3);
        // The oldest restart leaves the window: one more is allowed.
        assert!(matches!(
            u.plan_restart(t(3651), &p, "failed"),
            Decision::Schedule { .. }
        ));
        assert_eq!(u.limited_since, None);
    }

    #[test]
    fn healthy_for_reset_after_starts_over() {
        let p = policy();
        let mut u = UnitBackoff::default();
        u.plan_restart(t(0), &p, "failed");
        u.record_restart(t(10), &p);
        u.plan_restart(t(20), &p, "failed");
        u.record_restart(t(40), &p);
        assert_eq!(u.next_delay(&p), Duration::from_secs(40));
        assert_eq!(u.record_healthy(t(41), &p), HealthyOutcome::default());
        assert!(!u.record_healthy(t(640), &p).reset);
        assert!(u.record_healthy(t(641), &p).reset);
        assert_eq!((u.attempts, u.next_delay(&p)), (0, Duration::from_secs(10)));
        // A failure in between restarts the healthy clock.
        u.plan_restart(t(700), &p, "failed");
        u.record_restart(t(710), &p);
        u.record_healthy(t(711), &p);
        u.record_failure(t(900));
        u.record_healthy(t(901), &p);
        assert!(!u.record_healthy(t(1400), &p).reset);
        assert!(u.record_healthy(t(1501), &p).reset);
    }

    #[test]
    fn healthy_cancels_a_planned_restart() {
        let p = policy();
        let mut u = UnitBackoff::default();
        u.plan_restart(t(0), &p, "failed");
        assert!(u.record_healthy(t(5), &p).cancelled);
        assert_eq!(u.pending_restart_at, None);
    }

    #[test]
    fn store_round_trips_and_survives_reload() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("backoff.json");
        let (mut s, c) = BackoffStore::load(&path, t(0)).unwrap();
        assert!(c.is_none() && s.units.is_empty());
        let p = policy();
        let e = s.entry("a.service");
        e.record_failure(t(0));
        e.plan_restart(t(0), &p, "failed");
        e.record_restart(t(10), &p);
        s.save().unwrap();
        let (s2, c) = BackoffStore::load(&path, t(20)).unwrap();
        assert!(c.is_none());
        let a = &s2.units["a.service"];
        assert_eq!(a.attempts, 1);
        assert_eq!(a.next_delay_ms, 20_000);
        assert_eq!(a.last_restart, Some(Timestamp(t(10))));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"last_restart\": \"2027-01-15T08:00:10.000Z\""),
            "{text}"
        );
    }

    #[test]
    fn corrupt_and_truncated_files_are_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("backoff.json");
        for (content, why) in [
            (
                &b"{\"schema_version\": 1, \"units\": {\"a.service\": {\"attem"[..],
                "EOF",
            ),
            (&b"\x00\x01garbage"[..], "expected value"),
            (
                &b"{\"schema_version\": 99, \"units\": {}}"[..],
                "schema_version 99",
            ),
        ] {
            std::fs::write(&path, content).unwrap();
            let (s, c) = BackoffStore::load(&path, t(7)).unwrap();
            let c = c.expect("reported as corrupt");
            assert!(s.units.is_empty());
            assert!(c.reason.contains(why), "{}", c.reason);
            assert_eq!(c.moved_to, d.path().join("backoff.json.corrupt-1800000007"));
            // Nothing is lost: the bad bytes are kept for a person to read.
            assert_eq!(std::fs::read(&c.moved_to).unwrap(), content);
            assert!(!path.exists());
        }
    }

    #[test]
    fn reset_one_or_all() {
        let d = tempfile::tempdir().unwrap();
        let mut s = BackoffStore::empty(&d.path().join("b.json"));
        s.entry("a.service").attempts = 2;
        s.entry("b.service").attempts = 3;
        assert_eq!(s.reset(Some("a.service")), 1);
        assert_eq!(s.reset(Some("a.service")), 0);
        assert_eq!(s.reset(None), 1);
        assert!(s.units.is_empty());
    }
}

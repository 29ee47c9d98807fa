//! The status snapshot, `<runtime_dir>/status.json`: the contract between
//! the daemon (writer) and unitwatch-http and the CLI (readers).
//!
//! Readers must check `schema_version`; fields are only ever added within a
//! version. The file is replaced atomically, so a reader never sees half.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::backoff::{Policy, Timestamp, UnitBackoff};
use crate::checks::{CheckResult, Status};
use crate::fsutil::{write_atomic, WriteError};
use crate::units::UnitStatus;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub schema_version: u32,
    /// Worst status of all checks.
    pub status: Status,
    /// The one-line summary also sent to systemd as STATUS=.
    pub summary: String,
    pub updated_at: String,
    pub started_at: String,
    pub pid: u32,
    pub version: String,
    /// The sweep period: a snapshot older than a few of these means the
    /// daemon is dead or hung.
    pub interval_ms: u64,
    pub systemd: SystemdReach,
    pub checks: Vec<CheckResult>,
    pub units: BTreeMap<String, UnitView>,
    /// Each `[[container]]`, by the name its checks are shown under
    /// (`NAME.container`): unitwatch's restart bookkeeping, as a unit's
    /// (its state is its checks'). Absent without containers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, ContainerView>,
    /// The alert channels, when `[[alert]]` tables are configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertChannelView>,
    /// The OTLP export, when `[telemetry]` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryView>,
}

/// How the OTLP export fares (never its headers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetryView {
    pub protocol: String,
    pub endpoint: String,
    pub exports_total: u64,
    pub export_failures_total: u64,
    /// Events dropped, oldest first, while the queue was full.
    pub dropped_total: u64,
    pub queued_events: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How an alert channel fares, for status.json and /metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertChannelView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub destination: String,
    pub sent_total: u64,
    /// Alerts given up on after every attempt.
    pub failed_total: u64,
    pub suppressed_total: u64,
    /// Alerts dropped, oldest first, while the queue was full.
    pub dropped_total: u64,
    pub queued: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemdReach {
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One watched unit: systemd's state and unitwatch's restart bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<UnitStatus>,
    /// Whether unitwatch restarts it (`restart = true`).
    pub restart: bool,
    pub backoff: BackoffView,
}

/// One watched container: unitwatch's restart bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerView {
    /// Whether unitwatch restarts it (`restart = true`).
    pub restart: bool,
    pub backoff: BackoffView,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackoffView {
    pub attempts: u32,
    pub next_delay_ms: u64,
    pub restarts_last_hour: usize,
    pub restarts_total: u64,
    pub systemd_restarts_total: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_restart_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart: Option<Timestamp>,
    pub limited: bool,
}

impl BackoffView {
    pub fn of(b: &UnitBackoff, policy: &Policy, now: SystemTime) -> Self {
        BackoffView {
            attempts: b.attempts,
            next_delay_ms: b.next_delay(policy).as_millis() as u64,
            restarts_last_hour: b.restarts_last_hour(now),
            restarts_total: b.restarts_total,
            systemd_restarts_total: b.systemd_restarts_total,
            pending_restart_at: b.pending_restart_at,
            last_failure: b.last_failure,
            last_restart: b.last_restart,
            limited: b.limited_since.is_some(),
        }
    }
}

/// The snapshot as the daemon writes it: what it holds (the check results,
/// systemd's view of each unit) borrowed, not copied. At 2,000 units with
/// every resource key that is 14,000 results and 2,000 unit states, which
/// a [`Snapshot`] built for each publish copied (about 10 MB made and freed
/// every sweep, which the allocator kept). It serializes exactly as the
/// [`Snapshot`] it stands for (`to_owned`, which the OTLP export gets, and
/// a test holds the two to the same bytes).
#[derive(Debug, Serialize)]
pub struct SnapshotRef<'a> {
    pub schema_version: u32,
    pub status: Status,
    pub summary: String,
    pub updated_at: String,
    pub started_at: String,
    pub pid: u32,
    pub version: &'static str,
    pub interval_ms: u64,
    pub systemd: SystemdReach,
    pub checks: crate::checks::Joined<'a>,
    pub units: BTreeMap<&'a str, UnitViewRef<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, ContainerView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertChannelView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryView>,
}

/// [`UnitView`], borrowing the unit's state.
#[derive(Debug, Serialize)]
pub struct UnitViewRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'a UnitStatus>,
    pub restart: bool,
    pub backoff: BackoffView,
}

impl SnapshotRef<'_> {
    /// The file's bytes, into `buf` (cleared first), as
    /// [`Snapshot::serialize_into`] writes them.
    pub fn serialize_into(&self, buf: &mut Vec<u8>) {
        buf.clear();
        // Compact, not pretty: at 2,000 units with every resource key
        // pretty-printing made 9.4 MB of 14,000 results, nearly half of it
        // indentation that the loop wrote and every reader parsed. `jq .`
        // or `unitwatchd check --json` show it to a person.
        serde_json::to_writer(&mut *buf, self).expect("snapshot serializes");
        buf.push(b'\n');
    }

    /// The owned snapshot it stands for.
    pub fn to_owned(&self) -> Snapshot {
        Snapshot {
            schema_version: self.schema_version,
            status: self.status,
            summary: self.summary.clone(),
            updated_at: self.updated_at.clone(),
            started_at: self.started_at.clone(),
            pid: self.pid,
            version: self.version.to_string(),
            interval_ms: self.interval_ms,
            systemd: self.systemd.clone(),
            checks: self.checks.to_vec(),
            units: self
                .units
                .iter()
                .map(|(n, u)| {
                    (
                        n.to_string(),
                        UnitView {
                            state: u.state.cloned(),
                            restart: u.restart,
                            backoff: u.backoff.clone(),
                        },
                    )
                })
                .collect(),
            containers: self.containers.clone(),
            alerts: self.alerts.clone(),
            telemetry: self.telemetry.clone(),
        }
    }
}

/// A snapshot that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: cannot read status snapshot: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid status snapshot: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: schema_version {found} is not supported (expected {SCHEMA_VERSION})")]
    Version { path: String, found: u32 },
}

impl Snapshot {
    /// A snapshot for unit tests: fixed times, the status derived from
    /// `checks`.
    #[cfg(test)]
    pub fn fixture(checks: Vec<CheckResult>, units: BTreeMap<String, UnitView>) -> Snapshot {
        Snapshot {
            schema_version: SCHEMA_VERSION,
            status: crate::checks::overall(checks.iter().map(|r| r.status)),
            summary: "a summary".into(),
            updated_at: "2026-11-23T10:00:00.000Z".into(),
            started_at: "2026-11-23T09:00:00.000Z".into(),
            pid: 1,
            version: "0.1.0".into(),
            interval_ms: 10_000,
            systemd: SystemdReach {
                reachable: true,
                error: None,
            },
            checks,
            units,
            containers: BTreeMap::new(),
            telemetry: None,
            alerts: Vec::new(),
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), WriteError> {
        let mut buf = Vec::new();
        self.serialize_into(&mut buf);
        write_atomic(path, &buf, 0o644)
    }

    /// The file's bytes, into `buf` (cleared first): the daemon's writer
    /// (`daemon/publisher.rs`) reuses its buffers rather than allocating
    /// and freeing a large one each second.
    pub fn serialize_into(&self, buf: &mut Vec<u8>) {
        buf.clear();
        serde_json::to_writer(&mut *buf, self).expect("snapshot serializes");
        buf.push(b'\n');
    }

    pub fn read(path: &Path) -> Result<Snapshot, ReadError> {
        let p = || path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ReadError::Io { path: p(), source })?;
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let v: Version = serde_json::from_slice(&bytes)
            .map_err(|source| ReadError::Parse { path: p(), source })?;
        if v.schema_version != SCHEMA_VERSION {
            return Err(ReadError::Version {
                path: p(),
                found: v.schema_version,
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| ReadError::Parse { path: p(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_borrowed_snapshot_writes_the_same_bytes_as_the_owned_one() {
        use crate::checks::{CheckDef, How, Inert, Measurement, Outcome};
        let def = CheckDef::for_unit(
            "a.service".into(),
            "state",
            How::State(std::sync::Arc::new(Inert)),
            std::time::Duration::from_secs(10),
        );
        let found = def.found(
            Outcome::new(Status::Fail, "failed", None)
                .with_output("failed (Result=signal)")
                .measure(Measurement::new("unit_up", 0.0).label("unit", "a.service")),
            "2026-12-03T10:00:00Z"
                .parse::<crate::checks::Stamp>()
                .unwrap()
                .system_time(),
            std::time::Duration::from_micros(3),
        );
        let (defs, found) = (vec![def], vec![found]);
        let checks = crate::checks::Joined::new(&defs, &found);
        let check: CheckResult = serde_json::from_value(serde_json::json!({
            "key": "a.service:state", "component": "a.service", "measurement": "state",
            "component_type": "component", "unit": "a.service", "status": "fail",
            "observed_value": "failed", "output": "failed (Result=signal)",
            "time": "2026-12-03T10:00:00.000Z", "duration_us": 3,
            "measurements": [{"name": "unit_up", "labels": {"unit": "a.service"}, "value": 0.0}]
        }))
        .unwrap();
        let state = UnitStatus {
            load_state: "loaded".into(),
            active_state: "failed".into(),
            sub_state: "failed".into(),
            result: Some("signal".into()),
            ..Default::default()
        };
        let b = BackoffView {
            attempts: 2,
            limited: true,
            ..Default::default()
        };
        for with_state in [true, false] {
            let r = SnapshotRef {
                schema_version: SCHEMA_VERSION,
                status: Status::Fail,
                summary: "0 units ok, 1 failing: a.service".into(),
                updated_at: "2026-12-03T10:00:01.000Z".into(),
                started_at: "2026-12-03T09:00:00.000Z".into(),
                pid: 7,
                version: "0.3.0",
                interval_ms: 10_000,
                systemd: SystemdReach {
                    reachable: false,
                    error: Some("gone".into()),
                },
                checks,
                units: BTreeMap::from([
                    (
                        "b.service",
                        UnitViewRef {
                            state: with_state.then_some(&state),
                            restart: false,
                            backoff: BackoffView::default(),
                        },
                    ),
                    (
                        "a.service",
                        UnitViewRef {
                            state: Some(&state),
                            restart: true,
                            backoff: b.clone(),
                        },
                    ),
                ]),
                containers: BTreeMap::from([(
                    "gw.container".to_string(),
                    ContainerView {
                        restart: true,
                        backoff: b.clone(),
                    },
                )]),
                alerts: Vec::new(),
                telemetry: with_state.then(TelemetryView::default),
            };
            let (mut borrowed, mut owned) = (Vec::new(), Vec::new());
            r.serialize_into(&mut borrowed);
            let o = r.to_owned();
            o.serialize_into(&mut owned);
            assert_eq!(
                String::from_utf8(borrowed).unwrap(),
                String::from_utf8(owned).unwrap()
            );
            assert_eq!(o.units["a.service"].backoff, b);
            assert_eq!(o.checks, std::slice::from_ref(&check));
        }
    }
}

//! What unitwatch knows of each watched unit, as last read from systemd.
//!
//! Plain data: the D-Bus client fills it from signals and sweeps, the checks
//! and the supervisor read it. Keeping it free of D-Bus types lets both be
//! tested without a bus.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// systemd's view of one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStatus {
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// The Service interface's `Result` ("success", "signal", "start-limit-hit" ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// systemd's own `NRestarts` (in memory only, resets on manual restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_restarts: Option<u32>,
    /// `MemoryCurrent` in bytes; `None` when systemd has no figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_current: Option<u64>,
    /// What the resource reader last saw of the unit while it runs, for the
    /// units with thresholds (`checks::unit_resources`); none until the
    /// first read after the unit started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<std::sync::Arc<Resources>>,
}

/// A unit's resources as one read saw them. Each figure is `None` where it
/// was not asked for, and an `Err` with the reason where it could not be
/// read, which its check reports as a failure (never as a 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// `MemoryCurrent` (also in the unit's `memory_current`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Reading<u64>>,
    /// `TasksCurrent`: the unit's threads and processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Reading<u64>>,
    /// `CPUUsageNSec`, the cgroup's CPU time so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usage_nsec: Option<Reading<u64>>,
    /// The CPU the unit used between the last two reads, in parts per
    /// million of one core (1,000,000: one core busy all the time); none
    /// until a second read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ppm: Option<u64>,
    /// `MemorySwapCurrent` in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Reading<u64>>,
    /// The open file descriptors of the unit's process nearest its
    /// `RLIMIT_NOFILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fds: Option<Reading<Fds>>,
    /// A timer's schedule and its service's last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<Reading<TimerInfo>>,
    /// When the read was made, in ms since the epoch.
    #[serde(default)]
    pub read_at_ms: u64,
    /// The unit's `ControlGroup`, read once per run of the unit (where
    /// its cgroup's own files are read).
    #[serde(skip)]
    pub control_group: Option<String>,
    /// Where each figure was found at the first read of this run of the
    /// unit, so later reads go there straight (none of the failed opens or
    /// round trips of the first).
    #[serde(skip)]
    pub sources: Sources,
    /// The soft `RLIMIT_NOFILE` of each process, as first read.
    #[serde(skip)]
    pub fd_limits: Vec<(u32, u64)>,
    /// The same on the monotonic clock, for the CPU delta.
    #[serde(skip)]
    pub read_at: Option<std::time::Instant>,
}

/// Where a figure comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Source {
    /// Not known yet: everything is tried.
    #[default]
    Unknown,
    /// The unit's cgroup on the unified hierarchy.
    Unified,
    /// Its cgroup on a v1 controller's hierarchy.
    V1,
    /// systemd, over D-Bus.
    Systemd,
    /// Nowhere: systemd has no such figure for the unit either.
    Nowhere,
}

/// The [`Source`] of each cgroup figure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources {
    pub memory: Source,
    pub tasks: Source,
    pub cpu: Source,
    pub swap: Source,
}

/// One figure: read, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading<T> {
    Value(T),
    /// systemd has no such figure for the unit (its accounting is off, or
    /// the kernel lacks it): the reason, a constant (not copied per unit).
    Unavailable(crate::checks::Text),
    /// Reading it failed: the reason.
    Error(String),
}

impl<T> Reading<T> {
    pub fn value(&self) -> Option<&T> {
        match self {
            Reading::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// What a timer says of itself and of the unit it triggers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerInfo {
    /// `LastTriggerUSec`, µs since the epoch; 0 when it has not fired
    /// since boot.
    pub last_trigger_us: u64,
    /// When it is due next, µs since the epoch (`NextElapseUSecRealtime`,
    /// or the monotonic one on the wall clock); none when nothing is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_elapse_us: Option<u64>,
    /// The unit it starts (`Unit`), and that unit's state and `Result`.
    pub triggers: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers_result: Option<String>,
}

/// The worst of a unit's processes for open file descriptors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fds {
    pub pid: u32,
    pub open: u64,
    /// Its soft `RLIMIT_NOFILE`.
    pub limit: u64,
    /// How many processes the unit has (all were counted).
    pub processes: u32,
}

impl Fds {
    /// `open` as a percentage of `limit` (0 for an unlimited process).
    pub fn percent(&self) -> f64 {
        if self.limit == 0 || self.limit == u64::MAX {
            0.0
        } else {
            self.open as f64 * 100.0 / self.limit as f64
        }
    }
}

impl UnitStatus {
    /// Same ActiveState and SubState: what a move of the unit changes.
    pub fn same_state(&self, other: &UnitStatus) -> bool {
        (&self.active_state, &self.sub_state) == (&other.active_state, &other.sub_state)
    }
    pub fn is_active(&self) -> bool {
        self.active_state == "active" || self.active_state == "reloading"
    }
    pub fn is_failed(&self) -> bool {
        self.active_state == "failed"
    }
    /// systemd's `Restart=` has the unit in hand: it is waiting to start it again.
    pub fn is_auto_restarting(&self) -> bool {
        self.sub_state == "auto-restart"
    }
    pub fn start_limit_hit(&self) -> bool {
        self.result.as_deref() == Some("start-limit-hit")
    }
    pub fn exists(&self) -> bool {
        self.load_state != "not-found"
    }
}

/// Every watched unit by name.
pub type UnitTable = HashMap<String, UnitStatus>;

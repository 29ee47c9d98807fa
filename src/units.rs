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

//! journal.json: the follower's counts and the cursor of the last entry
//! counted, saved together (so that a restart goes on from the one with
//! the other) and restored at the start.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Run, Start};
use crate::checks::journal::tally::{from_micros, micros, Tally};

pub const SCHEMA_VERSION: u32 = 1;

/// journal.json.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    pub schema_version: u32,
    /// When it was written, µs since the epoch.
    pub saved_at_us: u64,
    /// The cursor of the last entry counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// By check key.
    #[serde(default)]
    pub checks: BTreeMap<String, SavedCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedCheck {
    pub fingerprint: String,
    #[serde(flatten)]
    pub tally: Tally,
}

impl Saved {
    pub fn parse(bytes: &[u8]) -> Result<Saved, String> {
        let s: Saved = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if s.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema_version {} (this unitwatchd writes {SCHEMA_VERSION})",
                s.schema_version
            ));
        }
        Ok(s)
    }
}

impl Run {
    /// How far back a fresh start reads: the longest window or silence.
    pub(super) fn fresh_since(&self) -> SystemTime {
        let lookback = self.watches.iter().map(|w| w.lookback()).max().unwrap_or_default();
        let now = SystemTime::now();
        now.checked_sub(lookback).unwrap_or(now)
    }

    /// Restores the saved counts; where to start reading.
    pub(super) fn restore(&self, now: SystemTime) -> Start {
        let fresh = self.fresh_since();
        let saved = match crate::fsutil::load_or_move_aside(&self.state, now, Saved::parse) {
            Ok((saved, corrupt)) => {
                if let Some(c) = corrupt {
                    crate::events::Event::new(
                        crate::events::Kind::StateCorrupt,
                        crate::events::Severity::Warning,
                        format!(
                            "{}: corrupt journal state ({}); moved aside to {} and counting afresh",
                            self.state.display(),
                            c.reason,
                            c.moved_to.display()
                        ),
                    )
                    .emit();
                }
                saved
            }
            Err(e) => {
                let why = match e {
                    crate::fsutil::LoadError::Read(e) => format!("cannot read it: {e}"),
                    crate::fsutil::LoadError::MoveAside { to, source } => {
                        format!("corrupt, and cannot move it aside to {}: {source}", to.display())
                    }
                };
                log::warn!("{}: {why}; counting afresh", self.state.display());
                None
            }
        };
        let saved = saved.unwrap_or_default();
        let saved_at = from_micros(saved.saved_at_us);
        // The cursor is worth following only if what it skips is still
        // inside the windows; else the windows are read afresh.
        let from = match &saved.cursor {
            Some(c) if saved_at >= fresh => Start::AfterCursor(c.clone()),
            _ => Start::Since(fresh),
        };
        let start = match from {
            Start::AfterCursor(_) => saved_at,
            Start::Since(t) => t,
        };
        for w in &self.watches {
            let tally = saved
                .checks
                .get(&w.key)
                .filter(|s| s.fingerprint == w.fingerprint())
                .map(|s| s.tally.clone().rebucket(w.span()))
                .map(|mut t| {
                    t.prune(now, w.span());
                    t
                })
                .unwrap_or_else(|| Tally::new(w.span(), start));
            w.lock().tally = Some(tally);
        }
        from
    }

    pub(in crate::checks::journal) fn save(&self, cursor: Option<&str>) {
        if self.state.as_os_str().is_empty() {
            // A one-shot read saves nothing.
            return;
        }
        let saved = Saved {
            schema_version: SCHEMA_VERSION,
            saved_at_us: micros(SystemTime::now()),
            cursor: cursor.map(str::to_string),
            checks: self
                .watches
                .iter()
                .filter_map(|w| {
                    let t = w.lock().tally.clone()?;
                    Some((
                        w.key.clone(),
                        SavedCheck {
                            fingerprint: w.fingerprint(),
                            tally: t,
                        },
                    ))
                })
                .collect(),
        };
        let bytes = match serde_json::to_vec(&saved) {
            Ok(b) => b,
            Err(e) => {
                log::error!("cannot serialize the journal state: {e}");
                return;
            }
        };
        if let Err(e) = crate::fsutil::write_atomic(&self.state, &bytes, 0o644) {
            log::warn!("{}: cannot save the journal state: {e}", self.state.display());
        }
    }
}

//! Signals that a full read overtook: which of their moves are news.
//!
//! zbus queues signals apart from method replies, so the reply to a
//! `ListUnitsByNames` can reach the loop ahead of signals systemd sent
//! before it (`systemd::older` orders them by serial). Applied over the
//! read, such a signal would take the unit back in time; dropped, it would
//! hide a crash that systemd's `Restart=` undid before the read. A
//! [`Replay`] follows them on their own copy of the unit (`stream`) and
//! says when the table must follow too. Pure: no bus, no clock.
//!
//! The rule is by health class, not by exact state: `up` (active,
//! reloading) or `down` (failed, or in systemd's `auto-restart`); the
//! states between (activating, deactivating, inactive) have none. The read
//! was told already. The stale signals are news only when they take the
//! unit to a class the read did not show: a crash, or a recovery, that
//! happened between two looks. From there the table follows each stale
//! move, so that the supervisor sees the moves in systemd's order (a
//! `failed` on the way to `auto-restart` is one failure, not two), until
//! the signals are back at the read's state. A move within the read's own
//! class is the read's news again (systemd 252 passes through `failed`
//! on its way to `auto-restart`: a read that caught the `auto-restart`
//! told that crash) and is only followed on the copy.

use crate::systemd::Change;
use crate::units::UnitStatus;

/// A unit's health class, for [`Replay`]: `Some(true)` up, `Some(false)`
/// down, `None` on the way between.
fn class(s: &UnitStatus) -> Option<bool> {
    if s.is_active() {
        Some(true)
    } else if s.is_failed() || s.is_auto_restarting() {
        Some(false)
    } else {
        None
    }
}

/// One unit's signals, older than the last read, replayed against it.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The unit as the signals alone have shown it.
    stream: UnitStatus,
    /// The last read's state, which the table held when it was made.
    read: UnitStatus,
    /// The table follows the stream: a move the read did not show is
    /// being told, until the stream is back at the read's state.
    telling: bool,
}

impl Replay {
    /// The signals had the unit at `stream` when a read found it at `read`.
    pub fn new(stream: UnitStatus, read: UnitStatus) -> Self {
        Replay {
            stream,
            read,
            telling: false,
        }
    }

    /// A newer read: the table holds `read` again, and the signals still
    /// queued are older than it too. Where the signals had the unit is kept.
    pub fn reread(&mut self, read: UnitStatus) {
        self.read = read;
        self.telling = false;
    }

    /// Applies a stale change to the stream. `Some(state)`: the move is
    /// news, and the table must move to `state` (and be reacted to).
    pub fn step(&mut self, change: &Change) -> Option<UnitStatus> {
        if !change.apply(&mut self.stream) {
            return None;
        }
        let at_read = self.stream.same_state(&self.read);
        let news = class(&self.stream).is_some_and(|c| class(&self.read) != Some(c));
        if !self.telling && (at_read || !news) {
            return None;
        }
        // Told; the telling goes on until the stream is back at the read.
        self.telling = !at_read;
        Some(self.stream.clone())
    }

    /// Where the signals alone have the unit.
    #[cfg(test)]
    fn stream(&self) -> &UnitStatus {
        &self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(active: &str, sub: &str) -> UnitStatus {
        UnitStatus {
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            ..Default::default()
        }
    }

    fn to(active: &str, sub: &str) -> Change {
        Change {
            active_state: Some(active.into()),
            sub_state: Some(sub.into()),
            ..Default::default()
        }
    }

    /// Stale changes handled as the supervisor does: `table` starts at the
    /// read's state and takes each move told; returns the moves told.
    fn run(stream: UnitStatus, read: UnitStatus, changes: &[Change]) -> (Vec<String>, Replay) {
        let mut r = Replay::new(stream, read.clone());
        let mut table = read;
        let mut told = Vec::new();
        for c in changes {
            if let Some(to) = r.step(c) {
                assert!(!to.same_state(&table), "a told move moves the table");
                told.push(format!("{}/{}", to.active_state, to.sub_state));
                table = to;
            }
        }
        (told, r)
    }

    /// systemd 252's path from a crash back to running under `Restart=`.
    fn self_heal() -> Vec<Change> {
        vec![
            to("deactivating", "stop-sigterm"),
            to("failed", "failed"),
            to("activating", "auto-restart"),
            to("inactive", "dead"),
            to("activating", "start"),
            to("active", "running"),
        ]
    }

    #[test]
    fn a_stale_repeat_of_failed_after_a_restart_is_not_news() {
        // Signals had the unit failed; the read caught it active after the
        // restart; then systemd's repeats of `failed` sent around the
        // restart job, and the start, all older than the read.
        let changes = [
            to("failed", "failed"),
            to("failed", "failed"),
            to("activating", "start"),
            to("active", "running"),
        ];
        let (told, r) = run(
            unit("failed", "failed"),
            unit("active", "running"),
            &changes,
        );
        assert_eq!(told, Vec::<String>::new());
        assert!(r.stream().is_active());
    }

    #[test]
    fn a_failure_over_by_the_read_is_told_in_order() {
        // Crashed and restarted by systemd's Restart= while the loop was
        // busy: the read saw it active, only the signals saw it fail. The
        // deactivating before the failure is no news; from the failure
        // on, every move is told, back to the read's state.
        let (told, _) = run(
            unit("active", "running"),
            unit("active", "running"),
            &self_heal(),
        );
        assert_eq!(
            told,
            [
                "failed/failed",
                "activating/auto-restart",
                "inactive/dead",
                "activating/start",
                "active/running"
            ]
        );
    }

    #[test]
    fn a_crash_the_read_caught_in_auto_restart_is_not_told_again() {
        // The read caught the unit in auto-restart (and told the crash);
        // the signals older than it pass through failed on the way there.
        let (told, r) = run(
            unit("active", "running"),
            unit("activating", "auto-restart"),
            &self_heal()[..3],
        );
        assert_eq!(told, Vec::<String>::new());
        assert!(r.stream().is_auto_restarting());
    }

    #[test]
    fn a_crash_the_read_caught_failed_is_not_told_twice() {
        let (told, r) = run(
            unit("active", "running"),
            unit("failed", "failed"),
            &[to("failed", "failed")],
        );
        assert_eq!(told, Vec::<String>::new());
        assert!(r.stream().is_failed(), "the stream follows the signal");
    }

    #[test]
    fn a_crash_the_read_caught_half_undone_is_told() {
        // The read caught the restart job starting it: that told nothing,
        // so the failure in the signals is news, told up to the read.
        let (told, _) = run(
            unit("active", "running"),
            unit("activating", "start"),
            &self_heal()[..5],
        );
        assert_eq!(
            told,
            [
                "failed/failed",
                "activating/auto-restart",
                "inactive/dead",
                "activating/start"
            ]
        );
    }

    #[test]
    fn two_crashes_between_two_looks_are_both_told() {
        let mut changes = self_heal();
        changes.extend(self_heal());
        let (told, _) = run(
            unit("active", "running"),
            unit("active", "running"),
            &changes,
        );
        assert_eq!(told.len(), 10, "{told:?}");
        assert_eq!(told.iter().filter(|t| *t == "failed/failed").count(), 2);
    }

    #[test]
    fn an_operators_restart_between_two_looks_is_not_news() {
        let changes = [
            to("deactivating", "stop-sigterm"),
            to("inactive", "dead"),
            to("activating", "start"),
            to("active", "running"),
        ];
        let (told, _) = run(
            unit("active", "running"),
            unit("active", "running"),
            &changes,
        );
        assert_eq!(told, Vec::<String>::new());
    }

    #[test]
    fn a_newer_read_ends_the_telling() {
        // Mid-way through telling a crash, a second read finds the unit in
        // auto-restart: the rest of the stale path is that read's news.
        let changes = self_heal();
        let mut r = Replay::new(unit("active", "running"), unit("active", "running"));
        assert!(r.step(&changes[0]).is_none());
        assert!(r.step(&changes[1]).is_some(), "the failure is news");
        r.reread(unit("activating", "auto-restart"));
        assert!(r.step(&changes[2]).is_none(), "the read showed it");
        assert!(
            r.step(&changes[3]).is_none(),
            "inactive is no class: not news"
        );
    }
}

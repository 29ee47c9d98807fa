//! The journal checks' follower, as the daemon runs it: started with the
//! checks (and again when a reload rebuilds them), its news of new counts
//! taken in on the loop, stopped with the daemon after its last save.

use super::*;
use crate::checks::journal::follow::Follower;
use crate::checks::{How, Status};

/// The follower's counts and cursor, in the state directory.
pub const JOURNAL_STATE: &str = "journal.json";

/// How long the start waits for the follower to read the journal's
/// backlog, so that the first snapshot has the counts.
const FIRST_READ: Duration = Duration::from_secs(2);

/// A journal check: graded from the follower's counts.
pub(super) fn is_journal(d: &CheckDef) -> bool {
    matches!(&d.how, How::State(s) if s.journal().is_some())
}

impl Supervisor {
    /// Stops the running follower (after its last save) and starts one for
    /// the current checks, if any is a journal check.
    pub(super) async fn follow_journal(&mut self, first: bool) {
        if let Some(old) = self.journal.take() {
            old.stop(Duration::from_secs(3)).await;
        }
        let watches: Vec<_> = self
            .checks
            .iter()
            .filter_map(|d| match &d.how {
                How::State(s) => s.journal(),
                How::Probe(_) => None,
            })
            .collect();
        let state = self.config.daemon.state_dir.join(JOURNAL_STATE);
        self.journal = Follower::start(watches, state);
        // The sweep that follows (the first, or the reload's), which reads
        // the units first, grades the checks: graded here, a new unit's
        // would fail for want of systemd's answer.
        if first {
            if let Some(j) = self.journal.as_mut() {
                // The first news is the backlog read (or a failure said).
                let _ = tokio::time::timeout(FIRST_READ, j.next()).await;
            }
        }
    }

    /// The follower counted something new: the journal checks graded again,
    /// a failing one that restarts its unit acted on.
    pub(super) async fn on_journal(&mut self) {
        let before: Vec<Status> = self.results.iter().map(|r| r.status).collect();
        self.run_checks_where(is_journal);
        let mut changed = false;
        let mut restart = Vec::new();
        for (i, d) in self.checks.iter().enumerate() {
            if !is_journal(d) {
                continue;
            }
            changed |= before.get(i) != Some(&self.results[i].status);
            if let (true, Some(u)) = (d.restart, &d.unit) {
                if self.results[i].status != Status::Pass {
                    restart.push(u.clone());
                }
            }
        }
        if !restart.is_empty() {
            let now = SystemTime::now();
            for u in restart {
                self.supervise_unit(&u, now).await;
            }
            self.persist();
        }
        let now = tokio::time::Instant::now();
        if changed {
            self.publish_by(now + Duration::from_millis(50));
        } else {
            self.publish_by((self.published + Duration::from_secs(1)).max(now));
        }
    }

    /// The stop: the follower's last save.
    pub(super) async fn stop_journal(&mut self) {
        if let Some(j) = self.journal.take() {
            j.stop(Duration::from_secs(3)).await;
        }
    }
}

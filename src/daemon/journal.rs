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
        self.stop_journal().await;
        let watches = crate::checks::journal::watches(&self.checks);
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

    /// The follower counted something new: the journal checks graded
    /// again, each new result acted on as a probe's is.
    pub(super) async fn on_journal(&mut self) {
        let journal: Vec<usize> = (0..self.checks.len())
            .filter(|&i| is_journal(&self.checks[i]))
            .collect();
        let before: Vec<Status> = journal.iter().map(|&i| self.results[i].status).collect();
        self.run_checks_where(is_journal);
        for (i, was) in journal.into_iter().zip(before) {
            let changed = self.results[i].status != was;
            self.after_result(i, changed).await;
        }
    }

    /// The stop: the follower's last save.
    pub(super) async fn stop_journal(&mut self) {
        if let Some(j) = self.journal.take() {
            j.stop(Duration::from_secs(3)).await;
        }
    }
}

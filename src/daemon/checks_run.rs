//! The checks' results on the supervisor: state checks run here (on a
//! unit's signal, or a sweep), probe results arrive as messages from their
//! tasks, both pass through `fail_after`/`pass_after`, and a probe that has
//! said nothing for twice its interval is failed for it.

use super::*;
use crate::checks::runner::Done;
use crate::checks::{CheckContext, How, Status};

/// How long probe results wait to be published together: those that
/// changed no status up to a second, a change 50 ms (its event is emitted
/// at once; a burst of changes, a network blip failing a hundred checks,
/// makes one snapshot, not a hundred).
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
const PUBLISH_CHANGE: Duration = Duration::from_millis(50);

impl Supervisor {
    /// Builds the configuration's checks and starts their probes. A check
    /// whose key was there before keeps its result and its streak, so a
    /// reload neither repeats nor forgets a status.
    pub(super) fn start_checks(&mut self) {
        let defs = checks::build_all(&self.config);
        let now = SystemTime::now();
        let mut results = Vec::with_capacity(defs.len());
        let mut flaps = Vec::with_capacity(defs.len());
        let mut since = Vec::with_capacity(defs.len());
        // By key: a search of the old list for each new check was 200
        // million comparisons at 14,000 checks.
        let old: HashMap<&str, usize> = self
            .checks
            .iter()
            .enumerate()
            .map(|(i, d)| (d.key(), i))
            .collect();
        for d in &defs {
            match old.get(d.key()).copied() {
                Some(i) => {
                    results.push(self.results[i].clone());
                    flaps.push(self.flaps[i]);
                    since.push(self.since[i]);
                }
                None => {
                    results.push(d.pending(now));
                    flaps.push(Flap::default());
                    since.push(now);
                }
            }
        }
        // The old tasks stop before the new start: no probe runs twice.
        self.runner = None;
        self.generation += 1;
        self.runner = Some(Runner::start(&defs, self.generation));
        self.stale = vec![false; defs.len()];
        self.index = Index::new(&self.config, &defs);
        self.checks = defs;
        self.results = results;
        self.flaps = flaps;
        self.since = since;
        self.start_containers();
    }

    /// Runs the state checks, all or only those about `unit`, and logs
    /// status changes. (A state check that has not run yet runs anyway.)
    pub(super) fn run_checks(&mut self, unit: Option<&str>) {
        self.run_checks_where(|d| unit.is_none_or(|u| d.unit.as_deref() == Some(u)));
    }

    /// Runs the state checks `which` picks (and any not run yet).
    pub(super) fn run_checks_where(&mut self, which: impl Fn(&CheckDef) -> bool) {
        let now = SystemTime::now();
        // One result at a time, each replacing its predecessor at once: a
        // sweep of 14,000 checks built into a list first held two sets of
        // results (4 MB more, and a heap left fragmented after it).
        for i in 0..self.checks.len() {
            let d = &self.checks[i];
            let How::State(s) = &d.how else { continue };
            if !which(d) && !self.results[i].pending {
                continue;
            }
            let ctx = CheckContext {
                now,
                units: &self.units,
                backoff: &self.store.units,
                systemd_error: self.bus_error.as_deref(),
                containers: &self.containers,
            };
            let r = checks::run_state(d, s.as_ref(), &ctx);
            self.take_result(i, r);
        }
    }

    /// Takes a raw result of check `i` in: the shown status follows
    /// fail_after and pass_after, the change is logged. Whether the shown
    /// status changed.
    fn take_result(&mut self, i: usize, mut r: checks::Found) -> bool {
        let d = &self.checks[i];
        let before = (!self.results[i].pending).then_some(self.results[i].status);
        let raw = r.status;
        let seen = self.flaps[i].see(raw, d.fail_after, d.pass_after);
        if let Some((n, needed)) = seen.held {
            let note = format!(
                "{n} of {needed} {} results before the status changes",
                if raw == Status::Pass { "good" } else { "bad" }
            );
            r.output = Some(match r.output.take() {
                Some(o) => format!("{o} ({note})").into(),
                None => note.into(),
            });
            r.status = seen.status;
        }
        log_check_change(d, &r, before);
        let changed = before != Some(r.status);
        self.results[i] = r;
        changed
    }

    /// A probe finished a run.
    pub(super) async fn on_probe(&mut self, done: Done) {
        if done.generation != self.generation || done.index >= self.checks.len() {
            return;
        }
        let i = done.index;
        let r = self.checks[i].found(done.outcome, done.started, done.took);
        self.since[i] = SystemTime::now();
        self.stale[i] = false;
        let changed = self.take_result(i, r);
        self.ready_due(SystemTime::now());
        self.after_result(i, changed).await;
    }

    /// What a new result of check `i` (not graded by a sweep, which does
    /// both itself) calls for: its unit looked at, when it restarts it,
    /// and a snapshot.
    pub(super) async fn after_result(&mut self, i: usize, changed: bool) {
        let d = &self.checks[i];
        let restart_unit = d.unit.clone().filter(|_| d.restart);
        if let Some(u) = restart_unit {
            // A failing restart check is looked at every run (it may be
            // the unit's grace that held the restart back last time).
            if changed || self.results[i].status != Status::Pass {
                self.supervise_unit(&u, SystemTime::now()).await;
                self.persist();
            }
        }
        let now = tokio::time::Instant::now();
        if changed {
            self.publish_by(now + PUBLISH_CHANGE);
        } else if self.sweep_every > PUBLISH_EVERY {
            // A second after the last snapshot, not after this result:
            // a sweep's snapshot counts too.
            self.publish_by((self.published + PUBLISH_EVERY).max(now));
        }
        // (With sweeps at least once a second, the next sweep publishes
        // it: the probes add no writes of their own.)
    }

    /// Publishes by `at` (sooner if already due sooner).
    pub(super) fn publish_by(&mut self, at: tokio::time::Instant) {
        if self.publish_at.is_none_or(|t| t > at) {
            self.publish_at = Some(at);
        }
    }

    /// When a probe next owes a result: twice its interval after its last.
    pub(super) fn next_stale(&self) -> Option<SystemTime> {
        self.checks
            .iter()
            .enumerate()
            .filter(|(i, d)| d.is_probe() && !self.stale[*i])
            .map(|(i, d)| self.since[i] + d.interval * 2)
            .min()
    }

    /// Fails the probes that have owed a result for twice their interval:
    /// a result is never older than that without saying so.
    pub(super) fn stale_checks(&mut self) {
        let now = SystemTime::now();
        for i in 0..self.checks.len() {
            let d = &self.checks[i];
            if !d.is_probe() || self.stale[i] || now < self.since[i] + d.interval * 2 {
                continue;
            }
            let last = if self.results[i].pending {
                "since the daemon started".to_string()
            } else {
                format!("since {}", self.results[i].time)
            };
            let o = checks::Outcome::error(format!(
                "no result {last} (it runs every {}, each run at most {}): the check is stuck or the daemon overloaded",
                checks::fmt_duration(d.interval),
                checks::fmt_duration(d.timeout)
            ));
            let r = d.found(o, now, Duration::ZERO);
            self.flaps[i] = Flap::default();
            // Said at once, whatever fail_after asks: it is no measurement.
            self.flaps[i].see(Status::Fail, 1, 1);
            let before = (!self.results[i].pending).then_some(self.results[i].status);
            log_check_change(&self.checks[i], &r, before);
            self.results[i] = r;
            self.stale[i] = true;
        }
    }

    /// The stale deadline passed.
    pub(super) fn stale_due(&mut self) {
        self.stale_checks();
        self.publish();
    }

    /// Is `unit` healthy: active, and every check that restarts it passing?
    pub(super) fn healthy(&self, unit: &str) -> bool {
        self.units.get(unit).is_some_and(UnitStatus::is_active)
            && self
                .index
                .restart_checks
                .get(unit)
                .is_none_or(|ix| ix.iter().all(|&i| self.results[i].status == Status::Pass))
    }
}

//! `fail_after` and `pass_after`: the status a check shows only flips after
//! that many consecutive results the other way, so that one lost packet
//! neither pages nor restarts. A pure function of the results seen, so it
//! is tested without a clock.

use super::Status;

/// One check's shown status and the run of results against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flap {
    shown: Status,
    /// Consecutive results that disagree with `shown` (good ones while it
    /// is bad, bad ones while it is good).
    streak: u32,
}

impl Default for Flap {
    /// Before any result a check is taken as passing: its first failures
    /// count towards `fail_after` like any others.
    fn default() -> Self {
        Flap {
            shown: Status::Pass,
            streak: 0,
        }
    }
}

/// What a new result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The status to show.
    pub status: Status,
    /// The result disagrees with the shown status but has not flipped it
    /// yet: `(n, needed)` so far.
    pub held: Option<(u32, u32)>,
}

impl Flap {
    pub fn shown(&self) -> Status {
        self.shown
    }

    /// Takes a raw result in.
    pub fn see(&mut self, raw: Status, fail_after: u32, pass_after: u32) -> Seen {
        let bad = |s: Status| s != Status::Pass;
        if bad(raw) == bad(self.shown) {
            // Same side: a warn that turns into a fail (or back) is shown
            // at once; only crossing between good and bad waits.
            self.shown = raw;
            self.streak = 0;
            return Seen {
                status: raw,
                held: None,
            };
        }
        self.streak += 1;
        let needed = if bad(raw) { fail_after } else { pass_after }.max(1);
        if self.streak >= needed {
            self.shown = raw;
            self.streak = 0;
            Seen {
                status: raw,
                held: None,
            }
        } else {
            Seen {
                status: self.shown,
                held: Some((self.streak, needed)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::{Fail, Pass, Warn};

    fn run(results: &[Status], fail_after: u32, pass_after: u32) -> Vec<Status> {
        let mut f = Flap::default();
        results
            .iter()
            .map(|r| f.see(*r, fail_after, pass_after).status)
            .collect()
    }

    #[test]
    fn two_bad_results_do_not_flip_a_fail_after_of_three() {
        assert_eq!(
            run(&[Fail, Fail, Pass, Fail, Fail, Pass], 3, 1),
            [Pass, Pass, Pass, Pass, Pass, Pass]
        );
        assert_eq!(
            run(&[Fail, Fail, Fail, Fail], 3, 1),
            [Pass, Pass, Fail, Fail]
        );
    }

    #[test]
    fn pass_after_holds_a_failure_until_enough_good_results() {
        assert_eq!(
            run(&[Fail, Pass, Fail, Pass, Pass, Fail], 1, 2),
            [Fail, Fail, Fail, Fail, Pass, Fail]
        );
    }

    #[test]
    fn the_defaults_follow_every_result() {
        let r = [Pass, Fail, Warn, Pass, Warn];
        assert_eq!(run(&r, 1, 1), r);
    }

    #[test]
    fn a_bad_result_escalates_at_once_and_says_how_far_a_flip_is() {
        let mut f = Flap::default();
        assert_eq!(f.see(Warn, 2, 1).held, Some((1, 2)));
        assert_eq!(f.see(Warn, 2, 1).status, Warn);
        // Warn to fail is the same side: no waiting.
        assert_eq!(
            f.see(Fail, 2, 1),
            Seen {
                status: Fail,
                held: None
            }
        );
        assert_eq!(f.shown(), Fail);
    }
}

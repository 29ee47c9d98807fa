//! Restarts: whether a unit is unitwatch's to restart, planning one on the
//! backoff (or refusing it at the hourly cap), a failing check's restart,
//! and issuing the planned ones through systemd when they are due.

use futures_util::StreamExt;

use super::*;
use crate::checks::Status;

/// Restart calls to systemd in flight at once: enough that a burst does
/// not wait on round trips one by one, well under the system bus's
/// pending-reply limit per connection (dbus-daemon's system.conf: 128),
/// which the sweep's reads share.
const RESTARTS_IN_FLIGHT: usize = 16;

/// Is a restart job that unitwatch queued at `sent` still to be seen to
/// run at `now`? Then a `failed` that a sweep reads is the state from
/// before it, not a new failure. For [`RESTART_JOB_GRACE`] at most; a
/// wall clock stepped back past `sent` ends it too, as the wait can no
/// longer be measured and a unit left unrestarted is the worse mistake.
fn restart_in_flight(sent: Option<SystemTime>, now: SystemTime) -> bool {
    sent.is_some_and(|t| {
        now.duration_since(t)
            .is_ok_and(|waited| waited < RESTART_JOB_GRACE)
    })
}

impl Supervisor {
    /// Does the unit have `Restart=` set, so that systemd may bring it back
    /// itself? Read at the failure, since the unit file may have changed.
    pub(super) async fn systemd_may_restart(&self, name: &str) -> bool {
        let (Some(bus), Some(path)) = (&self.bus, self.paths.get(name)) else {
            return false;
        };
        bus.restart_setting(name, path)
            .await
            .is_ok_and(|r| r != "no")
    }

    /// Decides on one unit: plan a restart, note health, or leave it.
    pub(super) async fn supervise_unit(&mut self, name: &str, now: SystemTime) {
        let Some(cfg) = self.unit_config(name) else {
            return;
        };
        if !cfg.restart() {
            return;
        }
        let Some(cur) = self.units.get(name).cloned() else {
            return;
        };
        if self.healthy(name) {
            self.note_healthy(name, now);
            return;
        }
        let in_flight = restart_in_flight(self.restarting.get(name).copied(), now);
        if cur.is_failed() && !self.settling.contains_key(name) && !in_flight {
            let reason = if cur.start_limit_hit() {
                "start-limit-hit"
            } else {
                "failed"
            };
            self.plan(name, now, reason);
        } else if cur.is_active() {
            self.check_restart(name, now).await;
        }
    }

    /// Notes that `name` (a unit, or a container's `NAME.container`) is
    /// healthy: a planned restart is cancelled, and after reset_after the
    /// backoff starts over.
    pub(super) fn note_healthy(&mut self, name: &str, now: SystemTime) {
        let out = self.store.entry(name).record_healthy(now, &self.policy);
        if out.cancelled {
            self.dirty = true;
            log::info!(unitwatch_unit = name; "planned restart of {name} cancelled: it is healthy again");
        }
        if out.reset {
            self.dirty = true;
            Event::new(
                Kind::BackoffReset,
                Severity::Info,
                format!(
                    "{name} healthy for {}: backoff starts over at {}",
                    fmt_delay(self.policy.reset_after),
                    fmt_delay(self.policy.initial)
                ),
            )
            .unit(name)
            .quiet()
            .emit();
        }
    }

    /// A failing check with on_fail = restart (a stale heartbeat with
    /// restart_unit) restarts its active unit, once the unit has been up
    /// for the check's grace (a fresh start gets time to come up).
    pub(super) async fn check_restart(&mut self, name: &str, now: SystemTime) {
        let failing: Vec<(String, Duration, &'static str)> = self
            .index
            .restart_checks
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| (&self.checks[i], &self.results[i]))
            .filter(|(_, r)| !r.pending && r.status != Status::Pass)
            .map(|(d, _)| (d.id.key(), d.grace, d.restart_reason))
            .collect();
        let Some(grace) = failing.iter().map(|s| s.1).max() else {
            return;
        };
        if self.store.entry(name).pending_restart_at.is_some() {
            return;
        }
        let (Some(bus), Some(path)) = (&self.bus, self.paths.get(name)) else {
            return;
        };
        let up_since = match bus.active_enter(path).await {
            Ok(t) => t,
            Err(e) => {
                log::warn!(unitwatch_unit = name; "cannot read ActiveEnterTimestamp of {name}: {e}");
                return;
            }
        };
        let up_for = up_since.and_then(|t| now.duration_since(t).ok());
        if up_for.is_some_and(|d| d < grace) {
            return;
        }
        log::info!(
            unitwatch_unit = name;
            "{name} is active but {} failing: restarting it",
            failing.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", ")
        );
        self.store.entry(name).record_failure(now);
        self.plan(name, now, failing[0].2);
    }

    pub(super) fn plan(&mut self, name: &str, now: SystemTime, reason: &str) {
        // Taken: a later plan (after a restart that systemd refused) is not
        // for this failure, and counts from its own moment.
        let failed = self.failed_at.remove(name).unwrap_or(now);
        let decision = self
            .store
            .entry(name)
            .plan_restart_since(now, failed, &self.policy, reason);
        match decision {
            Decision::Schedule { at, delay, attempt } => {
                self.dirty = true;
                Event::new(
                    Kind::RestartScheduled,
                    Severity::Warning,
                    format!(
                        "restarting {name} in {}{} (attempt {attempt}, reason: {reason})",
                        fmt_delay(delay),
                        if failed < now {
                            " from its failure"
                        } else {
                            ""
                        }
                    ),
                )
                .unit(name)
                .delay(delay)
                .due(at)
                // The failure and the restart itself reach alert channels.
                .quiet()
                .emit();
            }
            Decision::AlreadyScheduled { .. } => {}
            Decision::LimitReached { first, retry_at } => {
                if first {
                    self.dirty = true;
                    Event::new(
                        Kind::RestartLimit,
                        Severity::Critical,
                        format!(
                            "{name}: {} restarts in the last hour, the limit: not restarting it again before {} unless it recovers or `unitwatchd backoff reset {name}`",
                            self.policy.max_per_hour,
                            humantime::format_rfc3339_seconds(retry_at)
                        ),
                    )
                    .unit(name)
                    .emit();
                }
            }
        }
    }

    /// When the next planned restart is due.
    pub(super) fn next_deadline(&self) -> Option<SystemTime> {
        let containers = self.next_container_deadline();
        if self.bus.is_none() {
            return containers;
        }
        // Asked at every turn of the loop (with many probes, hundreds of
        // times a second): the rare pending restart first, the config's
        // linear lookup only for it.
        self.store
            .units
            .iter()
            .filter_map(|(n, u)| u.pending_restart_at.map(|t| (n, t.0)))
            .filter(|(n, _)| self.unit_config(n).is_some_and(|u| u.restart()))
            .map(|(_, t)| t)
            .chain(containers)
            .min()
    }

    /// Issues every restart that is due: their calls to systemd at once,
    /// up to [`RESTARTS_IN_FLIGHT`], each told as its answer comes.
    ///
    /// One after another, a burst of 50 failures due together (a shared
    /// dependency gone) restarted the 50th 190 ms late: each call is a
    /// round trip to systemd, and as shipped a polkit check. In flight
    /// together, systemd and polkitd work through them while the answers
    /// come back.
    pub(super) async fn restart_due(&mut self) {
        let now = SystemTime::now();
        // Containers through their watchers, which answer by message;
        // and the ready checks of those restarted, judged at their end.
        self.recover_due_containers(now);
        self.ready_due(now);
        let due: Vec<String> = self
            .store
            .units
            .iter()
            .filter(|(n, u)| {
                u.pending_restart_at.is_some_and(|t| t.0 <= now)
                    && self.unit_config(n).is_some_and(|c| c.restart())
            })
            .map(|(n, _)| n.clone())
            .collect();
        let Some(bus) = self.bus.clone() else { return };
        // reset-failed also clears systemd's start-limit counter: without
        // it a unit whose Restart= burst hit the limit refuses the start
        // (systemd 252 then shows Result=exit-code, not start-limit-hit,
        // so the result alone cannot tell). unitwatch's own backoff and
        // hourly cap take the limit's place. Each call is a polkit check
        // (a few ms), so it is made only where the counter can be spent:
        // units with Restart=, or that say start-limit-hit.
        // Restart= as read at the failure; read again only when that
        // was before this daemon started (a restart planned then).
        let mut calls = Vec::with_capacity(due.len());
        for name in due {
            let status = self.units.get(&name);
            let needs_reset = status.is_some_and(UnitStatus::start_limit_hit)
                || (status.is_some_and(UnitStatus::is_failed)
                    && match self.may_restart.get(&name) {
                        Some(known) => *known,
                        None => self.systemd_may_restart(&name).await,
                    });
            calls.push((name, needs_reset));
        }
        let mut answers =
            futures_util::stream::iter(calls.into_iter().map(|(name, needs_reset)| {
                let bus = bus.clone();
                async move {
                    if needs_reset {
                        if let Err(e) = bus.reset_failed(&name).await {
                            log::warn!(unitwatch_unit = name.as_str(); "{e}");
                        }
                    }
                    let outcome = bus.restart(&name).await;
                    (name, outcome)
                }
            }))
            .buffered(RESTARTS_IN_FLIGHT);
        while let Some((name, outcome)) = answers.next().await {
            self.restarted(name, now, outcome.map_err(|e| e.to_string()));
            #[cfg(feature = "test-hooks")]
            self.test_late_read("test-late-read-restart", false).await;
        }
        self.persist();
        self.publish_soon();
    }

    /// Records and tells one restart's answer (from systemd, or a
    /// container's engine).
    pub(super) fn restarted(&mut self, name: String, now: SystemTime, outcome: Result<(), String>) {
        let entry = self.store.entry(&name);
        let reason = entry.pending_reason.clone().unwrap_or_default();
        let delay = entry.next_delay(&self.policy);
        entry.record_restart(now, &self.policy);
        let attempt = entry.attempts;
        self.dirty = true;
        // Handed to the writer before it is told: on disk within one
        // write of the event (see publisher).
        self.persist();
        match outcome {
            Ok(()) => {
                self.restarting.insert(name.clone(), now);
                Event::new(
                    Kind::UnitRestarted,
                    Severity::Error,
                    format!(
                        "restarted {name} (attempt {attempt}, after {}, reason: {reason})",
                        fmt_delay(delay)
                    ),
                )
                .unit(&name)
                .delay(delay)
                .emit()
            }
            Err(e) => Event::new(
                Kind::RestartFailed,
                Severity::Critical,
                format!("could not restart {name} (attempt {attempt}): {e}"),
            )
            .unit(&name)
            .emit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_in_flight_holds_for_the_grace_and_no_longer() {
        let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |ms: u64| sent + Duration::from_millis(ms);
        assert!(!restart_in_flight(None, at(0)), "nothing sent");
        assert!(restart_in_flight(Some(sent), at(0)));
        assert!(restart_in_flight(Some(sent), at(4_999)));
        assert!(
            !restart_in_flight(Some(sent), at(5_000)),
            "the grace is over"
        );
        assert!(!restart_in_flight(Some(sent), at(3_600_000)));
    }

    #[test]
    fn a_clock_stepped_back_ends_the_wait() {
        // Before: the wait read as zero, so a step back of an hour held
        // every failed unit unrestarted for that hour.
        let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!restart_in_flight(
            Some(sent),
            sent - Duration::from_secs(3600)
        ));
    }
}

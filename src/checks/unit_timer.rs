//! Timers: a `[[unit]]` whose name ends in `.timer` is watched for firing
//! on schedule, not for running. Its `schedule` check fails when the timer
//! is stopped, when it is overdue by more than `max_late` (default 10 % of
//! its period, at least a minute: `NextElapseUSec*` passed and no new
//! `LastTriggerUSec`), or when the unit it triggers ended in failure on its
//! last run. One that has not fired since boot is said so.
//!
//! A timer is never restarted by unitwatch: restarting it would not run the
//! missed job, and would hide that the schedule broke. `restart = true` on
//! a timer is a config error; its default is false.
//!
//! The figures come from the resource reader (`unit_resources::read_targets`)
//! after each sweep, like the other polled figures.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::unit_resources::not_read_yet;
use crate::checks::{fmt_duration, CheckContext, CheckDef, How, Measurement, Outcome, StateCheck, Status};
use crate::config::{Bad, Config, KeySeg};
use crate::manual::KeyDoc;
use crate::units::{Reading, TimerInfo};

const LAST: MetricDoc = MetricDoc {
    name: "unit_timer_last_trigger_timestamp_seconds",
    help: "When the timer last fired (LastTriggerUSec), seconds since the epoch; 0 if not since boot",
    otlp: "unitwatch.unit.timer.last_trigger",
    otlp_unit: "s",
    otlp_scale: 1.0,
};

pub const KIND: Kind = Kind {
    name: "unit_timer",
    keys: &[KeyDoc::section("[unit]", "max_late", "10 % of the timer's period, at least \"1m\"", "\"15m\"",
        "Timers only (a name ending in .timer, which is watched for firing on time and never restarted): fail when the timer is this far past its scheduled elapse without having fired.")],
    metrics: &[LAST],
    make: Make::Section { problems },
};

pub const BUILD: Build = Build::Section(build);

/// The least `max_late` by default.
const MIN_LATE: Duration = Duration::from_secs(60);

fn problems(config: &Config, bad: &mut Bad<'_>) {
    use KeySeg::{Index, Key};
    for (i, u) in config.units.iter().enumerate() {
        if u.is_timer() && u.restart_set == Some(true) {
            bad(
                vec![Key("unit"), Index(i), Key("restart")],
                "a timer is never restarted: it is watched for firing on schedule (leave restart out; its service can be a [[unit]] of its own)".into(),
            );
        }
        if !u.is_timer() && u.max_late.is_some() {
            bad(
                vec![Key("unit"), Index(i), Key("max_late")],
                format!("{} is not a timer: max_late is for .timer units", u.name),
            );
        }
        if u.max_late.is_some_and(|d| d.is_zero()) {
            bad(vec![Key("unit"), Index(i), Key("max_late")], "must be greater than zero".into());
        }
    }
}

pub struct TimerCheck {
    unit: crate::checks::Shared,
    max_late: Option<Duration>,
}

fn build(config: &Config) -> Vec<CheckDef> {
    config
        .units
        .iter()
        .filter(|u| u.is_timer())
        .map(|u| {
            let check = Arc::new(TimerCheck {
                unit: u.name.shared(),
                max_late: u.max_late,
            });
            CheckDef::for_unit(
                u.name.shared(),
                "schedule",
                How::State(check),
                config.daemon.interval,
            )
        })
        .collect()
}

fn at(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

fn when(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn ago(now: SystemTime, t: SystemTime) -> String {
    fmt_duration(Duration::from_secs(now.duration_since(t).unwrap_or_default().as_secs()))
}

impl StateCheck for TimerCheck {
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome {
        let s = match ctx.unit_status(&self.unit) {
            Ok(s) => s,
            Err(o) => return o,
        };
        if !s.is_active() {
            return Outcome::error(format!(
                "stopped (ActiveState={}): it will not fire until started",
                s.active_state
            ));
        }
        let info = match s.resources.as_ref().and_then(|r| r.timer.as_ref()) {
            None => return not_read_yet(),
            Some(Reading::Value(i)) => i,
            Some(Reading::Unavailable(why)) => return Outcome::error(why.clone()),
            Some(Reading::Error(why)) => return Outcome::error(why.clone()),
        };
        self.judge(info, ctx.now)
    }
}

impl TimerCheck {
    /// How late the timer may be: `max_late`, else a tenth of the period
    /// between its last trigger and its next elapse, at least a minute.
    fn max_late(&self, i: &TimerInfo) -> Duration {
        if let Some(m) = self.max_late {
            return m;
        }
        match i.next_elapse_us {
            Some(next) if i.last_trigger_us > 0 && next > i.last_trigger_us => {
                (Duration::from_micros(next - i.last_trigger_us) / 10).max(MIN_LATE)
            }
            _ => MIN_LATE,
        }
    }

    fn judge(&self, i: &TimerInfo, now: SystemTime) -> Outcome {
        let fired = (i.last_trigger_us > 0).then(|| at(i.last_trigger_us));
        let value = fired
            .map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs())
            .unwrap_or(0);
        let o = |status: Status, said: String| {
            Outcome::new(status, value, Some("s since the epoch"))
                .with_output(said)
                .measure(Measurement::new(LAST.name, value as f64).label("unit", self.unit.clone()))
        };
        let last = match fired {
            Some(t) => format!("last fired {} ago ({})", ago(now, t), when(t)),
            None => "has not fired since boot".into(),
        };
        // The unit it starts ended badly on its last run.
        let failed = i.triggers_state.as_deref() == Some("failed")
            || i.triggers_result.as_deref().is_some_and(|r| r != "success");
        if failed && fired.is_some() {
            return o(
                Status::Fail,
                format!(
                    "{} failed on its last run (Result={}); {last}",
                    i.triggers,
                    i.triggers_result.as_deref().unwrap_or("unknown")
                ),
            );
        }
        let Some(next) = i.next_elapse_us.map(at) else {
            return o(Status::Pass, format!("{last}; nothing scheduled next"));
        };
        let late = now.duration_since(next).unwrap_or_default();
        let max = self.max_late(i);
        if late > max {
            return o(
                Status::Fail,
                format!(
                    "late: due at {} ({} ago, max_late {}) and not fired; {last}",
                    when(next),
                    ago(now, next),
                    fmt_duration(max)
                ),
            );
        }
        let next_said = match next.duration_since(now) {
            Ok(d) => format!("next in {}", fmt_duration(Duration::from_secs(d.as_secs()))),
            Err(_) => format!("due since {}", ago(now, next)),
        };
        o(Status::Pass, format!("{last}; {next_said}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{UnitStatus, UnitTable};

    const NOW: u64 = 1_800_000_000_000_000;
    const MIN: u64 = 60_000_000;

    fn judge(max_late: Option<Duration>, i: TimerInfo) -> Outcome {
        TimerCheck {
            unit: "backup.timer".into(),
            max_late,
        }
        .judge(&i, at(NOW))
    }

    fn info(last: u64, next: Option<u64>) -> TimerInfo {
        TimerInfo {
            last_trigger_us: last,
            next_elapse_us: next,
            triggers: "backup.service".into(),
            triggers_state: Some("inactive".into()),
            triggers_result: Some("success".into()),
        }
    }

    #[test]
    fn on_time_late_and_never_fired() {
        // Hourly: fired 50 minutes ago, due in 10.
        let o = judge(None, info(NOW - 50 * MIN, Some(NOW + 10 * MIN)));
        assert_eq!(o.status, Status::Pass);
        assert!(o.output.as_deref().unwrap().ends_with("; next in 10m"), "{o:?}");
        // Due 5 minutes ago: within the default 6 minutes (a tenth of the hour).
        assert_eq!(judge(None, info(NOW - 65 * MIN, Some(NOW - 5 * MIN))).status, Status::Pass);
        let o = judge(None, info(NOW - 67 * MIN, Some(NOW - 7 * MIN)));
        assert_eq!(o.status, Status::Fail);
        assert!(o.output.as_deref().unwrap().starts_with("late: due at "), "{o:?}");
        assert!(o.output.as_deref().unwrap().contains("(7m ago, max_late 6m)"), "{o:?}");
        // A short period still gets a minute; max_late overrides.
        assert_eq!(judge(None, info(NOW - 70_000_000, Some(NOW - 50_000_000))).status, Status::Pass);
        assert_eq!(
            judge(Some(Duration::from_secs(30)), info(NOW - 70_000_000, Some(NOW - 50_000_000))).status,
            Status::Fail
        );
        let o = judge(None, info(0, Some(NOW + MIN)));
        assert_eq!(o.status, Status::Pass);
        assert!(o.output.as_deref().unwrap().starts_with("has not fired since boot; next in 1m"), "{o:?}");
        assert_eq!(o.measurements[0].value, 0.0);
    }

    #[test]
    fn a_failed_service_fails_the_timer() {
        let mut i = info(NOW - MIN, Some(NOW + MIN));
        i.triggers_state = Some("failed".into());
        i.triggers_result = Some("exit-code".into());
        let o = judge(None, i);
        assert_eq!(o.status, Status::Fail);
        assert!(
            o.output.as_deref().unwrap().starts_with("backup.service failed on its last run (Result=exit-code); last fired 1m ago"),
            "{o:?}"
        );
    }

    #[test]
    fn a_stopped_timer_fails_and_timers_are_never_restarted() {
        let cfg = Config::parse(
            "[[unit]]\nname = \"backup.timer\"\n[[unit]]\nname = \"backup.service\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        assert!(!cfg.units[0].restart() && cfg.units[1].restart());
        let checks = build(&cfg);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].id.key(), "backup.timer:schedule");
        let How::State(check) = &checks[0].how else { panic!() };
        let mut units = UnitTable::new();
        units.insert(
            "backup.timer".into(),
            UnitStatus {
                active_state: "inactive".into(),
                resources: Some(Default::default()),
                ..Default::default()
            },
        );
        let o = check.run(&CheckContext {
            now: SystemTime::now(),
            units: &units,
            backoff: &Default::default(),
            systemd_error: None,
            containers: &Default::default(),
        });
        assert_eq!(o.status, Status::Fail);
        assert_eq!(o.output.as_deref(), Some("stopped (ActiveState=inactive): it will not fire until started"));

        let e = Config::parse(
            "[[unit]]\nname = \"backup.timer\"\nrestart = true\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("t.toml:3:11: unit[0].restart: a timer is never restarted"), "{e}");
        let e = Config::parse(
            "[[unit]]\nname = \"backup.service\"\nmax_late = \"5m\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unit[0].max_late: backup.service is not a timer"), "{e}");
        // The polkit list never names a timer.
        let listed = crate::config::restartable_units(
            "[[unit]]\nname = \"backup.timer\"\n[[unit]]\nname = \"a.service\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(listed.iter().map(|u| u.as_str()).collect::<Vec<_>>(), ["a.service"]);
    }
}

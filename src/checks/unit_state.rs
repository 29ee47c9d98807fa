//! Unit state: is the watched unit active, as systemd reports it? One
//! check per `[[unit]]` (whose keys are the supervisor's, in config.rs).

use std::sync::Arc;

use crate::checks::kind::{Build, Kind, Make};
use crate::checks::{CheckContext, CheckDef, How, Outcome, StateCheck, Status};
use crate::config::{Bad, Config};
use crate::units::UnitStatus;

pub const KIND: Kind = Kind {
    name: "unit",
    keys: &[],
    metrics: &[],
    make: Make::Section {
        problems: no_problems,
    },
};

pub const BUILD: Build = Build::Section(build);

fn no_problems(_: &Config, _: &mut Bad<'_>) {}

pub struct UnitStateCheck {
    unit: crate::checks::Shared,
}

fn build(config: &Config) -> Vec<CheckDef> {
    config
        .units
        .iter()
        .map(|u| {
            let check = Arc::new(UnitStateCheck {
                unit: u.name.shared(),
            });
            let mut def = CheckDef::for_unit(
                u.name.shared(),
                "state",
                How::State(check),
                config.daemon.interval,
            );
            // unit-failed and unit-recovered tell its changes.
            def.quiet = true;
            def
        })
        .collect()
}

/// The verdict on one unit's systemd state, shared with the supervisor's
/// status line so both say the same thing.
pub fn judge(s: &UnitStatus) -> (Status, Option<String>) {
    let result = s.result.as_deref().unwrap_or("unknown");
    match (s.load_state.as_str(), s.active_state.as_str()) {
        ("not-found", _) => (
            Status::Fail,
            Some("unit does not exist (systemd: LoadState=not-found)".into()),
        ),
        ("masked", _) => (Status::Fail, Some("unit is masked".into())),
        ("bad-setting" | "error", _) => (
            Status::Fail,
            Some(format!(
                "unit file could not be loaded (LoadState={})",
                s.load_state
            )),
        ),
        (_, "active" | "reloading") => (Status::Pass, None),
        (_, "activating") if s.is_auto_restarting() => (
            Status::Warn,
            Some(format!(
                "exited (Result={result}); systemd's Restart= is starting it again"
            )),
        ),
        (_, "activating" | "deactivating") => (
            Status::Warn,
            Some(format!("{} ({})", s.active_state, s.sub_state)),
        ),
        (_, "failed") if s.start_limit_hit() => (
            Status::Fail,
            Some(
                "failed: start limit hit (systemd refuses further starts until reset-failed)"
                    .into(),
            ),
        ),
        (_, "failed") => (Status::Fail, Some(format!("failed (Result={result})"))),
        (_, "inactive") => (
            Status::Fail,
            Some(format!("inactive ({}), not running", s.sub_state)),
        ),
        (_, other) => (Status::Fail, Some(format!("unexpected state {other:?}"))),
    }
}

impl StateCheck for UnitStateCheck {
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome {
        let s = match ctx.unit_status(&self.unit) {
            Ok(s) => s,
            Err(o) => return o,
        };
        let (status, output) = judge(s);
        let mut o = Outcome::new(status, s.active_state.clone(), None);
        o.output = output.map(Into::into);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(load: &str, active: &str, sub: &str, result: &str) -> UnitStatus {
        UnitStatus {
            load_state: load.into(),
            active_state: active.into(),
            sub_state: sub.into(),
            result: Some(result.into()),
            ..Default::default()
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            judge(&st("loaded", "active", "running", "success")).0,
            Status::Pass
        );
        let (s, o) = judge(&st("not-found", "inactive", "dead", "success"));
        assert_eq!(s, Status::Fail);
        assert!(o.unwrap().contains("does not exist"));
        let (s, o) = judge(&st("loaded", "failed", "failed", "signal"));
        assert_eq!(
            (s, o.as_deref()),
            (Status::Fail, Some("failed (Result=signal)"))
        );
        let (s, o) = judge(&st("loaded", "failed", "failed", "start-limit-hit"));
        assert_eq!(s, Status::Fail);
        assert!(o.unwrap().contains("start limit hit"));
        let (s, o) = judge(&st("loaded", "activating", "auto-restart", "exit-code"));
        assert_eq!(s, Status::Warn);
        assert!(o.unwrap().contains("Restart="));
        assert_eq!(
            judge(&st("loaded", "inactive", "dead", "success")).0,
            Status::Fail
        );
    }

    #[test]
    fn unreachable_systemd_is_said_plainly() {
        let c = build(
            &crate::config::Config::parse(
                "[[unit]]\nname = \"a.service\"\n",
                std::path::Path::new("t.toml"),
            )
            .unwrap(),
        );
        let units = Default::default();
        let ctx = CheckContext {
            now: std::time::SystemTime::now(),
            units: &units,
            backoff: &Default::default(),
            systemd_error: Some("no system bus"),
            containers: &Default::default(),
        };
        let How::State(check) = &c[0].how else {
            panic!("a state check")
        };
        let o = check.run(&ctx);
        assert_eq!(o.status, Status::Fail);
        assert_eq!(
            o.output.as_deref(),
            Some("cannot reach systemd: no system bus")
        );
    }
}

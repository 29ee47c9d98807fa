//! Per-unit memory: the unit's cgroup `MemoryCurrent` against the
//! `memory_warn` and `memory_crit` of its `[[unit]]`.
//!
//! systemd sends no signal for MemoryCurrent, so the sweep polls it for the
//! units that have thresholds, and only those.

use std::sync::Arc;

use crate::checks::kind::{Build, Kind, Make};
use crate::checks::{grade, CheckContext, CheckDef, How, Outcome, StateCheck, Status};
use crate::config::{Bad, ByteSize, Config, KeySeg};
use crate::units::Reading;

pub const KIND: Kind = Kind {
    name: "unit_memory",
    keys: &[],
    metrics: &[],
    make: Make::Section { problems },
};

pub const BUILD: Build = Build::Section(build);

fn problems(config: &Config, bad: &mut Bad<'_>) {
    use KeySeg::{Index, Key};
    for (i, u) in config.units.iter().enumerate() {
        if let (Some(w), Some(c)) = (u.memory_warn, u.memory_crit) {
            if w > c {
                bad(
                    vec![Key("unit"), Index(i), Key("memory_warn")],
                    format!("{w} is above memory_crit ({c})"),
                );
            }
        }
    }
}

pub struct UnitMemoryCheck {
    unit: crate::checks::Shared,
    warn: Option<ByteSize>,
    crit: Option<ByteSize>,
}

fn build(config: &Config) -> Vec<CheckDef> {
    config
        .units
        .iter()
        .filter(|u| u.memory_warn.is_some() || u.memory_crit.is_some())
        .map(|u| {
            let check = Arc::new(UnitMemoryCheck {
                unit: u.name.shared(),
                warn: u.memory_warn,
                crit: u.memory_crit,
            });
            CheckDef::for_unit(
                u.name.shared(),
                "memory",
                How::State(check),
                config.daemon.interval,
            )
        })
        .collect()
}

impl StateCheck for UnitMemoryCheck {
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome {
        let s = match ctx.unit_status(&self.unit) {
            Ok(s) => s,
            Err(o) => return o,
        };
        if !s.is_active() {
            return Outcome::new(Status::Pass, serde_json::Value::Null, Some("bytes"))
                .with_output("not running");
        }
        let bytes = match s.resources.as_ref().and_then(|r| r.memory.as_ref()) {
            None => return crate::checks::unit_resources::not_read_yet(),
            Some(Reading::Value(b)) => *b,
            Some(Reading::Unavailable(why)) => {
                return Outcome::new(Status::Warn, serde_json::Value::Null, Some("bytes"))
                    .with_output(why.clone())
            }
            Some(Reading::Error(why)) => return Outcome::error(why.clone()),
        };
        let status = grade(
            bytes as f64,
            self.warn.map(|b| b.0 as f64),
            self.crit.map(|b| b.0 as f64),
        );
        let o = Outcome::new(status, bytes, Some("bytes"));
        match status {
            Status::Pass => o,
            Status::Warn => o.with_output(format!(
                "using {} (warn at {})",
                ByteSize(bytes),
                self.warn.unwrap()
            )),
            Status::Fail => o.with_output(format!(
                "using {} (critical at {})",
                ByteSize(bytes),
                self.crit.unwrap()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{UnitStatus, UnitTable};

    #[test]
    fn thresholds_from_memory_current() {
        let cfg = Config::parse(
            "[[unit]]\nname = \"a.service\"\nmemory_warn = \"100MiB\"\nmemory_crit = \"200MiB\"\n[[unit]]\nname = \"b.service\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let checks = build(&cfg);
        assert_eq!(
            checks.len(),
            1,
            "only units with thresholds get a memory check"
        );
        let mut units = UnitTable::new();
        let mut run = |mem: Option<u64>, active: &str| {
            units.insert(
                "a.service".into(),
                UnitStatus {
                    active_state: active.into(),
                    memory_current: mem,
                    resources: Some(std::sync::Arc::new(crate::units::Resources {
                        memory: Some(match mem {
                            Some(b) => Reading::Value(b),
                            None => Reading::Unavailable("systemd reports no MemoryCurrent".into()),
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                },
            );
            let How::State(check) = &checks[0].how else {
                panic!("a state check")
            };
            check.run(&CheckContext {
                now: std::time::SystemTime::now(),
                units: &units,
                backoff: &Default::default(),
                systemd_error: None,
                containers: &Default::default(),
            })
        };
        assert_eq!(run(Some(50 << 20), "active").status, Status::Pass);
        let o = run(Some(150 << 20), "active");
        assert_eq!(o.status, Status::Warn);
        assert_eq!(o.observed_value, serde_json::json!(150u64 << 20));
        assert_eq!(
            o.output.as_deref(),
            Some("using 150.0 MiB (warn at 100.0 MiB)")
        );
        assert_eq!(run(Some(300 << 20), "active").status, Status::Fail);
        assert_eq!(run(None, "active").status, Status::Warn);
        assert_eq!(run(None, "failed").status, Status::Pass);
        // Started since the last read: no figure yet, and no warning.
        units.get_mut("a.service").unwrap().resources = None;
        let How::State(check) = &checks[0].how else {
            panic!("a state check")
        };
        let o = check.run(&CheckContext {
            now: std::time::SystemTime::now(),
            units: &units,
            backoff: &Default::default(),
            systemd_error: None,
            containers: &Default::default(),
        });
        assert_eq!(o.status, Status::Pass);
    }
}

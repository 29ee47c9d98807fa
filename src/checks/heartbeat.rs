//! Heartbeat, `[[heartbeat]]`: a file the service touches while it does
//! its work; a file older than `max_age` (or missing) means the service is
//! alive but stuck, and with `restart_unit` the unit is restarted.
//!
//! Only the mtime counts: ctime also moves on chmod, chown or a backup's
//! touch of metadata, which would hide a hung service.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::{
    blocking, CheckDef, CheckId, How, Measurement, Outcome, Probe, ProbeCtx, Status,
};
use crate::config::{duration, Bad, Config, KeySeg, UnitName};
use crate::events::Kind as EventKind;
use crate::manual::KeyDoc;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    pub path: PathBuf,
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
    #[serde(default)]
    pub restart_unit: Option<UnitName>,
}

const AGE: MetricDoc = MetricDoc {
    name: "heartbeat_age_seconds",
    help: "Age of the heartbeat file (time since its last modification)",
    otlp: "health.heartbeat_age",
    otlp_unit: "s",
    otlp_scale: 1.0,
};

pub const KIND: Kind = Kind {
    name: "heartbeat",
    keys: &[
        KeyDoc::section("[heartbeat]", "path", "required", "\"/var/lib/worker/heartbeat\"",
            "An absolute path to a file the service touches while it works. It must be readable by the unitwatch user and must not be in /tmp (the service has a private one)."),
        KeyDoc::section("[heartbeat]", "max_age", "required", "\"5m\"",
            "A file missing or older than this (by mtime) is a warning."),
        KeyDoc::section("[heartbeat]", "restart_unit", "none", "\"worker.service\"",
            "A watched unit with restart = true: a stale heartbeat restarts it on the same backoff, once it has been up for max_age."),
    ],
    metrics: &[AGE],
    make: Make::Section { problems },
};

pub const BUILD: Build = Build::Section(build);

fn problems(config: &Config, bad: &mut Bad<'_>) {
    use KeySeg::{Index, Key};
    for (i, h) in config.heartbeats.iter().enumerate() {
        let at = |k: &'static str| vec![Key("heartbeat"), Index(i), Key(k)];
        if !h.path.is_absolute() {
            bad(
                at("path"),
                format!("{} is not an absolute path", h.path.display()),
            );
        }
        if h.max_age.is_zero() {
            bad(at("max_age"), "must be greater than zero".into());
        }
        if let Some(u) = &h.restart_unit {
            match config.unit(u.as_str()) {
                None => bad(
                    at("restart_unit"),
                    format!("{u} is not a watched unit: add a [[unit]] with name = \"{u}\""),
                ),
                Some(w) if !w.restart() => {
                    bad(at("restart_unit"), format!("{u} has restart = false"))
                }
                _ => {}
            }
        }
    }
}

fn build(config: &Config) -> Vec<CheckDef> {
    config
        .heartbeats
        .iter()
        .map(|h| {
            let probe = Arc::new(HeartbeatProbe {
                path: h.path.clone(),
                max_age: h.max_age,
                busy: Arc::default(),
            });
            let mut def = CheckDef::new(
                CheckId {
                    component: format!("heartbeat:{}", h.path.display()).into(),
                    measurement: "age",
                    component_type: "component",
                },
                How::Probe(probe),
                config.daemon.interval,
            );
            def.unit = h.restart_unit.as_ref().map(|u| u.shared());
            def.restart = h.restart_unit.is_some();
            // A fresh start gets max_age to write its first heartbeat.
            def.grace = h.max_age;
            def.restart_reason = "heartbeat-stale";
            def.event = EventKind::HeartbeatStale;
            def
        })
        .collect()
}

pub struct HeartbeatProbe {
    path: PathBuf,
    max_age: Duration,
    busy: Arc<AtomicBool>,
}

impl Probe for HeartbeatProbe {
    fn run(self: Arc<Self>, ctx: ProbeCtx) -> BoxFuture<'static, Outcome> {
        let what = format!("stat {}", self.path.display());
        blocking(&self.busy.clone(), what, move || self.measure(ctx.now))
    }
}

impl HeartbeatProbe {
    fn measure(&self, now: std::time::SystemTime) -> Outcome {
        let mtime = match std::fs::metadata(&self.path).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Outcome::new(Status::Warn, serde_json::Value::Null, Some("s"))
                    .with_output(format!("heartbeat file {} is missing", self.path.display()));
            }
            Err(e) => {
                return Outcome::new(Status::Warn, serde_json::Value::Null, Some("s"))
                    .with_output(format!("cannot stat {}: {e}", self.path.display()));
            }
        };
        // A file from the future (clock step) is fresh, not negative-aged.
        let age = now.duration_since(mtime).unwrap_or_default();
        let secs = (age.as_secs_f64() * 1000.0).round() / 1000.0;
        let path = self.path.display().to_string();
        let o = if age > self.max_age {
            Outcome::new(Status::Warn, secs, Some("s")).with_output(format!(
                "last written {} ago (max {})",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(self.max_age)
            ))
        } else {
            Outcome::new(Status::Pass, secs, Some("s"))
        };
        o.measure(Measurement::new(AGE.name, secs).label("path", path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn run(cfg: &str, now: SystemTime) -> Outcome {
        let c = Config::parse(cfg, std::path::Path::new("t.toml")).unwrap();
        let probe = HeartbeatProbe {
            path: c.heartbeats[0].path.clone(),
            max_age: c.heartbeats[0].max_age,
            busy: Arc::default(),
        };
        probe.measure(now)
    }

    #[test]
    fn fresh_stale_and_missing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hb");
        std::fs::write(&p, "x").unwrap();
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        let cfg = format!("[[heartbeat]]\npath = {:?}\nmax_age = \"5m\"\n", p);
        let o = run(&cfg, mtime + Duration::from_secs(60));
        assert_eq!(o.status, Status::Pass);
        assert_eq!(o.observed_value, serde_json::json!(60.0));
        assert_eq!(o.measurements[0].name, "heartbeat_age_seconds");
        assert_eq!(o.measurements[0].labels["path"], p.display().to_string());
        assert_eq!(o.measurements[0].value, 60.0);
        let o = run(&cfg, mtime + Duration::from_secs(301));
        assert_eq!(o.status, Status::Warn);
        assert_eq!(o.output.as_deref(), Some("last written 5m 1s ago (max 5m)"));
        // Clock stepped back: not an error, age 0.
        assert_eq!(
            run(&cfg, mtime - Duration::from_secs(10)).observed_value,
            serde_json::json!(0.0)
        );
        std::fs::remove_file(&p).unwrap();
        let o = run(&cfg, SystemTime::now());
        assert_eq!(o.status, Status::Warn);
        assert!(o.output.unwrap().contains("is missing"));
    }

    #[test]
    fn a_restart_unit_makes_a_restarting_check_with_max_age_as_grace() {
        let c = Config::parse(
            "[[unit]]\nname = \"a.service\"\n[[heartbeat]]\npath = \"/x\"\nmax_age = \"2m\"\nrestart_unit = \"a.service\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let d = &build(&c)[0];
        assert_eq!(d.id.key(), "heartbeat:/x:age");
        assert!(d.restart && d.is_probe());
        assert_eq!(d.unit.as_deref(), Some("a.service"));
        assert_eq!(d.grace, Duration::from_secs(120));
    }
}

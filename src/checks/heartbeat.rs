//! Heartbeat: a file the service touches while it does its work; a file
//! older than `max_age` (or missing) means the service is alive but stuck.
//!
//! Only the mtime counts: ctime also moves on chmod, chown or a backup's
//! touch of metadata, which would hide a hung service.

use std::path::PathBuf;
use std::time::Duration;

use crate::checks::{Check, CheckContext, CheckId, Outcome, Status};
use crate::config::Config;

pub struct HeartbeatCheck {
    id: CheckId,
    path: PathBuf,
    max_age: Duration,
    restart_unit: Option<String>,
}

pub fn build(config: &Config) -> Vec<Box<dyn Check>> {
    config
        .heartbeats
        .iter()
        .map(|h| {
            Box::new(HeartbeatCheck {
                id: CheckId {
                    component: format!("heartbeat:{}", h.path.display()),
                    measurement: "age",
                    component_type: "component",
                },
                path: h.path.clone(),
                max_age: h.max_age,
                restart_unit: h.restart_unit.as_ref().map(|u| u.to_string()),
            }) as Box<dyn Check>
        })
        .collect()
}

impl Check for HeartbeatCheck {
    fn id(&self) -> &CheckId {
        &self.id
    }
    fn unit(&self) -> Option<&str> {
        self.restart_unit.as_deref()
    }
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome {
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
        let age = ctx.now.duration_since(mtime).unwrap_or_default();
        let secs = (age.as_secs_f64() * 1000.0).round() / 1000.0;
        if age > self.max_age {
            Outcome::new(Status::Warn, secs, Some("s")).with_output(format!(
                "last written {} ago (max {})",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(self.max_age)
            ))
        } else {
            Outcome::new(Status::Pass, secs, Some("s"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn run(cfg: &str, now: SystemTime) -> Outcome {
        let c = Config::parse(cfg, std::path::Path::new("t.toml")).unwrap();
        let units = Default::default();
        build(&c)[0].run(&CheckContext {
            now,
            units: &units,
            systemd_error: None,
            proc_dir: std::path::Path::new("/proc"),
        })
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
}

//! `[[container]]`: a Docker or Podman container watched like a unit,
//! through the engine's API (`src/containers/`). Each one gets two state
//! checks, shown under `NAME.container` (a suffix no systemd unit can
//! have, so a container and a unit of the same name never mix in any
//! output):
//! - `NAME.container:state`: running (and, with a HEALTHCHECK, not
//!   unhealthy), else `fail` with what the engine said: the exit code,
//!   OOMKilled, the health check's output, or why the engine could not be
//!   asked. Its failure is told as `unit-failed`, its return as
//!   `unit-recovered`, as a unit's are;
//! - `NAME.container:memory`, with `memory_warn`/`memory_crit`: the memory
//!   in use (without reclaimable page cache, as `docker stats` counts it).
//!
//! The engine's events re-run them within milliseconds of a death; the
//! watcher's full read every `interval` is the safety net and samples the
//! memory. With `restart` (the default) the supervisor brings a failing
//! container back (daemon/containers.rs); readiness after a restart
//! (`ready`, `ready_timeout`) is not built yet.

use std::sync::Arc;

use serde::Deserialize;

use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::{grade, CheckContext, CheckDef, How, Measurement, Outcome, StateCheck, Status};
use crate::config::{Bad, ByteSize, Config, KeySeg};
use crate::containers::watch::{Container, Watched};
use crate::containers::Engine;
use crate::events::Kind as EventKind;
use crate::manual::KeyDoc;

/// Docker's socket; Podman's rootful one is unix:///run/podman/podman.sock.
pub const DEFAULT_ENGINE: &str = "unix:///var/run/docker.sock";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    /// The container's name, and the name it is shown under.
    pub name: String,
    /// `key=value`: watch the containers carrying this label instead of
    /// the one named `name` (which is then only the name shown).
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default = "default_engine")]
    pub engine: String,
    /// Restart it when it fails (on the backoff and the hourly cap).
    #[serde(default = "yes")]
    pub restart: bool,
    /// The `[[check]]`s (by name) that must pass after a restart for it
    /// to count as recovered.
    #[serde(default)]
    pub ready: Vec<String>,
    #[serde(
        default = "default_ready_timeout",
        deserialize_with = "crate::config::duration"
    )]
    pub ready_timeout: std::time::Duration,
    #[serde(default)]
    pub memory_warn: Option<ByteSize>,
    #[serde(default)]
    pub memory_crit: Option<ByteSize>,
}

fn default_ready_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

fn yes() -> bool {
    true
}

fn default_engine() -> String {
    DEFAULT_ENGINE.to_string()
}

impl ContainerConfig {
    /// The component its checks are shown under.
    pub fn component(&self) -> String {
        format!("{}.container", self.name)
    }

    pub fn watched(&self) -> Watched {
        Watched {
            name: self.name.clone(),
            label: self.label.clone(),
            memory: self.memory_warn.is_some() || self.memory_crit.is_some(),
        }
    }
}

const MEMORY: MetricDoc = MetricDoc {
    name: "container_memory_bytes",
    help: "Memory a watched container uses, without reclaimable page cache (label container)",
    otlp: "unitwatch.container.memory",
    otlp_unit: "By",
    otlp_scale: 1.0,
};

const RUNNING: MetricDoc = MetricDoc {
    name: "container_running",
    help: "1 while a watched container runs, 0 while it does not (label container)",
    otlp: "unitwatch.container.running",
    otlp_unit: "1",
    otlp_scale: 1.0,
};

const ENGINE_RESTARTS: MetricDoc = MetricDoc {
    name: "container_engine_restarts",
    help: "Restarts of a watched container by its engine's own restart policy (RestartCount; label container)",
    otlp: "unitwatch.container.engine_restarts",
    otlp_unit: "{restart}",
    otlp_scale: 1.0,
};

pub const KIND: Kind = Kind {
    name: "container",
    keys: &[
        KeyDoc::section("[container]", "name", "(required)", "\"ib-gateway\"",
            "The container to watch, by its name; its checks are shown as NAME.container (NAME.container:state, NAME.container:memory), which no systemd unit can be called. A [[container]] table per container."),
        KeyDoc::section("[container]", "label", "none", "\"app=ibkr\"",
            "Watch every container carrying this label (key=value) instead of the one called name, which is then only the name shown. The state fails while any of them is not running."),
        KeyDoc::section("[container]", "engine", "\"unix:///var/run/docker.sock\"", "\"unix:///run/podman/podman.sock\"",
            "The Docker Engine API socket: dockerd's, or Podman's Docker-compatible service (rootful /run/podman/podman.sock, rootless /run/user/UID/podman/podman.sock). Access to it is root-equivalent: see the README."),
        KeyDoc::section("[container]", "restart", "true", "true",
            "Bring the container back when it exits or dies (not after docker stop, and not while its own restart policy is bringing it back) or turns unhealthy: it is started (an unhealthy one restarted) through the engine on the same backoff, hourly cap and backoff.json as units, under the name NAME.container."),
        KeyDoc::section("[container]", "ready", "[]", "[\"gateway-port\"]",
            "The [[check]]s, by name, that must pass after unitwatch restarts the container (a tcp check on its port, say): once they all pass, unit-recovered (INFO); if they have not within ready_timeout, recovery-failed (CRITICAL, with the Discord mention). Without it, the container running again is the recovery."),
        KeyDoc::section("[container]", "ready_timeout", "\"60s\"", "\"60s\"",
            "How long the ready checks have after a restart."),
        KeyDoc::section("[container]", "memory_warn", "none", "\"1.5GiB\"",
            "Warn when the container uses more memory than this (in use, without reclaimable page cache, as docker stats counts it)."),
        KeyDoc::section("[container]", "memory_crit", "none", "\"1.7GiB\"",
            "Fail when the container uses more memory than this."),
    ],
    metrics: &[MEMORY, RUNNING, ENGINE_RESTARTS],
    make: Make::Section { problems },
};

pub const BUILD: Build = Build::Section(build);

/// A name Docker accepts: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

fn problems(config: &Config, bad: &mut Bad<'_>) {
    use KeySeg::{Index, Key};
    let mut seen = std::collections::HashSet::new();
    for (i, c) in config.containers.iter().enumerate() {
        let at = |k: &'static str| vec![Key("container"), Index(i), Key(k)];
        if !valid_name(&c.name) {
            bad(
                at("name"),
                format!("{:?} is not a container name (letters, digits, _ . -, starting with a letter or digit)", c.name),
            );
        } else if !seen.insert(c.name.as_str()) {
            bad(at("name"), format!("{:?} is watched twice", c.name));
        }
        if let Some(l) = &c.label {
            if l.split_once('=').is_none_or(|(k, _)| k.trim().is_empty()) {
                bad(at("label"), format!("{l:?} is not key=value"));
            }
        }
        if let Err(e) = Engine::new(&c.engine, crate::containers::watch::REQUEST_TIMEOUT) {
            bad(at("engine"), e.to_string());
        }
        for r in &c.ready {
            let known = config
                .checks
                .iter()
                .any(|t| t.0.get("name").and_then(|n| n.as_str()) == Some(r.as_str()));
            if !known {
                bad(at("ready"), format!("{r:?} is not the name of a [[check]]"));
            }
        }
        if !c.ready.is_empty() && !c.restart {
            bad(at("ready"), "ready checks judge a restart, and restart is false".into());
        }
        if c.ready_timeout.is_zero() {
            bad(at("ready_timeout"), "must be above 0".into());
        }
        if let (Some(w), Some(cr)) = (c.memory_warn, c.memory_crit) {
            if w > cr {
                bad(at("memory_warn"), format!("{w} is above memory_crit ({cr})"));
            }
        }
    }
}

fn build(config: &Config) -> Vec<CheckDef> {
    let mut out = Vec::new();
    for c in &config.containers {
        let component: crate::checks::Shared = c.component().into();
        let mut state = CheckDef::for_unit(
            component.clone(),
            "state",
            How::State(Arc::new(StateOf { name: c.name.clone() })),
            config.daemon.interval,
        );
        state.event = EventKind::UnitFailed;
        // With ready checks, running again is not yet recovered: the
        // supervisor tells the recovery once they pass.
        state.recovery_apart = !c.ready.is_empty();
        out.push(state);
        if c.memory_warn.is_some() || c.memory_crit.is_some() {
            out.push(CheckDef::for_unit(
                component,
                "memory",
                How::State(Arc::new(MemoryOf {
                    name: c.name.clone(),
                    warn: c.memory_warn,
                    crit: c.memory_crit,
                })),
                config.daemon.interval,
            ));
        }
    }
    out
}

/// The group the daemon joins to use the engines' sockets: `docker`, while
/// a `[[container]]` is configured and the group exists (dockerd's socket
/// is root:docker 0660). None otherwise: a Podman socket's group is the
/// operator's to make (see the README), and a group that does not exist
/// would fail the service's start.
pub fn engine_group(config: &Config) -> Option<&'static str> {
    const GROUP: &str = "docker";
    (!config.containers.is_empty() && matches!(nix::unistd::Group::from_name(GROUP), Ok(Some(_))))
        .then_some(GROUP)
}

/// The engines and what each watches, for the daemon's watchers.
pub fn engines(config: &Config) -> Vec<(String, Vec<Watched>)> {
    let mut out: Vec<(String, Vec<Watched>)> = Vec::new();
    for c in &config.containers {
        match out.iter_mut().find(|(e, _)| *e == c.engine) {
            Some((_, w)) => w.push(c.watched()),
            None => out.push((c.engine.clone(), vec![c.watched()])),
        }
    }
    out
}

/// The containers of watched name `name`, or the outcome that says why
/// there are none to judge.
fn containers<'a>(ctx: &'a CheckContext<'_>, name: &str) -> Result<&'a [Container], Outcome> {
    match ctx.containers.get(name) {
        None => Err(Outcome::error("the engine has not answered yet")),
        Some(Err(why)) => Err(Outcome::error(why.clone())),
        Some(Ok(list)) => Ok(list),
    }
}

pub struct StateOf {
    name: String,
}

/// What is wrong with one container; none when it runs and is not
/// unhealthy.
fn trouble(c: &Container) -> Option<String> {
    if !c.running {
        let mut s = format!("{} is {}", c.name, c.status);
        if c.status == "exited" || c.status == "dead" {
            s += &format!(" with code {}", c.exit_code);
        }
        if c.oom_killed {
            s += " (OOMKilled: it ran out of memory)";
        }
        if !c.finished_at.is_empty() && !c.finished_at.starts_with("0001-") {
            s += &format!(" since {}", c.finished_at);
        }
        if c.stopped {
            s += "; stopped by hand (docker stop): not restarted";
        } else if c.engine_restarting() {
            s += ": its restart policy is bringing it back";
        }
        return Some(s);
    }
    match &c.health {
        Some((h, out)) if h == "unhealthy" => Some(match out {
            Some(o) => format!("{} is unhealthy: {o}", c.name),
            None => format!("{} is unhealthy", c.name),
        }),
        _ => None,
    }
}

impl StateCheck for StateOf {
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome {
        let list = match containers(ctx, &self.name) {
            Ok(l) => l,
            Err(o) => return o,
        };
        if list.is_empty() {
            return Outcome::error(format!("no container {} (the engine has none by this name or label)", self.name));
        }
        let wrong: Vec<String> = list.iter().filter_map(trouble).collect();
        let running = list.iter().filter(|c| c.running).count();
        let value = if list.len() == 1 { list[0].status.clone() } else { format!("{running}/{} running", list.len()) };
        let mut o = if wrong.is_empty() {
            let starting = list.iter().any(|c| c.health.as_ref().is_some_and(|(h, _)| h == "starting"));
            let o = Outcome::new(if starting { Status::Warn } else { Status::Pass }, value, None);
            if starting {
                o.with_output("health check starting")
            } else {
                o
            }
        } else {
            Outcome::new(Status::Fail, value, None).with_output(wrong.join("; "))
        };
        for c in list {
            o = o.measure(
                Measurement::new(ENGINE_RESTARTS.name, c.restart_count as f64)
                    .label("container", c.name.clone()),
            );
            o = o.measure(Measurement::new(RUNNING.name, if c.running { 1.0 } else { 0.0 }).label("container", c.name.clone()));
        }
        o
    }
}

pub struct MemoryOf {
    name: String,
    warn: Option<ByteSize>,
    crit: Option<ByteSize>,
}

impl StateCheck for MemoryOf {
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome {
        let list = match containers(ctx, &self.name) {
            Ok(l) => l,
            Err(o) => return o,
        };
        let used: Vec<(&Container, u64, Option<u64>)> = list
            .iter()
            .filter_map(|c| c.memory.and_then(|m| m.used.map(|u| (c, u, c.memory_limit))))
            .collect();
        let Some(&(top, bytes, limit)) = used.iter().max_by_key(|(_, u, _)| *u) else {
            let said = if list.iter().any(|c| c.running) {
                "no memory sample from the engine yet"
            } else {
                "not running"
            };
            return Outcome::new(Status::Pass, serde_json::Value::Null, Some("bytes")).with_output(said);
        };
        let status = grade(bytes as f64, self.warn.map(|b| b.0 as f64), self.crit.map(|b| b.0 as f64));
        let of_limit = limit.map(|l| format!(" of its {} limit", ByteSize(l))).unwrap_or_default();
        let mut o = Outcome::new(status, bytes, Some("bytes"));
        o = match status {
            Status::Pass => o,
            Status::Warn => o.with_output(format!("{} uses {}{of_limit} (warn at {})", top.name, ByteSize(bytes), self.warn.unwrap())),
            Status::Fail => o.with_output(format!("{} uses {}{of_limit} (critical at {})", top.name, ByteSize(bytes), self.crit.unwrap())),
        };
        for (c, u, _) in used {
            o = o.measure(Measurement::new(MEMORY.name, u as f64).label("container", c.name.clone()));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::watch::ContainerTable;
    use crate::containers::MemoryUse;
    use crate::units::UnitTable;

    fn cfg(text: &str) -> Result<Config, String> {
        Config::parse(text, std::path::Path::new("t.toml")).map_err(|e| e.to_string())
    }

    fn running(name: &str) -> Container {
        Container {
            id: format!("id-{name}"),
            name: name.into(),
            status: "running".into(),
            running: true,
            exit_code: 0,
            oom_killed: false,
            health: None,
            restart_count: 0,
            finished_at: "0001-01-01T00:00:00Z".into(),
            memory: Some(MemoryUse { used: Some(100 << 20), limit: Some(1 << 30) }),
            memory_limit: Some(1 << 30),
            stopped: false,
        }
    }

    fn run(defs: &[CheckDef], i: usize, table: &ContainerTable) -> Outcome {
        let How::State(s) = &defs[i].how else { panic!("a state check") };
        s.run(&CheckContext {
            now: std::time::SystemTime::now(),
            units: &UnitTable::new(),
            backoff: &Default::default(),
            systemd_error: None,
            containers: table,
        })
    }

    #[test]
    fn bad_tables_are_named_by_key() {
        let e = cfg("[[container]]\nname = \"-x\"\n").unwrap_err();
        assert!(e.contains("container[0].name") && e.contains("not a container name"), "{e}");
        let e = cfg("[[container]]\nname = \"gw\"\nengine = \"tcp://127.0.0.1:2375\"\n").unwrap_err();
        assert!(e.contains("container[0].engine") && e.contains("only unix://"), "{e}");
        let e = cfg("[[container]]\nname = \"gw\"\nlabel = \"=x\"\n").unwrap_err();
        assert!(e.contains("container[0].label"), "{e}");
        let e = cfg("[[container]]\nname = \"gw\"\n[[container]]\nname = \"gw\"\n").unwrap_err();
        assert!(e.contains("container[1].name") && e.contains("watched twice"), "{e}");
        let e = cfg("[[container]]\nname = \"gw\"\nmemory_warn = \"2GiB\"\nmemory_crit = \"1GiB\"\n").unwrap_err();
        assert!(e.contains("container[0].memory_warn"), "{e}");
        let e = cfg("[[container]]\nname = \"gw\"\nready = [\"port\"]\n").unwrap_err();
        assert!(e.contains("container[0].ready") && e.contains("\"port\" is not the name of a [[check]]"), "{e}");
        let ok = "[[check]]\ntype = \"tcp\"\nname = \"port\"\naddress = \"127.0.0.1:4002\"\n";
        let e = cfg(&format!("{ok}[[container]]\nname = \"gw\"\nrestart = false\nready = [\"port\"]\n")).unwrap_err();
        assert!(e.contains("container[0].ready") && e.contains("restart is false"), "{e}");
        let c = cfg(&format!("{ok}[[container]]\nname = \"gw\"\nready = [\"port\"]\nready_timeout = \"30s\"\n")).unwrap();
        assert_eq!(c.containers[0].ready_timeout, std::time::Duration::from_secs(30));
        assert!(build(&c)[0].recovery_apart, "the supervisor tells its recovery");
    }

    #[test]
    fn a_container_is_shown_apart_from_a_unit_of_its_name() {
        let c = cfg("[[unit]]\nname = \"gw.service\"\n[[container]]\nname = \"gw.service\"\nmemory_crit = \"1GiB\"\n").unwrap();
        let defs = build(&c);
        let keys: Vec<&str> = defs.iter().map(|d| d.key()).collect();
        assert_eq!(keys, ["gw.service.container:state", "gw.service.container:memory"]);
        assert_eq!(defs[0].event, EventKind::UnitFailed);
        assert_eq!(engines(&c), [(DEFAULT_ENGINE.to_string(), vec![Watched { name: "gw.service".into(), label: None, memory: true }])]);
    }

    #[test]
    fn the_state_says_what_the_engine_said() {
        let c = cfg("[[container]]\nname = \"gw\"\nmemory_warn = \"150MiB\"\nmemory_crit = \"1GiB\"\n").unwrap();
        let defs = build(&c);
        let mut t = ContainerTable::new();
        assert_eq!(run(&defs, 0, &t).output.as_deref(), Some("the engine has not answered yet"));
        t.insert("gw".into(), Err("cannot reach the engine at unix:///var/run/docker.sock: permission denied".into()));
        let o = run(&defs, 0, &t);
        assert_eq!(o.status, Status::Fail);
        assert!(o.output.as_deref().unwrap().contains("permission denied"));

        t.insert("gw".into(), Ok(vec![running("gw")]));
        let o = run(&defs, 0, &t);
        assert_eq!((o.status, o.observed_value.as_str()), (Status::Pass, Some("running")));
        assert_eq!(run(&defs, 1, &t).status, Status::Pass);

        let mut dead = running("gw");
        (dead.running, dead.status, dead.exit_code, dead.oom_killed, dead.memory) = (false, "exited".into(), 137, true, None);
        dead.finished_at = "2026-12-07T10:00:00Z".into();
        t.insert("gw".into(), Ok(vec![dead]));
        let o = run(&defs, 0, &t);
        assert_eq!(o.status, Status::Fail);
        assert_eq!(
            o.output.as_deref(),
            Some("gw is exited with code 137 (OOMKilled: it ran out of memory) since 2026-12-07T10:00:00Z")
        );
        assert_eq!(run(&defs, 1, &t).output.as_deref(), Some("not running"));

        let mut sick = running("gw");
        sick.health = Some(("unhealthy".into(), Some("port 4002 closed".into())));
        sick.memory = Some(MemoryUse { used: Some(200 << 20), limit: None });
        t.insert("gw".into(), Ok(vec![sick]));
        assert_eq!(run(&defs, 0, &t).output.as_deref(), Some("gw is unhealthy: port 4002 closed"));
        let m = run(&defs, 1, &t);
        assert_eq!((m.status, m.output.as_deref()), (Status::Warn, Some("gw uses 200.0 MiB of its 1.0 GiB limit (warn at 150.0 MiB)")));

        t.insert("gw".into(), Ok(vec![]));
        assert!(run(&defs, 0, &t).output.unwrap().starts_with("no container gw"));
    }

    #[test]
    fn a_label_watches_every_container_carrying_it() {
        let c = cfg("[[container]]\nname = \"ibkr\"\nlabel = \"app=ibkr\"\n").unwrap();
        let defs = build(&c);
        let mut down = running("ibkr-2");
        (down.running, down.status) = (false, "exited".into());
        let mut t = ContainerTable::new();
        t.insert("ibkr".into(), Ok(vec![running("ibkr-1"), down]));
        let o = run(&defs, 0, &t);
        assert_eq!((o.status, o.observed_value.as_str()), (Status::Fail, Some("1/2 running")));
        assert!(o.output.unwrap().starts_with("ibkr-2 is exited with code 0"));
        assert_eq!(o.measurements.len(), 4, "running and engine restarts, of each");
    }
}

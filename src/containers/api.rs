//! The parts of the Docker Engine API's answers that unitwatch reads, and
//! the query parameters it sends. Fields the daemon does not read are not
//! declared (and so ignored); fields an engine may leave out are optional,
//! with the default the engine's own documentation gives.

use std::collections::BTreeMap;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;

/// One container of a list (`GET /containers/json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    #[serde(rename = "Id")]
    pub id: String,
    /// `/name` (one per container on a current engine).
    #[serde(rename = "Names", default)]
    pub names: Vec<String>,
    /// running, exited, restarting, paused, created, dead, removing.
    #[serde(rename = "State", default)]
    pub state: String,
    #[serde(rename = "Labels", default)]
    pub labels: BTreeMap<String, String>,
}

impl Summary {
    /// Its name, without the engine's leading `/`.
    pub fn name(&self) -> &str {
        self.names
            .first()
            .map_or(self.id.as_str(), |n| n.trim_start_matches('/'))
    }
}

/// One container's state (`GET /containers/{id}/json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Inspect {
    #[serde(rename = "Id")]
    pub id: String,
    /// `/name`.
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "RestartCount", default)]
    pub restart_count: u64,
    #[serde(rename = "State")]
    pub state: State,
    #[serde(rename = "HostConfig", default)]
    pub host_config: HostConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct State {
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "Running", default)]
    pub running: bool,
    #[serde(rename = "Restarting", default)]
    pub restarting: bool,
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "StartedAt", default)]
    pub started_at: String,
    #[serde(rename = "FinishedAt", default)]
    pub finished_at: String,
    /// Present only for an image or container with a HEALTHCHECK.
    #[serde(rename = "Health", default)]
    pub health: Option<Health>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    /// healthy, unhealthy, starting (none: no check).
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "FailingStreak", default)]
    pub failing_streak: u64,
    #[serde(rename = "Log", default)]
    pub log: Option<Vec<HealthLog>>,
}

impl Health {
    /// The last health check's output, trimmed.
    pub fn last_output(&self) -> Option<&str> {
        self.log
            .as_ref()?
            .last()
            .map(|l| l.output.trim())
            .filter(|o| !o.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct HealthLog {
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    #[serde(rename = "Output", default)]
    pub output: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostConfig {
    #[serde(rename = "RestartPolicy", default)]
    pub restart_policy: Option<RestartPolicy>,
    /// The memory limit in bytes; 0 for none.
    #[serde(rename = "Memory", default)]
    pub memory: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RestartPolicy {
    /// "", no, always, unless-stopped, on-failure.
    #[serde(rename = "Name", default)]
    pub name: String,
}

impl Inspect {
    /// Its name, without the engine's leading `/`.
    pub fn name(&self) -> &str {
        self.name.trim_start_matches('/')
    }

    /// The engine's own restart policy brings it back after it exits
    /// (`always`, `unless-stopped`, `on-failure`), as `Restart=` does a
    /// unit.
    pub fn engine_restarts(&self) -> bool {
        self.host_config
            .restart_policy
            .as_ref()
            .is_some_and(|p| matches!(p.name.as_str(), "always" | "unless-stopped" | "on-failure"))
    }
}

/// A sample of `GET /containers/{id}/stats`; only its memory is read.
#[derive(Debug, Clone, Deserialize)]
pub struct Stats {
    #[serde(default)]
    pub memory_stats: MemoryStats,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MemoryStats {
    pub usage: Option<u64>,
    pub limit: Option<u64>,
    #[serde(default)]
    pub stats: BTreeMap<String, u64>,
}

/// A container's memory in use (without the page cache it can give back,
/// as `docker stats` counts it) and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// None: the engine gave no figure (the container is not running).
    pub used: Option<u64>,
    pub limit: Option<u64>,
}

impl Stats {
    pub fn memory(&self) -> MemoryUse {
        let m = &self.memory_stats;
        // cgroup v1 names it total_inactive_file, v2 inactive_file.
        let cache = m
            .stats
            .get("total_inactive_file")
            .or_else(|| m.stats.get("inactive_file"))
            .copied()
            .unwrap_or(0);
        MemoryUse {
            used: m.usage.map(|u| u.saturating_sub(cache)),
            // An engine reports "no limit" as the host's memory or a huge
            // number: only a real one is a limit.
            limit: m.limit.filter(|&l| l > 0 && l < (1 << 62)),
        }
    }
}

/// An event of `GET /events`.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    /// container, image, network...
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// die, oom, start, stop, destroy, `health_status: unhealthy`...
    #[serde(rename = "Action", default)]
    pub action: String,
    #[serde(rename = "Actor", default)]
    pub actor: Actor,
    /// When, in ns since the epoch (0: not given).
    #[serde(rename = "timeNano", default)]
    pub time_nano: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID", default)]
    pub id: String,
    /// The container's name and labels, and per action more (exitCode).
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    pub fn name(&self) -> Option<&str> {
        self.actor.attributes.get("name").map(String::as_str)
    }

    /// The action without its detail: `health_status` of
    /// `health_status: unhealthy`.
    pub fn verb(&self) -> &str {
        self.action.split(':').next().unwrap_or("").trim()
    }

    /// The container carries label `key=value` (the engine copies a
    /// container's labels into its events' attributes).
    pub fn has_label(&self, label: &str) -> bool {
        let (k, v) = label.split_once('=').unwrap_or((label, ""));
        self.actor.attributes.get(k).is_some_and(|have| have == v)
    }
}

/// The actions that change what unitwatch reports of a container.
pub const WATCHED_ACTIONS: &[&str] = &[
    "start",
    "die",
    "oom",
    "stop",
    "destroy",
    "health_status",
    "restart",
];

/// A `filters` query parameter: `{"key":["value",...]}`, percent-encoded.
pub fn filters(pairs: &[(&str, &[&str])]) -> String {
    let map: BTreeMap<&str, &[&str]> = pairs.iter().copied().collect();
    let json = serde_json::to_string(&map).expect("strings serialize");
    utf8_percent_encode(&json, NON_ALPHANUMERIC).to_string()
}

/// The events filter: containers' watched actions, of the containers
/// named when only names are watched. With labels the engine's filter
/// cannot say "this name or that label" (it ANDs keys, and ANDs label
/// values), so the caller keeps the events of its containers itself.
pub fn event_filters(names: &[&str], labels: &[&str]) -> String {
    if labels.is_empty() && !names.is_empty() {
        filters(&[
            ("type", &["container"]),
            ("event", WATCHED_ACTIONS),
            ("container", names),
        ])
    } else {
        filters(&[("type", &["container"]), ("event", WATCHED_ACTIONS)])
    }
}

/// A name or ID as one path segment.
pub fn path_seg(id: &str) -> String {
    utf8_percent_encode(id, NON_ALPHANUMERIC).to_string()
}

/// The engine's own message of an error answer (`{"message": ...}`), else
/// the start of the body.
pub fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(m) => m.message,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            let text = text.trim();
            if text.is_empty() {
                "(no message)".into()
            } else {
                text.to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_in_use_leaves_out_the_reclaimable_cache() {
        let v1: Stats = serde_json::from_str(
            r#"{"memory_stats":{"usage":1000,"limit":9223372036854771712,"stats":{"total_inactive_file":300,"inactive_file":1}}}"#,
        )
        .unwrap();
        assert_eq!(
            v1.memory(),
            MemoryUse {
                used: Some(700),
                limit: None
            }
        );
        let v2: Stats = serde_json::from_str(
            r#"{"memory_stats":{"usage":1000,"limit":4096,"stats":{"inactive_file":100}}}"#,
        )
        .unwrap();
        assert_eq!(
            v2.memory(),
            MemoryUse {
                used: Some(900),
                limit: Some(4096)
            }
        );
        let stopped: Stats = serde_json::from_str(r#"{"memory_stats":{},"read":"x"}"#).unwrap();
        assert_eq!(
            stopped.memory(),
            MemoryUse {
                used: None,
                limit: None
            }
        );
    }

    #[test]
    fn an_inspect_reads_state_health_and_policy() {
        let i: Inspect = serde_json::from_str(
            r#"{"Id":"abc","Name":"/gw","RestartCount":3,"Extra":{"x":1},
                "State":{"Status":"running","Running":true,"OOMKilled":false,"ExitCode":0,
                         "Health":{"Status":"unhealthy","FailingStreak":4,"Log":[{"ExitCode":1,"Output":"old"},{"ExitCode":1,"Output":"port 4002 closed\n"}]}},
                "HostConfig":{"RestartPolicy":{"Name":"unless-stopped","MaximumRetryCount":0},"Memory":0}}"#,
        )
        .unwrap();
        assert_eq!(
            (i.name(), i.restart_count, i.state.running),
            ("gw", 3, true)
        );
        assert!(i.engine_restarts());
        let h = i.state.health.as_ref().unwrap();
        assert_eq!(
            (h.status.as_str(), h.last_output()),
            ("unhealthy", Some("port 4002 closed"))
        );
        let plain: Inspect = serde_json::from_str(
            r#"{"Id":"d","State":{"Status":"exited","ExitCode":137,"OOMKilled":true}}"#,
        )
        .unwrap();
        assert!(!plain.engine_restarts() && plain.state.oom_killed && plain.state.health.is_none());
        // A state is what the daemon judges: without one the answer is no
        // inspect.
        assert!(serde_json::from_str::<Inspect>(r#"{"Id":"d"}"#).is_err());
    }

    #[test]
    fn filters_are_json_percent_encoded() {
        let f = filters(&[("name", &["gw", "a b"])]);
        assert_eq!(
            percent_encoding::percent_decode_str(&f)
                .decode_utf8()
                .unwrap(),
            r#"{"name":["gw","a b"]}"#
        );
        assert!(!f.contains(['{', '"', ' ']));
        let with_names = percent_encoding::percent_decode_str(&event_filters(&["gw"], &[]))
            .decode_utf8()
            .unwrap()
            .to_string();
        assert!(
            with_names.contains(r#""container":["gw"]"#)
                && with_names.contains(r#""health_status""#)
        );
        let with_labels = percent_encoding::percent_decode_str(&event_filters(&["gw"], &["app=x"]))
            .decode_utf8()
            .unwrap()
            .to_string();
        assert!(!with_labels.contains("container\":[") && !with_labels.contains("label"));
    }

    #[test]
    fn an_event_names_its_container_verb_and_labels() {
        let e: Event = serde_json::from_str(
            r#"{"Type":"container","Action":"health_status: unhealthy","Actor":{"ID":"abc","Attributes":{"name":"gw","app":"ibkr"}},"timeNano":5}"#,
        )
        .unwrap();
        assert_eq!(
            (e.verb(), e.name(), e.time_nano),
            ("health_status", Some("gw"), 5)
        );
        assert!(e.has_label("app=ibkr") && !e.has_label("app=other") && !e.has_label("tier=x"));
    }

    #[test]
    fn an_error_body_gives_the_engines_message_or_its_start() {
        assert_eq!(
            error_message(br#"{"message":"No such container: x"}"#),
            "No such container: x"
        );
        assert_eq!(error_message(b"  plain text \n"), "plain text");
        assert_eq!(error_message(b""), "(no message)");
    }
}

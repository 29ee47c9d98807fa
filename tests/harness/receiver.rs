//! The alert receiver (tests/alert_receiver.py) in the throwaway systemd:
//! a loopback HTTP server that stands in for Discord, Slack and webhooks,
//! and writes each request it gets to [`RECEIVED`], one JSON per line.

use std::time::Duration;

use serde_json::Value;

use super::Sandbox;

pub const RECEIVED: &str = "/var/log/alert-receiver.jsonl";

impl Sandbox {
    /// Runs the receiver as the transient unit `receiver` on
    /// 127.0.0.1:`port`, and waits until it listens.
    pub fn start_receiver(&self, port: u16) {
        // Copied in: the checkout may be under /tmp, which the sandbox
        // does not see (its /tmp is a fresh tmpfs).
        self.write(
            "/usr/local/share/unitwatch-test/alert_receiver.py",
            &super::read_repo("tests/alert_receiver.py"),
        );
        self.ok(&format!(
            "systemd-run --unit=receiver /usr/bin/python3 /usr/local/share/unitwatch-test/alert_receiver.py {port} {RECEIVED}"
        ));
        self.wait_for("the receiver", Duration::from_secs(10), || {
            self.sh(&format!("ss -ltn | grep -q 127.0.0.1:{port}"))
                .status
                .success()
                .then_some(())
        });
    }
}

/// The requests the receiver got on `path_prefix`.
pub fn received(sb: &Sandbox, path_prefix: &str) -> Vec<Value> {
    sb.read(RECEIVED)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["path"].as_str().unwrap().starts_with(path_prefix))
        .collect()
}

/// The event names of what was received (discord: the embed's Event
/// field; webhook: unitwatch.event).
pub fn events(rs: &[Value]) -> Vec<String> {
    rs.iter()
        .map(|r| {
            let b = &r["body"];
            if let Some(e) = b["unitwatch"]["event"].as_str() {
                return e.to_string();
            }
            b["embeds"][0]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == "Event")
                .unwrap()["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

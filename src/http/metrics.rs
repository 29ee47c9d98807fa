//! `/metrics`: the snapshot as Prometheus metrics, through prometheus-client.
//!
//! Names follow `unitwatch_<subsystem>_<name>_<unit>` with base units
//! (seconds, bytes, ratios 0-1) and `_total` on counters. Everything but the
//! snapshot's age is rendered once per snapshot; the age is added per scrape.
//!
//! prometheus-client writes OpenMetrics. Prometheus' older text format
//! (0.0.4), which scrapers get unless they ask for OpenMetrics, differs in
//! three ways that matter here: a counter's `# TYPE`/`# HELP` name carries
//! the `_total` of its samples, there is no `# EOF`, and `# UNIT` is not a
//! keyword. [`to_prometheus_text`] makes exactly those changes.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::checks::{metric_doc, Status};
use crate::snapshot::Snapshot;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type F64Gauge = Gauge<f64, AtomicU64>;

/// The states systemd reports as ActiveState; one series each, 1 for the
/// current one (as node_exporter's `node_systemd_unit_state`).
const ACTIVE_STATES: &[&str] = &[
    "active",
    "reloading",
    "inactive",
    "failed",
    "activating",
    "deactivating",
];

const STATUSES: [Status; 3] = [Status::Pass, Status::Warn, Status::Fail];

fn gauge_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, F64Gauge> {
    let f = Family::<Labels, F64Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge(reg: &mut Registry, name: &str, help: &str) -> F64Gauge {
    let g = F64Gauge::default();
    reg.register(name, help, g.clone());
    g
}

fn counter_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn counter(reg: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    reg.register(name, help, c);
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The figures the checks measured, one family per name, its help from
/// the kind that exports it (a name this build does not know, from a newer
/// daemon, is shown with a plain help).
fn measurements(reg: &mut Registry, snap: &Snapshot) {
    type Owned = Vec<(String, String)>;
    let mut by_name: Vec<(&str, Vec<&crate::checks::Measurement>)> = Vec::new();
    for m in snap.checks.iter().flat_map(|c| &c.measurements) {
        match by_name.iter_mut().find(|(n, _)| *n == m.name) {
            Some((_, v)) => v.push(m),
            None => by_name.push((&m.name, vec![m])),
        }
    }
    for (name, ms) in by_name {
        let name = format!("unitwatch_{name}");
        let help = metric_doc(&name["unitwatch_".len()..])
            .map(|d| d.help)
            .unwrap_or("A figure measured by a check");
        if ms.iter().all(|m| m.labels.is_empty()) {
            // No labels: a plain gauge (a family would print `name{} v`).
            gauge(reg, &name, help).set(ms[ms.len() - 1].value);
            continue;
        }
        let fam = Family::<Owned, F64Gauge>::default();
        reg.register(name, help, fam.clone());
        for m in ms {
            let labels: Owned = m
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            fam.get_or_create(&labels).set(m.value);
        }
    }
}

/// The exposition of `snap` (OpenMetrics, without `# EOF`).
pub fn render(snap: Option<&Snapshot>) -> String {
    let mut reg = Registry::default();
    let build = gauge_family(
        &mut reg,
        "unitwatch_build_info",
        "unitwatch version; the value is always 1",
    );
    build
        .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1.0);
    let present = gauge(
        &mut reg,
        "unitwatch_snapshot_present",
        "1 if unitwatchd's status snapshot could be read",
    );
    present.set(flag(snap.is_some()));
    let Some(snap) = snap else {
        return encode(&reg);
    };

    let updated = gauge(
        &mut reg,
        "unitwatch_snapshot_last_update_timestamp_seconds",
        "When unitwatchd last wrote its status snapshot, in seconds since the epoch",
    );
    if let Ok(t) = humantime::parse_rfc3339_weak(&snap.updated_at) {
        updated.set(
            t.duration_since(std::time::SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
    }
    gauge(
        &mut reg,
        "unitwatch_systemd_reachable",
        "1 if unitwatchd can reach systemd over D-Bus",
    )
    .set(flag(snap.systemd.reachable));
    let overall = gauge_family(
        &mut reg,
        "unitwatch_health_status",
        "Overall health: 1 for the current status (pass, warn, fail), 0 for the others",
    );
    for s in STATUSES {
        overall
            .get_or_create(&vec![("status", s.as_str().to_string())])
            .set(flag(snap.status == s));
    }

    let check_status = gauge_family(
        &mut reg,
        "unitwatch_check_status",
        "Per check: 1 for its current status (pass, warn, fail), 0 for the others",
    );
    let check_duration = gauge_family(
        &mut reg,
        "unitwatch_check_duration_seconds",
        "How long the check took when it last ran",
    );
    for c in &snap.checks {
        for s in STATUSES {
            check_status
                .get_or_create(&vec![
                    ("check", c.key.to_string()),
                    ("status", s.as_str().to_string()),
                ])
                .set(flag(c.status == s));
        }
        check_duration
            .get_or_create(&vec![("check", c.key.to_string())])
            .set(c.duration_us as f64 / 1e6);
    }
    measurements(&mut reg, snap);

    if let Some(t) = &snap.telemetry {
        counter(
            &mut reg,
            "unitwatch_telemetry_exports",
            "OTLP exports the collector accepted",
            t.exports_total,
        );
        counter(
            &mut reg,
            "unitwatch_telemetry_export_failures",
            "OTLP exports that failed (retried)",
            t.export_failures_total,
        );
        counter(
            &mut reg,
            "unitwatch_telemetry_dropped",
            "Events dropped, oldest first, while the OTLP queue was full",
            t.dropped_total,
        );
        gauge(
            &mut reg,
            "unitwatch_telemetry_queued_events",
            "Events waiting for the OTLP collector",
        )
        .set(t.queued_events as f64);
        if let Some(at) = t
            .last_success_at
            .as_deref()
            .and_then(|a| humantime::parse_rfc3339_weak(a).ok())
        {
            gauge(
                &mut reg,
                "unitwatch_telemetry_last_success_timestamp_seconds",
                "When an OTLP export last succeeded, in seconds since the epoch",
            )
            .set(
                at.duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
        }
    }

    if !snap.alerts.is_empty() {
        let fam = |reg: &mut Registry, name: &str, help: &str| counter_family(reg, name, help);
        let sent = fam(
            &mut reg,
            "unitwatch_alerts_sent",
            "Alerts a channel delivered",
        );
        let failed = fam(
            &mut reg,
            "unitwatch_alerts_failed",
            "Alerts a channel gave up on after every attempt",
        );
        let suppressed = fam(
            &mut reg,
            "unitwatch_alerts_suppressed",
            "Alerts held back by a channel's cooldown (counted in the next one sent)",
        );
        let dropped = fam(
            &mut reg,
            "unitwatch_alerts_dropped",
            "Alerts dropped, oldest first, while a channel's queue was full",
        );
        let queued = gauge_family(
            &mut reg,
            "unitwatch_alerts_queued",
            "Alerts waiting for delivery",
        );
        for c in &snap.alerts {
            let l = vec![("channel", c.name.clone()), ("type", c.kind.clone())];
            sent.get_or_create(&l).inc_by(c.sent_total);
            failed.get_or_create(&l).inc_by(c.failed_total);
            suppressed.get_or_create(&l).inc_by(c.suppressed_total);
            dropped.get_or_create(&l).inc_by(c.dropped_total);
            queued.get_or_create(&l).set(c.queued as f64);
        }
    }

    let unit_state = gauge_family(
        &mut reg,
        "unitwatch_unit_state",
        "Per watched unit: 1 for its current ActiveState, 0 for the others",
    );
    let restarts = counter_family(
        &mut reg,
        "unitwatch_unit_restarts",
        "Restarts of the unit done by unitwatch",
    );
    let systemd_restarts = counter_family(
        &mut reg,
        "unitwatch_unit_systemd_restarts",
        "Restarts of the unit done by systemd's Restart=, as unitwatch saw them",
    );
    let delay = gauge_family(
        &mut reg,
        "unitwatch_unit_backoff_delay_seconds",
        "The wait before unitwatch's next restart of the unit",
    );
    let last_hour = gauge_family(
        &mut reg,
        "unitwatch_unit_restarts_last_hour",
        "Restarts of the unit by unitwatch within the last hour (capped by max_restarts_per_hour)",
    );
    let limited = gauge_family(
        &mut reg,
        "unitwatch_unit_restart_limited",
        "1 while the hourly restart limit holds restarts of the unit back",
    );
    let memory = gauge_family(
        &mut reg,
        "unitwatch_unit_memory_bytes",
        "The unit's MemoryCurrent (its cgroup's memory use)",
    );
    for (name, u) in &snap.units {
        let l = vec![("unit", name.clone())];
        let state = u.state.as_ref().map(|s| s.active_state.as_str());
        for s in ACTIVE_STATES {
            unit_state
                .get_or_create(&vec![("unit", name.clone()), ("state", s.to_string())])
                .set(flag(state == Some(s)));
        }
        restarts.get_or_create(&l).inc_by(u.backoff.restarts_total);
        systemd_restarts
            .get_or_create(&l)
            .inc_by(u.backoff.systemd_restarts_total);
        delay
            .get_or_create(&l)
            .set(u.backoff.next_delay_ms as f64 / 1000.0);
        last_hour
            .get_or_create(&l)
            .set(u.backoff.restarts_last_hour as f64);
        limited.get_or_create(&l).set(flag(u.backoff.limited));
        if let Some(m) = u.state.as_ref().and_then(|s| s.memory_current) {
            memory.get_or_create(&l).set(m as f64);
        }
    }
    encode(&reg)
}

fn encode(reg: &Registry) -> String {
    let mut out = String::new();
    encode_registry(&mut out, reg).expect("writing to a String cannot fail");
    out
}

/// What is measured at scrape time rather than read from the snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerScrape {
    /// The snapshot's age, when there is one.
    pub age_seconds: Option<f64>,
    /// unitwatch-http's own connections, when it serves the scrape.
    pub conns: Option<super::conns::Stats>,
}

impl PerScrape {
    /// A snapshot `age_seconds` old, no server's connections.
    pub fn aged(age_seconds: f64) -> Self {
        PerScrape {
            age_seconds: Some(age_seconds),
            conns: None,
        }
    }
}

/// The per-scrape families (the snapshot's age, unitwatch-http's
/// connections) plus the end marker, appended to the rendered exposition.
pub fn finish(rendered: &str, now: PerScrape) -> String {
    let mut reg = Registry::default();
    if let Some(age) = now.age_seconds {
        gauge(
            &mut reg,
            "unitwatch_snapshot_age_seconds",
            "Seconds since unitwatchd last wrote its status snapshot, at scrape time",
        )
        .set(age);
    }
    if let Some(st) = now.conns {
        gauge(
            &mut reg,
            "unitwatch_http_open_connections",
            "Connections unitwatch-http holds open, this scrape's among them",
        )
        .set(st.open as f64);
        gauge(
            &mut reg,
            "unitwatch_http_max_connections",
            "Connections unitwatch-http serves at once; over it, the one waiting longest for a request is closed",
        )
        .set(st.limits.total as f64);
        gauge(
            &mut reg,
            "unitwatch_http_max_peer_connections",
            "Connections one peer (an IPv4 address or an IPv6 /64) holds at most",
        )
        .set(st.limits.per_peer as f64);
        let shed = counter_family(
            &mut reg,
            "unitwatch_http_connections_shed",
            "Connections closed to make room for a new one: reason peer_share (the same peer's) or cap (anyone's)",
        );
        shed.get_or_create(&vec![("reason", "peer_share".to_string())])
            .inc_by(st.shed_peer_share);
        shed.get_or_create(&vec![("reason", "cap".to_string())])
            .inc_by(st.shed_cap);
        counter(
            &mut reg,
            "unitwatch_http_connections_refused",
            "New connections closed at once because every held one was inside a request",
            st.refused,
        );
        counter(
            &mut reg,
            "unitwatch_http_accept_errors",
            "Failed accepts (out of file descriptors and the like)",
            st.accept_errors,
        );
    }
    let mut out = String::with_capacity(rendered.len() + 256);
    out.push_str(rendered);
    encode_registry(&mut out, &reg).expect("writing to a String cannot fail");
    encode_eof(&mut out).expect("writing to a String cannot fail");
    out
}

/// Does the scraper's `Accept` header ask for OpenMetrics?
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// OpenMetrics text (a whole exposition or a run of whole families) to
/// Prometheus text 0.0.4. One pass: a family's HELP is held until its TYPE
/// line says whether it is a counter.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        let counter = line
            .strip_prefix("# TYPE ")
            .and_then(|r| r.strip_suffix(" counter"));
        if let Some(h) = help.take() {
            match (counter, h["# HELP ".len()..].split_once(' ')) {
                (Some(name), Some((_, text))) => {
                    out.push_str(&format!("# HELP {name}_total {text}\n"))
                }
                _ => {
                    out.push_str(h);
                    out.push('\n');
                }
            }
        }
        match counter {
            Some(name) => out.push_str(&format!("# TYPE {name}_total counter\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Both formats of everything but the per-scrape families.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    openmetrics: String,
    prometheus: String,
}

impl Exposition {
    pub fn new(snap: Option<&Snapshot>) -> Self {
        let openmetrics = render(snap);
        Exposition {
            prometheus: to_prometheus_text(&openmetrics),
            openmetrics,
        }
    }

    /// The body and its content type, for a scrape now.
    pub fn scrape(&self, openmetrics: bool, now: PerScrape) -> (&'static str, String) {
        if openmetrics {
            (OPENMETRICS, finish(&self.openmetrics, now))
        } else {
            let tail = to_prometheus_text(&finish("", now));
            let mut body = String::with_capacity(self.prometheus.len() + tail.len());
            body.push_str(&self.prometheus);
            body.push_str(&tail);
            (PROMETHEUS_TEXT, body)
        }
    }
}

#[cfg(test)]
mod tests;

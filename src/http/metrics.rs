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

use crate::checks::{Measure, Status};
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
    let heartbeat_age = gauge_family(
        &mut reg,
        "unitwatch_heartbeat_age_seconds",
        "Age of the heartbeat file (time since its last modification)",
    );
    let disk_used = gauge_family(
        &mut reg,
        "unitwatch_disk_used_ratio",
        "Share of the filesystem's space in use, as df counts it (0-1)",
    );
    let disk_inodes = gauge_family(
        &mut reg,
        "unitwatch_disk_inodes_used_ratio",
        "Share of the filesystem's inodes in use (0-1)",
    );
    for c in &snap.checks {
        for s in STATUSES {
            check_status
                .get_or_create(&vec![
                    ("check", c.key.clone()),
                    ("status", s.as_str().to_string()),
                ])
                .set(flag(c.status == s));
        }
        check_duration
            .get_or_create(&vec![("check", c.key.clone())])
            .set(c.duration_us as f64 / 1e6);
        match c.measure() {
            Some(Measure::HeartbeatAge { path, seconds }) => {
                heartbeat_age
                    .get_or_create(&vec![("path", path.to_string())])
                    .set(seconds);
            }
            Some(Measure::DiskUsed { path, percent }) => {
                disk_used
                    .get_or_create(&vec![("path", path.to_string())])
                    .set(percent / 100.0);
            }
            Some(Measure::DiskInodes { path, percent }) => {
                disk_inodes
                    .get_or_create(&vec![("path", path.to_string())])
                    .set(percent / 100.0);
            }
            Some(Measure::MemoryUsed { percent }) => {
                gauge(
                    &mut reg,
                    "unitwatch_memory_used_ratio",
                    "Share of the system's memory not available (1 - MemAvailable/MemTotal)",
                )
                .set(percent / 100.0);
            }
            None => {}
        }
    }

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

/// The per-scrape families (the snapshot's age) plus the end marker,
/// appended to the rendered exposition.
pub fn finish(rendered: &str, age_seconds: Option<f64>) -> String {
    let mut reg = Registry::default();
    if let Some(age) = age_seconds {
        gauge(
            &mut reg,
            "unitwatch_snapshot_age_seconds",
            "Seconds since unitwatchd last wrote its status snapshot, at scrape time",
        )
        .set(age);
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
    pub fn scrape(&self, openmetrics: bool, age_seconds: Option<f64>) -> (&'static str, String) {
        if openmetrics {
            (OPENMETRICS, finish(&self.openmetrics, age_seconds))
        } else {
            let tail = to_prometheus_text(&finish("", age_seconds));
            let mut body = String::with_capacity(self.prometheus.len() + tail.len());
            body.push_str(&self.prometheus);
            body.push_str(&tail);
            (PROMETHEUS_TEXT, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckResult;
    use crate::snapshot::{BackoffView, UnitView};
    use crate::units::UnitStatus;
    use std::collections::BTreeMap;

    fn snap() -> Snapshot {
        let c = |key: &str, v: serde_json::Value, status: Status| {
            let (component, measurement) = key.rsplit_once(':').unwrap();
            CheckResult {
                key: key.into(),
                component: component.into(),
                measurement: measurement.into(),
                component_type: "system".into(),
                unit: None,
                status,
                observed_value: v,
                observed_unit: None,
                output: None,
                time: "2026-11-23T10:00:00.000Z".into(),
                duration_us: 1500,
            }
        };
        let mut units = BTreeMap::new();
        units.insert(
            "a.service".to_string(),
            UnitView {
                state: Some(UnitStatus {
                    load_state: "loaded".into(),
                    active_state: "failed".into(),
                    sub_state: "failed".into(),
                    memory_current: Some(1048576),
                    ..Default::default()
                }),
                restart: true,
                backoff: BackoffView {
                    restarts_total: 4,
                    systemd_restarts_total: 2,
                    next_delay_ms: 80_000,
                    restarts_last_hour: 3,
                    limited: true,
                    ..Default::default()
                },
            },
        );
        // Failing overall, whatever these checks say: the unit is failed.
        Snapshot {
            status: Status::Fail,
            version: "9.9.9-daemon".into(),
            ..Snapshot::fixture(
                vec![
                    c("disk:/:utilization", serde_json::json!(81.5), Status::Warn),
                    c("disk:/:inodes", serde_json::json!(2.0), Status::Pass),
                    c("memory:utilization", serde_json::json!(50.0), Status::Pass),
                    c(
                        "heartbeat:/var/lib/x/hb:age",
                        serde_json::json!(12.5),
                        Status::Pass,
                    ),
                ],
                units,
            )
        }
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }

    #[test]
    fn values_in_base_units() {
        let om = finish(&render(Some(&snap())), Some(2.5));
        has(&om, "unitwatch_disk_used_ratio{path=\"/\"} 0.815");
        has(&om, "unitwatch_disk_inodes_used_ratio{path=\"/\"} 0.02");
        has(&om, "unitwatch_memory_used_ratio 0.5");
        has(
            &om,
            "unitwatch_heartbeat_age_seconds{path=\"/var/lib/x/hb\"} 12.5",
        );
        has(
            &om,
            "unitwatch_unit_state{unit=\"a.service\",state=\"failed\"} 1.0",
        );
        has(
            &om,
            "unitwatch_unit_state{unit=\"a.service\",state=\"active\"} 0.0",
        );
        has(&om, "unitwatch_unit_restarts_total{unit=\"a.service\"} 4");
        has(
            &om,
            "unitwatch_unit_systemd_restarts_total{unit=\"a.service\"} 2",
        );
        has(
            &om,
            "unitwatch_unit_backoff_delay_seconds{unit=\"a.service\"} 80.0",
        );
        has(
            &om,
            "unitwatch_unit_restart_limited{unit=\"a.service\"} 1.0",
        );
        has(
            &om,
            "unitwatch_unit_memory_bytes{unit=\"a.service\"} 1048576.0",
        );
        has(
            &om,
            "unitwatch_check_status{check=\"disk:/:utilization\",status=\"warn\"} 1.0",
        );
        has(
            &om,
            "unitwatch_check_duration_seconds{check=\"disk:/:utilization\"} 0.0015",
        );
        has(&om, "unitwatch_health_status{status=\"fail\"} 1.0");
        has(&om, "unitwatch_snapshot_age_seconds 2.5");
        has(
            &om,
            "unitwatch_snapshot_last_update_timestamp_seconds 1795428000.0",
        );
        // The server's own version, as Cargo.toml gives it, and not the
        // daemon's from the snapshot (which the fixture sets apart).
        let manifest = include_str!("../../Cargo.toml");
        let version = manifest
            .lines()
            .find_map(|l| l.strip_prefix("version = \""))
            .and_then(|v| v.strip_suffix('"'))
            .expect("Cargo.toml has a version line");
        has(
            &om,
            &format!("unitwatch_build_info{{version=\"{version}\"}} 1.0"),
        );
        assert_eq!(om.matches("unitwatch_build_info{").count(), 1, "{om}");
        assert!(!om.contains("version=\"9.9.9-daemon\""), "{om}");
        assert!(om.ends_with("# EOF\n"));
        has(&om, "# TYPE unitwatch_unit_restarts counter");
    }

    #[test]
    fn alert_series_per_channel() {
        let mut s = snap();
        assert!(!render(Some(&s)).contains("unitwatch_alerts"));
        s.alerts = vec![crate::snapshot::AlertChannelView {
            name: "ops".into(),
            kind: "discord".into(),
            sent_total: 4,
            failed_total: 1,
            suppressed_total: 9,
            dropped_total: 0,
            queued: 2,
            ..Default::default()
        }];
        let t = render(Some(&s));
        has(
            &t,
            "unitwatch_alerts_sent_total{channel=\"ops\",type=\"discord\"} 4",
        );
        has(
            &t,
            "unitwatch_alerts_failed_total{channel=\"ops\",type=\"discord\"} 1",
        );
        has(
            &t,
            "unitwatch_alerts_suppressed_total{channel=\"ops\",type=\"discord\"} 9",
        );
        has(
            &t,
            "unitwatch_alerts_queued{channel=\"ops\",type=\"discord\"} 2.0",
        );
    }

    #[test]
    fn telemetry_series_only_when_the_export_is_on() {
        let (_, off) = Exposition::new(Some(&snap())).scrape(false, None);
        assert!(!off.contains("unitwatch_telemetry"), "{off}");
        let mut s = snap();
        s.telemetry = Some(crate::snapshot::TelemetryView {
            protocol: "grpc".into(),
            endpoint: "http://127.0.0.1:4317".into(),
            exports_total: 7,
            export_failures_total: 2,
            dropped_total: 3,
            queued_events: 5,
            last_success_at: Some("2026-11-23T10:00:00.000Z".into()),
            last_error: None,
        });
        let (_, t) = Exposition::new(Some(&s)).scrape(false, None);
        has(&t, "unitwatch_telemetry_exports_total 7");
        has(&t, "unitwatch_telemetry_export_failures_total 2");
        has(&t, "unitwatch_telemetry_dropped_total 3");
        has(&t, "unitwatch_telemetry_queued_events 5.0");
        has(
            &t,
            "unitwatch_telemetry_last_success_timestamp_seconds 1795428000.0",
        );
    }

    #[test]
    fn prometheus_text_names_counters_with_total_and_has_no_eof() {
        let (ct, t) = Exposition::new(Some(&snap())).scrape(false, Some(1.0));
        assert_eq!(ct, PROMETHEUS_TEXT);
        has(&t, "unitwatch_snapshot_age_seconds 1.0");
        // Series within a family come in any order: compare line sets.
        let lines = |s: &str| {
            let mut v: Vec<String> = s.lines().map(str::to_string).collect();
            v.sort();
            v
        };
        assert_eq!(
            lines(&t),
            lines(&to_prometheus_text(&finish(
                &render(Some(&snap())),
                Some(1.0)
            )))
        );
        has(&t, "# TYPE unitwatch_unit_restarts_total counter");
        has(
            &t,
            "# HELP unitwatch_unit_restarts_total Restarts of the unit done by unitwatch.",
        );
        has(&t, "unitwatch_unit_restarts_total{unit=\"a.service\"} 4");
        has(&t, "# TYPE unitwatch_disk_used_ratio gauge");
        assert!(!t.contains("# EOF"), "{t}");
        assert!(!t.contains("# TYPE unitwatch_unit_restarts counter"), "{t}");
    }

    #[test]
    fn without_a_snapshot_only_presence_and_build() {
        let om = finish(&render(None), None);
        has(&om, "unitwatch_snapshot_present 0.0");
        assert!(!om.contains("unitwatch_unit_state"));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}

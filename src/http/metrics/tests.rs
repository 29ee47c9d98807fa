//! The exposition against fixed snapshots: values in base units, the
//! per-channel and export series, both formats' naming, no snapshot.

use super::*;
use crate::checks::{CheckResult, Measurement};
use crate::snapshot::{BackoffView, UnitView};
use crate::units::UnitStatus;
use std::collections::BTreeMap;

fn snap() -> Snapshot {
    let c = |key: &str, v: serde_json::Value, status: Status, m: Vec<Measurement>| {
        let (component, measurement) = key.rsplit_once(':').unwrap();
        CheckResult {
            key: key.into(),
            component: component.into(),
            measurement: measurement.to_string().into(),
            component_type: "system".into(),
            unit: None,
            status,
            observed_value: v,
            observed_unit: None,
            output: None,
            time: "2026-11-23T10:00:00.000Z".parse().unwrap(),
            duration_us: 1500,
            measurements: m,
            pending: false,
        }
    };
    let m = |name: &'static str, v: f64, labels: &[(&'static str, &str)]| {
        labels
            .iter()
            .fold(Measurement::new(name, v), |m, (k, x)| m.label(k, *x))
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
                c(
                    "disk:/:utilization",
                    serde_json::json!(81.5),
                    Status::Warn,
                    vec![m("disk_used_ratio", 0.815, &[("path", "/")])],
                ),
                c(
                    "disk:/:inodes",
                    serde_json::json!(2.0),
                    Status::Pass,
                    vec![m("disk_inodes_used_ratio", 0.02, &[("path", "/")])],
                ),
                c(
                    "memory:utilization",
                    serde_json::json!(50.0),
                    Status::Pass,
                    vec![m("memory_used_ratio", 0.5, &[])],
                ),
                c(
                    "heartbeat:/var/lib/x/hb:age",
                    serde_json::json!(12.5),
                    Status::Pass,
                    vec![m(
                        "heartbeat_age_seconds",
                        12.5,
                        &[("path", "/var/lib/x/hb")],
                    )],
                ),
                c(
                    "disk-plugin:command",
                    serde_json::json!("WARNING"),
                    Status::Warn,
                    vec![
                        m("probe_success", 0.0, &[("check", "disk-plugin:command")]),
                        m(
                            "command_perfdata",
                            30000.0,
                            &[
                                ("check", "disk-plugin:command"),
                                ("label", "/"),
                                ("uom", "MB"),
                            ],
                        ),
                        m(
                            "command_perfdata",
                            12.5,
                            &[
                                ("check", "disk-plugin:command"),
                                ("label", "/var"),
                                ("uom", "%"),
                            ],
                        ),
                        m("some_future_figure", 1.0, &[]),
                    ],
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
    let om = finish(&render(Some(&snap())), PerScrape::aged(2.5));
    has(&om, "unitwatch_disk_used_ratio{path=\"/\"} 0.815");
    has(&om, "unitwatch_disk_inodes_used_ratio{path=\"/\"} 0.02");
    has(&om, "unitwatch_memory_used_ratio 0.5");
    has(
        &om,
        "unitwatch_heartbeat_age_seconds{path=\"/var/lib/x/hb\"} 12.5",
    );
    // Labels come from the measurement, sorted; one family per figure.
    has(
        &om,
        "unitwatch_command_perfdata{check=\"disk-plugin:command\",label=\"/\",uom=\"MB\"} 30000.0",
    );
    has(
        &om,
        "unitwatch_command_perfdata{check=\"disk-plugin:command\",label=\"/var\",uom=\"%\"} 12.5",
    );
    assert_eq!(
        om.matches("# TYPE unitwatch_command_perfdata gauge")
            .count(),
        1,
        "{om}"
    );
    has(
        &om,
        "unitwatch_probe_success{check=\"disk-plugin:command\"} 0.0",
    );
    has(
        &om,
        "# HELP unitwatch_some_future_figure A figure measured by a check.",
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
    let manifest = include_str!("../../../Cargo.toml");
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
    let (_, off) = Exposition::new(Some(&snap())).scrape(false, PerScrape::default());
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
    let (_, t) = Exposition::new(Some(&s)).scrape(false, PerScrape::default());
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
    let (ct, t) = Exposition::new(Some(&snap())).scrape(false, PerScrape::aged(1.0));
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
            PerScrape::aged(1.0)
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
    let om = finish(&render(None), PerScrape::default());
    has(&om, "unitwatch_snapshot_present 0.0");
    assert!(!om.contains("unitwatch_unit_state"));
    assert!(wants_openmetrics(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
    )));
    assert!(!wants_openmetrics(Some("text/plain")));
    assert!(!wants_openmetrics(None));
}

#[test]
fn the_servers_own_connections_are_per_scrape_families() {
    use crate::http::conns::{Limits, Stats};
    let now = PerScrape {
        age_seconds: None,
        conns: Some(Stats {
            limits: Limits::new(1024),
            open: 3,
            shed_peer_share: 7,
            shed_cap: 2,
            refused: 1,
            accept_errors: 5,
        }),
    };
    let (_, t) = Exposition::new(Some(&snap())).scrape(false, now);
    has(&t, "unitwatch_http_open_connections 3.0");
    has(&t, "unitwatch_http_max_connections 1024.0");
    has(&t, "unitwatch_http_max_peer_connections 256.0");
    has(
        &t,
        "unitwatch_http_connections_shed_total{reason=\"peer_share\"} 7",
    );
    has(
        &t,
        "unitwatch_http_connections_shed_total{reason=\"cap\"} 2",
    );
    has(&t, "unitwatch_http_connections_refused_total 1");
    has(&t, "unitwatch_http_accept_errors_total 5");
    has(&t, "# TYPE unitwatch_http_connections_shed_total counter");
    // Not served by unitwatch-http (a unit test of the rendering): none.
    let (_, bare) = Exposition::new(Some(&snap())).scrape(false, PerScrape::aged(1.0));
    assert!(!bare.contains("unitwatch_http_"), "{bare}");
}

//! The exported metrics: the health model of `/metrics`, read from the
//! latest status snapshot when the export collects. Names follow what
//! Azure users of the seed know (`health.*`) plus `unitwatch.*` for the
//! rest; units are UCUM; no metric has more than three attributes (Azure
//! allows ten dimensions).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use opentelemetry::metrics::{AsyncInstrument, Meter};
use opentelemetry::KeyValue;

use crate::checks::kind::all_metrics;
use crate::checks::Status;
use crate::snapshot::Snapshot;

use super::Shared;

/// (name, unit, description) of the metrics of the supervisor itself; the
/// checks' figures come from their kinds ([`metrics`] lists both).
const OWN_METRICS: &[(&str, &str, &str)] = &[
    ("health.service_active", "1", "1 while the watched unit is active, else 0 (attribute unit)"),
    ("health.crash_count", "{crash}", "failures of the unit that led to a restart, by unitwatch or by systemd's Restart= (counter)"),
    ("unitwatch.unit.restarts", "{restart}", "restarts done by unitwatch (counter)"),
    ("unitwatch.unit.backoff_delay", "s", "the wait before unitwatch's next restart of the unit"),
    ("unitwatch.unit.restart_limited", "1", "1 while max_restarts_per_hour holds restarts back"),
    ("unitwatch.unit.memory", "By", "the unit's MemoryCurrent, for units with memory thresholds"),
    ("unitwatch.check.status", "1", "each check: 0 pass, 1 warn, 2 fail (attribute check)"),
    ("unitwatch.health.status", "1", "overall: 0 pass, 1 warn, 2 fail"),
    ("unitwatch.telemetry.dropped", "{event}", "events dropped, oldest first, while the export queue was full (counter)"),
];

fn status_value(s: Status) -> f64 {
    match s {
        Status::Pass => 0.0,
        Status::Warn => 1.0,
        Status::Fail => 2.0,
    }
}

fn unit_attr(name: &str) -> [KeyValue; 1] {
    [KeyValue::new("unit", name.to_string())]
}

/// Keeps the callbacks registered for as long as it lives.
pub struct Instruments {
    _gauges: Vec<opentelemetry::metrics::ObservableGauge<f64>>,
    _counters: Vec<opentelemetry::metrics::ObservableCounter<u64>>,
}

type GaugeFn = fn(&Snapshot, &dyn AsyncInstrument<f64>);
type CounterFn = fn(&Snapshot, &dyn AsyncInstrument<u64>);

/// Every exported metric: (name, UCUM unit, description), for the README
/// and the tests.
pub fn metrics() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut v = OWN_METRICS.to_vec();
    v.extend(all_metrics().iter().map(|m| (m.otlp, m.otlp_unit, m.help)));
    v
}

fn describe(name: &str) -> (&'static str, &'static str) {
    let (_, unit, desc) = OWN_METRICS
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("every instrument is listed in OWN_METRICS");
    (unit, desc)
}

pub fn register(meter: &Meter, shared: &Arc<Shared>) -> Instruments {
    let gauges: Vec<(&'static str, GaugeFn)> = vec![
        ("health.service_active", |s, o| {
            for (name, u) in &s.units {
                let active = u
                    .state
                    .as_ref()
                    .is_some_and(|st| matches!(st.active_state.as_str(), "active" | "reloading"));
                o.observe(if active { 1.0 } else { 0.0 }, &unit_attr(name));
            }
        }),
        ("unitwatch.unit.backoff_delay", |s, o| {
            for (name, u) in &s.units {
                o.observe(u.backoff.next_delay_ms as f64 / 1000.0, &unit_attr(name));
            }
        }),
        ("unitwatch.unit.restart_limited", |s, o| {
            for (name, u) in &s.units {
                o.observe(if u.backoff.limited { 1.0 } else { 0.0 }, &unit_attr(name));
            }
        }),
        ("unitwatch.unit.memory", |s, o| {
            for (name, u) in &s.units {
                if let Some(m) = u.state.as_ref().and_then(|st| st.memory_current) {
                    o.observe(m as f64, &unit_attr(name));
                }
            }
        }),
        ("unitwatch.check.status", |s, o| {
            for c in &s.checks {
                o.observe(
                    status_value(c.status),
                    &[KeyValue::new("check", c.key.clone())],
                );
            }
        }),
        ("unitwatch.health.status", |s, o| {
            o.observe(status_value(s.status), &[]);
        }),
    ];
    let counters: Vec<(&'static str, CounterFn)> = vec![
        ("health.crash_count", |s, o| {
            for (name, u) in &s.units {
                o.observe(
                    u.backoff.restarts_total + u.backoff.systemd_restarts_total,
                    &unit_attr(name),
                );
            }
        }),
        ("unitwatch.unit.restarts", |s, o| {
            for (name, u) in &s.units {
                o.observe(u.backoff.restarts_total, &unit_attr(name));
            }
        }),
    ];

    let mut out = Instruments {
        _gauges: Vec::new(),
        _counters: Vec::new(),
    };
    for (name, f) in gauges {
        let (unit, desc) = describe(name);
        let sh = shared.clone();
        out._gauges.push(
            meter
                .f64_observable_gauge(name)
                .with_unit(unit)
                .with_description(desc)
                .with_callback(move |o| {
                    if let Some(s) = sh.snapshot() {
                        f(&s, o);
                    }
                })
                .build(),
        );
    }
    for (name, f) in counters {
        let (unit, desc) = describe(name);
        let sh = shared.clone();
        out._counters.push(
            meter
                .u64_observable_counter(name)
                .with_unit(unit)
                .with_description(desc)
                .with_callback(move |o| {
                    if let Some(s) = sh.snapshot() {
                        f(&s, o);
                    }
                })
                .build(),
        );
    }
    // The checks' figures, one gauge per kind's figure, its attributes the
    // measurement's labels.
    for m in all_metrics() {
        let sh = shared.clone();
        let name = m.name;
        let scale = m.otlp_scale;
        out._gauges.push(
            meter
                .f64_observable_gauge(m.otlp)
                .with_unit(m.otlp_unit)
                .with_description(m.help)
                .with_callback(move |o| {
                    let Some(s) = sh.snapshot() else { return };
                    for c in &s.checks {
                        for x in c.measurements.iter().filter(|x| x.name == name) {
                            let attrs: Vec<KeyValue> = x
                                .labels
                                .iter()
                                .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string()))
                                .collect();
                            o.observe(x.value * scale, &attrs);
                        }
                    }
                })
                .build(),
        );
    }
    let (unit, desc) = describe("unitwatch.telemetry.dropped");
    let sh = shared.clone();
    out._counters.push(
        meter
            .u64_observable_counter("unitwatch.telemetry.dropped")
            .with_unit(unit)
            .with_description(desc)
            .with_callback(move |o| o.observe(sh.dropped.load(Ordering::Relaxed), &[]))
            .build(),
    );
    out
}

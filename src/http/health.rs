//! The health+json bodies (draft-inadarei-api-health-check-06) made from a
//! status snapshot: `/health`, `/health/detailed`, `/health/service/{unit}`.
//!
//! Pure functions of (snapshot, freshness), so the rules of the draft are
//! unit-tested field by field without a server.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::checks::{CheckResult, Status};
use crate::snapshot::Snapshot;

pub const CONTENT_TYPE: &str = "application/health+json";

/// The draft's top-level object; fields it marks optional are left out
/// when empty (`output` in particular is omitted on pass).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Vec<CheckObject>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, String>,
}

/// One entry of `checks`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckObject {
    pub component_id: String,
    pub component_type: String,
    pub observed_value: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<String>,
    pub status: Status,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// The HTTP status for a health status: 2xx for pass and warn, 5xx for fail.
pub fn http_status(s: Status) -> u16 {
    match s {
        Status::Pass | Status::Warn => 200,
        Status::Fail => 503,
    }
}

/// Where the snapshot stands, decided per request (it ages by the second).
#[derive(Debug, Clone, PartialEq)]
pub enum Freshness {
    Fresh,
    /// Present but older than the daemon's promise: dead or hung.
    Stale(String),
    /// No usable snapshot at all.
    Missing(String),
}

fn base(status: Status, host: &str) -> Health {
    Health {
        status,
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        release_id: None,
        notes: Vec::new(),
        output: None,
        service_id: Some(format!("unitwatch@{host}")),
        description: Some(format!("unitwatch health supervisor on {host}")),
        checks: BTreeMap::new(),
        links: BTreeMap::new(),
    }
}

fn check_object(c: &CheckResult) -> CheckObject {
    CheckObject {
        component_id: c.component.to_string(),
        component_type: c.component_type.to_string(),
        observed_value: c.observed_value.clone(),
        observed_unit: c.observed_unit.as_deref().map(str::to_string),
        status: c.status,
        time: c.time.to_string(),
        output: c.output.as_deref().map(str::to_string),
    }
}

/// Applies freshness to a body made from a snapshot: a stale snapshot turns
/// it to fail with the reason first in `output`, keeping what was last seen.
fn judge(mut h: Health, fresh: &Freshness, snap_time: Option<&str>) -> Health {
    if let Freshness::Stale(why) | Freshness::Missing(why) = fresh {
        h.status = Status::Fail;
        h.output = Some(match h.output.take() {
            Some(o) => format!("{why}; last known: {o}"),
            None => why.clone(),
        });
        if let Some(t) = snap_time {
            h.notes.push(format!("checks as of {t}"));
        }
    }
    h
}

/// `/health`: the overall verdict, small enough for any monitor.
pub fn summary(snap: Option<&Snapshot>, fresh: &Freshness, host: &str) -> Health {
    let Some(snap) = snap else {
        return judge(base(Status::Fail, host), fresh, None);
    };
    let mut h = base(snap.status, host);
    if snap.status != Status::Pass {
        h.output = Some(snap.summary.clone());
    }
    h.links.insert("detailed".into(), "/health/detailed".into());
    judge(h, fresh, Some(&snap.updated_at))
}

/// `/health/detailed`: every check under `checks`, keyed
/// `component:measurement`.
pub fn detailed(snap: Option<&Snapshot>, fresh: &Freshness, host: &str) -> Health {
    let mut h = summary(snap, fresh, host);
    if let Some(snap) = snap {
        for c in &snap.checks {
            h.checks
                .entry(c.key.to_string())
                .or_default()
                .push(check_object(c));
        }
    }
    h
}

/// `/health/service/{unit}`: the checks about one watched unit; `None` when
/// the unit is not watched (a 404).
pub fn service(
    snap: Option<&Snapshot>,
    fresh: &Freshness,
    host: &str,
    unit: &str,
) -> Option<Health> {
    let Some(snap) = snap else {
        return Some(judge(base(Status::Fail, host), fresh, None));
    };
    // A watched unit, or a container (NAME.container), whose checks say
    // they are about it.
    if !snap.units.contains_key(unit)
        && !snap.checks.iter().any(|c| c.unit.as_deref() == Some(unit))
    {
        return None;
    }
    let mine: Vec<&CheckResult> = snap
        .checks
        .iter()
        .filter(|c| c.unit.as_deref() == Some(unit))
        .collect();
    let status = crate::checks::overall(mine.iter().map(|r| r.status));
    let mut h = base(status, host);
    h.service_id = Some(unit.to_string());
    h.description = Some(format!("{unit} as watched by unitwatch on {host}"));
    if status != Status::Pass {
        let bad: Vec<String> = mine
            .iter()
            .filter(|c| c.status != Status::Pass)
            .map(|c| match &c.output {
                Some(o) => format!("{}: {o}", c.key),
                None => c.key.to_string(),
            })
            .collect();
        h.output = Some(bad.join("; "));
    }
    for c in mine {
        h.checks
            .entry(c.key.to_string())
            .or_default()
            .push(check_object(c));
    }
    Some(judge(h, fresh, Some(&snap.updated_at)))
}

/// The body for a unit that is not watched.
pub fn not_watched(unit: &str, host: &str) -> Health {
    let mut h = base(Status::Fail, host);
    h.output = Some(format!("{unit} is not watched by unitwatch on {host}"));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{BackoffView, UnitView};
    use serde_json::json;

    fn check(
        key: &str,
        unit: Option<&str>,
        status: Status,
        value: serde_json::Value,
    ) -> CheckResult {
        let (component, measurement) = key.rsplit_once(':').unwrap();
        CheckResult {
            key: key.into(),
            component: component.into(),
            measurement: measurement.to_string().into(),
            component_type: if unit.is_some() {
                "component"
            } else {
                "system"
            }
            .into(),
            unit: unit.map(Into::into),
            status,
            observed_value: value,
            observed_unit: Some("percent".into()),
            output: (status != Status::Pass).then(|| "bad".into()),
            time: "2026-11-23T10:00:00.000Z".parse().unwrap(),
            duration_us: 3,
            measurements: Vec::new(),
            pending: false,
        }
    }

    fn snapshot(checks: Vec<CheckResult>) -> Snapshot {
        let mut units = BTreeMap::new();
        for c in &checks {
            if let Some(u) = &c.unit {
                units.insert(
                    u.to_string(),
                    UnitView {
                        state: None,
                        restart: true,
                        backoff: BackoffView::default(),
                    },
                );
            }
        }
        Snapshot::fixture(checks, units)
    }

    fn to_json(h: &Health) -> serde_json::Value {
        serde_json::to_value(h).unwrap()
    }

    #[test]
    fn pass_has_no_output_and_maps_to_200() {
        let s = snapshot(vec![check(
            "a.service:state",
            Some("a.service"),
            Status::Pass,
            json!("active"),
        )]);
        let h = to_json(&summary(Some(&s), &Freshness::Fresh, "vm1"));
        assert_eq!(h["status"], "pass");
        assert!(h.get("output").is_none(), "{h}");
        assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(h["serviceId"], "unitwatch@vm1");
        assert!(h.get("checks").is_none(), "summary carries no checks: {h}");
        assert_eq!(http_status(Status::Pass), 200);
        assert_eq!(http_status(Status::Warn), 200);
        assert_eq!(http_status(Status::Fail), 503);
    }

    #[test]
    fn warn_and_fail_carry_output() {
        let s = snapshot(vec![check(
            "disk:/:utilization",
            None,
            Status::Warn,
            json!(85.0),
        )]);
        let h = to_json(&summary(Some(&s), &Freshness::Fresh, "vm1"));
        assert_eq!(
            (h["status"].as_str(), h["output"].as_str()),
            (Some("warn"), Some("a summary"))
        );
    }

    #[test]
    fn stale_and_missing_fail_with_the_reason() {
        let s = snapshot(vec![check(
            "a.service:state",
            Some("a.service"),
            Status::Pass,
            json!("active"),
        )]);
        let h = to_json(&summary(
            Some(&s),
            &Freshness::Stale("snapshot is 95s old".into()),
            "vm1",
        ));
        assert_eq!(h["status"], "fail");
        assert_eq!(h["output"], "snapshot is 95s old");
        assert_eq!(h["notes"][0], "checks as of 2026-11-23T10:00:00.000Z");
        let h = to_json(&summary(
            None,
            &Freshness::Missing("no snapshot".into()),
            "vm1",
        ));
        assert_eq!(
            (h["status"].as_str(), h["output"].as_str()),
            (Some("fail"), Some("no snapshot"))
        );
    }

    #[test]
    fn detailed_keys_checks_by_component_and_measurement() {
        let s = snapshot(vec![
            check(
                "a.service:state",
                Some("a.service"),
                Status::Pass,
                json!("active"),
            ),
            check("disk:/:utilization", None, Status::Fail, json!(95.5)),
        ]);
        let h = to_json(&detailed(Some(&s), &Freshness::Fresh, "vm1"));
        assert_eq!(h["status"], "fail");
        let d = &h["checks"]["disk:/:utilization"][0];
        assert_eq!(d["componentId"], "disk:/");
        assert_eq!(d["componentType"], "system");
        assert_eq!(d["observedValue"], 95.5);
        assert_eq!(d["observedUnit"], "percent");
        assert_eq!(d["status"], "fail");
        assert_eq!(d["time"], "2026-11-23T10:00:00.000Z");
        assert_eq!(d["output"], "bad");
        let a = &h["checks"]["a.service:state"][0];
        assert!(a.get("output").is_none(), "{a}");
        assert_eq!(a["componentType"], "component");
    }

    #[test]
    fn service_has_only_that_units_checks() {
        let s = snapshot(vec![
            check(
                "a.service:state",
                Some("a.service"),
                Status::Pass,
                json!("active"),
            ),
            check(
                "a.service:memory",
                Some("a.service"),
                Status::Warn,
                json!(10),
            ),
            check(
                "b.service:state",
                Some("b.service"),
                Status::Fail,
                json!("failed"),
            ),
        ]);
        let h = to_json(&service(Some(&s), &Freshness::Fresh, "vm1", "a.service").unwrap());
        assert_eq!(h["status"], "warn");
        assert_eq!(h["output"], "a.service:memory: bad");
        assert_eq!(h["serviceId"], "a.service");
        assert_eq!(h["checks"].as_object().unwrap().len(), 2);
        assert!(service(Some(&s), &Freshness::Fresh, "vm1", "c.service").is_none());
        assert_eq!(to_json(&not_watched("c.service", "vm1"))["status"], "fail");
    }
}

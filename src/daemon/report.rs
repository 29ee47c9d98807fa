//! What the daemon tells: the status snapshot (status.json, the contract
//! with unitwatch-http and `unitwatchd check --json`), its one-line summary,
//! and the journal events of a check whose status changed. Shared with the
//! one-shot `unitwatchd check`, which reads the units the same way.

use super::*;
use crate::checks::Status;

/// The snapshot of a [`Supervisor`], borrowing its results and unit
/// table (a macro, not a method, so that the borrow is of those fields
/// only and the publisher stays free to take it).
macro_rules! snapshot_of {
    ($s:expr) => {{
        let mut snap = snapshot_ref(&View {
            config: &$s.config,
            policy: &$s.policy,
            checks: &$s.checks,
            results: &$s.results,
            units: &$s.units,
            backoff: &$s.store.units,
            bus_error: $s.bus_error.as_deref(),
            started_at: $s.started_at,
        });
        snap.telemetry = $s.telemetry.as_ref().map(|(_, t)| t.view());
        snap.alerts = $s
            .alerts
            .as_ref()
            .map(|(_, a)| a.view())
            .unwrap_or_default();
        snap
    }};
}

impl Supervisor {
    pub fn snapshot(&self) -> Snapshot {
        snapshot_of!(self).to_owned()
    }

    /// Hands the snapshot to its writer (status.json, off the loop: see
    /// [`publisher`]) and to the OTLP export, and sends STATUS= when it
    /// changed. Serialized from what the loop holds, not from a copy; the
    /// export, which keeps its snapshot, gets an owned one.
    pub(super) fn publish(&mut self) {
        self.publish_at = None;
        self.published = tokio::time::Instant::now();
        // Field by field, so that the publisher can be borrowed beside it.
        let snap = snapshot_of!(self);
        self.publisher
            .send(self.config.status_path(), |b| snap.serialize_into(b));
        let owned = self.telemetry.as_ref().map(|_| snap.to_owned());
        let summary = snap.summary;
        if summary != self.status_line {
            notify::status(&summary);
            self.status_line = summary;
        }
        if let (Some((_, t)), Some(owned)) = (&self.telemetry, owned) {
            t.update(std::sync::Arc::new(owned));
        }
    }

    /// Publishes after the reaction to an event is done: the events of one
    /// burst (a unit's several signals, many units failing at once) share
    /// one snapshot, and no signal waits behind a snapshot per event.
    pub(super) fn publish_soon(&mut self) {
        self.publish_by(tokio::time::Instant::now() + PUBLISH_EVENT);
    }
}

/// Reads every watched unit: one ListUnitsByNames for all of them, plus
/// `Result` for units that are down. `prev` supplies what signals told us
/// already, and the figures of the resource reader (resources.rs), which
/// reads memory and the rest on a task of its own after the sweep.
/// With the rows comes the serial of systemd's reply to the list, which
/// signals sent before it are older than (`systemd::older`).
pub async fn read_units(
    bus: &Systemd,
    config: &Config,
    prev: &UnitTable,
) -> Result<(Vec<(String, String, UnitStatus)>, u32), SystemdError> {
    let names: Vec<String> = config.units.iter().map(|u| u.name.to_string()).collect();
    let (listed, serial) = bus.list(&names).await?;
    let mut out = Vec::with_capacity(listed.len());
    for l in listed {
        let active = l.active_state == "active" || l.active_state == "reloading";
        let before = prev.get(&l.name);
        let result = if !active && l.load_state != "not-found" {
            bus.result(&l.name, &l.path).await?
        } else {
            before.and_then(|p| p.result.clone())
        };
        let status = UnitStatus {
            load_state: l.load_state,
            active_state: l.active_state,
            sub_state: l.sub_state,
            result,
            n_restarts: before.and_then(|p| p.n_restarts),
            // A unit that stopped has no figures; one that runs keeps the
            // reader's until its next read.
            memory_current: before.and_then(|p| p.memory_current).filter(|_| active),
            resources: before.and_then(|p| p.resources.clone()).filter(|_| active),
        };
        out.push((l.name, l.path, status));
    }
    Ok((out, serial))
}

/// What a snapshot is made of.
pub struct View<'a> {
    pub config: &'a Config,
    pub policy: &'a Policy,
    pub checks: &'a [CheckDef],
    pub results: &'a [checks::Found],
    pub units: &'a UnitTable,
    pub backoff: &'a BTreeMap<String, UnitBackoff>,
    pub bus_error: Option<&'a str>,
    pub started_at: SystemTime,
}

/// The STATUS= line: "3 units ok, 1 failing: worker.service".
pub fn summary(results: checks::Joined<'_>, bus_error: Option<&str>) -> String {
    let mut failing = Vec::new();
    let mut ok = 0;
    for (d, r) in results.iter().filter(|(d, _)| d.id.measurement == "state") {
        if r.status == Status::Pass {
            ok += 1;
        } else {
            failing.push(&*d.id.component);
        }
    }
    let mut s = format!("{ok} units ok");
    if !failing.is_empty() {
        s += &format!(", {} failing: {}", failing.len(), list(&failing));
    }
    let other: Vec<_> = results
        .iter()
        .filter(|(d, r)| d.id.measurement != "state" && r.status != Status::Pass)
        .map(|(d, _)| d.key())
        .collect();
    if !other.is_empty() {
        s += &format!("; {} checks not passing: {}", other.len(), list(&other));
    }
    if let Some(e) = bus_error {
        s = format!("systemd unreachable ({e}); {s}");
    }
    s
}

pub fn build_snapshot(v: &View<'_>) -> Snapshot {
    snapshot_ref(v).to_owned()
}

/// The snapshot of `v`, borrowing its results and unit states.
pub fn snapshot_ref<'a>(v: &View<'a>) -> SnapshotRef<'a> {
    let now = SystemTime::now();
    // A unit's or a container's backoff as shown: a fresh one where it
    // has none yet.
    let backoff = |name: &str| {
        v.backoff
            .get(name)
            .map(|b| BackoffView::of(b, v.policy, now))
            .unwrap_or_else(|| BackoffView {
                next_delay_ms: v.policy.initial.as_millis() as u64,
                ..Default::default()
            })
    };
    let units = v
        .config
        .units
        .iter()
        .map(|u| {
            let name = u.name.as_str();
            let view = UnitViewRef {
                state: v.units.get(name),
                restart: u.restart(),
                backoff: backoff(name),
            };
            (name, view)
        })
        .collect();
    let containers = v
        .config
        .containers
        .iter()
        .map(|c| {
            let name = c.component();
            let view = crate::snapshot::ContainerView {
                restart: c.restart,
                backoff: backoff(&name),
            };
            (name, view)
        })
        .collect();
    let results = checks::Joined::new(v.checks, v.results);
    SnapshotRef {
        schema_version: SCHEMA_VERSION,
        status: checks::overall(v.results.iter().map(|r| r.status)),
        summary: summary(results, v.bus_error),
        updated_at: humantime::format_rfc3339_millis(now).to_string(),
        started_at: humantime::format_rfc3339_millis(v.started_at).to_string(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION"),
        interval_ms: v.config.daemon.interval.as_millis() as u64,
        systemd: SystemdReach {
            reachable: v.bus_error.is_none(),
            error: v.bus_error.map(str::to_string),
        },
        checks: results,
        units,
        containers,
        telemetry: None,
        alerts: Vec::new(),
    }
}

fn list(items: &[&str]) -> String {
    const MAX: usize = 5;
    let mut s = items
        .iter()
        .take(MAX)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX {
        s += &format!(" and {} more", items.len() - MAX);
    }
    s
}

/// Logs a check's status change (or its first non-pass status).
pub(super) fn log_check_change(def: &CheckDef, r: &checks::Found, before: Option<Status>) {
    if before == Some(r.status) || (before.is_none() && r.status == Status::Pass) {
        return;
    }
    let (kind, severity) = match r.status {
        // A check whose failure is told as a unit's (a container's state)
        // tells its return as one too.
        Status::Pass if def.event == Kind::UnitFailed && !def.recovery_apart => {
            (Kind::UnitRecovered, Severity::Info)
        }
        Status::Pass => (Kind::CheckChanged, Severity::Info),
        Status::Warn => (def.event, Severity::Warning),
        Status::Fail => (def.event, Severity::Error),
    };
    let from = before.map(Status::as_str).unwrap_or("unknown");
    let mut e = Event::new(
        kind,
        severity,
        format!(
            "{}: {} -> {}{}",
            def.key(),
            from,
            r.status.as_str(),
            r.output
                .as_deref()
                .map(|o| format!(": {o}"))
                .unwrap_or_default()
        ),
    )
    .check(def.key());
    if let Some(u) = &def.unit {
        e = e.unit(u);
    }
    if def.quiet || (def.recovery_apart && r.status == Status::Pass) {
        e = e.quiet();
    }
    e.emit();
}

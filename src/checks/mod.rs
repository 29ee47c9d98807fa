//! Health checks. Each kind of check is one file here, holding its config
//! section, its validation, its manual entries, the figures it exports and
//! the measuring itself; [`kind::KINDS`] lists them, and nothing outside
//! this directory knows a kind's fields.
//!
//! A check is built into a [`CheckDef`]: what it is about (its key, unit
//! and restart policy) and how it measures. State checks read systemd's
//! view of the units, which the supervisor keeps, and run on its loop in
//! microseconds, at once on a D-Bus signal. Probes (files, filesystems,
//! sockets, HTTP, commands) run on tasks of their own ([`runner`]), each on
//! its own interval and bounded by its own timeout, and report back as
//! messages, so none can hold the loop up.
//!
//! A check never returns an error: whatever goes wrong becomes a `fail`
//! with the reason in `output`, so one broken check cannot hide the others.
//! What a run produces (its outcome, figures and result) and how a figure
//! is graded are in outcome.rs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::events::Kind as EventKind;
use crate::units::UnitTable;

pub mod common;
pub mod flap;
mod found;
pub mod kind;
mod outcome;
pub mod runner;

pub use found::{Found, Joined};
pub use outcome::{
    crossed, fmt_duration, grade, grade_below, millis, overall, round2, CheckResult, Labels,
    Measurement, Outcome, Shared, Stamp, Status, Text,
};

// The kinds of check: a kind is a module, named once here.
kinds!(
    unit_state,
    unit_memory,
    unit_resources,
    unit_timer,
    container,
    heartbeat,
    disk,
    memory,
    pressure,
    tcp,
    http,
    command,
    freshness,
    journal
);

/// Declares each kind's module and lists the kinds: [`KINDS`] (what each
/// is: keys, figures, validation), [`BUILDS`] (how each builds its checks)
/// and [`METRICS`] (the figures alone, read out at compile time). Kept
/// apart so that unitwatch-http, which validates the configuration and
/// renders figures but builds no check, links none of the kinds'
/// measuring code (an HTTP client, X.509, a regex engine).
macro_rules! kinds {
    ($($kind:ident),* $(,)?) => {
        $(pub mod $kind;)*

        /// Every kind of check.
        pub const KINDS: &[&Kind] = &[$(&$kind::KIND),*];

        /// How each kind builds its checks, by name.
        pub const BUILDS: &[(&str, kind::Build)] = &[$(($kind::KIND.name, $kind::BUILD)),*];

        /// Every kind's exported figures, in the order of [`KINDS`].
        pub const METRICS: &[&[MetricDoc]] = &[$($kind::KIND.metrics),*];
    };
}
use kinds;

pub use common::CheckTable;
pub use kind::{build_all, metric_doc, section_problems, Kind, MetricDoc};

/// What a check measures: `component:measurement` is its key everywhere
/// (status.json, /health, metrics, journal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckId {
    /// A unit's checks share one copy of its name (`UnitName::shared`).
    pub component: Shared,
    pub measurement: &'static str,
    /// health+json componentType: "component" for units, "system" for the host.
    pub component_type: &'static str,
}

impl CheckId {
    pub fn key(&self) -> String {
        format!("{}:{}", self.component, self.measurement)
    }
}

/// What the state checks may look at.
pub struct CheckContext<'a> {
    pub now: SystemTime,
    pub units: &'a UnitTable,
    /// Each unit's restart history (for `restarts_warn`).
    pub backoff: &'a BTreeMap<String, crate::backoff::UnitBackoff>,
    /// Set when systemd cannot be reached: unit checks say so.
    pub systemd_error: Option<&'a str>,
    /// What the engines last said of the watched containers.
    pub containers: &'a crate::containers::watch::ContainerTable,
}

impl CheckContext<'_> {
    /// systemd's view of `unit`, or the `fail` a unit check reports when it
    /// has none (systemd unreachable, or not asked yet).
    pub fn unit_status(&self, unit: &str) -> Result<&crate::units::UnitStatus, Outcome> {
        if let Some(e) = self.systemd_error {
            return Err(Outcome::error(format!("cannot reach systemd: {e}")));
        }
        self.units
            .get(unit)
            .ok_or_else(|| Outcome::error("systemd has not reported on this unit yet"))
    }
}

/// A check computed from systemd's view of the units: instant, no I/O.
pub trait StateCheck: Send + Sync {
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome;
    /// A check graded from what the journal follower counts: its part of
    /// the follower's work (the daemon starts one follower for them all).
    fn journal(&self) -> Option<Arc<journal::Watch>> {
        None
    }
}

/// What a probe gets for one run.
#[derive(Clone)]
pub struct ProbeCtx {
    /// The run must be over by then: a probe says what it was waiting
    /// for when the deadline passes ("no answer from ... within 5s").
    pub deadline: tokio::time::Instant,
    pub timeout: Duration,
    pub now: SystemTime,
}

/// A check that measures something outside the supervisor: it runs on a
/// task of its own and may take up to its timeout.
pub trait Probe: Send + Sync + 'static {
    fn run(self: Arc<Self>, ctx: ProbeCtx) -> BoxFuture<'static, Outcome>;
}

/// How a check measures.
#[derive(Clone)]
pub enum How {
    State(Arc<dyn StateCheck>),
    Probe(Arc<dyn Probe>),
}

/// One check, built from the configuration by its kind: what it is about
/// and how it measures, and its [`Policy`], shared with every check that
/// has the same one. Its policy's fields read as its own (`def.grace`),
/// through `Deref`; a builder's write (`def.grace = ...`) gives the check a
/// policy of its own, and [`build_all`] shares the equal ones again.
///
/// Why: at 2,000 units with every resource key on there are 14,000
/// checks, and their policies, the same few over and over, were 72 of a
/// check's 184 bytes (1 MB).
#[derive(Clone)]
pub struct CheckDef {
    pub id: CheckId,
    /// The unit the check is about: its result shows under
    /// `/health/service/{unit}`, and state checks re-run on its signals.
    pub unit: Option<Shared>,
    pub how: How,
    /// `component:measurement`, made once: every result shares it.
    key: Shared,
    policy: Arc<Policy>,
}

/// What a check does with what it finds, and how often it looks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    /// A failure restarts the check's unit (on the backoff and the hourly
    /// cap).
    pub restart: bool,
    /// A failure restarts the unit only once it has been up this long, so
    /// a service just started has time to come up.
    pub grace: Duration,
    /// The reason such a restart gives (in its event and backoff.json).
    pub restart_reason: &'static str,
    /// Probes: how often and how long. State checks ignore both.
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive results before the shown status flips.
    pub fail_after: u32,
    pub pass_after: u32,
    /// A failure only warns.
    pub warn_only: bool,
    /// The event of a status change that is not a pass.
    pub event: EventKind,
    /// Status changes are told by other events (a unit's state check:
    /// unit-failed and unit-recovered).
    pub quiet: bool,
    /// Its return to pass is not the recovery: the supervisor tells that
    /// (a container with `ready` checks, once they pass after a restart).
    pub recovery_apart: bool,
}

impl std::ops::Deref for CheckDef {
    type Target = Policy;
    fn deref(&self) -> &Policy {
        &self.policy
    }
}

impl std::ops::DerefMut for CheckDef {
    /// The check's own policy, copied first if it is shared.
    fn deref_mut(&mut self) -> &mut Policy {
        Arc::make_mut(&mut self.policy)
    }
}

impl CheckDef {
    /// A check with the defaults every kind starts from.
    pub fn new(id: CheckId, how: How, interval: Duration) -> Self {
        CheckDef {
            key: id.key().into(),
            id,
            unit: None,
            how,
            policy: Arc::new(Policy {
                restart: false,
                grace: Duration::ZERO,
                restart_reason: "check-failed",
                interval,
                timeout: common::default_timeout(interval),
                fail_after: 1,
                pass_after: 1,
                warn_only: false,
                event: EventKind::CheckChanged,
                quiet: false,
                recovery_apart: false,
            }),
        }
    }

    /// Gives `defs` one policy where theirs are equal (builders make one
    /// each).
    pub fn share_policies(defs: &mut [CheckDef]) {
        let mut seen: std::collections::HashSet<Arc<Policy>> = Default::default();
        for d in defs {
            match seen.get(&d.policy) {
                Some(p) => d.policy = p.clone(),
                None => {
                    seen.insert(d.policy.clone());
                }
            }
        }
    }

    /// A check about a watched unit: its key `UNIT:MEASUREMENT`, shown
    /// under the unit, re-run on its signals (the unit kinds' checks).
    pub fn for_unit(unit: Shared, measurement: &'static str, how: How, interval: Duration) -> Self {
        let mut def = CheckDef::new(
            CheckId {
                component: unit.clone(),
                measurement,
                component_type: "component",
            },
            how,
            interval,
        );
        def.unit = Some(unit);
        def
    }

    /// `component:measurement`, as `id.key()` makes it.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn is_probe(&self) -> bool {
        matches!(self.how, How::Probe(_))
    }

    /// What one run found, as the daemon keeps it.
    pub fn found(&self, mut o: Outcome, time: SystemTime, took: Duration) -> Found {
        if self.warn_only && o.status == Status::Fail {
            o.status = Status::Warn;
        }
        // A message made by format! keeps room for twice its constant
        // parts: kept in a result until the next run, that is given back.
        let output = o.output.map(|t| match t {
            Text::Owned(mut s) => {
                s.shrink_to_fit();
                Text::Owned(s)
            }
            t => t,
        });
        Found {
            status: o.status,
            pending: false,
            observed_value: o.observed_value,
            observed_unit: o.observed_unit.map(Text::Borrowed),
            output,
            time: Stamp::of(time),
            duration_us: took.as_micros() as u64,
            measurements: o.measurements,
        }
    }

    /// The result of one run, as it goes into status.json.
    pub fn result(&self, o: Outcome, time: SystemTime, took: Duration) -> CheckResult {
        self.found(o, time, took).full(self)
    }

    /// A probe that has not reported yet.
    pub fn pending(&self, since: SystemTime) -> Found {
        let mut r = self.found(
            Outcome::new(Status::Warn, Value::Null, None).with_output(format!(
                "no result yet (runs every {}, first run since {})",
                fmt_duration(self.interval),
                humantime::format_rfc3339_seconds(since)
            )),
            since,
            Duration::ZERO,
        );
        r.pending = true;
        r
    }
}

/// A state check for tests that need a definition, not its run.
#[cfg(test)]
pub(crate) struct Inert;

#[cfg(test)]
impl StateCheck for Inert {
    fn run(&self, _: &CheckContext<'_>) -> Outcome {
        Outcome::error("not run in this test")
    }
}

/// Runs a state check, timing it; a panic inside it becomes a `fail`.
pub fn run_state(def: &CheckDef, check: &dyn StateCheck, ctx: &CheckContext<'_>) -> Found {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| check.run(ctx)))
        .unwrap_or_else(|_| Outcome::error("the check panicked; this is a bug in unitwatch"));
    def.found(outcome, ctx.now, start.elapsed())
}

/// Runs blocking work (a stat, a statvfs, a read of /proc) on tokio's
/// blocking pool. A call stuck in the kernel (a hung NFS mount) cannot be
/// cancelled, so `busy` keeps a second one from piling up behind it: the
/// check fails, saying so, until the first returns.
pub fn blocking<F>(busy: &Arc<AtomicBool>, what: String, f: F) -> BoxFuture<'static, Outcome>
where
    F: FnOnce() -> Outcome + Send + 'static,
{
    let busy = busy.clone();
    Box::pin(async move {
        if busy.swap(true, Ordering::AcqRel) {
            return Outcome::error(format!("{what} from an earlier run has not returned yet"));
        }
        let guard = busy.clone();
        let r = tokio::task::spawn_blocking(move || {
            let o = f();
            guard.store(false, Ordering::Release);
            o
        })
        .await;
        r.unwrap_or_else(|_| Outcome::error("the check panicked; this is a bug in unitwatch"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Panics;
    impl StateCheck for Panics {
        fn run(&self, _: &CheckContext<'_>) -> Outcome {
            panic!("boom")
        }
    }

    #[test]
    fn a_panicking_check_fails_alone() {
        let units = UnitTable::new();
        let ctx = CheckContext {
            now: SystemTime::now(),
            units: &units,
            backoff: &Default::default(),
            systemd_error: None,
            containers: &Default::default(),
        };
        let id = CheckId {
            component: "x".into(),
            measurement: "y",
            component_type: "system",
        };
        let check = Arc::new(Panics);
        let def = CheckDef::new(id, How::State(check.clone()), Duration::from_secs(10));
        let r = run_state(&def, check.as_ref(), &ctx);
        assert_eq!(r.status, Status::Fail);
        assert!(r.output.as_deref().unwrap().contains("panicked"));
        assert_eq!(r.full(&def).key.as_ref(), "x:y");
    }

    #[test]
    fn equal_policies_are_shared_and_a_write_unshares_one() {
        let def = |c: &str| {
            CheckDef::new(
                CheckId {
                    component: c.into(),
                    measurement: "m",
                    component_type: "component",
                },
                How::State(Arc::new(Panics)),
                Duration::from_secs(10),
            )
        };
        let mut defs = vec![def("a"), def("b"), def("c")];
        defs[2].fail_after = 3;
        assert!(
            !Arc::ptr_eq(&defs[0].policy, &defs[1].policy),
            "built apart"
        );
        CheckDef::share_policies(&mut defs);
        assert!(Arc::ptr_eq(&defs[0].policy, &defs[1].policy));
        assert!(!Arc::ptr_eq(&defs[0].policy, &defs[2].policy));
        assert_eq!((defs[1].fail_after, defs[2].fail_after), (1, 3));
        // A write to one leaves the check it shared with as it was.
        defs[1].warn_only = true;
        assert!(defs[1].warn_only && !defs[0].warn_only);
        assert!(!Arc::ptr_eq(&defs[0].policy, &defs[1].policy));
    }

    #[test]
    fn warn_only_turns_a_failure_into_a_warning() {
        let check = Arc::new(Panics);
        let mut def = CheckDef::new(
            CheckId {
                component: "c".into(),
                measurement: "m",
                component_type: "component",
            },
            How::State(check),
            Duration::from_secs(1),
        );
        def.warn_only = true;
        let r = def.result(Outcome::error("down"), SystemTime::now(), Duration::ZERO);
        assert_eq!(r.status, Status::Warn);
        assert_eq!(def.timeout, Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_stuck_blocking_call_is_not_stacked() {
        let busy = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let first = blocking(&busy, "statvfs /x".into(), move || {
            let _ = rx.recv();
            Outcome::new(Status::Pass, 1, None)
        });
        let first = tokio::spawn(first);
        while !busy.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        let second = blocking(&busy, "statvfs /x".into(), || {
            Outcome::new(Status::Pass, 2, None)
        })
        .await;
        assert_eq!(second.status, Status::Fail);
        assert_eq!(
            second.output.as_deref(),
            Some("statvfs /x from an earlier run has not returned yet")
        );
        tx.send(()).unwrap();
        assert_eq!(first.await.unwrap().status, Status::Pass);
        assert!(!busy.load(Ordering::Acquire));
    }
}

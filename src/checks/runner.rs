//! Runs the probes: one task per probe, on its own interval, each run
//! bounded by its timeout, the results sent back to the supervisor's loop
//! as messages. The loop never waits on a probe; a probe that hangs holds
//! up only its own task, and its next run is simply late.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{fmt_duration, CheckDef, How, Outcome, Probe, ProbeCtx};

/// How much past its own deadline a probe is given to say why it missed
/// it, before the runner cuts it off with a message of its own.
const BACKSTOP: Duration = Duration::from_millis(250);

/// The step in which first runs are spread: probes whose runs fall in one
/// step start together. The daemon then wakes at most 20 times a second for
/// its probes, however many there are, and each waking serves a batch; on a
/// virtual machine a waking costs more than the connection it serves (200
/// probes a second, each woken on its own, took twice the CPU of the same
/// probes woken in 20 batches).
pub const STEP: Duration = Duration::from_millis(50);

/// When the `nth` of `n` probes first runs: spread evenly over its
/// interval (so many probes of one interval do not all run at once), in
/// whole [`STEP`]s, and within the first second.
pub fn first_offset(nth: usize, n: usize, interval: Duration) -> Duration {
    let span = interval.min(Duration::from_secs(1));
    let steps = (span.as_nanos() / STEP.as_nanos()).max(1);
    let step = (nth as u128 * steps) / n.max(1) as u128;
    Duration::from_nanos((step * STEP.as_nanos()) as u64)
}

/// One finished run of the probe at `index` (into the defs it was started
/// with); `generation` tells results of an older set of checks (before a
/// reload) from the current ones.
#[derive(Debug)]
pub struct Done {
    pub generation: u64,
    pub index: usize,
    pub outcome: Outcome,
    pub started: SystemTime,
    pub took: Duration,
}

/// The running probe tasks; dropping it stops them.
pub struct Runner {
    rx: mpsc::Receiver<Done>,
    tasks: Vec<JoinHandle<()>>,
}

/// One run of `probe`, bounded by `timeout`.
async fn run_bounded(probe: Arc<dyn Probe>, timeout: Duration) -> (Outcome, SystemTime, Duration) {
    let started = SystemTime::now();
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let ctx = ProbeCtx {
        deadline,
        timeout,
        now: started,
    };
    let outcome = match tokio::time::timeout_at(deadline + BACKSTOP, probe.run(ctx)).await {
        Ok(o) => o,
        Err(_) => Outcome::error(format!(
            "no result within the timeout ({})",
            fmt_duration(timeout)
        )),
    };
    (outcome, started, t0.elapsed())
}

impl Runner {
    /// Starts a task for every probe among `defs`. First runs are spread
    /// over each probe's interval, so that many probes of one interval do
    /// not all wake at once.
    pub fn start(defs: &[CheckDef], generation: u64) -> Runner {
        let probes: Vec<(usize, &CheckDef, Arc<dyn Probe>)> = defs
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match &d.how {
                How::Probe(p) => Some((i, d, p.clone())),
                How::State(_) => None,
            })
            .collect();
        // Room for a result from every probe at once: a probe task waits
        // (its next run late) only if the loop has fallen that far behind.
        let (tx, rx) = mpsc::channel(probes.len().max(1) * 2);
        let n = probes.len().max(1);
        // One start for all, so that probes of one step share a waking.
        let start = tokio::time::Instant::now();
        let tasks = probes
            .into_iter()
            .enumerate()
            .map(|(nth, (index, def, probe))| {
                let tx = tx.clone();
                let (interval, timeout) = (def.interval, def.timeout);
                let offset = first_offset(nth, n, interval);
                tokio::spawn(async move {
                    let first = start + offset;
                    let mut tick = tokio::time::interval_at(first, interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let (outcome, started, took) = run_bounded(probe.clone(), timeout).await;
                        let done = Done {
                            generation,
                            index,
                            outcome,
                            started,
                            took,
                        };
                        if tx.send(done).await.is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Runner { rx, tasks }
    }

    /// A run that has already finished, if any: the loop takes a batch
    /// (the probes of one step finish together) in one turn.
    pub fn ready(&mut self) -> Option<Done> {
        self.rx.try_recv().ok()
    }

    /// The next finished run (never, when there are no probes).
    pub async fn next(&mut self) -> Done {
        match self.rx.recv().await {
            Some(d) => d,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Runs one probe once, bounded by its timeout (`unitwatchd check`, tests).
pub async fn run_once(def: &CheckDef) -> super::Found {
    match &def.how {
        How::Probe(p) => {
            let (o, started, took) = run_bounded(p.clone(), def.timeout).await;
            def.found(o, started, took)
        }
        How::State(_) => def.found(
            Outcome::error("a state check runs on the supervisor's table"),
            SystemTime::now(),
            Duration::ZERO,
        ),
    }
}

/// Runs every check once: the state checks against `ctx`, the probes all
/// at once, each bounded by its timeout (`unitwatchd check`).
pub async fn run_all_once(defs: &[CheckDef], ctx: &super::CheckContext<'_>) -> Vec<super::Found> {
    let probes = futures_util::future::join_all(defs.iter().map(|d| async move {
        match &d.how {
            How::Probe(_) => Some(run_once(d).await),
            How::State(_) => None,
        }
    }))
    .await;
    defs.iter()
        .zip(probes)
        .map(|(d, p)| match (&d.how, p) {
            (How::State(s), _) => super::run_state(d, s.as_ref(), ctx),
            (How::Probe(_), Some(r)) => r,
            (How::Probe(_), None) => unreachable!("every probe was run"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{CheckId, Status};
    use futures_util::future::BoxFuture;

    struct Sleeps(Duration);
    impl Probe for Sleeps {
        fn run(self: Arc<Self>, _: ProbeCtx) -> BoxFuture<'static, Outcome> {
            Box::pin(async move {
                tokio::time::sleep(self.0).await;
                Outcome::new(Status::Pass, 1, None)
            })
        }
    }

    fn def(sleep: Duration, interval: Duration, timeout: Duration) -> CheckDef {
        let mut d = CheckDef::new(
            CheckId {
                component: "c".into(),
                measurement: "m",
                component_type: "component",
            },
            How::Probe(Arc::new(Sleeps(sleep))),
            interval,
        );
        d.timeout = timeout;
        d
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_probe_is_cut_off_and_the_others_keep_their_pace() {
        let defs = vec![
            def(
                Duration::from_secs(3600),
                Duration::from_secs(2),
                Duration::from_secs(1),
            ),
            def(
                Duration::from_millis(1),
                Duration::from_millis(500),
                Duration::from_millis(100),
            ),
        ];
        let mut r = Runner::start(&defs, 7);
        let t0 = tokio::time::Instant::now();
        let mut fast = 0;
        let mut hung = Vec::new();
        while t0.elapsed() < Duration::from_secs(5) {
            let d = r.next().await;
            assert_eq!(d.generation, 7);
            if d.index == 0 {
                hung.push((t0.elapsed(), d.outcome));
            } else {
                assert_eq!(d.outcome.status, Status::Pass);
                fast += 1;
            }
        }
        // Every 500 ms for 5 s, whatever the other one does.
        assert!((9..=11).contains(&fast), "{fast}");
        assert!(hung.len() >= 2);
        for (at, o) in &hung {
            assert_eq!(o.status, Status::Fail);
            assert_eq!(
                o.output.as_deref(),
                Some("no result within the timeout (1s)")
            );
            // Cut off at its timeout (plus the backstop), not later.
            let into_run = at.as_millis() % 2000;
            assert!(into_run <= 1300, "{at:?}");
        }
    }

    #[test]
    fn first_runs_are_spread_over_the_interval_in_whole_steps() {
        let s = Duration::from_secs;
        let offsets: Vec<Duration> = (0..200).map(|i| first_offset(i, 200, s(1))).collect();
        // 20 steps of 50 ms, 10 probes in each.
        let mut distinct = offsets.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 20);
        assert_eq!(distinct[1], STEP);
        assert_eq!(*distinct.last().unwrap(), Duration::from_millis(950));
        assert!(offsets.iter().all(|o| o.as_nanos() % STEP.as_nanos() == 0));
        assert_eq!(offsets.iter().filter(|o| o.is_zero()).count(), 10);
        // Fewer probes than steps: each its own step, evenly apart.
        assert_eq!(first_offset(1, 4, s(1)), Duration::from_millis(250));
        // A long interval still starts everything within the first second.
        assert!(first_offset(199, 200, s(60)) < s(1));
        // An interval shorter than a step, and a lone probe.
        assert_eq!(
            first_offset(1, 2, Duration::from_millis(30)),
            Duration::ZERO
        );
        assert_eq!(first_offset(0, 1, s(1)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn run_once_is_bounded_too() {
        let d = def(
            Duration::from_secs(60),
            Duration::from_secs(10),
            Duration::from_secs(2),
        );
        let t0 = tokio::time::Instant::now();
        let r = run_once(&d).await;
        assert_eq!(r.status, Status::Fail);
        assert!(t0.elapsed() <= Duration::from_millis(2300));
    }
}

//! The units' resources (memory, file descriptors, tasks, CPU, swap), read
//! on a task of its own after each sweep, for the units with thresholds on
//! them, and taken in by the loop when the read is done.
//!
//! systemd signals none of these figures, so they are polled: at 2,000
//! units with every key on that is thousands of D-Bus round trips and
//! /proc reads a sweep, which on the loop would hold up the handling of a
//! failure for as long. Here they run beside it, [`IN_FLIGHT`] units at a
//! time, each bounded by `unit_resources::READ_TIMEOUT`; a read still
//! running when the next sweep ends is not doubled (that sweep reads
//! nothing), and a read begun before a reload of the config is dropped.

use tokio::sync::oneshot;

use super::*;
use crate::checks::unit_resources::{read_targets, Dirs, Target, Wants};
use crate::units::Resources;

/// At most this many units read at once, so that the reads do not crowd
/// out the calls a failure makes meanwhile.
const IN_FLIGHT: usize = 8;

/// How long the start waits for the first read, so that the first
/// snapshot has the figures.
pub(super) const FIRST_READ: Duration = Duration::from_secs(2);

/// How long a sweep's snapshot waits for the read it started at most (it
/// is published as the figures come in, about 100 ms at 2,000 units).
pub(super) const READ_PUBLISH: Duration = Duration::from_secs(1);

type Answers = (u64, Vec<(String, Resources)>);

#[derive(Debug, Default)]
pub(super) struct Reader {
    /// Bumped when the config changes: answers of an older one are dropped.
    pub(super) generation: u64,
    rx: Option<oneshot::Receiver<Answers>>,
}

impl Reader {
    /// The answers of the read in flight; pending while there is none.
    pub(super) async fn next(&mut self) -> Answers {
        match self.rx.as_mut() {
            Some(rx) => {
                let r = rx.await;
                self.rx = None;
                match r {
                    Ok(a) => a,
                    // The task was dropped: nothing to take in.
                    Err(_) => std::future::pending().await,
                }
            }
            None => std::future::pending().await,
        }
    }

    pub(super) fn in_flight(&self) -> bool {
        self.rx.is_some()
    }
}

/// Every watched unit that is running and has thresholds, as the reader
/// gets it.
pub fn targets(config: &Config, units: &UnitTable, paths: &HashMap<String, String>) -> Vec<Target> {
    config
        .units
        .iter()
        .filter_map(|u| {
            let wants = Wants::of(u);
            let name = u.name.as_str();
            let status = units.get(name)?;
            let path = paths.get(name)?;
            (wants.any() && status.is_active()).then(|| Target {
                unit: name.to_string(),
                path: path.clone(),
                wants,
                prev: status.resources.clone(),
            })
        })
        .collect()
}

/// Reads every target, [`IN_FLIGHT`] at a time.
pub async fn read_all(
    bus: &Systemd,
    dirs: &Dirs,
    targets: Vec<Target>,
) -> Vec<(String, Resources)> {
    read_targets(bus, dirs, targets, IN_FLIGHT).await
}

/// Whether a resource read of `read` grades check `d`: the checks of the
/// units read, but their state, which the sweep judges.
pub(super) fn graded_by_read(d: &CheckDef, read: &HashSet<&str>) -> bool {
    d.id.measurement != "state" && d.unit.as_deref().is_some_and(|u| read.contains(u))
}

/// Puts what a read found into the unit table.
pub fn apply(units: &mut UnitTable, answers: Vec<(String, Resources)>) {
    for (name, r) in answers {
        let Some(s) = units.get_mut(&name) else {
            continue;
        };
        // A unit that stopped while it was read has no figures.
        if !s.is_active() {
            continue;
        }
        s.memory_current = r.memory.as_ref().and_then(|m| m.value().copied());
        s.resources = Some(std::sync::Arc::new(r));
    }
}

impl Supervisor {
    /// What the sweep's read will read: every running unit with thresholds,
    /// or none when a read is still in flight (its figures, coming in,
    /// grade the same units) or systemd cannot be reached.
    pub(super) fn prepare_resource_read(&self) -> Option<Vec<Target>> {
        if self.resources.in_flight() {
            return None;
        }
        self.bus.as_ref()?;
        let targets = targets(&self.config, &self.units, &self.paths);
        (!targets.is_empty()).then_some(targets)
    }

    /// Starts the read `prepare_resource_read` planned. Whether a read is
    /// in flight.
    pub(super) fn start_resource_read(&mut self, targets: Option<Vec<Target>>) -> bool {
        if self.resources.in_flight() {
            log::debug!("the last resource read is still running: none this sweep");
            return true;
        }
        let (Some(bus), Some(targets)) = (self.bus.clone(), targets) else {
            return false;
        };
        let dirs = Dirs::of(&self.config);
        let generation = self.resources.generation;
        let (tx, rx) = oneshot::channel();
        self.resources.rx = Some(rx);
        tokio::spawn(async move {
            let answers = read_all(&bus, &dirs, targets).await;
            let _ = tx.send((generation, answers));
        });
        true
    }

    /// Takes a read's figures in, grades them (the checks of the units
    /// read, but their state, which the sweep has just judged) and
    /// publishes the sweep's snapshot, which waited for them.
    pub(super) fn on_resources(&mut self, (generation, answers): Answers) {
        if generation != self.resources.generation {
            return;
        }
        log::debug!("read the resources of {} units", answers.len());
        let names: Vec<String> = answers.iter().map(|(n, _)| n.clone()).collect();
        apply(&mut self.units, answers);
        let read: HashSet<&str> = names.iter().map(String::as_str).collect();
        self.run_checks_where(|d| graded_by_read(d, &read));
        self.publish();
    }

    /// Waits up to [`FIRST_READ`] for the read started by the first sweep.
    pub(super) async fn first_resource_read(&mut self) {
        if !self.resources.in_flight() {
            return;
        }
        match tokio::time::timeout(FIRST_READ, self.resources.next()).await {
            Ok(a) => self.on_resources(a),
            Err(_) => self.publish(),
        }
    }
}

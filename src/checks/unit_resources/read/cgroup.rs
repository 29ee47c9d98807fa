//! A unit's figures from its cgroup's own files (the unified hierarchy,
//! or a hybrid host's v1 controllers), read in one go on the blocking
//! pool: the figures systemd reports, without a D-Bus round trip each.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::at::Place;
use super::fds::count_fds_cached;
use super::once_per;
use crate::checks::unit_resources::Wants;
use crate::units::{Fds, Reading, Source, Sources};

/// What a unit's cgroup files said; none for a figure whose file is not
/// there (or not wanted), and where each was found.
#[derive(Debug, Default)]
pub(super) struct Files {
    pub(super) memory: Option<u64>,
    pub(super) tasks: Option<u64>,
    pub(super) cpu_nsec: Option<u64>,
    pub(super) swap: Option<u64>,
    /// The count, when the cgroup's processes could be listed.
    pub(super) fds: Option<Reading<Fds>>,
    pub(super) sources: Sources,
    pub(super) fd_limits: Vec<(u32, u64)>,
    /// When the files were read (a batch reads them ahead of the rest of
    /// the unit's read: the CPU delta is over the time between two of
    /// these).
    pub(super) at: Option<std::time::Instant>,
}

/// A unit's cgroup directory on each hierarchy, each found once for all
/// the files read in it (none where it cannot be opened).
struct UnitDirs<'a> {
    sys: &'a Path,
    rel: &'a str,
    unified: Option<Option<Place>>,
    v1: Vec<(&'static str, Option<Place>)>,
}

impl UnitDirs<'_> {
    fn unified(&mut self) -> Option<&mut Place> {
        let (sys, rel) = (self.sys, self.rel);
        self.unified
            .get_or_insert_with(|| Place::under_parent(&unified_root(sys)?.join(rel)).ok())
            .as_mut()
    }

    fn v1(&mut self, controller: &'static str) -> Option<&mut Place> {
        let i = match self.v1.iter().position(|(c, _)| *c == controller) {
            Some(i) => i,
            None => {
                let p = self.sys.join("fs/cgroup").join(controller).join(self.rel);
                self.v1.push((controller, Place::under_parent(&p).ok()));
                self.v1.len() - 1
            }
        };
        self.v1[i].1.as_mut()
    }

    /// A number file of the unit's cgroup on the unified hierarchy.
    fn v2_u64(&mut self, file: &str) -> Option<u64> {
        self.unified()?.read_with(file, |t| t.trim().parse().ok()).ok()?
    }

    /// A number file of its cgroup on a v1 controller's hierarchy.
    fn v1_u64(&mut self, controller: &'static str, file: &str) -> Option<u64> {
        self.v1(controller)?.read_with(file, |t| t.trim().parse().ok()).ok()?
    }
}

impl Files {
    pub(super) fn read(
        sys: &Path,
        proc_dir: &Path,
        cg: &str,
        w: Wants,
        known: Sources,
        mut fd_limits: Vec<(u32, u64)>,
    ) -> Files {
        let at = Some(std::time::Instant::now());
        let mut d = UnitDirs {
            sys,
            rel: cg.trim_start_matches('/'),
            unified: None,
            v1: Vec::new(),
        };
        // Each figure from where it was found before, else tried in turn.
        type Read = fn(&mut UnitDirs) -> Option<u64>;
        let mut figure = |on: bool, src: &mut Source, unified: Read, legacy: Read| -> Option<u64> {
            if !on {
                return None;
            }
            match *src {
                Source::Unified => unified(&mut d),
                Source::V1 => legacy(&mut d),
                Source::Systemd | Source::Nowhere => None,
                Source::Unknown => {
                    if let Some(v) = unified(&mut d) {
                        *src = Source::Unified;
                        Some(v)
                    } else if let Some(v) = legacy(&mut d) {
                        *src = Source::V1;
                        Some(v)
                    } else {
                        None
                    }
                }
            }
        };
        let mut s = known;
        let memory = figure(
            w.memory,
            &mut s.memory,
            |d| d.v2_u64("memory.current"),
            |d| d.v1_u64("memory", "memory.usage_in_bytes"),
        );
        let tasks = figure(
            w.tasks,
            &mut s.tasks,
            |d| d.v2_u64("pids.current"),
            |d| d.v1_u64("pids", "pids.current"),
        );
        let cpu_nsec = figure(
            w.cpu,
            &mut s.cpu,
            |d| cpu_stat_nsec(d.unified()?),
            |d| {
                d.v1_u64("cpuacct", "cpuacct.usage")
                    .or_else(|| d.v1_u64("cpu,cpuacct", "cpuacct.usage"))
            },
        );
        let swap = figure(w.swap, &mut s.swap, |d| d.v2_u64("memory.swap.current"), |_| None);
        let fds = w
            .fds
            .then(|| {
                let pids = procs(d.unified()?)?;
                Some(count_fds_cached(proc_dir, &pids, &mut fd_limits))
            })
            .flatten();
        Files {
            memory,
            tasks,
            cpu_nsec,
            swap,
            fds,
            sources: s,
            fd_limits,
            at,
        }
    }
}

/// Where the unified hierarchy is mounted: /sys/fs/cgroup on a unified
/// host, /sys/fs/cgroup/unified on a hybrid one; none on a legacy one.
/// Looked up once per `sys` (a failed open per figure per unit per sweep
/// added up at 2,000 units).
pub(in crate::checks::unit_resources) fn unified_root(sys: &Path) -> Option<PathBuf> {
    static ROOTS: Mutex<Vec<(PathBuf, Option<PathBuf>)>> = Mutex::new(Vec::new());
    once_per(&ROOTS, sys, || {
        ["fs/cgroup", "fs/cgroup/unified"]
            .iter()
            .map(|r| sys.join(r))
            .find(|r| r.join("cgroup.controllers").is_file())
    })
}

/// Every process of the cgroup `place` and its sub-cgroups, from their
/// cgroup.procs; none where one cannot be read.
fn procs(place: &mut Place) -> Option<Vec<u32>> {
    let mut pids = Vec::new();
    let mut below = Vec::new();
    procs_of(place, &mut pids, &mut below)?;
    while let Some(mut child) = below.pop() {
        procs_of(&mut child, &mut pids, &mut below)?;
    }
    Some(pids)
}

/// The processes of `p` itself into `pids`, its sub-cgroups onto `below`.
fn procs_of(p: &mut Place, pids: &mut Vec<u32>, below: &mut Vec<Place>) -> Option<()> {
    p.read_with("cgroup.procs", |text| {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()))
    })
    .ok()?;
    if let Ok(names) = p.subdirs() {
        below.extend(names.iter().map(|n| p.child(n)));
    }
    Some(())
}

/// `usage_usec` of the cgroup's cpu.stat, in ns.
fn cpu_stat_nsec(place: &mut Place) -> Option<u64> {
    place
        .read_with("cpu.stat", parse_usage_usec)
        .ok()?
        .map(|us| us.saturating_mul(1000))
}

/// The unit's cgroup on the unified hierarchy (the tests' way in).
#[cfg(test)]
fn unified_place(sys: &Path, cg: &str) -> Option<Place> {
    Place::under_parent(&unified_root(sys)?.join(cg.trim_start_matches('/'))).ok()
}

#[cfg(test)]
pub(in crate::checks::unit_resources) fn cgroup2_pids(sys: &Path, cg: &str) -> Option<Vec<u32>> {
    procs(&mut unified_place(sys, cg)?)
}

#[cfg(test)]
pub(in crate::checks::unit_resources) fn cgroup2_u64(sys: &Path, cg: &str, file: &str) -> Option<u64> {
    unified_place(sys, cg)?.read_with(file, |t| t.trim().parse().ok()).ok()?
}

#[cfg(test)]
pub(in crate::checks::unit_resources) fn cgroup2_cpu_nsec(sys: &Path, cg: &str) -> Option<u64> {
    cpu_stat_nsec(&mut unified_place(sys, cg)?)
}

pub(in crate::checks::unit_resources) fn parse_usage_usec(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

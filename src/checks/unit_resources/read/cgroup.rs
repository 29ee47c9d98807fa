//! A unit's figures from its cgroup's own files (the unified hierarchy,
//! or a hybrid host's v1 controllers), read in one go on the blocking
//! pool: the figures systemd reports, without a D-Bus round trip each.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::at;
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
        let rel = cg.trim_start_matches('/');
        let v1 = |controller: &str, file: &str| -> Option<u64> {
            let p = sys.join("fs/cgroup").join(controller).join(rel).join(file);
            at::read_with(&p, |t| t.trim().parse().ok()).ok()?
        };
        let v2 = |file: &str| cgroup2_u64(sys, cg, file);
        // Each figure from where it was found before, else tried in turn.
        let figure = |on: bool,
                      src: &mut Source,
                      unified: &dyn Fn() -> Option<u64>,
                      legacy: &dyn Fn() -> Option<u64>|
         -> Option<u64> {
            if !on {
                return None;
            }
            match *src {
                Source::Unified => unified(),
                Source::V1 => legacy(),
                Source::Systemd | Source::Nowhere => None,
                Source::Unknown => {
                    if let Some(v) = unified() {
                        *src = Source::Unified;
                        Some(v)
                    } else if let Some(v) = legacy() {
                        *src = Source::V1;
                        Some(v)
                    } else {
                        None
                    }
                }
            }
        };
        let mut s = known;
        let memory = figure(w.memory, &mut s.memory, &|| v2("memory.current"), &|| {
            v1("memory", "memory.usage_in_bytes")
        });
        let tasks = figure(w.tasks, &mut s.tasks, &|| v2("pids.current"), &|| {
            v1("pids", "pids.current")
        });
        let cpu_nsec = figure(w.cpu, &mut s.cpu, &|| cgroup2_cpu_nsec(sys, cg), &|| {
            v1("cpuacct", "cpuacct.usage").or_else(|| v1("cpu,cpuacct", "cpuacct.usage"))
        });
        let swap = figure(w.swap, &mut s.swap, &|| v2("memory.swap.current"), &|| None);
        let fds = w
            .fds
            .then(|| {
                cgroup2_pids(sys, cg).map(|pids| count_fds_cached(proc_dir, &pids, &mut fd_limits))
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

/// `parse(a file of the unit's cgroup on the unified hierarchy)`: at
/// /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid
/// one.
fn cgroup2_read<T>(sys: &Path, cg: &str, file: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    let root = unified_root(sys)?;
    at::read_with(&root.join(cg.trim_start_matches('/')).join(file), parse).ok()?
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

/// Every process of the cgroup and its sub-cgroups, from their
/// cgroup.procs; none where the unified hierarchy does not have it.
pub(in crate::checks::unit_resources) fn cgroup2_pids(sys: &Path, cg: &str) -> Option<Vec<u32>> {
    let root = unified_root(sys)?.join(cg.trim_start_matches('/'));
    let mut pids = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        at::read_with(&d.join("cgroup.procs"), |text| {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()))
        })
        .ok()?;
        if let Ok(children) = at::subdirs(&d) {
            dirs.extend(children.into_iter().map(|c| d.join(c)));
        }
    }
    Some(pids)
}

pub(in crate::checks::unit_resources) fn cgroup2_u64(sys: &Path, cg: &str, file: &str) -> Option<u64> {
    cgroup2_read(sys, cg, file, |t| t.trim().parse().ok())
}

/// `usage_usec` of the cgroup's cpu.stat, in ns.
pub(in crate::checks::unit_resources) fn cgroup2_cpu_nsec(sys: &Path, cg: &str) -> Option<u64> {
    cgroup2_read(sys, cg, "cpu.stat", parse_usage_usec).map(|us| us.saturating_mul(1000))
}

pub(in crate::checks::unit_resources) fn parse_usage_usec(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}


//! What the resource reader (daemon/resources.rs) reads of one unit: its
//! figures from systemd over D-Bus, from its cgroup's files where systemd
//! 252 has none, and its processes' open descriptors from /proc.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::Wants;
use crate::config::Config;
use crate::units::{Reading, Resources, Source, Sources, TimerInfo};

mod at;
mod cgroup;
mod fds;

use cgroup::Files;
pub use fds::count_fds;
#[cfg(test)]
pub(super) use {
    cgroup::{cgroup2_cpu_nsec, cgroup2_pids, cgroup2_u64, parse_usage_usec},
    fds::{count_fds_cached, parse_nofile},
};

/// What the reader needs to know of a unit it reads.
#[derive(Debug, Clone)]
pub struct Target {
    pub unit: String,
    pub path: String,
    pub wants: Wants,
    /// The last read, for the CPU delta.
    pub prev: Option<std::sync::Arc<Resources>>,
}

/// The longest one unit's read may take: past it, its figures say so.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How many units' files one task of the blocking pool reads in a row.
const FILES_BATCH: usize = 128;

/// Reads every target, `in_flight` units at a time. The files of the units
/// whose cgroup is known (all but those just started) are read first, a
/// batch of [`FILES_BATCH`] units per task of the blocking pool, not a
/// task each: at 2,000 units a task per unit was 2,000 hand-offs between
/// threads a sweep, a third of the reader's CPU (a perf profile's futex
/// waits and wake-ups).
pub async fn read_targets(
    bus: &crate::systemd::Systemd,
    dirs: &Dirs,
    targets: Vec<Target>,
    in_flight: usize,
) -> Vec<(String, Resources)> {
    use futures_util::StreamExt as _;
    // What each unit whose cgroup is known needs for its files' read: its
    // index, cgroup, wants, and where its figures and limits were found.
    type Job = (usize, String, Wants, Sources, Vec<(u32, u64)>);
    let known: Vec<Job> = targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let p = t.prev.as_ref()?;
            Some((i, p.control_group.clone()?, t.wants, p.sources, p.fd_limits.clone()))
        })
        .collect();
    let mut pre: Vec<Option<Files>> = (0..targets.len()).map(|_| None).collect();
    // One batch at a time: the loop keeps a core of its own while the
    // files are read (two at once on a 2-core machine put a watched unit's
    // failure behind them).
    for batch in known.chunks(FILES_BATCH) {
        let jobs = batch.to_vec();
        let (sys, proc_dir) = (dirs.sys.clone(), dirs.proc.clone());
        let read = tokio::task::spawn_blocking(move || {
            jobs.into_iter()
                .map(|(i, cg, w, sources, limits)| {
                    (i, Files::read(&sys, &proc_dir, &cg, w, sources, limits))
                })
                .collect::<Vec<_>>()
        });
        // A batch that hangs leaves its units to be read one by one, each
        // bounded by READ_TIMEOUT.
        if let Ok(Ok(files)) = tokio::time::timeout(READ_TIMEOUT, read).await {
            for (i, f) in files {
                pre[i] = Some(f);
            }
        }
    }
    futures_util::stream::iter(targets.into_iter().zip(pre))
        .map(|(t, f)| async move {
            let found = read_unit(bus, dirs, &t, f).await;
            (t.unit, found)
        })
        .buffer_unordered(in_flight)
        .collect()
        .await
}

/// Reads one unit's figures. The unit's own cgroup files come first, read
/// on the blocking pool in one go (`memory.current`, `pids.current`,
/// `cpu.stat`, `memory.swap.current` on the unified hierarchy, their v1
/// twins on a hybrid host): they are the figures systemd itself reports as
/// MemoryCurrent, TasksCurrent and CPUUsageNSec, without a D-Bus round
/// trip each (at 2,000 units those round trips cost unitwatchd 0.7 s of
/// CPU per sweep, and systemd 0.2 s). Only a figure whose file is not
/// there is asked of systemd; where neither has it, it is unavailable (on
/// this project's hybrid test hosts systemd 252 reports no CPUUsageNSec,
/// as cpu and cpuacct are mounted apart, and 252 has no
/// MemorySwapCurrent). The cgroup's path is asked once per run of the
/// unit. Its files are already read where `pre` has them.
async fn read_unit(
    bus: &crate::systemd::Systemd,
    dirs: &Dirs,
    t: &Target,
    pre: Option<Files>,
) -> Resources {
    let read = async {
        let w = t.wants;
        let mut control_group = t.prev.as_ref().and_then(|p| p.control_group.clone());
        if control_group.is_none() && (w.memory || w.tasks || w.cpu || w.swap || w.fds) {
            control_group = bus.control_group(&t.unit, &t.path).await.ok().flatten();
        }
        let known = t.prev.as_ref().map(|p| (p.sources, p.fd_limits.clone()));
        let (sources, limits) = known.unwrap_or_default();
        let mut files = match (pre, control_group.clone()) {
            (Some(f), _) => f,
            (None, Some(cg)) => {
                let (sys, proc_dir) = (dirs.sys.clone(), dirs.proc.clone());
                tokio::task::spawn_blocking(move || {
                    Files::read(&sys, &proc_dir, &cg, w, sources, limits)
                })
                .await
                .unwrap_or_default()
            }
            (None, None) => Files::default(),
        };
        // What the files did not have is asked of systemd, unless it
        // had nothing either at the first read of this run of the unit.
        let fallback = |prop: &'static str, on: bool, have: Option<u64>, src: Source| async move {
            match (on, have, src) {
                (false, ..) => None,
                (true, Some(v), _) => Some(Prop::Value(v)),
                (true, None, Source::Nowhere) => Some(Prop::Missing),
                (true, None, _) => Some(bus.unit_u64(&t.unit, &t.path, prop).await),
            }
        };
        let (memory, tasks, cpu, swap) = tokio::join!(
            fallback("MemoryCurrent", w.memory, files.memory, files.sources.memory),
            fallback("TasksCurrent", w.tasks, files.tasks, files.sources.tasks),
            fallback("CPUUsageNSec", w.cpu, files.cpu_nsec, files.sources.cpu),
            fallback("MemorySwapCurrent", w.swap, files.swap, files.sources.swap),
        );
        let settle = |src: &mut Source, p: &Option<Prop>| {
            if *src == Source::Unknown {
                *src = match p {
                    Some(Prop::Value(_)) => Source::Systemd,
                    Some(Prop::Missing) => Source::Nowhere,
                    // An error says nothing of where it is: try again.
                    _ => Source::Unknown,
                };
            }
        };
        settle(&mut files.sources.memory, &memory);
        settle(&mut files.sources.tasks, &tasks);
        settle(&mut files.sources.cpu, &cpu);
        settle(&mut files.sources.swap, &swap);
        let (sources, fd_limits) = (files.sources, std::mem::take(&mut files.fd_limits));
        let files_at = files.at;
        let fds = match (w.fds, files.fds) {
            (false, _) => None,
            (true, Some(r)) => Some(r),
            // No cgroup.procs to read: systemd's list of the processes.
            (true, None) => Some(match bus.unit_pids(&t.unit).await {
                Ok(pids) => {
                    let dir = dirs.proc.clone();
                    tokio::task::spawn_blocking(move || count_fds(&dir, &pids))
                        .await
                        .unwrap_or_else(|_| {
                            Reading::Error("counting panicked; a bug in unitwatch".into())
                        })
                }
                Err(e) => Reading::Error(e.to_string()),
            }),
        };
        let timer = if w.timer {
            Some(read_timer(bus, t).await)
        } else {
            None
        };
        (memory, tasks, cpu, swap, fds, (control_group, sources, fd_limits, files_at), timer)
    };
    let w = t.wants;
    let (memory, tasks, cpu, swap, fds, (control_group, sources, fd_limits, files_at), timer) =
        match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(r) => r,
            Err(_) => {
                let why = format!("no answer within {}s", READ_TIMEOUT.as_secs());
                let late = |on: bool| on.then(|| Prop::Error(why.clone()));
                (
                    late(w.memory),
                    late(w.tasks),
                    late(w.cpu),
                    late(w.swap),
                    w.fds.then(|| Reading::Error(why.clone())),
                    (None, Sources::default(), Vec::new(), None),
                    w.timer.then(|| Reading::Error(why.clone())),
                )
            }
        };
    let reading = |p: Prop, why: &'static str| match p {
        Prop::Value(v) => Reading::Value(v),
        Prop::Missing => Reading::Unavailable(crate::checks::Text::Borrowed(why)),
        Prop::Error(e) => Reading::Error(e),
    };
    let now = files_at.unwrap_or_else(std::time::Instant::now);
    let cpu = cpu.map(|p| {
        reading(
            p,
            "neither the unit's cgroup (cpu.stat, cpuacct.usage) nor systemd (CPUUsageNSec; is CPUAccounting off?) has its CPU time",
        )
    });
    let cpu_ppm = match (&cpu, &t.prev) {
        (Some(Reading::Value(n)), Some(prev)) => cpu_ppm(prev, *n, now),
        _ => None,
    };
    Resources {
        memory: memory.map(|p| {
            reading(
                p,
                "systemd reports no MemoryCurrent (is MemoryAccounting off?)",
            )
        }),
        tasks: tasks.map(|p| {
            reading(
                p,
                "systemd reports no TasksCurrent (is TasksAccounting off?)",
            )
        }),
        cpu_usage_nsec: cpu,
        cpu_ppm,
        swap: swap.map(|p| {
            reading(
                p,
                "neither the unit's cgroup (memory.swap.current) nor systemd (MemorySwapCurrent) has its swap: swap is accounted on the unified cgroup hierarchy only",
            )
        }),
        fds,
        timer,
        // When the files were read, where they were (a batch reads them
        // ahead of the rest).
        read_at_ms: (SystemTime::now() - now.elapsed())
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
        read_at: Some(now),
        control_group,
        sources,
        fd_limits,
    }
}

use crate::systemd::Prop;

/// A timer's `LastTriggerUSec`, next elapse and `Unit`, and the state and
/// `Result` of that unit.
async fn read_timer(bus: &crate::systemd::Systemd, t: &Target) -> Reading<TimerInfo> {
    use crate::systemd::Prop;
    let u64_of = |p: Prop| match p {
        Prop::Value(v) => Ok(Some(v)),
        Prop::Missing => Ok(None),
        Prop::Error(e) => Err(e),
    };
    let read = async {
        let (last, real, mono, unit) = tokio::join!(
            bus.unit_u64(&t.unit, &t.path, "LastTriggerUSec"),
            bus.unit_u64(&t.unit, &t.path, "NextElapseUSecRealtime"),
            bus.unit_u64(&t.unit, &t.path, "NextElapseUSecMonotonic"),
            bus.unit_str(&t.unit, &t.path, "Unit"),
        );
        let last = u64_of(last)?.unwrap_or(0);
        let next = match (u64_of(real)?.filter(|v| *v > 0), u64_of(mono)?.filter(|v| *v > 0)) {
            (Some(r), _) => Some(r),
            (None, Some(m)) => monotonic_to_wall(m),
            (None, None) => None,
        };
        let triggers = unit.map_err(|e| e.to_string())?.unwrap_or_default();
        let (mut state, mut result) = (None, None);
        if !triggers.is_empty() {
            let (listed, _) = bus
                .list(std::slice::from_ref(&triggers))
                .await
                .map_err(|e| e.to_string())?;
            if let Some(l) = listed.first() {
                state = Some(l.active_state.clone());
                result = bus
                    .result(&triggers, &l.path)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok::<_, String>(TimerInfo {
            last_trigger_us: last,
            next_elapse_us: next,
            triggers,
            triggers_state: state,
            triggers_result: result,
        })
    };
    match read.await {
        Ok(i) => Reading::Value(i),
        Err(e) => Reading::Error(e),
    }
}

/// A CLOCK_MONOTONIC time (µs) on the wall clock, as now relates them.
fn monotonic_to_wall(mono_us: u64) -> Option<u64> {
    let now_mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let now_mono_us = now_mono.tv_sec() as i128 * 1_000_000 + now_mono.tv_nsec() as i128 / 1000;
    let now_wall_us = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_micros() as i128;
    u64::try_from(now_wall_us + (mono_us as i128 - now_mono_us)).ok()
}

/// Where the reader looks: `[daemon] proc_dir` and `sys_dir`.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub proc: PathBuf,
    pub sys: PathBuf,
}

impl Dirs {
    pub fn of(config: &Config) -> Dirs {
        Dirs {
            proc: config.daemon.proc_dir.clone(),
            sys: config.daemon.sys_dir.clone(),
        }
    }
}

/// `find(dir)`, worked out once per directory (the daemon has one; the
/// tests point the reader at fixtures of their own).
fn once_per<T: Clone>(seen: &Mutex<Vec<(PathBuf, T)>>, dir: &Path, find: impl FnOnce() -> T) -> T {
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, v)) = seen.iter().find(|(d, _)| d == dir) {
        return v.clone();
    }
    let v = find();
    seen.push((dir.to_path_buf(), v.clone()));
    v
}

/// The CPU between the previous read and this one, in millionths of a
/// core; none without a previous figure or when the counter went back (the
/// unit was restarted: a new cgroup).
pub(super) fn cpu_ppm(prev: &Resources, nsec: u64, now: std::time::Instant) -> Option<u64> {
    let before = *prev.cpu_usage_nsec.as_ref()?.value()?;
    let wall = now.checked_duration_since(prev.read_at?)?.as_nanos() as u64;
    if wall == 0 || nsec < before {
        return None;
    }
    Some(((nsec - before) as u128 * 1_000_000 / wall as u128) as u64)
}

//! What the resource reader (daemon/resources.rs) reads of one unit: its
//! figures from systemd over D-Bus, from its cgroup's files where systemd
//! 252 has none, and its processes' open descriptors from /proc.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::Wants;
use crate::config::Config;
use crate::units::{Fds, Reading, Resources};

/// What the reader needs to know of a unit it reads.
#[derive(Debug, Clone)]
pub struct Target {
    pub unit: String,
    pub path: String,
    pub wants: Wants,
    /// The last read, for the CPU delta.
    pub prev: Option<Resources>,
}

/// The longest one unit's read may take: past it, its figures say so.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads one unit's figures from systemd and, for file descriptors, from
/// /proc (on the blocking pool). Where systemd 252 has no figure on a
/// hybrid cgroup host (CPUUsageNSec needs cpu and cpuacct mounted
/// together; MemorySwapCurrent came in a later systemd), the unit's cgroup
/// on the unified hierarchy is read instead: the kernel's own count for
/// the same cgroup.
pub async fn read_unit(
    bus: &crate::systemd::Systemd,
    dirs: &Dirs,
    t: &Target,
) -> Resources {
    use crate::systemd::Prop;
    let w = t.wants;
    let read = async {
        let get = |prop: &'static str, on: bool| async move {
            if on {
                Some(bus.unit_u64(&t.unit, &t.path, prop).await)
            } else {
                None
            }
        };
        let (memory, tasks, mut cpu, mut swap) = tokio::join!(
            get("MemoryCurrent", w.memory),
            get("TasksCurrent", w.tasks),
            get("CPUUsageNSec", w.cpu),
            get("MemorySwapCurrent", w.swap),
        );
        // The cgroup's path, for its own files: read once per run.
        let mut control_group = t.prev.as_ref().and_then(|p| p.control_group.clone());
        let (want_cpu, want_swap) = (cpu == Some(Prop::Missing), swap == Some(Prop::Missing));
        if control_group.is_none() && (want_cpu || want_swap || w.fds) {
            control_group = bus.control_group(&t.unit, &t.path).await.ok().flatten();
        }
        if let (Some(cg), true) = (&control_group, want_cpu || want_swap) {
            let (sys, cg) = (dirs.sys.clone(), cg.clone());
            let (c, s) = tokio::task::spawn_blocking(move || {
                (
                    want_cpu.then(|| cgroup2_cpu_nsec(&sys, &cg)).flatten(),
                    want_swap
                        .then(|| cgroup2_u64(&sys, &cg, "memory.swap.current"))
                        .flatten(),
                )
            })
            .await
            .unwrap_or_default();
            if let Some(n) = c {
                cpu = Some(Prop::Value(n));
            }
            if let Some(n) = s {
                swap = Some(Prop::Value(n));
            }
        }
        let fds = if w.fds {
            // The cgroup's own list where there is a unified hierarchy (no
            // round trip, no command lines); systemd's otherwise.
            let (sys, cg) = (dirs.sys.clone(), control_group.clone());
            let listed = match cg {
                Some(cg) => tokio::task::spawn_blocking(move || cgroup2_pids(&sys, &cg))
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            let pids = match listed {
                Some(p) => Ok(p),
                None => bus.unit_pids(&t.unit).await.map_err(|e| e.to_string()),
            };
            Some(match pids {
                Ok(pids) => {
                    let dir = dirs.proc.clone();
                    tokio::task::spawn_blocking(move || count_fds(&dir, &pids))
                        .await
                        .unwrap_or_else(|_| {
                            Reading::Error("counting panicked; a bug in unitwatch".into())
                        })
                }
                Err(e) => Reading::Error(e),
            })
        } else {
            None
        };
        (memory, tasks, cpu, swap, fds, control_group)
    };
    let (memory, tasks, cpu, swap, fds, control_group) = match tokio::time::timeout(READ_TIMEOUT, read).await {
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
                None,
            )
        }
    };
    let reading = |p: Prop, why: &str| match p {
        Prop::Value(v) => Reading::Value(v),
        Prop::Missing => Reading::Unavailable(why.to_string()),
        Prop::Error(e) => Reading::Error(e),
    };
    let now = std::time::Instant::now();
    let cpu = cpu.map(|p| {
        reading(
            p,
            "neither systemd (CPUUsageNSec; is CPUAccounting off?) nor the unified cgroup (cpu.stat) has the unit's CPU time",
        )
    });
    let cpu_ppm = match (&cpu, &t.prev) {
        (Some(Reading::Value(n)), Some(prev)) => cpu_ppm(prev, *n, now),
        _ => None,
    };
    Resources {
        memory: memory.map(|p| reading(p, "systemd reports no MemoryCurrent (is MemoryAccounting off?)")),
        tasks: tasks.map(|p| reading(p, "systemd reports no TasksCurrent (is TasksAccounting off?)")),
        cpu_usage_nsec: cpu,
        cpu_ppm,
        swap: swap.map(|p| {
            reading(
                p,
                "neither systemd (MemorySwapCurrent) nor the unified cgroup (memory.swap.current) has the unit's swap: swap is accounted on the unified cgroup hierarchy only",
            )
        }),
        fds,
        read_at_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
        read_at: Some(now),
        control_group,
    }
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

/// A file of the unit's cgroup on the unified hierarchy: at
/// /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid
/// one.
pub(super) fn cgroup2_file(sys: &Path, cg: &str, file: &str) -> Option<String> {
    let cg = cg.trim_start_matches('/');
    ["fs/cgroup", "fs/cgroup/unified"]
        .iter()
        .find_map(|root| std::fs::read_to_string(sys.join(root).join(cg).join(file)).ok())
}

/// Every process of the cgroup and its sub-cgroups, from their
/// cgroup.procs; none where the unified hierarchy does not have it.
pub(super) fn cgroup2_pids(sys: &Path, cg: &str) -> Option<Vec<u32>> {
    let cg = cg.trim_start_matches('/');
    let root = ["fs/cgroup", "fs/cgroup/unified"]
        .iter()
        .map(|r| sys.join(r).join(cg))
        .find(|d| d.join("cgroup.procs").is_file())?;
    let mut pids = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        let text = std::fs::read_to_string(d.join("cgroup.procs")).ok()?;
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        if let Ok(entries) = std::fs::read_dir(&d) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    Some(pids)
}

pub(super) fn cgroup2_u64(sys: &Path, cg: &str, file: &str) -> Option<u64> {
    cgroup2_file(sys, cg, file)?.trim().parse().ok()
}

/// `usage_usec` of the cgroup's cpu.stat, in ns.
pub(super) fn cgroup2_cpu_nsec(sys: &Path, cg: &str) -> Option<u64> {
    parse_usage_usec(&cgroup2_file(sys, cg, "cpu.stat")?).map(|us| us.saturating_mul(1000))
}

pub(super) fn parse_usage_usec(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
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

/// Counts the open descriptors of each of `pids` against its soft
/// `RLIMIT_NOFILE`, from `/proc/PID/fd` and `/proc/PID/limits`, and returns
/// the process nearest its limit. A process gone meanwhile is skipped; one
/// that cannot be read is the unit's answer ("permission denied reading
/// /proc/812/fd"), as a count of the others would be a silent undercount.
pub fn count_fds(proc_dir: &Path, pids: &[u32]) -> Reading<Fds> {
    let mut worst: Option<Fds> = None;
    let mut gone = 0;
    for &pid in pids {
        let dir = proc_dir.join(pid.to_string());
        let limit = match read_nofile(&dir.join("limits")) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                gone += 1;
                continue;
            }
            Err(e) => return Reading::Error(io_said(&e, &dir.join("limits"))),
        };
        let fd_dir = dir.join("fd");
        let open = match std::fs::read_dir(&fd_dir) {
            Ok(d) => d.count() as u64,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                gone += 1;
                continue;
            }
            Err(e) => return Reading::Error(io_said(&e, &fd_dir)),
        };
        let f = Fds {
            pid,
            open,
            limit,
            processes: 0,
        };
        if worst.is_none_or(|w| f.percent() > w.percent() || (w.open < f.open && f.percent() == w.percent())) {
            worst = Some(f);
        }
    }
    match worst {
        Some(mut w) => {
            w.processes = (pids.len() - gone) as u32;
            Reading::Value(w)
        }
        None if pids.is_empty() => Reading::Value(Fds::default()),
        // Every process listed, none to be seen: hidden, not gone (the
        // processes of another user under ProtectProc=invisible).
        None => Reading::Error(format!(
            "cannot see pid {} in {} (ProtectProc=invisible hides other users' processes; see the README on fds_warn_percent)",
            pids[0],
            proc_dir.display()
        )),
    }
}

pub(super) fn io_said(e: &std::io::Error, path: &Path) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!(
            "permission denied reading {} (counting another user's descriptors needs CAP_DAC_READ_SEARCH: see the README on fds_warn_percent)",
            path.display()
        )
    } else {
        format!("cannot read {}: {e}", path.display())
    }
}

/// The soft "Max open files" of a /proc/PID/limits file; `u64::MAX` for
/// unlimited.
pub(super) fn read_nofile(path: &Path) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    parse_nofile(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no \"Max open files\" line",
        )
    })
}

pub(super) fn parse_nofile(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}


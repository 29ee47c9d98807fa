//! Open file descriptors of a unit's processes, each against its own soft
//! `RLIMIT_NOFILE`, from /proc.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::at::Place;
use super::once_per;
use crate::units::{Fds, Reading};

/// Is `dir` a procfs (where a /proc/PID/fd's size is its count), rather
/// than a test's fixture? Asked once per directory.
fn is_procfs(dir: &Path) -> bool {
    static SEEN: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());
    once_per(&SEEN, dir, || {
        nix::sys::statfs::statfs(dir)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
    })
}

/// Counts the open descriptors of each of `pids` against its soft
/// `RLIMIT_NOFILE`, from `/proc/PID/fd` and `/proc/PID/limits`, and returns
/// the process nearest its limit. A process gone meanwhile is skipped; one
/// that cannot be read is the unit's answer ("permission denied reading
/// /proc/812/fd"), as a count of the others would be a silent undercount.
pub fn count_fds(proc_dir: &Path, pids: &[u32]) -> Reading<Fds> {
    count_fds_cached(proc_dir, pids, &mut Vec::new())
}

/// [`count_fds`], with the soft limits already read for these processes
/// (`limits`, kept from read to read: a process's limit rarely changes,
/// and a read of /proc/PID/limits is an open each).
pub fn count_fds_cached(proc_dir: &Path, pids: &[u32], limits: &mut Vec<(u32, u64)>) -> Reading<Fds> {
    let mut worst: Option<Fds> = None;
    let mut gone = 0;
    limits.retain(|(p, _)| pids.contains(p));
    let procfs = is_procfs(proc_dir);
    // /proc kept: PID/limits and PID/fd opened below it, not by full path.
    let mut proc_ = match Place::kept(proc_dir) {
        Ok(p) => p,
        Err(e) => return Reading::Error(io_said(&e, proc_dir)),
    };
    let mut name = Vec::with_capacity(24);
    for &pid in pids {
        let limit = match limits.iter().find(|(p, _)| *p == pid) {
            Some((_, l)) => *l,
            None => match read_nofile(&mut proc_, pid) {
                Ok(l) => {
                    limits.push((pid, l));
                    l
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    gone += 1;
                    continue;
                }
                Err(e) => {
                    return Reading::Error(io_said(&e, &proc_dir.join(format!("{pid}/limits"))))
                }
            },
        };
        // Linux 6.2 and later give the count as the directory's size: one
        // stat instead of listing every descriptor. Before, the size is 0
        // and the directory is listed.
        let sized = if procfs {
            proc_.size(pid_file(&mut name, pid, "fd")).unwrap_or(0)
        } else {
            0
        };
        let open = if sized > 0 {
            sized
        } else {
            let fd_dir = proc_dir.join(pid.to_string()).join("fd");
            match std::fs::read_dir(&fd_dir) {
                Ok(d) => d.count() as u64,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    gone += 1;
                    continue;
                }
                Err(e) => return Reading::Error(io_said(&e, &fd_dir)),
            }
        };
        let f = Fds {
            pid,
            open,
            limit,
            processes: 0,
        };
        if worst.is_none_or(|w| {
            f.percent() > w.percent() || (w.open < f.open && f.percent() == w.percent())
        }) {
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

/// `PID/file`, a name below /proc, made in `buf` (reused: no allocation
/// per process).
fn pid_file<'b>(buf: &'b mut Vec<u8>, pid: u32, file: &str) -> &'b [u8] {
    use std::io::Write as _;
    buf.clear();
    let _ = write!(buf, "{pid}/{file}");
    buf
}

pub(in crate::checks::unit_resources) fn io_said(e: &std::io::Error, path: &Path) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!(
            "permission denied reading {} (counting another user's descriptors needs CAP_DAC_READ_SEARCH: see the README on fds_warn_percent)",
            path.display()
        )
    } else {
        format!("cannot read {}: {e}", path.display())
    }
}

/// The soft "Max open files" of /proc/PID/limits; `u64::MAX` for
/// unlimited.
fn read_nofile(proc_: &mut Place, pid: u32) -> std::io::Result<u64> {
    proc_.read_with(pid_file(&mut Vec::new(), pid, "limits"), parse_nofile)?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no \"Max open files\" line",
        )
    })
}

pub(in crate::checks::unit_resources) fn parse_nofile(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}


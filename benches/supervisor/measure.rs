//! What the benchmarks read off a real systemd: one kill's timings from
//! the journal and the unit's own timestamps, a process's CPU ticks and
//! memory from /proc. Shared by the supervisor benchmark and the
//! comparison with the peers (benches/compare.rs), each using a part.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use crate::harness::{self, field, Sandbox};

/// The restart delay of the detection runs (`initial = max = 100ms`).
pub const DELAY_MS: f64 = 100.0;

/// One kill's timings (ms), all from journal and systemd timestamps
/// (CLOCK_MONOTONIC) but the kill command's start.
#[derive(Default)]
pub struct Samples {
    /// systemd's exit line -> `unit-failed`.
    pub detect: Vec<f64>,
    /// `unit-failed` -> `restart-scheduled`: the next event of the same
    /// reaction, which a sink that blocked in `emit` would hold back.
    pub next_event: Vec<f64>,
    /// systemd's exit line -> `unit-restarted`, minus the delay.
    pub restart: Vec<f64>,
    /// systemd's exit line -> active again, minus the delay.
    pub overhead: Vec<f64>,
    /// The kill command's start (nsenter + systemctl) -> systemd's exit line.
    pub kill_cmd: Vec<f64>,
    /// `unit-restarted` -> active again: systemd starting the unit.
    pub systemd_start: Vec<f64>,
}

/// Kills `unit`'s main process; the wall-clock second to read the journal
/// from, and the kill's CLOCK_MONOTONIC time (µs) to filter it by.
fn kill(sb: &Sandbox, unit: &str) -> (u64, u64) {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let t_kill = harness::monotonic_us();
    sb.kill_main(unit);
    (since, t_kill)
}

/// Kills `unit` and reads, in one journal query per poll, systemd's exit
/// line and unitwatch's four events of the failure.
pub fn kill_once(sb: &Sandbox, unit: &str, s: &mut Samples) {
    let (since, t_kill) = kill(sb, unit);
    let query = format!(
        "journalctl -o json --no-pager --since=@{since} \
         _SYSTEMD_UNIT=unitwatch.service UNITWATCH_UNIT={unit} + _PID=1 UNIT={unit}"
    );
    let wanted = [
        "unit-failed",
        "restart-scheduled",
        "unit-restarted",
        "unit-recovered",
    ];
    let (exit, at) = sb.wait_for(
        &format!("the exit and unitwatch's events for {unit}"),
        Duration::from_secs(10),
        || {
            let mut exit = None;
            let mut at = [None; 4];
            for e in sb
                .sh_out(&query)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            {
                let Ok(t) = field(&e, "__MONOTONIC_TIMESTAMP").parse::<u64>() else {
                    continue;
                };
                if t < t_kill {
                    continue;
                }
                if field(&e, "_PID") == "1" && field(&e, "MESSAGE").contains("Main process exited")
                {
                    exit.get_or_insert(t);
                } else if let Some(i) = wanted
                    .iter()
                    .position(|w| field(&e, "UNITWATCH_EVENT") == *w)
                {
                    at[i].get_or_insert(t);
                }
            }
            let at: Option<Vec<u64>> = at.into_iter().collect();
            Some((exit?, at?))
        },
    );
    let active: u64 = sb
        .prop(unit, "ActiveEnterTimestampMonotonic")
        .parse()
        .unwrap();
    assert!(active > exit, "{unit} active before its exit?");
    let ms = |a: u64, b: u64| (b as f64 - a as f64) / 1000.0;
    s.detect.push(ms(exit, at[0]));
    s.next_event.push(ms(at[0], at[1]));
    s.restart.push(ms(exit, at[2]) - DELAY_MS);
    s.overhead.push(ms(exit, active) - DELAY_MS);
    s.kill_cmd.push(ms(t_kill, exit));
    s.systemd_start.push(ms(at[2], active));
}

/// A unit's CPU time so far (ns), its whole cgroup: systemd's
/// CPUUsageNSec, else the cgroup's own count on the unified hierarchy
/// (systemd 252 has none on a hybrid host whose cpu and cpuacct
/// controllers are mounted apart, as here).
pub fn unit_cpu_ns(sb: &Sandbox, unit: &str) -> Option<u64> {
    if let Ok(n) = sb.prop(unit, "CPUUsageNSec").parse::<u64>() {
        if n != u64::MAX {
            return Some(n);
        }
    }
    let cg = sb.prop(unit, "ControlGroup");
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .find_map(|root| {
            let stat = sb.read(&format!("{root}{cg}/cpu.stat"))?;
            stat.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))?
                .trim()
                .parse::<u64>()
                .ok()
                .map(|us| us * 1000)
        })
}

/// A unit's CPU (% of one core, its whole cgroup: monit's `systemctl`
/// children count for it) and its main process's RSS (KiB) over `secs`.
pub fn idle(sb: &Sandbox, unit: &str, secs: u64) -> (f64, u64) {
    let pid = sb.prop(unit, "MainPID");
    // Past the first sweeps.
    std::thread::sleep(Duration::from_secs(2));
    // The cgroup's CPU time in ns, which a clock tick (10 ms) cannot
    // resolve at these rates; ticks if there is none.
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    let t0 = (
        unit_cpu_ns(sb, unit),
        cpu_ticks(sb, &pid),
        std::time::Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t0.2.elapsed().as_secs_f64();
    let cpu_s = match (t0.0, unit_cpu_ns(sb, unit)) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => (cpu_ticks(sb, &pid) - t0.1) as f64 / hz,
    };
    (cpu_s / wall * 100.0, status_kb(sb, &pid, "VmRSS:"))
}

/// A number from the environment (a benchmark's size), else `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub fn cpu_ticks(sb: &Sandbox, pid: &str) -> u64 {
    let (u, s) = cpu_split(sb, pid);
    u + s
}

/// (user, kernel) clock ticks of `pid`.
pub fn cpu_split(sb: &Sandbox, pid: &str) -> (u64, u64) {
    let stat = sb.read(&format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse().unwrap(), f[12].parse().unwrap())
}

pub fn status_kb(sb: &Sandbox, pid: &str, key: &str) -> u64 {
    sb.read(&format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Kills `unit`, which something else (systemd's own `Restart=`, monit)
/// brings back, and returns its exit line to active again (ms), or None
/// if it was not active again within `timeout`.
pub fn kill_until_active(sb: &Sandbox, unit: &str, timeout: Duration) -> Option<f64> {
    let (since, t_kill) = kill(sb, unit);
    let query = format!("journalctl -o json --no-pager --since=@{since} _PID=1 UNIT={unit}");
    let exit = sb.wait_for(
        &format!("systemd's exit line for {unit}"),
        Duration::from_secs(10),
        || {
            sb.sh_out(&query)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|e| field(e, "MESSAGE").contains("Main process exited"))
                .filter_map(|e| field(&e, "__MONOTONIC_TIMESTAMP").parse::<u64>().ok())
                .find(|t| *t >= t_kill)
        },
    );
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        let t: u64 = sb
            .prop(unit, "ActiveEnterTimestampMonotonic")
            .parse()
            .unwrap_or(0);
        if t > exit && sb.prop(unit, "ActiveState") == "active" {
            return Some((t - exit) as f64 / 1000.0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The kernel's part of every unit start: one cgroup migration with the
/// system otherwise quiet, `n` of them 300 ms apart (ms each), and whether
/// cgroup2 is mounted with `favordynmods`; an error names what failed.
///
/// systemd 252's child writes its own PID into the unit's `cgroup.procs`
/// before it execs the command. Since Linux 6.0 that write takes
/// `cgroup_threadgroup_rwsem` for writing, which waits for an RCU grace
/// period unless another migration came within the last one, or cgroup2
/// is mounted with `favordynmods` (or booted with
/// `cgroup_favordynmods=true`). So each start of an isolated unit, by
/// unitwatch or by systemd's own `Restart=`, pays one grace period, and
/// the restart's floor is the delay + the detection + this. Measured on
/// the host, whose cgroup tree the sandbox shares: the lock is the
/// kernel's, one for all namespaces.
pub fn cgroup_migration(n: usize) -> Result<(Vec<f64>, bool), String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    // mountinfo: ID PARENT DEV ROOT MOUNTPOINT OPTS [TAGS] - FSTYPE SOURCE SUPEROPTS
    let (point, superopts) = info
        .lines()
        .find_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            let mut t = tail.split_whitespace();
            (t.next()? == "cgroup2").then(|| {
                let point = head.split_whitespace().nth(4).unwrap_or("").to_string();
                (point, t.nth(1).unwrap_or("").to_string())
            })
        })
        .ok_or("no cgroup2 mount in /proc/self/mountinfo")?;
    let favor = superopts.split(',').any(|o| o == "favordynmods");
    let dir = std::path::PathBuf::from(&point)
        .join(format!("unitwatch-bench-probe-{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let mut ms = Vec::with_capacity(n);
    let mut failed = None;
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(300));
        let mut child = match std::process::Command::new("sleep").arg("10").spawn() {
            Ok(c) => c,
            Err(e) => {
                failed = Some(format!("spawn sleep: {e}"));
                break;
            }
        };
        let t = std::time::Instant::now();
        let wrote = std::fs::write(dir.join("cgroup.procs"), child.id().to_string());
        let took = t.elapsed().as_secs_f64() * 1000.0;
        let _ = child.kill();
        let _ = child.wait();
        match wrote {
            Ok(()) => ms.push(took),
            Err(e) => {
                failed = Some(format!("write {}/cgroup.procs: {e}", dir.display()));
                break;
            }
        }
    }
    let _ = std::fs::remove_dir(&dir);
    match failed {
        Some(e) => Err(e),
        None => Ok((ms, favor)),
    }
}

/// A burst's timings (ms): each unit's exit line -> unitwatch's
/// `unit-failed` (empty for units unitwatch does not watch) and -> active
/// again.
pub struct Burst {
    pub detect: Vec<f64>,
    pub active: Vec<f64>,
}

/// Kills every unit of `units` in one call, as a shared dependency's loss
/// does, and waits (10 s at most) until all are active again, by
/// unitwatch's restarts or systemd's own `Restart=`.
pub fn kill_burst(sb: &Sandbox, units: &[String]) -> Burst {
    let (since, t_kill) = {
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1;
        (since, harness::monotonic_us())
    };
    sb.ok(&format!(
        "systemctl kill --kill-who=main -s KILL {}",
        units.join(" ")
    ));
    let back = |u: &String, exit: u64| {
        sb.prop(u, "ActiveEnterTimestampMonotonic")
            .parse::<u64>()
            .ok()
            .filter(|t| *t > exit)
    };
    let query = format!("journalctl -o json --no-pager --since=@{since}");
    sb.wait_for(
        "every unit of the burst active again",
        Duration::from_secs(10),
        || {
            let mut exit = std::collections::HashMap::new();
            let mut failed = std::collections::HashMap::new();
            for e in sb
                .sh_out(&query)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            {
                let t: u64 = field(&e, "__MONOTONIC_TIMESTAMP").parse().unwrap_or(0);
                if t < t_kill {
                    continue;
                }
                if field(&e, "_PID") == "1" && field(&e, "MESSAGE").contains("Main process exited")
                {
                    exit.entry(field(&e, "UNIT").to_string()).or_insert(t);
                } else if field(&e, "UNITWATCH_EVENT") == "unit-failed" {
                    failed
                        .entry(field(&e, "UNITWATCH_UNIT").to_string())
                        .or_insert(t);
                }
            }
            let ms = |a: u64, b: u64| (b as f64 - a as f64) / 1000.0;
            let mut b = Burst {
                detect: Vec::new(),
                active: Vec::new(),
            };
            for u in units {
                let e = *exit.get(u)?;
                b.active.push(ms(e, back(u, e)?));
                if let Some(f) = failed.get(u) {
                    b.detect.push(ms(e, *f));
                }
            }
            Some(b)
        },
    )
}

//! The cost of the per-unit resource keys (issue 15), in one throwaway
//! systemd 252 (tests/harness) with unitwatchd as shipped (the `unitwatch`
//! user, its hardening, the generator's CAP_DAC_READ_SEARCH) and the
//! release build, at N = 50, 500 and 2,000 units:
//!
//! - the sweep's cost per watched unit, every unit with every resource key
//!   on (memory, fds, tasks, CPU, swap, restarts) against none: unitwatchd's
//!   CPU per sweep at `interval = "1s"`, and systemd's (PID 1, which
//!   answers the reads);
//! - idle CPU at `interval = "10s"` and RSS, all keys on;
//! - detection (systemd's exit line to `unit-failed`) of a watched unit
//!   killed while the reads run, with no keys and with all of them.
//!
//! Each figure is printed beside its target and marked met or NOT MET.
//! `scripts/bench` runs it (as root); `CI=true` shortens the windows.
//! `UNITWATCH_RESOURCES_HOLD=1` keeps the sandbox booted at the first size's
//! idle setup, for a profile or a heap trace by hand. Asserts nothing.

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "supervisor/measure.rs"]
mod measure;

use std::time::{Duration, Instant};

use harness::{verdict, Sandbox, Summary};
use measure::{cpu_ticks, env_num, idle, kill_once, status_kb, Samples};

fn unit(i: usize) -> String {
    format!("res@{i}.service")
}

/// Every resource key, thresholds no unit reaches.
const ALL_KEYS: &str = "memory_warn = \"1GiB\"\nmemory_crit = \"2GiB\"\n\
    fds_warn_percent = 70\nfds_crit_percent = 90\ntasks_warn = 500\ntasks_crit = 1000\n\
    cpu_warn_percent = 80\ncpu_crit_percent = 180\nswap_warn = \"256MiB\"\nrestarts_warn = 5\n";

/// The unit killed for the detection figures, restarted by unitwatch.
const VICTIM: &str = "victim.service";

fn config(n: usize, interval: &str, keys: bool) -> String {
    let mut c = format!(
        "[daemon]\ninterval = \"{interval}\"\n\
         [backoff]\ninitial = \"100ms\"\nfactor = 1.0\nmax = \"100ms\"\nmax_restarts_per_hour = 100000\n\
         [[unit]]\nname = \"{VICTIM}\"\n"
    );
    for i in 1..=n {
        c += &format!("[[unit]]\nname = \"{}\"\nrestart = false\n", unit(i));
        if keys {
            c += ALL_KEYS;
        }
    }
    c
}

/// Restarts the daemon on `config` (a daemon-reload first: the generator
/// grants the capability when the config counts descriptors) and waits
/// until every unit's figures were read.
fn run_on(sb: &Sandbox, n: usize, config: &str, keys: bool) {
    sb.write("/etc/unitwatch/unitwatch.toml", config);
    sb.ok("systemctl daemon-reload && systemctl restart unitwatch");
    sb.wait_for(
        &format!("the snapshot of {n} units"),
        Duration::from_secs(60),
        || {
            let s = sb.read("/run/unitwatch/status.json")?;
            let v: serde_json::Value = serde_json::from_str(&s).ok()?;
            let units = v["units"].as_object()?;
            let read = units
                .values()
                .filter(|u| !keys || u["state"]["resources"].is_object())
                .count();
            (units.len() == n + 1 && read >= n).then_some(())
        },
    );
}

/// unitwatchd's and systemd's CPU (ms per sweep) over `secs` of 1 s sweeps.
fn per_sweep(sb: &Sandbox, secs: u64) -> (f64, f64) {
    std::thread::sleep(Duration::from_secs(2));
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    let ours = || measure::unit_cpu_ns(sb, "unitwatch").unwrap_or(0);
    let t0 = (ours(), cpu_ticks(sb, "1"), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t0.2.elapsed().as_secs_f64();
    let ours_ms = (ours() - t0.0) as f64 / 1e6;
    let systemd_ms = (cpu_ticks(sb, "1") - t0.1) as f64 / hz * 1000.0;
    // One sweep a second.
    (ours_ms / wall, systemd_ms / wall)
}

/// Detection of `kills` kills of the victim (ms): median, max.
fn detection(sb: &Sandbox, kills: usize) -> (f64, f64) {
    let mut s = Samples::default();
    for _ in 0..kills {
        kill_once(sb, VICTIM, &mut s);
        std::thread::sleep(Duration::from_millis(300));
    }
    let d = Summary::of(s.detect);
    (d.median, d.max)
}

struct Row {
    n: usize,
    detect_plain: (f64, f64),
    detect_keys: (f64, f64),
    plain: (f64, f64),
    keys: (f64, f64),
    idle_10s: f64,
    rss_kb: u64,
    read_ms: Option<f64>,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let sizes: Vec<usize> = std::env::var("UNITWATCH_RESOURCES_SIZES")
        .unwrap_or_else(|_| "50,500,2000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let secs = env_num("UNITWATCH_RESOURCES_SECS", if ci { 10 } else { 20 });
    let kills = env_num("UNITWATCH_RESOURCES_KILLS", if ci { 5 } else { 10 }) as usize;
    let max = sizes.iter().copied().max().unwrap_or(0);
    let started = Instant::now();
    let sb = Sandbox::boot("resources-bench");
    // Another user's processes (DynamicUser), as a service would be.
    sb.unit(
        VICTIM,
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\n",
    );
    sb.ok(&format!("systemctl start {VICTIM}"));
    sb.unit(
        "res@.service",
        "[Service]\nDynamicUser=yes\nExecStart=/bin/sleep infinity\n",
    );
    let names: Vec<String> = (1..=max).map(unit).collect();
    for chunk in names.chunks(500) {
        sb.ok(&format!("systemctl start {}", chunk.join(" ")));
    }
    sb.start_unitwatch(&config(sizes[0], "1s", false), "");
    let mut rows = Vec::new();
    for &n in &sizes {
        run_on(&sb, n, &config(n, "1s", false), false);
        let plain = per_sweep(&sb, secs);
        let detect_plain = detection(&sb, kills);
        run_on(&sb, n, &config(n, "1s", true), true);
        let keys = per_sweep(&sb, secs);
        let detect_keys = detection(&sb, kills);
        // A profile of the daemon with every key on (a build with symbols:
        // CARGO_PROFILE_RELEASE_SMALL_STRIP=none CARGO_PROFILE_RELEASE_SMALL_DEBUG=1).
        if let Ok(out) = std::env::var("UNITWATCH_RESOURCES_PERF") {
            let pid = std::process::Command::new("pgrep")
                .args(["-n", "-f", "unitwatchd run"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            let _ = std::process::Command::new("perf")
                .args([
                    "record",
                    "-F",
                    "499",
                    "-g",
                    "-p",
                    &pid,
                    "-o",
                    &format!("{out}.{n}"),
                    "--",
                    "sleep",
                    "8",
                ])
                .status();
        }
        // How long one read of every unit took: the spread of the read
        // times in one snapshot.
        let snap = sb.status_json();
        let at: Vec<u64> = snap["units"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|u| u["state"]["resources"]["read_at_ms"].as_u64())
            .collect();
        let read_ms =
            (at.len() == n).then(|| (at.iter().max().unwrap() - at.iter().min().unwrap()) as f64);
        run_on(&sb, n, &config(n, "10s", true), true);
        // For profiling by hand: the sandbox kept as the idle figure
        // finds it (N units, every key, 10 s sweeps) until this process
        // is killed; its PID 1 for `nsenter -t PID -a`.
        if std::env::var("UNITWATCH_RESOURCES_HOLD").is_ok() {
            eprintln!(
                "holding the sandbox at {n} units: nsenter -t {} -a; kill {} to end",
                sb.pid1,
                std::process::id()
            );
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        let (idle_10s, _) = idle(&sb, "unitwatch", secs.max(20));
        let pid = sb.prop("unitwatch", "MainPID");
        let rss_kb = status_kb(&sb, &pid, "VmRSS:");
        rows.push(Row {
            n,
            detect_plain,
            detect_keys,
            plain,
            keys,
            idle_10s,
            rss_kb,
            read_ms,
        });
    }
    println!(
        "\n== per-unit resource keys at N units, unitwatchd as shipped ({secs} s at 1 s sweeps, {} s at 10 s; one boot, {:.0} s in all)",
        secs.max(20),
        started.elapsed().as_secs_f64()
    );
    println!("every unit with memory, fds, tasks, cpu, swap and restarts keys, against none");
    println!("| N | unitwatchd ms/sweep, no keys | all keys | its cost per unit per sweep | systemd (PID 1) ms/sweep, no keys | all keys | one read of all units | idle CPU at 10 s, all keys (<= 1 %) | RSS, all keys (<= 16 MB at 2,000) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let per_unit_us = (r.keys.0 - r.plain.0) / r.n as f64 * 1000.0;
        let rss_mb = r.rss_kb as f64 / 1024.0;
        println!(
            "| {} | {:.2} | {:.2} | {:.1} us | {:.1} | {:.1} | {} | {:.2} %: {} | {:.1} MB{} |",
            r.n,
            r.plain.0,
            r.keys.0,
            per_unit_us,
            r.plain.1,
            r.keys.1,
            r.read_ms
                .map(|m| format!("{m:.0} ms"))
                .unwrap_or_else(|| "-".into()),
            r.idle_10s,
            verdict(r.idle_10s <= 1.0),
            rss_mb,
            if r.n >= 2000 {
                format!(": {}", verdict(rss_mb <= 16.0))
            } else {
                String::new()
            },
        );
    }
    println!("\ndetection of a watched unit killed {kills} times while the reads run (1 s sweeps): median / max, ms");
    println!("| N | no keys | all keys | median within 1 ms of no keys |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.2} / {:.2} | {:.2} / {:.2} | {} |",
            r.n,
            r.detect_plain.0,
            r.detect_plain.1,
            r.detect_keys.0,
            r.detect_keys.1,
            verdict(r.detect_keys.0 <= r.detect_plain.0 + 1.0)
        );
    }
}

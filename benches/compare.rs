//! unitwatch at N = 50, 500 and 2,000 watched units, in one throwaway
//! systemd 252 (tests/harness), with the release binaries as shipped:
//!
//! - detection: systemd's `Main process exited` journal line to
//!   unitwatch's `unit-failed`;
//! - restart: the exit line to the unit active again, `initial = 100ms`;
//! - unitwatchd's idle CPU and RSS at `interval = "1s"` and `"10s"`;
//! - one `/metrics` scrape from unitwatch-http, and its RSS.
//!
//! Each figure is printed beside its target (issue 14) and marked met or
//! NOT MET. `scripts/compare` runs it (as root); `CI=true` runs fewer
//! kills and shorter idle windows. Asserts nothing.

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "supervisor/measure.rs"]
mod measure;

use std::time::{Duration, Instant};

use harness::{verdict, Sandbox, Summary};
use measure::{cpu_ticks, kill_once, kill_restarted_by_systemd, status_kb, Samples};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Units that systemd restarts itself (`Restart=always`, 100 ms), not
/// watched: the peer of unitwatch's restart on the same run.
const SYSR: usize = 5;

fn unit(i: usize) -> String {
    format!("bench@{i}.service")
}

/// The daemon's config for `n` units, sweeping every `interval`.
fn config(n: usize, interval: &str) -> String {
    let mut c = format!(
        "[daemon]\ninterval = \"{interval}\"\n\
         [backoff]\ninitial = \"100ms\"\nfactor = 1.0\nmax = \"100ms\"\nmax_restarts_per_hour = 100000\n\
         [http]\nlisten = \"127.0.0.1:8080\"\n"
    );
    for i in 1..=n {
        c += &format!("[[unit]]\nname = \"{}\"\n", unit(i));
    }
    c
}

/// Writes the config and restarts the daemon on it; waits until its
/// snapshot shows all `n` units.
fn run_unitwatch(sb: &Sandbox, n: usize, interval: &str) {
    sb.write("/etc/unitwatch/unitwatch.toml", &config(n, interval));
    sb.ok("systemctl restart unitwatch");
    sb.wait_for(
        &format!("the snapshot of {n} units"),
        Duration::from_secs(30),
        || {
            let s = sb.read("/run/unitwatch/status.json")?;
            let v: serde_json::Value = serde_json::from_str(&s).ok()?;
            (v["units"].as_object()?.len() == n).then_some(())
        },
    );
}

/// unitwatchd's CPU (% of one core) and RSS (KiB) over `secs` of idle.
fn idle(sb: &Sandbox, secs: u64) -> (f64, u64) {
    let pid = sb.prop("unitwatch", "MainPID");
    // Past the first sweeps.
    std::thread::sleep(Duration::from_secs(2));
    // The cgroup's CPU time in ns (systemd's CPUAccounting), which a clock
    // tick (10 ms) cannot resolve at these rates; ticks if it is off.
    let ns = || -> Option<u64> { sb.prop("unitwatch", "CPUUsageNSec").parse().ok() };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    let t0 = (ns(), cpu_ticks(sb, &pid), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t0.2.elapsed().as_secs_f64();
    let cpu_s = match (t0.0, ns()) {
        (Some(a), Some(b)) if b > a && a != u64::MAX => (b - a) as f64 / 1e9,
        _ => (cpu_ticks(sb, &pid) - t0.1) as f64 / hz,
    };
    (cpu_s / wall * 100.0, status_kb(sb, &pid, "VmRSS:"))
}

/// One `/metrics` scrape from unitwatch-http, the fastest of ten (ms).
fn scrape_ms(sb: &Sandbox) -> f64 {
    let out = sb.ok(
        "for i in $(seq 10); do curl -s -o /dev/null -w '%{time_total}\\n' http://127.0.0.1:8080/metrics; done",
    );
    out.lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .fold(f64::INFINITY, f64::min)
        * 1000.0
}

struct Row {
    n: usize,
    detect: Summary,
    restart: Summary,
    /// exit -> `unit-restarted` minus the delay: unitwatch's part.
    ours: Summary,
    /// `unit-restarted` -> active: systemd's part.
    systemd: Summary,
    /// systemd's own `Restart=always RestartSec=100ms`: exit -> active.
    systemd_restart: Summary,
    idle_1s: (f64, u64),
    idle_10s: (f64, u64),
    scrape_ms: f64,
    http_rss_kb: u64,
}

fn measure(sb: &Sandbox, n: usize, kills: usize, idle_secs: u64) -> Row {
    run_unitwatch(sb, n, "1s");
    sb.ok("systemctl restart unitwatch-http");
    let mut s = Samples::default();
    for k in 0..kills {
        // Spread over the whole range, so the last units are killed too.
        let i = 1 + (k * n / kills.max(1) + k) % n;
        kill_once(sb, &unit(i), &mut s);
    }
    // systemd's own Restart= on the same run, beside the N watched units.
    let systemd_restart: Vec<f64> = (0..kills)
        .map(|k| kill_restarted_by_systemd(sb, &format!("sysr@{}.service", k % SYSR + 1)))
        .collect();
    let idle_1s = idle(sb, idle_secs);
    // The restart re-reads the config; /metrics follows the new snapshot.
    std::thread::sleep(Duration::from_secs(1));
    let scrape = scrape_ms(sb);
    let http_pid = sb.prop("unitwatch-http", "MainPID");
    let http_rss_kb = status_kb(sb, &http_pid, "VmRSS:");
    run_unitwatch(sb, n, "10s");
    let idle_10s = idle(sb, idle_secs.max(20));
    Row {
        n,
        detect: Summary::of(s.detect),
        restart: Summary::of(s.overhead.iter().map(|o| o + measure::DELAY_MS).collect()),
        ours: Summary::of(s.restart),
        systemd: Summary::of(s.systemd_start),
        systemd_restart: Summary::of(systemd_restart),
        idle_1s,
        idle_10s,
        scrape_ms: scrape,
        http_rss_kb,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let sizes: Vec<usize> = std::env::var("UNITWATCH_COMPARE_SIZES")
        .unwrap_or_else(|_| "50,500,2000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let kills = env_num("UNITWATCH_COMPARE_KILLS", if ci { 10 } else { 20 }) as usize;
    let idle_secs = env_num("UNITWATCH_COMPARE_IDLE_SECS", if ci { 10 } else { 30 });
    let max = sizes.iter().copied().max().unwrap_or(0);
    let started = Instant::now();
    let sb = Sandbox::boot("compare");
    sb.unit(
        "bench@.service",
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\n",
    );
    // Started in batches: one systemctl call per 500 units.
    let names: Vec<String> = (1..=max).map(unit).collect();
    for chunk in names.chunks(500) {
        sb.ok(&format!("systemctl start {}", chunk.join(" ")));
    }
    sb.unit(
        "sysr@.service",
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\nRestart=always\nRestartSec=100ms\n",
    );
    let sysr: Vec<String> = (1..=SYSR).map(|i| format!("sysr@{i}.service")).collect();
    sb.ok(&format!("systemctl start {}", sysr.join(" ")));
    sb.start_unitwatch(&config(sizes[0], "1s"), "");
    sb.install_http();
    sb.ok("systemctl start unitwatch-http");
    let rows: Vec<Row> = sizes
        .iter()
        .map(|&n| measure(&sb, n, kills, idle_secs))
        .collect();
    println!(
        "\n== unitwatch at N watched units ({kills} kills each, idle over {idle_secs} s at 1s and {} s at 10s; one boot, {:.0} s in all)",
        idle_secs.max(20),
        started.elapsed().as_secs_f64()
    );
    println!("| N | detection median / p99 / max (target ≤ 2 / ≤ 10 ms) | exit → active, median / max (target ≤ 120 ms and faster than systemd's Restart=) | idle CPU at 1s (≤ 2 %) | idle CPU at 10s (≤ 0.5 % at 2,000) | RSS (≤ 16 MB at 2,000) | one /metrics scrape (≤ 5 ms at 2,000) | unitwatch-http RSS (≤ 24 MB at 2,000) |");
    println!("|---|---|---|---|---|---|---|---|");
    let faster = |r: &Row| r.restart.median < r.systemd_restart.median;
    for r in &rows {
        let big = r.n >= 2000;
        let rss_mb = r.idle_1s.1.max(r.idle_10s.1) as f64 / 1024.0;
        let http_mb = r.http_rss_kb as f64 / 1024.0;
        println!(
            "| {} | {:.2} / {} / {:.2} ms: {} | {:.1} / {:.1} ms: {} | {:.2} %: {} | {:.2} %: {} | {:.1} MB: {} | {:.2} ms: {} | {:.1} MB: {} |",
            r.n,
            r.detect.median,
            r.detect
                .p99
                .map_or("- (too few kills)".to_string(), |p| format!("{p:.2}")),
            r.detect.max,
            // Below P99_SAMPLES kills the max stands in for the p99: a max
            // within the target holds the p99 to it too.
            verdict(r.detect.median <= 2.0 && r.detect.p99.unwrap_or(r.detect.max) <= 10.0),
            r.restart.median,
            r.restart.max,
            verdict(r.restart.median <= 120.0 && faster(r)),
            r.idle_1s.0,
            verdict(r.idle_1s.0 <= 2.0),
            r.idle_10s.0,
            if big { verdict(r.idle_10s.0 <= 0.5) } else { "-" },
            rss_mb,
            if big { verdict(rss_mb <= 16.0) } else { "-" },
            r.scrape_ms,
            if big { verdict(r.scrape_ms <= 5.0) } else { "-" },
            http_mb,
            if big { verdict(http_mb <= 24.0) } else { "-" },
        );
    }
    println!("\nsystemd's own Restart=always RestartSec=100ms on the same run, exit -> active, median / max (unitwatch's must be faster):");
    for r in &rows {
        println!(
            "N = {}: {:.1} / {:.1} ms (unitwatch {:.1} ms: {})",
            r.n,
            r.systemd_restart.median,
            r.systemd_restart.max,
            r.restart.median,
            verdict(faster(r))
        );
    }
    println!("\nof the restart, median / max: unitwatch's part (exit -> unit-restarted, minus the 100 ms delay) and systemd's (unit-restarted -> active)");
    for r in &rows {
        println!(
            "N = {}: unitwatch {:.2} / {:.2} ms, systemd {:.2} / {:.2} ms",
            r.n, r.ours.median, r.ours.max, r.systemd.median, r.systemd.max
        );
    }
}

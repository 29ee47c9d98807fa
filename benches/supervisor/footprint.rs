//! The footprint runs: RSS and CPU of unitwatchd over UNITWATCH_BENCH_SECS
//! with the export off, on, its collector down, two dead alert channels,
//! and 200 checks (beside the floor of those checks' connections, made by
//! the bare client in `bare.rs`).

use std::time::Duration;

use super::*;
use crate::measure::{cpu_split, cpu_ticks, status_kb};

/// Every footprint run and the verdicts on the export's and the alert
/// channels' memory.
pub fn all() {
    let (rss_off, _) = footprint(Export::Off);
    let (rss_on, _) = footprint(Export::On);
    let (rss_down, down) = footprint(Export::CollectorDown);
    let (rss_dead, dead) = footprint(Export::DeadAlerts);
    footprint(Export::Checks);
    println!("\n== the OTLP export's and the dead alert channels' memory");
    let extra_mb = |kb: u64| (kb as f64 - rss_off as f64) / 1024.0;
    println!(
        "RSS +{:.2} MB with the export on; target < 1 MB: {}",
        extra_mb(rss_on),
        verdict(extra_mb(rss_on) < 1.0)
    );
    // Bounded: the queue overflowed (events were dropped) and never held
    // more than its size.
    let t = &down["telemetry"];
    let (queued, dropped) = (t["queued_events"].as_u64(), t["dropped_total"].as_u64());
    println!(
        "RSS +{:.2} MB with the collector down for the whole run, {} events queued, {} dropped; \
         target: bounded (at most queue_size = {DOWN_QUEUE} held, the rest dropped and counted): {}",
        extra_mb(rss_down),
        t["queued_events"],
        t["dropped_total"],
        bound_verdict(queued, dropped, DOWN_QUEUE)
    );
    let channels = dead["alerts"].as_array().cloned().unwrap_or_default();
    let verdicts: Vec<&str> = channels
        .iter()
        .map(|c| bound_verdict(c["queued"].as_u64(), c["dropped_total"].as_u64(), 100))
        .collect();
    let worst = if channels.len() != 2 || verdicts.contains(&"NOT MET") {
        "NOT MET"
    } else {
        verdicts
            .iter()
            .copied()
            .find(|v| *v != "met")
            .unwrap_or("met")
    };
    println!(
        "RSS +{:.2} MB with two channels that never answer for the whole run; \
         target: bounded (each queue at most queue_size = 100, the rest dropped and counted): {worst}",
        extra_mb(rss_dead),
    );
}

/// Starts the bare client for `secs` in the sandbox's network namespace,
/// against the check server.
fn start_bare(sb: &Sandbox, secs: u64) -> Option<std::process::Child> {
    let exe = std::env::current_exe().ok()?;
    std::process::Command::new("nsenter")
        .args(["-t", &sb.pid1.to_string(), "-n", "--"])
        .arg(exe)
        .args([
            "--bare-probes",
            &CHECK_SERVER.to_string(),
            &secs.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()
}

/// The bare client's (user, kernel) ticks and failed runs.
fn wait_bare(child: Option<std::process::Child>) -> Option<(u64, u64, u64)> {
    let out = child?.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match f[..] {
        [u, k, failed] if out.status.success() => Some((u, k, failed)),
        _ => {
            eprintln!(
                "the bare client failed ({}): {text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
    }
}

/// How the export is set up for a footprint run.
#[derive(Clone, Copy, PartialEq)]
pub enum Export {
    Off,
    /// To a real collector.
    On,
    /// To a port nobody listens on: every export fails, events queue.
    CollectorDown,
    /// No OTLP; two alert channels that never answer, a unit killed every
    /// second.
    DeadAlerts,
    /// No OTLP; 200 checks (100 tcp, 100 http) at interval = 1s.
    Checks,
}

/// A queue's bound, judged: it held at most `size`, and what did not fit
/// was dropped and counted. A run too short to fill it cannot tell.
fn bound_verdict(queued: Option<u64>, dropped: Option<u64>, size: u64) -> &'static str {
    match (queued, dropped) {
        (Some(q), Some(d)) if q <= size && d > 0 => "met",
        (Some(q), Some(0)) if q < size => {
            "not judged (the queue never filled: run longer, UNITWATCH_BENCH_SECS)"
        }
        _ => "NOT MET",
    }
}

/// The OTLP event queue of the collector-down run.
const DOWN_QUEUE: u64 = 100;

/// RSS and CPU of the daemon over UNITWATCH_BENCH_SECS (default 60 s).
/// Returns RSS in kB and the last snapshot.
pub fn footprint(export: Export) -> (u64, serde_json::Value) {
    let sb = boot_with_units("bench-footprint");
    let secs = env_num("UNITWATCH_BENCH_SECS", 60);
    let telemetry = match export {
        Export::Off => String::new(),
        Export::On => {
            sb.start_rotel();
            TELEMETRY.to_string()
        }
        // A queue small enough that a minute of events overflows it, so the
        // bound is exercised (the default, 1024, would hold them all).
        Export::CollectorDown => {
            format!("{TELEMETRY}endpoint = \"http://127.0.0.1:9\"\nqueue_size = {DOWN_QUEUE}\n")
        }
        Export::DeadAlerts => {
            sb.start_dead_listener(8099);
            DEAD_ALERTS.to_string()
        }
        Export::Checks => {
            sb.start_check_server(CHECK_SERVER);
            checks_config(0)
        }
    };
    sb.start_unitwatch(&units_config(&telemetry), "");
    let pid = sb.prop("unitwatch", "MainPID");
    // Let the first sweeps settle before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let ticks0 = cpu_ticks(&sb, &pid);
    let split0 = cpu_split(&sb, &pid);
    let ns0: u64 = sb.prop("unitwatch", "CPUUsageNSec").parse().unwrap_or(0);
    // The floor over the same seconds as unitwatch, so both see the same
    // machine (its noise drifts by more than the margin between two runs a
    // few minutes apart); they share the server, whose CPU neither counts.
    let floor = (export == Export::Checks).then(|| start_bare(&sb, secs));
    if matches!(export, Export::CollectorDown | Export::DeadAlerts) {
        // Events while the collector is away: a unit killed every second
        // (failed, restart scheduled, restarted, recovered ...).
        let end = std::time::Instant::now() + Duration::from_secs(secs);
        let mut i = 0;
        while std::time::Instant::now() < end {
            sb.kill_main(&format!("bench@{}.service", i % UNITS + 1));
            i += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
    } else {
        std::thread::sleep(Duration::from_secs(secs));
    }
    let floor = floor.map(wait_bare);
    let ticks1 = cpu_ticks(&sb, &pid);
    let split1 = cpu_split(&sb, &pid);
    let ns1: u64 = sb.prop("unitwatch", "CPUUsageNSec").parse().unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    let cpu_ms = if ns1 > ns0 {
        (ns1 - ns0) as f64 / 1e6
    } else {
        (ticks1 - ticks0) as f64 * 1000.0 / hz
    };
    let rss = status_kb(&sb, &pid, "VmRSS:");
    let hwm = status_kb(&sb, &pid, "VmHWM:");
    let snap = sb.status_json();
    let sweeps = snap["checks"].as_array().unwrap().len();
    let what = match export {
        Export::Off => "OTLP export off",
        Export::On => "OTLP export on, every 10 s",
        Export::CollectorDown => "OTLP export on, collector down, a unit killed every second",
        Export::DeadAlerts => "two alert channels that never answer, a unit killed every second",
        Export::Checks => "200 checks (100 tcp, 100 http, loopback) at interval = 1s",
    };
    println!(
        "\n== footprint ({UNITS} units, interval = 1s, {secs} s, {sweeps} checks per sweep, {what})"
    );
    println!(
        "RSS {:.1} MB (peak {:.1} MB); CPU {cpu_ms:.0} ms in {secs} s = {:.3} % of a core",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        cpu_ms / (secs as f64 * 1000.0) * 100.0
    );
    if export == Export::Off {
        println!(
            "   target: RSS < 8 MB and CPU < 0.15 % of a core: {}",
            verdict(rss < 8 * 1024 && cpu_ms / (secs as f64 * 1000.0) * 100.0 < 0.15)
        );
        println!(
            "   for scale, remembered from a run on 2026-12-01 (not measured in this one): monit 5.33 on the same 50 units, 8.4 MB and 0.5 % of a core"
        );
    } else if export == Export::Checks {
        let cpu = cpu_ms / (secs as f64 * 1000.0) * 100.0;
        let pct = |ticks: u64| ticks as f64 * 1000.0 / hz / (secs as f64 * 1000.0) * 100.0;
        let (pass, warn, fail) = count_statuses(&snap);
        let all_pass = pass == TCP_CHECKS + HTTP_CHECKS;
        println!("   checks: {pass} pass, {warn} warn, {fail} fail");
        // The kernel's share: every run is a real connection, and on
        // loopback both of its ends (the server's too) are handled in the
        // connecting process's softirq.
        let (u, k) = (split1.0 - split0.0, split1.1 - split0.1);
        println!(
            "   of the CPU: user {:.2} %, kernel {:.2} % (the TCP handshakes, both ends on loopback)",
            pct(u),
            pct(k)
        );
        println!(
            "   target: RSS <= 12 MB: {}",
            verdict(rss <= 12 * 1024 && all_pass)
        );
        let floor = floor.flatten();
        // The 2 % counts the kernel's work for the connections
        // too: said as it is, with the floor beside it when the floor
        // alone is over it.
        let floor_pct = floor.map(|(fu, fk, _)| pct(fu + fk));
        println!(
            "   target: CPU <= 2 % of a core, all of it: {}{}",
            verdict(cpu <= 2.0 && all_pass),
            match floor_pct {
                Some(b) if b > 2.0 => format!(
                    " (the floor alone, below, is {b:.2} %: no prober can meet it on this machine)"
                ),
                _ => String::new(),
            }
        );
        match floor {
            Some((fu, fk, failed)) => {
                let bare = pct(fu + fk);
                println!(
                    "   the floor: the same connections at the same times from a bare client \
                     (benches/supervisor/bare.rs), over the same {secs} s: {bare:.2} % of a core \
                     (user {:.2} %, kernel {:.2} %), {failed} runs failed",
                    pct(fu),
                    pct(fk)
                );
                let above = cpu - bare;
                println!(
                    "   unitwatch's own CPU, above the floor: {above:.2} % of a core; \
                     target <= 2 %: {}",
                    verdict(above <= 2.0 && all_pass && failed == 0)
                );
            }
            None => println!("   the floor: NOT MEASURED (the bare client failed)"),
        }
    } else if export == Export::DeadAlerts {
        print_alerts(&snap["alerts"]);
    } else {
        let t = &snap["telemetry"];
        println!(
            "   OTLP: {} exports accepted, {} failed, {} events queued, {} dropped",
            t["exports_total"], t["export_failures_total"], t["queued_events"], t["dropped_total"]
        );
    }
    (rss, snap)
}

//! The supervisor's figures, measured in a real systemd (tests/harness):
//!
//! - detection latency: `systemctl kill` to the `unit-failed` journal entry;
//! - restart overhead: kill to active again, minus the configured delay;
//! - footprint: RSS and CPU of unitwatchd watching 50 units at interval 1s.
//!
//! Run with `scripts/bench` (as root). Prints figures; asserts nothing, so a
//! slow machine shows up as numbers rather than a flaky test.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, SystemTime};

use harness::{field, verdict, Sandbox};

const UNITS: usize = 50;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summarize(name: &str, mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (med, p99, max) = (percentile(&v, 0.5), percentile(&v, 0.99), v[v.len() - 1]);
    println!(
        "{name:<44} n={:<3} median {med:>7.2} ms   p99 {p99:>7.2} ms   max {max:>7.2} ms",
        v.len()
    );
    (med, p99, max)
}

fn units_config(extra: &str) -> String {
    let mut c = format!("[daemon]\ninterval = \"1s\"\n{extra}\n");
    for i in 1..=UNITS {
        c += &format!("[[unit]]\nname = \"bench@{i}.service\"\n");
    }
    c
}

fn boot_with_units(name: &str) -> Sandbox {
    let sb = Sandbox::boot(name);
    sb.unit(
        "bench@.service",
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\n",
    );
    let names: Vec<String> = (1..=UNITS).map(|i| format!("bench@{i}.service")).collect();
    sb.ok(&format!("systemctl start {}", names.join(" ")));
    sb
}

fn realtime_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The `[telemetry]` of the runs with export on: a real collector (rotel,
/// in the sandbox) every 10 s, six times the default rate.
const TELEMETRY: &str = "[telemetry]\ninterval = \"10s\"\n";

/// Alert channels that never answer: a listener in the sandbox that takes
/// connections and never reads them, so each delivery waits out its
/// timeout and its retries, and the queues fill. `cooldown = "0s"`: every
/// event is an alert.
const DEAD_ALERTS: &str = "[[alert]]\ntype = \"discord\"\nurl = \"http://127.0.0.1:8099/api/webhooks/1/x\"\ncooldown = \"0s\"\n\
[[alert]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:8099/hook\"\ncooldown = \"0s\"\n";

fn start_dead_receiver(sb: &Sandbox) {
    sb.ok("systemd-run --unit=deadhook /usr/bin/python3 -c \
           'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\",8099)); s.listen(1024); time.sleep(86400)'");
    sb.wait_for("the dead receiver", Duration::from_secs(10), || {
        sb.sh("ss -ltn | grep -q 127.0.0.1:8099")
            .status
            .success()
            .then_some(())
    });
}

/// What runs beside the supervisor in a detection run.
#[derive(Clone, Copy, PartialEq)]
enum Beside {
    Nothing,
    /// The OTLP export to a real collector.
    Otlp,
    /// Two alert channels that never answer.
    DeadAlerts,
}

/// Detection latency, and where the restart overhead goes, with `beside`
/// running meanwhile. Returns the detection median and p99.
fn latency_and_overhead(beside: Beside) -> (f64, f64) {
    let sb = boot_with_units("bench-latency");
    let delay_ms = 100.0;
    let extra = match beside {
        Beside::Nothing => "",
        Beside::Otlp => {
            sb.start_rotel();
            TELEMETRY
        }
        Beside::DeadAlerts => {
            start_dead_receiver(&sb);
            DEAD_ALERTS
        }
    };
    sb.start_unitwatch(
        &units_config(&format!(
            "[backoff]\ninitial = \"100ms\"\nfactor = 1.0\nmax = \"100ms\"\nmax_restarts_per_hour = 1000\n{extra}"
        )),
        "",
    );
    let kills = 50;
    let mut detect = Vec::new();
    let mut overhead = Vec::new();
    // Where the overhead goes: the kill command itself (nsenter + systemctl
    // until systemd records the exit); unitwatch (the exit to its
    // unit-restarted entry, minus the delay: RestartUnit answered, then the
    // state written); systemd (that entry to active). systemd already starts
    // the unit while unitwatch writes its state, so unitwatch's part is an
    // upper bound and systemd's a lower one; their sum is exact.
    let (mut cmd_share, mut uw_share, mut sd_share) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..kills {
        let unit = format!("bench@{}.service", i % UNITS + 1);
        let before = sb.journal("UNITWATCH_EVENT=unit-failed").len();
        let t_real = realtime_us();
        let t_mono = harness::monotonic_us();
        sb.kill_main(&unit);
        let entry = sb.wait_for("unit-failed entry", Duration::from_secs(5), || {
            let j = sb.journal("UNITWATCH_EVENT=unit-failed");
            (j.len() > before).then(|| j[before].clone())
        });
        assert_eq!(field(&entry, "UNITWATCH_UNIT"), unit);
        let logged: u64 = field(&entry, "__REALTIME_TIMESTAMP").parse().unwrap();
        detect.push((logged.saturating_sub(t_real)) as f64 / 1000.0);
        sb.wait_for("restart", Duration::from_secs(5), || {
            (sb.prop(&unit, "ActiveState") == "active"
                && sb
                    .prop(&unit, "ActiveEnterTimestampMonotonic")
                    .parse::<u64>()
                    .unwrap()
                    > t_mono)
                .then_some(())
        });
        let mono = |p: &str| sb.prop(&unit, p).parse::<u64>().unwrap();
        let active = mono("ActiveEnterTimestampMonotonic");
        // (InactiveEnterTimestamp is cleared by the reset-failed before the
        // restart: systemd's own log line of the exit is used instead.)
        let exited = exit_logged_at(&sb, &unit, t_mono);
        overhead.push((active - t_mono) as f64 / 1000.0 - delay_ms);
        let restarted = sb.wait_for("unit-restarted entry", Duration::from_secs(5), || {
            sb.journal(&format!(
                "UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT={unit}"
            ))
            .pop()
        });
        let issued: u64 = field(&restarted, "__MONOTONIC_TIMESTAMP").parse().unwrap();
        cmd_share.push(exited.saturating_sub(t_mono) as f64 / 1000.0);
        uw_share.push(issued.saturating_sub(exited) as f64 / 1000.0 - delay_ms);
        sd_share.push(active.saturating_sub(issued) as f64 / 1000.0);
    }
    println!(
        "\n== detection and restart ({UNITS} units watched, {kills} kills, initial = 100ms{})",
        match beside {
            Beside::Nothing => "",
            Beside::Otlp => ", OTLP export on",
            Beside::DeadAlerts => ", two alert channels that never answer",
        }
    );
    let (det_med, det_p99, _) = summarize("detection: kill -> unit-failed journal entry", detect);
    println!(
        "   targets: median <= 10 ms, p99 <= 50 ms: {}",
        verdict(det_med <= 10.0 && det_p99 <= 50.0)
    );
    let (med, _, _) = summarize("restart overhead: kill -> active, minus 100ms", overhead);
    println!("   target: median <= 20 ms: {}", verdict(med <= 20.0));
    println!("   of which:");
    summarize(
        "     the kill command, until systemd sees the exit",
        cmd_share,
    );
    summarize(
        "     unitwatch: exit -> restart logged, minus 100ms",
        uw_share,
    );
    summarize("     systemd: restart logged -> active", sd_share);
    println!(
        "   for scale: monit at its 1 s cycle brings a killed service back after ~530 ms median"
    );
    if beside == Beside::Otlp {
        let t = &sb.status_json()["telemetry"];
        println!(
            "   OTLP meanwhile: {} exports accepted, {} failed",
            t["exports_total"], t["export_failures_total"]
        );
    }
    if beside == Beside::DeadAlerts {
        print_alerts(&sb.status_json());
    }
    (det_med, det_p99)
}

fn print_alerts(snap: &serde_json::Value) {
    for c in snap["alerts"].as_array().into_iter().flatten() {
        println!(
            "   alert channel {}: {} sent, {} given up, {} queued, {} dropped",
            c["name"], c["sent_total"], c["failed_total"], c["queued"], c["dropped_total"]
        );
    }
}

/// CLOCK_MONOTONIC (µs) at which journald got systemd's "Main process
/// exited" line for `unit`, the first one after `after`.
fn exit_logged_at(sb: &Sandbox, unit: &str, after: u64) -> u64 {
    sb.sh_out(&format!("journalctl -u {unit} -o json --no-pager _PID=1"))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| field(e, "MESSAGE").contains("Main process exited"))
        .filter_map(|e| field(&e, "__MONOTONIC_TIMESTAMP").parse::<u64>().ok())
        .find(|t| *t > after)
        .expect("systemd logged the exit")
}

fn cpu_ticks(sb: &Sandbox, pid: &str) -> u64 {
    let stat = sb.read(&format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn status_kb(sb: &Sandbox, pid: &str, key: &str) -> u64 {
    sb.read(&format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// How the export is set up for a footprint run.
#[derive(Clone, Copy, PartialEq)]
enum Export {
    Off,
    /// To a real collector.
    On,
    /// To a port nobody listens on: every export fails, events queue.
    CollectorDown,
    /// No OTLP; two alert channels that never answer, a unit killed every
    /// second.
    DeadAlerts,
}

/// RSS and CPU of the daemon over UNITWATCH_BENCH_SECS (default 60 s).
/// Returns RSS in kB.
fn footprint(export: Export) -> u64 {
    let sb = boot_with_units("bench-footprint");
    let telemetry = match export {
        Export::Off => String::new(),
        Export::On => {
            sb.start_rotel();
            TELEMETRY.to_string()
        }
        Export::CollectorDown => format!("{TELEMETRY}endpoint = \"http://127.0.0.1:9\"\n"),
        Export::DeadAlerts => {
            start_dead_receiver(&sb);
            DEAD_ALERTS.to_string()
        }
    };
    sb.start_unitwatch(&units_config(&telemetry), "");
    let pid = sb.prop("unitwatch", "MainPID");
    let secs = std::env::var("UNITWATCH_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60u64);
    // Let the first sweeps settle before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let ticks0 = cpu_ticks(&sb, &pid);
    let ns0: u64 = sb.prop("unitwatch", "CPUUsageNSec").parse().unwrap_or(0);
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
    let ticks1 = cpu_ticks(&sb, &pid);
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
            "   target: below monit on the same job (about 8 MB RSS, 0.15 % of a core): {}",
            verdict(rss < 8 * 1024 && cpu_ms / (secs as f64 * 1000.0) * 100.0 < 0.15)
        );
    } else if export == Export::DeadAlerts {
        print_alerts(&snap);
    } else {
        let t = &snap["telemetry"];
        println!(
            "   OTLP: {} exports accepted, {} failed, {} events queued, {} dropped",
            t["exports_total"], t["export_failures_total"], t["queued_events"], t["dropped_total"]
        );
    }
    rss
}

fn main() {
    // `cargo test --benches` runs this binary too: measure only when asked.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (off_med, _) = latency_and_overhead(Beside::Nothing);
    let (on_med, _) = latency_and_overhead(Beside::Otlp);
    let (dead_med, _) = latency_and_overhead(Beside::DeadAlerts);
    let rss_off = footprint(Export::Off);
    let rss_on = footprint(Export::On);
    let rss_down = footprint(Export::CollectorDown);
    let rss_dead = footprint(Export::DeadAlerts);
    println!("\n== the OTLP export's cost");
    let extra_mb = |kb: u64| (kb as f64 - rss_off as f64) / 1024.0;
    println!(
        "RSS +{:.2} MB with the export on; target < 1 MB: {}",
        extra_mb(rss_on),
        verdict(extra_mb(rss_on) < 1.0)
    );
    println!(
        "RSS +{:.2} MB with the collector down for the whole run (events queued, at most queue_size = 1024)",
        extra_mb(rss_down)
    );
    println!(
        "detection median {off_med:.2} ms off, {on_med:.2} ms on; target: no measurable change (within 1 ms): {}",
        verdict(on_med <= off_med + 1.0)
    );
    println!("\n== dead alert channels");
    println!(
        "RSS +{:.2} MB with two channels that never answer for the whole run (bounded by queue_size = 100 each)",
        extra_mb(rss_dead)
    );
    println!(
        "detection median {off_med:.2} ms without, {dead_med:.2} ms with them; target: a dead channel blocks nothing (within 1 ms): {}",
        verdict(dead_med <= off_med + 1.0)
    );
}

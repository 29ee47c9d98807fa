//! The supervisor's figures, measured in a real systemd (tests/harness):
//!
//! - detection latency: systemd's own `Main process exited` journal line
//!   (PID 1) to unitwatch's `unit-failed` entry, so the harness's kill
//!   command is not counted (it is printed on its own line);
//! - what a sink that blocked would delay: the next event of the same
//!   reaction (`unit-failed` to `restart-scheduled`), the restart, and the
//!   watchdog (a 2 s `WatchdogSec=`, which a stalled loop would trip);
//! - restart overhead: the exit to active again, minus the configured delay;
//! - footprint: RSS and CPU of unitwatchd watching 50 units at interval 1s,
//!   and with 200 checks (100 tcp, 100 http) beside them.
//!
//! The runs with the OTLP export on, with two dead alert channels, with
//! 200 checks and with 50 of them hanging are
//! interleaved with runs with neither, in one boot (the same units, the
//! variant switched by reload, the order rotated each round), and each is
//! judged against the plain runs beside it: the noise between two boots is
//! larger than the 1 ms the targets allow.
//!
//! Run with `scripts/bench` (as root). Prints figures and verdicts; asserts
//! nothing, so a slow machine shows up as numbers rather than a flaky test.

#[path = "supervisor/bare.rs"]
mod bare;
#[path = "supervisor/footprint.rs"]
mod footprint;
#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "supervisor/measure.rs"]
mod measure;

use std::time::Duration;

use harness::{verdict, Sandbox, Summary};
use measure::{env_num, kill_once, Samples};

const UNITS: usize = 50;

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

/// The `[telemetry]` of the runs with export on: a real collector (rotel,
/// in the sandbox) every 10 s, six times the default rate.
const TELEMETRY: &str = "[telemetry]\ninterval = \"10s\"\n";

/// Alert channels that never answer: a listener in the sandbox that takes
/// connections and never reads them, so each delivery waits out its
/// timeout and its retries, and the queues fill. `cooldown = "0s"`: every
/// event is an alert.
const DEAD_ALERTS: &str = "[[alert]]\ntype = \"discord\"\nurl = \"http://127.0.0.1:8099/api/webhooks/1/x\"\ncooldown = \"0s\"\n\
[[alert]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:8099/hook\"\ncooldown = \"0s\"\n";

/// The port of the check server (tests/check_server.py) in the sandbox.
const CHECK_SERVER: u16 = 8600;

/// How many checks of each kind the checks runs add.
const TCP_CHECKS: usize = 100;
const HTTP_CHECKS: usize = 100;
const HANGING: usize = 50;

/// 100 tcp and 100 http checks at interval = 1s against the loopback check
/// server; `hanging` of the http ones against the listener that never
/// answers, so each of their runs lasts its whole timeout (500 ms, the
/// default for a 1 s interval).
fn checks_config(hanging: usize) -> String {
    let mut c = String::new();
    for i in 0..TCP_CHECKS {
        c += &format!(
            "[[check]]\ntype = \"tcp\"\nname = \"tcp{i}\"\naddress = \"127.0.0.1:{CHECK_SERVER}\"\ninterval = \"1s\"\n"
        );
    }
    for i in 0..HTTP_CHECKS {
        let url = if i < hanging {
            "http://127.0.0.1:8099/hang".to_string()
        } else {
            format!("http://127.0.0.1:{CHECK_SERVER}/ok")
        };
        c += &format!(
            "[[check]]\ntype = \"http\"\nname = \"http{i}\"\nurl = \"{url}\"\nbody_contains = \"ok\"\ninterval = \"1s\"\n"
        );
    }
    c
}

/// What runs beside the supervisor in a detection run.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Beside {
    Nothing,
    /// The OTLP export to a real collector.
    Otlp,
    /// Two alert channels that never answer.
    DeadAlerts,
    /// 200 checks (100 tcp, 100 http) at interval = 1s.
    Checks,
    /// The same, 50 of them hanging until their timeout at every run.
    HangingChecks,
}

const VARIANTS: [Beside; 5] = [
    Beside::Nothing,
    Beside::Otlp,
    Beside::DeadAlerts,
    Beside::Checks,
    Beside::HangingChecks,
];

impl Beside {
    fn config(self) -> String {
        let extra = match self {
            Beside::Nothing => String::new(),
            Beside::Otlp => TELEMETRY.to_string(),
            Beside::DeadAlerts => DEAD_ALERTS.to_string(),
            Beside::Checks => checks_config(0),
            Beside::HangingChecks => checks_config(HANGING),
        };
        units_config(&format!(
            "[backoff]\ninitial = \"100ms\"\nfactor = 1.0\nmax = \"100ms\"\nmax_restarts_per_hour = 100000\n{extra}"
        ))
    }

    fn label(self) -> &'static str {
        match self {
            Beside::Nothing => "nothing beside",
            Beside::Otlp => "OTLP export on, to a real collector every 10 s",
            Beside::DeadAlerts => "two alert channels that never answer, every event an alert",
            Beside::Checks => "200 checks (100 tcp, 100 http, loopback) at interval = 1s",
            Beside::HangingChecks => {
                "the 200 checks, 50 of them hanging until their timeout at every run"
            }
        }
    }
}

/// Switches the running daemon to `v` by reload and waits for it.
fn switch_to(sb: &Sandbox, v: Beside) {
    let before = sb.journal("UNITWATCH_EVENT=config-reloaded").len();
    sb.write("/etc/unitwatch/unitwatch.toml", &v.config());
    sb.ok("systemctl reload unitwatch");
    sb.wait_for("the reload", Duration::from_secs(10), || {
        (sb.journal("UNITWATCH_EVENT=config-reloaded").len() > before).then_some(())
    });
    // Let the first sweep after the reload, and the new sinks' start, pass.
    std::thread::sleep(Duration::from_millis(1500));
}

struct Figures {
    detect: Summary,
    next_event: Summary,
    restart: Summary,
    overhead: Summary,
}

/// Detection and restart with each variant, interleaved in one boot.
fn latency_interleaved() {
    let sb = boot_with_units("bench-latency");
    sb.start_rotel();
    sb.start_dead_listener(8099);
    sb.start_check_server(CHECK_SERVER);
    // A stalled loop stops the pings; 2 s makes a stall of a second or two
    // visible as a watchdog kill (the shipped unit has 30 s).
    sb.start_unitwatch(&Beside::Nothing.config(), "WatchdogSec=2s");
    let per_variant = env_num("UNITWATCH_BENCH_KILLS", 200) as usize;
    let per_round = 25.min(per_variant);
    let rounds = per_variant.div_ceil(per_round);
    let mut samples: Vec<Samples> = VARIANTS.iter().map(|_| Samples::default()).collect();
    let mut kill = 0;
    let mut telemetry = serde_json::Value::Null;
    let mut alerts = serde_json::Value::Null;
    let mut check_counts = vec![(0, 0, 0); VARIANTS.len()];
    for r in 0..rounds {
        for j in 0..VARIANTS.len() {
            let vi = (r + j) % VARIANTS.len();
            switch_to(&sb, VARIANTS[vi]);
            for _ in 0..per_round {
                kill_once(
                    &sb,
                    &format!("bench@{}.service", kill % UNITS + 1),
                    &mut samples[vi],
                );
                kill += 1;
            }
            let snap = sb.status_json();
            match VARIANTS[vi] {
                Beside::Otlp => telemetry = snap["telemetry"].clone(),
                Beside::DeadAlerts => alerts = snap["alerts"].clone(),
                Beside::Checks | Beside::HangingChecks => {
                    check_counts[vi] = count_statuses(&snap);
                }
                Beside::Nothing => {}
            }
        }
    }
    let watchdog_restarts = sb.prop("unitwatch", "NRestarts");
    let watchdog_log =
        sb.sh_out("journalctl -u unitwatch --no-pager -o cat | grep -c 'Watchdog timeout'");
    println!(
        "\n== detection and restart ({UNITS} units watched, initial = 100ms, {per_variant} kills per variant, \
         interleaved in one boot: {rounds} rounds of {per_round}, the variant switched by reload)"
    );
    let mut figures = Vec::new();
    for (v, s) in VARIANTS.iter().zip(samples) {
        println!("-- {}", v.label());
        let w = 58;
        let f = Figures {
            detect: Summary::of(s.detect),
            next_event: Summary::of(s.next_event),
            restart: Summary::of(s.restart),
            overhead: Summary::of(s.overhead),
        };
        f.detect
            .print("detection: systemd's exit line -> unit-failed", w);
        f.next_event
            .print("next event: unit-failed -> restart-scheduled", w);
        f.restart
            .print("restart: exit line -> unit-restarted, minus 100ms", w);
        f.overhead
            .print("restart overhead: exit line -> active, minus 100ms", w);
        Summary::of(s.systemd_start).print("   of which systemd: unit-restarted -> active", w);
        Summary::of(s.kill_cmd).print("(the harness's kill command -> systemd's exit line)", w);
        figures.push(f);
    }
    let base = &figures[0];
    println!("-- verdicts");
    let p99 = base.detect.p99.unwrap_or(base.detect.max);
    println!(
        "detection median {:.2} ms, p99 {p99:.2} ms; targets: median <= 10 ms, p99 <= 50 ms: {}",
        base.detect.median,
        verdict(base.detect.median <= 10.0 && p99 <= 50.0)
    );
    println!(
        "restart overhead median {:.2} ms; target: <= 20 ms: {}",
        base.overhead.median,
        verdict(base.overhead.median <= 20.0)
    );
    for (v, f) in VARIANTS.iter().zip(&figures).skip(1) {
        let within = |a: &Summary, b: &Summary| b.median <= a.median + 1.0;
        let what = match v {
            Beside::Otlp => "the OTLP export",
            Beside::DeadAlerts => "a dead alert channel",
            Beside::Checks => "200 checks at 1 s",
            _ => "50 of them hanging",
        };
        println!(
            "{what}: detection {:.2} vs {:.2} ms, next event {:.3} vs {:.3} ms, restart {:.2} vs {:.2} ms (medians, with vs without); \
             target: it delays none of them by more than 1 ms: {}",
            f.detect.median,
            base.detect.median,
            f.next_event.median,
            base.next_event.median,
            f.restart.median,
            base.restart.median,
            verdict(
                within(&base.detect, &f.detect)
                    && within(&base.next_event, &f.next_event)
                    && within(&base.restart, &f.restart)
            )
        );
        // The checks' own targets (issue 13): the probes may cost CPU, but
        // the loop never waits on one, so detection stays within 1 ms,
        // and checks that hang change nothing.
        if *v == Beside::Checks {
            println!(
                "   the checks' target: detection median within 1 ms of nothing beside ({:+.2} ms): {}",
                f.detect.median - base.detect.median,
                verdict(within(&base.detect, &f.detect))
            );
        }
        if *v == Beside::HangingChecks {
            let all = &figures[VARIANTS.iter().position(|b| *b == Beside::Checks).unwrap()];
            println!(
                "   the checks' target: detection unchanged by the hanging ones, {:.2} vs {:.2} ms with none hanging (within 1 ms): {}",
                f.detect.median,
                all.detect.median,
                verdict(within(&all.detect, &f.detect))
            );
        }
    }
    let wd_kills: u64 = watchdog_log.trim().parse().unwrap_or(0);
    println!(
        "watchdog (WatchdogSec=2s) over all {kill} kills: {wd_kills} timeouts, NRestarts={watchdog_restarts}; target: none: {}",
        verdict(wd_kills == 0 && watchdog_restarts == "0")
    );
    println!(
        "   OTLP during its runs: {} exports accepted, {} failed",
        telemetry["exports_total"], telemetry["export_failures_total"]
    );
    print_alerts(&alerts);
    for (v, (pass, warn, fail)) in VARIANTS.iter().zip(&check_counts) {
        if matches!(v, Beside::Checks | Beside::HangingChecks) {
            println!(
                "   checks at the end of the \"{}\" runs: {pass} pass, {warn} warn, {fail} fail",
                v.label()
            );
        }
    }
    println!(
        "   for scale, remembered from a run on 2026-12-01 (not measured in this one): monit 5.33 at its 1 s cycle brings \
         a killed service back after a median of 503 ms; systemd's own Restart=always RestartSec=100ms after 258-326 ms"
    );
}

/// (pass, warn, fail) among a snapshot's [[check]] results.
fn count_statuses(snap: &serde_json::Value) -> (usize, usize, usize) {
    let mut n = (0, 0, 0);
    for c in snap["checks"].as_array().into_iter().flatten() {
        if !matches!(c["measurement"].as_str(), Some("tcp" | "http")) {
            continue;
        }
        match c["status"].as_str() {
            Some("pass") => n.0 += 1,
            Some("warn") => n.1 += 1,
            _ => n.2 += 1,
        }
    }
    n
}

fn print_alerts(channels: &serde_json::Value) {
    for c in channels.as_array().into_iter().flatten() {
        println!(
            "   alert channel {}: {} sent, {} given up, {} queued, {} dropped",
            c["name"], c["sent_total"], c["failed_total"], c["queued"], c["dropped_total"]
        );
    }
}

fn main() {
    // `cargo test --benches` runs this binary too: measure only when asked.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bare-probes") {
        // The floor's client, run by the footprint in the sandbox's network.
        bare::main(&args[i + 1..]);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    // Only a part, for working on it: the checks' footprint, every
    // footprint (no detection runs), or the detection runs alone.
    match std::env::var("UNITWATCH_BENCH_ONLY").as_deref() {
        Ok("checks") => {
            footprint::footprint(footprint::Export::Checks);
            return;
        }
        Ok("footprint") => {
            footprint::all();
            return;
        }
        Ok("latency") => {
            latency_interleaved();
            return;
        }
        _ => {}
    }
    latency_interleaved();
    footprint::all();
}

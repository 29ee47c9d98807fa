//! The journal follower's cost (issue 15), in one throwaway systemd 252
//! (tests/harness) with unitwatchd as shipped (the `unitwatch` user, its
//! hardening, the generator's systemd-journal group) and the release
//! build, a journal check with `priority` and `match` on a unit that logs:
//!
//! - the follower's CPU at 1,000 lines a second (unitwatchd's own, whose
//!   follower thread parses and counts, and its journalctl child's), and
//!   at 10,000, as % of one core, beside unitwatchd with the unit quiet;
//! - unitwatchd's RSS quiet and under each load;
//! - detection (systemd's exit line to `unit-failed`) of another watched
//!   unit killed while the unit is quiet and while it logs 10,000 lines a
//!   second: the journal load must leave it unchanged;
//! - how far behind the counting is when the load stops.
//!
//! Each figure is printed beside its target and marked met or NOT MET.
//! `scripts/bench` runs it (as root); `CI=true` shortens the windows.
//! Asserts nothing.

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "supervisor/measure.rs"]
mod measure;

use std::time::{Duration, Instant};

use harness::{verdict, Sandbox, Summary};
use measure::{cpu_ticks, env_num, kill_once, status_kb, Samples};

const VICTIM: &str = "victim.service";

/// Logs $RATE lines a second, paced in 5 ms steps, until stopped.
const FLOOD: &str = r#"import os, sys, time
rate = int(os.environ["RATE"])
t0 = time.monotonic(); n = 0
while True:
    due = int((time.monotonic() - t0) * rate)
    if n < due:
        sys.stdout.write("".join("<6>quote %d bid 101.25 ask 101.26\n" % i for i in range(n, due)))
        sys.stdout.flush(); n = due
    time.sleep(0.005)
"#;

const CONFIG: &str = "[daemon]\ninterval = \"1s\"\n\
    [backoff]\ninitial = \"100ms\"\nfactor = 1.0\nmax = \"100ms\"\nmax_restarts_per_hour = 100000\n\
    [[unit]]\nname = \"victim.service\"\n\
    [[unit]]\nname = \"flood.service\"\nrestart = false\n\
    [[check]]\ntype = \"journal\"\nname = \"quotes\"\nunit = \"flood.service\"\n\
    priority = \"info\"\nmatch = \"bid [0-9.]+ ask\"\nwindow = \"5m\"\nwarn_count = 1000000000\n";

fn start_flood(sb: &Sandbox, rate: u32) {
    sb.write(
        "/etc/systemd/system/flood.service.d/rate.conf",
        &format!("[Service]\nEnvironment=RATE={rate}\n"),
    );
    sb.ok("systemctl daemon-reload && systemctl restart flood");
}

/// unitwatchd's and its journalctl's CPU (% of a core) over `secs`, and
/// unitwatchd's RSS (kB) at the end.
fn cost(sb: &Sandbox, secs: u64) -> (f64, f64, u64) {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    let pid = sb.prop("unitwatch", "MainPID");
    let child = sb
        .sh_out(&format!("pgrep -P {pid} journalctl"))
        .trim()
        .to_string();
    let child_ticks = || {
        if child.is_empty() {
            0
        } else {
            cpu_ticks(sb, &child)
        }
    };
    let t0 = (cpu_ticks(sb, &pid), child_ticks(), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t0.2.elapsed().as_secs_f64();
    let pct = |ticks: u64| ticks as f64 / hz / wall * 100.0;
    (
        pct(cpu_ticks(sb, &pid) - t0.0),
        pct(child_ticks() - t0.1),
        status_kb(sb, &pid, "VmRSS:"),
    )
}

fn detection(sb: &Sandbox, kills: usize) -> Summary {
    let mut s = Samples::default();
    for _ in 0..kills {
        kill_once(sb, VICTIM, &mut s);
        std::thread::sleep(Duration::from_millis(300));
    }
    Summary::of(s.detect)
}

fn count(sb: &Sandbox) -> u64 {
    harness::check_of(&sb.status_json(), "quotes:journal")["observed_value"]
        .as_u64()
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let secs = env_num("UNITWATCH_JOURNAL_SECS", if ci { 10 } else { 30 });
    let kills = env_num("UNITWATCH_JOURNAL_KILLS", if ci { 10 } else { 20 }) as usize;
    let started = Instant::now();
    let sb = Sandbox::boot("journal-bench");
    // journald's rate limit off, as for a unit this chatty (the unit's own
    // LogRateLimitIntervalSec= does not reach journald in the sandbox).
    sb.write(
        "/etc/systemd/journald.conf.d/50-no-rate-limit.conf",
        "[Journal]\nRateLimitIntervalSec=0\n",
    );
    sb.ok("systemctl restart systemd-journald");
    sb.write("/usr/local/bin/flood.py", FLOOD);
    sb.unit(
        "flood.service",
        "[Service]\nExecStart=/usr/bin/python3 -u /usr/local/bin/flood.py\n",
    );
    sb.unit(
        VICTIM,
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\n",
    );
    sb.ok("systemctl start victim");
    sb.start_unitwatch(CONFIG, "");
    sb.wait_check("quotes:journal", "pass", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));

    let quiet = cost(&sb, secs);
    let detect_quiet = detection(&sb, kills);

    start_flood(&sb, 1_000);
    std::thread::sleep(Duration::from_secs(2));
    let at_1k = cost(&sb, secs);

    start_flood(&sb, 10_000);
    std::thread::sleep(Duration::from_secs(2));
    let at_10k = cost(&sb, secs);
    let detect_10k = detection(&sb, kills);
    let rss_after = status_kb(&sb, &sb.prop("unitwatch", "MainPID"), "VmRSS:");
    sb.ok("systemctl stop flood");
    let stopped = Instant::now();
    let logged: u64 = sb
        .sh_out("journalctl -u flood --no-pager -o cat | grep -c ' bid ' || true")
        .trim()
        .parse()
        .unwrap_or(0);
    // The window (5m) holds every line of the run when it is this short.
    let caught_up = sb.wait_for("the count to catch up", Duration::from_secs(120), || {
        (count(&sb) >= logged).then(|| stopped.elapsed())
    });

    println!(
        "\njournal follower, one journal check (priority + match) on a unit logging N lines/s, {secs} s windows:"
    );
    println!(
        "{:<26} {:>12} {:>12} {:>10}",
        "load", "unitwatchd", "journalctl", "RSS"
    );
    for (name, (ours, child, rss)) in [
        ("quiet", quiet),
        ("1,000 lines/s", at_1k),
        ("10,000 lines/s", at_10k),
    ] {
        println!(
            "{name:<26} {ours:>10.2} % {child:>10.2} % {:>7.1} MB",
            rss as f64 / 1024.0
        );
    }
    let at_1k_total = at_1k.0 + at_1k.1;
    println!(
        "follower at 1,000 lines/s: {at_1k_total:.2} % of a core (unitwatchd + journalctl; target <= 5 %): {}",
        verdict(at_1k_total <= 5.0)
    );
    println!(
        "unitwatchd's RSS under 10,000 lines/s: {:.1} MB, {:+.1} MB over quiet (target: bounded, <= +2 MB): {}",
        rss_after as f64 / 1024.0,
        (rss_after as f64 - quiet.2 as f64) / 1024.0,
        verdict(rss_after <= quiet.2 + 2048)
    );
    println!("\ndetection of {VICTIM} killed {kills} times (systemd's exit line to unit-failed):");
    detect_quiet.print("  journal quiet", 30);
    detect_10k.print("  10,000 lines/s", 30);
    println!(
        "detection unchanged by the journal load (median within 1 ms): {}",
        verdict(detect_10k.median <= detect_quiet.median + 1.0)
    );
    println!(
        "counting of {logged} lines caught up {:.2} s after the load stopped",
        caught_up.as_secs_f64()
    );
    println!("(bench took {:.0} s)", started.elapsed().as_secs_f64());
}

//! Containers (issue 16), in one throwaway systemd 252 (tests/harness)
//! with a real dockerd (Debian's docker.io) and unitwatchd as shipped (the
//! `unitwatch` user, the generator's docker group) and the release build,
//! watching 20 containers with memory thresholds:
//!
//! - detection: one container killed N times (`docker kill`), from the
//!   engine's own time of the `die` event (`timeNano`) to unitwatchd's
//!   `unit-failed` in the journal (both the wall clock of one kernel);
//!   target median <= 50 ms;
//! - recovery: the `die` to the container running again, less the 100 ms
//!   backoff: the restart's overhead through the engine;
//! - unitwatchd's RSS and idle CPU with the 20 watched, at `interval = "10s"`.
//!
//! Each figure is printed beside its target and marked met or NOT MET.
//! `scripts/bench` runs it (as root); `CI=true` runs fewer kills. Asserts
//! nothing.

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "supervisor/measure.rs"]
mod measure;

use std::time::{Duration, Instant};

use harness::engine::IMAGE;
use harness::{field, verdict, Sandbox, Summary};
use measure::{env_num, idle, status_kb};
use unitwatch::containers::Engine;

const WATCHED: usize = 20;

fn config() -> String {
    let mut c = String::from(
        "[daemon]\ninterval = \"10s\"\n\
         [backoff]\ninitial = \"100ms\"\nfactor = 1.0\nmax = \"100ms\"\nmax_restarts_per_hour = 100000\n",
    );
    for i in 1..=WATCHED {
        c += &format!(
            "[[container]]\nname = \"c{i}\"\nengine = \"unix:///run/docker.sock\"\nmemory_warn = \"1.5GiB\"\nmemory_crit = \"1.7GiB\"\n"
        );
    }
    c
}

/// `unit-failed` of c1's state newer than `after_us` (realtime µs).
fn failed_after(sb: &Sandbox, after_us: u64) -> Option<u64> {
    sb.journal("UNITWATCH_EVENT=unit-failed UNITWATCH_CHECK=c1.container:state")
        .iter()
        .filter_map(|e| field(e, "__REALTIME_TIMESTAMP").parse::<u64>().ok())
        .find(|&t| t >= after_us)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let kills = env_num("UNITWATCH_CONTAINERS_KILLS", if ci { 20 } else { 200 }) as usize;
    let secs = env_num("UNITWATCH_CONTAINERS_SECS", if ci { 10 } else { 30 });
    let started = Instant::now();
    let sb = Sandbox::boot("containers-bench");
    sb.start_engine();
    for i in 1..=WATCHED {
        sb.docker(&format!(
            "run -d --name c{i} --network none {IMAGE} /bin/busybox sleep 1000000"
        ));
    }
    sb.start_unitwatch(&config(), "");
    sb.wait_check("c1.container:state", "pass", Duration::from_secs(20));
    sb.wait_check("c20.container:memory", "pass", Duration::from_secs(20));

    let (idle_pct, _) = idle(&sb, "unitwatch", secs);
    let rss_kb = status_kb(&sb, &sb.prop("unitwatch", "MainPID"), "VmRSS:");

    let engine = Engine::new(&sb.engine_uri(), Duration::from_secs(5)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut detect, mut back) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let mut ev = engine.events(&["c1"], &[]).await.unwrap();
        for _ in 0..kills {
            sb.docker("kill c1");
            let (die_ns, back_ns) = tokio::time::timeout(Duration::from_secs(10), async {
                let mut die = None;
                loop {
                    let e = ev.next().await.unwrap().unwrap();
                    match (e.verb(), die) {
                        ("die", None) => die = Some(e.time_nano as u64),
                        ("start", Some(d)) => return (d, e.time_nano as u64),
                        _ => {}
                    }
                }
            })
            .await
            .expect("c1 died and was started again within 10 s");
            let die_us = die_ns / 1000;
            let at = sb.wait_for("c1's unit-failed", Duration::from_secs(10), || {
                failed_after(&sb, die_us)
            });
            detect.push((at - die_us) as f64 / 1000.0);
            back.push((back_ns - die_ns) as f64 / 1e6 - 100.0);
            // Running again in unitwatch's view before the next kill.
            sb.wait_check("c1.container:state", "pass", Duration::from_secs(10));
        }
    });
    let detect = Summary::of(detect);
    let back = Summary::of(back);
    println!(
        "\ncontainers: {WATCHED} watched through a real dockerd (memory thresholds on), c1 killed {kills} times:"
    );
    detect.print("  die (engine's time) -> unit-failed", 40);
    back.print("  die -> started again, less the 100 ms backoff", 40);
    println!(
        "detection median {:.2} ms (target <= 50 ms): {}",
        detect.median,
        verdict(detect.median <= 50.0)
    );
    println!(
        "unitwatchd with {WATCHED} containers at interval = \"10s\": RSS {:.1} MB, idle CPU {idle_pct:.2} % of a core ({secs} s)",
        rss_kb as f64 / 1024.0
    );
    println!("(bench took {:.0} s)", started.elapsed().as_secs_f64());
}

//! unitwatch-http's figures:
//!
//! - render: /metrics and /health bodies for a snapshot of 1,000 checks
//!   (what happens once per snapshot change), and a scrape of them (what
//!   happens per request);
//! - load: `wrk -c16 -d15s` against /health and /metrics of the release
//!   binaries running as shipped (systemd/), in a real systemd (tests/harness)
//!   with 50 watched units, plus the server's RSS afterwards: once with wrk
//!   (two threads) and the server sharing both cores, once pinned one core
//!   each (wrk with one thread, so it does not time its own scheduling).
//!
//! - a constant-rate load on /health (rate.rs): p50, p99 and p99.9 at
//!   10,000 and 50,000 requests/s, pinned as above.
//!
//! Run with `scripts/bench` (as root). Prints figures and the targets; asserts
//! nothing, so a slow machine shows up as numbers rather than a flaky test.

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "http/rate.rs"]
mod rate;

use std::time::{Duration, Instant, SystemTime};

use harness::{verdict, Summary, P99_SAMPLES};
use unitwatch::http::{metrics, source};

fn stats(name: &str, v: Vec<f64>) -> Summary {
    let s = Summary::of(v);
    s.print(name, 52);
    s
}

fn time_ms(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// A status.json of 1,000 checks: 200 units (state + memory), 300
/// heartbeats, 150 disks (space + inodes).
fn big_snapshot() -> String {
    let t = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let mut checks = Vec::new();
    let mut units = serde_json::Map::new();
    let check = |key: String, comp: String, m: &str, unit: Option<String>, v: serde_json::Value| {
        serde_json::json!({"key": key, "component": comp, "measurement": m,
            "component_type": "component", "unit": unit, "status": "pass",
            "observed_value": v, "observed_unit": "percent", "time": t, "duration_us": 12})
    };
    for i in 0..200 {
        let u = format!("worker-{i}.service");
        checks.push(check(
            format!("{u}:state"),
            u.clone(),
            "state",
            Some(u.clone()),
            "active".into(),
        ));
        checks.push(check(
            format!("{u}:memory"),
            u.clone(),
            "memory",
            Some(u.clone()),
            (i * 1000).into(),
        ));
        units.insert(
            u,
            serde_json::json!({"state": {"load_state": "loaded", "active_state": "active",
            "sub_state": "running", "memory_current": 123456789}, "restart": true,
            "backoff": {"attempts": 2, "next_delay_ms": 40000, "restarts_last_hour": 2,
            "restarts_total": 17, "systemd_restarts_total": 1, "limited": false}}),
        );
    }
    for i in 0..300 {
        let c = format!("heartbeat:/var/lib/w{i}/hb");
        checks.push(check(format!("{c}:age"), c, "age", None, 1.5.into()));
    }
    for i in 0..150 {
        let c = format!("disk:/mnt/d{i}");
        checks.push(check(
            format!("{c}:utilization"),
            c.clone(),
            "utilization",
            None,
            42.5.into(),
        ));
        checks.push(check(format!("{c}:inodes"), c, "inodes", None, 3.25.into()));
    }
    assert_eq!(checks.len(), 1000);
    serde_json::json!({"schema_version": 1, "status": "pass", "summary": "200 units ok",
        "updated_at": t, "started_at": t, "pid": 1, "version": "0.1.0", "interval_ms": 10000,
        "systemd": {"reachable": true}, "checks": checks, "units": units})
    .to_string()
}

fn render() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.json");
    std::fs::write(&path, big_snapshot()).unwrap();
    let r = source::load(&path, "bench");
    let snap = r.snapshot.as_ref().expect("snapshot parses");
    let (_, om) = r.metrics.scrape(true, metrics::PerScrape::aged(1.0));
    let (_, text) = r.metrics.scrape(false, metrics::PerScrape::aged(1.0));
    println!(
        "\n== render, {} checks ({} KiB status.json; /metrics {} KiB, {} series)",
        snap.checks.len(),
        std::fs::metadata(&path).unwrap().len() / 1024,
        text.len() / 1024,
        text.lines().filter(|l| !l.starts_with('#')).count()
    );
    stats(
        "on change: read + parse + render every body",
        time_ms(P99_SAMPLES, || {
            std::hint::black_box(source::load(&path, "bench"));
        }),
    );
    let med = stats(
        "on change: /metrics alone (both formats)",
        time_ms(P99_SAMPLES, || {
            std::hint::black_box(metrics::Exposition::new(Some(snap)));
        }),
    )
    .median;
    println!(
        "   target: /metrics with 1,000 checks <= 5 ms: {}",
        verdict(med <= 5.0)
    );
    stats(
        "per scrape: /metrics, Prometheus text",
        time_ms(1000, || {
            std::hint::black_box(r.metrics.scrape(false, metrics::PerScrape::aged(1.0)));
        }),
    );
    stats(
        "per scrape: /metrics, OpenMetrics",
        time_ms(1000, || {
            std::hint::black_box(r.metrics.scrape(true, metrics::PerScrape::aged(1.0)));
        }),
    );
    stats(
        "per request: /health",
        time_ms(1000, || {
            std::hint::black_box(r.health(SystemTime::now(), false));
        }),
    );
    assert!(om.ends_with("# EOF\n"));
}

/// What one wrk run measured.
struct Load {
    rps: f64,
    p99_ms: f64,
    /// wrk's "Non-2xx or 3xx responses" and "Socket errors" lines, if any:
    /// a run with either is no pass, however fast.
    errors: String,
}

impl Load {
    fn meets(&self, rps: f64, p99_ms: f64) -> bool {
        self.errors.is_empty() && self.rps >= rps && self.p99_ms <= p99_ms
    }
}

/// Runs wrk inside the sandbox and prints its figures.
/// `wrk -t<threads>`: one thread per core wrk has, or its threads time
/// each other's scheduling delays instead of the server.
fn wrk(sb: &harness::Sandbox, path: &str, pin: &str, threads: u32) -> Load {
    let out = sb.ok(&format!(
        "{pin}wrk -t{threads} -c16 -d15s --latency http://127.0.0.1:8080{path}"
    ));
    let rps: f64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in {out}"));
    let pct = |p: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let to_ms = |s: &str| {
        let (n, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
        let n: f64 = n.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => f64::NAN,
        }
    };
    let errors = out
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .collect::<Vec<_>>()
        .join("; ");
    let p99 = to_ms(&pct("99%"));
    println!(
        "wrk -t{threads} -c16 -d15s {path:<10} {rps:>10.0} requests/s   p50 {:>7}   p90 {:>7}   p99 {:>7}{}",
        pct("50%"),
        pct("90%"),
        pct("99%"),
        if errors.is_empty() { String::new() } else { format!("   (ERRORS: {errors})") }
    );
    Load {
        rps,
        p99_ms: p99,
        errors,
    }
}

/// wrk against /health and /metrics, each with its verdict.
fn loads(sb: &harness::Sandbox, pin: &str, threads: u32) {
    let health = wrk(sb, "/health", pin, threads);
    println!(
        "   target: /health >= 50,000 requests/s with p99 <= 1 ms, no errors: {}",
        verdict(health.meets(50_000.0, 1.0))
    );
    let m = wrk(sb, "/metrics", pin, threads);
    println!(
        "   target: /metrics answered without errors: {}",
        verdict(m.errors.is_empty())
    );
}

fn load() {
    const UNITS: usize = 50;
    let sb = harness::Sandbox::boot("bench-http");
    sb.unit(
        "bench@.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    );
    let names: Vec<String> = (1..=UNITS).map(|i| format!("bench@{i}.service")).collect();
    sb.ok(&format!("systemctl start {}", names.join(" ")));
    let mut config = String::from(
        "[daemon]\ninterval = \"1s\"\n[[disk]]\npath = \"/\"\n[memory]\n[http]\nlisten = \"127.0.0.1:8080\"\n",
    );
    for n in &names {
        config += &format!("[[unit]]\nname = \"{n}\"\n");
    }
    sb.start_unitwatch(&config, "");
    sb.install_http();
    sb.ok("systemctl start unitwatch-http");
    let serving = || {
        sb.wait_for("/health 200", Duration::from_secs(10), || {
            (sb.curl("http://127.0.0.1:8080/health").0 == 200).then_some(())
        })
    };
    serving();
    println!(
        "\n== load: unitwatch-http as shipped (DynamicUser), {UNITS} watched units, daemon sweeping every 1 s"
    );
    println!("-- unpinned: wrk's two threads and the server share both cores");
    loads(&sb, "", 2);
    // The load generator competes with the server for the same two cores;
    // with one core each, the figures are the server's rather than the
    // scheduler's.
    sb.write(
        "/etc/systemd/system/unitwatch-http.service.d/bench.conf",
        "[Service]\nCPUAffinity=0\n",
    );
    sb.ok("systemctl daemon-reload && systemctl restart unitwatch-http");
    serving();
    println!("-- pinned: the server on cpu 0, wrk (one thread) on cpu 1");
    loads(&sb, "taskset -c 1 ", 1);
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    rate_loads(&sb, if ci { 5 } else { 15 });
    let pid = sb.prop("unitwatch-http", "MainPID");
    let status = sb.read(&format!("/proc/{pid}/status")).unwrap();
    let kb = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    println!(
        "unitwatch-http RSS {:.1} MB (peak {:.1} MB) after the load",
        kb("VmRSS:") as f64 / 1024.0,
        kb("VmHWM:") as f64 / 1024.0
    );
}

/// The constant-rate load on /health (`rate.rs`), run from cpu 1 in the
/// sandbox's network namespace against the server pinned to cpu 0, at each
/// rate for `secs`; prints the figures and the target's verdict.
fn rate_loads(sb: &harness::Sandbox, secs: u64) {
    const CONNS: u64 = 50;
    println!("-- constant rate: {CONNS} kept-alive connections, latency from when each request was due (no coordinated omission), {secs} s a rate");
    for rate in [10_000u64, 50_000] {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("taskset")
            .args(["-c", "1", "nsenter", "-t", &sb.pid1.to_string(), "-n", "--"])
            .arg(exe)
            .args([
                "--rate-load",
                "8080",
                &rate.to_string(),
                &secs.to_string(),
                &CONNS.to_string(),
            ])
            .output()
            .expect("the rate load");
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<u64> = text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [answered, errors, p50, p99, p999, max] = f[..] else {
            println!(
                "rate {rate}/s: the load failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        };
        let ms = |us: u64| us as f64 / 1000.0;
        println!(
            "/health at {rate:>6} requests/s: {:>8.0} answered/s, {errors} errors, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.2} ms",
            answered as f64 / secs as f64,
            ms(p50),
            ms(p99),
            ms(p999),
            ms(max)
        );
        if rate == 50_000 {
            let ok = errors == 0 && p99 <= 1000 && answered as f64 >= 0.99 * (rate * secs) as f64;
            println!(
                "   target: p99 <= 1 ms at 50,000 requests/s, every request answered: {}",
                verdict(ok)
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rate-load") {
        rate::main(&args[i + 1..]);
        return;
    }
    // `cargo test --benches` runs this binary too: measure only when asked.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    render();
    load();
}

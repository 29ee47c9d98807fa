//! unitwatch-http's server, end to end over TCP: the real hyper + axum
//! stack on an ephemeral port, fed by a status.json on disk that the tests
//! rewrite. Bodies are checked field by field against the health+json
//! draft; /metrics goes through promtool. (Against a real systemd, with the
//! daemon writing the snapshot: tests/http_systemd.rs.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use unitwatch::http::{self, source};

mod harness;

struct Server {
    addr: SocketAddr,
    status: PathBuf,
    token: Option<String>,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

/// A parsed response.
#[derive(Debug)]
struct Resp {
    code: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn snapshot(status: &str, updated_at: SystemTime, interval_ms: u64) -> serde_json::Value {
    let t = humantime::format_rfc3339_millis(updated_at).to_string();
    let fail = status == "fail";
    serde_json::json!({
        "schema_version": 1, "status": status,
        "summary": if fail { "0 units ok, 1 failing: worker.service" } else { "1 units ok" },
        "updated_at": t, "started_at": t, "pid": 4242, "version": "0.1.0",
        "interval_ms": interval_ms, "systemd": {"reachable": true},
        "checks": [
            {"key": "worker.service:state", "component": "worker.service", "measurement": "state",
             "component_type": "component", "unit": "worker.service",
             "status": if fail { "fail" } else { "pass" },
             "observed_value": if fail { "failed" } else { "active" },
             "output": if fail { Some("failed (Result=signal)") } else { None },
             "time": t, "duration_us": 2},
            {"key": "disk:/:utilization", "component": "disk:/", "measurement": "utilization",
             "component_type": "system", "status": if status == "warn" { "warn" } else { "pass" },
             "observed_value": 81.25, "observed_unit": "percent", "time": t, "duration_us": 7,
             "measurements": [{"name": "disk_used_ratio", "labels": {"path": "/"}, "value": 0.8125}]}
        ],
        "units": {"worker.service": {"state": {"load_state": "loaded",
            "active_state": if fail { "failed" } else { "active" }, "sub_state": "running"},
            "restart": true, "backoff": {"attempts": 1, "next_delay_ms": 20000, "restarts_last_hour": 1,
            "restarts_total": 3, "systemd_restarts_total": 0, "limited": false}}},
        "telemetry": {"protocol": "http/protobuf", "endpoint": "http://127.0.0.1:4318",
            "exports_total": 12, "export_failures_total": 1, "dropped_total": 0, "queued_events": 0,
            "last_success_at": t}
    })
}

fn write_status(path: &Path, v: &serde_json::Value) {
    unitwatch::fsutil::write_atomic(path, v.to_string().as_bytes(), 0o644).unwrap();
}

fn start(token: Option<&str>) -> Server {
    start_capped(token, 64)
}

/// A server that serves at most `cap` connections at once.
fn start_capped(token: Option<&str>, cap: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let src = source::Source::new(source::load(&status, "testhost"));
    let conns = http::conns::Conns::new(http::conns::Limits {
        total: cap,
        per_peer: cap,
    });
    let router = http::router(src.clone(), token.map(str::as_bytes), conns.clone());
    let path = status.clone();
    rt.spawn(async move {
        let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
        tokio::spawn(source::watch(path, "testhost".into(), src));
        http::serve(l, router, conns).await
    });
    Server {
        addr,
        status,
        token: token.map(str::to_string),
        _dir: dir,
        _rt: rt,
    }
}

impl Server {
    /// Sends raw bytes, reads until the server closes.
    fn raw(&self, data: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = s.write_all(data);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    fn req(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut r = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (k, v) in headers {
            r += &format!("{k}: {v}\r\n");
        }
        r += "\r\n";
        parse(&self.raw(r.as_bytes()))
    }

    fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[])
    }

    /// Writes a snapshot and waits until the server serves it.
    fn publish(&self, v: &serde_json::Value) {
        write_status(&self.status, v);
        let want = v["updated_at"].as_str().unwrap().to_string();
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        for _ in 0..100 {
            let r = self.req("GET", "/health/detailed", &headers);
            if r.body.windows(want.len()).any(|w| w == want.as_bytes()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not pick up the new snapshot");
    }
}

fn parse(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let code = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Resp {
        code,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn health_headers(r: &Resp) {
    assert_eq!(r.header("content-type"), Some("application/health+json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[test]
fn health_follows_the_draft_and_maps_status_codes() {
    let s = start(None);
    s.publish(&snapshot("pass", SystemTime::now(), 10_000));
    let r = s.get("/health");
    assert_eq!(r.code, 200);
    health_headers(&r);
    let h = r.json();
    assert_eq!(h["status"], "pass");
    assert!(h.get("output").is_none(), "no output on pass: {h}");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h["serviceId"], "unitwatch@testhost");

    // HEAD: same status and headers, no body.
    let head = s.req("HEAD", "/health", &[]);
    assert_eq!(head.code, 200);
    health_headers(&head);
    assert_eq!(head.header("content-length"), r.header("content-length"));
    assert!(head.body.is_empty());

    s.publish(&snapshot("warn", SystemTime::now(), 10_000));
    let r = s.get("/health");
    assert_eq!((r.code, r.json()["status"].as_str()), (200, Some("warn")));
    assert_eq!(r.json()["output"], "1 units ok");

    s.publish(&snapshot("fail", SystemTime::now(), 10_000));
    let r = s.get("/health");
    assert_eq!(r.code, 503);
    health_headers(&r);
    assert_eq!(r.json()["status"], "fail");
    assert_eq!(r.json()["output"], "0 units ok, 1 failing: worker.service");
    assert_eq!(s.req("HEAD", "/health", &[]).code, 503);
}

#[test]
fn stale_and_missing_snapshots_are_503() {
    let s = start(None);
    let r = s.get("/health");
    assert_eq!(r.code, 503);
    health_headers(&r);
    assert!(
        r.json()["output"]
            .as_str()
            .unwrap()
            .ends_with("status.json: is unitwatchd running?"),
        "{}",
        r.text()
    );
    assert_eq!(s.req("HEAD", "/health", &[]).code, 503);

    // Written 40 s ago by a daemon that sweeps every 10 s: dead or hung.
    s.publish(&snapshot(
        "pass",
        SystemTime::now() - Duration::from_secs(40),
        10_000,
    ));
    let r = s.get("/health");
    assert_eq!(r.code, 503);
    let h = r.json();
    assert_eq!(h["status"], "fail");
    assert!(
        h["output"]
            .as_str()
            .unwrap()
            .starts_with("status snapshot is 40s old (unitwatchd rewrites it every 10s)"),
        "{h}"
    );
    // The last known checks are still shown in detail.
    let d = s.get("/health/detailed").json();
    assert_eq!(d["status"], "fail");
    assert_eq!(d["checks"]["worker.service:state"][0]["status"], "pass");

    // An invalid file: 503 naming it.
    std::fs::write(&s.status, "{\"schema_version\": 1, \"sta").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = s.get("/health");
    assert_eq!(r.code, 503);
    assert!(r.text().contains("invalid status snapshot"), "{}", r.text());
}

#[test]
fn detailed_and_service_endpoints() {
    let s = start(None);
    s.publish(&snapshot("fail", SystemTime::now(), 10_000));
    let r = s.get("/health/detailed");
    assert_eq!(r.code, 503);
    health_headers(&r);
    let c = &r.json()["checks"];
    let disk = &c["disk:/:utilization"][0];
    assert_eq!(disk["componentId"], "disk:/");
    assert_eq!(disk["componentType"], "system");
    assert_eq!(disk["observedValue"], 81.25);
    assert_eq!(disk["observedUnit"], "percent");
    assert_eq!(disk["status"], "pass");
    assert!(disk["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        c["worker.service:state"][0]["output"],
        "failed (Result=signal)"
    );

    let r = s.get("/health/service/worker.service");
    assert_eq!(r.code, 503);
    let h = r.json();
    assert_eq!(h["serviceId"], "worker.service");
    assert_eq!(h["checks"].as_object().unwrap().len(), 1);
    let r = s.get("/health/service/ghost.service");
    assert_eq!(r.code, 404);
    health_headers(&r);
    assert_eq!(
        r.json()["output"],
        "ghost.service is not watched by unitwatch on testhost"
    );
}

#[test]
fn errors_are_plain_and_the_server_survives_bad_requests() {
    let s = start(None);
    s.publish(&snapshot("pass", SystemTime::now(), 10_000));
    let r = s.get("/nope");
    assert_eq!(r.code, 404);
    assert!(r.text().starts_with("404 not found: /nope"));
    let r = s.req("POST", "/health", &[("Content-Length", "0")]);
    assert_eq!(r.code, 405);
    assert_eq!(r.header("allow"), Some("GET,HEAD"));
    let r = s.req("DELETE", "/metrics", &[]);
    assert_eq!((r.code, r.header("allow")), (405, Some("GET,HEAD")));

    let garbage = s.raw(b"\x00\x01\xff\xfeGARBAGE\r\n\r\n");
    assert!(
        garbage.starts_with(b"HTTP/1.1 400 "),
        "{:?}",
        String::from_utf8_lossy(&garbage)
    );
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 1 << 20));
    long.extend(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = s.raw(&long);
    assert!(
        r.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&r[..r.len().min(80)])
    );
    let mut big_header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big_header.extend(std::iter::repeat_n(b'b', 100_000));
    big_header.extend(b"\r\n\r\n");
    assert!(s.raw(&big_header).starts_with(b"HTTP/1.1 431 "));
    // And it still answers.
    assert_eq!(s.get("/health").code, 200);
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let s = start(None);
    let t = std::time::Instant::now();
    let out = s.raw(b"GET /health HTTP/1.1\r\nHost: x\r\n");
    let took = t.elapsed();
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 408"),
        "{out:?}"
    );
    assert!(
        took >= http::HEADER_READ_TIMEOUT
            && took < http::HEADER_READ_TIMEOUT + Duration::from_secs(3),
        "closed after {took:?}"
    );
}

/// A connection that sent part of a request's headers and holds on.
fn dribbler(s: &Server) -> TcpStream {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    c
}

/// Reads until the server closes `c`; returns when, or None if it did not
/// within `limit`.
fn closed_within(mut c: TcpStream, limit: Duration) -> Option<Duration> {
    let t = std::time::Instant::now();
    c.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(t.elapsed()),
            Err(_) => return None,
        }
    }
}

/// At once: slow clients holding connections, a kept-alive connection left
/// idle, and ordinary clients, which are served at once all the while.
/// The slow and the idle one are both closed after the header-read timeout.
#[test]
fn slow_and_idle_clients_cost_the_others_nothing_and_are_closed() {
    let s = start(None);
    // Fresh for the whole test (stale after three intervals).
    s.publish(&snapshot("pass", SystemTime::now(), 60_000));
    let slow: Vec<TcpStream> = (0..20).map(|_| dribbler(&s)).collect();
    // A kept-alive connection: one request answered, then silence.
    let mut idle = TcpStream::connect(s.addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut first = [0u8; 2048];
    let n = idle.read(&mut first).unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );
    let idle_since = std::time::Instant::now();
    let idle_closed = std::thread::spawn(move || closed_within(idle, Duration::from_secs(20)));
    let slow_closed: Vec<_> = slow
        .into_iter()
        .map(|c| std::thread::spawn(move || closed_within(c, Duration::from_secs(20))))
        .collect();
    // Meanwhile everyone else is served, each within a moment.
    let mut worst = Duration::ZERO;
    while idle_since.elapsed() < Duration::from_secs(8) {
        let t = std::time::Instant::now();
        assert_eq!(s.get("/health").code, 200);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        worst < Duration::from_millis(500),
        "a request took {worst:?}"
    );
    let timeout = http::HEADER_READ_TIMEOUT;
    let idle_after = idle_closed
        .join()
        .unwrap()
        .expect("the idle connection was never closed");
    assert!(
        idle_after + Duration::from_secs(1) >= timeout
            && idle_after < timeout + Duration::from_secs(3),
        "idle keep-alive closed after {idle_after:?}"
    );
    for h in slow_closed {
        let after = h.join().unwrap().expect("a slow client was never cut off");
        assert!(
            after < timeout + Duration::from_secs(3),
            "cut off after {after:?}"
        );
    }
}

/// The connection cap: with every slot held by clients dribbling their
/// headers, a new client is served at once, and the one that has waited
/// longest for its request is closed to make room for it, not another.
/// (The attacks themselves, at the real cap: tests/http_hostile.rs.)
#[test]
fn at_the_cap_a_new_client_is_served_and_the_longest_waiting_goes() {
    let cap = 8;
    let s = start_capped(None, cap);
    // Fresh for the whole test (stale after three intervals).
    s.publish(&snapshot("pass", SystemTime::now(), 60_000));
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..cap {
        held.push(dribbler(&s));
        // Each waits a little less than the one before.
        std::thread::sleep(Duration::from_millis(30));
    }
    let t = std::time::Instant::now();
    let r = s.get("/health");
    assert_eq!(r.code, 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "served beyond the cap after {:?}",
        t.elapsed()
    );
    // The oldest was closed; the others are still held.
    let oldest = held.remove(0);
    assert!(
        closed_within(oldest, Duration::from_secs(2)).is_some(),
        "the longest-waiting connection was not closed"
    );
    for (i, c) in held.into_iter().enumerate() {
        assert!(
            closed_within(c, Duration::from_millis(200)).is_none(),
            "held connection {} was closed too",
            i + 1
        );
    }
}

#[test]
fn token_guards_all_but_health() {
    let s = start(Some("s3cret"));
    s.publish(&snapshot("pass", SystemTime::now(), 10_000));
    assert_eq!(s.get("/health").code, 200);
    assert_eq!(s.req("HEAD", "/health", &[]).code, 200);
    for p in [
        "/",
        "/metrics",
        "/health/detailed",
        "/health/service/worker.service",
    ] {
        let r = s.get(p);
        assert_eq!(r.code, 401, "{p}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"unitwatch\"")
        );
        assert_eq!(
            s.req("GET", p, &[("Authorization", "Bearer wrong")]).code,
            401
        );
        assert_eq!(
            s.req("GET", p, &[("Authorization", "Bearer s3cret")]).code,
            200,
            "{p}"
        );
    }
}

#[test]
fn metrics_pass_promtool_and_negotiate_openmetrics() {
    let s = start(None);
    s.publish(&snapshot("warn", SystemTime::now(), 10_000));
    let r = s.get("/metrics");
    assert_eq!(r.code, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    for line in [
        "unitwatch_unit_state{unit=\"worker.service\",state=\"active\"} 1.0",
        "unitwatch_unit_restarts_total{unit=\"worker.service\"} 3",
        "unitwatch_unit_backoff_delay_seconds{unit=\"worker.service\"} 20.0",
        "unitwatch_disk_used_ratio{path=\"/\"} 0.8125",
        "unitwatch_check_status{check=\"disk:/:utilization\",status=\"warn\"} 1.0",
        "# TYPE unitwatch_unit_restarts_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(text
        .lines()
        .any(|l| l.starts_with("unitwatch_snapshot_age_seconds ")));
    assert!(!text.contains("# EOF"));

    harness::promtool_check(&r.body);

    let r = s.req(
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r.text().ends_with("# EOF\n"));
    assert!(r
        .text()
        .contains("\n# TYPE unitwatch_unit_restarts counter\n"));
}

#[test]
fn the_page_lists_the_checks() {
    let s = start(None);
    s.publish(&snapshot("fail", SystemTime::now(), 10_000));
    let r = s.get("/");
    assert_eq!(r.code, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let p = r.text();
    assert!(
        p.contains("<span id=\"status\"><span class=\"badge fail\">fail</span></span>"),
        "{p}"
    );
    assert!(p.contains("<code>worker.service:state</code>"));
    assert!(p.contains("failed (Result=signal)"));
    assert!(p.contains("<a href=\"/metrics\">"));
    assert!(!p.contains("src=\"http"), "no external assets");
}

/// Headless Chromium with the flags this machine needs (no sandbox as root,
/// no background traffic to a network that is not there).
fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium (Debian package chromium; scripts/deps installs it)")
}

#[test]
fn the_page_renders_in_a_browser() {
    let s = start(None);
    s.publish(&snapshot("fail", SystemTime::now(), 10_000));
    let url = format!("http://{}/", s.addr);
    let out = chromium(&["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The DOM as the browser built it: title, status, the checks table.
    assert!(
        dom.contains("<title>unitwatch on testhost: fail</title>"),
        "{dom}"
    );
    assert!(
        dom.contains("<td><code>worker.service:state</code></td>"),
        "{dom}"
    );
    assert!(dom.contains("<td>failed (Result=signal)</td>"), "{dom}");
    assert!(dom.contains("<td>81.25 percent</td>"), "{dom}");
    assert!(
        dom.contains("0 units ok, 1 failing: worker.service"),
        "{dom}"
    );

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    let out = chromium(&[
        &format!("--screenshot={}", png.display()),
        "--window-size=1100,420",
        &url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
}

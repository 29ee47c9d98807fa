//! unitwatch-http under hostile clients: the real binary on loopback, each
//! attack from its own addresses in 127.0.0.0/8 while an ordinary client
//! from 127.0.0.1 asks `/health` every 200 ms and must be answered within
//! 1 s each time. The attacks: a slowloris with more sockets than the cap
//! (spread over six addresses, so the per-peer share does not catch it and
//! only shedding under the cap can), a connection flood from one address,
//! and pipelining floods (clients that never read their answers, and
//! clients that read as fast as they can). Each also checks what the
//! server's `/metrics` says it did, and that its memory stayed bounded.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What an ordinary client may wait for an answer, per the issue.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// How long each attack runs while the ordinary client probes.
const ATTACK: Duration = Duration::from_secs(6);
/// unitwatch-http's peak RSS under any attack stays below this: its
/// connections' buffers are bounded by the cap, whatever is sent.
const RSS_BOUND_KB: u64 = 48 * 1024;

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The descriptor limit raised to its hard limit (the server inherits it),
/// so both the attacks and the server's full cap of 1,024 fit.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard >= 4096,
        "RLIMIT_NOFILE's hard limit {hard} is too low for these tests"
    );
}

fn start() -> Server {
    raise_nofile();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("unitwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{0}/state\"\nruntime_dir = \"{1}\"\n\n[http]\nlisten = [\"127.0.0.1:{port}\"]\n",
            dir.path().display(),
            run.display()
        ),
    )
    .unwrap();
    let t = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let snap = serde_json::json!({
        "schema_version": 1, "status": "pass", "summary": "1 units ok",
        "updated_at": t, "started_at": t, "pid": 4242, "version": "0.1.0",
        // Fresh for the whole test (stale after three intervals).
        "interval_ms": 600_000, "systemd": {"reachable": true},
        "checks": [], "units": {}
    });
    unitwatch::fsutil::write_atomic(&run.join("status.json"), snap.to_string().as_bytes(), 0o644)
        .unwrap();
    let bin = std::env::var_os("UNITWATCH_HTTP_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_unitwatch-http").into());
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let s = Server {
        child,
        port,
        _dir: dir,
    };
    let t = Instant::now();
    while probe(&s, Ipv4Addr::LOCALHOST).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the server never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// A connection to the server from `from` (any address in 127/8).
fn connect(s: &Server, from: Ipv4Addr) -> std::io::Result<TcpStream> {
    connect_to(s.port, from)
}

fn connect_to(port: u16, from: Ipv4Addr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())?;
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    sock.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(sock.into())
}

/// One whole request on a new connection from `from`; the response.
fn request(s: &Server, from: Ipv4Addr, path: &str) -> std::io::Result<Vec<u8>> {
    let mut c = connect(s, from)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut out = Vec::new();
    c.read_to_end(&mut out)?;
    Ok(out)
}

/// `/health` as an ordinary client asks it: how long until the answer.
fn probe(s: &Server, from: Ipv4Addr) -> Result<Duration, String> {
    let t = Instant::now();
    match request(s, from, "/health") {
        Ok(r) if r.starts_with(b"HTTP/1.1 200") => Ok(t.elapsed()),
        Ok(r) => Err(format!(
            "after {:?}: {:?}",
            t.elapsed(),
            String::from_utf8_lossy(&r[..r.len().min(80)])
        )),
        Err(e) => Err(format!("after {:?}: {e}", t.elapsed())),
    }
}

/// Probes every 200 ms for `ATTACK`; every one must be answered within
/// `ANSWER_WITHIN`. Returns the slowest.
fn probe_throughout(s: &Server, what: &str) -> Duration {
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while start.elapsed() < ATTACK {
        let took = probe(s, Ipv4Addr::LOCALHOST)
            .unwrap_or_else(|e| panic!("under {what}: /health was not answered: {e}"));
        assert!(
            took < ANSWER_WITHIN,
            "under {what}: /health took {took:?} (probe {n})"
        );
        worst = worst.max(took);
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("under {what}: {n} probes, the slowest answered in {worst:?}");
    worst
}

/// A sample of the server's own `/metrics` (Prometheus text).
fn metric(s: &Server, line_prefix: &str) -> f64 {
    let body = request(s, Ipv4Addr::LOCALHOST, "/metrics").unwrap();
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {line_prefix} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// The server's RSS now and at its peak, in KiB.
fn rss_kb(s: &Server) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    let get = |k: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {status}"))
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn assert_memory_bounded(s: &Server, what: &str) {
    let (rss, peak) = rss_kb(s);
    eprintln!("under {what}: unitwatch-http RSS {rss} KiB, peak {peak} KiB");
    assert!(
        peak < RSS_BOUND_KB,
        "under {what}: unitwatch-http's peak RSS {peak} KiB is over {RSS_BOUND_KB} KiB"
    );
}

/// Starts the attack on its own thread; it runs until `stop` is set.
fn attack<F>(stop: &Arc<AtomicBool>, f: F) -> std::thread::JoinHandle<usize>
where
    F: FnOnce(&AtomicBool) -> usize + Send + 'static,
{
    let stop = stop.clone();
    std::thread::spawn(move || f(&stop))
}

/// 1,300 sockets (more than the cap of 1,024) from six addresses, each
/// dribbling a header byte every 2 s, as in the trial that found this.
/// Before the fix, the held sockets took every slot and new clients waited
/// in the backlog for as long as the dribbling went on.
#[test]
fn a_slowloris_past_the_cap_does_not_keep_health_from_new_clients() {
    let s = start();
    let mut socks = Vec::new();
    for i in 0..1300 {
        let from = Ipv4Addr::new(127, 0, 0, 10 + (i % 6) as u8);
        let mut c = connect(&s, from).expect("an attacker's connect");
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        c.set_nonblocking(true).unwrap();
        socks.push(c);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dribbling = attack(&stop, move |stop| {
        let mut closed = 0;
        while !stop.load(Ordering::Relaxed) {
            closed = 0;
            for c in &mut socks {
                let mut b = [0u8; 64];
                match c.read(&mut b) {
                    Ok(0) => closed += 1,
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => closed += 1,
                    _ => {
                        let _ = c.write(b"a");
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        closed
    });
    probe_throughout(&s, "a slowloris of 1,300 sockets");
    let open = metric(&s, "unitwatch_http_open_connections");
    let shed = metric(&s, "unitwatch_http_connections_shed_total{reason=\"cap\"}");
    assert_memory_bounded(&s, "a slowloris of 1,300 sockets");
    stop.store(true, Ordering::Relaxed);
    let closed = dribbling.join().unwrap();
    eprintln!("slowloris: {open} open, {shed} shed under the cap, {closed} of the attacker's sockets closed");
    assert!(open <= 1024.0, "{open} connections open");
    assert!(
        shed >= 276.0,
        "only {shed} connections shed for 1,300 at a cap of 1,024"
    );
    assert!(
        closed >= 276,
        "only {closed} of the attacker's sockets were closed"
    );
}

/// One address opens connections as fast as it can for the whole attack
/// (some 20,000 a second here) and holds the newest 2,000. It only ever
/// sheds its own: an ordinary client is answered, and another peer's
/// kept-alive connection, idle since before the flood, survives it. With a
/// listen queue of 1,024 the flood filled it between turns of the accept
/// loop, and a probe whose SYN met the full queue waited the kernel's 1 s
/// for its second SYN (CI saw 1.10 s).
#[test]
fn a_connection_flood_from_one_address_sheds_only_its_own() {
    let s = start();
    let mut kept = connect(&s, Ipv4Addr::new(127, 0, 0, 30)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ask = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 4096];
    kept.write_all(ask).unwrap();
    assert!(kept.read(&mut buf).unwrap() > 0);
    let stop = Arc::new(AtomicBool::new(false));
    let port = s.port;
    let flood = attack(&stop, move |stop| {
        let mut held = VecDeque::new();
        let mut opened = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(c) = connect_to(port, Ipv4Addr::new(127, 0, 0, 20)) {
                held.push_back(c);
                opened += 1;
                if held.len() > 2000 {
                    held.pop_front();
                }
            }
        }
        opened
    });
    probe_throughout(&s, "a connection flood from one address");
    assert_memory_bounded(&s, "a connection flood from one address");
    // Idle since before the flood, from another address: still served.
    kept.write_all(ask).unwrap();
    let n = kept
        .read(&mut buf)
        .expect("the other peer's kept-alive connection was closed by the flood");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let shed_own = metric(
        &s,
        "unitwatch_http_connections_shed_total{reason=\"peer_share\"}",
    );
    let shed_cap = metric(&s, "unitwatch_http_connections_shed_total{reason=\"cap\"}");
    let open = metric(&s, "unitwatch_http_open_connections");
    stop.store(true, Ordering::Relaxed);
    let opened = flood.join().unwrap();
    eprintln!("flood: {opened} connections opened, {shed_own} shed as over the peer's share, {shed_cap} under the cap, {open} open");
    assert!(opened > 2000, "the flood opened only {opened} connections");
    assert!(shed_own > 0.0, "nothing was shed for the peer's share");
    assert_eq!(shed_cap, 0.0, "the flood reached the cap past its share");
    assert!(open <= 256.0 + 8.0, "{open} connections open");
}

/// Pipelined requests, without end, on 16 connections from one address:
/// eight never read their answers (the server's writes back up and it
/// stops reading them), eight read them as fast as they come (the server
/// works flat out for them). An ordinary client is still answered.
#[test]
fn a_pipelining_flood_does_not_starve_health() {
    let s = start();
    let batch: Vec<u8> = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(256);
    let stop = Arc::new(AtomicBool::new(false));
    let mut floods = Vec::new();
    for reads in [false, true] {
        for _ in 0..8 {
            let mut c = connect(&s, Ipv4Addr::new(127, 0, 0, 40)).unwrap();
            c.set_nonblocking(true).unwrap();
            let batch = batch.clone();
            floods.push(attack(&stop, move |stop| {
                let mut answered = 0;
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let wrote = c.write(&batch).unwrap_or(0);
                    if reads {
                        while let Ok(n) = c.read(&mut buf) {
                            if n == 0 {
                                return answered;
                            }
                            answered += n;
                        }
                    }
                    if wrote == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                answered
            }));
        }
    }
    probe_throughout(&s, "a pipelining flood on 16 connections");
    assert_memory_bounded(&s, "a pipelining flood on 16 connections");
    stop.store(true, Ordering::Relaxed);
    let answered: usize = floods.into_iter().map(|h| h.join().unwrap()).sum();
    eprintln!(
        "pipelining: {} MB of answers read by the readers",
        answered / 1_000_000
    );
    // The readers were served all along: the flood was real.
    assert!(
        answered > 1_000_000,
        "the pipeliners read only {answered} bytes"
    );
}

//! The OTLP export against a real collector: rotel (`pip install rotel`,
//! a Rust OpenTelemetry collector) on loopback, printing what it receives.
//! unitwatchd runs on the host without systemd (unit checks then fail with
//! "cannot reach systemd", which is itself an exported event); what these
//! tests claim is OTLP behaviour, not systemd's.

mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_unitwatchd");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, pass or fail.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Collector {
    _proc: Proc,
    log: PathBuf,
    grpc: u16,
    http: u16,
}

impl Collector {
    fn start(dir: &Path, grpc: u16, http: u16) -> Collector {
        let log = dir.join(format!("rotel-{http}.log"));
        let child = Command::new(harness::rotel_agent())
            .args(["start", "--otlp-grpc-endpoint"])
            .arg(format!("127.0.0.1:{grpc}"))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{http}"))
            .args([
                "--debug-log",
                "metrics",
                "--debug-log",
                "logs",
                "--debug-log-verbosity",
                "detailed",
                "--exporter",
                "blackhole",
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("rotel-agent");
        let c = Collector {
            _proc: Proc(child),
            log,
            grpc,
            http,
        };
        wait_for("rotel listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", c.http)).ok()
        });
        c
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A metric as rotel printed it: unit and the data points' values and
/// attributes (the last export that carried it).
#[derive(Debug, Default)]
struct Printed {
    unit: String,
    points: Vec<(String, f64)>,
}

fn metrics(out: &str) -> std::collections::HashMap<String, Printed> {
    let mut all = std::collections::HashMap::new();
    for block in out.split("Metric #").skip(1) {
        let field = |p: &str| {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(p))
                .map(|v| v.trim().to_string())
        };
        let Some(name) = field("-> Name:") else {
            continue;
        };
        let mut m = Printed {
            unit: field("-> Unit:").unwrap_or_default(),
            ..Default::default()
        };
        let mut attrs = String::new();
        for l in block.lines().map(str::trim) {
            if let Some(a) = l.strip_prefix("-> ") {
                if !a.starts_with("Name:")
                    && !a.starts_with("Unit:")
                    && !a.starts_with("Description:")
                    && !a.starts_with("DataType:")
                    && !a.starts_with("IsMonotonic")
                    && !a.starts_with("AggregationTemporality")
                {
                    attrs = a.to_string();
                }
            } else if let Some(v) = l.strip_prefix("Value: ") {
                m.points.push((
                    std::mem::take(&mut attrs),
                    v.trim().parse().unwrap_or(f64::NAN),
                ));
            }
        }
        all.insert(name, m);
    }
    all
}

fn resource_attr(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("-> {key}: Str(")))
        .map(|v| v.trim_end_matches(')').to_string())
}

struct Daemon {
    proc: Proc,
    stderr: Arc<Mutex<String>>,
    dir: PathBuf,
}

impl Daemon {
    /// Writes `dir`/uw.toml: disk, memory, heartbeat and command checks,
    /// sweeps and exports every second.
    fn write_config(dir: &Path, daemon_extra: &str, telemetry: &str) {
        std::fs::write(dir.join("hb"), "").unwrap();
        let config = format!(
            "[daemon]\ninterval = \"1s\"\nstate_dir = \"{d}/state\"\nruntime_dir = \"{d}/run\"\n{daemon_extra}\n\
             [[disk]]\npath = \"/\"\n[memory]\n[[heartbeat]]\npath = \"{d}/hb\"\nmax_age = \"1h\"\n\
             [[check]]\ntype = \"command\"\nname = \"echo\"\ncommand = [\"/bin/echo\", \"OK | points=42;100;10\"]\n\
             [telemetry]\ninterval = \"1s\"\n{telemetry}",
            d = dir.display()
        );
        std::fs::write(dir.join("uw.toml"), config).unwrap();
    }

    fn start(dir: &Path, telemetry: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::write_config(dir, "", telemetry);
        Daemon::run(dir, env)
    }

    /// Runs `unitwatchd run` on `dir`/uw.toml, its stderr collected.
    fn run(dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.arg("-c")
            .arg(dir.join("uw.toml"))
            .arg("run")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Daemon {
            proc: Proc(child),
            stderr,
            dir: dir.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn status(&self) -> serde_json::Value {
        std::fs::read(self.dir.join("run/status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    fn stop(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.proc.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let _ = self.proc.0.wait();
    }
}

/// The check `key`'s observed value in a snapshot.
fn observed(status: &serde_json::Value, key: &str) -> f64 {
    status["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["key"] == key))
        .and_then(|c| c["observed_value"].as_f64())
        .unwrap_or_else(|| panic!("no numeric {key} in {status}"))
}

/// The log record (as rotel printed it) of the event `name`.
fn log_record<'a>(out: &'a str, name: &str) -> &'a str {
    out.split("LogRecord #")
        .find(|b| b.contains(&format!("EventName: {name}\n")))
        .unwrap_or_else(|| panic!("no log record of {name} in {out}"))
}

fn assert_exported(out: &str, heartbeat: &str, status: &serde_json::Value) {
    let m = metrics(out);
    for (name, unit) in [
        ("health.disk_usage", "%"),
        ("health.disk_inode_usage", "%"),
        ("health.memory_usage", "%"),
        ("health.heartbeat_age", "s"),
        ("unitwatch.check.status", "1"),
        ("unitwatch.health.status", "1"),
        ("unitwatch.telemetry.dropped", "{event}"),
        ("unitwatch.probe.success", "1"),
        ("unitwatch.probe.duration", "s"),
        ("unitwatch.command.perfdata", "1"),
    ] {
        let p = m
            .get(name)
            .unwrap_or_else(|| panic!("{name} not received; got {:?}", m.keys()));
        assert_eq!(p.unit, unit, "{name}");
        assert!(!p.points.is_empty(), "{name} has no data point");
    }
    // Values: what the checks measured, in the units named, the same as
    // the same checks' observed values in the snapshot of the export.
    for (metric, attr, key) in [
        (
            "health.disk_usage",
            "path: Str(/)".to_string(),
            "disk:/:utilization".to_string(),
        ),
        (
            "health.disk_inode_usage",
            "path: Str(/)".to_string(),
            "disk:/:inodes".to_string(),
        ),
        (
            "health.memory_usage",
            String::new(),
            "memory:utilization".to_string(),
        ),
        (
            "health.heartbeat_age",
            format!("path: Str({heartbeat})"),
            format!("heartbeat:{heartbeat}:age"),
        ),
    ] {
        let (a, v) = &m[metric].points[0];
        if !attr.is_empty() {
            assert_eq!(a, &attr, "{metric}");
        }
        let want = observed(status, &key);
        assert!(
            (v - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{metric} exported {v}, {key} observed {want}"
        );
    }
    // A [[check]] kind's figures, with the check's key and the label.
    assert_eq!(m["unitwatch.probe.success"].points[0].1, 1.0);
    assert_eq!(m["unitwatch.command.perfdata"].points[0].1, 42.0);
    assert!(out.contains("echo:command"), "no check attribute");
    // No units are watched, and the other checks pass: overall pass = 0.
    assert_eq!(m["unitwatch.health.status"].points[0].1, 0.0);
    // Resource attributes.
    assert_eq!(
        resource_attr(out, "service.name").as_deref(),
        Some("unitwatch")
    );
    assert_eq!(
        resource_attr(out, "service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(resource_attr(out, "os.type").as_deref(), Some("linux"));
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(
        resource_attr(out, "host.name").as_deref(),
        Some(host.to_str().unwrap())
    );
    // host.id is the machine id; with none, there is no host.id at all
    // (never an empty or made-up one).
    match std::fs::read_to_string("/etc/machine-id") {
        Ok(id) if !id.trim().is_empty() => {
            assert_eq!(resource_attr(out, "host.id").as_deref(), Some(id.trim()))
        }
        other => {
            eprintln!("no /etc/machine-id here ({other:?}): checking that host.id is absent");
            assert_eq!(resource_attr(out, "host.id"), None);
        }
    }
    assert_eq!(
        resource_attr(out, "deployment.environment").as_deref(),
        Some("ci")
    );
    // Events as log records with severity and attributes.
    let started = log_record(out, "daemon-started");
    assert!(
        started.contains("-> unitwatch.event: Str(daemon-started)"),
        "{started}"
    );
    assert!(
        started.contains("SeverityNumber: SEVERITY_NUMBER_INFO(9)"),
        "{started}"
    );
    assert!(started.contains("SeverityText: info"), "{started}");
    assert!(out.contains("InstrumentationScope unitwatchd"));
}

#[test]
fn metrics_and_events_reach_a_real_collector_over_http_and_grpc() {
    for protocol in ["http/protobuf", "grpc"] {
        let dir = tempfile::tempdir().unwrap();
        let c = Collector::start(dir.path(), free_port(), free_port());
        let port = if protocol == "grpc" { c.grpc } else { c.http };
        let mut d = Daemon::start(
            dir.path(),
            &format!("protocol = \"{protocol}\"\nendpoint = \"http://127.0.0.1:{port}\"\n"),
            &[("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")],
        );
        wait_for(
            &format!("metrics and events over {protocol}"),
            Duration::from_secs(20),
            || {
                let out = c.output();
                (out.contains("health.heartbeat_age") && out.contains("EventName: daemon-started"))
                    .then_some(())
            },
        );
        assert_eq!(d.status()["telemetry"]["protocol"], protocol);
        // On SIGTERM the daemon exports the snapshot it last wrote one last
        // time: that export and status.json hold the same measurements.
        let before = c.output().matches("health.disk_usage").count();
        d.stop();
        let out = wait_for("the last export", Duration::from_secs(10), || {
            let out = c.output();
            (out.matches("health.disk_usage").count() > before).then_some(out)
        });
        std::thread::sleep(Duration::from_millis(300));
        let out = if c.output().len() > out.len() {
            c.output()
        } else {
            out
        };
        assert_exported(
            &out,
            &dir.path().join("hb").display().to_string(),
            &d.status(),
        );
        assert!(!d.log().contains("OTLP export to"), "{}", d.log());
    }
}

#[test]
fn a_collector_that_comes_later_gets_the_data_and_failures_are_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let d = Daemon::start(
        dir.path(),
        &format!("endpoint = \"http://127.0.0.1:{http}\"\n"),
        &[("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")],
    );
    // No collector: exports fail, the daemon goes on sweeping.
    let failures = wait_for("failed exports", Duration::from_secs(20), || {
        let n = d.status()["telemetry"]["export_failures_total"].as_u64()?;
        (n >= 3).then_some(n)
    });
    assert!(failures >= 3);
    let log = d.log();
    assert_eq!(
        log.matches("telemetry: OTLP export").count(),
        1,
        "a failing export is logged once: {log}"
    );
    assert!(d.status()["telemetry"]["last_error"]
        .as_str()
        .unwrap()
        .contains(&format!("127.0.0.1:{http}")));
    let checks_before = d.status()["updated_at"].clone();
    std::thread::sleep(Duration::from_millis(1500));
    assert_ne!(d.status()["updated_at"], checks_before, "sweeps go on");

    // The collector arrives: metrics and the events queued meanwhile.
    let c = Collector::start(dir.path(), grpc, http);
    wait_for(
        "data after the collector came",
        Duration::from_secs(30),
        || {
            let out = c.output();
            (out.contains("health.memory_usage") && out.contains("EventName: daemon-started"))
                .then_some(())
        },
    );
    wait_for("recovery logged", Duration::from_secs(10), || {
        d.log().contains("works again").then_some(())
    });
    // status.json follows at the next sweep.
    let t = wait_for(
        "the snapshot to show the recovery",
        Duration::from_secs(10),
        || {
            let t = d.status()["telemetry"].clone();
            t["last_error"].is_null().then_some(t)
        },
    );
    assert!(t["exports_total"].as_u64().unwrap() >= 1, "{t}");
    assert_eq!(t["dropped_total"], 0);
}

/// A tiny HTTP/1.1 server on loopback: records each request's head and
/// answers with what `respond` makes of it (status line, content type,
/// body).
type Respond = fn(&str) -> (&'static str, &'static str, String);

fn stub_server(respond: Respond) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let s = s.clone();
            std::thread::spawn(move || loop {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let (status, ctype, out) = respond(&head);
                s.lock().unwrap().push(head);
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n{out}",
                    out.len()
                );
                if conn.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            });
        }
    });
    (port, seen)
}

/// An OTLP/HTTP endpoint that accepts every export (an empty protobuf
/// body is a valid response) and records the headers.
fn header_catcher() -> (u16, Arc<Mutex<Vec<String>>>) {
    stub_server(|_| ("200 OK", "application/x-protobuf", String::new()))
}

#[test]
fn headers_from_a_file_are_sent_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-7f3a9c";
    std::fs::write(
        dir.path().join("headers"),
        format!("# for the collector\nx-api-key = {secret}\n"),
    )
    .unwrap();
    let (port, seen) = header_catcher();
    let mut d = Daemon::start(
        dir.path(),
        &format!(
            "endpoint = \"http://127.0.0.1:{port}\"\nheaders_file = \"{}\"\n",
            dir.path().join("headers").display()
        ),
        &[],
    );
    wait_for("an export with the header", Duration::from_secs(20), || {
        let s = seen.lock().unwrap();
        s.iter()
            .any(|h| {
                h.starts_with("POST /v1/metrics") && h.contains(&format!("x-api-key: {secret}"))
            })
            .then_some(())
    });
    d.stop();
    // Nowhere in what the daemon says: its log, its status snapshot.
    assert!(!d.log().contains(secret), "{}", d.log());
    let status = std::fs::read_to_string(dir.path().join("run/status.json")).unwrap();
    assert!(!status.contains(secret));

    // A broken headers file is refused at start, by path and line, with
    // no value quoted back.
    std::fs::write(dir.path().join("headers"), format!("x-api-key {secret}\n")).unwrap();
    let out = Command::new(BIN)
        .arg("-c")
        .arg(dir.path().join("uw.toml"))
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:1:", dir.path().join("headers").display())),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
}

#[test]
fn check_otlp_reports_whether_the_collector_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), free_port(), free_port());
    std::fs::write(dir.path().join("hb"), "").unwrap();
    let config = |port: u16| {
        format!(
            "[daemon]\nstate_dir = \"{d}/state\"\nruntime_dir = \"{d}/run\"\n[memory]\n\
             [telemetry]\nenabled = false\nendpoint = \"http://127.0.0.1:{port}\"\n",
            d = dir.path().display()
        )
    };
    std::fs::write(dir.path().join("ok.toml"), config(c.http)).unwrap();
    let out = Command::new(BIN)
        .args([
            "-c",
            dir.path().join("ok.toml").to_str().unwrap(),
            "check",
            "--otlp",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("accepted"), "{err}");
    wait_for("the one-shot export", Duration::from_secs(10), || {
        c.output().contains("health.memory_usage").then_some(())
    });

    std::fs::write(dir.path().join("down.toml"), config(free_port())).unwrap();
    let out = Command::new(BIN)
        .args([
            "-c",
            dir.path().join("down.toml").to_str().unwrap(),
            "check",
            "--otlp",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("failed"), "{err}");
}

/// In the real systemd, as the shipped service runs: a collector that
/// accepts connections and never answers does not delay a restart; once a
/// real collector takes its place, the unit's metrics and the events of
/// the failure arrive.
#[test]
fn a_hung_collector_delays_no_restart_and_unit_metrics_follow() {
    let sb = harness::Sandbox::boot("telemetry");
    sb.unit(
        "worker.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    );
    sb.ok("systemctl start worker");
    sb.ok("systemd-run --unit=blackhole python3 -c 'import socket\n\
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind((\"127.0.0.1\", 4318)); s.listen(64); held = []\n\
while True: held.append(s.accept())'");
    sb.wait_for("the hung collector", Duration::from_secs(10), || {
        sb.sh("ss -ltn | grep -q 127.0.0.1:4318")
            .status
            .success()
            .then_some(())
    });
    sb.start_unitwatch(
        "[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"1s\"\n\
         [[unit]]\nname = \"worker.service\"\n\
         [telemetry]\ninterval = \"1s\"\ntimeout = \"10s\"\n",
        "",
    );
    sb.wait_active("unitwatch.service", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2)); // exports now hang
    let killed = Instant::now();
    sb.kill_main("worker.service");
    sb.wait_for("the restart", Duration::from_secs(8), || {
        (sb.journal("UNITWATCH_EVENT=unit-restarted").len() == 1).then_some(())
    });
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "restart after {took:?} with a hung collector (backoff 1 s)"
    );
    let t = sb.status_json()["telemetry"].clone();
    assert_eq!(t["exports_total"], 0, "{t}");

    // A real collector in its place.
    sb.ok("systemctl stop blackhole");
    sb.start_rotel();
    let out = sb.wait_for("unit metrics and events", Duration::from_secs(90), || {
        let out = sb.read("/var/log/rotel.log")?;
        (out.contains("health.service_active")
            && out.contains("EventName: unit-restarted")
            && out.contains("EventName: unit-failed"))
        .then_some(out)
    });
    let m = metrics(&out);
    let active = &m["health.service_active"];
    assert_eq!(active.unit, "1");
    assert_eq!(
        active.points,
        vec![("unit: Str(worker.service)".to_string(), 1.0)]
    );
    assert_eq!(m["health.crash_count"].unit, "{crash}");
    assert_eq!(
        m["health.crash_count"].points,
        vec![("unit: Str(worker.service)".to_string(), 1.0)]
    );
    assert_eq!(
        m["unitwatch.unit.restarts"].points,
        vec![("unit: Str(worker.service)".to_string(), 1.0)]
    );
    assert_eq!(m["unitwatch.unit.backoff_delay"].unit, "s");
    assert!(
        out.contains("-> unitwatch.unit: Str(worker.service)"),
        "{out}"
    );
    // Exactly the severities of the README: a failure and a restart are
    // errors.
    for name in ["unit-failed", "unit-restarted"] {
        let r = log_record(&out, name);
        assert!(r.contains("SeverityText: error\n"), "{name}: {r}");
        assert!(
            r.contains("SeverityNumber: SEVERITY_NUMBER_ERROR(17)"),
            "{name}: {r}"
        );
    }
    sb.wait_for("recovery in the snapshot", Duration::from_secs(30), || {
        sb.status_json()["telemetry"]["last_error"]
            .is_null()
            .then_some(())
    });
}

/// Azure's IMDS as a stub: the compute document, only with `Metadata: true`.
fn imds_stub() -> (u16, Arc<Mutex<Vec<String>>>) {
    stub_server(|head| {
        if !head.to_ascii_lowercase().contains("metadata: true") {
            return (
                "400 Bad Request",
                "text/plain",
                "Metadata header required".into(),
            );
        }
        if !head.starts_with("GET /metadata/instance/compute?api-version=") {
            return ("404 Not Found", "text/plain", String::new());
        }
        (
            "200 OK",
            "application/json",
            r#"{"location":"westeurope","name":"bot-vm-1","vmId":"5c08b38e-4d57-4c23-ac45-aca61037f084",
               "vmSize":"Standard_B2s","resourceGroupName":"bots","subscriptionId":"0f5c4f3e",
               "resourceId":"/subscriptions/0f5c4f3e/resourceGroups/bots/providers/Microsoft.Compute/virtualMachines/bot-vm-1",
               "vmScaleSetName":"","osType":"Linux"}"#
                .into(),
        )
    })
}

#[test]
fn on_azure_the_resource_carries_imds_attributes_and_off_azure_imds_is_never_asked() {
    for azure in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let dmi = dir.path().join("sys/class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        let tag = if azure {
            unitwatch::telemetry::resource::AZURE_ASSET_TAG
        } else {
            "No Asset Tag"
        };
        std::fs::write(dmi.join("chassis_asset_tag"), format!("{tag}\n")).unwrap();
        let (imds, asked) = imds_stub();
        let c = Collector::start(dir.path(), free_port(), free_port());
        Daemon::write_config(
            dir.path(),
            &format!("sys_dir = \"{}\"", dir.path().join("sys").display()),
            &format!(
                "endpoint = \"http://127.0.0.1:{}\"\nimds_endpoint = \"http://127.0.0.1:{imds}\"\n",
                c.http
            ),
        );
        let d = Daemon::run(dir.path(), &[]);
        let out = wait_for("metrics", Duration::from_secs(20), || {
            let out = c.output();
            out.contains("health.memory_usage").then_some(out)
        });
        drop(d);
        if azure {
            assert_eq!(
                resource_attr(&out, "cloud.provider").as_deref(),
                Some("azure")
            );
            assert_eq!(
                resource_attr(&out, "cloud.platform").as_deref(),
                Some("azure_vm")
            );
            assert_eq!(
                resource_attr(&out, "cloud.region").as_deref(),
                Some("westeurope")
            );
            assert_eq!(
                resource_attr(&out, "host.type").as_deref(),
                Some("Standard_B2s")
            );
            assert_eq!(
                resource_attr(&out, "azure.vm.name").as_deref(),
                Some("bot-vm-1")
            );
            assert_eq!(asked.lock().unwrap().len(), 1, "IMDS is asked once");
        } else {
            assert_eq!(resource_attr(&out, "cloud.provider"), None);
            assert!(
                asked.lock().unwrap().is_empty(),
                "off Azure, IMDS is never asked"
            );
        }
    }
}

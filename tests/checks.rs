//! The tcp, http and command checks against real peers: listeners on
//! loopback, an address in a network namespace this test makes (its
//! traffic dropped by netem), a real HTTP(S) server (tests/check_server.py,
//! with a CA and a certificate made here by openssl), and the real Nagios
//! plugins of Debian's monitoring-plugins-basic. Each case runs the real
//! `unitwatchd check --json` and reads what it printed.
//!
//! Name resolution is confined to /etc/hosts (a private mount of
//! nsswitch.conf for the run), so a name that does not resolve is asked of
//! no DNS server: no address but loopback and the namespace's is used.

mod harness;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PLUGINS: &str = "/usr/lib/nagios/plugins";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `unitwatchd check --json` on `body`, in a mount namespace whose
/// nsswitch.conf resolves hosts from files only.
fn check(dir: &Path, body: &str) -> (Value, Output) {
    let cfg = dir.join("unitwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nstate_dir = \"{0}/state\"\nruntime_dir = \"{0}/run\"\n{body}",
            dir.display()
        ),
    )
    .unwrap();
    let nss = dir.join("nsswitch.conf");
    std::fs::write(&nss, "hosts: files\n").unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" /etc/nsswitch.conf && exec "$2" --config "$3" check --json"#)
        .arg("sh")
        .arg(&nss)
        .arg(env!("CARGO_BIN_EXE_unitwatchd"))
        .arg(&cfg)
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out)
}

fn result<'a>(snap: &'a Value, key: &str) -> &'a Value {
    harness::check_of(snap, key)
}

fn output(r: &Value) -> &str {
    r["output"].as_str().unwrap_or("")
}

fn measurement(r: &Value, name: &str) -> Option<f64> {
    r["measurements"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)?["value"]
        .as_f64()
}

/// The snapshot's /metrics exposition, through the library's renderer,
/// checked by promtool.
fn metrics_of(snap: &Value) -> String {
    let s: unitwatch::snapshot::Snapshot = serde_json::from_value(snap.clone()).unwrap();
    let now = unitwatch::http::metrics::PerScrape::aged(1.0);
    let (_, text) = unitwatch::http::metrics::Exposition::new(Some(&s)).scrape(false, now);
    harness::promtool_check(text.as_bytes());
    text
}

/// tests/check_server.py, ready to answer.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path, port: u16, tls: Option<(&Path, &Path)>, token: Option<&Path>) -> Server {
        let log = dir.join(format!("server-{port}.log"));
        let (cert, key) = tls
            .map(|(c, k)| (c.display().to_string(), k.display().to_string()))
            .unwrap_or_default();
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_server.py"))
            .arg(port.to_string())
            .arg(&log)
            .arg(cert)
            .arg(key)
            .args(token.map(|t| t.display().to_string()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Server { child, log }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tcp_passes_on_a_listener_and_says_how_it_failed_otherwise() {
    let d = tempfile::tempdir().unwrap();
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    let v6 = std::net::TcpListener::bind("[::1]:0").ok();
    let closed = free_port();
    let mut body = format!(
        "[[check]]\ntype = \"tcp\"\nname = \"open\"\naddress = \"127.0.0.1:{port}\"\n\
         [[check]]\ntype = \"tcp\"\nname = \"closed\"\naddress = \"127.0.0.1:{closed}\"\n\
         [[check]]\ntype = \"tcp\"\nname = \"unknown\"\naddress = \"no-such-host.invalid:80\"\n\
         [[check]]\ntype = \"tcp\"\nname = \"by-name\"\naddress = \"localhost:{port}\"\n\
         [[check]]\ntype = \"tcp\"\nname = \"slow\"\naddress = \"127.0.0.1:{port}\"\nlatency_warn = \"0ms\"\n"
    );
    if let Some(l) = &v6 {
        let p6 = l.local_addr().unwrap().port();
        body += &format!("[[check]]\ntype = \"tcp\"\nname = \"v6\"\naddress = \"[::1]:{p6}\"\n");
    }
    let (snap, _) = check(d.path(), &body);
    // Every run closed with a reset: no socket of the check's is left
    // behind (a plain close, as no one accepts, would leave it in
    // FIN-WAIT-2; with a peer that closes too, in TIME-WAIT for a minute).
    let left = std::process::Command::new("ss")
        .args(["-Htan", &format!("( dport = :{port} )")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "",
        "sockets left behind"
    );

    let r = result(&snap, "open:tcp");
    assert_eq!(r["status"], "pass", "{r:#}");
    assert_eq!(r["observed_unit"], "ms");
    assert!(r["observed_value"].as_f64().unwrap() < 1000.0);
    assert_eq!(measurement(r, "probe_success"), Some(1.0));
    assert!(measurement(r, "probe_duration_seconds").unwrap() > 0.0);

    let r = result(&snap, "closed:tcp");
    assert_eq!(r["status"], "fail");
    assert_eq!(
        output(r),
        format!("connection refused by 127.0.0.1:{closed}")
    );
    assert_eq!(measurement(r, "probe_success"), Some(0.0));

    let r = result(&snap, "unknown:tcp");
    assert_eq!(r["status"], "fail");
    assert!(
        output(r).starts_with("cannot resolve no-such-host.invalid: "),
        "{r:#}"
    );
    // A name with two addresses (::1 and 127.0.0.1): the one listening wins.
    assert_eq!(result(&snap, "by-name:tcp")["status"], "pass");
    let r = result(&snap, "slow:tcp");
    assert_eq!(r["status"], "warn");
    assert!(output(r).ends_with(" ms (warn at 0s)"), "{r:#}");
    if v6.is_some() {
        assert_eq!(result(&snap, "v6:tcp")["status"], "pass");
    }
    let text = metrics_of(&snap);
    assert!(
        text.contains("unitwatch_probe_success{check=\"closed:tcp\"} 0"),
        "{text}"
    );
}

/// A network namespace with a veth pair and an address in it, to which
/// everything sent is lost: the host's neighbour entry for it is a MAC
/// nobody has, so the namespace's side drops every frame (netem and a
/// packet filter are not at hand on every machine; this needs neither).
struct DropNet {
    name: String,
    host_if: String,
}

impl DropNet {
    fn new() -> DropNet {
        let n = std::process::id() % 10000;
        let name = format!("uwdrop{n}");
        let host_if = format!("uwd{n}h");
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        // Made first, so that a failure half-way is cleaned up too.
        let net = DropNet {
            name: name.clone(),
            host_if: host_if.clone(),
        };
        sh(&format!(
            "ip netns add {name} && ip link add {host_if} type veth peer name uwd{n}n && \
             ip link set uwd{n}n netns {name} && \
             ip addr add 10.254.{a}.1/30 dev {host_if} && ip link set {host_if} up && \
             ip -n {name} addr add 10.254.{a}.2/30 dev uwd{n}n && ip -n {name} link set uwd{n}n up && \
             ip -n {name} link set lo up && \
             ip neigh replace 10.254.{a}.2 lladdr 02:00:00:00:de:ad dev {host_if} nud permanent",
            a = n % 250
        ));
        net
    }
    fn address(&self) -> String {
        let n = std::process::id() % 10000;
        format!("10.254.{}.2", n % 250)
    }
}

impl Drop for DropNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn tcp_to_an_address_whose_traffic_is_dropped_times_out_at_the_timeout() {
    let d = tempfile::tempdir().unwrap();
    let net = DropNet::new();
    let body = format!(
        "[[check]]\ntype = \"tcp\"\nname = \"dropped\"\naddress = \"{}:4002\"\ninterval = \"10s\"\ntimeout = \"1500ms\"\n",
        net.address()
    );
    let t0 = Instant::now();
    let (snap, _) = check(d.path(), &body);
    let took = t0.elapsed();
    let r = result(&snap, "dropped:tcp");
    assert_eq!(r["status"], "fail");
    assert_eq!(
        output(r),
        format!(
            "no answer from {}:4002 within 1.5s (timed out)",
            net.address()
        )
    );
    let us = r["duration_us"].as_u64().unwrap();
    assert!((1_450_000..2_000_000).contains(&us), "{us} us");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

/// A CA and a server certificate for 127.0.0.1 valid for `days`.
fn certificates(dir: &Path, days: u32) -> (PathBuf, PathBuf, PathBuf) {
    let d = dir.display();
    sh(&format!(
        "cd {d} && \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=unitwatch-test-ca 2>/dev/null && \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null && \
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature\\nextendedKeyUsage=serverAuth\\n' > ext && \
         openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days {days} -extfile ext 2>/dev/null"
    ));
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

#[test]
fn http_status_keyword_latency_json_redirects_and_the_body_cap() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let _srv = Server::start(d.path(), port, None, None);
    let u = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let c = |name: &str, extra: &str| {
        format!("[[check]]\ntype = \"http\"\nname = \"{name}\"\ninterval = \"10s\"\n{extra}\n")
    };
    let body = [
        c("ok", &format!("url = \"{}\"\nbody_contains = \"ok\"", u("/ok"))),
        c("head", &format!("url = \"{}\"\nmethod = \"HEAD\"", u("/ok"))),
        c("status", &format!("url = \"{}\"", u("/fail"))),
        c("keyword", &format!("url = \"{}\"\nbody_contains = \"banana\"", u("/ok"))),
        c("regex", &format!("url = \"{}\"\nbody_regex = \"status: (ok|up)\"", u("/ok"))),
        c("slow", &format!("url = \"{}\"\nlatency_crit = \"500ms\"\ntimeout = \"3s\"", u("/slow?ms=900"))),
        c("hang", &format!("url = \"{}\"\ntimeout = \"1s\"", u("/hang"))),
        c("big", &format!("url = \"{}\"\nbody_contains = \"needle\"", u("/big"))),
        c("big-all", &format!("url = \"{}\"\nbody_contains = \"needle\"\nmax_body = \"11MB\"", u("/big"))),
        c("json-warn", &format!("url = \"{}\"\njson_path = \"$.pipeline.points_5m\"\nwarn_below = 100\ncrit_below = 10", u("/stats?n=50"))),
        c("json-crit", &format!("url = \"{}\"\njson_path = \"$.pipeline.points_5m\"\nwarn_below = 100\ncrit_below = 10", u("/stats?n=5"))),
        c("json-ok", &format!("url = \"{}\"\njson_path = \"pipeline.points_5m\"\nwarn_below = 100\ncrit_above = 1000", u("/stats?n=500"))),
        c("json-high", &format!("url = \"{}\"\njson_path = \"pipeline.points_5m\"\ncrit_above = 1000", u("/stats?n=5000"))),
        c("json-missing", &format!("url = \"{}\"\njson_path = \"$.pipeline.nope\"\ncrit_below = 1", u("/stats?n=5"))),
        c("redirect", &format!("url = \"{}\"", u("/redirect"))),
        c("followed", &format!("url = \"{}\"\nfollow_redirects = true\nbody_contains = \"ok\"", u("/redirect"))),
        c("classes", &format!("url = \"{}\"\nexpect_status = [\"3xx\", 500]", u("/fail"))),
        c("refused", &format!("url = \"http://127.0.0.1:{}/\"", free_port())),
    ]
    .concat();
    let t0 = Instant::now();
    let (snap, _) = check(d.path(), &body);
    // All at once, each on its own clock: the hang's 1 s bounds the run.
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let st = |k: &str| result(&snap, k)["status"].as_str().unwrap().to_string();
    let out = |k: &str| output(result(&snap, k)).to_string();

    assert_eq!(st("ok:http"), "pass", "{}", out("ok:http"));
    assert_eq!(st("head:http"), "pass", "{}", out("head:http"));
    assert_eq!(st("regex:http"), "pass", "{}", out("regex:http"));
    assert_eq!(st("status:http"), "fail");
    assert_eq!(
        out("status:http"),
        format!("{}: HTTP 500 (expected 2xx)", u("/fail"))
    );
    assert_eq!(
        measurement(result(&snap, "status:http"), "http_response_status"),
        Some(500.0)
    );
    assert_eq!(st("keyword:http"), "fail");
    assert!(out("keyword:http").ends_with(": \"banana\" not found in the body"));
    assert_eq!(st("slow:http"), "fail");
    assert!(
        out("slow:http").contains("(limit 500ms)"),
        "{}",
        out("slow:http")
    );
    assert_eq!(st("hang:http"), "fail");
    assert_eq!(
        out("hang:http"),
        format!("no answer from {} within 1s (timed out)", u("/hang"))
    );
    let hang_us = result(&snap, "hang:http")["duration_us"].as_u64().unwrap();
    assert!((950_000..1_400_000).contains(&hang_us), "{hang_us}");
    // The cap: 64 KiB read of 10 MB, and the needle at the end not seen.
    assert_eq!(st("big:http"), "fail");
    assert!(
        out("big:http").ends_with("\"needle\" not found in the first 64.0 KiB"),
        "{}",
        out("big:http")
    );
    assert_eq!(st("big-all:http"), "pass", "{}", out("big-all:http"));
    assert_eq!(st("json-warn:http"), "warn");
    assert!(
        out("json-warn:http").contains("$.pipeline.points_5m is 50 ("),
        "{}",
        out("json-warn:http")
    );
    assert_eq!(
        measurement(result(&snap, "json-warn:http"), "http_json_value"),
        Some(50.0)
    );
    assert_eq!(st("json-crit:http"), "fail");
    assert_eq!(st("json-ok:http"), "pass", "{}", out("json-ok:http"));
    assert_eq!(st("json-high:http"), "fail");
    assert_eq!(st("json-missing:http"), "fail");
    assert!(out("json-missing:http").ends_with("$.pipeline.nope: no key \"nope\""));
    assert_eq!(st("redirect:http"), "fail");
    assert!(out("redirect:http").contains("HTTP 302 (expected 2xx)"));
    assert_eq!(st("followed:http"), "pass", "{}", out("followed:http"));
    assert_eq!(st("classes:http"), "pass");
    assert_eq!(st("refused:http"), "fail");
    assert!(
        out("refused:http").starts_with("cannot connect to http://127.0.0.1:"),
        "{}",
        out("refused:http")
    );
    metrics_of(&snap);
}

#[test]
fn https_certificate_expiry_is_graded_and_an_unknown_ca_refused() {
    let d = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(d.path(), 2);
    let port = free_port();
    let _srv = Server::start(d.path(), port, Some((&cert, &key)), None);
    let url = format!("https://127.0.0.1:{port}/ok");
    let body = format!(
        "[[check]]\ntype = \"http\"\nname = \"expiring\"\nurl = \"{url}\"\nca_file = \"{ca}\"\ncert_expiry_warn = \"14d\"\ncert_expiry_crit = \"3d\"\n\
         [[check]]\ntype = \"http\"\nname = \"soon\"\nurl = \"{url}\"\nca_file = \"{ca}\"\ncert_expiry_warn = \"3d\"\ncert_expiry_crit = \"1d\"\n\
         [[check]]\ntype = \"http\"\nname = \"fine\"\nurl = \"{url}\"\nca_file = \"{ca}\"\nbody_contains = \"ok\"\n\
         [[check]]\ntype = \"http\"\nname = \"untrusted\"\nurl = \"{url}\"\n",
        ca = ca.display()
    );
    let (snap, _) = check(d.path(), &body);
    let r = result(&snap, "expiring:http");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(r["observed_unit"], "days");
    let days = r["observed_value"].as_f64().unwrap();
    assert!((1.8..=2.0).contains(&days), "{days}");
    assert!(
        output(r).contains("the certificate expires in 1.9 days"),
        "{r:#}"
    );
    assert!(output(r).contains("(limit 3days)"), "{r:#}");
    let expiry = measurement(r, "tls_cert_expiry_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (expiry - now - 2.0 * 86400.0).abs() < 600.0,
        "{expiry} vs {now}"
    );
    assert_eq!(result(&snap, "soon:http")["status"], "warn");
    assert_eq!(
        result(&snap, "fine:http")["status"],
        "pass",
        "{:#}",
        result(&snap, "fine:http")
    );
    let r = result(&snap, "untrusted:http");
    assert_eq!(r["status"], "fail");
    assert!(output(r).to_lowercase().contains("certificate"), "{r:#}");
    let text = metrics_of(&snap);
    assert!(text.contains("unitwatch_tls_cert_expiry_timestamp_seconds{check=\"expiring:http\"}"));
}

#[test]
fn http_asks_the_server_to_close_unless_told_otherwise() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let srv = Server::start(d.path(), port, None, None);
    let body = format!(
        "[[check]]\ntype = \"http\"\nname = \"plain\"\nurl = \"http://127.0.0.1:{port}/ok?who=plain\"\n\
         [[check]]\ntype = \"http\"\nname = \"kept\"\nurl = \"http://127.0.0.1:{port}/ok?who=kept\"\n\
         headers = {{ Connection = \"keep-alive\", X-Probe = \"1\" }}\n\
         [[check]]\ntype = \"http\"\nname = \"followed\"\nurl = \"http://127.0.0.1:{port}/ok?who=followed\"\nfollow_redirects = true\n"
    );
    let (snap, _) = check(d.path(), &body);
    assert_eq!(result(&snap, "plain:http")["status"], "pass", "{snap:#}");
    assert_eq!(result(&snap, "kept:http")["status"], "pass", "{snap:#}");
    assert_eq!(result(&snap, "followed:http")["status"], "pass", "{snap:#}");
    let log = std::fs::read_to_string(&srv.log).unwrap();
    let sent = |who: &str| -> serde_json::Value {
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["path"].as_str().unwrap().ends_with(&format!("who={who}")))
            .unwrap_or_else(|| panic!("no request of {who}: {log}"))["headers"]
            .clone()
    };
    // The server closes first, so the TIME_WAIT of each run is its own.
    assert_eq!(sent("plain")["connection"], "close", "{log}");
    // A configured Connection header wins, and is sent once.
    assert_eq!(sent("kept")["connection"], "keep-alive", "{log}");
    assert_eq!(sent("kept")["x-probe"], "1", "{log}");
    // The plain transport (hyper's connection API) and reqwest (here for
    // the redirects) send the same head.
    for who in ["plain", "followed"] {
        let h = sent(who);
        assert_eq!(h["host"], format!("127.0.0.1:{port}"), "{who}: {log}");
        assert_eq!(h["connection"], "close", "{who}: {log}");
        assert_eq!(h["accept"], "*/*", "{who}: {log}");
        assert_eq!(
            h["user-agent"],
            concat!("unitwatch/", env!("CARGO_PKG_VERSION")),
            "{who}: {log}"
        );
    }
}

#[test]
fn the_token_and_the_urls_secrets_are_shown_nowhere() {
    let d = tempfile::tempdir().unwrap();
    let token = "tok-3f9a1c77e2d4";
    let token_file = d.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let port = free_port();
    let srv = Server::start(d.path(), port, None, Some(&token_file));
    let body = format!(
        "[[check]]\ntype = \"http\"\nname = \"auth\"\nurl = \"http://127.0.0.1:{port}/auth?key=q-8e1b0d\"\ntoken_file = \"{tf}\"\n\
         [[check]]\ntype = \"http\"\nname = \"denied\"\nurl = \"http://u:pw-77c2aa@127.0.0.1:{port}/fail?key=q-8e1b0d\"\n\
         [[check]]\ntype = \"http\"\nname = \"dead\"\nurl = \"http://127.0.0.1:{dead}/x?key=q-8e1b0d\"\ntoken_file = \"{tf}\"\n",
        tf = token_file.display(),
        dead = free_port()
    );
    let (snap, out) = check(d.path(), &body);
    assert_eq!(result(&snap, "auth:http")["status"], "pass", "{snap:#}");
    let r = result(&snap, "denied:http");
    assert_eq!(r["status"], "fail");
    assert_eq!(
        output(r),
        format!("http://***@127.0.0.1:{port}/fail?***: HTTP 500 (expected 2xx)")
    );
    // The server got the token: it was sent, and only to it.
    let log = std::fs::read_to_string(&srv.log).unwrap();
    assert!(log.contains(&format!("Bearer {token}")), "{log}");
    let everything = format!(
        "{}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        metrics_of(&snap)
    );
    for secret in [token, "q-8e1b0d", "pw-77c2aa"] {
        assert!(
            !everything.contains(secret),
            "{secret} shown in:\n{everything}"
        );
    }
}

#[test]
fn nagios_plugins_pass_warn_fail_and_unknown_with_their_perfdata() {
    let d = tempfile::tempdir().unwrap();
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    let c = |name: &str, argv: &str| {
        format!("[[check]]\ntype = \"command\"\nname = \"{name}\"\ninterval = \"10s\"\ncommand = [{argv}]\n")
    };
    let body = [
        c(
            "tcp",
            &format!("\"{PLUGINS}/check_tcp\", \"-H\", \"127.0.0.1\", \"-p\", \"{port}\""),
        ),
        c(
            "warn",
            &format!("\"{PLUGINS}/check_dummy\", \"1\", \"a warning\""),
        ),
        c(
            "crit",
            &format!("\"{PLUGINS}/check_dummy\", \"2\", \"down\""),
        ),
        c(
            "unknown",
            &format!("\"{PLUGINS}/check_dummy\", \"3\", \"no idea\""),
        ),
        c(
            "disk",
            &format!("\"{PLUGINS}/check_disk\", \"-w\", \"1\", \"-c\", \"1\", \"-p\", \"/\""),
        ),
        c("missing", &format!("\"{PLUGINS}/check_nonexistent\"")),
        c(
            "closed",
            &format!(
                "\"{PLUGINS}/check_tcp\", \"-H\", \"127.0.0.1\", \"-p\", \"{}\"",
                free_port()
            ),
        ),
    ]
    .concat();
    let (snap, _) = check(d.path(), &body);
    let r = result(&snap, "tcp:command");
    assert_eq!(r["status"], "pass", "{r:#}");
    assert_eq!(r["observed_value"], "OK");
    assert!(output(r).starts_with("TCP OK - "), "{r:#}");
    let time = r["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "command_perfdata" && m["labels"]["label"] == "time")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(time["labels"]["uom"], "s");
    let r = result(&snap, "warn:command");
    assert_eq!(
        (r["status"].as_str(), output(r)),
        (Some("warn"), "WARNING: a warning")
    );
    let r = result(&snap, "crit:command");
    assert_eq!(
        (r["status"].as_str(), output(r)),
        (Some("fail"), "CRITICAL: down")
    );
    let r = result(&snap, "unknown:command");
    assert_eq!(r["status"], "fail");
    assert_eq!(r["observed_value"], "UNKNOWN");
    assert_eq!(output(r), "UNKNOWN: no idea");
    let r = result(&snap, "disk:command");
    assert_eq!(r["status"], "pass", "{r:#}");
    assert!(output(r).starts_with("DISK OK"), "{r:#}");
    let r = result(&snap, "missing:command");
    assert_eq!(r["status"], "fail");
    assert_eq!(
        output(r),
        format!("cannot run {PLUGINS}/check_nonexistent: No such file or directory (os error 2)")
    );
    assert_eq!(result(&snap, "closed:command")["status"], "fail");
    let text = metrics_of(&snap);
    assert!(
        text.lines().any(|l| l.starts_with(
            "unitwatch_command_perfdata{check=\"tcp:command\",label=\"time\",uom=\"s\"} "
        )),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("unitwatch_command_perfdata{check=\"disk:command\",label=\"/\"")),
        "{text}"
    );
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_children() {
    let d = tempfile::tempdir().unwrap();
    // A marker no other process has: the sleeps' argument.
    let marker = format!("{}.{}", 4000 + std::process::id() % 1000, 271);
    let body = format!(
        "[[check]]\ntype = \"command\"\nname = \"sleepy\"\ninterval = \"10s\"\ntimeout = \"1s\"\n\
         command = [\"/bin/sh\", \"-c\", \"sleep {marker} & sleep {marker}; echo never\"]\n"
    );
    let t0 = Instant::now();
    let (snap, _) = check(d.path(), &body);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let r = result(&snap, "sleepy:command");
    assert_eq!(r["status"], "fail");
    assert_eq!(
        output(r),
        "/bin/sh did not finish within 1s (timed out); its process group was killed"
    );
    std::thread::sleep(Duration::from_millis(200));
    let left = Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "left over: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

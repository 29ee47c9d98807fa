//! Alert channels against real receivers on loopback: an HTTP receiver
//! standing in for Discord, Slack and a webhook target (it records every
//! request and answers from a script: 429 with retry_after, 500, a hang),
//! and a real SMTP server (aiosmtpd) with STARTTLS, implicit TLS and AUTH.
//! Payloads are checked field by field against the services' documented
//! formats. The daemon's own use of them, in a real systemd, is in
//! tests/alerts_systemd.rs.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use unitwatch::alerts::{self, Alerts};
use unitwatch::config::Config;
use unitwatch::events::{Event, Kind, Severity};

/// Event sinks are process-wide: one test at a time in this file.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Debug)]
enum Answer {
    Reply {
        status: u16,
        body: &'static str,
        retry_after: Option<&'static str>,
    },
    /// Never answers (the client's timeout must end it).
    Hang,
    /// Answers 404 with the request's path in the body, as a service that
    /// echoes what it was sent: the token must still not reach a log.
    EchoPath404,
}

fn reply(status: u16, body: &'static str) -> Answer {
    Answer::Reply {
        status,
        body,
        retry_after: None,
    }
}

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    at: Instant,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    default: Answer,
}

impl Receiver {
    async fn start(default: Answer, script: Vec<Answer>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            default,
        };
        let app = axum::Router::new().fallback(handle).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` requests came (and returns them), or panics.
    async fn wait(&self, n: usize, within: Duration) -> Vec<Seen> {
        let end = Instant::now() + within;
        loop {
            let s = self.seen();
            if s.len() >= n {
                return s;
            }
            assert!(
                Instant::now() < end,
                "{} of {n} requests within {within:?}",
                s.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(State(r): State<Receiver>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec();
    r.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        headers,
        body,
        at: Instant::now(),
    });
    let answer = r
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(r.default.clone());
    match answer {
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            Response::new(Body::empty())
        }
        Answer::EchoPath404 => Response::builder()
            .status(404)
            .body(Body::from(format!("unknown webhook {path}")))
            .unwrap(),
        Answer::Reply {
            status,
            body,
            retry_after,
        } => {
            let mut b = Response::builder().status(StatusCode::from_u16(status).unwrap());
            if let Some(ra) = retry_after {
                b = b.header("retry-after", ra);
            }
            b.body(Body::from(body)).unwrap()
        }
    }
}

/// A config in `dir` with `tables` ([[alert]] ...).
fn config(dir: &Path, tables: &str) -> Config {
    let text = format!(
        "[daemon]\nstate_dir = \"{0}/state\"\nruntime_dir = \"{0}/run\"\n{tables}",
        dir.display()
    );
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("unitwatch.toml"), &text).unwrap();
    Config::parse(&text, &dir.join("unitwatch.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn start(c: &Config) -> Alerts {
    let specs = alerts::resolve(c, &no_env).unwrap();
    Alerts::start(&specs, c.alerts_state_path()).unwrap()
}

fn limit() -> Event {
    Event::new(
        Kind::RestartLimit,
        Severity::Critical,
        "worker.service: 5 restarts in the last hour, the limit",
    )
    .unit("worker.service")
}

fn failed() -> Event {
    Event::new(
        Kind::UnitFailed,
        Severity::Error,
        "worker.service failed (Result=signal)",
    )
    .unit("worker.service")
}

fn recovered() -> Event {
    Event::new(
        Kind::UnitRecovered,
        Severity::Info,
        "worker.service is active again",
    )
    .unit("worker.service")
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| f[key].as_str().unwrap().to_string())
        .collect()
}

fn gap(s: &[Seen], i: usize) -> Duration {
    s[i].at - s[i - 1].at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_embed_and_retries_through_429_500_and_a_hang() {
    let _g = SERIAL.lock().await;
    let rx = Receiver::start(
        reply(204, ""),
        vec![
            reply(
                429,
                r#"{"message": "You are being rate limited.", "retry_after": 2.5, "global": false}"#,
            ),
            reply(500, "oops"),
            Answer::Hang,
        ],
    )
    .await;
    let d = tempfile::tempdir().unwrap();
    let c = config(
        d.path(),
        &format!(
            "[[alert]]\ntype = \"discord\"\nurl = \"{}\"\nmention = \"<@&4242>\"\ntimeout = \"1s\"\n",
            rx.url("/api/webhooks/123/tok-EN")
        ),
    );
    let a = start(&c);
    let t0 = Instant::now();
    limit().emit();
    assert!(
        t0.elapsed() < Duration::from_millis(50),
        "emit must not wait"
    );
    let s = rx.wait(4, Duration::from_secs(20)).await;
    // 429: the body's retry_after (2.5 s, not the 1 s a backoff would
    // wait); 500: the first backoff (1 s); the hang: the 1 s timeout, then
    // 2 s. Lower bounds tight, upper ones loose: a loaded machine is slow,
    // never early (but for the timeout, counted from the attempt's start,
    // a little before the receiver sees it).
    let within = |i: usize, lo: u64, hi: u64| {
        let g = gap(&s, i);
        assert!(
            g >= Duration::from_millis(lo) && g < Duration::from_millis(hi),
            "gap {i}: {g:?} not in {lo}..{hi} ms"
        );
    };
    within(1, 2500, 3400);
    within(2, 1000, 1900);
    within(3, 2900, 4500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.seen().len(), 4, "delivered: no more attempts");
    assert!(
        s.iter().all(|x| x.body == s[0].body),
        "the same body each time"
    );
    assert_eq!(s[0].path, "/api/webhooks/123/tok-EN");
    assert_eq!(s[0].headers["content-type"], "application/json");

    // https://discord.com/developers/docs/resources/webhook#execute-webhook
    let p = s[0].json();
    assert_eq!(p["username"], "unitwatch");
    assert!(p["content"]
        .as_str()
        .unwrap()
        .starts_with("<@&4242> CRITICAL "));
    assert_eq!(p["allowed_mentions"]["parse"], serde_json::json!([]));
    assert_eq!(p["allowed_mentions"]["roles"], serde_json::json!(["4242"]));
    let e = &p["embeds"][0];
    assert_eq!(
        e["title"],
        "CRITICAL: Restart limit reached: worker.service"
    );
    assert_eq!(
        e["description"],
        "worker.service: 5 restarts in the last hour, the limit"
    );
    assert_eq!(e["color"], 0x992D22);
    assert!(humantime::parse_rfc3339(e["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(
        names(&e["fields"], "name"),
        ["Severity", "Host", "Event", "Unit"]
    );
    assert_eq!(names(&e["fields"], "value")[..1], ["CRITICAL".to_string()]);
    assert_eq!(e["fields"][3]["value"], "worker.service");
    assert!(e["footer"]["text"]
        .as_str()
        .unwrap()
        .starts_with("unitwatch "));

    let v = &a.view()[0];
    assert_eq!((v.sent_total, v.failed_total, v.queued), (1, 0, 0));
    assert_eq!(v.destination, format!("http://{}/…", rx.addr));
    a.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_blocks_and_the_retry_after_header() {
    let _g = SERIAL.lock().await;
    let rx = Receiver::start(
        reply(200, "ok"),
        vec![Answer::Reply {
            status: 429,
            body: "rate_limited",
            retry_after: Some("1"),
        }],
    )
    .await;
    let d = tempfile::tempdir().unwrap();
    let c = config(
        d.path(),
        &format!(
            "[[alert]]\ntype = \"slack\"\nurl = \"{}\"\nmention = \"<!here>\"\n",
            rx.url("/services/T000/B000/XXXX")
        ),
    );
    let a = start(&c);
    Event::new(
        Kind::CheckChanged,
        Severity::Warning,
        "disk:/:utilization: pass -> warn: 85% used > 80%",
    )
    .check("disk:/:utilization")
    .emit();
    let s = rx.wait(2, Duration::from_secs(5)).await;
    assert!(gap(&s, 1) >= Duration::from_secs(1), "Retry-After: 1");
    // https://api.slack.com/reference/block-kit/blocks
    let p = s[1].json();
    assert_eq!(
        p["text"],
        format!(
            "WARNING {}: Check warning: disk:/:utilization",
            unitwatch::host_name()
        )
    );
    let b = &p["blocks"];
    assert_eq!(
        names(b, "type"),
        ["header", "section", "section", "context"]
    );
    assert_eq!(b[0]["text"]["type"], "plain_text");
    assert_eq!(
        b[0]["text"]["text"],
        ":large_yellow_circle: WARNING: Check warning: disk:/:utilization"
    );
    assert_eq!(b[1]["text"]["type"], "mrkdwn");
    // Not critical: no mention; '>' escaped for mrkdwn.
    assert_eq!(
        b[1]["text"]["text"],
        "disk:/:utilization: pass -&gt; warn: 85% used &gt; 80%"
    );
    let fields: Vec<String> = names(&b[2]["fields"], "text");
    assert_eq!(fields[0], "*Severity*\nWARNING");
    assert_eq!(fields[2], "*Event*\ncheck-changed");
    assert_eq!(fields[3], "*Check*\ndisk:/:utilization");
    assert!(b[2]["fields"].as_array().unwrap().len() <= 10);
    assert_eq!(b[3]["elements"][0]["type"], "mrkdwn");
    a.shutdown(Duration::from_secs(1)).await;
}

/// HMAC-SHA256 by Python's hmac module: not the code under test.
fn python_hmac(key: &str, body: &[u8]) -> String {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("body");
    std::fs::write(&f, body).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), open(sys.argv[2],'rb').read(), hashlib.sha256).hexdigest())",
            key,
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_signed_and_shaped_like_alertmanagers() {
    let _g = SERIAL.lock().await;
    let rx = Receiver::start(reply(200, ""), vec![]).await;
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("hmac");
    std::fs::write(&key, "k3y-for-hmac\n").unwrap();
    let c = config(
        d.path(),
        &format!(
            "[[alert]]\ntype = \"webhook\"\nname = \"am\"\nurl = \"{}\"\nsecret_file = \"{}\"\n",
            rx.url("/hook"),
            key.display()
        ),
    );
    let a = start(&c);
    failed().emit();
    recovered().emit();
    let s = rx.wait(2, Duration::from_secs(5)).await;
    for x in &s {
        let sig = x.headers["x-unitwatch-signature"].to_str().unwrap();
        assert_eq!(
            sig,
            format!("sha256={}", python_hmac("k3y-for-hmac", &x.body))
        );
    }
    // https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
    let p = s[0].json();
    assert_eq!(p["version"], "4");
    assert_eq!(p["status"], "firing");
    assert_eq!(p["receiver"], "am");
    assert!(p["groupKey"].as_str().unwrap().ends_with(":worker.service"));
    let al = &p["alerts"][0];
    assert_eq!(al["status"], "firing");
    assert_eq!(al["labels"]["alertname"], "unit-failed");
    assert_eq!(al["labels"]["severity"], "error");
    assert_eq!(al["labels"]["unit"], "worker.service");
    assert_eq!(al["labels"]["instance"], unitwatch::host_name());
    assert_eq!(
        al["annotations"]["description"],
        "worker.service failed (Result=signal)"
    );
    assert_eq!(al["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(al["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(p["unitwatch"]["severity"], "ERROR");
    assert_eq!(p["unitwatch"]["suppressed"], 0);
    let r = s[1].json();
    assert_eq!(r["status"], "resolved");
    assert_eq!(r["alerts"][0]["labels"]["alertname"], "unit-recovered");
    assert_eq!(r["alerts"][0]["endsAt"], r["alerts"][0]["startsAt"]);
    a.shutdown(Duration::from_secs(1)).await;
}

fn unitwatch_of(s: &Seen) -> Value {
    s.json()["unitwatch"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldown_counts_what_it_holds_back_and_survives_a_restart() {
    let _g = SERIAL.lock().await;
    let rx = Receiver::start(reply(200, ""), vec![]).await;
    let d = tempfile::tempdir().unwrap();
    let c = config(
        d.path(),
        &format!(
            "[[alert]]\ntype = \"webhook\"\nurl = \"{}\"\ncooldown = \"3s\"\n",
            rx.url("/hook")
        ),
    );
    let a = start(&c);
    let t0 = Instant::now();
    for _ in 0..3 {
        failed().emit();
    }
    rx.wait(1, Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.seen().len(), 1, "one of three sent");
    assert_eq!(a.view()[0].suppressed_total, 2);

    // A restart of unitwatchd: the state is read back from alerts.json.
    a.shutdown(Duration::from_secs(1)).await;
    let state: Value =
        serde_json::from_slice(&std::fs::read(c.alerts_state_path()).unwrap()).unwrap();
    assert_eq!(
        state["channels"]["webhook"]["keys"]["worker.service unit-failed error"]["suppressed"],
        2
    );
    let a = start(&c);
    failed().emit();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.seen().len(), 1, "still cooling down after the restart");

    // After the cooldown: sent, with the count of the four held back.
    let left = Duration::from_secs(3).saturating_sub(t0.elapsed());
    tokio::time::sleep(left + Duration::from_millis(100)).await;
    failed().emit();
    let s = rx.wait(2, Duration::from_secs(3)).await;
    let u = unitwatch_of(&s[1]);
    assert_eq!(u["suppressed"], 3, "{u}");
    let ann = s[1].json()["alerts"][0]["annotations"]["suppressed"].clone();
    assert!(
        ann.as_str().unwrap().starts_with("3 more like it since "),
        "{ann}"
    );

    // A recovery of what was sent goes out at once ...
    recovered().emit();
    let s = rx.wait(3, Duration::from_secs(3)).await;
    assert_eq!(unitwatch_of(&s[2])["event"], "unit-recovered");
    // ... and a failure held back after it is owed: sent when the
    // cooldown of the last one sent ends, marked late.
    let sent_at = s[1].at;
    failed().emit();
    let s = rx.wait(4, Duration::from_secs(5)).await;
    let u = unitwatch_of(&s[3]);
    assert_eq!(
        (u["event"].as_str(), u["late"].as_bool()),
        (Some("unit-failed"), Some(true))
    );
    let waited = s[3].at - sent_at;
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_millis(5000),
        "{waited:?}"
    );
    a.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_channel_blocks_nothing_and_leaks_no_secret() {
    let _g = SERIAL.lock().await;
    let good = Receiver::start(reply(200, ""), vec![]).await;
    let dead = Receiver::start(Answer::Hang, vec![]).await;
    let gone = Receiver::start(Answer::EchoPath404, vec![]).await;
    let d = tempfile::tempdir().unwrap();
    let url_file = d.path().join("gone-url");
    std::fs::write(&url_file, gone.url("/services/T1/B2/s3cr3tT0ken")).unwrap();
    let c = config(
        d.path(),
        &format!(
            "[[alert]]\ntype = \"webhook\"\nname = \"dead\"\nurl = \"{}\"\ntimeout = \"1s\"\nqueue_size = 2\n\
             [[alert]]\ntype = \"slack\"\nname = \"gone\"\nurl_file = \"{}\"\n\
             [[alert]]\ntype = \"webhook\"\nname = \"good\"\nurl = \"{}\"\n",
            dead.url("/x"),
            url_file.display(),
            good.url("/hook")
        ),
    );
    let a = start(&c);
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let t = Instant::now();
        Event::new(Kind::UnitFailed, Severity::Error, format!("u{i} failed"))
            .unit(&format!("u{i}.service"))
            .emit();
        slowest = slowest.max(t.elapsed());
        if i == 0 {
            // The dead channel's worker is on the first one (hanging)
            // before the rest come.
            dead.wait(1, Duration::from_secs(2)).await;
        }
    }
    // Queued, not delivered: a delivery here takes a second or more.
    assert!(slowest < Duration::from_millis(50), "emit took {slowest:?}");
    let s = good.wait(5, Duration::from_secs(2)).await;
    assert!(
        s[4].at - s[0].at < Duration::from_secs(1),
        "the good channel did not wait on the dead one"
    );
    gone.wait(5, Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let views = a.view();
    let v = |n: &str| views.iter().find(|v| v.name == n).unwrap().clone();
    assert_eq!(v("good").sent_total, 5);
    // 404: not retried, given up at once, each time.
    assert_eq!(gone.seen().len(), 5, "a 404 is not retried");
    assert_eq!(v("gone").failed_total, 5);
    let err = v("gone").last_error.unwrap();
    assert!(
        err.starts_with("HTTP 404: unknown webhook [redacted]"),
        "{err}"
    );
    assert_eq!(v("gone").destination, format!("http://{}/…", gone.addr));
    let all = serde_json::to_string(&views).unwrap();
    assert!(!all.contains("s3cr3tT0ken"), "{all}");
    // The dead one tries the first alert (in flight, hanging) and keeps 2
    // waiting: of the other 4, the 2 oldest were dropped.
    assert_eq!(v("dead").sent_total, 0);
    assert_eq!(v("dead").queued, 2);
    assert_eq!(v("dead").dropped_total, 2);
    a.shutdown(Duration::from_millis(100)).await;
}

fn unitwatchd(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_unitwatchd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_test_reports_each_channel() {
    let _g = SERIAL.lock().await;
    let rx = Receiver::start(reply(204, ""), vec![]).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let d = tempfile::tempdir().unwrap();
    config(
        d.path(),
        &format!(
            "[[alert]]\ntype = \"discord\"\nurl_env = \"TEST_DISCORD_URL\"\n\
             [[alert]]\ntype = \"webhook\"\nname = \"down\"\nurl = \"http://127.0.0.1:{closed_port}/t0ken-in-path\"\ntimeout = \"1s\"\n",
        ),
    );
    let cfg = d.path().join("unitwatch.toml");
    let url = rx.url("/api/webhooks/9/env-t0ken");
    let env = [("TEST_DISCORD_URL", url.as_str())];
    let (code, out, err) = unitwatchd(&cfg, &["alert", "test", "--channel", "discord"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("discord (http://{}/…): delivered in ", rx.addr)),
        "{out}"
    );
    let p = rx.seen()[0].json();
    assert_eq!(p["embeds"][0]["title"], "INFO: Test alert");
    assert_eq!(p["embeds"][0]["color"], 0x2ECC71);

    let (code, out, err) = unitwatchd(&cfg, &["alert", "test"], &env);
    assert_eq!(code, 69, "{out}{err}");
    assert!(out.contains("\ndown (http://127.0.0.1:"), "{out}");
    assert!(out.contains("NOT delivered: "), "{out}");
    assert!(out.contains("(after 3 attempt(s))"), "{out}");
    assert!(
        !out.contains("t0ken") && !err.contains("t0ken"),
        "{out}{err}"
    );

    let (code, _, err) = unitwatchd(&cfg, &["alert", "test", "--channel", "nope"], &env);
    assert_eq!(code, 78);
    assert!(err.contains("no alert channel is named \"nope\""), "{err}");
    // A secret that is not there: named, exit 78.
    let (code, _, err) = unitwatchd(&cfg, &["alert", "test"], &[]);
    assert_eq!(code, 78);
    assert!(
        err.contains(
            "alert channel discord: url_env: the environment variable TEST_DISCORD_URL is not set"
        ),
        "{err}"
    );
}

// ---- email: a real SMTP server ----

struct Smtp {
    child: Child,
    out: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and a server certificate for 127.0.0.1 signed by it (rustls takes
/// no self-signed CA certificate as a server's).
fn certs(dir: &Path) {
    let sh = |cmd: &str| {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "{cmd}");
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca");
    sh("openssl req -newkey rsa:2048 -nodes -keyout key.pem -out srv.csr -subj /CN=127.0.0.1");
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh("openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext");
}

fn smtp(dir: &Path, port: u16, mode: &str) -> Smtp {
    let out = dir.join(format!("mail-{mode}"));
    std::fs::create_dir_all(&out).unwrap();
    let mut child = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_server.py"))
        .args(["--port", &port.to_string(), "--mode", mode, "--out"])
        .arg(&out)
        .args(["--user", "alerts", "--password", "pa55-word"])
        .arg("--cert")
        .arg(dir.join("cert.pem"))
        .arg("--key")
        .arg(dir.join("key.pem"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "smtp_server.py did not start");
    Smtp { child, out }
}

async fn mails(dir: &Path, n: usize, a: &Alerts) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        if files.len() >= n {
            return files
                .iter()
                .map(|f| std::fs::read_to_string(f).unwrap())
                .collect();
        }
        assert!(
            Instant::now() < end,
            "{} of {n} mails: {:?}",
            files.len(),
            a.view()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn email_table(port: u16, tls: &str, dir: &Path, password: &str) -> String {
    format!(
        "[[alert]]\ntype = \"email\"\nserver = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n\
         ca_file = \"{}\"\nusername = \"alerts\"\npassword = \"{password}\"\n\
         from = \"unitwatch <unitwatch@vm.test>\"\nto = [\"ops@example.test\", \"oncall@example.test\"]\ntimeout = \"5s\"\n",
        dir.join("ca.pem").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_starttls_and_implicit_tls_with_auth() {
    let _g = SERIAL.lock().await;
    let d = tempfile::tempdir().unwrap();
    certs(d.path());
    for mode in ["starttls", "tls"] {
        let port = free_port();
        let server = smtp(d.path(), port, mode);
        // A state directory each: the second would be the first's repeat.
        let c = config(
            &d.path().join(mode),
            &email_table(port, mode, d.path(), "pa55-word"),
        );
        let a = start(&c);
        limit().emit();
        let m = mails(&server.out, 1, &a).await.remove(0);
        a.shutdown(Duration::from_secs(1)).await;
        let host = unitwatch::host_name();
        assert!(m.contains("X-Test-TLS: yes\r\n"), "{mode}: {m}");
        assert!(m.contains("X-Test-Auth: alerts\r\n"), "{mode}: {m}");
        assert!(m.contains("X-Test-Mail-From: unitwatch@vm.test\r\n"), "{m}");
        assert!(
            m.contains("X-Test-Rcpt-To: ops@example.test,oncall@example.test\r\n"),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "Subject: [unitwatch] CRITICAL {host}: Restart limit reached: worker.service\r\n"
            )),
            "{m}"
        );
        assert!(m.contains("Content-Type: multipart/alternative"), "{m}");
        assert!(m.contains("Content-Type: text/plain"), "{m}");
        assert!(m.contains("Content-Type: text/html"), "{m}");
        assert!(m.contains("Severity: CRITICAL"), "{m}");
        assert!(m.contains("Unit: worker.service"), "{m}");
        assert!(
            m.contains("worker.service: 5 restarts in the last hour, the limit"),
            "{m}"
        );
        assert!(m.contains("Message-ID: <"), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_refused_login_is_not_retried_and_not_leaked() {
    let _g = SERIAL.lock().await;
    let d = tempfile::tempdir().unwrap();
    certs(d.path());
    let port = free_port();
    let server = smtp(d.path(), port, "starttls");
    let c = config(
        d.path(),
        &email_table(port, "starttls", d.path(), "wrong-pa55"),
    );
    let a = start(&c);
    failed().emit();
    let end = Instant::now() + Duration::from_secs(10);
    while a.view()[0].failed_total == 0 {
        assert!(Instant::now() < end, "{:?}", a.view());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = a.view().remove(0);
    let err = v.last_error.unwrap();
    assert!(err.contains("535"), "SMTP's refusal, permanent: {err}");
    assert!(!err.contains("wrong-pa55"), "{err}");
    assert_eq!(std::fs::read_dir(&server.out).unwrap().count(), 0);
    a.shutdown(Duration::from_secs(1)).await;
}

/// A TCP relay on loopback that records every byte the client sends to
/// `upstream`: what went over the wire, whatever the server made of it.
fn recording_relay(upstream: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = sent.clone();
    std::thread::spawn(move || {
        for client in l.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Both);
            });
            let record = record.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = client.read(&mut buf) {
                    if n == 0 || server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = server.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, sent)
}

/// `tls = "starttls"` is required, not opportunistic: a real server that
/// offers AUTH but no STARTTLS gets no login and no mail, and the password
/// never crosses the wire in any form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_starttls_is_required_and_no_password_goes_out_in_clear() {
    let _g = SERIAL.lock().await;
    let d = tempfile::tempdir().unwrap();
    certs(d.path());
    let port = free_port();
    // "plain": no STARTTLS offered, AUTH allowed without TLS.
    let server = smtp(d.path(), port, "plain");
    let (relay, sent) = recording_relay(port);
    let c = config(
        d.path(),
        &email_table(relay, "starttls", d.path(), "pa55-word"),
    );
    let a = start(&c);
    failed().emit();
    let end = Instant::now() + Duration::from_secs(10);
    while a.view()[0].last_error.is_none() {
        assert!(Instant::now() < end, "{:?}", a.view());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = a.view().remove(0);
    a.shutdown(Duration::from_secs(1)).await;
    assert_eq!(v.sent_total, 0, "{v:?}");
    // Given up at once (a retry would meet the same server), with the reason.
    assert_eq!(v.failed_total, 1, "{v:?}");
    let err = v.last_error.unwrap();
    assert!(err.contains("STARTTLS is not supported"), "{err}");
    let wire = String::from_utf8_lossy(&sent.lock().unwrap()).into_owned();
    assert!(wire.contains("EHLO"), "the client did talk to it: {wire:?}");
    // In clear, and as AUTH PLAIN and AUTH LOGIN would send it.
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for needle in [
        "pa55-word".to_string(),
        b64(b"pa55-word"),
        b64(b"\0alerts\0pa55-word"),
    ] {
        assert!(!wire.contains(&needle), "{needle} went out: {wire:?}");
    }
    for cmd in ["AUTH", "MAIL FROM", "DATA"] {
        assert!(!wire.contains(cmd), "{cmd} sent without TLS: {wire:?}");
    }
    assert_eq!(std::fs::read_dir(&server.out).unwrap().count(), 0);
}

/// The command of the issue, verbatim: plain SMTP, no login, to a relay on
/// this machine (`tls = "none"`); aiosmtpd's default handler prints each
/// message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_to_a_local_relay_in_plain_smtp() {
    let _g = SERIAL.lock().await;
    let port = free_port();
    let d = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(d.path().join("smtpd.out")).unwrap();
    let mut child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .stdout(log)
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = config(
        d.path(),
        &format!(
            "[[alert]]\ntype = \"email\"\nserver = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"unitwatch@vm.test\"\nto = [\"ops@example.test\"]\nmin_severity = \"error\"\n"
        ),
    );
    let a = start(&c);
    Event::new(Kind::DaemonStarted, Severity::Info, "below min_severity").emit();
    failed().emit();
    let end = Instant::now() + Duration::from_secs(10);
    while a.view()[0].sent_total == 0 {
        assert!(Instant::now() < end, "{:?}", a.view());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.shutdown(Duration::from_secs(1)).await;
    let _ = child.kill();
    let _ = child.wait();
    let out = std::fs::read_to_string(d.path().join("smtpd.out")).unwrap();
    let host = unitwatch::host_name();
    assert!(
        out.contains(&format!(
            "Subject: [unitwatch] ERROR {host}: Unit failed: worker.service"
        )),
        "{out}"
    );
    assert!(out.contains("Severity: ERROR"), "{out}");
    assert!(!out.contains("below min_severity"), "{out}");
    assert_eq!(out.matches("Subject: ").count(), 1, "{out}");
}

//! unitwatch-http in a real systemd 252 (tests/harness), as shipped in
//! `systemd/`: DynamicUser, reading what the real daemon writes; /health
//! following a watched unit down and up; promtool on the live /metrics;
//! socket activation.

mod harness;

use std::time::Duration;

use harness::Sandbox;

const VICTIM: &str = "[Service]\nExecStart=/bin/sleep infinity\n";

fn setup(name: &str) -> Sandbox {
    let sb = Sandbox::boot(name);
    sb.unit("victim.service", VICTIM);
    sb.ok("systemctl start victim");
    sb.start_unitwatch(
        "[daemon]\ninterval = \"1s\"\n[[unit]]\nname = \"victim.service\"\nrestart = false\n\
         [[disk]]\npath = \"/\"\nwarn_percent = 99\ncrit_percent = 100\n\
         [http]\nlisten = \"127.0.0.1:8080\"\n",
        "",
    );
    sb.install_http();
    sb
}

fn wait_code(sb: &Sandbox, url: &str, want: u16) -> String {
    sb.wait_for(&format!("{url} -> {want}"), Duration::from_secs(10), || {
        let (code, body) = sb.curl(url);
        (code == want).then_some(body)
    })
}

#[test]
fn health_follows_a_killed_unit_and_metrics_pass_promtool() {
    let sb = setup("http");
    sb.ok("systemctl start unitwatch-http");
    // Hardened as shipped: a dynamic, unprivileged user.
    let pid = sb.prop("unitwatch-http", "MainPID");
    let uid = sb.ok(&format!("ps -o uid= -p {pid}"));
    assert_ne!(uid.trim(), "0", "unitwatch-http runs as root");
    assert_eq!(
        sb.prop("unitwatch-http", "StatusText"),
        "serving /run/unitwatch/status.json on 127.0.0.1:8080"
    );

    let body = wait_code(&sb, "http://127.0.0.1:8080/health", 200);
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "pass");
    let head = sb.ok("curl -s -I http://127.0.0.1:8080/health");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("content-type: application/health+json"),
        "{head}"
    );

    // The watched unit dies (restart = false): 503 within a moment.
    sb.kill_main("victim.service");
    let body = wait_code(&sb, "http://127.0.0.1:8080/health", 503);
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "fail");
    assert_eq!(h["output"], "0 units ok, 1 failing: victim.service");
    let (code, body) = sb.curl("http://127.0.0.1:8080/health/service/victim.service");
    assert_eq!(code, 503);
    assert!(body.contains("failed (Result=signal)"), "{body}");
    let head = sb.ok("curl -s -I http://127.0.0.1:8080/health");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    sb.ok("systemctl start victim");
    wait_code(&sb, "http://127.0.0.1:8080/health", 200);

    // The live /metrics passes promtool (run on the host, fed from inside).
    let (code, metrics) = sb.curl("http://127.0.0.1:8080/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("unitwatch_unit_state{unit=\"victim.service\",state=\"active\"} 1.0"),
        "{metrics}"
    );
    assert!(metrics.contains("unitwatch_disk_used_ratio{path=\"/\"} 0."));
    // The unit's LimitNOFILE leaves room for the whole connection cap
    // (systemd's default soft limit of 1,024 would lower it).
    assert!(
        metrics.contains("\nunitwatch_http_max_connections 1024.0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\nunitwatch_http_max_peer_connections 256.0\n"));
    harness::promtool_check(format!("{metrics}\n").as_bytes());

    // A dead daemon: the snapshot goes stale, /health says so.
    sb.ok("systemctl kill -s KILL --kill-who=main unitwatch");
    sb.ok("systemctl stop unitwatch");
    let body = wait_code(&sb, "http://127.0.0.1:8080/health", 503);
    assert!(body.contains("unitwatchd is dead or hung"), "{body}");
}

#[test]
fn socket_activation_serves_on_systemds_socket() {
    let sb = setup("httpsock");
    // The socket listens elsewhere than [http] listen: an answer there
    // proves the server took systemd's socket.
    sb.write(
        "/etc/systemd/system/unitwatch-http.socket.d/test.conf",
        "[Socket]\nListenStream=\nListenStream=127.0.0.1:9191\n",
    );
    sb.ok("systemctl daemon-reload");
    sb.ok("systemctl start unitwatch-http.socket");
    assert_eq!(sb.prop("unitwatch-http.service", "ActiveState"), "inactive");
    let body = wait_code(&sb, "http://127.0.0.1:9191/health", 200);
    assert!(body.contains("\"status\":\"pass\""), "{body}");
    assert_eq!(sb.prop("unitwatch-http.service", "ActiveState"), "active");
    assert_eq!(
        sb.prop("unitwatch-http.service", "StatusText"),
        "serving /run/unitwatch/status.json on 127.0.0.1:9191"
    );
    let (code, _) = sb.curl("http://127.0.0.1:8080/health");
    assert_eq!(code, 0, "nothing listens on the configured address");
}

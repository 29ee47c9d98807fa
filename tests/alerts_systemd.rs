//! Alerts from the real daemon in a real systemd 252 (tests/harness), to
//! an HTTP receiver inside the sandbox standing in for Discord, Slack and a
//! webhook: a crash loop gives one alert per kind, not one per kill; the
//! count of what was held back arrives with the next one after the
//! cooldown; the restart limit gives one CRITICAL with the mention; a dead
//! channel costs one journal error and no secret; a daemon restart does not
//! repeat what was sent.

mod harness;

use std::time::{Duration, Instant};

use harness::receiver::{events, received};
use harness::Sandbox;
use serde_json::Value;

const WORKER: &str =
    "[Unit]\nStartLimitIntervalSec=0\n[Service]\nType=simple\nExecStart=/bin/sleep infinity\n";

fn count(v: &[String], e: &str) -> usize {
    v.iter().filter(|x| *x == e).count()
}

fn restarted(sb: &Sandbox) -> usize {
    sb.journal("UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT=worker.service")
        .len()
}

#[test]
fn a_crash_loop_alerts_once_and_the_restart_limit_pings() {
    let sb = Sandbox::boot("alerts");
    sb.start_receiver(8099);
    sb.unit("worker.service", WORKER);
    sb.ok("systemctl start worker");
    sb.start_unitwatch(
        "[daemon]\ninterval = \"1s\"\n\
         [backoff]\ninitial = \"1s\"\nmax = \"2s\"\nmax_restarts_per_hour = 3\n\
         [[unit]]\nname = \"worker.service\"\n\
         [[alert]]\ntype = \"discord\"\nurl = \"http://127.0.0.1:8099/api/webhooks/1/d1sc0rd-t0ken\"\nmention = \"<@&4242>\"\n\
         [[alert]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://127.0.0.1:8099/hook\"\ncooldown = \"25s\"\n\
         [[alert]]\ntype = \"slack\"\nname = \"gone\"\nurl_env = \"SLACK_URL\"\n",
        "Environment=SLACK_URL=http://127.0.0.1:8099/gone/T0/B0/sl4ck-t0ken",
    );
    sb.wait_for("daemon-started on discord", Duration::from_secs(10), || {
        (events(&received(&sb, "/api/webhooks/1/")) == ["daemon-started"]).then_some(())
    });

    // A burst of three kills, each restarted (1 s, 2 s, 2 s) and back.
    for i in 0..3 {
        sb.kill_main("worker.service");
        sb.wait_for("the restart", Duration::from_secs(15), || {
            (restarted(&sb) > i).then_some(())
        });
        sb.wait_active("worker.service", Duration::from_secs(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    for prefix in ["/api/webhooks/1/", "/hook"] {
        let ev = events(&received(&sb, prefix));
        assert_eq!(count(&ev, "unit-failed"), 1, "{prefix}: {ev:?}");
        assert_eq!(count(&ev, "unit-restarted"), 1, "{prefix}: {ev:?}");
        assert_eq!(count(&ev, "unit-recovered"), 1, "{prefix}: {ev:?}");
    }
    let discord = received(&sb, "/api/webhooks/1/");
    let severity = |r: &Value| r["body"]["embeds"][0]["fields"][0]["value"].clone();
    let sevs: Vec<Value> = discord.iter().map(severity).collect();
    assert_eq!(
        sevs,
        ["INFO", "ERROR", "ERROR", "INFO"],
        "started, failed, restarted, recovered"
    );
    let st = sb.status_json();
    let view = |n: &str| {
        st["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    // Three kills, each failed, restarted and recovered: the first of
    // each kind sent, the six after it held back. On a failure, the
    // journal says which came extra.
    assert_eq!(
        view("discord")["suppressed_total"],
        6,
        "{st}\n{}",
        sb.journal_text()
    );
    assert_eq!(view("discord")["sent_total"], 4, "{st}");

    // Past the hook's cooldown (25 s after its first failure alert), a 4th
    // kill: the failure goes out with the count of the two held back, and
    // 3 restarts in the hour are the limit: one CRITICAL, with the mention.
    let hook = received(&sb, "/hook");
    let first_failure_at = hook
        .iter()
        .find(|r| r["body"]["unitwatch"]["event"] == "unit-failed")
        .unwrap()["at"]
        .as_f64()
        .unwrap();
    let now: f64 = sb.ok("date +%s.%N").trim().parse().unwrap();
    let wait = 25.5 - (now - first_failure_at);
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
    sb.kill_main("worker.service");
    sb.wait_for("the critical on discord", Duration::from_secs(10), || {
        let ev = events(&received(&sb, "/api/webhooks/1/"));
        (count(&ev, "restart-limit") == 1).then_some(())
    });
    let hook = received(&sb, "/hook");
    let failures: Vec<&Value> = hook
        .iter()
        .filter(|r| r["body"]["unitwatch"]["event"] == "unit-failed")
        .collect();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[1]["body"]["unitwatch"]["suppressed"], 2);
    assert!(
        failures[1]["body"]["alerts"][0]["annotations"]["suppressed"]
            .as_str()
            .unwrap()
            .starts_with("2 more like it since ")
    );
    let discord = received(&sb, "/api/webhooks/1/");
    let ev = events(&discord);
    assert_eq!(
        count(&ev, "unit-failed"),
        1,
        "discord's cooldown is 5m: {ev:?}"
    );
    let crit: Vec<&Value> = discord
        .iter()
        .filter(|r| severity(r) == "CRITICAL")
        .collect();
    assert_eq!(crit.len(), 1);
    let body = &crit[0]["body"];
    assert!(body["content"]
        .as_str()
        .unwrap()
        .starts_with("<@&4242> CRITICAL "));
    assert_eq!(
        body["allowed_mentions"]["roles"],
        serde_json::json!(["4242"])
    );
    assert_eq!(body["embeds"][0]["color"], 0x992D22);

    // The dead channel (404): given up on each time, one journal error.
    let gone = received(&sb, "/gone/");
    assert!(gone.len() >= 5, "{}", gone.len());
    let errors = sb.journal("UNITWATCH_CHANNEL=gone PRIORITY=3");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = harness::field(&errors[0], "MESSAGE");
    assert!(
        msg.contains("gave up on") && msg.contains("HTTP 404"),
        "{msg}"
    );
    let all = sb.sh_out("journalctl -o json --no-pager");
    assert!(!all.contains("sl4ck-t0ken") && !all.contains("d1sc0rd-t0ken"));
    assert!(!sb
        .read("/run/unitwatch/status.json")
        .unwrap()
        .contains("t0ken"));

    // A restart of unitwatchd within the cooldown: daemon-started is not
    // sent again; the state is where it belongs.
    let started = Instant::now();
    sb.ok("systemctl restart unitwatch");
    sb.wait_for(
        "the restart's daemon-started",
        Duration::from_secs(10),
        || (sb.journal("UNITWATCH_EVENT=daemon-started").len() == 2).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let ev = events(&received(&sb, "/api/webhooks/1/"));
    assert_eq!(
        count(&ev, "daemon-started"),
        1,
        "{ev:?} after {:?}",
        started.elapsed()
    );
    let stat = sb.ok("stat -c '%U %a' /var/lib/unitwatch/alerts.json");
    assert_eq!(stat.trim(), "unitwatch 640");
    let state: Value =
        serde_json::from_str(&sb.read("/var/lib/unitwatch/alerts.json").unwrap()).unwrap();
    assert!(
        state["channels"]["discord"]["keys"]["unitwatchd daemon-started info"].is_object(),
        "{state}"
    );

    // Reload: a channel whose secret is missing is refused, with the file
    // and variable named, and the running channels kept ...
    let cfg = sb.read("/etc/unitwatch/unitwatch.toml").unwrap();
    let gone_table = "[[alert]]\ntype = \"slack\"\nname = \"gone\"\nurl_env = \"SLACK_URL\"\n";
    assert!(cfg.contains(gone_table));
    sb.write(
        "/etc/unitwatch/unitwatch.toml",
        &cfg.replace("url_env = \"SLACK_URL\"", "url_env = \"NOT_SET\""),
    );
    sb.ok("systemctl reload unitwatch");
    let rejected = sb.wait_for("config-rejected", Duration::from_secs(10), || {
        sb.journal("UNITWATCH_EVENT=config-rejected").pop()
    });
    let msg = harness::field(&rejected, "MESSAGE");
    assert!(
        msg.contains("alert channel gone: url_env: the environment variable NOT_SET is not set"),
        "{msg}"
    );
    assert_eq!(sb.status_json()["alerts"].as_array().unwrap().len(), 3);
    // ... and one without the dead channel is in force at once.
    sb.write(
        "/etc/unitwatch/unitwatch.toml",
        &cfg.replace(gone_table, ""),
    );
    sb.ok("systemctl reload unitwatch");
    sb.wait_for("two channels", Duration::from_secs(10), || {
        (sb.status_json()["alerts"].as_array().unwrap().len() == 2).then_some(())
    });
}

/// A reload that drops a channel whose deliveries hang, and ends a
/// collector-less OTLP export, stalls nothing: their drains run on their
/// own tasks, so a kill right after the reload is handled at once, and a
/// 2 s watchdog never fires (each used to hold the loop for seconds).
#[test]
fn a_reload_away_from_a_hung_channel_stalls_nothing() {
    let sb = Sandbox::boot("alerts-reload");
    // Takes connections and never reads: every delivery hangs.
    sb.start_dead_listener(8099);
    sb.unit("worker.service", WORKER);
    sb.ok("systemctl start worker");
    let base = "[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"100ms\"\n[[unit]]\nname = \"worker.service\"\n";
    sb.start_unitwatch(
        &format!(
            "{base}[telemetry]\nendpoint = \"http://127.0.0.1:8099\"\ntimeout = \"5s\"\n\
             [[alert]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:8099/hook\"\ncooldown = \"0s\"\ntimeout = \"10s\"\n"
        ),
        "WatchdogSec=2s",
    );
    // Deliveries in flight: a failure and its restart.
    sb.kill_main("worker.service");
    sb.wait_for("the restart", Duration::from_secs(10), || {
        (restarted(&sb) == 1).then_some(())
    });
    sb.wait_active("worker.service", Duration::from_secs(5));
    sb.wait_for("a delivery hanging", Duration::from_secs(10), || {
        let a = &sb.status_json()["alerts"][0];
        (a["sent_total"] == 0 && a["failed_total"] == 0).then_some(())
    });
    let before = sb.journal("UNITWATCH_EVENT=config-reloaded").len();
    sb.write("/etc/unitwatch/unitwatch.toml", base);
    sb.ok("systemctl reload unitwatch");
    // The failure right after the reload: seen and acted on within
    // moments of systemd's exit line, not after a drain.
    sb.kill_main("worker.service");
    let failed = sb.wait_for("the second failure", Duration::from_secs(10), || {
        sb.journal("UNITWATCH_EVENT=unit-failed").into_iter().nth(1)
    });
    assert!(sb.journal("UNITWATCH_EVENT=config-reloaded").len() > before);
    let exit: u64 = sb
        .sh_out("journalctl -u worker.service -o json --no-pager _PID=1")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| harness::field(e, "MESSAGE").contains("Main process exited"))
        .filter_map(|e| harness::field(&e, "__MONOTONIC_TIMESTAMP").parse().ok())
        .next_back()
        .expect("systemd logged the second exit");
    let seen: u64 = harness::field(&failed, "__MONOTONIC_TIMESTAMP")
        .parse()
        .unwrap();
    assert!(
        seen.saturating_sub(exit) < 500_000,
        "the failure was logged {} ms after the exit",
        seen.saturating_sub(exit) / 1000
    );
    sb.wait_for("the second restart", Duration::from_secs(10), || {
        (restarted(&sb) == 2).then_some(())
    });
    // Held past the old drains' bounds (2 s and 5 s): no watchdog kill.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        sb.prop("unitwatch", "NRestarts"),
        "0",
        "{}",
        sb.journal_text()
    );
    assert_eq!(sb.prop("unitwatch", "ActiveState"), "active");
}

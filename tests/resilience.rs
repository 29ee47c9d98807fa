//! unitwatchd surviving what goes wrong around it, in a real systemd 252
//! (see tests/harness): a sweep that hangs (systemd's watchdog restarts
//! the daemon), a corrupt state file and a bad config (on reload and at
//! start), and the bus going away.

mod harness;

use std::time::Duration;

use harness::{field, Sandbox};

const VICTIM: &str =
    "[Unit]\nStartLimitIntervalSec=0\n[Service]\nType=simple\nExecStart=/bin/sleep infinity\n";

fn config(extra_backoff: &str, units: &str) -> String {
    format!("[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"1s\"\n{extra_backoff}\n{units}\n")
}

fn count_events(sb: &Sandbox, filter: &str) -> usize {
    sb.journal(filter).len()
}

/// A sweep that never completes, while the rest of the process lives (the
/// OTLP export goes on reaching the collector): the pings stop all the same,
/// and systemd's watchdog kills and restarts the daemon. `kill -STOP` would
/// freeze every thread, so it could not tell a ping from a completed sweep
/// from one sent by a timer task. Needs the `test-hooks` build (scripts/test).
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs `cargo test --features test-hooks` (scripts/test)"
)]
fn watchdog_restarts_a_daemon_whose_sweep_hangs() {
    let sb = Sandbox::boot("watchdog");
    sb.unit("victim.service", VICTIM);
    sb.ok("systemctl start victim");
    sb.start_rotel();
    sb.start_unitwatch(
        &config(
            "",
            "[telemetry]\ninterval = \"1s\"\n[[unit]]\nname = \"victim.service\"",
        ),
        "WatchdogSec=4s",
    );
    assert_eq!(sb.status_json()["status"], "pass");
    assert_eq!(sb.prop("unitwatch", "StatusText"), "1 units ok");
    let exports = || {
        sb.read("/var/log/rotel.log")
            .unwrap_or_default()
            .matches("health.service_active")
            .count()
    };
    sb.wait_for("a first export", Duration::from_secs(10), || {
        (exports() > 0).then_some(())
    });
    let pid = sb.prop("unitwatch", "MainPID");
    sb.write("/run/unitwatch/test-hang-sweep", "");
    sb.wait_for("the sweep to hang", Duration::from_secs(5), || {
        sb.journal_text()
            .contains("test hook: this sweep never completes")
            .then_some(())
    });
    let hung_at = std::time::Instant::now();
    // The process lives: its export task goes on sending, every second,
    // while the loop waits.
    let during = exports();
    sb.wait_for("exports during the hang", Duration::from_secs(3), || {
        (exports() >= during + 2).then_some(())
    });
    assert_eq!(sb.prop("unitwatch", "MainPID"), pid, "killed too early");
    let new = sb.wait_for("watchdog restart", Duration::from_secs(15), || {
        let p = sb.prop("unitwatch", "MainPID");
        (p != pid && p != "0" && sb.prop("unitwatch", "ActiveState") == "active").then_some(p)
    });
    // No earlier than the 4 s watchdog period after the last ping.
    assert!(
        hung_at.elapsed() >= Duration::from_secs(2),
        "restarted {:?} after the hang",
        hung_at.elapsed()
    );
    assert_ne!(new, pid);
    let log = sb.sh_out("journalctl -u unitwatch --no-pager -o cat");
    assert!(log.contains("Watchdog timeout"), "{log}");
    assert_eq!(sb.prop("unitwatch", "NRestarts"), "1");
    // The new daemon sweeps normally (the trigger was used up).
    sb.wait_for("the new daemon's snapshot", Duration::from_secs(10), || {
        (sb.status_json()["pid"].as_u64().map(|p| p.to_string()) == Some(new.clone())).then_some(())
    });
}

#[test]
fn corrupt_state_and_bad_config_are_survived() {
    let sb = Sandbox::boot("corrupt");
    sb.unit("victim.service", VICTIM);
    sb.ok("systemctl start victim");
    let truncated =
        "{\"schema_version\": 1, \"units\": {\"victim.service\": {\"attempts\": 3, \"next_de";
    sb.write("/var/lib/unitwatch/backoff.json", truncated);
    let good = config("", "[[unit]]\nname = \"victim.service\"");
    sb.start_unitwatch(&good, "");
    let e = sb.wait_for("state-corrupt event", Duration::from_secs(5), || {
        sb.journal("UNITWATCH_EVENT=state-corrupt")
            .into_iter()
            .next()
    });
    let msg = field(&e, "MESSAGE");
    assert!(
        msg.contains("/var/lib/unitwatch/backoff.json: corrupt backoff state (line 1 column"),
        "{msg}"
    );
    // The bad bytes are kept beside it, not lost.
    let aside = sb.ok("ls /var/lib/unitwatch/ | grep '^backoff.json.corrupt-'");
    assert_eq!(
        sb.read(&format!("/var/lib/unitwatch/{}", aside.trim()))
            .unwrap(),
        truncated
    );
    sb.kill_and_wait_back("victim.service", 0);
    assert_eq!(sb.backoff_json()["units"]["victim.service"]["attempts"], 1);

    // A bad config on reload: rejected with file:line:col, old one kept.
    let pid = sb.prop("unitwatch", "MainPID");
    sb.write(
        "/etc/unitwatch/unitwatch.toml",
        &format!("{good}\n[[unit]]\nname = \"worker\"\n"),
    );
    sb.ok("systemctl reload unitwatch");
    let e = sb.wait_for("config-rejected event", Duration::from_secs(5), || {
        sb.journal("UNITWATCH_EVENT=config-rejected")
            .into_iter()
            .next()
    });
    assert!(
        field(&e, "MESSAGE").contains("/etc/unitwatch/unitwatch.toml:10:8: unit[1].name: unit name \"worker\" has no type suffix"),
        "{e}"
    );
    assert_eq!(sb.prop("unitwatch", "MainPID"), pid);
    sb.kill_and_wait_back("victim.service", 1);

    // The same file checked by hand: exit 78 and the same message.
    let out = sb.sh(&format!(
        "{} config check",
        harness::unitwatchd_bin().display()
    ));
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unitwatch.toml:10:8: unit[1].name"));
    // A restart with it refuses to start, and says why.
    assert!(!sb.sh("systemctl restart unitwatch").status.success());
    let log = sb.sh_out("journalctl -u unitwatch --no-pager -o cat");
    assert!(
        log.contains("unit[1].name: unit name \"worker\" has no type suffix"),
        "{log}"
    );
    // The state is untouched.
    assert_eq!(sb.backoff_json()["units"]["victim.service"]["attempts"], 2);
}

/// After `systemctl restart dbus`, signals flow on the new connection: with
/// 30 s sweeps, a kill is seen within a second only through a signal.
#[test]
fn survives_the_bus_going_away() {
    let sb = Sandbox::boot("bus");
    sb.unit("victim.service", VICTIM);
    sb.ok("systemctl start victim");
    sb.start_unitwatch(
        "[daemon]\ninterval = \"30s\"\n[backoff]\ninitial = \"1s\"\n[[unit]]\nname = \"victim.service\"\n",
        "",
    );
    let pid = sb.prop("unitwatch", "MainPID");
    sb.ok("systemctl restart dbus");
    sb.wait_for("systemd-unreachable event", Duration::from_secs(10), || {
        sb.journal("UNITWATCH_EVENT=systemd-unreachable")
            .into_iter()
            .next()
    });
    sb.wait_for("systemd-reconnected event", Duration::from_secs(15), || {
        sb.journal("UNITWATCH_EVENT=systemd-reconnected")
            .into_iter()
            .next()
    });
    assert_eq!(
        sb.prop("unitwatch", "MainPID"),
        pid,
        "the daemon did not restart"
    );
    sb.wait_for(
        "status.json reachable again",
        Duration::from_secs(5),
        || (sb.status_json()["systemd"]["reachable"] == true).then_some(()),
    );
    // Signals flow again on the new connection: the failure is seen within
    // a second of the kill, which a 30 s sweep could not do.
    let killed = harness::monotonic_us();
    sb.kill_main("victim.service");
    let e = sb.wait_for("unit-failed", Duration::from_secs(40), || {
        sb.journal("UNITWATCH_EVENT=unit-failed").into_iter().next()
    });
    let seen: u64 = field(&e, "__MONOTONIC_TIMESTAMP").parse().unwrap();
    assert!(
        seen - killed < 1_000_000,
        "the failure was seen {} ms after the kill: by the sweep, not a signal",
        (seen - killed) / 1000
    );
    sb.wait_for("the restart", Duration::from_secs(10), || {
        (count_events(&sb, "UNITWATCH_EVENT=unit-restarted") > 0).then_some(())
    });
    sb.wait_active("victim.service", Duration::from_secs(10));
}

//! Checks in a real systemd 252, with unitwatch.service as shipped (its
//! user, its hardening): a hanging http check delays neither a unit's
//! failure detection nor the watchdog, fail_after holds back bad results,
//! and on_fail = "restart" restarts a unit whose own endpoint fails, on
//! the backoff. The HTTP server is tests/check_server.py, run as a unit.

mod harness;

use std::time::{Duration, SystemTime};

use harness::{field, Sandbox};
use serde_json::Value;

const VICTIM: &str =
    "[Unit]\nStartLimitIntervalSec=0\n[Service]\nType=simple\nExecStart=/bin/sleep infinity\n";

fn check(s: &Value, key: &str) -> Value {
    harness::check_of(s, key).clone()
}

/// The monotonic time (us) of systemd's last "Main process exited" line
/// for `unit`.
fn last_exit(sb: &Sandbox, unit: &str) -> u64 {
    sb.sh_out(&format!("journalctl -u {unit} -o json --no-pager _PID=1"))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| field(e, "MESSAGE").contains("Main process exited"))
        .filter_map(|e| field(&e, "__MONOTONIC_TIMESTAMP").parse().ok())
        .next_back()
        .expect("systemd logged the exit")
}

#[test]
fn a_hanging_check_delays_neither_detection_nor_the_watchdog() {
    let sb = Sandbox::boot("checks-hang");
    sb.start_check_server(8601);
    sb.unit("victim.service", VICTIM);
    sb.ok("systemctl start victim");
    // Two checks hang for their whole 5 s timeout, again and again; a real
    // plugin runs beside them, under the service's hardening.
    sb.start_unitwatch(
        "[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"500ms\"\n\
         [[unit]]\nname = \"victim.service\"\n\
         [[check]]\ntype = \"http\"\nname = \"hang\"\nurl = \"http://127.0.0.1:8601/hang\"\ninterval = \"6s\"\ntimeout = \"5s\"\n\
         [[check]]\ntype = \"http\"\nname = \"hang2\"\nurl = \"http://127.0.0.1:8601/hang\"\ninterval = \"5500ms\"\ntimeout = \"5s\"\n\
         [[check]]\ntype = \"command\"\nname = \"plugin\"\ninterval = \"2s\"\ncommand = [\"/usr/lib/nagios/plugins/check_tcp\", \"-H\", \"127.0.0.1\", \"-p\", \"8601\"]\n",
        "WatchdogSec=2s",
    );
    // Kill the unit three times while the checks hang, each time at a
    // different point of their 5 s.
    for (i, wait) in [1500u64, 2300, 2900].into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(wait));
        sb.kill_main("victim.service");
        let failed = sb.wait_for("the failure", Duration::from_secs(10), || {
            sb.journal("UNITWATCH_EVENT=unit-failed UNITWATCH_UNIT=victim.service")
                .into_iter()
                .nth(i)
        });
        let exit = last_exit(&sb, "victim.service");
        let seen: u64 = field(&failed, "__MONOTONIC_TIMESTAMP").parse().unwrap();
        assert!(
            seen.saturating_sub(exit) < 300_000,
            "kill {i}: the failure was logged {} ms after the exit, checks hanging\n{}",
            seen.saturating_sub(exit) / 1000,
            sb.journal_text()
        );
        sb.wait_for("the restart", Duration::from_secs(10), || {
            (sb.journal("UNITWATCH_EVENT=unit-restarted").len() > i).then_some(())
        });
        sb.wait_active("victim.service", Duration::from_secs(5));
    }
    let s = sb.status_json();
    let hang = check(&s, "hang:http");
    assert_eq!(hang["status"], "fail");
    assert_eq!(
        hang["output"],
        "no answer from http://127.0.0.1:8601/hang within 5s (timed out)"
    );
    let plugin = check(&s, "plugin:command");
    assert_eq!(plugin["status"], "pass", "{plugin}");
    // Never killed by the 2 s watchdog while the checks hung.
    assert_eq!(
        sb.prop("unitwatch", "NRestarts"),
        "0",
        "{}",
        sb.journal_text()
    );
    assert!(
        !sb.sh_out("journalctl -u unitwatch --no-pager _PID=1")
            .contains("Watchdog timeout"),
        "{}",
        sb.journal_text()
    );
}

#[test]
fn fail_after_holds_back_two_bad_results_and_on_fail_restarts_with_the_backoff() {
    let sb = Sandbox::boot("checks-flap");
    sb.start_check_server(8602);
    // The unit the http check belongs to: its "endpoint" is the server's
    // /flag, which fails while /var/lib/checkflag says bad.
    sb.unit("api.service", VICTIM);
    sb.ok("systemctl start api");
    // A command check whose next N runs fail: N is in a file it counts
    // down (the daemon's user may write to its state directory).
    let countdown = "n=$(cat /var/lib/unitwatch/bad-runs 2>/dev/null || echo 0); \
        if [ \"$n\" -gt 0 ]; then echo $((n-1)) > /var/lib/unitwatch/bad-runs; echo \"CRITICAL: bad run\"; exit 2; fi; \
        echo \"OK: fine\"";
    sb.start_unitwatch(
        &format!(
            "[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"1s\"\nmax_restarts_per_hour = 20\n\
             [[unit]]\nname = \"api.service\"\n\
             [[check]]\ntype = \"command\"\nname = \"flappy\"\ninterval = \"300ms\"\nfail_after = 3\n\
             command = [\"/bin/sh\", \"-c\", {countdown:?}]\n\
             [[check]]\ntype = \"http\"\nname = \"api\"\nurl = \"http://127.0.0.1:8602/flag?path=/var/lib/checkflag\"\n\
             interval = \"500ms\"\nunit = \"api.service\"\non_fail = \"restart\"\n"
        ),
        "",
    );
    let flappy_changes = || {
        sb.journal("UNITWATCH_EVENT=check-changed UNITWATCH_CHECK=flappy:command")
            .len()
    };
    sb.wait_for("the first results", Duration::from_secs(10), || {
        (check(&sb.status_json(), "flappy:command")["status"] == "pass").then_some(())
    });
    // Two bad results: held back, and said so.
    let bad_runs = |n: u32| {
        // Inside the sandbox (the daemon writes the file too).
        sb.ok(&format!(
            "echo {n} > /var/lib/unitwatch/bad-runs && chown unitwatch:unitwatch /var/lib/unitwatch/bad-runs"
        ));
    };
    bad_runs(2);
    sb.wait_for("two bad runs", Duration::from_secs(10), || {
        (sb.sh_out("cat /var/lib/unitwatch/bad-runs").trim() == "0").then_some(())
    });
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(flappy_changes(), 0, "{}", sb.journal_text());
    assert_eq!(check(&sb.status_json(), "flappy:command")["status"], "pass");
    // Three: it fails (once), then passes again at the next good result.
    bad_runs(3);
    sb.wait_for("the failure", Duration::from_secs(10), || {
        (flappy_changes() == 1).then_some(())
    });
    let e = &sb.journal("UNITWATCH_EVENT=check-changed UNITWATCH_CHECK=flappy:command")[0];
    assert!(
        field(e, "MESSAGE").starts_with("flappy:command: pass -> fail: CRITICAL: bad run"),
        "{e}"
    );
    sb.wait_for("the recovery", Duration::from_secs(10), || {
        (flappy_changes() == 2).then_some(())
    });

    // The api's endpoint fails: its unit is restarted, and again (with a
    // doubled delay) while it keeps failing, then left alone once it passes.
    assert_eq!(sb.journal("UNITWATCH_EVENT=unit-restarted").len(), 0);
    sb.ok("echo bad > /var/lib/checkflag");
    sb.wait_for("two restarts of api", Duration::from_secs(30), || {
        (sb.journal("UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT=api.service")
            .len()
            >= 2)
            .then_some(())
    });
    let scheduled: Vec<(u64, String)> = sb
        .journal("UNITWATCH_EVENT=restart-scheduled UNITWATCH_UNIT=api.service")
        .iter()
        .map(|e| {
            (
                field(e, "UNITWATCH_DELAY_MS").parse().unwrap(),
                field(e, "MESSAGE").to_string(),
            )
        })
        .collect();
    assert_eq!(scheduled[0].0, 1000, "{scheduled:?}");
    assert_eq!(scheduled[1].0, 2000, "{scheduled:?}");
    assert!(
        scheduled[0].1.contains("reason: check-failed"),
        "{scheduled:?}"
    );
    sb.ok("echo good > /var/lib/checkflag");
    sb.wait_for("the check passing", Duration::from_secs(10), || {
        (check(&sb.status_json(), "api:http")["status"] == "pass").then_some(())
    });
    let restarts = sb
        .journal("UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT=api.service")
        .len();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        sb.journal("UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT=api.service")
            .len(),
        restarts,
        "{}",
        sb.journal_text()
    );
    let s = sb.status_json();
    assert_eq!(check(&s, "api:http")["unit"], "api.service");
    assert_eq!(s["units"]["api.service"]["state"]["active_state"], "active");
}

#[test]
fn probe_results_are_published_every_second_between_long_sweeps() {
    let sb = Sandbox::boot("checks-publish");
    // Sweeps (which publish) only every 30 s; a probe every 200 ms whose
    // status never changes: its results still reach status.json within a
    // second of the last snapshot, not at the next sweep.
    sb.start_unitwatch(
        "[daemon]\ninterval = \"30s\"\n\
         [[check]]\ntype = \"command\"\nname = \"steady\"\ninterval = \"200ms\"\ncommand = [\"/bin/true\"]\n",
        "",
    );
    let time_of = || -> Option<SystemTime> {
        let t = check(&sb.status_json(), "steady:command")["time"]
            .as_str()?
            .to_string();
        humantime::parse_rfc3339(&t).ok()
    };
    sb.wait_for("the first result", Duration::from_secs(10), || {
        (check(&sb.status_json(), "steady:command")["status"] == "pass").then_some(())
    });
    let mut seen = Vec::new();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(700));
        let t = time_of().expect("the check's time");
        let age = SystemTime::now().duration_since(t).unwrap_or_default();
        // At most a second behind (the pace), plus the read's own time.
        assert!(age < Duration::from_millis(1500), "result {age:?} old");
        seen.push(t);
    }
    seen.dedup();
    assert!(seen.len() >= 3, "status.json was not rewritten: {seen:?}");
}

//! unitwatchd against a real systemd 252 (see tests/harness): detection,
//! backoff across its own restarts, the hourly cap, heartbeats, systemd's
//! own restarts, memory thresholds, journal fields, and the one-shot CLI.
//! (What goes wrong around the daemon is in resilience.rs; polkit in
//! polkit.rs; signals against reads in signal_order.rs.)

mod harness;

use std::time::Duration;

use harness::{field, Sandbox};

const VICTIM: &str =
    "[Unit]\nStartLimitIntervalSec=0\n[Service]\nType=simple\nExecStart=/bin/sleep infinity\n";

fn config(extra_backoff: &str, units: &str) -> String {
    format!("[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"1s\"\n{extra_backoff}\n{units}\n")
}

/// Delays (ms) of the restart-scheduled events for `unit`, in order.
fn scheduled_delays(sb: &Sandbox, unit: &str) -> Vec<u64> {
    sb.journal(&format!(
        "UNITWATCH_EVENT=restart-scheduled UNITWATCH_UNIT={unit}"
    ))
    .iter()
    .map(|e| field(e, "UNITWATCH_DELAY_MS").parse().unwrap())
    .collect()
}

/// The check `key` of a snapshot, owned.
fn check(s: &serde_json::Value, key: &str) -> serde_json::Value {
    harness::check_of(s, key).clone()
}

fn count_events(sb: &Sandbox, filter: &str) -> usize {
    sb.journal(filter).len()
}

#[test]
fn kills_are_restarted_with_growing_backoff_that_survives_daemon_restart_and_resets() {
    let sb = Sandbox::boot("backoff");
    sb.unit("victim.service", VICTIM);
    sb.ok("systemctl start victim");
    sb.start_unitwatch(
        &config(
            "reset_after = \"5s\"\nmax_restarts_per_hour = 20",
            "[[unit]]\nname = \"victim.service\"",
        ),
        "",
    );

    // Three kills: each restarted, each wait longer than the one before.
    let mut downs = vec![];
    for i in 0..3 {
        downs.push(sb.kill_and_wait_back("victim.service", i));
    }
    assert_eq!(
        scheduled_delays(&sb, "victim.service"),
        vec![1000, 2000, 4000]
    );
    for (down, want) in downs.iter().zip([1000, 2000, 4000]) {
        assert!(
            down.as_millis() >= want && down.as_millis() < want + 1500,
            "down for {down:?}, configured delay {want} ms"
        );
    }
    let b = sb.backoff_json();
    let v = &b["units"]["victim.service"];
    assert_eq!(v["attempts"], 3, "{b}");
    assert_eq!(v["next_delay_ms"], 8000, "{b}");
    assert_eq!(v["restarts"].as_array().unwrap().len(), 3, "{b}");
    assert!(
        v["last_failure"].is_string() && v["last_restart"].is_string(),
        "{b}"
    );

    // Kill it, then restart unitwatch before the 8 s delay is up: the plan
    // and the sequence survive.
    sb.kill_main("victim.service");
    sb.wait_for("the 4th schedule", Duration::from_secs(5), || {
        (scheduled_delays(&sb, "victim.service").len() == 4).then_some(())
    });
    let pid = sb.prop("unitwatch", "MainPID");
    sb.ok("systemctl restart unitwatch");
    assert_ne!(pid, sb.prop("unitwatch", "MainPID"));
    assert_eq!(
        scheduled_delays(&sb, "victim.service"),
        vec![1000, 2000, 4000, 8000]
    );
    sb.wait_for("the 4th restart", Duration::from_secs(15), || {
        (count_events(
            &sb,
            "UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT=victim.service",
        ) == 4)
            .then_some(())
    });
    sb.wait_active("victim.service", Duration::from_secs(5));
    assert_eq!(sb.backoff_json()["units"]["victim.service"]["attempts"], 4);

    // Healthy for reset_after (5 s): the sequence starts over at 1 s.
    sb.wait_for("backoff reset", Duration::from_secs(15), || {
        (count_events(
            &sb,
            "UNITWATCH_EVENT=backoff-reset UNITWATCH_UNIT=victim.service",
        ) == 1)
            .then_some(())
    });
    let b = sb.backoff_json();
    assert_eq!(b["units"]["victim.service"]["attempts"], 0, "{b}");
    sb.kill_and_wait_back("victim.service", 4);
    assert_eq!(
        scheduled_delays(&sb, "victim.service"),
        vec![1000, 2000, 4000, 8000, 1000]
    );

    // The journal tells the story with structured fields.
    let failed = sb.journal("UNITWATCH_EVENT=unit-failed UNITWATCH_UNIT=victim.service");
    assert_eq!(failed.len(), 5);
    let e = &failed[0];
    assert_eq!(field(e, "UNITWATCH_SEVERITY"), "error");
    assert_eq!(field(e, "PRIORITY"), "3");
    assert_eq!(field(e, "SYSLOG_IDENTIFIER"), "unitwatchd");
    assert_eq!(field(e, "MESSAGE"), "victim.service failed (Result=signal)");
    let r = &sb.journal("UNITWATCH_EVENT=restart-scheduled")[0];
    assert_eq!(field(r, "UNITWATCH_UNIT"), "victim.service");
    assert_eq!(field(r, "UNITWATCH_DELAY_MS"), "1000");
    assert_eq!(field(r, "UNITWATCH_SEVERITY"), "warning");
    let c = &sb.journal("UNITWATCH_EVENT=check-changed UNITWATCH_CHECK=victim.service:state");
    assert!(c.len() >= 2, "check-changed events: {c:?}");
    assert_eq!(
        count_events(
            &sb,
            "UNITWATCH_EVENT=unit-recovered UNITWATCH_UNIT=victim.service"
        ),
        5
    );
}

#[test]
fn restart_limit_stops_restarts_and_is_reported_once() {
    let sb = Sandbox::boot("limit");
    sb.unit("victim.service", VICTIM);
    sb.ok("systemctl start victim");
    sb.start_unitwatch(
        &config(
            "factor = 1.0\nmax_restarts_per_hour = 2",
            "[[unit]]\nname = \"victim.service\"",
        ),
        "",
    );
    sb.kill_and_wait_back("victim.service", 0);
    sb.kill_and_wait_back("victim.service", 1);
    sb.kill_main("victim.service");
    let e = sb.wait_for("restart-limit event", Duration::from_secs(10), || {
        sb.journal("UNITWATCH_EVENT=restart-limit")
            .into_iter()
            .next()
    });
    assert_eq!(field(&e, "UNITWATCH_SEVERITY"), "critical");
    assert_eq!(field(&e, "UNITWATCH_UNIT"), "victim.service");
    // Several sweeps later: still failed, no third restart, one event only.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(sb.prop("victim.service", "ActiveState"), "failed");
    assert_eq!(count_events(&sb, "UNITWATCH_EVENT=unit-restarted"), 2);
    assert_eq!(count_events(&sb, "UNITWATCH_EVENT=restart-limit"), 1);
    let s = sb.status_json();
    assert_eq!(s["status"], "fail");
    assert_eq!(
        s["units"]["victim.service"]["backoff"]["limited"], true,
        "{s}"
    );
    assert_eq!(
        s["units"]["victim.service"]["backoff"]["restarts_last_hour"],
        2
    );

    // An operator's reset lifts the limit: the next failure is restarted.
    let out = sb.ok(&format!(
        "{} backoff reset victim.service",
        harness::unitwatchd_bin().display()
    ));
    assert!(out.contains("applied by unitwatchd"), "{out}");
    sb.wait_for("restart after reset", Duration::from_secs(10), || {
        (count_events(&sb, "UNITWATCH_EVENT=unit-restarted") == 3).then_some(())
    });
    sb.wait_active("victim.service", Duration::from_secs(5));
}

#[test]
fn stale_heartbeat_warns_and_restarts_its_unit() {
    let sb = Sandbox::boot("heartbeat");
    // Beats three times, then hangs.
    sb.unit(
        "beat.service",
        "[Service]\nExecStartPre=/bin/mkdir -p /var/lib/beat\nExecStart=/bin/sh -c 'for i in 1 2 3; do touch /var/lib/beat/hb; sleep 1; done; exec sleep infinity'\n",
    );
    sb.ok("systemctl start beat");
    sb.write("/var/lib/lonely/hb", "x");
    sb.start_unitwatch(
        &config(
            "",
            "[[unit]]\nname = \"beat.service\"\n\
             [[heartbeat]]\npath = \"/var/lib/beat/hb\"\nmax_age = \"3s\"\nrestart_unit = \"beat.service\"\n\
             [[heartbeat]]\npath = \"/var/lib/lonely/hb\"\nmax_age = \"2s\"",
        ),
        "",
    );
    // The heartbeat without restart_unit: fresh, then stale -> warn.
    let c = sb.wait_for("lonely heartbeat stale", Duration::from_secs(10), || {
        let c = check(&sb.status_json(), "heartbeat:/var/lib/lonely/hb:age");
        (c["status"] == "warn").then_some(c)
    });
    assert!(c["observed_value"].as_f64().unwrap() > 2.0, "{c}");
    assert_eq!(c["observed_unit"], "s");
    assert!(
        c["output"].as_str().unwrap().contains("ago (max 2s)"),
        "{c}"
    );
    assert_eq!(sb.status_json()["status"], "warn");

    // The hanging service: stale, then restarted by unitwatch.
    let pid = sb.prop("beat.service", "MainPID");
    let e = sb.wait_for("heartbeat-stale restart", Duration::from_secs(20), || {
        sb.journal("UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT=beat.service")
            .into_iter()
            .next()
    });
    assert!(
        field(&e, "MESSAGE").contains("reason: heartbeat-stale"),
        "{e}"
    );
    assert_eq!(
        count_events(
            &sb,
            "UNITWATCH_EVENT=heartbeat-stale UNITWATCH_UNIT=beat.service"
        ),
        1
    );
    sb.wait_active("beat.service", Duration::from_secs(5));
    assert_ne!(pid, sb.prop("beat.service", "MainPID"));
    // After the restart it beats again: the check passes again.
    sb.wait_for("heartbeat fresh again", Duration::from_secs(5), || {
        (check(&sb.status_json(), "heartbeat:/var/lib/beat/hb:age")["status"] == "pass")
            .then_some(())
    });
}

#[test]
fn systemd_own_restarts_are_counted_not_duplicated() {
    let sb = Sandbox::boot("selfrestart");
    sb.unit(
        "selfheal.service",
        "[Service]\nExecStart=/bin/sleep infinity\nRestart=always\nRestartSec=1s\n",
    );
    sb.ok("systemctl start selfheal");
    sb.start_unitwatch(&config("", "[[unit]]\nname = \"selfheal.service\""), "");
    sb.kill_main("selfheal.service");
    let e = sb.wait_for("unit-failed event", Duration::from_secs(5), || {
        sb.journal("UNITWATCH_EVENT=unit-failed").into_iter().next()
    });
    assert!(
        field(&e, "MESSAGE").contains("systemd's Restart= is starting it again"),
        "{e}"
    );
    sb.wait_for("NRestarts=1", Duration::from_secs(5), || {
        (sb.prop("selfheal.service", "NRestarts") == "1").then_some(())
    });
    sb.wait_active("selfheal.service", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count_events(&sb, "UNITWATCH_EVENT=unit-restarted"), 0);
    assert_eq!(count_events(&sb, "UNITWATCH_EVENT=restart-scheduled"), 0);
    assert_eq!(sb.prop("selfheal.service", "NRestarts"), "1");
    let b = sb.backoff_json();
    assert_eq!(
        b["units"]["selfheal.service"]["systemd_restarts_total"], 1,
        "{b}"
    );
    assert_eq!(b["units"]["selfheal.service"]["restarts_total"], 0, "{b}");
}

#[test]
fn systemd_giving_up_is_reported_and_not_hammered() {
    let sb = Sandbox::boot("startlimit");
    sb.unit(
        "flappy.service",
        "[Unit]\nStartLimitIntervalSec=60\nStartLimitBurst=3\n[Service]\nExecStart=/bin/false\nRestart=always\nRestartSec=100ms\n",
    );
    sb.start_unitwatch(
        "[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"3s\"\n[[unit]]\nname = \"flappy.service\"\n",
        "",
    );
    sb.sh("systemctl start flappy");
    // systemd's burst (3 starts) ends in failed; unitwatch says systemd gave up.
    let gave_up = |sb: &Sandbox| {
        sb.journal("UNITWATCH_EVENT=unit-failed UNITWATCH_UNIT=flappy.service")
            .into_iter()
            .filter(|e| field(e, "MESSAGE").contains("systemd's Restart= gave up"))
            .count()
    };
    sb.wait_for("gave-up event", Duration::from_secs(10), || {
        (gave_up(&sb) == 1).then_some(())
    });
    assert_eq!(scheduled_delays(&sb, "flappy.service"), vec![3000]);
    assert!(sb
        .sh_out("journalctl -u flappy --no-pager -o cat")
        .contains("Start request repeated too quickly"));
    // Not hammered: nothing before the delay is up.
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(count_events(&sb, "UNITWATCH_EVENT=unit-restarted"), 0);
    // Then one restart, which systemd accepts (reset-failed cleared its
    // limit): a new burst runs and gives up again, and the next wait doubles.
    sb.wait_for("second give-up", Duration::from_secs(10), || {
        (gave_up(&sb) == 2).then_some(())
    });
    assert_eq!(count_events(&sb, "UNITWATCH_EVENT=unit-restarted"), 1);
    assert_eq!(count_events(&sb, "UNITWATCH_EVENT=restart-failed"), 0);
    assert_eq!(scheduled_delays(&sb, "flappy.service"), vec![3000, 6000]);
    let s = sb.status_json();
    assert_eq!(s["checks"][0]["status"], "fail");
    assert!(
        s["units"]["flappy.service"]["backoff"]["systemd_restarts_total"]
            .as_u64()
            .unwrap()
            >= 4,
        "{s}"
    );
}

/// Per-unit memory on systemd's real `MemoryCurrent` (MemoryAccounting=yes):
/// a unit that allocates past `memory_warn` warns, past `memory_crit`
/// fails, and passes again when it lets go; the observed value is systemd's.
#[test]
fn unit_memory_thresholds_on_a_real_memory_current() {
    let sb = Sandbox::boot("unit-memory");
    // Holds as many MiB as /var/lib/hog/mib says, every page touched.
    sb.write("/var/lib/hog/mib", "0");
    sb.write(
        "/var/lib/hog/hog.py",
        "import time\nheld = []\nwhile True:\n    n = int(open('/var/lib/hog/mib').read() or 0)\n    \
         while len(held) < n:\n        held.append(b'\\x01' * (1 << 20))\n    \
         while len(held) > n:\n        held.pop()\n    time.sleep(0.1)\n",
    );
    sb.unit(
        "hog.service",
        "[Service]\nMemoryAccounting=yes\nExecStart=/usr/bin/python3 /var/lib/hog/hog.py\n",
    );
    sb.ok("systemctl start hog");
    sb.start_unitwatch(
        &config(
            "",
            "[[unit]]\nname = \"hog.service\"\nmemory_warn = \"64MiB\"\nmemory_crit = \"128MiB\"",
        ),
        "",
    );
    let memory = |s: &serde_json::Value| check(s, "hog.service:memory");
    let reach = |mib: u32, status: &str| {
        sb.write("/var/lib/hog/mib", &mib.to_string());
        let c = sb.wait_for(
            &format!("{status} at {mib} MiB"),
            Duration::from_secs(10),
            || {
                let c = memory(&sb.status_json());
                (c["status"] == status).then_some(c)
            },
        );
        // The figure is systemd's MemoryCurrent of the unit, read in the
        // same second: within a few MiB of what systemctl shows now.
        let observed = c["observed_value"].as_u64().expect("bytes");
        let systemd: u64 = sb.prop("hog.service", "MemoryCurrent").parse().unwrap();
        assert!(
            observed.abs_diff(systemd) < 8 << 20,
            "observed {observed}, systemd says {systemd}"
        );
        assert!(observed >= (mib as u64) << 20, "{observed} for {mib} MiB");
        assert_eq!(c["observed_unit"], "bytes");
        c
    };
    let c = reach(0, "pass");
    assert!(c["observed_value"].as_u64().unwrap() < 64 << 20, "{c}");
    reach(96, "warn");
    reach(192, "fail");
    let s = sb.status_json();
    assert_eq!(
        s["status"], "fail",
        "a unit over memory_crit fails the host"
    );
    reach(0, "pass");
    assert_eq!(sb.status_json()["status"], "pass");
    // The changes were logged as they happened, in order.
    let changes: Vec<String> = sb
        .journal("UNITWATCH_EVENT=check-changed UNITWATCH_CHECK=hog.service:memory")
        .iter()
        .map(|e| field(e, "MESSAGE").to_string())
        .collect();
    let mut want = ["pass -> warn", "warn -> fail", "-> pass"]
        .into_iter()
        .peekable();
    for m in &changes {
        if want.peek().is_some_and(|w| m.contains(w)) {
            want.next();
        }
    }
    assert!(want.peek().is_none(), "{changes:?}");
}

/// `systemctl stop` is an operator's word: reported as failing, never
/// overruled by a restart, and back to passing when the operator starts it.
#[test]
fn a_unit_stopped_on_purpose_is_reported_not_restarted() {
    let sb = Sandbox::boot("stopped");
    sb.unit("victim.service", VICTIM);
    sb.ok("systemctl start victim");
    sb.start_unitwatch(&config("", "[[unit]]\nname = \"victim.service\""), "");
    let state = |s: &serde_json::Value| check(s, "victim.service:state")["status"].clone();
    assert_eq!(state(&sb.status_json()), "pass");
    sb.ok("systemctl stop victim");
    sb.wait_for("the stop reported", Duration::from_secs(5), || {
        let s = sb.status_json();
        (state(&s) == "fail" && s["status"] == "fail").then_some(())
    });
    let s = sb.status_json();
    assert_eq!(
        check(&s, "victim.service:state")["observed_value"],
        "inactive",
        "{s}"
    );
    // Three times the 1 s backoff, and some: nothing is restarted or planned.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(sb.prop("victim.service", "ActiveState"), "inactive");
    for e in ["restart-scheduled", "unit-restarted", "unit-failed"] {
        assert_eq!(
            count_events(&sb, &format!("UNITWATCH_EVENT={e}")),
            0,
            "{e}:\n{}",
            sb.journal_text()
        );
    }
    let b = &sb.status_json()["units"]["victim.service"]["backoff"];
    assert_eq!(b["restarts_total"], 0, "{b}");
    assert!(b["pending_restart_at"].is_null(), "{b}");
    sb.ok("systemctl start victim");
    sb.wait_for("passing again", Duration::from_secs(5), || {
        let s = sb.status_json();
        (state(&s) == "pass" && s["status"] == "pass").then_some(())
    });
    assert_eq!(
        sb.status_json()["units"]["victim.service"]["backoff"]["restarts_total"],
        0
    );
    assert_eq!(count_events(&sb, "UNITWATCH_EVENT=unit-restarted"), 0);
}

#[test]
fn one_shot_check_and_snapshot_contract() {
    let sb = Sandbox::boot("cli");
    sb.unit("victim.service", VICTIM);
    sb.ok("systemctl start victim");
    let cfg = "[[unit]]\nname = \"victim.service\"\nrestart = false\n[[unit]]\nname = \"ghost.service\"\nrestart = false\n[[disk]]\npath = \"/\"\nwarn_percent = 99\ncrit_percent = 100\n";
    sb.write("/etc/unitwatch/unitwatch.toml", cfg);
    let bin = harness::unitwatchd_bin();
    let out = sb.sh(&format!("{} check", bin.display()));
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{table}");
    // Column widths follow the longest value (disk figures vary): compare
    // rows with their padding folded.
    let rows: Vec<String> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        rows.iter().any(|r| r == "PASS victim.service:state active"),
        "{table}"
    );
    assert!(
        rows.iter().any(|r| r
            == "FAIL ghost.service:state inactive unit does not exist (systemd: LoadState=not-found)"),
        "{table}"
    );
    assert_eq!(
        rows.first().map(String::as_str),
        Some("STATUS CHECK VALUE DETAIL")
    );
    assert!(
        rows.last()
            .unwrap()
            .starts_with("overall: fail (1 units ok, 1 failing: ghost.service)"),
        "{table}"
    );
    // Without the ghost: pass, exit 0, JSON snapshot.
    sb.write(
        "/etc/unitwatch/unitwatch.toml",
        &cfg.replace("ghost.service", "victim.service").replacen(
            "[[unit]]\nname = \"victim.service\"\nrestart = false\n",
            "",
            1,
        ),
    );
    let out = sb.sh(&format!("{} check --json", bin.display()));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["schema_version"], 1);
    assert_eq!(s["status"], "pass");
    assert_eq!(s["systemd"]["reachable"], true);
    assert_eq!(
        s["units"]["victim.service"]["state"]["active_state"],
        "active"
    );
    let keys: Vec<_> = s["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "victim.service:state",
            "disk:/:utilization",
            "disk:/:inodes"
        ]
    );
    for c in s["checks"].as_array().unwrap() {
        for k in [
            "status",
            "observed_value",
            "time",
            "component",
            "component_type",
        ] {
            assert!(c.get(k).is_some(), "{k} missing in {c}");
        }
    }
    // The daemon's snapshot follows the same contract, with pid and version.
    sb.start_unitwatch(&sb.read("/etc/unitwatch/unitwatch.toml").unwrap(), "");
    let s = sb.status_json();
    assert_eq!(s["pid"].to_string(), sb.prop("unitwatch", "MainPID"));
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["interval_ms"], 10000);
    // A killed watch-only unit turns it to fail at once, with no restart.
    sb.kill_main("victim.service");
    sb.wait_for("fail in status.json", Duration::from_secs(3), || {
        (sb.status_json()["status"] == "fail").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sb.prop("victim.service", "ActiveState"), "failed");
    assert_eq!(
        sb.prop("unitwatch", "StatusText"),
        "0 units ok, 1 failing: victim.service"
    );
}

//! 2,000 watched units in a real systemd 252 (tests/harness): every kill
//! is detected and restarted, on the right backoff, one at a time and in a
//! burst of 50 at once, and the snapshot and the state file hold what the
//! events said. The timings at this size are the benchmark's
//! (benches/compare.rs); this is correctness only.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{field, Sandbox};

const UNITS: usize = 2000;

fn unit(i: usize) -> String {
    format!("many@{i}.service")
}

/// unitwatch's events of `kind` for each unit, in order, with their
/// `UNITWATCH_DELAY_MS` where they carry one.
fn events(sb: &Sandbox, kind: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_unit: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in sb.journal(&format!("UNITWATCH_EVENT={kind}")) {
        by_unit
            .entry(field(&e, "UNITWATCH_UNIT").to_string())
            .or_default()
            .push(field(&e, "UNITWATCH_DELAY_MS").to_string());
    }
    by_unit
}

#[test]
fn two_thousand_units_every_kill_detected_and_restarted_on_its_backoff() {
    let sb = Sandbox::boot("scale");
    sb.unit(
        "many@.service",
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\n",
    );
    let names: Vec<String> = (1..=UNITS).map(unit).collect();
    for chunk in names.chunks(500) {
        sb.ok(&format!("systemctl start {}", chunk.join(" ")));
    }
    let mut config = String::from(
        "[daemon]\ninterval = \"1s\"\n\
         [backoff]\ninitial = \"200ms\"\nfactor = 2.0\nmax = \"10s\"\nmax_restarts_per_hour = 1000\n",
    );
    for n in &names {
        config += &format!("[[unit]]\nname = \"{n}\"\n");
    }
    sb.start_unitwatch(&config, "");
    sb.wait_for("all units in the snapshot", Duration::from_secs(30), || {
        let s = sb.status_json();
        (s["units"].as_object()?.len() == UNITS && s["status"] == "pass").then_some(())
    });

    // One at a time, spread over the whole range; the first ten twice.
    let singles: Vec<usize> = (0..20).map(|k| 1 + k * 100 + k % 7).collect();
    for &i in singles.iter().chain(&singles[..10]) {
        sb.kill_main(&unit(i));
        sb.wait_for(
            &format!("{} restarted", unit(i)),
            Duration::from_secs(10),
            || (sb.prop(&unit(i), "ActiveState") == "active").then_some(()),
        );
        // Past the restart's own signals before the next kill.
        std::thread::sleep(Duration::from_millis(300));
    }
    // A burst: 50 other units at once, in one systemctl call.
    let burst: Vec<String> = (0..50).map(|k| unit(1000 + k * 13)).collect();
    sb.ok(&format!(
        "systemctl kill --kill-who=main -s KILL {}",
        burst.join(" ")
    ));
    for u in &burst {
        sb.wait_active(u, Duration::from_secs(20));
    }

    let kills: Vec<String> = singles
        .iter()
        .chain(&singles[..10])
        .map(|&i| unit(i))
        .chain(burst.iter().cloned())
        .collect();
    let expected = |u: &str| kills.iter().filter(|k| *k == u).count();
    let failed = sb.wait_for("every failure told", Duration::from_secs(10), || {
        let f = events(&sb, "unit-failed");
        (f.values().map(Vec::len).sum::<usize>() == kills.len()).then_some(f)
    });
    let restarted = events(&sb, "unit-restarted");
    let mut killed = kills.clone();
    killed.sort();
    killed.dedup();
    for u in &killed {
        let want = expected(u);
        assert_eq!(failed.get(u).map(Vec::len), Some(want), "{u}: {failed:?}");
        // The backoff: 200 ms, then doubled for the second failure.
        let delays = restarted.get(u).cloned().unwrap_or_default();
        let want_delays: Vec<String> = ["200", "400"][..want]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(delays, want_delays, "{u}'s restart delays");
    }
    assert_eq!(
        failed.len(),
        killed.len(),
        "failures told for units never killed: {:?}",
        failed
            .keys()
            .filter(|k| !killed.contains(k))
            .collect::<Vec<_>>()
    );
    let b = sb.backoff_json();
    for u in &killed {
        assert_eq!(
            b["units"][u]["attempts"].as_u64(),
            Some(expected(u) as u64),
            "{u} in backoff.json"
        );
    }
    let s = sb.wait_for(
        "the snapshot passing again",
        Duration::from_secs(10),
        || {
            let s = sb.status_json();
            (s["status"] == "pass").then_some(s)
        },
    );
    assert_eq!(s["units"].as_object().unwrap().len(), UNITS);
    assert_eq!(
        s["units"][unit(singles[0])]["backoff"]["restarts_total"].as_u64(),
        Some(2)
    );
}

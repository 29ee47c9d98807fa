//! Timers in a real systemd 252, with unitwatch.service as shipped: a
//! `OnUnitActiveSec=2s` timer passes while it fires, fails with its
//! service's `Result` when the service's run fails, passes again, and fails
//! as stopped, without unitwatch restarting it; a timer not due before 2099
//! is reported as not having fired since boot.

mod harness;

use std::time::Duration;

use harness::Sandbox;
use serde_json::Value;

fn reach(sb: &Sandbox, key: &str, status: &str, output: &str) -> Value {
    sb.wait_check_where(
        key,
        &format!("{status} with {output:?}"),
        Duration::from_secs(15),
        |c| c["status"] == status && c["output"].as_str().is_some_and(|o| o.contains(output)),
    )
}

#[test]
fn a_timer_is_judged_by_its_firing_and_its_service() {
    let sb = Sandbox::boot("timers");
    sb.ok("mkdir -p /var/lib/tick");
    sb.unit(
        "tick.service",
        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'test ! -e /var/lib/tick/fail'\n",
    );
    sb.unit(
        "tick.timer",
        "[Timer]\nOnActiveSec=1s\nOnUnitActiveSec=2s\nAccuracySec=100ms\n",
    );
    sb.unit(
        "later.service",
        "[Service]\nType=oneshot\nExecStart=/bin/true\n",
    );
    sb.unit("later.timer", "[Timer]\nOnCalendar=2099-01-01\n");
    sb.ok("systemctl start tick.timer later.timer");
    sb.start_unitwatch(
        "[daemon]\ninterval = \"1s\"\n[[unit]]\nname = \"tick.timer\"\n[[unit]]\nname = \"later.timer\"\n",
        "",
    );
    // Between a firing and the end of its service's run systemd has no
    // next elapse ("nothing scheduled next"): a read then says so, and the
    // next one has it.
    let c = sb.wait_check_where(
        "tick.timer:schedule",
        "pass with \"last fired \" and \"; next in \"",
        Duration::from_secs(15),
        |c| {
            c["status"] == "pass"
                && c["output"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("last fired ") && o.contains("; next in "))
        },
    );
    // Its figure is systemd's LastTriggerUSec.
    let last: u64 = c["observed_value"].as_u64().unwrap();
    assert!(last > 0, "{c}");
    let c = reach(
        &sb,
        "later.timer:schedule",
        "pass",
        "has not fired since boot",
    );
    assert!(c["output"].as_str().unwrap().contains("; next in "), "{c}");

    // The service's next run fails: the timer check says so.
    sb.ok("touch /var/lib/tick/fail");
    reach(
        &sb,
        "tick.timer:schedule",
        "fail",
        "tick.service failed on its last run (Result=exit-code)",
    );
    sb.ok("rm /var/lib/tick/fail");
    reach(&sb, "tick.timer:schedule", "pass", "last fired ");

    // Stopped: it will not fire, and unitwatch does not start it again.
    sb.ok("systemctl stop tick.timer");
    reach(
        &sb,
        "tick.timer:schedule",
        "fail",
        "stopped (ActiveState=inactive): it will not fire until started",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sb.prop("tick.timer", "ActiveState"), "inactive");
    assert!(
        sb.journal("UNITWATCH_EVENT=unit-restarted").is_empty(),
        "a timer was restarted"
    );
    assert!(sb.journal("UNITWATCH_EVENT=restart-scheduled").is_empty());
}

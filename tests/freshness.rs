//! `[[check]] type = "freshness"` in a real systemd 252, with
//! unitwatch.service as shipped (its user, its hardening): a directory's
//! newest file aged with `touch -d` warns, then fails; a pipeline that
//! stops producing files is restarted by `on_fail = "restart"`; a log that
//! keeps growing through a rotation passes, and fails once it stops.

mod harness;

use std::time::Duration;

use harness::{field, Sandbox};
use serde_json::Value;

fn check(sb: &Sandbox, key: &str) -> Value {
    harness::check_of(&sb.status_json(), key).clone()
}

fn reach(sb: &Sandbox, key: &str, status: &str, within: Duration) -> Value {
    sb.wait_check(key, status, within)
}

/// Produces a file every 0.3 s; hangs (active, producing nothing) while
/// /var/lib/pipeline/stuck exists.
const PIPELINE: &str =
    "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sh -c 'while :; do \
    [ -e /var/lib/pipeline/stuck ] && exec sleep infinity; \
    touch /var/lib/pipeline/out/$(date +%%s%%N); sleep 0.3; done'\n";

/// Appends a line every 0.2 s, reopening the file each time (as a
/// logger that follows a rotation does).
const WRITER: &str = "[Service]\nExecStart=/bin/sh -c 'while :; do \
    echo \"a line of the application log\" >> /var/lib/pipeline/app.log; sleep 0.2; done'\n";

#[test]
fn data_flows_are_judged_by_mtime_and_growth() {
    let sb = Sandbox::boot("freshness");
    sb.ok("mkdir -p /var/lib/pipeline/out /var/lib/pipeline/static && chmod -R a+rX /var/lib/pipeline");
    sb.ok("touch /var/lib/pipeline/static/a /var/lib/pipeline/app.log");
    sb.unit("pipeline.service", PIPELINE);
    sb.unit("writer.service", WRITER);
    sb.ok("systemctl start pipeline writer");
    sb.start_unitwatch(
        "[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"1s\"\n\
         [[unit]]\nname = \"pipeline.service\"\n\
         [[check]]\ntype = \"freshness\"\nname = \"static\"\ninterval = \"500ms\"\n\
         path = \"/var/lib/pipeline/static\"\nmax_age_warn = \"30s\"\nmax_age_crit = \"60s\"\n\
         [[check]]\ntype = \"freshness\"\nname = \"output\"\ninterval = \"500ms\"\n\
         path = \"/var/lib/pipeline/out\"\nmax_age_crit = \"3s\"\nunit = \"pipeline.service\"\non_fail = \"restart\"\n\
         [[check]]\ntype = \"freshness\"\nname = \"log\"\ninterval = \"500ms\"\n\
         path = \"/var/lib/pipeline/app.log\"\nmin_growth = \"200B\"\nwindow = \"3s\"\n",
        "",
    );

    // touch -d sets the mtime; the directory's newest entry decides.
    reach(&sb, "static:freshness", "pass", Duration::from_secs(5));
    sb.ok("touch -d '-40 seconds' /var/lib/pipeline/static/a");
    let c = reach(&sb, "static:freshness", "warn", Duration::from_secs(5));
    assert!(
        c["output"].as_str().unwrap().ends_with("(warn at 30s)"),
        "{c}"
    );
    let age = c["observed_value"].as_f64().unwrap();
    assert!((40.0..45.0).contains(&age), "{c}");
    sb.ok("touch -d '-70 seconds' /var/lib/pipeline/static/a");
    let c = reach(&sb, "static:freshness", "fail", Duration::from_secs(5));
    assert!(
        c["output"].as_str().unwrap().ends_with("(critical at 1m)"),
        "{c}"
    );
    // A chmod moves the ctime, not the mtime: still failing.
    sb.ok("chmod 600 /var/lib/pipeline/static/a && chmod 644 /var/lib/pipeline/static/a");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(check(&sb, "static:freshness")["status"], "fail");
    sb.ok("touch /var/lib/pipeline/static/b");
    reach(&sb, "static:freshness", "pass", Duration::from_secs(5));

    // The log grows through a rotation in the middle of its window.
    reach(&sb, "log:freshness", "pass", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(4));
    sb.ok("mv /var/lib/pipeline/app.log /var/lib/pipeline/app.log.1");
    std::thread::sleep(Duration::from_secs(4));
    let c = check(&sb, "log:freshness");
    assert_eq!(c["status"], "pass", "{c}");
    assert!(c["output"].as_str().unwrap().contains("; grew "), "{c}");
    assert!(
        sb.journal("UNITWATCH_EVENT=check-changed UNITWATCH_CHECK=log:freshness")
            .is_empty(),
        "the rotation was taken for a stall"
    );
    // It stops growing: failed once the window holds no growth.
    sb.ok("systemctl stop writer");
    let c = reach(&sb, "log:freshness", "fail", Duration::from_secs(8));
    let out = c["output"].as_str().unwrap();
    assert!(
        out.starts_with("grew ") && out.contains(" in 3s (at least 200 B expected)"),
        "{c}"
    );
    assert!(
        c["measurements"][1]["value"].as_f64().unwrap() < 200.0,
        "{c}"
    );

    // The pipeline hangs: no new file for 3 s, and it is restarted.
    reach(&sb, "output:freshness", "pass", Duration::from_secs(5));
    sb.ok("touch /var/lib/pipeline/stuck");
    let restarted = sb.wait_for("the restart", Duration::from_secs(15), || {
        sb.journal("UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT=pipeline.service")
            .into_iter()
            .next()
    });
    assert!(
        field(&restarted, "MESSAGE").contains("reason: check-failed"),
        "{restarted}"
    );
    sb.ok("rm /var/lib/pipeline/stuck");
    reach(&sb, "output:freshness", "pass", Duration::from_secs(15));
    let failed = sb.journal("UNITWATCH_EVENT=check-changed UNITWATCH_CHECK=output:freshness");
    assert!(
        failed
            .iter()
            .any(|e| field(e, "MESSAGE").contains("(critical at 3s)")),
        "{failed:?}"
    );
}

//! `[[check]] type = "journal"` in a real systemd 252 and its journald,
//! with unitwatch.service as shipped (its user, its hardening, the
//! package's generator, which adds it to systemd-journal for this config):
//! a unit's `<3>` lines are counted and graded within a sweep, a `match`
//! counts only its lines, the counts survive `systemctl restart unitwatch`
//! without an entry counted twice, a unit that stops logging fails
//! `silence` after 3 s and `on_fail = "restart"` restarts it; without the
//! group the checks fail saying so. A unit logging 10,000 lines a second
//! for 30 s is counted while another unit's kill is still handled, and the
//! daemon's memory stays bounded.

mod harness;

use std::time::{Duration, Instant};

use harness::{field, Sandbox};
use serde_json::Value;

fn check(sb: &Sandbox, key: &str) -> Value {
    harness::check_of(&sb.status_json(), key).clone()
}

/// Prints a tick every 0.5 s, and four `<3>` lines (two of them
/// "timeout") on each SIGUSR1.
const CHATTER_SH: &str = r#"#!/bin/sh
trap 'echo "<3>order 1 rejected: timeout"; echo "<3>order 2 rejected: margin"; echo "<3>order 3 rejected: timeout"; echo "<3>order 4 rejected: margin"' USR1
while :; do echo tick; sleep 0.5 & wait $!; done
"#;

/// Says it started, then logs a tick every 0.3 s unless /run/bot-quiet
/// exists (a bot whose feed went quiet: active, silent).
const BOT_SH: &str = r#"#!/bin/sh
echo started
while :; do [ -e /run/bot-quiet ] || echo tick; sleep 0.3; done
"#;

fn script_unit(sb: &Sandbox, name: &str, script: &str, extra: &str) {
    let path = format!("/usr/local/bin/{name}");
    sb.write(&path, script);
    sb.ok(&format!("chmod 755 {path}"));
    sb.unit(
        &format!("{name}.service"),
        &format!("[Unit]\nStartLimitIntervalSec=0\n[Service]\n{extra}ExecStart={path}\n"),
    );
}

fn count(c: &Value) -> u64 {
    c["observed_value"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count: {c}"))
}

fn usr1(sb: &Sandbox, n: usize) {
    for _ in 0..n {
        sb.ok("systemctl kill --kill-who=main -s USR1 chatter.service");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn journal_entries_are_counted_once_and_silence_restarts() {
    let sb = Sandbox::boot("journal");
    script_unit(&sb, "chatter", CHATTER_SH, "");
    script_unit(&sb, "bot", BOT_SH, "");
    sb.ok("systemctl start chatter bot");
    sb.start_unitwatch(
        "[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"1s\"\n\
         [[unit]]\nname = \"chatter.service\"\n\
         [[unit]]\nname = \"bot.service\"\n\
         [[check]]\ntype = \"journal\"\nname = \"errors\"\nunit = \"chatter.service\"\n\
         priority = \"err\"\nwindow = \"10m\"\nwarn_count = 3\ncrit_count = 10\n\
         [[check]]\ntype = \"journal\"\nname = \"timeouts\"\nunit = \"chatter.service\"\n\
         match = \"timeout\"\nwindow = \"10m\"\nwarn_count = 100\n\
         [[check]]\ntype = \"journal\"\nname = \"bot-quiet\"\nunit = \"bot.service\"\n\
         silence = \"3s\"\non_fail = \"restart\"\n",
        "",
    );
    // The generator put the daemon in systemd-journal, for this config.
    let dropin = sb.sh_out("systemctl cat unitwatch");
    assert!(
        dropin.contains("SupplementaryGroups=systemd-journal"),
        "{dropin}"
    );
    assert!(!dropin.contains("CAP_DAC_READ_SEARCH"), "{dropin}");

    let c = sb.wait_check("errors:journal", "pass", Duration::from_secs(10));
    assert_eq!(count(&c), 0, "ticks are not errors: {c}");
    // The start graded nothing before systemd's first answer: no check
    // failed for want of the units.
    let early: Vec<String> = sb
        .journal("UNITWATCH_EVENT=check-changed")
        .iter()
        .map(|e| field(e, "MESSAGE").to_string())
        .collect();
    assert!(early.is_empty(), "{early:#?}");
    // Four <3> lines: graded within a sweep (1 s here), as a warning.
    usr1(&sb, 1);
    let t0 = Instant::now();
    let c = sb.wait_check("errors:journal", "warn", Duration::from_secs(5));
    println!("4 err lines graded in {:?}", t0.elapsed());
    assert_eq!(count(&c), 4, "{c}");
    assert_eq!(
        c["output"], "4 entries at err or above in the last 10m (warn at 3)",
        "{c}"
    );
    usr1(&sb, 2);
    let c = sb.wait_check("errors:journal", "fail", Duration::from_secs(5));
    assert_eq!(count(&c), 12, "{c}");
    let t = sb.wait_check_where("timeouts:journal", "pass", Duration::from_secs(5), |c| {
        c["observed_value"] == 6
    });
    assert_eq!(
        t["measurements"][0]["name"], "journal_window_entries",
        "{t}"
    );
    assert_eq!(
        t["measurements"][0]["labels"]["unit"], "chatter.service",
        "{t}"
    );

    // A restart of the daemon: the counts go on from the saved cursor,
    // not from zero, and no entry is counted twice.
    sb.ok("systemctl restart unitwatch");
    let saved: Value =
        serde_json::from_str(&sb.read("/var/lib/unitwatch/journal.json").unwrap()).unwrap();
    assert!(
        saved["cursor"]
            .as_str()
            .is_some_and(|c| c.starts_with("s=")),
        "{saved}"
    );
    assert_eq!(saved["checks"]["errors:journal"]["total"], 12, "{saved}");
    std::thread::sleep(Duration::from_secs(2));
    let c = check(&sb, "errors:journal");
    assert_eq!((c["status"].as_str(), count(&c)), (Some("fail"), 12), "{c}");
    assert_eq!(count(&check(&sb, "timeouts:journal")), 6);
    usr1(&sb, 1);
    sb.wait_check_where("errors:journal", "fail", Duration::from_secs(5), |c| {
        c["observed_value"] == 16
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&check(&sb, "errors:journal")), 16);

    // A reload that adds a check: the follower starts again for the new
    // set, the counts carry over, and the new check fails nothing.
    let config = sb.read("/etc/unitwatch/unitwatch.toml").unwrap();
    sb.write(
        "/etc/unitwatch/unitwatch.toml",
        &format!(
            "{config}[[check]]\ntype = \"journal\"\nname = \"margins\"\nunit = \"chatter.service\"\n\
             match = \"margin\"\nwindow = \"10m\"\nwarn_count = 100\n"
        ),
    );
    let events = sb.journal("UNITWATCH_EVENT=check-changed").len();
    sb.ok("systemctl reload unitwatch");
    sb.wait_for("the reload's new check", Duration::from_secs(10), || {
        let snap = sb.status_json();
        snap["checks"]
            .as_array()?
            .iter()
            .any(|c| c["key"] == "margins:journal" && c["status"] == "pass")
            .then_some(())
    });
    usr1(&sb, 1);
    sb.wait_check_where("errors:journal", "fail", Duration::from_secs(5), |c| {
        c["observed_value"] == 20
    });
    let m = sb.wait_check_where("margins:journal", "pass", Duration::from_secs(5), |c| {
        c["observed_value"].as_u64() >= Some(2)
    });
    assert_eq!(count(&m), 2, "the margins after the reload's cursor: {m}");
    let after: Vec<String> = sb.journal("UNITWATCH_EVENT=check-changed")[events..]
        .iter()
        .map(|e| field(e, "MESSAGE").to_string())
        .collect();
    assert!(after.is_empty(), "{after:#?}");

    // The bot goes quiet while active: silence fails after 3 s, and the
    // bot is restarted.
    sb.wait_check("bot-quiet:journal", "pass", Duration::from_secs(5));
    sb.ok("touch /run/bot-quiet");
    let c = sb.wait_check("bot-quiet:journal", "fail", Duration::from_secs(8));
    let out = c["output"].as_str().unwrap();
    assert!(
        out.starts_with("bot.service has logged no entries for ")
            && out.contains("(silence at 3s; last at "),
        "{c}"
    );
    let restarted = sb.wait_for("the bot's restart", Duration::from_secs(10), || {
        sb.journal("UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT=bot.service")
            .into_iter()
            .next()
    });
    assert!(
        field(&restarted, "MESSAGE").contains("reason: check-failed"),
        "{restarted}"
    );
    // Its feed back: it logs, and passes.
    sb.ok("rm /run/bot-quiet");
    sb.wait_check("bot-quiet:journal", "pass", Duration::from_secs(10));

    // Without the generator's group the journal is not readable: the
    // checks fail with the reason, never with a 0.
    sb.ok("rm /etc/systemd/system-generators/unitwatch-generator");
    sb.ok("systemctl daemon-reload && systemctl restart unitwatch");
    let c = sb.wait_check_where("errors:journal", "fail", Duration::from_secs(10), |c| {
        c["output"]
            .as_str()
            .is_some_and(|o| o.contains("no read access"))
    });
    assert!(
        c["output"].as_str().unwrap().contains("systemd-journal"),
        "{c}"
    );
}

/// journald's rate limit off, as an operator would set it for a unit this
/// chatty. (The unit's own LogRateLimitIntervalSec=0 reaches journald as
/// an extended attribute of its cgroup, which the sandbox's cgroup tree
/// does not keep: journald kept 37,500 lines of 100,000 with it.)
fn no_rate_limit(sb: &Sandbox) {
    sb.write(
        "/etc/systemd/journald.conf.d/50-no-rate-limit.conf",
        "[Journal]\nRateLimitIntervalSec=0\n",
    );
    sb.ok("systemctl restart systemd-journald");
}

/// Logs RATE lines a second for SECS seconds, then sleeps.
fn flood_py(rate: u32, secs: u32) -> String {
    format!(
        r#"import sys, time
rate, secs = {rate}, {secs}
t0 = time.monotonic(); n = 0
while time.monotonic() - t0 < secs:
    due = int((time.monotonic() - t0) * rate)
    if n < due:
        sys.stdout.write("".join("<6>quote %d bid 101.25 ask 101.26\n" % i for i in range(n, due)))
        sys.stdout.flush(); n = due
    time.sleep(0.005)
time.sleep(3600)
"#
    )
}

#[test]
fn a_chatty_unit_is_counted_with_bounded_memory_and_a_kill_still_handled() {
    let sb = Sandbox::boot("journal-flood");
    no_rate_limit(&sb);
    sb.write("/usr/local/bin/flood.py", &flood_py(10_000, 30));
    sb.unit(
        "flood.service",
        "[Service]\nLogRateLimitIntervalSec=0\nExecStart=/usr/bin/python3 -u /usr/local/bin/flood.py\n",
    );
    sb.unit(
        "victim.service",
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\n",
    );
    sb.ok("systemctl start victim");
    sb.start_unitwatch(
        "[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"100ms\"\nfactor = 1.0\nmax = \"100ms\"\nmax_restarts_per_hour = 1000\n\
         [[unit]]\nname = \"victim.service\"\n\
         [[unit]]\nname = \"flood.service\"\nrestart = false\n\
         [[check]]\ntype = \"journal\"\nname = \"quotes\"\nunit = \"flood.service\"\n\
         match = \"bid\"\nwindow = \"10m\"\nwarn_count = 100000000\n",
        "",
    );
    sb.wait_check("quotes:journal", "pass", Duration::from_secs(10));
    let pid = sb.prop("unitwatch", "MainPID");
    let rss = |sb: &Sandbox| -> u64 {
        sb.sh_out(&format!("grep VmRSS /proc/{pid}/status"))
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let before = rss(&sb);
    sb.ok("systemctl start flood");
    let mut peak = before;
    let mut handled = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_secs(4));
        // A kill of another unit under the load is still seen and restarted.
        let restarts = sb
            .journal("UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT=victim.service")
            .len();
        sb.kill_and_wait_back("victim.service", restarts);
        handled += 1;
        peak = peak.max(rss(&sb));
    }
    let logged: u64 = sb
        .sh_out("journalctl -u flood --no-pager -o cat | grep -c bid || true")
        .trim()
        .parse()
        .unwrap();
    // Every line journald kept is counted, once the follower catches up.
    let c = sb.wait_check_where("quotes:journal", "pass", Duration::from_secs(60), |c| {
        c["observed_value"].as_u64() == Some(logged)
    });
    peak = peak.max(rss(&sb));
    println!(
        "flood: {logged} lines in 30 s counted ({}), {handled} kills handled meanwhile; unitwatchd RSS {before} kB before, {peak} kB at most",
        c["observed_value"]
    );
    assert!(logged > 200_000, "journald kept only {logged} lines");
    assert!(handled >= 5, "{handled} kills");
    // Bounded: a 64 KiB buffer and the window's buckets, whatever the
    // number of lines (300,000 here).
    assert!(
        peak < before + 8 * 1024,
        "RSS grew from {before} kB to {peak} kB"
    );
}

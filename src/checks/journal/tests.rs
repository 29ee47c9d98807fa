//! The journal kind's parsing, grading and entry counting, without a
//! journal (tests/journal.rs follows a real one in systemd).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::follow::{args, Saved, Start};
use super::tally::Tally;
use super::*;
use crate::config::Config;

fn parse(body: &str) -> Result<Config, String> {
    let text = format!("[[unit]]\nname = \"bot.service\"\n{body}");
    Config::parse(&text, Path::new("/etc/unitwatch/unitwatch.toml")).map_err(|e| e.to_string())
}

#[test]
fn mistakes_are_located() {
    let cases: &[(&str, &str)] = &[
        (
            "[[check]]\ntype = \"journal\"\nname = \"j\"\nsilence = \"15m\"\n",
            "unitwatch.toml:3:1: check[0]: a journal check needs unit: the watched unit whose entries it reads",
        ),
        (
            "[[check]]\ntype = \"journal\"\nname = \"j\"\nunit = \"bot.service\"\nmatch = \"a(b\"\nwarn_count = 1\n",
            "unitwatch.toml:7:9: check[0].match: not a valid regular expression: ",
        ),
        (
            "[[check]]\ntype = \"journal\"\nname = \"j\"\nunit = \"bot.service\"\npriority = \"loud\"\nwarn_count = 1\n",
            "unitwatch.toml:7:12: check[0].priority: expected a priority: one of emerg, alert, crit, err, warning, notice, info, debug or 0 to 7",
        ),
        (
            "[[check]]\ntype = \"journal\"\nname = \"j\"\nunit = \"bot.service\"\n",
            "unitwatch.toml:3:1: check[0]: set warn_count, crit_count or silence: nothing to check",
        ),
        (
            "[[check]]\ntype = \"journal\"\nname = \"j\"\nunit = \"bot.service\"\nwarn_count = 9\ncrit_count = 3\n",
            "unitwatch.toml:7:14: check[0].warn_count: 9 is above crit_count (3)",
        ),
        (
            "[[check]]\ntype = \"journal\"\nname = \"j\"\nunit = \"bot.service\"\nsilence = \"15m\"\nwindow = \"5m\"\n",
            "unitwatch.toml:8:10: check[0].window: window is the span of warn_count and crit_count, neither of which is set",
        ),
        (
            "[[check]]\ntype = \"journal\"\nname = \"j\"\nunit = \"other.service\"\nsilence = \"15m\"\n",
            "unitwatch.toml:6:8: check[0].unit: other.service is not a watched unit",
        ),
    ];
    for (body, want) in cases {
        let got = parse(body).unwrap_err();
        assert!(got.contains(want), "{body}\n got: {got}\nwant: {want}");
    }
    parse("[[check]]\ntype = \"journal\"\nname = \"j\"\nunit = \"bot.service\"\npriority = 3\nmatch = \"(?i)timeout\"\nwarn_count = 1\ncrit_count = 5\nsilence = \"15m\"\n").unwrap();
}

fn watch(priority: Option<u8>, pattern: Option<&str>, window: Option<u64>, silence: Option<u64>) -> Watch {
    Watch {
        key: "j:journal".into(),
        unit: "bot.service".into(),
        priority: priority.map(Priority),
        pattern: pattern.map(str::to_string),
        regex: pattern.map(|p| regex_lite::Regex::new(p).unwrap()),
        window: window.map(Duration::from_secs),
        warn_count: Some(2),
        crit_count: Some(4),
        silence: silence.map(Duration::from_secs),
        live: Mutex::default(),
    }
}

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

#[test]
fn priority_and_match_pick_the_entries() {
    let w = watch(Some(3), Some("(?i)timeout"), Some(60), None);
    assert!(w.counts(Some(3), Some("Timeout talking to the exchange")));
    assert!(w.counts(Some(0), Some("timeout")));
    assert!(!w.counts(Some(4), Some("timeout")), "warning is below err");
    assert!(!w.counts(Some(3), Some("all fine")));
    assert!(!w.counts(Some(3), None), "a null MESSAGE does not match");
    // No PRIORITY is info, as journald stores it.
    assert!(!w.counts(None, Some("timeout")));
    assert!(watch(None, None, Some(60), None).counts(None, None));
}

#[test]
fn counts_are_graded_over_the_window() {
    let w = watch(Some(3), None, Some(60), None);
    let mut live = Live {
        tally: Some(Tally::new(w.span(), at(1_000))),
        caught_up: true,
        ..Live::default()
    };
    let up = UnitNow { active: true, started: None };
    let o = grade_watch(&w, &live, up, at(1_010));
    assert_eq!((o.status, o.observed_value.clone()), (Status::Pass, 0.into()));
    for s in [1_001, 1_002, 1_003] {
        live.tally.as_mut().unwrap().add(s * 1_000_000, at(s), w.span());
    }
    let o = grade_watch(&w, &live, up, at(1_010));
    assert_eq!(o.status, Status::Warn);
    assert_eq!(o.output.as_deref(), Some("3 entries at err or above in the last 1m (warn at 2)"));
    assert_eq!(o.measurements[0].name, "journal_window_entries");
    assert_eq!(&o.measurements[0].labels["unit"], "bot.service");
    live.tally.as_mut().unwrap().add(1_004_000_000, at(1_004), w.span());
    assert_eq!(grade_watch(&w, &live, up, at(1_010)).status, Status::Fail);
    // A minute later they have left the window.
    assert_eq!(grade_watch(&w, &live, up, at(1_070)).status, Status::Pass);
    live.error = Some("no read access".into());
    let o = grade_watch(&w, &live, up, at(1_070));
    assert_eq!((o.status, o.output.as_deref()), (Status::Fail, Some("no read access")));
}

#[test]
fn silence_counts_from_the_last_entry_or_start_and_only_while_active() {
    let w = watch(None, None, None, Some(15));
    let mut live = Live {
        tally: Some(Tally::new(w.span(), at(1_000))),
        caught_up: false,
        ..Live::default()
    };
    let up = UnitNow { active: true, started: None };
    // Never logged since watching began at 1,000: silent for 20 s, but
    // the backlog is not read yet.
    let o = grade_watch(&w, &live, up, at(1_020));
    assert_eq!(o.status, Status::Pass, "{:?}", o.output);
    live.caught_up = true;
    let o = grade_watch(&w, &live, up, at(1_020));
    assert_eq!(o.status, Status::Fail);
    assert!(o.output.as_deref().unwrap().starts_with("bot.service has logged no entries for 20s (silence at 15s; none since watching began at 1970-01-01T00:16:40Z)"), "{:?}", o.output);
    assert_eq!(o.observed_value, serde_json::json!(20));
    live.tally.as_mut().unwrap().add(1_010_000_000, at(1_010), w.span());
    assert_eq!(grade_watch(&w, &live, up, at(1_020)).status, Status::Pass);
    assert_eq!(grade_watch(&w, &live, up, at(1_025)).status, Status::Fail);
    // Restarted at 1,020: silence counts from there.
    let restarted = UnitNow { active: true, started: Some(at(1_020)) };
    assert_eq!(grade_watch(&w, &live, restarted, at(1_030)).status, Status::Pass);
    let down = UnitNow { active: false, started: None };
    let o = grade_watch(&w, &live, down, at(1_100));
    assert_eq!(o.status, Status::Pass);
    assert!(o.output.as_deref().unwrap().contains("not active"));
}

#[test]
fn journalctl_is_asked_for_the_units_from_the_cursor() {
    let a = args(&["a.service", "b.service"], &Start::AfterCursor("s=1;i=2".into()), true);
    assert!(a.contains(&"--after-cursor=s=1;i=2".to_string()));
    assert!(a.contains(&"--no-tail".to_string()));
    let tail = &a[a.len() - 6..];
    assert_eq!(
        tail,
        [
            "_SYSTEMD_UNIT=a.service",
            "_SYSTEMD_UNIT=b.service",
            "+",
            &format!("MESSAGE_ID={}", follow::UNIT_STARTED),
            "UNIT=a.service",
            "UNIT=b.service"
        ]
    );
    assert_eq!(a[0], "--follow");
    let a = args(&["a.service"], &Start::Since(at(1_700_000_000)), false);
    assert!(a.contains(&"--since=@1700000000".to_string()));
}

#[test]
fn saved_state_is_checked() {
    assert!(Saved::parse(b"{\"schema_version\":1,\"saved_at_us\":5}").is_ok());
    let e = Saved::parse(b"{\"schema_version\":9,\"saved_at_us\":5}").unwrap_err();
    assert!(e.contains("schema_version 9"), "{e}");
    assert!(Saved::parse(b"{\"schema_version\":1,").is_err());
}

#[test]
fn the_follower_counts_entries_of_its_units_only() {
    let w = Arc::new(watch(Some(3), None, Some(3_600), None));
    w.lock().tally = Some(Tally::new(w.span(), SystemTime::now() - Duration::from_secs(60)));
    let dir = tempfile::tempdir().unwrap();
    let run = follow::tests::run(vec![w.clone()], dir.path().join("journal.json"));
    let now_us = tally::micros(SystemTime::now());
    let line = |unit: &str, prio: &str, cursor: &str| {
        format!("{{\"__CURSOR\":\"{cursor}\",\"__REALTIME_TIMESTAMP\":\"{now_us}\",\"_BOOT_ID\":\"x\",\"PRIORITY\":\"{prio}\",\"_SYSTEMD_UNIT\":\"{unit}\",\"MESSAGE\":\"x\"}}")
    };
    let mut cursor = None;
    let now = SystemTime::now();
    assert_eq!(run.take(line("bot.service", "3", "c1").as_bytes(), now, &mut cursor), Some((now_us, true)));
    assert_eq!(run.take(line("bot.service", "6", "c2").as_bytes(), now, &mut cursor), Some((now_us, false)));
    assert_eq!(run.take(line("other.service", "0", "c3").as_bytes(), now, &mut cursor), Some((now_us, false)));
    assert_eq!(cursor.as_deref(), Some("c3"));
    assert_eq!(run.take(b"not json", now, &mut cursor), None);
    // Binary MESSAGEs are arrays of bytes.
    let bin = format!("{{\"__CURSOR\":\"c4\",\"__REALTIME_TIMESTAMP\":\"{now_us}\",\"PRIORITY\":\"2\",\"_SYSTEMD_UNIT\":\"bot.service\",\"MESSAGE\":[104,105,255]}}");
    assert_eq!(run.take(bin.as_bytes(), now, &mut cursor), Some((now_us, true)));
    // systemd's "Started" counts as the unit's start, not as its entry;
    // only PID 1 can say it.
    let started = |pid: &str, us: u64| format!("{{\"__CURSOR\":\"c5\",\"__REALTIME_TIMESTAMP\":\"{us}\",\"PRIORITY\":\"6\",\"_SYSTEMD_UNIT\":\"init.scope\",\"_PID\":\"{pid}\",\"UNIT\":\"bot.service\",\"MESSAGE_ID\":\"{}\",\"MESSAGE\":\"Started bot.service.\"}}", follow::UNIT_STARTED);
    assert!(run.take(started("812", now_us + 5).as_bytes(), now, &mut cursor).is_some());
    assert_eq!(w.lock().tally.as_ref().unwrap().started_us, None, "a service cannot claim to be systemd");
    assert!(run.take(started("1", now_us + 7).as_bytes(), now, &mut cursor).is_some());
    let t = w.lock().tally.clone().unwrap();
    assert_eq!(t.started_us, Some(now_us + 7));
    assert_eq!((t.total, t.count(now, w.span())), (2, 2));
    run.save(cursor.as_deref());
    let saved = Saved::parse(&std::fs::read(dir.path().join("journal.json")).unwrap()).unwrap();
    assert_eq!(saved.cursor.as_deref(), Some("c5"));
    assert_eq!(saved.checks["j:journal"].tally.total, 2);
    assert_eq!(saved.checks["j:journal"].fingerprint, "bot.service|err|");
}

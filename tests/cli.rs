//! The one-shot commands of `unitwatchd` on a machine without systemd:
//! exit codes, error messages and the backoff file they read and write.
//! (The same commands against a real systemd are in tests/supervisor.rs.)

use std::path::Path;
use std::process::{Command, Output};

fn unitwatchd(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unitwatchd"))
        .arg("--config")
        .arg(config)
        .args(args)
        // Nothing listens here: the CLI must say so, not hang or crash.
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("unitwatch.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nstate_dir = \"{0}/state\"\nruntime_dir = \"{0}/run\"\n{body}",
            dir.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_without_systemd_says_so_and_fails_unit_checks_only() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(
        d.path(),
        "[[unit]]\nname = \"a.service\"\n[[disk]]\npath = \"/\"\nwarn_percent = 99\ncrit_percent = 100\n",
    );
    let out = unitwatchd(&cfg, &["check"]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{table}");
    assert!(
        table.starts_with(
            "systemd: could not be reached, unit checks fail: connect to the system bus"
        ),
        "{table}"
    );
    assert!(table.contains("PASS    disk:/:utilization"), "{table}");

    let out = unitwatchd(&cfg, &["check", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["systemd"]["reachable"], false);
    assert_eq!(s["checks"][0]["key"], "a.service:state");
    assert_eq!(s["checks"][0]["status"], "fail");
    assert!(s["checks"][0]["output"]
        .as_str()
        .unwrap()
        .starts_with("cannot reach systemd: "));
    assert_eq!(s["checks"][1]["status"], "pass");

    // Without units the bus is not needed: a healthy disk passes, exit 0.
    let cfg = write_config(
        d.path(),
        "[[disk]]\npath = \"/\"\nwarn_percent = 99\ncrit_percent = 100\n",
    );
    let out = unitwatchd(&cfg, &["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn config_check_exit_codes_and_messages() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "[[unit]]\nname = \"a.service\"\n");
    let out = unitwatchd(&cfg, &["config", "check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(": valid (1 units, 0 heartbeats, 0 disks"));

    let cfg = write_config(d.path(), "[[unit]]\nname = \"a.service\"\nrestrat = true\n");
    let out = unitwatchd(&cfg, &["config", "check"]);
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "unitwatchd: {}:6:1: unit[0].restrat: unknown field `restrat`, expected one of `name`, `restart`, `memory_warn`, `memory_crit`, `fds_warn_percent`, `fds_crit_percent`, `tasks_warn`, `tasks_crit`, `cpu_warn_percent`, `cpu_crit_percent`, `swap_warn`, `swap_crit`, `restarts_warn`, `max_late`",
            cfg.display()
        )
    );

    // `config watches`, as the polkit rule asks it.
    let cfg = write_config(
        d.path(),
        "[[unit]]\nname = \"a.service\"\n[[unit]]\nname = \"b.service\"\nrestart = false\n",
    );
    let watches = |u: &str| {
        unitwatchd(&cfg, &["config", "watches", "--", u])
            .status
            .code()
    };
    assert_eq!(watches("a.service"), Some(0));
    assert_eq!(
        watches("b.service"),
        Some(1),
        "watch-only units are not restartable"
    );
    assert_eq!(watches("c.service"), Some(1));
    // A unit name that looks like a flag is a name after "--" (the rule
    // passes one): not watched. Without it, clap takes "-h" for --help,
    // exits 0, and the rule would allow the unit.
    assert_eq!(watches("-h.service"), Some(1));
    assert_eq!(watches("-.mount"), Some(1));
    // Not a name systemd accepts: refused, and said why.
    for bad in [
        "--config=/tmp/x.toml",
        "a.service;b",
        "a b.service",
        "",
        "nosuffix",
    ] {
        let out = unitwatchd(&cfg, &["config", "watches", "--", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        assert!(
            text(&out.stderr).contains("not watched: unit name"),
            "{bad:?}: {}",
            text(&out.stderr)
        );
    }
    let bare = unitwatchd(&cfg, &["config", "watches", "-h.service"]);
    assert_eq!(bare.status.code(), Some(0), "the hazard the \"--\" closes");

    let out = unitwatchd(&d.path().join("missing.toml"), &["config", "check"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("missing.toml: cannot read configuration"));
}

#[test]
fn journal_and_freshness_mistakes_are_config_errors_that_say_where() {
    let d = tempfile::tempdir().unwrap();
    let head = "[[unit]]\nname = \"bot.service\"\n";
    let cases = [
        (
            "[[check]]\ntype = \"journal\"\nname = \"j\"\nsilence = \"15m\"\n",
            ":6:1: check[0]: a journal check needs unit: the watched unit whose entries it reads",
        ),
        (
            "[[check]]\ntype = \"journal\"\nname = \"j\"\nunit = \"bot.service\"\nmatch = \"order (rejected\"\nwarn_count = 1\n",
            ":10:9: check[0].match: not a valid regular expression: ",
        ),
        (
            "[[check]]\ntype = \"freshness\"\nname = \"f\"\npath = \"var/lib/out\"\nmax_age_crit = \"10m\"\n",
            ":9:8: check[0].path: var/lib/out is not an absolute path",
        ),
    ];
    for (body, want) in cases {
        let cfg = write_config(d.path(), &format!("{head}{body}"));
        let out = unitwatchd(&cfg, &["config", "check"]);
        assert_eq!(out.status.code(), Some(78), "{body}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!("unitwatchd: {}{want}", cfg.display())),
            "{body}\n got: {err}\nwant: {want}"
        );
    }
    // The regex's own message and the pattern say what is wrong in it.
    let cfg = write_config(d.path(), &format!("{head}{}", cases[1].0));
    let err = text(&unitwatchd(&cfg, &["config", "check"]).stderr);
    assert!(err.contains(" in \"order (rejected\""), "{err}");

    // A journal check asks for the systemd-journal group, and only that.
    let cfg = write_config(
        d.path(),
        &format!("{head}[[check]]\ntype = \"journal\"\nname = \"j\"\nunit = \"bot.service\"\nsilence = \"15m\"\n"),
    );
    let out = unitwatchd(&cfg, &["config", "privileges"]);
    assert_eq!(out.status.code(), Some(0));
    let dropin = text(&out.stdout);
    assert!(
        dropin.contains("[Service]\nSupplementaryGroups=systemd-journal\n"),
        "{dropin}"
    );
    assert!(!dropin.contains("CAP_DAC_READ_SEARCH"), "{dropin}");
    let cfg = write_config(d.path(), head);
    assert_eq!(
        text(&unitwatchd(&cfg, &["config", "privileges"]).stdout),
        ""
    );
}

#[test]
fn backoff_show_and_reset_edit_the_file_when_no_daemon_runs() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "");
    let out = unitwatchd(&cfg, &["backoff", "show"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("no backoff state in "));

    std::fs::create_dir_all(d.path().join("state")).unwrap();
    let state = d.path().join("state/backoff.json");
    std::fs::write(
        &state,
        r#"{"schema_version": 1, "units": {
            "a.service": {"attempts": 3, "next_delay_ms": 80000, "restarts": [], "restarts_total": 3, "systemd_restarts_total": 0},
            "b.service": {"attempts": 1, "next_delay_ms": 20000, "restarts": [], "restarts_total": 1, "systemd_restarts_total": 2}
        }}"#,
    )
    .unwrap();
    let out = unitwatchd(&cfg, &["backoff", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["a.service"]["attempts"], 3);
    assert_eq!(v["a.service"]["next_delay_ms"], 80000);
    assert_eq!(v["b.service"]["systemd_restarts_total"], 2);
    let table = text(&unitwatchd(&cfg, &["backoff", "show"]).stdout);
    assert!(table.contains("a.service"), "{table}");
    assert!(table.contains("1m 20s"), "{table}");

    let out = unitwatchd(&cfg, &["backoff", "reset", "a.service"]);
    assert_eq!(
        text(&out.stdout),
        "backoff reset for a.service (1 entries removed)\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(v["units"].get("a.service").is_none(), "{v}");
    assert_eq!(v["units"]["b.service"]["attempts"], 1);

    // A corrupt file: show reports it and leaves it alone (only a writer
    // moves it aside), exit 1.
    std::fs::write(&state, "{\"schema_version\": 1, \"units\": {\"a").unwrap();
    let out = unitwatchd(&cfg, &["backoff", "show"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("backoff.json: corrupt backoff state: line 1 column"),
        "{}",
        text(&out.stderr)
    );
    assert!(state.exists());
}

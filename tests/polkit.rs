//! Restarts as the `unitwatch` user, through the real polkitd in a real
//! systemd 252 (see tests/harness): the shipped rule (50-unitwatch.rules,
//! which asks `unitwatchd config watches`) and the list the service writes
//! as root at each start and reload (`config polkit-rules`, 49-...), which
//! polkit answers from without spawning anything.

mod harness;

use std::process::Output;
use std::time::Duration;

use harness::Sandbox;

const VICTIM: &str =
    "[Unit]\nStartLimitIntervalSec=0\n[Service]\nType=simple\nExecStart=/bin/sleep infinity\n";

/// The list the service writes (`unitwatchd config polkit-rules`).
const LIST: &str = "/etc/polkit-1/rules.d/49-unitwatch-units.rules";

fn config(extra_backoff: &str, units: &str) -> String {
    format!("[daemon]\ninterval = \"1s\"\n[backoff]\ninitial = \"1s\"\n{extra_backoff}\n{units}\n")
}

fn count_events(sb: &Sandbox, filter: &str) -> usize {
    sb.journal(filter).len()
}

fn as_unitwatch(sb: &Sandbox, cmd: &str) -> Output {
    sb.sh(&format!(
        "setpriv --reuid=unitwatch --regid=unitwatch --clear-groups {cmd}"
    ))
}

/// Waits until the unitwatch user's `systemctl restart UNIT` is allowed
/// (`true`) or refused: polkitd reloads its rules on its own inotify
/// watch, a moment after the file changes.
fn until_restart(sb: &Sandbox, unit: &str, allowed: bool) {
    let t = std::time::Instant::now();
    loop {
        let out = as_unitwatch(
            sb,
            &format!("systemctl --no-ask-password restart -- {unit}"),
        );
        if out.status.success() == allowed {
            if !allowed {
                harness::assert_refused_by_polkit(&out, unit);
            }
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "restart of {unit}: wanted {}, still not after 10 s: {}",
            if allowed { "allowed" } else { "refused" },
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn runs_unprivileged_and_polkit_allows_only_the_watched_units() {
    let sb = Sandbox::boot("polkit");
    sb.unit("victim.service", VICTIM);
    sb.unit("bystander.service", VICTIM);
    sb.unit("watchonly.service", VICTIM);
    // A name the help flag's parser would take: without the rule's "--",
    // polkit allowed it (`config watches -h.service` is --help, exit 0).
    sb.unit("-h.service", VICTIM);
    sb.ok("systemctl start victim bystander watchonly -- -h.service");
    sb.start_unitwatch(
        &config(
            "",
            "[[unit]]\nname = \"victim.service\"\n[[unit]]\nname = \"watchonly.service\"\nrestart = false",
        ),
        "",
    );
    let pid = sb.prop("unitwatch", "MainPID");
    let user = sb.ok(&format!("ps -o user= -p {pid}"));
    assert_eq!(user.trim(), "unitwatch");
    // The daemon's own restarts go through polkit.
    sb.kill_and_wait_back("victim.service", 0);
    assert_eq!(count_events(&sb, "UNITWATCH_EVENT=restart-failed"), 0);

    // As the unitwatch user: the rule allows restart (and start) of the
    // watched unit, nothing else.
    let as_unitwatch = |cmd: &str| as_unitwatch(&sb, cmd);
    let ok = as_unitwatch("systemctl --no-ask-password restart victim.service");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for (cmd, why) in [
        ("restart bystander.service", "a unit not in the config"),
        ("restart watchonly.service", "a watch-only unit"),
        ("restart -- -h.service", "a unit whose name starts with -h"),
        (
            "reset-failed -- -h.service",
            "a unit whose name starts with -h",
        ),
        (
            "stop victim.service",
            "a verb other than start/restart/reset-failed",
        ),
    ] {
        harness::assert_refused_by_polkit(
            &as_unitwatch(&format!("systemctl --no-ask-password {cmd}")),
            why,
        );
    }
    assert_eq!(sb.prop("victim.service", "ActiveState"), "active");
}

/// The list answers for the config the daemon runs, not the file as it is
/// now: a unit taken out of the file stays allowed until the reload (only
/// the list can allow it then: `config watches` reads the file), a unit
/// added is allowed at once through the shipped rule's fallback, and after
/// `systemctl reload` the list follows the file. A file that is not TOML
/// leaves the list, like the daemon's config, as it was.
#[test]
fn the_list_written_as_root_follows_the_config_the_daemon_runs() {
    let sb = Sandbox::boot("polkitlist");
    for u in ["kept", "dropped", "added", "watchonly"] {
        sb.unit(&format!("{u}.service"), VICTIM);
    }
    sb.ok("systemctl start kept dropped added watchonly");
    let units = |names: &[&str]| -> String {
        names
            .iter()
            .map(|n| format!("[[unit]]\nname = \"{n}.service\"\n"))
            .collect::<String>()
            + "[[unit]]\nname = \"watchonly.service\"\nrestart = false\n"
    };
    sb.start_unitwatch(&config("", &units(&["kept", "dropped"])), "");
    let list = sb.read(LIST).expect("ExecStartPre=+ wrote the list");
    for (unit, listed) in [
        ("kept", true),
        ("dropped", true),
        ("added", false),
        ("watchonly", false),
    ] {
        assert_eq!(
            list.contains(&format!("\"{unit}.service\"")),
            listed,
            "{unit}: {list}"
        );
    }
    assert_eq!(sb.ok(&format!("stat -c '%U %a' {LIST}")).trim(), "root 644");
    // The daemon's own restart of a listed unit.
    sb.kill_and_wait_back("kept.service", 0);
    assert_eq!(count_events(&sb, "UNITWATCH_EVENT=restart-failed"), 0);

    // The file changes, the daemon is not reloaded.
    sb.write(
        "/etc/unitwatch/unitwatch.toml",
        &config("", &units(&["kept", "added"])),
    );
    until_restart(&sb, "dropped.service", true);
    until_restart(&sb, "added.service", true);
    until_restart(&sb, "watchonly.service", false);

    // Reloaded: the list is the file's.
    sb.ok("systemctl reload unitwatch");
    let list = sb.read(LIST).unwrap();
    assert!(list.contains("\"added.service\""), "{list}");
    assert!(!list.contains("\"dropped.service\""), "{list}");
    until_restart(&sb, "dropped.service", false);
    until_restart(&sb, "added.service", true);
    until_restart(&sb, "kept.service", true);

    // Not TOML: the reload's list step fails (and does not stop the
    // reload), the daemon keeps its config, the list stays as it was.
    sb.write("/etc/unitwatch/unitwatch.toml", "[[unit]\nname = ");
    sb.ok("systemctl reload unitwatch");
    assert_eq!(sb.read(LIST).unwrap(), list);
    until_restart(&sb, "added.service", true);
    assert_eq!(sb.prop("unitwatch", "ActiveState"), "active");
}

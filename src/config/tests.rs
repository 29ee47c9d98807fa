//! The configuration parser against good and bad files.

use super::*;
use crate::checks::disk::{default_disk_crit, default_disk_warn};
use crate::checks::memory::{default_mem_crit, default_mem_warn};

fn parse(s: &str) -> Result<Config, ConfigError> {
    Config::parse(s, Path::new("/etc/unitwatch/unitwatch.toml"))
}

fn err(s: &str) -> String {
    parse(s).unwrap_err().to_string()
}

#[test]
fn full_example_parses_with_values() {
    let c = parse(
        r#"
[daemon]
interval = "10s"
state_dir = "/var/lib/unitwatch"
runtime_dir = "/run/unitwatch"
[backoff]
initial = "10s"
factor = 2.0
max = "300s"
reset_after = "10m"
max_restarts_per_hour = 5
[[unit]]
name = "faucet_worker.service"
restart = true
memory_warn = "1536MiB"
memory_crit = "1740MiB"
[[heartbeat]]
path = "/var/lib/faucet/heartbeat.txt"
max_age = "5m"
restart_unit = "faucet_worker.service"
[[disk]]
path = "/"
warn_percent = 80
crit_percent = 90
[memory]
warn_percent = 90
crit_percent = 95
"#,
    )
    .unwrap();
    assert_eq!(c.backoff.reset_after, Duration::from_secs(600));
    assert_eq!(c.units[0].memory_warn, Some(ByteSize(1536 * 1024 * 1024)));
    assert_eq!(c.heartbeats[0].max_age, Duration::from_secs(300));
    assert_eq!(
        c.heartbeats[0].restart_unit.as_ref().unwrap().as_str(),
        "faucet_worker.service"
    );
    assert_eq!(c.disks[0].inode_crit(), 90.0);
    assert_eq!(c.memory.unwrap().crit_percent, 95.0);
}

#[test]
fn empty_telemetry_table_is_the_default() {
    let c = parse("[telemetry]\n").unwrap();
    assert_eq!(c.telemetry, Some(TelemetryConfig::default()));
}

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.daemon.interval, Duration::from_secs(10));
    assert_eq!(c.backoff.initial, Duration::from_secs(10));
    assert_eq!(c.backoff.max, Duration::from_secs(300));
    assert_eq!(c.backoff.max_restarts_per_hour, 5);
    assert!(c.units.is_empty() && c.memory.is_none());
}

#[test]
fn shipped_config_is_valid_and_states_the_defaults() {
    let shipped = parse(include_str!("../../packaging/unitwatch.toml")).unwrap();
    let defaults = parse("").unwrap();
    assert_eq!(shipped.daemon, defaults.daemon);
    assert_eq!(shipped.backoff, defaults.backoff);
    assert_eq!(shipped.disks.len(), 1);
    assert_eq!(
        (shipped.disks[0].warn_percent, shipped.disks[0].crit_percent),
        (default_disk_warn(), default_disk_crit())
    );
    let m = shipped.memory.unwrap();
    assert_eq!(
        (m.warn_percent, m.crit_percent),
        (default_mem_warn(), default_mem_crit())
    );
}

#[test]
fn unknown_key_names_file_line_col_and_key() {
    let e = err("[daemon]\ninterval = \"1s\"\nintervall = \"2s\"\n");
    assert!(
        e.starts_with(
            "/etc/unitwatch/unitwatch.toml:3:1: daemon.intervall: unknown field `intervall`"
        ),
        "{e}"
    );
}

#[test]
fn bad_duration_points_at_value() {
    let e = err("[backoff]\ninitial = \"10 parsecs\"\n");
    assert!(
        e.starts_with("/etc/unitwatch/unitwatch.toml:2:11: backoff.initial: "),
        "{e}"
    );
    assert!(e.contains("unknown time unit"), "{e}");
}

#[test]
fn bad_unit_name_is_refused() {
    let e = err("[[unit]]\nname = \"worker\"\n");
    assert!(
        e.starts_with("/etc/unitwatch/unitwatch.toml:2:8: unit[0].name: "),
        "{e}"
    );
    assert!(e.contains("no type suffix"), "{e}");
    assert!(err("[[unit]]\nname = \"a b.service\"\n").contains("not valid"));
    assert!(err("[[unit]]\nname = \"x.servic\"\n").contains("unknown type"));
    assert!(err("[[unit]]\nname = \"x@.service\"\n").contains("template"));
    assert!(parse("[[unit]]\nname = \"getty@tty1.service\"\n").is_ok());
}

#[test]
fn bad_size_is_refused() {
    let e = err("[[unit]]\nname = \"a.service\"\nmemory_warn = \"lots\"\n");
    assert!(e.contains("unit[0].memory_warn"), "{e}");
    assert!(e.contains("invalid size"), "{e}");
}

#[test]
fn validation_errors_are_located() {
    let e = err("[[disk]]\npath = \"/\"\nwarn_percent = 95\ncrit_percent = 90\n");
    assert_eq!(
        e,
        "/etc/unitwatch/unitwatch.toml:3:16: disk[0].warn_percent: 95 is above crit_percent (90)"
    );
    let e = err("[[heartbeat]]\npath = \"/x\"\nmax_age = \"1m\"\nrestart_unit = \"a.service\"\n");
    assert!(
        e.starts_with("/etc/unitwatch/unitwatch.toml:4:16: heartbeat[0].restart_unit: a.service is not a watched unit"),
        "{e}"
    );
    let e = err("[[unit]]\nname = \"a.service\"\n[[unit]]\nname = \"a.service\"\n");
    assert!(
        e.contains(":4:8: unit[1].name: unit a.service is listed twice"),
        "{e}"
    );
    let e = err("[backoff]\nfactor = 0.5\n");
    assert!(
        e.contains(":2:10: backoff.factor: must be a number >= 1.0"),
        "{e}"
    );
}

#[test]
fn alert_tables_are_checked_per_type() {
    let ok = parse(
        "[[alert]]\ntype = \"discord\"\nurl_env = \"DISCORD_URL\"\nmention = \"<@&42>\"\n\
         [[alert]]\ntype = \"webhook\"\nurl = \"https://h.test/x\"\nsecret_file = \"/etc/unitwatch/hmac\"\n\
         [[alert]]\ntype = \"webhook\"\nurl = \"https://h.test/y\"\n\
         [[alert]]\ntype = \"email\"\nserver = \"smtp.test\"\nfrom = \"unitwatch <u@x.test>\"\nto = [\"ops@x.test\"]\n",
    )
    .unwrap();
    let names: Vec<String> = (0..4)
        .map(|i| AlertConfig::channel_name(&ok.alerts, i))
        .collect();
    assert_eq!(names, ["discord", "webhook", "webhook-2", "email"]);
    assert_eq!(ok.alerts[0].cooldown, Duration::from_secs(300));
    assert_eq!(ok.alerts[3].smtp_port(), 587);

    let e = err("[[alert]]\ntype = \"slack\"\n");
    assert!(
        e.ends_with(":2:8: alert[0].type: a slack channel needs url (or url_file, or url_env)"),
        "{e}"
    );
    let e = err("[[alert]]\ntype = \"slack\"\nurl = \"https://h.test/T/B/C\"\nurl_env = \"X\"\n");
    assert!(
        e.contains(":3:7: alert[0].url: give url, url_file or url_env, only one of them"),
        "{e}"
    );
    let e =
        err("[[alert]]\ntype = \"discord\"\nurl = \"https://h.test/x\"\nserver = \"smtp.test\"\n");
    assert!(
        e.contains(":4:10: alert[0].server: does not apply to a discord channel"),
        "{e}"
    );
    let e = err("[[alert]]\ntype = \"discord\"\nurl = \"https://h.test/x\"\nmention = \"@ops\"\n");
    assert!(
        e.contains("alert[0].mention: \"@ops\": use <@USER_ID>"),
        "{e}"
    );
    let e = err("[[alert]]\ntype = \"pager\"\n");
    assert!(e.contains("alert[0].type: unknown variant `pager`"), "{e}");
    let e = err("[[alert]]\ntype = \"webhook\"\nurl = \"ftp://tok3n@h.test/\"\n");
    assert!(e.contains("alert[0].url: is not an http"), "{e}");
    assert!(!e.contains("tok3n"), "the URL is a secret: {e}");
    let e = err("[[alert]]\ntype = \"webhook\"\nname = \"a\"\nurl = \"http://h.test/\"\n[[alert]]\ntype = \"slack\"\nname = \"a\"\nurl = \"http://h.test/\"\n");
    assert!(
        e.contains("alert[1].name: another [[alert]] is named \"a\""),
        "{e}"
    );
    let e = err("[[alert]]\ntype = \"email\"\nserver = \"smtp.test\"\nfrom = \"u@x.test\"\nto = [\"o@x.test\"]\ntls = \"none\"\nusername = \"u\"\npassword_env = \"P\"\n");
    assert!(
        e.contains("alert[0].tls: \"none\" would send the password in clear"),
        "{e}"
    );
    // To a relay on this machine it is allowed.
    parse("[[alert]]\ntype = \"email\"\nserver = \"127.0.0.1\"\nfrom = \"u@x.test\"\nto = [\"o@x.test\"]\ntls = \"none\"\nusername = \"u\"\npassword_env = \"P\"\n").unwrap();
    let e = err("[[alert]]\ntype = \"email\"\nserver = \"smtp.test\"\nfrom = \"u@x.test\"\nto = [\"not an address\"]\n");
    assert!(
        e.contains("alert[0].to[0]: \"not an address\" is not an email address"),
        "{e}"
    );
    let e = err("[[alert]]\ntype = \"webhook\"\nurl = \"http://h.test/\"\nunits = [\"[bad\"]\n");
    assert!(
        e.contains("alert[0].units[0]: \"[bad\" is not a valid pattern"),
        "{e}"
    );
}

#[test]
fn http_listen_takes_one_or_many_and_checks_them() {
    assert_eq!(parse("").unwrap().http.listen, vec!["127.0.0.1:8080"]);
    let c = parse("[http]\nlisten = \"0.0.0.0:80\"\n").unwrap();
    assert_eq!(c.http.listen, vec!["0.0.0.0:80"]);
    let c = parse("[http]\nlisten = [\"127.0.0.1:1\", \"[::1]:2\"]\n").unwrap();
    assert_eq!(c.http.listen.len(), 2);
    let e = err("[http]\nlisten = [\"127.0.0.1:1\", \"localhost:80\"]\n");
    assert!(
        e.contains(":2:26: http.listen[1]: \"localhost:80\" is not an IP address and port"),
        "{e}"
    );
    assert!(err("[http]\nlisten = []\n").contains("http.listen: needs at least one address"));
}

#[test]
fn restartable_units_survive_mistakes_elsewhere() {
    let p = Path::new("u.toml");
    let names = |t: &str| {
        restartable_units(t, p).map(|v| v.iter().map(|u| u.to_string()).collect::<Vec<_>>())
    };
    let text = "[daemon]\nintervall = 3\n[[unit]]\nname = \"a.service\"\n[[unit]]\nname = \"b.service\"\nrestart = false\n[[unit]]\nname = \"worker\"\n";
    assert!(parse(text).is_err());
    assert_eq!(names(text).unwrap(), vec!["a.service"]);
    assert!(names("[[unit]\nname = ").is_err());
    assert_eq!(names("").unwrap(), Vec::<String>::new());
    // Every form the daemon's own reading takes names the same units: an
    // inline array of tables, an escaped name, a literal string.
    let forms = "unit = [{ name = \"a\\u0040b.service\" }, { name = 'c.service', restart = true }, { name = \"d.service\", restart = false }]\n";
    assert_eq!(
        parse(forms)
            .unwrap()
            .units
            .iter()
            .filter(|u| u.restart())
            .map(|u| u.name.to_string())
            .collect::<Vec<_>>(),
        names(forms).unwrap()
    );
    assert_eq!(names(forms).unwrap(), vec!["a@b.service", "c.service"]);
    // A key given twice is not TOML: it names nothing, with where.
    let twice = names("[[unit]]\nname = \"a.service\"\nname = \"b.service\"\n").unwrap_err();
    assert!(twice.to_string().contains("u.toml:3:"), "{twice}");
}

#[test]
fn syntax_error_is_located() {
    let e = err("[daemon]\ninterval = \n");
    assert!(e.starts_with("/etc/unitwatch/unitwatch.toml:2:"), "{e}");
    assert!(e.contains("(syntax)"), "{e}");
}

#[test]
fn wrong_type_is_refused() {
    let e = err("[[unit]]\nname = \"a.service\"\nrestart = \"yes\"\n");
    assert!(e.contains(":3:11: unit[0].restart: invalid type"), "{e}");
}

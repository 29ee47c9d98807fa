//! `[[check]]`: the keys every check of a `type` takes (name, interval,
//! timeout, unit, on_fail, fail_after, pass_after, severity), how a table is
//! split between them and its kind's own keys, and the figures every probe
//! of such a kind exports.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{opt_duration, Bad, Config, KeySeg, UnitName};
use crate::manual::KeyDoc;

use super::kind::{check_builder, check_kind, check_kind_names, Build, Make, MetricDoc};
use super::{CheckDef, CheckId};

/// A `[[check]]` table as the file has it; its kind reads it in the
/// validation pass, with the table's position for its errors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct CheckTable(pub toml::Table);

/// What a failing check does besides telling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    #[default]
    Alert,
    Restart,
}

/// How bad a failing check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CheckSeverity {
    #[default]
    Fail,
    Warn,
}

/// The keys every `[[check]]` takes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default, deserialize_with = "opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub unit: Option<UnitName>,
    #[serde(default)]
    pub on_fail: OnFail,
    #[serde(default = "one")]
    pub fail_after: u32,
    #[serde(default = "one")]
    pub pass_after: u32,
    #[serde(default)]
    pub severity: CheckSeverity,
}

fn one() -> u32 {
    1
}

/// A check's timeout when it gives none: 5 s, or half the interval when
/// that is shorter (the timeout must be less than the interval, so that
/// one run is over before the next is due).
pub fn default_timeout(interval: Duration) -> Duration {
    Duration::from_secs(5).min(interval / 2)
}

impl Common {
    /// The check's key, NAME:TYPE, also its `check` label on metrics.
    pub fn key(&self) -> String {
        format!("{}:{}", self.name, self.kind)
    }
    pub fn interval(&self, config: &Config) -> Duration {
        self.interval.unwrap_or(config.daemon.interval)
    }
    pub fn timeout(&self, config: &Config) -> Duration {
        self.timeout
            .unwrap_or_else(|| default_timeout(self.interval(config)))
    }
}

const fn c(
    key: &'static str,
    default: &'static str,
    example: &'static str,
    meaning: &'static str,
) -> KeyDoc {
    KeyDoc::check("", key, default, example, meaning)
}

/// The manual's entries of the common keys.
pub const KEYS: &[KeyDoc] = &[
    c("type", "required", "\"tcp\"",
      "The kind of check; each type is described below with its own keys."),
    c("name", "required", "\"gateway-port\"",
      "Names the check: unique among the [[check]] tables; its key is NAME:TYPE (gateway-port:tcp) in status.json, /health/detailed, metrics (label check), events (UNITWATCH_CHECK=) and alert filters."),
    c("interval", "daemon.interval", "\"30s\"",
      "How often the check runs, on a task of its own: a slow or hanging check delays neither the others nor the supervisor. At least 100ms."),
    c("timeout", "\"5s\", or half the interval when that is shorter", "\"5s\"",
      "How long one run may take; it must be less than the interval. A run that takes longer fails, saying what it was waiting for. A check with no result for twice its interval fails with \"no result since\"."),
    c("unit", "none", "\"gateway.service\"",
      "The watched unit (a [[unit]]) the check belongs to: it shows under /health/service/UNIT, and its events and alerts name the unit."),
    c("on_fail", "\"alert\"", "\"restart\"",
      "\"restart\": a failing check restarts its unit (restart = true) on the same backoff and hourly cap as a failed unit, once the unit has been up for the check's interval times fail_after; a unit restarted this way is healthy again only when the check passes."),
    c("fail_after", "1", "3",
      "Consecutive bad results before the check's status turns to warn or fail, so that one lost packet neither pages nor restarts."),
    c("pass_after", "1", "2",
      "Consecutive good results before a failing check passes again."),
    c("severity", "\"fail\"", "\"warn\"",
      "\"warn\": the check's failures only warn (/health stays 200, alerts say warning)."),
];

/// The figures every probe of a `[[check]]` kind exports.
pub const PROBE_DURATION: MetricDoc = MetricDoc {
    name: "probe_duration_seconds",
    help: "How long the check's last probe took (a TCP connect, an HTTP answer, a command's run)",
    otlp: "unitwatch.probe.duration",
    otlp_unit: "s",
    otlp_scale: 1.0,
};
pub const PROBE_SUCCESS: MetricDoc = MetricDoc {
    name: "probe_success",
    help: "1 if the check's last probe passed, 0 if it warned or failed",
    otlp: "unitwatch.probe.success",
    otlp_unit: "1",
    otlp_scale: 1.0,
};

/// The shared figures of one probe run.
pub fn probe_figures(o: super::Outcome, name: &str, took: Option<Duration>) -> super::Outcome {
    let ok = if o.status == super::Status::Pass {
        1.0
    } else {
        0.0
    };
    let mut o = o.measure(super::Measurement::new(PROBE_SUCCESS.name, ok).label("check", name));
    if let Some(t) = took {
        o = o.measure(
            super::Measurement::new(PROBE_DURATION.name, t.as_secs_f64()).label("check", name),
        );
    }
    o
}

const COMMON_NAMES: &[&str] = &[
    "type",
    "name",
    "interval",
    "timeout",
    "unit",
    "on_fail",
    "fail_after",
    "pass_after",
    "severity",
];

type Problems = Vec<(Vec<KeySeg>, String)>;

/// Deserializes `table` into `T` (a kind's own keys, or the common ones),
/// naming the key at fault.
pub fn from_table<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, Problems> {
    serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table)).map_err(|e| {
        let path: Vec<KeySeg> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(KeySeg::Name(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(KeySeg::Index(*index)),
                _ => None,
            })
            .collect();
        vec![(path, e.into_inner().message().trim().to_string())]
    })
}

/// Splits a `[[check]]` table into its common keys and its kind's, and has
/// the kind check its own: the common keys, the kind, and its own table.
fn read(
    t: &CheckTable,
    config: &Config,
) -> Result<(Common, &'static super::Kind, toml::Table), Problems> {
    let kinds = check_kind_names().join(", ");
    let kind_name = match t.0.get("type") {
        None => {
            return Err(vec![(
                vec![],
                format!("a [[check]] needs type (one of: {kinds})"),
            )])
        }
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(vec![(
                vec![KeySeg::Key("type")],
                format!("must be a string, one of: {kinds}"),
            )])
        }
    };
    let Some(kind) = check_kind(&kind_name) else {
        return Err(vec![(
            vec![KeySeg::Key("type")],
            format!("unknown check type {kind_name:?} (known: {kinds})"),
        )]);
    };
    let Make::Check { check, .. } = kind.make else {
        unreachable!("check_kind returns [[check]] kinds only")
    };
    let mut common = toml::Table::new();
    let mut own = toml::Table::new();
    for (k, v) in &t.0 {
        if COMMON_NAMES.contains(&k.as_str()) {
            common.insert(k.clone(), v.clone());
        } else if kind.keys.iter().any(|d| d.key == k) {
            own.insert(k.clone(), v.clone());
        } else {
            let mut known: Vec<&str> = COMMON_NAMES.to_vec();
            known.extend(kind.keys.iter().map(|d| d.key));
            return Err(vec![(
                vec![KeySeg::Name(k.clone())],
                format!(
                    "unknown field `{k}`, expected one of {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )]);
        }
    }
    let common: Common = from_table(common)?;
    check(&own, &common, config)?;
    Ok((common, kind, own))
}

/// The validation of every `[[check]]` table.
pub struct CommonProblems;

impl CommonProblems {
    pub fn check_all(config: &Config, bad: &mut Bad<'_>) {
        use KeySeg::{Index, Key};
        let mut names = HashSet::new();
        for (i, t) in config.checks.iter().enumerate() {
            let at = |rel: Vec<KeySeg>| {
                let mut k = vec![Key("check"), Index(i)];
                k.extend(rel);
                k
            };
            let common = match read(t, config) {
                Ok((c, _, _)) => c,
                Err(problems) => {
                    for (rel, m) in problems {
                        bad(at(rel), m);
                    }
                    continue;
                }
            };
            let key = |k: &'static str| at(vec![Key(k)]);
            if !names.insert(common.name.clone()) {
                bad(
                    key("name"),
                    format!("another [[check]] is named {:?}", common.name),
                );
            }
            if common.name.is_empty()
                || common
                    .name
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ':')
            {
                bad(
                    key("name"),
                    format!("{:?}: use letters, digits, '-', '_' or '.'", common.name),
                );
            }
            let interval = common.interval(config);
            if interval < Duration::from_millis(100) {
                bad(key("interval"), "must be at least 100ms".into());
            }
            let timeout = common.timeout(config);
            if timeout.is_zero() {
                bad(key("timeout"), "must be greater than zero".into());
            } else if timeout >= interval {
                bad(
                    key(if common.timeout.is_some() {
                        "timeout"
                    } else {
                        "interval"
                    }),
                    format!(
                        "the timeout ({}) must be less than the interval ({})",
                        super::fmt_duration(timeout),
                        super::fmt_duration(interval)
                    ),
                );
            }
            for (k, n) in [
                ("fail_after", common.fail_after),
                ("pass_after", common.pass_after),
            ] {
                if n == 0 {
                    bad(key(k), "must be at least 1".into());
                }
            }
            match (&common.unit, common.on_fail) {
                (Some(u), on_fail) => match config.unit(u.as_str()) {
                    None => bad(
                        key("unit"),
                        format!("{u} is not a watched unit: add a [[unit]] with name = \"{u}\""),
                    ),
                    Some(w) if !w.restart() && on_fail == OnFail::Restart => {
                        bad(key("on_fail"), format!("{u} has restart = false"))
                    }
                    _ => {}
                },
                (None, OnFail::Restart) => bad(
                    key("on_fail"),
                    "\"restart\" needs unit, the unit to restart".into(),
                ),
                (None, OnFail::Alert) => {}
            }
        }
    }
}

/// The checks of the `[[check]]` tables (the validation pass has passed).
pub fn build_checks(config: &Config) -> Vec<CheckDef> {
    let mut out = Vec::new();
    for t in &config.checks {
        // Only a config that failed validation fails here (the tests' raw
        // serde parse); it is refused before any check is built.
        let Ok((common, kind, own)) = read(t, config) else {
            continue;
        };
        let Some(Build::Check(build)) = check_builder(kind.name) else {
            continue;
        };
        let Ok(how) = build(&own, &common, config) else {
            continue;
        };
        let interval = common.interval(config);
        let mut def = CheckDef::new(
            CheckId {
                component: common.name.as_str().into(),
                measurement: kind.name,
                component_type: "component",
            },
            how,
            interval,
        );
        def.timeout = common.timeout(config);
        def.unit = common.unit.as_ref().map(|u| u.shared());
        def.restart = common.on_fail == OnFail::Restart;
        def.fail_after = common.fail_after.max(1);
        def.pass_after = common.pass_after.max(1);
        def.grace = interval * def.fail_after;
        def.warn_only = common.severity == CheckSeverity::Warn;
        out.push(def);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn err(body: &str) -> String {
        let text = format!("[[unit]]\nname = \"gw.service\"\n[[unit]]\nname = \"ro.service\"\nrestart = false\n{body}");
        Config::parse(&text, Path::new("/etc/unitwatch/unitwatch.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_kind_of_mistake_is_located() {
        let cases: &[(&str, &str)] = &[
            (
                "[[check]]\ntype = \"pager\"\nname = \"x\"\n",
                ":7:8: check[0].type: unknown check type \"pager\" (known: tcp, http, command, freshness, journal)",
            ),
            (
                "[[check]]\nname = \"x\"\n",
                ":6:1: check[0]: a [[check]] needs type (one of: tcp, http, command, freshness, journal)",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:1\"\ninterval = \"1s\"\ntimeout = \"1s\"\n",
                ":11:11: check[0].timeout: the timeout (1s) must be less than the interval (1s)",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:1\"\n[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:2\"\n",
                ":12:8: check[1].name: another [[check]] is named \"x\"",
            ),
            (
                "[[check]]\ntype = \"command\"\nname = \"x\"\ncommand = [\"check_tcp\", \"-p\", \"1\"]\n",
                ":9:12: check[0].command[0]: \"check_tcp\" is not an absolute path (there is no shell and no search of PATH)",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1\"\n",
                ":9:11: check[0].address: \"127.0.0.1\" has no port",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:1\"\nfail_after = \"3\"\n",
                ":10:14: check[0].fail_after: invalid type: string \"3\", expected u32",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:1\"\nlatency_warn = \"fast\"\n",
                ":10:16: check[0].latency_warn: invalid duration \"fast\"",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:1\"\nurl = \"http://h/\"\n",
                ":10:7: check[0].url: unknown field `url`, expected one of `type`, `name`, `interval`, `timeout`, `unit`, `on_fail`, `fail_after`, `pass_after`, `severity`, `address`, `latency_warn`, `latency_crit`",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:1\"\non_fail = \"restart\"\n",
                ":10:11: check[0].on_fail: \"restart\" needs unit, the unit to restart",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:1\"\nunit = \"ro.service\"\non_fail = \"restart\"\n",
                ":11:11: check[0].on_fail: ro.service has restart = false",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:1\"\nunit = \"other.service\"\n",
                ":10:8: check[0].unit: other.service is not a watched unit",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"a b\"\naddress = \"127.0.0.1:1\"\n",
                ":8:8: check[0].name: \"a b\": use letters",
            ),
            (
                "[[check]]\ntype = \"tcp\"\nname = \"x\"\naddress = \"127.0.0.1:1\"\nseverity = \"page\"\n",
                ":10:12: check[0].severity: unknown variant `page`, expected `fail` or `warn`",
            ),
            (
                "[[check]]\ntype = \"http\"\nname = \"x\"\nurl = \"ftp://u:secret@h/\"\n",
                ":9:7: check[0].url: ftp://***@h/ is not an http:// or https:// URL with a host",
            ),
            (
                "[[check]]\ntype = \"http\"\nname = \"x\"\nurl = \"http://h/\"\nbody_regex = \"(\"\n",
                ":10:14: check[0].body_regex: not a valid regular expression",
            ),
            (
                "[[check]]\ntype = \"http\"\nname = \"x\"\nurl = \"http://h/\"\nwarn_below = 5\n",
                ":10:14: check[0].warn_below: warn_below, crit_below, warn_above and crit_above grade the number at json_path: give it",
            ),
            (
                "[[check]]\ntype = \"http\"\nname = \"x\"\nurl = \"http://h/\"\nexpect_status = \"2x\"\n",
                ":10:17: check[0].expect_status: \"2x\": write a code (200) or a class (\"2xx\")",
            ),
            (
                "[[check]]\ntype = \"http\"\nname = \"x\"\nurl = \"http://h/\"\ncert_expiry_crit = \"3d\"\n",
                "check[0].cert_expiry_warn: applies to https:// URLs only",
            ),
            (
                "[[check]]\ntype = \"http\"\nname = \"x\"\nurl = \"http://h/\"\ntoken_file = \"token\"\n",
                ":10:14: check[0].token_file: is not an absolute path",
            ),
            (
                "[[check]]\ntype = \"http\"\nname = \"x\"\nurl = \"http://h/\"\nmethod = \"POST\"\n",
                ":10:10: check[0].method: unknown variant `POST`, expected `GET` or `HEAD`",
            ),
            (
                "[[check]]\ntype = \"command\"\nname = \"x\"\ncommand = []\n",
                ":9:11: check[0].command: needs the program to run",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .map(|(body, want)| (err(body), want))
            .filter(|(e, want)| {
                !(e.starts_with("/etc/unitwatch/unitwatch.toml:") && e.contains(*want))
            })
            .map(|(e, want)| format!("want {want}\ngot  {e}"))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn defaults_and_the_built_check() {
        let c = Config::parse(
            "[daemon]\ninterval = \"1s\"\n[[unit]]\nname = \"gw.service\"\n[[check]]\ntype = \"tcp\"\nname = \"gw\"\naddress = \"127.0.0.1:4002\"\nunit = \"gw.service\"\non_fail = \"restart\"\nfail_after = 3\nseverity = \"warn\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let defs = crate::checks::build_all(&c);
        let d = defs.iter().find(|d| d.id.key() == "gw:tcp").unwrap();
        assert_eq!(d.interval, std::time::Duration::from_secs(1));
        // 5 s is not less than 1 s: half the interval instead.
        assert_eq!(d.timeout, std::time::Duration::from_millis(500));
        assert!(d.restart && d.warn_only && d.is_probe());
        assert_eq!((d.fail_after, d.pass_after), (3, 1));
        assert_eq!(d.grace, std::time::Duration::from_secs(3));
        assert_eq!(d.unit.as_deref(), Some("gw.service"));
    }
}

//! The value types of the configuration file and their parsers: durations,
//! sizes, unit names, URLs, and the shared checks of thresholds.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::locate::{Bad, KeySeg};

/// Durations are written as "10s", "5m", "1h 30m" or "100ms".
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(s.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?}: {e} (write e.g. \"10s\", \"5m\", \"100ms\")"
        ))
    })
}

pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// `"a"` or `["a", "b"]`.
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(s) => vec![s],
        Raw::Many(v) => v,
    })
}

/// A systemd unit name, checked on parse the way systemd checks it
/// (`unit_name_is_valid`): a name, an optional `@instance`, a known type suffix.
/// Held once and shared: the checks of a unit, their results and their
/// figures' labels all point at this one copy of its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitName(std::sync::Arc<str>);

const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

impl UnitName {
    /// A timer is watched for firing on schedule and never restarted.
    pub fn is_timer(&self) -> bool {
        self.as_str().ends_with(".timer")
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("unit name is empty".into());
        }
        if s.len() > 255 {
            return Err(format!("unit name {s:?} is longer than 255 characters"));
        }
        let Some((stem, suffix)) = s.rsplit_once('.') else {
            return Err(format!(
                "unit name {s:?} has no type suffix (e.g. \"{s}.service\")"
            ));
        };
        if !UNIT_TYPES.contains(&suffix) {
            return Err(format!(
                "unit name {s:?} has unknown type \".{suffix}\" (expected one of: {})",
                UNIT_TYPES.join(", ")
            ));
        }
        let (prefix, instance) = match stem.split_once('@') {
            Some((p, i)) => (p, Some(i)),
            None => (stem, None),
        };
        let ok = |c: char| c.is_ascii_alphanumeric() || ":-_.\\".contains(c);
        if prefix.is_empty() || !prefix.chars().all(ok) {
            return Err(format!(
                "unit name {s:?} is not valid: only ASCII letters, digits and \":-_.\\\" may precede the suffix"
            ));
        }
        if let Some(i) = instance {
            if i.is_empty() {
                return Err(format!(
                    "unit name {s:?} is a template: name an instance (e.g. \"{prefix}@1.{suffix}\")"
                ));
            }
            if !i.chars().all(|c| ok(c) || c == '@') {
                return Err(format!("unit name {s:?} has an invalid instance"));
            }
        }
        Ok(UnitName(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, shared rather than copied.
    pub fn shared(&self) -> std::sync::Arc<str> {
        self.0.clone()
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UnitName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UnitName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A size in bytes, written as "1536MiB", "2GB" or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => s
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| ByteSize(b.as_u64()))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "invalid size {s:?}: {e} (write e.g. \"1536MiB\" or \"2GB\")"
                    ))
                }),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

/// `localhost` or a loopback address.
pub fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An http:// or https:// URL with a host.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    url.parse::<axum::http::Uri>()
        .map(|_| ())
        .map_err(|e| format!("{url:?} is not a valid URL: {e}"))
}

pub fn check_percent_pair(
    bad: &mut Bad<'_>,
    base: Vec<KeySeg>,
    warn: (&'static str, f64),
    crit: (&'static str, f64),
) {
    for (name, v) in [warn, crit] {
        if !(0.0..=100.0).contains(&v) {
            let mut k = base.clone();
            k.push(KeySeg::Key(name));
            bad(k, format!("must be between 0 and 100, got {v}"));
        }
    }
    if warn.1 > crit.1 {
        let mut k = base;
        k.push(KeySeg::Key(warn.0));
        bad(k, format!("{} is above {} ({})", warn.1, crit.0, crit.1));
    }
}

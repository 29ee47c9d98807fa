//! What an http check expects of an answer: the statuses that pass, the
//! number at a JSON path, and the certificate's notAfter.

use std::fmt;
use std::time::SystemTime;

use serde::Deserialize;

/// One accepted status: a code or a class ("2xx").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(u16),
    Class(String),
}

/// `expect_status`: one spec or a list; "2xx" when not given.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Expect {
    One(StatusSpec),
    Many(Vec<StatusSpec>),
}

impl Default for Expect {
    fn default() -> Self {
        Expect::One(StatusSpec::Class("2xx".into()))
    }
}

impl Expect {
    fn specs(&self) -> &[StatusSpec] {
        match self {
            Expect::One(s) => std::slice::from_ref(s),
            Expect::Many(v) => v,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.specs().is_empty() {
            return Err("needs at least one status".into());
        }
        for s in self.specs() {
            match s {
                StatusSpec::Code(c) if !(100..=599).contains(c) => {
                    return Err(format!("{c} is not an HTTP status (100-599)"))
                }
                StatusSpec::Class(c) if class_digit(c).is_none() => {
                    return Err(format!("{c:?}: write a code (200) or a class (\"2xx\")"))
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn matches(&self, code: u16) -> bool {
        self.specs().iter().any(|s| match s {
            StatusSpec::Code(c) => *c == code,
            StatusSpec::Class(c) => class_digit(c).is_some_and(|d| code / 100 == d),
        })
    }
}

fn class_digit(c: &str) -> Option<u16> {
    let c = c.to_ascii_lowercase();
    let d = c.strip_suffix("xx")?.parse::<u16>().ok()?;
    (1..=5).contains(&d).then_some(d)
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .specs()
            .iter()
            .map(|s| match s {
                StatusSpec::Code(c) => c.to_string(),
                StatusSpec::Class(c) => c.to_ascii_lowercase(),
            })
            .collect();
        f.write_str(&parts.join(" or "))
    }
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// `$.a.b[0].c` (the `$.` may be left out): keys and array indexes, the
/// part of JSONPath that names one value.
pub fn parse_path(p: &str) -> Result<Vec<Step>, String> {
    let rest = p.strip_prefix('$').unwrap_or(p);
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    let mut steps = Vec::new();
    for part in rest.split('.') {
        let (key, mut idx) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && idx.is_empty() {
            return Err(format!("{p:?}: an empty step (write $.a.b[0].c)"));
        }
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while !idx.is_empty() {
            let close = idx
                .find(']')
                .ok_or_else(|| format!("{p:?}: a '[' without its ']'"))?;
            let n = idx[1..close]
                .parse::<usize>()
                .map_err(|_| format!("{p:?}: {:?} is not an array index", &idx[1..close]))?;
            steps.push(Step::Index(n));
            idx = &idx[close + 1..];
            if !idx.is_empty() && !idx.starts_with('[') {
                return Err(format!("{p:?}: expected '.' or '[' after ']'"));
            }
        }
    }
    Ok(steps)
}

/// The number at `path` in the JSON `body` (a number, or a string that
/// holds one).
pub fn json_number(body: &[u8], path: &[Step]) -> Result<f64, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let mut cur = &v;
    for step in path {
        cur = match (step, cur) {
            (Step::Key(k), serde_json::Value::Object(m)) => {
                m.get(k).ok_or_else(|| format!("no key {k:?}"))?
            }
            (Step::Index(i), serde_json::Value::Array(a)) => {
                a.get(*i).ok_or_else(|| format!("no element [{i}]"))?
            }
            (Step::Key(k), _) => return Err(format!("{k:?}: not an object there")),
            (Step::Index(i), _) => return Err(format!("[{i}]: not an array there")),
        };
    }
    match cur {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| "not a finite number".into()),
        serde_json::Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{s:?} is not a number")),
        other => Err(format!("{other} is not a number")),
    }
}

/// A DER certificate's notAfter.
pub fn cert_not_after(der: &[u8]) -> Option<SystemTime> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let after = cert
        .tbs_certificate()
        .validity()
        .not_after
        .to_unix_duration();
    Some(SystemTime::UNIX_EPOCH + after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_classes() {
        let e: Expect = toml::from_str::<toml::Table>("e = [200, \"3xx\"]").unwrap()["e"]
            .clone()
            .try_into()
            .unwrap();
        assert!(e.matches(200) && e.matches(302) && !e.matches(204) && !e.matches(500));
        assert_eq!(e.to_string(), "200 or 3xx");
        assert!(Expect::default().matches(204) && !Expect::default().matches(301));
        assert!(Expect::One(StatusSpec::Class("6xx".into()))
            .validate()
            .is_err());
        assert!(Expect::One(StatusSpec::Code(42)).validate().is_err());
        assert!(Expect::Many(vec![]).validate().is_err());
    }

    #[test]
    fn json_paths() {
        let body = br#"{"pipeline": {"points_5m": 123, "stages": [{"lag": "4.5"}]}, "ok": true}"#;
        let get = |p: &str| json_number(body, &parse_path(p).unwrap());
        assert_eq!(get("$.pipeline.points_5m"), Ok(123.0));
        assert_eq!(get("pipeline.stages[0].lag"), Ok(4.5));
        assert_eq!(get("$.pipeline.nope"), Err("no key \"nope\"".into()));
        assert_eq!(get("$.ok"), Err("true is not a number".into()));
        assert!(get("$.pipeline.stages[3]")
            .unwrap_err()
            .contains("no element [3]"));
        assert!(json_number(b"<html>", &parse_path("$.a").unwrap())
            .unwrap_err()
            .contains("not JSON"));
        assert!(parse_path("$.a[x]").is_err());
        assert!(parse_path("$.a..b").is_err());
        assert!(parse_path("$.a[0").is_err());
    }
}

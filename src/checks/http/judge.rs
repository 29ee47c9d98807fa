//! The http check's verdict on an answer: the status, the body, the
//! number at `json_path`, the latency and the certificate, each failed
//! expectation said and the worst deciding.

use std::time::{Duration, SystemTime};

use super::{json_number, HttpCheckConfig, HttpProbe};
use crate::checks::{crossed, fmt_duration, grade, grade_below, millis, Outcome, Status};
use crate::config::ByteSize;

impl HttpProbe {
    /// The verdict on an answer: every failed expectation is said, the
    /// worst one decides.
    pub(super) fn judge(
        &self,
        code: u16,
        body: &[u8],
        cut: bool,
        took: Duration,
        not_after: Option<SystemTime>,
        now: SystemTime,
    ) -> (Outcome, Option<f64>) {
        let c = &self.config;
        let mut status = Status::Pass;
        let mut said: Vec<String> = Vec::new();
        let mut worse = |s: Status, m: String, status: &mut Status| {
            *status = (*status).max(s);
            said.push(m);
        };
        if !self.expect.matches(code) {
            worse(
                Status::Fail,
                format!("HTTP {code} (expected {})", self.expect),
                &mut status,
            );
        }
        let text = String::from_utf8_lossy(body);
        let seen = if cut {
            format!("in the first {}", ByteSize(body.len() as u64))
        } else {
            "in the body".to_string()
        };
        if let Some(k) = &c.body_contains {
            if !text.contains(k.as_str()) {
                worse(Status::Fail, format!("{k:?} not found {seen}"), &mut status);
            }
        }
        if let (Some(r), Some(src)) = (&self.regex, &c.body_regex) {
            if !r.is_match(&text) {
                worse(
                    Status::Fail,
                    format!("/{src}/ does not match {seen}"),
                    &mut status,
                );
            }
        }
        let mut json = None;
        if let (Some(path), Some(src)) = (&self.path, &c.json_path) {
            match json_number(body, path) {
                Err(m) => worse(Status::Fail, format!("{src}: {m}"), &mut status),
                Ok(v) => {
                    json = Some(v);
                    let s = grade(v, c.warn_above, c.crit_above).max(grade_below(
                        v,
                        c.warn_below,
                        c.crit_below,
                    ));
                    if s != Status::Pass {
                        worse(s, format!("{src} is {v} ({})", bounds(c)), &mut status);
                    }
                }
            }
        }
        let lat = grade(
            took.as_secs_f64(),
            c.latency_warn.map(|d| d.as_secs_f64()),
            c.latency_crit.map(|d| d.as_secs_f64()),
        );
        if lat != Status::Pass {
            let limit = crossed(lat, c.latency_warn, c.latency_crit);
            worse(
                lat,
                format!(
                    "answered in {} ms (limit {})",
                    millis(took),
                    fmt_duration(limit.unwrap_or_default())
                ),
                &mut status,
            );
        }
        if let Some(t) = not_after {
            let left = t.duration_since(now).unwrap_or_default();
            let days = (left.as_secs_f64() / 86400.0 * 10.0).floor() / 10.0;
            let s = grade_below(
                left.as_secs_f64(),
                c.cert_expiry_warn.map(|d| d.as_secs_f64()),
                c.cert_expiry_crit.map(|d| d.as_secs_f64()),
            );
            if s != Status::Pass {
                let limit = crossed(s, c.cert_expiry_warn, c.cert_expiry_crit);
                worse(
                    s,
                    format!(
                        "the certificate expires in {days} days, on {} (limit {})",
                        humantime::format_rfc3339_seconds(t),
                        humantime::format_duration(limit.unwrap_or_default())
                    ),
                    &mut status,
                );
            }
        }
        if let (Some(t), true) = (
            not_after,
            said.iter().any(|s| s.starts_with("the certificate")),
        ) {
            // The days left are the figure that matters when they fail it.
            let left = t.duration_since(now).unwrap_or_default();
            let days = (left.as_secs_f64() / 86400.0 * 10.0).round() / 10.0;
            let o = Outcome::new(status, days, Some("days")).with_output(format!(
                "{}: {}",
                self.shown_url,
                said.join("; ")
            ));
            return (o, json);
        }
        let mut o = Outcome::new(status, millis(took), Some("ms"));
        if !said.is_empty() {
            o = o.with_output(format!("{}: {}", self.shown_url, said.join("; ")));
        }
        (o, json)
    }
}

/// "warn below 100, critical below 10".
fn bounds(c: &HttpCheckConfig) -> String {
    let mut v = Vec::new();
    for (label, x) in [
        ("critical at or below", c.crit_below),
        ("warn at or below", c.warn_below),
        ("warn at or above", c.warn_above),
        ("critical at or above", c.crit_above),
    ] {
        if let Some(x) = x {
            v.push(format!("{label} {x}"));
        }
    }
    v.join(", ")
}

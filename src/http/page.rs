//! `GET /`: a small page for a person: the overall status, a table of every
//! check, when the daemon last looked, and links to the machine endpoints.
//! No scripts and no external assets; it refreshes itself every 10 s.

use std::fmt::Write as _;
use std::time::SystemTime;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use super::health::Freshness;
use super::source::Rendered;
use crate::checks::Status;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-top:1em}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}\
.pass{color:#176f2c}.warn{color:#9a6700}.fail{color:#b42318}.badge{font-weight:bold;text-transform:uppercase}\
.banner{padding:.6em 1em;border-radius:4px;background:#fde8e7;color:#b42318;margin:1em 0}\
code{background:#f4f4f4;padding:0 .2em}";

fn badge(s: Status) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", attr(s.as_str()))
}

/// The page for the snapshot as it stands `now`.
pub fn render(r: &Rendered, now: SystemTime) -> String {
    let fresh = r.freshness(now);
    let status = match (&fresh, &r.snapshot) {
        (Freshness::Fresh, Some(s)) => s.status,
        _ => Status::Fail,
    };
    let mut p = String::with_capacity(4096);
    let _ = write!(
        p,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <title>unitwatch on {host}: {st}</title><style>{STYLE}</style></head><body>\
         <h1>unitwatch on {host}: <span id=\"status\">{badge}</span></h1>",
        host = text(&r.host),
        st = status.as_str(),
        badge = badge(status),
    );
    if let Freshness::Stale(why) | Freshness::Missing(why) = &fresh {
        let _ = write!(p, "<p class=\"banner\" id=\"problem\">{}</p>", text(why));
    }
    if let Some(s) = &r.snapshot {
        let age = r
            .age(now)
            .map(|a| format!(" ({a:.0} s ago)"))
            .unwrap_or_default();
        let _ = write!(
            p,
            "<p id=\"summary\">{}</p><p>Last updated <time id=\"updated\">{}</time>{}; \
             unitwatchd {} (pid {}), sweeping every {} s; systemd {}.</p>",
            text(&s.summary),
            text(&s.updated_at),
            age,
            text(&s.version),
            s.pid,
            s.interval_ms as f64 / 1000.0,
            if s.systemd.reachable {
                "reachable"
            } else {
                "<b class=\"fail\">unreachable</b>"
            },
        );
        p.push_str(
            "<table id=\"checks\"><thead><tr><th>Status</th><th>Check</th><th>Value</th>\
             <th>Detail</th><th>Checked</th></tr></thead><tbody>",
        );
        for c in &s.checks {
            let _ = write!(
                p,
                "<tr class=\"{st}\"><td>{badge}</td><td><code>{key}</code></td><td>{value}</td>\
                 <td>{out}</td><td>{time}</td></tr>",
                st = attr(c.status.as_str()),
                badge = badge(c.status),
                key = text(&c.key),
                value = text(&c.display_value()),
                out = text(c.output.as_deref().unwrap_or("")),
                time = text(&c.time.to_string()),
            );
        }
        p.push_str("</tbody></table>");
    }
    p.push_str(
        "<p>Endpoints: <a href=\"/health\">/health</a> · <a href=\"/health/detailed\">/health/detailed</a> · \
         <a href=\"/metrics\">/metrics</a></p></body></html>\n",
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_lists_checks() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("status.json");
        let now = SystemTime::now();
        let s = serde_json::json!({
            "schema_version": 1, "status": "fail", "summary": "0 units ok, 1 failing: <x>.service",
            "updated_at": humantime::format_rfc3339_millis(now).to_string(),
            "started_at": "2026-11-23T09:00:00.000Z", "pid": 7, "version": "0.1.0",
            "interval_ms": 10000, "systemd": {"reachable": true},
            "checks": [{"key": "a.service:state", "component": "a.service", "measurement": "state",
                        "component_type": "component", "status": "fail", "observed_value": "failed",
                        "output": "failed (Result=signal) <script>", "time": "2026-11-23T10:00:00.000Z", "duration_us": 1}],
            "units": {}
        });
        std::fs::write(&path, s.to_string()).unwrap();
        let r = super::super::source::load(&path, "vm<1>");
        let page = render(&r, now);
        assert!(
            page.contains("<title>unitwatch on vm&lt;1&gt;: fail</title>"),
            "{page}"
        );
        assert!(page.contains("<code>a.service:state</code>"), "{page}");
        assert!(
            page.contains("failed (Result=signal) &lt;script&gt;"),
            "{page}"
        );
        assert!(!page.contains("<script>"));
        assert!(!page.contains("id=\"problem\""));
        // Stale: the banner says why, the status is fail.
        let page = render(&r, now + std::time::Duration::from_secs(120));
        assert!(
            page.contains("id=\"problem\">status snapshot is 120s old"),
            "{page}"
        );
    }
}

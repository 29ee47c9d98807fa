//! Slack: an incoming webhook, Block Kit: a header, the message, the
//! facts as section fields, and a context line.
//!
//! Format: <https://api.slack.com/messaging/webhooks> and
//! <https://api.slack.com/reference/block-kit/blocks> (header text 150
//! characters, section text 3000, field text 2000, at most 10 fields).
//! `text` is set too: it is what notifications and old clients show.

use serde_json::{json, Value};

use super::http::truncate;
use super::Alert;
use crate::events::Severity;

/// Slack's mrkdwn needs `&`, `<` and `>` escaped in text that is not markup.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn emoji(s: Severity) -> &'static str {
    match s {
        Severity::Info => ":large_green_circle:",
        Severity::Warning => ":large_yellow_circle:",
        Severity::Error => ":red_circle:",
        Severity::Critical => ":rotating_light:",
    }
}

pub fn payload(a: &Alert, mention: Option<&str>) -> Value {
    let mention = mention.filter(|_| a.severity == Severity::Critical && !a.resolved);
    let field = |name: &str, value: &str| json!({"type": "mrkdwn", "text": truncate(&format!("*{name}*\n{}", escape(value)), 2000)});
    let mut fields = vec![
        field("Severity", a.severity.label()),
        field("Host", &a.host),
        field("Event", &a.event),
    ];
    if let Some(u) = &a.unit {
        fields.push(field("Unit", u));
    }
    if let Some(c) = &a.check {
        fields.push(field("Check", c));
    }
    let text = match mention {
        // The mention is markup: not escaped.
        Some(m) => format!("{m} {}", escape(&a.message)),
        None => escape(&a.message),
    };
    let mut context = format!(
        "unitwatch {} · {}",
        env!("CARGO_PKG_VERSION"),
        humantime::format_rfc3339_seconds(a.at)
    );
    if let Some(n) = a.note() {
        context = format!("{context} · {n}");
    }
    json!({
        "text": truncate(&format!("{}{}", mention.map(|m| format!("{m} ")).unwrap_or_default(), escape(&a.headline())), 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("{} {}: {}", emoji(a.severity), a.severity.label(), a.title), 150), "emoji": true}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, 3000)}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&escape(&context), 3000)}]},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Kind};
    use std::time::SystemTime;

    #[test]
    fn text_is_escaped_and_the_mention_is_not() {
        let e = Event::new(Kind::RestartLimit, Severity::Critical, "a <b> & c").unit("w.service");
        let p = payload(
            &Alert::from_event(&e, SystemTime::UNIX_EPOCH, "vm1"),
            Some("<!here>"),
        );
        assert_eq!(
            p["blocks"][1]["text"]["text"],
            "<!here> a &lt;b&gt; &amp; c"
        );
        assert!(p["text"]
            .as_str()
            .unwrap()
            .starts_with("<!here> CRITICAL vm1"));
        assert_eq!(p["blocks"][0]["type"], "header");
        assert_eq!(p["blocks"][2]["fields"][3]["text"], "*Unit*\nw.service");
    }
}

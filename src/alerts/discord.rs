//! Discord: an incoming webhook, one embed per alert, coloured by
//! severity, with the configured `mention` on CRITICAL.
//!
//! Format: <https://discord.com/developers/docs/resources/webhook#execute-webhook>
//! (embed limits: title 256, description 4096, field value 1024 characters).
//! `allowed_mentions` is always set, so that only the configured mention
//! can ping anyone, whatever a unit's output says.

use serde_json::{json, Value};

use super::http::truncate;
use super::Alert;
use crate::events::Severity;

/// Embed colours (0xRRGGBB): green, amber, red, dark red.
pub fn colour(s: Severity) -> u32 {
    match s {
        Severity::Info => 0x2ECC71,
        Severity::Warning => 0xF1C40F,
        Severity::Error => 0xE74C3C,
        Severity::Critical => 0x992D22,
    }
}

/// The `allowed_mentions` object that lets exactly `mention` through.
fn allowed(mention: Option<&str>) -> Value {
    let id = |m: &str, pre: &str| {
        m.strip_prefix(pre)
            .and_then(|r| r.strip_suffix('>'))
            .map(str::to_string)
    };
    match mention {
        Some("@here") | Some("@everyone") => json!({"parse": ["everyone"]}),
        Some(m) => {
            if let Some(role) = id(m, "<@&") {
                json!({"parse": [], "roles": [role]})
            } else if let Some(user) = id(m, "<@") {
                json!({"parse": [], "users": [user]})
            } else {
                json!({"parse": []})
            }
        }
        None => json!({"parse": []}),
    }
}

pub fn payload(a: &Alert, mention: Option<&str>) -> Value {
    let mention = mention.filter(|_| a.severity == Severity::Critical && !a.resolved);
    let field = |name: &str, value: &str, inline: bool| json!({"name": name, "value": truncate(value, 1024), "inline": inline});
    let mut fields = vec![
        field("Severity", a.severity.label(), true),
        field("Host", &a.host, true),
        field("Event", &a.event, true),
    ];
    if let Some(u) = &a.unit {
        fields.push(field("Unit", u, true));
    }
    if let Some(c) = &a.check {
        fields.push(field("Check", c, true));
    }
    if let Some(n) = a.note() {
        fields.push(field("Suppressed", &n, false));
    }
    let mut body = json!({
        "username": "unitwatch",
        "allowed_mentions": allowed(mention),
        "embeds": [{
            "title": truncate(&format!("{}: {}", a.severity.label(), a.title), 256),
            "description": truncate(&a.message, 4096),
            "color": colour(a.severity),
            "timestamp": humantime::format_rfc3339_millis(a.at).to_string(),
            "fields": fields,
            "footer": {"text": concat!("unitwatch ", env!("CARGO_PKG_VERSION"))},
        }],
    });
    if let Some(m) = mention {
        body["content"] = json!(truncate(&format!("{m} {}", a.headline()), 2000));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Kind};
    use std::time::SystemTime;

    #[test]
    fn critical_gets_the_mention_and_only_it_is_allowed() {
        let e = Event::new(Kind::RestartLimit, Severity::Critical, "w: limit").unit("w.service");
        let a = Alert::from_event(&e, SystemTime::UNIX_EPOCH, "vm1");
        let p = payload(&a, Some("<@&42>"));
        assert_eq!(
            p["content"],
            "<@&42> CRITICAL vm1: Restart limit reached: w.service"
        );
        assert_eq!(p["allowed_mentions"], json!({"parse": [], "roles": ["42"]}));
        assert_eq!(p["embeds"][0]["color"], 0x992D22);
        // Below critical: no content, nobody pinged.
        let e = Event::new(Kind::UnitFailed, Severity::Error, "w failed").unit("w.service");
        let p = payload(
            &Alert::from_event(&e, SystemTime::UNIX_EPOCH, "vm1"),
            Some("<@42>"),
        );
        assert!(p.get("content").is_none());
        assert_eq!(p["allowed_mentions"], json!({"parse": []}));
        assert_eq!(allowed(Some("<@7>")), json!({"parse": [], "users": ["7"]}));
    }

    #[test]
    fn long_messages_are_cut_to_discords_limits() {
        let e =
            Event::new(Kind::UnitFailed, Severity::Error, "x".repeat(5000)).unit(&"u".repeat(2000));
        let p = payload(&Alert::from_event(&e, SystemTime::UNIX_EPOCH, "vm1"), None);
        let embed = &p["embeds"][0];
        assert_eq!(embed["description"].as_str().unwrap().chars().count(), 4096);
        assert_eq!(embed["title"].as_str().unwrap().chars().count(), 256);
        for f in embed["fields"].as_array().unwrap() {
            assert!(f["value"].as_str().unwrap().chars().count() <= 1024);
        }
    }
}

//! `[[alert]]`: the alert channels' configuration and its validation (the
//! keys each type needs, and the ones it does not take).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::locate::{Bad, KeySeg};
use super::values::{check_http_url, duration, is_loopback_host};
use crate::alerts::secret::Secret;

/// The kinds of alert channel (`type` of an `[[alert]]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertType {
    Discord,
    Slack,
    Webhook,
    Email,
}

impl AlertType {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::Discord => "discord",
            AlertType::Slack => "slack",
            AlertType::Webhook => "webhook",
            AlertType::Email => "email",
        }
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption: only to a relay on this machine (loopback).
    None,
}

/// `[[alert]]`: one alert channel. One flat table for every type, so that a
/// key that does not apply to the type is named by the validation pass
/// (with its line) instead of being lost in an enum's error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// Names the channel in logs, metrics and `alert test --channel`;
    /// defaults to the type, numbered when a type is used more than once.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_min_severity")]
    pub min_severity: crate::events::Severity,
    /// Glob patterns: events about a unit go out only if it matches one.
    #[serde(default)]
    pub units: Vec<String>,
    /// Glob patterns: events about a check go out only if it matches one.
    #[serde(default)]
    pub checks: Vec<String>,
    #[serde(default = "default_cooldown", deserialize_with = "duration")]
    pub cooldown: Duration,
    #[serde(default = "default_alert_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_alert_queue_size")]
    pub queue_size: usize,
    /// The webhook URL (discord, slack, webhook): a secret, so it can come
    /// from a file or a variable of the environment instead.
    #[serde(default)]
    pub url: Option<Secret>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub url_env: Option<String>,
    /// Discord `<@USER_ID>` or `<@&ROLE_ID>`, Slack `<@U…>`, `<!here>` or
    /// `<!channel>`: added to CRITICAL alerts.
    #[serde(default)]
    pub mention: Option<String>,
    /// The webhook's HMAC-SHA256 key.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// email: the SMTP server's host name.
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "default_smtp_tls")]
    pub tls: SmtpTls,
    /// An extra CA certificate (PEM) to trust, for a relay with a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
}

fn default_min_severity() -> crate::events::Severity {
    crate::events::Severity::Info
}
fn default_cooldown() -> Duration {
    Duration::from_secs(300)
}
fn default_alert_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_alert_queue_size() -> usize {
    100
}
fn default_signature_header() -> String {
    "X-Unitwatch-Signature".into()
}
fn default_smtp_tls() -> SmtpTls {
    SmtpTls::Starttls
}

impl AlertConfig {
    /// The channel's name: `name`, else the type, numbered from the second
    /// channel of a type on (`slack`, `slack-2`).
    pub fn channel_name(all: &[AlertConfig], i: usize) -> String {
        let a = &all[i];
        if let Some(n) = &a.name {
            return n.clone();
        }
        let nth = all[..i]
            .iter()
            .filter(|b| b.kind == a.kind && b.name.is_none())
            .count();
        if nth == 0 {
            a.kind.as_str().to_string()
        } else {
            format!("{}-{}", a.kind.as_str(), nth + 1)
        }
    }

    /// The SMTP port: `port`, else the one the TLS mode implies.
    pub fn smtp_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Tls => 465,
            SmtpTls::Starttls => 587,
            SmtpTls::None => 25,
        })
    }
}

/// The validation of the `[[alert]]` tables: the keys each type needs and
/// the ones it does not take, secrets given exactly one way.
pub(super) fn alert_problems(alerts: &[AlertConfig], bad: &mut Bad<'_>) {
    use KeySeg::{Index, Key};
    let mut names = HashSet::new();
    for (i, a) in alerts.iter().enumerate() {
        let at = |k: &'static str| vec![Key("alert"), Index(i), Key(k)];
        let ty = a.kind.as_str();
        let name = AlertConfig::channel_name(alerts, i);
        if !names.insert(name.clone()) {
            bad(at("name"), format!("another [[alert]] is named {name:?}"));
        }
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bad(
                at("name"),
                format!("{name:?}: use letters, digits, '-' or '_'"),
            );
        }
        if a.timeout.is_zero() {
            bad(at("timeout"), "must be greater than zero".into());
        }
        if a.queue_size == 0 {
            bad(at("queue_size"), "must be at least 1".into());
        }
        for (key, pats) in [("units", &a.units), ("checks", &a.checks)] {
            for (j, p) in pats.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(p) {
                    bad(
                        vec![Key("alert"), Index(i), Key(key), Index(j)],
                        format!("{p:?} is not a valid pattern: {e}"),
                    );
                }
            }
        }
        let http = a.kind != AlertType::Email;
        let sources = |v: bool, f: bool, e: bool| [v, f, e].iter().filter(|x| **x).count();
        let secret_once = |bad: &mut dyn FnMut(Vec<KeySeg>, String),
                           key: &'static str,
                           given: usize,
                           needed: bool| {
            if given > 1 {
                bad(
                    at(key),
                    format!("give {key}, {key}_file or {key}_env, only one of them"),
                );
            } else if given == 0 && needed {
                bad(
                    at("type"),
                    format!("a {ty} channel needs {key} (or {key}_file, or {key}_env)"),
                );
            }
        };
        secret_once(
            bad,
            "url",
            sources(a.url.is_some(), a.url_file.is_some(), a.url_env.is_some()),
            http,
        );
        // The value is a secret: the message names the key, not the URL.
        if a.url
            .as_ref()
            .is_some_and(|u| check_http_url(u.expose()).is_err())
        {
            bad(
                at("url"),
                "is not an http:// or https:// URL with a host".into(),
            );
        }
        let secrets = sources(
            a.secret.is_some(),
            a.secret_file.is_some(),
            a.secret_env.is_some(),
        );
        secret_once(bad, "secret", secrets, false);
        let passwords = sources(
            a.password.is_some(),
            a.password_file.is_some(),
            a.password_env.is_some(),
        );
        secret_once(bad, "password", passwords, false);
        for (key, p) in [
            ("url_file", &a.url_file),
            ("secret_file", &a.secret_file),
            ("password_file", &a.password_file),
            ("ca_file", &a.ca_file),
        ] {
            if p.as_ref().is_some_and(|p| !p.is_absolute()) {
                bad(at(key), "is not an absolute path".into());
            }
        }
        if let Some(m) = &a.mention {
            if !mention_ok(a.kind, m) {
                bad(
                    at("mention"),
                    match a.kind {
                        AlertType::Discord => {
                            format!("{m:?}: use <@USER_ID>, <@&ROLE_ID>, @here or @everyone")
                        }
                        _ => format!("{m:?}: use <@USER_ID>, <!subteam^ID>, <!here> or <!channel>"),
                    },
                );
            }
        }
        if a.signature_header.is_empty()
            || axum::http::HeaderName::from_bytes(a.signature_header.as_bytes()).is_err()
        {
            bad(
                at("signature_header"),
                format!("{:?} is not a valid header name", a.signature_header),
            );
        }
        // Keys that belong to other types: named, so a typo'd type or a
        // key copied from another channel is not silently ignored.
        let not_here: &[(&'static str, bool)] = &[
            (
                "mention",
                a.mention.is_some() && !matches!(a.kind, AlertType::Discord | AlertType::Slack),
            ),
            ("secret", secrets > 0 && a.kind != AlertType::Webhook),
            (
                "signature_header",
                a.signature_header != default_signature_header() && a.kind != AlertType::Webhook,
            ),
            ("server", a.server.is_some() && http),
            ("port", a.port.is_some() && http),
            ("tls", a.tls != default_smtp_tls() && http),
            ("ca_file", a.ca_file.is_some() && http),
            ("username", a.username.is_some() && http),
            ("password", passwords > 0 && http),
            ("from", a.from.is_some() && http),
            ("to", !a.to.is_empty() && http),
            ("url", a.url.is_some() && !http),
        ];
        for (key, wrong) in not_here {
            if *wrong {
                bad(at(key), format!("does not apply to a {ty} channel"));
            }
        }
        if a.kind == AlertType::Email {
            match &a.server {
                None => bad(at("type"), "an email channel needs server".into()),
                Some(s) if s.is_empty() || s.contains(['/', ' ', ':']) => {
                    bad(at("server"), format!("{s:?} is not a host name"))
                }
                _ => {}
            }
            match &a.from {
                None => bad(at("type"), "an email channel needs from".into()),
                Some(f) => {
                    if f.parse::<lettre::message::Mailbox>().is_err() {
                        bad(at("from"), format!("{f:?} is not an email address"));
                    }
                }
            }
            if a.to.is_empty() {
                bad(
                    at("type"),
                    "an email channel needs to (one address or more)".into(),
                );
            }
            for (j, t) in a.to.iter().enumerate() {
                if t.parse::<lettre::message::Mailbox>().is_err() {
                    bad(
                        vec![Key("alert"), Index(i), Key("to"), Index(j)],
                        format!("{t:?} is not an email address"),
                    );
                }
            }
            if passwords > 0 && a.username.is_none() {
                bad(at("username"), "a password needs a username".into());
            }
            if a.tls == SmtpTls::None
                && passwords > 0
                && !a.server.as_deref().is_some_and(is_loopback_host)
            {
                bad(
                    at("tls"),
                    "\"none\" would send the password in clear over the network: use \"starttls\" or \"tls\" (\"none\" is for a relay on this machine)".into(),
                );
            }
        }
    }
}

/// Is a `mention` well formed for the channel type?
fn mention_ok(kind: AlertType, m: &str) -> bool {
    let id = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    let inner = |s: &str, pre: &str| {
        s.strip_prefix(pre)
            .and_then(|r| r.strip_suffix('>'))
            .is_some_and(id)
    };
    match kind {
        AlertType::Discord => m == "@here" || m == "@everyone" || inner(m, "<@&") || inner(m, "<@"),
        AlertType::Slack => {
            m == "<!here>" || m == "<!channel>" || inner(m, "<!subteam^") || inner(m, "<@")
        }
        _ => false,
    }
}

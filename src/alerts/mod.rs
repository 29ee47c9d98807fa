//! Alerts: events that reach a person, once, with the right severity.
//!
//! Every event goes to the journal (events.rs); this module sends the ones
//! a person should hear of to the `[[alert]]` channels. Here: the alert a
//! channel renders ([`Alert`]), the [`Notifier`] each channel type is, and
//! [`notifier`], the one list of the types. Each type is one module:
//! discord.rs and slack.rs render their JSON and share the chat webhook's
//! delivery (http.rs); webhook.rs and email.rs deliver their own way.
//! delivery.rs tries one alert (timeout, retries); channels.rs runs the
//! channels: the daemon's thread only filters, de-duplicates (dedup.rs) and
//! queues, under a lock held for microseconds; each channel has its own
//! bounded queue and worker task, so a dead or slow channel never holds up
//! the supervisor or another channel.

mod channels;
mod dedup;
mod delivery;
mod discord;
mod email;
mod http;
pub mod secret;
mod slack;
mod webhook;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::config::{AlertConfig, AlertType, Config};
use crate::events::{Event, Severity};
pub use channels::{load_state, send_test, Alerts, ChannelView};
pub use dedup::{StateFile, Verdict};
pub use delivery::{deliver, Delivered, RetryPolicy, DELIVERY};
use secret::{Redactor, Secret};

/// Why the alert channels could not be set up (at start: exit 78; on
/// reload: the new configuration is rejected). Delivery failures at run
/// time are not errors of this kind: they are retried, logged and counted.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert channel {channel}: {key} {path}: cannot read: {source}")]
    SecretFile {
        channel: String,
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("alert channel {channel}: {message}")]
    Secret { channel: String, message: String },
    #[error("alert channel {channel}: {message}")]
    Setup { channel: String, message: String },
    #[error("{path}: cannot read alert state: {source}")]
    StateRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no alert channel is named {0:?} (see [[alert]] name in the configuration)")]
    NoSuchChannel(String),
}

/// What a channel sends: an event, or a test, rendered for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub severity: Severity,
    /// The event's name (`unit-failed`), or `test`.
    pub event: String,
    pub title: String,
    pub unit: Option<String>,
    pub check: Option<String>,
    pub message: String,
    pub host: String,
    pub at: SystemTime,
    /// Alerts like this one held back since the last one sent.
    pub suppressed: u64,
    pub suppressed_since: Option<SystemTime>,
    /// Ends a problem (firing -> resolved).
    pub resolved: bool,
    /// Held back by the cooldown and sent when it ended.
    pub late: bool,
    pub test: bool,
}

impl Alert {
    pub fn from_event(e: &Event, at: SystemTime, host: &str) -> Alert {
        Alert {
            severity: e.severity,
            event: e.kind.as_str().to_string(),
            title: title(e),
            unit: e.unit.clone(),
            check: e.check.clone(),
            message: e.message.clone(),
            host: host.to_string(),
            at,
            suppressed: 0,
            suppressed_since: None,
            resolved: e.is_resolution(),
            late: false,
            test: false,
        }
    }

    /// The alert `unitwatchd alert test` sends.
    pub fn test(channel: &str, host: &str) -> Alert {
        Alert {
            severity: Severity::Info,
            event: "test".into(),
            title: "Test alert".into(),
            unit: None,
            check: None,
            message: format!(
                "A test alert from unitwatchd on {host} to channel {channel}: if you read this, alerts reach you here."
            ),
            host: host.to_string(),
            at: SystemTime::now(),
            suppressed: 0,
            suppressed_since: None,
            resolved: false,
            late: false,
            test: true,
        }
    }

    /// A line about what the cooldown held back, if anything.
    pub fn note(&self) -> Option<String> {
        let since = self
            .suppressed_since
            .map(|t| format!(" since {}", humantime::format_rfc3339_seconds(t)))
            .unwrap_or_default();
        match (self.late, self.suppressed) {
            (true, 0) => Some("Held back by the cooldown, sent when it ended.".into()),
            (true, n) => Some(format!(
                "Held back by the cooldown, sent when it ended; {n} more like it{since}."
            )),
            (false, 0) => None,
            (false, n) => Some(format!(
                "{n} more like it{since} were not sent separately (cooldown)."
            )),
        }
    }

    /// `[unitwatch] CRITICAL host: title`, for email subjects and fallbacks.
    pub fn headline(&self) -> String {
        format!("{} {}: {}", self.severity.label(), self.host, self.title)
    }
}

fn title(e: &Event) -> String {
    use crate::events::Kind;
    let what = match e.kind {
        Kind::CheckChanged => match e.severity {
            Severity::Info => "Check passing",
            Severity::Warning => "Check warning",
            _ => "Check failing",
        },
        k => k.title(),
    };
    match e.check.as_deref().or(e.unit.as_deref()) {
        Some(s) => format!("{what}: {s}"),
        None => what.to_string(),
    }
}

/// A delivery that did not work, and whether trying again may help.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryError {
    pub message: String,
    pub retry: Retry,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retry {
    /// The request itself is wrong (4xx): the same again would fail too.
    Never,
    /// 5xx, network, timeout: after a growing wait.
    Backoff,
    /// The service said when (429 `retry_after`).
    After(Duration),
}

impl DeliveryError {
    pub fn new(retry: Retry, message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
            retry,
        }
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// One way of reaching a person. `send` makes one attempt; timeouts and
/// retries are the worker's.
pub trait Notifier: Send + Sync {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a>;
    /// Where it sends, for logs: no secret in it.
    fn destination(&self) -> String;
}

/// A channel's configuration with its secrets read.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSpec {
    pub name: String,
    pub config: AlertConfig,
    pub url: Option<Secret>,
    pub secret: Option<Secret>,
    pub password: Option<Secret>,
}

impl ChannelSpec {
    /// Every secret of the channel, to be kept out of its messages.
    pub fn redactor(&self) -> Redactor {
        let mut r = Redactor::default();
        for s in [&self.url, &self.secret, &self.password]
            .into_iter()
            .flatten()
        {
            r.add(s);
        }
        r
    }
}

/// Reads the secrets of every `[[alert]]` channel.
pub fn resolve(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ChannelSpec>, AlertError> {
    let mut out = Vec::new();
    for (i, a) in config.alerts.iter().enumerate() {
        let name = AlertConfig::channel_name(&config.alerts, i);
        let read = |key, value, file, var| secret::resolve(&name, key, value, file, var, env);
        let url = read(
            "url",
            a.url.as_ref(),
            a.url_file.as_deref(),
            a.url_env.as_deref(),
        )?;
        if let Some(u) = &url {
            // Checked here for _file and _env; without the value in the
            // message, which is the secret.
            if crate::config::check_http_url(u.expose()).is_err() {
                return Err(AlertError::Secret {
                    channel: name,
                    message: "the webhook URL is not an http:// or https:// URL with a host".into(),
                });
            }
        }
        let secret = read(
            "secret",
            a.secret.as_ref(),
            a.secret_file.as_deref(),
            a.secret_env.as_deref(),
        )?;
        let password = read(
            "password",
            a.password.as_ref(),
            a.password_file.as_deref(),
            a.password_env.as_deref(),
        )?;
        out.push(ChannelSpec {
            name,
            config: a.clone(),
            url,
            secret,
            password,
        });
    }
    Ok(out)
}

/// The registry of channel types: one arm per module.
pub fn notifier(spec: &ChannelSpec) -> Result<Box<dyn Notifier>, AlertError> {
    Ok(match spec.config.kind {
        AlertType::Discord => Box::new(http::ChatHook::new(spec, discord::payload)?),
        AlertType::Slack => Box::new(http::ChatHook::new(spec, slack::payload)?),
        AlertType::Webhook => Box::new(webhook::Webhook::new(spec)?),
        AlertType::Email => Box::new(email::Email::new(spec)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_name_what_happened_to_what() {
        use crate::events::Kind;
        let e = Event::new(Kind::CheckChanged, Severity::Warning, "m").check("disk:/:utilization");
        assert_eq!(title(&e), "Check warning: disk:/:utilization");
        let e = Event::new(Kind::DaemonStarted, Severity::Info, "m");
        assert_eq!(title(&e), "unitwatchd started");
        let mut a = Alert::test("c", "h");
        a.suppressed = 3;
        a.suppressed_since = Some(SystemTime::UNIX_EPOCH);
        assert_eq!(
            a.note().unwrap(),
            "3 more like it since 1970-01-01T00:00:00Z were not sent separately (cooldown)."
        );
    }
}

//! Email over SMTP (lettre): STARTTLS (required, not opportunistic) or
//! implicit TLS, optional authentication, a plain-text and an HTML part.
//!
//! `tls = "none"` exists for a relay on the same machine (a local
//! Postfix); the validation pass refuses it with a password to any other
//! host, since the password would cross the network in clear.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Alert, AlertError, ChannelSpec, DeliveryError, Notifier, Retry, SendFuture};
use crate::config::SmtpTls;

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    destination: String,
}

impl Email {
    pub fn new(spec: &ChannelSpec) -> Result<Self, AlertError> {
        let c = &spec.config;
        let setup = |message: String| AlertError::Setup {
            channel: spec.name.clone(),
            message,
        };
        let host = c.server.clone().ok_or_else(|| setup("no server".into()))?;
        let mut params = TlsParameters::builder(host.clone());
        if let Some(ca) = &c.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| setup(format!("ca_file {}: cannot read: {e}", ca.display())))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                setup(format!(
                    "ca_file {}: not a PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            params = params.add_root_certificate(cert);
        }
        let tls = match c.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let p = params
                    .build_rustls()
                    .map_err(|e| setup(format!("TLS setup: {e}")))?;
                if mode == SmtpTls::Tls {
                    Tls::Wrapper(p)
                } else {
                    Tls::Required(p)
                }
            }
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(c.smtp_port())
            .tls(tls)
            .timeout(Some(c.timeout));
        if let Some(user) = &c.username {
            let pw = spec
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            b = b.credentials(Credentials::new(user.clone(), pw));
        }
        let parse = |s: &str| {
            s.parse::<Mailbox>()
                .map_err(|e| setup(format!("{s:?} is not an email address: {e}")))
        };
        Ok(Email {
            transport: b.build(),
            from: parse(c.from.as_deref().unwrap_or_default())?,
            to: c.to.iter().map(|t| parse(t)).collect::<Result<_, _>>()?,
            destination: format!(
                "smtp://{host}:{} ({})",
                c.smtp_port(),
                match c.tls {
                    SmtpTls::Starttls => "starttls",
                    SmtpTls::Tls => "tls",
                    SmtpTls::None => "no tls",
                }
            ),
        })
    }

    fn message(&self, a: &Alert) -> Result<Message, DeliveryError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(format!("[unitwatch] {}", a.headline()))
            .message_id(None)
            .date(a.at);
        for t in &self.to {
            b = b.to(t.clone());
        }
        b.multipart(MultiPart::alternative_plain_html(text(a), html(a)))
            .map_err(|e| DeliveryError::new(Retry::Never, format!("cannot build the message: {e}")))
    }
}

fn facts(a: &Alert) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("Severity", a.severity.label().to_string()),
        ("Host", a.host.clone()),
        ("Event", a.event.clone()),
    ];
    if let Some(u) = &a.unit {
        f.push(("Unit", u.clone()));
    }
    if let Some(c) = &a.check {
        f.push(("Check", c.clone()));
    }
    f.push(("Time", humantime::format_rfc3339_seconds(a.at).to_string()));
    if let Some(n) = a.note() {
        f.push(("Suppressed", n));
    }
    f
}

pub fn text(a: &Alert) -> String {
    let mut s = format!("{}\n\n{}\n\n", a.title, a.message);
    for (k, v) in facts(a) {
        s.push_str(&format!("{k}: {v}\n"));
    }
    s.push_str(concat!(
        "\n-- \nunitwatch ",
        env!("CARGO_PKG_VERSION"),
        "\n"
    ));
    s
}

pub fn html(a: &Alert) -> String {
    let e = |s: &str| html_escape::encode_text(s).into_owned();
    let colour = format!("#{:06x}", super::discord::colour(a.severity));
    let rows: String = facts(a)
        .into_iter()
        .map(|(k, v)| format!("<tr><th align=\"left\">{k}</th><td>{}</td></tr>", e(&v)))
        .collect();
    format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">\
<h2 style=\"border-left:6px solid {colour};padding-left:8px\">{}: {}</h2>\
<p>{}</p><table cellpadding=\"4\">{rows}</table>\
<p style=\"color:#888\">unitwatch {}</p></body></html>",
        a.severity.label(),
        e(&a.title),
        e(&a.message),
        env!("CARGO_PKG_VERSION")
    )
}

impl Notifier for Email {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            let msg = self.message(alert)?;
            self.transport.send(msg).await.map(|_| ()).map_err(|e| {
                // 5xx: the server refuses this message (or us) for good. A
                // client error is a mismatch of capabilities (no STARTTLS
                // where it is required, no AUTH mechanism in common): the
                // same server answers the same way in a minute, so say so
                // now rather than after half a minute of retries.
                let retry = if e.is_permanent() || e.is_client() {
                    Retry::Never
                } else {
                    Retry::Backoff
                };
                DeliveryError::new(retry, super::http::describe(&e))
            })
        })
    }
    fn destination(&self) -> String {
        self.destination.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Kind, Severity};
    use std::time::SystemTime;

    #[test]
    fn html_is_escaped_and_text_has_the_facts() {
        let e = Event::new(
            Kind::UnitFailed,
            Severity::Error,
            "<script>x</script> failed",
        )
        .unit("w.service");
        let a = Alert::from_event(&e, SystemTime::UNIX_EPOCH, "vm1");
        let h = html(&a);
        assert!(
            h.contains("&lt;script&gt;") && !h.contains("<script>"),
            "{h}"
        );
        let t = text(&a);
        assert!(
            t.contains("Severity: ERROR\nHost: vm1\nEvent: unit-failed\nUnit: w.service\n"),
            "{t}"
        );
    }
}

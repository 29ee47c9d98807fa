//! A generic webhook: a JSON POST in the shape of Alertmanager's webhook
//! (version 4), so receivers written for Alertmanager take it as it is,
//! with unitwatch's own flat fields alongside; optionally signed.
//!
//! Signature: with `secret` set, the header `signature_header` (default
//! `X-Unitwatch-Signature`) carries `sha256=` and the hex HMAC-SHA256 of
//! the exact body bytes under the secret, as GitHub's webhooks do. The body
//! carries its own time (`unitwatch.timestamp`), so a receiver can refuse
//! a replayed one.

use serde_json::{json, Value};

use super::http::Hook;
use super::secret::Secret;
use super::{Alert, AlertError, ChannelSpec, Notifier, SendFuture};

pub struct Webhook {
    name: String,
    hook: Hook,
    secret: Option<Secret>,
    header: String,
}

impl Webhook {
    pub fn new(spec: &ChannelSpec) -> Result<Self, AlertError> {
        Ok(Webhook {
            name: spec.name.clone(),
            hook: Hook::new(spec)?,
            secret: spec.secret.clone(),
            header: spec.config.signature_header.clone(),
        })
    }
}

/// `sha256=<hex>` of the body under `key`.
pub fn sign(key: &Secret, body: &[u8]) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.expose().as_bytes());
    format!("sha256={}", hex::encode(aws_lc_rs::hmac::sign(&k, body)))
}

/// A stable id of the alert's labels, as Alertmanager's `fingerprint`.
fn fingerprint(labels: &Value) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, labels.to_string().as_bytes());
    hex::encode(&d.as_ref()[..8])
}

pub fn payload(a: &Alert, receiver: &str) -> Value {
    let at = humantime::format_rfc3339_millis(a.at).to_string();
    let status = if a.resolved { "resolved" } else { "firing" };
    let mut labels = json!({
        "alertname": a.event,
        "severity": a.severity.as_str(),
        "instance": a.host,
        "job": "unitwatch",
    });
    if let Some(u) = &a.unit {
        labels["unit"] = json!(u);
    }
    if let Some(c) = &a.check {
        labels["check"] = json!(c);
    }
    let mut annotations = json!({"summary": a.title, "description": a.message});
    if let Some(n) = a.note() {
        annotations["suppressed"] = json!(n);
    }
    let group = format!(
        "unitwatch:{}:{}",
        a.host,
        a.check
            .as_deref()
            .or(a.unit.as_deref())
            .unwrap_or("unitwatchd")
    );
    json!({
        "version": "4",
        "groupKey": group,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": a.event},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": at,
            "endsAt": if a.resolved { at.clone() } else { "0001-01-01T00:00:00Z".into() },
            "generatorURL": "",
            "fingerprint": fingerprint(&labels),
        }],
        "unitwatch": {
            "event": a.event,
            "severity": a.severity.label(),
            "title": a.title,
            "message": a.message,
            "host": a.host,
            "unit": a.unit,
            "check": a.check,
            "timestamp": at,
            "suppressed": a.suppressed,
            "suppressed_since": a.suppressed_since.map(|t| humantime::format_rfc3339_millis(t).to_string()),
            "late": a.late,
            "test": a.test,
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
}

impl Notifier for Webhook {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            let body = serde_json::to_vec(&payload(alert, &self.name)).expect("serializes");
            let headers: Vec<(&str, String)> = self
                .secret
                .as_ref()
                .map(|k| (self.header.as_str(), sign(k, &body)))
                .into_iter()
                .collect();
            self.hook.post(body, &headers).await
        })
    }
    fn destination(&self) -> String {
        self.hook.destination()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Kind, Severity};
    use std::time::SystemTime;

    #[test]
    fn signature_is_the_hmac_of_the_body() {
        // RFC 4231 test case 2.
        let s = sign(&Secret::new("Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn resolution_is_resolved_with_an_end() {
        let e = Event::new(Kind::UnitRecovered, Severity::Info, "back").unit("w.service");
        let p = payload(
            &Alert::from_event(&e, SystemTime::UNIX_EPOCH, "vm1"),
            "hook",
        );
        assert_eq!(p["status"], "resolved");
        assert_eq!(p["alerts"][0]["endsAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(p["alerts"][0]["labels"]["unit"], "w.service");
        assert_eq!(p["unitwatch"]["severity"], "INFO");
    }
}

//! The HTTP side the webhook channels share: one POST of a JSON body, and
//! what its answer means for retrying (429 with `retry_after`, 5xx,
//! network errors).

use std::time::Duration;

use super::secret::{url_host, Secret};
use super::{Alert, AlertError, ChannelSpec, DeliveryError, Notifier, Retry, SendFuture};

/// A chat webhook (Discord, Slack): its module renders the JSON body, with
/// the channel's `mention` for CRITICAL alerts; this posts it.
pub struct ChatHook {
    hook: Hook,
    mention: Option<String>,
    render: fn(&Alert, Option<&str>) -> serde_json::Value,
}

impl ChatHook {
    pub fn new(
        spec: &ChannelSpec,
        render: fn(&Alert, Option<&str>) -> serde_json::Value,
    ) -> Result<ChatHook, AlertError> {
        Ok(ChatHook {
            hook: Hook::new(spec)?,
            mention: spec.config.mention.clone(),
            render,
        })
    }
}

impl Notifier for ChatHook {
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            let body = (self.render)(alert, self.mention.as_deref());
            self.hook
                .post(serde_json::to_vec(&body).expect("serializes"), &[])
                .await
        })
    }
    fn destination(&self) -> String {
        self.hook.destination()
    }
}

/// A webhook destination: the URL (a secret) and a client for it.
pub struct Hook {
    url: Secret,
    client: reqwest::Client,
}

impl Hook {
    pub fn new(spec: &ChannelSpec) -> Result<Hook, AlertError> {
        let setup = |message: String| AlertError::Setup {
            channel: spec.name.clone(),
            message,
        };
        Ok(Hook {
            url: spec.url.clone().ok_or_else(|| setup("no url".into()))?,
            client: client(spec.config.timeout).map_err(setup)?,
        })
    }

    /// POSTs `body` (JSON) with `headers`.
    pub async fn post(
        &self,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<(), DeliveryError> {
        post_json(&self.client, &self.url, body, headers).await
    }

    /// Scheme and host: where it goes, without the token.
    pub fn destination(&self) -> String {
        url_host(self.url.expose())
    }
}

/// A client for one channel: no redirects (a webhook that redirects is
/// misconfigured, and following one could carry the body elsewhere), the
/// channel's timeout.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("unitwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.without_url().to_string())
}

/// POSTs `body` as JSON to `url` with `headers`; any 2xx is delivered.
pub async fn post_json(
    client: &reqwest::Client,
    url: &Secret,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Result<(), DeliveryError> {
    let mut req = client
        .post(url.expose())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.map_err(|e| {
        // without_url: the URL is the secret.
        DeliveryError::new(Retry::Backoff, describe(&e.without_url()))
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let header_wait = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_seconds);
    let text = resp.text().await.unwrap_or_default();
    Err(classify(status.as_u16(), header_wait, &text))
}

/// An error's chain in one line ("error sending request: connection refused").
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Seconds as a string, whole or fractional ("2", "0.5").
fn parse_seconds(s: &str) -> Option<Duration> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
}

/// What a non-2xx answer means. A 429 waits as long as the service says:
/// the `Retry-After` header, else Discord's `retry_after` in the JSON body
/// (seconds, fractional), else a growing wait.
pub fn classify(status: u16, header_wait: Option<Duration>, body: &str) -> DeliveryError {
    let snippet: String = body.chars().take(200).collect();
    let snippet = snippet.trim();
    let message = if snippet.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {snippet}")
    };
    let retry = match status {
        429 => {
            let body_wait = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("retry_after").and_then(serde_json::Value::as_f64))
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(Duration::from_secs_f64);
            match header_wait.or(body_wait) {
                Some(d) => Retry::After(d),
                None => Retry::Backoff,
            }
        }
        // Request timeout and the server side: may work next time.
        408 | 500..=599 => Retry::Backoff,
        _ => Retry::Never,
    };
    DeliveryError::new(retry, message)
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_waits_as_long_as_it_is_told() {
        let body =
            r#"{"message": "You are being rate limited.", "retry_after": 0.64, "global": false}"#;
        assert_eq!(
            classify(429, None, body).retry,
            Retry::After(Duration::from_millis(640))
        );
        // The header wins over the body.
        assert_eq!(
            classify(429, parse_seconds("3"), body).retry,
            Retry::After(Duration::from_secs(3))
        );
        assert_eq!(classify(429, None, "slow down").retry, Retry::Backoff);
    }

    #[test]
    fn server_errors_are_retried_and_client_errors_are_not() {
        assert_eq!(classify(500, None, "").retry, Retry::Backoff);
        assert_eq!(classify(503, None, "").retry, Retry::Backoff);
        assert_eq!(classify(408, None, "").retry, Retry::Backoff);
        let e = classify(404, None, "no_service");
        assert_eq!(e.retry, Retry::Never);
        assert_eq!(e.message, "HTTP 404: no_service");
        assert_eq!(classify(400, None, "").message, "HTTP 400");
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo wörld", 6), "héllo…");
        assert_eq!(parse_seconds("-1"), None);
    }
}

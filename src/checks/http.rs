//! `[[check]] type = "http"`: does a URL answer as expected, in time? The
//! status, a keyword or a pattern in the body, a number inside a JSON
//! answer, the latency and, over https, the days the certificate has left.
//!
//! One request per run on a new connection (no keep-alive: a server that
//! no longer accepts connections must not pass on an old one). The body is
//! read up to `max_body` and no further. A URL's userinfo and query, and
//! the token, are never shown: not in outputs, events or metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::checks::common::{from_table, probe_figures, Common, PROBE_DURATION, PROBE_SUCCESS};
use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::{
    fmt_duration, How, Measurement, Outcome, Probe, ProbeCtx,
};
use crate::config::{check_http_url, opt_duration, ByteSize, Config, KeySeg};
use crate::manual::KeyDoc;

mod client;
mod expect;
mod judge;
mod transport;

pub use client::redact;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use client::shared_client;
use transport::{fetch_plain, fetch_reqwest, Failed, Plain};
use expect::{json_number, Expect};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Method {
    #[default]
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "HEAD")]
    Head,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheckConfig {
    pub url: String,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub follow_redirects: bool,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub expect_status: Option<Expect>,
    #[serde(default)]
    pub body_contains: Option<String>,
    #[serde(default)]
    pub body_regex: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub latency_warn: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub latency_crit: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub cert_expiry_warn: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub cert_expiry_crit: Option<Duration>,
    #[serde(default)]
    pub json_path: Option<String>,
    #[serde(default)]
    pub warn_below: Option<f64>,
    #[serde(default)]
    pub crit_below: Option<f64>,
    #[serde(default)]
    pub warn_above: Option<f64>,
    #[serde(default)]
    pub crit_above: Option<f64>,
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
}

fn default_max_body() -> ByteSize {
    ByteSize(64 * 1024)
}

const STATUS_CODE: MetricDoc = MetricDoc {
    name: "http_response_status",
    help: "The HTTP status code of the check's last answer",
    otlp: "unitwatch.http.response_status",
    otlp_unit: "1",
    otlp_scale: 1.0,
};
const CERT_EXPIRY: MetricDoc = MetricDoc {
    name: "tls_cert_expiry_timestamp_seconds",
    help: "When the server's TLS certificate expires (notAfter), in seconds since the epoch",
    otlp: "unitwatch.tls.cert_expiry",
    otlp_unit: "s",
    otlp_scale: 1.0,
};
const JSON_VALUE: MetricDoc = MetricDoc {
    name: "http_json_value",
    help: "The number at the check's json_path in its last answer",
    otlp: "unitwatch.http.json_value",
    otlp_unit: "1",
    otlp_scale: 1.0,
};

const fn h(
    key: &'static str,
    default: &'static str,
    example: &'static str,
    meaning: &'static str,
) -> KeyDoc {
    KeyDoc::check("http", key, default, example, meaning)
}

pub const KIND: Kind = Kind {
    name: "http",
    keys: &[
        h("url", "required", "\"https://127.0.0.1:8443/health\"",
          "The http:// or https:// URL. Its userinfo and query are shown redacted everywhere (outputs, events, metrics)."),
        h("method", "\"GET\"", "\"GET\"", "GET or HEAD (no body: body_contains, body_regex and json_path do not apply)."),
        h("headers", "none", "{ Accept = \"application/json\" }",
          "Headers sent with the request. Every run is a new connection, and Connection: close is sent (so the server closes first) unless a Connection header is set here."),
        h("token_file", "none", "\"/etc/unitwatch/api-token\"",
          "A file whose first line is a bearer token, sent as Authorization: Bearer TOKEN; read at every run, never shown."),
        h("follow_redirects", "false", "true",
          "Follow up to 10 redirects; by default a 3xx is the answer that is judged."),
        h("ca_file", "the system's trust store", "\"/etc/unitwatch/internal-ca.pem\"",
          "A PEM CA certificate to trust besides the system's, for a server with a private CA."),
        h("expect_status", "\"2xx\"", "[200, \"3xx\"]",
          "The statuses that pass: a code, a class such as \"2xx\", or a list of them."),
        h("body_contains", "none", "\"ok\"",
          "The body must contain this text (within max_body)."),
        h("body_regex", "none", "\"\\\"status\\\":\\\\s*\\\"up\\\"\"",
          "The body must match this regular expression (Rust regex syntax, within max_body)."),
        h("latency_warn", "none", "\"300ms\"",
          "Warn when the answer (headers and the body read) took this long or longer."),
        h("latency_crit", "none", "\"1s\"",
          "Fail when the answer took this long or longer."),
        h("cert_expiry_warn", "none", "\"14d\"",
          "https: warn when the server's certificate expires within this (reported as days left)."),
        h("cert_expiry_crit", "none", "\"3d\"",
          "https: fail when the server's certificate expires within this."),
        h("json_path", "none", "\"$.pipeline.points_5m\"",
          "A number in a JSON answer, by path ($.a.b[0].c), graded by warn_below, crit_below, warn_above and crit_above: how a service's own stats endpoint says it is producing data."),
        h("warn_below", "none", "100", "Warn when the number at json_path is this or lower."),
        h("crit_below", "none", "10", "Fail when the number at json_path is this or lower."),
        h("warn_above", "none", "5000", "Warn when the number at json_path is this or higher."),
        h("crit_above", "none", "10000", "Fail when the number at json_path is this or higher."),
        h("max_body", "\"64KiB\"", "\"64KiB\"",
          "How much of the body is read; the rest is never downloaded, and body_contains, body_regex and json_path see only this much."),
    ],
    metrics: &[PROBE_DURATION, PROBE_SUCCESS, STATUS_CODE, CERT_EXPIRY, JSON_VALUE],
    make: Make::Check {
        check,
        about: "Requests a URL: pass when the status is expected, the body holds what it must, the answer came in time and the certificate has time left.",
    },
};

pub const BUILD: Build = Build::Check(build);

type Problems = Vec<(Vec<KeySeg>, String)>;

/// Reads and validates the kind's keys.
fn read(t: &toml::Table) -> Result<HttpCheckConfig, Problems> {
    let c: HttpCheckConfig = from_table(t.clone())?;
    let mut out: Problems = Vec::new();
    let mut bad = |k: &'static str, m: String| out.push((vec![KeySeg::Key(k)], m));
    if check_http_url(&c.url).is_err() {
        // The URL may hold a secret: the message names what is wrong only.
        bad(
            "url",
            format!(
                "{} is not an http:// or https:// URL with a host",
                redact(&c.url)
            ),
        );
    }
    for (k, p) in [("token_file", &c.token_file), ("ca_file", &c.ca_file)] {
        if p.as_ref().is_some_and(|p| !p.is_absolute()) {
            bad(k, "is not an absolute path".into());
        }
    }
    for (name, value) in &c.headers {
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || axum::http::HeaderValue::from_str(value).is_err()
        {
            bad("headers", format!("{name:?} is not a valid header"));
        }
    }
    if let Some(r) = &c.body_regex {
        if let Err(e) = regex_lite::Regex::new(r) {
            bad("body_regex", format!("not a valid regular expression: {e}"));
        }
    }
    if let Some(e) = &c.expect_status {
        if let Err(m) = e.validate() {
            bad("expect_status", m);
        }
    }
    let thresholds = [c.warn_below, c.crit_below, c.warn_above, c.crit_above];
    match &c.json_path {
        Some(p) => {
            if let Err(m) = expect::parse_path(p) {
                bad("json_path", m);
            }
            if thresholds.iter().all(Option::is_none) {
                bad(
                    "json_path",
                    "give warn_below, crit_below, warn_above or crit_above to grade it".into(),
                );
            }
        }
        None if thresholds.iter().any(Option::is_some) => {
            let given = ["warn_below", "crit_below", "warn_above", "crit_above"]
                .into_iter()
                .zip(thresholds)
                .find_map(|(k, v)| v.map(|_| k))
                .unwrap_or("json_path");
            bad(given, "warn_below, crit_below, warn_above and crit_above grade the number at json_path: give it".into());
        }
        None => {}
    }
    if let (Some(w), Some(cr)) = (c.warn_below, c.crit_below) {
        if w < cr {
            bad("warn_below", format!("{w} is below crit_below ({cr})"));
        }
    }
    if let (Some(w), Some(cr)) = (c.warn_above, c.crit_above) {
        if w > cr {
            bad("warn_above", format!("{w} is above crit_above ({cr})"));
        }
    }
    for (k, (w, cr)) in [
        ("latency_warn", (c.latency_warn, c.latency_crit)),
        ("cert_expiry_crit", (c.cert_expiry_crit, c.cert_expiry_warn)),
    ] {
        if let (Some(w), Some(cr)) = (w, cr) {
            if w > cr {
                bad(
                    k,
                    format!("{} is above {}", fmt_duration(w), fmt_duration(cr)),
                );
            }
        }
    }
    if (c.cert_expiry_warn.is_some() || c.cert_expiry_crit.is_some())
        && !c.url.starts_with("https://")
    {
        bad("cert_expiry_warn", "applies to https:// URLs only".into());
    }
    if c.max_body.0 == 0 {
        bad("max_body", "must be at least 1 byte".into());
    }
    if c.method == Method::Head
        && (c.body_contains.is_some() || c.body_regex.is_some() || c.json_path.is_some())
    {
        bad("method", "a HEAD answer has no body to look into".into());
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(c)
}

fn check(t: &toml::Table, _: &Common, _: &Config) -> Result<(), Problems> {
    read(t).map(|_| ())
}

fn build(t: &toml::Table, common: &Common, _: &Config) -> Result<How, Problems> {
    let c = read(t)?;
    let regex = c
        .body_regex
        .as_deref()
        .and_then(|r| regex_lite::Regex::new(r).ok());
    let path = c
        .json_path
        .as_deref()
        .and_then(|p| expect::parse_path(p).ok());
    // Parsed once here, not at every run (it showed in the profile);
    // validation has already said what is wrong with a bad one.
    let url = reqwest::Url::parse(&c.url).ok();
    Ok(How::Probe(Arc::new(HttpProbe {
        name: common.key(),
        plain: url.as_ref().and_then(|u| Plain::of(u, c.follow_redirects)),
        url,
        headers: fixed_headers(&c),
        shown_url: redact(&c.url),
        expect: c.expect_status.clone().unwrap_or_default(),
        regex,
        path,
        client: OnceLock::new(),
        config: c,
    })))
}

/// The headers every run sends (but for the token, read at each run). A
/// connection per run, as the pool keeps none: saying so lets the server
/// close first, so the TIME_WAIT socket each run leaves behind (for a
/// minute) is the server's, not one of this host's ports (6000 of them for
/// 100 checks a second); Go's client, and so Prometheus' blackbox exporter,
/// does the same. A configured Connection header wins.
fn fixed_headers(c: &HttpCheckConfig) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("unitwatch/", env!("CARGO_PKG_VERSION"))),
    );
    h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    if !c.headers.keys().any(|k| k.eq_ignore_ascii_case("connection")) {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    for (k, v) in &c.headers {
        // Validated when read: a bad one cannot be here.
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            h.insert(k, v);
        }
    }
    h
}

pub struct HttpProbe {
    name: String,
    url: Option<reqwest::Url>,
    /// The target for the plain transport, when it serves this URL.
    plain: Option<Plain>,
    headers: HeaderMap,
    shown_url: String,
    config: HttpCheckConfig,
    expect: Expect,
    regex: Option<regex_lite::Regex>,
    path: Option<Vec<expect::Step>>,
    /// Built at the first run (reading ca_file), not while the file is
    /// only being validated.
    client: OnceLock<Result<reqwest::Client, String>>,
}

impl Probe for HttpProbe {
    fn run(self: Arc<Self>, ctx: ProbeCtx) -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            let (o, took, extra) = self.request(&ctx).await;
            let mut o = probe_figures(o, &self.name, took);
            o.measurements.extend(extra);
            o
        })
    }
}

impl HttpProbe {
    fn client(&self) -> Result<reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                let ca = match &self.config.ca_file {
                    Some(p) => Some(
                        std::fs::read(p)
                            .map_err(|e| format!("cannot read ca_file {}: {e}", p.display()))?,
                    ),
                    None => None,
                };
                shared_client(ca.as_deref(), self.config.follow_redirects)
            })
            .clone()
    }

    /// The headers of a run: those fixed at build time, and the token,
    /// read now (it may have been rotated).
    async fn headers(&self) -> Result<HeaderMap, String> {
        let mut h = self.headers.clone();
        if let Some(p) = &self.config.token_file {
            let t = tokio::fs::read_to_string(p)
                .await
                .map_err(|e| format!("cannot read token_file {}: {e}", p.display()))?;
            let token = t.lines().next().unwrap_or_default().trim();
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| format!("token_file {}: not a valid token", p.display()))?;
            value.set_sensitive(true);
            h.insert(header::AUTHORIZATION, value);
        }
        Ok(h)
    }

    /// The answer's status code and certificate expiry, as measurements.
    fn figures(&self, code: u16, not_after: Option<SystemTime>) -> Vec<Measurement> {
        let mut out = vec![Measurement::new(STATUS_CODE.name, code as f64).label("check", self.name.as_str())];
        if let Some(t) = not_after {
            let secs = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            out.push(Measurement::new(CERT_EXPIRY.name, secs).label("check", self.name.as_str()));
        }
        out
    }

    async fn request(&self, ctx: &ProbeCtx) -> (Outcome, Option<Duration>, Vec<Measurement>) {
        let c = &self.config;
        let url = &self.shown_url;
        let within = fmt_duration(ctx.timeout);
        let headers = match self.headers().await {
            Ok(h) => h,
            Err(e) => return (Outcome::error(e), None, vec![]),
        };
        let head = c.method == Method::Head;
        let cap = c.max_body.0 as usize;
        let t0 = Instant::now();
        let fetched = match &self.plain {
            Some(p) => fetch_plain(p, head, headers, cap, ctx.deadline).await,
            None => {
                let client = match self.client() {
                    Ok(cl) => cl,
                    Err(e) => return (Outcome::error(e), None, vec![]),
                };
                let Some(target) = self.url.clone() else {
                    return (Outcome::error(format!("{url} is not a URL")), None, vec![]);
                };
                let req = match c.method {
                    Method::Get => client.get(target),
                    Method::Head => client.head(target),
                };
                fetch_reqwest(req.headers(headers), head, cap, ctx.deadline).await
            }
        };
        let f = match fetched {
            Ok(f) => f,
            Err(Failed::TimedOut) => {
                return (
                    Outcome::error(format!("no answer from {url} within {within} (timed out)")),
                    None,
                    vec![],
                )
            }
            Err(Failed::Send { connect, why }) => {
                let what = if connect { "cannot connect to" } else { "request to" };
                return (Outcome::error(format!("{what} {url} failed: {why}")), None, vec![]);
            }
            Err(Failed::Body { code, not_after, why }) => {
                let msg = match why {
                    None => format!("HTTP {code} from {url}, but the body did not arrive within {within} (timed out)"),
                    Some(why) => format!("HTTP {code} from {url}, reading the body failed: {why}"),
                };
                return (Outcome::error(msg), None, self.figures(code, not_after));
            }
        };
        let took = t0.elapsed();
        let mut extra = self.figures(f.code, f.not_after);
        let (o, json) = self.judge(f.code, &f.body, f.cut, took, f.not_after, ctx.now);
        if let Some(v) = json {
            extra.push(Measurement::new(JSON_VALUE.name, v).label("check", self.name.as_str()));
        }
        (o, Some(took), extra)
    }
}

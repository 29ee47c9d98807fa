//! `[telemetry]`: the OTLP export's configuration and its validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::locate::{Bad, KeySeg};
use super::values::{check_http_url, duration, opt_duration};

/// How the wire format of OTLP is chosen (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::Grpc => "grpc",
        }
    }
}

/// `[telemetry]`: OTLP export of the metrics and events. Keys left out fall
/// back to the standard `OTEL_EXPORTER_OTLP_*` variables, then to the
/// defaults (see crate::telemetry::Settings).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The collector's base URL; `/v1/metrics` and `/v1/logs` are added for
    /// http/protobuf.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub protocol: Option<OtlpProtocol>,
    /// How often metrics are exported (events go out within seconds).
    #[serde(default = "default_telemetry_interval", deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// `name=value` lines sent as headers (or gRPC metadata) with every
    /// export, e.g. an API key; never logged.
    #[serde(default)]
    pub headers_file: Option<PathBuf>,
    /// Events held while the collector is away; past it the oldest go.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Azure's instance metadata service, asked once at start when the
    /// machine's DMI says it is an Azure VM (tests point it elsewhere).
    #[serde(default = "default_imds_endpoint")]
    pub imds_endpoint: String,
}

fn default_telemetry_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_queue_size() -> usize {
    1024
}
fn default_imds_endpoint() -> String {
    "http://169.254.169.254".into()
}
fn default_true() -> bool {
    true
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: default_true(),
            endpoint: None,
            protocol: None,
            interval: default_telemetry_interval(),
            timeout: None,
            headers_file: None,
            queue_size: default_queue_size(),
            imds_endpoint: default_imds_endpoint(),
        }
    }
}

impl TelemetryConfig {
    /// The validation pass of `[telemetry]`.
    pub(super) fn problems(&self, bad: &mut Bad<'_>) {
        use KeySeg::Key;
        let t = self;
        if t.interval < Duration::from_secs(1) {
            bad(
                vec![Key("telemetry"), Key("interval")],
                "must be at least 1s".into(),
            );
        }
        if t.queue_size == 0 {
            bad(
                vec![Key("telemetry"), Key("queue_size")],
                "must be at least 1".into(),
            );
        }
        if t.timeout.is_some_and(|d| d.is_zero()) {
            bad(
                vec![Key("telemetry"), Key("timeout")],
                "must be greater than zero".into(),
            );
        }
        for (key, url) in [
            ("endpoint", t.endpoint.as_deref()),
            ("imds_endpoint", Some(t.imds_endpoint.as_str())),
        ] {
            if let Some(url) = url {
                if let Err(m) = check_http_url(url) {
                    bad(vec![Key("telemetry"), Key(key)], m);
                }
            }
        }
        if let Some(p) = &t.headers_file {
            if !p.is_absolute() {
                bad(
                    vec![Key("telemetry"), Key("headers_file")],
                    format!("{} is not an absolute path", p.display()),
                );
            }
        }
    }
}

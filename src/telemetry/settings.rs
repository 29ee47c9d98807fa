//! Where and how the OTLP export goes: `[telemetry]` first, then the
//! standard `OTEL_EXPORTER_OTLP_*` variables, then the defaults. Resolved
//! once per (re)load, so what is in force can be shown and logged (the
//! headers never are).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{check_http_url, Config, OtlpProtocol};

use super::TelemetryError;

/// Headers (gRPC metadata) sent with every export. Debug shows the names
/// only: the values are credentials.
#[derive(Clone, Default, PartialEq)]
pub struct Headers(pub HashMap<String, String>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        write!(f, "Headers({names:?}, values hidden)")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub protocol: OtlpProtocol,
    /// Full URLs per signal (http/protobuf adds `/v1/metrics`, `/v1/logs`).
    pub metrics_url: String,
    pub logs_url: String,
    pub timeout: Duration,
    pub headers: Headers,
    pub interval: Duration,
    pub queue_size: usize,
    pub imds_endpoint: String,
    pub sys_dir: PathBuf,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Settings {
    /// The export in force, or None when `[telemetry]` is absent, says
    /// `enabled = false`, or `OTEL_SDK_DISABLED=true`.
    pub fn resolve(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, TelemetryError> {
        let Some(t) = &config.telemetry else {
            return Ok(None);
        };
        if !t.enabled || env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim() == "true") {
            return Ok(None);
        }
        Self::for_config(config, env).map(Some)
    }

    /// The export as configured, on or off (`unitwatchd check --otlp` tries
    /// it either way).
    pub fn for_config(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, TelemetryError> {
        let t = config.telemetry.clone().unwrap_or_default();
        let env_nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let protocol = match (t.protocol, env_nonempty("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            (Some(p), _) => p,
            (None, Some(v)) => match v.trim() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                other => {
                    return Err(TelemetryError::Env {
                        var: "OTEL_EXPORTER_OTLP_PROTOCOL".into(),
                        message: format!(
                            "{other:?} is not supported (use \"http/protobuf\" or \"grpc\")"
                        ),
                    })
                }
            },
            (None, None) => OtlpProtocol::HttpProtobuf,
        };
        let signal_url = |signal: &str, path: &str| -> Result<String, TelemetryError> {
            let var = format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.to_uppercase());
            let (url, from) = if let Some(e) = &t.endpoint {
                (join(protocol, e, path), None)
            } else if let Some(e) = env_nonempty(&var) {
                // Signal-specific URLs are used as they are (the spec).
                (e.trim().to_string(), Some(var))
            } else if let Some(e) = env_nonempty("OTEL_EXPORTER_OTLP_ENDPOINT") {
                (
                    join(protocol, e.trim(), path),
                    Some("OTEL_EXPORTER_OTLP_ENDPOINT".to_string()),
                )
            } else {
                let base = match protocol {
                    OtlpProtocol::HttpProtobuf => "http://127.0.0.1:4318",
                    OtlpProtocol::Grpc => "http://127.0.0.1:4317",
                };
                (join(protocol, base, path), None)
            };
            if let Some(var) = from {
                check_http_url(&url).map_err(|message| TelemetryError::Env { var, message })?;
            }
            Ok(url)
        };
        let timeout = match (t.timeout, env_nonempty("OTEL_EXPORTER_OTLP_TIMEOUT")) {
            (Some(d), _) => d,
            (None, Some(ms)) => {
                Duration::from_millis(ms.trim().parse().map_err(|_| TelemetryError::Env {
                    var: "OTEL_EXPORTER_OTLP_TIMEOUT".into(),
                    message: format!("{ms:?} is not a number of milliseconds"),
                })?)
            }
            (None, None) => DEFAULT_TIMEOUT,
        };
        let headers = match &t.headers_file {
            Some(p) => read_headers(p)?,
            None => Headers::default(),
        };
        Ok(Settings {
            protocol,
            metrics_url: signal_url("metrics", "/v1/metrics")?,
            logs_url: signal_url("logs", "/v1/logs")?,
            timeout,
            headers,
            interval: t.interval,
            queue_size: t.queue_size,
            imds_endpoint: t.imds_endpoint.clone(),
            sys_dir: config.daemon.sys_dir.clone(),
        })
    }

    /// The endpoint as an operator named it, for logs and the snapshot.
    pub fn endpoint(&self) -> &str {
        match self.protocol {
            OtlpProtocol::HttpProtobuf => self
                .metrics_url
                .strip_suffix("/v1/metrics")
                .unwrap_or(&self.metrics_url),
            OtlpProtocol::Grpc => &self.metrics_url,
        }
    }
}

fn join(protocol: OtlpProtocol, base: &str, path: &str) -> String {
    match protocol {
        OtlpProtocol::HttpProtobuf => format!("{}{path}", base.trim_end_matches('/')),
        OtlpProtocol::Grpc => base.to_string(),
    }
}

/// `name=value` per line; blank lines and `#` comments are skipped.
pub fn read_headers(path: &Path) -> Result<Headers, TelemetryError> {
    let text = std::fs::read_to_string(path).map_err(|source| TelemetryError::HeadersRead {
        path: path.to_path_buf(),
        source,
    })?;
    parse_headers(&text, path)
}

pub fn parse_headers(text: &str, path: &Path) -> Result<Headers, TelemetryError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| TelemetryError::HeadersInvalid {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| bad("expected name=value".into()))?;
        let (name, value) = (name.trim(), value.trim());
        // The value is never quoted back: it is a credential.
        axum::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("{name:?} is not a valid header name")))?;
        axum::http::HeaderValue::from_str(value)
            .map_err(|_| bad(format!("the value of {name:?} is not a valid header value")))?;
        out.insert(name.to_ascii_lowercase(), value.to_string());
    }
    Ok(Headers(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("t.toml")).unwrap()
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn off_unless_the_section_is_there_and_enabled() {
        let none = env_of(&[]);
        assert!(Settings::resolve(&config(""), &none).unwrap().is_none());
        let off = config("[telemetry]\nenabled = false\n");
        assert!(Settings::resolve(&off, &none).unwrap().is_none());
        let on = config("[telemetry]\n");
        assert!(Settings::resolve(&on, &none).unwrap().is_some());
        let disabled = env_of(&[("OTEL_SDK_DISABLED", "true")]);
        assert!(Settings::resolve(&on, &disabled).unwrap().is_none());
    }

    #[test]
    fn defaults_per_protocol() {
        let s = Settings::for_config(&config("[telemetry]\n"), &env_of(&[])).unwrap();
        assert_eq!(s.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(s.metrics_url, "http://127.0.0.1:4318/v1/metrics");
        assert_eq!(s.logs_url, "http://127.0.0.1:4318/v1/logs");
        assert_eq!(s.endpoint(), "http://127.0.0.1:4318");
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.interval, Duration::from_secs(60));
        let g = Settings::for_config(&config("[telemetry]\nprotocol = \"grpc\"\n"), &env_of(&[]))
            .unwrap();
        assert_eq!(g.metrics_url, "http://127.0.0.1:4317");
        assert_eq!(g.logs_url, "http://127.0.0.1:4317");
    }

    #[test]
    fn the_file_wins_over_the_environment_which_wins_over_defaults() {
        let env = env_of(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://collector.example:4318/",
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "https://logs.example/ingest",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ]);
        let s = Settings::for_config(&config("[telemetry]\n"), &env).unwrap();
        assert_eq!(s.metrics_url, "https://collector.example:4318/v1/metrics");
        assert_eq!(s.logs_url, "https://logs.example/ingest");
        assert_eq!(s.timeout, Duration::from_millis(2500));
        let file = config(
            "[telemetry]\nendpoint = \"http://10.1.2.3:4318\"\ntimeout = \"3s\"\nprotocol = \"grpc\"\n",
        );
        let s = Settings::for_config(&file, &env).unwrap();
        assert_eq!(s.protocol, OtlpProtocol::Grpc);
        assert_eq!(s.metrics_url, "http://10.1.2.3:4318");
        assert_eq!(s.logs_url, "http://10.1.2.3:4318");
        assert_eq!(s.timeout, Duration::from_secs(3));
    }

    #[test]
    fn bad_environment_names_the_variable() {
        let e = Settings::for_config(
            &config("[telemetry]\n"),
            &env_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && e.contains("http/json"),
            "{e}"
        );
        let e = Settings::for_config(
            &config("[telemetry]\n"),
            &env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
    }

    #[test]
    fn headers_file_is_parsed_and_never_shown() {
        let h = parse_headers(
            "# the key\nAuthorization = Bearer s3cret\n\nx-tenant=blue\n",
            Path::new("/etc/unitwatch/otlp-headers"),
        )
        .unwrap();
        assert_eq!(h.0["authorization"], "Bearer s3cret");
        assert_eq!(h.0["x-tenant"], "blue");
        let shown = format!("{h:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("authorization"),
            "{shown}"
        );
        let e = parse_headers("ok=1\nno equals sign s3cret\n", Path::new("/h"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/h:2:"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let e = parse_headers("bad name=x\n", Path::new("/h"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/h:1") && e.contains("bad name"), "{e}");
    }
}

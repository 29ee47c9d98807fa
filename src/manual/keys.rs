//! The manual's entries of the configuration keys. The supervisor's own
//! tables and the alert, telemetry and http ones are listed here; each
//! check kind lists its keys in its own file, and [`config_keys`] puts
//! them all in the page's order.

use crate::checks::kind::Make;
use crate::checks::KINDS;

/// One documented configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// The table: `daemon`, `backoff`, or `[unit]` for the array of tables
    /// `[[unit]]`.
    pub table: &'static str,
    /// For `[check]`: the `type` the key belongs to ("" for the keys every
    /// check takes).
    pub kind: &'static str,
    pub key: &'static str,
    /// The default as TOML, or "required" / "none".
    pub default: &'static str,
    /// A valid TOML value, used by the test that parses every key.
    pub example: &'static str,
    pub meaning: &'static str,
}

const fn k(
    table: &'static str,
    key: &'static str,
    default: &'static str,
    example: &'static str,
    meaning: &'static str,
) -> KeyDoc {
    KeyDoc {
        table,
        kind: "",
        key,
        default,
        example,
        meaning,
    }
}

/// Every key of `unitwatch.toml`, table by table.
impl KeyDoc {
    /// A key of a section of its own (`[heartbeat]` for `[[heartbeat]]`).
    pub const fn section(
        table: &'static str,
        key: &'static str,
        default: &'static str,
        example: &'static str,
        meaning: &'static str,
    ) -> KeyDoc {
        k(table, key, default, example, meaning)
    }

    /// A key of `[[check]]` tables of type `kind` ("": of every type).
    pub const fn check(
        kind: &'static str,
        key: &'static str,
        default: &'static str,
        example: &'static str,
        meaning: &'static str,
    ) -> KeyDoc {
        KeyDoc {
            kind,
            ..k("[check]", key, default, example, meaning)
        }
    }
}

/// `[daemon]`, `[backoff]` and `[[unit]]`.
const SUPERVISOR_KEYS: &[KeyDoc] = &[
    k("daemon", "interval", "\"10s\"", "\"10s\"",
      "The periodic sweep: every check re-run and every unit re-read, behind systemd's signals (handled at once). At least 100ms; shortened to half of WatchdogSec= when longer. The watchdog pings come from completed sweeps."),
    k("daemon", "state_dir", "\"/var/lib/unitwatch\"", "\"/var/lib/unitwatch\"",
      "Holds backoff.json, the restart state that survives restarts of unitwatchd and reboots."),
    k("daemon", "runtime_dir", "\"/run/unitwatch\"", "\"/run/unitwatch\"",
      "Holds status.json, the snapshot that unitwatch-http serves and unitwatchd check --json prints."),
    k("daemon", "proc_dir", "\"/proc\"", "\"/proc\"",
      "Where procfs is read (tests point it at fixtures)."),
    k("daemon", "sys_dir", "\"/sys\"", "\"/sys\"",
      "Where sysfs is read: DMI tells an Azure VM (tests point it at fixtures)."),
    k("backoff", "initial", "\"10s\"", "\"10s\"",
      "The wait before the first restart of a failed unit, counted from systemd's own timestamp of the failure (StateChangeTimestamp in its signal), so the time the news took to arrive is not added to it; from when unitwatchd saw the failure where no signal told it (a sweep's read)."),
    k("backoff", "factor", "2.0", "2.0",
      "Each restart multiplies the next wait by this."),
    k("backoff", "max", "\"300s\"", "\"300s\"",
      "The longest wait: 10, 20, 40, 80, 160, 300, 300 s with the defaults."),
    k("backoff", "reset_after", "\"10m\"", "\"10m\"",
      "Healthy this long, a unit's sequence starts over at initial."),
    k("backoff", "max_restarts_per_hour", "5", "5",
      "Past this many restarts of one unit in an hour, unitwatchd stops restarting it, reports it as failing and logs one critical restart-limit event, until the unit recovers or unitwatchd backoff reset UNIT."),
    k("[unit]", "name", "required", "\"worker.service\"",
      "A full unit name with its type suffix (worker.service, getty@tty1.service)."),
    k("[unit]", "restart", "true", "true",
      "false: watch and report only, never restart."),
    k("[unit]", "memory_warn", "none", "\"1536MiB\"",
      "Warn when the unit's MemoryCurrent (its cgroup) exceeds this size."),
    k("[unit]", "memory_crit", "none", "\"1740MiB\"",
      "Fail when the unit's MemoryCurrent exceeds this size."),
];

/// `[telemetry]`, `[[alert]]` and `[http]`.
const OTHER_KEYS: &[KeyDoc] = &[
    k("telemetry", "enabled", "true", "true",
      "The [telemetry] table turns the OTLP export on; false keeps the settings but sends nothing (unitwatchd check --otlp still tries them). OTEL_SDK_DISABLED=true turns it off too."),
    k("telemetry", "endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT, else \"http://127.0.0.1:4318\" (grpc: 4317)", "\"http://127.0.0.1:4318\"",
      "The collector's URL. For http/protobuf, /v1/metrics and /v1/logs are added; OTEL_EXPORTER_OTLP_METRICS_ENDPOINT and OTEL_EXPORTER_OTLP_LOGS_ENDPOINT are used as they are."),
    k("telemetry", "protocol", "OTEL_EXPORTER_OTLP_PROTOCOL, else \"http/protobuf\"", "\"grpc\"",
      "\"http/protobuf\" or \"grpc\"."),
    k("telemetry", "interval", "\"60s\"", "\"60s\"",
      "How often metrics are exported (at least 1s); the first export follows the start by a second. Events go out within a second of happening."),
    k("telemetry", "timeout", "OTEL_EXPORTER_OTLP_TIMEOUT, else \"10s\"", "\"10s\"",
      "How long one export may take."),
    k("telemetry", "headers_file", "none", "\"/etc/unitwatch/otlp-headers\"",
      "A file of name=value lines sent as HTTP headers (gRPC metadata) with every export, e.g. an API key; OTEL_EXPORTER_OTLP_HEADERS adds more. Never logged; an invalid file is refused by path and line."),
    k("telemetry", "queue_size", "1024", "1024",
      "Events held while the collector is away; past it the oldest are dropped and counted (unitwatch_telemetry_dropped_total), with one warning."),
    k("telemetry", "imds_endpoint", "\"http://169.254.169.254\"", "\"http://169.254.169.254\"",
      "Azure's instance metadata service, asked once at start (2 s timeout) and only when DMI says the machine is an Azure VM, for the cloud.* and azure.vm.* attributes."),
    k("[alert]", "type", "required", "\"discord\"",
      "discord, slack, webhook or email. Every event also goes to the journal, and to the OTLP export when [telemetry] is on; these tables add channels that reach a person."),
    k("[alert]", "name", "the type, numbered from the second of a type (slack-2)", "\"ops-discord\"",
      "Names the channel in logs (UNITWATCH_CHANNEL=), status.json, /metrics and unitwatchd alert test --channel."),
    k("[alert]", "min_severity", "\"info\"", "\"warning\"",
      "info, warning, error or critical: the least severe event the channel takes. info: daemon started, unit recovered, check passing; warning: a check warns (heartbeat stale, memory or disk above warn); error: unit failed, check failing, unit restarted, systemd unreachable; critical: restart limit reached, restart failed. A recovery of a problem the channel was told of is sent whatever this says."),
    k("[alert]", "units", "all", "[\"worker*.service\"]",
      "Glob patterns: events about a unit go out only if the unit matches one. Events about no unit (unitwatchd itself, disks, memory) are not filtered by it."),
    k("[alert]", "checks", "all", "[\"disk:*\", \"heartbeat:*\"]",
      "Glob patterns on check keys (disk:/:utilization, heartbeat:/path:age, memory:utilization): events about a check go out only if it matches one."),
    k("[alert]", "cooldown", "\"300s\"", "\"5m\"",
      "The same alert (channel, unit or check, event, severity) is sent once per cooldown; the ones held back are counted, and the count goes with the next one sent. A recovery of a problem sent goes out at once. A problem held back after a recovery was sent goes out when its cooldown ends, unless the unit recovered again meanwhile. The state is kept in state_dir/alerts.json across restarts."),
    k("[alert]", "timeout", "\"10s\"", "\"10s\"",
      "One delivery attempt's limit. Failed attempts (network, timeout, HTTP 5xx or 408, SMTP 4xx) are retried after 1, 2, 4, 8 and 16 s; a 429 waits its retry_after (up to 5 minutes); other HTTP 4xx and SMTP 5xx are not retried. After the last attempt the alert is dropped with one journal error per episode."),
    k("[alert]", "queue_size", "100", "100",
      "Alerts waiting for a slow or dead channel; past it the oldest are dropped and counted (unitwatch_alerts_dropped_total). Each channel has its own queue and worker: none waits on another, and the supervisor waits on none."),
    k("[alert]", "url", "required for discord, slack, webhook (or url_file, url_env)", "\"https://discord.com/api/webhooks/ID/TOKEN\"",
      "The webhook URL. It holds a token: prefer url_file or url_env, and it is never logged (logs name the host only)."),
    k("[alert]", "url_file", "none", "\"/etc/unitwatch/discord-url\"",
      "A file whose first line is the URL (mode 0640, group unitwatch)."),
    k("[alert]", "url_env", "none", "\"UNITWATCH_DISCORD_URL\"",
      "An environment variable holding the URL; for unitwatch.service, set it in /etc/default/unitwatch."),
    k("[alert]", "mention", "none", "\"<@&123456789012345678>\"",
      "Added to CRITICAL alerts. discord: <@USER_ID>, <@&ROLE_ID>, @here or @everyone (only it may ping: allowed_mentions is set). slack: <@USER_ID>, <!subteam^ID>, <!here> or <!channel>."),
    k("[alert]", "secret", "none", "\"s3cret\"",
      "webhook: signs each body with HMAC-SHA256; the header signature_header carries sha256=HEX of the exact body. Or secret_file, secret_env."),
    k("[alert]", "secret_file", "none", "\"/etc/unitwatch/webhook-secret\"",
      "A file whose first line is the HMAC key."),
    k("[alert]", "secret_env", "none", "\"UNITWATCH_WEBHOOK_SECRET\"",
      "An environment variable holding the HMAC key."),
    k("[alert]", "signature_header", "\"X-Unitwatch-Signature\"", "\"X-Unitwatch-Signature\"",
      "webhook: the header of the signature."),
    k("[alert]", "server", "required for email", "\"smtp.example.com\"",
      "email: the SMTP server's host name (checked against its certificate)."),
    k("[alert]", "port", "587 (starttls), 465 (tls), 25 (none)", "587",
      "email: the SMTP port."),
    k("[alert]", "tls", "\"starttls\"", "\"starttls\"",
      "email: starttls (required, not opportunistic), tls (implicit, SMTPS) or none (only for a relay on this machine: refused with a password to any other host)."),
    k("[alert]", "ca_file", "the system's trust store", "\"/etc/unitwatch/smtp-ca.pem\"",
      "email: a PEM CA certificate to trust besides the system's, for a relay with a private CA."),
    k("[alert]", "username", "none", "\"alerts@example.com\"",
      "email: the SMTP login; with a password, AUTH is used."),
    k("[alert]", "password", "none", "\"app-password\"",
      "email: the SMTP password. Prefer password_file or password_env."),
    k("[alert]", "password_file", "none", "\"/etc/unitwatch/smtp-password\"",
      "email: a file whose first line is the password."),
    k("[alert]", "password_env", "none", "\"UNITWATCH_SMTP_PASSWORD\"",
      "email: an environment variable holding the password."),
    k("[alert]", "from", "required for email", "\"unitwatch <alerts@example.com>\"",
      "email: the sender."),
    k("[alert]", "to", "required for email", "[\"ops@example.com\"]",
      "email: the recipients, one address or more."),
    k("http", "listen", "\"127.0.0.1:8080\"", "[\"0.0.0.0:8080\", \"[::]:8080\"]",
      "unitwatch-http's address, or a list of them. Ignored under socket activation (unitwatch-http.socket)."),
    k("http", "token_file", "none", "\"/run/credentials/unitwatch-http.service/token\"",
      "A file holding a bearer token that every endpoint but /health then requires (Authorization: Bearer TOKEN)."),
];

/// Every key of `unitwatch.toml`, table by table, in the page's order:
/// the supervisor's, the check sections', the `[[check]]` keys (common,
/// then each type's), then the rest.
pub fn config_keys() -> Vec<KeyDoc> {
    let mut v = SUPERVISOR_KEYS.to_vec();
    for kind in KINDS {
        if let Make::Section { .. } = kind.make {
            v.extend_from_slice(kind.keys);
        }
    }
    v.extend_from_slice(crate::checks::common::KEYS);
    for kind in KINDS {
        if let Make::Check { .. } = kind.make {
            v.extend_from_slice(kind.keys);
        }
    }
    v.extend_from_slice(OTHER_KEYS);
    v
}

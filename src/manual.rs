//! The manual: man pages `unitwatchd(8)`, `unitwatch-http(8)` and
//! `unitwatch.toml(5)`, and shell completions, generated from the code so
//! they cannot drift from it.
//!
//! The two command pages come from the clap definitions in [`crate::cli`]
//! (clap_mangen), with the sections clap knows nothing of (exit status,
//! files, journal fields) added from the tables the code itself uses
//! ([`crate::events::Kind::ALL`]). The configuration page comes from
//! [`CONFIG_KEYS`], which a test holds against the parser and the shipped
//! file. `scripts/build-deb` writes everything with
//! `cargo run --example gen-manual -- DIR`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use roff::{bold, italic, roman, Inline, Roff};

use crate::cli::{Cli, HttpCli, EXIT_CONFIG};
use crate::config::DEFAULT_CONFIG_PATH;
use crate::events::Kind;

/// One documented configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// The table: `daemon`, `backoff`, or `[unit]` for the array of tables
    /// `[[unit]]`.
    pub table: &'static str,
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
        key,
        default,
        example,
        meaning,
    }
}

/// Every key of `unitwatch.toml`, table by table.
pub const CONFIG_KEYS: &[KeyDoc] = &[
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
      "The wait before the first restart of a failed unit."),
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
    k("[heartbeat]", "path", "required", "\"/var/lib/worker/heartbeat\"",
      "An absolute path to a file the service touches while it works. It must be readable by the unitwatch user and must not be in /tmp (the service has a private one)."),
    k("[heartbeat]", "max_age", "required", "\"5m\"",
      "A file missing or older than this (by mtime) is a warning."),
    k("[heartbeat]", "restart_unit", "none", "\"worker.service\"",
      "A watched unit with restart = true: a stale heartbeat restarts it on the same backoff, once it has been up for max_age."),
    k("[disk]", "path", "required", "\"/\"",
      "Any path on the filesystem to check."),
    k("[disk]", "warn_percent", "80", "80",
      "Warn when this much of the space is used, as df counts it (reserved blocks count as full)."),
    k("[disk]", "crit_percent", "90", "90",
      "Fail when this much of the space is used."),
    k("[disk]", "inode_warn_percent", "warn_percent", "85",
      "Warn on inode use of the same filesystem."),
    k("[disk]", "inode_crit_percent", "crit_percent", "95",
      "Fail on inode use of the same filesystem."),
    k("memory", "warn_percent", "90", "90",
      "Warn when this much of the system's memory is in use (from MemAvailable). The [memory] table turns the check on."),
    k("memory", "crit_percent", "95", "95",
      "Fail when this much of the system's memory is in use."),
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

/// The files and directories the programs use, for the FILES sections.
const FILES: &[(&str, &str)] = &[
    (DEFAULT_CONFIG_PATH, "the configuration, see unitwatch.toml(5)"),
    ("/etc/default/unitwatch", "the environment of unitwatch.service: extra arguments (UNITWATCHD_OPTS), OTEL_* variables, and secrets named by *_env keys of [[alert]]"),
    ("/var/lib/unitwatch/backoff.json", "the restart backoff state, rewritten atomically on every change"),
    ("/var/lib/unitwatch/alerts.json", "the alert channels' cooldowns and counts, so a restart neither repeats nor forgets an alert"),
    ("/run/unitwatch/status.json", "the status snapshot, replaced after every sweep and event"),
    ("/usr/share/polkit-1/rules.d/50-unitwatch.rules", "lets the unitwatch user start, restart and reset-failed exactly the units the configuration names with restart = true"),
];

const SECTION_8: &str = "System Administration";
const SECTION_5: &str = "File Formats";

fn source() -> String {
    format!("unitwatch {}", env!("CARGO_PKG_VERSION"))
}

/// Paragraphs, each a `.PP` of plain text.
fn paragraphs(r: &mut Roff, texts: &[&str]) {
    for t in texts {
        r.control("PP", []).text([roman(*t)]);
    }
}

/// A `.TP` item: a bold tag line, then its text.
fn item(r: &mut Roff, tag: Vec<Inline>, text: &str) {
    r.control("TP", []).text(tag).text([roman(text)]);
}

/// `.TP` items with bold tags: a section's table.
fn items(r: &mut Roff, rows: &[(&str, &str)]) {
    for (tag, text) in rows {
        item(r, vec![bold(*tag)], text);
    }
}

/// The ENVIRONMENT row both programs share.
const CONFIG_ENV: (&str, &str) = (
    "UNITWATCH_CONFIG",
    "the configuration file, when --config is not given",
);

fn section(r: &mut Roff, title: &str) {
    r.control("SH", [title]);
}

/// The start of a command page as clap_mangen renders it: title, name,
/// synopsis, description and options.
fn command_head(cmd: clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .source(source())
        .manual(SECTION_8);
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)
}

/// Every leaf command below `cmd` with its full name (`backoff reset`).
fn leaves(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{prefix} {}", sub.get_name());
        if sub.has_subcommands() {
            leaves(sub, &name, out);
        } else {
            out.push((name, sub.clone()));
        }
    }
}

/// The tag of a command: its name, then its arguments as in a synopsis.
fn command_tag(name: &str, cmd: &clap::Command) -> Vec<Inline> {
    let mut tag = vec![bold(name.trim())];
    for a in cmd.get_arguments().filter(|a| !a.is_global_set()) {
        if a.get_id() == "help" || a.get_id() == "version" {
            continue;
        }
        let text = match (a.get_long(), a.is_positional()) {
            (Some(long), _) => format!(" [--{long}]"),
            (None, true) => {
                let v = a.get_id().as_str().to_uppercase();
                if a.is_required_set() {
                    format!(" {v}")
                } else {
                    format!(" [{v}]")
                }
            }
            _ => continue,
        };
        tag.push(roman(text));
    }
    tag
}

fn files_section(r: &mut Roff, files: &[(&str, &str)]) {
    section(r, "FILES");
    for (path, what) in files {
        item(r, vec![italic(*path)], what);
    }
}

/// unitwatchd(8).
pub fn unitwatchd_page() -> std::io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    command_head(cmd.clone(), &mut out)?;
    let mut r = Roff::new();

    section(&mut r, "COMMANDS");
    let mut cmds = Vec::new();
    leaves(&cmd, "unitwatchd", &mut cmds);
    for (name, sub) in &cmds {
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|s| s.to_string())
            .unwrap_or_default();
        let mut text = about;
        for a in sub.get_arguments().filter(|a| a.get_long().is_some()) {
            if let (Some(long), Some(help)) = (a.get_long(), a.get_help()) {
                text.push_str(&format!(". With --{long}: {help}"));
            }
        }
        item(&mut r, command_tag(name, sub), &text);
    }

    section(&mut r, "EXIT STATUS");
    let config_exit = EXIT_CONFIG.to_string();
    items(&mut r, &[
        ("0", "success; for check: every check passes"),
        ("1", "a fatal error other than the configuration; for check: the worst status is warn; for config watches: the unit is not watched with restart = true; for backoff: the state file is unreadable or corrupt"),
        ("2", "for check: a check fails"),
        (&config_exit, "the configuration is invalid or unreadable (EX_CONFIG); the message names file:line:col and the key. unitwatch.service does not restart on it (RestartPreventExitStatus=78)."),
    ]);

    section(&mut r, "SIGNALS");
    items(&mut r, &[
        ("SIGHUP", "re-read the configuration (systemctl reload unitwatch); an invalid new file is logged (config-rejected) and the running configuration kept. Also applies a pending backoff reset request."),
        ("SIGTERM, SIGINT", "STOPPING=1, save the state, exit 0."),
    ]);

    section(&mut r, "SYSTEMD");
    paragraphs(&mut r, &[
        "unitwatch.service is Type=notify: READY=1 after the first sweep; WATCHDOG=1 only when a sweep completes, so a hung loop is killed and restarted (WatchdogSec=30s); STATUS= a one-line summary that systemctl status shows.",
        "The service runs as the system user unitwatch with no capabilities. Restarting a unit is a request to systemd that polkit authorizes: the shipped rule asks unitwatchd config watches UNIT, so only units the configuration names with restart = true can be started, restarted or reset, and nothing can be stopped.",
    ]);

    section(&mut r, "JOURNAL FIELDS");
    paragraphs(&mut r, &["Every event carries UNITWATCH_EVENT and UNITWATCH_SEVERITY (info, warning, error, critical), and where they apply UNITWATCH_UNIT, UNITWATCH_CHECK and UNITWATCH_DELAY_MS; filter on them with journalctl -u unitwatch UNITWATCH_UNIT=worker.service. The events:"]);
    for kind in Kind::ALL {
        item(&mut r, vec![bold(kind.as_str())], kind.describe());
    }

    section(&mut r, "ENVIRONMENT");
    items(
        &mut r,
        &[
            CONFIG_ENV,
            (
                "UNITWATCHD_OPTS",
                "extra arguments, set in /etc/default/unitwatch (unitwatch.service passes them)",
            ),
        ],
    );

    files_section(&mut r, FILES);
    see_also(
        &mut r,
        &[
            "unitwatch-http(8)",
            "unitwatch.toml(5)",
            "systemctl(1)",
            "journalctl(1)",
            "systemd.service(5)",
            "polkit(8)",
        ],
    );
    r.to_writer(&mut out)?;
    Ok(out)
}

/// unitwatch-http(8).
pub fn unitwatch_http_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    command_head(HttpCli::command(), &mut out)?;
    let mut r = Roff::new();
    section(&mut r, "ENDPOINTS");
    items(&mut r, crate::http::ENDPOINTS);
    paragraphs(&mut r, &[
        "When the snapshot is missing, unreadable, or older than 3 sweep intervals (the daemon is dead or hung), every health endpoint answers 503 with status fail and says why in output.",
        "A request line or headers over 16 KiB get 431, garbage gets 400, a wrong method 405, an unknown path 404. A client that has not sent its headers within 10 s is disconnected; at most 1,024 connections are served at once.",
        "With [http] token_file set, every endpoint but /health wants Authorization: Bearer TOKEN, else 401.",
    ]);
    section(&mut r, "SOCKET ACTIVATION");
    paragraphs(&mut r, &["With sockets passed by systemd (LISTEN_FDS), it serves on them and ignores [http] listen: systemctl disable --now unitwatch-http.service; systemctl enable --now unitwatch-http.socket. systemd then holds the port, a privileged one too."]);
    section(&mut r, "EXIT STATUS");
    let config_exit = EXIT_CONFIG.to_string();
    items(
        &mut r,
        &[
            ("0", "stopped by SIGTERM"),
            ("1", "cannot listen, or another fatal error"),
            (
                &config_exit,
                "the configuration or the token file is invalid or unreadable",
            ),
        ],
    );
    section(&mut r, "ENVIRONMENT");
    items(
        &mut r,
        &[
            CONFIG_ENV,
            ("LISTEN_FDS, LISTEN_PID", "sockets passed by systemd"),
        ],
    );
    files_section(&mut r, &[FILES[0], FILES[3]]);
    see_also(
        &mut r,
        &["unitwatchd(8)", "unitwatch.toml(5)", "systemd.socket(5)"],
    );
    r.to_writer(&mut out)?;
    Ok(out)
}

fn see_also(r: &mut Roff, pages: &[&str]) {
    section(r, "SEE ALSO");
    r.text([roman(pages.join(", "))]);
}

/// unitwatch.toml(5).
pub fn config_page() -> std::io::Result<Vec<u8>> {
    let mut r = Roff::new();
    r.control("TH", ["unitwatch.toml", "5", "", &source(), SECTION_5]);
    section(&mut r, "NAME");
    r.text([roman(
        "unitwatch.toml - configuration of unitwatchd and unitwatch-http",
    )]);
    section(&mut r, "SYNOPSIS");
    r.text([italic(DEFAULT_CONFIG_PATH)]);
    section(&mut r, "DESCRIPTION");
    paragraphs(&mut r, &[
        "A TOML file that says which systemd units unitwatchd watches, how it restarts them and which other checks it runs; unitwatch-http reads its [http] table and daemon.runtime_dir. Every key is optional but those marked required in a table that is present; an empty file watches nothing and checks nothing but what the defaults turn on.",
        "Durations are strings such as \"100ms\", \"10s\", \"5m\", \"1h 30m\". Sizes are strings such as \"1536MiB\", \"2GiB\", \"500MB\", or a number of bytes. Percentages are numbers from 0 to 100.",
        "Check the file with unitwatchd config check; apply it with systemctl reload unitwatch. Unknown keys, wrong types, bad durations, sizes or unit names, thresholds out of order and references to units that are not watched are errors of the form path:line:col: key: message, and unitwatchd exits 78 on them at start (on reload it keeps the running configuration).",
    ]);
    section(&mut r, "KEYS");
    let mut table = "";
    for key in CONFIG_KEYS {
        if key.table != table {
            table = key.table;
            // "[unit]" becomes "[[unit]]": an array of tables.
            r.control("SS", [format!("[{table}]").as_str()]);
            if let Some(intro) = table_intro(table) {
                r.control("PP", []).text([roman(intro)]);
            }
        }
        let default = match key.default {
            "required" => "required".to_string(),
            d => format!("default: {d}"),
        };
        item(
            &mut r,
            vec![bold(key.key), roman(format!(" ({default})"))],
            key.meaning,
        );
    }
    section(&mut r, "EXAMPLE");
    r.control("PP", []);
    r.control("nf", []);
    r.control("RS", ["4"]);
    for line in EXAMPLE.lines() {
        r.text([roman(line)]);
    }
    r.control("RE", []);
    r.control("fi", []);
    see_also(
        &mut r,
        &["unitwatchd(8)", "unitwatch-http(8)", "systemd.unit(5)"],
    );
    Ok(r.render().into_bytes())
}

fn table_intro(table: &str) -> Option<&'static str> {
    Some(match table {
        "daemon" => "How unitwatchd runs.",
        "backoff" => "How failed units are restarted.",
        "[unit]" => "One table per watched systemd unit.",
        "[heartbeat]" => "One table per heartbeat file.",
        "[disk]" => "One table per filesystem to check.",
        "memory" => "The whole system's memory; the table turns the check on.",
        "telemetry" => "The OTLP export of metrics and events to an OpenTelemetry collector (and on to Azure Monitor). Keys left out fall back to the standard OTEL_EXPORTER_OTLP_* environment variables (set them in /etc/default/unitwatch), then to the defaults; OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME are honoured.",
        "[alert]" => "One table per alert channel: Discord, Slack, a generic JSON webhook (Alertmanager's format, optionally signed) or email. Each channel filters by severity, unit and check, de-duplicates with its own cooldown and delivers from its own queue with retries.",
        "http" => "What unitwatch-http listens on (unitwatchd ignores it).",
        _ => return None,
    })
}

/// A configuration that the test parses too.
pub const EXAMPLE: &str = r#"[daemon]
interval = "10s"

[backoff]
initial = "10s"
max = "300s"
max_restarts_per_hour = 5

[[unit]]
name = "worker.service"
memory_warn = "1536MiB"

[[unit]]
name = "gateway.service"
restart = false

[[heartbeat]]
path = "/var/lib/worker/heartbeat"
max_age = "5m"
restart_unit = "worker.service"

[[disk]]
path = "/"

[memory]

[http]
listen = "0.0.0.0:8080"
"#;

/// Writes the man pages (gzipped, as Debian installs them) and the shell
/// completions below `dir`; returns the files written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    for (name, page) in [
        ("unitwatchd.8", unitwatchd_page()?),
        ("unitwatch-http.8", unitwatch_http_page()?),
        ("unitwatch.toml.5", config_page()?),
    ] {
        let path = man.join(format!("{name}.gz"));
        write_gz(&path, &page)?;
        written.push(path);
    }
    let comp = dir.join("completions");
    std::fs::create_dir_all(&comp)?;
    for (shell, file) in [
        (Shell::Bash, "unitwatchd"),
        (Shell::Zsh, "_unitwatchd"),
        (Shell::Fish, "unitwatchd.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "unitwatchd", &mut buf);
        let path = comp.join(file);
        std::fs::write(&path, buf)?;
        written.push(path);
    }
    Ok(written)
}

/// gzip -9n: no name, no time stamp, so builds are reproducible (lintian
/// checks both).
fn write_gz(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(file, flate2::Compression::best());
    gz.write_all(data)?;
    gz.finish()?.sync_all()
}

#[cfg(test)]
mod tests;

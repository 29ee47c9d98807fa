//! The manual: man pages `unitwatchd(8)`, `unitwatch-http(8)` and
//! `unitwatch.toml(5)`, and shell completions, generated from the code so
//! they cannot drift from it.
//!
//! The two command pages come from the clap definitions in [`crate::cli`]
//! (clap_mangen), with the sections clap knows nothing of (exit status,
//! files, journal fields) added from the tables the code itself uses
//! ([`crate::events::Kind::ALL`]). The configuration page comes from
//! [`config_keys`], which a test holds against the parser and the shipped
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

mod keys;

pub use keys::{config_keys, KeyDoc};

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
        "At each start and reload (systemctl reload unitwatch, not a bare SIGHUP) the service runs unitwatchd config polkit-rules as root, which writes those units' list to /etc/polkit-1/rules.d/49-unitwatch-units.rules: polkit answers for a listed unit from it, without spawning config watches, which takes tens of milliseconds of each restart on a busy host. A unit added to the file since is allowed through the shipped rule; one taken out stays allowed until the reload, as the running daemon still watches it. Removing the package removes the list.",
    ]);

    section(&mut r, "JOURNAL FIELDS");
    paragraphs(&mut r, &["Every event carries UNITWATCH_EVENT and UNITWATCH_SEVERITY (info, warning, error, critical), and where they apply UNITWATCH_UNIT, UNITWATCH_CHECK, UNITWATCH_DELAY_MS (a restart's backoff delay) and UNITWATCH_DUE_USEC (restart-scheduled: when the restart is due, in microseconds since the epoch: the failure's own time plus the delay); filter on them with journalctl -u unitwatch UNITWATCH_UNIT=worker.service. The events:"]);
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
        "A request line or headers over 16 KiB get 431, garbage gets 400, a wrong method 405, an unknown path 404. A client that has not sent its headers within 10 s is disconnected.",
        "At most 1,024 connections are served at once, and at most 256 from one peer (an IPv4 address, or an IPv6 /64). A new connection is always accepted: over either limit, the connection that has waited longest for its next request (the same peer's, for the per-peer limit) is closed to make room, so a slowloris or a flood cannot keep /health from a new client. A connection inside a request is never closed for it. The cap is lowered, with a warning, when LimitNOFILE leaves no room for it; the shipped unit sets 4096. /metrics counts what was closed (unitwatch_http_connections_shed_total).",
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
    let mut group = ("", "");
    for key in &config_keys() {
        if (key.table, key.kind) != group {
            group = (key.table, key.kind);
            // "[unit]" becomes "[[unit]]": an array of tables.
            let heading = match key.kind {
                "" => format!("[{}]", key.table),
                // No quotes: roff quotes a heading with spaces as a whole.
                kind => format!("[{}] type = {kind}", key.table),
            };
            r.control("SS", [heading.as_str()]);
            let intro = match key.kind {
                "" => table_intro(key.table),
                kind => crate::checks::kind::check_kind(kind).and_then(|k| match k.make {
                    crate::checks::kind::Make::Check { about, .. } => Some(about),
                    _ => None,
                }),
            };
            if let Some(intro) = intro {
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
        "[check]" => "One table per check of a kind that takes a type (listed below). Each runs on a task of its own, every interval, bounded by its timeout, so that none delays another or the supervisor. These keys are common to every type; each type's own follow.",
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

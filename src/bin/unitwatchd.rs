//! unitwatchd: the supervisor daemon and its one-shot commands.

use std::process::ExitCode;

use clap::Parser;
use unitwatch::cli::{
    self, AlertCommand, BackoffCommand, Cli, Command, ConfigCommand, EXIT_CONFIG,
};
use unitwatch::config::{Config, ConfigError};
use unitwatch::daemon::{self, DaemonError};

fn main() -> ExitCode {
    unitwatch::tune_allocator();
    let cli = Cli::parse();
    let daemon_mode = matches!(cli.command, None | Some(Command::Run));
    unitwatch::logging::init("unitwatchd", cli.verbose);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unitwatchd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command.unwrap_or(Command::Run) {
        Command::Run => match rt.block_on(daemon::run(&cli.config)) {
            Ok(()) => 0,
            Err(e) => {
                log::error!("{e}");
                if !daemon_mode || !systemd_journal_logger::connected_to_journal() {
                    eprintln!("unitwatchd: {e}");
                }
                match e {
                    DaemonError::Config(_) | DaemonError::Telemetry(_) => EXIT_CONFIG,
                    DaemonError::Alerts(unitwatch::alerts::AlertError::StateRead { .. }) => 1,
                    DaemonError::Alerts(_) => EXIT_CONFIG,
                    _ => 1,
                }
            }
        },
        Command::Check { json, otlp } => match load(&cli.config) {
            Ok(config) => {
                let snap = rt.block_on(cli::check_once(&config));
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&snap).expect("serializes")
                    );
                } else {
                    print!("{}", cli::render_table(&snap));
                }
                let exported = otlp.then(|| rt.block_on(cli::check_otlp(&config, &snap)));
                match exported {
                    Some(Err(e)) => {
                        eprintln!("unitwatchd: {e}");
                        cli::EXIT_UNAVAILABLE
                    }
                    Some(Ok(msg)) => {
                        eprintln!("unitwatchd: {msg}");
                        snap.status.exit_code()
                    }
                    None => snap.status.exit_code(),
                }
            }
            Err(code) => code,
        },
        Command::Config {
            command: ConfigCommand::Check,
        } => match load(&cli.config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} units, {} heartbeats, {} disks, memory check {}, {} checks, {} alert channels)",
                    cli.config.display(),
                    c.units.len(),
                    c.heartbeats.len(),
                    c.disks.len(),
                    if c.memory.is_some() { "on" } else { "off" },
                    c.checks.len(),
                    c.alerts.len()
                );
                0
            }
            Err(code) => code,
        },
        Command::Config {
            command: ConfigCommand::Watches { unit },
        } => match unitwatch::cli::watches(&cli.config, &unit) {
            Ok(Ok(yes)) => i32::from(!yes),
            Ok(Err(why)) => {
                eprintln!("unitwatchd: not watched: {why}");
                1
            }
            Err(e) => {
                eprintln!("unitwatchd: {e}");
                EXIT_CONFIG
            }
        },
        Command::Config {
            command: ConfigCommand::PolkitRules { output },
        } => match unitwatch::cli::polkit_rules(&cli.config) {
            Ok(rules) => match output {
                None => {
                    print!("{rules}");
                    0
                }
                Some(out) => match unitwatch::fsutil::write_atomic(&out, rules.as_bytes(), 0o644) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("unitwatchd: {e}");
                        1
                    }
                },
            },
            Err(e) => {
                eprintln!("unitwatchd: {e}");
                EXIT_CONFIG
            }
        },
        Command::Config {
            command: ConfigCommand::Privileges { output },
        } => match load(&cli.config) {
            Ok(config) => {
                let dropin = unitwatch::cli::privileges(&config, &cli.config);
                match output {
                    None => {
                        print!("{}", dropin.unwrap_or_default());
                        0
                    }
                    Some(out) => match unitwatch::cli::write_or_remove(&out, dropin.as_deref()) {
                        Ok(()) => 0,
                        Err(e) => {
                            eprintln!("unitwatchd: {e}");
                            1
                        }
                    },
                }
            }
            Err(code) => code,
        },
        Command::Backoff { command } => match load(&cli.config) {
            Ok(config) => {
                let out = match command {
                    BackoffCommand::Show { json } => cli::backoff_show(&config, json),
                    BackoffCommand::Reset { unit } => cli::backoff_reset(&config, unit.as_deref()),
                };
                match out {
                    Ok(text) => {
                        print!("{text}");
                        0
                    }
                    Err(e) => {
                        eprintln!("unitwatchd: {e}");
                        1
                    }
                }
            }
            Err(code) => code,
        },
        Command::Alert {
            command: AlertCommand::Test { channel },
        } => match load(&cli.config) {
            Ok(config) => match rt.block_on(cli::alert_test(&config, channel.as_deref())) {
                Ok((report, all)) => {
                    print!("{report}");
                    if all {
                        0
                    } else {
                        cli::EXIT_UNAVAILABLE
                    }
                }
                Err(e) => {
                    eprintln!("unitwatchd: {e}");
                    EXIT_CONFIG
                }
            },
            Err(code) => code,
        },
    };
    ExitCode::from(code as u8)
}

/// Loads the config for a one-shot command; prints the error and gives the
/// exit code when it is invalid.
fn load(path: &std::path::Path) -> Result<Config, i32> {
    Config::load(path).map_err(|e| {
        eprintln!("unitwatchd: {e}");
        match e {
            ConfigError::Invalid { .. } => EXIT_CONFIG,
            ConfigError::Read { .. } => EXIT_CONFIG,
        }
    })
}

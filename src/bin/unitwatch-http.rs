//! unitwatch-http: serves /health, /metrics and a status page from the
//! daemon's status snapshot.

use std::process::ExitCode;

use clap::Parser;
use unitwatch::cli::HttpCli;
use unitwatch::http::{self, HttpError};

fn main() -> ExitCode {
    unitwatch::tune_allocator();
    let cli = HttpCli::parse();
    unitwatch::logging::init("unitwatch-http", cli.verbose);
    // One thread: every request is a lookup of pre-rendered bytes, so a
    // second worker only adds cross-thread wake-ups (it halved throughput
    // and lengthened the tail in the benchmark).
    // One blocking thread too, for rendering snapshots: they come one at
    // a time, and a pool would only add threads.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unitwatch-http: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(http::run(&cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            if !systemd_journal_logger::connected_to_journal() {
                eprintln!("unitwatch-http: {e}");
            }
            ExitCode::from(match e {
                HttpError::Config(_) | HttpError::Token { .. } | HttpError::EmptyToken(_) => 78,
                _ => 1,
            })
        }
    }
}

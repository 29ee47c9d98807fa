//! unitwatch: a systemd-native health supervisor.
//!
//! The binaries in `src/bin/` only parse arguments, set up logging and call
//! into this library; everything that can be tested lives here.

pub mod alerts;
pub mod backoff;
pub mod checks;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod events;
pub mod fsutil;
pub mod http;
pub mod logging;
pub mod manual;
pub mod notify;
pub mod polkit;
pub mod replay;
pub mod snapshot;
pub mod systemd;
pub mod telemetry;
pub mod units;

/// This machine's host name, as health responses and alerts carry it.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

//! Logger setup: the journal when stderr is connected to journald (native
//! fields survive), plain stderr lines otherwise (the CLI, a terminal).

use log::LevelFilter;

/// Installs the logger. `verbose` lowers the threshold to debug.
pub fn init(identifier: &str, verbose: bool) {
    let level = if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(j) = systemd_journal_logger::JournalLog::new() {
            if j.with_syslog_identifier(identifier.to_string())
                .install()
                .is_ok()
            {
                log::set_max_level(level);
                return;
            }
        }
    }
    // Noisy dependencies (zbus) stay at warn unless asked for.
    let _ = env_logger::Builder::new()
        .filter_level(LevelFilter::Warn)
        .filter_module("unitwatch", level)
        .filter_module("unitwatchd", level)
        .parse_env("UNITWATCH_LOG")
        .format_timestamp_millis()
        .try_init();
}

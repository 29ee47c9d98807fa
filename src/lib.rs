//! unitwatch: a systemd-native health supervisor.
//!
//! The binaries in `src/bin/` only parse arguments, set up logging and call
//! into this library; everything that can be tested lives here.

pub mod alerts;
pub mod backoff;
pub mod checks;
pub mod cli;
pub mod config;
pub mod containers;
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

/// Sets glibc's allocator for a process that makes a large body now and
/// then (a 2,000-unit snapshot is megabytes) and small things in between,
/// as both binaries do; called first thing in `main`, before any thread.
///
/// In a malloc arena per thread, and below glibc's dynamic mmap threshold
/// (which rises to the largest block freed), such a body stayed in the
/// heap after it was freed: unitwatch-http's RSS was 29 MB where 15 MB was
/// live. One arena and a fixed 256 KiB threshold (large blocks mapped, and
/// unmapped when freed) made it 14.8 MB, peak 21 MB, in the same run.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

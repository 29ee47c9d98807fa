//! Test builds only (the cargo feature `test-hooks`, never in the shipped
//! binaries): files in the runtime directory that make the loop misbehave
//! on purpose, for the tests that must see what follows.

use super::*;

impl Supervisor {
    /// Test builds only: a file `test-hang-sweep` in the runtime directory
    /// makes this sweep wait forever, without blocking the thread, so the
    /// runtime and its other tasks (the OTLP export, alert workers) go on.
    /// The watchdog test proves that the pings stop all the same, which
    /// `kill -STOP` (every thread frozen) could not. The file is removed,
    /// so the daemon that systemd starts next runs normally.
    #[cfg(feature = "test-hooks")]
    pub(super) async fn test_hang(&self) {
        let trigger = self.config.daemon.runtime_dir.join("test-hang-sweep");
        if std::fs::remove_file(&trigger).is_ok() {
            log::warn!("test hook: this sweep never completes");
            std::future::pending::<()>().await;
        }
    }

    /// Test builds only: while a file `trigger` is in the runtime
    /// directory, waits 300 ms without taking a signal, then reads every
    /// unit, so that the read's state is newer than the signals that wait
    /// in the queue (the order that, once in a while, made a spurious
    /// failure in CI). `once` removes the file. Called at a restart
    /// (`test-late-read-restart`, kept) and before a signal is handled
    /// (`test-late-read-signal`, used once).
    #[cfg(feature = "test-hooks")]
    pub(super) async fn test_late_read(&mut self, trigger: &str, once: bool) {
        let trigger = self.config.daemon.runtime_dir.join(trigger);
        let present = if once {
            std::fs::remove_file(&trigger).is_ok()
        } else {
            trigger.exists()
        };
        if present {
            tokio::time::sleep(Duration::from_millis(300)).await;
            log::info!("test hook: reading the units ahead of the queued signals");
            if let Err(e) = self.refresh_units().await {
                self.lost_bus(&e.to_string());
            }
        }
    }
}

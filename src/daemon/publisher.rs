//! Writes status.json off the supervisor's loop.
//!
//! The snapshot is the whole table: at 2,000 units about a megabyte,
//! written with fsync, which is milliseconds of disk the next signal used
//! to wait for. The loop still builds and serializes it (CPU, into a
//! buffer it reuses, so its memory stays where it was), and hands the
//! bytes to one task that writes them on the blocking pool. Bytes handed
//! over while a write is in progress replace each other: a burst of
//! publications costs one write after the one in progress, never a queue,
//! and at most two buffers exist.
//!
//! [`Publisher::flush`] waits until the newest bytes are on disk: the
//! start waits for it before `READY=1`, and the stop before exiting.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::fsutil::write_atomic;
use crate::snapshot::Snapshot;

#[derive(Default)]
struct Shared {
    /// The newest bytes not yet taken by the writer, their path and their
    /// generation.
    pending: Option<(u64, PathBuf, Vec<u8>)>,
    /// A buffer back from the writer, for the next serialization.
    spare: Option<Vec<u8>>,
}

/// The writer task's handle.
pub struct Publisher {
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    /// The generation of the newest bytes on disk (or given up on).
    written: watch::Receiver<u64>,
    sent: u64,
    task: JoinHandle<()>,
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // Only buffers inside: a panic elsewhere leaves nothing half-made.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Publisher {
    /// Starts the writer.
    pub fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let wake = Arc::new(Notify::new());
        let (done_tx, written) = watch::channel(0u64);
        let (s, w) = (shared.clone(), wake.clone());
        let task = tokio::spawn(async move {
            loop {
                w.notified().await;
                let Some((generation, path, buf)) = lock(&s).pending.take() else {
                    continue;
                };
                match tokio::task::spawn_blocking(move || {
                    let r = write_atomic(&path, &buf, 0o644);
                    (r, buf)
                })
                .await
                {
                    Ok((r, buf)) => {
                        lock(&s).spare = Some(buf);
                        if let Err(e) = r {
                            log::error!("{e}");
                        }
                    }
                    Err(e) => log::error!("the status snapshot's writer failed: {e}"),
                }
                let _ = done_tx.send(generation);
            }
        });
        Publisher {
            shared,
            wake,
            written,
            sent: 0,
            task,
        }
    }

    /// Serializes `snap` and hands it over to be written to `path`;
    /// returns without waiting for the disk.
    pub fn send(&mut self, path: PathBuf, snap: &Snapshot) {
        let spare = {
            let mut s = lock(&self.shared);
            // Bytes the writer has not taken yet are superseded: their
            // buffer serves this serialization.
            s.pending.take().map(|(_, _, b)| b).or(s.spare.take())
        };
        let mut buf = spare.unwrap_or_default();
        snap.serialize_into(&mut buf);
        self.sent += 1;
        lock(&self.shared).pending = Some((self.sent, path, buf));
        self.wake.notify_one();
    }

    /// Waits, up to `timeout`, until the newest bytes handed over are on
    /// disk; false (and a warning) if they were not in time.
    pub async fn flush(&mut self, timeout: Duration) -> bool {
        let want = self.sent;
        let done = tokio::time::timeout(timeout, self.written.wait_for(|w| *w >= want))
            .await
            .is_ok_and(|r| r.is_ok());
        if !done {
            log::warn!("the status snapshot was not written within {timeout:?}");
        }
        done
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(pid: u32) -> Snapshot {
        let mut s = Snapshot::fixture(Vec::new(), Default::default());
        s.pid = pid;
        s
    }

    #[tokio::test]
    async fn the_newest_snapshot_is_on_disk_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let mut p = Publisher::start();
        for pid in 1..=50 {
            p.send(path.clone(), &snap(pid));
        }
        assert!(p.flush(Duration::from_secs(5)).await);
        assert_eq!(Snapshot::read(&path).unwrap().pid, 50);
        p.send(path.clone(), &snap(51));
        assert!(p.flush(Duration::from_secs(5)).await);
        assert_eq!(Snapshot::read(&path).unwrap().pid, 51);
        // Two buffers at most: one on disk's way, one spare.
        let s = lock(&p.shared);
        assert!(s.pending.is_none() && s.spare.is_some());
    }

    #[tokio::test]
    async fn a_failed_write_is_logged_and_the_next_one_still_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/status.json");
        let mut p = Publisher::start();
        p.send(path.clone(), &snap(1));
        // Given up on, not waited for forever.
        assert!(p.flush(Duration::from_secs(5)).await);
        assert!(!path.exists());
        std::fs::create_dir(dir.path().join("missing")).unwrap();
        p.send(path.clone(), &snap(2));
        assert!(p.flush(Duration::from_secs(5)).await);
        assert_eq!(Snapshot::read(&path).unwrap().pid, 2);
    }
}

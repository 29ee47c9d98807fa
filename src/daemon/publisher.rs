//! Writes the daemon's files off the supervisor's loop: status.json, and
//! backoff.json, the restart state that must survive a restart.
//!
//! Each is written atomically with fsync (`fsutil::write_atomic`):
//! milliseconds of disk, and on a slow cloud disk tens, that the next
//! signal used to wait for. In a burst of 50 failures the loop wrote
//! backoff.json 50 times in a row, and the 50th failure was told 27 ms
//! after its exit. The loop still builds and serializes the file (CPU,
//! into a buffer it reuses while it is small; one over 256 KiB, a large
//! snapshot, is freed after its write and so given back), and hands
//! the bytes to one task per file that writes them on the blocking pool.
//! Bytes handed over while a write is in progress replace each other: a
//! burst costs one write after the one in progress, never a queue, and at
//! most two buffers exist. Each file is whole on disk, and the newest
//! state reaches it within one write; a crash loses at most the change
//! that one write carried, as it always could between a restart and its
//! write.
//!
//! [`Publisher::flush`] waits until the newest bytes are on disk: the
//! start waits for it before `READY=1`, and the stop before exiting.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::fsutil::write_atomic;

/// The largest buffer kept for the next serialization.
const KEEP_BUFFER: usize = 256 * 1024;

#[derive(Default)]
struct Shared {
    /// The newest bytes not yet taken by the writer, their path and their
    /// generation.
    pending: Option<(u64, PathBuf, Vec<u8>)>,
    /// A buffer back from the writer, for the next serialization.
    spare: Option<Vec<u8>>,
    /// The last write failed (and was logged): the caller sends again.
    failed: bool,
}

/// One file's writer task, and its handle.
pub struct Publisher {
    /// What the file is, for the logs: "the status snapshot".
    what: &'static str,
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    /// The generation of the newest bytes on disk (or given up on).
    written: watch::Receiver<u64>,
    sent: u64,
    /// The size of the last bytes handed over.
    last_len: usize,
    task: JoinHandle<()>,
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // Only buffers inside: a panic elsewhere leaves nothing half-made.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Publisher {
    /// Starts the writer of `what` (for the logs).
    pub fn start(what: &'static str) -> Self {
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
                        let mut shared = lock(&s);
                        // A large buffer (a snapshot of thousands of checks)
                        // is given back, not kept for the next: it is mapped
                        // memory (tune_allocator), returned whole when
                        // dropped, and the next publish is seconds away.
                        shared.spare = (buf.capacity() <= KEEP_BUFFER).then_some(buf);
                        shared.failed = r.is_err();
                        drop(shared);
                        if let Err(e) = r {
                            log::error!("{e}");
                        }
                    }
                    Err(e) => {
                        lock(&s).failed = true;
                        log::error!("the writer of {what} failed: {e}");
                    }
                }
                let _ = done_tx.send(generation);
            }
        });
        Publisher {
            what,
            shared,
            wake,
            written,
            sent: 0,
            last_len: 0,
            task,
        }
    }

    /// Serializes (`fill` writes the file's bytes into the buffer it is
    /// given, cleared or not) and hands the bytes over to be written to
    /// `path`; returns without waiting for the disk.
    pub fn send(&mut self, path: PathBuf, fill: impl FnOnce(&mut Vec<u8>)) {
        let spare = {
            let mut s = lock(&self.shared);
            // Bytes the writer has not taken yet are superseded: their
            // buffer serves this serialization.
            s.pending.take().map(|(_, _, b)| b).or(s.spare.take())
        };
        let mut buf = spare.unwrap_or_default();
        buf.clear();
        // Room for the last size and an eighth, at once: a large snapshot
        // grown by doubling was copied a dozen times, through blocks of
        // the heap that the next ones then fragmented.
        buf.reserve_exact(self.last_len + self.last_len / 8);
        fill(&mut buf);
        self.last_len = buf.len();
        self.sent += 1;
        lock(&self.shared).pending = Some((self.sent, path, buf));
        self.wake.notify_one();
    }

    /// Whether the last write failed: the state on disk is older than the
    /// last bytes handed over, until a write succeeds.
    pub fn last_write_failed(&self) -> bool {
        lock(&self.shared).failed
    }

    /// Waits, up to `timeout`, until the newest bytes handed over are on
    /// disk; false (and a warning) if they were not in time.
    pub async fn flush(&mut self, timeout: Duration) -> bool {
        let want = self.sent;
        let done = tokio::time::timeout(timeout, self.written.wait_for(|w| *w >= want))
            .await
            .is_ok_and(|r| r.is_ok());
        if !done {
            log::warn!("{} was not written within {timeout:?}", self.what);
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
    use crate::snapshot::Snapshot;

    fn snap(pid: u32) -> Snapshot {
        let mut s = Snapshot::fixture(Vec::new(), Default::default());
        s.pid = pid;
        s
    }

    #[tokio::test]
    async fn the_newest_snapshot_is_on_disk_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let mut p = Publisher::start("the status snapshot");
        for pid in 1..=50 {
            p.send(path.clone(), |b| snap(pid).serialize_into(b));
        }
        assert!(p.flush(Duration::from_secs(5)).await);
        assert_eq!(Snapshot::read(&path).unwrap().pid, 50);
        p.send(path.clone(), |b| snap(51).serialize_into(b));
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
        let mut p = Publisher::start("the status snapshot");
        p.send(path.clone(), |b| snap(1).serialize_into(b));
        // Given up on, not waited for forever.
        assert!(p.flush(Duration::from_secs(5)).await);
        assert!(!path.exists());
        assert!(p.last_write_failed());
        std::fs::create_dir(dir.path().join("missing")).unwrap();
        p.send(path.clone(), |b| snap(2).serialize_into(b));
        assert!(p.flush(Duration::from_secs(5)).await);
        assert_eq!(Snapshot::read(&path).unwrap().pid, 2);
        assert!(!p.last_write_failed());
    }
}

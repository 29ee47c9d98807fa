//! The journal follower: one `journalctl --follow -o json` for every
//! journal check, run as a managed child on a thread of its own, its
//! entries counted into the checks' tallies as they are written.
//!
//! Why journalctl and not sd-journal: the journal's files change format,
//! rotate, are vacuumed and are spread over runtime and persistent
//! directories, and journalctl is the reader systemd maintains for all of
//! that; linking libsystemd (the only maintained sd-journal bindings do)
//! would tie the binary to it for one reader. Its JSON costs a parse per
//! entry, which benches/journal.rs measures.
//!
//! Why a thread: a very chatty unit is thousands of entries a second to
//! parse, and that work must never share a thread with the supervisor's
//! loop, where it would delay the handling of a failure. The thread reads
//! a pipe; when it falls behind, journalctl blocks on the pipe and the
//! entries wait in the journal's files, so its memory stays bounded (one
//! 64 KiB buffer and a line of at most [`MAX_LINE`]) whatever the rate.
//!
//! Where it starts: after the cursor of the last entry counted, saved with
//! the counts in journal.json every few seconds and at the stop, so that a
//! restart of the daemon goes on where it stopped and neither loses nor
//! counts an entry twice (a crash loses no entry either: it re-reads those
//! after the saved cursor, whose counts were not saved). On a fresh start,
//! or after a stop longer than the checks' windows, it reads back as far as
//! the longest window or silence, so that the first result is already
//! right.
//!
//! A journalctl that exits is reported on every journal check (its stderr
//! in the output) and started again, at most once a second at first and
//! once every 30 s while it keeps failing. One that runs but says it cannot
//! see other users' entries (the daemon is not in systemd-journal) fails
//! the checks with that reason, never with a silent zero.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::tally::{micros, Tally};
use super::Watch;

mod read;
mod saved;

pub use saved::{Saved, SavedCheck};

/// The MESSAGE_ID of systemd's "Started x.service" (sd-messages.h,
/// SD_MESSAGE_UNIT_STARTED).
pub const UNIT_STARTED: &str = "39f53479d3a045ac8e11786248231fbf";

/// The reader of the journal.
pub const JOURNALCTL: &str = "journalctl";

/// The longest line read; a longer one is skipped and counted as such
/// (journalctl shows fields over 4 KiB as null, so none should be).
pub const MAX_LINE: usize = 256 * 1024;

/// How often the counts and the cursor are saved while entries come in.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// The loop is told of new counts at most this often.
const NUDGE_EVERY: Duration = Duration::from_millis(200);

/// The pipe empty this long means the backlog has been read.
const CAUGHT_UP_QUIET: Duration = Duration::from_millis(250);

/// The running follower, held by the daemon; dropping it stops it.
pub struct Follower {
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<Child>>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
    nudges: tokio::sync::mpsc::Receiver<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Follower {
    /// Starts following for `watches` (none: no follower), saving to
    /// `state`.
    pub fn start(watches: Vec<Arc<Watch>>, state: PathBuf) -> Option<Follower> {
        if watches.is_empty() {
            return None;
        }
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let (run, nudges) = Run::new(watches, state);
        let (stop, child) = (run.stop.clone(), run.child.clone());
        // Restored here, before the checks are graded: a reload keeps the
        // counts it had (journal.json is a few KiB, read as the config is).
        let from = run.restore(SystemTime::now());
        let spawned = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                run.follow(from);
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            log::error!("cannot start the journal follower's thread: {e}");
        }
        Some(Follower {
            stop,
            child,
            done: Some(done),
            nudges,
        })
    }

    /// New counts since the last call (pending while there are none).
    pub async fn next(&mut self) {
        if self.nudges.recv().await.is_none() {
            std::future::pending::<()>().await
        }
    }

    fn signal_stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(c) = lock(&self.child).as_mut() {
            let _ = c.kill();
        }
    }

    /// Stops the follower and waits (up to `timeout`) for its last save.
    pub async fn stop(mut self, timeout: Duration) {
        self.signal_stop();
        if let Some(done) = self.done.take() {
            if tokio::time::timeout(timeout, done).await.is_err() {
                log::warn!("the journal follower did not stop within {timeout:?}");
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// The follower thread's state.
pub(super) struct Run {
    watches: Vec<Arc<Watch>>,
    state: PathBuf,
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<Child>>>,
    nudge: tokio::sync::mpsc::Sender<()>,
}

/// Where a journalctl starts reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    AfterCursor(String),
    Since(SystemTime),
}

/// journalctl's arguments for `units`, from `from`.
pub fn args(units: &[&str], from: &Start, follow: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "--no-tail",
        "--no-pager",
        "--output=json",
        "--output-fields=MESSAGE,PRIORITY,_SYSTEMD_UNIT,UNIT,MESSAGE_ID,_PID",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if follow {
        a.insert(0, "--follow".into());
    }
    a.push(match from {
        Start::AfterCursor(c) => format!("--after-cursor={c}"),
        Start::Since(t) => format!("--since=@{}", micros(*t) / 1_000_000),
    });
    // Matches of one field are alternatives, of two fields both needed,
    // and "+" joins two such sets: the units' own entries, or systemd's
    // "Started" of one of them (silence counts from the last start).
    a.extend(units.iter().map(|u| format!("_SYSTEMD_UNIT={u}")));
    a.push("+".into());
    a.push(format!("MESSAGE_ID={UNIT_STARTED}"));
    a.extend(units.iter().map(|u| format!("UNIT={u}")));
    a
}

/// Counts `watches`' entries of the last longest window or silence, once
/// (`unitwatchd check`, without a daemon): journalctl without --follow,
/// nothing saved. Blocking.
pub fn read_once(watches: Vec<Arc<Watch>>) {
    if watches.is_empty() {
        return;
    }
    // No state file: nothing saved.
    let (run, _nudges) = Run::new(watches, PathBuf::new());
    let since = run.fresh_since();
    for w in &run.watches {
        w.lock().tally = Some(Tally::new(w.span(), since));
    }
    let (why, _, _) = run.one_child(&args(&run.units(), &Start::Since(since), false), &mut None);
    let ended_well = why.contains("exit status: 0");
    run.each(|l| {
        if l.error.is_none() && !ended_well {
            l.error = Some(format!("cannot read the journal: {why}"));
        }
        l.caught_up = true;
    });
}

/// What journalctl's stderr says when it cannot see other users' entries.
fn access_problem(line: &str) -> bool {
    line.contains("not seeing messages from other users")
        || line.contains("insufficient permissions")
        || line.contains("No journal files were opened")
}

impl Run {
    /// The follower's state for `watches`, saving to `state` (none when
    /// empty), and the receiver of its news.
    fn new(watches: Vec<Arc<Watch>>, state: PathBuf) -> (Run, tokio::sync::mpsc::Receiver<()>) {
        let (nudge, nudges) = tokio::sync::mpsc::channel(1);
        let run = Run {
            watches,
            state,
            stop: Arc::default(),
            child: Arc::default(),
            nudge,
        };
        (run, nudges)
    }

    /// The units followed, each once.
    fn units(&self) -> Vec<&str> {
        let mut units: Vec<&str> = self.watches.iter().map(|w| w.unit.as_str()).collect();
        units.sort_unstable();
        units.dedup();
        units
    }

    fn each(&self, f: impl Fn(&mut super::Live)) {
        for w in &self.watches {
            f(&mut w.lock());
        }
    }

    fn follow(self, mut from: Start) {
        let units = self.units();
        let mut cursor: Option<String> = match &from {
            Start::AfterCursor(c) => Some(c.clone()),
            Start::Since(_) => None,
        };
        let mut wait = Duration::from_secs(1);
        while !self.stop.load(Ordering::Acquire) {
            let started = Instant::now();
            let outcome = self.one_child(&args(&units, &from, true), &mut cursor);
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            let (why, read_any, denied) = outcome;
            log::warn!("journal follower: {why}; starting journalctl again in {wait:?}");
            if !denied {
                // (A denial is already said, with what to do about it.)
                self.each(|l| l.error = Some(format!("cannot follow the journal: {why}")));
            }
            let quick = started.elapsed() < Duration::from_secs(5);
            from = match cursor.clone() {
                // A cursor journalctl ended on at once, with nothing read,
                // is the fault (another machine's journal, vacuumed away):
                // dropped, and the windows read afresh.
                Some(_) if quick && !read_any && matches!(from, Start::AfterCursor(_)) => {
                    cursor = None;
                    Start::Since(self.fresh_since())
                }
                Some(c) => Start::AfterCursor(c),
                None => from,
            };
            if started.elapsed() > Duration::from_secs(60) {
                wait = Duration::from_secs(1);
            }
            let until = Instant::now() + wait;
            while Instant::now() < until && !self.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        self.save(cursor.as_deref());
    }

    /// Runs one journalctl until it ends: why it ended, whether it gave
    /// any entry, and whether it said it could not see the journal.
    fn one_child(&self, args: &[String], cursor: &mut Option<String>) -> (String, bool, bool) {
        let mut cmd = Command::new(JOURNALCTL);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // journalctl ends with the thread that started it, even when the
        // daemon is killed (else it would follow on, an orphan, until its
        // next write hit the closed pipe).
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return (format!("cannot run {JOURNALCTL}: {e}"), false, false),
        };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        *lock(&self.child) = Some(child);
        if self.stop.load(Ordering::Acquire) {
            if let Some(c) = lock(&self.child).as_mut() {
                let _ = c.kill();
            }
        }
        let said: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let denied = Arc::new(AtomicBool::new(false));
        let err_thread = stderr.map(|e| {
            let (said, denied) = (said.clone(), denied.clone());
            let watches = self.watches.clone();
            std::thread::Builder::new()
                .name("journal-err".into())
                .spawn(move || read_stderr(e, &said, &denied, &watches))
        });
        let read_any = match stdout {
            Some(out) => self.read(out, cursor, &denied),
            None => false,
        };
        let status = lock(&self.child).take().map(|mut c| c.wait());
        if let Some(Ok(t)) = err_thread {
            let _ = t.join();
        }
        let tail: Vec<String> = lock(&said).iter().cloned().collect();
        let status = match status {
            Some(Ok(s)) => s.to_string(),
            Some(Err(e)) => format!("cannot wait for it: {e}"),
            None => "gone".into(),
        };
        let mut why = format!("{JOURNALCTL} ended ({status})");
        if !tail.is_empty() {
            why += &format!(": {}", tail.join(" / "));
        }
        (why, read_any, denied.load(Ordering::Acquire))
    }

}

/// Keeps the last lines of journalctl's stderr, and fails the checks when
/// it says it cannot see the journal.
fn read_stderr(
    e: impl Read,
    said: &Mutex<VecDeque<String>>,
    denied: &AtomicBool,
    watches: &[Arc<Watch>],
) {
    for line in BufReader::new(e).lines() {
        let Ok(line) = line else { break };
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        if access_problem(&line) && !denied.swap(true, Ordering::AcqRel) {
            let why = format!(
                "no read access to other users' journal entries ({JOURNALCTL}: {line:?}): unitwatchd must be in the systemd-journal group, which unitwatch-generator grants while a journal check is configured (systemctl daemon-reload && systemctl restart unitwatch)"
            );
            log::error!("{why}");
            for w in watches {
                w.lock().error = Some(why.clone());
            }
        }
        let mut s = lock(said);
        s.push_back(line);
        if s.len() > 4 {
            s.pop_front();
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A follower's state without its thread or journalctl.
    pub(in crate::checks::journal) fn run(watches: Vec<Arc<Watch>>, state: PathBuf) -> Run {
        Run::new(watches, state).0
    }
}

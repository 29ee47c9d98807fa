//! Reading journalctl's output: a line at a time from a 64 KiB buffer,
//! each entry parsed and counted into the checks it concerns, the counts
//! saved and the loop told of them now and then, and the backlog's end
//! noticed (silence is only judged once the follower has caught up).

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::ChildStdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::{Run, CAUGHT_UP_QUIET, MAX_LINE, NUDGE_EVERY, SAVE_EVERY, UNIT_STARTED};
use crate::checks::journal::tally::micros;

/// One entry as `journalctl -o json --output-fields=...` prints it.
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(rename = "__CURSOR", borrow)]
    cursor: std::borrow::Cow<'a, str>,
    #[serde(rename = "__REALTIME_TIMESTAMP", borrow)]
    realtime: std::borrow::Cow<'a, str>,
    #[serde(rename = "PRIORITY", default, borrow)]
    priority: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "_SYSTEMD_UNIT", default, borrow)]
    unit: Option<std::borrow::Cow<'a, str>>,
    /// systemd's own messages about a unit: which one.
    #[serde(rename = "UNIT", default, borrow)]
    about: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "MESSAGE_ID", default, borrow)]
    message_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "_PID", default, borrow)]
    pid: Option<std::borrow::Cow<'a, str>>,
    /// A string; an array of bytes when it is not UTF-8; null when over
    /// 4 KiB.
    #[serde(rename = "MESSAGE", default)]
    message: Option<serde_json::Value>,
}

fn message_text(v: &serde_json::Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        serde_json::Value::String(s) => Some(s.as_str().into()),
        serde_json::Value::Array(a) => {
            let bytes: Vec<u8> = a.iter().filter_map(|b| b.as_u64().map(|b| b as u8)).collect();
            Some(String::from_utf8_lossy(&bytes).into_owned().into())
        }
        _ => None,
    }
}

impl Run {
    /// Reads entries until journalctl closes its output.
    pub(super) fn read(&self, out: ChildStdout, cursor: &mut Option<String>, denied: &AtomicBool) -> bool {
        let fd = out.as_raw_fd();
        let mut reader = BufReader::with_capacity(64 * 1024, out);
        let mut line: Vec<u8> = Vec::with_capacity(4096);
        let mut too_long = false;
        let mut caught_up = false;
        let mut read_any = false;
        let mut owed = Owed {
            dirty: false,
            last_save: Instant::now(),
            nudge: false,
            last_nudge: Instant::now() - NUDGE_EVERY,
        };
        let began = micros(SystemTime::now());
        loop {
            if reader.buffer().is_empty() {
                // Nothing read ahead: before blocking, what is owed.
                owed.pay(self, cursor.as_deref());
                let mut wait: Option<Duration> = None;
                let mut at_most = |d: Duration| wait = Some(wait.map_or(d, |w| w.min(d)));
                if !caught_up {
                    at_most(CAUGHT_UP_QUIET);
                }
                if owed.nudge {
                    at_most(NUDGE_EVERY.saturating_sub(owed.last_nudge.elapsed()));
                }
                if owed.dirty {
                    at_most(SAVE_EVERY.saturating_sub(owed.last_save.elapsed()));
                }
                if !readable(fd, wait) {
                    if !caught_up {
                        caught_up = true;
                        self.mark_caught_up(denied);
                    }
                    continue;
                }
            }
            let buf = match reader.fill_buf() {
                Ok([]) => break,
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let (take, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if !too_long {
                if line.len() + take > MAX_LINE {
                    too_long = true;
                    line.clear();
                } else {
                    line.extend_from_slice(&buf[..take]);
                }
            }
            reader.consume(take + usize::from(end));
            if !end {
                continue;
            }
            if too_long {
                self.each(|l| l.skipped += 1);
                too_long = false;
                continue;
            }
            let now = SystemTime::now();
            match self.take(&line, now, cursor) {
                Some((at_us, counted)) => {
                    if !read_any {
                        read_any = true;
                        self.reading(denied);
                    }
                    owed.dirty = true;
                    owed.nudge |= counted;
                    if !caught_up && at_us >= began {
                        caught_up = true;
                        self.mark_caught_up(denied);
                    }
                }
                None => {
                    log::debug!("journal follower: an unreadable line from journalctl skipped");
                }
            }
            line.clear();
            owed.pay(self, cursor.as_deref());
        }
        if owed.dirty {
            self.save(cursor.as_deref());
        }
        read_any
    }

    /// journalctl gives entries: an earlier failure is over (but for a
    /// denial, which this journalctl said and stands).
    fn reading(&self, denied: &AtomicBool) {
        if !denied.load(Ordering::Acquire) {
            self.each(|l| l.error = None);
        }
    }

    fn mark_caught_up(&self, denied: &AtomicBool) {
        self.reading(denied);
        self.each(|l| l.caught_up = true);
        // The checks are graded again now that silence can be judged.
        let _ = self.nudge.try_send(());
    }

    /// Counts one entry: its journal time and whether any check counted
    /// it; none when the line is not an entry.
    pub(in crate::checks::journal) fn take(&self, line: &[u8], now: SystemTime, cursor: &mut Option<String>) -> Option<(u64, bool)> {
        let e: Entry<'_> = serde_json::from_slice(line).ok()?;
        let at_us: u64 = e.realtime.parse().ok()?;
        match cursor {
            Some(c) => {
                c.clear();
                c.push_str(&e.cursor);
            }
            None => *cursor = Some(e.cursor.to_string()),
        }
        if e.message_id.as_deref() == Some(UNIT_STARTED) && e.pid.as_deref() == Some("1") {
            // systemd (PID 1, which no service can claim to be) started
            // the unit: its silence counts from here.
            let about = e.about.as_deref()?;
            for w in self.watches.iter().filter(|w| w.unit == about) {
                if let Some(t) = w.lock().tally.as_mut() {
                    t.started_us = Some(t.started_us.map_or(at_us, |s| s.max(at_us)));
                }
            }
            return Some((at_us, true));
        }
        let unit = e.unit.as_deref()?;
        let priority = e.priority.as_deref().and_then(|p| p.parse::<u8>().ok());
        let message = e.message.as_ref().and_then(message_text);
        let mut counted = false;
        for w in self.watches.iter().filter(|w| w.unit == unit) {
            if w.counts(priority, message.as_deref()) {
                if let Some(t) = w.lock().tally.as_mut() {
                    t.add(at_us, now, w.span());
                }
                counted = true;
            }
        }
        Some((at_us, counted))
    }
}

/// What the reader owes since it last paid: a save of the counts, and
/// news of them to the loop, each at most so often.
struct Owed {
    dirty: bool,
    last_save: Instant,
    nudge: bool,
    last_nudge: Instant,
}

impl Owed {
    fn pay(&mut self, run: &Run, cursor: Option<&str>) {
        if self.nudge && self.last_nudge.elapsed() >= NUDGE_EVERY {
            let _ = run.nudge.try_send(());
            (self.nudge, self.last_nudge) = (false, Instant::now());
        }
        if self.dirty && self.last_save.elapsed() >= SAVE_EVERY {
            run.save(cursor);
            (self.dirty, self.last_save) = (false, Instant::now());
        }
    }
}

/// Whether `fd` has data (or its end) within `wait` (forever when none).
fn readable(fd: i32, wait: Option<Duration>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::BorrowedFd;
    // The pipe lives as long as the reader that holds it, which outlives
    // this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let timeout = match wait {
        None => PollTimeout::NONE,
        Some(d) => PollTimeout::try_from(d.as_millis().min(60_000) as u64).unwrap_or(PollTimeout::MAX),
    };
    loop {
        match poll(&mut fds, timeout) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            // Let the read find out what is wrong.
            Err(_) => return true,
        }
    }
}

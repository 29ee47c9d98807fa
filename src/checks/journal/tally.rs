//! What a journal check has counted: the entries of its window in buckets
//! of time, and when its unit last logged. Pure data, fed by the follower
//! (follow.rs) and read by the check; saved in journal.json with the
//! cursor of the last entry counted, so that a restart of the daemon goes
//! on from where the counting stopped, neither losing nor counting twice.
//!
//! The window is kept as counts per bucket (at most [`MAX_BUCKETS`] of
//! them, at least a second wide), not as one timestamp per entry: a unit
//! logging 10,000 lines a second over a 5-minute window would otherwise
//! hold three million timestamps. The price is that an entry leaves the
//! window up to one bucket (window / 600) late.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The most buckets a window is cut into.
pub const MAX_BUCKETS: u64 = 600;

/// Microseconds since the epoch of `t` (0 before it).
pub fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn from_micros(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us)
}

/// The width of a window's buckets, in seconds.
pub fn bucket_width(window: Duration) -> u64 {
    (window.as_secs() / MAX_BUCKETS).max(1)
}

/// One check's counting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Bucket width in seconds.
    pub width_s: u64,
    /// (bucket start in seconds since the epoch, entries), oldest first.
    pub buckets: VecDeque<(u64, u64)>,
    /// When the check began watching (the oldest time the follower read
    /// from): silence is counted from here when the unit never logged.
    pub since_us: u64,
    /// The newest counted entry's journal time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_us: Option<u64>,
    /// Every entry counted since `since_us`.
    pub total: u64,
    /// When systemd last said it started the unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_us: Option<u64>,
}

impl Tally {
    pub fn new(window: Duration, since: SystemTime) -> Self {
        Tally {
            width_s: bucket_width(window),
            buckets: VecDeque::new(),
            since_us: micros(since),
            last_us: None,
            total: 0,
            started_us: None,
        }
    }

    /// Counts an entry written at `at_us` (the journal's time), keeping
    /// only the buckets of the last `window` before `now`.
    pub fn add(&mut self, at_us: u64, now: SystemTime, window: Duration) {
        self.total += 1;
        self.last_us = Some(self.last_us.map_or(at_us, |l| l.max(at_us)));
        let start = (at_us / 1_000_000) / self.width_s * self.width_s;
        let oldest = self.oldest_kept(now, window);
        if start + self.width_s <= oldest {
            // Out of the window already (read from the backlog).
            return;
        }
        match self.buckets.back_mut() {
            Some((s, n)) if *s == start => *n += 1,
            // Entries come in journal order, which is almost time order;
            // a late one (a clock step) goes where it belongs.
            Some((s, _)) if *s > start => match self.buckets.iter_mut().find(|(s, _)| *s == start) {
                Some((_, n)) => *n += 1,
                None => {
                    let at = self.buckets.partition_point(|(s, _)| *s < start);
                    self.buckets.insert(at, (start, 1));
                }
            },
            _ => self.buckets.push_back((start, 1)),
        }
        self.prune(now, window);
    }

    /// The start (s since the epoch) of the oldest bucket still inside the
    /// window that ends at `now`.
    fn oldest_kept(&self, now: SystemTime, window: Duration) -> u64 {
        let now_s = micros(now) / 1_000_000;
        now_s.saturating_sub(window.as_secs().max(1))
    }

    /// Drops the buckets that ended before the window.
    pub fn prune(&mut self, now: SystemTime, window: Duration) {
        let oldest = self.oldest_kept(now, window);
        while self
            .buckets
            .front()
            .is_some_and(|(s, _)| s + self.width_s <= oldest)
        {
            self.buckets.pop_front();
        }
    }

    /// Entries over the window that ends at `now`.
    pub fn count(&self, now: SystemTime, window: Duration) -> u64 {
        let oldest = self.oldest_kept(now, window);
        self.buckets
            .iter()
            .filter(|(s, _)| s + self.width_s > oldest)
            .map(|(_, n)| n)
            .sum()
    }

    /// The tally read back for a window whose buckets may be of another
    /// width (the config changed): merged into the new width.
    pub fn rebucket(mut self, window: Duration) -> Self {
        let width = bucket_width(window);
        if width == self.width_s {
            return self;
        }
        let mut merged: VecDeque<(u64, u64)> = VecDeque::new();
        for (s, n) in self.buckets.drain(..) {
            let start = s / width * width;
            match merged.back_mut() {
                Some((b, m)) if *b == start => *m += n,
                _ => merged.push_back((start, n)),
            }
        }
        self.width_s = width;
        self.buckets = merged;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn the_window_slides_and_old_entries_leave_it() {
        let w = Duration::from_secs(60);
        let mut t = Tally::new(w, at(1_000));
        for s in [1_000, 1_000, 1_030, 1_059] {
            t.add(s * 1_000_000, at(s), w);
        }
        assert_eq!(t.count(at(1_059), w), 4);
        // At 1,061 the two entries of 1,000 are more than 60 s old.
        assert_eq!(t.count(at(1_061), w), 2);
        assert_eq!(t.count(at(1_200), w), 0);
        t.prune(at(1_200), w);
        assert!(t.buckets.is_empty());
        assert_eq!((t.total, t.last_us), (4, Some(1_059_000_000)));
    }

    #[test]
    fn a_backlog_older_than_the_window_is_not_counted_but_seen() {
        let w = Duration::from_secs(10);
        let mut t = Tally::new(w, at(0));
        t.add(100 * 1_000_000, at(1_000), w);
        assert_eq!(t.count(at(1_000), w), 0);
        assert_eq!(t.last_us, Some(100_000_000));
    }

    #[test]
    fn a_late_entry_goes_into_its_own_bucket() {
        let w = Duration::from_secs(60);
        let mut t = Tally::new(w, at(0));
        t.add(1_010 * 1_000_000, at(1_010), w);
        t.add(1_005 * 1_000_000, at(1_010), w);
        t.add(1_010 * 1_000_000, at(1_010), w);
        assert_eq!(t.buckets, VecDeque::from([(1_005, 1), (1_010, 2)]));
        assert_eq!(t.count(at(1_066), w), 2);
    }

    #[test]
    fn buckets_are_bounded_however_long_the_window() {
        let w = Duration::from_secs(3_600);
        assert_eq!(bucket_width(w), 6);
        let mut t = Tally::new(w, at(0));
        for s in 0..20_000u64 {
            t.add(s * 1_000_000, at(s), w);
        }
        assert!(t.buckets.len() as u64 <= MAX_BUCKETS + 1, "{}", t.buckets.len());
        assert!((3_594..=3_606).contains(&t.count(at(19_999), w)));
        let narrow = t.clone().rebucket(Duration::from_secs(7_200));
        assert_eq!(narrow.width_s, 12);
        assert_eq!(
            narrow.buckets.iter().map(|b| b.1).sum::<u64>(),
            t.buckets.iter().map(|b| b.1).sum::<u64>()
        );
    }
}

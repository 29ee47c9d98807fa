//! `[[check]] type = "journal"`: what a unit writes to the journal. The
//! entries of `unit` at or above `priority` and matching `match`, counted
//! over a sliding `window` against `warn_count` and `crit_count`, and
//! `silence`: the unit, while active, has logged nothing (that the check
//! counts) for that long.
//!
//! The journal is followed, not polled: one `journalctl --follow -o json`
//! for all the journal checks (follow.rs), a managed child of the daemon,
//! reads each entry once as it is written, from the cursor of the last one
//! counted (saved with the counts in journal.json, so that a restart of
//! the daemon goes on where it stopped: nothing counted twice, nothing
//! lost). The check itself only reads the counts and grades them, on the
//! loop, in microseconds: at each sweep, on its unit's signals, and when
//! the follower has counted something new (at most 5 times a second).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::checks::common::{from_table, Common};
use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::{crossed, fmt_duration, grade, CheckContext, CheckDef, How, Measurement, Outcome, StateCheck, Status};
use crate::config::{opt_duration, Config, KeySeg};
use crate::manual::KeyDoc;

pub mod follow;
pub mod tally;

use tally::{from_micros, Tally};

/// syslog's priorities, as journalctl -p names them.
pub const PRIORITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

/// A priority: a name of [`PRIORITIES`] or its number, 0 to 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority(pub u8);

impl Priority {
    pub fn name(self) -> &'static str {
        PRIORITIES[self.0 as usize]
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Number(i64),
        }
        let bad = || {
            serde::de::Error::custom(format!(
                "expected a priority: one of {} or 0 to 7",
                PRIORITIES.join(", ")
            ))
        };
        match Raw::deserialize(d)? {
            Raw::Number(n) if (0..=7).contains(&n) => Ok(Priority(n as u8)),
            Raw::Number(_) => Err(bad()),
            Raw::Name(s) => {
                let s = s.to_ascii_lowercase();
                // journalctl's own aliases.
                let s = match s.as_str() {
                    "error" => "err",
                    "warn" => "warning",
                    "critical" => "crit",
                    "emergency" => "emerg",
                    other => other,
                };
                PRIORITIES
                    .iter()
                    .position(|p| *p == s)
                    .map(|i| Priority(i as u8))
                    .ok_or_else(bad)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default, rename = "match")]
    pub pattern: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub window: Option<Duration>,
    #[serde(default)]
    pub warn_count: Option<u64>,
    #[serde(default)]
    pub crit_count: Option<u64>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub silence: Option<Duration>,
}

const ENTRIES: MetricDoc = MetricDoc {
    name: "journal_window_entries",
    help: "Journal entries of the check's unit that it counts (priority, match) over its window",
    otlp: "unitwatch.journal.window_entries",
    otlp_unit: "{entry}",
    otlp_scale: 1.0,
};
const SILENCE: MetricDoc = MetricDoc {
    name: "journal_silence_seconds",
    help: "Time since the check's unit last logged an entry the check counts (or since it started, or since watching began)",
    otlp: "unitwatch.journal.silence",
    otlp_unit: "s",
    otlp_scale: 1.0,
};

pub const KIND: Kind = Kind {
    name: "journal",
    keys: &[
        KeyDoc::check("journal", "priority", "none (every entry)", "\"err\"",
            "Count only the unit's entries at this priority or above (more urgent): emerg, alert, crit, err, warning, notice, info, debug, or 0 to 7. A line a service prints as <3>... is err."),
        KeyDoc::check("journal", "match", "none (every entry)", "\"(?i)timeout|disconnected\"",
            "Count only the entries whose MESSAGE matches this regular expression (the syntax of Rust's regex crate, without Unicode classes; unanchored)."),
        KeyDoc::check("journal", "window", "\"5m\" with warn_count or crit_count", "\"5m\"",
            "The sliding window the entries are counted over (kept in at most 600 buckets, so an entry leaves it up to window/600, at least 1s, late)."),
        KeyDoc::check("journal", "warn_count", "none", "10",
            "Warn when the window holds at least this many counted entries."),
        KeyDoc::check("journal", "crit_count", "none", "50",
            "Fail when the window holds at least this many counted entries."),
        KeyDoc::check("journal", "silence", "none", "\"15m\"",
            "Fail when the unit, while active, has logged nothing that the check counts (any entry, without priority and match) for this long: counted from its last entry, its last (re)start, or when the check began watching, whichever is latest."),
    ],
    metrics: &[ENTRIES, SILENCE],
    make: Make::Check {
        check,
        about: "What a unit writes to the journal, followed as it is written: its entries at a priority or matching a pattern counted over a sliding window, and its silence. Needs unit. The daemon reads the journal as a member of systemd-journal, granted by unitwatch-generator only while a journal check is configured.",
    },
};

pub const BUILD: Build = Build::Check(build);

type Problems = Vec<(Vec<KeySeg>, String)>;

/// The window when counts are graded and none is given.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// The longest window or silence: the follower reads this far back on a
/// fresh start.
const MAX_SPAN: Duration = Duration::from_secs(7 * 24 * 3600);

fn read(t: &toml::Table, common: &Common) -> Result<(JournalConfig, Option<regex_lite::Regex>), Problems> {
    let c: JournalConfig = from_table(t.clone())?;
    let at = |k: &'static str| vec![KeySeg::Key(k)];
    let mut bad = Vec::new();
    if common.unit.is_none() {
        bad.push((
            vec![],
            "a journal check needs unit: the watched unit whose entries it reads".into(),
        ));
    }
    let counts = c.counts();
    if !counts && c.silence.is_none() {
        bad.push((
            vec![],
            "set warn_count, crit_count or silence: nothing to check".into(),
        ));
    }
    if c.window.is_some() && !counts {
        bad.push((at("window"), "window is the span of warn_count and crit_count, neither of which is set".into()));
    }
    if let (Some(w), Some(cr)) = (c.warn_count, c.crit_count) {
        if w > cr {
            bad.push((at("warn_count"), format!("{w} is above crit_count ({cr})")));
        }
    }
    for (k, n) in [("warn_count", c.warn_count), ("crit_count", c.crit_count)] {
        if n == Some(0) {
            bad.push((at(k), "must be at least 1 (0 would fail without any entry)".into()));
        }
    }
    for (k, d) in [("window", c.window), ("silence", c.silence)] {
        match d {
            Some(d) if d < Duration::from_secs(1) => {
                bad.push((at(k), "must be at least 1s".into()))
            }
            Some(d) if d > MAX_SPAN => bad.push((at(k), "must be at most 7 days".into())),
            _ => {}
        }
    }
    let mut regex = None;
    if let Some(p) = &c.pattern {
        match regex_lite::Regex::new(p) {
            Ok(r) => regex = Some(r),
            Err(e) => bad.push((at("match"), format!("not a valid regular expression: {e} in {p:?}"))),
        }
    }
    if bad.is_empty() {
        Ok((c, regex))
    } else {
        Err(bad)
    }
}

impl JournalConfig {
    /// Whether counts are graded (else only silence).
    fn counts(&self) -> bool {
        self.warn_count.is_some() || self.crit_count.is_some()
    }
}

/// The journal checks among `defs`: what a follower follows.
pub fn watches(defs: &[CheckDef]) -> Vec<Arc<Watch>> {
    defs.iter()
        .filter_map(|d| match &d.how {
            How::State(s) => s.journal(),
            How::Probe(_) => None,
        })
        .collect()
}

/// Whether the configuration has a journal check (the daemon then needs
/// to be in systemd-journal: `unitwatchd config privileges`).
pub fn configured(config: &Config) -> bool {
    config
        .checks
        .iter()
        .any(|t| t.0.get("type").and_then(|v| v.as_str()) == Some(KIND.name))
}

fn check(t: &toml::Table, common: &Common, _: &Config) -> Result<(), Problems> {
    read(t, common).map(|_| ())
}

fn build(t: &toml::Table, common: &Common, _: &Config) -> Result<How, Problems> {
    let (c, regex) = read(t, common)?;
    let unit = common.unit.as_ref().map(|u| u.to_string()).unwrap_or_default();
    let window = c.counts().then(|| c.window.unwrap_or(DEFAULT_WINDOW));
    let watch = Watch {
        key: common.key(),
        unit,
        priority: c.priority,
        pattern: c.pattern,
        regex,
        window,
        warn_count: c.warn_count,
        crit_count: c.crit_count,
        silence: c.silence,
        live: Mutex::new(Live::default()),
    };
    Ok(How::State(Arc::new(JournalCheck {
        watch: Arc::new(watch),
        seen: Mutex::default(),
    })))
}

/// What one journal check counts, shared between the check (which reads
/// it) and the follower (which feeds it).
#[derive(Debug)]
pub struct Watch {
    /// The check's key (NAME:journal): its counts' name in journal.json.
    pub key: String,
    pub unit: String,
    pub priority: Option<Priority>,
    pub pattern: Option<String>,
    pub regex: Option<regex_lite::Regex>,
    /// Set when counts are graded.
    pub window: Option<Duration>,
    pub warn_count: Option<u64>,
    pub crit_count: Option<u64>,
    pub silence: Option<Duration>,
    pub live: Mutex<Live>,
}

/// The follower's side of a check.
#[derive(Debug, Default)]
pub struct Live {
    /// None until the follower has started.
    pub tally: Option<Tally>,
    /// Why the journal cannot be read, while it cannot.
    pub error: Option<String>,
    /// The follower has read up to the journal's end at least once: until
    /// then, a silence may only be the backlog not read yet.
    pub caught_up: bool,
    /// Entries of the unit the follower could not read (a line too long,
    /// malformed JSON).
    pub skipped: u64,
}

impl Watch {
    /// Whether the check counts this entry of its unit.
    pub fn counts(&self, priority: Option<u8>, message: Option<&str>) -> bool {
        // An entry without PRIORITY is taken as journald takes it: info.
        let prio_ok = self.priority.is_none_or(|p| priority.unwrap_or(6) <= p.0);
        prio_ok
            && match &self.regex {
                Some(r) => message.is_some_and(|m| r.is_match(m)),
                None => true,
            }
    }

    /// The span the counts are kept over (a silence-only check keeps a
    /// second's bucket, for its last entry).
    pub fn span(&self) -> Duration {
        self.window.unwrap_or(Duration::from_secs(1))
    }

    /// How far back a fresh start reads, for this check to be right at once.
    pub fn lookback(&self) -> Duration {
        self.window.unwrap_or_default().max(self.silence.unwrap_or_default())
    }

    /// What identifies the counting across restarts: counts saved under
    /// another unit, priority or pattern are not this check's.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}",
            self.unit,
            self.priority.map_or("", Priority::name),
            self.pattern.as_deref().unwrap_or("")
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        // Plain counters inside: a panic elsewhere leaves them usable.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the counting says of "counted entries", for outputs.
    fn what(&self) -> String {
        let mut s = String::from("entries");
        if let Some(p) = self.priority {
            s += &format!(" at {} or above", p.name());
        }
        if let Some(m) = &self.pattern {
            s += &format!(" matching /{m}/");
        }
        s
    }
}

/// The unit's activity as the check last saw it: silence is counted from
/// the unit's last (re)start at the latest.
#[derive(Debug, Default)]
struct Seen {
    active: Option<bool>,
    n_restarts: Option<u32>,
    started: Option<SystemTime>,
}

pub struct JournalCheck {
    watch: Arc<Watch>,
    seen: Mutex<Seen>,
}

/// What the grading needs of the unit.
#[derive(Debug, Clone, Copy)]
pub struct UnitNow {
    pub active: bool,
    /// Its last start as seen (a move into active, a restart by systemd or
    /// by unitwatch), if any since the daemon started.
    pub started: Option<SystemTime>,
}

impl StateCheck for JournalCheck {
    fn run(&self, ctx: &CheckContext<'_>) -> Outcome {
        let w = &self.watch;
        let status = match ctx.unit_status(&w.unit) {
            Ok(s) => s,
            Err(o) => return o,
        };
        let active = status.is_active();
        let restarted_by_us = ctx
            .backoff
            .get(&w.unit)
            .and_then(|b| b.last_restart.as_ref())
            .map(|t| t.0);
        let started = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let came_up = active && seen.active == Some(false);
            let restarted = seen.n_restarts.is_some() && status.n_restarts != seen.n_restarts;
            if came_up || restarted {
                seen.started = Some(ctx.now);
            }
            seen.active = Some(active);
            seen.n_restarts = status.n_restarts;
            seen.started.max(restarted_by_us)
        };
        let live = w.lock();
        grade_watch(w, &live, UnitNow { active, started }, ctx.now)
    }

    fn journal(&self) -> Option<Arc<Watch>> {
        Some(self.watch.clone())
    }
}

/// Grades a check's counting at `now`.
pub fn grade_watch(w: &Watch, live: &Live, unit: UnitNow, now: SystemTime) -> Outcome {
    if let Some(e) = &live.error {
        return Outcome::error(e.clone());
    }
    let Some(tally) = &live.tally else {
        return Outcome::error("the journal follower has not started yet");
    };
    let label = |m: Measurement| m.label("unit", w.unit.clone()).label("check", w.key.clone());
    let mut said = Vec::new();
    let mut status = Status::Pass;
    let mut value = serde_json::Value::Null;
    let mut unit_of = None;
    let mut measurements = Vec::new();
    if let Some(window) = w.window {
        let n = tally.count(now, window);
        status = grade(n as f64, w.warn_count.map(|c| c as f64), w.crit_count.map(|c| c as f64));
        let mut s = format!("{n} {} in the last {}", w.what(), fmt_duration(window));
        if let Some(limit) = crossed(status, w.warn_count, w.crit_count).filter(|_| status != Status::Pass) {
            s += &format!(" ({} at {limit})", if status == Status::Fail { "critical" } else { "warn" });
        }
        said.push(s);
        value = n.into();
        unit_of = Some("entries");
        measurements.push(label(Measurement::new(ENTRIES.name, n as f64)));
    }
    if let Some(silence) = w.silence {
        let since = from_micros(
            tally
                .last_us
                .unwrap_or(0)
                .max(tally.since_us)
                .max(tally.started_us.unwrap_or(0)),
        );
        let from = since.max(unit.started.unwrap_or(since));
        let quiet = now.duration_since(from).unwrap_or_default();
        let secs = quiet.as_secs();
        measurements.push(label(Measurement::new(SILENCE.name, secs as f64)));
        let last = match tally.last_us {
            Some(us) => format!("last at {}", humantime::format_rfc3339_seconds(from_micros(us))),
            None => format!(
                "none since watching began at {}",
                humantime::format_rfc3339_seconds(from_micros(tally.since_us))
            ),
        };
        let ago = humantime::format_duration(Duration::from_secs(secs));
        if !unit.active {
            said.push(format!("{} is not active: silence not judged ({last})", w.unit));
        } else if quiet >= silence && !live.caught_up {
            said.push(format!("silent for {ago} so far, the journal's backlog still being read"));
        } else if quiet >= silence {
            status = Status::Fail;
            said.insert(0, format!("{} has logged no {} for {ago} (silence at {}; {last})", w.unit, w.what(), fmt_duration(silence)));
        } else {
            said.push(format!("last logged {ago} ago"));
        }
        if w.window.is_none() {
            value = secs.into();
            unit_of = Some("s");
        }
    }
    if live.skipped > 0 {
        said.push(format!("{} entries could not be read", live.skipped));
    }
    let mut o = Outcome::new(status, value, unit_of).with_output(said.join("; "));
    o.measurements = measurements;
    o
}

#[cfg(test)]
mod tests;

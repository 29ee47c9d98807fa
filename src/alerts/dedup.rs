//! De-duplication: which events an alert channel sends now, which it holds
//! back, and what it owes the person once the cooldown ends.
//!
//! The same alert (channel, subject, event kind, severity) goes out once
//! per `cooldown`; repeats are counted and the count rides on the next one
//! sent. A resolution (a unit back, a check passing) of a problem the
//! person was told of goes out at once, whatever the cooldown. A problem
//! held back after the person was last told "resolved" leaves them with a
//! wrong picture, so it is sent when its cooldown ends (with the count)
//! unless a resolution made it right meanwhile. The state is plain data,
//! saved to alerts.json next to backoff.json, so a restart of unitwatchd
//! neither repeats a storm nor forgets what it owes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::backoff::Timestamp;
use crate::events::{Event, Kind, Severity};

/// The version of alerts.json.
pub const SCHEMA_VERSION: u32 = 1;

/// What the alert is about: the check, else the unit, else unitwatchd.
pub fn subject(e: &Event) -> &str {
    e.check
        .as_deref()
        .or(e.unit.as_deref())
        .unwrap_or("unitwatchd")
}

/// One held-back occurrence, kept to be sent late (see the module header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub kind: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    pub message: String,
    pub at: Timestamp,
}

impl Held {
    fn of(e: &Event, at: SystemTime) -> Held {
        Held {
            kind: e.kind.as_str().to_string(),
            severity: e.severity,
            unit: e.unit.clone(),
            check: e.check.clone(),
            message: e.message.clone(),
            at: Timestamp(at),
        }
    }

    /// The event again, for rendering.
    pub fn event(&self) -> Event {
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == self.kind)
            .unwrap_or(Kind::CheckChanged);
        let mut e = Event::new(kind, self.severity, self.message.clone());
        e.unit = self.unit.clone();
        e.check = self.check.clone();
        e
    }
}

/// One alert key's history on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    pub last_sent: Timestamp,
    #[serde(default)]
    pub suppressed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_since: Option<Timestamp>,
    /// The latest problem held back while the person's picture says
    /// "resolved": owed when the cooldown ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owed: Option<Held>,
}

/// Send now, with how many like it were held back since the last one.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Send {
        suppressed: u64,
        since: Option<SystemTime>,
    },
    Suppress,
}

/// An owed alert whose cooldown has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Owed {
    pub held: Held,
    pub suppressed: u64,
    pub since: Option<SystemTime>,
}

/// One channel's de-duplication state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelState {
    #[serde(default)]
    pub keys: BTreeMap<String, KeyState>,
    /// Subjects whose last alert on this channel was a problem.
    #[serde(default)]
    pub open: BTreeSet<String>,
}

fn key_of(e: &Event) -> String {
    format!("{} {} {}", subject(e), e.kind.as_str(), e.severity.as_str())
}

fn subject_of_key(key: &str) -> &str {
    // Subjects can hold spaces (a check on a path with one): the kind and
    // the severity are the last two words.
    let mut it = key.rsplitn(3, ' ');
    it.next();
    it.next();
    it.next().unwrap_or("")
}

impl ChannelState {
    /// Is the person's last news about `subject` a problem?
    pub fn is_open(&self, subject: &str) -> bool {
        self.open.contains(subject)
    }

    /// Decides on one event that passed the channel's filters.
    pub fn decide(&mut self, e: &Event, at: SystemTime, cooldown: Duration) -> Verdict {
        let subj = subject(e).to_string();
        let key = key_of(e);
        if e.is_resolution() {
            // Right or wrong before, the picture is "resolved" from here.
            self.settle(&subj);
            if self.open.remove(&subj) {
                return self.send(&key, at);
            }
            return self.cooled(&key, at, cooldown);
        }
        let v = self.cooled(&key, at, cooldown);
        if e.severity >= Severity::Warning {
            match v {
                Verdict::Send { .. } => {
                    // The person's picture is "problem" again: right.
                    self.settle(&subj);
                    self.open.insert(subj);
                }
                Verdict::Suppress if !self.open.contains(&subj) => {
                    if let Some(k) = self.keys.get_mut(&key) {
                        k.owed = Some(Held::of(e, at));
                    }
                }
                Verdict::Suppress => {}
            }
        }
        v
    }

    /// Nothing is owed on `subject` any more: what the person was just
    /// told (or is about to be) is the current picture.
    fn settle(&mut self, subj: &str) {
        for (_, k) in self
            .keys
            .iter_mut()
            .filter(|(k, _)| subject_of_key(k) == subj)
        {
            k.owed = None;
        }
    }

    fn send(&mut self, key: &str, at: SystemTime) -> Verdict {
        let prev = self.keys.insert(
            key.to_string(),
            KeyState {
                last_sent: Timestamp(at),
                suppressed: 0,
                suppressed_since: None,
                owed: None,
            },
        );
        match prev {
            Some(k) => Verdict::Send {
                suppressed: k.suppressed,
                since: k.suppressed_since.map(|t| t.0),
            },
            None => Verdict::Send {
                suppressed: 0,
                since: None,
            },
        }
    }

    fn cooled(&mut self, key: &str, at: SystemTime, cooldown: Duration) -> Verdict {
        match self.keys.get_mut(key) {
            // A clock set back (at < last_sent) also counts as within.
            Some(k) if at < k.last_sent.0 + cooldown => {
                k.suppressed += 1;
                k.suppressed_since.get_or_insert(Timestamp(at));
                Verdict::Suppress
            }
            _ => self.send(key, at),
        }
    }

    /// The owed alerts whose cooldown has ended by `now`; they count as
    /// sent from here.
    pub fn take_owed(&mut self, now: SystemTime, cooldown: Duration) -> Vec<Owed> {
        let mut out = Vec::new();
        for k in self.keys.values_mut() {
            if k.last_sent.0 + cooldown > now {
                continue;
            }
            if let Some(held) = k.owed.take() {
                out.push(Owed {
                    held,
                    suppressed: k.suppressed.saturating_sub(1),
                    since: k.suppressed_since.map(|t| t.0),
                });
                k.last_sent = Timestamp(now);
                k.suppressed = 0;
                k.suppressed_since = None;
            }
        }
        for o in &out {
            let e = o.held.event();
            self.open.insert(subject(&e).to_string());
        }
        out
    }

    /// When the next owed alert falls due.
    pub fn next_owed(&self, cooldown: Duration) -> Option<SystemTime> {
        self.keys
            .values()
            .filter(|k| k.owed.is_some())
            .map(|k| k.last_sent.0 + cooldown)
            .min()
    }

    /// Forgets keys with nothing left to say: cooled down, no count, nothing
    /// owed. Keeps the file small on a machine that runs for years.
    pub fn prune(&mut self, now: SystemTime, cooldown: Duration) {
        self.keys
            .retain(|_, k| k.owed.is_some() || k.suppressed > 0 || k.last_sent.0 + cooldown > now);
    }
}

/// alerts.json: every channel's state, by channel name.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateFile {
    pub schema_version: u32,
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelState>,
}

impl StateFile {
    /// Parses the file's bytes; the error says where and why it is bad.
    pub fn parse(bytes: &[u8]) -> Result<StateFile, String> {
        match serde_json::from_slice::<StateFile>(bytes) {
            Ok(f) if f.schema_version == SCHEMA_VERSION => Ok(f),
            Ok(f) => Err(format!(
                "schema_version {} is not supported (expected {SCHEMA_VERSION})",
                f.schema_version
            )),
            Err(e) => Err(format!("line {} column {}: {e}", e.line(), e.column())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CD: Duration = Duration::from_secs(300);

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }
    fn failed() -> Event {
        Event::new(Kind::UnitFailed, Severity::Error, "w failed").unit("w.service")
    }
    fn restarted() -> Event {
        Event::new(Kind::UnitRestarted, Severity::Error, "restarted w").unit("w.service")
    }
    fn recovered() -> Event {
        Event::new(Kind::UnitRecovered, Severity::Info, "w back").unit("w.service")
    }
    fn sent(v: &Verdict) -> bool {
        matches!(v, Verdict::Send { .. })
    }

    #[test]
    fn a_crash_loop_sends_each_kind_once_and_counts_the_rest() {
        let mut s = ChannelState::default();
        let mut out = Vec::new();
        for i in 0..5 {
            let base = i * 10;
            for (dt, e) in [(0, failed()), (1, restarted()), (2, recovered())] {
                if sent(&s.decide(&e, t(base + dt), CD)) {
                    out.push(e.kind);
                }
            }
        }
        assert_eq!(
            out,
            [Kind::UnitFailed, Kind::UnitRestarted, Kind::UnitRecovered]
        );
        // The last word was "recovered", which is true: nothing owed.
        assert!(s.take_owed(t(1000), CD).is_empty());
        // The next failure after the cooldown carries the count.
        match s.decide(&failed(), t(400), CD) {
            Verdict::Send { suppressed, since } => {
                assert_eq!(suppressed, 4);
                assert_eq!(since, Some(t(10)));
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_resolution_goes_out_at_once_after_a_problem_was_sent() {
        let mut s = ChannelState::default();
        assert!(sent(&s.decide(&recovered(), t(0), CD)));
        assert!(sent(&s.decide(&failed(), t(1), CD)));
        // Within the cooldown of the earlier "recovered", yet sent: the
        // person was told of the failure.
        assert!(sent(&s.decide(&recovered(), t(2), CD)));
        assert!(!s.is_open("w.service"));
    }

    #[test]
    fn a_problem_held_back_after_a_resolution_is_owed() {
        let mut s = ChannelState::default();
        assert!(sent(&s.decide(&failed(), t(0), CD)));
        assert!(sent(&s.decide(&recovered(), t(5), CD)));
        assert!(!sent(&s.decide(&failed(), t(10), CD)));
        assert!(!sent(&s.decide(&failed(), t(20), CD)));
        assert_eq!(s.next_owed(CD), Some(t(300)));
        assert!(s.take_owed(t(299), CD).is_empty());
        let owed = s.take_owed(t(300), CD);
        assert_eq!(owed.len(), 1);
        assert_eq!(owed[0].held.at, Timestamp(t(20)));
        assert_eq!(owed[0].suppressed, 1, "one more besides the one sent");
        assert!(s.is_open("w.service"));
        // Sent now: the same kind waits a full cooldown again.
        assert!(!sent(&s.decide(&failed(), t(301), CD)));
    }

    #[test]
    fn a_resolution_cancels_what_was_owed() {
        let mut s = ChannelState::default();
        s.decide(&failed(), t(0), CD);
        s.decide(&recovered(), t(5), CD);
        s.decide(&failed(), t(10), CD);
        s.decide(&recovered(), t(12), CD);
        assert!(s.take_owed(t(1000), CD).is_empty());
    }

    #[test]
    fn a_problem_sent_settles_what_was_owed() {
        let mut s = ChannelState::default();
        s.decide(&failed(), t(0), CD);
        s.decide(&recovered(), t(5), CD);
        assert!(!sent(&s.decide(&failed(), t(10), CD)));
        let limit = Event::new(Kind::RestartLimit, Severity::Critical, "limit").unit("w.service");
        assert!(sent(&s.decide(&limit, t(11), CD)));
        assert!(s.take_owed(t(1000), CD).is_empty());
        // The count still rides on the next failure sent.
        assert_eq!(
            s.decide(&failed(), t(1001), CD),
            Verdict::Send {
                suppressed: 1,
                since: Some(t(10))
            }
        );
    }

    #[test]
    fn severities_and_subjects_are_separate_keys() {
        let mut s = ChannelState::default();
        let warn =
            Event::new(Kind::CheckChanged, Severity::Warning, "disk 85%").check("disk:/:usage");
        let fail =
            Event::new(Kind::CheckChanged, Severity::Error, "disk 95%").check("disk:/:usage");
        let other = Event::new(Kind::CheckChanged, Severity::Warning, "x").check("disk:/var:usage");
        assert!(sent(&s.decide(&warn, t(0), CD)));
        assert!(
            sent(&s.decide(&fail, t(1), CD)),
            "escalation waits for nobody"
        );
        assert!(sent(&s.decide(&other, t(2), CD)));
        assert!(!sent(&s.decide(&warn, t(3), CD)));
        let pass = Event::new(Kind::CheckChanged, Severity::Info, "ok").check("disk:/:usage");
        assert!(sent(&s.decide(&pass, t(4), CD)));
        assert_eq!(
            subject_of_key("disk:/my dir:usage check-changed info"),
            "disk:/my dir:usage"
        );
    }

    #[test]
    fn state_round_trips_and_prunes() {
        let mut s = ChannelState::default();
        s.decide(&failed(), t(0), CD);
        s.decide(&recovered(), t(1), CD);
        s.decide(&failed(), t(2), CD);
        let mut f = StateFile {
            schema_version: SCHEMA_VERSION,
            ..Default::default()
        };
        f.channels.insert("discord".into(), s.clone());
        let json = serde_json::to_vec(&f).unwrap();
        let back = StateFile::parse(&json).unwrap();
        assert_eq!(back.channels["discord"], s);
        s.prune(t(10_000), CD);
        assert_eq!(s.keys.len(), 1, "the owed failure stays: {:?}", s.keys);
        assert!(StateFile::parse(b"{\"schema_version\": 9}").is_err());
        let e = StateFile::parse(b"{\"schema_version\": 1, \"channels\": 3}").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}

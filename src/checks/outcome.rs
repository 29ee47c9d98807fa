//! What a check's run produces and how it is judged: the status, the
//! figures measured (for /metrics and OTLP), the outcome of one run and the
//! result as status.json carries it, and the grading of a figure against
//! its thresholds.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The three states of the health+json draft, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
    /// The CLI's exit code for this status.
    pub fn exit_code(self) -> i32 {
        self as i32
    }
}

/// A figure a check measured, named for export. `/metrics` shows it as
/// `unitwatch_<name>{labels}` and the OTLP export under the name its kind's
/// [`MetricDoc`] gives; neither parses keys or knows the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The metric's name after `unitwatch_`, in base units
    /// (`probe_duration_seconds`, `disk_used_ratio`).
    pub name: Text,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    pub value: f64,
}

impl Measurement {
    pub fn new(name: &'static str, value: f64) -> Self {
        Measurement {
            name: Cow::Borrowed(name),
            labels: Labels::default(),
            value,
        }
    }
    /// A label; a value given as a [`Shared`] name (a unit's) is shared,
    /// not copied.
    pub fn label(mut self, k: &'static str, v: impl Into<Shared>) -> Self {
        self.labels.insert(Cow::Borrowed(k), v.into());
        self
    }
}

/// A measurement's labels: a few pairs, kept sorted by name, serialized
/// as the map they are. Not a `BTreeMap`, whose first node holds room for
/// 11 pairs (at 2,000 units with every resource key on, 12,000 one-label
/// measurements kept about 550 bytes each in their maps), and one pair,
/// the common case (a unit's name), held in place rather than in a block
/// of the heap: 14,000 such blocks a sweep at 2,000 units, made and freed.
/// A value is shared: most are the unit's name, which its checks share.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels(Pairs);

#[derive(Debug, Clone, Default, PartialEq)]
enum Pairs {
    #[default]
    None,
    One((Text, Shared)),
    Many(Vec<(Text, Shared)>),
}

impl Labels {
    fn pairs(&self) -> &[(Text, Shared)] {
        match &self.0 {
            Pairs::None => &[],
            Pairs::One(p) => std::slice::from_ref(p),
            Pairs::Many(v) => v,
        }
    }

    /// Sets `k` to `v`.
    pub fn insert(&mut self, k: Text, v: Shared) {
        match &mut self.0 {
            Pairs::None => self.0 = Pairs::One((k, v)),
            Pairs::One(p) if p.0 == k => p.1 = v,
            Pairs::One(_) => {
                // A second name: both in a vector, with room for two.
                let mut all = Vec::with_capacity(2);
                if let Pairs::One(p) = std::mem::take(&mut self.0) {
                    all.push(p);
                }
                self.0 = Pairs::Many(all);
                self.insert(k, v);
            }
            Pairs::Many(all) => match all.binary_search_by(|(n, _)| n.as_ref().cmp(k.as_ref())) {
                Ok(i) => all[i].1 = v,
                Err(i) => all.insert(i, (k, v)),
            },
        }
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        let pairs = self.pairs();
        pairs
            .binary_search_by(|(n, _)| n.as_ref().cmp(k))
            .ok()
            .map(|i| &*pairs[i].1)
    }
    pub fn is_empty(&self) -> bool {
        self.pairs().is_empty()
    }
    /// By name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs().iter().map(|(k, v)| (k.as_ref(), &**v))
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = str;
    fn index(&self, k: &str) -> &str {
        self.get(k).unwrap_or_else(|| panic!("no label {k:?}"))
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        let mut l = Labels::default();
        for (k, v) in m {
            l.insert(Cow::Owned(k), v.into());
        }
        Ok(l)
    }
}

/// What one run of a check saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub observed_value: Value,
    pub observed_unit: Option<&'static str>,
    /// A constant ("not running") is not copied into each result.
    pub output: Option<Text>,
    pub measurements: Vec<Measurement>,
}

impl Outcome {
    pub fn new(status: Status, value: impl Into<Value>, unit: Option<&'static str>) -> Self {
        Outcome {
            status,
            observed_value: value.into(),
            observed_unit: unit,
            output: None,
            measurements: Vec::new(),
        }
    }
    pub fn with_output(mut self, output: impl Into<Text>) -> Self {
        self.output = Some(output.into());
        self
    }
    pub fn measure(mut self, m: Measurement) -> Self {
        // Room for this one: a first push makes room for four, and at
        // 2,000 units 12,000 results of one or two figures kept 1.6 MB
        // of room for figures they never had.
        self.measurements.reserve_exact(1);
        self.measurements.push(m);
        self
    }
    /// A check that could not measure: fail, no value, the reason said.
    pub fn error(output: impl Into<Text>) -> Self {
        Outcome::new(Status::Fail, Value::Null, None).with_output(output)
    }
}

/// Grades `value` against a warn and a crit threshold (inclusive).
pub fn grade(value: f64, warn: Option<f64>, crit: Option<f64>) -> Status {
    if crit.is_some_and(|c| value >= c) {
        Status::Fail
    } else if warn.is_some_and(|w| value >= w) {
        Status::Warn
    } else {
        Status::Pass
    }
}

/// Grades `value` against thresholds below which it is bad (inclusive).
pub fn grade_below(value: f64, warn: Option<f64>, crit: Option<f64>) -> Status {
    grade(-value, warn.map(|w| -w), crit.map(|c| -c))
}

/// The threshold a graded figure crossed: the critical one when it
/// failed, else the warning one (for saying which limit it was).
pub fn crossed<T>(status: Status, warn: Option<T>, crit: Option<T>) -> Option<T> {
    if status == Status::Fail {
        crit
    } else {
        warn
    }
}

/// Rounds a percentage for display and JSON.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Milliseconds of `d`, rounded to microseconds, for observed values.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// "250ms", "5s", "1m 30s".
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 || d >= Duration::from_secs(60) {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A name a result shares with its check, or a constant: no copy per
/// result (at 2,000 units with every resource key, 14,000 results a sweep
/// carried five or six small strings each).
pub type Shared = Arc<str>;

/// A constant, or a string read back from status.json.
pub type Text = Cow<'static, str>;

/// A moment to the millisecond, written as RFC 3339 ("2026-11-23T10:00:00.000Z"):
/// 8 bytes in a result, where its string was 24 and a block of the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    pub fn of(t: SystemTime) -> Self {
        Stamp(
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        )
    }
    pub fn system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        humantime::format_rfc3339_millis(self.system_time()).fmt(f)
    }
}

impl std::str::FromStr for Stamp {
    type Err = humantime::TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_rfc3339_weak(s).map(Stamp::of)
    }
}

impl Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time: {e}")))
    }
}

/// One check's result, as it goes into status.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub key: Shared,
    pub component: Shared,
    pub measurement: Text,
    pub component_type: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Shared>,
    pub status: Status,
    pub observed_value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Text>,
    /// When the check ran (RFC 3339 in status.json).
    pub time: Stamp,
    pub duration_us: u64,
    /// The figures it measured, for /metrics and the OTLP export.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    /// A probe that has not reported since the daemon (re)started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

impl CheckResult {
    /// The observed value for a person: "81.25 percent", "active", "-".
    pub fn display_value(&self) -> String {
        match (&self.observed_value, &self.observed_unit) {
            (Value::Null, _) => "-".to_string(),
            (Value::String(s), _) => s.clone(),
            (v, Some(u)) => format!("{v} {u}"),
            (v, None) => v.to_string(),
        }
    }
}

/// The worst of `statuses`; pass when there are none.
pub fn overall(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses.into_iter().max().unwrap_or(Status::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_sorted_and_serialize_as_a_map() {
        let m = Measurement::new("x", 1.0)
            .label("unit", "b.service")
            .label("check", "c")
            .label("unit", "a.service");
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(
            j,
            r#"{"name":"x","labels":{"check":"c","unit":"a.service"},"value":1.0}"#
        );
        let back: Measurement = serde_json::from_str(&j).unwrap();
        assert_eq!(back, m);
        assert_eq!(&back.labels["unit"], "a.service");
        assert_eq!(back.labels.get("nope"), None);
        let bare = serde_json::to_string(&Measurement::new("y", 2.0)).unwrap();
        assert_eq!(bare, r#"{"name":"y","value":2.0}"#);
        // One label, set twice: held in place, the last value kept.
        let one = Measurement::new("z", 3.0)
            .label("unit", "b.service")
            .label("unit", "a.service");
        let j = serde_json::to_string(&one).unwrap();
        assert_eq!(
            j,
            r#"{"name":"z","labels":{"unit":"a.service"},"value":3.0}"#
        );
        assert_eq!(serde_json::from_str::<Measurement>(&j).unwrap(), one);
        assert_eq!(one.labels.iter().count(), 1);
    }

    #[test]
    fn grading_is_inclusive_and_ordered() {
        assert_eq!(grade(79.9, Some(80.0), Some(90.0)), Status::Pass);
        assert_eq!(grade(80.0, Some(80.0), Some(90.0)), Status::Warn);
        assert_eq!(grade(90.0, Some(80.0), Some(90.0)), Status::Fail);
        assert_eq!(grade(99.0, None, None), Status::Pass);
        assert_eq!(grade_below(5.0, Some(10.0), Some(3.0)), Status::Warn);
        assert_eq!(grade_below(3.0, Some(10.0), Some(3.0)), Status::Fail);
        assert_eq!(grade_below(11.0, Some(10.0), Some(3.0)), Status::Pass);
        assert_eq!(Status::Fail.exit_code(), 2);
        assert_eq!(Status::Warn.exit_code(), 1);
    }
}

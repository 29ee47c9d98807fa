//! What the daemon keeps of each check's last run: a [`Found`], which
//! holds what the run found but not what the check is (its key, component,
//! measurement and unit, which its [`CheckDef`] holds). Joined with its
//! def it is the [`CheckResult`] status.json carries: [`Found::full`]
//! makes one, and [`Joined`] writes a list of pairs as the list of
//! results they stand for, byte for byte, without making them.
//!
//! Why: at 2,000 units with every resource key on, 14,000 results each
//! carried the five names of their check, 96 of a result's 224 bytes
//! (1.3 MB of the daemon's 21 MB).

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::{CheckDef, CheckResult, Measurement, Stamp, Status, Text};

/// A check's last run, as the daemon keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub status: Status,
    /// A probe that has not reported since the daemon (re)started.
    pub pending: bool,
    pub observed_value: Value,
    pub observed_unit: Option<Text>,
    pub output: Option<Text>,
    pub time: Stamp,
    pub duration_us: u64,
    pub measurements: Vec<Measurement>,
}

impl Found {
    /// The result it is, as check `def`'s.
    pub fn full(&self, def: &CheckDef) -> CheckResult {
        CheckResult {
            key: def.key.clone(),
            component: def.id.component.clone(),
            measurement: Text::Borrowed(def.id.measurement),
            component_type: Text::Borrowed(def.id.component_type),
            unit: def.unit.clone(),
            status: self.status,
            observed_value: self.observed_value.clone(),
            observed_unit: self.observed_unit.clone(),
            output: self.output.clone(),
            time: self.time,
            duration_us: self.duration_us,
            measurements: self.measurements.clone(),
            pending: self.pending,
        }
    }
}

/// The checks and what each last found (two lists of the same length),
/// written as the results they stand for.
#[derive(Clone, Copy)]
pub struct Joined<'a> {
    pub defs: &'a [CheckDef],
    pub found: &'a [Found],
}

impl<'a> Joined<'a> {
    pub fn new(defs: &'a [CheckDef], found: &'a [Found]) -> Self {
        debug_assert_eq!(defs.len(), found.len());
        Joined { defs, found }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a CheckDef, &'a Found)> {
        self.defs.iter().zip(self.found)
    }

    /// The results, made.
    pub fn to_vec(&self) -> Vec<CheckResult> {
        self.iter().map(|(d, f)| f.full(d)).collect()
    }
}

impl std::fmt::Debug for Joined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.found).finish()
    }
}

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.found.len()))?;
        for (d, f) in self.iter() {
            seq.serialize_element(&Pair(d, f))?;
        }
        seq.end()
    }
}

/// One result as [`CheckResult`]'s derived `Serialize` writes it: the
/// same fields in the same order, skipped where it skips them (a test
/// holds the two to the same bytes).
struct Pair<'a>(&'a CheckDef, &'a Found);

impl Serialize for Pair<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Pair(d, f) = self;
        let mut st = s.serialize_struct("CheckResult", 13)?;
        st.serialize_field("key", &*d.key)?;
        st.serialize_field("component", &*d.id.component)?;
        st.serialize_field("measurement", d.id.measurement)?;
        st.serialize_field("component_type", d.id.component_type)?;
        match &d.unit {
            Some(u) => st.serialize_field("unit", &**u)?,
            None => st.skip_field("unit")?,
        }
        st.serialize_field("status", &f.status)?;
        st.serialize_field("observed_value", &f.observed_value)?;
        match &f.observed_unit {
            Some(u) => st.serialize_field("observed_unit", u)?,
            None => st.skip_field("observed_unit")?,
        }
        match &f.output {
            Some(o) => st.serialize_field("output", o)?,
            None => st.skip_field("output")?,
        }
        st.serialize_field("time", &f.time)?;
        st.serialize_field("duration_us", &f.duration_us)?;
        if f.measurements.is_empty() {
            st.skip_field("measurements")?;
        } else {
            st.serialize_field("measurements", &f.measurements)?;
        }
        if f.pending {
            st.serialize_field("pending", &true)?;
        } else {
            st.skip_field("pending")?;
        }
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::checks::{CheckId, How, Inert, Measurement, Outcome};

    #[test]
    fn a_joined_list_is_written_as_the_results_it_stands_for() {
        let how = || How::State(std::sync::Arc::new(Inert));
        let unit = CheckDef::for_unit("a.service".into(), "fds", how(), Duration::from_secs(10));
        let plain = CheckDef::new(
            CheckId {
                component: "/var".into(),
                measurement: "utilization",
                component_type: "system",
            },
            how(),
            Duration::from_secs(10),
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_000_000_123);
        let defs = vec![unit.clone(), plain.clone(), unit, plain.clone()];
        let found = vec![
            // Every optional field there.
            defs[0].found(
                Outcome::new(Status::Warn, 81.25, Some("percent"))
                    .with_output(format!("81 of {} \"open\"", 100))
                    .measure(Measurement::new("unit_fds_open", 81.0).label("unit", "a.service")),
                t,
                Duration::from_micros(42),
            ),
            // None of them.
            defs[1].found(
                Outcome::new(Status::Pass, Value::Null, None),
                t,
                Duration::ZERO,
            ),
            defs[2].pending(t),
            plain.found(Outcome::error("down"), t, Duration::ZERO),
        ];
        let joined = Joined::new(&defs, &found);
        let made = joined.to_vec();
        assert_eq!(made[0].key.as_ref(), "a.service:fds");
        assert_eq!(made[0].unit.as_deref(), Some("a.service"));
        assert!(made[2].pending && made[1].unit.is_none());
        assert_eq!(
            serde_json::to_string(&joined).unwrap(),
            serde_json::to_string(&made).unwrap()
        );
        // And read back as the results they are.
        let back: Vec<CheckResult> =
            serde_json::from_str(&serde_json::to_string(&joined).unwrap()).unwrap();
        assert_eq!(back, made);
    }
}

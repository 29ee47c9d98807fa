//! What a check kind is: one [`Kind`] and one [`Build`] per file of this
//! directory, listed in [`KINDS`] and [`BUILDS`] (by one line in mod.rs).
//!
//! A kind says where its configuration lives (a section of its own, such
//! as `[[heartbeat]]`, or `[[check]] type = "tcp"`), documents its keys and
//! the figures it exports, validates its tables and builds its checks. The
//! configuration, the manual, `/metrics` and the OTLP export read the kinds
//! through this list; none of them knows a kind's fields.

use crate::config::{Bad, Config, KeySeg};
use crate::manual::KeyDoc;

use super::common::{Common, CommonProblems};
use super::{CheckDef, BUILDS, KINDS, METRICS};

/// A figure a kind exports.
#[derive(Debug, Clone, Copy)]
pub struct MetricDoc {
    /// The Prometheus name after `unitwatch_`, in base units.
    pub name: &'static str,
    pub help: &'static str,
    /// The OTLP instrument's name and UCUM unit.
    pub otlp: &'static str,
    pub otlp_unit: &'static str,
    /// The OTLP value is the Prometheus one times this (a ratio exported
    /// as `%` to Azure is 100).
    pub otlp_scale: f64,
}

/// The problems of a `[[check]]` table's keys, paths relative to it.
pub type Problems = Vec<(Vec<KeySeg>, String)>;

/// Reads and checks a `[[check]]` kind's own keys (the common ones taken
/// out), building nothing.
pub type CheckKeys = fn(&toml::Table, &Common, &Config) -> Result<(), Problems>;

/// How a kind is configured and validated.
pub enum Make {
    /// A section with a syntax of its own (`[[heartbeat]]`, `[memory]`):
    /// the Config's validation of it.
    Section { problems: fn(&Config, &mut Bad<'_>) },
    /// `[[check]] type = NAME`: the common keys of [`Common`], and the
    /// kind's own, which `check` reads and validates.
    Check {
        check: CheckKeys,
        about: &'static str,
    },
}

/// How a kind builds its checks, once the configuration is valid. Apart
/// from [`Kind`] (in `BUILD`), so that what only reads or validates a
/// configuration (unitwatch-http) links no kind's measuring code.
pub enum Build {
    Section(fn(&Config) -> Vec<CheckDef>),
    Check(fn(&toml::Table, &Common, &Config) -> Result<super::How, Problems>),
}

pub struct Kind {
    /// The `type` of a `[[check]]`, or the section's name.
    pub name: &'static str,
    /// Its keys in the manual (and so in the shipped config, which a test
    /// holds to them); for `[[check]]` kinds, the keys besides the common
    /// ones, and the only ones its tables may hold.
    pub keys: &'static [KeyDoc],
    pub metrics: &'static [MetricDoc],
    pub make: Make,
}

/// The `[[check]]` kinds, by `type`.
pub fn check_kind(name: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.name == name && matches!(k.make, Make::Check { .. }))
}

pub fn check_kind_names() -> Vec<&'static str> {
    KINDS
        .iter()
        .filter(|k| matches!(k.make, Make::Check { .. }))
        .map(|k| k.name)
        .collect()
}

/// Every kind's validation of its part of `config`.
pub fn section_problems(config: &Config, bad: &mut Bad<'_>) {
    for kind in KINDS {
        if let Make::Section { problems, .. } = kind.make {
            problems(config, bad);
        }
    }
    CommonProblems::check_all(config, bad);
}

/// Every check the configuration asks for, in the registry's order, then
/// the `[[check]]` tables in the file's.
pub fn build_all(config: &Config) -> Vec<CheckDef> {
    let mut out = Vec::new();
    for (_, build) in BUILDS {
        if let Build::Section(build) = build {
            out.extend(build(config));
        }
    }
    out.extend(super::common::build_checks(config));
    CheckDef::share_policies(&mut out);
    out
}

/// A `[[check]]` kind's builder, by `type`.
pub fn check_builder(name: &str) -> Option<&'static Build> {
    BUILDS
        .iter()
        .find(|(n, b)| *n == name && matches!(b, Build::Check(_)))
        .map(|(_, b)| b)
}

/// The documentation of an exported figure, by its Prometheus name.
pub fn metric_doc(name: &str) -> Option<&'static MetricDoc> {
    METRICS
        .iter()
        .flat_map(|m| m.iter())
        .find(|m| m.name == name)
}

/// Every exported figure of every kind, each once, in registry order.
pub fn all_metrics() -> Vec<&'static MetricDoc> {
    let mut out: Vec<&'static MetricDoc> = Vec::new();
    for m in METRICS.iter().flat_map(|m| m.iter()) {
        if !out.iter().any(|o| o.name == m.name) {
            out.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_metrics_are_unique_and_well_formed() {
        let mut names: Vec<_> = KINDS.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        for n in check_kind_names() {
            assert_eq!(check_kind(n).map(|k| k.name), Some(n));
        }
        for m in all_metrics() {
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            // Two kinds sharing a figure must agree on what it is.
            for k in KINDS.iter().flat_map(|k| k.metrics.iter()) {
                if k.name == m.name {
                    assert_eq!((k.help, k.otlp, k.otlp_unit), (m.help, m.otlp, m.otlp_unit));
                }
            }
        }
    }
}

//! Named, typed metric values: what an objective reports for a training step
//! and what an evaluation task reports for a held-out pass.
//!
//! Values are grouped by type (losses in nats, accuracies as fractions,
//! counts) and keyed by the name the reporter chose (`mlm`, `sop`,
//! `mlm@mask`, ...). Everything that shows metrics (the metrics log, progress
//! lines, `cloze eval`, `cloze plot`) walks these maps, so a new objective or
//! task shows up everywhere without anyone matching on its names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A set of named metric values, grouped by type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Mean losses (cross-entropy in nats unless the name says otherwise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub losses: BTreeMap<String, f64>,
    /// Accuracies, as fractions in `[0, 1]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accuracies: BTreeMap<String, f64>,
    /// How many items a value was computed over (masked tokens, rows, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a loss.
    pub fn loss(mut self, name: impl Into<String>, value: f64) -> Self {
        self.losses.insert(name.into(), value);
        self
    }

    /// Adds (or replaces) an accuracy.
    pub fn accuracy(mut self, name: impl Into<String>, value: f64) -> Self {
        self.accuracies.insert(name.into(), value);
        self
    }

    /// Adds (or replaces) a count.
    pub fn count(mut self, name: impl Into<String>, value: u64) -> Self {
        self.counts.insert(name.into(), value);
        self
    }

    /// Whether nothing has been reported.
    pub fn is_empty(&self) -> bool {
        self.losses.is_empty() && self.accuracies.is_empty() && self.counts.is_empty()
    }

    /// Perplexity `exp(loss)` of a reported loss.
    pub fn perplexity(&self, loss: &str) -> Option<f64> {
        self.losses.get(loss).map(|l| l.exp())
    }

    /// One line: every loss, then every accuracy (as a percentage), in name
    /// order, e.g. `loss mlm 2.310 sop 0.690  accuracy mlm 31.2% sop 55.0%`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.losses.is_empty() {
            let l: Vec<String> = self
                .losses
                .iter()
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect();
            parts.push(format!("loss {}", l.join(" ")));
        }
        if !self.accuracies.is_empty() {
            let a: Vec<String> = self
                .accuracies
                .iter()
                .map(|(k, v)| format!("{k} {:.1}%", v * 100.0))
                .collect();
            parts.push(format!("accuracy {}", a.join(" ")));
        }
        parts.join("  ")
    }
}

/// Running sums of reports, for means over micro-batches or log windows.
///
/// Each name is averaged over the reports that carried it, so a value
/// reported only by some batches is not diluted by the others.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportSums {
    losses: BTreeMap<String, (f64, u64)>,
    accuracies: BTreeMap<String, (f64, u64)>,
    counts: BTreeMap<String, u64>,
}

impl ReportSums {
    /// Adds one report.
    pub fn add(&mut self, r: &Report) {
        for (k, v) in &r.losses {
            let e = self.losses.entry(k.clone()).or_default();
            e.0 += v;
            e.1 += 1;
        }
        for (k, v) in &r.accuracies {
            let e = self.accuracies.entry(k.clone()).or_default();
            e.0 += v;
            e.1 += 1;
        }
        for (k, v) in &r.counts {
            *self.counts.entry(k.clone()).or_default() += v;
        }
    }

    /// Folds another set of sums into this one.
    pub fn merge(&mut self, other: &ReportSums) {
        for (k, (s, n)) in &other.losses {
            let e = self.losses.entry(k.clone()).or_default();
            e.0 += s;
            e.1 += n;
        }
        for (k, (s, n)) in &other.accuracies {
            let e = self.accuracies.entry(k.clone()).or_default();
            e.0 += s;
            e.1 += n;
        }
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_default() += v;
        }
    }

    /// The means of losses and accuracies, and the summed counts.
    pub fn mean(&self) -> Report {
        let mean = |m: &BTreeMap<String, (f64, u64)>| {
            m.iter()
                .map(|(k, (s, n))| (k.clone(), s / (*n).max(1) as f64))
                .collect()
        };
        Report {
            losses: mean(&self.losses),
            accuracies: mean(&self.accuracies),
            counts: self.counts.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_are_per_name_and_counts_add_up() {
        let mut s = ReportSums::default();
        s.add(
            &Report::new()
                .loss("mlm", 2.0)
                .accuracy("mlm", 0.5)
                .count("mlm", 10),
        );
        s.add(
            &Report::new()
                .loss("mlm", 4.0)
                .loss("sop", 0.6)
                .accuracy("mlm", 0.25)
                .count("mlm", 6),
        );
        let m = s.mean();
        assert_eq!(m.losses["mlm"], 3.0);
        // `sop` was reported once: its mean is that one value, not halved.
        assert_eq!(m.losses["sop"], 0.6);
        assert_eq!(m.accuracies["mlm"], 0.375);
        assert_eq!(m.counts["mlm"], 16);
        let mut t = ReportSums::default();
        t.merge(&s);
        t.merge(&s);
        assert_eq!(t.mean().losses["mlm"], 3.0);
        assert_eq!(t.mean().counts["mlm"], 32);
    }

    #[test]
    fn serialises_grouped_and_skips_empty_groups() {
        let r = Report::new().loss("mlm", 1.5).accuracy("sop", 0.75);
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(json, r#"{"losses":{"mlm":1.5},"accuracies":{"sop":0.75}}"#);
        let back: Report = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, r);
        assert_eq!(r.summary(), "loss mlm 1.500  accuracy sop 75.0%");
        assert!((r.perplexity("mlm").unwrap_or(0.0) - 1.5f64.exp()).abs() < 1e-12);
        assert!(Report::new().is_empty());
    }
}

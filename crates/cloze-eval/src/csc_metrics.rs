//! Sentence-level metrics of Chinese spelling correction (CSC), as the
//! literature reports them for the SIGHAN bake-offs, and the reader of
//! `source<TAB>target` test sets.
//!
//! # The convention
//!
//! Every sentence is a triple (source, gold target, system prediction) of the
//! same length in characters. Its *gold errors* are the positions where source
//! and target differ; the system's *changes* are the positions where source and
//! prediction differ. Counting over sentences:
//!
//! - a sentence is *changed* when the system changed at least one character,
//!   and *erroneous* when it has at least one gold error;
//! - **detection level**: a sentence is detected correctly when the set of
//!   changed positions equals the set of gold error positions (which characters
//!   were written there does not matter);
//! - **correction level**: a sentence is corrected correctly when additionally
//!   every changed character equals the gold character, i.e. prediction ==
//!   target;
//! - at each level, `TP` = changed sentences judged correct (a sentence with no
//!   gold error that the system left alone is *not* a TP),
//!   **precision** = `TP / changed sentences`, **recall** = `TP / erroneous
//!   sentences`, **F1** their harmonic mean, and **accuracy** = (sentences judged
//!   correct, unchanged error-free ones included) / all sentences;
//! - **false-positive rate** = error-free sentences the system changed / all
//!   error-free sentences (the same at both levels).
//!
//! A ratio whose denominator is zero is reported as 0. So partial work counts
//! as wrong: finding one of two errors, or finding both but correcting one
//! wrongly, is a changed sentence that is not a TP (it lowers precision) and an
//! erroneous sentence that is not a TP (it lowers recall).
//!
//! This is the convention of Tseng et al. 2015 ("Introduction to SIGHAN 2015
//! Bake-off for Chinese Spelling Check": detection = "all locations of incorrect
//! characters in a given passage should be completely identical with the gold
//! standard", correction = "all locations and corresponding corrections"), as
//! implemented by the sentence-level scripts of SpellGCN and ReaLiSe
//! (`sent_metric_detect` / `sent_metric_correct`, precision over sentences with
//! a prediction, recall over sentences with a gold error) that CSC papers since
//! 2020 report. It is *not* pycorrector's `eval_sighan2015_by_model`, whose
//! precision counts a wrongly changed erroneous sentence as neither TP nor FP
//! (only error-free sentences can be its false positives), so its precision is
//! higher than this one for the same output.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cloze_core::Report;
use serde::Serialize;

use crate::{Error, Result};

/// Precision, recall, F1 and accuracy at one level (detection or correction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LevelScores {
    /// Sentences judged correct / all sentences.
    pub accuracy: f64,
    /// TP / changed sentences.
    pub precision: f64,
    /// TP / erroneous sentences.
    pub recall: f64,
    /// `2 P R / (P + R)`, 0 when both are 0.
    pub f1: f64,
    /// Changed sentences judged correct.
    pub true_positives: u64,
}

/// The finished sentence-level metrics (see the module documentation for the
/// exact convention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CscMetrics {
    /// Sentences scored.
    pub sentences: u64,
    /// Sentences with at least one gold error.
    pub erroneous: u64,
    /// Sentences the system changed.
    pub changed: u64,
    /// Error-free sentences the system changed.
    pub false_alarms: u64,
    /// `false_alarms / error-free sentences`.
    pub false_positive_rate: f64,
    /// Positions the system must find exactly.
    pub detection: LevelScores,
    /// Positions and characters the system must get exactly.
    pub correction: LevelScores,
}

impl CscMetrics {
    /// The values as a [`Report`]: accuracies `detect.{accuracy,precision,recall,f1}`,
    /// `correct.{...}` and `false_positive_rate`, counts `sentences`, `erroneous`,
    /// `changed`, `false_alarms`.
    pub fn report(&self) -> Report {
        let mut r = Report::new();
        for (level, s) in [("detect", &self.detection), ("correct", &self.correction)] {
            r = r
                .accuracy(format!("{level}.accuracy"), s.accuracy)
                .accuracy(format!("{level}.precision"), s.precision)
                .accuracy(format!("{level}.recall"), s.recall)
                .accuracy(format!("{level}.f1"), s.f1);
        }
        r.accuracy("false_positive_rate", self.false_positive_rate)
            .count("sentences", self.sentences)
            .count("erroneous", self.erroneous)
            .count("changed", self.changed)
            .count("false_alarms", self.false_alarms)
    }
}

/// Running counts over scored sentences; [`CscCounts::metrics`] finishes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CscCounts {
    /// Sentences added.
    pub sentences: u64,
    /// Sentences with at least one gold error.
    pub erroneous: u64,
    /// Sentences the system changed.
    pub changed: u64,
    /// Error-free sentences the system changed.
    pub false_alarms: u64,
    /// Sentences whose changed positions equal the gold error positions
    /// (unchanged error-free sentences included).
    pub detection_hits: u64,
    /// Changed sentences among `detection_hits`.
    pub detection_tp: u64,
    /// Sentences whose prediction equals the target (unchanged error-free
    /// sentences included).
    pub correction_hits: u64,
    /// Changed sentences among `correction_hits`.
    pub correction_tp: u64,
}

impl CscCounts {
    /// Adds sentence `index` (0-based, for messages). The three strings must
    /// have the same number of characters: otherwise
    /// [`Error::UnalignedPrediction`] naming the sentence and the side.
    pub fn add(
        &mut self,
        index: usize,
        source: &str,
        target: &str,
        prediction: &str,
    ) -> Result<()> {
        let src: Vec<char> = source.chars().collect();
        let tgt: Vec<char> = target.chars().collect();
        let pred: Vec<char> = prediction.chars().collect();
        for (side, other) in [("target", &tgt), ("prediction", &pred)] {
            if other.len() != src.len() {
                return Err(Error::UnalignedPrediction {
                    index,
                    side,
                    source_chars: src.len(),
                    other_chars: other.len(),
                });
            }
        }
        let diff = |other: &[char]| -> BTreeSet<usize> {
            (0..src.len()).filter(|&i| src[i] != other[i]).collect()
        };
        let gold = diff(&tgt);
        let changed = diff(&pred);
        self.sentences += 1;
        self.erroneous += u64::from(!gold.is_empty());
        self.changed += u64::from(!changed.is_empty());
        self.false_alarms += u64::from(gold.is_empty() && !changed.is_empty());
        if gold == changed {
            self.detection_hits += 1;
            self.detection_tp += u64::from(!changed.is_empty());
            // Same positions; the characters at them must match the gold ones.
            if pred == tgt {
                self.correction_hits += 1;
                self.correction_tp += u64::from(!changed.is_empty());
            }
        }
        Ok(())
    }

    /// The finished metrics.
    pub fn metrics(&self) -> CscMetrics {
        let ratio = |num: u64, den: u64| {
            if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            }
        };
        let level = |hits: u64, tp: u64| {
            let precision = ratio(tp, self.changed);
            let recall = ratio(tp, self.erroneous);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            LevelScores {
                accuracy: ratio(hits, self.sentences),
                precision,
                recall,
                f1,
                true_positives: tp,
            }
        };
        CscMetrics {
            sentences: self.sentences,
            erroneous: self.erroneous,
            changed: self.changed,
            false_alarms: self.false_alarms,
            false_positive_rate: ratio(
                self.false_alarms,
                self.sentences.saturating_sub(self.erroneous),
            ),
            detection: level(self.detection_hits, self.detection_tp),
            correction: level(self.correction_hits, self.correction_tp),
        }
    }
}

/// Scores `predictions[i]` against `pairs[i]`.
pub fn csc_metrics(pairs: &[CscPair], predictions: &[String]) -> Result<CscMetrics> {
    if pairs.len() != predictions.len() {
        return Err(Error::InvalidOption {
            name: "predictions",
            reason: format!(
                "{} predictions for {} sentence pairs",
                predictions.len(),
                pairs.len()
            ),
        });
    }
    let mut counts = CscCounts::default();
    for (i, (p, pred)) in pairs.iter().zip(predictions).enumerate() {
        counts.add(i, &p.source, &p.target, pred)?;
    }
    Ok(counts.metrics())
}

/// One line of a CSC test set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CscPair {
    /// Line number in the file, from 1.
    pub line: usize,
    /// The sentence as written, possibly with errors.
    pub source: String,
    /// The gold correction, as many characters as `source`.
    pub target: String,
}

/// A `source<TAB>target` test set (SIGHAN as pycorrector ships it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CscDataset {
    /// The file read.
    pub path: PathBuf,
    /// The aligned pairs, in file order.
    pub pairs: Vec<CscPair>,
    /// Line numbers of pairs left out because their sides differ in length
    /// (only by [`CscDataset::read_skipping_unaligned`]).
    pub skipped: Vec<usize>,
}

impl CscDataset {
    /// Reads `path`: one `source<TAB>target` pair per line; blank lines and
    /// lines starting with `#` are skipped, surrounding white space is trimmed.
    /// A line without exactly one tab is [`Error::CscData`], a pair whose sides
    /// differ in length in characters is [`Error::UnalignedPair`], both naming
    /// the file and the line; a file with no pair is [`Error::CscData`] too.
    pub fn read(path: &Path) -> Result<Self> {
        Self::read_with(path, false)
    }

    /// [`Self::read`], but a pair whose sides differ in length is left out and
    /// its line recorded in [`Self::skipped`] instead of failing (a
    /// length-preserving corrector can never produce such a target).
    pub fn read_skipping_unaligned(path: &Path) -> Result<Self> {
        Self::read_with(path, true)
    }

    fn read_with(path: &Path, skip_unaligned: bool) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut pairs = Vec::new();
        let mut skipped = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let bad = |reason: String| Error::CscData {
                path: path.to_path_buf(),
                line: Some(line),
                reason,
            };
            let (source, target) = l
                .split_once('\t')
                .ok_or_else(|| bad("expected `source<TAB>target`, found no tab".to_string()))?;
            if target.contains('\t') {
                return Err(bad(
                    "expected `source<TAB>target`, found more than one tab".to_string()
                ));
            }
            let (s, t) = (source.chars().count(), target.chars().count());
            if s != t {
                if skip_unaligned {
                    skipped.push(line);
                    continue;
                }
                return Err(Error::UnalignedPair {
                    path: path.to_path_buf(),
                    line,
                    source_chars: s,
                    target_chars: t,
                });
            }
            pairs.push(CscPair {
                line,
                source: source.to_string(),
                target: target.to_string(),
            });
        }
        if pairs.is_empty() {
            return Err(Error::CscData {
                path: path.to_path_buf(),
                line: None,
                reason: "no `source<TAB>target` pair in the file".to_string(),
            });
        }
        Ok(CscDataset {
            path: path.to_path_buf(),
            pairs,
            skipped,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The hand-checked table: (source, target, prediction, what it is).
    ///
    /// | # | case                                   | gold pos | changed pos | det. hit | corr. hit |
    /// |---|----------------------------------------|----------|-------------|----------|-----------|
    /// | 0 | both errors found and corrected        | {1, 4}   | {1, 4}      | TP       | TP        |
    /// | 1 | right position, wrong character        | {2}      | {2}         | TP       | no        |
    /// | 2 | false positive on an error-free line   | {}       | {0}         | no       | no        |
    /// | 3 | error missed (nothing changed)         | {3}      | {}          | no       | no        |
    /// | 4 | only one of two errors found           | {0, 5}   | {0}         | no       | no        |
    /// | 5 | error-free line left alone             | {}       | {}          | hit, TN  | hit, TN   |
    /// | 6 | right error plus a spurious change     | {1}      | {1, 2}      | no       | no        |
    ///
    /// Changed sentences: 0, 1, 2, 4, 6 = 5. Erroneous: 0, 1, 3, 4, 6 = 5.
    /// Error-free: 2, 5 = 2, of which 1 changed.
    /// Detection: TP = 2 (0, 1), hits = 3 (0, 1, 5): P = 2/5, R = 2/5, F1 = 2/5, A = 3/7.
    /// Correction: TP = 1 (0), hits = 2 (0, 5): P = 1/5, R = 1/5, F1 = 1/5, A = 2/7.
    /// FPR = 1/2.
    const TABLE: &[(&str, &str, &str)] = &[
        ("我门去学小", "我们去学校", "我们去学校"),
        ("他在完游戏", "他在玩游戏", "他在晚游戏"),
        ("今天天气很好", "今天天气很好", "金天天气很好"),
        ("我很高心", "我很高兴", "我很高心"),
        ("在家里做功客", "再家里做功课", "再家里做功客"),
        ("谢谢你", "谢谢你", "谢谢你"),
        ("我门好", "我们好", "我们号"),
    ];

    fn counts() -> CscCounts {
        let mut c = CscCounts::default();
        for (i, (s, t, p)) in TABLE.iter().enumerate() {
            c.add(i, s, t, p).unwrap();
        }
        c
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn the_table_gives_the_hand_checked_counts() {
        // Row 4's target fixes positions 0 and 5 (在->再, 客->课); the
        // prediction fixes position 0 only.
        let c = counts();
        assert_eq!(c.sentences, 7);
        assert_eq!(c.erroneous, 5);
        assert_eq!(c.changed, 5);
        assert_eq!(c.false_alarms, 1);
        assert_eq!((c.detection_tp, c.detection_hits), (2, 3));
        assert_eq!((c.correction_tp, c.correction_hits), (1, 2));
    }

    #[test]
    fn the_table_gives_the_hand_checked_metrics() {
        let m = counts().metrics();
        assert!(close(m.detection.precision, 2.0 / 5.0), "{m:?}");
        assert!(close(m.detection.recall, 2.0 / 5.0));
        assert!(close(m.detection.f1, 2.0 / 5.0));
        assert!(close(m.detection.accuracy, 3.0 / 7.0));
        assert!(close(m.correction.precision, 1.0 / 5.0));
        assert!(close(m.correction.recall, 1.0 / 5.0));
        assert!(close(m.correction.f1, 1.0 / 5.0));
        assert!(close(m.correction.accuracy, 2.0 / 7.0));
        assert!(close(m.false_positive_rate, 0.5));
        let r = m.report();
        assert!(close(r.accuracies["detect.precision"], 0.4));
        assert!(close(r.accuracies["correct.f1"], 0.2));
        assert_eq!(r.counts["false_alarms"], 1);
    }

    #[test]
    fn each_case_on_its_own() {
        let one = |k: usize| {
            let (s, t, p) = TABLE[k];
            let mut c = CscCounts::default();
            c.add(0, s, t, p).unwrap();
            c
        };
        // Right position, wrong character: a detection TP, not a correction TP.
        let c = one(1);
        assert_eq!((c.detection_tp, c.correction_tp), (1, 0));
        // A false positive: changed, error-free, no hit at either level.
        let c = one(2);
        assert_eq!((c.changed, c.erroneous, c.false_alarms), (1, 0, 1));
        assert_eq!((c.detection_hits, c.correction_hits), (0, 0));
        // A missed error: erroneous, unchanged, recall 0 and precision 0 (no
        // changed sentence).
        let m = one(3).metrics();
        assert_eq!((m.erroneous, m.changed), (1, 0));
        assert_eq!((m.detection.recall, m.detection.precision), (0.0, 0.0));
        // Half the errors found: wrong at sentence level for both levels.
        let m = one(4).metrics();
        assert_eq!(
            (m.detection.true_positives, m.correction.true_positives),
            (0, 0)
        );
        assert_eq!(m.detection.precision, 0.0);
        // An error-free sentence left alone is a hit but not a TP.
        let m = one(5).metrics();
        assert_eq!((m.detection.accuracy, m.detection.precision), (1.0, 0.0));
        assert_eq!(m.false_positive_rate, 0.0);
    }

    #[test]
    fn a_prediction_of_another_length_is_an_error_naming_the_sentence() {
        let mut c = CscCounts::default();
        let err = c.add(4, "我门", "我们", "我们好").unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnalignedPrediction {
                    index: 4,
                    side: "prediction",
                    source_chars: 2,
                    other_chars: 3
                }
            ),
            "{err:?}"
        );
        assert_eq!(c, CscCounts::default(), "nothing counted");
        let pairs = [CscPair {
            line: 1,
            source: "我门".into(),
            target: "我们".into(),
        }];
        assert!(csc_metrics(&pairs, &[]).is_err());
        let m = csc_metrics(&pairs, &["我们".to_string()]).unwrap();
        assert_eq!(m.correction.f1, 1.0);
    }

    #[test]
    fn test_sets_are_read_with_file_and_line_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tsv");
        std::fs::write(&path, "# comment\n我门\t我们\n\n你好\t你好\n").unwrap();
        let d = CscDataset::read(&path).unwrap();
        assert_eq!(d.pairs.len(), 2);
        assert_eq!((d.pairs[0].line, d.pairs[1].line), (2, 4));
        assert_eq!(d.pairs[0].target, "我们");

        std::fs::write(&path, "我门\t我们\n我门好\t我们\n").unwrap();
        let err = CscDataset::read(&path).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnalignedPair {
                    line: 2,
                    source_chars: 3,
                    target_chars: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("t.tsv") && msg.contains("line 2"), "{msg}");
        let d = CscDataset::read_skipping_unaligned(&path).unwrap();
        assert_eq!((d.pairs.len(), d.skipped.clone()), (1, vec![2]));

        std::fs::write(&path, "我门\t我们\n我门我们\n").unwrap();
        let msg = CscDataset::read(&path).unwrap_err().to_string();
        assert!(msg.contains("line 2") && msg.contains("no tab"), "{msg}");
        std::fs::write(&path, "# only a comment\n").unwrap();
        assert!(matches!(
            CscDataset::read(&path),
            Err(Error::CscData { .. })
        ));
    }
}

//! The run's metrics as JSON lines (`metrics.jsonl` in the run directory).

use std::io::Write;
use std::path::{Path, PathBuf};

use cloze_core::Report;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricsRecord {
    /// Training statistics averaged over the last `log_every` steps.
    Train(TrainMetrics),
    /// A held-out evaluation.
    Eval(EvalRecord),
}

impl MetricsRecord {
    /// The optimiser step the record was taken at.
    pub fn step(&self) -> u64 {
        match self {
            MetricsRecord::Train(t) => t.step,
            MetricsRecord::Eval(e) => e.step,
        }
    }
}

/// Training statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainMetrics {
    /// Optimiser steps completed.
    pub step: u64,
    /// Mean total (weighted) loss over the window.
    pub loss: f64,
    /// What the objective reported (its named losses and accuracies), as
    /// means over the window; counts are summed.
    #[serde(flatten)]
    pub report: Report,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Gradient norm before clipping, last step.
    pub grad_norm: f64,
    /// Non-padding tokens per second over the window.
    pub tokens_per_s: f64,
    /// Non-padding tokens seen since the start of the run.
    pub tokens_seen: u64,
    /// Wall-clock seconds of training (excluding evaluation) since the start of this process.
    pub elapsed_s: f64,
    /// Batches skipped for a non-finite loss so far.
    pub skipped: u64,
    /// Data-parallel runs: mean seconds per step spent summing gradients
    /// across the ranks (the allreduce, waiting for the slowest rank included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allreduce_s: Option<f64>,
}

/// An evaluation result at a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Optimiser steps completed.
    pub step: u64,
    /// What the held-out task reported.
    #[serde(flatten)]
    pub report: Report,
}

/// Appends records to `metrics.jsonl`.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

/// The metrics file of a run directory.
pub fn metrics_path(run_dir: &Path) -> PathBuf {
    run_dir.join("metrics.jsonl")
}

impl MetricsLog {
    /// Opens the log for appending, first dropping records after `keep_through_step`
    /// (those belong to steps a resumed run will redo).
    pub fn open(run_dir: &Path, keep_through_step: Option<u64>) -> Result<Self> {
        let path = metrics_path(run_dir);
        if let Some(keep) = keep_through_step {
            if path.exists() {
                let kept: Vec<String> = read_records(&path)?
                    .into_iter()
                    .filter(|r| r.step() <= keep)
                    .map(|r| serde_json::to_string(&r))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|source| Error::Json {
                        path: path.clone(),
                        source,
                    })?;
                let tmp = path.with_extension("jsonl.tmp");
                let mut text = kept.join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                std::fs::write(&tmp, text).map_err(io_err("writing", &tmp))?;
                std::fs::rename(&tmp, &path).map_err(io_err("renaming", &path))?;
            }
        } else if path.exists() {
            std::fs::remove_file(&path).map_err(io_err("removing", &path))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        Ok(Self { path, file })
    }

    /// Appends one record and flushes it.
    pub fn write(&mut self, record: &MetricsRecord) -> Result<()> {
        let mut line = serde_json::to_string(record).map_err(|source| Error::Json {
            path: self.path.clone(),
            source,
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(io_err("appending to", &self.path))?;
        self.file.flush().map_err(io_err("flushing", &self.path))
    }
}

/// Reads every record of a metrics file (lines that do not parse are an error).
pub fn read_records(path: &Path) -> Result<Vec<MetricsRecord>> {
    let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_record(l).map_err(|source| Error::BadMetricsLine {
                path: path.to_owned(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Parses one line of `metrics.jsonl`, upgrading records written by older
/// versions.
pub fn parse_record(line: &str) -> serde_json::Result<MetricsRecord> {
    serde_json::from_str(line)
        .map(upgrade_legacy)
        .and_then(serde_json::from_value)
}

/// Rewrites a record written before objectives reported named values (fixed
/// `mlm_loss`/`pair_loss` fields on train lines, the MLM metrics' fields on
/// eval lines) into today's grouped form, so runs started by an older version
/// still resume and plot. Records in today's form pass unchanged.
fn upgrade_legacy(mut v: serde_json::Value) -> serde_json::Value {
    use serde_json::{Map, Value};
    let Some(obj) = v.as_object_mut() else {
        return v;
    };
    if obj.contains_key("losses") || obj.contains_key("accuracies") {
        return v;
    }
    let mut losses = Map::new();
    let mut accuracies = Map::new();
    let mut counts = Map::new();
    let mut take = |from: &str, to: &mut Map<String, Value>, name: &str| {
        if let Some(x) = obj.remove(from).filter(|x| !x.is_null()) {
            to.insert(name.to_owned(), x);
        }
    };
    take("mlm_loss", &mut losses, "mlm");
    take("pair_loss", &mut losses, "pair");
    take("mask_token_loss", &mut losses, "mlm@mask");
    take("mask_token_baseline_loss", &mut losses, "unigram@mask");
    take("accuracy", &mut accuracies, "mlm");
    take("mask_token_accuracy", &mut accuracies, "mlm@mask");
    take("unigram_baseline_accuracy", &mut accuracies, "unigram");
    take(
        "mask_token_baseline_accuracy",
        &mut accuracies,
        "unigram@mask",
    );
    take("pair_accuracy", &mut accuracies, "pair");
    take("masked_tokens", &mut counts, "mlm");
    take("mask_tokens", &mut counts, "mlm@mask");
    obj.remove("perplexity");
    for (key, group) in [
        ("losses", losses),
        ("accuracies", accuracies),
        ("counts", counts),
    ] {
        if !group.is_empty() {
            obj.insert(key.to_owned(), Value::Object(group));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_record_is_reported_with_its_line_number() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("creating", Path::new("tmp")))?;
        let path = dir.path().join("metrics.jsonl");
        let good = |step: u64| {
            serde_json::to_string(&MetricsRecord::Train(TrainMetrics {
                step,
                loss: 1.0,
                report: Report::new().loss("mlm", 1.0),
                lr: 1e-3,
                grad_norm: 0.5,
                tokens_per_s: 10.0,
                tokens_seen: 100 * step,
                elapsed_s: 1.0,
                skipped: 0,
                allreduce_s: None,
            }))
        };
        let text = format!(
            "{}\n\n{}\n{{\"kind\": \"train\", \"step\": }}\n",
            good(1).map_err(|source| Error::Json {
                path: path.clone(),
                source
            })?,
            good(2).map_err(|source| Error::Json {
                path: path.clone(),
                source
            })?
        );
        std::fs::write(&path, text).map_err(io_err("writing", &path))?;
        match read_records(&path) {
            Err(Error::BadMetricsLine { line, .. }) => assert_eq!(line, 4),
            other => panic!("expected a bad line 4, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn records_of_older_versions_are_upgraded() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("creating", Path::new("tmp")))?;
        let path = dir.path().join("metrics.jsonl");
        let old = concat!(
            r#"{"kind":"train","step":5,"loss":3.0,"mlm_loss":2.5,"pair_loss":0.5,"lr":0.001,"#,
            r#""grad_norm":1.0,"tokens_per_s":10.0,"tokens_seen":50,"elapsed_s":1.0,"skipped":0}"#,
            "\n",
            r#"{"kind":"eval","step":5,"mlm_loss":2.0,"perplexity":7.39,"accuracy":0.25,"#,
            r#""masked_tokens":40,"pair_accuracy":null,"unigram_baseline_accuracy":0.1}"#,
            "\n"
        );
        std::fs::write(&path, old).map_err(io_err("writing", &path))?;
        let records = read_records(&path)?;
        let MetricsRecord::Train(t) = &records[0] else {
            panic!("a train record first")
        };
        assert_eq!(t.report.losses["mlm"], 2.5);
        assert_eq!(t.report.losses["pair"], 0.5);
        let MetricsRecord::Eval(e) = &records[1] else {
            panic!("an eval record second")
        };
        assert_eq!(e.report.losses["mlm"], 2.0);
        assert_eq!(e.report.accuracies["mlm"], 0.25);
        assert_eq!(e.report.accuracies["unigram"], 0.1);
        assert_eq!(e.report.counts["mlm"], 40);
        assert!(!e.report.accuracies.contains_key("pair"), "null is absent");
        Ok(())
    }
}

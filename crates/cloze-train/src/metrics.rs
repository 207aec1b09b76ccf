//! The run's metrics as JSON lines (`metrics.jsonl` in the run directory).

use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// Mean total loss over the window.
    pub loss: f64,
    /// Mean masked-LM loss over the window.
    pub mlm_loss: f64,
    /// Mean NSP/SOP loss over the window, if trained.
    pub pair_loss: Option<f64>,
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
}

/// An evaluation result at a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Optimiser steps completed.
    pub step: u64,
    /// The metrics.
    #[serde(flatten)]
    pub metrics: cloze_eval::mlm_eval::MlmEvalMetrics,
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
            serde_json::from_str(l).map_err(|source| Error::BadMetricsLine {
                path: path.to_owned(),
                line: i + 1,
                source,
            })
        })
        .collect()
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
                mlm_loss: 1.0,
                pair_loss: None,
                lr: 1e-3,
                grad_norm: 0.5,
                tokens_per_s: 10.0,
                tokens_seen: 100 * step,
                elapsed_s: 1.0,
                skipped: 0,
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
}

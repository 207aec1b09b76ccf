//! Fine-tuning: sequence and token classification over a pretrained encoder,
//! trained by the same [`Trainer`](crate::Trainer) loop as pretraining.
//!
//! The pieces, each in the slot the loop already has:
//! - [`FinetuneConfig`]: the run's settings (`finetune.toml` in the run
//!   directory), turned into the loop's [`LoopConfig`] by
//!   [`FinetuneConfig::loop_config`]; epochs become steps, an evaluation per
//!   epoch by default, early stopping after `eval.patience` evaluations
//!   without a better dev score.
//! - [`Classifier`]: HF's `BertForSequenceClassification` or
//!   `BertForTokenClassification` behind [`PretrainModel`]; the label names
//!   live in `config.json` (`id2label`/`label2id`), so a saved model loads in
//!   transformers' `AutoModelFor...` classes with its labels.
//! - [`ClassLoss`]: the two objectives (`sequence_classification`,
//!   `token_classification` in [`crate::objective::OBJECTIVES`]).
//! - [`LabelledSource`]: encoded examples (from `cloze-eval`'s
//!   `finetune_data`) as training batches in a seeded order per epoch.
//! - [`LabelledEval`]: the dev or test set as a [`HeldOut`] task: loss,
//!   accuracy, macro-F1 (sequences) or span P/R/F1 (tags); the best
//!   checkpoint is the one with the highest macro-F1 or span F1.
//! - [`predict`]: class probabilities for new inputs.

use std::path::{Path, PathBuf};

use cloze_core::Report;
use cloze_eval::finetune_data::{collate, EncodedExample};
use cloze_eval::metrics::{self, TagScheme};
use cloze_mask::batch::Batch;
use cloze_mask::IGNORED_LABEL;
use cloze_models::{BertConfig, BertForSequenceClassification, BertForTokenClassification};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

use crate::batch::{ModelOutput, PretrainModel, TensorBatch};
use crate::bert::model_input;
use crate::config::{
    CheckpointConfig, Decay, LoopConfig, ObjectiveConfig, OnNonFinite, OptimizerConfig, RunConfig,
    SavedConfig, ScheduleConfig,
};
use crate::error::{io_err, Error, Result};
use crate::objective::{accuracy, scalar, Losses, Objective};
use crate::trainer::{DataSource, HeldOut};

/// The file a fine-tuning run keeps its settings in.
pub const FINETUNE_CONFIG: &str = "finetune.toml";

/// What is predicted: one class per example or one per word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// One class per text or text pair (HF `BertForSequenceClassification`).
    Sequence,
    /// One class per word or character (HF `BertForTokenClassification`).
    Token,
    /// UniLM-v2 sequence-to-sequence generation (s2s-ft): the MLM head
    /// predicts each target token at its pseudo token (`crate::s2s`); the
    /// model stays an HF `BertForMaskedLM`.
    Seq2seq,
    /// MLMLM knowledge-graph link prediction (`crate::link`): the MLM head
    /// predicts an entity's tokens at a fully masked slot; the model stays
    /// an HF `BertForMaskedLM`.
    Link,
    /// PLATO-style dialogue (`crate::dialogue`): the MLM head predicts each
    /// response token from the context and the response before it, with
    /// role embeddings added to the encoder; the model stays an HF
    /// `BertForMaskedLM` (plus `role_embeddings`, which transformers ignores).
    Dialogue,
}

impl TaskKind {
    /// Whether the task trains the masked-LM model itself rather than a
    /// classifier head.
    pub fn is_masked_lm(self) -> bool {
        matches!(
            self,
            TaskKind::Seq2seq | TaskKind::Link | TaskKind::Dialogue
        )
    }

    /// The HF class of a model for this task.
    pub fn architecture(self) -> &'static str {
        match self {
            TaskKind::Sequence => "BertForSequenceClassification",
            TaskKind::Token => "BertForTokenClassification",
            TaskKind::Seq2seq | TaskKind::Link | TaskKind::Dialogue => "BertForMaskedLM",
        }
    }

    /// The objective that trains it.
    pub fn objective(self) -> &'static str {
        match self {
            TaskKind::Sequence => "sequence_classification",
            TaskKind::Token => "token_classification",
            TaskKind::Seq2seq => "seq2seq",
            TaskKind::Link => "mlm",
            TaskKind::Dialogue => "dialogue",
        }
    }

    /// The name its loss and accuracy are reported under.
    pub fn report_name(self) -> &'static str {
        match self {
            TaskKind::Sequence => "cls",
            TaskKind::Token => "tag",
            TaskKind::Seq2seq => "s2s",
            TaskKind::Link => "link",
            TaskKind::Dialogue => "response",
        }
    }
}

/// The whole configuration of a fine-tuning run (`finetune.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// Seed, threads, logging; `max_steps = 0` derives the length from `task.epochs`.
    pub run: RunConfig,
    /// The task, its files and labels.
    pub task: TaskConfig,
    /// AdamW (biases and LayerNorm weights without weight decay, as in pretraining).
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule; `task.warmup_ratio` sets the warm-up when above 0.
    pub schedule: ScheduleConfig,
    /// Batching.
    pub data: FinetuneDataConfig,
    /// Dev-set evaluation and early stopping.
    pub eval: FinetuneEvalConfig,
    /// Checkpoint retention (a checkpoint is written at every evaluation).
    pub checkpoint: CheckpointConfig,
    /// Row layout of `task.kind = "dialogue"`: roles, attention, lengths,
    /// context MLM (absent for other tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialogue: Option<cloze_mask::DialogueConfig>,
}

/// `[task]`: what is learnt from which files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Sequence or token classification.
    pub kind: TaskKind,
    /// The pretrained model directory (HF format, with `tokenizer.json`).
    pub base_model: PathBuf,
    /// Training examples (JSONL or TSV for sequences; JSONL or CoNLL for tokens).
    pub train: PathBuf,
    /// Development examples: evaluation, early stopping, the best checkpoint.
    #[serde(default)]
    pub dev: Option<PathBuf>,
    /// The label names in id order; filled from the training data when empty.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Longest input in tokens, `[CLS]`/`[SEP]` included.
    pub max_length: usize,
    /// Passes over the training data when `run.max_steps` is 0.
    pub epochs: f64,
    /// Warm-up as a fraction of all steps (overrides `schedule.warmup_steps` when > 0).
    #[serde(default)]
    pub warmup_ratio: f64,
}

/// `[data]`: batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneDataConfig {
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    #[serde(default = "one")]
    pub grad_accum: usize,
}

fn one() -> usize {
    1
}

/// `[eval]`: when the dev set is scored and when training stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneEvalConfig {
    /// Evaluate every this many steps; 0 = once per epoch.
    pub every_steps: u64,
    /// Examples per evaluation batch.
    pub batch_size: usize,
    /// Stop after this many evaluations without a better dev score; 0 never.
    pub patience: u64,
}

impl FinetuneConfig {
    /// Defaults for a task: 3 epochs at 5e-5 with 10% warm-up and linear
    /// decay, batches of 32, length 128, an evaluation per epoch, early
    /// stopping after 2 evaluations without a better dev score.
    pub fn new(kind: TaskKind, base_model: PathBuf, train: PathBuf, dev: Option<PathBuf>) -> Self {
        Self {
            run: RunConfig {
                seed: 42,
                threads: 2,
                max_steps: 0,
                log_every: 10,
                on_nonfinite: OnNonFinite::Stop,
                precision: cloze_models::Precision::Fp32,
            },
            task: TaskConfig {
                kind,
                base_model,
                train,
                dev,
                labels: Vec::new(),
                max_length: 128,
                epochs: 3.0,
                warmup_ratio: 0.1,
            },
            optimizer: OptimizerConfig {
                lr: 5e-5,
                weight_decay: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                max_grad_norm: 1.0,
                freeze: Vec::new(),
                layer_lr_decay: 1.0,
            },
            schedule: ScheduleConfig {
                warmup_steps: 0,
                decay: Decay::Linear,
                min_lr_ratio: 0.0,
            },
            data: FinetuneDataConfig {
                batch_size: 32,
                grad_accum: 1,
            },
            eval: FinetuneEvalConfig {
                every_steps: 0,
                batch_size: 64,
                patience: 2,
            },
            checkpoint: CheckpointConfig {
                every_steps: 0,
                keep_last: 1,
                keep_best: true,
            },
            dialogue: (kind == TaskKind::Dialogue).then(|| cloze_mask::DialogueConfig {
                max_context_len: 128,
                ..cloze_mask::DialogueConfig::default()
            }),
        }
    }

    /// Parses `finetune.toml` text.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| Error::ConfigParse {
            path: origin.to_owned(),
            source: Box::new(e),
        })?;
        Ok(cfg)
    }

    /// Reads a run's `finetune.toml`.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(FINETUNE_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
        Self::from_toml(&text, &path)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Applies `key=value` overrides with dotted keys (`optimizer.lr=3e-5`),
    /// as `cloze pretrain --set` does; unknown keys are refused.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let mut doc = toml::Table::try_from(self)?;
        crate::config::apply_overrides(&mut doc, overrides)?;
        let origin = format!("overrides `{}`", overrides.join(" "));
        Self::from_toml(&toml::to_string(&doc)?, Path::new(&origin))
    }

    /// Optimiser steps in one pass over `train_examples` (incomplete last
    /// batches are dropped, as the loop does).
    pub fn steps_per_epoch(&self, train_examples: usize) -> u64 {
        (train_examples
            / self
                .data
                .batch_size
                .saturating_mul(self.data.grad_accum)
                .max(1)) as u64
    }

    /// Checks ranges that serde cannot express, for `train_examples` examples.
    pub fn validate(&self, train_examples: usize) -> Result<()> {
        let bad = |field: &'static str, problem: String| Error::InvalidConfig { field, problem };
        if self.data.batch_size == 0 || self.data.grad_accum == 0 || self.eval.batch_size == 0 {
            return Err(bad(
                "data.batch_size",
                "batch sizes and grad_accum must be at least 1".into(),
            ));
        }
        if self.steps_per_epoch(train_examples) == 0 {
            return Err(bad(
                "data.batch_size",
                format!(
                    "{train_examples} training examples make no batch of {} x {}",
                    self.data.batch_size, self.data.grad_accum
                ),
            ));
        }
        if self.run.max_steps == 0 && !(self.task.epochs.is_finite() && self.task.epochs > 0.0) {
            return Err(bad(
                "task.epochs",
                format!("must be positive, got {}", self.task.epochs),
            ));
        }
        if !(0.0..1.0).contains(&self.task.warmup_ratio) {
            return Err(bad(
                "task.warmup_ratio",
                format!("must be in [0, 1), got {}", self.task.warmup_ratio),
            ));
        }
        if !(self.optimizer.lr.is_finite() && self.optimizer.lr > 0.0) {
            return Err(bad(
                "optimizer.lr",
                format!("must be positive, got {}", self.optimizer.lr),
            ));
        }
        if self.run.threads <= 0 || self.run.log_every == 0 || self.checkpoint.keep_last == 0 {
            return Err(bad(
                "run",
                "threads, log_every and checkpoint.keep_last must be at least 1".into(),
            ));
        }
        if self.task.max_length < 3 {
            return Err(bad(
                "task.max_length",
                format!("must leave room for a token, got {}", self.task.max_length),
            ));
        }
        Ok(())
    }

    /// The loop settings for `train_examples` training examples: the step
    /// count from the epochs, warm-up from the ratio, an evaluation and a
    /// checkpoint per epoch (or every `eval.every_steps`).
    pub fn loop_config(&self, train_examples: usize) -> Result<LoopConfig> {
        self.validate(train_examples)?;
        let per_epoch = self.steps_per_epoch(train_examples);
        let max_steps = if self.run.max_steps > 0 {
            self.run.max_steps
        } else {
            ((self.task.epochs * per_epoch as f64).ceil() as u64).max(1)
        };
        let mut schedule = self.schedule.clone();
        if self.task.warmup_ratio > 0.0 {
            schedule.warmup_steps = (self.task.warmup_ratio * max_steps as f64).round() as u64;
        }
        let every = if self.eval.every_steps > 0 {
            self.eval.every_steps
        } else {
            per_epoch
        };
        let mut run = self.run.clone();
        run.max_steps = max_steps;
        Ok(LoopConfig {
            run,
            objective: ObjectiveConfig {
                kind: self.task.kind.objective().to_string(),
                // A dialogue run's coherence loss is the objective's pair term.
                pair_weight: self.dialogue.as_ref().map_or(1.0, |d| d.coherence_weight),
                ..ObjectiveConfig::default()
            },
            optimizer: self.optimizer.clone(),
            schedule,
            batch_size: self.data.batch_size,
            grad_accum: self.data.grad_accum,
            eval_every: if self.task.dev.is_some() { every } else { 0 },
            patience: if self.task.dev.is_some() {
                self.eval.patience
            } else {
                0
            },
            // A checkpoint at every evaluation, so the best one exists.
            checkpoint: CheckpointConfig {
                every_steps: every,
                ..self.checkpoint.clone()
            },
            masking_rate: 0.0,
            saved: SavedConfig {
                file: FINETUNE_CONFIG,
                text: self.to_toml()?,
            },
        })
    }
}

/// The classification head a [`Classifier`] has.
#[derive(Debug)]
enum Head {
    Sequence(BertForSequenceClassification),
    Token(BertForTokenClassification),
}

/// A BERT classifier (HF's `BertForSequenceClassification` or
/// `BertForTokenClassification`) and the variable store that owns it.
#[derive(Debug)]
pub struct Classifier {
    /// The variables (HF names).
    pub vs: VarStore,
    /// Its configuration, with `id2label`/`label2id`.
    pub config: BertConfig,
    head: Head,
    /// The precision of the matrix products (fp32 unless set).
    pub precision: cloze_models::Precision,
}

impl Classifier {
    /// A classifier over the encoder of the pretrained model in `dir`, for
    /// `labels`: the encoder's weights are loaded, the head (absent from a
    /// pretraining checkpoint) starts from N(0, initializer_range) seeded by
    /// `seed`. A checkpoint that already has a head of the same shape (a
    /// model fine-tuned before) keeps it.
    pub fn from_pretrained(
        dir: &Path,
        kind: TaskKind,
        labels: &[String],
        seed: u64,
        device: Device,
    ) -> Result<(Self, cloze_models::LoadReport)> {
        let config = cloze_models::hf::read_config(dir)?;
        crate::bert::refuse_quantised(dir, &config)?;
        Self::build(dir, config, kind, labels, seed, device)
    }

    /// [`Classifier::from_pretrained`] without the training-only refusal of
    /// quantised checkpoints (the loader dequantises their layers).
    fn build(
        dir: &Path,
        mut config: cloze_models::BertConfig,
        kind: TaskKind,
        labels: &[String],
        seed: u64,
        device: Device,
    ) -> Result<(Self, cloze_models::LoadReport)> {
        config.set_labels(labels);
        tch::manual_seed(cloze_core::rng::torch_seed(
            seed,
            cloze_core::rng::Stream::ModelInit,
            1,
        ));
        if kind.is_masked_lm() {
            return Err(Error::InvalidConfig {
                field: "task.kind",
                problem: "seq2seq, link and dialogue fine-tune the masked-LM model itself \
                          (crate::s2s, crate::link, crate::dialogue), not a classifier"
                    .to_owned(),
            });
        }
        let cfg = config.clone();
        let loaded = cloze_models::hf::load_with(dir, device, move |p, _| match kind {
            TaskKind::Sequence | TaskKind::Seq2seq | TaskKind::Link | TaskKind::Dialogue => {
                BertForSequenceClassification::new(p, &cfg).map(Head::Sequence)
            }
            TaskKind::Token => BertForTokenClassification::new(p, &cfg).map(Head::Token),
        })?;
        config.architectures = Some(vec![kind.architecture().to_string()]);
        Ok((
            Self {
                vs: loaded.vs,
                config,
                head: loaded.model,
                precision: cloze_models::Precision::Fp32,
            },
            loaded.report,
        ))
    }

    /// Loads a fine-tuned classifier saved by [`PretrainModel::save`] (or by
    /// transformers) for inference; its kind comes from `config.json`'s
    /// `architectures`. A quantised checkpoint (`cloze quantize`) loads with
    /// its layers dequantised; training one is refused elsewhere.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let config = cloze_models::hf::read_config(dir)?;
        let archs = config.architectures.clone().unwrap_or_default();
        let kind = if archs.iter().any(|a| a == TaskKind::Sequence.architecture()) {
            TaskKind::Sequence
        } else if archs.iter().any(|a| a == TaskKind::Token.architecture()) {
            TaskKind::Token
        } else {
            return Err(Error::NotAClassifier {
                dir: dir.to_owned(),
                wanted: "BertForSequenceClassification or BertForTokenClassification",
                found: if archs.is_empty() {
                    "no architectures".into()
                } else {
                    archs.join(", ")
                },
            });
        };
        let labels = config.labels()?;
        let (model, report) = Self::build(dir, config, kind, &labels, 0, device)?;
        if !report.missing.is_empty() {
            return Err(Error::NotAClassifier {
                dir: dir.to_owned(),
                wanted: kind.architecture(),
                found: format!(
                    "{} but the weights lack {}",
                    kind.architecture(),
                    report.missing.join(", ")
                ),
            });
        }
        Ok(model)
    }

    /// Which task the head is for.
    pub fn kind(&self) -> TaskKind {
        match self.head {
            Head::Sequence(_) => TaskKind::Sequence,
            Head::Token(_) => TaskKind::Token,
        }
    }

    /// The label names in id order.
    pub fn labels(&self) -> Result<Vec<String>> {
        Ok(self.config.labels()?)
    }

    /// The longest input the position embeddings allow.
    pub fn max_positions(&self) -> usize {
        self.config.max_position_embeddings.max(0) as usize
    }

    /// Logits: `[B, C]` for sequences, `[B, L, C]` for tokens.
    pub fn logits(&self, batch: &TensorBatch, train: bool) -> Result<Tensor> {
        let input = model_input(batch);
        Ok(cloze_models::autocast(self.precision, || {
            match &self.head {
                Head::Sequence(m) => m.forward_t(&input, train),
                Head::Token(m) => m.forward_t(&input, train),
            }
        })?)
    }
}

impl PretrainModel for Classifier {
    fn precision(&self) -> cloze_models::Precision {
        self.precision
    }

    fn forward(&self, batch: &TensorBatch, train: bool) -> Result<ModelOutput> {
        let logits = self.logits(batch, train)?;
        let mut out = ModelOutput::without_mlm(logits.device())?;
        match self.head {
            Head::Sequence(_) => out.class_logits = Some(logits),
            Head::Token(_) => out.token_logits = Some(logits),
        }
        Ok(out)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        cloze_models::save_pretrained(&self.vs, &self.config, dir)?;
        Ok(())
    }

    fn load_weights(&self, dir: &Path) -> Result<()> {
        let report = cloze_models::hf::load_weights(&self.vs, dir)?;
        if !report.missing.is_empty() || !report.unexpected.is_empty() {
            return Err(Error::CorruptCheckpoint {
                path: dir.to_owned(),
                problem: format!("weights do not match the model: {report}"),
                newest_intact: None,
            });
        }
        Ok(())
    }
}

/// Cross-entropy of the classification heads: the `sequence_classification`
/// and `token_classification` objectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassLoss {
    /// `class_logits` against the batch's `class_labels`.
    Sequence,
    /// `token_logits` against `token_labels`, ignoring `-100`.
    Token,
}

impl ClassLoss {
    fn kind(self) -> TaskKind {
        match self {
            ClassLoss::Sequence => TaskKind::Sequence,
            ClassLoss::Token => TaskKind::Token,
        }
    }

    /// Flat `[N, C]` logits and `[N]` labels (with `-100` entries for tokens).
    fn flat<'a>(
        self,
        out: &'a ModelOutput,
        batch: &'a TensorBatch,
    ) -> Result<(Tensor, &'a Tensor)> {
        let objective = self.kind().objective();
        let missing = |problem| Error::ObjectiveInput { objective, problem };
        match self {
            ClassLoss::Sequence => {
                let logits = out
                    .class_logits
                    .as_ref()
                    .ok_or(missing("the model has no sequence-classification head"))?;
                let labels = batch
                    .class_labels
                    .as_ref()
                    .ok_or(missing("the batch has no class labels"))?;
                Ok((logits.shallow_clone(), labels))
            }
            ClassLoss::Token => {
                let logits = out
                    .token_logits
                    .as_ref()
                    .ok_or(missing("the model has no token-classification head"))?;
                let labels = batch
                    .token_labels
                    .as_ref()
                    .ok_or(missing("the batch has no token labels"))?;
                let c = logits.size().last().copied().unwrap_or(0);
                Ok((logits.f_reshape([-1, c])?, labels))
            }
        }
    }
}

impl Objective for ClassLoss {
    fn name(&self) -> &str {
        self.kind().objective()
    }

    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> Result<Losses> {
        let (logits, labels) = self.flat(out, batch)?;
        let labels = labels.f_reshape([-1])?;
        let keep = labels.f_ne(IGNORED_LABEL)?.f_nonzero()?.f_view([-1])?;
        // The mean over labelled positions; 0 (not NaN) for a batch with none
        // (examples without words), so such a batch cannot stop the run.
        let labelled = keep.size()[0].max(1) as f64;
        let loss = logits
            .f_cross_entropy_loss::<Tensor>(&labels, None, Reduction::Sum, IGNORED_LABEL, 0.0)?
            .f_div_scalar(labelled)?;
        let (kept_logits, kept_labels) = (
            logits.f_index_select(0, &keep)?,
            labels.f_index_select(0, &keep)?,
        );
        let name = self.kind().report_name();
        let report = Report::new()
            .loss(name, scalar(&loss)?)
            .accuracy(name, accuracy(&kept_logits, &kept_labels)?)
            .count(name, keep.size()[0].max(0) as u64);
        Ok(Losses::mean(loss, keep.size()[0] as f64, report))
    }
}

/// Encoded, labelled examples as training batches, shuffled per epoch by
/// the run's seed (independent of thread count).
#[derive(Debug)]
pub struct LabelledSource {
    examples: Vec<EncodedExample>,
    pad: u32,
    seed: u64,
}

impl LabelledSource {
    /// Batches of `examples` padded with `pad`, in an order keyed by `seed`.
    pub fn new(examples: Vec<EncodedExample>, pad: u32, seed: u64) -> Self {
        Self {
            examples,
            pad,
            seed,
        }
    }
}

impl DataSource for LabelledSource {
    fn num_examples(&self) -> usize {
        self.examples.len()
    }
    fn epoch_order(&self, epoch: u64) -> Result<Vec<usize>> {
        Ok(cloze_core::rng::epoch_order(
            self.examples.len(),
            self.seed,
            epoch,
        ))
    }
    fn batch(&self, _epoch: u64, _first: u64, indices: &[usize]) -> Result<Batch> {
        let picked = indices
            .iter()
            .map(|&i| {
                self.examples.get(i).ok_or_else(|| {
                    Error::DataMismatch(format!("example {i} of {}", self.examples.len()))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(collate(&picked, self.pad)?)
    }
}

/// A labelled dev or test set, scored as a [`HeldOut`] task.
#[derive(Debug)]
pub struct LabelledEval {
    batches: Vec<Batch>,
    kind: TaskKind,
    labels: Vec<String>,
    scheme: Option<TagScheme>,
}

/// What [`LabelledEval::score`] measures.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMetrics {
    /// Mean cross-entropy over the labelled examples (or tokens).
    pub loss: f64,
    /// Fraction of labelled examples (tokens) predicted right.
    pub accuracy: f64,
    /// Macro-averaged F1 over the classes (see `cloze_eval::metrics::macro_f1`).
    pub macro_f1: f64,
    /// Span precision, recall and F1, for tags with a BIO/BIOES/BMES scheme.
    pub spans: Option<metrics::Prf>,
    /// Labelled examples (sequences) or labelled tokens.
    pub count: u64,
}

impl LabelledEval {
    /// Collates `examples` into batches of `batch_size`; `labels` names the
    /// ids. Tags whose names follow a BIO, BIOES or BMES scheme are also
    /// scored as spans.
    pub fn new(
        examples: &[EncodedExample],
        kind: TaskKind,
        labels: Vec<String>,
        pad: u32,
        batch_size: usize,
    ) -> Result<Self> {
        let batches = examples
            .chunks(batch_size.max(1))
            .map(|c| collate(&c.iter().collect::<Vec<_>>(), pad))
            .collect::<cloze_eval::Result<Vec<_>>>()?;
        let scheme = match kind {
            TaskKind::Token => TagScheme::detect(&labels),
            TaskKind::Sequence | TaskKind::Seq2seq | TaskKind::Link | TaskKind::Dialogue => None,
        };
        Ok(Self {
            batches,
            kind,
            labels,
            scheme,
        })
    }

    /// Scores `model`: loss, accuracy, macro-F1 and, for tags, span scores.
    pub fn score(&self, model: &dyn PretrainModel, device: Device) -> Result<ClassMetrics> {
        let _guard = tch::no_grad_guard();
        let objective = match self.kind {
            TaskKind::Sequence | TaskKind::Seq2seq | TaskKind::Link | TaskKind::Dialogue => {
                ClassLoss::Sequence
            }
            TaskKind::Token => ClassLoss::Token,
        };
        let (mut loss_sum, mut gold, mut pred) = (0.0, Vec::new(), Vec::new());
        let (mut gold_tags, mut pred_tags) = (Vec::new(), Vec::new());
        for b in &self.batches {
            let tb = TensorBatch::from_batch(b, device)?;
            let out = model.forward(&tb, false)?;
            let (logits, labels) = objective.flat(&out, &tb)?;
            let labels = labels.f_reshape([-1])?;
            let loss = logits.f_cross_entropy_loss::<Tensor>(
                &labels,
                None,
                Reduction::Sum,
                IGNORED_LABEL,
                0.0,
            )?;
            loss_sum += scalar(&loss)?;
            let p: Vec<i64> = Vec::try_from(logits.f_argmax(-1, false)?.f_to_kind(Kind::Int64)?)?;
            let g: Vec<i64> = Vec::try_from(labels.f_to_kind(Kind::Int64)?)?;
            let width = if self.kind == TaskKind::Token {
                b.seq_len
            } else {
                1
            };
            for (grow, prow) in g.chunks(width.max(1)).zip(p.chunks(width.max(1))) {
                let (mut gs, mut ps) = (Vec::new(), Vec::new());
                for (&gi, &pi) in grow.iter().zip(prow) {
                    if gi == IGNORED_LABEL {
                        continue;
                    }
                    gold.push(gi);
                    pred.push(pi);
                    gs.push(self.name(gi));
                    ps.push(self.name(pi));
                }
                gold_tags.push(gs);
                pred_tags.push(ps);
            }
        }
        let count = gold.len() as u64;
        Ok(ClassMetrics {
            loss: if count > 0 {
                loss_sum / count as f64
            } else {
                f64::NAN
            },
            accuracy: metrics::accuracy(&gold, &pred),
            macro_f1: metrics::macro_f1(&gold, &pred),
            spans: self
                .scheme
                .map(|s| metrics::span_prf(&gold_tags, &pred_tags, s)),
            count,
        })
    }

    fn name(&self, id: i64) -> String {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.labels.get(i))
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    }

    /// The metrics as a report: loss and accuracy under `cls` (`tag`),
    /// `macro_f1`, and for tags `span_f1`, `span_precision`, `span_recall`.
    pub fn report(&self, m: &ClassMetrics) -> Report {
        let name = self.kind.report_name();
        let mut r = Report::new()
            .loss(name, m.loss)
            .accuracy(name, m.accuracy)
            .accuracy("macro_f1", m.macro_f1)
            .count(name, m.count);
        if let Some(s) = &m.spans {
            r = r
                .accuracy("span_f1", s.f1)
                .accuracy("span_precision", s.precision)
                .accuracy("span_recall", s.recall)
                .count("spans", s.gold as u64);
        }
        r
    }
}

impl HeldOut for LabelledEval {
    fn evaluate(&self, model: &dyn PretrainModel, device: Device) -> Result<Report> {
        Ok(self.report(&self.score(model, device)?))
    }
    fn primary_loss(&self) -> &str {
        self.kind.report_name()
    }
    /// The best checkpoint has the highest span F1 (tags with a span
    /// scheme) or macro-F1 (everything else); among equal F1s, the lowest
    /// loss. The loss enters scaled by 1e-9 (and capped), far below any F1
    /// difference a dev set of fewer than 10^7 examples can show, so the
    /// order is F1 first, loss second. Without the tie-break a model still
    /// at the majority class would stop early while its loss was falling.
    fn selection_score(&self, report: &Report) -> Option<f64> {
        let key = if self.scheme.is_some() {
            "span_f1"
        } else {
            "macro_f1"
        };
        let f1 = report.accuracies.get(key)?;
        let loss = report
            .losses
            .get(self.kind.report_name())
            .copied()
            .filter(|l| l.is_finite())
            .unwrap_or(0.0)
            .clamp(0.0, 100.0);
        Some(-f1 + 1e-9 * loss)
    }
}

/// Softmax probabilities of `model` for `examples`, in input order: `[C]`
/// per example for sequences, `[L_i, C]` (one row per input token) for tags.
pub fn predict(
    model: &Classifier,
    examples: &[EncodedExample],
    pad: u32,
    batch_size: usize,
    device: Device,
) -> Result<Vec<Tensor>> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let b = collate(&chunk.iter().collect::<Vec<_>>(), pad)?;
        let tb = TensorBatch::from_batch(&b, device)?;
        let probs = model
            .logits(&tb, false)?
            .f_softmax(-1, Kind::Float)?
            .f_to_device(Device::Cpu)?;
        for (row, ex) in chunk.iter().enumerate() {
            let p = probs.f_get(row as i64)?;
            out.push(match model.kind() {
                TaskKind::Sequence | TaskKind::Seq2seq | TaskKind::Link | TaskKind::Dialogue => p,
                TaskKind::Token => p.f_narrow(0, 0, ex.input_ids.len() as i64)?,
            });
        }
    }
    Ok(out)
}

impl cloze_models::QuantizeInt8 for Head {
    fn quantize_int8(
        &mut self,
        smoothing: Option<&cloze_models::Int8Smoothing>,
    ) -> cloze_models::Result<usize> {
        match self {
            Head::Sequence(m) => m.quantize_int8(smoothing),
            Head::Token(m) => m.quantize_int8(smoothing),
        }
    }
}

impl Classifier {
    /// Readies the loaded classifier for inference in `precision`
    /// ([`cloze_models::Precision::prepare`]): bf16 casts the weights, int8
    /// packs the encoder's linears (the classifier layer stays fp32), with the
    /// SmoothQuant factors of `smoothing` when given. Returns how many
    /// matrices were packed.
    pub fn prepare_inference(
        &mut self,
        precision: cloze_models::Precision,
        smoothing: Option<&cloze_models::Int8Smoothing>,
    ) -> cloze_models::Result<usize> {
        precision.prepare(&mut self.vs, &mut self.head, smoothing)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(dev: bool) -> FinetuneConfig {
        FinetuneConfig::new(
            TaskKind::Sequence,
            "base".into(),
            "train.jsonl".into(),
            dev.then(|| "dev.jsonl".into()),
        )
    }

    #[test]
    fn epochs_become_steps_with_an_evaluation_and_a_checkpoint_per_epoch() -> Result<()> {
        let mut c = config(true);
        c.task.epochs = 2.5;
        c.data.batch_size = 10;
        // 105 examples: 10 full batches per epoch (the tail is dropped).
        let l = c.loop_config(105)?;
        assert_eq!(l.run.max_steps, 25);
        assert_eq!(l.eval_every, 10);
        assert_eq!(l.checkpoint.every_steps, 10);
        assert_eq!(l.schedule.warmup_steps, 3, "10% of 25, rounded");
        assert_eq!(l.patience, 2);
        assert_eq!(l.objective.kind, "sequence_classification");
        assert_eq!(l.saved.file, FINETUNE_CONFIG);
        assert_eq!(FinetuneConfig::from_toml(&l.saved.text, Path::new("x"))?, c);
        // Without a dev set there is nothing to evaluate or stop on.
        let l = config(false).loop_config(105)?;
        assert_eq!((l.eval_every, l.patience), (0, 0));
        // An explicit step count wins over epochs.
        c.run.max_steps = 7;
        assert_eq!(c.loop_config(105)?.run.max_steps, 7);
        Ok(())
    }

    #[test]
    fn settings_that_cannot_train_are_refused() {
        let mut c = config(true);
        c.data.batch_size = 64;
        assert!(matches!(
            c.loop_config(10),
            Err(Error::InvalidConfig {
                field: "data.batch_size",
                ..
            })
        ));
        let mut c = config(true);
        c.task.epochs = 0.0;
        assert!(c.loop_config(100).is_err());
        let c = config(true);
        assert!(c.with_overrides(&["task.epoch=3".into()]).is_err());
        let c = c.with_overrides(&["optimizer.lr=0.001".into()]).unwrap();
        assert_eq!(c.optimizer.lr, 1e-3);
    }

    fn batch_with(class: Option<Tensor>, tokens: Option<Tensor>) -> TensorBatch {
        let mut b = TensorBatch::synthetic(2, 3, 10, 0.0, 0).unwrap();
        b.class_labels = class;
        b.token_labels = tokens;
        b
    }

    #[test]
    fn sequence_loss_is_the_mean_cross_entropy() -> Result<()> {
        // Row 0: logits (0, ln 3): p(class 1) = 3/4. Row 1: equal logits, p = 1/2.
        let logits = Tensor::from_slice(&[0f32, 3f32.ln(), 0., 0.]).view([2, 2]);
        let mut out = ModelOutput::without_mlm(Device::Cpu)?;
        out.class_logits = Some(logits);
        let b = batch_with(Some(Tensor::from_slice(&[1i64, 0])), None);
        let l = ClassLoss::Sequence.losses(&out, &b)?;
        let want = -((0.75f64).ln() + (0.5f64).ln()) / 2.0;
        assert!((scalar(&l.total)? - want).abs() < 1e-6);
        // Row 1 is a tie: argmax picks class 0, which is right.
        assert_eq!(l.report.accuracies["cls"], 1.0);
        assert_eq!(l.report.counts["cls"], 2);
        Ok(())
    }

    #[test]
    fn token_loss_skips_ignored_positions() -> Result<()> {
        // [B=2, L=3, C=2]; only (0,1) and (1,0) are labelled.
        let logits = Tensor::from_slice(&[
            9f32,
            0.,
            0.,
            3f32.ln(),
            9.,
            0., //
            0.,
            0.,
            0.,
            9.,
            9.,
            0.,
        ])
        .view([2, 3, 2]);
        let mut out = ModelOutput::without_mlm(Device::Cpu)?;
        out.token_logits = Some(logits);
        let labels = Tensor::from_slice(&[-100i64, 1, -100, 0, -100, -100]).view([2, 3]);
        let b = batch_with(None, Some(labels));
        let l = ClassLoss::Token.losses(&out, &b)?;
        let want = -((0.75f64).ln() + (0.5f64).ln()) / 2.0;
        assert!((scalar(&l.total)? - want).abs() < 1e-6);
        assert_eq!(l.report.counts["tag"], 2);
        // A model without the head is an error naming the objective.
        let none = ModelOutput::without_mlm(Device::Cpu)?;
        assert!(matches!(
            ClassLoss::Token.losses(&none, &b),
            Err(Error::ObjectiveInput {
                objective: "token_classification",
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn the_best_checkpoint_has_the_highest_f1() {
        let eval = LabelledEval {
            batches: Vec::new(),
            kind: TaskKind::Token,
            labels: vec!["O".into(), "B-K".into(), "I-K".into()],
            scheme: TagScheme::detect(&["O".into(), "B-K".into(), "I-K".into()]),
        };
        assert!(eval.scheme.is_some());
        let r = Report::new()
            .loss("tag", 0.3)
            .accuracy("span_f1", 0.8)
            .accuracy("macro_f1", 0.5);
        let score = |f1: f64, loss: f64| {
            eval.selection_score(
                &Report::new()
                    .loss("tag", loss)
                    .accuracy("span_f1", f1)
                    .accuracy("macro_f1", 0.5),
            )
            .unwrap()
        };
        assert!((eval.selection_score(&r).unwrap() + 0.8).abs() < 1e-6);
        // F1 first; the loss only breaks ties.
        assert!(score(0.81, 5.0) < score(0.8, 0.01));
        assert!(score(0.8, 0.2) < score(0.8, 0.3));
        let seq = LabelledEval {
            scheme: None,
            kind: TaskKind::Sequence,
            ..eval
        };
        assert!((seq.selection_score(&r).unwrap() + 0.5).abs() < 1e-6);
    }
}

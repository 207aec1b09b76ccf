//! `cloze finetune`: sequence or token classification on top of a pretrained
//! BERT (ours or any HF checkpoint with a `tokenizer.json` or BERT `vocab.txt`), trained by the
//! same loop as `cloze pretrain`, with the same guarantees: the run directory
//! is checked before any work and holds one writer, Ctrl-C writes a
//! checkpoint and exits 130, `--resume RUN` continues exactly, and `--force`
//! removes only what a fine-tuning run writes ([`RUN_FILES`]).
//!
//! The run directory: `finetune.toml` (every setting, labels included),
//! `metrics.jsonl` (train windows and dev evaluations), `checkpoints/`, and at
//! the end `model/`: the checkpoint with the best dev score (macro-F1, or span
//! F1 for BIO/BIOES/BMES tags; the last step without `--dev`) in HF format,
//! `BertForSequenceClassification` or `BertForTokenClassification` with
//! `id2label`, plus the base model's tokenizer files, and `test_metrics.json`
//! when `--test` is given.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use cloze_eval::finetune_data::{self, EncodedExample, LabelSet};
use cloze_eval::ModelTokenizer;
use cloze_fs::{DirLock, OutputDir, OutputKind};
use cloze_train::finetune::{
    Classifier, FinetuneConfig, LabelledEval, LabelledSource, TaskKind, FINETUNE_CONFIG,
};
use cloze_train::trainer::{HeldOut, RunOutcome, Trainer};
use cloze_train::PretrainModel;

use crate::cmd::interrupt::{self, Interrupted};
use crate::cmd::run_dir::{self, shell_word, Driver};

/// What a fine-tuning run writes into its directory: the only entries `--force` removes.
pub const RUN_FILES: &[&str] = &[
    FINETUNE_CONFIG,
    "metrics.jsonl",
    "metrics.jsonl.tmp",
    "checkpoints",
    "model",
    "plots",
    TEST_METRICS,
    cloze_fs::MARKER,
];

/// The test-set scores written at the end of a run given `--test`.
const TEST_METRICS: &str = "test_metrics.json";

/// The tokenizer files copied from the base model next to the fine-tuned one.
pub(crate) const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// The task, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    /// One label per text or text pair.
    Sequence,
    /// One label per word (or character).
    Token,
    /// UniLM-v2 sequence-to-sequence generation: JSON lines with `source`
    /// and `target` (s2s-ft's fine-tuning; generate with `cloze generate`).
    Seq2seq,
    /// MLMLM knowledge-graph link prediction: `--train` is a graph
    /// directory (`train.txt`/`valid.txt`/`test.txt`) or a cached graph
    /// dataset such as `umls`; its valid split is the dev set (rank the
    /// test split with `cloze kg eval`).
    Link,
    /// PLATO-style dialogue: `cloze data dialogue` JSON lines (context turns
    /// with speakers, the response); `--roles` and `--attention` choose the
    /// layout (talk with `cloze chat`, score with `cloze dialogue eval`).
    Dialogue,
}

/// `--roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RolesArg {
    /// No role embeddings.
    None,
    /// Two roles alternating back from the response.
    Alternating,
    /// One role per speaker, the responder first.
    Speaker,
}

/// `--attention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttentionArg {
    /// Bidirectional context, left-to-right response.
    Unified,
    /// Left to right everywhere.
    Causal,
}

impl From<TaskArg> for TaskKind {
    fn from(t: TaskArg) -> Self {
        match t {
            TaskArg::Sequence => TaskKind::Sequence,
            TaskArg::Token => TaskKind::Token,
            TaskArg::Seq2seq => TaskKind::Seq2seq,
            TaskArg::Link => TaskKind::Link,
            TaskArg::Dialogue => TaskKind::Dialogue,
        }
    }
}

/// Arguments of `cloze finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The pretrained model directory (HF format with tokenizer.json or a BERT
    /// vocab.txt), e.g. a
    /// `cloze pretrain` run's RUN/model or a `cloze data fetch` checkpoint.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    pub model: Option<PathBuf>,
    /// `sequence` (JSONL `{"text", "text_pair"?, "label"}` or TSV with a
    /// header naming `text`, `text_pair`, `label`) or `token` (JSONL
    /// `{"tokens": [...], "labels": [...]}` or CoNLL `token label` lines).
    #[arg(
        long,
        value_enum,
        required_unless_present = "resume",
        conflicts_with = "resume"
    )]
    pub task: Option<TaskArg>,
    /// Training examples.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    pub train: Option<PathBuf>,
    /// Development examples: evaluated every epoch, pick the best checkpoint
    /// and stop early.
    #[arg(long, conflicts_with = "resume")]
    pub dev: Option<PathBuf>,
    /// Test examples, scored once with the best model at the end.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Run directory. An existing run is refused unless --force is given;
    /// other directories are never replaced.
    #[arg(long, default_value = "runs/finetune", conflicts_with = "resume")]
    pub out: PathBuf,
    /// Continue the fine-tuning run in this directory from its newest checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// The label names in id order (comma-separated); default: those of the
    /// training data, sorted.
    #[arg(long, value_delimiter = ',', conflicts_with = "resume")]
    pub labels: Vec<String>,
    /// Passes over the training data (default 3).
    #[arg(long, conflicts_with = "resume")]
    pub epochs: Option<f64>,
    /// Peak learning rate (default 5e-5).
    #[arg(long, conflicts_with = "resume")]
    pub lr: Option<f64>,
    /// Examples per batch (default 32).
    #[arg(long, conflicts_with = "resume")]
    pub batch_size: Option<usize>,
    /// Longest input in tokens, special tokens included (default 128).
    #[arg(long, conflicts_with = "resume")]
    pub max_length: Option<usize>,
    /// Seed of the head's initialisation, data order and dropout (default 42).
    #[arg(long, conflicts_with = "resume")]
    pub seed: Option<u64>,
    /// Stop after this many dev evaluations without a better score (default 2; 0 never).
    #[arg(long, conflicts_with = "resume")]
    pub patience: Option<u64>,
    /// Train exactly this many steps instead of --epochs.
    #[arg(long, conflicts_with = "resume")]
    pub max_steps: Option<u64>,
    /// `fp32` (default) or `bf16`: matrix products in bfloat16 over fp32 weights
    /// (`run.precision`).
    #[arg(long, conflicts_with = "resume")]
    pub precision: Option<cloze_models::Precision>,
    /// Override any setting of finetune.toml: `--set optimizer.weight_decay=0` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", conflicts_with = "resume")]
    pub overrides: Vec<String>,
    /// Dialogue roles: `speaker` (the responder 0, others by recency),
    /// `alternating` (two roles, Knover's default) or `none` (default speaker).
    #[arg(long, value_enum, conflicts_with = "resume")]
    pub roles: Option<RolesArg>,
    /// Dialogue attention: `unified` (bidirectional context, PLATO's) or
    /// `causal` (left to right everywhere); default unified.
    #[arg(long, value_enum, conflicts_with = "resume")]
    pub attention: Option<AttentionArg>,
    /// Start over in an existing fine-tuning run directory: removes what the
    /// earlier run wrote and nothing else.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// The global `--threads`, copied here by `main`.
    #[arg(skip)]
    pub global_threads: Option<usize>,
}

/// What `run` settled before dispatching a task that trains the masked-LM
/// model itself (`finetune_s2s`, `finetune_link`).
pub struct Started {
    /// The run's settings.
    pub cfg: FinetuneConfig,
    /// The checked output of a fresh run.
    pub out_guard: Option<OutputDir>,
    /// The lock of a resumed run.
    pub lock: Option<DirLock>,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Whether this is `--resume`.
    pub resuming: bool,
}

/// Exports the weights of `from` (the best checkpoint, else the last one)
/// as `RUN/model` with the base model's tokenizer files; returns that
/// directory.
pub(crate) fn export_model(
    model: &dyn PretrainModel,
    run_dir: &Path,
    from: &Path,
    base: &Path,
) -> Result<PathBuf> {
    model
        .load_weights(from)
        .with_context(|| format!("loading the weights of {}", from.display()))?;
    let model_dir = run_dir.join("model");
    std::fs::create_dir_all(&model_dir)
        .with_context(|| format!("creating {}", model_dir.display()))?;
    model.save(&model_dir)?;
    copy_tokenizer(base, &model_dir)?;
    Ok(model_dir)
}

/// What a masked-LM task's loop ([`train_and_export`]) ended with.
pub(crate) struct Exported {
    /// `RUN/model`.
    pub model_dir: PathBuf,
    /// The step and dev score of the exported checkpoint, when it was chosen
    /// by its dev score (else the last step's checkpoint was exported).
    pub best: Option<(u64, f64)>,
}

/// The loop of a task that trains the masked-LM model itself (seq2seq,
/// link, dialogue): start or resume, train with Ctrl-C handling, then export
/// the best checkpoint (by dev score when `has_dev`, else the last) as
/// `RUN/model` with `base`'s tokenizer. Ctrl-C is the [`interrupted`] error.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_and_export(
    model: &cloze_train::BertPretrainer,
    loop_cfg: cloze_train::LoopConfig,
    resuming: bool,
    run_dir: &Path,
    base: &Path,
    has_dev: bool,
    source: &dyn cloze_train::DataSource,
    eval: Option<&dyn HeldOut>,
) -> Result<Exported> {
    let stop = interrupt::install("writing a checkpoint after the current step, then stopping")?;
    let max_steps = loop_cfg.run.max_steps;
    let mut trainer = if resuming {
        Trainer::resume_loop(loop_cfg, model, &model.vs, run_dir, None)?
    } else {
        Trainer::start(loop_cfg, model, &model.vs, run_dir)?
    };
    let mut obs = Driver::new(max_steps, trainer.state().step, stop);
    let outcome = trainer.run(source, eval, &mut obs);
    obs.bar.finish_and_clear();
    let best = trainer.state().best;
    match outcome? {
        RunOutcome::Interrupted { checkpoint, step } => {
            Err(interrupted(step, &checkpoint, run_dir))
        }
        RunOutcome::Finished { checkpoint, .. } | RunOutcome::EarlyStopped { checkpoint, .. } => {
            let chosen = best_checkpoint(run_dir, has_dev, best)?;
            let from = chosen.clone().unwrap_or(checkpoint);
            let model_dir = export_model(model, run_dir, &from, base)?;
            Ok(Exported {
                model_dir,
                best: chosen.and(best),
            })
        }
    }
}

/// The error a fine-tuning run stopped by Ctrl-C returns (exit 130), with
/// the command that continues it.
pub(crate) fn interrupted(step: u64, checkpoint: &Path, run_dir: &Path) -> anyhow::Error {
    anyhow::Error::new(Interrupted(format!(
        "interrupted at step {step}; checkpoint {}\ncontinue with: cloze finetune --resume {}",
        checkpoint.display(),
        shell_word(run_dir)
    )))
}

/// The kind of output a fine-tuning run directory is, for `cloze-fs`.
pub(crate) fn run_kind() -> OutputKind {
    OutputKind::new("finetune", "--force")
}

/// The settings of a fresh run from the flags.
fn fresh_config(a: &FinetuneArgs) -> Result<FinetuneConfig> {
    let (Some(model), Some(task), Some(train)) = (&a.model, a.task, &a.train) else {
        bail!("--model, --task and --train are needed to start a run");
    };
    let kind: TaskKind = task.into();
    let (train, dev) = if kind == TaskKind::Link {
        if let Some(d) = &a.dev {
            bail!(
                "--dev {}: link prediction evaluates on the graph's own valid.txt",
                d.display()
            );
        }
        let dir = super::data::resolve(&train.to_string_lossy(), "graph")?;
        let dir =
            std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))?;
        let valid = dir.join("valid.txt");
        (dir, Some(valid))
    } else {
        (train.clone(), a.dev.clone())
    };
    let mut cfg = FinetuneConfig::new(kind, model.clone(), train, dev);
    if let Some(e) = a.epochs {
        cfg.task.epochs = e;
    }
    if let Some(lr) = a.lr {
        cfg.optimizer.lr = lr;
    }
    if let Some(b) = a.batch_size {
        cfg.data.batch_size = b;
    }
    if let Some(m) = a.max_length {
        cfg.task.max_length = m;
    }
    if let Some(s) = a.seed {
        cfg.run.seed = s;
    }
    if let Some(p) = a.patience {
        cfg.eval.patience = p;
    }
    if let Some(n) = a.max_steps {
        cfg.run.max_steps = n;
    }
    if let Some(p) = a.precision {
        cfg.run.precision = p;
    }
    if let Some(t) = a.global_threads {
        cfg.run.threads = i32::try_from(t).context("--threads is too large")?;
    }
    cfg.task.labels = a.labels.clone();
    if kind == TaskKind::Dialogue {
        // A dialogue model (`cloze dialogue init`) brings its layout; the
        // flags below change it.
        let base = cloze_models::hf::read_config(model)
            .with_context(|| format!("reading the model in {}", model.display()))?;
        if let Some(layout) = super::dialogue::stored_layout(&base)? {
            cfg.task.max_length = layout.max_context_len;
            cfg.dialogue = Some(layout);
        }
    }
    match &mut cfg.dialogue {
        Some(d) => {
            if let Some(m) = a.max_length {
                d.max_context_len = m;
            }
            if let Some(r) = a.roles {
                d.roles = match r {
                    RolesArg::None => cloze_mask::RoleScheme::None,
                    RolesArg::Alternating => cloze_mask::RoleScheme::Alternating,
                    RolesArg::Speaker => cloze_mask::RoleScheme::Speaker,
                };
            }
            if let Some(at) = a.attention {
                d.attention = match at {
                    AttentionArg::Unified => cloze_mask::DialogueAttention::Unified,
                    AttentionArg::Causal => cloze_mask::DialogueAttention::Causal,
                };
            }
        }
        None if a.roles.is_some() || a.attention.is_some() => {
            bail!("--roles and --attention apply to --task dialogue only")
        }
        None => {}
    }
    Ok(cfg.with_overrides(&a.overrides)?)
}

/// Examples of either task, read from a file.
enum Examples {
    Sequence(Vec<finetune_data::SeqExample>),
    Token(Vec<finetune_data::TagExample>),
}

impl Examples {
    fn read(kind: TaskKind, path: &Path, require_labels: bool) -> Result<Self> {
        Ok(match kind {
            TaskKind::Sequence => {
                Self::Sequence(finetune_data::read_seq_examples(path, require_labels)?)
            }
            TaskKind::Token => Self::Token(finetune_data::read_tag_examples(path, require_labels)?),
            TaskKind::Seq2seq | TaskKind::Link | TaskKind::Dialogue => {
                bail!("seq2seq, link and dialogue examples are read by their own modules")
            }
        })
    }

    fn label_set(&self) -> Result<LabelSet> {
        Ok(match self {
            Self::Sequence(v) => LabelSet::from_seq_examples(v)?,
            Self::Token(v) => LabelSet::from_tag_examples(v)?,
        })
    }

    /// Encoded for the model, with each tagged example's word positions.
    fn encode(
        &self,
        tok: &ModelTokenizer,
        labels: Option<&LabelSet>,
        max_len: usize,
    ) -> Result<(Vec<EncodedExample>, Vec<finetune_data::WordPositions>)> {
        Ok(match self {
            Self::Sequence(v) => (
                finetune_data::encode_seq(tok, v, labels, max_len)?,
                Vec::new(),
            ),
            Self::Token(v) => finetune_data::encode_tags(tok, v, labels, max_len)?
                .into_iter()
                .unzip(),
        })
    }
}

/// Reads and encodes a labelled file, naming it in errors.
fn labelled(
    kind: TaskKind,
    path: &Path,
    tok: &ModelTokenizer,
    labels: &LabelSet,
    max_len: usize,
) -> Result<Vec<EncodedExample>> {
    let ex = Examples::read(kind, path, true)?;
    let (enc, _) = ex
        .encode(tok, Some(labels), max_len)
        .with_context(|| format!("encoding {}", path.display()))?;
    Ok(enc)
}

/// Copies the tokenizer files the base model has into `dir`.
///
/// A base with a `vocab.txt` but neither `tokenizer.json` nor
/// `tokenizer_config.json` has its casing from its `config.json` or from a
/// guess ([`cloze_text::tokenizer::BertCasing::for_vocab`]); transformers
/// reads neither and lower-cases by default. The casing the base was read
/// with is written as `tokenizer_config.json`, so the fine-tuned model
/// tokenizes alike here and in transformers.
pub(crate) fn copy_tokenizer(base: &Path, dir: &Path) -> Result<()> {
    for name in TOKENIZER_FILES {
        let from = base.join(name);
        if from.is_file() {
            let to = dir.join(name);
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    let vocab = base.join("vocab.txt");
    let described = ["tokenizer.json", "tokenizer_config.json"]
        .iter()
        .any(|name| base.join(name).is_file());
    if vocab.is_file() && !described {
        let casing = cloze_text::tokenizer::BertCasing::for_vocab(&vocab)?;
        let config = serde_json::json!({
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": casing.lowercase,
            "strip_accents": casing.strip_accents,
            "tokenize_chinese_chars": casing.tokenize_chinese_chars,
        });
        let to = dir.join("tokenizer_config.json");
        std::fs::write(&to, serde_json::to_string_pretty(&config)? + "\n")
            .with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}

/// Writes the input length a classifier was trained and tested with into
/// its `tokenizer_config.json` as `model_max_length` (kept with the other
/// settings when the file exists), where `cloze predict` and transformers'
/// tokenizers take it as the truncation length: a model fine-tuned on
/// 128-token inputs then predicts on the same 128 tokens by default, and
/// its predictions match the test score `finetune --test` reported.
pub(crate) fn record_max_length(dir: &Path, max_length: usize) -> Result<()> {
    let path = dir.join("tokenizer_config.json");
    let mut config = if path.is_file() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?
    } else {
        serde_json::json!({})
    };
    let Some(object) = config.as_object_mut() else {
        bail!("{} is not a JSON object", path.display());
    };
    object.insert("model_max_length".into(), max_length.into());
    cloze_models::hf::write_atomic(
        &path,
        (serde_json::to_string_pretty(&config)? + "\n").as_bytes(),
    )?;
    Ok(())
}

/// The `model_max_length` of the `tokenizer_config.json` in `dir`, when it
/// is a usable length (at least 3 and at most `positions`; HF writes a huge
/// sentinel for "no limit", which counts as absent).
pub(crate) fn recorded_max_length(dir: &Path, positions: usize) -> Result<Option<usize>> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(config
        .get("model_max_length")
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| (3..=positions).contains(&n)))
}

/// Runs `cloze finetune`.
pub fn run(a: FinetuneArgs) -> Result<()> {
    let resuming = a.resume.is_some();
    let run_dir = a.resume.clone().unwrap_or_else(|| a.out.clone());

    // 1. Settings, and the run directory checked (and for --resume locked)
    //    before any work.
    let (mut cfg, out_guard, mut lock): (FinetuneConfig, Option<OutputDir>, Option<DirLock>) =
        if resuming {
            let lock = run_dir::lock_existing(
                &run_dir,
                &run_kind(),
                FINETUNE_CONFIG,
                "a fine-tuning run",
            )?;
            let mut cfg = FinetuneConfig::load(&run_dir)?;
            if let Some(t) = a.global_threads {
                cfg.run.threads = i32::try_from(t).context("--threads is too large")?;
            }
            (cfg, None, Some(lock))
        } else {
            let cfg = fresh_config(&a)?;
            let mut inputs: Vec<&Path> = vec![&cfg.task.base_model, &cfg.task.train];
            inputs.extend(cfg.task.dev.as_deref());
            inputs.extend(a.test.as_deref());
            let guard = OutputDir::check(&run_dir, &run_kind(), &inputs, a.force).map_err(
                |e| match e {
                    cloze_fs::Error::Exists { .. } => anyhow!(
                        "{run} already holds a fine-tuning run: continue it with `cloze finetune --resume {word}`, \
                         or pass --force to start over (that removes the run's settings, metrics, checkpoints \
                         and model, and nothing else in {run})",
                        run = run_dir.display(),
                        word = shell_word(&run_dir)
                    ),
                    other => anyhow::Error::new(other),
                },
            )?;
            (cfg, Some(guard), None)
        };
    let kind = cfg.task.kind;
    tch::set_num_threads(cfg.run.threads);
    if kind.is_masked_lm() {
        let started = Started {
            cfg,
            out_guard,
            lock,
            run_dir,
            resuming,
        };
        return match kind {
            TaskKind::Link => super::finetune_link::run(started, a.test.as_deref()),
            TaskKind::Dialogue => super::finetune_dialogue::run(started, a.test.as_deref()),
            _ => super::finetune_s2s::run(started, a.test.as_deref()),
        };
    }

    // 2. Data: read, labelled and encoded, and checked against the model,
    //    still before the run directory is touched.
    let base = cfg.task.base_model.clone();
    let base_config = cloze_models::hf::read_config(&base)
        .with_context(|| format!("reading the base model in {}", base.display()))?;
    let positions = usize::try_from(base_config.max_position_embeddings).unwrap_or(0);
    if cfg.task.max_length > positions {
        bail!(
            "--max-length {} exceeds the model's {positions} position embeddings",
            cfg.task.max_length
        );
    }
    let tok = ModelTokenizer::from_dir(&base, cfg.task.max_length)?;
    let train = Examples::read(kind, &cfg.task.train, true)?;
    if cfg.task.labels.is_empty() {
        cfg.task.labels = train.label_set()?.names().to_vec();
    }
    let labels = LabelSet::new(cfg.task.labels.clone())?;
    if labels.len() < 2 && kind == TaskKind::Sequence {
        bail!(
            "{} has a single label ({}): a classifier needs at least two",
            cfg.task.train.display(),
            labels.names().join(", ")
        );
    }
    let (train_enc, _) = train
        .encode(&tok, Some(&labels), cfg.task.max_length)
        .with_context(|| format!("encoding {}", cfg.task.train.display()))?;
    let dev = match &cfg.task.dev {
        Some(p) => Some(LabelledEval::new(
            &labelled(kind, p, &tok, &labels, cfg.task.max_length)?,
            kind,
            cfg.task.labels.clone(),
            tok.pad,
            cfg.eval.batch_size,
        )?),
        None => None,
    };
    let test = match &a.test {
        Some(p) if !resuming || p.exists() => Some(LabelledEval::new(
            &labelled(kind, p, &tok, &labels, cfg.task.max_length)?,
            kind,
            cfg.task.labels.clone(),
            tok.pad,
            cfg.eval.batch_size,
        )?),
        _ => None,
    };
    let loop_cfg = cfg.loop_config(train_enc.len())?;
    let majority = majority_share(&train_enc);

    // The model too (a base whose head does not fit fails here).
    let (mut model, report) = Classifier::from_pretrained(
        &base,
        kind,
        &cfg.task.labels,
        cfg.run.seed,
        tch::Device::Cpu,
    )?;
    model.precision = cfg.run.precision;
    super::pretrain::warn_if_bf16_is_emulated(cfg.run.precision);

    // 3. The run directory: locked, cleared of an earlier run (--force), marked.
    if let Some(guard) = &out_guard {
        lock = Some(run_dir::start(guard, &run_dir, &run_kind(), RUN_FILES)?);
    }
    let stop = interrupt::install("writing a checkpoint after the current step, then stopping")?;
    tracing::info!(
        train_examples = train_enc.len(),
        labels = cfg.task.labels.len(),
        head = ?report.head("classifier"),
        steps = loop_cfg.run.max_steps,
        "fine-tuning"
    );
    eprintln!(
        "fine-tuning {} ({} labels: {}) on {} examples for {} steps; majority class {:.1}% of the training labels",
        kind.architecture(),
        cfg.task.labels.len(),
        abbreviate(&cfg.task.labels),
        train_enc.len(),
        loop_cfg.run.max_steps,
        100.0 * majority
    );
    let max_steps = loop_cfg.run.max_steps;
    let mut trainer = if resuming {
        Trainer::resume_loop(loop_cfg, &model, &model.vs, &run_dir, None)?
    } else {
        Trainer::start(loop_cfg, &model, &model.vs, &run_dir)?
    };
    let source = LabelledSource::new(train_enc, tok.pad, cfg.run.seed);
    let mut obs = Driver::new(max_steps, trainer.state().step, stop);
    let outcome = trainer.run(&source, dev.as_ref().map(|d| d as &dyn HeldOut), &mut obs);
    obs.bar.finish_and_clear();
    let best = trainer.state().best;
    let result = match outcome? {
        RunOutcome::Interrupted { checkpoint, step } => {
            Err(super::finetune::interrupted(step, &checkpoint, &run_dir))
        }
        RunOutcome::Finished { checkpoint, .. } | RunOutcome::EarlyStopped { checkpoint, .. } => {
            finish(&cfg, &model, &run_dir, &checkpoint, best, test.as_ref())
        }
    };
    drop(lock);
    drop(out_guard);
    result
}

/// The share of the most frequent training label (the majority baseline).
fn majority_share(examples: &[EncodedExample]) -> f64 {
    let mut counts = std::collections::BTreeMap::<i64, usize>::new();
    for e in examples {
        match &e.label {
            finetune_data::EncodedLabel::Class(c) => *counts.entry(*c).or_default() += 1,
            finetune_data::EncodedLabel::Tokens(t) => {
                for &c in t.iter().filter(|&&c| c != cloze_mask::IGNORED_LABEL) {
                    *counts.entry(c).or_default() += 1;
                }
            }
            finetune_data::EncodedLabel::None => {}
        }
    }
    let total: usize = counts.values().sum();
    counts
        .values()
        .max()
        .map_or(0.0, |&m| m as f64 / total.max(1) as f64)
}

/// At most eight label names, for a message.
fn abbreviate(labels: &[String]) -> String {
    let mut s = labels
        .iter()
        .take(8)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if labels.len() > 8 {
        s.push_str(", ...");
    }
    s
}

/// The checkpoint of the best dev score, when the run had a dev set and it
/// still exists (a warning says so when it is gone); `None` exports the last.
pub(crate) fn best_checkpoint(
    run_dir: &Path,
    has_dev: bool,
    best: Option<(u64, f64)>,
) -> Result<Option<PathBuf>> {
    let (true, Some((step, _))) = (has_dev, best) else {
        return Ok(None);
    };
    let found = cloze_train::checkpoint::list(run_dir)?
        .into_iter()
        .find(|(s, _)| *s == step)
        .map(|(_, dir)| dir);
    if found.is_none() {
        tracing::warn!(
            step,
            "the best dev checkpoint is gone from {}: exporting the last step instead",
            run_dir.display()
        );
    }
    Ok(found)
}

/// After the last step: the best checkpoint's weights (when a dev set chose
/// one) exported as RUN/model with the tokenizer, and the test set scored.
fn finish(
    cfg: &FinetuneConfig,
    model: &Classifier,
    run_dir: &Path,
    last: &Path,
    best: Option<(u64, f64)>,
    test: Option<&LabelledEval>,
) -> Result<()> {
    let chosen = best_checkpoint(run_dir, cfg.task.dev.is_some(), best)?;
    let from = chosen.clone().unwrap_or_else(|| last.to_path_buf());
    let model_dir = export_model(model, run_dir, &from, &cfg.task.base_model)?;
    record_max_length(&model_dir, cfg.task.max_length)?;
    match (&chosen, best) {
        (Some(_), Some((step, score))) => println!(
            "best dev score {:.4} at step {step}; model (HuggingFace {}, with tokenizer): {}",
            -score,
            cfg.task.kind.architecture(),
            model_dir.display()
        ),
        _ => println!(
            "model of the last step (HuggingFace {}, with tokenizer): {}",
            cfg.task.kind.architecture(),
            model_dir.display()
        ),
    }
    if let Some(t) = test {
        let metrics = t.score(model, tch::Device::Cpu)?;
        let report = t.report(&metrics);
        println!("test: {}", report.summary());
        let path = run_dir.join(TEST_METRICS);
        let text = serde_json::to_string_pretty(&report)?;
        cloze_models::hf::write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}

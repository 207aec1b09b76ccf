//! The crate's error type.

use std::path::PathBuf;

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model computes in another precision than the run's `run.precision`.
    #[error(
        "the run's precision is {config} but the model computes in {model}: set the model's \
         precision from run.precision before starting or resuming the run"
    )]
    PrecisionMismatch {
        /// `run.precision`.
        config: cloze_models::Precision,
        /// The model's [`crate::batch::PretrainModel::precision`].
        model: cloze_models::Precision,
    },
    /// A libtorch operation failed.
    #[error("libtorch")]
    Torch(#[from] tch::TchError),
    /// A collective of a data-parallel run failed (a rank died, a timeout).
    #[error(transparent)]
    Dist(#[from] cloze_dist::Error),
    /// The held-out evaluation failed.
    #[error("held-out evaluation")]
    Eval(#[from] cloze_eval::Error),
    /// A file or directory could not be read or written.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The training configuration is not valid TOML for [`crate::TrainConfig`]
    /// (unknown fields are reported here, by name).
    #[error("config {}", path.display())]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// The parser's report (names the offending field and line).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The effective configuration could not be serialised.
    #[error("serialising the effective config")]
    ConfigWrite(#[from] toml::ser::Error),
    /// A configuration value is out of its valid range.
    #[error("invalid config: `{field}` {problem}")]
    InvalidConfig {
        /// Dotted field name, e.g. `optimizer.lr`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The `[masking]` section is not a valid masking scheme (the source names the field).
    #[error("invalid config: [masking]")]
    InvalidMasking(#[source] cloze_mask::Error),
    /// A command-line override named no known field or had a bad value.
    #[error("override `{0}`: expected KEY=VALUE with a known dotted key (e.g. optimizer.lr=1e-3)")]
    BadOverride(String),
    /// JSON (checkpoint state, metrics) could not be read or written.
    #[error("json {}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A line of `metrics.jsonl` is not a metrics record.
    #[error("{}:{line}: not a metrics record", path.display())]
    BadMetricsLine {
        /// The metrics file.
        path: PathBuf,
        /// The line number in the file, from 1.
        line: usize,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// The model crate reported an error.
    #[error("model")]
    Model(#[from] cloze_models::Error),
    /// The masking crate reported an error.
    #[error("masking")]
    Mask(#[from] cloze_mask::Error),
    /// The text crate reported an error (shards, tokenizer).
    #[error("data")]
    Text(#[from] cloze_text::Error),
    /// The loss became NaN or infinite and the run was configured to stop.
    #[error(
        "the loss became {loss} at step {step}; stopping. The last good checkpoint is {}. \
         Lower optimizer.lr, raise schedule.warmup_steps, or set run.on_nonfinite = \"skip\"",
        last_good.as_ref().map_or_else(|| "none (no checkpoint was written yet)".to_owned(), |p| p.display().to_string())
    )]
    NonFiniteLoss {
        /// The optimiser step at which it happened.
        step: u64,
        /// The loss value (NaN or +-inf).
        loss: f64,
        /// The newest complete checkpoint left on disk.
        last_good: Option<PathBuf>,
    },
    /// Too many batches in a row had a non-finite loss while skipping them.
    #[error("{0} consecutive batches had a non-finite loss; stopping")]
    TooManyNonFinite(u32),
    /// A checkpoint on disk is incomplete or its contents do not match their checksums.
    #[error(
        "checkpoint {} is damaged: {problem}{}",
        path.display(),
        newest_intact.as_ref().map_or_else(String::new, |(step, p)| format!(
            "; the newest intact checkpoint is step {step} ({})", p.display()
        ))
    )]
    CorruptCheckpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// When resuming from the newest checkpoint failed: the newest older
        /// checkpoint that verifies, to resume from instead (`None` when no
        /// other was looked at or none is intact).
        newest_intact: Option<(u64, PathBuf)>,
    },
    /// No complete checkpoint exists in the run directory.
    #[error("no complete checkpoint under {}", .0.display())]
    NoCheckpoint(PathBuf),
    /// A checkpoint asked for by step or path is not one of the run's checkpoints.
    #[error(
        "{spec} is not a checkpoint of the run in {}; its checkpoints are steps {}",
        run_dir.display(),
        if available.is_empty() { "(none)".to_owned() } else {
            available.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        }
    )]
    CheckpointNotFound {
        /// The run directory.
        run_dir: PathBuf,
        /// The step or directory as given.
        spec: String,
        /// The steps of the run's complete checkpoints.
        available: Vec<u64>,
    },
    /// A resumed run's checkpoint is already past the configured `run.max_steps`.
    #[error(
        "the run is already at step {step}, past run.max_steps = {max_steps}; nothing to train"
    )]
    AlreadyPast {
        /// The checkpoint's step.
        step: u64,
        /// The configured last step.
        max_steps: u64,
    },
    /// Resuming would change settings that decide what is trained.
    #[error(
        "resuming would change the run's settings ({}); a resumed run keeps the settings it was started with, except {}",
        changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        crate::config::RESUME_MAY_CHANGE.join(", ")
    )]
    ResumeChangesRun {
        /// Every refused difference, saved value first.
        changes: Vec<crate::config::ConfigChange>,
    },
    /// The data's sequences are longer than the model's position embeddings cover.
    #[error(
        "the data in {} holds sequences of up to {max_seq_length} tokens{}, but model.max_position_embeddings is {max_position_embeddings}: {fix}",
        data_dir.display(),
        if padded_len > max_seq_length { format!(" (padded to {padded_len} by masking.collate.pad_to)") } else { String::new() }
    )]
    SequenceTooLong {
        /// The prepared data directory.
        data_dir: PathBuf,
        /// The manifest's `max_seq_length`.
        max_seq_length: usize,
        /// The longest row a batch can have after padding.
        padded_len: usize,
        /// The model's `max_position_embeddings`.
        max_position_embeddings: i64,
        /// What to change, in words.
        fix: String,
    },
    /// A batch has no masked token: the masking config selects (almost) nothing.
    #[error(
        "{what} has no masked token, so there is nothing to predict: the masking config selects too few tokens (masking.select.rate = {rate}); raise masking.select.rate (BERT uses 0.15) or masking.select.min_predictions"
    )]
    NothingMasked {
        /// Which batch ("the training batch of step 3", "the evaluation set").
        what: String,
        /// The configured selection rate.
        rate: f64,
    },
    /// The data and the model/tokenizer do not belong together.
    #[error("data mismatch: {0}")]
    DataMismatch(String),
    /// The resumed run's configuration differs from the one it was started with.
    #[error("resume: {0}")]
    ResumeMismatch(String),
    /// A model directory without the head a fine-tuning task needs.
    #[error(
        "{dir} is not a {wanted} model (config.json names {found}); fine-tune one with `cloze finetune`"
    )]
    NotAClassifier {
        /// The model directory.
        dir: PathBuf,
        /// The HF class that was needed, or the kinds accepted.
        wanted: &'static str,
        /// What its `architectures` say.
        found: String,
    },
    /// An objective was given outputs or labels it cannot use.
    #[error("objective {objective}: {problem}")]
    ObjectiveInput {
        /// The objective's name.
        objective: &'static str,
        /// What was missing.
        problem: &'static str,
    },
    /// A knowledge-graph embedding model cannot be built for the graph given.
    #[error("knowledge-graph embeddings: {problem}")]
    KgeGraph {
        /// What is wrong, in words.
        problem: String,
    },
    /// Knowledge-graph embedding training diverged.
    #[error(
        "the knowledge-graph embedding loss became {loss} in epoch {epoch}; lower lr or init_scale"
    )]
    KgeNonFinite {
        /// The epoch, from 1.
        epoch: usize,
        /// The batch loss (NaN or +-inf).
        loss: f64,
    },
    /// A saved knowledge-graph embedding model is missing or does not match its config.
    #[error("{}: not a saved knowledge-graph embedding model: {problem}", path.display())]
    KgeFile {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong, in words.
        problem: String,
        /// The libtorch error behind it, when there is one.
        #[source]
        source: Option<tch::TchError>,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an io error with the operation and path it concerns.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}

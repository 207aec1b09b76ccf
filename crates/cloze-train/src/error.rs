//! The crate's error type.

use std::path::PathBuf;

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A libtorch operation failed.
    #[error("libtorch")]
    Torch(#[from] tch::TchError),
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
    #[error("checkpoint {} is damaged: {problem}", path.display())]
    CorruptCheckpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// No complete checkpoint exists in the run directory.
    #[error("no complete checkpoint under {}", .0.display())]
    NoCheckpoint(PathBuf),
    /// The data and the model/tokenizer do not belong together.
    #[error("data mismatch: {0}")]
    DataMismatch(String),
    /// The resumed run's configuration differs from the one it was started with.
    #[error("resume: {0}")]
    ResumeMismatch(String),
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

//! The error type of `cloze-models`.

use std::path::PathBuf;

/// Everything that can go wrong building, running, loading or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A precision name that is not `fp32`, `bf16` or `int8`.
    #[error("unknown precision `{0}`: expected fp32, bf16 or int8")]
    Precision(String),
    /// An int8 linear could not be built or run (no fbgemm engine, a weight
    /// not on the CPU, a libtorch failure inside the kernel).
    #[error("int8 inference: {0}")]
    Int8(String),
    /// A configuration value is out of its domain (e.g. hidden size not divisible by heads).
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig {
        /// The `config.json` field name.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },
    /// A model input has the wrong rank, shape or element kind.
    #[error("input `{what}` has shape {found:?} ({kind}), expected {expected}")]
    InputShape {
        /// Which input (`input_ids`, `attention_mask`, ...).
        what: &'static str,
        /// The shape that was passed.
        found: Vec<i64>,
        /// The element kind that was passed.
        kind: String,
        /// A description of the accepted shapes.
        expected: String,
    },
    /// An index input (token id, token type, position) lies outside its embedding table.
    #[error("input `{what}` holds values in [{min}, {max}], but the table has {limit} rows")]
    IndexOutOfRange {
        /// Which input.
        what: &'static str,
        /// Smallest value seen.
        min: i64,
        /// Largest value seen.
        max: i64,
        /// Number of rows of the embedding table (valid values are `0..limit`).
        limit: i64,
    },
    /// A sequence is longer than the position embedding table.
    #[error("sequence length {len} exceeds max_position_embeddings {max}")]
    SequenceTooLong {
        /// Sequence length of the batch.
        len: i64,
        /// `max_position_embeddings` of the config.
        max: i64,
    },
    /// A masked-position index lies outside `0..batch*len`.
    #[error(
        "masked position indices must be a 1-D int64 tensor with values in 0..{limit}: {reason}"
    )]
    MaskedPositions {
        /// `batch * len` of the input.
        limit: i64,
        /// What is wrong.
        reason: String,
    },
    /// A key/value cache of incremental decoding does not fit the model, the input
    /// or the step output it is used with (another batch size, another model's
    /// layers or heads).
    #[error("key/value cache: {what} is {found:?}, expected {expected:?} (-1: any)")]
    CacheMismatch {
        /// What disagrees.
        what: &'static str,
        /// What the model, the input or the cache requires.
        expected: Vec<i64>,
        /// What was found.
        found: Vec<i64>,
    },
    /// A checkpoint tensor does not have the shape the config implies.
    #[error("checkpoint tensor `{key}` has shape {found:?}, the config implies {expected:?}")]
    CheckpointShape {
        /// The checkpoint key.
        key: String,
        /// Shape the model variable has.
        expected: Vec<i64>,
        /// Shape found in the file.
        found: Vec<i64>,
    },
    /// Encoder weights and the config disagree: encoder variables the checkpoint lacks,
    /// or encoder weights (e.g. an extra layer) the config does not describe.
    #[error("checkpoint and config disagree: missing {missing:?}, unexpected {unexpected:?}")]
    CheckpointMismatch {
        /// Encoder variables without a checkpoint tensor.
        missing: Vec<String>,
        /// Encoder-looking checkpoint keys without a variable.
        unexpected: Vec<String>,
    },
    /// A head that reads the pooler output runs on an encoder built without a pooler
    /// ([`crate::BertModel::new_without_pooler`]).
    #[error("the encoder was built without a pooler, which the {head} head reads")]
    NoPooler {
        /// The head's name in the head table.
        head: &'static str,
    },
    /// An encoder layer index past the last layer.
    #[error("layer {layer} of an encoder with {layers} layers")]
    NoSuchLayer {
        /// The index asked for.
        layer: usize,
        /// Layers the encoder has.
        layers: usize,
    },
    /// A device name other than `cpu`, `cuda`, `cuda:N` or `auto`, or CUDA asked for
    /// where none is available.
    #[error("device {0:?}: expected cpu, cuda, cuda:N or auto (with CUDA available for cuda)")]
    Device(String),
    /// A checkpoint tensor has an element type we do not load.
    #[error("checkpoint tensor `{key}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The checkpoint key.
        key: String,
        /// The safetensors dtype.
        dtype: String,
    },
    /// A checkpoint tensor holds NaN or infinite values: the file is damaged or the
    /// training that wrote it diverged. Every output of such a model would be noise.
    #[error(
        "checkpoint tensor `{key}` holds {nan} NaN and {inf} infinite values (of {numel}); \
         the checkpoint is damaged or the run that wrote it diverged"
    )]
    NonFiniteWeights {
        /// The checkpoint key.
        key: String,
        /// How many of its values are NaN.
        nan: i64,
        /// How many are +/- infinity.
        inf: i64,
        /// How many values it has.
        numel: i64,
    },
    /// The checkpoint directory has no weights file we can read.
    #[error("no model.safetensors (or model.safetensors.index.json) in {dir}")]
    NoWeights {
        /// The directory searched.
        dir: PathBuf,
    },
    /// A file could not be read or written.
    #[error("i/o on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config, shard index) could not be parsed or written.
    #[error("json in {path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file is corrupt, truncated or cannot be written.
    #[error("safetensors file {path} is corrupt or truncated")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A libtorch operation failed (device mismatch, out of memory, ...).
    #[error("libtorch")]
    Torch(#[from] tch::TchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

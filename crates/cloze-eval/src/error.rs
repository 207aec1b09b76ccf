//! The error type of `cloze-eval`.

use std::path::PathBuf;

/// What can go wrong in inference and scoring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model failed (bad input, checkpoint, libtorch).
    #[error(transparent)]
    Model(#[from] cloze_models::Error),
    /// A libtorch operation failed.
    #[error("libtorch")]
    Torch(#[from] tch::TchError),
    /// The tokenizer could not be loaded or failed on a text.
    #[error("tokenizer {path}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: tokenizers::Error,
    },
    /// The tokenizer lacks a token this task needs (e.g. `[MASK]` for fill-mask).
    #[error("tokenizer {path} has no {token} token")]
    MissingToken {
        /// The tokenizer file.
        path: PathBuf,
        /// The token.
        token: &'static str,
    },
    /// The checkpoint has no trained MLM head, so fill-mask and scoring would be noise.
    #[error("the checkpoint in {dir} has no MLM head (cls.predictions.*); it is an encoder only")]
    NoMlmHead {
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// A text for fill-mask contains no `[MASK]` token.
    #[error("text {index} contains no [MASK] token")]
    NoMask {
        /// Index of the text in the input.
        index: usize,
    },
    /// A text is longer (in tokens) than the model accepts.
    #[error("text {index} has {len} tokens, more than the model's {max}")]
    TooLong {
        /// Index of the text in the input.
        index: usize,
        /// Its token count, special tokens included.
        len: usize,
        /// The model's `max_position_embeddings`.
        max: usize,
    },
    /// A maximum length that leaves no room for text besides the special tokens.
    #[error("a maximum length of {max_len} tokens leaves no room for text: the tokenizer adds {added} special tokens")]
    MaxLengthTooSmall {
        /// The maximum length asked for.
        max_len: usize,
        /// Special tokens the tokenizer adds to each text.
        added: usize,
    },
    /// An output path whose extension names no format [`crate::OutputFormat`] knows.
    #[error("{path}: the extension names no output format; use .safetensors or .jsonl")]
    UnknownOutputFormat {
        /// The output path.
        path: PathBuf,
    },
    /// Batch size zero or another option out of its domain.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A model outside this crate (behind [`crate::mlm_eval::MlmModel`])
    /// failed on a batch.
    #[error("the model failed on an evaluation batch")]
    Forward(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The error type of `cloze-eval`.

use std::path::PathBuf;

/// What can go wrong in inference and scoring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model failed (bad input, checkpoint, libtorch).
    #[error(transparent)]
    Model(#[from] cloze_models::Error),
    /// Rows could not be laid out (`cloze-mask`).
    #[error(transparent)]
    Mask(#[from] cloze_mask::Error),
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
    /// A checkpoint's tokenizer could not be found or built (no
    /// `tokenizer.json` or `vocab.txt`, a bad `tokenizer_config.json`).
    #[error(transparent)]
    Text(#[from] cloze_text::Error),
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
    /// A file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line of a confusion-set file (`char<TAB>candidates...`) is malformed.
    #[error("confusion set {}: {reason}", at(.path, *.line))]
    Confusion {
        /// The file.
        path: PathBuf,
        /// The line, from 1 (`None`: the whole file).
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A line of a spelling-correction test set (`source<TAB>target`) is malformed.
    #[error("test set {}: {reason}", at(.path, *.line))]
    CscData {
        /// The file.
        path: PathBuf,
        /// The line, from 1 (`None`: the whole file).
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A test-set pair whose source and target differ in length.
    #[error("test set {}: the source has {source_chars} characters but the target {target_chars}; \
             a spelling-correction pair must keep the length", at(.path, Some(*.line)))]
    UnalignedPair {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// Characters in the source.
        source_chars: usize,
        /// Characters in the target.
        target_chars: usize,
    },
    /// A sentence's target or prediction is not as long as its source.
    #[error(
        "sentence {index}: the source has {source_chars} characters but the {side} {other_chars}"
    )]
    UnalignedPrediction {
        /// Index of the sentence (from 0).
        index: usize,
        /// `target` or `prediction`.
        side: &'static str,
        /// Characters in the source.
        source_chars: usize,
        /// Characters in the other side.
        other_chars: usize,
    },
    /// A line of a fine-tuning data file that cannot be read as an example.
    #[error("{}: {reason}", at(.path, Some(*.line)))]
    BadExample {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A fine-tuning data file without a single example.
    #[error("{path} holds no example")]
    NoExamples {
        /// The file.
        path: PathBuf,
    },
    /// A label that is not one of the task's labels.
    #[error("unknown label {label:?}{} (the labels are {known})",
            .example.map(|i| format!(" in example {i}")).unwrap_or_default())]
    UnknownLabel {
        /// The label.
        label: String,
        /// The 0-based index of the example holding it (`None`: a label looked
        /// up alone).
        example: Option<usize>,
        /// The known labels, comma-separated.
        known: String,
    },
    /// A label list that cannot name classes (empty, or a name twice).
    #[error("labels: {0}")]
    BadLabels(String),
    /// A token-classification example whose label count is not its word count.
    #[error("{}: {words} tokens but {labels} labels", at(.path, Some(*.line)))]
    LabelCountMismatch {
        /// The file.
        path: PathBuf,
        /// 1-based line number (of the sentence's first token, in CoNLL files).
        line: usize,
        /// Tokens (words or characters) in the example.
        words: usize,
        /// Labels in the example.
        labels: usize,
    },
    /// An in-memory example (or encoded example) that cannot be encoded or
    /// batched as asked: no label although a label set was given, word and
    /// label counts that differ, label kinds mixed in one batch.
    #[error("example {example}: {reason}")]
    InvalidExample {
        /// Its 0-based index in the slice given.
        example: usize,
        /// What is wrong.
        reason: String,
    },
    /// A step model ([`crate::generate::StepDecoder`]) returned
    /// log-probabilities of the wrong shape, with NaN, or too few tokens for
    /// the EOS id.
    #[error("decoding step {step}: {reason}")]
    StepOutput {
        /// The step, from 0.
        step: usize,
        /// What is wrong.
        reason: String,
    },
    /// Candidates and references of a metric differ in number.
    #[error("{candidates} candidates but {references} references")]
    CountMismatch {
        /// Candidates given.
        candidates: usize,
        /// References given.
        references: usize,
    },
}

/// `FILE, line N` (or `FILE` alone) for messages.
fn at(path: &std::path::Path, line: Option<usize>) -> String {
    match line {
        Some(n) => format!("{}, line {n}", path.display()),
        None => path.display().to_string(),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

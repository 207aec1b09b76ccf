//! The crate's error type: every failure names the file (and line) it concerns.

use std::path::PathBuf;

/// Everything that can go wrong in the text layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{path}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// JSON could not be read or written.
    #[error("JSON in {path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A file's content has not the expected shape.
    #[error("{path}:{line}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when not line-oriented).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A text line is not valid UTF-8.
    #[error("{path}:{line}: invalid UTF-8 (pass the lossy option to replace bad bytes)")]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
    },
    /// A line exceeds the reader's limit (a binary file or a file without newlines).
    #[error("{path}:{line}: line longer than {limit} bytes, the --max-line-bytes limit: if this is a text corpus with long lines (one paragraph or document per line), raise --max-line-bytes; a binary file or text without newlines is not a corpus")]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// The corpus holds no text at all.
    #[error("corpus {path} holds no text")]
    EmptyCorpus {
        /// The corpus path.
        path: PathBuf,
    },
    /// The `tokenizers` crate reported an error.
    #[error("tokenizer {path}")]
    Tokenizer {
        /// The tokenizer file or directory (`"<memory>"` when none).
        path: PathBuf,
        /// The library's error.
        #[source]
        source: tokenizers::Error,
    },
    /// A directory given as a tokenizer (or a model directory whose tokenizer
    /// is needed) holds neither `tokenizer.json` nor `vocab.txt`.
    #[error("{dir} has neither tokenizer.json nor vocab.txt: a tokenizer or model directory needs one of them")]
    NoTokenizer {
        /// The directory.
        dir: PathBuf,
    },
    /// A token given to [`crate::TextTokenizer::with_added_tokens`] cannot be
    /// an added token.
    #[error("added token {position} ({token:?}): {reason}")]
    InvalidAddedToken {
        /// Its 1-based position in the list given.
        position: usize,
        /// The token as given.
        token: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A tokenizer lacks a required special token.
    #[error("tokenizer {path} has no {token} token")]
    MissingSpecialToken {
        /// The tokenizer file.
        path: PathBuf,
        /// The token, e.g. `[MASK]`.
        token: String,
    },
    /// Shards were written with a different tokenizer than the one given.
    #[error("shards in {dir} were made with tokenizer {expected}, but the given tokenizer hashes to {actual}")]
    TokenizerMismatch {
        /// The shard directory.
        dir: PathBuf,
        /// Hash recorded in the manifest.
        expected: String,
        /// Hash of the tokenizer given.
        actual: String,
    },
    /// A shard file or manifest is malformed or inconsistent.
    #[error("shard data {path}: {reason}")]
    BadShard {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An index past the end of a shard set.
    #[error("instance {index} out of range (the split holds {len})")]
    OutOfRange {
        /// The index asked for.
        index: u64,
        /// The number of instances.
        len: u64,
    },
    /// Invalid settings.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The maximum instance length is outside what [`crate::pretrain::MIN_SEQ_LENGTH`]
    /// and [`crate::pretrain::MAX_SEQ_LENGTH`] allow.
    #[error("max_seq_length (--max-seq-length) {value} is out of range: choose between {min} and {max} tokens per instance (BERT presets use 512 or less)")]
    SeqLengthOutOfRange {
        /// The length asked for.
        value: usize,
        /// The smallest accepted length.
        min: usize,
        /// The largest accepted length.
        max: usize,
    },
    /// A manifest names a shard file that is not a plain file name inside the
    /// data directory (absolute, `..`, or with a path separator).
    #[error("manifest {manifest} names shard file {file:?}, which is not a plain file name inside the data directory: the manifest is damaged or was not written by cloze; prepare the data again with `cloze data prepare`")]
    UnsafeShardName {
        /// The manifest file.
        manifest: PathBuf,
        /// The offending name as written in it.
        file: String,
    },
    /// An output directory was refused, is locked by another process, or
    /// could not be published (the rule is `cloze_fs`'s).
    #[error(transparent)]
    Output(#[from] cloze_fs::Error),
    /// The caller asked the operation to stop ([`crate::Progress::cancelled`]);
    /// nothing was published.
    #[error("stopped on request; nothing was published")]
    Cancelled,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Helper to attach a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    /// Wraps the error with the path it concerns.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}

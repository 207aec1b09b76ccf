//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while lexing, reading a code corpus or
/// training, loading and saving a code tokenizer.
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
    /// The source does not parse: its tree has an `ERROR` or `MISSING` node.
    /// Corpus readers skip such a file and count it.
    #[error("{line}:{column}: does not parse ({what})")]
    NotParseable {
        /// 1-based line of the first error node.
        line: u32,
        /// 1-based column (in bytes) of the first error node.
        column: u32,
        /// `syntax error` or `missing X`.
        what: String,
    },
    /// The source is larger than the lexer's byte offsets (`u32`) can address.
    #[error("source of {bytes} bytes is too large to lex (at most 4 GiB)")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// tree-sitter refused a grammar (built against an incompatible ABI).
    #[error("the {language} grammar does not load")]
    Grammar {
        /// The language's name.
        language: &'static str,
        /// tree-sitter's error.
        #[source]
        source: tree_sitter::LanguageError,
    },
    /// A source file is not valid UTF-8 (and lossy reading was not asked for).
    #[error("{path}:{line}: invalid UTF-8 (pass the lossy option to replace bad bytes)")]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line of the first bad byte.
        line: u64,
    },
    /// A directory holds no `.java` or `.ts` source.
    #[error("{dir} holds no .java or .ts source files")]
    NoSources {
        /// The directory.
        dir: PathBuf,
    },
    /// The package asked to be held out is not among the corpus's packages.
    #[error("package {name:?} is not in the corpus (its packages: {known})")]
    UnknownPackage {
        /// The package asked for.
        name: String,
        /// Comma-separated packages of the corpus.
        known: String,
    },
    /// Invalid settings.
    #[error("invalid setting: {0}")]
    Config(String),
    /// A code tokenizer directory is not one this crate wrote.
    #[error("{path}: {reason}")]
    BadTokenizer {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
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
    /// The text layer failed (training, loading or saving the WordPiece
    /// tokenizer underneath the code tokenizer).
    #[error(transparent)]
    Text(#[from] cloze_text::Error),
    /// An output directory was refused or could not be published.
    #[error(transparent)]
    Output(#[from] cloze_fs::Error),
    /// The caller asked to stop ([`cloze_text::Progress::cancelled`]).
    #[error("cancelled")]
    Cancelled,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
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

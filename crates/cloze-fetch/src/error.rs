//! The crate's error type: every failure names the dataset, command, archive or
//! file it concerns.

use std::path::PathBuf;

/// Everything that can go wrong while looking up, downloading or converting a
/// dataset.
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
    /// No dataset of that name is registered.
    #[error("unknown dataset {name:?} (known: {known})")]
    UnknownDataset {
        /// The name asked for.
        name: String,
        /// Comma-separated registered names.
        known: String,
    },
    /// An external package client could not be started.
    #[error("could not run `{program}` (is it installed?)")]
    Spawn {
        /// The program.
        program: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// An external package client exited with an error.
    #[error("`{command}` failed with {status}: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// A download produced no file, or more than one.
    #[error("`{command}` left {count} files in {dir}, expected exactly one archive")]
    DownloadCount {
        /// The command line.
        command: String,
        /// The download directory.
        dir: PathBuf,
        /// How many files it left.
        count: usize,
    },
    /// A downloaded archive does not have the pinned checksum.
    #[error("checksum mismatch for {path}: expected sha256 {expected}, got {actual}")]
    Checksum {
        /// The archive.
        path: PathBuf,
        /// Pinned sha256.
        expected: String,
        /// Actual sha256.
        actual: String,
    },
    /// An archive lacks a member the dataset needs.
    #[error("archive {archive} has no member {member}")]
    MissingMember {
        /// The archive.
        archive: PathBuf,
        /// The member path.
        member: String,
    },
    /// A zip archive (wheel) could not be read.
    #[error("reading zip archive {path}")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The zip reader's error.
        #[source]
        source: zip::result::ZipError,
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
    /// A file's content (an archive, or a member of one) has not the expected
    /// shape.
    #[error("{path}:{line}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when not line-oriented).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Invalid settings (no cache directory can be found).
    #[error("invalid setting: {0}")]
    Config(String),
    /// A dataset a command reads is not in the cache (or its directory lacks
    /// a file or the `fetched.json` record).
    #[error(
        "dataset {dataset:?} is not cached ({path} is missing): run `cloze data fetch {dataset}`"
    )]
    NotCached {
        /// The registry name.
        dataset: String,
        /// The file that is missing.
        path: PathBuf,
    },
    /// A cached dataset's file has not the shape its converter writes.
    #[error("{path}:{line}: {reason}; the cached dataset {dataset:?} looks damaged: fetch it again with `cloze data fetch {dataset} --force`")]
    BadCache {
        /// The registry name.
        dataset: String,
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// An output directory was refused, is locked by another process, or
    /// could not be published (the rule is `cloze_fs`'s).
    #[error(transparent)]
    Output(#[from] cloze_fs::Error),
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

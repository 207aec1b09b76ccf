//! Code corpora: a directory of `.java` and `.ts` files (a cached `jdk-src`
//! or `ts-src` dataset, or any directory of sources) read into lexed
//! [`CodeFile`]s, and split for evaluation.
//!
//! Files are found below the directory (hidden files and directories
//! skipped, as for text corpora), kept when [`Language::from_path`] knows
//! them, and read in byte order of their relative paths, so every run reads
//! the same files in the same order. Invalid UTF-8 follows the text layer's
//! policy ([`cloze_text::corpus::CorpusOptions::lossy_utf8`]): an error
//! naming the file and line, unless [`ReadOptions::lossy_utf8`] asks to
//! replace bad bytes with U+FFFD. A file that does not parse is skipped and
//! recorded in [`CodeCorpus::skipped`] with the reason; it never stops the
//! reading.
//!
//! A file's *package* is the first directory of its relative path (a JDK
//! module such as `java.base`, an npm package such as `zod`), `.` for a file
//! directly in the corpus directory. [`split_files`] puts every file of the
//! held-out package, if one is named, in the cross-project split, and the
//! others in train, validation or test by a hash of their relative path
//! (5% validation and 5% test by default): a file's split depends on its
//! path and the seed only, never on which other files exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cloze_text::Progress;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::lex::{Language, Lexeme, Lexer};

/// Reader settings.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Replace invalid UTF-8 with U+FFFD instead of failing.
    pub lossy_utf8: bool,
}

/// One lexed source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeFile {
    /// Its path relative to the corpus directory, `/`-separated.
    pub path: String,
    /// Its package: the first directory of `path` (`.` for none).
    pub package: String,
    /// Its language.
    pub language: Language,
    /// Its lexemes, comments dropped.
    pub lexemes: Vec<Lexeme>,
}

/// A source file that was not lexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    /// Its relative path.
    pub path: String,
    /// Why (`12:5: does not parse (syntax error)`).
    pub reason: String,
}

/// A read corpus.
#[derive(Debug, Clone, Default)]
pub struct CodeCorpus {
    /// The lexed files, in path order.
    pub files: Vec<CodeFile>,
    /// The files that did not parse, in path order.
    pub skipped: Vec<SkippedFile>,
    /// How many files had invalid UTF-8 replaced (with
    /// [`ReadOptions::lossy_utf8`]).
    pub lossy_files: usize,
}

/// A source file found below a corpus directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Its full path.
    pub full: PathBuf,
    /// Its path relative to the corpus directory, `/`-separated.
    pub path: String,
    /// Its language.
    pub language: Language,
}

/// The package of a relative path: its first directory, `.` for none.
pub fn package_of(path: &str) -> &str {
    match path.split_once('/') {
        Some((first, _)) => first,
        None => ".",
    }
}

/// The `.java` and `.ts` files below `dir`, sorted by relative path;
/// [`Error::NoSources`] when there is none.
pub fn source_files(dir: &Path) -> Result<Vec<SourceFile>> {
    let files = cloze_text::corpus::corpus_files(dir)?;
    let mut out = Vec::new();
    for full in files {
        let Some(language) = Language::from_path(&full) else {
            continue;
        };
        let Ok(rel) = full.strip_prefix(dir) else {
            continue;
        };
        let path = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        out.push(SourceFile {
            full,
            path,
            language,
        });
    }
    if out.is_empty() {
        return Err(Error::NoSources {
            dir: dir.to_path_buf(),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Reads a source file as text: invalid UTF-8 is [`Error::InvalidUtf8`]
/// (naming the line) unless `lossy`, which replaces it with U+FFFD. Returns
/// the text and whether anything was replaced.
pub fn read_source(path: &Path, lossy: bool) -> Result<(String, bool)> {
    let bytes = std::fs::read(path).at(path)?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok((text, false)),
        Err(e) if lossy => Ok((String::from_utf8_lossy(e.as_bytes()).into_owned(), true)),
        Err(e) => {
            let good = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..good].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            Err(Error::InvalidUtf8 {
                path: path.to_path_buf(),
                line,
            })
        }
    }
}

/// Files lexed between two polls of [`Progress::cancelled`].
const CHUNK: usize = 64;

enum Outcome {
    Lexed(CodeFile, bool),
    Skipped(SkippedFile),
}

/// Reads and lexes every source file below `dir` (in parallel; the result
/// does not depend on the thread count). Reports a `lex` stage in files.
pub fn read_corpus(
    dir: &Path,
    options: &ReadOptions,
    progress: &dyn Progress,
) -> Result<CodeCorpus> {
    let _span = tracing::info_span!("read_code_corpus", dir = %dir.display()).entered();
    let sources = source_files(dir)?;
    progress.stage("lex", Some(sources.len() as u64), "files");
    let mut corpus = CodeCorpus::default();
    for chunk in sources.chunks(CHUNK) {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let outcomes: Vec<Result<Outcome>> = chunk
            .par_iter()
            .map_init(
                || [None::<Lexer>, None::<Lexer>],
                |lexers, file| lex_file(lexers, file, options),
            )
            .collect();
        for outcome in outcomes {
            match outcome? {
                Outcome::Lexed(file, lossy) => {
                    corpus.lossy_files += usize::from(lossy);
                    corpus.files.push(file);
                }
                Outcome::Skipped(s) => {
                    tracing::debug!(path = %s.path, reason = %s.reason, "skipped");
                    corpus.skipped.push(s);
                }
            }
        }
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    Ok(corpus)
}

fn lex_file(
    lexers: &mut [Option<Lexer>; 2],
    file: &SourceFile,
    options: &ReadOptions,
) -> Result<Outcome> {
    let (text, lossy) = read_source(&file.full, options.lossy_utf8)?;
    let slot = &mut lexers[file.language as usize];
    let lexer = match slot {
        Some(l) => l,
        None => slot.insert(Lexer::new(file.language)?),
    };
    match lexer.lex(&text) {
        Ok(lexemes) => Ok(Outcome::Lexed(
            CodeFile {
                path: file.path.clone(),
                package: package_of(&file.path).to_string(),
                language: file.language,
                lexemes,
            },
            lossy,
        )),
        Err(e @ (Error::NotParseable { .. } | Error::TooLarge { .. })) => {
            Ok(Outcome::Skipped(SkippedFile {
                path: file.path.clone(),
                reason: e.to_string(),
            }))
        }
        Err(e) => Err(e),
    }
}

/// The part of a corpus a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Split {
    /// Training files.
    #[serde(rename = "train")]
    Train,
    /// Validation files (same packages as training).
    #[serde(rename = "valid")]
    Valid,
    /// Test files (same packages as training, unseen files).
    #[serde(rename = "test")]
    Test,
    /// The files of the held-out package (cross-project test).
    #[serde(rename = "test-package")]
    TestPackage,
}

impl Split {
    /// Every split, in file order of `cloze data code`'s output.
    pub const ALL: [Split; 4] = [Split::Train, Split::Valid, Split::Test, Split::TestPackage];

    /// Its name: `train`, `valid`, `test`, `test-package` (the stem of its
    /// `.jsonl` file).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
            Split::TestPackage => "test-package",
        }
    }
}

/// How files are split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitOptions {
    /// Percent of the files (outside the held-out package) for validation.
    pub valid_percent: u8,
    /// Percent for test.
    pub test_percent: u8,
    /// The package held out whole for the cross-project test.
    pub heldout_package: Option<String>,
    /// Salt of the path hash.
    pub seed: u64,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            valid_percent: 5,
            test_percent: 5,
            heldout_package: None,
            seed: 0,
        }
    }
}

/// A stable bucket in `0..100` of a relative path: FNV-1a over its bytes,
/// mixed with the seed (SplitMix64), so it never changes between runs,
/// platforms or versions of the standard library.
pub fn path_bucket(path: &str, seed: u64) -> u8 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (cloze_core::rng::mix64(h ^ cloze_core::rng::mix64(seed)) % 100) as u8
}

/// The split of the file at `path` (relative) in `package`.
pub fn split_of(path: &str, package: &str, options: &SplitOptions) -> Split {
    if options.heldout_package.as_deref() == Some(package) {
        return Split::TestPackage;
    }
    let bucket = path_bucket(path, options.seed);
    if bucket < options.valid_percent {
        Split::Valid
    } else if bucket < options.valid_percent.saturating_add(options.test_percent) {
        Split::Test
    } else {
        Split::Train
    }
}

/// A corpus's files by split, each in path order.
#[derive(Debug, Clone, Default)]
pub struct CodeSplits {
    /// Training files.
    pub train: Vec<CodeFile>,
    /// Validation files.
    pub valid: Vec<CodeFile>,
    /// Test files.
    pub test: Vec<CodeFile>,
    /// The held-out package's files.
    pub test_package: Vec<CodeFile>,
}

impl CodeSplits {
    /// The files of one split.
    pub fn get(&self, split: Split) -> &[CodeFile] {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
            Split::TestPackage => &self.test_package,
        }
    }
}

/// The distinct packages of `files`, sorted.
pub fn packages(files: &[CodeFile]) -> Vec<String> {
    let set: BTreeSet<&str> = files.iter().map(|f| f.package.as_str()).collect();
    set.into_iter().map(str::to_string).collect()
}

/// Splits `files` by [`split_of`]. The held-out package must be one of the
/// files' packages ([`Error::UnknownPackage`] otherwise) and the two
/// percentages must leave some training files.
pub fn split_files(files: Vec<CodeFile>, options: &SplitOptions) -> Result<CodeSplits> {
    if u16::from(options.valid_percent) + u16::from(options.test_percent) >= 100 {
        return Err(Error::Config(format!(
            "validation {}% and test {}% leave no training files",
            options.valid_percent, options.test_percent
        )));
    }
    if let Some(name) = &options.heldout_package {
        let known = packages(&files);
        if !known.contains(name) {
            return Err(Error::UnknownPackage {
                name: name.clone(),
                known: known.join(", "),
            });
        }
    }
    let mut splits = CodeSplits::default();
    for file in files {
        let target = match split_of(&file.path, &file.package, options) {
            Split::Train => &mut splits.train,
            Split::Valid => &mut splits.valid,
            Split::Test => &mut splits.test,
            Split::TestPackage => &mut splits.test_package,
        };
        target.push(file);
    }
    Ok(splits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_first_directories() {
        assert_eq!(package_of("java.base/java/lang/String.java"), "java.base");
        assert_eq!(package_of("zod/v3/types.ts"), "zod");
        assert_eq!(package_of("Top.java"), ".");
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // Pinned: a change of hash would silently move files between splits.
        assert_eq!(
            path_bucket("java.base/java/lang/String.java", 0),
            path_bucket("java.base/java/lang/String.java", 0)
        );
        let mut counts = [0usize; 100];
        for i in 0..10_000 {
            counts[path_bucket(&format!("p/f{i}.java"), 0) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (50..=150).contains(&c)),
            "{counts:?}"
        );
        let moved = (0..1000)
            .filter(|i| {
                let p = format!("p/f{i}.java");
                path_bucket(&p, 0) != path_bucket(&p, 1)
            })
            .count();
        assert!(moved > 900, "{moved}");
    }
}

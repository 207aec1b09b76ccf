//! Fixed, documented fine-tuning splits for the Chinese side of MacBERT, and
//! the pretraining corpus without their dev and test texts.
//!
//! From two cached datasets ([`crate::datasets`]) [`write_tasks`] makes:
//!
//! - `zh-sentiment/{train,dev,test}.jsonl`: `{"text": .., "label":
//!   "negative"|"positive"}` from `zh-reviews` (`reviews.jsonl`). Texts are
//!   trimmed; empty ones are dropped; identical texts are kept once (the
//!   source holds most reviews twice), and a text seen with both labels is
//!   dropped.
//! - `zh-cws/{train,dev,test}.jsonl`: word segmentation as character tagging,
//!   `{"tokens": ["迈", "向", ..], "labels": ["B", "E", ..]}` with BMES tags
//!   ([`Tag`]), from `pd1998` (`pd1998.gold.txt`). Each paragraph is cut into
//!   sentences after a word ending in `。！？；!?` (closing quotes and brackets
//!   stay with their sentence) and at the paragraph's end, and a sentence
//!   longer than [`MAX_CWS_CHARS`] characters is cut at word boundaries
//!   (preferably after `，、：`), so every example fits a 128-token model with
//!   `[CLS]` and `[SEP]` and no word is ever split. Identical paragraphs are
//!   kept once.
//! - `zh-pretrain.txt`: the pretraining corpus in BERT's text format (one
//!   sentence per line, a blank line between documents; what `cloze data
//!   prepare --corpus` and `cloze tokenizer train --corpus` read): every
//!   `pd1998` paragraph and every review whose split is train, cut into
//!   sentences exactly as the cached `pd1998.txt` and `zh-reviews.txt` are
//!   ([`split_chinese`]), without any sentence that equals a dev or test
//!   example of either task (a whole text, one of its sentences, or a
//!   segmentation chunk). No pretraining sentence is identical to dev or
//!   test text; near-duplicates (a review differing in punctuation, a longer
//!   sentence containing a test text) are not detected.
//! - `splits.json`: the [`TasksReport`]: counts per split, the seed and rule,
//!   the sha256 of both sources and of every file written.
//!
//! **The split rule.** An example goes to a split by a hash of its own text,
//! never by its position, so the splits do not depend on the order of the
//! source or on the thread count, and a text (or paragraph) can never be in
//! two splits: `bucket = u64(first 8 bytes of sha256(seed as 8 little-endian
//! bytes ‖ task name ‖ 0x00 ‖ text)) mod 1000`; train below 800, dev below
//! 900, test otherwise ([`TaskConfig::split_of`]). The task name is
//! `zh-sentiment` (text: the trimmed review) or `zh-cws` (text: the paragraph
//! without spaces, so all chunks of a paragraph share its split). The seed is
//! [`SPLIT_SEED`].
//!
//! ```
//! use cloze_fetch::tasks::{bmes, cws_chunks, Tag, TaskConfig, TaskSplit};
//!
//! let example = bmes(&["迈向", "新", "世纪"]);
//! assert_eq!(example.tokens.concat(), "迈向新世纪");
//! assert_eq!(example.labels, [Tag::B, Tag::E, Tag::S, Tag::B, Tag::E]);
//! assert_eq!(example.words(), Some(vec!["迈向".to_string(), "新".into(), "世纪".into()]));
//!
//! // Sentences end after 。！？； and long ones are cut between words.
//! let chunks = cws_chunks(&["我们", "好", "。", "你们", "呢", "？"], 126);
//! assert_eq!(chunks.chunks, vec![vec!["我们", "好", "。"], vec!["你们", "呢", "？"]]);
//!
//! // The split is a pure function of (seed, task, text).
//! let config = TaskConfig::default();
//! let split = config.split_of("zh-sentiment", "这本书很好");
//! assert_eq!(split, config.split_of("zh-sentiment", "这本书很好"));
//! assert!(TaskSplit::ALL.contains(&split));
//! ```

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use cloze_fs::{OutputDir, OutputKind};
use cloze_text::sentences::split_chinese;
use serde::{Deserialize, Serialize};

use crate::datasets::dataset_dir;
use crate::error::{Error, IoContext, Result};

/// The seed of the split hash. Changing it changes every split: the figures
/// measured on these tasks depend on it, so it is fixed.
pub const SPLIT_SEED: u64 = 13;
/// The longest segmentation example, in characters: 126 plus `[CLS]` and
/// `[SEP]` fill a 128-token model.
pub const MAX_CWS_CHARS: usize = 126;
/// The version of the output layout and of `splits.json`.
pub const FORMAT_VERSION: u32 = 1;
/// The sentiment task's directory inside the output.
pub const SENTIMENT_TASK: &str = "zh-sentiment";
/// The segmentation task's directory inside the output.
pub const CWS_TASK: &str = "zh-cws";
/// The pretraining corpus inside the output.
pub const PRETRAIN_FILE: &str = "zh-pretrain.txt";
/// The report inside the output.
pub const SPLITS_FILE: &str = "splits.json";

const PD1998: &str = "pd1998";
const PD1998_GOLD: &str = "pd1998.gold.txt";
const REVIEWS: &str = "zh-reviews";
const REVIEWS_FILE: &str = "reviews.jsonl";
const RECORD: &str = "fetched.json";

/// Characters that end a sentence (the set [`split_chinese`] uses).
fn ends_sentence(word: &str) -> bool {
    word.chars()
        .last()
        .is_some_and(|c| matches!(c, '。' | '！' | '？' | '；' | '!' | '?'))
}

/// A word made only of what [`split_chinese`] keeps with the sentence before it.
fn is_closer(word: &str) -> bool {
    !word.is_empty()
        && word.chars().all(|c| {
            matches!(
                c,
                '”' | '’' | '」' | '』' | '）' | ')' | '"' | '。' | '！' | '？' | '!' | '?'
            )
        })
}

/// A word after which a long sentence is best cut.
fn is_soft_break(word: &str) -> bool {
    word.chars()
        .last()
        .is_some_and(|c| matches!(c, '，' | '、' | '：' | ',' | ':'))
}

fn chars(word: &str) -> usize {
    word.chars().count()
}

/// One of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskSplit {
    /// Fine-tuning data (its texts may also be pretrained on).
    Train,
    /// Model selection.
    Dev,
    /// The final figure.
    Test,
}

impl TaskSplit {
    /// All splits, in file order.
    pub const ALL: [TaskSplit; 3] = [TaskSplit::Train, TaskSplit::Dev, TaskSplit::Test];

    /// `train`, `dev` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            TaskSplit::Train => "train",
            TaskSplit::Dev => "dev",
            TaskSplit::Test => "test",
        }
    }

    /// Whether texts of this split are kept out of the pretraining corpus.
    pub fn is_held_out(self) -> bool {
        self != TaskSplit::Train
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One value per split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerSplit<T> {
    /// The train split's value.
    pub train: T,
    /// The dev split's value.
    pub dev: T,
    /// The test split's value.
    pub test: T,
}

impl<T> PerSplit<T> {
    /// The value of `split`.
    pub fn get(&self, split: TaskSplit) -> &T {
        match split {
            TaskSplit::Train => &self.train,
            TaskSplit::Dev => &self.dev,
            TaskSplit::Test => &self.test,
        }
    }

    /// The value of `split`, mutably.
    pub fn get_mut(&mut self, split: TaskSplit) -> &mut T {
        match split {
            TaskSplit::Train => &mut self.train,
            TaskSplit::Dev => &mut self.dev,
            TaskSplit::Test => &mut self.test,
        }
    }
}

/// How the splits are drawn and how long a segmentation example may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Seed of the split hash ([`SPLIT_SEED`]).
    pub seed: u64,
    /// Buckets (of 1000) that go to train.
    pub train_per_mille: u32,
    /// Buckets (of 1000) that go to dev; the rest go to test.
    pub dev_per_mille: u32,
    /// Longest segmentation example in characters ([`MAX_CWS_CHARS`]).
    pub max_cws_chars: usize,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            seed: SPLIT_SEED,
            train_per_mille: 800,
            dev_per_mille: 100,
            max_cws_chars: MAX_CWS_CHARS,
        }
    }
}

impl TaskConfig {
    /// Refuses empty splits and a zero-length cap.
    pub fn validate(&self) -> Result<()> {
        if self.train_per_mille == 0
            || self.dev_per_mille == 0
            || self.train_per_mille + self.dev_per_mille >= 1000
        {
            return Err(Error::Config(format!(
                "task splits of {}/{}/{} per mille: every split needs at least one bucket of 1000",
                self.train_per_mille,
                self.dev_per_mille,
                1000_i64 - i64::from(self.train_per_mille) - i64::from(self.dev_per_mille)
            )));
        }
        if self.max_cws_chars == 0 {
            return Err(Error::Config(
                "max_cws_chars is 0: a segmentation example needs at least one character".into(),
            ));
        }
        Ok(())
    }

    /// The split of the example `text` of `task`: see the module documentation.
    pub fn split_of(&self, task: &str, text: &str) -> TaskSplit {
        let mut key = Vec::with_capacity(8 + task.len() + 1 + text.len());
        key.extend_from_slice(&self.seed.to_le_bytes());
        key.extend_from_slice(task.as_bytes());
        key.push(0);
        key.extend_from_slice(text.as_bytes());
        let digest = cloze_fs::digest::sha256_hex(&key);
        // Sixteen hex digits are eight bytes, so this never fails.
        let x = u64::from_str_radix(&digest[..16], 16).unwrap_or(0);
        let bucket = (x % 1000) as u32;
        if bucket < self.train_per_mille {
            TaskSplit::Train
        } else if bucket < self.train_per_mille + self.dev_per_mille {
            TaskSplit::Dev
        } else {
            TaskSplit::Test
        }
    }

    fn rule(&self) -> String {
        format!(
            "bucket = u64_be(sha256(seed_le64 || task || 0x00 || text)[0..8]) mod 1000; \
             train < {}, dev < {}, test otherwise; text = trimmed review (zh-sentiment) \
             or paragraph without spaces (zh-cws)",
            self.train_per_mille,
            self.train_per_mille + self.dev_per_mille
        )
    }
}

/// A review's polarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sentiment {
    /// `label` 0 in `reviews.jsonl`.
    Negative,
    /// `label` 1 in `reviews.jsonl`.
    Positive,
}

/// One line of `zh-sentiment/*.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentimentExample {
    /// The review, trimmed.
    pub text: String,
    /// Its polarity.
    pub label: Sentiment,
}

/// A BMES segmentation tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tag {
    /// First character of a word of two or more.
    B,
    /// Inner character of a word of three or more.
    M,
    /// Last character of a word of two or more.
    E,
    /// A one-character word.
    S,
}

/// One line of `zh-cws/*.jsonl`: characters and their tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CwsExample {
    /// One string per character (Unicode scalar value).
    pub tokens: Vec<String>,
    /// One tag per character.
    pub labels: Vec<Tag>,
}

impl CwsExample {
    /// The words the tags describe, or `None` when the tags are not a valid
    /// BMES sequence (or not one per token).
    pub fn words(&self) -> Option<Vec<String>> {
        if self.tokens.len() != self.labels.len() {
            return None;
        }
        let mut words = Vec::new();
        let mut open: Option<String> = None;
        for (token, tag) in self.tokens.iter().zip(&self.labels) {
            match (tag, open.as_mut()) {
                (Tag::S, None) => words.push(token.clone()),
                (Tag::B, None) => open = Some(token.clone()),
                (Tag::M, Some(word)) => word.push_str(token),
                (Tag::E, Some(word)) => {
                    word.push_str(token);
                    words.extend(open.take());
                }
                _ => return None,
            }
        }
        open.is_none().then_some(words)
    }

    /// The example's text.
    pub fn text(&self) -> String {
        self.tokens.concat()
    }
}

/// Tags the characters of `words` with BMES.
pub fn bmes<S: AsRef<str>>(words: &[S]) -> CwsExample {
    let mut tokens = Vec::new();
    let mut labels = Vec::new();
    for word in words {
        let n = chars(word.as_ref());
        for (i, c) in word.as_ref().chars().enumerate() {
            tokens.push(c.to_string());
            labels.push(match (n, i) {
                (1, _) => Tag::S,
                (_, 0) => Tag::B,
                _ if i + 1 == n => Tag::E,
                _ => Tag::M,
            });
        }
    }
    CwsExample { tokens, labels }
}

/// A paragraph's words cut into sentences: after a word ending in
/// `。！？；!?` and the closing punctuation following it (the boundaries
/// [`split_chinese`] draws in the plain text), and at the end.
pub fn cws_sentences<'w, 'a>(words: &'w [&'a str]) -> Vec<&'w [&'a str]> {
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < words.len() {
        if ends_sentence(words[i]) {
            let mut end = i + 1;
            while end < words.len() && is_closer(words[end]) {
                end += 1;
            }
            out.push(&words[start..end]);
            start = end;
            i = end;
        } else {
            i += 1;
        }
    }
    if start < words.len() {
        out.push(&words[start..]);
    }
    out
}

/// A paragraph cut into segmentation examples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunks<'a> {
    /// Each example's words: whole gold words, at most the cap in characters.
    pub chunks: Vec<Vec<&'a str>>,
    /// Sentences dropped because one of their words alone is over the cap.
    pub dropped_sentences: usize,
}

/// Cuts a paragraph's words into [`cws_sentences`] and every sentence longer
/// than `max_chars` characters into pieces of at most `max_chars`, only
/// between words: after the last `，、：` that leaves a piece, else before the
/// word that would overflow. A sentence holding a single word longer than the
/// cap cannot be cut without splitting that word and is dropped (counted).
pub fn cws_chunks<'a>(words: &[&'a str], max_chars: usize) -> Chunks<'a> {
    let mut out = Chunks::default();
    'sentences: for sentence in cws_sentences(words) {
        if sentence.iter().any(|w| chars(w) > max_chars) {
            out.dropped_sentences += 1;
            continue 'sentences;
        }
        let mut chunk: Vec<&'a str> = Vec::new();
        let mut len = 0;
        // Length of `chunk` up to and including its last soft break.
        let mut soft: Option<usize> = None;
        for &word in sentence {
            let n = chars(word);
            while len + n > max_chars && !chunk.is_empty() {
                let cut = soft.filter(|&c| c < chunk.len()).unwrap_or(chunk.len());
                let rest = chunk.split_off(cut);
                out.chunks.push(std::mem::replace(&mut chunk, rest));
                len = chunk.iter().map(|w| chars(w)).sum();
                // The cut was at the last soft break, so none is left.
                soft = None;
            }
            chunk.push(word);
            len += n;
            if is_soft_break(word) {
                soft = Some(chunk.len());
            }
        }
        if !chunk.is_empty() {
            out.chunks.push(chunk);
        }
    }
    out
}

/// Where the two source files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSources {
    /// `pd1998.gold.txt` of the `pd1998` dataset.
    pub pd1998_gold: PathBuf,
    /// `reviews.jsonl` of the `zh-reviews` dataset.
    pub reviews: PathBuf,
}

impl TaskSources {
    /// The files of the cached `pd1998` and `zh-reviews` datasets under
    /// `cache_root`; [`Error::NotCached`] (naming `cloze data fetch NAME`)
    /// when either is missing or was never completed.
    pub fn from_cache(cache_root: &Path) -> Result<Self> {
        let file = |dataset: &str, name: &str| -> Result<PathBuf> {
            let dir = dataset_dir(cache_root, dataset);
            for f in [name, RECORD] {
                let path = dir.join(f);
                if !path.is_file() {
                    return Err(Error::NotCached {
                        dataset: dataset.to_string(),
                        path,
                    });
                }
            }
            Ok(dir.join(name))
        };
        Ok(Self {
            pd1998_gold: file(PD1998, PD1998_GOLD)?,
            reviews: file(REVIEWS, REVIEWS_FILE)?,
        })
    }

    /// Both files (the inputs an output directory may never hold).
    pub fn inputs(&self) -> [&Path; 2] {
        [&self.pd1998_gold, &self.reviews]
    }
}

/// One source file as `splits.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// The dataset it belongs to (`cloze data fetch NAME`).
    pub dataset: String,
    /// Its file name in the dataset.
    pub file: String,
    /// Its sha256.
    pub sha256: String,
}

/// Counts of one sentiment split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentimentCounts {
    /// Reviews.
    pub examples: u64,
    /// Positive reviews.
    pub positive: u64,
    /// Negative reviews.
    pub negative: u64,
    /// Characters.
    pub chars: u64,
}

/// What became of `reviews.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentimentReport {
    /// Lines read.
    pub lines: u64,
    /// Lines whose text is empty once trimmed (dropped).
    pub empty: u64,
    /// Lines repeating an earlier text (dropped: each text is kept once).
    pub duplicates: u64,
    /// Distinct texts seen with both labels (dropped).
    pub conflicting: u64,
    /// Counts per split.
    pub splits: PerSplit<SentimentCounts>,
}

/// Counts of one segmentation split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CwsCounts {
    /// Source paragraphs.
    pub paragraphs: u64,
    /// Examples (sentences or pieces of them).
    pub examples: u64,
    /// Gold words.
    pub words: u64,
    /// Characters (= tags).
    pub chars: u64,
    /// The longest example, in characters.
    pub longest: u64,
}

/// What became of `pd1998.gold.txt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CwsReport {
    /// Non-empty paragraph lines read.
    pub lines: u64,
    /// Lines repeating an earlier paragraph (dropped).
    pub duplicates: u64,
    /// Sentences dropped because a single word is longer than the cap.
    pub dropped_sentences: u64,
    /// Counts per split.
    pub splits: PerSplit<CwsCounts>,
}

/// What went into `zh-pretrain.txt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PretrainReport {
    /// Documents written (paragraphs and reviews).
    pub documents: u64,
    /// Of which `pd1998` paragraphs.
    pub pd1998_documents: u64,
    /// Of which reviews.
    pub review_documents: u64,
    /// Sentences (lines) written.
    pub sentences: u64,
    /// Characters written (line breaks excluded).
    pub chars: u64,
    /// Distinct paragraphs and reviews left out because their split is dev or test.
    pub held_out_documents: u64,
    /// Sentences of train-side documents left out because they equal a dev or
    /// test example, or one of its sentences.
    pub removed_sentences: u64,
    /// Train-side documents left with no sentence by that rule.
    pub emptied_documents: u64,
}

/// Everything `splits.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TasksReport {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// `cloze VERSION`.
    pub created_by: String,
    /// Seed, proportions and cap.
    pub config: TaskConfig,
    /// The split rule in words.
    pub split_rule: String,
    /// The two sources with their checksums.
    pub sources: Vec<SourceFile>,
    /// The sentiment task.
    #[serde(rename = "zh-sentiment")]
    pub sentiment: SentimentReport,
    /// The segmentation task.
    #[serde(rename = "zh-cws")]
    pub cws: CwsReport,
    /// The pretraining corpus.
    #[serde(rename = "zh-pretrain")]
    pub pretrain: PretrainReport,
    /// sha256 of every file written, by path relative to the output directory.
    pub files: std::collections::BTreeMap<String, String>,
}

/// The output kind of `cloze data tasks`, for `cloze-fs`.
pub fn output_kind() -> OutputKind {
    OutputKind::new("data tasks", "--force")
}

fn sha256_file(path: &Path) -> Result<String> {
    cloze_fs::digest::sha256_file(path).at(path)
}

fn read_text(dataset: &str, path: &Path) -> Result<String> {
    let bytes = fs::read(path).at(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let before = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        Error::BadCache {
            dataset: dataset.to_string(),
            path: path.to_path_buf(),
            line: before.iter().filter(|&&b| b == b'\n').count() as u64 + 1,
            reason: "invalid UTF-8".into(),
        }
    })
}

#[derive(Deserialize)]
struct RawReview {
    text: String,
    label: u8,
}

/// `(line, text, label)` of every line of `reviews.jsonl`, blank lines skipped.
fn read_reviews(path: &Path, text: &str) -> Result<Vec<(String, Sentiment)>> {
    let bad = |line: usize, reason: String| Error::BadCache {
        dataset: REVIEWS.to_string(),
        path: path.to_path_buf(),
        line: line as u64 + 1,
        reason,
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let raw: RawReview = serde_json::from_str(line).map_err(|e| {
            bad(
                i,
                format!("not a {{\"text\": .., \"label\": 0|1}} object ({e})"),
            )
        })?;
        let label = match raw.label {
            0 => Sentiment::Negative,
            1 => Sentiment::Positive,
            other => return Err(bad(i, format!("label {other}, expected 0 or 1"))),
        };
        out.push((raw.text, label));
    }
    if out.is_empty() {
        return Err(bad(0, "no reviews".into()));
    }
    Ok(out)
}

/// A JSONL file of one split, with its counts kept by the caller.
struct SplitWriters {
    files: [BufWriter<fs::File>; 3],
    paths: [PathBuf; 3],
}

impl SplitWriters {
    fn create(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).at(dir)?;
        let paths = TaskSplit::ALL.map(|s| dir.join(format!("{}.jsonl", s.name())));
        let mut files = Vec::with_capacity(3);
        for p in &paths {
            files.push(BufWriter::new(fs::File::create(p).at(p)?));
        }
        let files: [BufWriter<fs::File>; 3] = files
            .try_into()
            .map_err(|_| Error::Config("three split files".into()))?;
        Ok(Self { files, paths })
    }

    fn write<T: Serialize>(&mut self, split: TaskSplit, row: &T) -> Result<()> {
        let i = split.index();
        let path = &self.paths[i];
        let line = serde_json::to_string(row).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        let f = &mut self.files[i];
        f.write_all(line.as_bytes()).at(path)?;
        f.write_all(b"\n").at(path)
    }

    fn finish(self) -> Result<()> {
        for (mut f, p) in self.files.into_iter().zip(&self.paths) {
            f.flush().at(p)?;
            f.get_ref().sync_all().at(p)?;
        }
        Ok(())
    }
}

/// A document that may go into the pretraining corpus.
struct Candidate<'a> {
    text: &'a str,
    split: TaskSplit,
    from_pd1998: bool,
}

/// The texts a pretraining sentence must not equal: every dev or test
/// example, its sentences, and (for segmentation) its chunks.
#[derive(Default)]
struct HeldOut<'a> {
    texts: HashSet<std::borrow::Cow<'a, str>>,
}

impl<'a> HeldOut<'a> {
    fn add_text(&mut self, text: &'a str) {
        self.texts.insert(text.into());
        for s in split_chinese(text) {
            self.texts.insert(s.into());
        }
    }

    fn add_owned(&mut self, text: String) {
        self.texts.insert(text.into());
    }

    fn contains(&self, sentence: &str) -> bool {
        self.texts.contains(sentence)
    }
}

/// Writes the task splits, the pretraining corpus and `splits.json` into
/// `dir` (a directory the caller owns: the driver's staging directory).
///
/// Missing or malformed sources are [`Error::NotCached`] / [`Error::BadCache`]
/// naming the `cloze data fetch` command that repairs them; explicit paths
/// that do not exist are [`Error::Io`].
pub fn write_tasks(sources: &TaskSources, dir: &Path, config: &TaskConfig) -> Result<TasksReport> {
    let _span = tracing::info_span!("data_tasks").entered();
    config.validate()?;
    let gold_text = read_text(PD1998, &sources.pd1998_gold)?;
    let reviews_text = read_text(REVIEWS, &sources.reviews)?;
    let reviews = read_reviews(&sources.reviews, &reviews_text)?;
    fs::create_dir_all(dir).at(dir)?;

    let mut held_out = HeldOut::default();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();

    // Segmentation: whole paragraphs go to one split.
    let mut cws = CwsReport::default();
    let mut writers = SplitWriters::create(&dir.join(CWS_TASK))?;
    let mut seen_paragraphs: HashSet<&str> = HashSet::new();
    // The plain paragraphs live here so the candidates can borrow them.
    let mut plains: Vec<(String, TaskSplit)> = Vec::new();
    for line in gold_text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        cws.lines += 1;
        if !seen_paragraphs.insert(line.trim()) {
            cws.duplicates += 1;
            continue;
        }
        let plain = words.concat();
        let split = config.split_of(CWS_TASK, &plain);
        let chunks = cws_chunks(&words, config.max_cws_chars);
        cws.dropped_sentences += chunks.dropped_sentences as u64;
        let counts = cws.splits.get_mut(split);
        counts.paragraphs += 1;
        for chunk in &chunks.chunks {
            let example = bmes(chunk);
            counts.examples += 1;
            counts.words += chunk.len() as u64;
            counts.chars += example.tokens.len() as u64;
            counts.longest = counts.longest.max(example.tokens.len() as u64);
            if split.is_held_out() {
                held_out.add_owned(example.text());
            }
            writers.write(split, &example)?;
        }
        plains.push((plain, split));
    }
    writers.finish()?;
    if plains.is_empty() {
        return Err(Error::BadCache {
            dataset: PD1998.into(),
            path: sources.pd1998_gold.clone(),
            line: 1,
            reason: "no paragraphs".into(),
        });
    }
    for (plain, split) in &plains {
        if split.is_held_out() {
            held_out.add_text(plain);
        }
        candidates.push(Candidate {
            text: plain,
            split: *split,
            from_pd1998: true,
        });
    }

    // Sentiment: each distinct text once, texts with both labels dropped.
    let mut sentiment = SentimentReport {
        lines: reviews.len() as u64,
        ..SentimentReport::default()
    };
    let mut labels: HashMap<&str, (Sentiment, bool)> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (text, label) in &reviews {
        let text = text.trim();
        if text.is_empty() {
            sentiment.empty += 1;
            continue;
        }
        match labels.get_mut(text) {
            None => {
                labels.insert(text, (*label, false));
                order.push(text);
            }
            Some((first, conflict)) => {
                sentiment.duplicates += 1;
                *conflict |= first != label;
            }
        }
    }
    let mut writers = SplitWriters::create(&dir.join(SENTIMENT_TASK))?;
    for &text in &order {
        let split = config.split_of(SENTIMENT_TASK, text);
        candidates.push(Candidate {
            text,
            split,
            from_pd1998: false,
        });
        let Some(&(label, conflict)) = labels.get(text) else {
            continue;
        };
        if conflict {
            sentiment.conflicting += 1;
            continue;
        }
        let counts = sentiment.splits.get_mut(split);
        counts.examples += 1;
        counts.chars += chars(text) as u64;
        match label {
            Sentiment::Positive => counts.positive += 1,
            Sentiment::Negative => counts.negative += 1,
        }
        if split.is_held_out() {
            held_out.add_text(text);
        }
        writers.write(
            split,
            &SentimentExample {
                text: text.to_string(),
                label,
            },
        )?;
    }
    writers.finish()?;

    // Pretraining: train-side documents, sentence by sentence, minus held-out text.
    let mut pretrain = PretrainReport::default();
    let path = dir.join(PRETRAIN_FILE);
    let mut out = BufWriter::new(fs::File::create(&path).at(&path)?);
    for c in &candidates {
        if c.split.is_held_out() {
            pretrain.held_out_documents += 1;
            continue;
        }
        let sentences: Vec<&str> = split_chinese(c.text);
        let kept: Vec<&str> = sentences
            .iter()
            .copied()
            .filter(|s| !held_out.contains(s))
            .collect();
        pretrain.removed_sentences += (sentences.len() - kept.len()) as u64;
        if kept.is_empty() {
            pretrain.emptied_documents += 1;
            continue;
        }
        if pretrain.documents > 0 {
            out.write_all(b"\n").at(&path)?;
        }
        pretrain.documents += 1;
        if c.from_pd1998 {
            pretrain.pd1998_documents += 1;
        } else {
            pretrain.review_documents += 1;
        }
        for s in kept {
            pretrain.sentences += 1;
            pretrain.chars += chars(s) as u64;
            out.write_all(s.as_bytes()).at(&path)?;
            out.write_all(b"\n").at(&path)?;
        }
    }
    out.flush().at(&path)?;
    out.get_ref().sync_all().at(&path)?;

    let mut files = std::collections::BTreeMap::new();
    for task in [CWS_TASK, SENTIMENT_TASK] {
        for split in TaskSplit::ALL {
            let rel = format!("{task}/{}.jsonl", split.name());
            let p = dir.join(&rel);
            files.insert(rel, sha256_file(&p)?);
        }
    }
    files.insert(PRETRAIN_FILE.to_string(), sha256_file(&path)?);
    let report = TasksReport {
        format_version: FORMAT_VERSION,
        created_by: format!("cloze {}", env!("CARGO_PKG_VERSION")),
        config: config.clone(),
        split_rule: config.rule(),
        sources: vec![
            SourceFile {
                dataset: PD1998.into(),
                file: PD1998_GOLD.into(),
                sha256: cloze_fs::digest::sha256_hex(gold_text.as_bytes()),
            },
            SourceFile {
                dataset: REVIEWS.into(),
                file: REVIEWS_FILE.into(),
                sha256: cloze_fs::digest::sha256_hex(reviews_text.as_bytes()),
            },
        ],
        sentiment,
        cws,
        pretrain,
        files,
    };
    let report_path = dir.join(SPLITS_FILE);
    let json = serde_json::to_string_pretty(&report).map_err(|source| Error::Json {
        path: report_path.clone(),
        source,
    })?;
    fs::write(&report_path, format!("{json}\n")).at(&report_path)?;
    Ok(report)
}

/// The published output of [`make_tasks`].
#[derive(Debug, Clone)]
pub struct TasksOutput {
    /// Where it was published.
    pub dir: PathBuf,
    /// What `splits.json` records.
    pub report: TasksReport,
}

/// [`write_tasks`] under the `cloze-fs` rule, as `cloze data tasks` runs it:
/// `out` is checked and locked before any work (never a file, the current
/// directory, a read-only place, a directory holding a source, or another
/// command's directory; its own earlier output only with `force`), written
/// into a staging sibling and renamed into place, so an error leaves an
/// earlier `out` as it was.
pub fn make_tasks(
    sources: &TaskSources,
    out: &Path,
    config: &TaskConfig,
    force: bool,
) -> Result<TasksOutput> {
    config.validate()?;
    let guard = OutputDir::check(out, &output_kind(), &sources.inputs(), force)?;
    let staging = guard.staging()?;
    let report = write_tasks(sources, staging.path(), config)?;
    let dir = guard.publish(staging)?;
    Ok(TasksOutput { dir, report })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bmes_tags_and_round_trips() {
        let words = ["中共中央", "总书记", "、", "国家", "主席", "江", "泽民"];
        let ex = bmes(&words);
        assert_eq!(ex.tokens.len(), 15);
        assert_eq!(
            &ex.labels[..8],
            &[
                Tag::B,
                Tag::M,
                Tag::M,
                Tag::E,
                Tag::B,
                Tag::M,
                Tag::E,
                Tag::S
            ]
        );
        assert_eq!(ex.words().unwrap(), words);
        let json = serde_json::to_string(&ex).unwrap();
        assert!(json.starts_with(r#"{"tokens":["中","共""#), "{json}");
        assert!(json.contains(r#""labels":["B","M","M","E""#), "{json}");
    }

    #[test]
    fn ill_formed_tags_have_no_words() {
        let tokens: Vec<String> = ["a", "b"].map(String::from).to_vec();
        for labels in [
            vec![Tag::B, Tag::B],
            vec![Tag::M, Tag::E],
            vec![Tag::S, Tag::E],
            vec![Tag::S, Tag::B],
            vec![Tag::S],
        ] {
            let ex = CwsExample {
                tokens: tokens.clone(),
                labels: labels.clone(),
            };
            assert_eq!(ex.words(), None, "{labels:?}");
        }
    }

    #[test]
    fn sentences_end_after_terminators_and_keep_closing_quotes() {
        let words = [
            "他", "说", "：", "“", "好", "。", "”", "走", "吧", "！", "完",
        ];
        let s = cws_sentences(&words);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], &words[..7]);
        assert_eq!(s[1], &words[7..10]);
        assert_eq!(s[2], &words[10..]);
        // The same boundaries as the corpus splitter draws in the plain text.
        let plain = words.concat();
        let corpus: Vec<String> = s.iter().map(|w| w.concat()).collect();
        assert_eq!(split_chinese(&plain), corpus);
    }

    #[test]
    fn long_sentences_are_cut_between_words_preferably_at_commas() {
        let words = ["一二", "三四", "，", "五六", "七八", "九"];
        let c = cws_chunks(&words, 6);
        assert_eq!(
            c.chunks,
            vec![vec!["一二", "三四", "，"], vec!["五六", "七八", "九"]]
        );
        let c = cws_chunks(&["一二", "，", "三四", "五六"], 6);
        assert_eq!(c.chunks, vec![vec!["一二", "，"], vec!["三四", "五六"]]);
        // No comma: cut before the word that overflows.
        let c = cws_chunks(&["一二三", "四五", "六七"], 6);
        assert_eq!(c.chunks, vec![vec!["一二三", "四五"], vec!["六七"]]);
        // A comma too early to help still leaves every piece under the cap.
        let words = ["一", "，", "二三四五", "六七八九", "十"];
        let c = cws_chunks(&words, 5);
        for chunk in &c.chunks {
            assert!(chunk.iter().map(|w| chars(w)).sum::<usize>() <= 5, "{c:?}");
        }
        assert_eq!(c.chunks.concat(), words);
        // A word over the cap drops its sentence only.
        let c = cws_chunks(&["一二三四五六七", "。", "好", "。"], 6);
        assert_eq!(c.chunks, vec![vec!["好", "。"]]);
        assert_eq!(c.dropped_sentences, 1);
    }

    #[test]
    fn split_is_a_pure_function_of_seed_task_and_text() {
        let config = TaskConfig::default();
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let text = format!("评论{i}");
            let s = config.split_of(SENTIMENT_TASK, &text);
            assert_eq!(s, config.split_of(SENTIMENT_TASK, &text));
            counts[s.index()] += 1;
        }
        // 80/10/10 within a few standard deviations.
        assert!((2300..2500).contains(&counts[0]), "{counts:?}");
        assert!((240..360).contains(&counts[1]), "{counts:?}");
        assert!((240..360).contains(&counts[2]), "{counts:?}");
        let other = TaskConfig {
            seed: 14,
            ..TaskConfig::default()
        };
        let moved = (0..300)
            .filter(|i| {
                let t = format!("评论{i}");
                config.split_of(SENTIMENT_TASK, &t) != other.split_of(SENTIMENT_TASK, &t)
            })
            .count();
        assert!(moved > 0, "the seed changes the split");
    }

    #[test]
    fn bad_proportions_are_refused() {
        for (train, dev) in [(0, 100), (800, 0), (900, 100), (1000, 5)] {
            let c = TaskConfig {
                train_per_mille: train,
                dev_per_mille: dev,
                ..TaskConfig::default()
            };
            assert!(c.validate().is_err(), "{train}/{dev}");
        }
    }
}

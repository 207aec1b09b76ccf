//! The tokenizer: a wrapper over HuggingFace `tokenizers` that loads an
//! existing `tokenizer.json` or BERT `vocab.txt`, knows its special tokens,
//! attaches word ids (from the tokenizer for English, from jieba for Chinese),
//! and trains new WordPiece vocabularies with BERT normalisation.
//!
//! A trained tokenizer is saved as a directory (`tokenizer.json` +
//! `vocab.txt`) under the `cloze-fs` rule: [`save_tokenizer_files`] writes
//! into a staging directory the caller publishes, [`save_tokenizer_dir`] does
//! both and never replaces anything but an earlier tokenizer output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, Model, NormalizedString, Normalizer, OffsetReferential, OffsetType,
    PreTokenizedString, PreTokenizer, Tokenizer,
};

use crate::error::{Error, IoContext, Result};
use crate::fastbert::FastBert;
use crate::instance::SpecialTokens;
use crate::progress::{NoProgress, Progress};
use crate::vocab::Stop;
use crate::words::{has_cjk, jieba, jieba_word_ids};

/// The special tokens' names and the reserved set (ids 0..6 of a vocabulary
/// trained by cloze), defined once in `cloze-core`.
pub use cloze_core::{CLS, MASK, PAD, PSEUDO_MASK, RESERVED, SEP, UNK};

/// How words are delimited when assigning word ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordBoundaries {
    /// jieba when the text contains CJK characters, else the tokenizer's words.
    #[default]
    Auto,
    /// The tokenizer's pre-tokenizer words (whitespace and punctuation split).
    Tokenizer,
    /// jieba's segmentation mapped onto tokens (Chinese-BERT-wwm style).
    Jieba,
}

/// One encoded text: token ids without special tokens, plus per-token word ids
/// (0-based, increasing, shared by sub-tokens of a word) and byte offsets into
/// the original text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Word id of each token.
    pub word_ids: Vec<u32>,
    /// `(start, end)` byte offsets of each token in the input text.
    pub offsets: Vec<(u32, u32)>,
}

/// A loaded tokenizer with its special tokens and identity hash.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    fast: Option<std::sync::Arc<FastBert>>,
    special: SpecialTokens,
    hash: String,
    source: PathBuf,
}

fn tok_err(path: &Path) -> impl FnOnce(tokenizers::Error) -> Error + '_ {
    move |source| Error::Tokenizer {
        path: path.to_path_buf(),
        source,
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, a BERT `vocab.txt`, or a directory holding one of
    /// them (`tokenizer.json` preferred; see [`tokenizer_file`]). A `vocab.txt`
    /// takes its casing from the files beside it ([`BertCasing::for_vocab`]).
    pub fn from_path(path: &Path) -> Result<Self> {
        let file = tokenizer_file(path)?;
        Self::from_tokenizer(load_hf_tokenizer(&file)?, &file)
    }

    /// Loads a HuggingFace `tokenizer.json`, turning off any padding and
    /// truncation baked into it (instances are built to length by this crate).
    pub fn from_json_file(path: &Path) -> Result<Self> {
        Self::from_tokenizer(read_json_tokenizer(path)?, path)
    }

    /// Builds a BERT WordPiece tokenizer from a `vocab.txt` with BERT
    /// normalisation, its casing read by [`BertCasing::for_vocab`]: the
    /// `tokenizer_config.json` beside it, else the `config.json` beside it,
    /// else a guess from the vocabulary.
    pub fn from_vocab_file(path: &Path) -> Result<Self> {
        let casing = BertCasing::for_vocab(path)?;
        Self::from_vocab_file_with(path, &casing)
    }

    /// Builds a BERT WordPiece tokenizer from a `vocab.txt` with the given
    /// normalisation settings (no file beside it is read).
    pub fn from_vocab_file_with(path: &Path, casing: &BertCasing) -> Result<Self> {
        Self::from_tokenizer(vocab_tokenizer(path, casing)?, path)
    }

    /// Wraps an in-memory tokenizer; `source` names it in messages.
    pub fn from_tokenizer(mut inner: Tokenizer, source: &Path) -> Result<Self> {
        inner.with_padding(None);
        inner.with_truncation(None).map_err(tok_err(source))?;
        let special = special_tokens_of(&inner, source)?;
        let canonical = inner.to_string(false).map_err(tok_err(source))?;
        let hash = cloze_fs::digest::sha256_hex(canonical.as_bytes());
        let fast = FastBert::from_tokenizer(&inner).map(std::sync::Arc::new);
        Ok(Self {
            inner,
            fast,
            special,
            hash,
            source: source.to_path_buf(),
        })
    }

    /// This tokenizer with `tokens` appended as added tokens (vocabulary
    /// extension), and how many were new.
    ///
    /// Each token becomes a non-special HuggingFace added token, matched on
    /// normalised text as `tokenizer.add_tokens` does in transformers: on an
    /// uncased BERT tokenizer `covid` also matches `COVID` in the input.
    /// Matching is by substring of the normalised text (HF's default), so an
    /// added token is cut out even inside a longer word. New ids follow the
    /// current vocabulary in the order given; [`Self::vocab_size`],
    /// [`Self::special_tokens`] and [`Self::hash`] include them. A token that
    /// is already in the vocabulary (as written or as the normaliser turns
    /// it, e.g. `The` on an uncased tokenizer that has `the`) is skipped, as
    /// is a repeat of an earlier token; the first spelling is the one kept.
    ///
    /// An empty token, or one containing whitespace, is
    /// [`Error::InvalidAddedToken`] naming its 1-based position in `tokens`;
    /// nothing is added then.
    ///
    /// The BERT fast path stays on for texts that hold no added token (after
    /// normalisation); a text that does goes through `tokenizers`.
    pub fn with_added_tokens(&self, tokens: &[String]) -> Result<(Self, usize)> {
        let mut inner = self.inner.clone();
        // Earlier added tokens count as known by their normalised form too.
        let mut seen = std::collections::HashSet::new();
        for t in inner.get_added_tokens_decoder().values() {
            if t.normalized {
                seen.insert(normalized_key(&inner, &t.content).map_err(tok_err(&self.source))?);
            }
        }
        let mut new = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            let invalid = |reason: &'static str| Error::InvalidAddedToken {
                position: i + 1,
                token: token.clone(),
                reason,
            };
            if token.is_empty() {
                return Err(invalid("it is empty"));
            }
            if token.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "it contains whitespace (an added token is one word)",
                ));
            }
            let key = normalized_key(&inner, token).map_err(tok_err(&self.source))?;
            if key.is_empty() {
                return Err(invalid("the tokenizer's normaliser removes all of it"));
            }
            let known = inner.token_to_id(token).is_some() || inner.token_to_id(&key).is_some();
            if known || !seen.insert(key) {
                continue;
            }
            new.push(AddedToken::from(token.clone(), false));
        }
        let added = inner.add_tokens(&new);
        Ok((Self::from_tokenizer(inner, &self.source)?, added))
    }

    /// The special token ids (and vocabulary size).
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// sha256 of the tokenizer's canonical JSON (padding/truncation off): two
    /// tokenizers with equal hashes tokenize identically.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Where the tokenizer was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The wrapped HuggingFace tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> u32 {
        self.special.vocab_size
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Writes the tokenizer as `tokenizer.json` (padding/truncation off).
    pub fn save_json(&self, path: &Path) -> Result<()> {
        self.inner.save(path, true).map_err(tok_err(path))
    }

    /// Encodes one text without special tokens, with word ids chosen by `words`.
    ///
    /// Plain BERT WordPiece tokenizers take a one-pass fast path that gives
    /// the same result as the `tokenizers` crate ([`Self::encode_reference`]).
    pub fn encode(&self, text: &str, words: WordBoundaries) -> Result<Encoded> {
        let use_jieba = uses_jieba(text, words);
        if let Some(fast) = self.fast.as_deref().filter(|f| f.applies(text)) {
            let mut e = Encoded::default();
            fast.encode(text, &mut e.ids, &mut e.word_ids, Some(&mut e.offsets));
            if use_jieba {
                e.word_ids = jieba_word_ids(jieba(), text, &e.offsets);
            }
            return Ok(e);
        }
        self.encode_reference(text, words)
    }

    /// [`Self::encode`] through the `tokenizers` crate only (no fast path);
    /// the reference the fast path is tested against.
    pub fn encode_reference(&self, text: &str, words: WordBoundaries) -> Result<Encoded> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(tok_err(&self.source))?;
        let ids = enc.get_ids().to_vec();
        let offsets: Vec<(u32, u32)> = enc
            .get_offsets()
            .iter()
            .map(|&(s, e)| (s as u32, e as u32))
            .collect();
        let word_ids = if uses_jieba(text, words) {
            jieba_word_ids(jieba(), text, &offsets)
        } else {
            renumber(enc.get_word_ids())
        };
        Ok(Encoded {
            ids,
            word_ids,
            offsets,
        })
    }

    /// True when this tokenizer has the BERT fast path (a plain BERT
    /// WordPiece pipeline); texts holding an added token still go through
    /// `tokenizers`.
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Token ids and word ids only, the form `prepare` stores (offsets are
    /// computed only when jieba needs them to place words).
    pub fn encode_ids_words(
        &self,
        text: &str,
        words: WordBoundaries,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        if !uses_jieba(text, words) {
            if let Some(fast) = self.fast.as_deref().filter(|f| f.applies(text)) {
                let (mut ids, mut word_ids) = (Vec::new(), Vec::new());
                fast.encode(text, &mut ids, &mut word_ids, None);
                return Ok((ids, word_ids));
            }
        }
        let e = self.encode(text, words)?;
        Ok((e.ids, e.word_ids))
    }

    /// Encodes many texts in parallel (rayon); the result is in input order
    /// and independent of the thread count.
    pub fn encode_batch(&self, texts: &[&str], words: WordBoundaries) -> Result<Vec<Encoded>> {
        texts.par_iter().map(|t| self.encode(t, words)).collect()
    }

    /// Decodes ids to text (special tokens kept, so instances read naturally).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err(&self.source))
    }
}

fn uses_jieba(text: &str, words: WordBoundaries) -> bool {
    match words {
        WordBoundaries::Auto => has_cjk(text),
        WordBoundaries::Tokenizer => false,
        WordBoundaries::Jieba => true,
    }
}

/// Maps the tokenizer's word indices (None for added/special tokens) to
/// dense 0-based ids; tokens without a word get a word of their own.
fn renumber(word_ids: &[Option<u32>]) -> Vec<u32> {
    let mut out = Vec::with_capacity(word_ids.len());
    let mut next = 0u32;
    let mut prev: Option<u32> = None;
    for w in word_ids {
        match (w, prev) {
            (Some(w), Some(p)) if *w == p => out.push(next - 1),
            _ => {
                out.push(next);
                next += 1;
            }
        }
        prev = *w;
    }
    out
}

fn special_tokens_of(inner: &Tokenizer, source: &Path) -> Result<SpecialTokens> {
    let extra = inner
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, tok)| tok.special)
        .map(|(id, _)| id);
    SpecialTokens::from_lookup(
        inner.get_vocab_size(true) as u32,
        |t| inner.token_to_id(t),
        extra,
    )
    .map_err(|e| Error::MissingSpecialToken {
        path: source.to_path_buf(),
        token: e.token.to_string(),
    })
}

/// The tokenizer file `path` stands for: `path` itself when it is not a
/// directory, else the directory's `tokenizer.json`, else its `vocab.txt`. A
/// directory with neither is [`Error::NoTokenizer`]. This is the one rule for
/// finding a tokenizer in a model directory; [`load_hf_tokenizer`] reads the
/// file it returns.
pub fn tokenizer_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    ["tokenizer.json", "vocab.txt"]
        .iter()
        .map(|name| path.join(name))
        .find(|file| file.is_file())
        .ok_or_else(|| Error::NoTokenizer {
            dir: path.to_path_buf(),
        })
}

/// Reads a tokenizer file as a HuggingFace [`Tokenizer`]: a `.txt` file is a
/// BERT `vocab.txt` (WordPiece with BERT normalisation and the `[CLS] A
/// [SEP]` template, casing from [`BertCasing::for_vocab`]), anything else a
/// `tokenizer.json`. Padding and truncation stay as the file has them. Use
/// [`tokenizer_file`] first to accept a directory.
pub fn load_hf_tokenizer(file: &Path) -> Result<Tokenizer> {
    if file.extension().is_some_and(|e| e == "txt") {
        vocab_tokenizer(file, &BertCasing::for_vocab(file)?)
    } else {
        read_json_tokenizer(file)
    }
}

fn read_json_tokenizer(path: &Path) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).at(path)?;
    Tokenizer::from_bytes(&bytes).map_err(tok_err(path))
}

fn vocab_tokenizer(path: &Path, casing: &BertCasing) -> Result<Tokenizer> {
    let vocab = WordPiece::read_file(&path.to_string_lossy()).map_err(tok_err(path))?;
    let model = WordPiece::builder()
        .vocab(vocab)
        .unk_token(UNK.into())
        .build()
        .map_err(tok_err(path))?;
    bert_pipeline(model, casing, path)
}

/// Where [`BertCasing::lowercase`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasingSource {
    /// `do_lower_case` of the `tokenizer_config.json` beside the vocabulary.
    TokenizerConfig,
    /// `do_lower_case` of the `config.json` beside the vocabulary.
    ModelConfig,
    /// Neither file says: lower-casing is on unless the vocabulary holds
    /// pieces that lower-casing would change (a cased vocabulary).
    VocabGuess,
}

/// The BERT normalisation of a `vocab.txt` tokenizer: the settings HF's
/// `BertTokenizer` takes from `tokenizer_config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BertCasing {
    /// Lower-case the text (`do_lower_case`).
    pub lowercase: bool,
    /// Strip accents (`strip_accents`); `None` follows `lowercase`, as in BERT.
    pub strip_accents: Option<bool>,
    /// Put spaces around CJK characters, so each is a word of its own
    /// (`tokenize_chinese_chars`).
    pub tokenize_chinese_chars: bool,
    /// Where `lowercase` came from.
    pub lowercase_from: CasingSource,
}

impl BertCasing {
    /// The settings for the `vocab.txt` at `vocab`, from the files in the
    /// same directory, in this order:
    ///
    /// 1. `tokenizer_config.json`: `do_lower_case`, `strip_accents` and
    ///    `tokenize_chinese_chars`, as HF's `BertTokenizer` reads them
    ///    (`strip_accents` null or absent follows `do_lower_case`;
    ///    `tokenize_chinese_chars` null or absent is on);
    /// 2. `config.json`'s `do_lower_case` (older checkpoints keep it there),
    ///    when the tokenizer config has none;
    /// 3. only when neither file says, a guess from the vocabulary:
    ///    lower-casing unless it holds pieces that lower-casing would change
    ///    (`The`; not `ℝ`, which has no lower-case form).
    ///
    /// A `do_lower_case` of null counts as not said. A file that is not JSON,
    /// or a setting that is neither true, false nor null, is an error naming
    /// the file.
    pub fn for_vocab(vocab: &Path) -> Result<Self> {
        let dir = vocab.parent().unwrap_or_else(|| Path::new(""));
        let tok_path = dir.join("tokenizer_config.json");
        let tok_config = read_json_object(&tok_path)?;
        let flag = |key: &str| json_flag(tok_config.as_ref(), key, &tok_path);
        let strip_accents = flag("strip_accents")?;
        let tokenize_chinese_chars = flag("tokenize_chinese_chars")?.unwrap_or(true);
        let (lowercase, lowercase_from) = match flag("do_lower_case")? {
            Some(lower) => (lower, CasingSource::TokenizerConfig),
            None => {
                let model_path = dir.join("config.json");
                let model_config = read_json_object(&model_path)?;
                match json_flag(model_config.as_ref(), "do_lower_case", &model_path)? {
                    Some(lower) => (lower, CasingSource::ModelConfig),
                    None => {
                        let text = std::fs::read_to_string(vocab).at(vocab)?;
                        (!vocab_is_cased(&text), CasingSource::VocabGuess)
                    }
                }
            }
        };
        Ok(Self {
            lowercase,
            strip_accents,
            tokenize_chinese_chars,
            lowercase_from,
        })
    }
}

/// Whether a vocabulary holds word pieces that lower-casing would change
/// (bracketed special tokens such as `[CLS]` aside): pieces an uncased
/// tokenizer could never produce, the sign of a cased model. Upper-case
/// letters without a lower-case form do not count: the uncased BERT and
/// MiniLM vocabularies hold `ℝ`.
fn vocab_is_cased(vocab: &str) -> bool {
    vocab
        .lines()
        .filter(|l| !(l.starts_with('[') && l.ends_with(']')))
        .any(|l| {
            l.chars()
                .any(|c| c.is_uppercase() && !c.to_lowercase().eq([c]))
        })
}

/// The JSON object in `path`, or `None` when there is no such file.
fn read_json_object(path: &Path) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(Error::Format {
            path: path.to_path_buf(),
            line: 0,
            reason: "not a JSON object".into(),
        }),
        Err(source) => Err(Error::Json {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A true/false setting of a JSON object; null and absent are `None`.
fn json_flag(
    object: Option<&serde_json::Map<String, serde_json::Value>>,
    key: &str,
    path: &Path,
) -> Result<Option<bool>> {
    match object.and_then(|o| o.get(key)) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(Error::Format {
            path: path.to_path_buf(),
            line: 0,
            reason: format!("{key} must be true, false or null, not {other}"),
        }),
    }
}

/// `token` as the tokenizer's normaliser turns it, without the whitespace
/// the normaliser may put in (BERT pads CJK characters with spaces): the form
/// two added tokens are compared by.
fn normalized_key(tok: &Tokenizer, token: &str) -> tokenizers::Result<String> {
    let mut normalized = NormalizedString::from(token);
    if let Some(n) = tok.get_normalizer() {
        n.normalize(&mut normalized)?;
    }
    Ok(normalized
        .get()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect())
}

/// Reads a list of tokens to add ([`TextTokenizer::with_added_tokens`]): one
/// token per line, surrounding whitespace trimmed; blank lines and lines
/// starting with `#` are skipped. A line holding whitespace inside the token
/// is [`Error::Format`] naming the file and line.
pub fn read_token_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).at(path)?;
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let token = line.trim();
        if token.is_empty() || token.starts_with('#') {
            continue;
        }
        if token.chars().any(char::is_whitespace) {
            return Err(Error::Format {
                path: path.to_path_buf(),
                line: i as u64 + 1,
                reason: format!(
                    "{token:?} contains whitespace: write one token per line (a line starting with # is a comment)"
                ),
            });
        }
        tokens.push(token.to_string());
    }
    Ok(tokens)
}

fn bert_pipeline(model: WordPiece, casing: &BertCasing, source: &Path) -> Result<Tokenizer> {
    let cls = model
        .token_to_id(CLS)
        .ok_or_else(|| Error::MissingSpecialToken {
            path: source.to_path_buf(),
            token: CLS.into(),
        })?;
    let sep = model
        .token_to_id(SEP)
        .ok_or_else(|| Error::MissingSpecialToken {
            path: source.to_path_buf(),
            token: SEP.into(),
        })?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(BertNormalizer::new(
        true,
        casing.tokenize_chinese_chars,
        casing.strip_accents,
        casing.lowercase,
    )));
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(
        (SEP.into(), sep),
        (CLS.into(), cls),
    )));
    tok.with_decoder(Some(WordPieceDecoder::default()));
    let specials: Vec<AddedToken> = RESERVED
        .iter()
        .filter(|t| tok.token_to_id(t).is_some())
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tok.add_special_tokens(&specials);
    Ok(tok)
}

/// Settings of [`train_wordpiece`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Target vocabulary size (reserved tokens included).
    pub vocab_size: usize,
    /// Lower-case text before splitting (BERT "uncased").
    pub lowercase: bool,
    /// Strip accents; `None` follows `lowercase` as BERT does.
    pub strip_accents: Option<bool>,
    /// Minimum pair frequency for a merge.
    pub min_frequency: u64,
    /// Alphabet size limit (rarer characters become `[UNK]`); `None` keeps
    /// every character seen.
    pub limit_alphabet: Option<usize>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            vocab_size: 30_522,
            lowercase: true,
            strip_accents: None,
            min_frequency: 2,
            // No limit: a Chinese corpus needs thousands of single characters.
            limit_alphabet: None,
        }
    }
}

/// Why a trained vocabulary has the size it has (see [`TrainReport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabStop {
    /// The vocabulary reached the size asked for.
    Reached,
    /// No pair of adjacent pieces is left in any word: every word of the
    /// corpus is already a single token.
    NoPairs,
    /// The most frequent remaining pair occurs `count` times, fewer than
    /// [`TrainOptions::min_frequency`].
    BelowMinFrequency {
        /// How often the most frequent remaining pair occurs.
        count: u64,
    },
}

/// How a vocabulary came to its size, so a caller can say why it is smaller
/// (or larger) than asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainReport {
    /// [`TrainOptions::vocab_size`].
    pub requested: usize,
    /// Tokens in the trained vocabulary.
    pub vocab_size: usize,
    /// Reserved tokens ([`RESERVED`]).
    pub reserved: usize,
    /// Distinct characters kept (after [`TrainOptions::limit_alphabet`]).
    pub alphabet: usize,
    /// `##x` continuation pieces, one per character seen inside a word.
    pub continuation: usize,
    /// Merges made: pairs that occurred at least `min_frequency` times.
    pub merges: usize,
    /// [`TrainOptions::min_frequency`].
    pub min_frequency: u64,
    /// Why merging stopped.
    pub stop: VocabStop,
}

impl TrainReport {
    /// True when the vocabulary has fewer tokens than asked for.
    pub fn is_short(&self) -> bool {
        self.vocab_size < self.requested
    }
}

/// A trained tokenizer and the report of its training.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
    /// How its vocabulary came to its size.
    pub report: TrainReport,
}

/// Trains a WordPiece vocabulary with BERT normalisation (CJK characters split
/// into single characters, control characters removed) on `texts`, reserving
/// [`RESERVED`] at ids 0..6. [`train_wordpiece_with`] also reports why the
/// vocabulary has its size and can be stopped.
pub fn train_wordpiece<I>(texts: I, options: &TrainOptions) -> Result<TextTokenizer>
where
    I: Iterator<Item = String> + Send,
{
    train_wordpiece_with(texts, options, &NoProgress).map(|t| t.tokenizer)
}

/// [`train_wordpiece`] with a [`TrainReport`], polling
/// [`Progress::cancelled`] between batches of lines and during merging; a
/// cancelled training returns [`Error::Cancelled`].
pub fn train_wordpiece_with<I>(
    texts: I,
    options: &TrainOptions,
    progress: &dyn Progress,
) -> Result<Trained>
where
    I: Iterator<Item = String> + Send,
{
    let memory = Path::new("<training>");
    if options.vocab_size <= RESERVED.len() {
        return Err(Error::Config(format!(
            "vocab size {} leaves no room beside the {} reserved tokens",
            options.vocab_size,
            RESERVED.len()
        )));
    }
    // The model is replaced below; normaliser and pre-tokeniser first, as
    // they also split the training text into words.
    let mut tok = Tokenizer::new(WordPiece::default());
    tok.with_normalizer(Some(BertNormalizer::new(
        true,
        true,
        options.strip_accents,
        options.lowercase,
    )));
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_decoder(Some(WordPieceDecoder::default()));
    let counts = count_words(&tok, texts, progress)?;
    let learned = crate::vocab::learn_vocab(
        counts,
        &crate::vocab::LearnOptions {
            vocab_size: options.vocab_size,
            min_frequency: options.min_frequency,
            limit_alphabet: options.limit_alphabet,
            reserved: &RESERVED,
            prefix: "##",
        },
        &|| progress.cancelled(),
    );
    let stop = match learned.stop {
        Stop::Reached => VocabStop::Reached,
        Stop::NoPairs => VocabStop::NoPairs,
        Stop::BelowMinFrequency { count } => VocabStop::BelowMinFrequency { count },
        Stop::Cancelled => return Err(Error::Cancelled),
    };
    let mut report = TrainReport {
        requested: options.vocab_size,
        vocab_size: learned.tokens.len(),
        reserved: RESERVED.len(),
        alphabet: learned.alphabet,
        continuation: learned.continuation,
        merges: learned.merges,
        min_frequency: options.min_frequency.max(1),
        stop,
    };
    let vocab: ahash::AHashMap<String, u32> = learned
        .tokens
        .into_iter()
        .enumerate()
        .map(|(id, token)| (token, id as u32))
        .collect();
    let model = WordPiece::builder()
        .vocab(vocab)
        .unk_token(UNK.into())
        .continuing_subword_prefix("##".into())
        .build()
        .map_err(tok_err(memory))?;
    tok.with_model(model);
    tok.add_special_tokens(
        &RESERVED
            .iter()
            .map(|t| AddedToken::from(*t, true))
            .collect::<Vec<_>>(),
    );
    // The post-processor must point at the trained vocabulary's [CLS]/[SEP].
    let id = |t: &str| {
        tok.token_to_id(t)
            .ok_or_else(|| Error::MissingSpecialToken {
                path: memory.to_path_buf(),
                token: t.to_string(),
            })
    };
    let (cls, sep) = (id(CLS)?, id(SEP)?);
    tok.with_post_processor(Some(BertProcessing::new(
        (SEP.into(), sep),
        (CLS.into(), cls),
    )));
    let tokenizer = TextTokenizer::from_tokenizer(tok, memory)?;
    report.vocab_size = tokenizer.vocab_size() as usize;
    Ok(Trained { tokenizer, report })
}

/// Lines handed to one parallel counting pass.
const COUNT_CHUNK: usize = 8192;

/// Counts the words `tok`'s normaliser and pre-tokeniser make of `texts`
/// (what the vocabulary is learned from), in parallel chunks of lines.
fn count_words<I>(
    tok: &Tokenizer,
    texts: I,
    progress: &dyn Progress,
) -> Result<HashMap<String, u64>>
where
    I: Iterator<Item = String> + Send,
{
    let memory = Path::new("<training>");
    let words_of = |text: &String| -> tokenizers::Result<Vec<String>> {
        let mut normalized = NormalizedString::from(text.as_str());
        if let Some(n) = tok.get_normalizer() {
            n.normalize(&mut normalized)?;
        }
        let mut pre = PreTokenizedString::from(normalized);
        if let Some(p) = tok.get_pre_tokenizer() {
            p.pre_tokenize(&mut pre)?;
        }
        Ok(pre
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(word, _, _)| word.to_string())
            .collect())
    };
    let mut total: HashMap<String, u64> = HashMap::new();
    let mut texts = texts.peekable();
    loop {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        if texts.peek().is_none() {
            break;
        }
        let chunk: Vec<String> = texts.by_ref().take(COUNT_CHUNK).collect();
        let counted = chunk
            .par_iter()
            .try_fold(HashMap::new, |mut acc: HashMap<String, u64>, text| {
                for word in words_of(text)? {
                    *acc.entry(word).or_default() += 1;
                }
                Ok::<_, tokenizers::Error>(acc)
            })
            .try_reduce(HashMap::new, |mut a, b| {
                for (word, n) in b {
                    *a.entry(word).or_default() += n;
                }
                Ok(a)
            })
            .map_err(tok_err(memory))?;
        for (word, n) in counted {
            *total.entry(word).or_default() += n;
        }
    }
    Ok(total)
}

/// The kind of output a trained tokenizer directory is, for
/// [`cloze_fs::OutputDir::check`]: the command `tokenizer train`, replaced
/// only with `--force`. Directories written before output markers existed are
/// not recognised (a directory holding `tokenizer.json` and `vocab.txt` may
/// just as well be a downloaded or trained model), so they are never replaced.
pub fn output_kind() -> cloze_fs::OutputKind {
    cloze_fs::OutputKind::new("tokenizer train", "--force")
}

/// Writes `tokenizer.json` and `vocab.txt` (one token per line, in id order)
/// as the directory `dir` for library callers, under the `cloze-fs` rule:
/// `dir` is checked with [`output_kind`], the files go into a staging
/// sibling, and it is renamed into place. An existing `dir` is replaced only
/// when it is an earlier tokenizer output; anything else is refused with
/// [`Error::Output`] and left as it was.
pub fn save_tokenizer_dir(tok: &TextTokenizer, dir: &Path) -> Result<()> {
    let guard = cloze_fs::OutputDir::check(dir, &output_kind(), &[], true)?;
    let staging = guard.staging()?;
    save_tokenizer_files(tok, staging.path())?;
    guard.publish(staging)?;
    Ok(())
}

/// Writes `tokenizer.json` and `vocab.txt` (one token per line, in id order)
/// into the existing directory `dir` (normally a staging directory the caller
/// publishes).
pub fn save_tokenizer_files(tok: &TextTokenizer, dir: &Path) -> Result<()> {
    write_tokenizer_files(tok, dir)
}

fn write_tokenizer_files(tok: &TextTokenizer, dir: &Path) -> Result<()> {
    let json = dir.join("tokenizer.json");
    tok.save_json(&json)?;
    let vocab = tok.inner.get_vocab(true);
    let mut by_id: Vec<(u32, &str)> = vocab.iter().map(|(t, i)| (*i, t.as_str())).collect();
    by_id.sort_unstable();
    let mut text = String::new();
    for (expected, (id, token)) in by_id.iter().enumerate() {
        if *id as usize != expected {
            return Err(Error::Config(format!(
                "vocabulary ids are not dense at id {expected}"
            )));
        }
        text.push_str(token);
        text.push('\n');
    }
    let path = dir.join("vocab.txt");
    std::fs::write(&path, text).at(&path)
}

/// The project tokenizer as a codec for similar-word masking: a word is
/// encoded on its own (no special tokens; `None` if any piece is `[UNK]`), and
/// decoded by joining its pieces with WordPiece's `##` prefix removed.
impl cloze_core::WordCodec for TextTokenizer {
    fn decode_word(&self, tokens: &[u32]) -> Option<String> {
        let mut word = String::new();
        for &t in tokens {
            let s = self.id_to_token(t)?;
            word.push_str(s.strip_prefix("##").unwrap_or(&s));
        }
        Some(word)
    }

    fn encode_word(&self, word: &str) -> Option<Vec<u32>> {
        let enc = self.encode(word, WordBoundaries::Tokenizer).ok()?;
        let unk = self.special_tokens().unk;
        (!enc.ids.is_empty() && !enc.ids.contains(&unk)).then_some(enc.ids)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tiny_vocab(dir: &Path, with_mask: bool) -> PathBuf {
        let mut words = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]"];
        if with_mask {
            words.push("[MASK]");
        }
        words.extend([
            "the", "cat", "sat", "on", "mat", "##s", ".", "un", "##believ", "##able", "中", "国",
            "人",
        ]);
        let path = dir.join("vocab.txt");
        std::fs::write(&path, words.join("\n")).unwrap();
        path
    }

    #[test]
    fn vocab_txt_loads_with_special_tokens_and_word_ids() {
        let dir = tempfile::tempdir().unwrap();
        let tok = TextTokenizer::from_path(&tiny_vocab(dir.path(), true)).unwrap();
        let sp = tok.special_tokens();
        assert_eq!((sp.pad, sp.unk, sp.cls, sp.sep, sp.mask), (0, 1, 2, 3, 4));
        let e = tok
            .encode("The cats sat unbelievable.", WordBoundaries::Tokenizer)
            .unwrap();
        let toks: Vec<String> = e.ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
        assert_eq!(
            toks,
            ["the", "cat", "##s", "sat", "un", "##believ", "##able", "."]
        );
        assert_eq!(e.word_ids, [0, 1, 1, 2, 3, 3, 3, 4]);
        assert_eq!(e.offsets[1], (4, 7));
        assert_eq!(e.offsets[2], (7, 8));
    }

    #[test]
    fn fast_path_matches_tokenizers_on_tricky_text() {
        let lines = [
            "The cat sat on the mat. Café, naïve résumé!",
            "中国人 说 中文。 İstanbul ǅ ﬁne  tab\there\u{200b}zero",
            "e-mail: a@b.c (test) [x] «quotes» — dash… 1,000.5%",
        ];
        let texts = (0..30).flat_map(|_| lines.iter().map(|s| s.to_string()));
        for lowercase in [true, false] {
            let options = TrainOptions {
                vocab_size: 80,
                lowercase,
                ..Default::default()
            };
            let tok = train_wordpiece(texts.clone(), &options).unwrap();
            assert!(tok.has_fast_path());
            let probes = lines.iter().copied().chain([
                "unseenword xyzzy",
                "\u{0}\u{fffd}ctrl\u{7}",
                "a [MASK] b",
                "ÀÉÎÕÜ ß ǈ",
                "",
            ]);
            for text in probes {
                for words in [WordBoundaries::Tokenizer, WordBoundaries::Jieba] {
                    let fast = tok.encode(text, words).unwrap();
                    let reference = tok.encode_reference(text, words).unwrap();
                    assert_eq!(fast, reference, "lowercase={lowercase} {text:?}");
                }
            }
        }
    }

    /// A cased-looking vocabulary (it has `The` beside `the`) in `dir`, with
    /// optional `tokenizer_config.json` and `config.json` contents.
    fn casing_dir(dir: &Path, tokenizer_config: Option<&str>, config: Option<&str>) -> PathBuf {
        let words = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "The", "cat", "caf", "cafe",
            "##é", "中", "国", "中国", "##s",
        ];
        std::fs::write(dir.join("vocab.txt"), words.join("\n")).unwrap();
        for (name, text) in [
            ("tokenizer_config.json", tokenizer_config),
            ("config.json", config),
        ] {
            match text {
                Some(text) => std::fs::write(dir.join(name), text).unwrap(),
                None => {
                    let _ = std::fs::remove_file(dir.join(name));
                }
            }
        }
        dir.join("vocab.txt")
    }

    fn pieces(tok: &TextTokenizer, text: &str) -> Vec<String> {
        let e = tok.encode(text, WordBoundaries::Tokenizer).unwrap();
        e.ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect()
    }

    #[test]
    fn vocab_casing_comes_from_tokenizer_config_then_config_json_then_the_vocabulary() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // (tokenizer_config.json, config.json) -> (lower-cased, where from)
        let cases = [
            (None, None, false, CasingSource::VocabGuess),
            (
                None,
                Some(r#"{"do_lower_case": true}"#),
                true,
                CasingSource::ModelConfig,
            ),
            (
                Some(r#"{"do_lower_case": false}"#),
                Some(r#"{"do_lower_case": true}"#),
                false,
                CasingSource::TokenizerConfig,
            ),
            (
                Some(r#"{"do_lower_case": true}"#),
                Some(r#"{"do_lower_case": false}"#),
                true,
                CasingSource::TokenizerConfig,
            ),
            // A tokenizer config that does not say (or says null) defers to config.json.
            (
                Some(r#"{"model_max_length": 512, "do_lower_case": null}"#),
                Some(r#"{"do_lower_case": true, "hidden_size": 8}"#),
                true,
                CasingSource::ModelConfig,
            ),
            (
                Some(r#"{"model_max_length": 512}"#),
                Some(r#"{"hidden_size": 8}"#),
                false,
                CasingSource::VocabGuess,
            ),
        ];
        for (tok_config, config, lower, from) in cases {
            let vocab = casing_dir(d, tok_config, config);
            let casing = BertCasing::for_vocab(&vocab).unwrap();
            assert_eq!(
                (casing.lowercase, casing.lowercase_from),
                (lower, from),
                "{tok_config:?} {config:?}"
            );
            let want = if lower { "the" } else { "The" };
            // The directory and the vocab.txt path itself read the same files.
            for path in [d, vocab.as_path()] {
                let tok = TextTokenizer::from_path(path).unwrap();
                assert_eq!(
                    pieces(&tok, "The cat"),
                    [want, "cat"],
                    "{tok_config:?} {config:?}"
                );
            }
        }
        // With no configuration, a vocabulary without pieces that lower-casing
        // changes is uncased (`ℝ` has no lower-case form).
        std::fs::write(
            d.join("vocab.txt"),
            "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nℝ\n##ℝ\n",
        )
        .unwrap();
        let casing = BertCasing::for_vocab(&d.join("vocab.txt")).unwrap();
        assert!(casing.lowercase);
        assert_eq!(casing.lowercase_from, CasingSource::VocabGuess);
    }

    #[test]
    fn strip_accents_and_chinese_chars_follow_the_tokenizer_config() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        casing_dir(d, Some(r#"{"do_lower_case": false}"#), None);
        let tok = TextTokenizer::from_path(d).unwrap();
        // strip_accents absent follows do_lower_case (false): the accent stays.
        assert_eq!(pieces(&tok, "café"), ["caf", "##é"]);
        assert_eq!(pieces(&tok, "中国"), ["中", "国"]);
        casing_dir(
            d,
            Some(
                r#"{"do_lower_case": false, "strip_accents": true, "tokenize_chinese_chars": false}"#,
            ),
            None,
        );
        let tok = TextTokenizer::from_path(d).unwrap();
        assert_eq!(pieces(&tok, "café"), ["cafe"]);
        assert_eq!(pieces(&tok, "The 中国"), ["The", "中国"]);
        // Lower-casing strips accents unless told not to.
        casing_dir(d, Some(r#"{"do_lower_case": true}"#), None);
        assert_eq!(
            pieces(&TextTokenizer::from_path(d).unwrap(), "CAFÉ"),
            ["cafe"]
        );
        casing_dir(
            d,
            Some(r#"{"do_lower_case": true, "strip_accents": false}"#),
            None,
        );
        assert_eq!(
            pieces(&TextTokenizer::from_path(d).unwrap(), "CAFÉ"),
            ["caf", "##é"]
        );
    }

    #[test]
    fn a_bad_casing_setting_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let vocab = casing_dir(dir.path(), Some(r#"{"do_lower_case": "yes"}"#), None);
        let err = TextTokenizer::from_path(&vocab).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("tokenizer_config.json") && msg.contains("do_lower_case"),
            "{msg}"
        );
        casing_dir(dir.path(), None, Some("{not json"));
        let err = TextTokenizer::from_path(dir.path()).unwrap_err();
        assert!(
            matches!(err, Error::Json { ref path, .. } if path.ends_with("config.json")),
            "{err}"
        );
    }

    #[test]
    fn a_directory_without_a_tokenizer_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let err = TextTokenizer::from_path(dir.path()).unwrap_err();
        assert!(matches!(err, Error::NoTokenizer { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("tokenizer.json") && msg.contains("vocab.txt"),
            "{msg}"
        );
        assert_eq!(
            tokenizer_file(dir.path()).unwrap_err().to_string(),
            msg,
            "one rule for every loader"
        );
        // tokenizer.json is preferred over vocab.txt.
        casing_dir(dir.path(), None, None);
        assert_eq!(
            tokenizer_file(dir.path()).unwrap(),
            dir.path().join("vocab.txt")
        );
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        assert_eq!(
            tokenizer_file(dir.path()).unwrap(),
            dir.path().join("tokenizer.json")
        );
    }

    #[test]
    fn added_tokens_get_new_ids_and_match_normalised_text() {
        let dir = tempfile::tempdir().unwrap();
        let vocab = casing_dir(dir.path(), Some(r#"{"do_lower_case": true}"#), None);
        let tok = TextTokenizer::from_path(&vocab).unwrap();
        assert!(tok.has_fast_path());
        let before = tok.vocab_size();
        let asked: Vec<String> = ["covid19", "The", "covid19", "mRNA", "cat", "MRNA"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (grown, added) = tok.with_added_tokens(&asked).unwrap();
        // `The` is `the` once lower-cased, `cat` is in the vocabulary, and the
        // repeats (exact or by normalised form) are dropped.
        assert_eq!(added, 2);
        assert_eq!(grown.vocab_size(), before + 2);
        assert_eq!(grown.special_tokens().vocab_size, before + 2);
        assert_eq!(
            grown.special_tokens().all_special,
            tok.special_tokens().all_special
        );
        assert_eq!(grown.id_to_token(before).as_deref(), Some("covid19"));
        assert_eq!(grown.id_to_token(before + 1).as_deref(), Some("mRNA"));
        assert_ne!(grown.hash(), tok.hash());
        assert!(grown.has_fast_path());
        let text = "The COVID19 cats need MRNA, covid19.";
        let e = grown.encode(text, WordBoundaries::Tokenizer).unwrap();
        assert_eq!(
            e,
            grown
                .encode_reference(text, WordBoundaries::Tokenizer)
                .unwrap()
        );
        let unk = grown.special_tokens().unk;
        assert_eq!(
            e.ids,
            [5, before, 7, 14, unk, before + 1, unk, before, unk],
            "{:?}",
            e.ids
                .iter()
                .map(|&i| grown.id_to_token(i))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            e.offsets[1],
            (4, 11),
            "the added token covers the original text"
        );
        assert_eq!(
            e.word_ids,
            [0, 1, 2, 2, 3, 4, 5, 6, 7],
            "an added token is a word"
        );
        // Without the added tokens the same text has none of the new ids.
        let plain = tok.encode(text, WordBoundaries::Tokenizer).unwrap();
        assert!(plain.ids.iter().all(|&i| i < before));
        // Saved and loaded, the tokenizer is the same (the shard check relies on the hash).
        let json = dir.path().join("grown.json");
        grown.save_json(&json).unwrap();
        let again = TextTokenizer::from_json_file(&json).unwrap();
        assert_eq!(again.hash(), grown.hash());
        assert_eq!(again.encode(text, WordBoundaries::Tokenizer).unwrap(), e);
        // Adding again in another spelling adds nothing.
        let (same, n) = again.with_added_tokens(&["COVID19".to_string()]).unwrap();
        assert_eq!((n, same.vocab_size()), (0, before + 2));
    }

    #[test]
    fn the_fast_path_matches_tokenizers_with_added_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let domain: Vec<String> = ["covid19", "Résumé", "新冠", "e-mail", "catnip"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let probes = [
            "The cat sat on the mat.",
            "COVID19 and Covid19 and covid19, cov\u{7}id19 and covid 19",
            "her résumé, RESUME and resume",
            "新冠病毒 中国 新 冠",
            "E-MAIL me, e-mailing, email",
            "the catnips, CATNIP; cat nip",
            "no added token here at all",
            "[MASK] covid19 [SEP]",
            "",
        ];
        for tokenizer_config in [
            r#"{"do_lower_case": true}"#,
            r#"{"do_lower_case": false}"#,
            r#"{"do_lower_case": true, "strip_accents": false}"#,
            r#"{"do_lower_case": false, "strip_accents": true, "tokenize_chinese_chars": false}"#,
        ] {
            let vocab = casing_dir(dir.path(), Some(tokenizer_config), None);
            let (tok, added) = TextTokenizer::from_path(&vocab)
                .unwrap()
                .with_added_tokens(&domain)
                .unwrap();
            assert!(added >= 4, "{tokenizer_config}: {added}");
            let fast = tok.fast.as_deref().unwrap();
            assert!(
                fast.applies("The cat sat on the mat."),
                "{tokenizer_config}"
            );
            assert!(!fast.applies("covid19"), "{tokenizer_config}");
            let (mut hits, mut guarded) = (0, 0);
            for text in probes {
                for words in [WordBoundaries::Tokenizer, WordBoundaries::Jieba] {
                    let reference = tok.encode_reference(text, words).unwrap();
                    assert_eq!(
                        tok.encode(text, words).unwrap(),
                        reference,
                        "{tokenizer_config} {text:?}"
                    );
                    hits += reference.ids.iter().filter(|&&i| i >= 15).count();
                }
                // The fast path itself, forced, is wrong exactly where it is not used.
                let mut forced = (Vec::new(), Vec::new());
                fast.encode(text, &mut forced.0, &mut forced.1, None);
                let reference = tok
                    .encode_reference(text, WordBoundaries::Tokenizer)
                    .unwrap();
                if forced.0 != reference.ids {
                    assert!(!fast.applies(text), "{tokenizer_config} {text:?}");
                    guarded += 1;
                }
            }
            assert!(
                hits > 10,
                "{tokenizer_config}: the probes hold added tokens"
            );
            assert!(
                guarded >= 4,
                "{tokenizer_config}: {guarded} texts needed the guard"
            );
        }
    }

    #[test]
    fn bad_added_tokens_are_refused_by_position() {
        let dir = tempfile::tempdir().unwrap();
        let tok = TextTokenizer::from_path(&casing_dir(dir.path(), None, None)).unwrap();
        for (tokens, position) in [(vec!["ok", "two words"], 2), (vec!["", "ok"], 1)] {
            let tokens: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
            let err = tok.with_added_tokens(&tokens).unwrap_err();
            assert!(
                matches!(err, Error::InvalidAddedToken { position: p, .. } if p == position),
                "{err}"
            );
            assert!(
                err.to_string().contains(&format!("added token {position}")),
                "{err}"
            );
        }
    }

    #[test]
    fn token_lists_skip_comments_and_blank_lines_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.txt");
        std::fs::write(&path, "# domain words\ncovid19\n\n  mRNA  \n#skip\n").unwrap();
        assert_eq!(read_token_list(&path).unwrap(), ["covid19", "mRNA"]);
        std::fs::write(&path, "covid19\n\nspike protein\n").unwrap();
        let err = read_token_list(&path).unwrap_err();
        assert!(matches!(err, Error::Format { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("tokens.txt:3"), "{err}");
    }

    #[test]
    fn vocab_without_mask_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = TextTokenizer::from_path(&tiny_vocab(dir.path(), false)).unwrap_err();
        assert!(
            matches!(err, Error::MissingSpecialToken { ref token, .. } if token == "[MASK]"),
            "{err}"
        );
        assert!(err.to_string().contains("[MASK]"));
    }

    #[test]
    fn renumber_is_dense_and_gives_wordless_tokens_their_own_id() {
        assert_eq!(
            renumber(&[Some(3), Some(3), None, Some(7), Some(8), Some(8)]),
            [0, 0, 1, 2, 3, 3]
        );
    }

    #[test]
    fn training_twice_gives_the_same_vocabulary() {
        // Many words share a count, so merge ties are common.
        let texts =
            || (0..400).map(|i| format!("alpha{} beta{} gamma{}s delta", i % 17, i % 11, i % 5));
        let options = TrainOptions {
            vocab_size: 80,
            ..Default::default()
        };
        let a = train_wordpiece(texts(), &options).unwrap();
        let b = train_wordpiece(texts(), &options).unwrap();
        assert_eq!(a.vocab_size(), 80);
        let dir = tempfile::tempdir().unwrap();
        save_tokenizer_dir(&a, &dir.path().join("a")).unwrap();
        save_tokenizer_dir(&b, &dir.path().join("b")).unwrap();
        for file in ["vocab.txt", "tokenizer.json"] {
            assert_eq!(
                std::fs::read(dir.path().join("a").join(file)).unwrap(),
                std::fs::read(dir.path().join("b").join(file)).unwrap(),
                "{file}"
            );
        }
    }

    #[test]
    fn trained_tokenizer_reserves_ids_and_splits_cjk() {
        let lines = [
            "The cat sat on the mat.",
            "The cats sat.",
            "中国人 说 中文。",
            "Café au lait",
        ];
        let texts = (0..50).flat_map(|_| lines.iter().map(|s| s.to_string()));
        let tok = train_wordpiece(
            texts,
            &TrainOptions {
                vocab_size: 120,
                ..Default::default()
            },
        )
        .unwrap();
        for (i, t) in RESERVED.iter().enumerate() {
            assert_eq!(tok.inner().token_to_id(t), Some(i as u32), "{t}");
        }
        assert!(tok.special_tokens().all_special.contains(&5));
        let e = tok.encode("中国人", WordBoundaries::Tokenizer).unwrap();
        assert_eq!(e.ids.len(), 3, "CJK characters are split one per token");
        // Lower-cased and accent-stripped by default.
        let e = tok.encode("CAFÉ", WordBoundaries::Tokenizer).unwrap();
        let s: String = e
            .ids
            .iter()
            .map(|&i| tok.id_to_token(i).unwrap().replace("##", ""))
            .collect();
        assert_eq!(s, "cafe");
        let dir = tempfile::tempdir().unwrap();
        save_tokenizer_dir(&tok, dir.path()).unwrap();
        let again = TextTokenizer::from_path(dir.path()).unwrap();
        assert_eq!(again.hash(), tok.hash());
        let vocab = std::fs::read_to_string(dir.path().join("vocab.txt")).unwrap();
        assert_eq!(vocab.lines().take(6).collect::<Vec<_>>(), RESERVED);
    }
}

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
    /// them (`tokenizer.json` preferred).
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let json = path.join("tokenizer.json");
            if json.is_file() {
                return Self::from_json_file(&json);
            }
            let vocab = path.join("vocab.txt");
            if vocab.is_file() {
                return Self::from_vocab_file(&vocab);
            }
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "directory has neither tokenizer.json nor vocab.txt",
                ),
            });
        }
        if path.extension().is_some_and(|e| e == "txt") {
            Self::from_vocab_file(path)
        } else {
            Self::from_json_file(path)
        }
    }

    /// Loads a HuggingFace `tokenizer.json`, turning off any padding and
    /// truncation baked into it (instances are built to length by this crate).
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).at(path)?;
        let inner = Tokenizer::from_bytes(&bytes).map_err(tok_err(path))?;
        Self::from_tokenizer(inner, path)
    }

    /// Builds a BERT WordPiece tokenizer from a `vocab.txt` with BERT
    /// normalisation. Lower-casing is on unless the vocabulary holds
    /// upper-case word pieces (a cased vocabulary).
    pub fn from_vocab_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let cased = text
            .lines()
            .filter(|l| !(l.starts_with('[') && l.ends_with(']')))
            .any(|l| l.chars().any(char::is_uppercase));
        let vocab = WordPiece::read_file(&path.to_string_lossy()).map_err(tok_err(path))?;
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token(UNK.into())
            .build()
            .map_err(tok_err(path))?;
        let inner = bert_pipeline(model, !cased, None, path)?;
        Self::from_tokenizer(inner, path)
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

    /// True when this tokenizer has the BERT fast path.
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

fn bert_pipeline(
    model: WordPiece,
    lowercase: bool,
    strip_accents: Option<bool>,
    source: &Path,
) -> Result<Tokenizer> {
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
        true,
        strip_accents,
        lowercase,
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

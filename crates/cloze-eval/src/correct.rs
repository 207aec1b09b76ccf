//! A masked language model as a Chinese spelling corrector: at each Chinese
//! character, the model's probabilities over the character's confusion set
//! (characters that sound alike) decide whether to replace it.
//!
//! # Method
//!
//! The model reads each sentence in one of two ways ([`CorrectMode`]):
//!
//! - `direct`: one forward pass over the sentence as written, no `[MASK]`.
//!   This is how MacBERT-style models are used as correctors: pretrained to
//!   predict the original token at positions corrupted by a *similar* word
//!   (not `[MASK]`), such a model reads "我跟我朋唷" and still predicts 友 at
//!   the corrupted, unmasked position.
//! - `masked`: each candidate position is replaced by `[MASK]` in turn, one
//!   masked copy of the sentence per position (as pseudo-log-likelihood
//!   scoring does): slower, and the usual way to ask a plain BERT.
//!
//! At every position that is considered (below), let `p(x)` be the model's
//! probability of character `x` there (a softmax over the whole vocabulary),
//! `c` the character written, and `b` the candidate of `c`'s confusion set
//! with the highest `p` (ties: the first in the set's order). The character is
//! replaced by `b` when
//!
//! ```text
//! p(b) - p(c) > threshold
//! ```
//!
//! with `threshold` in `[0, 1)` ([`CorrectOptions::threshold`]; 0 replaces
//! whenever the candidate is more probable than the character written). Each
//! position is decided independently from the same reading of the source
//! sentence (no second pass over the corrected text), and one character is
//! replaced by one character, so the output has exactly as many characters as
//! the input.
//!
//! A position is considered when its character is a CJK ideograph
//! ([`cloze_text::words::is_cjk`]), the tokenizer turns that character alone
//! into exactly one token that is neither `[UNK]` nor a special token, and at
//! least one of its confusion candidates also becomes exactly one such token.
//! Other characters (punctuation, Latin text, digits, characters the
//! vocabulary lacks or splits) are context only and never changed.
//!
//! # Tokens and characters
//!
//! The model input is built so that every character's token position is
//! known: each CJK character is tokenized on its own, each maximal run of
//! other characters as a piece, and the pieces are joined between `[CLS]` and
//! `[SEP]`. For BERT tokenizers (`BertNormalizer` with `handle_chinese_chars`,
//! which puts every CJK character in a word of its own, as Google's Chinese
//! BERT and `cloze tokenizer train` do) this is exactly the tokenizer's own
//! tokenization of the sentence. For a tokenizer that would join characters
//! into one token, the model sees the characters split; such sentences are
//! counted and a warning is logged.
//!
//! # Long sentences
//!
//! A sentence longer than [`CorrectOptions::max_len`] tokens (special tokens
//! included) is not an error: the model reads the longest prefix of whole
//! pieces that fits, that prefix is corrected, and the rest is left unchanged
//! and counted in [`Correction::unread_chars`].

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use cloze_text::words::is_cjk;
use cloze_text::{NoProgress, Progress};
use serde::Serialize;
use tch::{Device, Tensor};

use crate::batch::{check_batch_size, pad_batch, plan_batches};
use crate::{Error, MaskedLm, ModelTokenizer, Result};

/// Characters that can be mistaken for each other: each character maps to its
/// candidate replacements.
///
/// Loaded from pycorrector's `same_pinyin.txt` ([`ConfusionSet::from_file`]):
/// a header line starting with `#`, then `char<TAB>same pinyin, same
/// tone<TAB>same pinyin, other tone`, each column a run of characters; both
/// columns become candidates, same-tone ones first. The third column may be
/// missing. A character listed on several lines (polyphones) gets the union
/// of its candidates. The relation is what the file says, not symmetrised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfusionSet {
    map: HashMap<char, Vec<char>>,
}

impl ConfusionSet {
    /// An empty set: no character has candidates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a confusion-set file (format above). A missing or unreadable file
    /// is [`Error::Read`]; a malformed line is [`Error::Confusion`] naming the
    /// file and the line.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the text of a confusion-set file; `path` names it in errors.
    ///
    /// Blank lines and lines starting with `#` are skipped. Every other line
    /// must have two or three tab-separated columns, the first exactly one
    /// character; white space inside a candidate column is ignored. A file with
    /// no entry is an error too.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut set = ConfusionSet::new();
        for (i, raw) in text.lines().enumerate() {
            let l = raw.trim_end_matches('\r');
            if l.trim().is_empty() || l.starts_with('#') {
                continue;
            }
            let bad = |reason: String| Error::Confusion {
                path: path.to_path_buf(),
                line: Some(i + 1),
                reason,
            };
            let cols: Vec<&str> = l.split('\t').collect();
            if !(2..=3).contains(&cols.len()) {
                return Err(bad(format!(
                    "expected `char<TAB>candidates[<TAB>candidates]`, found {} column{}",
                    cols.len(),
                    if cols.len() == 1 { "" } else { "s" }
                )));
            }
            let mut key = cols[0].trim().chars();
            let c = match (key.next(), key.next()) {
                (Some(c), None) => c,
                _ => {
                    return Err(bad(format!(
                        "the first column must be one character, found {:?}",
                        cols[0]
                    )))
                }
            };
            set.insert(
                c,
                cols[1..]
                    .iter()
                    .flat_map(|col| col.chars())
                    .filter(|x| !x.is_whitespace()),
            );
        }
        if set.is_empty() {
            return Err(Error::Confusion {
                path: path.to_path_buf(),
                line: None,
                reason: "no entry in the file".to_string(),
            });
        }
        Ok(set)
    }

    /// Adds candidates for `c` after its existing ones, dropping `c` itself
    /// and repeats.
    pub fn insert(&mut self, c: char, candidates: impl IntoIterator<Item = char>) {
        let list = self.map.entry(c).or_default();
        for x in candidates {
            if x != c && !list.contains(&x) {
                list.push(x);
            }
        }
        if list.is_empty() {
            self.map.remove(&c);
        }
    }

    /// The candidates of `c`, in file order; empty for a character the set
    /// does not know.
    pub fn candidates(&self, c: char) -> &[char] {
        self.map.get(&c).map_or(&[], Vec::as_slice)
    }

    /// How many characters have candidates.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no character has candidates.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// How the model reads a sentence (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CorrectMode {
    /// One forward pass over the unmasked sentence (MacBERT-style).
    #[default]
    Direct,
    /// One forward pass per candidate position, that position masked.
    Masked,
}

impl FromStr for CorrectMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "direct" => Ok(CorrectMode::Direct),
            "masked" => Ok(CorrectMode::Masked),
            _ => Err(format!("unknown mode {s:?}: choose direct or masked")),
        }
    }
}

impl std::fmt::Display for CorrectMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CorrectMode::Direct => "direct",
            CorrectMode::Masked => "masked",
        })
    }
}

/// Settings of [`correct`]; build with [`CorrectOptions::new`] and change the
/// public fields. [`correct`] checks them with [`CorrectOptions::validate`]
/// before any work.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrectOptions {
    /// Replace a character when `p(best candidate) - p(character)` exceeds
    /// this; in `[0, 1)`.
    pub threshold: f64,
    /// How the model reads the sentence.
    pub mode: CorrectMode,
    /// Sequences per forward pass: sentences in `direct` mode, masked copies
    /// in `masked` mode. At least 1.
    pub batch_size: usize,
    /// Longest model input in tokens, special tokens included; longer
    /// sentences are corrected in their first `max_len` tokens only. At least
    /// 3 and at most the model's positions.
    pub max_len: usize,
    /// Where the model's weights are; inputs are built there.
    pub device: Device,
}

impl CorrectOptions {
    /// The default threshold: a margin of 0.1 in probability. Not tuned (no
    /// Chinese model was at hand); tune it on a development set.
    pub const DEFAULT_THRESHOLD: f64 = 0.1;

    /// Direct mode, [`Self::DEFAULT_THRESHOLD`], 32 sequences per pass, on the
    /// CPU, reading at most `max_len` tokens.
    pub fn new(max_len: usize) -> Self {
        CorrectOptions {
            threshold: Self::DEFAULT_THRESHOLD,
            mode: CorrectMode::Direct,
            batch_size: 32,
            max_len,
            device: Device::Cpu,
        }
    }

    /// Checks the options against the model: a threshold in `[0, 1)`, a batch
    /// size of at least 1 and a maximum length in `3..=max_positions`;
    /// otherwise [`Error::InvalidOption`] naming the field.
    pub fn validate(&self, model: &dyn MaskedLm) -> Result<()> {
        check_batch_size(self.batch_size)?;
        if !(0.0..1.0).contains(&self.threshold) {
            return Err(Error::InvalidOption {
                name: "threshold",
                reason: format!(
                    "{} is not in [0, 1): it is a difference of two probabilities",
                    self.threshold
                ),
            });
        }
        let max = usize::try_from(model.max_positions()).unwrap_or(0);
        if self.max_len < 3 || self.max_len > max {
            return Err(Error::InvalidOption {
                name: "max_len",
                reason: format!(
                    "{} tokens: it must leave room for [CLS], [SEP] and one character, \
                     and fit the model's {max} positions",
                    self.max_len
                ),
            });
        }
        Ok(())
    }
}

/// One replaced character.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Index of the character in the sentence (in characters, from 0).
    pub index: usize,
    /// The character written.
    pub from: char,
    /// Its replacement.
    pub to: char,
    /// The model's probability of `from` at that position.
    pub from_probability: f64,
    /// The model's probability of `to` at that position.
    pub to_probability: f64,
}

impl Change {
    /// `to_probability - from_probability`: what the threshold is compared with.
    pub fn score(&self) -> f64 {
        self.to_probability - self.from_probability
    }
}

/// The result for one sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correction {
    /// The corrected sentence: as many characters as the input.
    pub text: String,
    /// The replaced characters, by position.
    pub changes: Vec<Change>,
    /// Positions that were considered (a single-token CJK character with at
    /// least one single-token candidate).
    pub checked: usize,
    /// Characters beyond the maximum length, left unchanged (0 when the model
    /// read the whole sentence).
    pub unread_chars: usize,
}

impl Correction {
    /// Whether the sentence was too long to be read whole.
    pub fn is_truncated(&self) -> bool {
        self.unread_chars > 0
    }
}

/// Corrects each sentence ([`correct_with`] without progress reports).
pub fn correct(
    model: &dyn MaskedLm,
    tok: &ModelTokenizer,
    sentences: &[String],
    confusion: &ConfusionSet,
    opts: &CorrectOptions,
) -> Result<Vec<Correction>> {
    correct_with(model, tok, sentences, confusion, opts, &NoProgress)
}

/// Corrects each sentence (see the module documentation for the rule),
/// reporting progress in sentences (`direct`) or masked positions (`masked`).
/// Results are in input order whatever the batching.
///
/// Errors: invalid options ([`CorrectOptions::validate`]), `masked` mode with a
/// tokenizer without `[MASK]`, a token id outside the model's vocabulary (a
/// tokenizer of another checkpoint), all before any forward pass; or a failure
/// of the model.
pub fn correct_with(
    model: &dyn MaskedLm,
    tok: &ModelTokenizer,
    sentences: &[String],
    confusion: &ConfusionSet,
    opts: &CorrectOptions,
    progress: &dyn Progress,
) -> Result<Vec<Correction>> {
    let _span = tracing::info_span!("correct", n = sentences.len(), mode = %opts.mode).entered();
    opts.validate(model)?;
    let mask = match opts.mode {
        CorrectMode::Masked => Some(tok.mask_id()?),
        CorrectMode::Direct => None,
    };
    let pieces = Pieces::tokenize(tok, sentences, confusion)?;
    let plans: Vec<Plan> = sentences
        .iter()
        .map(|s| plan_sentence(s, &pieces, confusion, tok, opts.max_len))
        .collect();
    check_vocab(&plans, model.vocab_size())?;
    warn_if_split_differs(tok, sentences, &plans)?;

    let _g = tch::no_grad_guard();
    // probs[s][k]: the probabilities of site k of sentence s, current first.
    let mut probs: Vec<Vec<Vec<f32>>> = plans
        .iter()
        .map(|p| vec![Vec::new(); p.sites.len()])
        .collect();
    match mask {
        None => {
            progress.stage("correcting", Some(plans.len() as u64), "sentences");
            let rows: Vec<usize> = (0..plans.len())
                .filter(|&s| !plans[s].sites.is_empty())
                .collect();
            progress.advance((plans.len() - rows.len()) as u64);
            let lengths: Vec<usize> = rows.iter().map(|&s| plans[s].ids.len()).collect();
            for batch in plan_batches(&lengths, opts.batch_size, true)? {
                let seqs: Vec<&[u32]> = batch
                    .iter()
                    .map(|&r| plans[rows[r]].ids.as_slice())
                    .collect();
                let sites: Vec<(usize, usize, usize)> = batch
                    .iter()
                    .enumerate()
                    .flat_map(|(row, &r)| {
                        let s = rows[r];
                        (0..plans[s].sites.len()).map(move |k| (row, s, k))
                    })
                    .collect();
                let queries: Vec<(usize, &Site)> = sites
                    .iter()
                    .map(|&(row, s, k)| (row, &plans[s].sites[k]))
                    .collect();
                let got = score(model, &seqs, &queries, tok.pad, opts.device)?;
                for (&(_, s, k), p) in sites.iter().zip(got) {
                    probs[s][k] = p;
                }
                progress.advance(batch.len() as u64);
            }
        }
        Some(mask) => {
            let copies: Vec<(usize, usize)> = plans
                .iter()
                .enumerate()
                .flat_map(|(s, p)| (0..p.sites.len()).map(move |k| (s, k)))
                .collect();
            progress.stage("correcting", Some(copies.len() as u64), "positions");
            let lengths: Vec<usize> = copies.iter().map(|&(s, _)| plans[s].ids.len()).collect();
            for batch in plan_batches(&lengths, opts.batch_size, true)? {
                let masked: Vec<Vec<u32>> = batch
                    .iter()
                    .map(|&c| {
                        let (s, k) = copies[c];
                        let mut row = plans[s].ids.clone();
                        row[plans[s].sites[k].pos] = mask;
                        row
                    })
                    .collect();
                let seqs: Vec<&[u32]> = masked.iter().map(Vec::as_slice).collect();
                let queries: Vec<(usize, &Site)> = batch
                    .iter()
                    .enumerate()
                    .map(|(row, &c)| (row, &plans[copies[c].0].sites[copies[c].1]))
                    .collect();
                let got = score(model, &seqs, &queries, tok.pad, opts.device)?;
                for (&c, p) in batch.iter().zip(got) {
                    probs[copies[c].0][copies[c].1] = p;
                }
                progress.advance(batch.len() as u64);
            }
        }
    }
    progress.finish();
    Ok(sentences
        .iter()
        .zip(&plans)
        .zip(probs)
        .map(|((text, plan), probs)| decide(text, plan, &probs, opts.threshold))
        .collect())
}

/// The token ids of every distinct piece (a CJK character, a run of other
/// characters, a confusion candidate), without the special tokens.
struct Pieces {
    ids: HashMap<String, Vec<u32>>,
    /// Ids that are never a considered position nor a candidate.
    unusable: Vec<u32>,
}

impl Pieces {
    fn tokenize(
        tok: &ModelTokenizer,
        sentences: &[String],
        confusion: &ConfusionSet,
    ) -> Result<Self> {
        let mut wanted: Vec<String> = Vec::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut want = |s: &str| {
            if !seen.contains(s) {
                seen.insert(s.to_string());
                wanted.push(s.to_string());
            }
        };
        for s in sentences {
            for seg in segments(s) {
                want(seg.text);
                if let Some(c) = seg.cjk {
                    for &x in confusion.candidates(c) {
                        want(x.encode_utf8(&mut [0; 4]));
                    }
                }
            }
        }
        let texts: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let mut ids = HashMap::with_capacity(texts.len());
        for (chunk, toks) in texts.chunks(4096).zip(wanted.chunks(4096)) {
            for (t, key) in tok.tokenize_batch(chunk)?.into_iter().zip(toks) {
                let mut full = t.untruncated.unwrap_or(t.ids);
                if full.last() == Some(&tok.sep) {
                    full.pop();
                }
                if full.first() == Some(&tok.cls) {
                    full.remove(0);
                }
                ids.insert(key.clone(), full);
            }
        }
        let unk = ids
            .values()
            .flatten()
            .copied()
            .find(|&id| tok.id_to_token(id) == "[UNK]");
        let mut unusable = vec![tok.cls, tok.sep, tok.pad];
        unusable.extend(tok.mask);
        unusable.extend(unk);
        Ok(Pieces { ids, unusable })
    }

    fn ids(&self, piece: &str) -> &[u32] {
        self.ids.get(piece).map_or(&[], Vec::as_slice)
    }

    /// The one usable token of a character, if it has exactly one.
    fn single(&self, c: char) -> Option<u32> {
        match self.ids(c.encode_utf8(&mut [0; 4])) {
            &[id] if !self.unusable.contains(&id) => Some(id),
            _ => None,
        }
    }
}

/// A CJK character on its own or a maximal run of other characters.
struct Segment<'a> {
    text: &'a str,
    /// The character when the segment is one CJK character.
    cjk: Option<char>,
    /// Index of its first character in the sentence.
    start: usize,
    /// Its length in characters.
    chars: usize,
}

fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut run: Option<(usize, usize)> = None; // (byte start, char start)
    for (ci, (bi, c)) in text.char_indices().enumerate() {
        if is_cjk(c) {
            if let Some((b0, c0)) = run.take() {
                out.push(Segment {
                    text: &text[b0..bi],
                    cjk: None,
                    start: c0,
                    chars: ci - c0,
                });
            }
            out.push(Segment {
                text: &text[bi..bi + c.len_utf8()],
                cjk: Some(c),
                start: ci,
                chars: 1,
            });
        } else if run.is_none() {
            run = Some((bi, ci));
        }
    }
    if let Some((b0, c0)) = run {
        let total = text.chars().count();
        out.push(Segment {
            text: &text[b0..],
            cjk: None,
            start: c0,
            chars: total - c0,
        });
    }
    out
}

/// A position to decide: where it is and which tokens to compare there.
#[derive(Debug, Clone)]
struct Site {
    /// Index of the character in the sentence.
    char_index: usize,
    /// Its token position in the model input (`[CLS]` = 0).
    pos: usize,
    from: char,
    /// The token written first, then each candidate's; `chars[k]` is token `k`'s character.
    tokens: Vec<u32>,
    chars: Vec<char>,
}

/// A sentence as the model reads it.
#[derive(Debug, Clone)]
struct Plan {
    ids: Vec<u32>,
    sites: Vec<Site>,
    unread_chars: usize,
}

fn plan_sentence(
    text: &str,
    pieces: &Pieces,
    confusion: &ConfusionSet,
    tok: &ModelTokenizer,
    max_len: usize,
) -> Plan {
    let mut ids = vec![tok.cls];
    let mut sites = Vec::new();
    let mut unread_chars = 0;
    let segs = segments(text);
    for (n, seg) in segs.iter().enumerate() {
        let piece = pieces.ids(seg.text);
        // Room for this piece and the closing [SEP].
        if ids.len() + piece.len() + 1 > max_len {
            unread_chars = segs[n..].iter().map(|s| s.chars).sum();
            break;
        }
        if let Some(c) = seg.cjk {
            if let Some(current) = pieces.single(c) {
                let mut tokens = vec![current];
                let mut chars = vec![c];
                for &x in confusion.candidates(c) {
                    if let Some(t) = pieces.single(x) {
                        if !tokens.contains(&t) {
                            tokens.push(t);
                            chars.push(x);
                        }
                    }
                }
                if tokens.len() > 1 {
                    sites.push(Site {
                        char_index: seg.start,
                        pos: ids.len(),
                        from: c,
                        tokens,
                        chars,
                    });
                }
            }
        }
        ids.extend_from_slice(piece);
    }
    ids.push(tok.sep);
    Plan {
        ids,
        sites,
        unread_chars,
    }
}

/// Refuses token ids the model has no row for, naming the likely cause.
fn check_vocab(plans: &[Plan], vocab_size: i64) -> Result<()> {
    let ids = plans.iter().flat_map(|p| {
        p.ids
            .iter()
            .chain(p.sites.iter().flat_map(|s| s.tokens.iter()))
    });
    if let Some(&id) = ids.into_iter().find(|&&id| i64::from(id) >= vocab_size) {
        return Err(Error::InvalidOption {
            name: "tokenizer",
            reason: format!(
                "token id {id} is outside the model's vocabulary of {vocab_size}: \
                 the tokenizer belongs to another checkpoint"
            ),
        });
    }
    Ok(())
}

/// Logs a warning when the model input of some sentences differs from the
/// tokenizer's own tokenization (a tokenizer that does not split Chinese one
/// character per word).
fn warn_if_split_differs(tok: &ModelTokenizer, sentences: &[String], plans: &[Plan]) -> Result<()> {
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let mut differ = 0usize;
    let mut first = None;
    for (i, (t, plan)) in tok
        .tokenize_batch(&texts)?
        .into_iter()
        .zip(plans)
        .enumerate()
    {
        if plan.unread_chars == 0
            && t.untruncated.as_deref().unwrap_or(&t.ids) != plan.ids.as_slice()
        {
            differ += 1;
            first.get_or_insert(i);
        }
    }
    if let Some(first) = first {
        tracing::warn!(
            sentences = differ,
            first,
            "the tokenizer does not split these sentences one token per Chinese character; \
             the corrector reads them split per character, which the model may not have seen"
        );
    }
    Ok(())
}

/// Probabilities of each query's tokens at its position: `queries[i] = (row, site)`.
fn score(
    model: &dyn MaskedLm,
    seqs: &[&[u32]],
    queries: &[(usize, &Site)],
    pad: u32,
    device: Device,
) -> Result<Vec<Vec<f32>>> {
    let padded = pad_batch(seqs, pad, device)?;
    let width = queries
        .iter()
        .map(|(_, s)| s.tokens.len())
        .max()
        .unwrap_or(1);
    let flat: Vec<i64> = queries
        .iter()
        .map(|&(row, s)| row as i64 * padded.len + s.pos as i64)
        .collect();
    // Each row's candidate ids, padded with the current token (read back and
    // ignored), so the gather happens on the device and only [N, K] returns.
    let mut index = Vec::with_capacity(queries.len() * width);
    for (_, s) in queries {
        index.extend(s.tokens.iter().map(|&t| i64::from(t)));
        index.extend(std::iter::repeat_n(
            i64::from(s.tokens[0]),
            width - s.tokens.len(),
        ));
    }
    let positions = Tensor::f_from_slice(&flat)?.f_to_device(device)?;
    let index = Tensor::f_from_slice(&index)?
        .f_view([queries.len() as i64, width as i64])?
        .f_to_device(device)?;
    let logp = model.log_probs_at(&padded.input, &positions)?;
    let p = logp
        .f_gather(1, &index, false)?
        .f_exp()?
        .f_to_device(Device::Cpu)?
        .f_flatten(0, -1)?;
    let p = Vec::<f32>::try_from(p)?;
    Ok(queries
        .iter()
        .enumerate()
        .map(|(i, (_, s))| p[i * width..i * width + s.tokens.len()].to_vec())
        .collect())
}

/// Applies the decision rule to one sentence's sites.
fn decide(text: &str, plan: &Plan, probs: &[Vec<f32>], threshold: f64) -> Correction {
    let mut chars: Vec<char> = text.chars().collect();
    let mut changes = Vec::new();
    for (site, p) in plan.sites.iter().zip(probs) {
        let current = f64::from(p[0]);
        // The first candidate of highest probability.
        let mut best = 1;
        for (k, &q) in p.iter().enumerate().skip(2) {
            if q > p[best] {
                best = k;
            }
        }
        let candidate = f64::from(p[best]);
        if candidate - current > threshold {
            chars[site.char_index] = site.chars[best];
            changes.push(Change {
                index: site.char_index,
                from: site.from,
                to: site.chars[best],
                from_probability: current,
                to_probability: candidate,
            });
        }
    }
    Correction {
        text: chars.into_iter().collect(),
        changes,
        checked: plan.sites.len(),
        unread_chars: plan.unread_chars,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cloze_models::MlmInput;
    use std::cell::RefCell;

    /// A char-level BERT tokenizer: `[PAD] [UNK] [CLS] [SEP] [MASK]` at 0-4,
    /// then the given characters (and `ab` as a word) from 5.
    fn chinese_tokenizer(dir: &Path, chars: &str) -> ModelTokenizer {
        let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
        let mut vocab = serde_json::Map::new();
        for (i, s) in specials.iter().enumerate() {
            vocab.insert(s.to_string(), i.into());
        }
        for c in chars.chars().map(String::from).chain(["ab".to_string()]) {
            let id = vocab.len();
            vocab.insert(c, id.into());
        }
        let added: Vec<serde_json::Value> = specials
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let tok = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                   "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
            "decoder": null,
            "model": {"type": "WordPiece", "vocab": vocab, "unk_token": "[UNK]",
                "continuing_subword_prefix": "##", "max_input_chars_per_word": 100}
        });
        std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
        ModelTokenizer::from_dir(dir, 64).unwrap()
    }

    /// A fake model: at every position the probabilities of a few chosen ids
    /// (the rest share what is left); it records the inputs it was given.
    struct Fake {
        vocab: i64,
        positions: i64,
        /// id -> probability, the same at every position...
        probs: HashMap<u32, f64>,
        /// ...except at these (row-independent) token positions.
        at: HashMap<usize, HashMap<u32, f64>>,
        seen: RefCell<Vec<Vec<i64>>>,
    }

    impl Fake {
        fn new(probs: &[(u32, f64)]) -> Self {
            Fake {
                vocab: 40,
                positions: 64,
                probs: probs.iter().copied().collect(),
                at: HashMap::new(),
                seen: RefCell::new(Vec::new()),
            }
        }
    }

    impl MaskedLm for Fake {
        fn vocab_size(&self) -> i64 {
            self.vocab
        }
        fn max_positions(&self) -> i64 {
            self.positions
        }
        fn log_probs_at(&self, input: &MlmInput, flat: &Tensor) -> Result<Tensor> {
            let l = input.input_ids.size()[1];
            let rows = Vec::<Vec<i64>>::try_from(&input.input_ids).unwrap();
            self.seen.borrow_mut().extend(rows);
            let flat = Vec::<i64>::try_from(flat).unwrap();
            let mut out = Vec::new();
            for f in flat {
                let pos = (f % l) as usize;
                let chosen = self.at.get(&pos).unwrap_or(&self.probs);
                let rest = (1.0 - chosen.values().sum::<f64>())
                    / (self.vocab as f64 - chosen.len() as f64);
                for id in 0..self.vocab as u32 {
                    out.push(chosen.get(&id).copied().unwrap_or(rest).ln() as f32);
                }
            }
            Ok(Tensor::from_slice(&out).view([-1, self.vocab]))
        }
    }

    const CHARS: &str = "我们门去学校小朋友唷";

    fn id(c: char) -> u32 {
        5 + CHARS.chars().position(|x| x == c).unwrap() as u32
    }

    fn confusion() -> ConfusionSet {
        let mut c = ConfusionSet::new();
        c.insert('门', ['们', '闷']); // 闷 is not in the vocabulary
        c.insert('们', ['门']);
        c.insert('小', ['校', '晓']);
        c.insert('唷', ['友', '有']);
        c
    }

    #[test]
    fn the_confusion_file_is_parsed_with_both_columns() {
        let text = "#汉字\t同音同调\t同音异调\n一\t壹\t漪\n了\t辽\n\n乙\t已\t亿 艺乙\n了\t\t料\n";
        let set = ConfusionSet::parse(text, Path::new("same_pinyin.txt")).unwrap();
        assert_eq!(set.candidates('一'), ['壹', '漪']);
        // Two-column lines and repeated keys merge; itself and white space are dropped.
        assert_eq!(set.candidates('了'), ['辽', '料']);
        assert_eq!(set.candidates('乙'), ['已', '亿', '艺']);
        assert!(set.candidates('好').is_empty());
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn confusion_errors_name_the_file_and_line() {
        let p = Path::new("conf.txt");
        let msg = |t: &str| ConfusionSet::parse(t, p).unwrap_err().to_string();
        let m = msg("一\t壹\n二\n");
        assert!(
            m.contains("conf.txt, line 2") && m.contains("1 column"),
            "{m}"
        );
        let m = msg("一\t壹\n\n二三\t贰\n");
        assert!(m.contains("line 3") && m.contains("one character"), "{m}");
        let m = msg("一\ta\tb\tc\n");
        assert!(m.contains("line 1") && m.contains("4 columns"), "{m}");
        let m = msg("#header only\n");
        assert!(m.contains("no entry"), "{m}");
        let err = ConfusionSet::from_file(Path::new("/nonexistent/same_pinyin.txt")).unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err:?}");
    }

    #[test]
    fn modes_parse_and_print() {
        assert_eq!(
            "masked".parse::<CorrectMode>().unwrap(),
            CorrectMode::Masked
        );
        assert_eq!(CorrectMode::Direct.to_string(), "direct");
        assert!("fast"
            .parse::<CorrectMode>()
            .unwrap_err()
            .contains("direct or masked"));
    }

    #[test]
    fn a_candidate_replaces_the_character_only_past_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let tok = chinese_tokenizer(dir.path(), CHARS);
        // 我门去学小: 们 0.5 vs 门 0.2 (margin 0.3), 校 0.3 vs 小 0.25 (margin 0.05).
        let model = Fake::new(&[
            (id('们'), 0.5),
            (id('门'), 0.2),
            (id('校'), 0.3),
            (id('小'), 0.25),
        ]);
        let s = vec!["我门去学小".to_string()];
        let out = correct(&model, &tok, &s, &confusion(), &CorrectOptions::new(64)).unwrap();
        assert_eq!(out[0].text, "我们去学小");
        assert_eq!(out[0].changes.len(), 1);
        let c = &out[0].changes[0];
        assert_eq!((c.index, c.from, c.to), (1, '门', '们'));
        assert!((c.from_probability - 0.2).abs() < 1e-6 && (c.to_probability - 0.5).abs() < 1e-6);
        assert!((c.score() - 0.3).abs() < 1e-6);
        // 门 and 小 have candidates in the vocabulary; 我, 去, 学 have none.
        assert_eq!(out[0].checked, 2);
        // A lower threshold also takes the 0.05 margin; one above 0.3 neither.
        let low = CorrectOptions {
            threshold: 0.01,
            ..CorrectOptions::new(64)
        };
        assert_eq!(
            correct(&model, &tok, &s, &confusion(), &low).unwrap()[0].text,
            "我们去学校"
        );
        let high = CorrectOptions {
            threshold: 0.35,
            ..CorrectOptions::new(64)
        };
        let out = correct(&model, &tok, &s, &confusion(), &high).unwrap();
        assert_eq!(out[0].text, s[0], "both margins are below 0.35");
        assert!(out[0].changes.is_empty());
    }

    #[test]
    fn the_most_probable_candidate_wins_and_the_length_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let tok = chinese_tokenizer(dir.path(), CHARS);
        // 唷 -> {友 0.1, 有 (not in the vocabulary)}; at 朋唷 position 友 beats 唷.
        let mut model = Fake::new(&[(id('唷'), 0.01)]);
        // Token position 3 of [CLS] 我 朋 唷 ab ! [SEP] is 唷's.
        model
            .at
            .insert(3, [(id('唷'), 0.01), (id('友'), 0.4)].into_iter().collect());
        let s = vec!["我朋唷ab!".to_string(), String::new()];
        let out = correct(&model, &tok, &s, &confusion(), &CorrectOptions::new(64)).unwrap();
        assert_eq!(out[0].text, "我朋友ab!");
        assert_eq!(out[0].text.chars().count(), s[0].chars().count());
        assert_eq!(out[1].text, "");
        assert_eq!(out[1].checked, 0);
        // The model read [CLS] 我 朋 唷 ab ! [SEP], unmasked, in one pass; the
        // empty sentence was not sent.
        let seen = model.seen.borrow();
        assert_eq!(seen.len(), 1);
        let ab = 5 + CHARS.chars().count() as i64;
        let bang = 1; // "!" is not in the vocabulary: [UNK]
        assert_eq!(
            seen[0],
            vec![
                2,
                i64::from(id('我')),
                i64::from(id('朋')),
                i64::from(id('唷')),
                ab,
                bang,
                3
            ]
        );
    }

    #[test]
    fn masked_mode_masks_each_candidate_position_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let tok = chinese_tokenizer(dir.path(), CHARS);
        let model = Fake::new(&[(id('们'), 0.5), (id('门'), 0.2)]);
        let s = vec!["我门们".to_string()];
        let opts = CorrectOptions {
            mode: CorrectMode::Masked,
            batch_size: 1,
            ..CorrectOptions::new(64)
        };
        let out = correct(&model, &tok, &s, &confusion(), &opts).unwrap();
        // 门 -> 们 (0.5 - 0.2); 们 stays (门 0.2 < 们 0.5).
        assert_eq!(out[0].text, "我们们");
        let seen = model.seen.borrow();
        let (w, m1, m2) = (
            i64::from(id('我')),
            i64::from(id('门')),
            i64::from(id('们')),
        );
        assert_eq!(*seen, vec![vec![2, w, 4, m2, 3], vec![2, w, m1, 4, 3]]);
    }

    #[test]
    fn unknown_and_non_chinese_positions_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        // 门 is not in this vocabulary: [UNK], so it is never a site.
        let tok = chinese_tokenizer(dir.path(), "我们去");
        let model = Fake::new(&[(5 + 1, 0.9)]);
        let mut conf = confusion();
        conf.insert('a', ['们']);
        let s = vec!["我门a去".to_string()];
        let out = correct(
            &model,
            &tok,
            &s,
            &conf,
            &CorrectOptions {
                threshold: 0.0,
                ..CorrectOptions::new(64)
            },
        )
        .unwrap();
        assert_eq!(out[0].text, "我门a去");
        assert_eq!(out[0].checked, 0);
        assert!(
            model.seen.borrow().is_empty(),
            "nothing to decide, no forward pass"
        );
    }

    #[test]
    fn a_long_sentence_is_corrected_in_its_prefix_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let tok = chinese_tokenizer(dir.path(), CHARS);
        let model = Fake::new(&[(id('们'), 0.5), (id('门'), 0.2)]);
        // max_len 5 = [CLS] + 3 characters + [SEP].
        let s = vec!["我门去门门".to_string()];
        let out = correct(&model, &tok, &s, &confusion(), &CorrectOptions::new(5)).unwrap();
        assert_eq!(out[0].text, "我们去门门");
        assert_eq!(out[0].unread_chars, 2);
        assert!(out[0].is_truncated());
        assert_eq!(model.seen.borrow()[0].len(), 5);
    }

    #[test]
    fn options_are_checked_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let tok = chinese_tokenizer(dir.path(), CHARS);
        let model = Fake::new(&[]);
        let s = vec!["我门".to_string()];
        let name = |o: CorrectOptions| match correct(&model, &tok, &s, &confusion(), &o) {
            Err(Error::InvalidOption { name, .. }) => name,
            other => panic!("expected an invalid option, got {other:?}"),
        };
        assert_eq!(
            name(CorrectOptions {
                threshold: 1.0,
                ..CorrectOptions::new(64)
            }),
            "threshold"
        );
        assert_eq!(
            name(CorrectOptions {
                threshold: -0.1,
                ..CorrectOptions::new(64)
            }),
            "threshold"
        );
        assert_eq!(
            name(CorrectOptions {
                threshold: f64::NAN,
                ..CorrectOptions::new(64)
            }),
            "threshold"
        );
        assert_eq!(
            name(CorrectOptions {
                batch_size: 0,
                ..CorrectOptions::new(64)
            }),
            "batch_size"
        );
        assert_eq!(name(CorrectOptions::new(65)), "max_len");
        assert_eq!(name(CorrectOptions::new(2)), "max_len");
        // A model with fewer rows than the tokenizer's ids (门 is 7).
        let small = Fake {
            vocab: 6,
            ..Fake::new(&[])
        };
        let err = correct(&small, &tok, &s, &confusion(), &CorrectOptions::new(64)).unwrap_err();
        assert!(err.to_string().contains("another checkpoint"), "{err}");
        assert!(
            small.seen.borrow().is_empty(),
            "refused before any forward pass"
        );
    }
}

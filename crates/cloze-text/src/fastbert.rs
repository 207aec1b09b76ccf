//! A fast path for the common BERT pipeline (BertNormalizer + BertPreTokenizer +
//! WordPiece): one pass over the characters, no intermediate alignment
//! vectors or token strings. It gives the same ids and word ids as the
//! `tokenizers` crate (tests compare them on real corpora) and is used
//! whenever a tokenizer has exactly that shape and the text holds none of its
//! added tokens (raw or, for tokens matched on normalised text, after
//! normalisation); everything else goes through `tokenizers`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use aho_corasick::AhoCorasick;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Model, Tokenizer};
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

/// FNV-1a: vocabulary keys are short, so a simple byte hash beats SipHash.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Vocab = HashMap<String, u32, BuildHasherDefault<Fnv>>;

/// The BERT pipeline's settings and vocabulary.
#[derive(Debug, Clone)]
pub(crate) struct FastBert {
    vocab: Vocab,
    unk: u32,
    prefix: String,
    max_chars: usize,
    clean_text: bool,
    handle_chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
    /// Contents of the added tokens matched on the raw text (the special
    /// tokens): a text containing one goes through `tokenizers`, which
    /// extracts them whole.
    added: Vec<String>,
    /// The added tokens matched on normalised text (vocabulary extension), as
    /// [`Self::compact`] forms; `None` when there are none.
    normalized_added: Option<AhoCorasick>,
}

impl std::fmt::Debug for Fnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fnv")
    }
}

/// Reusable buffers of one encoding.
#[derive(Default)]
struct Scratch {
    word: String,
    /// Original byte range of each byte of `word`.
    origin: Vec<(u32, u32)>,
    key: String,
}

/// HF's definition of "Chinese character" for BERT normalisation.
fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B920..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn is_control(c: char) -> bool {
    // ASCII is answered without the Unicode tables: most text is ASCII.
    if c.is_ascii() {
        return (c < ' ' || c == '\x7f') && !matches!(c, '\t' | '\n' | '\r');
    }
    c.is_other()
}

fn is_bert_punc(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    c.is_punctuation()
}

impl FastBert {
    /// The fast path for `tok`, when it is a plain BERT WordPiece pipeline.
    pub(crate) fn from_tokenizer(tok: &Tokenizer) -> Option<Self> {
        let ModelWrapper::WordPiece(wp) = tok.get_model() else {
            return None;
        };
        let Some(NormalizerWrapper::BertNormalizer(n)) = tok.get_normalizer() else {
            return None;
        };
        let Some(PreTokenizerWrapper::BertPreTokenizer(_)) = tok.get_pre_tokenizer() else {
            return None;
        };
        let unk = wp.token_to_id(&wp.unk_token)?;
        let vocab: Vocab = wp.get_vocab().into_iter().collect();
        let (normalized, raw): (Vec<_>, Vec<_>) = tok
            .get_added_tokens_decoder()
            .into_values()
            .filter(|t| !t.content.is_empty())
            .partition(|t| t.normalized);
        let added = raw.into_iter().map(|t| t.content).collect();
        let mut fast = Self {
            vocab,
            unk,
            prefix: wp.continuing_subword_prefix.clone(),
            max_chars: wp.max_input_chars_per_word,
            clean_text: n.clean_text,
            handle_chinese_chars: n.handle_chinese_chars,
            strip_accents: n.strip_accents.unwrap_or(n.lowercase),
            lowercase: n.lowercase,
            added,
            normalized_added: None,
        };
        if !normalized.is_empty() {
            let keys: Vec<String> = normalized
                .iter()
                .map(|t| fast.compact(&t.content))
                .collect();
            // A token that normalises to nothing would match everywhere.
            if keys.iter().any(String::is_empty) {
                return None;
            }
            fast.normalized_added = Some(AhoCorasick::new(&keys).ok()?);
        }
        Some(fast)
    }

    /// Whether the fast path reproduces `tokenizers` on this text: it holds no
    /// added token. `tokenizers` finds a normalised added token in the
    /// normalised text, where a text such as `COVID19` holds the token
    /// `covid19`. The test here is on [`Self::compact`] forms, which drop the
    /// whitespace the normaliser keeps or adds (around CJK characters):
    /// deleting every space from two strings keeps one a substring of the
    /// other, so any text `tokenizers` finds a token in is caught, and the
    /// rare extra catch (`covid 19`) only costs the slower path.
    pub(crate) fn applies(&self, text: &str) -> bool {
        if self.added.iter().any(|a| text.contains(a.as_str())) {
            return false;
        }
        match &self.normalized_added {
            None => true,
            Some(tokens) => !tokens.is_match(&self.compact(text)),
        }
    }

    /// `text` normalised as this pipeline does (control characters removed,
    /// accents stripped, lower-cased, as configured) with all whitespace
    /// removed.
    fn compact(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if c.is_whitespace()
                || (self.clean_text && (c == '\0' || c == '\u{fffd}' || is_control(c)))
            {
                continue;
            }
            if c.is_ascii() {
                out.push(if self.lowercase {
                    c.to_ascii_lowercase()
                } else {
                    c
                });
                continue;
            }
            let mut push = |d: char| {
                if self.lowercase {
                    out.extend(d.to_lowercase().filter(|l| !l.is_whitespace()));
                } else if !d.is_whitespace() {
                    out.push(d);
                }
            };
            if self.strip_accents {
                std::iter::once(c)
                    .nfd()
                    .map(|(d, _)| d)
                    .filter(|d| !d.is_mark_nonspacing())
                    .for_each(&mut push);
            } else {
                push(c);
            }
        }
        out
    }

    /// Appends the text's token ids, word ids (dense from 0) and, when asked,
    /// byte offsets.
    pub(crate) fn encode(
        &self,
        text: &str,
        ids: &mut Vec<u32>,
        word_ids: &mut Vec<u32>,
        mut offsets: Option<&mut Vec<(u32, u32)>>,
    ) {
        let mut s = Scratch::default();
        let mut next_word = 0u32;
        let track = offsets.is_some();
        for (i, c) in text.char_indices() {
            let span = (i as u32, (i + c.len_utf8()) as u32);
            if self.clean_text && (c == '\0' || c == '\u{fffd}' || is_control(c)) {
                continue;
            }
            if c.is_whitespace() {
                self.flush(
                    &mut s,
                    ids,
                    word_ids,
                    offsets.as_deref_mut(),
                    &mut next_word,
                );
                continue;
            }
            let chinese = self.handle_chinese_chars && is_chinese_char(c);
            if chinese {
                self.flush(
                    &mut s,
                    ids,
                    word_ids,
                    offsets.as_deref_mut(),
                    &mut next_word,
                );
            }
            if c.is_ascii() {
                let n = if self.lowercase {
                    c.to_ascii_lowercase()
                } else {
                    c
                };
                self.push_char(
                    n,
                    span,
                    track,
                    &mut s,
                    ids,
                    word_ids,
                    offsets.as_deref_mut(),
                    &mut next_word,
                );
            } else {
                let mut normalized: Vec<char> = Vec::with_capacity(2);
                if self.strip_accents {
                    normalized.extend(
                        std::iter::once(c)
                            .nfd()
                            .map(|(d, _)| d)
                            .filter(|d| !d.is_mark_nonspacing()),
                    );
                } else {
                    normalized.push(c);
                }
                if self.lowercase {
                    normalized = normalized
                        .into_iter()
                        .flat_map(char::to_lowercase)
                        .collect();
                }
                for n in normalized {
                    self.push_char(
                        n,
                        span,
                        track,
                        &mut s,
                        ids,
                        word_ids,
                        offsets.as_deref_mut(),
                        &mut next_word,
                    );
                }
            }
            if chinese {
                self.flush(
                    &mut s,
                    ids,
                    word_ids,
                    offsets.as_deref_mut(),
                    &mut next_word,
                );
            }
        }
        self.flush(&mut s, ids, word_ids, offsets, &mut next_word);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_char(
        &self,
        n: char,
        span: (u32, u32),
        track: bool,
        s: &mut Scratch,
        ids: &mut Vec<u32>,
        word_ids: &mut Vec<u32>,
        mut offsets: Option<&mut Vec<(u32, u32)>>,
        next_word: &mut u32,
    ) {
        if n.is_whitespace() {
            self.flush(s, ids, word_ids, offsets, next_word);
            return;
        }
        let punct = is_bert_punc(n);
        if punct {
            self.flush(s, ids, word_ids, offsets.as_deref_mut(), next_word);
        }
        s.word.push(n);
        if track {
            for _ in 0..n.len_utf8() {
                s.origin.push(span);
            }
        }
        if punct {
            self.flush(s, ids, word_ids, offsets, next_word);
        }
    }

    /// WordPiece on the pending word (greedy longest match first).
    fn flush(
        &self,
        s: &mut Scratch,
        ids: &mut Vec<u32>,
        word_ids: &mut Vec<u32>,
        mut offsets: Option<&mut Vec<(u32, u32)>>,
        next_word: &mut u32,
    ) {
        if s.word.is_empty() {
            return;
        }
        let word = &s.word;
        let first = ids.len();
        let mut bad = word.chars().count() > self.max_chars;
        let mut start = 0;
        while !bad && start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                let piece = &word[start..end];
                let id = if start > 0 {
                    s.key.clear();
                    s.key.push_str(&self.prefix);
                    s.key.push_str(piece);
                    self.vocab.get(s.key.as_str())
                } else {
                    self.vocab.get(piece)
                };
                if let Some(&id) = id {
                    found = Some(id);
                    break;
                }
                end -= piece.chars().next_back().map_or(1, char::len_utf8);
            }
            match found {
                Some(id) => {
                    ids.push(id);
                    if let Some(o) = offsets.as_deref_mut() {
                        o.push((s.origin[start].0, s.origin[end - 1].1));
                    }
                    start = end;
                }
                None => bad = true,
            }
        }
        if bad {
            ids.truncate(first);
            ids.push(self.unk);
            if let Some(o) = offsets {
                o.truncate(first);
                o.push((s.origin[0].0, s.origin[word.len() - 1].1));
            }
        }
        word_ids.resize(ids.len(), *next_word);
        *next_word += 1;
        s.word.clear();
        s.origin.clear();
    }
}

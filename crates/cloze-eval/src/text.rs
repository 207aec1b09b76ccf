//! The tokenizer of a checkpoint directory, as inference needs it: text in, ids with
//! `[CLS]`/`[SEP]` out, no padding (batches are padded by [`crate::batch`]).
//!
//! Truncation is done here rather than by `tokenizers` so that what it dropped stays
//! visible: [`ModelTokenizer::tokenize_batch`] returns each text's ids together with
//! its untruncated ids when they were longer than the maximum length, so callers can
//! report truncated lines and a `[MASK]` that fell beyond the limit.

use std::path::{Path, PathBuf};

use tokenizers::utils::truncation::{truncate_encodings, TruncationParams, TruncationStrategy};
use tokenizers::{EncodeInput, Encoding, PostProcessor, Tokenizer, TruncationDirection};

use crate::{Error, Result};

/// A checkpoint's tokenizer (`tokenizer.json` or `vocab.txt`) with padding off and
/// truncation to a chosen length.
#[derive(Debug, Clone)]
pub struct ModelTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    max_len: usize,
    added: usize,
    /// `[CLS]` id.
    pub cls: u32,
    /// `[SEP]` id.
    pub sep: u32,
    /// `[PAD]` id.
    pub pad: u32,
    /// `[MASK]` id, if the vocabulary has one.
    pub mask: Option<u32>,
}

/// One text as the model sees it, and what truncation removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// Token ids with the special tokens, at most the tokenizer's maximum length.
    pub ids: Vec<u32>,
    /// The ids of the whole text (special tokens included) when it was longer than
    /// the maximum length; `None` when `ids` is the whole text.
    pub untruncated: Option<Vec<u32>>,
}

/// Pre-split words as the model sees them ([`ModelTokenizer::encode_words_batch`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WordIds {
    /// Token ids with the special tokens.
    pub ids: Vec<u32>,
    /// For each id, the index of the word it comes from (`None` for special tokens).
    pub words: Vec<Option<usize>>,
}

impl Tokenized {
    /// Whether tokens were cut off.
    pub fn is_truncated(&self) -> bool {
        self.untruncated.is_some()
    }

    /// Token count of the whole text, special tokens included.
    pub fn full_len(&self) -> usize {
        self.untruncated.as_ref().unwrap_or(&self.ids).len()
    }

    /// Position (in the untruncated sequence, `[CLS]` = 0) of the first occurrence of
    /// `id` that truncation removed: e.g. a `[MASK]` beyond the maximum length.
    pub fn first_dropped(&self, id: u32) -> Option<usize> {
        let full = self.untruncated.as_ref()?;
        let kept = self.ids.iter().filter(|&&t| t == id).count();
        full.iter()
            .enumerate()
            .filter(|(_, &t)| t == id)
            .nth(kept)
            .map(|(pos, _)| pos)
    }
}

impl ModelTokenizer {
    /// Loads the tokenizer of a checkpoint directory: its `tokenizer.json`, or
    /// when it has none its BERT `vocab.txt` with the casing of the
    /// `tokenizer_config.json` (or `config.json`) beside it; `dir` may also be
    /// one of those files. The rule is `cloze-text`'s
    /// ([`cloze_text::tokenizer::tokenizer_file`] and
    /// [`cloze_text::tokenizer::load_hf_tokenizer`]), so every command finds
    /// the same tokenizer. Padding and truncation baked into the file
    /// (all-MiniLM-L6-v2 pads to 128) are turned off; sequences are truncated
    /// here to `max_len` tokens, special tokens included, keeping the start
    /// (as `tokenizers` would). `max_len` must leave room for at least one
    /// token besides the special tokens.
    pub fn from_dir(dir: &Path, max_len: usize) -> Result<Self> {
        let path = cloze_text::tokenizer::tokenizer_file(dir)?;
        let mut inner = cloze_text::tokenizer::load_hf_tokenizer(&path)?;
        let tok_err = |source| Error::Tokenizer {
            path: path.clone(),
            source,
        };
        inner.with_padding(None);
        inner.with_truncation(None).map_err(tok_err)?;
        let added = inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if max_len <= added {
            return Err(Error::MaxLengthTooSmall { max_len, added });
        }
        let id = |token: &'static str| {
            inner.token_to_id(token).ok_or_else(|| Error::MissingToken {
                path: path.clone(),
                token,
            })
        };
        Ok(ModelTokenizer {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            pad: id("[PAD]")?,
            mask: id("[MASK]").ok(),
            max_len,
            added,
            inner,
            path,
        })
    }

    /// The id of `token` (a special token such as `[PSEUDO_MASK]`), or
    /// [`Error::MissingToken`] naming the tokenizer file.
    pub fn token_id(&self, token: &'static str) -> Result<u32> {
        self.inner
            .token_to_id(token)
            .ok_or_else(|| Error::MissingToken {
                path: self.path.clone(),
                token,
            })
    }

    /// The `[MASK]` id, or [`Error::MissingToken`] naming the tokenizer file when
    /// the vocabulary has none (fill-mask and scoring cannot run without it).
    pub fn mask_id(&self) -> Result<u32> {
        self.mask.ok_or_else(|| Error::MissingToken {
            path: self.path.clone(),
            token: "[MASK]",
        })
    }

    /// Number of ids in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> u32 {
        u32::try_from(self.inner.get_vocab_size(true)).unwrap_or(u32::MAX)
    }

    /// The maximum sequence length, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// How many special tokens the tokenizer adds to a single text (`[CLS]`, `[SEP]`).
    pub fn special_tokens_added(&self) -> usize {
        self.added
    }

    fn err(&self, source: tokenizers::Error) -> Error {
        Error::Tokenizer {
            path: self.path.clone(),
            source,
        }
    }

    /// Each text with `[CLS] ... [SEP]`, truncated to the maximum length, with its
    /// untruncated ids when truncation removed something; in input order.
    pub fn tokenize_batch(&self, texts: &[&str]) -> Result<Vec<Tokenized>> {
        let raw = self
            .inner
            .encode_batch_fast(texts.to_vec(), false)
            .map_err(|e| self.err(e))?;
        let keep = self.max_len - self.added;
        raw.into_iter()
            .map(|mut enc| {
                if enc.len() <= keep {
                    return Ok(Tokenized {
                        ids: self.finish(enc)?.get_ids().to_vec(),
                        untruncated: None,
                    });
                }
                let full = self.finish(enc.clone())?.get_ids().to_vec();
                enc.truncate(keep, 0, TruncationDirection::Right);
                // The cut-off rest is not needed: keep the post-processor from
                // processing it too.
                drop(enc.take_overflowing());
                Ok(Tokenized {
                    ids: self.finish(enc)?.get_ids().to_vec(),
                    untruncated: Some(full),
                })
            })
            .collect()
    }

    /// Adds the special tokens (the post-processor's template).
    fn finish(&self, enc: Encoding) -> Result<Encoding> {
        self.inner
            .post_process(enc, None, true)
            .map_err(|e| self.err(e))
    }

    /// Token ids of each text with `[CLS] ... [SEP]`, truncated to the maximum
    /// length, in input order ([`Self::tokenize_batch`] also says what was cut).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        Ok(self
            .tokenize_batch(texts)?
            .into_iter()
            .map(|t| t.ids)
            .collect())
    }

    /// The part of `text` the model sees after truncation: the original text up to
    /// the end of the last token kept (the whole text when nothing was cut).
    pub fn kept_text<'t>(&self, text: &'t str) -> Result<&'t str> {
        let keep = self.max_len - self.added;
        let enc = self.inner.encode(text, false).map_err(|e| self.err(e))?;
        if enc.len() <= keep {
            return Ok(text);
        }
        let end = enc.get_offsets()[..keep]
            .iter()
            .map(|&(_, end)| end)
            .max()
            .unwrap_or(0);
        // Offsets are byte offsets into `text`; fall back to the whole text should a
        // tokenizer ever report one off a character boundary.
        Ok(text.get(..end).unwrap_or(text))
    }

    /// The string of a token id (`"[UNK]"`-style fallback never needed for ids from the model).
    pub fn id_to_token(&self, id: u32) -> String {
        self.inner
            .id_to_token(id)
            .unwrap_or_else(|| format!("<{id}>"))
    }

    /// Decodes ids to text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|source| Error::Tokenizer {
                path: self.path.clone(),
                source,
            })
    }

    /// How many special tokens the tokenizer's template adds to a text pair
    /// (`[CLS] A [SEP] B [SEP]`: 3).
    pub fn special_tokens_added_pair(&self) -> usize {
        self.inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true))
    }

    /// Ids and token types of a text, or of a text pair, with the template's
    /// special tokens (BERT: `[CLS] a [SEP]` with types 0, `[CLS] a [SEP] b [SEP]`
    /// with types 0 for the first segment and 1 for `b [SEP]`), at most `max_len`
    /// ids. Truncation keeps the start of each segment and, for a pair, cuts the
    /// longer segment first (HF's `longest_first`): both keep at least half of the
    /// room when both are long. See [`Self::encode_pairs`].
    pub fn encode_pair(
        &self,
        text: &str,
        pair: Option<&str>,
        max_len: usize,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        let mut out = self.encode_pairs(&[(text, pair)], max_len)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// [`Self::encode_pair`] for many texts at once (`tokenizers` encodes them in
    /// parallel), in input order. A `max_len` that leaves no room for text besides
    /// the special tokens of a pair (or of a single text, when no example has a
    /// pair) is [`Error::MaxLengthTooSmall`].
    pub fn encode_pairs(
        &self,
        pairs: &[(&str, Option<&str>)],
        max_len: usize,
    ) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        let any_pair = pairs.iter().any(|(_, b)| b.is_some());
        let added = if any_pair {
            self.special_tokens_added_pair()
        } else {
            self.added
        };
        if max_len <= added {
            return Err(Error::MaxLengthTooSmall { max_len, added });
        }
        let firsts: Vec<&str> = pairs.iter().map(|(a, _)| *a).collect();
        let seconds: Vec<&str> = pairs.iter().filter_map(|(_, b)| *b).collect();
        let firsts = self
            .inner
            .encode_batch_fast(firsts, false)
            .map_err(|e| self.err(e))?;
        let mut seconds = self
            .inner
            .encode_batch_fast(seconds, false)
            .map_err(|e| self.err(e))?
            .into_iter();
        firsts
            .into_iter()
            .zip(pairs)
            .map(|(a, (_, b))| {
                let b = match b {
                    Some(_) => seconds.next(),
                    None => None,
                };
                let added = if b.is_some() {
                    self.special_tokens_added_pair()
                } else {
                    self.added
                };
                let params = TruncationParams {
                    max_length: max_len - added,
                    strategy: TruncationStrategy::LongestFirst,
                    stride: 0,
                    direction: TruncationDirection::Right,
                };
                let (mut a, mut b) = truncate_encodings(a, b, &params).map_err(|e| self.err(e))?;
                // What truncation cut off is not needed: keep the post-processor
                // from processing it too.
                drop(a.take_overflowing());
                if let Some(b) = b.as_mut() {
                    drop(b.take_overflowing());
                    // The template sets the types; without one the second segment
                    // still reads as segment 1.
                    b.set_type_ids(vec![1; b.len()]);
                }
                let enc = self
                    .inner
                    .post_process(a, b, true)
                    .map_err(|e| self.err(e))?;
                Ok((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()))
            })
            .collect()
    }

    /// Ids of pre-split sentences (lists of words, or of characters) with the
    /// template's special tokens, at most `max_len` ids each (the end is cut),
    /// and for each id the index of the word it comes from (`None` for special
    /// tokens); in input order. The tokenizer's normaliser, pre-tokeniser and
    /// model run on each word alone, so a word never merges with its
    /// neighbours but may give several ids (WordPiece pieces, or punctuation
    /// split off) or none (a word the normaliser removes entirely). Token types
    /// are all 0. A `max_len` that leaves no room for a word besides the
    /// special tokens is [`Error::MaxLengthTooSmall`].
    pub fn encode_words_batch(
        &self,
        sentences: &[&[String]],
        max_len: usize,
    ) -> Result<Vec<WordIds>> {
        if max_len <= self.added {
            return Err(Error::MaxLengthTooSmall {
                max_len,
                added: self.added,
            });
        }
        let keep = max_len - self.added;
        // An empty word list is no input `tokenizers` accepts as pre-split words;
        // such a sentence is encoded as the empty text.
        let inputs: Vec<EncodeInput> = sentences
            .iter()
            .map(|words| {
                if words.is_empty() {
                    EncodeInput::from("")
                } else {
                    EncodeInput::from(*words)
                }
            })
            .collect();
        // Not `encode_batch_fast`: without offsets it records no word ids.
        let encoded = self
            .inner
            .encode_batch(inputs, false)
            .map_err(|e| self.err(e))?;
        encoded
            .into_iter()
            .map(|mut enc| {
                if enc.len() > keep {
                    enc.truncate(keep, 0, TruncationDirection::Right);
                    drop(enc.take_overflowing());
                }
                let enc = self.finish(enc)?;
                let words = enc
                    .get_word_ids()
                    .iter()
                    .zip(enc.get_special_tokens_mask())
                    .map(|(&w, &special)| match (w, special) {
                        (Some(w), 0) => Some(w as usize),
                        _ => None,
                    })
                    .collect();
                Ok(WordIds {
                    ids: enc.get_ids().to_vec(),
                    words,
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// A word-level tokenizer: ids 0-4 are `[PAD] [UNK] [CLS] [SEP] [MASK]`, then
    /// `w5` ... `w95`, with BERT's `[CLS] A [SEP]` template (the vocabulary of the
    /// hf-tiny-bert fixture; other modules' tests use it too).
    pub(crate) fn tokenizer(dir: &Path) {
        let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
        let mut vocab = serde_json::Map::new();
        for (i, s) in specials.iter().enumerate() {
            vocab.insert(s.to_string(), i.into());
        }
        for i in 5..96 {
            vocab.insert(format!("w{i}"), i.into());
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
            "version": "1.0", "truncation": {"direction": "Left", "max_length": 2,
                "strategy": "LongestFirst", "stride": 0},
            "padding": null, "added_tokens": added,
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                   "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
        });
        std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    }

    #[test]
    fn truncation_keeps_the_start_and_reports_what_it_cut() {
        let dir = tempfile::tempdir().unwrap();
        tokenizer(dir.path());
        // The file's own truncation (left, 2 tokens) is ignored.
        let tok = ModelTokenizer::from_dir(dir.path(), 5).unwrap();
        assert_eq!(tok.special_tokens_added(), 2);
        assert_eq!(tok.mask_id().unwrap(), 4);
        let out = tok
            .tokenize_batch(&["w5 w6", "w5 w6 w7", "w5 w6 w7 w8 [MASK] w9 [MASK]"])
            .unwrap();
        assert_eq!(out[0].ids, vec![2, 5, 6, 3]);
        assert!(!out[0].is_truncated());
        assert_eq!(out[1].ids, vec![2, 5, 6, 7, 3]);
        assert_eq!(out[1].full_len(), 5);
        assert!(
            !out[1].is_truncated(),
            "exactly at the limit is not truncated"
        );
        assert_eq!(out[2].ids, vec![2, 5, 6, 7, 3]);
        assert_eq!(out[2].full_len(), 9);
        assert_eq!(
            out[2].untruncated.as_deref(),
            Some(&[2, 5, 6, 7, 8, 4, 9, 4, 3][..])
        );
        assert_eq!(out[2].first_dropped(4), Some(5));
        assert_eq!(out[2].first_dropped(9), Some(6));
        assert_eq!(out[0].first_dropped(4), None);
        assert_eq!(
            tok.encode_batch(&["w5 w6 w7 w8"]).unwrap(),
            vec![vec![2, 5, 6, 7, 3]]
        );
    }

    #[test]
    fn first_dropped_skips_the_occurrences_that_were_kept() {
        let dir = tempfile::tempdir().unwrap();
        tokenizer(dir.path());
        let tok = ModelTokenizer::from_dir(dir.path(), 5).unwrap();
        let out = tok.tokenize_batch(&["[MASK] w5 w6 [MASK]"]).unwrap();
        assert_eq!(out[0].ids, vec![2, 4, 5, 6, 3]);
        assert_eq!(out[0].first_dropped(4), Some(4));
    }

    #[test]
    fn kept_text_is_the_original_prefix_the_model_sees() {
        let dir = tempfile::tempdir().unwrap();
        tokenizer(dir.path());
        let tok = ModelTokenizer::from_dir(dir.path(), 5).unwrap();
        assert_eq!(tok.kept_text("w5  w6   w7 w8 w9").unwrap(), "w5  w6   w7");
        assert_eq!(tok.kept_text("w5 w6 w7").unwrap(), "w5 w6 w7");
        assert_eq!(tok.kept_text("  w5 ").unwrap(), "  w5 ");
    }

    #[test]
    fn a_vocab_txt_only_directory_loads_with_its_tokenizer_config_casing() {
        let dir = tempfile::tempdir().unwrap();
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "The", "cat",
        ];
        std::fs::write(dir.path().join("vocab.txt"), vocab.join("\n")).unwrap();
        // The vocabulary looks cased; the tokenizer config says it is not.
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"do_lower_case": true}"#,
        )
        .unwrap();
        let tok = ModelTokenizer::from_dir(dir.path(), 8).unwrap();
        assert_eq!((tok.cls, tok.sep, tok.pad, tok.mask), (2, 3, 0, Some(4)));
        assert_eq!(tok.special_tokens_added(), 2);
        assert_eq!(
            tok.encode_batch(&["The cat [MASK]"]).unwrap(),
            vec![vec![2, 5, 7, 4, 3]]
        );
        std::fs::remove_file(dir.path().join("vocab.txt")).unwrap();
        let err = ModelTokenizer::from_dir(dir.path(), 8).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("tokenizer.json") && msg.contains("vocab.txt"),
            "{msg}"
        );
    }

    #[test]
    fn a_maximum_length_without_room_for_text_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        tokenizer(dir.path());
        assert!(matches!(
            ModelTokenizer::from_dir(dir.path(), 2),
            Err(Error::MaxLengthTooSmall {
                max_len: 2,
                added: 2
            })
        ));
        assert!(ModelTokenizer::from_dir(dir.path(), 3).is_ok());
    }
}

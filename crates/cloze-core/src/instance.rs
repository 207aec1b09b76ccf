//! The unmasked pretraining instance: the contract between text and masking.

use serde::{Deserialize, Serialize};

/// Word id given to tokens that belong to no word ([CLS], [SEP], padding).
pub const NO_WORD: u32 = u32::MAX;

/// The sentence-pair objective's label for an instance, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairLabel {
    /// Next-sentence prediction: `true` when segment B is a random segment
    /// (HuggingFace's label 1), `false` when B really follows A (label 0).
    Nsp {
        /// B was drawn from another document.
        is_random_next: bool,
    },
    /// Sentence-order prediction: `true` when A and B were swapped (label 1).
    Sop {
        /// The two segments appear in swapped order.
        swapped: bool,
    },
}

impl PairLabel {
    /// The class index the pair head is trained on (0 or 1).
    pub fn class(self) -> u8 {
        match self {
            PairLabel::Nsp { is_random_next: b } | PairLabel::Sop { swapped: b } => u8::from(b),
        }
    }
}

/// One pretraining example before masking: `[CLS] A [SEP] (B [SEP])`.
///
/// All three vectors have the same length. `word_ids[i]` numbers the word that
/// token `i` belongs to (increasing along the sequence, shared by all sub-tokens of
/// a word), or [`NO_WORD`] for special tokens; whole-word and n-gram masking use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Token ids, special tokens included.
    pub tokens: Vec<u32>,
    /// Segment (token type) id per token: 0 for A (and [CLS]), 1 for B.
    pub segment_ids: Vec<u8>,
    /// Word id per token, [`NO_WORD`] for special tokens.
    pub word_ids: Vec<u32>,
    /// NSP/SOP label, `None` for single-segment (packed) instances.
    pub pair_label: Option<PairLabel>,
}

impl Instance {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the instance holds no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// `[PAD]`.
pub const PAD: &str = "[PAD]";
/// `[UNK]`.
pub const UNK: &str = "[UNK]";
/// `[CLS]`.
pub const CLS: &str = "[CLS]";
/// `[SEP]`.
pub const SEP: &str = "[SEP]";
/// `[MASK]` (also UniLM-v2's `[M]`).
pub const MASK: &str = "[MASK]";
/// UniLM-v2's pseudo mask `[P]`, used by the partially autoregressive
/// objective; reserved by cloze's tokenizer training.
pub const PSEUDO_MASK: &str = "[PSEUDO_MASK]";
/// The tokens cloze's tokenizer training reserves, at ids 0-5 in this order.
pub const RESERVED: [&str; 6] = [PAD, UNK, CLS, SEP, MASK, PSEUDO_MASK];

/// A vocabulary lacks one of the tokens masking cannot do without.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the vocabulary has no {token} token")]
pub struct MissingSpecialToken {
    /// The missing token (`[MASK]`, ...).
    pub token: &'static str,
}

/// Ids of the special tokens, and the vocabulary size, that masking and collation need.
///
/// Build it with [`SpecialTokens::from_lookup`], the one place that knows which
/// tokens are required and which are optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Vocabulary size (random replacements are drawn below it).
    pub vocab_size: u32,
    /// `[PAD]`.
    pub pad: u32,
    /// `[UNK]`.
    pub unk: u32,
    /// `[CLS]`.
    pub cls: u32,
    /// `[SEP]`.
    pub sep: u32,
    /// `[MASK]`.
    pub mask: u32,
    /// UniLM-v2's `[P]` (`[PSEUDO_MASK]`), when the vocabulary has it. Absent from
    /// manifests written before it existed, hence the serde default.
    #[serde(default)]
    pub pseudo_mask: Option<u32>,
    /// Every id that must never be masked nor drawn as a random replacement
    /// (the tokens above plus any other reserved token).
    pub all_special: Vec<u32>,
}

impl SpecialTokens {
    /// Looks the BERT special tokens up by name (`[PAD] [UNK] [CLS] [SEP] [MASK]`
    /// are required, `[PSEUDO_MASK]` is optional) and adds `extra_special`
    /// (a tokenizer's other special tokens) to [`Self::all_special`], sorted
    /// and without duplicates.
    pub fn from_lookup(
        vocab_size: u32,
        lookup: impl Fn(&str) -> Option<u32>,
        extra_special: impl IntoIterator<Item = u32>,
    ) -> Result<Self, MissingSpecialToken> {
        let need = |token: &'static str| lookup(token).ok_or(MissingSpecialToken { token });
        let (pad, unk, cls, sep, mask) =
            (need(PAD)?, need(UNK)?, need(CLS)?, need(SEP)?, need(MASK)?);
        let pseudo_mask = lookup(PSEUDO_MASK);
        let mut all_special: Vec<u32> = [pad, unk, cls, sep, mask]
            .into_iter()
            .chain(pseudo_mask)
            .chain(extra_special)
            .collect();
        all_special.sort_unstable();
        all_special.dedup();
        Ok(Self {
            vocab_size,
            pad,
            unk,
            cls,
            sep,
            mask,
            pseudo_mask,
            all_special,
        })
    }

    /// The specials of Google's BERT-base uncased vocabulary (30,522 tokens:
    /// `[PAD]` 0, `[UNK]` 100, `[CLS]` 101, `[SEP]` 102, `[MASK]` 103), for
    /// tests and benchmarks that need realistic ids without a vocabulary file.
    pub fn bert_base_uncased() -> Self {
        Self {
            vocab_size: 30522,
            pad: 0,
            unk: 100,
            cls: 101,
            sep: 102,
            mask: 103,
            pseudo_mask: None,
            all_special: vec![0, 100, 101, 102, 103],
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lookup(vocab: &'static [&'static str]) -> impl Fn(&str) -> Option<u32> {
        move |t| vocab.iter().position(|v| *v == t).map(|i| i as u32)
    }

    #[test]
    fn required_tokens_are_named_when_missing() {
        let err = SpecialTokens::from_lookup(4, lookup(&["[PAD]", "[UNK]", "[CLS]", "[SEP]"]), [])
            .unwrap_err();
        assert_eq!(err.token, "[MASK]");
        assert!(err.to_string().contains("[MASK]"));
    }

    #[test]
    fn pseudo_mask_is_optional_and_extras_are_merged_sorted() {
        let v = &["x", "[MASK]", "[SEP]", "[CLS]", "[UNK]", "[PAD]"];
        let s = SpecialTokens::from_lookup(6, lookup(v), [0, 3]).unwrap();
        assert_eq!(s.pseudo_mask, None);
        assert_eq!(s.all_special, vec![0, 1, 2, 3, 4, 5]);
        let s = SpecialTokens::from_lookup(7, lookup(&RESERVED), []).unwrap();
        assert_eq!(s.pseudo_mask, Some(5));
        assert_eq!(s.all_special, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn manifests_without_the_pseudo_mask_field_still_parse() {
        let json = r#"{"vocab_size":10,"pad":0,"unk":1,"cls":2,"sep":3,"mask":4,"all_special":[0,1,2,3,4]}"#;
        let s: SpecialTokens = serde_json::from_str(json).unwrap();
        assert_eq!(s.pseudo_mask, None);
        assert_eq!(s.mask, 4);
    }
}

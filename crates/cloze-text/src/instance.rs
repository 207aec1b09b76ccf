//! The unmasked pretraining instance: the contract between text and masking.

use serde::{Deserialize, Serialize};

/// Word id given to tokens that belong to no word (`[CLS]`, `[SEP]`, padding).
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
    /// Segment (token type) id per token: 0 for A (and `[CLS]`), 1 for B.
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

/// Ids of the special tokens, and the vocabulary size, that masking and collation need.
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
    /// Every id that must never be masked nor drawn as a random replacement
    /// (the five above plus any other reserved token, e.g. UniLM-v2's pseudo tokens).
    pub all_special: Vec<u32>,
}

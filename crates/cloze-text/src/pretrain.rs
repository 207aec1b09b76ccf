//! Unmasked pretraining instances with the semantics of Google BERT's
//! `create_pretraining_data.py` (NSP), ALBERT's sentence-order variant (SOP),
//! and a packed single-segment mode (RoBERTa's DOC-SENTENCES) for MLM only.
//!
//! Randomness comes from a ChaCha8 stream seeded by (seed, document index), so
//! the instances of a document do not depend on thread count or on how the
//! corpus was chunked.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::instance::{Instance, PairLabel, SpecialTokens, NO_WORD};

/// The pair objective (or none) instances are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Next-sentence prediction: B is the true continuation or (50%) a random
    /// segment of another document.
    #[default]
    Nsp,
    /// Sentence-order prediction: A and B are consecutive, swapped 50% of the time.
    Sop,
    /// Single segments packed up to the maximum length, no pair label.
    Packed,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nsp" => Ok(Mode::Nsp),
            "sop" => Ok(Mode::Sop),
            "packed" => Ok(Mode::Packed),
            other => Err(format!("unknown mode {other:?} (nsp, sop, packed)")),
        }
    }
}

/// Instance-building settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InstanceConfig {
    /// The objective.
    pub mode: Mode,
    /// Maximum tokens per instance, special tokens included.
    pub max_seq_length: usize,
    /// Probability of choosing a shorter target length (pair modes).
    pub short_seq_prob: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

/// The shortest instance length accepted: `[CLS]`, two `[SEP]`s and room for
/// a few tokens of each segment.
pub const MIN_SEQ_LENGTH: usize = 8;

/// The longest instance length accepted, in tokens (special tokens included).
///
/// The models cloze trains use learned absolute position embeddings (512 in
/// every BERT preset), so instances longer than the model's positions cannot
/// be trained at all, and attention memory grows with the square of the
/// length: at 8192 tokens one sequence's attention scores take 256 MiB per
/// head and layer in fp32. 8192 leaves room for long-context experiments
/// (16x BERT's 512) while a typo such as 4294967296 or 100000 becomes an error
/// before any work instead of an out-of-memory abort or a failure at the
/// first forward pass. The trainer checks the tighter bound of the model's
/// `max_position_embeddings` when it knows the model.
pub const MAX_SEQ_LENGTH: usize = 8192;

impl InstanceConfig {
    /// Checks the settings: `max_seq_length` in
    /// [`MIN_SEQ_LENGTH`]`..=`[`MAX_SEQ_LENGTH`], `short_seq_prob` in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_SEQ_LENGTH..=MAX_SEQ_LENGTH).contains(&self.max_seq_length) {
            return Err(Error::SeqLengthOutOfRange {
                value: self.max_seq_length,
                min: MIN_SEQ_LENGTH,
                max: MAX_SEQ_LENGTH,
            });
        }
        if !(0.0..=1.0).contains(&self.short_seq_prob) {
            return Err(Error::Config(format!(
                "short_seq_prob {} is not in [0, 1]",
                self.short_seq_prob
            )));
        }
        Ok(())
    }
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Nsp,
            max_seq_length: 128,
            short_seq_prob: 0.1,
            seed: 12345,
        }
    }
}

/// A tokenized segment (a corpus line): ids and line-local word ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segment {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Word id per token, local to the segment.
    pub word_ids: Vec<u32>,
}

/// A tokenized document.
pub type TokenizedDoc = Vec<Segment>;

pub use cloze_core::rng::{rng_for, Stream};

/// A token with its provenance, so word ids can be renumbered per instance.
#[derive(Clone, Copy)]
struct Tok {
    id: u32,
    /// (document-local segment index, local word id) packed; distinct words
    /// have distinct keys within one instance half.
    word: u64,
}

fn extend(out: &mut Vec<Tok>, seg: &Segment, seg_index: usize, doc_tag: u64) {
    out.extend(seg.ids.iter().zip(&seg.word_ids).map(|(&id, &w)| Tok {
        id,
        word: (doc_tag << 48) ^ ((seg_index as u64) << 24) ^ u64::from(w),
    }));
}

/// Builds the instances of document `doc_index` (of `docs`, the documents
/// visible for NSP's random B, which must include it).
pub fn instances_for_document(
    docs: &[TokenizedDoc],
    local_index: usize,
    doc_index: u64,
    config: &InstanceConfig,
    special: &SpecialTokens,
) -> Vec<Instance> {
    let mut rng = rng_for(config.seed, Stream::Instances, doc_index);
    match config.mode {
        Mode::Packed => packed(&docs[local_index], config, special),
        Mode::Nsp | Mode::Sop => pairs(docs, local_index, config, special, &mut rng),
    }
}

fn pairs(
    docs: &[TokenizedDoc],
    local_index: usize,
    config: &InstanceConfig,
    special: &SpecialTokens,
    rng: &mut ChaCha8Rng,
) -> Vec<Instance> {
    let document = &docs[local_index];
    let max_num_tokens = config.max_seq_length.saturating_sub(3);
    if max_num_tokens < 2 {
        return Vec::new();
    }
    // As in Google's script, the target length is drawn once per document.
    let target_seq_length = if rng.random::<f64>() < config.short_seq_prob {
        rng.random_range(2..=max_num_tokens)
    } else {
        max_num_tokens
    };
    let mut out = Vec::new();
    let mut chunk: Vec<usize> = Vec::new();
    let mut current_length = 0usize;
    let mut i = 0usize;
    while i < document.len() {
        let seg = &document[i];
        if !seg.ids.is_empty() {
            chunk.push(i);
            current_length += seg.ids.len();
        }
        if (i + 1 == document.len() || current_length >= target_seq_length) && !chunk.is_empty() {
            let a_end = if chunk.len() >= 2 {
                rng.random_range(1..chunk.len())
            } else {
                1
            };
            let mut a = Vec::new();
            for &s in &chunk[..a_end] {
                extend(&mut a, &document[s], s, 0);
            }
            let mut b = Vec::new();
            let label;
            match config.mode {
                Mode::Nsp => {
                    let random_next = chunk.len() == 1 || rng.random::<f64>() < 0.5;
                    if random_next && docs.len() > 1 {
                        let target_b_length = target_seq_length.saturating_sub(a.len()).max(1);
                        // Google tries 10 times to avoid the current document.
                        let mut r = local_index;
                        for _ in 0..10 {
                            r = rng.random_range(0..docs.len());
                            if r != local_index {
                                break;
                            }
                        }
                        if r == local_index {
                            r = (local_index + 1) % docs.len();
                        }
                        let other = &docs[r];
                        if !other.is_empty() {
                            let start = rng.random_range(0..other.len());
                            for (j, seg) in other.iter().enumerate().skip(start) {
                                extend(&mut b, seg, j, 1);
                                if b.len() >= target_b_length {
                                    break;
                                }
                            }
                        }
                        // The unused segments of this chunk are put back.
                        let unused = chunk.len() - a_end;
                        i -= unused;
                        label = PairLabel::Nsp {
                            is_random_next: true,
                        };
                    } else {
                        for &s in &chunk[a_end..] {
                            extend(&mut b, &document[s], s, 0);
                        }
                        label = PairLabel::Nsp {
                            is_random_next: false,
                        };
                    }
                }
                _ => {
                    if chunk.len() == 1 {
                        // A lone segment is split inside itself rather than
                        // pairing with another document (ALBERT would), so SOP
                        // never crosses documents.
                        if a.len() >= 2 {
                            let cut = rng.random_range(1..a.len());
                            b = a.split_off(cut);
                        }
                    } else {
                        for &s in &chunk[a_end..] {
                            extend(&mut b, &document[s], s, 0);
                        }
                    }
                    let swapped = rng.random::<f64>() < 0.5;
                    if swapped {
                        std::mem::swap(&mut a, &mut b);
                    }
                    label = PairLabel::Sop { swapped };
                }
            }
            truncate_pair(&mut a, &mut b, max_num_tokens, rng);
            if !a.is_empty() && !b.is_empty() {
                out.push(build(&a, Some(&b), Some(label), special));
            }
            chunk.clear();
            current_length = 0;
        }
        i += 1;
    }
    out
}

/// Truncates the longer of the two token lists, one token at a time, from the
/// front or the back at random, until they fit (Google's `truncate_seq_pair`).
fn truncate_pair(a: &mut Vec<Tok>, b: &mut Vec<Tok>, max: usize, rng: &mut ChaCha8Rng) {
    // Removing from the front is done lazily through an offset to stay linear.
    let (mut a0, mut b0) = (0usize, 0usize);
    loop {
        let (la, lb) = (a.len() - a0, b.len() - b0);
        if la + lb <= max {
            break;
        }
        let (v, start) = if la > lb {
            (&mut *a, &mut a0)
        } else {
            (&mut *b, &mut b0)
        };
        if rng.random::<f64>() < 0.5 {
            *start += 1;
        } else {
            v.pop();
        }
    }
    a.drain(..a0);
    b.drain(..b0);
}

fn build(
    a: &[Tok],
    b: Option<&[Tok]>,
    label: Option<PairLabel>,
    special: &SpecialTokens,
) -> Instance {
    let n = a.len() + b.map_or(0, <[Tok]>::len) + if b.is_some() { 3 } else { 2 };
    let mut tokens = Vec::with_capacity(n);
    let mut segment_ids = Vec::with_capacity(n);
    let mut word_ids = Vec::with_capacity(n);
    let mut next = 0u32;
    let mut prev: Option<u64> = None;
    let mut push_half = |half: &[Tok],
                         seg: u8,
                         tokens: &mut Vec<u32>,
                         segment_ids: &mut Vec<u8>,
                         word_ids: &mut Vec<u32>| {
        for t in half {
            if prev != Some(t.word) {
                next += 1;
                prev = Some(t.word);
            }
            tokens.push(t.id);
            segment_ids.push(seg);
            word_ids.push(next - 1);
        }
        // A word never continues across [SEP].
        prev = None;
    };
    tokens.push(special.cls);
    segment_ids.push(0);
    word_ids.push(NO_WORD);
    push_half(a, 0, &mut tokens, &mut segment_ids, &mut word_ids);
    tokens.push(special.sep);
    segment_ids.push(0);
    word_ids.push(NO_WORD);
    if let Some(b) = b {
        push_half(b, 1, &mut tokens, &mut segment_ids, &mut word_ids);
        tokens.push(special.sep);
        segment_ids.push(1);
        word_ids.push(NO_WORD);
    }
    Instance {
        tokens,
        segment_ids,
        word_ids,
        pair_label: label,
    }
}

/// Packs consecutive segments of one document into `[CLS] ... [SEP]`
/// instances of at most `max_seq_length` tokens; a segment longer than the
/// room left is cut across instances.
fn packed(
    document: &TokenizedDoc,
    config: &InstanceConfig,
    special: &SpecialTokens,
) -> Vec<Instance> {
    let room = config.max_seq_length.saturating_sub(2);
    if room == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur: Vec<Tok> = Vec::with_capacity(room);
    for (s, seg) in document.iter().enumerate() {
        let mut toks = Vec::with_capacity(seg.ids.len());
        extend(&mut toks, seg, s, 0);
        let mut rest = &toks[..];
        while !rest.is_empty() {
            let take = (room - cur.len()).min(rest.len());
            cur.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if cur.len() == room {
                out.push(build(&cur, None, None, special));
                cur.clear();
            }
        }
    }
    if !cur.is_empty() {
        out.push(build(&cur, None, None, special));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn max_seq_length_is_bounded_with_a_typed_error() {
        for bad in [0, MIN_SEQ_LENGTH - 1, MAX_SEQ_LENGTH + 1, 100_000, 1 << 32] {
            let config = InstanceConfig {
                max_seq_length: bad,
                ..InstanceConfig::default()
            };
            let err = config.validate().unwrap_err();
            assert!(
                matches!(err, Error::SeqLengthOutOfRange { value, max: MAX_SEQ_LENGTH, .. } if value == bad),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("8192"), "{err}");
        }
        for good in [MIN_SEQ_LENGTH, 512, MAX_SEQ_LENGTH] {
            InstanceConfig {
                max_seq_length: good,
                ..InstanceConfig::default()
            }
            .validate()
            .unwrap();
        }
    }

    fn special() -> SpecialTokens {
        SpecialTokens {
            vocab_size: 1000,
            pad: 0,
            unk: 1,
            cls: 2,
            sep: 3,
            mask: 4,
            pseudo_mask: None,
            all_special: vec![0, 1, 2, 3, 4],
        }
    }

    /// Document `d` has `n` segments; token ids encode (doc, segment, position)
    /// as 100000*(d+1) + 100*s + p so provenance can be checked.
    fn doc(d: u32, n: usize, len: usize) -> TokenizedDoc {
        (0..n)
            .map(|s| Segment {
                ids: (0..len as u32)
                    .map(|p| 100_000 * (d + 1) + 100 * s as u32 + p)
                    .collect(),
                word_ids: (0..len as u32).map(|p| p / 2).collect(),
            })
            .collect()
    }

    fn check_shape(inst: &Instance, max: usize) {
        assert!(inst.len() <= max);
        assert_eq!(inst.tokens.len(), inst.segment_ids.len());
        assert_eq!(inst.tokens.len(), inst.word_ids.len());
        assert_eq!(inst.tokens[0], 2);
        assert_eq!(*inst.tokens.last().unwrap(), 3);
        // Word ids increase by 0 or 1 over non-special tokens.
        let w: Vec<u32> = inst
            .word_ids
            .iter()
            .copied()
            .filter(|&w| w != NO_WORD)
            .collect();
        assert_eq!(w[0], 0);
        assert!(w.windows(2).all(|p| p[1] == p[0] || p[1] == p[0] + 1));
    }

    #[test]
    fn nsp_follows_google_semantics() {
        let docs: Vec<TokenizedDoc> = (0..20).map(|d| doc(d, 12, 30)).collect();
        let config = InstanceConfig::default();
        let (mut random, mut actual) = (0, 0);
        for (k, _) in docs.iter().enumerate() {
            for inst in instances_for_document(&docs, k, k as u64, &config, &special()) {
                check_shape(&inst, 128);
                let sep = inst.tokens.iter().position(|&t| t == 3).unwrap();
                let a_docs: Vec<u32> = inst.tokens[1..sep].iter().map(|t| t / 100_000).collect();
                let b_docs: Vec<u32> = inst.tokens[sep + 1..inst.len() - 1]
                    .iter()
                    .map(|t| t / 100_000)
                    .collect();
                assert!(
                    a_docs.iter().all(|&d| d == k as u32 + 1),
                    "A never crosses documents"
                );
                assert!(inst.segment_ids[sep + 1..].iter().all(|&s| s == 1));
                match inst.pair_label {
                    Some(PairLabel::Nsp {
                        is_random_next: true,
                    }) => {
                        random += 1;
                        assert!(b_docs.iter().all(|&d| d != k as u32 + 1 && d == b_docs[0]));
                    }
                    Some(PairLabel::Nsp {
                        is_random_next: false,
                    }) => {
                        actual += 1;
                        assert!(b_docs.iter().all(|&d| d == k as u32 + 1));
                        // B really follows A: its first segment comes after A's last.
                        let a_seg = (inst.tokens[sep - 1] % 100_000) / 100;
                        let b_seg = (inst.tokens[sep + 1] % 100_000) / 100;
                        assert!(b_seg >= a_seg);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        let frac = random as f64 / (random + actual) as f64;
        assert!((0.35..0.65).contains(&frac), "random-next fraction {frac}");
    }

    #[test]
    fn sop_never_crosses_documents_and_swaps_half() {
        let docs: Vec<TokenizedDoc> = (0..20).map(|d| doc(d, 10, 25)).collect();
        let config = InstanceConfig {
            mode: Mode::Sop,
            ..Default::default()
        };
        let mut swapped = 0;
        let mut total = 0;
        for k in 0..docs.len() {
            for inst in instances_for_document(&docs, k, k as u64, &config, &special()) {
                check_shape(&inst, 128);
                assert!(inst
                    .tokens
                    .iter()
                    .filter(|&&t| t > 4)
                    .all(|t| t / 100_000 == k as u32 + 1));
                let sep = inst.tokens.iter().position(|&t| t == 3).unwrap();
                let a_first = inst.tokens[1] % 100_000;
                let b_first = inst.tokens[sep + 1] % 100_000;
                match inst.pair_label {
                    Some(PairLabel::Sop { swapped: true }) => {
                        swapped += 1;
                        assert!(a_first > b_first);
                    }
                    Some(PairLabel::Sop { swapped: false }) => assert!(a_first < b_first),
                    other => panic!("{other:?}"),
                }
                total += 1;
            }
        }
        let frac = swapped as f64 / total as f64;
        assert!((0.3..0.7).contains(&frac), "{frac}");
    }

    #[test]
    fn truncation_cuts_longer_side_and_respects_max() {
        // One huge segment per document forces truncation.
        let docs: Vec<TokenizedDoc> = (0..5).map(|d| doc(d, 3, 99)).collect();
        let config = InstanceConfig {
            max_seq_length: 64,
            ..Default::default()
        };
        let mut fronts = 0;
        for k in 0..docs.len() {
            for inst in instances_for_document(&docs, k, k as u64, &config, &special()) {
                assert_eq!(inst.len(), 64);
                if inst.tokens[1] % 100 != 0 {
                    fronts += 1;
                }
            }
        }
        assert!(fronts > 0, "some truncation happens at the front");
    }

    #[test]
    fn packed_fills_to_length_within_documents() {
        let docs: Vec<TokenizedDoc> = vec![doc(0, 7, 50)];
        let config = InstanceConfig {
            mode: Mode::Packed,
            ..Default::default()
        };
        let out = instances_for_document(&docs, 0, 0, &config, &special());
        let total: usize = out.iter().map(|i| i.len() - 2).sum();
        assert_eq!(total, 350);
        assert!(out[..out.len() - 1].iter().all(|i| i.len() == 128));
        assert!(out
            .iter()
            .all(|i| i.pair_label.is_none() && i.segment_ids.iter().all(|&s| s == 0)));
        check_shape(&out[0], 128);
    }

    #[test]
    fn same_seed_same_instances_different_seed_different() {
        let docs: Vec<TokenizedDoc> = (0..6).map(|d| doc(d, 8, 40)).collect();
        let c = InstanceConfig::default();
        let a = instances_for_document(&docs, 2, 2, &c, &special());
        assert_eq!(a, instances_for_document(&docs, 2, 2, &c, &special()));
        let other = InstanceConfig { seed: 7, ..c };
        assert_ne!(a, instances_for_document(&docs, 2, 2, &other, &special()));
    }

    #[test]
    fn word_ids_follow_words_not_segments() {
        let docs = vec![vec![
            Segment {
                ids: vec![10, 11, 12],
                word_ids: vec![0, 0, 1],
            },
            Segment {
                ids: vec![13, 14],
                word_ids: vec![0, 0],
            },
        ]];
        let c = InstanceConfig {
            mode: Mode::Packed,
            ..Default::default()
        };
        let out = instances_for_document(&docs, 0, 0, &c, &special());
        assert_eq!(out[0].word_ids, vec![NO_WORD, 0, 0, 1, 2, 2, NO_WORD]);
    }
}

//! Reproducible stand-in instances for benchmarks and examples, so throughput
//! can be measured without a prepared corpus.

use cloze_core::{Instance, PairLabel, SpecialTokens, NO_WORD};
use rand::RngCore;

use crate::error::Result;
use crate::rng::example_rng;
use crate::special::{bounded, SpecialSet};

/// BERT-base's special ids and vocabulary size (`[PAD]` 0, `[UNK]` 100, `[CLS]`
/// 101, `[SEP]` 102, `[MASK]` 103, 30,522 tokens).
pub fn bert_base_specials() -> SpecialTokens {
    SpecialTokens::bert_base_uncased()
}

/// `n` instances `[CLS] A [SEP] B [SEP]` of exactly `seq_len` tokens (at least 5),
/// with an NSP label, A/B split at a random point, words of 1, 2 or 3 tokens with
/// probabilities 80/15/5% (about 1.25 tokens a word, like English WordPiece) and
/// ordinary token ids drawn uniformly. A pure function of its arguments.
pub fn synthetic_instances(
    n: usize,
    seq_len: usize,
    specials: &SpecialTokens,
    seed: u64,
) -> Result<Vec<Instance>> {
    let set = SpecialSet::new(specials)?;
    let seq_len = seq_len.max(5);
    Ok((0..n as u64)
        .map(|i| {
            let mut rng = example_rng(seed, u64::MAX, i);
            let body = seq_len - 3;
            let split = 1 + bounded(&mut rng, body as u32 - 1) as usize;
            let mut tokens = Vec::with_capacity(seq_len);
            let mut segment_ids = Vec::with_capacity(seq_len);
            let mut word_ids = Vec::with_capacity(seq_len);
            tokens.push(specials.cls);
            segment_ids.push(0);
            word_ids.push(NO_WORD);
            let mut word = 0u32;
            for (segment, len) in [(0u8, split), (1u8, body - split)] {
                let mut left = len;
                while left > 0 {
                    let r = rng.next_u32() % 100;
                    let w = if r < 80 {
                        1
                    } else if r < 95 {
                        2
                    } else {
                        3
                    };
                    for _ in 0..w.min(left) {
                        tokens.push(set.random_ordinary(&mut rng));
                        segment_ids.push(segment);
                        word_ids.push(word);
                    }
                    left -= w.min(left);
                    word += 1;
                }
                tokens.push(specials.sep);
                segment_ids.push(segment);
                word_ids.push(NO_WORD);
            }
            let is_random_next = rng.next_u32() & 1 == 1;
            Instance {
                tokens,
                segment_ids,
                word_ids,
                pair_label: Some(PairLabel::Nsp { is_random_next }),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_purity() {
        let s = bert_base_specials();
        let a = synthetic_instances(20, 128, &s, 1).expect("valid specials");
        assert_eq!(
            a,
            synthetic_instances(20, 128, &s, 1).expect("valid specials")
        );
        for x in &a {
            assert_eq!(
                (x.tokens.len(), x.word_ids.len(), x.segment_ids.len()),
                (128, 128, 128)
            );
            assert_eq!(x.tokens.iter().filter(|&&t| t == s.sep).count(), 2);
            assert!(x.tokens[1..127].iter().all(|&t| t != s.cls && t != s.mask));
        }
    }
}

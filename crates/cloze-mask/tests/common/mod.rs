//! Synthetic instances for the integration tests: no tokenizer needed.
#![allow(dead_code)]

use cloze_text::{Instance, PairLabel, SpecialTokens, NO_WORD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const PAD: u32 = 0;
pub const UNK: u32 = 1;
pub const CLS: u32 = 2;
pub const SEP: u32 = 3;
pub const MASK: u32 = 4;
pub const VOCAB: u32 = 1000;

pub fn specials() -> SpecialTokens {
    SpecialTokens {
        vocab_size: VOCAB,
        pad: PAD,
        unk: UNK,
        cls: CLS,
        sep: SEP,
        mask: MASK,
        pseudo_mask: None,
        all_special: vec![PAD, UNK, CLS, SEP, MASK],
    }
}

/// `[CLS] A [SEP] B [SEP]` with `len` tokens in all, words of 1-3 sub-tokens,
/// ordinary token ids in 5..VOCAB.
pub fn instance(len: usize, seed: u64, pair: bool) -> Instance {
    assert!(len >= 5);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let body = len - 3;
    let split = 1 + rng.random_range(0..body - 1);
    let mut tokens = vec![CLS];
    let mut segment_ids = vec![0u8];
    let mut word_ids = vec![NO_WORD];
    let mut word = 0u32;
    for (seg, n) in [(0u8, split), (1u8, body - split)] {
        let mut left = n;
        while left > 0 {
            let w = rng.random_range(1..=3usize).min(left);
            for _ in 0..w {
                tokens.push(rng.random_range(5..VOCAB));
                segment_ids.push(seg);
                word_ids.push(word);
            }
            word += 1;
            left -= w;
        }
        tokens.push(SEP);
        segment_ids.push(seg);
        word_ids.push(NO_WORD);
    }
    Instance {
        tokens,
        segment_ids,
        word_ids,
        pair_label: pair.then_some(PairLabel::Nsp {
            is_random_next: seed.is_multiple_of(2),
        }),
    }
}

/// `n` instances with lengths in `min..=max`.
pub fn corpus(n: usize, min: usize, max: usize) -> Vec<Instance> {
    (0..n)
        .map(|i| instance(min + (i * 7919) % (max - min + 1), i as u64, true))
        .collect()
}

/// Pearson's chi-square statistic of `observed` counts against `expected` probabilities.
pub fn chi_square(observed: &[u64], expected: &[f64]) -> f64 {
    let total: u64 = observed.iter().sum();
    assert_eq!(
        observed.len(),
        expected.len(),
        "{observed:?} vs {expected:?}"
    );
    observed
        .iter()
        .zip(expected)
        .map(|(&o, &p)| {
            let e = p * total as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

/// The histogram without its unused zero bin, padded to `n` bins.
pub fn bins(hist: &[u64], n: usize) -> Vec<u64> {
    let mut v: Vec<u64> = hist.iter().skip(1).copied().collect();
    v.resize(n, 0);
    v
}

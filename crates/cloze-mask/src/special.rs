//! Fast membership tests for special token ids and uniform draws of ordinary ones.

use cloze_core::SpecialTokens;
use rand::RngCore;

use crate::error::{Error, Result};
use crate::rng::MaskRng;

/// The special ids of a vocabulary as a bitset, plus what random replacement needs.
#[derive(Debug, Clone)]
pub struct SpecialSet {
    bits: Vec<u64>,
    /// Special ids below the vocabulary size, sorted and deduplicated.
    sorted: Vec<u32>,
    ordinary: u32,
    mask: u32,
    pad: u32,
}

impl SpecialSet {
    /// Checks `specials` against its vocabulary size and indexes it.
    ///
    /// `[MASK]`, `[PAD]`, `[CLS]` and `[SEP]` must lie inside the vocabulary
    /// (a vocabulary without `[MASK]` cannot be masked), and at least one
    /// ordinary token must remain to draw random replacements from.
    pub fn new(specials: &SpecialTokens) -> Result<Self> {
        let v = specials.vocab_size;
        for (token, id) in [
            ("[MASK]", specials.mask),
            ("[PAD]", specials.pad),
            ("[CLS]", specials.cls),
            ("[SEP]", specials.sep),
        ] {
            if id >= v {
                return Err(Error::SpecialOutOfVocab {
                    token,
                    id,
                    vocab_size: v,
                });
            }
        }
        let mut sorted: Vec<u32> = specials
            .all_special
            .iter()
            .copied()
            .chain([
                specials.pad,
                specials.unk,
                specials.cls,
                specials.sep,
                specials.mask,
            ])
            .filter(|&id| id < v)
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        let ordinary = v - sorted.len() as u32;
        if ordinary == 0 {
            return Err(Error::NoOrdinaryTokens);
        }
        let top = sorted.last().map_or(0, |&m| m as usize + 1);
        let mut bits = vec![0u64; top.div_ceil(64)];
        for &id in &sorted {
            bits[id as usize / 64] |= 1 << (id % 64);
        }
        Ok(Self {
            bits,
            sorted,
            ordinary,
            mask: specials.mask,
            pad: specials.pad,
        })
    }

    /// True when `id` is special (never masked, never drawn as a replacement).
    #[inline]
    pub fn contains(&self, id: u32) -> bool {
        self.bits
            .get(id as usize / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// The `[MASK]` id.
    #[inline]
    pub fn mask(&self) -> u32 {
        self.mask
    }

    /// The `[PAD]` id.
    #[inline]
    pub fn pad(&self) -> u32 {
        self.pad
    }

    /// Number of ordinary (non-special) ids in the vocabulary.
    pub fn ordinary_count(&self) -> u32 {
        self.ordinary
    }

    /// A uniformly random ordinary id.
    ///
    /// Draws a rank among the ordinary ids and skips over the few special ids
    /// below it, which needs no table the size of the vocabulary.
    #[inline]
    pub fn random_ordinary(&self, rng: &mut MaskRng) -> u32 {
        let mut id = bounded(rng, self.ordinary);
        for &s in &self.sorted {
            if s <= id {
                id += 1;
            } else {
                break;
            }
        }
        id
    }
}

/// A uniform draw from `0..n` (n > 0) by Lemire's multiply-and-reject method.
#[inline]
pub(crate) fn bounded(rng: &mut MaskRng, n: u32) -> u32 {
    let mut m = u64::from(rng.next_u32()) * u64::from(n);
    if (m as u32) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u32) < threshold {
            m = u64::from(rng.next_u32()) * u64::from(n);
        }
    }
    (m >> 32) as u32
}

/// A probability as a threshold on a uniform `u32`, so one draw decides it.
#[inline]
pub(crate) fn threshold(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::example_rng;

    fn specials() -> SpecialTokens {
        SpecialTokens {
            vocab_size: 10,
            pad: 0,
            unk: 1,
            cls: 2,
            sep: 3,
            mask: 4,
            pseudo_mask: None,
            all_special: vec![0, 1, 2, 3, 4, 7],
        }
    }

    #[test]
    fn random_ordinary_covers_exactly_the_ordinary_ids() {
        let set = SpecialSet::new(&specials()).expect("valid");
        assert_eq!(set.ordinary_count(), 4);
        let mut rng = example_rng(0, 0, 0);
        let mut seen = [0u32; 10];
        for _ in 0..4000 {
            seen[set.random_ordinary(&mut rng) as usize] += 1;
        }
        for id in 0..10 {
            assert_eq!(
                seen[id] > 0,
                [5, 6, 8, 9].contains(&id),
                "id {id}: {seen:?}"
            );
        }
        assert!(set.contains(7) && !set.contains(8) && !set.contains(1000));
    }

    #[test]
    fn mask_outside_vocab_is_an_error() {
        let mut s = specials();
        s.mask = 10;
        assert!(matches!(
            SpecialSet::new(&s),
            Err(Error::SpecialOutOfVocab {
                token: "[MASK]",
                ..
            })
        ));
    }

    #[test]
    fn bounded_stays_in_range() {
        let mut rng = example_rng(1, 1, 1);
        assert!((0..1000).all(|_| bounded(&mut rng, 7) < 7));
        assert_eq!(threshold(1.0), 1 << 32);
    }
}

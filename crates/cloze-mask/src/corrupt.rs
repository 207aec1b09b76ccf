//! Stage 3: decide what each selected unit's tokens become.

use std::sync::Arc;

use rand::RngCore;

use crate::config::Granularity;
use crate::rng::MaskRng;
use crate::select::SelectedSpan;
use crate::similar::SimilarTokenTable;
use crate::special::{bounded, threshold, SpecialSet};
use crate::units::Unit;

/// What happened to one selected token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Corruption {
    /// Replaced by `[MASK]`.
    Mask,
    /// Replaced by a random ordinary token.
    Random,
    /// Left unchanged (still predicted).
    Keep,
    /// Replaced by (a token of) a similar word.
    Similar,
}

impl Corruption {
    /// All outcomes, in the order statistics report them.
    pub const ALL: [Corruption; 4] = [
        Corruption::Mask,
        Corruption::Random,
        Corruption::Keep,
        Corruption::Similar,
    ];

    /// Index into [`Corruption::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Everything a corruptor reads and writes for one instance.
#[derive(Debug)]
pub struct CorruptionJob<'a> {
    /// The original tokens.
    pub original: &'a [u32],
    /// The tokens to rewrite (a copy of `original` on entry).
    pub tokens: &'a mut [u32],
    /// The instance's units.
    pub units: &'a [Unit],
    /// The selected spans of units.
    pub spans: &'a [SelectedSpan],
    /// One slot per token: set it to the outcome of every selected token, and
    /// leave it `None` for tokens that were not selected.
    pub outcomes: &'a mut [Option<Corruption>],
    /// Units whose similar-word lookup failed (filled by similar-word corruption).
    pub failed_lookups: &'a mut Vec<Unit>,
}

/// The corruption stage. Implementations must not change the number of tokens,
/// must give an outcome to every token of every selected span, and draw
/// randomness only from `rng`.
pub trait Corruptor: Send + Sync + std::fmt::Debug {
    /// Rewrites the selected tokens of `job`.
    fn corrupt(&self, job: CorruptionJob<'_>, rng: &mut MaskRng);
}

/// The selected units of `spans` in span order.
fn selected_units<'a>(
    units: &'a [Unit],
    spans: &'a [SelectedSpan],
) -> impl Iterator<Item = Unit> + 'a {
    spans.iter().flat_map(move |s| {
        let a = s.first_unit as usize;
        units[a..a + s.units as usize].iter().copied()
    })
}

/// BERT's corruption: `[MASK]` / random ordinary token / unchanged.
#[derive(Debug, Clone)]
pub struct BertCorruptor {
    specials: SpecialSet,
    mask_below: u64,
    random_below: u64,
    per: Granularity,
}

impl BertCorruptor {
    /// Probabilities `mask`, `random` (the rest keeps), decided per token or per unit.
    pub fn new(specials: SpecialSet, mask: f64, random: f64, per: Granularity) -> Self {
        Self {
            specials,
            mask_below: threshold(mask),
            random_below: threshold(mask + random),
            per,
        }
    }

    #[inline]
    fn outcome(&self, rng: &mut MaskRng) -> Corruption {
        let x = u64::from(rng.next_u32());
        if x < self.mask_below {
            Corruption::Mask
        } else if x < self.random_below {
            Corruption::Random
        } else {
            Corruption::Keep
        }
    }

    #[inline]
    fn apply(
        &self,
        outcome: Corruption,
        pos: usize,
        job: &mut CorruptionJob<'_>,
        rng: &mut MaskRng,
    ) {
        match outcome {
            Corruption::Mask => job.tokens[pos] = self.specials.mask(),
            Corruption::Random => job.tokens[pos] = self.specials.random_ordinary(rng),
            Corruption::Keep | Corruption::Similar => {}
        }
        job.outcomes[pos] = Some(outcome);
    }
}

impl Corruptor for BertCorruptor {
    fn corrupt(&self, mut job: CorruptionJob<'_>, rng: &mut MaskRng) {
        for unit in selected_units(job.units, job.spans) {
            let shared = match self.per {
                Granularity::Unit => Some(self.outcome(rng)),
                Granularity::Token => None,
            };
            for pos in unit.start as usize..unit.end() as usize {
                let outcome = shared.unwrap_or_else(|| self.outcome(rng));
                self.apply(outcome, pos, &mut job, rng);
            }
        }
    }
}

/// MacBERT's corruption: similar word / random word / unchanged, never `[MASK]`.
///
/// Each selected word (unit) decides once. A similar word must have the same
/// number of tokens as the original so the sequence length and every other
/// position stay put; among the source's candidates only those qualify. When
/// none does, the word gets a random word instead (random ordinary tokens, one
/// per position, as MacBERT falls back to a random word) and the unit is
/// recorded as a failed lookup.
#[derive(Debug, Clone)]
pub struct SimilarWordCorruptor {
    specials: SpecialSet,
    table: Arc<SimilarTokenTable>,
    similar_below: u64,
    random_below: u64,
}

impl SimilarWordCorruptor {
    /// Probabilities `similar`, `random` (the rest keeps), candidates from `table`.
    pub fn new(
        specials: SpecialSet,
        table: Arc<SimilarTokenTable>,
        similar: f64,
        random: f64,
    ) -> Self {
        Self {
            specials,
            table,
            similar_below: threshold(similar),
            random_below: threshold(similar + random),
        }
    }

    fn random_word(&self, unit: Unit, job: &mut CorruptionJob<'_>, rng: &mut MaskRng) {
        for pos in unit.start as usize..unit.end() as usize {
            job.tokens[pos] = self.specials.random_ordinary(rng);
            job.outcomes[pos] = Some(Corruption::Random);
        }
    }
}

impl Corruptor for SimilarWordCorruptor {
    fn corrupt(&self, mut job: CorruptionJob<'_>, rng: &mut MaskRng) {
        for unit in selected_units(job.units, job.spans) {
            let range = unit.start as usize..unit.end() as usize;
            let x = u64::from(rng.next_u32());
            if x < self.similar_below {
                let candidates = self.table.candidates(&job.original[range.clone()]);
                if candidates.is_empty() {
                    job.failed_lookups.push(unit);
                    self.random_word(unit, &mut job, rng);
                } else {
                    let pick = &candidates[bounded(rng, candidates.len() as u32) as usize];
                    job.tokens[range.clone()].copy_from_slice(pick);
                    job.outcomes[range]
                        .iter_mut()
                        .for_each(|o| *o = Some(Corruption::Similar));
                }
            } else if x < self.random_below {
                self.random_word(unit, &mut job, rng);
            } else {
                job.outcomes[range]
                    .iter_mut()
                    .for_each(|o| *o = Some(Corruption::Keep));
            }
        }
    }
}

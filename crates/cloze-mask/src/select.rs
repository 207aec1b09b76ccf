//! Stage 2: choose which units to mask, as non-overlapping spans of units.

use rand::{Rng, RngCore};

use crate::config::{LengthsConfig, SelectConfig};
use crate::rng::MaskRng;
use crate::special::{bounded, threshold};
use crate::units::Unit;

/// One selected span: units `first_unit .. first_unit + units`, all token-contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectedSpan {
    /// Index of the first unit in the unit list.
    pub first_unit: u32,
    /// Number of units selected (the realised length).
    pub units: u32,
    /// The length drawn from the length distribution before clipping to the budget,
    /// the sequence end or a neighbouring span.
    pub drawn: u32,
}

/// Reusable buffers for selectors, kept per thread so masking allocates nothing
/// in the steady state.
#[derive(Debug, Clone, Default)]
pub struct SelectScratch {
    /// A permutation buffer over unit indices.
    pub order: Vec<u32>,
    /// Per-unit "already selected" flags.
    pub covered: Vec<bool>,
}

/// The selection stage. Implementations must emit non-overlapping spans whose
/// units are token-contiguous, and must draw randomness only from `rng`.
pub trait Selector: Send + Sync + std::fmt::Debug {
    /// Appends the selected spans over `units` to `out` (which arrives empty).
    fn select(
        &self,
        units: &[Unit],
        rng: &mut MaskRng,
        scratch: &mut SelectScratch,
        out: &mut Vec<SelectedSpan>,
    );
}

/// A span-length distribution over `1..=N`, sampled by one uniform draw.
#[derive(Debug, Clone)]
pub struct LengthSampler {
    /// Cumulative probabilities of lengths 1..=N; the last is 1.
    cumulative: Vec<f64>,
}

impl LengthSampler {
    /// From the probabilities of lengths `1..=N` (assumed validated).
    pub fn new(probabilities: &[f64]) -> Self {
        let mut acc = 0.0;
        let mut cumulative: Vec<f64> = probabilities
            .iter()
            .map(|p| {
                acc += p;
                acc
            })
            .collect();
        if let Some(last) = cumulative.last_mut() {
            *last = f64::INFINITY; // absorb rounding so every draw lands somewhere
        }
        Self { cumulative }
    }

    /// The longest length it can draw.
    pub fn max_len(&self) -> u32 {
        self.cumulative.len() as u32
    }

    /// Draws a length; lengths that cannot vary cost no randomness.
    #[inline]
    pub fn sample(&self, rng: &mut MaskRng) -> u32 {
        if self.cumulative.len() <= 1 {
            return 1;
        }
        let x: f64 = rng.random();
        self.cumulative.iter().position(|&c| x < c).unwrap_or(0) as u32 + 1
    }
}

/// A fixed token budget filled with spans (BERT, whole-word, n-gram, SpanBERT).
///
/// The budget is `rate` x (tokens in units), rounded stochastically so its
/// expectation is exact, then clamped to `[min_predictions, max_predictions]`.
///
/// Single-unit spans (token and whole-word masking) visit units in random order
/// and take each that still fits the budget. Longer spans draw a length first,
/// then a start uniformly among the placements where a span of that length fits
/// (uncovered, token-contiguous so it never crosses a special token, within the
/// remaining budget); only when no placement exists is the length shortened.
/// Choosing the length before the place keeps the realised lengths close to the
/// configured distribution: shortening happens essentially only for the last
/// span, when the budget runs out. Shortening by "skip or clip at a collision"
/// instead (as Google's n-gram code does) over-represents length 1 by several
/// points even on 512-token sequences.
#[derive(Debug, Clone)]
pub struct BudgetSelector {
    rate: f64,
    min_predictions: u32,
    max_predictions: u32,
    lengths: LengthSampler,
}

impl BudgetSelector {
    /// A budget selector; `max_predictions = None` means no cap.
    pub fn new(
        rate: f64,
        min_predictions: u32,
        max_predictions: Option<u32>,
        lengths: &LengthsConfig,
    ) -> Self {
        Self {
            rate,
            min_predictions,
            max_predictions: max_predictions.unwrap_or(u32::MAX),
            lengths: LengthSampler::new(&lengths.probabilities()),
        }
    }

    fn budget(&self, maskable: u32, rng: &mut MaskRng) -> u32 {
        let exact = self.rate * f64::from(maskable);
        let floor = exact.floor();
        let frac = exact - floor;
        let mut budget = floor as u32;
        if frac > 0.0 && u64::from(rng.next_u32()) < threshold(frac) {
            budget += 1;
        }
        budget
            .max(self.min_predictions.min(maskable))
            .min(self.max_predictions)
            .min(maskable)
    }
}

impl Selector for BudgetSelector {
    fn select(
        &self,
        units: &[Unit],
        rng: &mut MaskRng,
        scratch: &mut SelectScratch,
        out: &mut Vec<SelectedSpan>,
    ) {
        let maskable: u32 = units.iter().map(|u| u.len).sum();
        let budget = self.budget(maskable, rng);
        if budget == 0 {
            return;
        }
        if self.lengths.max_len() > 1 {
            self.select_spans(units, budget, rng, scratch, out);
            return;
        }
        let n = units.len() as u32;
        let order = &mut scratch.order;
        order.clear();
        order.extend(0..n);
        let covered = &mut scratch.covered;
        covered.clear();
        covered.resize(units.len(), false);
        let mut used = 0u32;
        // A lazy Fisher-Yates shuffle: only the prefix actually visited is drawn.
        for i in 0..n {
            let j = i + bounded(rng, n - i);
            order.swap(i as usize, j as usize);
            let start = order[i as usize] as usize;
            if covered[start] {
                continue;
            }
            let len = units[start].len;
            if len > budget - used {
                continue;
            }
            covered[start] = true;
            out.push(SelectedSpan {
                first_unit: start as u32,
                units: 1,
                drawn: 1,
            });
            used += len;
            if used == budget {
                break;
            }
        }
    }
}

impl BudgetSelector {
    /// The tokens of a span of `len` units at `start`, if it fits: uncovered,
    /// token-contiguous and within `left` tokens.
    #[inline]
    fn fits(units: &[Unit], covered: &[bool], start: usize, len: usize, left: u32) -> Option<u32> {
        let span = units.get(start..start + len)?;
        let mut tokens = 0;
        for (k, u) in span.iter().enumerate() {
            if covered[start + k] || (k > 0 && u.start != span[k - 1].end()) {
                return None;
            }
            tokens += u.len;
            if tokens > left {
                return None;
            }
        }
        Some(tokens)
    }

    /// Length first, then a uniformly random placement among those that fit.
    fn select_spans(
        &self,
        units: &[Unit],
        budget: u32,
        rng: &mut MaskRng,
        scratch: &mut SelectScratch,
        out: &mut Vec<SelectedSpan>,
    ) {
        let covered = &mut scratch.covered;
        covered.clear();
        covered.resize(units.len(), false);
        let mut used = 0u32;
        while used < budget {
            let drawn = self.lengths.sample(rng);
            let left = budget - used;
            let mut len = drawn as usize;
            let placed = loop {
                if len == 0 {
                    break None;
                }
                let count = (0..units.len())
                    .filter(|&s| Self::fits(units, covered, s, len, left).is_some())
                    .count();
                if count > 0 {
                    let mut k = bounded(rng, count as u32);
                    let mut chosen = None;
                    for s in 0..units.len() {
                        if let Some(tokens) = Self::fits(units, covered, s, len, left) {
                            if k == 0 {
                                chosen = Some((s, tokens));
                                break;
                            }
                            k -= 1;
                        }
                    }
                    break chosen;
                }
                len -= 1;
            };
            let Some((start, tokens)) = placed else { break };
            covered[start..start + len]
                .iter_mut()
                .for_each(|c| *c = true);
            out.push(SelectedSpan {
                first_unit: start as u32,
                units: len as u32,
                drawn,
            });
            used += tokens;
        }
    }
}

/// Each unit independently with probability `rate` (HuggingFace's collator), then
/// a random subset kept if the selected tokens exceed `max_predictions`.
#[derive(Debug, Clone)]
pub struct BernoulliSelector {
    threshold: u64,
    max_predictions: u32,
}

impl BernoulliSelector {
    /// A Bernoulli selector; `max_predictions = None` means no cap.
    pub fn new(rate: f64, max_predictions: Option<u32>) -> Self {
        Self {
            threshold: threshold(rate),
            max_predictions: max_predictions.unwrap_or(u32::MAX),
        }
    }
}

impl Selector for BernoulliSelector {
    fn select(
        &self,
        units: &[Unit],
        rng: &mut MaskRng,
        scratch: &mut SelectScratch,
        out: &mut Vec<SelectedSpan>,
    ) {
        let picked = &mut scratch.order;
        picked.clear();
        let mut tokens = 0u32;
        for (i, u) in units.iter().enumerate() {
            if u64::from(rng.next_u32()) < self.threshold {
                picked.push(i as u32);
                tokens += u.len;
            }
        }
        if tokens > self.max_predictions {
            // Keep a uniformly random subset that fits, visiting picks in random order.
            let n = picked.len() as u32;
            let mut kept = 0usize;
            let mut used = 0u32;
            for i in 0..n {
                let j = i + bounded(rng, n - i);
                picked.swap(i as usize, j as usize);
                let len = units[picked[i as usize] as usize].len;
                if used + len <= self.max_predictions {
                    picked.swap(kept, i as usize);
                    kept += 1;
                    used += len;
                }
            }
            picked.truncate(kept);
            picked.sort_unstable();
        }
        out.extend(picked.iter().map(|&u| SelectedSpan {
            first_unit: u,
            units: 1,
            drawn: 1,
        }));
    }
}

/// The selector a config names.
pub fn build_selector(config: &SelectConfig) -> Box<dyn Selector> {
    match config {
        SelectConfig::Budget {
            rate,
            max_predictions,
            min_predictions,
            lengths,
        } => Box::new(BudgetSelector::new(
            *rate,
            *min_predictions,
            *max_predictions,
            lengths,
        )),
        SelectConfig::Bernoulli {
            rate,
            max_predictions,
        } => Box::new(BernoulliSelector::new(*rate, *max_predictions)),
        SelectConfig::Blockwise {
            rate,
            block_probability,
            min_block,
            max_block,
            max_predictions,
        } => Box::new(crate::blockwise::BlockwiseSelector::new(
            *rate,
            *block_probability,
            *min_block,
            *max_block,
            *max_predictions,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::example_rng;

    fn words(lens: &[u32]) -> Vec<Unit> {
        let mut start = 1;
        lens.iter()
            .map(|&len| {
                let u = Unit { start, len };
                start += len;
                u
            })
            .collect()
    }

    #[test]
    fn budget_is_filled_exactly_with_single_tokens() {
        let units = words(&[1; 100]);
        let sel = BudgetSelector::new(0.15, 1, None, &LengthsConfig::Single);
        let mut scratch = SelectScratch::default();
        for i in 0..200 {
            let mut out = Vec::new();
            sel.select(&units, &mut example_rng(0, 0, i), &mut scratch, &mut out);
            assert_eq!(out.len(), 15, "0.15 x 100 is exactly 15");
            let mut starts: Vec<u32> = out.iter().map(|s| s.first_unit).collect();
            starts.sort_unstable();
            starts.dedup();
            assert_eq!(starts.len(), 15, "no unit selected twice");
        }
    }

    #[test]
    fn spans_never_cross_a_gap_between_units() {
        // Two runs of units separated by a special token at position 6.
        let mut units = words(&[1; 5]);
        units.extend((7..12).map(|s| Unit { start: s, len: 1 }));
        let sel = BudgetSelector::new(
            1.0,
            1,
            None,
            &LengthsConfig::Weights {
                weights: vec![0.0, 0.0, 0.0, 1.0],
            },
        );
        let mut scratch = SelectScratch::default();
        for i in 0..200 {
            let mut out = Vec::new();
            sel.select(&units, &mut example_rng(0, 0, i), &mut scratch, &mut out);
            for s in &out {
                let a = s.first_unit as usize;
                let b = a + s.units as usize;
                assert!(b <= 5 || a >= 5, "span {a}..{b} crosses the gap");
            }
        }
    }

    #[test]
    fn bernoulli_respects_the_cap() {
        let units = words(&[2; 50]);
        let sel = BernoulliSelector::new(0.5, Some(9));
        let mut scratch = SelectScratch::default();
        for i in 0..100 {
            let mut out = Vec::new();
            sel.select(&units, &mut example_rng(3, 0, i), &mut scratch, &mut out);
            let tokens: u32 = out.iter().map(|s| units[s.first_unit as usize].len).sum();
            assert!((8..=9).contains(&tokens), "{tokens}");
        }
    }
}

//! UniLM-v2's blockwise masking (Bao et al. 2020, "UniLMv2: Pseudo-Masked
//! Language Models for Unified Language Model Pre-Training", Algorithm 1):
//! blocks are drawn one after another until enough tokens are covered, and the
//! order of the draws is the factorization order of the partially
//! autoregressive objective, so the selector emits spans in draw order (it is
//! the one selector whose output order carries meaning).
//!
//! One draw (Algorithm 1):
//! - a start unit, uniformly among all units;
//! - a length: with probability `block_probability` (0.4) uniform in
//!   `min_block..=max_block` (2..=6), else 1;
//! - the block is kept only when all its units are free, exist, and are
//!   token-contiguous (it never crosses a special token); otherwise the draw
//!   is skipped.
//!
//! Draws repeat until at least `rate` (15%, section 4.1) of the maskable
//! tokens are covered; the last block may overshoot. The count is rounded up,
//! so a sequence with a maskable token gets at least one.

use rand::RngCore;

use crate::rng::MaskRng;
use crate::select::{SelectScratch, SelectedSpan, Selector};
use crate::special::{bounded, threshold};
use crate::units::Unit;

/// How many draws per unit the selector makes before giving up on reaching
/// the target. Reaching it is certain in expectation (single units always
/// fit while the target is below the maskable count), so the cap only
/// bounds pathological inputs; it never triggers at rates up to 0.5.
const DRAWS_PER_UNIT: usize = 64;

/// Algorithm 1 of UniLM-v2 as a [`Selector`]; see the module docs.
#[derive(Debug, Clone)]
pub struct BlockwiseSelector {
    rate: f64,
    block_threshold: u64,
    min_block: u32,
    max_block: u32,
    max_predictions: u32,
}

impl BlockwiseSelector {
    /// A blockwise selector (the paper: `rate` 0.15, `block_probability` 0.4,
    /// blocks of 2..=6); `max_predictions = None` means no cap. The config
    /// layer validates the values ([`crate::MaskingConfig::validate`]).
    pub fn new(
        rate: f64,
        block_probability: f64,
        min_block: u32,
        max_block: u32,
        max_predictions: Option<u32>,
    ) -> Self {
        Self {
            rate,
            block_threshold: threshold(block_probability),
            min_block: min_block.max(1),
            max_block: max_block.max(min_block.max(1)),
            max_predictions: max_predictions.unwrap_or(u32::MAX),
        }
    }

    /// Tokens to cover: `ceil(rate * maskable)`, capped.
    fn target(&self, maskable: u32) -> u32 {
        let exact = (self.rate * f64::from(maskable)).ceil() as u32;
        exact.min(maskable).min(self.max_predictions)
    }

    fn draw_len(&self, rng: &mut MaskRng) -> u32 {
        if u64::from(rng.next_u32()) < self.block_threshold {
            self.min_block + bounded(rng, self.max_block - self.min_block + 1)
        } else {
            1
        }
    }
}

impl Selector for BlockwiseSelector {
    fn select(
        &self,
        units: &[Unit],
        rng: &mut MaskRng,
        scratch: &mut SelectScratch,
        out: &mut Vec<SelectedSpan>,
    ) {
        let maskable: u32 = units.iter().map(|u| u.len).sum();
        let target = self.target(maskable);
        if target == 0 {
            return;
        }
        let covered = &mut scratch.covered;
        covered.clear();
        covered.resize(units.len(), false);
        let n = units.len() as u32;
        let mut used = 0u32;
        for _ in 0..units.len().saturating_mul(DRAWS_PER_UNIT) {
            let start = bounded(rng, n) as usize;
            let len = self.draw_len(rng);
            let Some(block) = units.get(start..start + len as usize) else {
                continue;
            };
            let free = block
                .iter()
                .enumerate()
                .all(|(k, u)| !covered[start + k] && (k == 0 || u.start == block[k - 1].end()));
            let tokens: u32 = block.iter().map(|u| u.len).sum();
            if !free || used + tokens > self.max_predictions {
                continue;
            }
            covered[start..start + len as usize].fill(true);
            out.push(SelectedSpan {
                first_unit: start as u32,
                units: len,
                drawn: len,
            });
            used += tokens;
            if used >= target {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::example_rng;

    fn tokens(n: u32) -> Vec<Unit> {
        (0..n).map(|i| Unit { start: i, len: 1 }).collect()
    }

    fn run(sel: &BlockwiseSelector, units: &[Unit], i: u64) -> Vec<SelectedSpan> {
        let mut out = Vec::new();
        let mut rng = example_rng(7, 0, i);
        sel.select(units, &mut rng, &mut SelectScratch::default(), &mut out);
        out
    }

    #[test]
    fn covers_at_least_the_rate_with_disjoint_blocks_in_draw_order() {
        let sel = BlockwiseSelector::new(0.15, 0.4, 2, 6, None);
        let units = tokens(100);
        let mut blocks = 0;
        let mut lengths = [0usize; 7];
        for i in 0..500 {
            let spans = run(&sel, &units, i);
            let mut seen = [false; 100];
            let mut total = 0;
            for s in &spans {
                assert!((1..=6).contains(&s.units), "length {}", s.units);
                lengths[s.units as usize] += 1;
                for u in s.first_unit..s.first_unit + s.units {
                    assert!(!seen[u as usize], "overlap at {u}");
                    seen[u as usize] = true;
                }
                total += s.units;
            }
            // At least 15 tokens; only the last block may overshoot.
            assert!(total >= 15, "covered {total}");
            let last = spans.last().map_or(0, |s| s.units);
            assert!(total - last < 15, "kept drawing past the target");
            blocks += spans.len();
        }
        // About 40% of the accepted blocks are long (acceptance favours short
        // blocks slightly, so allow a margin), and 2..=6 all occur.
        let long: usize = lengths[2..].iter().sum();
        let share = long as f64 / blocks as f64;
        assert!((0.3..0.45).contains(&share), "long-block share {share}");
        assert!(lengths[2..].iter().all(|&c| c > 0), "{lengths:?}");
        assert!(lengths[1] > 0, "single-token blocks occur");
    }

    #[test]
    fn blocks_never_cross_a_gap_between_units() {
        // Units 0..5 at tokens 1..6, then a special token at 6, then 7..12.
        let mut units: Vec<Unit> = (1..6).map(|i| Unit { start: i, len: 1 }).collect();
        units.extend((7..12).map(|i| Unit { start: i, len: 1 }));
        let sel = BlockwiseSelector::new(0.5, 1.0, 2, 6, None);
        for i in 0..200 {
            for s in run(&sel, &units, i) {
                let first = units[s.first_unit as usize];
                let last = units[(s.first_unit + s.units - 1) as usize];
                assert_eq!(last.end() - first.start, s.units, "block crosses the gap");
            }
        }
    }

    #[test]
    fn a_tiny_sequence_gets_one_token_and_the_cap_holds() {
        let sel = BlockwiseSelector::new(0.15, 0.4, 2, 6, None);
        let spans = run(&sel, &tokens(1), 3);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].units, 1);
        assert!(run(&sel, &[], 3).is_empty());
        let capped = BlockwiseSelector::new(0.5, 0.4, 2, 6, Some(4));
        for i in 0..100 {
            let total: u32 = run(&capped, &tokens(40), i).iter().map(|s| s.units).sum();
            assert_eq!(total, 4);
        }
    }
}

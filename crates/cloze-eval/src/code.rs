//! Code completion metrics and the count-based baselines they are compared
//! with (CugLM, Liu et al., ASE 2020, reports next-token accuracy on all
//! tokens and on identifiers).
//!
//! - [`CompletionScores`]: top-1 and top-5 next-token accuracy over all
//!   predicted tokens, over identifier tokens, and per syntactic category,
//!   tallied from a model's logits ([`CompletionScores::tally_logits`]) or
//!   from ranked candidates ([`CompletionScores::tally_ranked`]).
//! - [`NgramModel`]: an order-`n` token model with backoff (the frequency
//!   baseline is order 1); it ranks the next token by the counts of the
//!   longest context seen in training, filling the list from shorter
//!   contexts. Counts are exact and the ranking breaks ties by the smaller
//!   id, so it is deterministic.
//!
//! The categories are the code layer's indices; which of them are
//! identifiers is the caller's to say.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use tch::Tensor;

use crate::error::{Error, Result};

/// Top-1 and top-5 hits over `n` predictions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Hits {
    /// Predictions tallied.
    pub n: u64,
    /// The true token ranked first.
    pub top1: u64,
    /// The true token among the first five.
    pub top5: u64,
}

impl Hits {
    /// `top1 / n` (0 for no predictions).
    pub fn top1_rate(&self) -> f64 {
        self.top1 as f64 / self.n.max(1) as f64
    }

    /// `top5 / n` (0 for no predictions).
    pub fn top5_rate(&self) -> f64 {
        self.top5 as f64 / self.n.max(1) as f64
    }

    fn add(&mut self, rank: Option<usize>) {
        self.n += 1;
        if rank == Some(0) {
            self.top1 += 1;
        }
        if rank.is_some_and(|r| r < 5) {
            self.top5 += 1;
        }
    }
}

/// Next-token accuracy, overall, on identifiers and per category.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CompletionScores {
    /// Every predicted token.
    pub all: Hits,
    /// Tokens whose category is an identifier category.
    pub identifiers: Hits,
    /// Per category index.
    pub by_category: BTreeMap<u8, Hits>,
}

impl CompletionScores {
    /// Tallies one prediction: the rank of the true token among the
    /// candidates (`None` when it is not among the first five).
    pub fn tally_rank(&mut self, rank: Option<usize>, category: u8, identifier: bool) {
        self.all.add(rank);
        if identifier {
            self.identifiers.add(rank);
        }
        self.by_category.entry(category).or_default().add(rank);
    }

    /// Tallies ranked candidate lists (best first) against their targets.
    pub fn tally_ranked(
        &mut self,
        ranked: &[Vec<u32>],
        targets: &[u32],
        categories: &[u8],
        is_identifier: impl Fn(u8) -> bool,
    ) -> Result<()> {
        check_lengths(ranked.len(), targets.len(), categories.len())?;
        for ((cands, &t), &c) in ranked.iter().zip(targets).zip(categories) {
            let rank = cands.iter().take(5).position(|&x| x == t);
            self.tally_rank(rank, c, is_identifier(c));
        }
        Ok(())
    }

    /// Tallies `[N, V]` logits against `N` targets and their categories.
    pub fn tally_logits(
        &mut self,
        logits: &Tensor,
        targets: &[u32],
        categories: &[u8],
        is_identifier: impl Fn(u8) -> bool,
    ) -> Result<()> {
        let size = logits.size();
        if size.len() != 2 || size[0] != targets.len() as i64 {
            return Err(Error::InvalidOption {
                name: "logits",
                reason: format!(
                    "shape {size:?} for {} targets: expected [{}, V]",
                    targets.len(),
                    targets.len()
                ),
            });
        }
        if targets.is_empty() {
            return Ok(());
        }
        let k = size[1].min(5);
        let top = tch::no_grad(|| logits.f_topk(k, -1, true, true))?.1;
        let flat: Vec<i64> = Vec::<i64>::try_from(top.f_reshape([-1])?)?;
        let ranked: Vec<Vec<u32>> = flat
            .chunks(k.max(1) as usize)
            .map(|c| c.iter().map(|&x| x as u32).collect())
            .collect();
        self.tally_ranked(&ranked, targets, categories, is_identifier)
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: &CompletionScores) {
        let add = |a: &mut Hits, b: &Hits| {
            a.n += b.n;
            a.top1 += b.top1;
            a.top5 += b.top5;
        };
        add(&mut self.all, &other.all);
        add(&mut self.identifiers, &other.identifiers);
        for (c, h) in &other.by_category {
            add(self.by_category.entry(*c).or_default(), h);
        }
    }
}

fn check_lengths(a: usize, b: usize, c: usize) -> Result<()> {
    if a != b || b != c {
        return Err(Error::InvalidOption {
            name: "predictions",
            reason: format!("{a} predictions, {b} targets and {c} categories: expected one each"),
        });
    }
    Ok(())
}

/// The context key of an n-gram: up to `n - 1` previous tokens.
type Context = Vec<u32>;

/// An order-`n` count model with backoff; see the module docs.
#[derive(Debug, Clone)]
pub struct NgramModel {
    order: usize,
    /// `tables[k]`: for contexts of length `k`, the most frequent next
    /// tokens, best first (at most [`NgramModel::KEEP`]), ranked once at
    /// training time so that a prediction is a few lookups.
    tables: Vec<HashMap<Context, Vec<u32>>>,
}

impl NgramModel {
    /// Candidates kept per context: enough for top-5 accuracy.
    pub const KEEP: usize = 8;

    /// Counts every `order`-gram of `sequences` (each sequence on its own:
    /// no n-gram crosses two). `order` 1 is the frequency baseline.
    pub fn train<'a>(order: usize, sequences: impl IntoIterator<Item = &'a [u32]>) -> Result<Self> {
        if order == 0 {
            return Err(Error::InvalidOption {
                name: "order",
                reason: "an n-gram model needs an order of at least 1".into(),
            });
        }
        let mut counts: Vec<HashMap<Context, HashMap<u32, u64>>> = vec![HashMap::new(); order];
        for seq in sequences {
            for (i, &next) in seq.iter().enumerate() {
                for (k, table) in counts.iter_mut().enumerate() {
                    if k > i {
                        break;
                    }
                    let ctx = seq[i - k..i].to_vec();
                    *table.entry(ctx).or_default().entry(next).or_default() += 1;
                }
            }
        }
        let tables = counts
            .into_iter()
            .map(|table| {
                table
                    .into_iter()
                    .map(|(ctx, next)| {
                        let mut c: Vec<(u32, u64)> = next.into_iter().collect();
                        c.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                        c.truncate(Self::KEEP);
                        (ctx, c.into_iter().map(|(t, _)| t).collect())
                    })
                    .collect()
            })
            .collect();
        Ok(Self { order, tables })
    }

    /// The model's order.
    pub fn order(&self) -> usize {
        self.order
    }

    /// The `k` (at most [`NgramModel::KEEP`]) most likely next tokens
    /// after `context` (its last `order - 1` tokens count), best first: the
    /// longest seen context's counts, then shorter contexts' for the places
    /// left, then the most frequent tokens.
    pub fn predict(&self, context: &[u32], k: usize) -> Vec<u32> {
        let k = k.min(Self::KEEP);
        let mut out: Vec<u32> = Vec::with_capacity(k);
        let longest = (self.order - 1).min(context.len());
        for len in (0..=longest).rev() {
            let ctx = &context[context.len() - len..];
            if let Some(ranked) = self.tables[len].get(ctx) {
                for &t in ranked {
                    if out.len() == k {
                        return out;
                    }
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ngram_model_prefers_the_longest_seen_context() -> Result<()> {
        let a: &[u32] = &[1, 2, 3, 1, 2, 3, 1, 2, 4];
        let b: &[u32] = &[5, 2, 6, 5, 2, 6];
        let m = NgramModel::train(3, [a, b])?;
        // After (1, 2): 3 twice, 4 once.
        assert_eq!(m.predict(&[9, 1, 2], 2), vec![3, 4]);
        // After (5, 2): 6; then the bigram context (2) adds 3 before 4.
        assert_eq!(m.predict(&[5, 2], 3), vec![6, 3, 4]);
        // An unseen context falls back to frequency: 2 is the most common.
        assert_eq!(m.predict(&[7, 7], 1), vec![2]);
        // Order 1 is the frequency baseline.
        let f = NgramModel::train(1, [a, b])?;
        assert_eq!(f.predict(&[1, 2], 2), vec![2, 1]);
        assert!(NgramModel::train(0, [a]).is_err());
        Ok(())
    }

    #[test]
    fn scores_count_top1_top5_identifiers_and_categories() -> Result<()> {
        let mut s = CompletionScores::default();
        let ranked = vec![vec![7, 1, 2], vec![1, 2, 3, 4, 9, 8], vec![3]];
        s.tally_ranked(&ranked, &[7, 9, 8], &[2, 2, 0], |c| c == 2)?;
        assert_eq!(
            s.all,
            Hits {
                n: 3,
                top1: 1,
                top5: 2
            }
        );
        assert_eq!(
            s.identifiers,
            Hits {
                n: 2,
                top1: 1,
                top5: 2
            }
        );
        assert_eq!(
            s.by_category[&0],
            Hits {
                n: 1,
                top1: 0,
                top5: 0
            }
        );
        assert!(s.tally_ranked(&ranked, &[1], &[0], |_| false).is_err());

        let logits = Tensor::from_slice(&[0.1f32, 0.9, 0.0, 0.5, 0.2, 0.3]).view([2, 3]);
        let mut t = CompletionScores::default();
        t.tally_logits(&logits, &[1, 2], &[1, 1], |_| true)?;
        assert_eq!(
            t.all,
            Hits {
                n: 2,
                top1: 1,
                top5: 2
            }
        );
        s.merge(&t);
        assert_eq!(s.all.n, 5);
        assert!((t.all.top1_rate() - 0.5).abs() < 1e-12);
        Ok(())
    }
}

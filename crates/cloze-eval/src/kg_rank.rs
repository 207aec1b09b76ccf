//! Link-prediction ranking metrics as knowledge-graph papers report them:
//! the rank of the true entity among all candidates, raw or filtered (other
//! true answers of the same query removed, Bordes et al. 2013), and from the
//! ranks MR, MRR and Hits@k.
//!
//! **Ties** take the mean rank of the tied group: with `g` candidates
//! scoring strictly higher than the answer and `e` others scoring the same,
//! the rank is `1 + g + e / 2` (the answer's expected rank under a random
//! order of the ties). A constant scorer thus ranks every answer in the
//! middle rather than first (the optimistic rank) or last (the
//! pessimistic one). A NaN score is never higher than another; an answer
//! scored NaN gets the worst rank.
//!
//! ```
//! use std::collections::HashSet;
//! use cloze_eval::kg_rank::{rank_of, RankStats};
//!
//! // Four candidates; the answer is 2. Candidate 0 is another true answer.
//! let scores = [0.9, 0.4, 0.7, 0.7];
//! let r = rank_of(&scores, 2, Some(&HashSet::from([0, 2]))).unwrap();
//! assert_eq!((r.raw, r.filtered), (2.5, 1.5)); // one higher, one tied
//! let mut stats = RankStats::default();
//! stats.add(r.filtered);
//! assert_eq!(stats.hits(1), Some(0.0));
//! assert_eq!(stats.hits(3), Some(1.0));
//! ```

use std::collections::HashSet;

/// The rank of candidate `answer` under `scores` (higher is better), raw
/// and filtered: the filtered rank ignores every candidate in `known`
/// except the answer itself. Ties take the mean rank (module docs).
/// `None` when `answer` is not a candidate index.
pub fn rank_of(scores: &[f32], answer: usize, known: Option<&HashSet<u32>>) -> Option<Ranks> {
    let target = *scores.get(answer)?;
    let n = scores.len();
    if target.is_nan() {
        let others_known = known.map_or(0, |k| {
            k.iter()
                .filter(|&&c| (c as usize) < n && c as usize != answer)
                .count()
        });
        return Some(Ranks {
            raw: n as f64,
            filtered: (n - others_known) as f64,
        });
    }
    let (mut raw_g, mut raw_e, mut f_g, mut f_e) = (0usize, 0usize, 0usize, 0usize);
    for (i, &s) in scores.iter().enumerate() {
        if i == answer {
            continue;
        }
        let filtered_out = known.is_some_and(|k| k.contains(&(i as u32)));
        if s > target {
            raw_g += 1;
            if !filtered_out {
                f_g += 1;
            }
        } else if s == target {
            raw_e += 1;
            if !filtered_out {
                f_e += 1;
            }
        }
    }
    Some(Ranks {
        raw: 1.0 + raw_g as f64 + raw_e as f64 / 2.0,
        filtered: 1.0 + f_g as f64 + f_e as f64 / 2.0,
    })
}

/// The raw and filtered rank of one answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranks {
    /// Among all candidates.
    pub raw: f64,
    /// Among the candidates that are not other true answers.
    pub filtered: f64,
}

/// Accumulated ranks: MR, MRR and Hits@k.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankStats {
    count: u64,
    sum_rank: f64,
    sum_reciprocal: f64,
    hits: [u64; 3],
}

/// The k of Hits@k reported.
pub const HITS_AT: [u32; 3] = [1, 3, 10];

impl RankStats {
    /// Adds one rank. A tied rank (a half) counts as a hit at k when it is
    /// at most k.
    pub fn add(&mut self, rank: f64) {
        self.count += 1;
        self.sum_rank += rank;
        self.sum_reciprocal += 1.0 / rank;
        for (h, k) in self.hits.iter_mut().zip(HITS_AT) {
            if rank <= f64::from(k) {
                *h += 1;
            }
        }
    }

    /// Adds every rank of `other`.
    pub fn merge(&mut self, other: &RankStats) {
        self.count += other.count;
        self.sum_rank += other.sum_rank;
        self.sum_reciprocal += other.sum_reciprocal;
        for (a, b) in self.hits.iter_mut().zip(other.hits) {
            *a += b;
        }
    }

    /// How many ranks.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean rank (NaN when empty).
    pub fn mr(&self) -> f64 {
        self.sum_rank / self.count as f64
    }

    /// Mean reciprocal rank (NaN when empty).
    pub fn mrr(&self) -> f64 {
        self.sum_reciprocal / self.count as f64
    }

    /// Hits@k for k in [`HITS_AT`] (NaN when empty; `None` for another k).
    pub fn hits(&self, k: u32) -> Option<f64> {
        let i = HITS_AT.iter().position(|&x| x == k)?;
        Some(self.hits[i] as f64 / self.count as f64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ties_take_the_mean_rank_and_filtering_removes_other_answers() {
        // Candidates 0..5; the answer is 2 (score 0.5).
        let scores = [0.9, 0.5, 0.5, 0.7, 0.1];
        let r = rank_of(&scores, 2, None).unwrap();
        // Higher: 0 and 3; tied: 1 -> 1 + 2 + 0.5.
        assert_eq!(r.raw, 3.5);
        assert_eq!(r.filtered, 3.5);
        // 0 is another true answer (and the answer itself is in the set).
        let known = HashSet::from([0, 2]);
        let r = rank_of(&scores, 2, Some(&known)).unwrap();
        assert_eq!(r.raw, 3.5);
        assert_eq!(r.filtered, 2.5);
        // Filtering a tied candidate removes its half.
        let known = HashSet::from([1, 2]);
        assert_eq!(rank_of(&scores, 2, Some(&known)).unwrap().filtered, 3.0);
        // A constant scorer puts the answer in the middle.
        let flat = [0.0f32; 5];
        assert_eq!(rank_of(&flat, 4, None).unwrap().raw, 3.0);
        assert!(rank_of(&flat, 5, None).is_none());
    }

    #[test]
    fn nan_scores_never_win_and_a_nan_answer_ranks_last() {
        let scores = [f32::NAN, 0.2, 0.1];
        assert_eq!(rank_of(&scores, 2, None).unwrap().raw, 2.0);
        let r = rank_of(&[0.3, f32::NAN, 0.1], 1, Some(&HashSet::from([2]))).unwrap();
        assert_eq!((r.raw, r.filtered), (3.0, 2.0));
    }

    #[test]
    fn stats_give_mr_mrr_and_hits() {
        let mut s = RankStats::default();
        for r in [1.0, 2.0, 3.5, 10.0, 20.0] {
            s.add(r);
        }
        assert_eq!(s.count(), 5);
        assert!((s.mr() - 7.3).abs() < 1e-12);
        let mrr = (1.0 + 0.5 + 1.0 / 3.5 + 0.1 + 0.05) / 5.0;
        assert!((s.mrr() - mrr).abs() < 1e-12);
        assert_eq!(s.hits(1), Some(0.2));
        assert_eq!(s.hits(3), Some(0.4));
        assert_eq!(s.hits(10), Some(0.8));
        assert_eq!(s.hits(5), None);
        let mut both = RankStats::default();
        both.merge(&s);
        both.merge(&s);
        assert_eq!(both.count(), 10);
        assert!((both.mrr() - mrr).abs() < 1e-12);
        assert!(RankStats::default().mr().is_nan());
    }
}

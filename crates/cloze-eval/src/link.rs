//! Link prediction as an evaluation task: every test triple asked in both
//! directions (the tail from head and relation, the head from relation and
//! tail), every entity of the graph scored as the answer by a
//! [`LinkScorer`], and the true answer ranked raw and filtered
//! ([`crate::kg_rank`], ties at their mean rank).
//!
//! A scorer is anything that gives each query one score per entity, higher
//! meaning more plausible: the masked LM of MLMLM (`crate::kg_score`), an
//! embedding model such as DistMult (`cloze-train`), or the
//! [`FrequencyBaseline`] here. [`LinkTask`] is the [`Task`] that drives
//! one, so all of them report the same [`LinkMetrics`].
//!
//! ```
//! use cloze_eval::link::{evaluate_links, FrequencyBaseline};
//! use cloze_text::kg::{KnowledgeGraph, Split};
//!
//! let g = KnowledgeGraph::from_texts(
//!     "a\tlikes\tc\nb\tlikes\tc\nc\tlikes\ta\n",
//!     "d\tlikes\tc\n",
//!     "b\tlikes\ta\n",
//! )?;
//! let freq = FrequencyBaseline::new(&g);
//! let m = evaluate_links(&freq, g.split(Split::Test), &g.known_answers(), 64)?;
//! assert_eq!(m.tail.filtered.count(), 1);
//! // (b, likes, ?): `c` is the most frequent tail of `likes`, so the answer
//! // `a` ranks second; `c` is also a true tail of (b, likes), so the
//! // filtered ranking drops it and `a` ranks first.
//! assert_eq!(m.tail.raw.mr(), 2.0);
//! assert_eq!(m.tail.filtered.mr(), 1.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;

use cloze_core::Report;
use cloze_text::kg::{KnowledgeGraph, KnownAnswers, Triple};

use crate::kg_rank::{rank_of, RankStats, HITS_AT};
use crate::task::{self, Task};
use crate::{Error, Result};

/// Which end of a triple is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// `(head, relation, ?)`.
    Tail,
    /// `(?, relation, tail)`.
    Head,
}

impl Direction {
    /// `"tail"` or `"head"`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Tail => "tail",
            Direction::Head => "head",
        }
    }
}

/// One query: the known entity, the relation and which end is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkQuery {
    /// The entity given (the head for [`Direction::Tail`], else the tail).
    pub known: u32,
    /// The relation.
    pub relation: u32,
    /// Which end is predicted.
    pub direction: Direction,
}

impl LinkQuery {
    /// `(head, relation, ?)` of `t`.
    pub fn tail_of(t: &Triple) -> Self {
        Self {
            known: t.head,
            relation: t.relation,
            direction: Direction::Tail,
        }
    }

    /// `(?, relation, tail)` of `t`.
    pub fn head_of(t: &Triple) -> Self {
        Self {
            known: t.tail,
            relation: t.relation,
            direction: Direction::Head,
        }
    }

    /// The entity `t` answers this query with.
    pub fn answer_in(&self, t: &Triple) -> u32 {
        match self.direction {
            Direction::Tail => t.tail,
            Direction::Head => t.head,
        }
    }
}

/// Scores every entity as the answer of each query.
pub trait LinkScorer {
    /// How many entities (the length of each score row).
    fn num_entities(&self) -> usize;
    /// One row of [`Self::num_entities`] scores per query, in query order;
    /// higher is more plausible. NaN ranks last.
    fn score(&self, queries: &[LinkQuery]) -> Result<Vec<Vec<f32>>>;
}

/// Raw and filtered ranks of one direction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectionRanks {
    /// Among all entities.
    pub raw: RankStats,
    /// With the other true answers removed.
    pub filtered: RankStats,
}

/// Ranks of head and tail prediction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkMetrics {
    /// Head prediction, `(?, r, t)`.
    pub head: DirectionRanks,
    /// Tail prediction, `(h, r, ?)`.
    pub tail: DirectionRanks,
}

impl LinkMetrics {
    /// Both directions together (each query one rank): the number KG
    /// papers report as "the" MRR.
    pub fn both(&self) -> DirectionRanks {
        let mut raw = self.head.raw.clone();
        raw.merge(&self.tail.raw);
        let mut filtered = self.head.filtered.clone();
        filtered.merge(&self.tail.filtered);
        DirectionRanks { raw, filtered }
    }

    /// The ranks of one direction.
    pub fn direction(&self, d: Direction) -> &DirectionRanks {
        match d {
            Direction::Head => &self.head,
            Direction::Tail => &self.tail,
        }
    }

    fn direction_mut(&mut self, d: Direction) -> &mut DirectionRanks {
        match d {
            Direction::Head => &mut self.head,
            Direction::Tail => &mut self.tail,
        }
    }

    /// Named values: for `both`, `head` and `tail`, the filtered MRR and
    /// Hits@k as accuracies (`mrr`, `hits@1`, ..., prefixed by the
    /// direction except for `both`; `raw_` before the raw ones), the mean
    /// rank as a loss (`mr`, ...) and the query count.
    pub fn report(&self) -> Report {
        let mut r = Report::new();
        let both = self.both();
        for (prefix, ranks) in [("", &both), ("head_", &self.head), ("tail_", &self.tail)] {
            for (kind, stats) in [("", &ranks.filtered), ("raw_", &ranks.raw)] {
                r = r
                    .loss(format!("{prefix}{kind}mr"), stats.mr())
                    .accuracy(format!("{prefix}{kind}mrr"), stats.mrr());
                for k in HITS_AT {
                    r = r.accuracy(
                        format!("{prefix}{kind}hits@{k}"),
                        stats.hits(k).unwrap_or(f64::NAN),
                    );
                }
            }
        }
        r.count("queries", both.filtered.count())
    }
}

/// A batch of queries with their true answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryBatch {
    /// The queries.
    pub queries: Vec<LinkQuery>,
    /// The true answer of each.
    pub answers: Vec<u32>,
}

/// Link prediction over fixed triples as a [`Task`]: each triple becomes a
/// tail query and a head query, batched `batch_size` queries at a time.
/// `'s` bounds the scorers it accepts (a scorer may borrow a model).
pub struct LinkTask<'a, 's> {
    batches: Vec<QueryBatch>,
    known: &'a KnownAnswers,
    scorer: std::marker::PhantomData<&'s ()>,
}

impl<'a> LinkTask<'a, '_> {
    /// The queries of `triples` (tail queries first, then head queries,
    /// each in triple order), filtered against `known`.
    pub fn new(triples: &[Triple], known: &'a KnownAnswers, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::InvalidOption {
                name: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        let mut all = Vec::with_capacity(triples.len() * 2);
        for make in [LinkQuery::tail_of, LinkQuery::head_of] {
            all.extend(triples.iter().map(|t| {
                let q = make(t);
                (q, q.answer_in(t))
            }));
        }
        let batches = all
            .chunks(batch_size)
            .map(|c| QueryBatch {
                queries: c.iter().map(|(q, _)| *q).collect(),
                answers: c.iter().map(|(_, a)| *a).collect(),
            })
            .collect();
        Ok(Self {
            batches,
            known,
            scorer: std::marker::PhantomData,
        })
    }

    /// The filter set of a query.
    fn known_for(&self, q: &LinkQuery) -> Option<&std::collections::HashSet<u32>> {
        match q.direction {
            Direction::Tail => self.known.tails_of(q.known, q.relation),
            Direction::Head => self.known.heads_of(q.relation, q.known),
        }
    }
}

impl<'s> Task for LinkTask<'_, 's> {
    type Model = dyn LinkScorer + 's;
    type Input = QueryBatch;
    type Prediction = Vec<Vec<f32>>;
    type Metrics = LinkMetrics;

    fn inputs(&self) -> &[QueryBatch] {
        &self.batches
    }

    fn predict(&self, model: &Self::Model, input: &QueryBatch) -> Result<Vec<Vec<f32>>> {
        model.score(&input.queries)
    }

    fn accumulate(
        &self,
        metrics: &mut LinkMetrics,
        input: &QueryBatch,
        scores: Vec<Vec<f32>>,
    ) -> Result<()> {
        if scores.len() != input.queries.len() {
            return Err(Error::InvalidOption {
                name: "scores",
                reason: format!(
                    "the scorer returned {} rows for {} queries",
                    scores.len(),
                    input.queries.len()
                ),
            });
        }
        for ((q, &answer), row) in input.queries.iter().zip(&input.answers).zip(&scores) {
            let ranks = rank_of(row, answer as usize, self.known_for(q)).ok_or_else(|| {
                Error::InvalidOption {
                    name: "scores",
                    reason: format!(
                        "a row of {} scores has no entry for entity {answer}",
                        row.len()
                    ),
                }
            })?;
            let d = metrics.direction_mut(q.direction);
            d.raw.add(ranks.raw);
            d.filtered.add(ranks.filtered);
        }
        Ok(())
    }

    fn report(&self, metrics: &LinkMetrics) -> Report {
        metrics.report()
    }
}

/// Ranks every triple of `triples` in both directions under `scorer`.
pub fn evaluate_links<'s>(
    scorer: &(dyn LinkScorer + 's),
    triples: &[Triple],
    known: &KnownAnswers,
    batch_size: usize,
) -> Result<LinkMetrics> {
    let task: LinkTask<'_, 's> = LinkTask::new(triples, known, batch_size)?;
    task::evaluate(&task, scorer)
}

/// Ranks entities by how often they fill the asked end of the relation in
/// training, then by how often they occur in training at all: what a model
/// that ignores the given entity can do.
#[derive(Debug, Clone)]
pub struct FrequencyBaseline {
    num_entities: usize,
    by_relation: HashMap<(u32, Direction), Vec<u32>>,
    overall: Vec<u32>,
}

impl FrequencyBaseline {
    /// Counts over the training triples of `graph`.
    pub fn new(graph: &KnowledgeGraph) -> Self {
        let n = graph.entities.len();
        let mut by_relation: HashMap<(u32, Direction), Vec<u32>> = HashMap::new();
        let mut overall = vec![0u32; n];
        for t in &graph.train {
            for (d, e) in [(Direction::Tail, t.tail), (Direction::Head, t.head)] {
                let row = by_relation
                    .entry((t.relation, d))
                    .or_insert_with(|| vec![0; n]);
                if let Some(c) = row.get_mut(e as usize) {
                    *c += 1;
                }
                if let Some(c) = overall.get_mut(e as usize) {
                    *c += 1;
                }
            }
        }
        Self {
            num_entities: n,
            by_relation,
            overall,
        }
    }
}

impl LinkScorer for FrequencyBaseline {
    fn num_entities(&self) -> usize {
        self.num_entities
    }

    fn score(&self, queries: &[LinkQuery]) -> Result<Vec<Vec<f32>>> {
        // The overall count only breaks ties: it is scaled below one step of
        // the per-relation count.
        let total = self.overall.iter().map(|&c| f64::from(c)).sum::<f64>() + 1.0;
        Ok(queries
            .iter()
            .map(|q| {
                let rel = self.by_relation.get(&(q.relation, q.direction));
                (0..self.num_entities)
                    .map(|e| {
                        let r = rel.and_then(|v| v.get(e)).copied().unwrap_or(0);
                        let o = self.overall.get(e).copied().unwrap_or(0);
                        (f64::from(r) + f64::from(o) / total) as f32
                    })
                    .collect()
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cloze_text::kg::Split;

    /// Scores every entity by a fixed table, ignoring the query except its direction.
    struct Table {
        tail: Vec<f32>,
        head: Vec<f32>,
    }

    impl LinkScorer for Table {
        fn num_entities(&self) -> usize {
            self.tail.len()
        }
        fn score(&self, queries: &[LinkQuery]) -> Result<Vec<Vec<f32>>> {
            Ok(queries
                .iter()
                .map(|q| match q.direction {
                    Direction::Tail => self.tail.clone(),
                    Direction::Head => self.head.clone(),
                })
                .collect())
        }
    }

    fn graph() -> KnowledgeGraph {
        // Entities a b c d (ids 0-3); relation likes.
        KnowledgeGraph::from_texts(
            "a\tlikes\tb\na\tlikes\tc\nd\tlikes\tc\n",
            "b\tlikes\tc\n",
            "a\tlikes\td\nc\tlikes\tc\n",
        )
        .unwrap()
    }

    #[test]
    fn filtered_and_raw_ranks_on_a_hand_made_graph() {
        let g = graph();
        let known = g.known_answers();
        // Tail scores: b 0.9, c 0.9, d 0.5, a 0.1. Head scores: c 0.8, a 0.8, b 0.3, d 0.
        let scorer = Table {
            tail: vec![0.1, 0.9, 0.9, 0.5],
            head: vec![0.8, 0.3, 0.8, 0.0],
        };
        let m = evaluate_links(&scorer, g.split(Split::Test), &known, 1).unwrap();
        // (a, likes, ?) answer d: b and c higher -> raw 3; both are true
        // tails of (a, likes) -> filtered 1.
        // (c, likes, ?) answer c: tied with b -> raw 1.5; b is no tail of
        // (c, likes) -> filtered 1.5.
        assert_eq!(m.tail.raw.mr(), (3.0 + 1.5) / 2.0);
        assert_eq!(m.tail.filtered.mr(), (1.0 + 1.5) / 2.0);
        // (?, likes, d) answer a: tied with c -> raw 1.5; c is no head of
        // likes d -> filtered 1.5.
        // (?, likes, c) answer c: tied with a -> raw 1.5; a, d, b are true
        // heads of likes c (a in train, b in valid) -> filtered 1.
        assert_eq!(m.head.raw.mr(), 1.5);
        assert_eq!(m.head.filtered.mr(), 1.25);
        let both = m.both();
        assert_eq!(both.filtered.count(), 4);
        assert!((both.filtered.mrr() - (1.0 + 1.0 / 1.5 + 1.0 / 1.5 + 1.0) / 4.0).abs() < 1e-12);
        let r = m.report();
        assert_eq!(r.counts["queries"], 4);
        assert_eq!(r.accuracies["tail_hits@1"], 0.5);
        assert_eq!(r.accuracies["tail_raw_hits@1"], 0.0);
        assert_eq!(r.losses["head_raw_mr"], 1.5);
    }

    #[test]
    fn a_duplicated_triple_is_ranked_each_time_and_filters_only_other_answers() {
        // (a, likes, b) is in train and twice in test; (a, likes, c) is a
        // second true tail. Tail scores: c 0.9, b 0.5, d 0.5, a 0.1.
        let g = KnowledgeGraph::from_texts(
            "a\tlikes\tb\na\tlikes\tc\n",
            "d\tlikes\ta\n",
            "a\tlikes\tb\na\tlikes\tb\n",
        )
        .unwrap();
        let scorer = Table {
            tail: vec![0.1, 0.5, 0.9, 0.5],
            head: vec![0.0; 4],
        };
        let m = evaluate_links(&scorer, &g.test, &g.known_answers(), 8).unwrap();
        assert_eq!(m.tail.raw.count(), 2);
        // Raw: c higher, d tied -> 2.5. Filtered: c is another true tail
        // and goes; the answer itself is never filtered -> 1.5.
        assert_eq!(m.tail.raw.mr(), 2.5);
        assert_eq!(m.tail.filtered.mr(), 1.5);
    }

    #[test]
    fn batching_does_not_change_the_metrics() {
        let g = graph();
        let known = g.known_answers();
        let scorer = FrequencyBaseline::new(&g);
        let one = evaluate_links(&scorer, &g.test, &known, 1).unwrap();
        let many = evaluate_links(&scorer, &g.test, &known, 3).unwrap();
        assert_eq!(one, many);
        assert!(evaluate_links(&scorer, &g.test, &known, 0).is_err());
    }

    #[test]
    fn frequency_prefers_the_relations_frequent_end() {
        let g = graph();
        let f = FrequencyBaseline::new(&g);
        let q = LinkQuery {
            known: 0,
            relation: 0,
            direction: Direction::Tail,
        };
        let s = &f.score(&[q]).unwrap()[0];
        // Train tails of likes: b once, c twice.
        assert!(s[2] > s[1] && s[1] > s[3] && s[1] > s[0]);
        // a occurs twice overall, d once: the tie between them (no tail
        // count) is broken by the overall count.
        assert!(s[0] > s[3]);
        let q = LinkQuery {
            direction: Direction::Head,
            ..q
        };
        let s = &f.score(&[q]).unwrap()[0];
        assert!(s[0] > s[3] && s[3] > s[1]);
    }

    #[test]
    fn a_scorer_with_a_short_row_is_an_error() {
        struct Short;
        impl LinkScorer for Short {
            fn num_entities(&self) -> usize {
                1
            }
            fn score(&self, q: &[LinkQuery]) -> Result<Vec<Vec<f32>>> {
                Ok(vec![vec![0.0]; q.len()])
            }
        }
        let g = graph();
        assert!(evaluate_links(&Short, &g.test, &g.known_answers(), 4).is_err());
    }
}

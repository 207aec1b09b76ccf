//! MLMLM's scorer (Clouatre et al. 2021): a candidate entity `e` of `k`
//! tokens answers a query by the mean log-likelihood of its tokens at a slot
//! of `k` masks, `score(e | C) = (1/k) * sum_i log P(token_i | C)`.
//!
//! The query's row does not depend on which candidate is scored, only on
//! its length, so [`Scoring::ByLength`] runs one forward pass per query and
//! distinct candidate length (a row whose slot holds `k` masks) and scores
//! every candidate of that length from the log-softmax at the slot by a
//! gather; queries are batched. [`Scoring::PerCandidate`] builds one row per
//! query and candidate, the naive computation it must equal (tests) and the
//! reference the `cloze kg eval --per-candidate` timing is compared with.
//! Log-probabilities are averaged, never logits: logits carry a
//! per-position normaliser that differs between slots of different length.
//!
//! Texts: the slot holds an entity's label ([`LinkTexts`]; at most
//! [`TextLimits::max_slot`] tokens, so a longer label is scored on its first
//! tokens); the given entity is written as its label and, where the graph
//! has one, its description (`label : description`, at most
//! [`TextLimits::max_context`] tokens).

use std::cell::Cell;
use std::collections::BTreeMap;

use cloze_mask::link::{Slot, SlotLayout, SlotRow};
use cloze_models::MlmInput;
use tch::{Device, Kind, Tensor};

use crate::link::{Direction, LinkQuery, LinkScorer};
use crate::text::ModelTokenizer;
use crate::{Error, MaskedLm, Result};

/// Token budgets of the texts in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimits {
    /// The longest entity label in the slot (16).
    pub max_slot: usize,
    /// The longest given entity, label and description together (48).
    pub max_context: usize,
    /// The longest relation text (16).
    pub max_relation: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        Self {
            max_slot: 16,
            max_context: 48,
            max_relation: 16,
        }
    }
}

impl TextLimits {
    /// The longest row these limits allow, specials included.
    pub fn max_row(&self) -> usize {
        self.max_context + self.max_relation + self.max_slot + 4
    }
}

/// The token ids (no specials) of every entity and relation of a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTexts {
    /// Each entity's label, as it fills a slot.
    pub slots: Vec<Vec<u32>>,
    /// Each entity as the given side of a query: label and description.
    pub contexts: Vec<Vec<u32>>,
    /// Each relation's text.
    pub relations: Vec<Vec<u32>>,
}

impl LinkTexts {
    /// The longest row these texts make, specials included: the longest
    /// given entity, relation and slot together.
    pub fn longest_row(&self) -> usize {
        let longest = |v: &[Vec<u32>]| v.iter().map(Vec::len).max().unwrap_or(0);
        longest(&self.contexts) + longest(&self.relations) + longest(&self.slots) + 4
    }

    /// Tokenizes entity labels (with optional descriptions) and relation
    /// texts, truncated to `limits`. An entity or relation whose text has
    /// no token is an error naming it.
    pub fn tokenize(
        tok: &ModelTokenizer,
        labels: &[String],
        descriptions: &[Option<String>],
        relations: &[String],
        limits: TextLimits,
    ) -> Result<Self> {
        let strip = |texts: &[&str], max: usize, what: &'static str| -> Result<Vec<Vec<u32>>> {
            let ids = tok.encode_batch(texts)?;
            ids.into_iter()
                .zip(texts)
                .map(|(v, text)| {
                    let inner = v.get(1..v.len().saturating_sub(1)).unwrap_or(&[]);
                    if inner.is_empty() {
                        return Err(Error::InvalidOption {
                            name: what,
                            reason: format!("{text:?} has no token under this tokenizer"),
                        });
                    }
                    Ok(inner[..inner.len().min(max)].to_vec())
                })
                .collect()
        };
        let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let slots = strip(&label_refs, limits.max_slot, "entity label")?;
        let context_texts: Vec<String> = labels
            .iter()
            .enumerate()
            .map(
                |(i, l)| match descriptions.get(i).and_then(Option::as_deref) {
                    Some(d) if !d.trim().is_empty() => format!("{l} : {d}"),
                    _ => l.clone(),
                },
            )
            .collect();
        let context_refs: Vec<&str> = context_texts.iter().map(String::as_str).collect();
        let contexts = strip(&context_refs, limits.max_context, "entity")?;
        let relation_refs: Vec<&str> = relations.iter().map(String::as_str).collect();
        let relations = strip(&relation_refs, limits.max_relation, "relation")?;
        Ok(Self {
            slots,
            contexts,
            relations,
        })
    }
}

/// How candidates are scored; both give the same scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// One row per query and distinct candidate length (MLMLM's way).
    ByLength,
    /// One row per query and candidate (the naive reference).
    PerCandidate,
}

/// What a scorer has run so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScorerCounts {
    /// Queries scored.
    pub queries: u64,
    /// Rows run through the model (each a forward pass of one sequence).
    pub rows: u64,
    /// Calls of the model (batches of rows).
    pub batches: u64,
}

/// The candidates of one slot length.
#[derive(Debug)]
struct LengthGroup {
    len: usize,
    entities: Vec<u32>,
    /// `[C, len]` token ids.
    tokens: Tensor,
}

/// MLMLM's link scorer over a masked LM; see the module docs.
pub struct MlmLinkScorer<'m> {
    model: &'m dyn MaskedLm,
    layout: SlotLayout,
    texts: LinkTexts,
    groups: Vec<LengthGroup>,
    rows_per_batch: usize,
    scoring: Scoring,
    device: Device,
    counts: Cell<ScorerCounts>,
}

impl<'m> MlmLinkScorer<'m> {
    /// A scorer of every entity of `texts` under `model`, `rows_per_batch`
    /// rows a forward pass.
    pub fn new(
        model: &'m dyn MaskedLm,
        layout: SlotLayout,
        texts: LinkTexts,
        rows_per_batch: usize,
        scoring: Scoring,
        device: Device,
    ) -> Result<Self> {
        if rows_per_batch == 0 {
            return Err(Error::InvalidOption {
                name: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        let row_max = texts.longest_row();
        let positions = usize::try_from(model.max_positions()).unwrap_or(0);
        if row_max > positions {
            return Err(Error::InvalidOption {
                name: "text limits",
                reason: format!(
                    "rows of up to {row_max} tokens exceed the model's {positions} positions"
                ),
            });
        }
        let vocab = model.vocab_size();
        if let Some(bad) = texts
            .slots
            .iter()
            .chain(&texts.contexts)
            .chain(&texts.relations)
            .flatten()
            .find(|&&t| i64::from(t) >= vocab)
        {
            return Err(Error::InvalidOption {
                name: "texts",
                reason: format!("token id {bad} is outside the model's vocabulary of {vocab}"),
            });
        }
        let mut by_len: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        for (e, s) in texts.slots.iter().enumerate() {
            by_len.entry(s.len()).or_default().push(e as u32);
        }
        let groups = by_len
            .into_iter()
            .map(|(len, entities)| {
                let flat: Vec<i64> = entities
                    .iter()
                    .flat_map(|&e| texts.slots[e as usize].iter().map(|&t| i64::from(t)))
                    .collect();
                let tokens = Tensor::f_from_slice(&flat)?
                    .f_view([entities.len() as i64, len as i64])?
                    .f_to_device(device)?;
                Ok(LengthGroup {
                    len,
                    entities,
                    tokens,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            model,
            layout,
            texts,
            groups,
            rows_per_batch,
            scoring,
            device,
            counts: Cell::new(ScorerCounts::default()),
        })
    }

    /// The distinct slot lengths of the candidates, ascending.
    pub fn candidate_lengths(&self) -> Vec<usize> {
        self.groups.iter().map(|g| g.len).collect()
    }

    /// How many candidates have each slot length, in the order of
    /// [`Self::candidate_lengths`]. A row with `k` masks tells the model
    /// the answer has `k` tokens, so a length few entities share scores
    /// them high whatever the query: the mean log-likelihood does not
    /// compare lengths on an equal footing.
    pub fn candidates_per_length(&self) -> Vec<usize> {
        self.groups.iter().map(|g| g.entities.len()).collect()
    }

    /// What has been run so far.
    pub fn counts(&self) -> ScorerCounts {
        self.counts.get()
    }

    fn row(&self, q: &LinkQuery, slot_len: usize) -> Result<SlotRow> {
        let known = self
            .texts
            .contexts
            .get(q.known as usize)
            .ok_or_else(|| out_of_range("entity", q.known))?;
        let relation = self
            .texts
            .relations
            .get(q.relation as usize)
            .ok_or_else(|| out_of_range("relation", q.relation))?;
        let slot = match q.direction {
            Direction::Tail => Slot::Tail,
            Direction::Head => Slot::Head,
        };
        Ok(self.layout.row(slot, known, relation, slot_len))
    }

    /// `[rows * slot_len, V]` log-probabilities at the slots of `rows`.
    fn slot_log_probs(&self, rows: &[SlotRow]) -> Result<Tensor> {
        let batch = self.layout.batch(rows, None)?;
        let shape = [batch.batch_size as i64, batch.seq_len as i64];
        let grid = |v: &[i64]| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(v)?
                .f_view(shape)?
                .f_to_device(self.device)?)
        };
        let input = MlmInput::new(grid(&batch.input_ids)?)
            .with_token_type_ids(grid(&batch.token_type_ids)?)
            .with_attention_mask(grid(&batch.attention_mask)?);
        let flat =
            Tensor::f_from_slice(&batch.masked_flat_positions())?.f_to_device(self.device)?;
        let lp = self.model.log_probs_at(&input, &flat)?;
        let mut c = self.counts.get();
        c.rows += rows.len() as u64;
        c.batches += 1;
        self.counts.set(c);
        Ok(lp)
    }

    fn score_by_length(&self, queries: &[LinkQuery], out: &mut [Vec<f32>]) -> Result<()> {
        let vocab = self.model.vocab_size();
        for g in &self.groups {
            let k = g.len as i64;
            for (chunk_index, chunk) in queries.chunks(self.rows_per_batch).enumerate() {
                let rows = chunk
                    .iter()
                    .map(|q| self.row(q, g.len))
                    .collect::<Result<Vec<_>>>()?;
                let n = rows.len() as i64;
                let lp = self.slot_log_probs(&rows)?.f_view([n, k, vocab])?;
                // sum_i log P(token_i of candidate c | row q), as [n, C].
                let mut sum =
                    Tensor::f_zeros([n, g.entities.len() as i64], (Kind::Float, self.device))?;
                for i in 0..k {
                    let at_i = lp.f_select(1, i)?;
                    sum = sum.f_add(&at_i.f_index_select(1, &g.tokens.f_select(1, i)?)?)?;
                }
                let mean = sum.f_div_scalar(k as f64)?.f_contiguous()?;
                let values = Vec::<f32>::try_from(&mean.f_view([-1])?)?;
                let first = chunk_index * self.rows_per_batch;
                for (r, scores) in values.chunks(g.entities.len()).enumerate() {
                    let row = &mut out[first + r];
                    for (&e, &s) in g.entities.iter().zip(scores) {
                        row[e as usize] = s;
                    }
                }
            }
        }
        Ok(())
    }

    fn score_per_candidate(&self, queries: &[LinkQuery], out: &mut [Vec<f32>]) -> Result<()> {
        let pairs: Vec<(usize, u32)> = (0..queries.len())
            .flat_map(|q| (0..self.texts.slots.len() as u32).map(move |e| (q, e)))
            .collect();
        for chunk in pairs.chunks(self.rows_per_batch) {
            let rows = chunk
                .iter()
                .map(|&(q, e)| self.row(&queries[q], self.texts.slots[e as usize].len()))
                .collect::<Result<Vec<_>>>()?;
            let lp = self.slot_log_probs(&rows)?;
            let targets: Vec<i64> = chunk
                .iter()
                .flat_map(|&(_, e)| self.texts.slots[e as usize].iter().map(|&t| i64::from(t)))
                .collect();
            let picked = lp.f_gather(
                1,
                &Tensor::f_from_slice(&targets)?
                    .f_to_device(self.device)?
                    .f_unsqueeze(1)?,
                false,
            )?;
            let picked = Vec::<f32>::try_from(&picked.f_view([-1])?)?;
            let mut at = 0;
            for &(q, e) in chunk {
                let k = self.texts.slots[e as usize].len();
                let sum: f64 = picked[at..at + k].iter().map(|&v| f64::from(v)).sum();
                out[q][e as usize] = (sum / k as f64) as f32;
                at += k;
            }
        }
        Ok(())
    }
}

fn out_of_range(what: &'static str, id: u32) -> Error {
    Error::InvalidOption {
        name: what,
        reason: format!("id {id} has no text"),
    }
}

impl LinkScorer for MlmLinkScorer<'_> {
    fn num_entities(&self) -> usize {
        self.texts.slots.len()
    }

    fn score(&self, queries: &[LinkQuery]) -> Result<Vec<Vec<f32>>> {
        let _g = tch::no_grad_guard();
        let mut out = vec![vec![f32::NAN; self.num_entities()]; queries.len()];
        match self.scoring {
            Scoring::ByLength => self.score_by_length(queries, &mut out)?,
            Scoring::PerCandidate => self.score_per_candidate(queries, &mut out)?,
        }
        let mut c = self.counts.get();
        c.queries += queries.len() as u64;
        self.counts.set(c);
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_fixture as fixture;
    use cloze_models::load_pretrained;

    fn texts() -> LinkTexts {
        // Five entities of lengths 1, 2, 2, 3, 1 (ids below the fixture's
        // vocabulary, away from its specials), two relations.
        LinkTexts {
            slots: vec![
                vec![17],
                vec![23, 31],
                vec![40, 41],
                vec![50, 51, 52],
                vec![60],
            ],
            contexts: vec![
                vec![17, 18],
                vec![23, 31],
                vec![40, 41, 42],
                vec![50, 51, 52],
                vec![60],
            ],
            relations: vec![vec![70], vec![71, 72]],
        }
    }

    fn layout() -> SlotLayout {
        SlotLayout {
            cls: 2,
            sep: 3,
            mask: 4,
            pad: 0,
        }
    }

    fn queries() -> Vec<LinkQuery> {
        vec![
            LinkQuery {
                known: 0,
                relation: 0,
                direction: Direction::Tail,
            },
            LinkQuery {
                known: 3,
                relation: 1,
                direction: Direction::Head,
            },
            LinkQuery {
                known: 2,
                relation: 1,
                direction: Direction::Tail,
            },
        ]
    }

    #[test]
    fn grouped_scoring_equals_the_naive_per_candidate_scores() {
        let loaded = load_pretrained(&fixture(), Device::Cpu).unwrap();
        let by_len = MlmLinkScorer::new(
            &loaded.model,
            layout(),
            texts(),
            2,
            Scoring::ByLength,
            Device::Cpu,
        )
        .unwrap();
        let naive = MlmLinkScorer::new(
            &loaded.model,
            layout(),
            texts(),
            3,
            Scoring::PerCandidate,
            Device::Cpu,
        )
        .unwrap();
        let q = queries();
        let a = by_len.score(&q).unwrap();
        let b = naive.score(&q).unwrap();
        for (ra, rb) in a.iter().zip(&b) {
            for (x, y) in ra.iter().zip(rb) {
                assert!(x.is_finite() && (x - y).abs() < 1e-5, "{x} vs {y}");
            }
        }
        // One row per query and distinct length (1, 2, 3), against one per
        // query and candidate.
        assert_eq!(by_len.candidate_lengths(), [1, 2, 3]);
        assert_eq!(by_len.candidates_per_length(), [2, 2, 1]);
        assert_eq!(by_len.counts().rows, 3 * 3);
        assert_eq!(by_len.counts().batches, 3 * 2); // 3 queries in batches of 2, per length
        assert_eq!(naive.counts().rows, 3 * 5);
        assert_eq!(naive.counts().queries, 3);
    }

    #[test]
    fn scores_average_log_probabilities_not_logits() {
        let loaded = load_pretrained(&fixture(), Device::Cpu).unwrap();
        let scorer = MlmLinkScorer::new(
            &loaded.model,
            layout(),
            texts(),
            8,
            Scoring::ByLength,
            Device::Cpu,
        )
        .unwrap();
        let q = queries()[1]; // head asked, given entity 3 and relation 1
        let s = scorer.score(&[q]).unwrap();
        // Entity 3 = [50, 51, 52]: its row has 3 masks at positions 1..4.
        let row = layout().row(Slot::Head, &[50, 51, 52], &[71, 72], 3);
        let ids: Vec<i64> = row.ids.iter().map(|&t| i64::from(t)).collect();
        let segs: Vec<i64> = row.segments.iter().map(|&t| i64::from(t)).collect();
        let input = MlmInput::new(Tensor::from_slice(&ids).unsqueeze(0))
            .with_token_type_ids(Tensor::from_slice(&segs).unsqueeze(0));
        let flat = Tensor::from_slice(&[1i64, 2, 3]);
        let logits = loaded
            .model
            .forward_t(&input, Some(&flat), false)
            .unwrap()
            .mlm_logits;
        let lp = logits.log_softmax(-1, Kind::Float);
        let pick = |t: &Tensor, i: i64, tok: i64| t.double_value(&[i, tok]);
        let mean_lp = (pick(&lp, 0, 50) + pick(&lp, 1, 51) + pick(&lp, 2, 52)) / 3.0;
        let mean_logit = (pick(&logits, 0, 50) + pick(&logits, 1, 51) + pick(&logits, 2, 52)) / 3.0;
        let got = f64::from(s[0][3]);
        assert!((got - mean_lp).abs() < 1e-5, "{got} vs {mean_lp}");
        assert!(
            (got - mean_logit).abs() > 1e-2,
            "logits would give {mean_logit}"
        );
        assert!(got < 0.0);
    }

    #[test]
    fn bad_texts_and_options_are_refused() {
        let loaded = load_pretrained(&fixture(), Device::Cpu).unwrap();
        let mut t = texts();
        t.slots[0] = vec![u32::MAX];
        assert!(MlmLinkScorer::new(
            &loaded.model,
            layout(),
            t,
            4,
            Scoring::ByLength,
            Device::Cpu
        )
        .is_err());
        assert!(MlmLinkScorer::new(
            &loaded.model,
            layout(),
            texts(),
            0,
            Scoring::ByLength,
            Device::Cpu
        )
        .is_err());
        let s = MlmLinkScorer::new(
            &loaded.model,
            layout(),
            texts(),
            4,
            Scoring::ByLength,
            Device::Cpu,
        )
        .unwrap();
        let q = LinkQuery {
            known: 99,
            relation: 0,
            direction: Direction::Tail,
        };
        assert!(s.score(&[q]).is_err());
    }
}

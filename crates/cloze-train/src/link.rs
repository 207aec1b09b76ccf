//! MLMLM training on the trainer (Clouatre et al. 2021): a masked LM
//! fine-tuned on a knowledge graph's training triples, each asked in both
//! directions (the tail from head and relation, the head from relation and
//! tail) with the asked entity's tokens all masked
//! ([`cloze_mask::link::SlotLayout`]); the loss is the ordinary masked-LM
//! cross-entropy at the slot (`[objective] kind = "mlm"`).
//!
//! - [`LinkSource`]: a [`DataSource`] of [`LinkExample`]s. Nothing is
//!   random in a row (the slot is fully masked), so only the epoch order
//!   depends on the seed.
//! - [`LinkEval`]: the held-out task during training: filtered MRR and
//!   Hits@k of `cloze_eval::kg_score`'s scorer on (a prefix of) the valid
//!   triples, plus the slot cross-entropy; the best checkpoint is the one
//!   with the highest filtered MRR.

use cloze_core::Report;
use cloze_eval::kg_score::{LinkTexts, MlmLinkScorer, Scoring};
use cloze_eval::link::evaluate_links;
use cloze_eval::MaskedLm;
use cloze_mask::link::{Slot, SlotLayout};
use cloze_mask::Batch;
use cloze_models::MlmInput;
use cloze_text::kg::{KnownAnswers, Triple};
use tch::{Device, Kind, Reduction, Tensor};

use crate::batch::{PretrainModel, TensorBatch};
use crate::data::epoch_order;
use crate::error::{Error, Result};
use crate::objective::{accuracy, scalar};
use crate::trainer::{DataSource, HeldOut};

/// One training question: the `slot` end of a triple asked, the other end
/// (`known`) and the relation given, `answer` expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkExample {
    /// Which end is masked.
    pub slot: Slot,
    /// The given entity.
    pub known: u32,
    /// The relation.
    pub relation: u32,
    /// The masked entity.
    pub answer: u32,
}

impl LinkExample {
    /// The two questions of each triple: every tail question in triple
    /// order, then every head question.
    pub fn both_directions(triples: &[Triple]) -> Vec<LinkExample> {
        let tails = triples.iter().map(|t| LinkExample {
            slot: Slot::Tail,
            known: t.head,
            relation: t.relation,
            answer: t.tail,
        });
        let heads = triples.iter().map(|t| LinkExample {
            slot: Slot::Head,
            known: t.tail,
            relation: t.relation,
            answer: t.head,
        });
        tails.chain(heads).collect()
    }
}

/// Lays out examples with the answer's tokens as targets.
fn batch_of(texts: &LinkTexts, layout: &SlotLayout, examples: &[LinkExample]) -> Result<Batch> {
    let text = |v: &[Vec<u32>], id: u32, what: &str| -> Result<Vec<u32>> {
        v.get(id as usize)
            .cloned()
            .ok_or_else(|| Error::DataMismatch(format!("{what} {id} has no text")))
    };
    let mut rows = Vec::with_capacity(examples.len());
    let mut answers = Vec::with_capacity(examples.len());
    for e in examples {
        let answer = text(&texts.slots, e.answer, "entity")?;
        let known = text(&texts.contexts, e.known, "entity")?;
        let relation = text(&texts.relations, e.relation, "relation")?;
        rows.push(layout.row(e.slot, &known, &relation, answer.len()));
        answers.push(answer);
    }
    let refs: Vec<&[u32]> = answers.iter().map(Vec::as_slice).collect();
    Ok(layout.batch(&rows, Some(&refs))?)
}

/// Training questions as batches; see the module docs.
#[derive(Debug)]
pub struct LinkSource {
    examples: Vec<LinkExample>,
    texts: LinkTexts,
    layout: SlotLayout,
    seed: u64,
}

impl LinkSource {
    /// Batches of `examples` over `texts`, in an order drawn from `seed`.
    pub fn new(
        examples: Vec<LinkExample>,
        texts: LinkTexts,
        layout: SlotLayout,
        seed: u64,
    ) -> Self {
        Self {
            examples,
            texts,
            layout,
            seed,
        }
    }
}

impl DataSource for LinkSource {
    fn num_examples(&self) -> usize {
        self.examples.len()
    }

    fn epoch_order(&self, epoch: u64) -> Result<Vec<usize>> {
        Ok(epoch_order(self.examples.len(), self.seed, epoch))
    }

    fn batch(&self, _epoch: u64, _first_index: u64, indices: &[usize]) -> Result<Batch> {
        let picked = crate::data::pick(&self.examples, indices)?;
        batch_of(&self.texts, &self.layout, &picked)
    }
}

/// A model being trained, seen as a [`MaskedLm`] by the scorer.
pub struct TrainedLm<'a> {
    /// The model.
    pub model: &'a dyn PretrainModel,
    /// Its vocabulary size.
    pub vocab_size: i64,
    /// Its position embeddings.
    pub max_positions: i64,
}

impl MaskedLm for TrainedLm<'_> {
    fn vocab_size(&self) -> i64 {
        self.vocab_size
    }

    fn max_positions(&self) -> i64 {
        self.max_positions
    }

    fn log_probs_at(
        &self,
        input: &MlmInput,
        flat_positions: &Tensor,
    ) -> cloze_eval::Result<Tensor> {
        let boxed = |e: Error| cloze_eval::Error::Forward(Box::new(e));
        let _g = tch::no_grad_guard();
        let size = input.input_ids.size();
        let (b, l) = (
            size.first().copied().unwrap_or(0),
            size.get(1).copied().unwrap_or(0),
        );
        let opts = (Kind::Int64, input.input_ids.device());
        let attention_mask = match &input.attention_mask {
            Some(m) => m.shallow_clone(),
            None => Tensor::f_ones([b, l], opts)?,
        };
        let real_tokens = attention_mask.f_sum(Kind::Int64)?.f_int64_value(&[])?;
        let batch = TensorBatch {
            input_ids: input.input_ids.shallow_clone(),
            token_type_ids: match &input.token_type_ids {
                Some(t) => t.shallow_clone(),
                None => Tensor::f_zeros([b, l], opts)?,
            },
            attention_mask,
            position_ids: input.position_ids.as_ref().map(Tensor::shallow_clone),
            attention_3d: input.attention_3d.as_ref().map(Tensor::shallow_clone),
            masked_positions: flat_positions.shallow_clone(),
            targets: flat_positions.f_zeros_like()?,
            pseudo: None,
            response: None,
            role_ids: None,
            pair_labels: None,
            class_labels: None,
            token_labels: None,
            batch_size: usize::try_from(b).unwrap_or(0),
            seq_len: usize::try_from(l).unwrap_or(0),
            real_tokens: usize::try_from(real_tokens).unwrap_or(0),
        };
        let out = self.model.forward(&batch, false).map_err(boxed)?;
        Ok(out.mlm_logits.f_log_softmax(-1, Kind::Float)?)
    }
}

/// Held-out link prediction during training; see the module docs.
#[derive(Debug)]
pub struct LinkEval {
    triples: Vec<Triple>,
    known: KnownAnswers,
    texts: LinkTexts,
    layout: SlotLayout,
    vocab_size: i64,
    max_positions: i64,
    batch_size: usize,
}

impl LinkEval {
    /// Ranks `triples` (both directions, filtered by `known`) with a model
    /// of `vocab_size` tokens and `max_positions` positions; `batch_size`
    /// rows a forward pass.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        triples: Vec<Triple>,
        known: KnownAnswers,
        texts: LinkTexts,
        layout: SlotLayout,
        vocab_size: i64,
        max_positions: i64,
        batch_size: usize,
    ) -> Self {
        Self {
            triples,
            known,
            texts,
            layout,
            vocab_size,
            max_positions,
            batch_size: batch_size.max(1),
        }
    }
}

impl HeldOut for LinkEval {
    fn evaluate(&self, model: &dyn PretrainModel, device: Device) -> Result<Report> {
        let _guard = tch::no_grad_guard();
        // The slot cross-entropy of the true answers.
        let examples = LinkExample::both_directions(&self.triples);
        let (mut nll, mut hits, mut n) = (0.0, 0.0, 0u64);
        for chunk in examples.chunks(self.batch_size) {
            let b = batch_of(&self.texts, &self.layout, chunk)?;
            let tb = TensorBatch::from_batch(&b, device)?;
            let out = model.forward(&tb, false)?;
            let count = tb.targets.size()[0].max(0) as u64;
            let loss = out.mlm_logits.f_cross_entropy_loss::<Tensor>(
                &tb.targets,
                None,
                Reduction::Sum,
                -100,
                0.0,
            )?;
            nll += scalar(&loss)?;
            hits += accuracy(&out.mlm_logits, &tb.targets)? * count as f64;
            n += count;
        }
        let lm = TrainedLm {
            model,
            vocab_size: self.vocab_size,
            max_positions: self.max_positions,
        };
        let scorer = MlmLinkScorer::new(
            &lm,
            self.layout,
            self.texts.clone(),
            self.batch_size,
            Scoring::ByLength,
            device,
        )?;
        let ranks = evaluate_links(&scorer, &self.triples, &self.known, self.batch_size)?;
        let d = n.max(1) as f64;
        let both = ranks.both();
        Ok(Report::new()
            .loss("link", nll / d)
            .accuracy("link", hits / d)
            .count("link", n)
            .loss("mr", both.filtered.mr())
            .accuracy("mrr", both.filtered.mrr())
            .accuracy("hits@1", both.filtered.hits(1).unwrap_or(f64::NAN))
            .accuracy("hits@10", both.filtered.hits(10).unwrap_or(f64::NAN)))
    }

    fn primary_loss(&self) -> &str {
        "link"
    }

    /// The highest filtered MRR is the best checkpoint.
    fn selection_score(&self, report: &Report) -> Option<f64> {
        report.accuracies.get("mrr").map(|m| -m)
    }
}

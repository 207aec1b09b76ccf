//! PLATO-style dialogue training on the trainer (Bao et al., PLATO-2 and
//! PLATO-XL): rows from `cloze_mask::DialogueBuilder`, the response's
//! next-token loss, optionally MLM on the context.
//!
//! - [`DialogueLoss`] (`[objective] kind = "dialogue"`): the mean negative
//!   log-likelihood of each response token given the context and the
//!   response before it (PLATO-XL's loss), reported as `response` with its
//!   accuracy; plus `objective.mlm_weight` times the context MLM loss,
//!   reported as `mlm`, when the rows have context MLM targets; plus
//!   `objective.pair_weight` (a fine-tuning run's
//!   `dialogue.coherence_weight`) times PLATO-2's response coherence estimation
//!   loss, reported as `coherence`, when the batch has coherence rows (the
//!   two-way cross-entropy of the pair head on the rows with a pair label).
//! - [`DialogueSource`]: a [`DataSource`] of encoded samples; example `i` of
//!   epoch `e` is laid out from the stream `(seed, e, position in the
//!   epoch)`, so a resumed run sees the same rows. With `coherence` in the
//!   layout, each example also draws a distractor response from a sample of
//!   another dialogue, from its own stream `(seed, Stream::Negatives, e,
//!   position)`.
//! - [`DialogueEval`]: held-out samples laid out once under a fixed seed;
//!   the response loss per token (its exponential is the held-out
//!   perplexity) and next-token accuracy, the loss choosing the best
//!   checkpoint.

use cloze_core::rng::{mix_seed, rng_for, Stream};
use cloze_core::Report;
use cloze_mask::{Batch, DialogueBuilder, DialogueExample};
use rand::Rng;
use tch::{Reduction, Tensor};

use crate::batch::{ModelOutput, PretrainModel, TensorBatch};
use crate::data::epoch_order;
use crate::error::{Error, Result};
use crate::objective::{
    accuracy, held_out_positions, labelled, scalar, LossPart, Losses, Objective,
};
use crate::trainer::{DataSource, HeldOut};

/// The dialogue loss; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct DialogueLoss {
    /// Weight of the context MLM loss (used only when rows have MLM targets).
    pub mlm_weight: f64,
    /// Weight of the coherence loss (used only when the batch has coherence rows).
    pub coherence_weight: f64,
}

impl Objective for DialogueLoss {
    fn name(&self) -> &str {
        "dialogue"
    }

    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> Result<Losses> {
        let (Some(logits), Some(response)) = (&out.response_logits, &batch.response) else {
            return Err(Error::DataMismatch(
                "objective dialogue needs dialogue rows (cloze_mask::DialogueBuilder) with \
                 response tokens to predict"
                    .to_owned(),
            ));
        };
        let loss = mean_cross_entropy(logits, &response.targets)?;
        let mut report = Report::new()
            .loss("response", scalar(&loss)?)
            .accuracy("response", accuracy(logits, &response.targets)?)
            .count("response", response.targets.size()[0].max(0) as u64);
        let mut parts = vec![LossPart {
            term: loss,
            count: labelled(&response.targets)?,
        }];
        if batch.num_masked() > 0 && self.mlm_weight > 0.0 {
            let mlm = mean_cross_entropy(&out.mlm_logits, &batch.targets)?;
            report = report
                .loss("mlm", scalar(&mlm)?)
                .accuracy("mlm", accuracy(&out.mlm_logits, &batch.targets)?)
                .count("mlm", batch.num_masked().max(0) as u64);
            parts.push(LossPart {
                term: mlm.f_mul_scalar(self.mlm_weight)?,
                count: labelled(&batch.targets)?,
            });
        }
        if let Some(labels) = &batch.pair_labels {
            let Some(pair) = &out.pair_logits else {
                return Err(Error::DataMismatch(
                    "the batch has coherence rows but the model has no pair head to classify them"
                        .to_owned(),
                ));
            };
            let keep = labels.f_ne(-100)?;
            let (logits, wanted) = (
                pair.f_index(&[Some(&keep)])?,
                labels.f_index(&[Some(&keep)])?,
            );
            let rows = wanted.size()[0].max(0) as u64;
            if rows > 0 && self.coherence_weight > 0.0 {
                let loss = mean_cross_entropy(&logits, &wanted)?;
                report = report
                    .loss("coherence", scalar(&loss)?)
                    .accuracy("coherence", accuracy(&logits, &wanted)?)
                    .count("coherence", rows);
                parts.push(LossPart {
                    term: loss.f_mul_scalar(self.coherence_weight)?,
                    count: rows as f64,
                });
            }
        }
        Losses::of_parts(parts, report)
    }
}

/// Mean cross-entropy of `logits` against `targets`, `-100` ignored.
fn mean_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(logits.f_cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, -100, 0.0)?)
}

/// Encoded dialogue samples as training batches.
#[derive(Debug)]
pub struct DialogueSource {
    examples: Vec<DialogueExample>,
    builder: DialogueBuilder,
    seed: u64,
    groups: Vec<String>,
}

/// Tries at drawing a distractor from another dialogue before giving up.
const NEGATIVE_TRIES: usize = 1000;

impl DialogueSource {
    /// Batches of `examples` laid out by `builder` under `seed`.
    pub fn new(examples: Vec<DialogueExample>, builder: DialogueBuilder, seed: u64) -> Self {
        Self {
            examples,
            builder,
            seed,
            groups: Vec::new(),
        }
    }

    /// Names the dialogue (scene, conversation) of every example: needed
    /// when the layout trains coherence, whose distractors must come from
    /// other dialogues. Errors unless there is one name per example and,
    /// with coherence on, at least two dialogues.
    pub fn with_groups(mut self, groups: Vec<String>) -> Result<Self> {
        if groups.len() != self.examples.len() {
            return Err(Error::DataMismatch(format!(
                "{} dialogue names for {} samples",
                groups.len(),
                self.examples.len()
            )));
        }
        if self.builder.config().coherence && groups.iter().all(|g| g == &groups[0]) {
            return Err(Error::DataMismatch(
                "coherence training draws distractor responses from other dialogues, and the \
                 training samples come from one dialogue only"
                    .to_owned(),
            ));
        }
        self.groups = groups;
        Ok(self)
    }

    /// The distractor response of example `i` at `position` of `epoch`: the
    /// response of a sample from another dialogue.
    fn negative(&self, i: usize, epoch: u64, position: u64) -> Result<Vec<u32>> {
        let mut rng = rng_for(self.seed, Stream::Negatives, mix_seed(0, epoch, position));
        let n = self.examples.len();
        for _ in 0..NEGATIVE_TRIES {
            let j = rng.random_range(0..n);
            if self.groups[j] != self.groups[i] {
                return Ok(self.examples[j].response.clone());
            }
        }
        Err(Error::DataMismatch(format!(
            "found no sample of another dialogue than sample {i}'s in {NEGATIVE_TRIES} draws"
        )))
    }
}

impl DataSource for DialogueSource {
    fn num_examples(&self) -> usize {
        self.examples.len()
    }

    fn epoch_order(&self, epoch: u64) -> Result<Vec<usize>> {
        Ok(epoch_order(self.examples.len(), self.seed, epoch))
    }

    fn batch(&self, epoch: u64, first_index: u64, indices: &[usize]) -> Result<Batch> {
        let picked = crate::data::pick(&self.examples, indices)?;
        if !self.builder.config().coherence {
            return Ok(self.builder.batch(&picked, self.seed, epoch, first_index));
        }
        if self.groups.len() != self.examples.len() {
            return Err(Error::DataMismatch(
                "coherence training needs the dialogue of every sample (DialogueSource::with_groups)"
                    .to_owned(),
            ));
        }
        let negatives = indices
            .iter()
            .enumerate()
            .map(|(k, &i)| self.negative(i, epoch, first_index + k as u64))
            .collect::<Result<Vec<_>>>()?;
        Ok(self
            .builder
            .batch_with_negatives(&picked, &negatives, self.seed, epoch, first_index)?)
    }
}

/// Held-out samples as fixed batches; see the module docs.
#[derive(Debug)]
pub struct DialogueEval {
    batches: Vec<Batch>,
}

impl DialogueEval {
    /// `examples` laid out by `builder` under `seed` (epoch 0), `batch_size` a batch.
    pub fn new(
        examples: &[DialogueExample],
        builder: &DialogueBuilder,
        seed: u64,
        batch_size: usize,
    ) -> Self {
        let size = batch_size.max(1);
        let batches = examples
            .chunks(size)
            .enumerate()
            .map(|(k, c)| builder.batch(c, seed, 0, (k * size) as u64))
            .collect();
        Self { batches }
    }
}

impl HeldOut for DialogueEval {
    fn evaluate(&self, model: &dyn PretrainModel, device: tch::Device) -> Result<Report> {
        held_out_positions(&self.batches, model, device, "response", |out, tb| {
            match (&out.response_logits, &tb.response) {
                (Some(logits), Some(p)) => {
                    Some((logits.shallow_clone(), p.targets.shallow_clone()))
                }
                _ => None,
            }
        })
    }

    fn primary_loss(&self) -> &str {
        "response"
    }
}

//! UniLM-v2 sequence-to-sequence fine-tuning on the trainer (Bao et al. 2020,
//! section 3.4; microsoft/unilm's `s2s-ft`): rows from
//! `cloze_mask::Seq2SeqBuilder`, the loss on the pseudo tokens only.
//!
//! - [`Seq2SeqLoss`] (`[objective] kind = "seq2seq"`): cross-entropy of each
//!   target token at its pseudo token, with label smoothing 0.1 (s2s-ft's
//!   `--label_smoothing` default), reported as `s2s` with its accuracy.
//! - [`Seq2SeqSource`]: a [`DataSource`] of encoded pairs; example `i` of
//!   epoch `e` is laid out from the stream `(seed, e, position in the
//!   epoch)`, so a resumed run sees the same rows.

use cloze_core::Report;
use cloze_mask::{Batch, Seq2SeqBuilder, Seq2SeqExample};
use tch::{Reduction, Tensor};

use crate::batch::{ModelOutput, TensorBatch};
use crate::data::epoch_order;
use crate::error::{Error, Result};
use crate::objective::{accuracy, scalar, Losses, Objective};
use crate::trainer::DataSource;

/// s2s-ft's label smoothing.
pub const LABEL_SMOOTHING: f64 = 0.1;

/// The sequence-to-sequence loss; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Seq2SeqLoss {
    /// Label smoothing of the cross-entropy (0.1).
    pub label_smoothing: f64,
}

impl Default for Seq2SeqLoss {
    fn default() -> Self {
        Self {
            label_smoothing: LABEL_SMOOTHING,
        }
    }
}

impl Objective for Seq2SeqLoss {
    fn name(&self) -> &str {
        "seq2seq"
    }

    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> Result<Losses> {
        let (Some(logits), Some(pseudo)) = (&out.pseudo_logits, &batch.pseudo) else {
            return Err(Error::DataMismatch(
                "objective seq2seq needs sequence-to-sequence rows (cloze_mask::Seq2SeqBuilder) \
                 and a model that predicts their pseudo tokens"
                    .to_owned(),
            ));
        };
        let loss = logits.f_cross_entropy_loss::<Tensor>(
            &pseudo.targets,
            None,
            Reduction::Mean,
            -100,
            self.label_smoothing,
        )?;
        let report = Report::new()
            .loss("s2s", scalar(&loss)?)
            .accuracy("s2s", accuracy(logits, &pseudo.targets)?)
            .count("s2s", pseudo.targets.size()[0].max(0) as u64);
        Ok(Losses {
            total: loss,
            report,
        })
    }
}

/// Encoded source/target pairs as training batches.
#[derive(Debug)]
pub struct Seq2SeqSource {
    examples: Vec<Seq2SeqExample>,
    builder: Seq2SeqBuilder,
    seed: u64,
}

impl Seq2SeqSource {
    /// Batches of `examples` laid out by `builder` under `seed`.
    pub fn new(examples: Vec<Seq2SeqExample>, builder: Seq2SeqBuilder, seed: u64) -> Self {
        Self {
            examples,
            builder,
            seed,
        }
    }
}

impl DataSource for Seq2SeqSource {
    fn num_examples(&self) -> usize {
        self.examples.len()
    }

    fn epoch_order(&self, epoch: u64) -> Result<Vec<usize>> {
        Ok(epoch_order(self.examples.len(), self.seed, epoch))
    }

    fn batch(&self, epoch: u64, first_index: u64, indices: &[usize]) -> Result<Batch> {
        let picked = indices
            .iter()
            .map(|&i| {
                self.examples
                    .get(i)
                    .cloned()
                    .ok_or_else(|| Error::DataMismatch(format!("example {i} out of range")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.builder.batch(&picked, self.seed, epoch, first_index))
    }
}

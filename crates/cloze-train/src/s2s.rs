//! UniLM-v2 sequence-to-sequence fine-tuning on the trainer (Bao et al. 2020,
//! section 3.4; microsoft/unilm's `s2s-ft`): rows from
//! `cloze_mask::Seq2SeqBuilder`, the loss on the pseudo tokens only.
//!
//! - [`Seq2SeqLoss`] (`[objective] kind = "seq2seq"`): cross-entropy of each
//!   target token at its pseudo token, with label smoothing 0.1 (s2s-ft's
//!   `run_seq2seq.py --label_smoothing` default), averaged over the batch's
//!   target tokens (the final `[SEP]` included) and reported as `s2s` with
//!   its accuracy. s2s-ft's `LabelSmoothingLoss` (`s2s_ft/modeling.py`) is
//!   the KL divergence to `1 - 0.1` on the answer and `0.1 / (V - 2)` on
//!   every other id but `[PAD]`; libtorch's smoothing puts `0.1 / V` on every
//!   id. Besides a constant (the target's entropy) they differ in where the
//!   0.1 goes, which moves each optimal probability by at most `0.1 / V`.
//! - [`Seq2SeqSource`]: a [`DataSource`] of encoded pairs; example `i` of
//!   epoch `e` is laid out from the stream `(seed, e, position in the
//!   epoch)`, so a resumed run sees the same rows.
//! - [`Seq2SeqEval`]: held-out pairs laid out once under a fixed seed; their
//!   mean cross-entropy (no smoothing) and token accuracy at the pseudo
//!   tokens, the loss choosing the best checkpoint.

use cloze_core::Report;
use cloze_mask::{Batch, Seq2SeqBuilder, Seq2SeqExample};
use tch::{Reduction, Tensor};

use crate::batch::PretrainModel;
use crate::batch::{ModelOutput, TensorBatch};
use crate::data::epoch_order;
use crate::error::{Error, Result};
use crate::objective::{accuracy, held_out_positions, labelled, scalar, Losses, Objective};
use crate::trainer::{DataSource, HeldOut};

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
        let count = labelled(&pseudo.targets)?;
        Ok(Losses::mean(loss, count, report))
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
        let picked = crate::data::pick(&self.examples, indices)?;
        Ok(self.builder.batch(&picked, self.seed, epoch, first_index))
    }
}

/// Held-out pairs as fixed batches; see the module docs.
#[derive(Debug)]
pub struct Seq2SeqEval {
    batches: Vec<Batch>,
}

impl Seq2SeqEval {
    /// `examples` laid out by `builder` under `seed` (epoch 0), `batch_size` a batch.
    pub fn new(
        examples: &[Seq2SeqExample],
        builder: &Seq2SeqBuilder,
        seed: u64,
        batch_size: usize,
    ) -> Self {
        let batches = examples
            .chunks(batch_size.max(1))
            .enumerate()
            .map(|(k, c)| builder.batch(c, seed, 0, (k * batch_size.max(1)) as u64))
            .collect();
        Self { batches }
    }
}

impl HeldOut for Seq2SeqEval {
    fn evaluate(&self, model: &dyn PretrainModel, device: tch::Device) -> Result<Report> {
        held_out_positions(&self.batches, model, device, "s2s", |out, tb| {
            match (&out.pseudo_logits, &tb.pseudo) {
                (Some(logits), Some(p)) => {
                    Some((logits.shallow_clone(), p.targets.shallow_clone()))
                }
                _ => None,
            }
        })
    }

    fn primary_loss(&self) -> &str {
        "s2s"
    }
}

//! Masked batches as tensors, and the model interface the trainer drives.

use cloze_mask::batch::{Batch, MaskedTarget};
use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// One masked batch on the training device: [`cloze_mask::Batch`] as tensors.
#[derive(Debug)]
pub struct TensorBatch {
    /// `[B, L]` token ids after corruption.
    pub input_ids: Tensor,
    /// `[B, L]` segment ids.
    pub token_type_ids: Tensor,
    /// `[B, L]` 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// `[B, L]` explicit position ids, when the scheme sets them.
    pub position_ids: Option<Tensor>,
    /// `[B, L, L]` attention visibility (1 = query may see key), expanded
    /// from the batch's compact [`cloze_mask::Visibility`], when it has one.
    pub attention_3d: Option<Tensor>,
    /// `[N]` flat indices `row * L + pos` of the masked-LM positions.
    pub masked_positions: Tensor,
    /// `[N]` original token ids at those positions.
    pub targets: Tensor,
    /// Pseudo-token (`[P]`) positions and targets, when the scheme has them.
    pub pseudo: Option<PositionTargets>,
    /// Left-to-right response targets (a dialogue's next tokens), when the
    /// batch has them.
    pub response: Option<PositionTargets>,
    /// Speaker role ids `[B, L]`, when the batch has them.
    pub role_ids: Option<Tensor>,
    /// `[B]` NSP/SOP class per row, when the batch has pair labels.
    pub pair_labels: Option<Tensor>,
    /// `[B]` class label per row, when the batch has them.
    pub class_labels: Option<Tensor>,
    /// `[B, L]` class label per position (`-100` where none applies), when
    /// the batch has them (token classification).
    pub token_labels: Option<Tensor>,
    /// Rows.
    pub batch_size: usize,
    /// Padded row length.
    pub seq_len: usize,
    /// Non-padding tokens (what throughput is counted in).
    pub real_tokens: usize,
}

/// Predicted positions and their targets, as tensors.
#[derive(Debug)]
pub struct PositionTargets {
    /// `[N]` flat indices `row * L + pos`.
    pub positions: Tensor,
    /// `[N]` target ids.
    pub targets: Tensor,
}

impl PositionTargets {
    fn from_targets(b: &Batch, t: &[MaskedTarget], device: Device) -> Result<Self> {
        let targets: Vec<i64> = t.iter().map(|m| i64::from(m.target)).collect();
        Ok(Self {
            positions: Tensor::from_slice(&b.flat_positions(t)).f_to_device(device)?,
            targets: Tensor::from_slice(&targets)
                .f_to_kind(Kind::Int64)?
                .f_to_device(device)?,
        })
    }
}

impl TensorBatch {
    /// Copies a collated batch onto `device`.
    pub fn from_batch(b: &Batch, device: Device) -> Result<Self> {
        let (bs, len) = (b.batch_size as i64, b.seq_len as i64);
        let shape = [bs, len];
        let grid = |v: &[i64]| -> Result<Tensor> {
            Ok(Tensor::from_slice(v).f_view(shape)?.f_to_device(device)?)
        };
        let labels = |v: &Option<Vec<i64>>| -> Result<Option<Tensor>> {
            Ok(match v {
                Some(p) => Some(Tensor::from_slice(p).f_to_device(device)?),
                None => None,
            })
        };
        let mlm = PositionTargets::from_targets(b, &b.targets.masked_lm, device)?;
        let group = |t: &[MaskedTarget]| -> Result<Option<PositionTargets>> {
            if t.is_empty() {
                Ok(None)
            } else {
                Ok(Some(PositionTargets::from_targets(b, t, device)?))
            }
        };
        let pseudo = group(&b.targets.pseudo)?;
        let response = group(&b.targets.response)?;
        let attention_3d = match &b.visibility {
            Some(v) => Some(
                Tensor::from_slice(&v.dense(b.batch_size, b.seq_len, &b.attention_mask))
                    .f_view([bs, len, len])?
                    .f_to_device(device)?,
            ),
            None => None,
        };
        Ok(Self {
            input_ids: grid(&b.input_ids)?,
            token_type_ids: grid(&b.token_type_ids)?,
            attention_mask: grid(&b.attention_mask)?,
            position_ids: b.position_ids.as_deref().map(grid).transpose()?,
            attention_3d,
            masked_positions: mlm.positions,
            targets: mlm.targets,
            pseudo,
            response,
            role_ids: b.role_ids.as_deref().map(grid).transpose()?,
            pair_labels: labels(&b.targets.pair)?,
            class_labels: labels(&b.targets.class)?,
            token_labels: b.targets.tokens.as_deref().map(grid).transpose()?,
            batch_size: b.batch_size,
            seq_len: b.seq_len,
            real_tokens: b.real_tokens(),
        })
    }

    /// Number of predicted positions.
    pub fn num_masked(&self) -> i64 {
        self.masked_positions.size()[0]
    }
}

/// What a pretraining model returns for a batch.
#[derive(Debug)]
pub struct ModelOutput {
    /// `[N, V]` vocabulary logits at the masked positions only.
    pub mlm_logits: Tensor,
    /// `[B, 2]` NSP/SOP logits when the model has a pair head.
    pub pair_logits: Option<Tensor>,
    /// `[N_p, V]` vocabulary logits at the batch's pseudo-token positions,
    /// when the model predicts them (UniLM-v2).
    pub pseudo_logits: Option<Tensor>,
    /// `[N_r, V]` vocabulary logits at the batch's response positions (a
    /// dialogue's next-token predictions), when the batch has them.
    pub response_logits: Option<Tensor>,
    /// `[B, C]` class logits, when the model has a sequence-classification head.
    pub class_logits: Option<Tensor>,
    /// `[B, L, C]` per-position class logits, when the model has a
    /// token-classification head.
    pub token_logits: Option<Tensor>,
}

impl ModelOutput {
    /// Masked-LM logits only; add the other parts with the `with_*` methods.
    pub fn new(mlm_logits: Tensor) -> Self {
        Self {
            mlm_logits,
            pair_logits: None,
            pseudo_logits: None,
            response_logits: None,
            class_logits: None,
            token_logits: None,
        }
    }

    /// The output of a model without a masked-LM head: an empty `[0, 0]`
    /// `mlm_logits`; set the head's logits with the fields.
    pub fn without_mlm(device: Device) -> Result<Self> {
        Ok(Self::new(Tensor::f_zeros([0, 0], (Kind::Float, device))?))
    }

    /// Sets the NSP/SOP logits.
    pub fn with_pair_logits(mut self, logits: Option<Tensor>) -> Self {
        self.pair_logits = logits;
        self
    }
}

/// The model interface the trainer and evaluator need.
///
/// `cloze-models`' BERT implements it in this crate's `bert` module; tests use
/// small fakes. The model's variables must live in the `VarStore` given to the
/// trainer, so that the optimiser can take them over.
pub trait PretrainModel {
    /// Forward pass; `train` enables dropout.
    fn forward(&self, batch: &TensorBatch, train: bool) -> Result<ModelOutput>;
    /// Writes the model in HuggingFace format (`config.json`, `model.safetensors`) into `dir`.
    fn save(&self, dir: &std::path::Path) -> Result<()>;
    /// Copies weights saved by [`Self::save`] into the existing variables, in place.
    fn load_weights(&self, dir: &std::path::Path) -> Result<()>;
    /// The precision [`Self::forward`] computes in; the trainer refuses a
    /// model whose precision is not the run's `run.precision`. A model that
    /// only computes in fp32 keeps this default.
    fn precision(&self) -> cloze_models::Precision {
        cloze_models::Precision::Fp32
    }
}

impl TensorBatch {
    /// A random batch for benchmarks: uniform ids in `5..vocab`, every position
    /// real, each position predicted with probability `rate` (as HF's collator
    /// and `hf_train_bench.py` do). Seeded through libtorch's generator.
    pub fn synthetic(batch: i64, seq: i64, vocab: i64, rate: f64, seed: i64) -> Result<Self> {
        tch::manual_seed(seed);
        let opts = (Kind::Int64, Device::Cpu);
        let ids = Tensor::f_randint_low(5, vocab, [batch, seq], opts)?;
        let chosen = Tensor::f_rand([batch * seq], (Kind::Float, Device::Cpu))?.f_lt(rate)?;
        let positions = chosen.f_nonzero()?.f_view([-1])?;
        let targets = ids.f_view([-1])?.f_index_select(0, &positions)?;
        Ok(Self {
            token_type_ids: ids.f_zeros_like()?,
            attention_mask: ids.f_ones_like()?,
            input_ids: ids,
            position_ids: None,
            attention_3d: None,
            masked_positions: positions,
            targets,
            pseudo: None,
            response: None,
            role_ids: None,
            pair_labels: None,
            class_labels: None,
            token_labels: None,
            batch_size: batch as usize,
            seq_len: seq as usize,
            real_tokens: (batch * seq) as usize,
        })
    }
}

//! Masked batches as tensors, and the model interface the trainer drives.

use cloze_mask::batch::Batch;
use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// One masked batch on the training device.
#[derive(Debug)]
pub struct TensorBatch {
    /// `[B, L]` token ids after corruption.
    pub input_ids: Tensor,
    /// `[B, L]` segment ids.
    pub token_type_ids: Tensor,
    /// `[B, L]` 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// `[N]` flat indices `row * L + pos` of the predicted positions.
    pub masked_positions: Tensor,
    /// `[N]` original token ids at those positions.
    pub targets: Tensor,
    /// `[B]` NSP/SOP class per row, when the batch has pair labels.
    pub pair_labels: Option<Tensor>,
    /// Rows.
    pub batch_size: usize,
    /// Padded row length.
    pub seq_len: usize,
    /// Non-padding tokens (what throughput is counted in).
    pub real_tokens: usize,
}

impl TensorBatch {
    /// Copies a collated batch onto `device`.
    pub fn from_batch(b: &Batch, device: Device) -> Result<Self> {
        let (bs, len) = (b.batch_size as i64, b.seq_len as i64);
        let shape = [bs, len];
        let positions: Vec<i64> = b
            .masked
            .iter()
            .map(|m| m.row as i64 * len + m.pos as i64)
            .collect();
        let targets: Vec<i64> = b.masked.iter().map(|m| i64::from(m.target)).collect();
        let pair_labels = match &b.pair_labels {
            Some(p) => Some(Tensor::from_slice(p).f_to_device(device)?),
            None => None,
        };
        Ok(Self {
            input_ids: Tensor::from_slice(&b.input_ids)
                .f_view(shape)?
                .f_to_device(device)?,
            token_type_ids: Tensor::from_slice(&b.token_type_ids)
                .f_view(shape)?
                .f_to_device(device)?,
            attention_mask: Tensor::from_slice(&b.attention_mask)
                .f_view(shape)?
                .f_to_device(device)?,
            masked_positions: Tensor::from_slice(&positions).f_to_device(device)?,
            targets: Tensor::from_slice(&targets)
                .f_to_kind(Kind::Int64)?
                .f_to_device(device)?,
            pair_labels,
            batch_size: b.batch_size,
            seq_len: b.seq_len,
            real_tokens: b.attention_mask.iter().filter(|&&m| m != 0).count(),
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
            masked_positions: positions,
            targets,
            pair_labels: None,
            batch_size: batch as usize,
            seq_len: seq as usize,
            real_tokens: (batch * seq) as usize,
        })
    }
}

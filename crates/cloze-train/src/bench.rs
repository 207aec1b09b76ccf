//! The training step that `cloze bench train` and the criterion bench both time:
//! a BERT with HF's default dropout and initialisation, AdamW at lr 1e-4, and a
//! synthetic batch with 15% of positions predicted, as in `hf_train_bench.py`.
//! With [`StepObjective::Pmlm`] the same model trains UniLM-v2's pseudo-masked
//! LM on rows laid out by `cloze-mask` (15% blockwise masking, a `[P]` and an
//! original appended per masked token, the 3-D attention mask), so the cost
//! per training token of PMLM over MLM is measured on one model.

use cloze_models::{BertConfig, Precision};
use tch::Device;

use crate::bert::{bert_config, BertPretrainer};
use crate::config::{ModelConfig, OptimizerConfig};
use crate::error::{Error, Result};
use crate::objective::{Mlm, Objective};
use crate::pmlm::Pmlm;
use crate::trainer::train_step;
use crate::{AdamW, TensorBatch};

/// The shape of the benchmarked model and batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepShape {
    /// Hidden size.
    pub hidden: i64,
    /// Encoder layers.
    pub layers: i64,
    /// Attention heads.
    pub heads: i64,
    /// Feed-forward width.
    pub ffn: i64,
    /// Vocabulary size.
    pub vocab: i64,
    /// Sequence length.
    pub seq: i64,
    /// Sequences per batch.
    pub batch: i64,
}

impl StepShape {
    /// The size the issue and the peer script measure: hidden 256, 4 layers,
    /// 4 heads, FFN 1024, vocabulary 30522, 16 x 128 tokens.
    pub const PEER: StepShape = StepShape {
        hidden: 256,
        layers: 4,
        heads: 4,
        ffn: 1024,
        vocab: 30522,
        seq: 128,
        batch: 16,
    };

    fn bert_config(&self) -> Result<BertConfig> {
        let mc = ModelConfig {
            hidden_size: self.hidden,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            intermediate_size: self.ffn,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            rel_pos_bins: None,
            max_rel_pos: None,
        };
        let vocab = u32::try_from(self.vocab)
            .map_err(|_| Error::DataMismatch(format!("vocabulary size {}", self.vocab)))?;
        Ok(bert_config(&mc, vocab, 0))
    }
}

/// What the benchmarked step trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepObjective {
    /// BERT's MLM: 15% of the positions predicted, rows of `seq` tokens.
    #[default]
    Mlm,
    /// UniLM-v2's pseudo-masked LM: `seq`-token instances masked with
    /// `cloze_mask::MaskingConfig::unilmv2`, so rows grow by two tokens per
    /// masked token and attention follows the 3-D mask.
    Pmlm,
}

/// A model, its optimiser and one fixed batch, ready to be stepped.
pub struct StepBench {
    model: BertPretrainer,
    opt: AdamW,
    batch: TensorBatch,
    objective: Box<dyn Objective>,
}

impl std::fmt::Debug for StepBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepBench")
            .field("objective", &self.objective.name())
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// `batch` pseudo-masked rows from `seq`-token instances of uniform ids
/// (`[CLS] ... [SEP]`, `[PSEUDO_MASK]` at id 5), seeded.
fn pseudo_masked_batch(shape: &StepShape) -> Result<TensorBatch> {
    use cloze_core::{Instance, SpecialTokens};
    use rand::{Rng, SeedableRng};
    let vocab = u32::try_from(shape.vocab)
        .ok()
        .filter(|&v| v > 6)
        .ok_or_else(|| Error::DataMismatch(format!("vocabulary size {}", shape.vocab)))?;
    let specials = SpecialTokens {
        vocab_size: vocab,
        pad: 0,
        unk: 1,
        cls: 2,
        sep: 3,
        mask: 4,
        pseudo_mask: Some(5),
        all_special: vec![0, 1, 2, 3, 4, 5],
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let seq = usize::try_from(shape.seq.max(3)).unwrap_or(3);
    let instances: Vec<Instance> = (0..shape.batch.max(1))
        .map(|_| {
            let mut tokens = vec![2u32];
            tokens.extend((0..seq - 2).map(|_| rng.random_range(6..vocab)));
            tokens.push(3);
            Instance {
                word_ids: (0..seq as u32).collect(),
                segment_ids: vec![0; seq],
                tokens,
                pair_label: None,
            }
        })
        .collect();
    let masker = cloze_mask::Masker::new(cloze_mask::MaskingConfig::unilmv2(), specials)
        .map_err(|e| Error::DataMismatch(e.to_string()))?;
    let batch = cloze_mask::BatchBuilder::build(&masker, &instances, 0, 0, 0)
        .map_err(|e| Error::DataMismatch(e.to_string()))?;
    TensorBatch::from_batch(&batch, Device::Cpu)
}

impl StepBench {
    /// Builds the model (seed 0), AdamW and a synthetic batch on the CPU; the
    /// step's matrix products run in `precision`.
    pub fn new(shape: &StepShape, precision: Precision) -> Result<Self> {
        Self::with_objective(shape, precision, StepObjective::Mlm)
    }

    /// [`Self::new`] training `objective`.
    pub fn with_objective(
        shape: &StepShape,
        precision: Precision,
        objective: StepObjective,
    ) -> Result<Self> {
        let mut model = BertPretrainer::new_masked_lm(
            shape.bert_config()?,
            0,
            &crate::config::InitConfig::default(),
            Device::Cpu,
        )?;
        model.precision = precision;
        let hp = OptimizerConfig {
            lr: 1e-4,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            max_grad_norm: 1.0,
            freeze: Vec::new(),
            layer_lr_decay: 1.0,
        };
        let opt = AdamW::new(&model.vs, &hp)?;
        let (batch, objective): (TensorBatch, Box<dyn Objective>) = match objective {
            StepObjective::Mlm => (
                TensorBatch::synthetic(shape.batch, shape.seq, shape.vocab, 0.15, 0)?,
                Box::new(Mlm { weight: 1.0 }),
            ),
            StepObjective::Pmlm => (
                pseudo_masked_batch(shape)?,
                Box::new(Pmlm {
                    ae_weight: 1.0,
                    par_weight: 1.0,
                }),
            ),
        };
        Ok(Self {
            model,
            opt,
            batch,
            objective,
        })
    }

    /// One full step (forward, backward, clipping, AdamW); returns the loss.
    pub fn step(&mut self) -> Result<f64> {
        train_step(
            &self.model,
            self.objective.as_ref(),
            &mut self.opt,
            &self.batch,
            1e-4,
            1.0,
        )
    }

    /// One data-parallel step as one of `coll`'s ranks (each holding its own
    /// batch): forward, backward of the loss over the world size, the
    /// gradient allreduce, clipping, AdamW. Returns the loss and the seconds
    /// of the allreduce.
    pub fn step_data_parallel(&mut self, coll: &dyn cloze_dist::Collective) -> Result<(f64, f64)> {
        self.opt.zero_grad()?;
        let out = crate::batch::PretrainModel::forward(&self.model, &self.batch, true)?;
        let losses = self.objective.losses(&out, &self.batch)?;
        losses
            .total
            .f_div_scalar(coll.world_size() as f64)?
            .f_backward()?;
        let secs = crate::trainer::allreduce_flat(coll, self.opt.grads())?;
        self.opt.clip_grad_norm(1.0)?;
        self.opt.step(1e-4)?;
        Ok((crate::objective::scalar(&losses.total)?, secs))
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> i64 {
        self.opt.num_params()
    }

    /// Predicted positions in the batch (with PMLM: `[M]` plus `[P]`).
    pub fn num_masked(&self) -> i64 {
        self.batch.num_masked()
            + self
                .batch
                .pseudo
                .as_ref()
                .map_or(0, |p| p.targets.size()[0])
    }

    /// Padded row length of the batch (longer than the instances with PMLM).
    pub fn row_len(&self) -> usize {
        self.batch.seq_len
    }
}

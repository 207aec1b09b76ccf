//! The training step that `cloze bench train` and the criterion bench both time:
//! a BERT with HF's default dropout and initialisation, AdamW at lr 1e-4, and a
//! synthetic batch with 15% of positions predicted, as in `hf_train_bench.py`.

use cloze_models::{BertConfig, Precision};
use tch::Device;

use crate::bert::{bert_config, BertPretrainer};
use crate::config::{ModelConfig, OptimizerConfig};
use crate::error::{Error, Result};
use crate::objective::Mlm;
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
        };
        let vocab = u32::try_from(self.vocab)
            .map_err(|_| Error::DataMismatch(format!("vocabulary size {}", self.vocab)))?;
        Ok(bert_config(&mc, vocab, 0))
    }
}

/// A model, its optimiser and one fixed batch, ready to be stepped.
#[derive(Debug)]
pub struct StepBench {
    model: BertPretrainer,
    opt: AdamW,
    batch: TensorBatch,
    objective: Mlm,
}

impl StepBench {
    /// Builds the model (seed 0), AdamW and a synthetic batch on the CPU; the
    /// step's matrix products run in `precision`.
    pub fn new(shape: &StepShape, precision: Precision) -> Result<Self> {
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
        let batch = TensorBatch::synthetic(shape.batch, shape.seq, shape.vocab, 0.15, 0)?;
        Ok(Self {
            model,
            opt,
            batch,
            objective: Mlm { weight: 1.0 },
        })
    }

    /// One full step (forward, backward, clipping, AdamW); returns the loss.
    pub fn step(&mut self) -> Result<f64> {
        train_step(
            &self.model,
            &self.objective,
            &mut self.opt,
            &self.batch,
            1e-4,
            1.0,
        )
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> i64 {
        self.opt.num_params()
    }

    /// Predicted positions in the batch.
    pub fn num_masked(&self) -> i64 {
        self.batch.num_masked()
    }
}

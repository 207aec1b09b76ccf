//! The BERT model of `cloze-models` behind the trainer's [`PretrainModel`] trait.

use std::path::Path;

use cloze_models::{BertConfig, BertForPreTraining, MlmInput, Precision};
use tch::nn::VarStore;
use tch::Device;

use crate::batch::{ModelOutput, PretrainModel, TensorBatch};
use crate::config::{InitConfig, ModelConfig};
use crate::error::Result;

/// A BERT pretraining model and the variable store that owns its weights.
#[derive(Debug)]
pub struct BertPretrainer {
    /// The variables (HuggingFace names).
    pub vs: VarStore,
    /// The model.
    pub model: BertForPreTraining,
    /// Its HF configuration (written as `config.json` with every save).
    pub config: BertConfig,
    /// The precision of its matrix products in [`PretrainModel::forward`]
    /// (fp32 unless set; the weights stay fp32 either way).
    pub precision: Precision,
}

/// HF configuration for a `[model]` section and a tokenizer's vocabulary.
pub fn bert_config(m: &ModelConfig, vocab_size: u32, pad_id: u32) -> BertConfig {
    BertConfig {
        vocab_size: i64::from(vocab_size),
        hidden_size: m.hidden_size,
        num_hidden_layers: m.num_hidden_layers,
        num_attention_heads: m.num_attention_heads,
        intermediate_size: m.intermediate_size,
        hidden_dropout_prob: m.hidden_dropout_prob,
        attention_probs_dropout_prob: m.attention_probs_dropout_prob,
        max_position_embeddings: m.max_position_embeddings,
        type_vocab_size: m.type_vocab_size,
        initializer_range: m.initializer_range,
        layer_norm_eps: m.layer_norm_eps,
        pad_token_id: Some(i64::from(pad_id)),
        ..BertConfig::default()
    }
}

impl BertPretrainer {
    /// A freshly initialised model with both pretraining heads, MLM and the NSP/SOP
    /// pair head (and the pooler it reads): HF's `BertForPreTraining`.
    /// Initialisation is seeded by `seed` and follows `init`.
    pub fn new(config: BertConfig, seed: u64, init: &InitConfig, device: Device) -> Result<Self> {
        Self::build(config, seed, init, device, BertForPreTraining::new)
    }

    /// A freshly initialised model with the MLM head only and no pooler (HF's
    /// `BertForMaskedLM` layout), for MLM-only objectives. Seeded like [`Self::new`].
    pub fn new_masked_lm(
        config: BertConfig,
        seed: u64,
        init: &InitConfig,
        device: Device,
    ) -> Result<Self> {
        Self::build(
            config,
            seed,
            init,
            device,
            BertForPreTraining::new_masked_lm,
        )
    }

    fn build(
        config: BertConfig,
        seed: u64,
        init: &InitConfig,
        device: Device,
        layout: fn(&tch::nn::Path, &BertConfig) -> cloze_models::Result<BertForPreTraining>,
    ) -> Result<Self> {
        tch::manual_seed(cloze_core::rng::torch_seed(
            seed,
            cloze_core::rng::Stream::ModelInit,
            0,
        ));
        let vs = VarStore::new(device);
        let model = layout(&vs.root(), &config)?;
        if let Some(heads) = init.offset_heads() {
            model.bert().init_offset_heads(&heads)?;
        }
        Ok(Self {
            vs,
            model,
            config,
            precision: Precision::Fp32,
        })
    }

    /// Loads a saved model (HF format) from `dir`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let p = cloze_models::load_pretrained(dir, device)?;
        Ok(Self {
            vs: p.vs,
            model: p.model,
            config: p.config,
            precision: Precision::Fp32,
        })
    }
}

/// The encoder input of a batch: ids, segments, and the padding mask, position
/// ids and 3-D visibility when the batch has them.
pub fn model_input(batch: &TensorBatch) -> MlmInput {
    let mut input = MlmInput::new(batch.input_ids.shallow_clone())
        .with_token_type_ids(batch.token_type_ids.shallow_clone());
    // A batch without padding needs no attention mask: leaving it out lets
    // libtorch pick its fastest (mask-free) attention kernel.
    if batch.real_tokens < batch.batch_size * batch.seq_len {
        input = input.with_attention_mask(batch.attention_mask.shallow_clone());
    }
    if let Some(p) = &batch.position_ids {
        input = input.with_position_ids(p.shallow_clone());
    }
    if let Some(m) = &batch.attention_3d {
        input = input.with_attention_3d(m.shallow_clone());
    }
    input
}

impl PretrainModel for BertPretrainer {
    fn forward(&self, batch: &TensorBatch, train: bool) -> Result<ModelOutput> {
        let input = model_input(batch);
        let out = cloze_models::autocast(self.precision, || {
            self.model
                .forward_t(&input, Some(&batch.masked_positions), train)
        })?;
        Ok(ModelOutput::new(out.mlm_logits).with_pair_logits(out.pair_logits))
    }

    fn save(&self, dir: &Path) -> Result<()> {
        cloze_models::save_pretrained(&self.vs, &self.config, dir)?;
        Ok(())
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn load_weights(&self, dir: &Path) -> Result<()> {
        let report = cloze_models::hf::load_weights(&self.vs, dir)?;
        if !report.missing.is_empty() || !report.unexpected.is_empty() {
            return Err(crate::Error::CorruptCheckpoint {
                path: dir.to_owned(),
                problem: format!("weights do not match the model: {report}"),
                newest_intact: None,
            });
        }
        Ok(())
    }
}

//! The BERT model of `cloze-models` behind the trainer's [`PretrainModel`] trait.

use std::path::Path;

use cloze_models::{BertConfig, BertForPreTraining, MlmInput, Precision};
use tch::nn::VarStore;
use tch::{Device, Tensor};

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

/// What [`BertPretrainer::from_checkpoint`] did.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// Tensor by tensor and head by head: what came from the checkpoint.
    pub load: cloze_models::LoadReport,
    /// The checkpoint's vocabulary size.
    pub vocab_before: i64,
    /// The model's vocabulary size (larger when tokens were added).
    pub vocab_after: i64,
}

impl InitReport {
    /// Human-readable lines for the run's log: the heads created rather than
    /// loaded, checkpoint tensors the model does not take, vocabulary growth.
    pub fn notices(&self) -> Vec<String> {
        use cloze_models::HeadStatus;
        let mut out = vec![format!("{} tensors loaded", self.load.loaded)];
        for h in &self.load.heads {
            match (h.prefix, h.status) {
                ("cls.predictions", HeadStatus::Absent) => out.push(
                    "the checkpoint has no MLM head (cls.predictions): created with HF's \
                     initialisation, its decoder tied to the word embeddings"
                        .into(),
                ),
                (p, HeadStatus::Absent) => out.push(format!(
                    "the checkpoint has no {p} head: created with HF's initialisation"
                )),
                (p, HeadStatus::Partial) => out.push(format!(
                    "the checkpoint holds part of the {p} head: the rest starts from HF's initialisation"
                )),
                _ => {}
            }
        }
        let pooler_missing: Vec<&String> = self
            .load
            .missing
            .iter()
            .filter(|k| k.contains("pooler."))
            .collect();
        if !pooler_missing.is_empty() {
            out.push("the checkpoint has no pooler: created with HF's initialisation".into());
        }
        if !self.load.unexpected.is_empty() {
            out.push(format!(
                "checkpoint tensors this model does not use (left out): {}",
                self.load.unexpected.join(", ")
            ));
        }
        if self.vocab_after > self.vocab_before {
            out.push(format!(
                "vocabulary grown from {} to {} ids: each new row is the mean of the rows of \
                 the pieces the checkpoint's tokenizer splits the token into",
                self.vocab_before, self.vocab_after
            ));
        }
        out
    }
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
        rel_pos_bins: m.rel_pos_bins.filter(|&b| b > 0),
        max_rel_pos: m.rel_pos_bins.filter(|&b| b > 0).and(m.max_rel_pos),
        ..BertConfig::default()
    }
}

/// The `[model]` section that describes a checkpoint's `config.json`: what a
/// run started from that checkpoint records as its model shape.
pub fn model_section(c: &BertConfig) -> ModelConfig {
    ModelConfig {
        hidden_size: c.hidden_size,
        num_hidden_layers: c.num_hidden_layers,
        num_attention_heads: c.num_attention_heads,
        intermediate_size: c.intermediate_size,
        max_position_embeddings: c.max_position_embeddings,
        type_vocab_size: c.type_vocab_size,
        hidden_dropout_prob: c.hidden_dropout_prob,
        attention_probs_dropout_prob: c.attention_probs_dropout_prob,
        initializer_range: c.initializer_range,
        layer_norm_eps: c.layer_norm_eps,
        rel_pos_bins: c.relative_position().map(|(bins, _)| bins),
        max_rel_pos: c.relative_position().map(|(_, max)| max),
    }
}

/// The fields of two `[model]` sections that differ, as `(field, a's value,
/// b's value)` in field order.
pub fn model_differences(a: &ModelConfig, b: &ModelConfig) -> Vec<(&'static str, String, String)> {
    let opt = |v: Option<i64>| v.map_or_else(|| "none".to_owned(), |x| x.to_string());
    let fields: [(&'static str, String, String); 12] = [
        (
            "hidden_size",
            a.hidden_size.to_string(),
            b.hidden_size.to_string(),
        ),
        (
            "num_hidden_layers",
            a.num_hidden_layers.to_string(),
            b.num_hidden_layers.to_string(),
        ),
        (
            "num_attention_heads",
            a.num_attention_heads.to_string(),
            b.num_attention_heads.to_string(),
        ),
        (
            "intermediate_size",
            a.intermediate_size.to_string(),
            b.intermediate_size.to_string(),
        ),
        (
            "max_position_embeddings",
            a.max_position_embeddings.to_string(),
            b.max_position_embeddings.to_string(),
        ),
        (
            "type_vocab_size",
            a.type_vocab_size.to_string(),
            b.type_vocab_size.to_string(),
        ),
        (
            "hidden_dropout_prob",
            a.hidden_dropout_prob.to_string(),
            b.hidden_dropout_prob.to_string(),
        ),
        (
            "attention_probs_dropout_prob",
            a.attention_probs_dropout_prob.to_string(),
            b.attention_probs_dropout_prob.to_string(),
        ),
        (
            "initializer_range",
            a.initializer_range.to_string(),
            b.initializer_range.to_string(),
        ),
        (
            "layer_norm_eps",
            a.layer_norm_eps.to_string(),
            b.layer_norm_eps.to_string(),
        ),
        ("rel_pos_bins", opt(a.rel_pos_bins), opt(b.rel_pos_bins)),
        ("max_rel_pos", opt(a.max_rel_pos), opt(b.max_rel_pos)),
    ];
    fields.into_iter().filter(|(_, x, y)| x != y).collect()
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

    /// Continued pretraining: the model starts from the HuggingFace checkpoint
    /// in `dir` (its `config.json` decides the architecture) instead of a fresh
    /// initialisation. `pair_head` selects HF's `BertForPreTraining` layout
    /// (with the pooler and the NSP/SOP head) over `BertForMaskedLM`'s.
    ///
    /// Every encoder weight must be in the checkpoint. Heads it lacks (the MLM
    /// head of an encoder-only checkpoint such as all-MiniLM-L6-v2, a pooler,
    /// the pair head) keep HF's initialisation, seeded by `seed`; the MLM
    /// decoder is always tied to the word embeddings. `new_rows` grows the
    /// vocabulary first (see [`cloze_models::hf::grow_vocabulary`]): one list of
    /// existing ids per token appended after the checkpoint's vocabulary.
    /// The returned report says what was loaded and what was created.
    pub fn from_checkpoint(
        dir: &Path,
        pair_head: bool,
        seed: u64,
        new_rows: &[Vec<i64>],
        device: Device,
    ) -> Result<(Self, InitReport)> {
        let mut config = cloze_models::hf::read_config(dir)?;
        refuse_quantised(dir, &config)?;
        let mut tensors = cloze_models::hf::read_weights(dir)?;
        let vocab_before = config.vocab_size;
        cloze_models::hf::grow_vocabulary(&mut tensors, &mut config, new_rows)?;
        // Heads the checkpoint lacks are initialised here, reproducibly.
        tch::manual_seed(cloze_core::rng::torch_seed(
            seed,
            cloze_core::rng::Stream::ModelInit,
            0,
        ));
        let layout = if pair_head {
            BertForPreTraining::new
        } else {
            BertForPreTraining::new_masked_lm
        };
        let p = cloze_models::hf::load_tensors_with(config, tensors, device, layout)?;
        let report = InitReport {
            load: p.report,
            vocab_before,
            vocab_after: p.config.vocab_size,
        };
        Ok((
            Self {
                vs: p.vs,
                model: p.model,
                config: p.config,
                precision: Precision::Fp32,
            },
            report,
        ))
    }

    /// A model with the configuration `config` (HF's `BertForPreTraining` layout
    /// when `pair_head`, else `BertForMaskedLM`'s) whose weights are about to be
    /// replaced by a checkpoint's: how a resumed run that started from a
    /// checkpoint rebuilds its model.
    pub fn with_config(config: BertConfig, pair_head: bool, device: Device) -> Result<Self> {
        let layout = if pair_head {
            BertForPreTraining::new
        } else {
            BertForPreTraining::new_masked_lm
        };
        Self::build(config, 0, &InitConfig::default(), device, layout)
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

/// Training starts from dense weights only: a quantised checkpoint (see
/// `cloze_models::quantized`) is refused with the way out.
pub fn refuse_quantised(dir: &Path, config: &cloze_models::BertConfig) -> Result<()> {
    if cloze_models::quantized::GptqConfig::from_extra(&config.extra)?.is_some() {
        return Err(crate::Error::InvalidConfig {
            field: "init.from",
            problem: format!(
                "{} is a quantised checkpoint (quantization_config in its config.json): its \
                 weights are rounded to a few bits and cannot be trained; start from the dense \
                 model it was quantised from",
                dir.display()
            ),
        });
    }
    Ok(())
}

/// The encoder input of a batch: ids, segments, and the padding mask, position
/// ids, 3-D visibility and role ids when the batch has them.
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
    if let Some(r) = &batch.role_ids {
        input = input.with_role_ids(r.shallow_clone());
    }
    input
}

impl PretrainModel for BertPretrainer {
    fn forward(&self, batch: &TensorBatch, train: bool) -> Result<ModelOutput> {
        let input = model_input(batch);
        // UniLM-v2's [P] positions and a dialogue's response positions go
        // through the same gathered vocabulary projection as the masked
        // positions: one product, split afterwards.
        let extra: Vec<&Tensor> = [&batch.pseudo, &batch.response]
            .into_iter()
            .flatten()
            .map(|p| &p.positions)
            .collect();
        let positions = if extra.is_empty() {
            batch.masked_positions.shallow_clone()
        } else {
            let mut all = vec![&batch.masked_positions];
            all.extend(extra);
            Tensor::f_cat(&all, 0)?
        };
        let out = cloze_models::autocast(self.precision, || {
            self.model.forward_t(&input, Some(&positions), train)
        })?;
        if batch.pseudo.is_none() && batch.response.is_none() {
            return Ok(ModelOutput::new(out.mlm_logits).with_pair_logits(out.pair_logits));
        }
        let n = batch.num_masked();
        let mut start = n;
        let mut take = |group: &Option<crate::batch::PositionTargets>| -> Result<Option<Tensor>> {
            Ok(match group {
                Some(g) => {
                    let len = g.positions.size()[0];
                    let logits = out.mlm_logits.f_narrow(0, start, len)?;
                    start += len;
                    Some(logits)
                }
                None => None,
            })
        };
        let pseudo = take(&batch.pseudo)?;
        let response = take(&batch.response)?;
        let mlm = out.mlm_logits.f_narrow(0, 0, n)?;
        let mut output = ModelOutput::new(mlm).with_pair_logits(out.pair_logits);
        output.pseudo_logits = pseudo;
        output.response_logits = response;
        Ok(output)
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

impl cloze_models::QuantizeInt8 for BertPretrainer {
    /// Packs the model's linears for int8 inference (`cloze eval --precision
    /// int8`); training such a model is refused by the trainer.
    fn quantize_int8(
        &mut self,
        smoothing: Option<&cloze_models::Int8Smoothing>,
    ) -> cloze_models::Result<usize> {
        self.model.quantize_int8(smoothing)
    }
}

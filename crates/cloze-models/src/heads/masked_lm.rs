//! The masked-LM head (`cls.predictions`) of HF's `BertForPreTraining` and
//! `BertForMaskedLM`.

use tch::nn::{Init, Path};
use tch::Tensor;

use super::HeadSpec;
use crate::bert::{Activation, LayerNorm, Linear};
use crate::precision::{for_product, to_fp32};
use crate::{BertConfig, Result};

/// The MLM head: dense + activation + LayerNorm, then the decoder, which is the
/// word-embedding matrix itself (tied, not copied) plus an output bias.
#[derive(Debug)]
pub struct MlmHead {
    dense: Linear,
    layer_norm: LayerNorm,
    act: Activation,
    decoder: Tensor,
    bias: Tensor,
}

impl MlmHead {
    /// Its row of the head table. The decoder weight is the word-embedding matrix,
    /// so `decoder.weight` is derived; HF ties `decoder.bias` to `bias`, and older
    /// checkpoints hold only the former.
    pub const SPEC: HeadSpec = HeadSpec {
        name: "masked LM",
        prefix: "cls.predictions",
        architecture: "BertForMaskedLM",
        pooler: false,
        variables: |c| {
            let h = c.hidden_size;
            Ok(vec![
                ("transform.dense.weight", vec![h, h]),
                ("transform.dense.bias", vec![h]),
                ("transform.LayerNorm.weight", vec![h]),
                ("transform.LayerNorm.bias", vec![h]),
                ("bias", vec![c.vocab_size]),
            ])
        },
        derived: &["decoder.weight"],
        aliases: &[("decoder.bias", "bias")],
    };

    /// Creates `cls.predictions.{transform.dense, transform.LayerNorm, bias}` under
    /// `root` (the model's path); `decoder` is the tied word-embedding matrix `[V, H]`.
    pub fn new(root: &Path, config: &BertConfig, decoder: &Tensor) -> Result<Self> {
        let p = Self::SPEC.path(root);
        let t = &p / "transform";
        let h = config.hidden_size;
        Ok(MlmHead {
            dense: Linear::new(&(&t / "dense"), h, h, config)?,
            layer_norm: LayerNorm::new(&(&t / "LayerNorm"), config)?,
            act: config.hidden_act,
            decoder: decoder.shallow_clone(),
            bias: p.f_var("bias", &[config.vocab_size], Init::Const(0.0))?,
        })
    }

    /// Packs the transform's dense layer for int8 inference (the decoder, the
    /// tied word embeddings, stays fp32).
    pub fn quantize_int8(&mut self) -> Result<()> {
        self.dense.quantize_int8()
    }

    /// Vocabulary logits for hidden states of any leading shape `[..., H]` -> `[..., V]`,
    /// always fp32 (under a bf16 [`crate::autocast`] the decoder product runs in bf16).
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let t = self
            .layer_norm
            .forward(&self.act.apply(&self.dense.forward(hidden)?)?)?;
        let logits = for_product(&t)?.f_linear(
            &for_product(&self.decoder)?,
            Some(&for_product(&self.bias)?),
        )?;
        to_fp32(&logits)
    }
}

//! The token-category head (`cls.category`) of code-aware models after CugLM
//! (Liu et al., ASE 2020, arXiv 2012.14631): from a token's hidden state it
//! predicts the syntactic category of the token at that position (type name,
//! method name, keyword, ...), and, for CugLM's type-then-identifier
//! completion, it embeds a category and adds it to the hidden state before
//! the vocabulary projection, so the token prediction is conditioned on the
//! category predicted first.
//!
//! The number of categories is [`BertConfig::code_category_size`]; the
//! categories themselves are the code layer's (`cloze-code`), this head only
//! sees their indices. HF has no class with this head: transformers loads
//! such a checkpoint's encoder and other heads and ignores `cls.category.*`.

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use super::HeadSpec;
use crate::bert::{Activation, LayerNorm, Linear};
use crate::precision::to_fp32;
use crate::{BertConfig, Error, Result};

/// Dense + activation + LayerNorm, then `decoder` `Linear(H, C)`; plus a
/// `type_embeddings` table `[C, H]` for conditioning on a category.
#[derive(Debug)]
pub struct CategoryHead {
    dense: Linear,
    layer_norm: LayerNorm,
    act: Activation,
    decoder: Linear,
    type_embeddings: Tensor,
    num_categories: i64,
}

impl CategoryHead {
    /// Its row of the head table.
    pub const SPEC: HeadSpec = HeadSpec {
        name: "token category",
        prefix: "cls.category",
        architecture: "BertModel",
        pooler: false,
        variables: |c| {
            let (h, n) = (c.hidden_size, c.code_categories()?);
            Ok(vec![
                ("transform.dense.weight", vec![h, h]),
                ("transform.dense.bias", vec![h]),
                ("transform.LayerNorm.weight", vec![h]),
                ("transform.LayerNorm.bias", vec![h]),
                ("decoder.weight", vec![n, h]),
                ("decoder.bias", vec![n]),
                ("type_embeddings.weight", vec![n, h]),
            ])
        },
        derived: &[],
        aliases: &[],
    };

    /// Creates `cls.category.*` under `root` (the model's path). A config
    /// without a positive `code_category_size` is [`Error::InvalidConfig`].
    pub fn new(root: &Path, config: &BertConfig) -> Result<Self> {
        let p = Self::SPEC.path(root);
        let t = &p / "transform";
        let (h, n) = (config.hidden_size, config.code_categories()?);
        Ok(Self {
            dense: Linear::new(&(&t / "dense"), h, h, config)?,
            layer_norm: LayerNorm::new(&(&t / "LayerNorm"), config)?,
            act: config.hidden_act,
            decoder: Linear::new(&(&p / "decoder"), h, n, config)?,
            type_embeddings: (&p / "type_embeddings").f_var(
                "weight",
                &[n, h],
                Init::Randn {
                    mean: 0.0,
                    stdev: config.initializer_range,
                },
            )?,
            num_categories: n,
        })
    }

    /// The number of categories.
    pub fn num_categories(&self) -> i64 {
        self.num_categories
    }

    /// Category logits `[..., C]` (fp32) of hidden states `[..., H]`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let t = self
            .layer_norm
            .forward(&self.act.apply(&self.dense.forward(hidden)?)?)?;
        to_fp32(&self.decoder.forward(&t)?)
    }

    /// `hidden + type_embeddings[categories]`: hidden states `[N, H]`
    /// conditioned on one category each (`[N]` int64, each below
    /// [`CategoryHead::num_categories`]), ready for the vocabulary
    /// projection. A wrong shape is [`Error::InputShape`], an id outside the
    /// table [`Error::IndexOutOfRange`].
    pub fn condition(&self, hidden: &Tensor, categories: &Tensor) -> Result<Tensor> {
        let n = hidden.size().first().copied().unwrap_or(-1);
        if categories.dim() != 1 || categories.kind() != Kind::Int64 || categories.size()[0] != n {
            return Err(Error::InputShape {
                what: "categories",
                found: categories.size(),
                kind: format!("{:?}", categories.kind()),
                expected: format!("[{n}] int64, one per hidden state"),
            });
        }
        if categories.numel() > 0 {
            let (lo, hi) = tch::no_grad(|| -> Result<(i64, i64)> {
                Ok((
                    categories.f_min()?.f_int64_value(&[])?,
                    categories.f_max()?.f_int64_value(&[])?,
                ))
            })?;
            if lo < 0 || hi >= self.num_categories {
                return Err(Error::IndexOutOfRange {
                    what: "categories",
                    min: lo,
                    max: hi,
                    limit: self.num_categories,
                });
            }
        }
        let emb = self
            .type_embeddings
            .f_index_select(0, categories)?
            .f_to_kind(hidden.kind())?;
        Ok(hidden.f_add(&emb)?)
    }
}

//! The building blocks: linear, LayerNorm, embeddings, self-attention, encoder layer, pooler.
//!
//! Each block is built by `new(path, &config)` and creates its variables under HF's
//! attribute names, so that `VarStore` names equal checkpoint keys.

use tch::nn::{Init, Path};
use tch::Tensor;

use super::{BertConfig, MlmInput};
use crate::Result;

/// `y = x W^T + b` with HF's initialisation (weight N(0, initializer_range), bias 0).
#[derive(Debug)]
pub(crate) struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
}

impl Linear {
    pub(crate) fn new(p: &Path, in_dim: i64, out_dim: i64, config: &BertConfig) -> Result<Self> {
        let std = config.initializer_range;
        Ok(Linear {
            weight: p.f_var(
                "weight",
                &[out_dim, in_dim],
                Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            )?,
            bias: p.f_var("bias", &[out_dim], Init::Const(0.0))?,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_linear(&self.weight, Some(&self.bias))?)
    }
}

/// LayerNorm over the last dimension (weight 1, bias 0 at init).
#[derive(Debug)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    dim: i64,
}

impl LayerNorm {
    pub(crate) fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(LayerNorm {
            weight: p.f_var("weight", &[h], Init::Const(1.0))?,
            bias: p.f_var("bias", &[h], Init::Const(0.0))?,
            eps: config.layer_norm_eps,
            dim: h,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )?)
    }
}

fn embedding_table(p: &Path, rows: i64, config: &BertConfig) -> Result<Tensor> {
    let init = Init::Randn {
        mean: 0.0,
        stdev: config.initializer_range,
    };
    Ok(p.f_var("weight", &[rows, config.hidden_size], init)?)
}

/// Word + position + token-type embeddings, LayerNorm, dropout (`bert.embeddings`).
#[derive(Debug)]
pub struct BertEmbeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    layer_norm: LayerNorm,
    padding_idx: i64,
    dropout: f64,
}

impl BertEmbeddings {
    /// Creates the tables under `p` (`word_embeddings`, `position_embeddings`,
    /// `token_type_embeddings`, `LayerNorm`). The padding row starts at zero, as in HF.
    pub fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        let word = embedding_table(&(p / "word_embeddings"), config.vocab_size, config)?;
        let padding_idx = config.pad_token_id.unwrap_or(-1);
        if padding_idx >= 0 {
            tch::no_grad(|| word.f_get(padding_idx)?.f_zero_().map(|_| ()))?;
        }
        Ok(BertEmbeddings {
            word,
            position: embedding_table(
                &(p / "position_embeddings"),
                config.max_position_embeddings,
                config,
            )?,
            token_type: embedding_table(
                &(p / "token_type_embeddings"),
                config.type_vocab_size,
                config,
            )?,
            layer_norm: LayerNorm::new(&(p / "LayerNorm"), config)?,
            padding_idx,
            dropout: config.hidden_dropout_prob,
        })
    }

    /// The word-embedding matrix `[V, H]`; the MLM decoder shares it (no copy).
    pub fn word_embeddings(&self) -> &Tensor {
        &self.word
    }

    /// Embedding output `[B, L, H]` for an input already validated.
    pub fn forward_t(&self, input: &MlmInput, train: bool) -> Result<Tensor> {
        let ids = &input.input_ids;
        let l = ids.size()[1];
        let words = Tensor::f_embedding(&self.word, ids, self.padding_idx, false, false)?;
        // Default positions 0..L give an [L, H] slice that broadcasts over the batch:
        // no [B, L] index tensor and no gather.
        let positions = match &input.position_ids {
            Some(pos) => Tensor::f_embedding(&self.position, pos, -1, false, false)?,
            None => self.position.f_narrow(0, 0, l)?,
        };
        // Without segment ids every token uses row 0: broadcast it instead of gathering.
        let types = match &input.token_type_ids {
            Some(tt) => Tensor::f_embedding(&self.token_type, tt, -1, false, false)?,
            None => self.token_type.f_get(0)?,
        };
        let sum = words.f_add(&positions)?.f_add_(&types)?;
        let out = self.layer_norm.forward(&sum)?;
        Ok(out.f_dropout(self.dropout, train)?)
    }
}

/// Multi-head self-attention with its output projection and residual LayerNorm
/// (`attention.self.{query,key,value}`, `attention.output.{dense,LayerNorm}`).
#[derive(Debug)]
pub(crate) struct BertAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    layer_norm: LayerNorm,
    heads: i64,
    head_dim: i64,
    attn_dropout: f64,
    hidden_dropout: f64,
}

impl BertAttention {
    pub(crate) fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        let s = p / "self";
        let o = p / "output";
        Ok(BertAttention {
            query: Linear::new(&(&s / "query"), h, h, config)?,
            key: Linear::new(&(&s / "key"), h, h, config)?,
            value: Linear::new(&(&s / "value"), h, h, config)?,
            output: Linear::new(&(&o / "dense"), h, h, config)?,
            layer_norm: LayerNorm::new(&(&o / "LayerNorm"), config)?,
            heads: config.num_attention_heads,
            head_dim: config.head_dim(),
            attn_dropout: config.attention_probs_dropout_prob,
            hidden_dropout: config.hidden_dropout_prob,
        })
    }

    pub(crate) fn forward_t(
        &self,
        xs: &Tensor,
        bias: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let (b, l, h) = xs.size3()?;
        let split = |lin: &Linear| -> Result<Tensor> {
            Ok(lin
                .forward(xs)?
                .f_view([b, l, self.heads, self.head_dim])?
                .f_transpose(1, 2)?)
        };
        let (q, k, v) = (split(&self.query)?, split(&self.key)?, split(&self.value)?);
        let p = if train { self.attn_dropout } else { 0.0 };
        // libtorch's fused kernel computes softmax(QK^T / sqrt(d_k) + bias) V without
        // materialising the probabilities when it can.
        let ctx = Tensor::f_scaled_dot_product_attention(&q, &k, &v, bias, p, false, None, false)?;
        let ctx = ctx.f_transpose(1, 2)?.f_reshape([b, l, h])?;
        let mut out = self
            .output
            .forward(&ctx)?
            .f_dropout(self.hidden_dropout, train)?;
        self.layer_norm.forward(&out.f_add_(xs)?)
    }
}

/// One post-LN encoder layer (`encoder.layer.{i}`).
#[derive(Debug)]
pub(crate) struct BertLayer {
    attention: BertAttention,
    intermediate: Linear,
    output: Linear,
    layer_norm: LayerNorm,
    act: super::Activation,
    dropout: f64,
}

impl BertLayer {
    pub(crate) fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        let (h, ff) = (config.hidden_size, config.intermediate_size);
        Ok(BertLayer {
            attention: BertAttention::new(&(p / "attention"), config)?,
            intermediate: Linear::new(&(p / "intermediate" / "dense"), h, ff, config)?,
            output: Linear::new(&(p / "output" / "dense"), ff, h, config)?,
            layer_norm: LayerNorm::new(&(p / "output" / "LayerNorm"), config)?,
            act: config.hidden_act,
            dropout: config.hidden_dropout_prob,
        })
    }

    pub(crate) fn forward_t(
        &self,
        xs: &Tensor,
        bias: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let a = self.attention.forward_t(xs, bias, train)?;
        let i = self.act.apply(&self.intermediate.forward(&a)?)?;
        let mut o = self.output.forward(&i)?.f_dropout(self.dropout, train)?;
        self.layer_norm.forward(&o.f_add_(&a)?)
    }
}

/// `tanh(dense(h[:, 0]))` (`pooler.dense`).
#[derive(Debug)]
pub(crate) struct Pooler {
    dense: Linear,
}

impl Pooler {
    pub(crate) fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Pooler {
            dense: Linear::new(&(p / "dense"), h, h, config)?,
        })
    }

    pub(crate) fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.dense.forward(&hidden.f_select(1, 0)?)?.f_tanh()?)
    }
}

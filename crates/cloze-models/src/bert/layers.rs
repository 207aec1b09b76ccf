//! The building blocks: linear, LayerNorm, dropout, embeddings, self-attention,
//! encoder layer, pooler.
//!
//! Each block is built by `new(path, &config)` and creates its variables under HF's
//! attribute names, so that `VarStore` names equal checkpoint keys. [`Linear`],
//! [`LayerNorm`], [`dropout`], [`BertEmbeddings`] and [`Pooler`] are public so that a
//! crate downstream can build a head of its own from the same pieces (with the same
//! initialisation) without forking this one; see `tests/custom_head.rs`.

use tch::nn::{Init, Path};
use tch::Tensor;

use super::{BertConfig, MlmInput};
use crate::int8::{Int8Linear, Int8Smoothing};
use crate::precision::{for_product, residual_add};
use crate::Result;

/// `y = x W^T + b` (PyTorch's `nn.Linear`: `weight` is `[out, in]`) with HF's
/// initialisation: weight N(0, `initializer_range`), bias 0.
#[derive(Debug)]
pub struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    /// Set by [`Linear::quantize_int8`]: `forward` then runs the int8 kernel.
    int8: Option<Int8Linear>,
}

impl Linear {
    /// Creates `weight` `[out_dim, in_dim]` and `bias` `[out_dim]` under `p`; only
    /// `config.initializer_range` is read from the config.
    pub fn new(p: &Path, in_dim: i64, out_dim: i64, config: &BertConfig) -> Result<Self> {
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
            int8: None,
        })
    }

    /// `[..., in] -> [..., out]`. Inside a bf16 [`crate::autocast`] scope the
    /// product runs in bf16 and so does the output. After
    /// [`Linear::quantize_int8`] it runs the int8 kernel and returns fp32.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if let Some(q) = &self.int8 {
            return q.forward(xs);
        }
        Ok(for_product(xs)?
            .f_linear(&for_product(&self.weight)?, Some(&for_product(&self.bias)?))?)
    }

    /// Packs a copy of the weight and bias for int8 inference
    /// ([`crate::int8`]); `forward` uses it from then on. Inference only: the
    /// packed copy has no gradient and does not follow later weight updates.
    pub fn quantize_int8(&mut self) -> Result<()> {
        self.quantize_int8_smoothed(None)
    }

    /// As [`Linear::quantize_int8`], with SmoothQuant factors `[in]`
    /// ([`crate::Int8Smoothing::factors`]) when given.
    pub fn quantize_int8_smoothed(&mut self, factors: Option<&Tensor>) -> Result<()> {
        self.int8 = Some(Int8Linear::pack_smoothed(
            &self.weight,
            Some(&self.bias),
            factors,
        )?);
        Ok(())
    }

    /// As `forward`, except that on the int8 kernel the rows of `xs` where
    /// `keep` (`[B, L, 1]`, 1 for real tokens and 0 for padding) is 0 are
    /// zeroed first, so that padding never widens the input's quantisation
    /// range. Real rows come out as `forward` gives them.
    pub(crate) fn forward_keep(&self, xs: &Tensor, keep: Option<&Tensor>) -> Result<Tensor> {
        match (&self.int8, keep) {
            (Some(q), Some(k)) => q.forward(&xs.f_mul(k)?),
            _ => self.forward(xs),
        }
    }

    /// Whether `forward` runs the int8 kernel.
    pub fn is_int8(&self) -> bool {
        self.int8.is_some()
    }

    /// The weight, `[out, in]` (a variable of the `VarStore`, not a copy).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[out]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

/// LayerNorm over the last dimension (weight 1, bias 0 at init).
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    dim: i64,
}

impl LayerNorm {
    /// Creates `weight` and `bias` `[hidden_size]` under `p`, with the config's
    /// `layer_norm_eps`.
    pub fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        Self::with_size(p, config.hidden_size, config.layer_norm_eps)
    }

    /// A LayerNorm over a last dimension of `dim` with epsilon `eps`.
    pub fn with_size(p: &Path, dim: i64, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: p.f_var("weight", &[dim], Init::Const(1.0))?,
            bias: p.f_var("bias", &[dim], Init::Const(0.0))?,
            eps,
            dim,
        })
    }

    /// Normalises `[..., dim]` over the last dimension. An input of another type
    /// than the weights (a bf16 product under [`crate::autocast`]) is normalised
    /// in the weights' type, fp32 in training.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let cast;
        let xs = if xs.kind() == self.weight.kind() {
            xs
        } else {
            cast = xs.f_to_kind(self.weight.kind())?;
            &cast
        };
        Ok(xs.f_layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )?)
    }
}

/// Inverted dropout: zeroes each element with probability `p` and scales the rest
/// by `1 / (1 - p)`; the identity when `train` is false or `p` is 0.
///
/// On the CPU the keep mask comes from 16 random bits per element compared with
/// a threshold, drawn four at a time as full-range 64-bit integers from
/// libtorch's seeded generator. That is several times cheaper than the
/// `bernoulli_` behind `dropout`, which drew one generator value per element and
/// took about a sixth of a BERT training step on two cores. The drop
/// probability is `p` rounded to a multiple of 1/65536 and the scale uses that
/// exact probability, so the output stays unbiased. On GPUs libtorch's fused
/// kernel is used as is.
///
/// Heads use it as HF uses `nn.Dropout`: `dropout(&x, config.hidden_dropout_prob, train)`.
pub fn dropout(xs: &Tensor, p: f64, train: bool) -> Result<Tensor> {
    if !train || p <= 0.0 {
        return Ok(xs.shallow_clone());
    }
    if p >= 1.0 || xs.device() != tch::Device::Cpu {
        return Ok(xs.f_dropout(p, train)?);
    }
    let n = xs.numel() as i64;
    let dropped = (p * 65536.0).round().clamp(1.0, 65535.0);
    let bits = Tensor::f_empty([(n + 3) / 4], (tch::Kind::Int64, tch::Device::Cpu))?
        .f_random_from_(i64::MIN, None)?;
    // Each int16 is uniform on [-32768, 32767]: keep the top 65536 - dropped values.
    let keep = bits
        .f_view_dtype(tch::Kind::Int16)?
        .f_narrow(0, 0, n)?
        .f_view(xs.size().as_slice())?
        .f_ge(dropped as i64 - 32768)?;
    let scale = 65536.0 / (65536.0 - dropped);
    Ok(xs.f_mul(&keep)?.f_mul_scalar_(scale)?)
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
    /// PLATO's role embeddings, when the config asks for them.
    role: Option<Tensor>,
    layer_norm: LayerNorm,
    padding_idx: i64,
    dropout: f64,
}

impl BertEmbeddings {
    /// Creates the tables under `p` (`word_embeddings`, `position_embeddings`,
    /// `token_type_embeddings`, `LayerNorm`, and `role_embeddings` when
    /// [`BertConfig::role_type_size`] is positive). The padding row starts at
    /// zero, as in HF.
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
            role: match config.role_type_size {
                Some(n) if n > 0 => Some(embedding_table(&(p / "role_embeddings"), n, config)?),
                _ => None,
            },
            layer_norm: LayerNorm::new(&(p / "LayerNorm"), config)?,
            padding_idx,
            dropout: config.hidden_dropout_prob,
        })
    }

    /// The position-embedding table `[max_position_embeddings, H]`.
    pub(crate) fn position_table(&self) -> &Tensor {
        &self.position
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
        let mut sum = words.f_add(&positions)?.f_add_(&types)?;
        // PLATO adds the role vector like the segment's; without role ids
        // every token takes role 0.
        if let Some(role) = &self.role {
            let roles = match &input.role_ids {
                Some(r) => Tensor::f_embedding(role, r, -1, false, false)?,
                None => role.f_get(0)?,
            };
            sum = sum.f_add_(&roles)?;
        }
        let out = self.layer_norm.forward(&sum)?;
        dropout(&out, self.dropout, train)
    }
}

/// Multi-head self-attention with its output projection and residual LayerNorm
/// (`attention.self.{query,key,value}`, `attention.output.{dense,LayerNorm}`).
#[derive(Debug)]
pub(crate) struct BertAttention {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    value: Linear,
    output: Linear,
    /// Query, key and value packed as one `[3H, H]` int8 matrix, once
    /// [`BertAttention::quantize_int8`] ran.
    qkv_int8: Option<Int8Linear>,
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
            qkv_int8: None,
            layer_norm: LayerNorm::new(&(&o / "LayerNorm"), config)?,
            heads: config.num_attention_heads,
            head_dim: config.head_dim(),
            attn_dropout: config.attention_probs_dropout_prob,
            hidden_dropout: config.hidden_dropout_prob,
        })
    }

    /// Packs the fused query/key/value matrix and the output projection for
    /// int8 inference, with layer `layer`'s factors from `smoothing` when
    /// given; returns the number of matrices packed (2).
    pub(crate) fn quantize_int8(
        &mut self,
        layer: usize,
        smoothing: Option<&Int8Smoothing>,
    ) -> Result<usize> {
        use super::LinearSite;
        let weight = Tensor::f_cat(
            &[&self.query.weight, &self.key.weight, &self.value.weight],
            0,
        )?;
        let bias = Tensor::f_cat(&[&self.query.bias, &self.key.bias, &self.value.bias], 0)?;
        let qkv = match smoothing {
            Some(s) => Some(s.factors_for(layer, LinearSite::Query, &weight)?),
            None => None,
        };
        self.qkv_int8 = Some(Int8Linear::pack_smoothed(
            &weight,
            Some(&bias),
            qkv.as_ref(),
        )?);
        let out = match smoothing {
            Some(s) => {
                Some(s.factors_for(layer, LinearSite::AttentionOutput, &self.output.weight)?)
            }
            None => None,
        };
        self.output.quantize_int8_smoothed(out.as_ref())?;
        Ok(2)
    }

    /// Query, key and value of `xs` `[B, L, H]`, each `[B, heads, L, head_dim]`;
    /// `keep` as in [`Linear::forward_keep`].
    fn project(&self, xs: &Tensor, keep: Option<&Tensor>) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, l, _) = xs.size3()?;
        if let Some(q) = &self.qkv_int8 {
            let kept;
            let input = match keep {
                Some(k) => {
                    kept = xs.f_mul(k)?;
                    &kept
                }
                None => xs,
            };
            let qkv = q
                .forward(input)?
                .f_view([b, l, 3, self.heads, self.head_dim])?
                .f_permute([2, 0, 3, 1, 4])?;
            return Ok((
                qkv.f_select(0, 0)?,
                qkv.f_select(0, 1)?,
                qkv.f_select(0, 2)?,
            ));
        }
        // One GEMM for query, key and value: the three HF weight matrices stay
        // separate variables (checkpoint names unchanged), and are concatenated
        // per call (3 H^2 floats, negligible next to the [B L, H] activations),
        // which gives libtorch one [B L, H] x [H, 3H] product instead of three
        // narrow ones, and one in the backward pass.
        // Under a bf16 autocast the concatenated weight is cast once.
        let weight = for_product(&Tensor::f_cat(
            &[&self.query.weight, &self.key.weight, &self.value.weight],
            0,
        )?)?;
        let bias = for_product(&Tensor::f_cat(
            &[&self.query.bias, &self.key.bias, &self.value.bias],
            0,
        )?)?;
        let qkv = for_product(xs)?
            .f_linear(&weight, Some(&bias))?
            .f_view([b, l, 3, self.heads, self.head_dim])?
            .f_permute([2, 0, 3, 1, 4])?;
        Ok((
            qkv.f_select(0, 0)?,
            qkv.f_select(0, 1)?,
            qkv.f_select(0, 2)?,
        ))
    }

    /// `softmax(q k^T / sqrt(d) + mask) v`, `[B, heads, Lq, head_dim]`, for keys
    /// and values `[B, heads, Lk, head_dim]` and an additive `mask` that
    /// broadcasts to `[B, heads, Lq, Lk]` (padding, 3-D visibility and the
    /// relative position bias, already summed).
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        // An additive mask of another type than the products (fp32 under a bf16
        // autocast) is cast to theirs: the kernels take one type.
        let cast_mask;
        let mask = match mask {
            Some(m) if m.kind() != q.kind() => {
                cast_mask = m.f_to_kind(q.kind())?;
                Some(&cast_mask)
            }
            other => other,
        };
        let p = if train { self.attn_dropout } else { 0.0 };
        // Both paths differentiate the additive mask too, which is how the
        // learned relative position bias gets its gradient.
        Ok(if p > 0.0 && q.device() == tch::Device::Cpu {
            // Dropout on the probabilities: libtorch's CPU kernel would fall back to
            // this same unfused path anyway, but with its slow `bernoulli_` mask.
            let scores = q
                .f_mul_scalar(1.0 / (self.head_dim as f64).sqrt())?
                .f_matmul(&k.f_transpose(-2, -1)?)?;
            let scores = match mask {
                Some(m) => scores.f_add(m)?,
                None => scores,
            };
            // The softmax statistics in fp32 whatever the product type (as
            // autocast does); the dropped probabilities go back to v's type.
            let stats = match scores.kind() {
                tch::Kind::BFloat16 | tch::Kind::Half => tch::Kind::Float,
                other => other,
            };
            let probs = scores.f_softmax(-1, stats)?;
            let probs = dropout(&probs, p, true)?;
            let probs = if probs.kind() == v.kind() {
                probs
            } else {
                probs.f_to_kind(v.kind())?
            };
            probs.f_matmul(v)?
        } else {
            // libtorch's fused kernel computes softmax(QK^T / sqrt(d_k) + bias) V
            // without materialising the probabilities when it can.
            Tensor::f_scaled_dot_product_attention(q, k, v, mask, p, false, None, false)?
        })
    }

    /// Output projection, dropout and the residual LayerNorm of a context
    /// `[B, heads, L, head_dim]` computed for the queries of `xs` `[B, L, H]`.
    fn output(
        &self,
        ctx: &Tensor,
        xs: &Tensor,
        keep: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let (b, l, h) = xs.size3()?;
        let ctx = ctx.f_transpose(1, 2)?.f_reshape([b, l, h])?;
        let out = self.output.forward_keep(&ctx, keep)?;
        let out = dropout(&out, self.hidden_dropout, train)?;
        self.layer_norm.forward(&residual_add(out, xs)?)
    }

    /// The attention block; `keep` as in [`Linear::forward_keep`].
    pub(crate) fn forward_t(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        keep: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let (q, k, v) = self.project(xs, keep)?;
        let ctx = self.attend(&q, &k, &v, mask, train)?;
        self.output(&ctx, xs, keep, train)
    }

    /// Eval-mode attention (no dropout) that shows `probe` the input of each
    /// linear layer before it is applied: `xs` for query, key and value, the
    /// merged heads `[B, L, H]` for the output projection.
    pub(crate) fn forward_probed(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        probe: &mut dyn FnMut(super::LinearSite, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        use super::LinearSite;
        for site in [LinearSite::Query, LinearSite::Key, LinearSite::Value] {
            probe(site, xs)?;
        }
        let (q, k, v) = self.project(xs, None)?;
        let ctx = self.attend(&q, &k, &v, mask, false)?;
        let (b, l, h) = xs.size3()?;
        let merged = ctx.f_transpose(1, 2)?.f_reshape([b, l, h])?;
        probe(LinearSite::AttentionOutput, &merged)?;
        let out = self.output.forward(&merged)?;
        self.layer_norm.forward(&residual_add(out, xs)?)
    }

    /// The linear layer at `site` (query, key, value or the output projection).
    pub(crate) fn linear(&self, site: super::LinearSite) -> Option<&Linear> {
        use super::LinearSite;
        match site {
            LinearSite::Query => Some(&self.query),
            LinearSite::Key => Some(&self.key),
            LinearSite::Value => Some(&self.value),
            LinearSite::AttentionOutput => Some(&self.output),
            LinearSite::Intermediate | LinearSite::Output => None,
        }
    }

    /// Eval-mode attention of the new tokens `xs` `[B, Ln, H]` over the cached
    /// keys and values `past` (`[B, heads, Lc, head_dim]` each) followed by
    /// their own; `mask` broadcasts to `[B, heads, Ln, Lc + Ln]`. Returns the
    /// block output and the new tokens' keys and values, which the caller may
    /// append to its cache.
    pub(crate) fn forward_cached(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        past: Option<(&Tensor, &Tensor)>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (q, k, v) = self.project(xs, None)?;
        let ctx = match past {
            Some((pk, pv)) => {
                // A cache built under another precision scope is brought to
                // this step's product type: the kernels take one type.
                let same = |t: &Tensor| -> Result<Tensor> {
                    Ok(if t.kind() == k.kind() {
                        t.shallow_clone()
                    } else {
                        t.f_to_kind(k.kind())?
                    })
                };
                let keys = Tensor::f_cat(&[same(pk)?, k.shallow_clone()], 2)?;
                let values = Tensor::f_cat(&[same(pv)?, v.shallow_clone()], 2)?;
                self.attend(&q, &keys, &values, mask, false)?
            }
            None => self.attend(&q, &k, &v, mask, false)?,
        };
        Ok((self.output(&ctx, xs, None, false)?, k, v))
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
    /// The self-attention block.
    pub(crate) fn attention(&self) -> &BertAttention {
        &self.attention
    }

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

    /// The layer; `keep` (`[B, L, 1]`, 0 at padding) keeps padding out of
    /// the int8 kernels' input ranges ([`Linear::forward_keep`]).
    pub(crate) fn forward_t(
        &self,
        xs: &Tensor,
        bias: Option<&Tensor>,
        keep: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let a = self.attention.forward_t(xs, bias, keep, train)?;
        self.feed_forward(&a, keep, train)
    }

    /// The feed-forward block and its residual LayerNorm.
    fn feed_forward(&self, a: &Tensor, keep: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let i = self.act.apply(&self.intermediate.forward_keep(a, keep)?)?;
        let o = dropout(&self.output.forward_keep(&i, keep)?, self.dropout, train)?;
        self.layer_norm.forward(&residual_add(o, a)?)
    }

    /// The layer in eval mode, showing `probe` each linear layer's input (see
    /// [`super::LinearSite`]).
    pub(crate) fn forward_probed(
        &self,
        xs: &Tensor,
        bias: Option<&Tensor>,
        probe: &mut dyn FnMut(super::LinearSite, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        use super::LinearSite;
        let a = self.attention.forward_probed(xs, bias, probe)?;
        probe(LinearSite::Intermediate, &a)?;
        let i = self.act.apply(&self.intermediate.forward(&a)?)?;
        probe(LinearSite::Output, &i)?;
        let o = self.output.forward(&i)?;
        self.layer_norm.forward(&residual_add(o, &a)?)
    }

    /// The linear layer at `site`.
    pub(crate) fn linear(&self, site: super::LinearSite) -> &Linear {
        use super::LinearSite;
        match site {
            LinearSite::Intermediate => &self.intermediate,
            LinearSite::Output => &self.output,
            other => self.attention.linear(other).unwrap_or(&self.output),
        }
    }

    /// Whether the layer's linears run the int8 kernel.
    pub(crate) fn is_int8(&self) -> bool {
        self.intermediate.is_int8()
    }

    /// Packs the layer's linears for int8 inference, with this layer's
    /// (number `layer`) factors from `smoothing` when given; returns how many
    /// matrices were packed (4).
    pub(crate) fn quantize_int8(
        &mut self,
        layer: usize,
        smoothing: Option<&Int8Smoothing>,
    ) -> Result<usize> {
        use super::LinearSite;
        let n = self.attention.quantize_int8(layer, smoothing)?;
        for (site, linear) in [
            (LinearSite::Intermediate, &mut self.intermediate),
            (LinearSite::Output, &mut self.output),
        ] {
            let factors = match smoothing {
                Some(s) => Some(s.factors_for(layer, site, &linear.weight)?),
                None => None,
            };
            linear.quantize_int8_smoothed(factors.as_ref())?;
        }
        Ok(n + 2)
    }

    /// The layer in eval mode for new tokens over cached keys and values (see
    /// [`BertAttention::forward_cached`]): the output and the new keys and values.
    pub(crate) fn forward_cached(
        &self,
        xs: &Tensor,
        bias: Option<&Tensor>,
        past: Option<(&Tensor, &Tensor)>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (a, k, v) = self.attention.forward_cached(xs, bias, past)?;
        Ok((self.feed_forward(&a, None, false)?, k, v))
    }
}

/// `tanh(dense(h[:, 0]))` (`pooler.dense`): the first token's state through a
/// dense layer, what HF's sequence classifier and pair head read.
#[derive(Debug)]
pub struct Pooler {
    dense: Linear,
}

impl Pooler {
    /// Creates `dense.{weight,bias}` `[H, H]`, `[H]` under `p` (`bert/pooler`).
    pub fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Pooler {
            dense: Linear::new(&(p / "dense"), h, h, config)?,
        })
    }

    /// Packs the dense layer for int8 inference ([`Linear::quantize_int8`]).
    pub fn quantize_int8(&mut self) -> Result<()> {
        self.dense.quantize_int8()
    }

    /// `[B, L, H]` hidden states -> `[B, H]`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.dense.forward(&hidden.f_select(1, 0)?)?.f_tanh()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn cpu_dropout_drops_at_the_rate_and_stays_unbiased() -> Result<()> {
        let _rng = crate::rng_lock();
        tch::manual_seed(7);
        let xs = Tensor::f_ones([1000, 1000], (Kind::Float, Device::Cpu))?;
        let ys = dropout(&xs, 0.1, true)?;
        let zero_frac = ys
            .f_eq(0.0)?
            .f_to_kind(Kind::Double)?
            .f_mean(Kind::Double)?;
        let zero_frac = zero_frac.f_double_value(&[])?;
        // 10^6 Bernoulli(0.1) draws: the standard deviation of the fraction is 3e-4.
        assert!(
            (zero_frac - 0.1).abs() < 2e-3,
            "dropped fraction {zero_frac}"
        );
        let mean = ys.f_mean(Kind::Double)?.f_double_value(&[])?;
        assert!((mean - 1.0).abs() < 3e-3, "mean after scaling {mean}");
        // Kept values are scaled by exactly 1 / (1 - p) for the quantised p.
        let max = ys.f_max()?.f_double_value(&[])?;
        assert!((max - 65536.0 / (65536.0 - 6554.0)).abs() < 1e-5);
        // Seeded: the same seed gives the same mask; eval mode is the identity.
        tch::manual_seed(7);
        let again = dropout(&xs, 0.1, true)?;
        assert!(again.f_equal(&ys)?);
        assert!(dropout(&xs, 0.1, false)?.f_equal(&xs)?);
        Ok(())
    }

    #[test]
    fn unfused_attention_with_dropout_matches_the_fused_kernel() -> Result<()> {
        let _rng = crate::rng_lock();
        // Attention dropout so small that no probability of this 2 x 2 x 6 x 6
        // problem is dropped (each is, with chance 1/65536, under the seed below):
        // the unfused training path must then equal libtorch's fused kernel, with
        // and without a padding mask, up to the 1 + 1/65535 rescaling.
        tch::manual_seed(11);
        let config = BertConfig {
            hidden_size: 16,
            num_attention_heads: 2,
            intermediate_size: 32,
            attention_probs_dropout_prob: 1e-9,
            hidden_dropout_prob: 0.0,
            ..BertConfig::default()
        };
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let attn = BertAttention::new(&vs.root(), &config)?;
        // Weights far larger than the N(0, 0.02) initialisation, so that the
        // attention is sharp and a wrong scale or mask would show.
        tch::no_grad(|| -> Result<()> {
            for (_, mut t) in vs.variables() {
                let r = t.f_randn_like()?;
                t.f_copy_(&r)?;
            }
            Ok(())
        })?;
        let xs = Tensor::f_randn([2, 6, 16], (Kind::Float, Device::Cpu))?;
        let pad = MlmInput::new(Tensor::f_zeros([2, 6], (Kind::Int64, Device::Cpu))?)
            .with_attention_mask(
                Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]).view([2, 6]),
            );
        let bias = pad.attention_bias(Kind::Float)?;
        for mask in [None, bias.as_ref()] {
            let fused = tch::no_grad(|| attn.forward_t(&xs, mask, None, false))?;
            let unfused = tch::no_grad(|| attn.forward_t(&xs, mask, None, true))?;
            assert!(unfused.f_allclose(&fused, 1e-4, 1e-4, false)?);
        }
        Ok(())
    }

    #[test]
    fn cpu_dropout_passes_gradients_through_kept_elements_only() -> Result<()> {
        let _rng = crate::rng_lock();
        tch::manual_seed(3);
        let xs = Tensor::f_rand([64, 64], (Kind::Float, Device::Cpu))?.f_set_requires_grad(true)?;
        let ys = dropout(&xs, 0.5, true)?;
        ys.f_sum(Kind::Float)?.f_backward()?;
        let grad = xs.grad();
        // d ys / d xs is 2 where kept and 0 where dropped.
        let expected = ys.f_ne(0.0)?.f_to_kind(Kind::Float)?.f_mul_scalar(2.0)?;
        assert!(grad.f_allclose(&expected, 1e-6, 1e-6, false)?);
        Ok(())
    }
}

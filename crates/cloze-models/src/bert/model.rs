//! `BertModel` (the encoder) and `BertForPreTraining` (encoder + MLM head + NSP/SOP
//! head; the heads themselves live in [`crate::heads`]).

use tch::nn::Path;
use tch::{Kind, Tensor};

use super::input::{combine_biases, shape_err};
use super::layers::{BertEmbeddings, BertLayer, Pooler};
use super::{BertConfig, MlmInput, RelativePositionBias};
use crate::heads::{MlmHead, PairHead};
use crate::{Error, Result};

/// What the encoder returns.
#[derive(Debug)]
pub struct BertOutput {
    /// Hidden states of the last layer, `[B, L, H]`.
    pub last_hidden_state: Tensor,
    /// `tanh(dense(h[:, 0]))`, `[B, H]`; `None` for a model built without a pooler.
    pub pooler_output: Option<Tensor>,
}

/// The BERT encoder: embeddings, `num_hidden_layers` post-LN layers, optional pooler,
/// and, when the config enables it, UniLM-v2's relative position bias.
///
/// Variables live under the given path with HF's names (`embeddings.*`,
/// `encoder.layer.{i}.*`, `pooler.dense.*`), so a `BertModel` built at the root of a
/// `VarStore` has exactly the keys of HF's `BertModel`. With
/// [`BertConfig::rel_pos_bins`] positive it also has s2s-ft's `rel_pos_bias.weight`
/// (see [`RelativePositionBias`]), which stock transformers does not know.
///
/// [`BertModel::forward_incremental`] runs it as a decoder over a [`crate::KvCache`].
#[derive(Debug)]
pub struct BertModel {
    pub(super) embeddings: BertEmbeddings,
    pub(super) layers: Vec<BertLayer>,
    pooler: Option<Pooler>,
    pub(super) rel_pos_bias: Option<RelativePositionBias>,
    pub(super) config: BertConfig,
}

impl BertModel {
    /// The encoder with its pooler, as HF's `BertModel`.
    pub fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        Self::build(p, config, true)
    }

    /// The encoder without a pooler, as inside HF's `BertForMaskedLM`.
    pub fn new_without_pooler(p: &Path, config: &BertConfig) -> Result<Self> {
        Self::build(p, config, false)
    }

    fn build(p: &Path, config: &BertConfig, pooler: bool) -> Result<Self> {
        config.validate()?;
        let _span = tracing::debug_span!("bert_new", layers = config.num_hidden_layers).entered();
        let enc = p / "encoder" / "layer";
        let layers = (0..config.num_hidden_layers)
            .map(|i| BertLayer::new(&(&enc / i), config))
            .collect::<Result<Vec<_>>>()?;
        let embeddings = BertEmbeddings::new(&(p / "embeddings"), config)?;
        let pooler = if pooler {
            Some(Pooler::new(&(p / "pooler"), config)?)
        } else {
            None
        };
        // Created last, and only when enabled, so that a plain BERT draws the
        // same initial weights from a seed as before the option existed.
        let rel_pos_bias = RelativePositionBias::new(&(p / "rel_pos_bias"), config)?;
        Ok(BertModel {
            embeddings,
            layers,
            pooler,
            rel_pos_bias,
            config: config.clone(),
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The pooler, `None` for an encoder built by [`BertModel::new_without_pooler`].
    pub fn pooler(&self) -> Option<&Pooler> {
        self.pooler.as_ref()
    }

    /// The relative position bias; `None` unless [`BertConfig::rel_pos_bins`] is positive.
    pub fn rel_pos_bias(&self) -> Option<&RelativePositionBias> {
        self.rel_pos_bias.as_ref()
    }

    /// The embedding block (its word-embedding matrix is the tied MLM decoder).
    pub fn embeddings(&self) -> &BertEmbeddings {
        &self.embeddings
    }

    /// Embedding output `[B, L, H]` (what HF reports as `hidden_states[0]`).
    pub fn embed(&self, input: &MlmInput, train: bool) -> Result<Tensor> {
        input.validate(&self.config)?;
        self.embeddings.forward_t(input, train)
    }

    /// Runs the encoder; `train` switches dropout on.
    pub fn forward_t(&self, input: &MlmInput, train: bool) -> Result<BertOutput> {
        input.validate(&self.config)?;
        self.forward_validated(input, train)
    }

    pub(crate) fn forward_validated(&self, input: &MlmInput, train: bool) -> Result<BertOutput> {
        let mut hidden = self.embeddings.forward_t(input, train)?;
        // The bias in the type of the attention products (bf16 under a bf16
        // autocast), built once for all layers: the padding / 3-D mask plus,
        // when enabled, the relative position bias every layer shares.
        let kind = crate::precision::product_kind().unwrap_or_else(|| hidden.kind());
        let bias = self.attention_bias(input, kind)?;
        // Int8 kernels quantise each input per tensor: padding rows (whose
        // states in trained models carry outliers) are zeroed at their inputs
        // so that only real tokens set the range. Real rows are unaffected:
        // padding is masked out as a key.
        let keep = match (&input.attention_mask, self.layers.first()) {
            (Some(m), Some(first)) if first.is_int8() && m.dim() == 2 => {
                Some(m.f_to_kind(hidden.kind())?.f_unsqueeze(-1)?)
            }
            _ => None,
        };
        for layer in &self.layers {
            hidden = layer.forward_t(&hidden, bias.as_ref(), keep.as_ref(), train)?;
        }
        let pooler_output = match &self.pooler {
            Some(p) => Some(p.forward(&hidden)?),
            None => None,
        };
        Ok(BertOutput {
            last_hidden_state: hidden,
            pooler_output,
        })
    }
}

impl crate::QuantizeInt8 for BertModel {
    fn quantize_int8(&mut self, smoothing: Option<&crate::Int8Smoothing>) -> Result<usize> {
        let mut n = 0;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            n += layer.quantize_int8(i, smoothing)?;
        }
        if let Some(pooler) = &mut self.pooler {
            pooler.quantize_int8()?;
            n += 1;
        }
        Ok(n)
    }
}

impl crate::QuantizeInt8 for BertForPreTraining {
    fn quantize_int8(&mut self, smoothing: Option<&crate::Int8Smoothing>) -> Result<usize> {
        let n = self.bert.quantize_int8(smoothing)?;
        self.mlm.quantize_int8()?;
        Ok(n + 1)
    }
}

impl BertModel {
    /// The additive attention bias every layer applies to `input`, in `kind`:
    /// the padding / 3-D mask plus, when enabled, the relative position bias.
    pub(super) fn attention_bias(&self, input: &MlmInput, kind: Kind) -> Result<Option<Tensor>> {
        let relative = match &self.rel_pos_bias {
            Some(rel) => {
                let pos = positions_of(input)?;
                Some(rel.forward(&pos, &pos, kind)?)
            }
            None => None,
        };
        combine_biases(input.attention_bias(kind)?, relative)
    }
}

/// The position ids of a validated input as `[B or 1, L]` int64: the given ones,
/// else `0..L`, as the embeddings read them.
fn positions_of(input: &MlmInput) -> Result<Tensor> {
    let pos = match &input.position_ids {
        Some(p) => p.f_to_kind(Kind::Int64)?,
        None => {
            let l = input.input_ids.size()[1];
            Tensor::f_arange(l, (Kind::Int64, input.input_ids.device()))?
        }
    };
    Ok(if pos.dim() == 1 {
        pos.f_unsqueeze(0)?
    } else {
        pos
    })
}

/// What [`BertForPreTraining::forward_t`] returns.
#[derive(Debug)]
pub struct PreTrainingOutput {
    /// MLM logits: `[N, V]` for N gathered masked positions, else `[B, L, V]`.
    pub mlm_logits: Tensor,
    /// NSP/SOP logits `[B, 2]`; `None` for a model built by
    /// [`BertForPreTraining::new_masked_lm`].
    pub pair_logits: Option<Tensor>,
}

/// BERT with its pretraining heads; the same keys as HF's `BertForPreTraining`
/// (`bert.*`, `cls.predictions.*`, `cls.seq_relationship.*`), or as HF's
/// `BertForMaskedLM` when built by [`BertForPreTraining::new_masked_lm`].
#[derive(Debug)]
pub struct BertForPreTraining {
    bert: BertModel,
    mlm: MlmHead,
    pair: Option<PairHead>,
}

impl BertForPreTraining {
    /// Encoder with pooler, MLM head and the 2-way pair head (NSP or SOP): HF's
    /// `BertForPreTraining`. `p` is normally `vs.root()`; variables get HF's names
    /// under it, created in the order encoder, MLM head, pair head (the order the
    /// seeded initialisation depends on).
    pub fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        let bert = BertModel::new(&(p / "bert"), config)?;
        let mlm = MlmHead::new(p, config, bert.embeddings().word_embeddings())?;
        let pair = PairHead::new(p, config)?;
        Ok(BertForPreTraining {
            bert,
            mlm,
            pair: Some(pair),
        })
    }

    /// Encoder without pooler plus the MLM head only (HF's `BertForMaskedLM` layout),
    /// for MLM-only objectives where a pair head would be dead weight.
    pub fn new_masked_lm(p: &Path, config: &BertConfig) -> Result<Self> {
        let bert = BertModel::new_without_pooler(&(p / "bert"), config)?;
        let mlm = MlmHead::new(p, config, bert.embeddings().word_embeddings())?;
        Ok(BertForPreTraining {
            bert,
            mlm,
            pair: None,
        })
    }

    /// The encoder.
    pub fn bert(&self) -> &BertModel {
        &self.bert
    }

    /// The MLM head.
    pub fn mlm_head(&self) -> &MlmHead {
        &self.mlm
    }

    /// The pair head; `None` for a model built by [`BertForPreTraining::new_masked_lm`].
    pub fn pair_head(&self) -> Option<&PairHead> {
        self.pair.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        self.bert.config()
    }

    /// Vocabulary logits `[..., V]` (fp32) of hidden states `[..., H]` through
    /// the MLM head: what a decoder calls on [`crate::IncrementalOutput::hidden`]
    /// to score its pseudo tokens. A last dimension other than `hidden_size` is
    /// [`Error::InputShape`].
    pub fn mlm_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let h = self.config().hidden_size;
        if hidden.size().last() != Some(&h) || !hidden.is_floating_point() {
            return Err(shape_err(
                "hidden",
                hidden,
                &format!("[..., {h}] of floats"),
            ));
        }
        self.mlm.forward(hidden)
    }

    /// Runs encoder and heads. With `masked_positions` (1-D int64 flat indices into
    /// the `B * L` positions, e.g. `b * L + i`), only those rows are projected onto
    /// the vocabulary, which is most of the compute saved in training a small model.
    pub fn forward_t(
        &self,
        input: &MlmInput,
        masked_positions: Option<&Tensor>,
        train: bool,
    ) -> Result<PreTrainingOutput> {
        let (b, l) = input.validate(self.config())?;
        if let Some(pos) = masked_positions {
            check_positions(pos, b * l)?;
        }
        let out = self.bert.forward_validated(input, train)?;
        let hidden = out.last_hidden_state;
        let mlm_logits = match masked_positions {
            Some(pos) => {
                let h = self.config().hidden_size;
                let picked = hidden.f_reshape([b * l, h])?.f_index_select(0, pos)?;
                self.mlm.forward(&picked)?
            }
            None => self.mlm.forward(&hidden)?,
        };
        let pair_logits = match (&self.pair, &out.pooler_output) {
            (Some(pair), Some(pooled)) => Some(pair.forward(pooled)?),
            _ => None,
        };
        Ok(PreTrainingOutput {
            mlm_logits,
            pair_logits,
        })
    }
}

fn check_positions(pos: &Tensor, limit: i64) -> Result<()> {
    if pos.dim() != 1 || pos.kind() != Kind::Int64 {
        return Err(Error::MaskedPositions {
            limit,
            reason: format!("got shape {:?} of {:?}", pos.size(), pos.kind()),
        });
    }
    if pos.numel() == 0 {
        return Ok(());
    }
    let (lo, hi) = pos.f_aminmax(None::<i64>, false)?;
    let (min, max) = (lo.f_int64_value(&[])?, hi.f_int64_value(&[])?);
    if min < 0 || max >= limit {
        return Err(Error::MaskedPositions {
            limit,
            reason: format!("values span [{min}, {max}]"),
        });
    }
    Ok(())
}

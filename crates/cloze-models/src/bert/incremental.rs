//! Incremental decoding with a key/value cache: the encoder run as UniLM-v2's
//! sequence-to-sequence decoder (microsoft/unilm s2s-ft, `BertForSeq2SeqDecoder`).
//!
//! At each step the caller passes only the new tokens (typically the token just
//! generated and a `[P]`/`[MASK]` pseudo token at the next position, with
//! explicit position ids) and a visibility of the new queries over the cached
//! keys followed by the new keys. Each layer attends over the cached keys and
//! values of that layer plus the new tokens' own, so the new tokens' hidden
//! states equal those a full forward pass over the whole sequence computes
//! under the matching 3-D mask. The caller then chooses which new tokens stay
//! in the cache ([`KvCache::append`]: the real token yes, the pseudo token no)
//! and reorders the cache along beams ([`KvCache::reorder`]).
//!
//! s2s-ft caches each layer's input hidden states and recomputes their keys and
//! values at every step; caching the keys and values themselves gives the same
//! result in eval mode and saves those products. The model knows nothing of
//! which tokens are pseudo tokens: the caller's visibility and `keep` say it.

use tch::{Kind, Tensor};

use super::input::{additive_bias, check_range, combine_biases, is_int, shape_err};
use super::{BertModel, MlmInput};
use crate::{Error, Result};

/// Per-layer keys and values of the tokens decoded so far, with their position
/// ids (the relative position bias needs the distance from a new query to every
/// cached key).
///
/// Keys and values are `[B, heads, L_cache, head_dim]` per layer, in the type of
/// the attention products; position ids `[B, L_cache]` int64. A cache starts
/// empty ([`KvCache::new`]) and grows only through [`KvCache::append`], so its
/// tensors always agree with each other; [`BertModel::forward_incremental`]
/// checks that they fit the model and the input.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    position_ids: Option<Tensor>,
}

/// What [`BertModel::forward_incremental`] returns for the new tokens.
#[derive(Debug)]
pub struct IncrementalOutput {
    /// Last-layer hidden states of the new tokens, `[B, L_new, H]`; project
    /// them with [`crate::BertForPreTraining::mlm_logits`].
    pub hidden: Tensor,
    /// Per layer, the new tokens' keys and values, `[B, heads, L_new, head_dim]`
    /// each: what [`KvCache::append`] takes from.
    pub new_kv: Vec<(Tensor, Tensor)>,
    /// The new tokens' position ids, `[B, L_new]` int64 (as given, or the
    /// default continuation `L_cache..L_cache + L_new`).
    pub position_ids: Tensor,
}

impl KvCache {
    /// An empty cache: the first step passes the whole source (and its first
    /// pseudo token) as new tokens.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached tokens per row.
    pub fn len(&self) -> i64 {
        self.position_ids
            .as_ref()
            .map_or(0, |p| p.size().get(1).copied().unwrap_or(0))
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows of the cache (beams times batch); `None` while empty.
    pub fn batch_size(&self) -> Option<i64> {
        self.position_ids.as_ref().map(|p| p.size()[0])
    }

    /// Per layer `(keys, values)`, `[B, heads, L_cache, head_dim]` each; empty
    /// while nothing is cached.
    pub fn layers(&self) -> &[(Tensor, Tensor)] {
        &self.layers
    }

    /// Position ids of the cached tokens, `[B, L_cache]` int64; `None` while empty.
    pub fn position_ids(&self) -> Option<&Tensor> {
        self.position_ids.as_ref()
    }

    /// Appends the keys, values and position ids of the new tokens at indices
    /// `keep` (into `0..L_new`, in the order given) of a step's output: `[0]`
    /// for "the generated token, not the pseudo token after it", `0..n` for a
    /// source of `n` tokens followed by one pseudo token. An empty `keep`
    /// appends nothing.
    ///
    /// Errors: an index outside `0..L_new` ([`Error::IndexOutOfRange`]); an
    /// output whose layers, batch size or head shapes disagree with each other
    /// or with what is cached ([`Error::CacheMismatch`]).
    pub fn append(&mut self, new: &IncrementalOutput, keep: &[i64]) -> Result<()> {
        let pos_size = new.position_ids.size();
        let [b, ln] = pos_size[..] else {
            return Err(shape_err(
                "position_ids",
                &new.position_ids,
                "[batch, new tokens] of integers",
            ));
        };
        let Some((k0, _)) = new.new_kv.first() else {
            return Err(Error::CacheMismatch {
                what: "number of layers",
                expected: vec![self.layers.len() as i64],
                found: vec![0],
            });
        };
        let shape = k0.size();
        if shape.len() != 4 || shape[0] != b || shape[2] != ln {
            return Err(Error::CacheMismatch {
                what: "new keys ([batch, heads, new tokens, head_dim])",
                expected: vec![b, -1, ln, -1],
                found: shape,
            });
        }
        for (k, v) in &new.new_kv {
            for t in [k, v] {
                if t.size() != shape {
                    return Err(Error::CacheMismatch {
                        what: "new keys and values of every layer",
                        expected: shape.clone(),
                        found: t.size(),
                    });
                }
            }
        }
        if let Some((ck, _)) = self.layers.first() {
            if self.layers.len() != new.new_kv.len() {
                return Err(Error::CacheMismatch {
                    what: "number of layers",
                    expected: vec![self.layers.len() as i64],
                    found: vec![new.new_kv.len() as i64],
                });
            }
            let cached = ck.size();
            let fits = cached[0] == b && cached[1] == shape[1] && cached[3] == shape[3];
            if !fits {
                return Err(Error::CacheMismatch {
                    what: "batch, heads and head_dim of the new keys",
                    expected: vec![cached[0], cached[1], -1, cached[3]],
                    found: shape,
                });
            }
        }
        if let (Some(&min), Some(&max)) = (keep.iter().min(), keep.iter().max()) {
            if min < 0 || max >= ln {
                return Err(Error::IndexOutOfRange {
                    what: "keep",
                    min,
                    max,
                    limit: ln,
                });
            }
        } else {
            return Ok(());
        }
        let index = Tensor::from_slice(keep).f_to_device(k0.device())?;
        let grow = |old: Option<&Tensor>, new: &Tensor, dim: i64| -> Result<Tensor> {
            let picked = new.f_index_select(dim, &index.f_to_device(new.device())?)?;
            Ok(match old {
                Some(old) => Tensor::f_cat(&[old, &picked], dim)?,
                None => picked,
            })
        };
        let positions = grow(
            self.position_ids.as_ref(),
            &new.position_ids.f_to_kind(Kind::Int64)?,
            1,
        )?;
        let layers = new
            .new_kv
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let old = self.layers.get(i);
                Ok((
                    grow(old.map(|o| &o.0), k, 2)?,
                    grow(old.map(|o| &o.1), v, 2)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.layers = layers;
        self.position_ids = Some(positions);
        Ok(())
    }

    /// Reorders (and possibly repeats or drops) the rows of the cache:
    /// row `i` becomes old row `beam_indices[i]`, as beam search needs after
    /// each step (and to expand one source row into `k` beams). `beam_indices`
    /// is a 1-D integer tensor with values in `0..batch_size`; the new batch
    /// size is its length. An empty cache stays empty.
    pub fn reorder(&mut self, beam_indices: &Tensor) -> Result<()> {
        if beam_indices.dim() != 1 || !is_int(beam_indices.kind()) {
            return Err(shape_err(
                "beam_indices",
                beam_indices,
                "[rows] of integers",
            ));
        }
        let (Some(b), Some(pos)) = (self.batch_size(), self.position_ids.as_ref()) else {
            return Ok(());
        };
        if beam_indices.numel() > 0 {
            check_range("beam_indices", beam_indices, b)?;
        }
        let index = beam_indices
            .f_to_kind(Kind::Int64)?
            .f_to_device(pos.device())?;
        let pick = |t: &Tensor| -> Result<Tensor> {
            Ok(t.f_index_select(0, &index.f_to_device(t.device())?)?)
        };
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| Ok((pick(k)?, pick(v)?)))
            .collect::<Result<Vec<_>>>()?;
        self.position_ids = Some(pick(pos)?);
        self.layers = layers;
        Ok(())
    }
}

impl BertModel {
    /// One decoding step in eval mode (no dropout): the new tokens of `input`
    /// attend to the cached tokens of `cache` and to each other as `visibility`
    /// allows, and their hidden states and per-layer keys and values come back.
    ///
    /// - `input`: the new tokens' ids `[B, L_new]`, segment ids, and position ids
    ///   (`[B, L_new]` or `[L_new]`; when absent, `L_cache..L_cache + L_new`, the
    ///   continuation of a cache filled in order). Its `attention_mask`, if set,
    ///   is the padding of the new tokens as keys; `attention_3d` must be absent
    ///   (`visibility` takes its place).
    /// - `visibility`: `[B, L_new, L_cache + L_new]`, or `[L_new, L_cache + L_new]`
    ///   shared by every row, non-zero where new query `i` may see key `j`, keys
    ///   ordered cached first, then new. A row seeing nothing attends uniformly
    ///   (finite), as in [`BertModel::forward_t`].
    /// - `cache`: empty, or filled by [`KvCache::append`] from earlier steps of
    ///   this model with the same batch size.
    ///
    /// The relative position bias, when the config has one, is taken between
    /// the new tokens' position ids and those of the cached and new keys. The
    /// hidden states equal (to float rounding) those of [`BertModel::forward_t`]
    /// over the cached and new tokens together with the 3-D mask whose rows
    /// are the ones each token was given when it was new.
    ///
    /// Call it inside `tch::no_grad` (as decoding does): otherwise every cached
    /// key keeps the autograd graph of its step alive. Shapes, kinds, index
    /// ranges and the cache's fit are checked here, once, and are typed errors.
    pub fn forward_incremental(
        &self,
        input: &MlmInput,
        visibility: &Tensor,
        cache: &KvCache,
    ) -> Result<IncrementalOutput> {
        let _span = tracing::trace_span!("forward_incremental", cached = cache.len()).entered();
        if let Some(m3) = &input.attention_3d {
            return Err(shape_err(
                "attention_3d",
                m3,
                "none in incremental decoding: pass the visibility over cached and new keys",
            ));
        }
        let (b, ln) = input.validate(&self.config)?;
        let lc = cache.len();
        self.check_cache(cache, b, lc)?;
        let vis_size = visibility.size();
        if vis_size != [b, ln, lc + ln] && vis_size != [ln, lc + ln] {
            return Err(shape_err(
                "visibility",
                visibility,
                &format!(
                    "[{b}, {ln}, {k}] or [{ln}, {k}] (batch, new tokens, cached + new tokens)",
                    k = lc + ln
                ),
            ));
        }
        let device = input.input_ids.device();
        let positions = match &input.position_ids {
            Some(p) => {
                let p = p.f_to_kind(Kind::Int64)?;
                let p = if p.dim() == 1 { p.f_unsqueeze(0)? } else { p };
                p.f_expand([b, ln], false)?
            }
            None => {
                let max = self.config.max_position_embeddings;
                if lc + ln > max {
                    return Err(Error::SequenceTooLong { len: lc + ln, max });
                }
                Tensor::f_arange_start(lc, lc + ln, (Kind::Int64, device))?
                    .f_unsqueeze(0)?
                    .f_expand([b, ln], false)?
            }
        };
        let embed_input = MlmInput {
            input_ids: input.input_ids.shallow_clone(),
            token_type_ids: input.token_type_ids.as_ref().map(Tensor::shallow_clone),
            position_ids: Some(positions.shallow_clone()),
            attention_mask: None,
            attention_3d: None,
            role_ids: input.role_ids.as_ref().map(Tensor::shallow_clone),
        };
        let mut hidden = self.embeddings.forward_t(&embed_input, false)?;

        // The additive bias of every layer, built once, in the products' type.
        let kind = crate::precision::product_kind().unwrap_or_else(|| hidden.kind());
        // [B or 1, Ln, Lk]: a 2-D visibility broadcasts over the rows.
        let mut allowed = match visibility.dim() {
            2 => visibility.f_ne(0)?.f_unsqueeze(0)?,
            _ => visibility.f_ne(0)?,
        };
        if let Some(pad) = &input.attention_mask {
            let cached = Tensor::f_ones([b, lc], (Kind::Bool, device))?;
            let keys = Tensor::f_cat(&[cached, pad.f_ne(0)?], 1)?;
            allowed = allowed.f_logical_and(&keys.f_unsqueeze(1)?)?;
        }
        let mask = additive_bias(&allowed.f_unsqueeze(1)?, kind)?;
        let relative = match &self.rel_pos_bias {
            Some(rel) => {
                let keys = match cache.position_ids() {
                    Some(cached) => {
                        Tensor::f_cat(&[cached, &positions.f_to_device(cached.device())?], 1)?
                    }
                    None => positions.shallow_clone(),
                };
                Some(rel.forward(&positions, &keys, kind)?)
            }
            None => None,
        };
        let bias = combine_biases(Some(mask), relative)?;

        let mut new_kv = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let past = cache.layers.get(i).map(|(k, v)| (k, v));
            let (out, k, v) = layer.forward_cached(&hidden, bias.as_ref(), past)?;
            hidden = out;
            new_kv.push((k, v));
        }
        Ok(IncrementalOutput {
            hidden,
            new_kv,
            position_ids: positions,
        })
    }

    /// A non-empty cache must have this model's layers and head shapes and the
    /// input's batch size.
    fn check_cache(&self, cache: &KvCache, b: i64, lc: i64) -> Result<()> {
        let Some(cb) = cache.batch_size() else {
            return Ok(());
        };
        if cb != b {
            return Err(Error::CacheMismatch {
                what: "batch size (reorder the cache to the input's rows)",
                expected: vec![b],
                found: vec![cb],
            });
        }
        if cache.layers.len() != self.layers.len() {
            return Err(Error::CacheMismatch {
                what: "number of layers",
                expected: vec![self.layers.len() as i64],
                found: vec![cache.layers.len() as i64],
            });
        }
        let expected = vec![
            b,
            self.config.num_attention_heads,
            lc,
            self.config.head_dim(),
        ];
        for (k, v) in &cache.layers {
            for t in [k, v] {
                if t.size() != expected {
                    return Err(Error::CacheMismatch {
                        what: "cached keys and values ([batch, heads, cached tokens, head_dim])",
                        expected: expected.clone(),
                        found: t.size(),
                    });
                }
            }
        }
        Ok(())
    }
}

//! `MlmInput`: the tensors one forward pass reads, validated once at the boundary.

use tch::{Device, Kind, Tensor};

use super::BertConfig;
use crate::{Error, Result};

/// The inputs of a BERT forward pass.
///
/// The padding mask (`attention_mask`, `[B, L]`, 1 = real token) is kept apart
/// from the optional 3-D mask (`attention_3d`, `[B, Lq, Lk]`, 1 = query may see key)
/// that UniLM-v2's partially autoregressive attention needs; when both are given a
/// key is visible only if both allow it.
#[derive(Debug)]
pub struct MlmInput {
    /// Token ids, `[B, L]`, int64 (int32 accepted).
    pub input_ids: Tensor,
    /// Segment ids, `[B, L]`; all zeros when absent.
    pub token_type_ids: Option<Tensor>,
    /// Position ids, `[B, L]` or `[L]`; `0..L` when absent. They index the
    /// position embeddings and, when the config enables it, give the distances
    /// of the relative position bias (tokens sharing a position id, like
    /// UniLM-v2's pseudo tokens and the tokens they stand for, are at distance 0).
    pub position_ids: Option<Tensor>,
    /// Padding mask, `[B, L]`, non-zero where the token is real.
    pub attention_mask: Option<Tensor>,
    /// Full attention mask, `[B, L, L]`, non-zero where query `i` may attend to key `j`.
    pub attention_3d: Option<Tensor>,
    /// Speaker role ids, `[B, L]`, for a model with a role-embedding table
    /// ([`BertConfig::role_type_size`]); row 0 when absent.
    pub role_ids: Option<Tensor>,
}

impl MlmInput {
    /// Input ids only: one segment, positions `0..L`, no padding.
    pub fn new(input_ids: Tensor) -> Self {
        MlmInput {
            input_ids,
            token_type_ids: None,
            position_ids: None,
            attention_mask: None,
            attention_3d: None,
            role_ids: None,
        }
    }

    /// Sets the segment ids.
    pub fn with_token_type_ids(mut self, t: Tensor) -> Self {
        self.token_type_ids = Some(t);
        self
    }

    /// Sets explicit position ids.
    pub fn with_position_ids(mut self, t: Tensor) -> Self {
        self.position_ids = Some(t);
        self
    }

    /// Sets the `[B, L]` padding mask.
    pub fn with_attention_mask(mut self, t: Tensor) -> Self {
        self.attention_mask = Some(t);
        self
    }

    /// Sets the `[B, L, L]` attention mask.
    pub fn with_attention_3d(mut self, t: Tensor) -> Self {
        self.attention_3d = Some(t);
        self
    }

    /// Sets the speaker role ids.
    pub fn with_role_ids(mut self, t: Tensor) -> Self {
        self.role_ids = Some(t);
        self
    }

    /// Moves every tensor to `device` (a no-op for tensors already there).
    pub fn to_device(&self, device: Device) -> Result<Self> {
        let mv = |t: &Option<Tensor>| -> Result<Option<Tensor>> {
            Ok(match t {
                Some(t) => Some(t.f_to_device(device)?),
                None => None,
            })
        };
        Ok(MlmInput {
            input_ids: self.input_ids.f_to_device(device)?,
            token_type_ids: mv(&self.token_type_ids)?,
            position_ids: mv(&self.position_ids)?,
            attention_mask: mv(&self.attention_mask)?,
            attention_3d: mv(&self.attention_3d)?,
            role_ids: mv(&self.role_ids)?,
        })
    }

    /// Batch size and sequence length, after checking every shape, kind and index range
    /// against `config`, so that nothing past this point can make libtorch abort.
    pub fn validate(&self, config: &BertConfig) -> Result<(i64, i64)> {
        let size = self.input_ids.size();
        if size.len() != 2 || size[0] == 0 || size[1] == 0 || !is_int(self.input_ids.kind()) {
            return Err(shape_err(
                "input_ids",
                &self.input_ids,
                "[batch, len] of integers, both > 0",
            ));
        }
        let (b, l) = (size[0], size[1]);
        check_range("input_ids", &self.input_ids, config.vocab_size)?;
        if let Some(t) = &self.token_type_ids {
            if t.size() != [b, l] || !is_int(t.kind()) {
                return Err(shape_err(
                    "token_type_ids",
                    t,
                    &format!("[{b}, {l}] of integers"),
                ));
            }
            check_range("token_type_ids", t, config.type_vocab_size)?;
        }
        match &self.position_ids {
            Some(t) => {
                let s = t.size();
                let ok = s == [b, l] || s == [l] || s == [1, l];
                if !ok || !is_int(t.kind()) {
                    return Err(shape_err(
                        "position_ids",
                        t,
                        &format!("[{b}, {l}] or [{l}] of integers"),
                    ));
                }
                check_range("position_ids", t, config.max_position_embeddings)?;
            }
            None => {
                if l > config.max_position_embeddings {
                    return Err(Error::SequenceTooLong {
                        len: l,
                        max: config.max_position_embeddings,
                    });
                }
            }
        }
        if let Some(t) = &self.attention_mask {
            if t.size() != [b, l] {
                return Err(shape_err("attention_mask", t, &format!("[{b}, {l}]")));
            }
        }
        if let Some(t) = &self.attention_3d {
            if t.size() != [b, l, l] {
                return Err(shape_err("attention_3d", t, &format!("[{b}, {l}, {l}]")));
            }
        }
        if let Some(t) = &self.role_ids {
            let roles = config.role_type_size.unwrap_or(0);
            if roles <= 0 {
                return Err(shape_err(
                    "role_ids",
                    t,
                    "none: this model has no role embeddings (config.json sets no role_type_size)",
                ));
            }
            if t.size() != [b, l] || !is_int(t.kind()) {
                return Err(shape_err("role_ids", t, &format!("[{b}, {l}] of integers")));
            }
            check_range("role_ids", t, roles)?;
        }
        Ok((b, l))
    }

    /// The additive attention bias for scaled-dot-product attention: `[B, 1, 1, L]`
    /// (padding only) or `[B, 1, L, L]` (3-D mask), 0 where attention is allowed and
    /// the dtype's lowest finite value where it is not. A finite value rather than
    /// -inf keeps a fully masked query row finite (uniform attention) instead of NaN,
    /// which is what HF computes too. `None` when nothing is masked.
    pub(crate) fn attention_bias(&self, kind: Kind) -> Result<Option<Tensor>> {
        let pad = match &self.attention_mask {
            Some(m) => Some(m.f_ne(0)?),
            None => None,
        };
        let allowed = match (&self.attention_3d, pad) {
            (None, None) => return Ok(None),
            (None, Some(p)) => p.f_unsqueeze(1)?.f_unsqueeze(1)?,
            (Some(m3), None) => m3.f_ne(0)?.f_unsqueeze(1)?,
            (Some(m3), Some(p)) => m3
                .f_ne(0)?
                .f_logical_and(&p.f_unsqueeze(1)?)?
                .f_unsqueeze(1)?,
        };
        Ok(Some(additive_bias(&allowed, kind)?))
    }
}

/// `allowed` (bool, any shape) as an additive attention bias in `kind`: 0 where
/// attention is allowed, the kind's lowest finite value where it is not (see
/// [`MlmInput::attention_bias`] for why finite).
pub(crate) fn additive_bias(allowed: &Tensor, kind: Kind) -> Result<Tensor> {
    let low = match kind {
        Kind::Half => -65504.0,
        // bf16's lowest finite value, (2 - 2^-7) * 2^127; f32::MIN would
        // round to -inf in bf16.
        Kind::BFloat16 => -3.389_531_389_251_535_5e38,
        Kind::Double => f64::MIN,
        _ => f64::from(f32::MIN),
    };
    // (not allowed) * low: 0 where allowed, `low` where not, in the model's float kind.
    Ok(allowed
        .f_logical_not()?
        .f_to_kind(kind)?
        .f_mul_scalar(low)?)
}

/// The sum of an additive mask bias and a relative position bias, either of
/// which may be absent. Adding a bias of a few units to the lowest finite
/// value leaves it there (the sum rounds back to it rather than overflowing),
/// so masked entries stay masked and finite.
pub(crate) fn combine_biases(
    mask: Option<Tensor>,
    relative: Option<Tensor>,
) -> Result<Option<Tensor>> {
    Ok(match (mask, relative) {
        (Some(m), Some(r)) => Some(r.f_add(&m)?),
        (m, r) => m.or(r),
    })
}

/// Integer element kinds accepted for ids, positions and indices.
pub(crate) fn is_int(k: Kind) -> bool {
    matches!(
        k,
        Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
    )
}

pub(crate) fn shape_err(what: &'static str, t: &Tensor, expected: &str) -> Error {
    Error::InputShape {
        what,
        found: t.size(),
        kind: format!("{:?}", t.kind()),
        expected: expected.to_string(),
    }
}

/// Checks `0 <= t < limit`; one device synchronisation for both bounds.
pub(crate) fn check_range(what: &'static str, t: &Tensor, limit: i64) -> Result<()> {
    let (lo, hi) = t.f_aminmax(None::<i64>, false)?;
    let (min, max) = (lo.f_int64_value(&[])?, hi.f_int64_value(&[])?);
    if min < 0 || max >= limit {
        return Err(Error::IndexOutOfRange {
            what,
            min,
            max,
            limit,
        });
    }
    Ok(())
}

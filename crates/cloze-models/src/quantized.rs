//! The GPTQ checkpoint layout (`qweight`/`qzeros`/`scales`/`g_idx`), read
//! and written here so that every command that loads a model loads a
//! quantised one: [`crate::hf::read_weights`] turns each quantised linear
//! layer back into its fp32 `weight` at load time.
//!
//! Per quantised linear layer `P` (`P.weight` is absent):
//! - `P.qweight` int32 `[in * bits / 32, out]`: for each output column, the
//!   codes of its `in` input weights as one little-endian bit stream, `bits`
//!   bits each, 32 codes in `bits` words (a code may straddle two words, as
//!   GPTQ's 3-bit packing does);
//! - `P.qzeros` int32 `[in / group_size, out * bits / 32]`: the zero points,
//!   packed the same way along the output dimension; as stored by
//!   `checkpoint_format = "gptq_v2"` (what cloze writes), or minus one as
//!   AutoGPTQ's original `"gptq"` stores them (read too; that convention
//!   cannot store a zero point of 0, hence v2 for writing);
//! - `P.scales` fp16 `[in / group_size, out]`;
//! - `P.g_idx` int32 `[in]`: the group of each input (`i / group_size`;
//!   no act-order);
//! - `P.bias` as in a dense checkpoint.
//!
//! The weight is `scales[g] * (code - zero[g])` with `g = g_idx[i]`.
//! `config.json` carries `"quantization_config": {"quant_method": "gptq",
//! "bits", "group_size", "desc_act": false, "sym": false,
//! "checkpoint_format": "gptq_v2"}`.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use crate::{Error, Result};

/// The `quantization_config` of a GPTQ checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptqConfig {
    /// Bits per weight (2, 3, 4 or 8).
    pub bits: i64,
    /// Input columns per group.
    pub group_size: i64,
    /// `checkpoint_format = "gptq_v2"`: zero points stored as they are
    /// (else minus one, the original convention).
    pub v2: bool,
}

impl GptqConfig {
    /// Reads `quantization_config` from a config's extra fields; `None` for
    /// a dense model.
    pub fn from_extra(extra: &serde_json::Map<String, serde_json::Value>) -> Result<Option<Self>> {
        let Some(q) = extra.get("quantization_config") else {
            return Ok(None);
        };
        let bad = |why: &str| Error::InvalidConfig {
            field: "quantization_config",
            reason: why.to_owned(),
        };
        if q.get("quant_method").and_then(|v| v.as_str()) != Some("gptq") {
            return Err(bad("only quant_method \"gptq\" is supported"));
        }
        if q.get("desc_act").and_then(|v| v.as_bool()) == Some(true) {
            return Err(bad("desc_act (act-order) checkpoints are not supported"));
        }
        let bits = q
            .get("bits")
            .and_then(|v| v.as_i64())
            .filter(|b| [2, 3, 4, 8].contains(b))
            .ok_or_else(|| bad("bits must be 2, 3, 4 or 8"))?;
        let group_size = q
            .get("group_size")
            .and_then(|v| v.as_i64())
            .filter(|g| *g > 0)
            .ok_or_else(|| bad("group_size must be positive (-1, one group, is not supported)"))?;
        let v2 = match q.get("checkpoint_format").and_then(|v| v.as_str()) {
            None | Some("gptq") => false,
            Some("gptq_v2") => true,
            Some(other) => {
                return Err(bad(&format!(
                    "checkpoint_format {other:?} is not supported"
                )))
            }
        };
        Ok(Some(Self {
            bits,
            group_size,
            v2,
        }))
    }

    /// The `quantization_config` value to write.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "quant_method": "gptq",
            "bits": self.bits,
            "group_size": self.group_size,
            "desc_act": false,
            "sym": false,
            "checkpoint_format": if self.v2 { "gptq_v2" } else { "gptq" },
        })
    }
}

/// Packs `codes` `[n, cols]` (values below 2^bits) along dimension 0 into
/// int32 words `[n * bits / 32, cols]`, a little-endian bit stream per column.
pub fn pack(codes: &Tensor, bits: i64) -> Result<Tensor> {
    let (n, cols) = codes.size2()?;
    if (n * bits) % 32 != 0 {
        return Err(Error::InvalidConfig {
            field: "quantization_config",
            reason: format!("{n} values of {bits} bits do not fill whole 32-bit words"),
        });
    }
    let words = n * bits / 32;
    let codes = codes.f_to_kind(Kind::Int64)?;
    let out = Tensor::f_zeros([words, cols], (Kind::Int64, codes.device()))?;
    for i in 0..n {
        let (word, shift) = ((i * bits) / 32, (i * bits) % 32);
        let c = codes.f_select(0, i)?;
        let mut w = out.f_select(0, word)?;
        let _ = w.f_bitwise_or_tensor_(
            &c.f_bitwise_left_shift_tensor_scalar(shift)?
                .f_bitwise_and(0xffff_ffffi64)?,
        )?;
        if shift + bits > 32 {
            let mut next = out.f_select(0, word + 1)?;
            let _ =
                next.f_bitwise_or_tensor_(&c.f_bitwise_right_shift_tensor_scalar(32 - shift)?)?;
        }
    }
    // The 32 bits of each word as a signed int32, as the format stores them.
    Ok(out
        .f_add_scalar(1i64 << 31)?
        .f_remainder(1i64 << 32)?
        .f_sub_scalar(1i64 << 31)?
        .f_to_kind(Kind::Int)?)
}

/// The inverse of [`pack`]: `[n * bits / 32, cols]` int32 to `[n, cols]` int64.
pub fn unpack(words: &Tensor, bits: i64, n: i64) -> Result<Tensor> {
    let w = words
        .f_to_kind(Kind::Int64)?
        .f_bitwise_and(0xffff_ffffi64)?;
    let (_, cols) = w.size2()?;
    let mask = (1i64 << bits) - 1;
    let out = Tensor::f_zeros([n, cols], (Kind::Int64, w.device()))?;
    for i in 0..n {
        let (word, shift) = ((i * bits) / 32, (i * bits) % 32);
        let mut v = w
            .f_select(0, word)?
            .f_bitwise_right_shift_tensor_scalar(shift)?;
        if shift + bits > 32 {
            v = v.f_bitwise_or_tensor(
                &w.f_select(0, word + 1)?
                    .f_bitwise_left_shift_tensor_scalar(32 - shift)?,
            )?;
        }
        out.f_select(0, i)?.f_copy_(&v.f_bitwise_and(mask)?)?;
    }
    Ok(out)
}

/// The fp32 weight `[out, in]` of one quantised layer.
pub fn dequantize(
    qweight: &Tensor,
    qzeros: &Tensor,
    scales: &Tensor,
    g_idx: &Tensor,
    cfg: GptqConfig,
) -> Result<Tensor> {
    let (groups, out) = scales.size2()?;
    let n = g_idx.size().first().copied().unwrap_or(0);
    let codes = unpack(qweight, cfg.bits, n)?; // [in, out]
    let zeros = unpack(&qzeros.f_transpose(0, 1)?.f_contiguous()?, cfg.bits, out)?
        .f_transpose(0, 1)?
        .f_add_scalar(i64::from(!cfg.v2))?; // [groups, out]
    if zeros.size() != [groups, out] {
        return Err(Error::InvalidConfig {
            field: "quantization_config",
            reason: format!(
                "qzeros unpack to {:?}, scales are {:?}",
                zeros.size(),
                scales.size()
            ),
        });
    }
    let g = g_idx.f_to_kind(Kind::Int64)?;
    let z = zeros.f_index_select(0, &g)?.f_to_kind(Kind::Float)?;
    let s = scales.f_to_kind(Kind::Float)?.f_index_select(0, &g)?;
    Ok(codes
        .f_to_kind(Kind::Float)?
        .f_sub(&z)?
        .f_mul(&s)?
        .f_transpose(0, 1)?
        .f_contiguous()?)
}

/// Replaces every quantised layer of `tensors` (keys `P.qweight`, ...) by
/// its fp32 `P.weight`.
pub fn dequantize_all(tensors: &mut BTreeMap<String, Tensor>, cfg: GptqConfig) -> Result<()> {
    let prefixes: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".qweight").map(str::to_owned))
        .collect();
    for p in prefixes {
        let mut take = |part: &str| {
            tensors
                .remove(&format!("{p}.{part}"))
                .ok_or_else(|| Error::InvalidConfig {
                    field: "quantization_config",
                    reason: format!("quantised layer {p} has no {part}"),
                })
        };
        let (qw, qz, sc, gi) = (
            take("qweight")?,
            take("qzeros")?,
            take("scales")?,
            take("g_idx")?,
        );
        let w = dequantize(&qw, &qz, &sc, &gi, cfg)?;
        tensors.insert(format!("{p}.weight"), w);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_for_every_width() {
        for bits in [2, 3, 4, 8] {
            let codes =
                Tensor::randint((1 << bits) as i64, [64, 5], (Kind::Int64, tch::Device::Cpu));
            let packed = pack(&codes, bits).unwrap();
            assert_eq!(packed.size(), vec![64 * bits / 32, 5]);
            assert_eq!(packed.kind(), Kind::Int);
            assert!(
                unpack(&packed, bits, 64).unwrap().equal(&codes),
                "{bits} bits"
            );
        }
        // GPTQ's 4-bit layout: code k of a word at bits 4k..4k+4.
        let codes = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6, 7, 15]).view([8, 1]);
        let w = pack(&codes, 4).unwrap().int64_value(&[0, 0]);
        assert_eq!(w as u32, 0xF765_4321);
    }

    #[test]
    fn config_is_read_and_refused_clearly() {
        let mut extra = serde_json::Map::new();
        assert_eq!(GptqConfig::from_extra(&extra).unwrap(), None);
        let cfg = GptqConfig {
            bits: 3,
            group_size: 32,
            v2: true,
        };
        extra.insert("quantization_config".into(), cfg.to_json());
        assert_eq!(GptqConfig::from_extra(&extra).unwrap(), Some(cfg));
        extra.insert(
            "quantization_config".into(),
            serde_json::json!({"quant_method": "awq", "bits": 4}),
        );
        assert!(GptqConfig::from_extra(&extra).is_err());
    }
}

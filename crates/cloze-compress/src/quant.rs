//! Weight quantisation of one linear layer: round-to-nearest (RTN) and GPTQ
//! (Frantar et al. 2023, the reference `fasterquant` without act-order),
//! asymmetric, per output row and group of input columns.
//!
//! A group of `group_size` consecutive input weights of a row shares a scale
//! and a zero point: code = clamp(round(w / scale) + zero, 0, 2^bits - 1),
//! w' = scale * (code - zero), with scale = (max - min) / (2^bits - 1) over
//! the group's weights (the range always containing 0) and zero =
//! round(-min / scale). GPTQ quantises the columns in order and spreads each
//! column's rounding error over the columns not yet quantised through the
//! Cholesky factor of H^-1, as SparseGPT does with pruning.

use tch::{Kind, Tensor};

use crate::{Error, Result};

/// How to quantise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantConfig {
    /// Bits per weight: 2 to 8.
    pub bits: i64,
    /// Input columns sharing a scale and zero point (a divisor of the
    /// matrix's input width; GPTQ's default 128).
    pub group_size: i64,
    /// Columns per block of GPTQ's sweep (128).
    pub block_size: i64,
    /// Dampening of the Hessian's diagonal, as a fraction of its mean (0.01).
    pub damp: f64,
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self {
            bits: 4,
            group_size: 128,
            block_size: 128,
            damp: 0.01,
        }
    }
}

impl QuantConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !(2..=8).contains(&self.bits) {
            return Err(Error::Bits(self.bits));
        }
        if self.group_size <= 0 || self.block_size <= 0 {
            return Err(Error::Pattern(format!(
                "group size {} and block size {} must be positive",
                self.group_size, self.block_size
            )));
        }
        if !(self.damp >= 0.0 && self.damp.is_finite()) {
            return Err(Error::Pattern(format!("damping {}", self.damp)));
        }
        Ok(())
    }

    fn max_code(&self) -> f64 {
        ((1i64 << self.bits) - 1) as f64
    }
}

/// A quantised weight matrix.
#[derive(Debug)]
pub struct Quantized {
    /// Codes `[out, in]` in `0..2^bits` (uint8).
    pub codes: Tensor,
    /// Scales `[out, in / group_size]` (fp32).
    pub scales: Tensor,
    /// Zero points `[out, in / group_size]` (fp32, whole numbers).
    pub zeros: Tensor,
    /// The settings.
    pub config: QuantConfig,
}

impl Quantized {
    /// The weight the codes stand for, `[out, in]` fp32.
    pub fn dequantize(&self) -> Result<Tensor> {
        let g = self.config.group_size;
        let expand = |t: &Tensor| t.f_repeat_interleave_self_int(g, Some(1), None);
        tch::no_grad(|| -> Result<Tensor> {
            Ok(self
                .codes
                .f_to_kind(Kind::Float)?
                .f_sub(&expand(&self.zeros)?)?
                .f_mul(&expand(&self.scales)?)?)
        })
    }
}

impl Quantized {
    /// The GPTQ layout of this layer ([`cloze_models::quantized`]):
    /// `qweight`, `qzeros` (as `gptq_v2` stores them), `scales` (fp16) and
    /// `g_idx`, by suffix.
    pub fn gptq_tensors(&self) -> Result<Vec<(&'static str, Tensor)>> {
        use cloze_models::quantized::pack;
        let bits = self.config.bits;
        let (_, cols) = self.codes.size2()?;
        let qweight = pack(&self.codes.f_transpose(0, 1)?.f_contiguous()?, bits)?;
        let qzeros = pack(&self.zeros.f_to_kind(Kind::Int64)?, bits)?
            .f_transpose(0, 1)?
            .f_contiguous()?;
        let scales = self
            .scales
            .f_transpose(0, 1)?
            .f_contiguous()?
            .f_to_kind(Kind::Half)?;
        let g_idx = Tensor::f_arange(cols, (Kind::Int64, self.codes.device()))?
            .f_floor_divide_scalar(self.config.group_size)?
            .f_to_kind(Kind::Int)?;
        Ok(vec![
            ("qweight", qweight),
            ("qzeros", qzeros),
            ("scales", scales),
            ("g_idx", g_idx),
        ])
    }

    /// The configuration to record in `config.json`.
    pub fn format(&self) -> cloze_models::quantized::GptqConfig {
        cloze_models::quantized::GptqConfig {
            bits: self.config.bits,
            group_size: self.config.group_size,
            v2: true,
        }
    }
}

/// Scale and zero point of each row of `x` `[rows, cols]` (one group).
fn group_params(x: &Tensor, maxq: f64) -> Result<(Tensor, Tensor)> {
    let zero = Tensor::f_zeros([1], (Kind::Float, x.device()))?;
    let xmin = x.f_amin(1, false)?.f_minimum(&zero)?;
    let xmax = x.f_amax(1, false)?.f_maximum(&zero)?;
    // A row of zeros gets the range [-1, 1] (any scale represents it).
    let flat = xmin.f_eq_tensor(&xmax)?;
    let xmin = xmin.f_masked_fill(&flat, -1.0)?;
    let xmax = xmax.f_masked_fill(&flat, 1.0)?;
    // Scales are stored in fp16 (the GPTQ layout): rounded here, so that the
    // codes are chosen for the scale a loaded model will use.
    let scale = xmax
        .f_sub(&xmin)?
        .f_div_scalar(maxq)?
        .f_to_kind(Kind::Half)?
        .f_to_kind(Kind::Float)?;
    let zero_point = xmin.f_neg()?.f_div(&scale)?.f_round()?;
    Ok((scale, zero_point))
}

/// Codes of column vector `w` `[rows]` under per-row `scale` and `zero`.
fn codes_of(w: &Tensor, scale: &Tensor, zero: &Tensor, maxq: f64) -> Result<Tensor> {
    Ok(w.f_div(scale)?.f_round()?.f_add(zero)?.f_clamp(0.0, maxq)?)
}

fn check_groups(cols: i64, cfg: &QuantConfig) -> Result<()> {
    if cols % cfg.group_size != 0 {
        return Err(Error::Pattern(format!(
            "group size {} does not divide the {cols} input columns",
            cfg.group_size
        )));
    }
    Ok(())
}

/// Round-to-nearest: each group's weights to the nearest code, no error
/// feedback (GPTQ's baseline).
pub fn rtn(weight: &Tensor, cfg: &QuantConfig) -> Result<Quantized> {
    cfg.validate()?;
    let (rows, cols) = weight.size2()?;
    check_groups(cols, cfg)?;
    let maxq = cfg.max_code();
    tch::no_grad(|| {
        let w = weight.f_to_kind(Kind::Float)?;
        let groups = w.f_view([rows, cols / cfg.group_size, cfg.group_size])?;
        let (scale, zero) = group_params(&groups.f_reshape([-1, cfg.group_size])?, maxq)?;
        let scale = scale.f_view([rows, cols / cfg.group_size])?;
        let zero = zero.f_view([rows, cols / cfg.group_size])?;
        let codes = groups
            .f_div(&scale.f_unsqueeze(-1)?)?
            .f_round()?
            .f_add(&zero.f_unsqueeze(-1)?)?
            .f_clamp(0.0, maxq)?
            .f_view([rows, cols])?;
        Ok(Quantized {
            codes: codes.f_to_kind(Kind::Uint8)?,
            scales: scale,
            zeros: zero,
            config: *cfg,
        })
    })
}

/// GPTQ for one layer: `weight` `[out, in]`, `h` its input Hessian
/// `[in, in]` ([`crate::Hessian`]). A group's scale and zero point are set
/// when the sweep reaches its first column, from the weights as updated so
/// far.
pub fn gptq(weight: &Tensor, h: &Tensor, cfg: &QuantConfig) -> Result<Quantized> {
    cfg.validate()?;
    let (rows, cols) = weight.size2()?;
    if h.size() != [cols, cols] {
        return Err(Error::Shape(format!(
            "a Hessian of shape {:?} for a weight with {cols} input columns",
            h.size()
        )));
    }
    check_groups(cols, cfg)?;
    let maxq = cfg.max_code();
    let g = cfg.group_size;
    tch::no_grad(|| {
        let mut w = weight.f_to_kind(Kind::Float)?.f_contiguous()?;
        let hinv = crate::prune::inverse_cholesky_upper(h, cfg.damp, &mut w)?;
        let codes = Tensor::f_zeros([rows, cols], (Kind::Float, weight.device()))?;
        let scales = Tensor::f_zeros([rows, cols / g], (Kind::Float, weight.device()))?;
        let zeros = Tensor::f_zeros([rows, cols / g], (Kind::Float, weight.device()))?;
        let mut i1 = 0;
        let (mut scale, mut zero) = (
            Tensor::f_zeros([rows], (Kind::Float, weight.device()))?,
            Tensor::f_zeros([rows], (Kind::Float, weight.device()))?,
        );
        while i1 < cols {
            let i2 = (i1 + cfg.block_size).min(cols);
            let count = i2 - i1;
            let w1 = w.f_narrow(1, i1, count)?.f_detach_copy()?;
            let err1 = Tensor::f_zeros_like(&w1)?;
            let hinv1 = hinv.f_narrow(0, i1, count)?.f_narrow(1, i1, count)?;
            for i in 0..count {
                let col = i1 + i;
                if col % g == 0 {
                    // The group's columns as they are now: those inside this
                    // block carry the block's error updates, later ones the
                    // lazy updates of earlier blocks.
                    let inside = (count - i).min(g);
                    let mut parts = vec![w1.f_narrow(1, i, inside)?];
                    if inside < g {
                        parts.push(w.f_narrow(1, i2, g - inside)?);
                    }
                    let group = Tensor::f_cat(&parts, 1)?;
                    let (s, z) = group_params(&group, maxq)?;
                    scales.f_select(1, col / g)?.f_copy_(&s)?;
                    zeros.f_select(1, col / g)?.f_copy_(&z)?;
                    scale = s;
                    zero = z;
                }
                let wcol = w1.f_select(1, i)?;
                let d = hinv1.f_double_value(&[i, i])?;
                let code = codes_of(&wcol, &scale, &zero, maxq)?;
                let q = code.f_sub(&zero)?.f_mul(&scale)?;
                let err = wcol.f_sub(&q)?.f_div_scalar(d)?;
                let row = hinv1.f_select(0, i)?.f_narrow(0, i, count - i)?;
                let mut tail = w1.f_narrow(1, i, count - i)?;
                let _ = tail.f_sub_(&err.f_unsqueeze(1)?.f_matmul(&row.f_unsqueeze(0)?)?)?;
                codes.f_select(1, col)?.f_copy_(&code)?;
                err1.f_select(1, i)?.f_copy_(&err)?;
            }
            if i2 < cols {
                let later = hinv.f_narrow(0, i1, count)?.f_narrow(1, i2, cols - i2)?;
                let mut rest = w.f_narrow(1, i2, cols - i2)?;
                let _ = rest.f_sub_(&err1.f_matmul(&later)?)?;
            }
            i1 = i2;
        }
        Ok(Quantized {
            codes: codes.f_to_kind(Kind::Uint8)?,
            scales,
            zeros,
            config: *cfg,
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Hessian;
    use tch::Device;

    fn layer() -> (Tensor, Tensor, Tensor) {
        tch::manual_seed(21);
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([512, 64], opts).matmul(&Tensor::randn([64, 256], opts))
            + Tensor::randn([512, 256], opts) * 0.3;
        let w = Tensor::randn([32, 256], opts);
        let mut h = Hessian::new(256, Device::Cpu).unwrap();
        h.add_batch(&x).unwrap();
        (w, x, h.matrix().shallow_clone())
    }

    fn output_error(w: &Tensor, q: &Tensor, x: &Tensor) -> f64 {
        x.matmul(&(w - q).tr())
            .square()
            .sum(Kind::Double)
            .double_value(&[])
    }

    #[test]
    fn rtn_codes_dequantize_within_the_format_step() {
        let (w, _, _) = layer();
        for bits in [3, 4, 8] {
            let cfg = QuantConfig {
                bits,
                group_size: 64,
                ..QuantConfig::default()
            };
            let q = rtn(&w, &cfg).unwrap();
            assert_eq!(q.codes.size(), vec![32, 256]);
            assert_eq!(q.scales.size(), vec![32, 4]);
            let max = q.codes.to_kind(Kind::Int64).max().int64_value(&[]);
            assert!(max < 1 << bits, "{bits} bits: code {max}");
            let step = q.scales.repeat_interleave_self_int(64, Some(1), None);
            // Half a step, plus what fp16 rounding of the scale moves the
            // grid's far end (at most 2^-11 of the group's range).
            let maxq = ((1 << bits) - 1) as f64;
            let slack = step * (0.5 + maxq / 2048.0) + 1e-6;
            let within = (q.dequantize().unwrap() - &w).abs().le_tensor(&slack);
            assert_eq!(within.all().int64_value(&[]), 1, "{bits} bits");
        }
    }

    #[test]
    fn gptq_beats_round_to_nearest() {
        let (w, x, h) = layer();
        for bits in [3, 4] {
            let cfg = QuantConfig {
                bits,
                ..QuantConfig::default()
            };
            let g = gptq(&w, &h, &cfg).unwrap().dequantize().unwrap();
            let r = rtn(&w, &cfg).unwrap().dequantize().unwrap();
            let (eg, er) = (output_error(&w, &g, &x), output_error(&w, &r, &x));
            assert!(eg < 0.8 * er, "{bits} bits: GPTQ {eg} vs RTN {er}");
        }
    }

    #[test]
    fn the_gptq_layout_round_trips_through_the_loader() {
        let (w, _, h) = layer();
        for bits in [3, 4, 8] {
            let cfg = QuantConfig {
                bits,
                group_size: 32,
                ..QuantConfig::default()
            };
            let q = gptq(&w, &h, &cfg).unwrap();
            let parts: std::collections::BTreeMap<&str, Tensor> =
                q.gptq_tensors().unwrap().into_iter().collect();
            assert_eq!(parts["qweight"].size(), vec![256 * bits / 32, 32]);
            assert_eq!(parts["qzeros"].size(), vec![8, 32 * bits / 32]);
            let back = cloze_models::quantized::dequantize(
                &parts["qweight"],
                &parts["qzeros"],
                &parts["scales"],
                &parts["g_idx"],
                q.format(),
            )
            .unwrap();
            // The loader computes exactly the weight the codes stand for.
            assert!(back.equal(&q.dequantize().unwrap()), "{bits} bits");
        }
    }

    #[test]
    fn bad_quantisation_settings_are_errors() {
        let (w, _, h) = layer();
        for bits in [0, 1, 9, 16] {
            let cfg = QuantConfig {
                bits,
                ..QuantConfig::default()
            };
            assert!(matches!(rtn(&w, &cfg), Err(Error::Bits(_))), "{bits}");
        }
        let cfg = QuantConfig {
            group_size: 100,
            ..QuantConfig::default()
        };
        assert!(matches!(gptq(&w, &h, &cfg), Err(Error::Pattern(_))));
    }
}

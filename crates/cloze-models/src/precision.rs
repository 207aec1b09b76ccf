//! Compute precision: plain fp32, bf16 matrix products over fp32 weights, or
//! (for inference) int8 linear layers ([`crate::int8`]).
//!
//! Mixed precision here works like PyTorch's `torch.autocast`, but explicitly
//! and only for this crate's blocks: inside [`autocast`]`(Precision::Bf16, ..)`
//! every [`crate::Linear`], the fused query/key/value product, the attention
//! products and the tied MLM decoder cast their input and their weights to
//! bfloat16 for the product (the casts are part of the autograd graph, so the
//! gradients reach the fp32 weights as fp32). Everything else keeps the type of
//! its input, and the residual stream stays fp32 because a bf16 block output is
//! added to an fp32 residual out of place (type promotion gives fp32), so every
//! LayerNorm sees fp32; the softmax of the attention probabilities runs in fp32
//! too. Heads return fp32 logits, so losses and metrics are computed in fp32.
//! This is the split autocast makes on the CPU, where a bf16 GEMM with
//! `avx512_bf16` runs about four times as fast as an fp32 one.
//!
//! For inference the weights can instead be cast once ([`Precision::cast_weights`]);
//! the blocks then see bf16 weights and bf16 inputs and need no scope.
//!
//! The scope is a thread-local setting (as autocast's is): libtorch calls are never
//! made from rayon workers, so the thread that runs the step is the one that set it.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::Result;

/// The precision of the matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in fp32.
    #[default]
    Fp32,
    /// Products in bfloat16 (fp32 accumulation inside the GEMM); weights, norms,
    /// softmax statistics and losses in fp32.
    Bf16,
    /// Inference only, on the CPU: the encoder's linear layers run libtorch's
    /// dynamic int8 kernel ([`crate::int8`]); attention products, norms and
    /// the MLM decoder stay fp32. Training refuses it.
    Int8,
}

impl Precision {
    /// Every precision, in the order `--help` lists them.
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Bf16, Precision::Int8];

    /// The name used in configs and flags: `fp32`, `bf16` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// The libtorch type of the products' inputs and outputs (fp32 for int8,
    /// whose kernel quantises its fp32 input itself).
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 | Precision::Int8 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    /// Whether training can run in this precision (int8 is inference only).
    pub fn trains(self) -> bool {
        self != Precision::Int8
    }

    /// Readies a loaded model for inference in this precision: bf16 casts the
    /// weights once ([`Precision::cast_weights`]); int8 quantises and packs the
    /// model's linear layers ([`crate::int8::QuantizeInt8`]) and returns how
    /// many, with SmoothQuant factors from `smoothing` when given (other
    /// precisions ignore it); fp32 does nothing.
    pub fn prepare<M: crate::int8::QuantizeInt8>(
        self,
        vs: &mut tch::nn::VarStore,
        model: &mut M,
        smoothing: Option<&crate::Int8Smoothing>,
    ) -> Result<usize> {
        match self {
            Precision::Fp32 => Ok(0),
            Precision::Bf16 => self.cast_weights(vs).map(|()| 0),
            Precision::Int8 => model.quantize_int8(smoothing),
        }
    }

    /// Casts every floating-point variable of `vs` to this precision's type,
    /// once, for inference (fp32 and int8 leave the store as it is: int8 packs
    /// copies of the weights, see [`Precision::prepare`]). The variables keep
    /// their identity (`set_data`), so a model holding them, and the tied MLM
    /// decoder, see the cast weights. A libtorch failure (out of memory on a
    /// GPU) is an error.
    pub fn cast_weights(self, vs: &mut tch::nn::VarStore) -> Result<()> {
        if self.kind() == Kind::Float {
            return Ok(());
        }
        let kind = self.kind();
        tch::no_grad(|| -> Result<()> {
            for (_, mut v) in vs.variables() {
                if v.is_floating_point() && v.kind() != kind {
                    let cast = v.f_to_kind(kind)?;
                    v.f_set_data(&cast)?;
                }
            }
            Ok(())
        })
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| crate::Error::Precision(s.to_owned()))
    }
}

/// Whether this CPU multiplies bf16 matrices in hardware (`avx512_bf16`, which
/// every CPU with AMX also has). Without it libtorch still computes bf16
/// products, but by conversion, and slower than fp32.
pub fn cpu_has_bf16_gemm() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

thread_local! {
    static PRODUCT_KIND: Cell<Option<Kind>> = const { Cell::new(None) };
}

/// Restores the previous setting when the scope ends, also on a panic.
struct Restore(Option<Kind>);

impl Drop for Restore {
    fn drop(&mut self) {
        PRODUCT_KIND.with(|k| k.set(self.0));
    }
}

/// Runs `f` with this thread's matrix products in `precision` (see the module
/// documentation). Scopes nest; the previous setting is restored afterwards.
/// `Precision::Fp32` turns casting off inside the scope.
pub fn autocast<T>(precision: Precision, f: impl FnOnce() -> T) -> T {
    let kind = match precision {
        Precision::Fp32 | Precision::Int8 => None,
        other => Some(other.kind()),
    };
    let _restore = Restore(PRODUCT_KIND.with(|k| k.replace(kind)));
    f()
}

/// The type matrix products are cast to on this thread, if a bf16 scope is active.
pub fn product_kind() -> Option<Kind> {
    PRODUCT_KIND.with(Cell::get)
}

/// `t` in the type of this thread's products: a cast inside a bf16 scope (a no-op
/// for a tensor already of that type), the tensor itself outside one.
pub fn for_product(t: &Tensor) -> Result<Tensor> {
    match product_kind() {
        Some(kind) if t.kind() != kind => Ok(t.f_to_kind(kind)?),
        _ => Ok(t.shallow_clone()),
    }
}

/// `t` as fp32 (what heads return, so that losses and metrics are computed in
/// fp32); a tensor already fp32 is returned as is.
pub fn to_fp32(t: &Tensor) -> Result<Tensor> {
    if t.kind() == Kind::Float {
        Ok(t.shallow_clone())
    } else {
        Ok(t.f_to_kind(Kind::Float)?)
    }
}

/// `residual + block`, out of place when the types differ so that a bf16 block
/// output added to an fp32 residual gives fp32 (in place on `block` otherwise,
/// which saves an allocation).
pub(crate) fn residual_add(mut block: Tensor, residual: &Tensor) -> Result<Tensor> {
    if block.kind() == residual.kind() {
        Ok(block.f_add_(residual)?)
    } else {
        Ok(residual.f_add(&block)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        assert_eq!(product_kind(), None);
        autocast(Precision::Bf16, || {
            assert_eq!(product_kind(), Some(Kind::BFloat16));
            autocast(Precision::Fp32, || assert_eq!(product_kind(), None));
            assert_eq!(product_kind(), Some(Kind::BFloat16));
        });
        assert_eq!(product_kind(), None);
        let caught = std::panic::catch_unwind(|| autocast(Precision::Bf16, || panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(product_kind(), None, "a panic inside the scope restores it");
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        let err = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("fp16") && err.contains("bf16"), "{err}");
    }

    #[test]
    fn residual_add_keeps_the_residual_stream_fp32() -> Result<()> {
        let residual = Tensor::f_ones([2, 3], (Kind::Float, tch::Device::Cpu))?;
        let block = Tensor::f_ones([2, 3], (Kind::BFloat16, tch::Device::Cpu))?;
        let sum = residual_add(block, &residual)?;
        assert_eq!(sum.kind(), Kind::Float);
        assert_eq!(sum.f_sum(Kind::Float)?.f_double_value(&[])?, 12.0);
        Ok(())
    }
}

#[cfg(test)]
mod model_tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind, Tensor};

    use super::*;
    use crate::{BertConfig, BertModel, MlmInput};

    /// A query row that may see nothing (a 3-D mask with an empty row) must stay
    /// finite in bf16 too: the bias is bf16's lowest finite value, not -inf.
    #[test]
    fn a_fully_masked_row_stays_finite_in_bf16() -> Result<()> {
        let _rng = crate::rng_lock();
        tch::manual_seed(5);
        let config = BertConfig {
            vocab_size: 50,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 16,
            ..BertConfig::default()
        };
        let mut vs = VarStore::new(Device::Cpu);
        let model = BertModel::new(&vs.root(), &config)?;
        let ids = Tensor::from_slice(&[2i64, 7, 9, 11, 3, 0]).view([1, 6]);
        let visible = Tensor::f_ones([1, 6, 6], (Kind::Int64, Device::Cpu))?;
        let _ = visible.f_get(0)?.f_get(5)?.f_zero_()?;
        let input = MlmInput::new(ids).with_attention_3d(visible);
        let finite =
            |t: &Tensor| -> Result<bool> { Ok(t.f_isfinite()?.f_all()?.f_int64_value(&[])? == 1) };
        // Training under autocast (the unfused path with attention dropout) and
        // evaluation (the fused kernel).
        for train in [true, false] {
            let out = autocast(Precision::Bf16, || model.forward_t(&input, train))?;
            assert!(finite(&out.last_hidden_state)?, "autocast, train={train}");
        }
        // Weights cast once, no scope.
        Precision::Bf16.cast_weights(&mut vs)?;
        let out = tch::no_grad(|| model.forward_t(&input, false))?;
        assert_eq!(out.last_hidden_state.kind(), Kind::BFloat16);
        assert!(finite(&out.last_hidden_state)?, "bf16 weights");
        Ok(())
    }
}

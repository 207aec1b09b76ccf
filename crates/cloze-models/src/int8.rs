//! Int8 inference: libtorch's dynamic int8 linear (fbgemm) through the small
//! C++ shim in `csrc/int8.cpp`, which tch does not bind.
//!
//! [`Int8Linear::pack`] quantises a weight `[out, in]` once, per output row and
//! symmetrically (scale `max|w_row| / 127`, zero point 0), and packs it for
//! fbgemm; [`Int8Linear::forward`] quantises each fp32 input per tensor on the
//! fly (7-bit range, as PyTorch's dynamic linear does on x86), multiplies in
//! int8 with int32 accumulation and returns fp32. This is what PyTorch's
//! `torch.ao.quantization.quantize_dynamic` does to an `nn.Linear`, except
//! that its default quantises weights per tensor.
//!
//! The packed weight is a copy: it does not follow later changes to the fp32
//! variable, and it has no gradient. It is for inference, on the CPU.
//!
//! Activations with outlier channels quantise badly per tensor. SmoothQuant
//! (Xiao et al. 2023, section 4) moves part of that range into the weight:
//! input channel `j` is divided by `s_j = max|X_j|^a / max|W_j|^(1-a)` and
//! the weight's column `j` multiplied by it, which leaves the product
//! unchanged in exact arithmetic. [`Int8Smoothing`] holds the calibrated
//! `max|X_j|` of every encoder linear's input and `a`;
//! [`Int8Linear::pack_smoothed`] applies the factors. In a post-LN BERT the
//! division cannot be folded into the preceding LayerNorm (its output is also
//! the residual), so the packed linear multiplies its input by `1 / s` itself.
//!
//! ```
//! use cloze_models::Int8Linear;
//! use tch::{Device, Kind, Tensor};
//!
//! # fn main() -> cloze_models::Result<()> {
//! if !cloze_models::int8::available() {
//!     return Ok(()); // a libtorch without fbgemm (not x86-64)
//! }
//! let w = Tensor::randn([16, 8], (Kind::Float, Device::Cpu));
//! let x = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
//! let y = Int8Linear::pack(&w, None)?.forward(&x)?;
//! let exact = x.linear::<Tensor>(&w, None);
//! let rel = (&y - &exact).norm().double_value(&[]) / exact.norm().double_value(&[]);
//! assert!(rel < 0.05, "{rel}");
//! # Ok(())
//! # }
//! ```
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::ptr::NonNull;

use tch::{Device, Kind, Tensor};

use crate::bert::LinearSite;
use crate::{Error, Result};

extern "C" {
    fn cloze_int8_available() -> c_int;
    fn cloze_int8_pack(
        weight: *mut c_void,
        bias: *mut c_void,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    fn cloze_int8_free(packed: *mut c_void);
    fn cloze_int8_free_message(s: *mut c_char);
    fn cloze_int8_linear(
        packed: *mut c_void,
        input: *mut c_void,
        err: *mut *mut c_char,
    ) -> *mut c_void;
}

/// Whether this libtorch can run int8 linears (its fbgemm engine is present:
/// x86-64 builds).
pub fn available() -> bool {
    // SAFETY: a query of libtorch's global context; no arguments.
    unsafe { cloze_int8_available() != 0 }
}

/// Takes the shim's malloc'd message into a `String` and frees it.
fn take_message(err: *mut c_char) -> String {
    if err.is_null() {
        return "unknown error".into();
    }
    // SAFETY: the shim hands out a NUL-terminated string from malloc, read once
    // and then freed by the shim's own free.
    let s = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: `err` came from the shim's malloc and is freed exactly once.
    unsafe { cloze_int8_free_message(err) };
    s
}

/// A linear layer's weight and bias quantised to int8 and packed for fbgemm.
#[derive(Debug)]
pub struct Int8Linear {
    raw: NonNull<c_void>,
    in_dim: i64,
    out_dim: i64,
    /// `1 / s` per input channel when packed with smoothing factors `s`.
    input_scale: Option<Tensor>,
}

// SAFETY: the packed parameters are immutable after packing; libtorch's
// dynamic linear only reads them (each call allocates its own buffers), so
// the handle may move between threads and be shared.
unsafe impl Send for Int8Linear {}
// SAFETY: as above: every method takes `&self` and only reads the weights.
unsafe impl Sync for Int8Linear {}

impl Int8Linear {
    /// Quantises `weight` `[out, in]` (any floating type, on the CPU) and
    /// `bias` `[out]` and packs them.
    pub fn pack(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        Self::pack_smoothed(weight, bias, None)
    }

    /// As [`Int8Linear::pack`], with SmoothQuant factors `s` `[in]` (positive,
    /// see [`Int8Smoothing::factors`]): the weight's column `j` is multiplied by
    /// `s_j` before quantisation and every input's channel `j` divided by it.
    pub fn pack_smoothed(
        weight: &Tensor,
        bias: Option<&Tensor>,
        factors: Option<&Tensor>,
    ) -> Result<Self> {
        if !available() {
            return Err(Error::Int8(
                "this libtorch has no fbgemm engine (int8 linears need an x86-64 build)".into(),
            ));
        }
        let size = weight.size();
        let [out_dim, in_dim] = size[..] else {
            return Err(Error::Int8(format!(
                "an int8 weight must be [out, in], got {size:?}"
            )));
        };
        if weight.device() != Device::Cpu || bias.is_some_and(|b| b.device() != Device::Cpu) {
            return Err(Error::Int8(
                "int8 linears run on the CPU; the weights are on another device".into(),
            ));
        }
        if !weight.is_floating_point() {
            return Err(Error::Int8(format!(
                "an int8 weight is quantised from a floating-point tensor, got {:?}",
                weight.kind()
            )));
        }
        if let Some(b) = bias {
            if b.size() != [out_dim] {
                return Err(Error::Int8(format!(
                    "bias of shape {:?} for a weight [{out_dim}, {in_dim}]",
                    b.size()
                )));
            }
        }
        let (weight, input_scale) = match factors {
            None => (weight.shallow_clone(), None),
            Some(s) => {
                if s.size() != [in_dim] || s.device() != Device::Cpu {
                    return Err(Error::Int8(format!(
                        "smoothing factors of shape {:?} for a weight [{out_dim}, {in_dim}]",
                        s.size()
                    )));
                }
                let s = s.f_to_kind(Kind::Float)?;
                let positive = s.f_gt(0.0)?.f_all()?.f_int64_value(&[])? != 0;
                let finite = s.f_isfinite()?.f_all()?.f_int64_value(&[])? != 0;
                if !positive || !finite {
                    return Err(Error::Int8(
                        "smoothing factors must be positive and finite".into(),
                    ));
                }
                let w = weight
                    .f_to_kind(Kind::Float)?
                    .f_mul(&s.f_view([1, in_dim])?)?;
                (w, Some(s.f_reciprocal()?))
            }
        };
        let mut err: *mut c_char = std::ptr::null_mut();
        let bias_ptr = bias.map_or(std::ptr::null_mut(), |b| b.as_ptr() as *mut c_void);
        // SAFETY: both pointers are live `torch::Tensor*` borrowed for the call
        // (the shim copies what it needs); the result is an owned handle or null.
        let raw = unsafe { cloze_int8_pack(weight.as_ptr() as *mut c_void, bias_ptr, &mut err) };
        match NonNull::new(raw) {
            Some(raw) => Ok(Int8Linear {
                raw,
                in_dim,
                out_dim,
                input_scale,
            }),
            None => Err(Error::Int8(take_message(err))),
        }
    }

    /// `[..., in] -> [..., out]` in fp32 (an input of another floating type is
    /// converted to fp32 first).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let size = xs.size();
        if size.last() != Some(&self.in_dim) || size.len() < 2 {
            return Err(Error::Int8(format!(
                "int8 linear [{}, {}] given an input of shape {size:?}",
                self.out_dim, self.in_dim
            )));
        }
        let cast;
        let xs = match &self.input_scale {
            Some(inv) => {
                cast = xs.f_to_kind(Kind::Float)?.f_mul(inv)?;
                &cast
            }
            None if xs.kind() == Kind::Float => xs,
            None => {
                cast = xs.f_to_kind(Kind::Float)?;
                &cast
            }
        };
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `raw` is live; `xs` is a live tensor borrowed for the call; the
        // result is a new `torch::Tensor*` this side owns, or null.
        let out =
            unsafe { cloze_int8_linear(self.raw.as_ptr(), xs.as_ptr() as *mut c_void, &mut err) };
        if out.is_null() {
            return Err(Error::Int8(take_message(err)));
        }
        // SAFETY: the shim allocated the tensor with `new` as tch's own C wrapper
        // does; `from_ptr` takes ownership and frees it on drop.
        Ok(unsafe { Tensor::from_ptr(out.cast()) })
    }

    /// Input and output width.
    pub fn dims(&self) -> (i64, i64) {
        (self.in_dim, self.out_dim)
    }

    /// Whether the packed weight carries smoothing factors.
    pub fn is_smoothed(&self) -> bool {
        self.input_scale.is_some()
    }
}

impl Drop for Int8Linear {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `cloze_int8_pack` and is freed exactly once.
        unsafe { cloze_int8_free(self.raw.as_ptr()) }
    }
}

/// A model whose linear layers can be packed for int8 inference.
pub trait QuantizeInt8 {
    /// Packs every linear layer of the encoder (query, key and value as one
    /// fused matrix, the attention output, the feed-forward pair, the pooler,
    /// a head's transform) for int8 inference and returns how many matrices
    /// were packed. The MLM decoder (the tied word embeddings) stays fp32.
    /// With `smoothing`, the encoder layers' four linears are packed with its
    /// SmoothQuant factors (the pooler and heads without). Calling it again
    /// re-packs from the current fp32 weights.
    fn quantize_int8(&mut self, smoothing: Option<&Int8Smoothing>) -> Result<usize>;
}

/// The file of a checkpoint directory holding its [`Int8Smoothing`].
pub const SMOOTHING_FILE: &str = "int8_smoothing.safetensors";

/// The tensor of [`SMOOTHING_FILE`] holding the migration strength `a`.
const ALPHA_KEY: &str = "alpha";

/// SmoothQuant calibration of an encoder (see the module docs): for every
/// layer, the per-channel maximum `max|X_j|` of the inputs of its four
/// linears over calibration tokens (query, key and value share one input, kept
/// under the query's name), and the migration strength `a` in (0, 1].
///
/// On disk ([`SMOOTHING_FILE`]) each maximum is the fp32 tensor
/// `encoder.layer.{i}.{hf name of the linear}.input_max` and `a` the
/// one-element tensor `alpha`; the checkpoint's weights stay as they were,
/// so the directory still loads everywhere as the dense model.
///
/// An input with one outlier channel, packed plainly and smoothed (`cloze
/// quantize --method int8 --smooth-alpha 0.8` records such maxima for a
/// whole encoder):
///
/// ```
/// use cloze_models::{Int8Linear, Int8Smoothing, LinearSite};
/// use tch::{Device, Kind, Tensor};
///
/// # fn main() -> cloze_models::Result<()> {
/// if !cloze_models::int8::available() {
///     return Ok(()); // a libtorch without fbgemm (not x86-64)
/// }
/// tch::manual_seed(0);
/// let w = Tensor::randn([32, 16], (Kind::Float, Device::Cpu));
/// // Channel 3 of the input is 60 times larger than the others.
/// let mut scale = vec![1.0f32; 16];
/// scale[3] = 60.0;
/// let x = Tensor::randn([64, 16], (Kind::Float, Device::Cpu)) * Tensor::from_slice(&scale);
/// let exact = x.linear::<Tensor>(&w, None);
/// let error = |y: &Tensor| (y - &exact).norm().double_value(&[]) / exact.norm().double_value(&[]);
///
/// let mut smoothing = Int8Smoothing::new(0.8)?;
/// smoothing.insert(0, LinearSite::Intermediate, &x.abs().amax(0, false))?;
/// let input_max = smoothing.input_max(0, LinearSite::Intermediate).expect("recorded");
/// let factors = smoothing.factors(input_max, &w)?;
/// let plain = Int8Linear::pack(&w, None)?.forward(&x)?;
/// let smoothed = Int8Linear::pack_smoothed(&w, None, Some(&factors))?.forward(&x)?;
/// assert!(error(&smoothed) < error(&plain), "{} vs {}", error(&smoothed), error(&plain));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Int8Smoothing {
    alpha: f64,
    maxima: BTreeMap<String, Tensor>,
}

impl Int8Smoothing {
    /// Empty calibration with migration strength `alpha` in (0, 1].
    pub fn new(alpha: f64) -> Result<Self> {
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(Error::Int8(format!(
                "the smoothing strength alpha must be in (0, 1], got {alpha}"
            )));
        }
        Ok(Int8Smoothing {
            alpha,
            maxima: BTreeMap::new(),
        })
    }

    /// The migration strength `a`.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// How many input maxima are held.
    pub fn len(&self) -> usize {
        self.maxima.len()
    }

    /// Whether no maximum is held.
    pub fn is_empty(&self) -> bool {
        self.maxima.is_empty()
    }

    /// The name a site's input maximum is stored under (key and value share
    /// the query's input).
    fn key(layer: usize, site: LinearSite) -> String {
        let site = match site {
            LinearSite::Key | LinearSite::Value => LinearSite::Query,
            other => other,
        };
        format!("encoder.layer.{layer}.{}.input_max", site.hf_name())
    }

    /// Records `max|X_j|` `[in]` of the input of `site` in layer `layer`.
    pub fn insert(&mut self, layer: usize, site: LinearSite, input_max: &Tensor) -> Result<()> {
        if input_max.dim() != 1 {
            return Err(Error::Int8(format!(
                "an input maximum is one value per channel, got shape {:?}",
                input_max.size()
            )));
        }
        let t = input_max
            .f_to_kind(Kind::Float)?
            .f_to_device(Device::Cpu)?
            .f_abs()?;
        self.maxima.insert(Self::key(layer, site), t);
        Ok(())
    }

    /// The recorded input maximum of `site` in layer `layer`.
    pub fn input_max(&self, layer: usize, site: LinearSite) -> Option<&Tensor> {
        self.maxima.get(&Self::key(layer, site))
    }

    /// SmoothQuant's factors for a weight `[out, in]` given its input's
    /// maximum: `s_j = max|X_j|^a / max_i|W_ij|^(1-a)`, both maxima and the
    /// result clamped below at 1e-5 (dead channels).
    pub fn factors(&self, input_max: &Tensor, weight: &Tensor) -> Result<Tensor> {
        let in_dim = weight.size().last().copied().unwrap_or(0);
        if input_max.size() != [in_dim] {
            return Err(Error::Int8(format!(
                "an input maximum of shape {:?} does not fit a weight of shape {:?}: \
                 the smoothing file belongs to another model",
                input_max.size(),
                weight.size()
            )));
        }
        let w_max = weight
            .f_to_kind(Kind::Float)?
            .f_abs()?
            .f_amax([0i64].as_slice(), false)?
            .f_clamp_min(1e-5)?;
        let x_max = input_max.f_clamp_min(1e-5)?;
        Ok(x_max
            .f_pow_tensor_scalar(self.alpha)?
            .f_div(&w_max.f_pow_tensor_scalar(1.0 - self.alpha)?)?
            .f_clamp_min(1e-5)?)
    }

    /// The factors of `site` in layer `layer` for its (fused) weight, or an
    /// error naming the missing entry.
    pub fn factors_for(&self, layer: usize, site: LinearSite, weight: &Tensor) -> Result<Tensor> {
        let max = self.input_max(layer, site).ok_or_else(|| {
            Error::Int8(format!(
                "the smoothing file has no {}: it belongs to a smaller model",
                Self::key(layer, site)
            ))
        })?;
        self.factors(max, weight)
    }

    /// Writes [`SMOOTHING_FILE`] into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let alpha = Tensor::from_slice(&[self.alpha as f32]);
        let mut named: Vec<(&str, &Tensor)> = vec![(ALPHA_KEY, &alpha)];
        named.extend(self.maxima.iter().map(|(k, v)| (k.as_str(), v)));
        Tensor::write_safetensors(&named, dir.join(SMOOTHING_FILE))?;
        Ok(())
    }

    /// Reads `dir`'s [`SMOOTHING_FILE`]; `None` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(SMOOTHING_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let mut tensors = crate::hf::read_safetensors(&path)?;
        let alpha = tensors
            .remove(ALPHA_KEY)
            .ok_or_else(|| Error::Int8(format!("{} has no `{ALPHA_KEY}`", path.display())))?;
        let alpha = alpha.f_view([-1])?.f_double_value(&[0])?;
        let mut out = Self::new(alpha)?;
        for (name, t) in tensors {
            if !name.ends_with(".input_max") || t.dim() != 1 {
                return Err(Error::Int8(format!(
                    "{}: unexpected tensor {name} of shape {:?}",
                    path.display(),
                    t.size()
                )));
            }
            out.maxima.insert(name, t.f_to_kind(Kind::Float)?);
        }
        Ok(Some(out))
    }
}

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

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::NonNull;

use tch::{Device, Kind, Tensor};

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
        let xs = if xs.kind() == Kind::Float {
            xs
        } else {
            cast = xs.f_to_kind(Kind::Float)?;
            &cast
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
    /// Calling it again re-packs from the current fp32 weights.
    fn quantize_int8(&mut self) -> Result<usize>;
}

//! One-shot compression of trained encoders: weights removed by magnitude or
//! by SparseGPT (Frantar and Alistarh 2023), unstructured or in an n:m
//! pattern, or rounded to a few bits by GPTQ (Frantar et al. 2023) or
//! round-to-nearest, layer by layer on calibration inputs.
//!
//! Layer: beside the trainer, on `cloze-models` (tensors and the encoder's
//! layer-by-layer pass); it knows nothing of masking, data files or
//! commands. `prune` and `quant` hold the per-matrix algorithms, `bert` the
//! pass over an encoder; `cloze prune` and `cloze quantize` are the commands
//! (the quantised checkpoint layout lives in `cloze_models::quantized`).
//!
//! ```
//! use cloze_compress::{magnitude, PruneConfig};
//! let w = tch::Tensor::from_slice(&[0.1f32, -2.0, 0.3, 4.0]).view([1, 4]);
//! let pruned = magnitude(&w, &PruneConfig::default())?;
//! assert_eq!(Vec::<f32>::try_from(pruned.weight.view([-1]))?, vec![0.0, -2.0, 0.0, 4.0]);
//! assert_eq!(pruned.zeros, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bert;
mod error;
mod prune;
mod quant;

pub use error::{Error, Result};
pub use prune::{
    magnitude, reconstruction_error, sparsegpt, Hessian, Pattern, PruneConfig, Pruned,
};
pub use quant::{gptq, rtn, QuantConfig, Quantized};

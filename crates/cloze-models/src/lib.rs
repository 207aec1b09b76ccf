//! `cloze-models`: the model layer. BERT on libtorch (via `tch`) with its pretraining
//! heads, and HuggingFace checkpoint io with no converter.
//!
//! Neighbours: below it nothing of cloze (it knows nothing about masking or corpus
//! files); above it `cloze-train` (the trainer) and `cloze-eval` (fill-mask, scoring,
//! encoding) build models from here and feed them [`MlmInput`]s.
//!
//! # The contract
//! - Variable names are HuggingFace's keys. [`BertForPreTraining::new`]`(&vs.root(), &config)`
//!   creates `bert.embeddings.*`, `bert.encoder.layer.{i}.*`, `bert.pooler.dense.*`,
//!   `cls.predictions.{transform.*,bias}`, `cls.seq_relationship.*`; [`BertModel::new`]
//!   at the root creates the same encoder keys without `bert.`.
//! - Initialisation is HF's: weights N(0, `initializer_range`), biases 0, LayerNorm 1/0,
//!   the padding row of the word embeddings 0.
//! - The MLM decoder is the word-embedding tensor itself (tied, not copied), so
//!   `cls.predictions.decoder.weight` is never a variable and never saved.
//! - [`BertForPreTraining::forward_t`]`(&input, Some(&positions), train)` projects only
//!   the given flat positions (`b * L + i`, int64, 1-D) onto the vocabulary and returns
//!   `[N, V]` logits; with `None` it returns `[B, L, V]`.
//! - Inputs are validated once at the boundary ([`MlmInput::validate`]): wrong shapes,
//!   ids outside a table, sequences longer than `max_position_embeddings`, bad masked
//!   positions are [`Error`]s; every libtorch call goes through tch's fallible `f_`
//!   functions, so a libtorch failure (device mismatch, out of memory) is an error too.
//! - [`hf::load_pretrained`] / [`hf::load_encoder`] read `config.json` + `model.safetensors`
//!   (optional `bert.` prefix, legacy `gamma`/`beta`, sharded index) and return a
//!   [`LoadReport`]; a tensor they take that holds NaN or infinity is
//!   [`Error::NonFiniteWeights`] ([`hf::check_finite`]); [`hf::save_pretrained`] writes the
//!   same format atomically.

pub mod bert;
mod device;
mod error;
pub mod hf;
mod runtime;

pub use bert::{
    Activation, BertConfig, BertForPreTraining, BertModel, BertOutput, MlmInput, OffsetHeads,
    PreTrainingOutput,
};
pub use device::parse_device;
pub use error::{Error, Result};
pub use hf::{load_encoder, load_pretrained, save_pretrained, HeadStatus, LoadReport, Pretrained};
pub use runtime::{flush_denormals, tune_cpu_allocator};

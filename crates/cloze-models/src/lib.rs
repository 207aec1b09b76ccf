//! `cloze-models`: the model layer. BERT on libtorch (via `tch`) with its pretraining
//! and fine-tuning heads, and HuggingFace checkpoint io with no converter.
//!
//! Neighbours: below it nothing of cloze (it knows nothing about masking or corpus
//! files); above it `cloze-train` (the trainer) and `cloze-eval` (fill-mask, scoring,
//! encoding) build models from here and feed them [`MlmInput`]s.
//!
//! # Example: a tiny BERT, its vocabulary logits at a masked position
//!
//! ```
//! use cloze_models::{BertConfig, BertForPreTraining, MlmInput};
//! use tch::{nn::VarStore, Device, Kind, Tensor};
//!
//! # fn main() -> cloze_models::Result<()> {
//! let config = BertConfig {
//!     vocab_size: 100,
//!     hidden_size: 32,
//!     num_hidden_layers: 2,
//!     num_attention_heads: 4,
//!     intermediate_size: 64,
//!     max_position_embeddings: 64,
//!     ..BertConfig::default()
//! };
//! tch::manual_seed(0);
//! let vs = VarStore::new(Device::Cpu);
//! // MLM head only (HF's BertForMaskedLM layout); `new` adds the NSP/SOP head.
//! let model = BertForPreTraining::new_masked_lm(&vs.root(), &config)?;
//!
//! // [CLS] w w [MASK] w [SEP] with made-up ids; position 3 is the mask.
//! let ids = Tensor::from_slice(&[2i64, 17, 33, 4, 90, 3]).unsqueeze(0);
//! let masked = Tensor::from_slice(&[3i64]); // flat index b * L + i
//! let out = tch::no_grad(|| model.forward_t(&MlmInput::new(ids), Some(&masked), false))?;
//! assert_eq!(out.mlm_logits.size(), [1, 100]); // one row per masked position
//! let probs = out.mlm_logits.f_softmax(-1, Kind::Float)?;
//! let best = probs.f_argmax(-1, false)?.f_int64_value(&[0])?;
//! assert!((0..100).contains(&best));
//!
//! // What is saved is HF's layout: transformers' from_pretrained reads it, and so
//! // does cloze_models::load_pretrained.
//! let dir = std::env::temp_dir().join(format!("cloze-doc-{}", std::process::id()));
//! cloze_models::save_pretrained(&vs, &config, &dir)?;
//! let back = cloze_models::load_pretrained(&dir, Device::Cpu)?;
//! assert_eq!(back.report.head("cls.predictions"), cloze_models::HeadStatus::Loaded);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! # The contract
//! - Variable names are HuggingFace's keys. [`BertForPreTraining::new`]`(&vs.root(), &config)`
//!   creates `bert.embeddings.*`, `bert.encoder.layer.{i}.*`, `bert.pooler.dense.*`,
//!   `cls.predictions.{transform.*,bias}`, `cls.seq_relationship.*`; [`BertModel::new`]
//!   at the root creates the same encoder keys without `bert.`;
//!   [`BertForSequenceClassification`], [`BertForTokenClassification`] and
//!   [`BertForQuestionAnswering`] have HF's keys of the same names (`classifier.*`,
//!   `qa_outputs.*`).
//! - Heads are a table ([`heads::HEADS`]): each row gives a head's checkpoint prefix,
//!   its HF class and its variables, and drives loading, the [`LoadReport`] and the
//!   `architectures` written on save. Adding a head is a module in [`heads`] plus one
//!   row. The blocks ([`Linear`], [`LayerNorm`], [`dropout`], [`BertEmbeddings`],
//!   [`Pooler`], [`Activation`]) and the encoder [`BertModel`] are public, so a head
//!   can also live in another crate and still save and load by name.
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
//! - [`hf::load_pretrained`] / [`hf::load_encoder`] / [`hf::load_with`] read
//!   `config.json` + `model.safetensors` (optional `bert.` prefix, legacy
//!   `gamma`/`beta`, sharded index) and return a [`LoadReport`]; a tensor they take
//!   that holds NaN or infinity is [`Error::NonFiniteWeights`] ([`hf::check_finite`]);
//!   [`hf::save_pretrained`] writes the same format atomically.
//! - UniLM-v2 (opt-in): `rel_pos_bins`/`max_rel_pos` in `config.json` (s2s-ft's
//!   names) add the T5-style relative position bias, one weight
//!   `bert.rel_pos_bias.weight` `[heads, bins]` shared by all layers and loaded as
//!   an encoder key (a checkpoint and config that disagree about it do not load);
//!   [`BertModel::forward_incremental`] with a [`KvCache`] decodes step by step and
//!   [`BertForPreTraining::mlm_logits`] scores the new tokens.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bert;
mod device;
mod error;
pub mod heads;
pub mod hf;
pub mod int8;
pub mod precision;
pub mod quantized;
mod runtime;

pub use bert::{
    dropout, relative_position_bucket, Activation, BertConfig, BertEmbeddings, BertForPreTraining,
    BertModel, BertOutput, IncrementalOutput, KvCache, LayerNorm, LayerwiseState, Linear,
    LinearSite, MlmInput, OffsetHeads, Pooler, PreTrainingOutput, RelativePositionBias,
};
pub use device::parse_device;
pub use error::{Error, Result};
pub use heads::{
    BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification,
    CategoryHead, HeadSpec, MlmHead, PairHead, QaLogits, QuestionAnsweringHead,
    SequenceClassificationHead, TokenClassificationHead,
};
pub use hf::{
    load_encoder, load_pretrained, load_with, save_pretrained, HeadReport, HeadStatus, LoadReport,
    Pretrained,
};
pub use int8::{Int8Linear, Int8Smoothing, QuantizeInt8};
pub use precision::{autocast, Precision};
pub use runtime::{flush_denormals, tune_cpu_allocator};

/// Serialises the unit tests that seed or draw from libtorch's global generator:
/// the test harness runs tests on several threads, and a draw in one test between
/// another's `manual_seed` and its own draws would change that test's numbers.
#[cfg(test)]
pub(crate) fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

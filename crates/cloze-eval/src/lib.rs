//! `cloze-eval`: the evaluation and inference layer. Fill-mask, pseudo-log-likelihood
//! scoring and sentence encoding over `cloze-models`' BERT; MLM accuracy/perplexity
//! metrics for the trainer (`mlm_eval`).
//!
//! Neighbours: below it `cloze-models` (models, checkpoints) and the tokenizer of a
//! checkpoint directory ([`text`]); above it the `cloze` driver (`cloze fill-mask`,
//! `cloze encode`, `cloze score`, `cloze bench encode`) and `cloze-train`.
//! The functions here work on token-id sequences that already carry `[CLS]`/`[SEP]`,
//! run the model without gradients, and return results in input order whatever the
//! batching.

pub mod batch;
pub mod encode;
mod error;
pub mod fill_mask;
pub mod mlm_eval;
pub mod pll;
pub mod text;

pub use encode::{cosine, encode, EncodeOptions, Encoded};
pub use error::{Error, Result};
pub use fill_mask::{fill_mask, Candidate, MaskPrediction};
pub use pll::{corpus_pseudo_perplexity, pseudo_log_likelihood, PllScore};
pub use text::{ModelTokenizer, Tokenized};

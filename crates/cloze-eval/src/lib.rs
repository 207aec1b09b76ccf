//! `cloze-eval`: the evaluation and inference layer. Fill-mask, pseudo-log-likelihood
//! scoring and sentence encoding over `cloze-models`' BERT; MLM accuracy/perplexity
//! metrics for the trainer (`mlm_eval`); the inputs and scores of fine-tuning
//! ([`finetune_data`], [`metrics`]); MLM as spelling correction ([`mod@correct`],
//! [`mod@csc_metrics`]).
//!
//! Neighbours: below it `cloze-models` (models, checkpoints) and the tokenizer of a
//! checkpoint directory ([`text`]); above it the `cloze` driver (`cloze fill-mask`,
//! `cloze encode`, `cloze score`, `cloze correct`, `cloze bench encode`) and
//! `cloze-train` (which trains and scores fine-tuning on these inputs).
//! The functions here work on token-id sequences that already carry `[CLS]`/`[SEP]`,
//! run the model without gradients, and return results in input order whatever the
//! batching.
//!
//! Masked-LM inference goes through one interface, [`MaskedLm`] ("log-probabilities
//! at these positions"): [`fill_mask()`] and [`pseudo_log_likelihood()`] take any
//! `&dyn MaskedLm`, and `cloze_models::BertForPreTraining` implements it. Each task
//! takes its settings as an options struct ([`FillMaskOptions`], [`PllOptions`],
//! [`EncodeOptions`]) checked against the model before any work.
//!
//! Precision: a model whose weights were cast to bf16 once
//! (`cloze_models::Precision::cast_weights`) runs every function here in bf16,
//! and what they return is fp32 all the same: log-probabilities are taken in
//! fp32 from the heads' fp32 logits, and [`encode()`] casts the last hidden
//! states to fp32 before pooling.

//!
//! Load a HuggingFace BERT checkpoint and predict a masked token (here the
//! tiny test fixture, whose vocabulary has no words; `cloze fill-mask` adds
//! the checkpoint's tokenizer around the same call, and
//! `cargo run -p cloze-eval --example fill_mask` shows both):
//!
//! ```
//! use std::path::Path;
//! use cloze_models::hf::load_pretrained;
//! use cloze_eval::{fill_mask, FillMaskOptions};
//!
//! let dir = Path::new("../cloze-models/tests/fixtures/hf-tiny-bert");
//! let loaded = load_pretrained(dir, tch::Device::Cpu)?;
//! // [CLS]=2 ... [MASK]=4 ... [SEP]=3 in the fixture's vocabulary of 96 ids; [PAD]=0.
//! let seq = vec![2, 17, 23, 4, 31, 3];
//! let opts = FillMaskOptions { top_k: 5, batch_size: 8, ..FillMaskOptions::new(4, 0) };
//! let predictions = fill_mask(&loaded.model, &[seq], &opts)?;
//! assert_eq!(predictions[0][0].position, 3);
//! assert_eq!(predictions[0][0].candidates.len(), 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
pub mod code;
pub mod correct;
pub mod csc_metrics;
pub mod dialogue;
pub mod dialogue_baselines;
pub mod encode;
mod error;
pub mod fill_mask;
pub mod finetune_data;
pub mod generate;
pub mod generation_baselines;
pub mod generation_metrics;
pub mod kg_rank;
pub mod kg_score;
pub mod link;
pub mod metrics;
pub mod mlm_eval;
pub mod pll;
pub mod s2s_generate;
pub mod scorer;
pub mod task;
pub mod text;

pub use correct::{
    correct, correct_with, Change, ConfusionSet, CorrectMode, CorrectOptions, Correction,
};
pub use csc_metrics::{csc_metrics, CscCounts, CscDataset, CscMetrics, CscPair, LevelScores};
pub use encode::{
    cosine, encode, write_embeddings, EncodeOptions, Encoded, OutputFormat, SentenceSource,
};
pub use error::{Error, Result};
pub use fill_mask::{fill_mask, Candidate, FillMaskOptions, MaskPrediction};
pub use pll::{corpus_pseudo_perplexity, pseudo_log_likelihood, PllOptions, PllScore};
pub use scorer::MaskedLm;
pub use task::Task;
pub use text::{ModelTokenizer, Tokenized, WordIds};

/// The tiny HF BERT checkpoint of `cloze-models`' tests, for unit tests here.
#[cfg(test)]
pub(crate) fn test_fixture() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../cloze-models/tests/fixtures/hf-tiny-bert")
}

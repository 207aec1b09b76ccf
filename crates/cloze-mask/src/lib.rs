//! `cloze-mask`: the masking layer. It turns the unmasked [`cloze_core::Instance`]s
//! of `cloze-text` into masked training [`Batch`]es of plain `Vec`s, which
//! `cloze-train` turns into tensors for `cloze-models`. It never links libtorch
//! and knows nothing about tensors.
//!
//! A masking scheme is four stages, each a small trait with a serde-tagged
//! config enum ([`config`]), so a scheme is a TOML/JSON file:
//!
//! 1. units ([`UnitSplitter`]): tokens, or whole words from the instance's word ids;
//! 2. selection ([`Selector`]): a token budget filled with spans of units
//!    (BERT, whole-word, MacBERT n-grams, SpanBERT geometric spans) or
//!    independent Bernoulli draws (HuggingFace's collator);
//! 3. corruption ([`Corruptor`]): BERT's `[MASK]`/random/keep, or MacBERT's
//!    similar-word/random/keep from a pluggable [`SimilarWords`] source
//!    (Cilin thesaurus, word2vec neighbours);
//! 4. collation ([`Masker::mask_batch`]) into a [`Batch`]: inputs plus typed
//!    [`Targets`]. A scheme that is not length-preserving (UniLM-v2's appended
//!    `[P]` tokens, with shared position ids and a [`Visibility`] rule)
//!    implements [`BatchBuilder`] itself instead of the four stages.
//!
//! Determinism: every random choice for example `i` of epoch `e` under seed `s`
//! comes from a ChaCha8 stream keyed by `(s, e, i)` ([`rng::example_rng`]), so
//! masks do not depend on the thread count or on batch boundaries.
//!
//! A downstream crate that only masks token ids depends on this crate alone
//! (its contract types come from the light `cloze-core`; no tokenizer, no
//! archive readers, no libtorch):
//!
//! ```
//! use cloze_mask::{Masker, MaskingConfig, Vocab};
//! use cloze_core::{Instance, NO_WORD};
//!
//! let words = ["the", "people", "shall", "protect", "our", "union"];
//! let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
//!     .iter()
//!     .chain(words.iter())
//!     .map(|t| t.to_string())
//!     .collect();
//! let vocab = Vocab::from_tokens(tokens);
//! let specials = vocab.special_tokens()?;
//! // `[CLS] the people shall protect our union [SEP]`, one word per token.
//! let mut ids = vec![specials.cls];
//! ids.extend((0..words.len() as u32).map(|w| 5 + w));
//! ids.push(specials.sep);
//! let n = ids.len();
//! let instance = Instance {
//!     word_ids: (0..n as u32).map(|i| if i == 0 || i + 1 == n as u32 { NO_WORD } else { i - 1 }).collect(),
//!     segment_ids: vec![0; n],
//!     tokens: ids,
//!     pair_label: None,
//! };
//! // Whole-word masking of a third of the words, from a TOML scheme.
//! let config = MaskingConfig::from_toml_str(r#"
//!     units = { type = "words" }
//!     select = { type = "budget", rate = 0.34, max_predictions = 20, lengths = { type = "single" } }
//!     corrupt = { type = "bert", mask = 0.8, random = 0.1, keep = 0.1, per = "token" }
//!     schedule = { type = "dynamic" }
//!     collate = { pad_to = { type = "batch_max" } }
//! "#)?;
//! let masker = Masker::new(config, specials)?;
//! let masked = masker.mask(&instance, 42, 0, 0)?;
//! assert_eq!(masked.input_ids.len(), n);
//! assert_eq!(masked.masked.len(), 2);
//! // The same (seed, epoch, index) always gives the same masks.
//! assert_eq!(masker.mask(&instance, 42, 0, 0)?.masked, masked.masked);
//! # Ok::<(), cloze_mask::Error>(())
//! ```

pub mod batch;
pub mod blockwise;
pub mod code;
pub mod config;
pub mod corrupt;
pub mod dialogue;
pub mod error;
pub mod link;
pub mod masker;
pub mod pseudo;
pub mod rng;
pub mod s2s;
pub mod select;
pub mod similar;
pub mod special;
pub mod stats;
pub mod synthetic;
pub mod units;
pub mod vocab;

pub use batch::{
    Batch, BatchBuilder, MaskedTarget, Span, Targets, Visibility, VisibleBlock, IGNORED_LABEL,
};
pub use blockwise::BlockwiseSelector;
pub use code::{CodeBuilder, CodeChunk, CodeConfig, CodeRow, CodeRowKind, CodeSequence};
pub use config::{
    CollateConfig, CorruptConfig, Granularity, Layout, LengthsConfig, MaskingConfig, PadTo,
    Schedule, SelectConfig, SimilarSourceConfig, UnitsConfig,
};
pub use corrupt::{BertCorruptor, Corruption, CorruptionJob, Corruptor, SimilarWordCorruptor};
pub use dialogue::{
    DialogueAttention, DialogueBuilder, DialogueConfig, DialogueExample, DialogueRow, RoleScheme,
};
pub use error::{Error, Result, Word2VecProblem};
pub use masker::{MaskedInstance, MaskedPosition, MaskedSpan, Masker, MaskerBuilder};
pub use pseudo::{PseudoRow, Step};
pub use s2s::{Seq2SeqBuilder, Seq2SeqConfig, Seq2SeqExample, Seq2SeqRow};
pub use select::{
    BernoulliSelector, BudgetSelector, LengthSampler, SelectScratch, SelectedSpan, Selector,
};
pub use similar::{SimilarTokenTable, SimilarWords, Thesaurus, Word2Vec, WordCodec};
pub use special::SpecialSet;
pub use stats::MaskStats;
pub use units::{TokenUnits, Unit, UnitSplitter, WordUnits};
pub use vocab::Vocab;

//! `cloze-mask`: the masking layer. It turns the unmasked [`cloze_text::Instance`]s
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
//! 4. collation ([`Masker::mask_batch`]) into a [`Batch`].
//!
//! Determinism: every random choice for example `i` of epoch `e` under seed `s`
//! comes from a ChaCha8 stream keyed by `(s, e, i)` ([`rng::example_rng`]), so
//! masks do not depend on the thread count or on batch boundaries.

pub mod batch;
pub mod config;
pub mod corrupt;
pub mod error;
pub mod masker;
pub mod rng;
pub mod select;
pub mod similar;
pub mod special;
pub mod stats;
pub mod synthetic;
pub mod units;
pub mod vocab;

pub use batch::{Batch, MaskedTarget};
pub use config::{
    CollateConfig, CorruptConfig, Granularity, LengthsConfig, MaskingConfig, PadTo, Schedule,
    SelectConfig, SimilarSourceConfig, UnitsConfig,
};
pub use corrupt::{BertCorruptor, Corruption, CorruptionJob, Corruptor, SimilarWordCorruptor};
pub use error::{Error, Result, Word2VecProblem};
pub use masker::{MaskedInstance, MaskedPosition, MaskedSpan, Masker, MaskerBuilder};
pub use select::{
    BernoulliSelector, BudgetSelector, LengthSampler, SelectScratch, SelectedSpan, Selector,
};
pub use similar::{SimilarTokenTable, SimilarWords, Thesaurus, Word2Vec, WordCodec};
pub use special::SpecialSet;
pub use stats::MaskStats;
pub use units::{TokenUnits, Unit, UnitSplitter, WordUnits};
pub use vocab::Vocab;

//! `cloze-text`: the text layer. Corpora in, tokenizer, word boundaries, unmasked
//! pretraining instances, on-disk shards.
//!
//! Neighbours: nothing below it; `cloze-mask` consumes its [`Instance`]s and
//! [`SpecialTokens`]. This crate never links libtorch.

pub mod instance;

pub use instance::{Instance, PairLabel, SpecialTokens, NO_WORD};

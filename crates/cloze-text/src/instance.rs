//! The unmasked pretraining instance and the special-token ids: the contract
//! between text and masking. They live in `cloze-core`, which the masking
//! layer depends on without pulling in this crate; they are re-exported here.

pub use cloze_core::{Instance, PairLabel, SpecialTokens, NO_WORD};

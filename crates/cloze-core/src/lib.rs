//! `cloze-core`: the small contract shared by the text and masking layers.
//!
//! Below every other cloze crate and deliberately light (serde, rand,
//! thiserror): a downstream crate that only masks token ids depends on
//! `cloze-mask`, which depends on this crate, and never pulls in a tokenizer,
//! an archive reader or libtorch.
//!
//! - [`Instance`], [`PairLabel`], [`NO_WORD`]: one unmasked pretraining example.
//! - [`SpecialTokens`]: the ids masking and collation must know, built in one
//!   place ([`SpecialTokens::from_lookup`]).
//! - [`WordCodec`]: token ids <-> a word's surface form (implemented by the
//!   text layer's tokenizer, used by similar-word masking).
//! - [`rng`]: every seeded random stream of the project and its salt.
//! - [`Report`]: named, typed metric values (losses, accuracies, counts) that
//!   objectives and evaluation tasks report and every display walks.
//!
//! ```
//! use cloze_core::{Instance, SpecialTokens, NO_WORD};
//! let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PSEUDO_MASK]", "hello"];
//! let specials = SpecialTokens::from_lookup(vocab.len() as u32, |t| {
//!     vocab.iter().position(|v| *v == t).map(|i| i as u32)
//! }, [])?;
//! assert_eq!(specials.mask, 4);
//! assert_eq!(specials.pseudo_mask, Some(5));
//! let inst = Instance {
//!     tokens: vec![specials.cls, 6, specials.sep],
//!     segment_ids: vec![0, 0, 0],
//!     word_ids: vec![NO_WORD, 0, NO_WORD],
//!     pair_label: None,
//! };
//! assert_eq!(inst.len(), 3);
//! # Ok::<(), cloze_core::MissingSpecialToken>(())
//! ```

mod codec;
mod instance;
pub mod report;
pub mod rng;

pub use codec::WordCodec;
pub use instance::{
    Instance, MissingSpecialToken, PairLabel, SpecialTokens, CLS, MASK, NO_WORD, PAD, PSEUDO_MASK,
    RESERVED, SEP, UNK,
};
pub use report::{Report, ReportSums};

//! `cloze-text`: the text layer. Corpora in, tokenizer, word boundaries, unmasked
//! pretraining instances, on-disk shards.
//!
//! Neighbours: below it only `cloze-fs`, whose rule every directory it writes
//! follows (shards, tokenizers: never replace the user's data, one writer,
//! publish by rename); `cloze-mask` consumes its [`Instance`]s and
//! [`SpecialTokens`]; `cloze-train` reads shards through [`shards::ShardSet`];
//! the `cloze` driver exposes [`datasets`] as `cloze data fetch|list`. This
//! crate never links libtorch.

mod archive;
pub mod corpus;
pub mod datasets;
pub mod error;
mod fastbert;
pub mod instance;
pub mod prepare;
pub mod pretrain;
pub mod progress;
pub mod sentences;
pub mod shards;
pub mod tokenizer;
mod vocab;
pub mod words;

pub use error::{Error, Result};
pub use instance::{Instance, PairLabel, SpecialTokens, NO_WORD};
pub use progress::{NoProgress, Progress};
pub use shards::{Manifest, ShardSet, Split};
pub use tokenizer::{Encoded, TextTokenizer, WordBoundaries};

//! `cloze-text`: the text layer. Corpora in, tokenizer, word boundaries, unmasked
//! pretraining instances, on-disk shards.
//!
//! Neighbours: below it only `cloze-fs`, whose rule every directory it writes
//! follows (shards, tokenizers: never replace the user's data, one writer,
//! publish by rename); `cloze-mask` consumes its [`Instance`]s and
//! [`SpecialTokens`]; `cloze-train` reads shards through [`shards::ShardSet`];
//! `cloze-fetch`, above it, downloads and converts the real corpora (using
//! [`sentences`] to split them), so this crate holds no archive readers or
//! package-client code. This crate never links libtorch.

//!
//! Train a WordPiece vocabulary, tokenize with word ids (for whole-word
//! masking), and cut a document into pretraining instances:
//!
//! ```
//! use cloze_text::pretrain::{instances_for_document, InstanceConfig, Mode, Segment};
//! use cloze_text::tokenizer::{train_wordpiece, TrainOptions};
//! use cloze_text::WordBoundaries;
//!
//! let lines = ["the people shall protect the union", "our union shall endure"];
//! let options = TrainOptions { vocab_size: 60, min_frequency: 1, ..TrainOptions::default() };
//! let tok = train_wordpiece(lines.iter().map(|l| l.to_string()).cycle().take(20), &options)?;
//! let encoded = tok.encode("the union shall endure", WordBoundaries::Tokenizer)?;
//! assert_eq!(encoded.ids.len(), encoded.word_ids.len());
//!
//! let doc: Vec<Segment> = lines
//!     .iter()
//!     .map(|l| {
//!         let (ids, word_ids) = tok.encode_ids_words(l, WordBoundaries::Tokenizer)?;
//!         Ok(Segment { ids, word_ids })
//!     })
//!     .collect::<cloze_text::Result<_>>()?;
//! let config = InstanceConfig { mode: Mode::Packed, max_seq_length: 32, ..InstanceConfig::default() };
//! let instances = instances_for_document(&[doc], 0, 0, &config, tok.special_tokens());
//! assert_eq!(instances[0].tokens[0], tok.special_tokens().cls);
//! # Ok::<(), cloze_text::Error>(())
//! ```

pub mod corpus;
pub mod dialogue;
pub mod error;
mod fastbert;
pub mod instance;
pub mod kg;
pub mod prepare;
pub mod pretrain;
pub mod progress;
pub mod sentences;
pub mod shards;
pub mod stats;
pub mod tokenizer;
mod vocab;
pub mod words;

pub use error::{Error, Result};
pub use instance::{Instance, PairLabel, SpecialTokens, NO_WORD};
pub use progress::{NoProgress, Progress};
pub use shards::{Manifest, ShardSet, Split};
pub use tokenizer::{Encoded, TextTokenizer, WordBoundaries};

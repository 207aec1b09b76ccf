//! BERT (Devlin et al. 2019) on libtorch, laid out like HuggingFace's implementation
//! so that checkpoints load by name.
//!
//! The building blocks ([`Linear`], [`LayerNorm`], [`dropout`], [`BertEmbeddings`],
//! [`Pooler`], [`Activation`]) and the encoder [`BertModel`] are public, so a head
//! can be written outside this crate; the heads this crate ships are in
//! [`crate::heads`].

mod config;
mod init;
mod input;
mod layers;
mod model;

pub use config::{Activation, BertConfig};
pub use init::OffsetHeads;
pub use input::MlmInput;
pub use layers::{dropout, BertEmbeddings, LayerNorm, Linear, Pooler};
pub use model::{BertForPreTraining, BertModel, BertOutput, PreTrainingOutput};

/// The MLM head, now in [`crate::heads::masked_lm`]; re-exported here for paths
/// written before the head table.
pub use crate::heads::MlmHead;

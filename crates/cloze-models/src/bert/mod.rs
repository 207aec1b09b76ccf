//! BERT (Devlin et al. 2019) on libtorch, laid out like HuggingFace's implementation
//! so that checkpoints load by name.
//!
//! The building blocks ([`Linear`], [`LayerNorm`], [`dropout`], [`BertEmbeddings`],
//! [`Pooler`], [`Activation`]) and the encoder [`BertModel`] are public, so a head
//! can be written outside this crate; the heads this crate ships are in
//! [`crate::heads`].
//!
//! Two opt-in parts serve UniLM-v2 (Bao et al. 2020): the relative position bias
//! ([`RelativePositionBias`], enabled by `rel_pos_bins` in the config) and
//! incremental decoding over a key/value cache ([`BertModel::forward_incremental`],
//! [`KvCache`]). A config without `rel_pos_bins` builds, runs and saves plain BERT.

mod config;
mod incremental;
mod init;
mod input;
mod layers;
mod layerwise;
mod model;
mod relative;

pub use config::{Activation, BertConfig};
pub use incremental::{IncrementalOutput, KvCache};
pub use init::OffsetHeads;
pub use input::MlmInput;
pub use layers::{dropout, BertEmbeddings, LayerNorm, Linear, Pooler};
pub use layerwise::{LayerwiseState, LinearSite};
pub use model::{BertForPreTraining, BertModel, BertOutput, PreTrainingOutput};
pub use relative::{relative_position_bucket, RelativePositionBias};

/// The MLM head, now in [`crate::heads::masked_lm`]; re-exported here for paths
/// written before the head table.
pub use crate::heads::MlmHead;

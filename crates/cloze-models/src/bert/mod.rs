//! BERT (Devlin et al. 2019) on libtorch, laid out like HuggingFace's implementation
//! so that checkpoints load by name.

mod config;
mod init;
mod input;
mod layers;
mod model;

pub use config::{Activation, BertConfig};
pub use init::OffsetHeads;
pub use input::MlmInput;
pub use layers::BertEmbeddings;
pub use model::{BertForPreTraining, BertModel, BertOutput, MlmHead, PreTrainingOutput};

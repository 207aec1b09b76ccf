//! One module per subcommand: its clap arguments and its `run`.

pub mod bench;
pub mod encode;
pub mod fill_mask;
pub mod score;
pub mod info;
pub mod mask_demo;
pub mod data;
pub mod tokenizer;
pub mod plot;
pub mod pretrain;
pub mod eval;

//! One module per subcommand: its clap arguments and its `run`.

pub mod bench;
pub mod data;
pub mod encode;
pub mod eval;
pub mod fill_mask;
pub mod info;
pub mod interrupt;
pub mod mask_demo;
pub mod plot;
pub mod pretrain;
pub mod score;
pub mod tokenizer;

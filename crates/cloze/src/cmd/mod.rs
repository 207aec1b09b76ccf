//! One module per subcommand: its clap arguments and its `run`.

pub mod bench;
pub mod correct;
pub mod data;
pub mod dist;
pub mod encode;
pub mod eval;
pub mod experiment;
pub mod fill_mask;
pub mod finetune;
pub mod finetune_link;
pub mod finetune_s2s;
pub mod generate;
pub mod info;
pub mod interrupt;
pub mod kg;
pub mod launch;
pub mod mask_demo;
pub mod plot;
pub mod predict;
pub mod pretrain;
pub mod prune;
pub mod quantize;
pub mod run_dir;
pub mod score;
pub mod tokenizer;

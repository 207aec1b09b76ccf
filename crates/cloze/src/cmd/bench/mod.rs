//! `cloze bench ...`: throughput measurements printed as JSON lines and a summary.
//!
//! Each bench is a module with its own arguments; peers (HF transformers) are
//! compared by running their scripts in the same invocation where a bench supports it.

use anyhow::Result;
use clap::{Args, Subcommand};

pub mod encode;
pub mod gemm;
pub mod mask;
pub mod train;

/// Arguments of `cloze bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: BenchCmd,
}

/// The benches.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// fp32 matrix-multiply throughput: the machine's practical compute peak.
    Gemm(gemm::GemmArgs),
    /// Real tokens/s of sentence encoding (all-MiniLM-L6-v2, SOTU), against HF's BertModel.
    Encode(encode::EncodeBenchArgs),
    /// Sequences/s of masking + collation (token and whole-word), against HF's collator.
    Mask(mask::MaskArgs),
    /// Tokens/s of a full BERT MLM training step, against HF transformers when a peer Python is given.
    Train(train::TrainArgs),
}

/// Runs the chosen bench.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.which {
        BenchCmd::Gemm(a) => gemm::run(a),
        BenchCmd::Encode(a) => encode::run(a),
        BenchCmd::Mask(a) => mask::run(a),
        BenchCmd::Train(a) => train::run(a),
    }
}

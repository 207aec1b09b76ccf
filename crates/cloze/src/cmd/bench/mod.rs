//! `cloze bench ...`: throughput measurements printed as JSON lines and a summary.
//!
//! Each bench is a module with its own arguments; peers (HF transformers) are
//! compared by running their scripts in the same invocation where a bench supports it.

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

pub mod encode;
pub mod gemm;
pub mod generate;
pub mod mask;
pub mod ranks;
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
    /// Tokens/s of greedy UniLM-v2 generation with and without the key/value cache.
    Generate(generate::GenerateBenchArgs),
}

/// Runs the chosen bench.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.which {
        BenchCmd::Gemm(a) => gemm::run(a),
        BenchCmd::Encode(a) => encode::run(a),
        BenchCmd::Mask(a) => mask::run(a),
        BenchCmd::Train(a) => train::run(a),
        BenchCmd::Generate(a) => generate::run(a),
    }
}

/// Runs a peer script (`python script args...`) and returns the JSON objects
/// it printed, one per line; other lines are ignored. The one place the
/// benches start the peer, so every bench reports a failing peer alike.
pub fn run_peer<I, S>(python: &Path, script: &Path, args: I) -> Result<Vec<serde_json::Value>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "the peer {} failed ({}): {}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The `value` of the first peer line whose `what` is `what`.
pub fn peer_value(lines: &[serde_json::Value], what: &str) -> Option<f64> {
    lines
        .iter()
        .find(|v| v["what"] == what)
        .and_then(|v| v["value"].as_f64())
}

//! `cloze score`: pseudo-log-likelihood and pseudo-perplexity of each line
//! (Salazar et al. 2020), as JSON lines, then a corpus summary.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tch::Device;

use super::fill_mask::{load_mlm, read_lines};

/// Arguments of `cloze score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Checkpoint directory with an MLM head and tokenizer.json.
    #[arg(long)]
    pub model: PathBuf,
    /// Text file, one sentence per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Masked copies per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", value_parser = cloze_models::parse_device)]
    pub device: Device,
}

/// Scores every line and prints JSON lines.
pub fn run(args: ScoreArgs) -> Result<()> {
    let (p, tok) = load_mlm(&args.model, args.device)?;
    let mask = tok.mask.context("the tokenizer has no [MASK] token")?;
    let lines = read_lines(&args.input)?;
    let texts: Vec<&str> = lines.iter().map(String::as_str).collect();
    let seqs = tok.encode_batch(&texts)?;
    let skip = [tok.cls, tok.sep, tok.pad];
    let scores = cloze_eval::pseudo_log_likelihood(
        &p.model,
        &seqs,
        mask,
        tok.pad,
        &skip,
        args.batch_size,
        args.device,
    )?;
    for (i, s) in scores.iter().enumerate() {
        println!(
            "{}",
            serde_json::json!({"index": i, "text": texts[i], "pll": s.pll, "tokens": s.tokens, "pseudo_perplexity": s.pseudo_perplexity})
        );
    }
    let tokens: usize = scores.iter().map(|s| s.tokens).sum();
    println!(
        "{}",
        serde_json::json!({"sentences": scores.len(), "tokens": tokens, "corpus_pseudo_perplexity": cloze_eval::corpus_pseudo_perplexity(&scores)})
    );
    Ok(())
}

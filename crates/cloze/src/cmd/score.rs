//! `cloze score`: pseudo-log-likelihood and pseudo-perplexity of each line
//! (Salazar et al. 2020), as JSON lines, then a corpus summary. Each line's record
//! echoes the text actually scored (`scored_text`, shorter than `text` when the line
//! was truncated to `--max-length`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use cloze_eval::PllOptions;
use cloze_models::Precision;
use tch::Device;

use super::fill_mask::{load_mlm, open_for_inference, InputLines, Opened};

/// Arguments of `cloze score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Checkpoint directory with an MLM head and tokenizer.json (or a BERT vocab.txt).
    #[arg(long)]
    pub model: PathBuf,
    /// Text file, one sentence per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Masked copies per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Truncate lines to this many tokens, special tokens included (default and
    /// maximum: the model's max_position_embeddings).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Fail on a line longer than the maximum length instead of truncating it.
    #[arg(long)]
    pub strict: bool,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", value_parser = cloze_models::parse_device)]
    pub device: Device,
    /// Inference precision: fp32, bf16 (weights cast to bfloat16 once at load),
    /// or int8 (linear layers on libtorch's dynamic int8 kernel, CPU only;
    /// log-probabilities still computed and summed in fp32).
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

/// Scores every line and prints JSON lines.
pub fn run(args: ScoreArgs) -> Result<()> {
    let Opened { tok, truncation } = open_for_inference(&args.model, args.max_length, args.strict)?;
    // [CLS], [SEP] and [PAD] are context only, never scored.
    let opts = PllOptions {
        batch_size: args.batch_size,
        device: args.device,
        ..PllOptions::for_tokenizer(&tok)?
    };
    let input = InputLines::read(&args.input, &tok, &truncation)?;
    let (lines, toks, texts) = (&input.lines, &input.toks, input.texts());
    let p = load_mlm(&args.model, args.device, args.precision)?;
    let scores = cloze_eval::pseudo_log_likelihood(&p.model, &input.seqs(), &opts)?;
    for (i, s) in scores.iter().enumerate() {
        let truncated = toks[i].is_truncated();
        let scored = if truncated {
            tok.kept_text(texts[i])?
        } else {
            texts[i]
        };
        println!(
            "{}",
            serde_json::json!({"index": i, "line": lines[i].number, "text": texts[i],
                "scored_text": scored, "truncated": truncated, "pll": s.pll, "tokens": s.tokens,
                "pseudo_perplexity": s.pseudo_perplexity})
        );
    }
    let tokens: usize = scores.iter().map(|s| s.tokens).sum();
    let truncated = toks.iter().filter(|t| t.is_truncated()).count();
    println!(
        "{}",
        serde_json::json!({"sentences": scores.len(), "tokens": tokens, "truncated": truncated,
            "corpus_pseudo_perplexity": cloze_eval::corpus_pseudo_perplexity(&scores)})
    );
    if let Some(s) = input.truncation_summary(&truncation) {
        eprintln!("{s}");
    }
    Ok(())
}

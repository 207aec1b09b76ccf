//! `cloze fill-mask`: top-k tokens with probabilities for every `[MASK]` of each text.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use cloze_eval::ModelTokenizer;
use cloze_models::{load_pretrained, BertForPreTraining, HeadStatus, Pretrained};
use tch::Device;

/// Arguments of `cloze fill-mask`.
#[derive(Debug, Args)]
pub struct FillMaskArgs {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Candidates per mask.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", value_parser = cloze_models::parse_device)]
    pub device: Device,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Texts with one or more `[MASK]` tokens.
    #[arg(required = true)]
    pub text: Vec<String>,
}

/// Loads a checkpoint that must have a trained MLM head, with its tokenizer.
pub(crate) fn load_mlm(
    dir: &Path,
    device: Device,
) -> Result<(Pretrained<BertForPreTraining>, ModelTokenizer)> {
    let p = load_pretrained(dir, device).with_context(|| format!("loading {}", dir.display()))?;
    if p.report.mlm_head != HeadStatus::Loaded {
        return Err(cloze_eval::Error::NoMlmHead {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    tracing::info!(report = %p.report, "model loaded");
    let tok = ModelTokenizer::from_dir(dir, p.config.max_position_embeddings as usize)?;
    Ok((p, tok))
}

/// Reads the non-empty lines of a text file.
pub(crate) fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    anyhow::ensure!(
        !lines.is_empty(),
        "{} has no non-empty line",
        path.display()
    );
    Ok(lines)
}

/// Runs fill-mask and prints the candidates.
pub fn run(args: FillMaskArgs) -> Result<()> {
    let (p, tok) = load_mlm(&args.model, args.device)?;
    let mask = tok.mask.context("the tokenizer has no [MASK] token")?;
    let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
    let seqs = tok.encode_batch(&texts)?;
    let out = cloze_eval::fill_mask(
        &p.model,
        &seqs,
        mask,
        tok.pad,
        args.top_k,
        args.batch_size,
        args.device,
    )?;
    for (i, preds) in out.iter().enumerate() {
        if args.json {
            let masks: Vec<serde_json::Value> = preds
                .iter()
                .map(|m| {
                    let c: Vec<serde_json::Value> = m
                        .candidates
                        .iter()
                        .map(|c| serde_json::json!({"token": tok.id_to_token(c.token_id), "token_id": c.token_id, "probability": c.probability}))
                        .collect();
                    serde_json::json!({"position": m.position, "candidates": c})
                })
                .collect();
            println!("{}", serde_json::json!({"text": texts[i], "masks": masks}));
        } else {
            println!("{}", texts[i]);
            for (k, m) in preds.iter().enumerate() {
                let c: Vec<String> = m
                    .candidates
                    .iter()
                    .map(|c| format!("{} ({:.4})", tok.id_to_token(c.token_id), c.probability))
                    .collect();
                println!(
                    "  [MASK] {} at token {}: {}",
                    k + 1,
                    m.position,
                    c.join(", ")
                );
            }
        }
    }
    Ok(())
}

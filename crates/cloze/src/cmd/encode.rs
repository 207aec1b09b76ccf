//! `cloze encode`: token states and mean-pooled sentence embeddings of each input
//! line, written as safetensors or JSON lines (chosen by the output's extension;
//! the formats are `cloze_eval::OutputFormat`'s). With `--precision bf16` the
//! encoder runs in bf16 and what is written is still fp32.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cloze_eval::{write_embeddings, EncodeOptions, OutputFormat, SentenceSource};
use cloze_models::{load_encoder, Precision};
use tch::Device;

use super::fill_mask::{cast_for_inference, open_for_inference, InputLines, Opened};

/// Arguments of `cloze encode`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Checkpoint directory (any BERT checkpoint; heads are not needed).
    #[arg(long)]
    pub model: PathBuf,
    /// Text file, one sentence per line.
    #[arg(long)]
    pub input: PathBuf,
    /// `.safetensors` (sentence_embeddings [N,H], token_states [T,H], token_ids [T],
    /// offsets [N+1]) or `.jsonl` (one object per line).
    #[arg(long)]
    pub output: PathBuf,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Truncate sentences to this many tokens, special tokens included (default and
    /// maximum: the model's max_position_embeddings).
    #[arg(long, visible_alias = "max-len")]
    pub max_length: Option<usize>,
    /// Fail on a line longer than the maximum length instead of truncating it.
    #[arg(long)]
    pub strict: bool,
    /// Only sentence embeddings, no token states.
    #[arg(long)]
    pub no_token_states: bool,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", value_parser = cloze_models::parse_device)]
    pub device: Device,
    /// Inference precision: fp32, bf16 (weights cast to bfloat16 once at load),
    /// or int8 (linear layers on libtorch's dynamic int8 kernel, CPU only;
    /// the embeddings and token states written are fp32 either way).
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

/// Encodes the input and writes the output file.
pub fn run(args: EncodeArgs) -> Result<()> {
    let format = OutputFormat::from_path(&args.output).context("--output")?;
    // The output replaces an existing file; never the input itself.
    if let (Ok(i), Ok(o)) = (
        std::fs::canonicalize(&args.input),
        std::fs::canonicalize(&args.output),
    ) {
        anyhow::ensure!(
            i != o,
            "--output {} is the --input file; it would be overwritten: choose another --output",
            args.output.display()
        );
    }
    let Opened { tok, truncation } = open_for_inference(&args.model, args.max_length, args.strict)?;
    let input = InputLines::read(&args.input, &tok, &truncation)?;
    let mut p = load_encoder(&args.model, args.device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    tracing::info!(report = %p.report, "encoder loaded");
    cast_for_inference(
        &args.model,
        &mut p.vs,
        &mut p.model,
        args.precision,
        args.device,
    )?;
    let seqs = input.seqs();
    let opts = EncodeOptions {
        batch_size: args.batch_size,
        sort_by_length: true,
        keep_token_states: !args.no_token_states,
        device: args.device,
        ..EncodeOptions::for_tokenizer(&tok)
    };
    let t = std::time::Instant::now();
    let enc = cloze_eval::encode(&p.model, &seqs, &opts)?;
    tracing::info!(
        sentences = seqs.len(),
        tokens = enc.real_tokens,
        secs = t.elapsed().as_secs_f64(),
        "encoded"
    );
    let sentences: Vec<SentenceSource<'_>> = input
        .lines
        .iter()
        .zip(&input.toks)
        .map(|(line, t)| SentenceSource {
            ids: &t.ids,
            text: &line.text,
            line: line.number,
            truncated: t.is_truncated(),
        })
        .collect();
    write_embeddings(&args.output, format, &enc, &sentences, &tok)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "wrote {} sentences ({} tokens) to {}",
        seqs.len(),
        enc.real_tokens,
        args.output.display()
    );
    if let Some(s) = input.truncation_summary(&truncation) {
        eprintln!("{s}");
    }
    Ok(())
}

//! `cloze encode`: token states and mean-pooled sentence embeddings of each input
//! line, written as safetensors or JSON lines (chosen by the output's extension).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cloze_eval::EncodeOptions;
use cloze_models::load_encoder;
use tch::{Device, Kind, Tensor};

use super::fill_mask::{open_for_inference, read_lines, Inputs, Opened};

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
}

/// Encodes the input and writes the output file.
pub fn run(args: EncodeArgs) -> Result<()> {
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    anyhow::ensure!(
        ext == "safetensors" || ext == "jsonl",
        "--output must end in .safetensors or .jsonl, got {}",
        args.output.display()
    );
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
    let lines = read_lines(&args.input)?;
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let toks = tok.tokenize_batch(&texts)?;
    let name = |i: usize| format!("line {} of {}", lines[i].number, args.input.display());
    let inputs = Inputs {
        noun: "lines",
        name: &name,
    };
    truncation.check(&toks, &inputs)?;
    let p = load_encoder(&args.model, args.device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    tracing::info!(report = %p.report, "encoder loaded");
    let seqs: Vec<Vec<u32>> = toks.iter().map(|t| t.ids.clone()).collect();
    let opts = EncodeOptions {
        batch_size: args.batch_size,
        sort_by_length: true,
        keep_token_states: !args.no_token_states,
    };
    let t = std::time::Instant::now();
    let enc = cloze_eval::encode(&p.model, &seqs, tok.pad, args.device, &opts)?;
    tracing::info!(
        sentences = seqs.len(),
        tokens = enc.real_tokens,
        secs = t.elapsed().as_secs_f64(),
        "encoded"
    );
    if ext == "safetensors" {
        let mut out = BTreeMap::new();
        out.insert(
            "sentence_embeddings".to_string(),
            enc.embeddings.shallow_clone(),
        );
        let mut offsets = vec![0i64];
        let ids: Vec<i64> = seqs.iter().flatten().map(|&t| i64::from(t)).collect();
        for s in &seqs {
            offsets.push(offsets.last().copied().unwrap_or(0) + s.len() as i64);
        }
        out.insert("offsets".to_string(), Tensor::from_slice(&offsets));
        out.insert("token_ids".to_string(), Tensor::from_slice(&ids));
        if let Some(states) = &enc.token_states {
            out.insert("token_states".to_string(), Tensor::f_cat(states, 0)?);
        }
        cloze_models::hf::write_safetensors(&args.output, &out)?;
    } else {
        let mut text = String::new();
        for (i, s) in seqs.iter().enumerate() {
            let emb = Vec::<f32>::try_from(enc.embeddings.get(i as i64))?;
            let mut obj = serde_json::json!({
                "index": i,
                "line": lines[i].number,
                "text": texts[i],
                "truncated": toks[i].is_truncated(),
                "tokens": s.iter().map(|&t| tok.id_to_token(t)).collect::<Vec<_>>(),
                "embedding": emb,
            });
            if let Some(states) = &enc.token_states {
                let st = &states[i];
                let rows: Vec<Vec<f32>> = (0..st.size()[0])
                    .map(|r| Vec::<f32>::try_from(st.get(r).to_kind(Kind::Float)))
                    .collect::<Result<_, _>>()?;
                obj["token_states"] = serde_json::json!(rows);
            }
            text.push_str(&obj.to_string());
            text.push('\n');
        }
        cloze_models::hf::write_atomic(&args.output, text.as_bytes())?;
    }
    eprintln!(
        "wrote {} sentences ({} tokens) to {}",
        seqs.len(),
        enc.real_tokens,
        args.output.display()
    );
    if let Some(s) = truncation.summary(&toks, &inputs) {
        eprintln!("{s}");
    }
    Ok(())
}

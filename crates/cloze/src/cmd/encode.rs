//! `cloze encode`: token states and mean-pooled sentence embeddings of each input
//! line, written as safetensors or JSON lines (chosen by the output's extension).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cloze_eval::{EncodeOptions, ModelTokenizer};
use cloze_models::load_encoder;
use tch::{Device, Kind, Tensor};

use super::fill_mask::read_lines;

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
    /// Truncate sentences to this many tokens (special tokens included).
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
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
    let p = load_encoder(&args.model, args.device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    tracing::info!(report = %p.report, "encoder loaded");
    let max_len = args.max_len.min(p.config.max_position_embeddings as usize);
    let tok = ModelTokenizer::from_dir(&args.model, max_len)?;
    let lines = read_lines(&args.input)?;
    let texts: Vec<&str> = lines.iter().map(String::as_str).collect();
    let seqs = tok.encode_batch(&texts)?;
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
                "text": texts[i],
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
    Ok(())
}

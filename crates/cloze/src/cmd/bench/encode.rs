//! `cloze bench encode`: real (non-padding) tokens/s of sentence encoding with
//! all-MiniLM-L6-v2 on the first N SOTU sentences, against HF's `BertModel` (the peer
//! script `hf_encode_bench.py`) in the same run when a peer Python is given.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use cloze_eval::{EncodeOptions, ModelTokenizer};
use cloze_models::load_encoder;
use tch::Device;

/// HF BertModel on this kind of machine (../shared/DATA.md), used only when the peer
/// cannot run in the same invocation.
const REFERENCE_HF_TOKENS_PER_S: (f64, f64) = (2460.0, 2740.0);

/// Arguments of `cloze bench encode`.
#[derive(Debug, Args)]
pub struct EncodeBenchArgs {
    /// Checkpoint directory; default: the `minilm` dataset in the cache (`cloze data fetch minilm`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Text file; default: the `sotu` corpus in the cache (`cloze data fetch sotu`).
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// Number of sentences.
    #[arg(long, default_value_t = 2000)]
    pub sentences: usize,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Truncation length in tokens.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// libtorch intra-op threads (the peer pins 2; the global `--threads` sizes the
    /// tokenizer's rayon pool).
    #[arg(long = "torch-threads", default_value_t = 2)]
    pub torch_threads: i32,
    /// Timed repetitions (the best is reported, after one warm-up).
    #[arg(long, default_value_t = 2)]
    pub reps: u32,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu", value_parser = cloze_models::parse_device)]
    pub device: Device,
    /// Python with torch and transformers: also run the HF peer in this invocation.
    #[arg(long)]
    pub peer_python: Option<PathBuf>,
    /// The peer script.
    #[arg(long, default_value = "../shared/peers/hf_encode_bench.py")]
    pub peer_script: PathBuf,
}

/// Splits like the peer: after `.`, `!` or `?` followed by white space; keeps
/// sentences of at least five words; the first `n`.
pub fn peer_sentences(text: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev: Option<char> = None;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c.is_whitespace() && matches!(prev, Some('.' | '!' | '?')) {
            out.push(&text[start..i]);
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = iter.peek() {
                if !d.is_whitespace() {
                    break;
                }
                end = j + d.len_utf8();
                iter.next();
            }
            start = end;
            prev = None;
            continue;
        }
        prev = Some(c);
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| s.split_whitespace().count() >= 5)
        .take(n)
        .map(String::from)
        .collect()
}

fn default_path(dataset: &str, file: Option<&str>) -> Result<PathBuf> {
    let root = cloze_fetch::datasets::cache_root()?;
    let dir = cloze_fetch::datasets::dataset_dir(&root, dataset);
    let path = match file {
        Some(f) => dir.join(f),
        None => dir,
    };
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `cloze data fetch {dataset}`",
        path.display()
    );
    Ok(path)
}

fn run_peer(a: &EncodeBenchArgs, python: &Path, model: &Path, text: &Path) -> Result<f64> {
    let lines = super::run_peer(
        python,
        &a.peer_script,
        [
            model.as_os_str(),
            text.as_os_str(),
            a.sentences.to_string().as_ref(),
        ],
    )?;
    let line = lines
        .iter()
        .find(|v| v["what"] == "hf_encode_tokens_per_s")
        .context("the peer printed no hf_encode_tokens_per_s line")?;
    println!("{line}");
    line["value"].as_f64().context("peer value is not a number")
}

/// Runs the bench and prints JSON lines.
pub fn run(a: EncodeBenchArgs) -> Result<()> {
    tch::set_num_threads(a.torch_threads);
    let model_dir = match &a.model {
        Some(m) => m.clone(),
        None => default_path("minilm", None)?,
    };
    let text_path = match &a.text {
        Some(t) => t.clone(),
        None => default_path("sotu", Some("sotu.txt"))?,
    };
    let text = std::fs::read_to_string(&text_path)
        .with_context(|| format!("reading {}", text_path.display()))?;
    let lines = peer_sentences(&text, a.sentences);
    let texts: Vec<&str> = lines.iter().map(String::as_str).collect();
    let p = load_encoder(&model_dir, a.device)?;
    let tok = ModelTokenizer::from_dir(&model_dir, a.max_len)?;
    let sorted = EncodeOptions {
        batch_size: a.batch_size,
        sort_by_length: true,
        keep_token_states: false,
        device: a.device,
        ..EncodeOptions::for_tokenizer(&tok)
    };
    let file_order = EncodeOptions {
        sort_by_length: false,
        ..sorted.clone()
    };
    // What is timed is what the peer times: tokenize, forward, mean-pool.
    let once = |opts: &EncodeOptions| -> Result<(f64, cloze_eval::Encoded)> {
        let t = Instant::now();
        let seqs = tok.encode_batch(&texts)?;
        let enc = cloze_eval::encode(&p.model, &seqs, opts)?;
        if let Device::Cuda(_) = a.device {
            tch::Cuda::synchronize(0);
        }
        Ok((t.elapsed().as_secs_f64(), enc))
    };
    let best = |opts: &EncodeOptions| -> Result<(f64, cloze_eval::Encoded)> {
        let (_, mut enc) = once(opts)?;
        let mut secs = f64::INFINITY;
        for _ in 0..a.reps.max(1) {
            let (s, e) = once(opts)?;
            if s < secs {
                secs = s;
                enc = e;
            }
        }
        Ok((secs, enc))
    };
    let (secs, enc) = best(&sorted)?;
    let (secs_fo, enc_fo) = best(&file_order)?;
    let diff = (&enc.embeddings - &enc_fo.embeddings)
        .abs()
        .max()
        .double_value(&[]);
    let tps = enc.real_tokens as f64 / secs;
    let tps_fo = enc_fo.real_tokens as f64 / secs_fo;
    let round = |x: f64| (x * 10.0).round() / 10.0;
    println!(
        "{}",
        serde_json::json!({"what": "cloze_encode_tokens_per_s", "value": round(tps), "sentences": texts.len(),
            "tokens": enc.real_tokens, "padding_share": 1.0 - enc.real_tokens as f64 / enc.padded_positions as f64,
            "batch": a.batch_size, "threads": a.torch_threads, "order": "length-sorted"})
    );
    println!(
        "{}",
        serde_json::json!({"what": "cloze_encode_file_order_tokens_per_s", "value": round(tps_fo),
            "padding_share": 1.0 - enc_fo.real_tokens as f64 / enc_fo.padded_positions as f64})
    );
    println!(
        "{}",
        serde_json::json!({"what": "max_abs_diff_sorted_vs_file_order", "value": diff})
    );
    anyhow::ensure!(
        diff <= 1e-5,
        "length-sorted embeddings differ from file order by {diff}"
    );
    match &a.peer_python {
        Some(py) => {
            let hf = run_peer(&a, py, &model_dir, &text_path)?;
            println!(
                "{}",
                serde_json::json!({"what": "ratio_vs_hf_same_run", "value": (tps / hf * 100.0).round() / 100.0})
            );
        }
        None => {
            let (lo, hi) = REFERENCE_HF_TOKENS_PER_S;
            println!(
                "{}",
                serde_json::json!({"what": "ratio_vs_hf_reference", "value": [(tps / hi * 100.0).round() / 100.0, (tps / lo * 100.0).round() / 100.0],
                    "note": "HF figure is the DATA.md reference (2,460-2,740 tokens/s), not measured in this run; pass --peer-python for a same-run ratio"})
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_peer_regex() {
        let text = "One two three four five. Short one! Is this a long enough one?  Yes.\nAnother line of text here\nwith a wrap.";
        assert_eq!(
            peer_sentences(text, 10),
            vec![
                "One two three four five.",
                "Is this a long enough one?",
                "Another line of text here\nwith a wrap."
            ]
        );
        assert_eq!(peer_sentences(text, 1).len(), 1);
    }
}

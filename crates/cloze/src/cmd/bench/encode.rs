//! `cloze bench encode`: real (non-padding) tokens/s of sentence encoding with
//! all-MiniLM-L6-v2 on the first N SOTU sentences, against HF's `BertModel` (the peer
//! script `hf_encode_bench.py`) in the same run when a peer Python is given.
//! `--precision bf16` (or `int8`) also times our encode with bf16 weights (or
//! int8 linear layers) in the same run and compares its embeddings with
//! fp32's; with `int8` and a peer Python, PyTorch's own dynamic int8
//! quantisation of the same model is timed too (`benches/peers/hf_encode_int8.py`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use cloze_eval::{EncodeOptions, Encoded, ModelTokenizer};
use cloze_models::{load_encoder, BertModel, Precision};
use tch::{Device, Kind, Tensor};

/// HF BertModel on this kind of machine (../shared/DATA.md), used only when the peer
/// cannot run in the same invocation.
const REFERENCE_HF_TOKENS_PER_S: (f64, f64) = (2460.0, 2740.0);

/// The least cosine a bf16 sentence embedding may have to its fp32 one: below
/// it the bench fails after printing its figures (the bound of issue 21).
const MIN_COSINE_BF16: f64 = 0.999;

/// The cosine issue 17 asks of int8 embeddings. Dynamic int8 does not reach it
/// on every CPU (docs/compression.md), so the bench reports whether it was met
/// rather than failing.
const TARGET_COSINE_INT8: f64 = 0.99;

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
    /// The peer script for `--precision int8`: HF's model in fp32 and after
    /// PyTorch's dynamic int8 quantisation, in one process.
    #[arg(long, default_value = "benches/peers/hf_encode_int8.py")]
    pub peer_int8_script: PathBuf,
    /// With `bf16`, also time our encode with the weights cast to bfloat16 (with
    /// `int8`, with the linear layers on the dynamic int8 kernel), in this run
    /// on the same sentences, interleaved with the fp32 one: both tokens/s,
    /// their ratio, and the min and mean cosine between the two sets of
    /// sentence embeddings (the bench fails below 0.999 for bf16; for int8 it
    /// says whether 0.99 was reached). The bf16 peer stays fp32; the int8 peer
    /// is PyTorch's own dynamic int8.
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
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
    echo_peer_value(&lines, "hf_encode_tokens_per_s")
}

/// Prints the peer's `what` line as it came and returns its value.
fn echo_peer_value(lines: &[serde_json::Value], what: &str) -> Result<f64> {
    let line = lines
        .iter()
        .find(|v| v["what"] == what)
        .with_context(|| format!("the peer printed no {what} line"))?;
    println!("{line}");
    line["value"]
        .as_f64()
        .with_context(|| format!("the peer's {what} is not a number"))
}

/// One timed encode: what the peer times (tokenize, forward, mean-pool), in seconds.
fn time_once(
    model: &BertModel,
    tok: &ModelTokenizer,
    texts: &[&str],
    opts: &EncodeOptions,
) -> Result<(f64, Encoded)> {
    let t = Instant::now();
    let seqs = tok.encode_batch(texts)?;
    let enc = cloze_eval::encode(model, &seqs, opts)?;
    if let Device::Cuda(i) = opts.device {
        tch::Cuda::synchronize(i as i64);
    }
    Ok((t.elapsed().as_secs_f64(), enc))
}

/// The best of several timings of the same encode, and its result.
struct Best {
    secs: f64,
    enc: Option<Encoded>,
}

impl Best {
    fn new() -> Self {
        Best {
            secs: f64::INFINITY,
            enc: None,
        }
    }

    fn offer(&mut self, (secs, enc): (f64, Encoded)) {
        if secs < self.secs || self.enc.is_none() {
            self.secs = secs;
            self.enc = Some(enc);
        }
    }

    fn result(self) -> Result<(f64, Encoded)> {
        Ok((self.secs, self.enc.context("no timed repetition ran")?))
    }
}

/// Times each model on the same sentences: one warm-up each, then `reps` rounds
/// in which every model runs once, so that a change in the machine's load
/// (another process, frequency) falls on all of them alike; the best time each.
fn best_interleaved(
    models: &[&BertModel],
    tok: &ModelTokenizer,
    texts: &[&str],
    opts: &EncodeOptions,
    reps: u32,
) -> Result<Vec<(f64, Encoded)>> {
    for m in models {
        time_once(m, tok, texts, opts)?;
    }
    let mut best: Vec<Best> = models.iter().map(|_| Best::new()).collect();
    for _ in 0..reps.max(1) {
        for (m, b) in models.iter().zip(&mut best) {
            b.offer(time_once(m, tok, texts, opts)?);
        }
    }
    best.into_iter().map(Best::result).collect()
}

/// Row-wise cosine similarity of two `[N, H]` embedding matrices: the minimum
/// and the mean over rows (computed in f64).
pub fn row_cosines(a: &Tensor, b: &Tensor) -> Result<(f64, f64)> {
    anyhow::ensure!(
        a.size() == b.size() && a.size().len() == 2,
        "embeddings of different shapes: {:?} and {:?}",
        a.size(),
        b.size()
    );
    let (a, b) = (a.f_to_kind(Kind::Double)?, b.f_to_kind(Kind::Double)?);
    let dot = a
        .f_mul(&b)?
        .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Double)?;
    let norms = a
        .f_norm_scalaropt_dim(2, [1i64].as_slice(), false)?
        .f_mul(&b.f_norm_scalaropt_dim(2, [1i64].as_slice(), false)?)?
        .f_clamp_min(1e-12)?;
    let cos = dot.f_div(&norms)?;
    anyhow::ensure!(cos.size()[0] > 0, "no sentence to compare");
    Ok((
        cos.f_min()?.f_double_value(&[])?,
        cos.f_mean(Kind::Double)?.f_double_value(&[])?,
    ))
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
    // The bf16 model is a second copy of the same checkpoint, cast once, so both
    // precisions are timed in this run on the same sentences.
    let low = match a.precision {
        Precision::Fp32 => None,
        other => {
            super::super::fill_mask::check_inference_precision(other, a.device)?;
            let mut q = load_encoder(&model_dir, a.device)?;
            let smoothing = super::super::fill_mask::inference_smoothing(&model_dir, other)?;
            other.prepare(&mut q.vs, &mut q.model, smoothing.as_ref())?;
            Some(q)
        }
    };
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
    let mut models = vec![&p.model];
    models.extend(low.as_ref().map(|q| &q.model));
    let mut timed = best_interleaved(&models, &tok, &texts, &sorted, a.reps)?.into_iter();
    let (secs, enc) = timed.next().context("the fp32 encode was not timed")?;
    let low_timed = timed.next();
    let (secs_fo, enc_fo) = best_interleaved(&[&p.model], &tok, &texts, &file_order, a.reps)?
        .pop()
        .context("the file-order encode was not timed")?;
    let diff = (&enc.embeddings - &enc_fo.embeddings)
        .abs()
        .max()
        .double_value(&[]);
    let tps = enc.real_tokens as f64 / secs;
    let tps_fo = enc_fo.real_tokens as f64 / secs_fo;
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    println!(
        "{}",
        serde_json::json!({"what": "cloze_encode_tokens_per_s", "value": round(tps), "sentences": texts.len(),
            "tokens": enc.real_tokens, "padding_share": 1.0 - enc.real_tokens as f64 / enc.padded_positions as f64,
            "batch": a.batch_size, "threads": a.torch_threads, "order": "length-sorted", "precision": "fp32"})
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
    // bf16 against fp32, both ours, this run: speed and agreement.
    let mut low_summary = None;
    if let Some((secs_low, enc_low)) = &low_timed {
        let name = a.precision.name();
        let tps_low = enc_low.real_tokens as f64 / secs_low;
        let speedup = tps_low / tps;
        let (min_cos, mean_cos) = row_cosines(&enc.embeddings, &enc_low.embeddings)?;
        println!(
            "{}",
            serde_json::json!({"what": format!("cloze_encode_{name}_tokens_per_s"), "value": round(tps_low),
                "sentences": texts.len(), "tokens": enc_low.real_tokens, "batch": a.batch_size,
                "threads": a.torch_threads, "order": "length-sorted", "precision": name,
                "cpu_bf16_gemm": cloze_models::precision::cpu_has_bf16_gemm()})
        );
        println!(
            "{}",
            serde_json::json!({"what": format!("ratio_{name}_vs_fp32_same_run"), "value": round2(speedup)})
        );
        println!(
            "{}",
            serde_json::json!({"what": format!("cosine_{name}_vs_fp32"), "value": min_cos, "min": min_cos,
                "mean": mean_cos, "sentences": texts.len()})
        );
        low_summary = Some((name, tps_low, speedup, min_cos, mean_cos));
    }
    match &a.peer_python {
        Some(py) if a.precision == Precision::Int8 => {
            let lines = super::run_peer(
                py,
                &a.peer_int8_script,
                [
                    model_dir.as_os_str(),
                    text_path.as_os_str(),
                    a.sentences.to_string().as_ref(),
                    a.reps.to_string().as_ref(),
                ],
            )?;
            let hf = echo_peer_value(&lines, "hf_encode_tokens_per_s")?;
            let hf8 = echo_peer_value(&lines, "hf_encode_int8_tokens_per_s")?;
            echo_peer_value(&lines, "hf_cosine_int8_vs_fp32")?;
            println!(
                "{}",
                serde_json::json!({"what": "ratio_vs_hf_same_run", "value": round2(tps / hf)})
            );
            println!(
                "{}",
                serde_json::json!({"what": "ratio_hf_int8_vs_hf_fp32_same_run", "value": round2(hf8 / hf)})
            );
            if let Some((_, tps_low, ..)) = low_summary {
                println!(
                    "{}",
                    serde_json::json!({"what": "ratio_int8_vs_hf_int8_same_run", "value": round2(tps_low / hf8)})
                );
            }
        }
        Some(py) => {
            let hf = run_peer(&a, py, &model_dir, &text_path)?;
            println!(
                "{}",
                serde_json::json!({"what": "ratio_vs_hf_same_run", "value": round2(tps / hf)})
            );
            if let Some((name, tps_low, ..)) = low_summary {
                println!(
                    "{}",
                    serde_json::json!({"what": format!("ratio_{name}_vs_hf_fp32_same_run"), "value": round2(tps_low / hf),
                        "note": "the peer runs fp32: its script has no bf16 flag"})
                );
            }
        }
        None => {
            let (lo, hi) = REFERENCE_HF_TOKENS_PER_S;
            println!(
                "{}",
                serde_json::json!({"what": "ratio_vs_hf_reference", "value": [round2(tps / hi), round2(tps / lo)],
                    "note": "HF figure is the DATA.md reference (2,460-2,740 tokens/s), not measured in this run; pass --peer-python for a same-run ratio"})
            );
        }
    }
    if let Some((name, tps_low, speedup, min_cos, mean_cos)) = low_summary {
        eprintln!(
            "encode {} sentences: fp32 {:.0} tokens/s, {name} {:.0} tokens/s ({speedup:.2}x); \
             {name} embeddings vs fp32: cosine min {min_cos:.5}, mean {mean_cos:.6}",
            texts.len(),
            tps,
            tps_low
        );
        if a.precision == Precision::Int8 {
            let met = min_cos >= TARGET_COSINE_INT8;
            println!(
                "{}",
                serde_json::json!({"what": "int8_cosine_target_met", "value": met,
                    "target": TARGET_COSINE_INT8, "min": min_cos})
            );
            if !met {
                tracing::warn!(
                    "int8 embeddings reach cosine {min_cos:.4} to fp32, below the {TARGET_COSINE_INT8} \
                     target (see docs/compression.md)"
                );
            }
        } else {
            anyhow::ensure!(
                min_cos >= MIN_COSINE_BF16,
                "a {name} sentence embedding is at cosine {min_cos} to fp32, below {MIN_COSINE_BF16}"
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

    #[test]
    fn row_cosines_give_the_min_and_mean_over_rows() -> Result<()> {
        let a = Tensor::from_slice(&[1f32, 0., 0., 2., 3., 4.]).view([3, 2]);
        // Row 0 the same, row 1 scaled (cosine 1), row 2 orthogonal (cosine 0).
        let b = Tensor::from_slice(&[1f32, 0., 0., 5., -4., 3.]).view([3, 2]);
        let (min, mean) = row_cosines(&a, &b)?;
        assert!(min.abs() < 1e-12, "{min}");
        assert!((mean - 2.0 / 3.0).abs() < 1e-12, "{mean}");
        assert!(row_cosines(&a, &b.narrow(0, 0, 2)).is_err());
        Ok(())
    }
}

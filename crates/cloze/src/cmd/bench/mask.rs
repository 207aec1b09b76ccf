//! `cloze bench mask`: masking + collation throughput (sequences/s) for token and
//! whole-word masking, compared with HuggingFace's DataCollatorForLanguageModeling.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use cloze_mask::synthetic::{bert_base_specials, synthetic_instances};
use cloze_mask::{Masker, MaskingConfig};

/// HF's collator on this kind of machine (2 threads, 128-token sequences, batch
/// 32), as measured by `peers/hf_data_bench.py` and recorded in DATA.md.
const HF_TOKEN_SEQS_PER_S: f64 = 9_300.0;
const HF_WWM_SEQS_PER_S: f64 = 5_000.0;

/// Arguments of `cloze bench mask`.
#[derive(Debug, Args)]
pub struct MaskArgs {
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// rayon threads masking a batch.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Distinct synthetic sequences cycled through.
    #[arg(long, default_value_t = 4096)]
    pub sequences: usize,
    /// Seconds timed per scheme (after a warm-up of a quarter of that).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// A masking scheme file to time as well (TOML or JSON).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Python with transformers installed: runs the peer script in the same invocation.
    #[arg(long, requires_all = ["peer_corpus", "peer_tokenizer"])]
    pub peer_python: Option<PathBuf>,
    /// Plain-text corpus for the peer script.
    #[arg(long)]
    pub peer_corpus: Option<PathBuf>,
    /// BERT tokenizer directory for the peer script.
    #[arg(long)]
    pub peer_tokenizer: Option<PathBuf>,
    /// The peer script (`hf_data_bench.py`).
    #[arg(long, default_value = "../shared/peers/hf_data_bench.py")]
    pub peer_script: PathBuf,
}

/// Sequences per second masking and collating `batch`-sized slices of `data`.
fn measure(
    masker: &Masker,
    data: &[cloze_text::Instance],
    batch: usize,
    seconds: f64,
) -> Result<(f64, usize)> {
    let batches: Vec<&[cloze_text::Instance]> =
        data.chunks(batch).filter(|c| c.len() == batch).collect();
    anyhow::ensure!(
        !batches.is_empty(),
        "need at least one full batch of {batch}"
    );
    let run = |limit: Duration| -> Result<(usize, Duration)> {
        let start = Instant::now();
        let mut seqs = 0usize;
        let mut epoch = 0u64;
        while start.elapsed() < limit {
            for (i, b) in batches.iter().enumerate() {
                let out = masker.mask_batch(b, 0, epoch, (i * batch) as u64)?;
                seqs += out.batch_size;
                std::hint::black_box(&out);
            }
            epoch += 1;
        }
        Ok((seqs, start.elapsed()))
    };
    run(Duration::from_secs_f64(seconds / 4.0))?;
    let (seqs, took) = run(Duration::from_secs_f64(seconds))?;
    Ok((seqs as f64 / took.as_secs_f64(), seqs))
}

fn peer(args: &MaskArgs) -> Result<Vec<serde_json::Value>> {
    let (Some(py), Some(corpus), Some(tok)) =
        (&args.peer_python, &args.peer_corpus, &args.peer_tokenizer)
    else {
        return Ok(Vec::new());
    };
    super::run_peer(py, &args.peer_script, [corpus, tok])
}

/// Runs the bench and prints one JSON line per scheme, then a summary.
pub fn run(args: MaskArgs) -> Result<()> {
    let specials = bert_base_specials();
    let data = synthetic_instances(args.sequences, args.seq_len, &specials, 0)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let peer = peer(&args)?;
    let peer_value = |what: &str| {
        peer.iter()
            .find(|v| v["what"] == what)
            .and_then(|v| v["value"].as_f64())
    };
    let mut schemes = vec![
        (
            "token",
            MaskingConfig::bert(Some(20)),
            peer_value("hf_collate_token_seqs_per_s"),
            HF_TOKEN_SEQS_PER_S,
        ),
        (
            "wwm",
            MaskingConfig::whole_word(Some(20)),
            peer_value("hf_collate_wwm_seqs_per_s"),
            HF_WWM_SEQS_PER_S,
        ),
    ];
    if let Some(path) = &args.config {
        let config = MaskingConfig::load(path)?;
        schemes.push(("config", config, None, f64::NAN));
    }
    let mut summary = Vec::new();
    for (name, config, measured_peer, reference) in schemes {
        let masker = Masker::new(config, specials.clone())?;
        let (rate, seqs) = pool.install(|| measure(&masker, &data, args.batch, args.seconds))?;
        let (hf, hf_source) = match measured_peer {
            Some(v) => (v, "measured in this run"),
            None => (reference, "DATA.md reference, not measured in this run"),
        };
        let ratio = rate / hf;
        println!(
            "{}",
            serde_json::json!({
                "what": format!("mask_{name}_seqs_per_s"), "value": rate.round(), "seqs": seqs,
                "seq_len": args.seq_len, "batch": args.batch, "threads": args.threads,
                "hf_seqs_per_s": if hf.is_finite() { serde_json::json!(hf) } else { serde_json::Value::Null },
                "hf_source": if hf.is_finite() { hf_source } else { "no peer" },
                "ratio_vs_hf": if ratio.is_finite() { serde_json::json!((ratio * 10.0).round() / 10.0) } else { serde_json::Value::Null },
            })
        );
        summary.push(if ratio.is_finite() {
            format!(
                "{name}: {:.0} seq/s = {ratio:.1}x HF ({hf:.0} seq/s, {hf_source})",
                rate
            )
        } else {
            format!("{name}: {rate:.0} seq/s")
        });
    }
    eprintln!(
        "masking {} synthetic {}-token sequences (words of 1-3 tokens), batch {}, {} rayon threads:\n  {}",
        args.sequences,
        args.seq_len,
        args.batch,
        args.threads,
        summary.join("\n  ")
    );
    Ok(())
}

//! `cloze bench generate`: tokens/s of greedy UniLM-v2 generation with the
//! key/value cache against re-encoding source and prefix every step, on the
//! same model and inputs in one run (alternating rounds, best of two), and a
//! check that both produce the same tokens.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use cloze_eval::s2s_generate::Decoding;
use serde_json::json;

use crate::cmd::generate::{read_sources, Generator};

/// Arguments of `cloze bench generate`.
#[derive(Debug, Args)]
pub struct GenerateBenchArgs {
    /// A model directory with its tokenizer (and `[PSEUDO_MASK]`).
    #[arg(long)]
    pub model: PathBuf,
    /// Sources: JSON lines with `source`, or text lines.
    #[arg(long)]
    pub input: PathBuf,
    /// Most tokens generated per source.
    #[arg(long, default_value_t = 32)]
    pub max_len: usize,
    /// Sources decoded together.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// libtorch intra-op threads.
    #[arg(long = "torch-threads", default_value_t = 2)]
    pub torch_threads: i32,
}

/// Generated tokens (each sequence's steps, its final `[SEP]` included) per
/// second of one full pass, and the output.
fn pass(
    g: &Generator,
    sources: &[String],
    a: &GenerateBenchArgs,
    decoding: Decoding,
) -> Result<(f64, usize, Vec<Vec<u32>>)> {
    let t = Instant::now();
    let mut out = Vec::with_capacity(sources.len());
    for chunk in sources.chunks(a.batch_size) {
        out.extend(g.ids(chunk, a.max_len, decoding)?);
    }
    let secs = t.elapsed().as_secs_f64();
    let steps: usize = out.iter().map(|o| (o.len() + 1).min(a.max_len)).sum();
    Ok((steps as f64 / secs.max(1e-9), steps, out))
}

/// Runs `cloze bench generate`.
pub fn run(a: GenerateBenchArgs) -> Result<()> {
    if a.max_len == 0 || a.batch_size == 0 {
        bail!("--max-len and --batch-size must be at least 1");
    }
    tch::set_num_threads(a.torch_threads);
    let g = Generator::load(&a.model, a.max_len)?;
    let sources = read_sources(&a.input)?;
    if sources.is_empty() {
        bail!("{} holds no sources", a.input.display());
    }
    let (mut cached, mut full) = (0.0f64, 0.0f64);
    let mut steps = 0;
    for _ in 0..2 {
        let (c, n, with) = pass(&g, &sources, &a, Decoding::Cached)?;
        let (f, _, without) = pass(&g, &sources, &a, Decoding::Full)?;
        if with != without {
            bail!("the cached and the re-encoding decoders disagree: a bug, please report it");
        }
        cached = cached.max(c);
        full = full.max(f);
        steps = n;
    }
    let ratio = cached / full;
    for (what, v) in [("cached", cached), ("no_cache", full)] {
        println!(
            "{}",
            json!({"what": format!("generate_{what}_tokens_per_s"), "value": (v * 10.0).round() / 10.0,
                   "sources": sources.len(), "generated_tokens": steps, "max_len": a.max_len,
                   "batch": a.batch_size, "threads": a.torch_threads})
        );
    }
    println!(
        "{}",
        json!({"what": "generate_cache_speedup", "value": (ratio * 100.0).round() / 100.0})
    );
    eprintln!(
        "greedy generation of {} sources ({steps} tokens): {cached:.0} tokens/s with the key/value \
         cache, {full:.0} tokens/s re-encoding every step -> {ratio:.2}x (same run, best of 2, \
         identical outputs)",
        sources.len()
    );
    Ok(())
}

//! `cloze bench train`: tokens/s of a full BERT MLM training step (forward,
//! backward, clipping, AdamW), compared in the same run with HuggingFace
//! `BertForMaskedLM` and with plain PyTorch projecting only the masked positions
//! (`hf_train_bench.py`), plus useful-FLOP utilisation and peak memory. With
//! `--objective pmlm` it times UniLM-v2's pseudo-masked LM step and the MLM
//! step of the same model in one run, and reports the cost per training
//! (context) token of PMLM over MLM.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use cloze_models::Precision;
use cloze_train::bench::{StepBench, StepObjective, StepShape};
use serde_json::json;

use super::peer_value;

/// Arguments of `cloze bench train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Hidden size.
    #[arg(long, default_value_t = 256)]
    pub hidden: i64,
    /// Encoder layers.
    #[arg(long, default_value_t = 4)]
    pub layers: i64,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub heads: i64,
    /// Feed-forward width (default 4 x hidden).
    #[arg(long)]
    pub ffn: Option<i64>,
    /// Vocabulary size.
    #[arg(long, default_value_t = 30522)]
    pub vocab: i64,
    /// Sequence length.
    #[arg(long, default_value_t = 128)]
    pub seq: i64,
    /// Sequences per batch.
    #[arg(long, default_value_t = 16)]
    pub batch: i64,
    /// libtorch intra-op threads for both cloze and the peer (the global
    /// `--threads` sizes the data pipeline; this bench pins libtorch explicitly).
    #[arg(long = "torch-threads", default_value_t = 2)]
    pub torch_threads: i32,
    /// Timed steps (after two warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: u32,
    /// Python with torch and transformers: also run the HF peer in this invocation.
    #[arg(long)]
    pub peer_python: Option<PathBuf>,
    /// Precision of our step's matrix products; with `bf16` the peer runs under
    /// `torch.autocast("cpu", dtype=torch.bfloat16)` (`--bf16`) and utilisation
    /// is reported against the bf16 GEMM peak.
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// The peer script.
    #[arg(long, default_value = "../shared/peers/hf_train_bench.py")]
    pub peer_script: PathBuf,
    /// What the step trains: `mlm`, or `pmlm` (UniLM-v2's pseudo-masked LM,
    /// timed beside MLM on the same model in the same run).
    #[arg(long, value_enum, default_value_t = BenchObjective::Mlm)]
    pub objective: BenchObjective,
    /// Data parallelism on this machine: N processes (c10d over loopback),
    /// each with 1/N of `--torch-threads` and of `--batch`, against one
    /// process with all of them, in the same run; reports the allreduce
    /// time per step.
    #[arg(long, default_value_t = 1)]
    pub ranks: usize,
    /// Internal: run as one rank of `--ranks` (set by the parent).
    #[arg(long, hide = true)]
    pub rank_child: bool,
}

/// The objective `cloze bench train` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchObjective {
    /// BERT's masked LM.
    Mlm,
    /// UniLM-v2's pseudo-masked LM (AE + PAR), beside MLM.
    Pmlm,
}

/// Figures of one measurement of our step.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// Tokens (batch x seq) per second.
    pub tokens_per_s: f64,
    /// Mean seconds per step.
    pub step_s: f64,
    /// Useful floating-point operations per step.
    pub flops_per_step: f64,
    /// Trainable parameters.
    pub params: i64,
    /// Predicted positions per batch.
    pub masked: i64,
    /// Padded row length (`seq`, or longer with PMLM's appended tokens).
    pub row_len: usize,
}

/// Builds the model and times `steps` training steps in `precision`.
pub fn measure(a: &TrainArgs, precision: Precision) -> Result<TrainBench> {
    measure_objective(a, precision, StepObjective::Mlm)
}

/// [`measure`] for `objective`. Tokens/s counts the instances' tokens
/// (`batch x seq`), not the appended ones: the cost per training token.
pub fn measure_objective(
    a: &TrainArgs,
    precision: Precision,
    objective: StepObjective,
) -> Result<TrainBench> {
    let ffn = a.ffn.unwrap_or(4 * a.hidden);
    let mut bench = StepBench::with_objective(
        &StepShape {
            hidden: a.hidden,
            layers: a.layers,
            heads: a.heads,
            ffn,
            vocab: a.vocab,
            seq: a.seq,
            batch: a.batch,
        },
        precision,
        objective,
    )?;
    for _ in 0..2 {
        bench.step()?;
    }
    let t = Instant::now();
    for _ in 0..a.steps {
        bench.step()?;
    }
    let step_s = t.elapsed().as_secs_f64() / f64::from(a.steps.max(1));
    let row_len = bench.row_len();
    let (h, l, s, v, b) = (
        a.hidden as f64,
        a.layers as f64,
        row_len as f64,
        a.vocab as f64,
        a.batch as f64,
    );
    let masked = bench.num_masked();
    // Forward + backward = 3 x (2 FLOPs per multiply-add). Per token: the encoder's
    // dense layers (4h^2 attention projections + 2h*ffn), attention scores and
    // values (2*s*h per layer); per predicted position: the head transform (h^2)
    // and the tied decoder (h*V). Embedding lookups, norms and the optimiser are
    // not counted as useful FLOPs.
    let per_token = 6.0 * l * (4.0 * h * h + 2.0 * h * ffn as f64) + 6.0 * l * 2.0 * s * h;
    let per_masked = 6.0 * (h * h + h * v);
    let flops_per_step = per_token * b * s + per_masked * masked as f64;
    Ok(TrainBench {
        tokens_per_s: b * a.seq as f64 / step_s,
        row_len,
        step_s,
        flops_per_step,
        params: bench.num_params(),
        masked,
    })
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), if readable.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the peer script and returns its JSON lines.
fn run_peer(a: &TrainArgs, python: &std::path::Path) -> Result<Vec<serde_json::Value>> {
    let ffn = a.ffn.unwrap_or(4 * a.hidden);
    if ffn != 4 * a.hidden {
        anyhow::bail!("the peer script always uses ffn = 4 x hidden; drop --ffn to compare");
    }
    let args = [
        ("--steps", a.steps.to_string()),
        ("--threads", a.torch_threads.to_string()),
        ("--batch", a.batch.to_string()),
        ("--seq", a.seq.to_string()),
        ("--hidden", a.hidden.to_string()),
        ("--layers", a.layers.to_string()),
        ("--heads", a.heads.to_string()),
        ("--vocab", a.vocab.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .chain((a.precision == Precision::Bf16).then(|| "--bf16".to_string()));
    super::run_peer(python, &a.peer_script, args)
}

/// Runs `cloze bench train`.
pub fn run(a: TrainArgs) -> Result<()> {
    anyhow::ensure!(
        a.precision.trains(),
        "--precision {} is for inference; training runs in fp32 or bf16",
        a.precision
    );
    if a.rank_child {
        return super::ranks::run_rank(&a);
    }
    if a.ranks > 1 {
        return super::ranks::run(&a, a.ranks);
    }
    tch::set_num_threads(a.torch_threads);
    if a.objective == BenchObjective::Pmlm {
        return run_pmlm(&a);
    }
    let gemm = super::gemm::measure_gflops(1024, 20, a.precision);
    println!(
        "{}",
        json!({"what": format!("gemm_{}_gflops", a.precision), "value": (gemm * 10.0).round() / 10.0, "threads": a.torch_threads})
    );
    let ours = measure(&a, a.precision)?;
    let rss = peak_rss_mib();
    let util = ours.flops_per_step / ours.step_s / 1e9 / gemm;
    println!(
        "{}",
        json!({
            "what": "cloze_bert_mlm_train_tokens_per_s",
            "precision": a.precision.name(),
            "value": (ours.tokens_per_s * 10.0).round() / 10.0,
            "step_ms": (ours.step_s * 1e4).round() / 10.0,
            "params": ours.params,
            "masked_per_batch": ours.masked,
            "useful_gflop_per_step": (ours.flops_per_step / 1e8).round() / 10.0,
            "useful_flop_utilisation_vs_gemm": (util * 1000.0).round() / 1000.0,
            "peak_rss_mib": rss.map(|r| r.round()),
            "config": {"hidden": a.hidden, "layers": a.layers, "heads": a.heads, "ffn": a.ffn.unwrap_or(4 * a.hidden),
                       "vocab": a.vocab, "seq": a.seq, "batch": a.batch, "threads": a.torch_threads, "steps": a.steps},
        })
    );
    let mut summary = format!(
        "cloze ({}): {:.0} tokens/s ({:.0} ms/step), {:.0}% of the measured {:.0} GFLOP/s {} GEMM peak in useful FLOPs, peak RSS {}",
        a.precision,
        ours.tokens_per_s,
        ours.step_s * 1e3,
        util * 100.0,
        gemm,
        a.precision,
        rss.map_or_else(|| "unknown".to_owned(), |r| format!("{r:.0} MiB"))
    );
    if a.precision != Precision::Fp32 {
        // Our own fp32 step in the same run, for the speed-up of the precision.
        let fp32 = measure(&a, Precision::Fp32)?;
        let ratio = ours.tokens_per_s / fp32.tokens_per_s;
        println!(
            "{}",
            json!({"what": "cloze_bert_mlm_train_tokens_per_s", "precision": "fp32",
                   "value": (fp32.tokens_per_s * 10.0).round() / 10.0,
                   "step_ms": (fp32.step_s * 1e4).round() / 10.0})
        );
        println!(
            "{}",
            json!({"what": "precision_ratio", "precision": a.precision.name(),
                   "vs_cloze_fp32": (ratio * 100.0).round() / 100.0})
        );
        summary.push_str(&format!(
            "\ncloze (fp32): {:.0} tokens/s -> {} is {ratio:.2}x (same run)",
            fp32.tokens_per_s, a.precision
        ));
    }
    if let Some(py) = &a.peer_python {
        let lines = run_peer(&a, py)?;
        for l in &lines {
            println!("{l}");
        }
        // The peer suffixes its figures with `_bf16` under autocast.
        let suffix = match a.precision {
            Precision::Fp32 => "",
            Precision::Bf16 => "_bf16",
            // Refused at the start of `run`.
            Precision::Int8 => anyhow::bail!("int8 is not a training precision"),
        };
        let hf = peer_value(&lines, &format!("hf_bert_mlm_train_tokens_per_s{suffix}"));
        let gathered = peer_value(
            &lines,
            &format!("torch_gathered_mlm_train_tokens_per_s{suffix}"),
        );
        let r_hf = hf.map(|h| ours.tokens_per_s / h);
        let r_g = gathered.map(|g| ours.tokens_per_s / g);
        println!(
            "{}",
            json!({"what": "train_step_ratio", "vs_hf_bert_mlm": r_hf.map(|r| (r * 100.0).round() / 100.0),
                   "vs_torch_gathered": r_g.map(|r| (r * 100.0).round() / 100.0)})
        );
        if let (Some(h), Some(g), Some(rh), Some(rg)) = (hf, gathered, r_hf, r_g) {
            summary.push_str(&format!(
                "\nHF BertForMaskedLM ({p}): {h:.0} tokens/s -> cloze is {rh:.2}x; PyTorch gathered-MLM step ({p}): {g:.0} tokens/s -> cloze is {rg:.2}x (same run)",
                p = a.precision
            ));
        }
    }
    eprintln!("{summary}");
    Ok(())
}

/// `--objective pmlm`: the PMLM step and the MLM step of the same model,
/// in alternating rounds so machine noise hits both alike, and their ratio.
fn run_pmlm(a: &TrainArgs) -> Result<()> {
    let faster = |x: TrainBench, y: TrainBench| {
        if y.tokens_per_s > x.tokens_per_s {
            y
        } else {
            x
        }
    };
    let mut p = measure_objective(a, a.precision, StepObjective::Pmlm)?;
    let mut m = measure_objective(a, a.precision, StepObjective::Mlm)?;
    p = faster(p, measure_objective(a, a.precision, StepObjective::Pmlm)?);
    m = faster(m, measure_objective(a, a.precision, StepObjective::Mlm)?);
    for (name, r) in [("pmlm", &p), ("mlm", &m)] {
        println!(
            "{}",
            json!({
                "what": format!("cloze_bert_{name}_train_tokens_per_s"),
                "precision": a.precision.name(),
                "value": (r.tokens_per_s * 10.0).round() / 10.0,
                "step_ms": (r.step_s * 1e4).round() / 10.0,
                "row_len": r.row_len,
                "predicted_per_batch": r.masked,
                "config": {"hidden": a.hidden, "layers": a.layers, "heads": a.heads,
                           "vocab": a.vocab, "seq": a.seq, "batch": a.batch,
                           "threads": a.torch_threads, "steps": a.steps},
            })
        );
    }
    let cost = m.tokens_per_s / p.tokens_per_s;
    println!(
        "{}",
        json!({"what": "pmlm_cost_per_token_vs_mlm", "value": (cost * 100.0).round() / 100.0})
    );
    eprintln!(
        "PMLM ({}): {:.0} tokens/s (rows of {} for {}-token instances, {} predictions per batch); \
         MLM: {:.0} tokens/s ({} predictions) -> PMLM costs {cost:.2}x per training token \
         (same run, best of 2 alternating rounds)",
        a.precision, p.tokens_per_s, p.row_len, a.seq, p.masked, m.tokens_per_s, m.masked
    );
    Ok(())
}

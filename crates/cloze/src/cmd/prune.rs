//! `cloze prune`: one-shot pruning of a saved BERT (magnitude or SparseGPT,
//! unstructured or n:m), calibrated on prepared data, written as a plain
//! HuggingFace checkpoint whose pruned weights are zeros.
//!
//! The output holds every file of the input model directory, with the
//! weights file rewritten (`model.safetensors`, the same keys as the input);
//! transformers loads it as the dense model it was. Zeros make no dense
//! kernel faster: the gain is what a sparse runtime or compression of the
//! file can make of them, and what the quality numbers say it costs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use cloze_compress::bert::{prune_encoder, LayerReport, Method};
use cloze_compress::{Pattern, PruneConfig};
use cloze_fs::{OutputDir, OutputKind};
use cloze_models::{LinearSite, MlmInput};
use cloze_train::data::PreparedData;
use tch::{Device, Tensor};

/// Arguments of `cloze prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// A HuggingFace BERT checkpoint directory (config.json + model.safetensors
    /// or pytorch_model.bin), e.g. a pretraining run's `model/`.
    #[arg(long)]
    pub model: PathBuf,
    /// `sparsegpt` (Frantar and Alistarh 2023; needs --calibration) or
    /// `magnitude` (the smallest weights of each matrix).
    #[arg(long, value_enum, default_value_t = MethodArg::Sparsegpt)]
    pub method: MethodArg,
    /// Fraction of each linear layer's weights to remove, in (0, 1).
    /// With --pattern n:m it is n/m and need not be given.
    #[arg(long)]
    pub sparsity: Option<f64>,
    /// Semi-structured sparsity: n zeros in every m consecutive input weights
    /// of a row (`2:4`, what sparse tensor cores run).
    #[arg(long, value_name = "N:M")]
    pub pattern: Option<String>,
    /// Prepared data (`cloze data prepare` output, tokenized like the model)
    /// whose training sequences calibrate SparseGPT.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Calibration sequences (drawn with --seed from the training split).
    #[arg(long, default_value_t = 128)]
    pub samples: usize,
    /// Columns per block of SparseGPT's sweep.
    #[arg(long, default_value_t = 128)]
    pub block_size: i64,
    /// Damping added to the Hessian's diagonal, as a fraction of its mean.
    #[arg(long, default_value_t = 0.01)]
    pub damp: f64,
    /// Seed of the calibration draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory for the pruned checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an earlier `cloze prune` output in --out.
    #[arg(long)]
    pub force: bool,
}

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// SparseGPT.
    Sparsegpt,
    /// Magnitude pruning.
    Magnitude,
}

/// The pruning settings from the flags, checked.
fn prune_config(a: &PruneArgs) -> Result<PruneConfig> {
    let pattern = match &a.pattern {
        Some(p) => Pattern::parse(p)?,
        None => Pattern::Unstructured,
    };
    let sparsity = match (a.sparsity, pattern) {
        (Some(s), _) => s,
        (None, Pattern::NM { n, m }) => n as f64 / m as f64,
        (None, Pattern::Unstructured) => 0.5,
    };
    let cfg = PruneConfig {
        sparsity,
        pattern,
        block_size: a.block_size,
        damp: a.damp,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// `samples` training sequences of `data`, drawn with `seed`, as batches of
/// eight padded inputs.
pub fn calibration_batches(
    data: &PreparedData,
    samples: usize,
    seed: u64,
) -> Result<Vec<MlmInput>> {
    let n = data.train.len();
    if n == 0 {
        bail!(
            "{} has no training sequences to calibrate on",
            data.dir.display()
        );
    }
    // A seeded order (the same draw whatever the thread count).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| cloze_core::rng::mix_seed(seed, i as u64, 0x70_72_75_6e));
    order.truncate(samples.min(n));
    let pad = i64::from(data.specials.pad);
    let mut batches = Vec::new();
    for chunk in order.chunks(8) {
        let instances = chunk
            .iter()
            .map(|&i| data.train.get(i))
            .collect::<cloze_train::Result<Vec<_>>>()?;
        let len = instances.iter().map(|x| x.tokens.len()).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(chunk.len() * len);
        let mut segments = Vec::with_capacity(chunk.len() * len);
        let mut mask = Vec::with_capacity(chunk.len() * len);
        for x in &instances {
            for j in 0..len {
                ids.push(x.tokens.get(j).map_or(pad, |&t| i64::from(t)));
                segments.push(x.segment_ids.get(j).map_or(0, |&s| i64::from(s)));
                mask.push(i64::from(j < x.tokens.len()));
            }
        }
        let shape = [chunk.len() as i64, len as i64];
        batches.push(
            MlmInput::new(Tensor::from_slice(&ids).f_view(shape)?)
                .with_token_type_ids(Tensor::from_slice(&segments).f_view(shape)?)
                .with_attention_mask(Tensor::from_slice(&mask).f_view(shape)?),
        );
    }
    Ok(batches)
}

/// Writes `dir`'s files into `staging`, with the weights replaced by the
/// model's (the same keys and names as the input file).
fn write_checkpoint(input: &Path, staging: &Path, vs: &tch::nn::VarStore) -> Result<()> {
    let mut tensors = cloze_models::hf::read_weight_files(input)?;
    let vars = vs.variables();
    let mut replaced = 0;
    for (key, t) in tensors.iter_mut() {
        // Only the pruned matrices change; everything else stays byte for
        // byte as it was (a legacy name, another dtype).
        let pruned = key.contains("encoder.layer.")
            && LinearSite::ALL
                .iter()
                .any(|s| key.ends_with(&format!("{}.weight", s.hf_name())));
        if !pruned {
            continue;
        }
        // Checkpoints of an encoder alone name keys without the `bert.` prefix.
        let var = vars
            .get(key.as_str())
            .or_else(|| vars.get(&format!("bert.{key}")));
        if let Some(v) = var {
            if v.size() == t.size() {
                *t = v.f_to_kind(t.kind())?.f_contiguous()?;
                replaced += 1;
            }
        }
    }
    if replaced == 0 {
        bail!("no weight of {} matched the loaded model", input.display());
    }
    copy_model_files(input, staging, &[])?;
    cloze_models::hf::write_safetensors(&staging.join("model.safetensors"), &tensors)?;
    Ok(())
}

/// Copies the files of the model directory `input` into `staging`, except
/// the weight files and the names in `skip` (which the caller writes).
pub(crate) fn copy_model_files(input: &Path, staging: &Path, skip: &[&str]) -> Result<()> {
    for entry in std::fs::read_dir(input)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if ["model.safetensors", "pytorch_model.bin"].contains(&name_str.as_ref())
            || skip.contains(&name_str.as_ref())
        {
            continue;
        }
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), staging.join(&name))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Runs `cloze prune`.
pub fn run(a: PruneArgs) -> Result<()> {
    let cfg = prune_config(&a)?;
    let method = match a.method {
        MethodArg::Sparsegpt => Method::SparseGpt,
        MethodArg::Magnitude => Method::Magnitude,
    };
    if method == Method::SparseGpt && a.calibration.is_none() {
        bail!(
            "--method sparsegpt needs --calibration DATA (a `cloze data prepare` output made with \
             the model's tokenizer): its Hessians come from the model's inputs on real text"
        );
    }
    let mut inputs = vec![a.model.clone()];
    inputs.extend(a.calibration.iter().cloned());
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let guard = OutputDir::check(&a.out, &OutputKind::new("prune", "--force"), &refs, a.force)?;
    let model = cloze_models::load_pretrained(&a.model, Device::Cpu)
        .with_context(|| format!("loading the model in {}", a.model.display()))?;
    if cloze_models::quantized::GptqConfig::from_extra(&model.config.extra)?.is_some() {
        bail!("{} is quantised: prune the dense model", a.model.display());
    }
    let calibration = match (&a.calibration, method) {
        (Some(dir), Method::SparseGpt) => {
            let data = PreparedData::open(dir)
                .with_context(|| format!("opening the calibration data {}", dir.display()))?;
            if data.specials.vocab_size as i64 > model.config.vocab_size {
                bail!(
                    "the calibration data's tokenizer has {} ids but the model has {} embeddings: \
                     prepare it with the model's tokenizer",
                    data.specials.vocab_size,
                    model.config.vocab_size
                );
            }
            calibration_batches(&data, a.samples, a.seed)?
        }
        _ => Vec::new(),
    };
    let started = std::time::Instant::now();
    let reports = prune_encoder(
        model.model.bert(),
        &calibration,
        method,
        &cfg,
        &mut |done, total| tracing::info!("pruned layer {done}/{total}"),
    )?;
    let staging = guard.staging()?;
    write_checkpoint(&a.model, staging.path(), &model.vs)?;
    let out = guard.publish(staging)?;
    print_summary(&reports, &out, started.elapsed().as_secs_f64());
    Ok(())
}

fn print_summary(reports: &[LayerReport], out: &Path, secs: f64) {
    let zeros: i64 = reports.iter().map(|r| r.zeros).sum();
    let numel: i64 = reports.iter().map(|r| r.numel).sum();
    println!(
        "pruned {} linear layers: {zeros} of {numel} weights are zero ({:.2}%), in {secs:.1} s; \
         written to {}",
        reports.len(),
        100.0 * zeros as f64 / numel.max(1) as f64,
        out.display()
    );
}

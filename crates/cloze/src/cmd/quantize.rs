//! `cloze quantize`: GPTQ or round-to-nearest weight quantisation of a saved
//! BERT's encoder, written in the GPTQ checkpoint layout
//! (`cloze_models::quantized`): every command that loads a model
//! (`eval`, `fill-mask`, `encode`, `score`) loads the result, dequantising
//! its weights to fp32 at load time. What it buys today is the file size
//! and the measured quality of the format; no int4 kernels run yet.
//!
//! `--method int8` leaves the weights as they are and stores SmoothQuant's
//! calibration beside them ([`cloze_models::Int8Smoothing`]), which
//! `--precision int8` then applies when it packs the linears.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use cloze_compress::bert::{quantize_encoder, QuantMethod, QuantizedLayer};
use cloze_compress::QuantConfig;
use cloze_fs::{OutputDir, OutputKind};
use cloze_models::int8::SMOOTHING_FILE;
use cloze_train::data::PreparedData;
use tch::Device;

use super::prune::calibration_batches;

/// Arguments of `cloze quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// A HuggingFace BERT checkpoint directory, e.g. a pretraining run's `model/`.
    #[arg(long)]
    pub model: PathBuf,
    /// `gptq` (Frantar et al. 2023; needs --calibration), `rtn` (round to
    /// nearest), or `int8` (SmoothQuant calibration for `--precision int8`;
    /// needs --calibration).
    #[arg(long, value_enum, default_value_t = QuantMethodArg::Gptq)]
    pub method: QuantMethodArg,
    /// Bits per weight: 2, 3, 4 or 8 [default: 4; int8 is 8].
    #[arg(long)]
    pub bits: Option<i64>,
    /// `--method int8`: SmoothQuant's migration strength a in (0, 1]: input
    /// channel j is divided by max|X_j|^a / max|W_j|^(1-a) and the weight's
    /// column multiplied by it [default: 0.8].
    #[arg(long)]
    pub smooth_alpha: Option<f64>,
    /// Input columns sharing a scale and zero point.
    #[arg(long, default_value_t = 128)]
    pub group_size: i64,
    /// Prepared data (`cloze data prepare` output, tokenized like the model)
    /// whose training sequences calibrate GPTQ.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Calibration sequences (drawn with --seed from the training split).
    #[arg(long, default_value_t = 128)]
    pub samples: usize,
    /// Seed of the calibration draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory for the quantised checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an earlier `cloze quantize` output in --out.
    #[arg(long)]
    pub force: bool,
}

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantMethodArg {
    /// GPTQ.
    Gptq,
    /// Round to nearest.
    Rtn,
    /// Int8 inference calibration (SmoothQuant); weights unchanged.
    Int8,
}

/// Writes `input`'s files into `staging` with each quantised layer's
/// `weight` replaced by the GPTQ tensors and `quantization_config` added to
/// `config.json`.
fn write_checkpoint(input: &Path, staging: &Path, layers: &[QuantizedLayer]) -> Result<()> {
    let mut tensors = cloze_models::hf::read_weight_files(input)?;
    for (layer, site, q) in layers {
        let name = format!("encoder.layer.{layer}.{}", site.hf_name());
        let prefix = [format!("bert.{name}"), name]
            .into_iter()
            .find(|p| tensors.contains_key(&format!("{p}.weight")))
            .with_context(|| format!("{} has no weight for {}", input.display(), site.hf_name()))?;
        tensors.remove(&format!("{prefix}.weight"));
        for (suffix, t) in q.gptq_tensors()? {
            tensors.insert(format!("{prefix}.{suffix}"), t);
        }
    }
    let format = layers
        .first()
        .map(|(_, _, q)| q.format())
        .context("no layer was quantised")?;
    super::prune::copy_model_files(input, staging, &["config.json"])?;
    let config_path = input.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?,
    )?;
    config["quantization_config"] = format.to_json();
    std::fs::write(
        staging.join("config.json"),
        serde_json::to_string_pretty(&config)? + "\n",
    )?;
    cloze_models::hf::write_safetensors(&staging.join("model.safetensors"), &tensors)?;
    Ok(())
}

/// The default `--smooth-alpha`: the strength that measured best on
/// MiniLM's embeddings (docs/compression.md); SmoothQuant's paper uses 0.5
/// for most models and up to 0.75-0.85 for those with larger outliers.
const DEFAULT_SMOOTH_ALPHA: f64 = 0.8;

/// Opens the model for quantisation, refusing one that already is.
fn load_dense(model: &Path) -> Result<cloze_models::Pretrained<cloze_models::BertForPreTraining>> {
    let loaded = cloze_models::load_pretrained(model, Device::Cpu)
        .with_context(|| format!("loading the model in {}", model.display()))?;
    if cloze_models::quantized::GptqConfig::from_extra(&loaded.config.extra)?.is_some() {
        bail!(
            "{} is already quantised: quantise the dense model",
            model.display()
        );
    }
    Ok(loaded)
}

/// Checks the output directory against the model and calibration inputs.
fn output_guard(a: &QuantizeArgs) -> Result<OutputDir> {
    let mut inputs = vec![a.model.clone()];
    inputs.extend(a.calibration.iter().cloned());
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    Ok(OutputDir::check(
        &a.out,
        &OutputKind::new("quantize", "--force"),
        &refs,
        a.force,
    )?)
}

/// `--method int8`: the model's files unchanged plus its SmoothQuant
/// calibration.
fn run_int8(a: &QuantizeArgs) -> Result<()> {
    if let Some(bits) = a.bits.filter(|&b| b != 8) {
        bail!("--bits {bits}: --method int8 is 8 bits; use --method gptq or rtn for {bits}");
    }
    let alpha = a.smooth_alpha.unwrap_or(DEFAULT_SMOOTH_ALPHA);
    if !(alpha > 0.0 && alpha <= 1.0) {
        bail!("--smooth-alpha {alpha}: must be in (0, 1], e.g. 0.8");
    }
    let Some(dir) = &a.calibration else {
        bail!(
            "--method int8 needs --calibration DATA (a `cloze data prepare` output made with the \
             model's tokenizer): its smoothing factors come from the model's inputs on real text"
        );
    };
    let guard = output_guard(a)?;
    let model = load_dense(&a.model)?;
    let data = PreparedData::open(dir)
        .with_context(|| format!("opening the calibration data {}", dir.display()))?;
    let calibration = calibration_batches(&data, a.samples, a.seed)?;
    let started = std::time::Instant::now();
    let smoothing = cloze_compress::bert::int8_smoothing(
        model.model.bert(),
        &calibration,
        alpha,
        &mut |done, total| tracing::info!("calibrated layer {done}/{total}"),
    )?;
    let staging = guard.staging()?;
    super::prune::copy_model_files(&a.model, staging.path(), &[SMOOTHING_FILE])?;
    let tensors = cloze_models::hf::read_weight_files(&a.model)?;
    cloze_models::hf::write_safetensors(&staging.path().join("model.safetensors"), &tensors)?;
    smoothing.save(staging.path())?;
    let out = guard.publish(staging)?;
    println!(
        "calibrated {} linear inputs for int8 (SmoothQuant, alpha {alpha}, {} sequences) in {:.1} s; \
         weights unchanged; written to {} (run it with --precision int8)",
        smoothing.len(),
        calibration
            .iter()
            .map(|b| b.input_ids.size()[0])
            .sum::<i64>(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// Runs `cloze quantize`.
pub fn run(a: QuantizeArgs) -> Result<()> {
    let method = match a.method {
        QuantMethodArg::Gptq => QuantMethod::Gptq,
        QuantMethodArg::Rtn => QuantMethod::Rtn,
        QuantMethodArg::Int8 => return run_int8(&a),
    };
    if a.smooth_alpha.is_some() {
        bail!("--smooth-alpha applies to --method int8 only");
    }
    let bits = a.bits.unwrap_or(4);
    let cfg = QuantConfig {
        bits,
        group_size: a.group_size,
        ..QuantConfig::default()
    };
    cfg.validate()?;
    if ![2, 3, 4, 8].contains(&bits) {
        bail!("--bits {bits}: the GPTQ layout stores 2, 3, 4 or 8 bits per weight");
    }
    if method == QuantMethod::Gptq && a.calibration.is_none() {
        bail!(
            "--method gptq needs --calibration DATA (a `cloze data prepare` output made with the \
             model's tokenizer): its Hessians come from the model's inputs on real text"
        );
    }
    let guard = output_guard(&a)?;
    let model = load_dense(&a.model)?;
    let calibration = match (&a.calibration, method) {
        (Some(dir), QuantMethod::Gptq) => {
            let data = PreparedData::open(dir)
                .with_context(|| format!("opening the calibration data {}", dir.display()))?;
            calibration_batches(&data, a.samples, a.seed)?
        }
        _ => Vec::new(),
    };
    let started = std::time::Instant::now();
    let (_, layers) = quantize_encoder(
        model.model.bert(),
        &calibration,
        method,
        &cfg,
        &mut |done, total| tracing::info!("quantised layer {done}/{total}"),
    )?;
    let staging = guard.staging()?;
    write_checkpoint(&a.model, staging.path(), &layers)?;
    let out = guard.publish(staging)?;
    let size = |d: &Path| std::fs::metadata(d.join("model.safetensors")).map_or(0, |m| m.len());
    println!(
        "quantised {} linear layers to {} bits (groups of {}) in {:.1} s; model.safetensors {:.1} MB -> {:.1} MB; written to {}",
        layers.len(),
        bits,
        a.group_size,
        started.elapsed().as_secs_f64(),
        size(&a.model) as f64 / 1e6,
        size(&out) as f64 / 1e6,
        out.display()
    );
    Ok(())
}

//! `cloze quantize`: GPTQ or round-to-nearest weight quantisation of a saved
//! BERT's encoder, written in the GPTQ checkpoint layout
//! (`cloze_models::quantized`): every command that loads a model
//! (`eval`, `fill-mask`, `encode`, `score`) loads the result, dequantising
//! its weights to fp32 at load time. What it buys today is the file size
//! and the measured quality of the format; no int8/int4 kernels run yet.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use cloze_compress::bert::{quantize_encoder, QuantMethod, QuantizedLayer};
use cloze_compress::QuantConfig;
use cloze_fs::{OutputDir, OutputKind};
use cloze_train::data::PreparedData;
use tch::Device;

use super::prune::calibration_batches;

/// Arguments of `cloze quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// A HuggingFace BERT checkpoint directory, e.g. a pretraining run's `model/`.
    #[arg(long)]
    pub model: PathBuf,
    /// `gptq` (Frantar et al. 2023; needs --calibration) or `rtn` (round to nearest).
    #[arg(long, value_enum, default_value_t = QuantMethodArg::Gptq)]
    pub method: QuantMethodArg,
    /// Bits per weight: 2, 3, 4 or 8.
    #[arg(long, default_value_t = 4)]
    pub bits: i64,
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

/// Runs `cloze quantize`.
pub fn run(a: QuantizeArgs) -> Result<()> {
    let cfg = QuantConfig {
        bits: a.bits,
        group_size: a.group_size,
        ..QuantConfig::default()
    };
    cfg.validate()?;
    if ![2, 3, 4, 8].contains(&a.bits) {
        bail!(
            "--bits {}: the GPTQ layout stores 2, 3, 4 or 8 bits per weight",
            a.bits
        );
    }
    let method = match a.method {
        QuantMethodArg::Gptq => QuantMethod::Gptq,
        QuantMethodArg::Rtn => QuantMethod::Rtn,
    };
    if method == QuantMethod::Gptq && a.calibration.is_none() {
        bail!(
            "--method gptq needs --calibration DATA (a `cloze data prepare` output made with the \
             model's tokenizer): its Hessians come from the model's inputs on real text"
        );
    }
    let mut inputs = vec![a.model.clone()];
    inputs.extend(a.calibration.iter().cloned());
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let guard = OutputDir::check(
        &a.out,
        &OutputKind::new("quantize", "--force"),
        &refs,
        a.force,
    )?;
    let model = cloze_models::load_pretrained(&a.model, Device::Cpu)
        .with_context(|| format!("loading the model in {}", a.model.display()))?;
    if cloze_models::quantized::GptqConfig::from_extra(&model.config.extra)?.is_some() {
        bail!(
            "{} is already quantised: quantise the dense model",
            a.model.display()
        );
    }
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
        a.bits,
        a.group_size,
        started.elapsed().as_secs_f64(),
        size(&a.model) as f64 / 1e6,
        size(&out) as f64 / 1e6,
        out.display()
    );
    Ok(())
}

//! `cloze predict`: the labels a fine-tuned classifier gives new inputs, as
//! JSON lines. The model directory is a `cloze finetune` RUN/model (or any
//! HF `BertForSequenceClassification`/`BertForTokenClassification` with a
//! `tokenizer.json` or BERT `vocab.txt`); its kind and label names come from
//! its `config.json`.
//! Inputs are the formats `cloze finetune` reads, labels optional.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cloze_eval::finetune_data;
use cloze_eval::ModelTokenizer;
use cloze_train::finetune::{predict, Classifier, TaskKind};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

/// Arguments of `cloze predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A fine-tuned model directory (`cloze finetune`'s RUN/model).
    #[arg(long)]
    pub model: PathBuf,
    /// Inputs: for sequence models JSONL (`{"text", "text_pair"?}`) or TSV
    /// with a header; for token models JSONL (`{"tokens": [...]}`) or one
    /// token per line with blank lines between sentences.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the JSON lines (default: standard output).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Longest input in tokens, special tokens included (default: the
    /// length the model was fine-tuned with, `model_max_length` in its
    /// `tokenizer_config.json`, which `cloze finetune` writes; else the
    /// model's position embeddings, at most 512). Longer inputs are cut; a
    /// word cut off gets the label `null`.
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Inference precision: fp32, bf16 (weights cast to bfloat16 once at load),
    /// or int8 (linear layers on libtorch's dynamic int8 kernel, CPU only;
    /// probabilities still computed in fp32).
    #[arg(long, default_value_t = cloze_models::Precision::Fp32)]
    pub precision: cloze_models::Precision,
}

/// Runs `cloze predict`.
pub fn run(a: PredictArgs) -> Result<()> {
    let mut model = Classifier::load(&a.model, tch::Device::Cpu)?;
    super::fill_mask::check_inference_precision(a.precision, tch::Device::Cpu)?;
    let smoothing = super::fill_mask::inference_smoothing(&a.model, a.precision)?;
    let packed = model.prepare_inference(a.precision, smoothing.as_ref())?;
    tracing::info!(precision = %a.precision, packed, "weights ready");
    let labels = model.labels()?;
    let max_len = match a.max_length {
        Some(n) => n,
        None => super::finetune::recorded_max_length(&a.model, model.max_positions())?
            .unwrap_or(model.max_positions().min(512)),
    };
    let tok = ModelTokenizer::from_dir(&a.model, max_len)?;
    let lines: Vec<Value> = match model.kind() {
        // A classifier is never a seq2seq model (`Classifier` refuses that kind).
        TaskKind::Link => anyhow::bail!(
            "{} is a link-prediction model: use `cloze kg predict`",
            a.model.display()
        ),
        TaskKind::Dialogue => anyhow::bail!(
            "{} is a dialogue model: use `cloze chat` or `cloze dialogue eval`",
            a.model.display()
        ),
        TaskKind::Seq2seq => anyhow::bail!(
            "{} is a generation model: use `cloze generate`",
            a.model.display()
        ),
        TaskKind::Sequence => {
            let ex = finetune_data::read_seq_examples(&a.input, false)?;
            let enc = finetune_data::encode_seq(&tok, &ex, None, max_len)?;
            let probs = batched(&model, &enc, tok.pad, a.batch_size)?;
            ex.iter()
                .zip(probs)
                .map(|(e, p)| {
                    let p: Vec<f32> = Vec::try_from(p)?;
                    let (best, score) = arg_max(&p);
                    let mut v = json!({
                        "text": e.text,
                        "label": labels.get(best),
                        "score": score,
                        "probabilities": labels.iter().zip(&p).map(|(l, q)| (l.clone(), json!(q))).collect::<serde_json::Map<_, _>>(),
                    });
                    if let Some(pair) = &e.text_pair {
                        v["text_pair"] = json!(pair);
                    }
                    Ok(v)
                })
                .collect::<Result<_>>()?
        }
        TaskKind::Token => {
            let ex = finetune_data::read_tag_examples(&a.input, false)?;
            let enc = finetune_data::encode_tags(&tok, &ex, None, max_len)?;
            let (examples, words): (Vec<_>, Vec<_>) = enc.into_iter().unzip();
            let probs = batched(&model, &examples, tok.pad, a.batch_size)?;
            ex.iter()
                .zip(words)
                .zip(probs)
                .map(|((e, w), p)| {
                    let rows: Vec<Vec<f32>> = Vec::try_from(p)?;
                    let tags: Vec<Value> =
                        w.0.iter()
                            .map(|pos| match pos.and_then(|i| rows.get(i)) {
                                Some(row) => json!(labels.get(arg_max(row).0)),
                                None => Value::Null,
                            })
                            .collect();
                    Ok(json!({ "tokens": e.words, "labels": tags }))
                })
                .collect::<Result<_>>()?
        }
    };
    let mut text = String::new();
    for v in &lines {
        text.push_str(&v.to_string());
        text.push('\n');
    }
    match &a.output {
        Some(p) => {
            if p.exists() && std::fs::canonicalize(p)? == std::fs::canonicalize(&a.input)? {
                anyhow::bail!("--output {} is the --input file", p.display());
            }
            // A temporary beside the file, renamed over it: an interrupted
            // run leaves the earlier file whole.
            cloze_models::hf::write_atomic(p, text.as_bytes())
                .with_context(|| format!("writing {}", p.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(())
}

/// [`predict`] in chunks, with a progress bar over the inputs.
fn batched(
    model: &Classifier,
    examples: &[finetune_data::EncodedExample],
    pad: u32,
    batch_size: usize,
) -> Result<Vec<tch::Tensor>> {
    let bar = ProgressBar::new(examples.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} inputs  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(1024) {
        out.extend(predict(model, chunk, pad, batch_size, tch::Device::Cpu)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Index and value of the largest entry (the first on ties).
fn arg_max(p: &[f32]) -> (usize, f32) {
    p.iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, q)| {
            if q > best.1 {
                (i, q)
            } else {
                best
            }
        })
}

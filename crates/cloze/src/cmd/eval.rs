//! `cloze eval`: held-out masked-LM metrics of a saved model on prepared data,
//! on the same fixed masks as during training, next to the unigram baseline;
//! optionally with fill-mask examples. `--precision bf16` runs the model with its
//! weights cast to bf16; the metrics are computed from fp32 logits either way.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_core::Report;
use cloze_eval::mlm_eval::guesses_at_targets;
use cloze_models::Precision;
use cloze_train::config::TrainConfig;
use cloze_train::data::{self, PreparedData};
use cloze_train::trainer::EvalModel;
use cloze_train::{BertPretrainer, HeldOut};

/// Arguments of `cloze eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A model directory in HF format (e.g. RUN_DIR/model).
    #[arg(long)]
    pub model: PathBuf,
    /// Prepared data directory whose held-out split is scored.
    #[arg(long)]
    pub data: PathBuf,
    /// Config whose `[masking]` and `[eval]` sections define the masks (default:
    /// the run's config.toml next to the model, else the bert-tiny preset).
    #[arg(long)]
    pub config: Option<String>,
    /// Also print this many fill-mask examples from the held-out split.
    #[arg(long, default_value_t = 0)]
    pub examples: usize,
    /// Print the metrics as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit with an error unless the model's accuracy exceeds the unigram baseline's.
    #[arg(long)]
    pub fail_below_baseline: bool,
    /// Inference precision: fp32, bf16 (weights cast to bfloat16 once at load),
    /// or int8 (linear layers on libtorch's dynamic int8 kernel, CPU only;
    /// losses and accuracies still computed from fp32 logits).
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

/// What the held-out MLM task reported, in words: masked-token accuracy
/// against the unigram baseline on the same masks, the same at the positions
/// shown as `[MASK]`, then every other value the task reported (a
/// sentence-pair accuracy, an objective's own metrics) by name.
pub fn summary_line(r: &Report) -> String {
    let mut s = String::new();
    let mut shown_losses = vec!["mlm"];
    let mut shown_accuracies = vec!["mlm"];
    if let (Some(&acc), Some(&loss)) = (r.accuracies.get("mlm"), r.losses.get("mlm")) {
        s = format!(
            "held-out masked-token accuracy {:.1}% on {} masked positions (loss {:.3}, perplexity {:.1})",
            acc * 100.0,
            r.counts.get("mlm").copied().unwrap_or(0),
            loss,
            loss.exp()
        );
        if let Some(&b) = r.accuracies.get("unigram") {
            shown_accuracies.push("unigram");
            let verdict = if acc > b { "beats" } else { "does NOT beat" };
            s.push_str(&format!(
                "; unigram-frequency baseline on the same masks {:.1}%: the model {verdict} it by {:+.1} points",
                b * 100.0,
                (acc - b) * 100.0
            ));
            if b > 0.0 {
                s.push_str(&format!(" ({:.1}x)", acc / b));
            }
        }
    }
    if let (Some(&a), Some(&b)) = (
        r.accuracies.get("mlm@mask"),
        r.accuracies.get("unigram@mask"),
    ) {
        shown_accuracies.extend(["mlm@mask", "unigram@mask"]);
        s.push_str(&format!(
            "\n  at the {} positions shown as [MASK] (the token hidden, so only context can tell): {:.1}% vs the baseline's {:.1}%",
            r.counts.get("mlm@mask").copied().unwrap_or(0),
            a * 100.0,
            b * 100.0
        ));
        if let (Some(&l), Some(&bl)) = (r.losses.get("mlm@mask"), r.losses.get("unigram@mask")) {
            shown_losses.extend(["mlm@mask", "unigram@mask"]);
            s.push_str(&format!(
                "; cross-entropy there {l:.3} nats vs {bl:.3} for the unigram distribution ({:+.3}: {})",
                l - bl,
                if l < bl {
                    "the model draws on context"
                } else {
                    "no gain from context yet"
                }
            ));
        }
    }
    let rest = Report {
        losses: r
            .losses
            .iter()
            .filter(|(k, _)| !shown_losses.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        accuracies: r
            .accuracies
            .iter()
            .filter(|(k, _)| !shown_accuracies.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        counts: Default::default(),
    };
    if !rest.is_empty() {
        if !s.is_empty() {
            s.push_str("; ");
        }
        s.push_str(&rest.summary());
    }
    s
}

fn default_config(model: &Path) -> Result<TrainConfig> {
    let run_cfg = model.parent().map(cloze_train::trainer::config_path);
    match run_cfg {
        Some(p) if p.exists() => Ok(TrainConfig::load(&p)?),
        _ => TrainConfig::preset("bert-tiny").context("the bert-tiny preset does not parse"),
    }
}

/// Prints fill-mask examples: the masked held-out text and the model's top guesses.
fn examples(
    model: &BertPretrainer,
    data: &PreparedData,
    cfg: &TrainConfig,
    model_dir: &Path,
    n: usize,
) -> Result<()> {
    let Some(eval) = &data.eval else {
        return Ok(());
    };
    let tok = cloze_text::tokenizer::TextTokenizer::from_path(model_dir)
        .with_context(|| format!("loading the tokenizer of {}", model_dir.display()))?;
    let masker = data.masker(cfg)?;
    let n = n.min(eval.len());
    let inst = (0..n).map(|i| eval.get(i)).collect::<Result<Vec<_>, _>>()?;
    let batch = masker.mask_batch(&inst, cfg.eval.mask_seed, 0, 0)?;
    let eval_model = EvalModel {
        model,
        device: tch::Device::Cpu,
    };
    let guesses = guesses_at_targets(&eval_model, &batch, 3)?;
    let word = |id: u32| tok.id_to_token(id).unwrap_or_else(|| format!("#{id}"));
    println!("fill-mask examples (held-out text, fixed evaluation masks):");
    for row in 0..batch.batch_size {
        let ids: Vec<u32> = batch
            .row(row)
            .iter()
            .zip(&batch.attention_mask[row * batch.seq_len..(row + 1) * batch.seq_len])
            .filter(|(_, &m)| m != 0)
            .map(|(&t, _)| t as u32)
            .collect();
        let text = tok.decode(&ids).unwrap_or_default();
        println!("  {}", text.chars().take(160).collect::<String>());
        for g in guesses.iter().filter(|g| g.target.row as usize == row) {
            let shown: Vec<String> = g
                .guesses
                .iter()
                .map(|c| format!("{} {:.0}%", word(c.token_id), c.probability * 100.0))
                .collect();
            let right = g
                .guesses
                .first()
                .is_some_and(|c| c.token_id == g.target.target);
            println!(
                "    {} pos {:>3}: truth {:<14} model: {}",
                if right { "ok" } else { "  " },
                g.target.pos,
                word(g.target.target),
                shown.join(", ")
            );
        }
    }
    Ok(())
}

/// Refuses a `--data` path that is not `cloze data prepare` output before anything
/// else is read, saying how to make one (and, for a run directory, which data it used).
fn check_data_dir(dir: &Path) -> Result<()> {
    let shown = dir.display();
    if dir.join(cloze_text::shards::MANIFEST).is_file() {
        return Ok(());
    }
    if !dir.exists() {
        bail!(
            "--data {shown} does not exist; prepare it with \
             `cloze data prepare --corpus CORPUS --tokenizer TOKENIZER --out {shown}`"
        );
    }
    // A run directory instead of its data is the likely mix-up: name the data.
    let hint = match cloze_train::data::read_record(&dir.join("model")) {
        Ok(Some(rec)) => format!(
            "; it looks like a pretraining run, whose data is {}",
            rec.data_dir.display()
        ),
        _ => String::new(),
    };
    bail!(
        "{shown} is not a `cloze data prepare` output (no {}); prepare it with \
         `cloze data prepare ... --out {shown}`{hint}",
        cloze_text::shards::MANIFEST
    )
}

/// Runs `cloze eval`.
pub fn run(a: EvalArgs) -> Result<()> {
    check_data_dir(&a.data)?;
    super::fill_mask::check_model_dir(&a.model, a.examples > 0)?;
    let cfg = match &a.config {
        Some(spec) => TrainConfig::load_or_preset(spec)?,
        None => default_config(&a.model)?,
    };
    let data = PreparedData::open(&a.data)?;
    data::check_model_matches(&a.model, &data)?;
    // The loader refuses NaN or infinite weights, naming the tensor.
    let mut model = BertPretrainer::load(&a.model, tch::Device::Cpu)
        .with_context(|| format!("loading the model in {}", a.model.display()))?;
    // Cast once for inference; `model.precision` (the training autocast) stays
    // fp32, and the blocks follow the weights' type.
    super::fill_mask::cast_for_inference(
        &a.model,
        &mut model.vs,
        &mut model.model,
        a.precision,
        tch::Device::Cpu,
    )?;
    if model.config.vocab_size != i64::from(data.specials.vocab_size) {
        anyhow::bail!(
            "the model has {} vocabulary rows but {} was prepared with a {}-token vocabulary",
            model.config.vocab_size,
            a.data.display(),
            data.specials.vocab_size
        );
    }
    let set = data
        .eval_set(&cfg)?
        .with_context(|| format!("{} has no held-out split to evaluate on", a.data.display()))?;
    let report = set.evaluate(&model, tch::Device::Cpu)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", summary_line(&report));
    }
    if a.examples > 0 {
        examples(&model, &data, &cfg, &a.model, a.examples)?;
    }
    if a.fail_below_baseline {
        let acc = report.accuracies.get("mlm").copied().unwrap_or(0.0);
        match report.accuracies.get("unigram").copied() {
            Some(b) if acc > b => {}
            Some(b) => anyhow::bail!(
                "masked-token accuracy {:.1}% does not beat the unigram baseline {:.1}%",
                acc * 100.0,
                b * 100.0
            ),
            None => anyhow::bail!("no unigram baseline could be computed for this data"),
        }
    }
    Ok(())
}

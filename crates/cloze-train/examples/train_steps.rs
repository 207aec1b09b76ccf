//! Downstream use of `cloze-train` alone: pretrain a tiny BERT for a few steps
//! on instances you built yourself, with masking from a TOML scheme, a
//! held-out set scored along the way, checkpoints and `metrics.jsonl` in a run
//! directory.
//!
//! ```text
//! cargo run -p cloze-train --example train_steps [RUN_DIR]
//! ```
//!
//! The data is synthetic (ids of a made-up vocabulary where each row counts
//! up by a fixed step), so the model has something to learn in 80 steps; with
//! real text, `cloze data prepare` writes shards and
//! `cloze_train::data::PreparedData` reads them.

use cloze_core::{Instance, NO_WORD};
use cloze_mask::{Masker, MaskingConfig, Vocab};
use cloze_train::bert::{bert_config, BertPretrainer};
use cloze_train::data::{build_eval_set, MaskedSource};
use cloze_train::trainer::{Observer, RunOutcome, Trainer};
use cloze_train::{HeldOut, TrainConfig};

/// Prints what the trainer reports.
struct Print;

impl Observer for Print {
    fn on_log(&mut self, m: &cloze_train::metrics::TrainMetrics) {
        println!("step {:>3}  train {}", m.step, m.report.summary());
    }
    fn on_eval(&mut self, step: u64, r: &cloze_core::Report) {
        println!("step {step:>3}  held-out {}", r.summary());
    }
}

/// Row `i`: `[CLS] a a+k a+2k ... [SEP]` over ids 5..45.
fn instance(i: usize) -> Instance {
    let (start, step) = (i % 40, i % 3 + 1);
    let mut tokens = vec![2];
    tokens.extend((0..14).map(|p| 5 + ((start + step * p) % 40) as u32));
    tokens.push(3);
    let n = tokens.len();
    Instance {
        segment_ids: vec![0; n],
        word_ids: vec![NO_WORD; n],
        tokens,
        pair_label: None,
    }
}

fn main() -> anyhow::Result<()> {
    let keep = std::env::args().nth(1);
    let tmp = tempfile::tempdir()?;
    let run_dir = keep.map_or_else(|| tmp.path().join("run"), std::path::PathBuf::from);

    // A vocabulary of the five specials and 40 made-up tokens.
    let names = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let tokens: Vec<String> = names
        .iter()
        .map(|t| t.to_string())
        .chain((0..40).map(|i| format!("w{i}")))
        .collect();
    let vocab_size = tokens.len() as u32;
    let specials = Vocab::from_tokens(tokens).special_tokens()?;

    // The bert-tiny preset, shrunk so the example runs in seconds.
    let cfg = TrainConfig::load_or_preset("bert-tiny")?.with_overrides(&[
        "model.hidden_size=64".into(),
        "model.intermediate_size=128".into(),
        "model.num_attention_heads=2".into(),
        "model.num_hidden_layers=2".into(),
        "run.max_steps=80".into(),
        "run.log_every=20".into(),
        "run.threads=1".into(),
        "data.batch_size=16".into(),
        "eval.every_steps=40".into(),
        "checkpoint.every_steps=40".into(),
        "optimizer.lr=5e-3".into(),
        "schedule.warmup_steps=3".into(),
    ])?;
    tch::set_num_threads(1);
    let masking = MaskingConfig::from_toml_str(
        r#"
        units = { type = "tokens" }
        select = { type = "budget", rate = 0.15 }
        corrupt = { type = "bert", mask = 0.8, random = 0.1, keep = 0.1, per = "token" }
        schedule = { type = "dynamic" }
        collate = { pad_to = { type = "batch_max" } }
        "#,
    )?;
    let masker = Masker::new(masking, specials.clone())?;
    let train: Vec<Instance> = (0..400).map(instance).collect();
    let held_out: Vec<Instance> = (1000..1064).map(instance).collect();
    let eval = build_eval_set(&held_out, &masker, 1234, 64, 16, None, "pair")?;
    let source = MaskedSource::new(train, masker, cfg.run.seed);

    let model = BertPretrainer::new_masked_lm(
        bert_config(&cfg.model, vocab_size, specials.pad),
        cfg.run.seed,
        &cfg.init,
        tch::Device::Cpu,
    )?;
    let mut trainer = Trainer::new(cfg, &model, &model.vs, &run_dir)?;
    match trainer.run(&source, Some(&eval as &dyn HeldOut), &mut Print)? {
        RunOutcome::Finished { checkpoint, .. } | RunOutcome::EarlyStopped { checkpoint, .. } => {
            println!("final checkpoint: {}", checkpoint.display());
        }
        RunOutcome::Interrupted { step, .. } => println!("stopped at step {step}"),
    }
    Ok(())
}

//! `cloze pretrain` with a CugLM objective (`cuglm`, `cuglm_complete`): the
//! data is a `cloze data code` directory instead of prepared shards, the
//! model is [`CodePretrainer`] (BERT with the MLM, pair and token-category
//! heads), the rows come from `cloze_mask::CodeBuilder`. Everything the
//! command promises about the run directory (checks, one writer, Ctrl-C,
//! `--resume`) is `cloze pretrain`'s own: this module starts after the
//! settings are read and the run directory is checked.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cloze_fs::{DirLock, OutputDir};
use cloze_mask::{CodeBuilder, CodeConfig};
use cloze_train::code::{CodeEval, CodeLoss, CodePretrainer, CodeSource};
use cloze_train::config::TrainConfig;
use cloze_train::trainer::{RunOutcome, Trainer};

use crate::cmd::code_data::CodeData;
use crate::cmd::interrupt::{self, Interrupted};
use crate::cmd::pretrain::{resumed_model_config, start_run_dir, PretrainArgs};
use crate::cmd::run_dir::{shell_word, Driver};

/// The objective of completion fine-tuning: its model predicts type-then-token.
pub const COMPLETE: &str = "cuglm_complete";

/// Whether `cfg` trains a code model (and so runs here).
pub fn is_code(cfg: &TrainConfig) -> bool {
    cfg.objective.kind.starts_with("cuglm")
}

/// Held-out rows: the valid split's examples, at most `max_examples` of
/// them spread evenly, under the eval seed.
fn held_out(data: &CodeData, code: CodeConfig, cfg: &TrainConfig) -> Result<Option<CodeEval>> {
    let files = data.split("valid")?;
    if files.len() < 2 && code.ncp {
        tracing::warn!("the valid split has fewer than two files: no held-out evaluation");
        return Ok(None);
    }
    let builder = CodeBuilder::new(code, data.specials.clone(), files)?;
    Ok(Some(CodeEval::new(
        &builder,
        CodeLoss::from_config(&cfg.objective),
        cfg.eval.mask_seed,
        cfg.eval.batch_size,
        cfg.eval.max_examples,
    )))
}

/// Runs a checked code pretraining (or completion fine-tuning) run.
pub fn run(
    a: &PretrainArgs,
    cfg: TrainConfig,
    resuming: bool,
    run_dir: &Path,
    out_guard: Option<OutputDir>,
    mut run_lock: Option<DirLock>,
) -> Result<()> {
    let Some(code) = cfg.code else {
        bail!("objective {:?} needs a [code] section", cfg.objective.kind);
    };
    tch::set_num_threads(cfg.run.threads);
    let data = CodeData::open(&cfg.data.dir)?;
    let train = data.split("train")?;
    let builder = CodeBuilder::new(code, data.specials.clone(), train)
        .with_context(|| format!("laying out {}", data.dir.display()))?;
    if builder.is_empty() {
        bail!("{} has no training code", data.dir.display());
    }
    let eval = held_out(&data, code, &cfg)?;
    let typed = cfg.objective.kind == COMPLETE;
    let device = tch::Device::Cpu;
    let categories = data.num_categories();
    let mut model = match (&cfg.init.from, resuming) {
        (_, true) => CodePretrainer::new(resumed_model_config(a, run_dir)?, 0, device)?,
        (Some(dir), false) => {
            let m = CodePretrainer::load(dir, device)
                .with_context(|| format!("starting from {}", dir.display()))?;
            if m.config.code_category_size != Some(categories) {
                bail!(
                    "{} has {:?} token categories, the data {categories}",
                    dir.display(),
                    m.config.code_category_size
                );
            }
            m
        }
        (None, false) => {
            let mut bc = cloze_train::bert::bert_config(
                &cfg.model,
                data.specials.vocab_size,
                data.specials.pad,
            );
            bc.code_category_size = Some(categories);
            let m = CodePretrainer::new(bc, cfg.run.seed, device)?;
            if let Some(heads) = cfg.init.offset_heads() {
                m.model.bert().init_offset_heads(&heads)?;
            }
            m
        }
    }
    .with_typed(typed);
    if model.config.vocab_size != i64::from(data.specials.vocab_size) {
        bail!(
            "the model has {} word embeddings but the data's code tokenizer has {} ids: \
             prepare the data with the model's tokenizer",
            model.config.vocab_size,
            data.specials.vocab_size
        );
    }
    model.precision = cfg.run.precision;
    tracing::info!(
        train_examples = builder.len(),
        train_files = builder.files().len(),
        typed,
        "code data ready"
    );
    let source = CodeSource::new(builder, cfg.run.seed);

    if let Some(guard) = &out_guard {
        run_lock = Some(start_run_dir(guard, run_dir)?);
    }
    let stop = interrupt::install("writing a checkpoint after the current step, then stopping")?;
    let mut trainer = if resuming {
        match &a.from_checkpoint {
            Some(spec) => {
                let dir = cloze_train::checkpoint::resolve(run_dir, spec)?;
                Trainer::resume_from(cfg.clone(), &model, &model.vs, run_dir, &dir)?
            }
            None => Trainer::resume(cfg.clone(), &model, &model.vs, run_dir)?,
        }
    } else {
        Trainer::new(cfg.clone(), &model, &model.vs, run_dir)?
    };
    let mut obs = Driver::new(cfg.run.max_steps, trainer.state().step, stop);
    let outcome = trainer.run(
        &source,
        eval.as_ref().map(|e| e as &dyn cloze_train::HeldOut),
        &mut obs,
    );
    obs.bar.finish_and_clear();
    let result = match outcome? {
        RunOutcome::Interrupted { checkpoint, step } => Err(anyhow::Error::new(Interrupted(
            format!(
                "interrupted at step {step}; checkpoint {}\ncontinue with: cloze pretrain --resume {}",
                checkpoint.display(),
                shell_word(run_dir)
            ),
        ))),
        RunOutcome::EarlyStopped { .. } | RunOutcome::Finished { .. } => {
            let model_dir = run_dir.join("model");
            cloze_train::PretrainModel::save(&model, &model_dir)?;
            data.export_with(&model_dir, code.max_len, typed)?;
            println!(
                "trained {} steps; model (HuggingFace format, with the code tokenizer): {}",
                trainer.state().step,
                model_dir.display()
            );
            Ok(())
        }
    };
    drop(run_lock);
    drop(out_guard);
    result
}

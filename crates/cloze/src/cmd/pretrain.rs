//! `cloze pretrain`: pretrain a BERT from a config preset on prepared shards,
//! with a progress bar, Ctrl-C checkpointing and `--resume`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_eval::mlm_eval::MlmEvalMetrics;
use cloze_train::config::{ObjectiveKind, TrainConfig};
use cloze_train::data::{self, PreparedData};
use cloze_train::metrics::TrainMetrics;
use cloze_train::trainer::{config_path, Observer, RunOutcome, Trainer};
use cloze_train::BertPretrainer;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `cloze pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// A config file, or a preset name: bert-tiny, bert-mini, bert-small, bert-base.
    #[arg(long, default_value = "bert-tiny")]
    pub config: String,
    /// Prepared data directory (`cloze data prepare` output); overrides `data.dir`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run directory (config, metrics, checkpoints, final model).
    #[arg(long, default_value = "runs/pretrain")]
    pub out: PathBuf,
    /// Continue the run in this directory from its newest checkpoint (its saved config is used).
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Override any config value: `--set optimizer.lr=3e-4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Shorthand for `--set run.max_steps=N`.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Shorthand for `--set optimizer.lr=X`.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Shorthand for `--set data.batch_size=N`.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Shorthand for `--set run.seed=N`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Replace an existing run directory instead of refusing to.
    #[arg(long)]
    pub force: bool,
}

/// Progress bar, metrics echo and the Ctrl-C flag.
struct Driver {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    last_eval: Option<MlmEvalMetrics>,
}

impl Observer for Driver {
    fn on_step(&mut self, step: u64, _max: u64, loss: f64, lr: f64, tokens_per_s: f64) {
        self.bar.set_position(step);
        self.bar.set_message(format!(
            "loss {loss:.3}  lr {lr:.2e}  {tokens_per_s:.0} tok/s"
        ));
    }
    fn on_log(&mut self, m: &TrainMetrics) {
        tracing::debug!(
            step = m.step,
            loss = m.loss,
            tokens_per_s = m.tokens_per_s,
            "window"
        );
    }
    fn on_eval(&mut self, step: u64, m: &MlmEvalMetrics) {
        let base = m
            .unigram_baseline_accuracy
            .map(|b| format!(" (unigram baseline {:.1}%)", b * 100.0))
            .unwrap_or_default();
        let pair = m
            .pair_accuracy
            .map(|p| format!(", pair accuracy {:.1}%", p * 100.0))
            .unwrap_or_default();
        self.bar.println(format!(
            "step {step:>6}  eval loss {:.3}  ppl {:.1}  masked accuracy {:.1}%{base}{pair}",
            m.mlm_loss,
            m.perplexity,
            m.accuracy * 100.0
        ));
        self.last_eval = Some(m.clone());
    }
    fn on_checkpoint(&mut self, step: u64, dir: &Path) {
        tracing::info!(step, dir = %dir.display(), "checkpoint");
    }
    fn should_stop(&mut self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Installs the Ctrl-C handler: the first press asks the trainer to checkpoint
/// and stop between steps; a second press exits at once (checkpoint writes are
/// atomic, so the previous checkpoint survives even that).
fn install_ctrlc() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let presses = Arc::new(AtomicU32::new(0));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("\ninterrupt: writing a checkpoint after the current step (press Ctrl-C again to quit now)");
            flag.store(true, Ordering::SeqCst);
        } else {
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

/// Resolves the effective configuration from the arguments.
fn effective_config(a: &PretrainArgs, base: TrainConfig) -> Result<TrainConfig> {
    let mut overrides = a.overrides.clone();
    if let Some(n) = a.max_steps {
        overrides.push(format!("run.max_steps={n}"));
    }
    if let Some(x) = a.lr {
        overrides.push(format!("optimizer.lr={x:e}"));
    }
    if let Some(n) = a.batch_size {
        overrides.push(format!("data.batch_size={n}"));
    }
    if let Some(n) = a.seed {
        overrides.push(format!("run.seed={n}"));
    }
    let mut cfg = base.with_overrides(&overrides)?;
    if let Some(d) = &a.data {
        cfg.data.dir = d.clone();
    }
    if cfg.data.dir.as_os_str().is_empty() {
        bail!("no data: pass --data DIR (a `cloze data prepare` output) or set data.dir in the config");
    }
    cfg.data.dir = std::fs::canonicalize(&cfg.data.dir)
        .with_context(|| format!("data directory {}", cfg.data.dir.display()))?;
    Ok(cfg)
}

/// Runs `cloze pretrain`.
pub fn run(a: PretrainArgs) -> Result<()> {
    let resuming = a.resume.is_some();
    let run_dir = a.resume.clone().unwrap_or_else(|| a.out.clone());
    let base = if resuming {
        TrainConfig::load(&config_path(&run_dir)).context("reading the run's saved config.toml")?
    } else {
        TrainConfig::load_or_preset(&a.config)?
    };
    let cfg = effective_config(&a, base)?;
    if !resuming && run_dir.join("checkpoints").exists() {
        if !a.force {
            bail!(
                "{} already holds a run: continue it with `--resume {}`, or pass --force to start over",
                run_dir.display(),
                run_dir.display()
            );
        }
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("removing {}", run_dir.display()))?;
    }
    tch::set_num_threads(cfg.run.threads);
    let data = PreparedData::open(&cfg.data.dir)?;
    if resuming {
        data::check_model_matches(&run_dir, &data)?;
    }
    let pair_head = cfg.objective.kind != ObjectiveKind::Mlm;
    let bert_cfg =
        cloze_train::bert::bert_config(&cfg.model, data.specials.vocab_size, data.specials.pad);
    let model = BertPretrainer::new(
        bert_cfg,
        pair_head,
        cfg.run.seed,
        &cfg.init,
        tch::Device::Cpu,
    )?;
    let source = data.train_source(&cfg)?;
    let eval = data.eval_set(&cfg)?;
    tracing::info!(
        train_examples = source.len(),
        eval_batches = eval.as_ref().map_or(0, |e| e.batches.len()),
        params = model
            .vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum::<usize>(),
        "data ready"
    );
    let mut trainer = if resuming {
        Trainer::resume(cfg.clone(), &model, &model.vs, &run_dir)?
    } else {
        Trainer::new(cfg.clone(), &model, &model.vs, &run_dir)?
    };
    data::record_data(&run_dir, &data)?;
    let stop = install_ctrlc()?;
    let bar = ProgressBar::new(cfg.run.max_steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_position(trainer.state().step);
    let mut obs = Driver {
        bar,
        stop,
        last_eval: None,
    };
    let outcome = trainer.run(&source, eval.as_ref(), &mut obs);
    obs.bar.finish_and_clear();
    match outcome? {
        RunOutcome::Interrupted { checkpoint, step } => {
            println!(
                "interrupted at step {step}; checkpoint {}\ncontinue with: cloze pretrain --resume {}",
                checkpoint.display(),
                run_dir.display()
            );
        }
        RunOutcome::Finished { checkpoint, eval } => {
            let model_dir = run_dir.join("model");
            data::export_model(&model, &data, &model_dir)?;
            println!(
                "trained {} steps; final checkpoint {}",
                cfg.run.max_steps,
                checkpoint.display()
            );
            println!(
                "model (HuggingFace format, with tokenizer): {}",
                model_dir.display()
            );
            if let Some(m) = eval {
                println!("{}", crate::cmd::eval::summary_line(&m));
            }
        }
    }
    Ok(())
}

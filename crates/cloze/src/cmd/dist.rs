//! The driver's side of data-parallel pretraining: joining the job that
//! torchrun (or `cloze launch`, or a scheduler) started, what rank 0 tells
//! the other ranks before training, and the loop of a rank other than 0.
//!
//! Rank 0 runs `cloze pretrain` as a single process does (every check of the
//! run directory, the lock, the progress bar, the files), then sends the
//! effective configuration and the model's shape to the others. The other
//! ranks never touch the run directory: they need the prepared data at the
//! same path and receive everything else (configuration, weights, optimiser
//! state, data cursor) from rank 0.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cloze_dist::{broadcast_bytes, Collective, GroupOptions, Launch, ProcessGroup};
use cloze_models::BertConfig;
use cloze_train::config::{LoopConfig, TrainConfig};
use cloze_train::data::PreparedData;
use cloze_train::trainer::{Observer, RunOutcome, Trainer};
use cloze_train::BertPretrainer;
use serde::{Deserialize, Serialize};

use crate::cmd::interrupt::Interrupted;

/// The job this process belongs to, when launched as one rank of several.
pub struct Job {
    /// What the environment said.
    pub launch: Launch,
    /// The joined process group.
    pub group: ProcessGroup,
}

/// Reads torchrun's variables; with a world of more than one rank, joins the
/// group (waiting up to `timeout` for the others).
pub fn join(launch: Option<Launch>, timeout: Duration) -> Result<Option<Job>> {
    let Some(launch) = launch.filter(|l| l.world_size > 1) else {
        return Ok(None);
    };
    tracing::info!(
        rank = launch.rank,
        world_size = launch.world_size,
        master = %format!("{}:{}", launch.master_addr, launch.master_port),
        "joining the data-parallel job"
    );
    let group = ProcessGroup::connect(
        &launch,
        &GroupOptions {
            timeout,
            ..GroupOptions::default()
        },
    )?;
    Ok(Some(Job { launch, group }))
}

/// What rank 0 sends the other ranks once its checks have passed.
#[derive(Debug, Serialize, Deserialize)]
struct Bundle {
    /// The effective configuration, as saved in the run's config.toml.
    config_toml: String,
    /// The model's architecture (a continued or resumed run's included).
    bert: BertConfig,
    /// Whether the model has the sentence-pair head.
    pair_head: bool,
}

/// Rank 0: sends the configuration and the model's shape.
pub fn send_setup(
    job: &Job,
    cfg: &TrainConfig,
    model: &BertPretrainer,
    pair_head: bool,
) -> Result<()> {
    let bundle = Bundle {
        config_toml: cfg.to_toml()?,
        bert: model.config.clone(),
        pair_head,
    };
    let mut bytes = serde_json::to_vec(&bundle)?;
    broadcast_bytes(&job.group, &mut bytes, 0)?;
    Ok(())
}

/// Quits on Ctrl-C the way rank 0 does: after the step every rank agrees on.
struct Follower {
    stop: Arc<AtomicBool>,
}

impl Observer for Follower {
    fn should_stop(&mut self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A rank other than 0: receives the setup, builds the same model and data,
/// and trains its slice of every batch.
pub fn run_follower(job: &Job, run_dir: &Path, stop: Arc<AtomicBool>) -> Result<()> {
    let mut bytes = Vec::new();
    broadcast_bytes(&job.group, &mut bytes, 0)
        .context("waiting for rank 0's configuration (rank 0 failed before training?)")?;
    let bundle: Bundle = serde_json::from_slice(&bytes).context("rank 0's setup")?;
    let cfg = TrainConfig::from_toml(&bundle.config_toml, Path::new("rank 0's configuration"))?;
    tch::set_num_threads(cfg.run.threads);
    let data = PreparedData::open(&cfg.data.dir).with_context(|| {
        format!(
            "rank {}: every rank reads the prepared data at the same path as rank 0",
            job.launch.rank
        )
    })?;
    data.check_fits_model(&cfg)?;
    let source = data.train_source(&cfg)?;
    // Never evaluated here, but its presence keeps every rank in step at
    // rank 0's evaluations.
    let eval = data.eval_set(&cfg)?;
    let mut model = BertPretrainer::with_config(bundle.bert, bundle.pair_head, tch::Device::Cpu)?;
    model.precision = cfg.run.precision;
    let trainer = Trainer::follower(LoopConfig::from_train(&cfg)?, &model, &model.vs, run_dir)?;
    let mut trainer = trainer.with_collective(&job.group, &model.vs)?;
    let outcome = trainer.run(
        &source,
        eval.as_ref().map(|e| e as &dyn cloze_train::HeldOut),
        &mut Follower { stop },
    )?;
    match outcome {
        RunOutcome::Interrupted { step, .. } => Err(anyhow::Error::new(Interrupted(format!(
            "rank {} interrupted at step {step}; rank 0 wrote the checkpoint",
            job.launch.rank
        )))),
        _ => Ok(()),
    }
}

/// This rank's libtorch threads when the user set none: the machine's cores
/// shared among its ranks.
pub fn default_threads(launch: &Launch) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    launch.default_threads(cores)
}

/// Whether the job is rank 0's (or a single process's).
pub fn is_writer(job: Option<&Job>) -> bool {
    job.is_none_or(|j| j.group.is_writer())
}

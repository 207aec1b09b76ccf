//! The training loop: data cursor, gradient accumulation, clipping, AdamW,
//! periodic evaluation, checkpoints, interruption and non-finite losses.
//!
//! [`Trainer::run`] is a loop of named steps, each a method: `optimizer_step`
//! (dropout seeded for the step, `accumulate_gradients` over `next_batch`es,
//! clipping, AdamW; a non-finite loss goes to `skip_or_stop`), then what is
//! due after it: `maybe_log` (a metrics line per window), `maybe_evaluate`,
//! `maybe_checkpoint`; a stop request ends in `stop_with_checkpoint` and the
//! last step in `finish`. What one call keeps between steps (clocks, the log
//! window, the non-finite streak) is a `RunProgress`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cloze_core::{Report, ReportSums};
use cloze_dist::{
    broadcast_all, broadcast_bytes, broadcast_values, reduce_values, Collective, ReduceOp, Solo,
};
use cloze_eval::mlm_eval::{EvalSet, MlmModel, MlmOutput};
use cloze_mask::batch::Batch;
use tch::Device;

use crate::batch::{PretrainModel, TensorBatch};
use crate::checkpoint::{self, TrainState};
use crate::config::{LoopConfig, OnNonFinite, TrainConfig};
use crate::error::{io_err, Error, Result};
use crate::metrics::{EvalRecord, MetricsLog, MetricsRecord, TrainMetrics};
use crate::objective::{self, scalar, Losses, Objective};
use crate::optim::AdamW;
use crate::schedule::LrSchedule;

/// Masked training batches, deterministic in (seed, epoch, example index).
pub trait DataSource {
    /// Examples in one epoch.
    fn num_examples(&self) -> usize;
    /// The order examples are read in during `epoch` (a permutation of `0..num_examples`).
    fn epoch_order(&self, epoch: u64) -> Result<Vec<usize>>;
    /// Masks and collates the examples `indices` of `epoch`; they sit at positions
    /// `first_index..` of that epoch's order, which keys the masking randomness.
    fn batch(&self, epoch: u64, first_index: u64, indices: &[usize]) -> Result<Batch>;
}

/// Held-out evaluation during training: anything that scores the model being
/// trained and reports named values. The MLM [`EvalSet`] of `cloze-eval` is
/// one; an objective with its own held-out task (UniLM-v2 generation, MLMLM
/// link prediction) implements this for its task.
pub trait HeldOut {
    /// Scores `model` (no dropout, no gradients) on `device`.
    fn evaluate(&self, model: &dyn PretrainModel, device: Device) -> Result<Report>;
    /// The loss in the report that picks the best checkpoint (lower is better).
    fn primary_loss(&self) -> &str;
    /// The number the best checkpoint and early stopping minimise: by default
    /// the [`Self::primary_loss`]; a task that selects on a score where higher
    /// is better (accuracy, F1) returns its negation.
    fn selection_score(&self, report: &Report) -> Option<f64> {
        report.losses.get(self.primary_loss()).copied()
    }
}

/// A [`PretrainModel`] seen by `cloze-eval`'s MLM task: collated batches in,
/// logits at the masked positions out.
#[derive(Clone, Copy)]
pub struct EvalModel<'a> {
    /// The model.
    pub model: &'a dyn PretrainModel,
    /// Where its batches go.
    pub device: Device,
}

impl MlmModel for EvalModel<'_> {
    fn predict_batch(&self, batch: &Batch) -> cloze_eval::Result<MlmOutput> {
        let boxed = |e: Error| cloze_eval::Error::Forward(Box::new(e));
        let tb = TensorBatch::from_batch(batch, self.device).map_err(boxed)?;
        let out = self.model.forward(&tb, false).map_err(boxed)?;
        Ok(MlmOutput {
            mlm_logits: out.mlm_logits,
            pair_logits: out.pair_logits,
            pseudo_logits: out.pseudo_logits,
        })
    }
}

impl HeldOut for EvalSet {
    fn evaluate(&self, model: &dyn PretrainModel, device: Device) -> Result<Report> {
        Ok(evaluate(model, self, device)?.report(&self.pair_name))
    }
    fn primary_loss(&self) -> &str {
        "mlm"
    }
}

/// The typed MLM metrics of `model` on `set`, without dropout or gradients.
pub fn evaluate(
    model: &dyn PretrainModel,
    set: &EvalSet,
    device: Device,
) -> Result<cloze_eval::mlm_eval::MlmEvalMetrics> {
    Ok(cloze_eval::mlm_eval::evaluate(
        &EvalModel { model, device },
        set,
    )?)
}

/// The run records `run.precision`: the model must compute in it, or the
/// record (and an exact resume) would be wrong.
fn check_precision(cfg: &LoopConfig, model: &dyn PretrainModel) -> Result<()> {
    let (config, model) = (cfg.run.precision, model.precision());
    if !config.trains() {
        return Err(Error::InvalidConfig {
            field: "run.precision",
            problem: format!(
                "{config} is for inference (encode, fill-mask, score, eval); train in fp32 or bf16"
            ),
        });
    }
    if config == model {
        Ok(())
    } else {
        Err(Error::PrecisionMismatch { config, model })
    }
}

/// One line saying what trains: [`AdamW::new`] has applied `[optimizer] freeze`
/// (the same way for a fresh and a resumed run, so both lay out the same
/// buffers).
fn log_optimizer_layout(opt: &AdamW) {
    let f = opt.freeze_summary();
    tracing::info!(
        trainable_tensors = f.trainable_tensors,
        trainable_params = f.trainable_params,
        frozen_tensors = f.frozen_tensors,
        frozen_params = f.frozen_params,
        "optimiser: trainable and frozen parameters"
    );
}

/// Callbacks from the loop to whoever drives it (progress bars, Ctrl-C).
pub trait Observer {
    /// After every optimiser step.
    fn on_step(&mut self, _step: u64, _max_steps: u64, _loss: f64, _lr: f64, _tokens_per_s: f64) {}
    /// After every logged window.
    fn on_log(&mut self, _m: &TrainMetrics) {}
    /// After every evaluation, with what the held-out task reported.
    fn on_eval(&mut self, _step: u64, _report: &Report) {}
    /// After every checkpoint.
    fn on_checkpoint(&mut self, _step: u64, _dir: &Path) {}
    /// Polled between steps; `true` makes the trainer checkpoint and return.
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that does nothing.
#[derive(Debug, Default)]
pub struct Quiet;
impl Observer for Quiet {}

/// How a call to [`Trainer::run`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// All `run.max_steps` steps are done; the final checkpoint is at the path.
    Finished {
        /// Final checkpoint.
        checkpoint: PathBuf,
        /// Final evaluation, if an evaluation set was given.
        eval: Option<Report>,
    },
    /// Early stopping: `eval.patience` evaluations in a row brought no new
    /// best held-out score; a checkpoint was written.
    EarlyStopped {
        /// The last checkpoint.
        checkpoint: PathBuf,
        /// Steps completed.
        step: u64,
        /// The step of the best evaluation (its checkpoint is kept when
        /// `checkpoint.keep_best` is on).
        best_step: Option<u64>,
    },
    /// [`Observer::should_stop`] asked to stop; a checkpoint was written.
    Interrupted {
        /// The checkpoint to resume from.
        checkpoint: PathBuf,
        /// Steps completed.
        step: u64,
    },
}

/// Mixes a seed with two counters into an independent 64-bit seed; the
/// project's one implementation lives in [`cloze_core::rng`].
pub use cloze_core::rng::mix_seed;

/// Seeds libtorch's global generator for step `step` (dropout draws from it).
/// Each rank of a data-parallel run draws its own masks (rank 0's are a
/// single process's).
fn seed_step(seed: u64, step: u64, rank: usize) {
    let s = cloze_core::rng::torch_seed(seed, cloze_core::rng::Stream::Dropout, step);
    let s = if rank == 0 {
        s
    } else {
        (mix_seed(s as u64, rank as u64, 0) >> 1) as i64
    };
    tch::manual_seed(s);
}

/// The one-process job every run is until [`Trainer::with_collective`].
static SOLO: Solo = Solo;

/// Gradients are summed across ranks in pieces of this many elements
/// (25 MiB of fp32, PyTorch DDP's default bucket).
const BUCKET_ELEMENTS: i64 = 25 * 1024 * 1024 / 4;

/// One complete optimiser step on one batch: zero the gradients, forward,
/// losses, backward, global-norm clipping (0 = off) and AdamW at `lr`.
/// Returns the total loss. This is what `cloze bench train` times; the
/// [`Trainer`] does the same with gradient accumulation around it.
pub fn train_step(
    model: &dyn PretrainModel,
    objective: &dyn Objective,
    opt: &mut AdamW,
    batch: &TensorBatch,
    lr: f64,
    max_grad_norm: f64,
) -> Result<f64> {
    opt.zero_grad()?;
    let out = model.forward(batch, true)?;
    let losses = objective.losses(&out, batch)?;
    losses.total.f_backward()?;
    opt.clip_grad_norm(max_grad_norm)?;
    opt.step(lr)?;
    scalar(&losses.total)
}

/// Sums the flat buffer `grads` (the optimiser's gradients) across the
/// ranks in place, in buckets of [`BUCKET_ELEMENTS`] that are all in flight
/// at once; returns the seconds it took (0 for one process).
pub fn allreduce_flat(coll: &dyn Collective, grads: &tch::Tensor) -> Result<f64> {
    if coll.world_size() == 1 {
        return Ok(0.0);
    }
    let t0 = Instant::now();
    let n = grads.size().first().copied().unwrap_or(0);
    let mut buckets = Vec::new();
    let mut at = 0;
    while at < n {
        let len = BUCKET_ELEMENTS.min(n - at);
        buckets.push(grads.f_narrow(0, at, len)?);
        at += len;
    }
    coll.allreduce(&buckets, ReduceOp::Sum)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// A pretraining run over one model.
pub struct Trainer<'m> {
    cfg: LoopConfig,
    model: &'m dyn PretrainModel,
    opt: AdamW,
    schedule: LrSchedule,
    objective: Box<dyn Objective>,
    run_dir: PathBuf,
    device: Device,
    state: TrainState,
    /// `None` on ranks other than 0 of a data-parallel run: they write nothing.
    metrics: Option<MetricsLog>,
    last_checkpoint: Option<PathBuf>,
    order: Option<(u64, Vec<usize>)>,
    coll: &'m dyn Collective,
}

impl std::fmt::Debug for Trainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("run_dir", &self.run_dir)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The file the effective configuration is saved to.
pub fn config_path(run_dir: &Path) -> PathBuf {
    run_dir.join("config.toml")
}

impl<'m> Trainer<'m> {
    /// Starts a fresh run in `run_dir` (created; an existing `metrics.jsonl` is replaced).
    ///
    /// `vs` must hold all of `model`'s variables; the optimiser takes them over.
    pub fn new(
        cfg: TrainConfig,
        model: &'m dyn PretrainModel,
        vs: &tch::nn::VarStore,
        run_dir: &Path,
    ) -> Result<Self> {
        Self::start(LoopConfig::from_train(&cfg)?, model, vs, run_dir)
    }

    /// Starts a fresh run of any task the loop can train (fine-tuning, a
    /// downstream objective) from its loop settings; `cfg.saved` is written
    /// to the run directory as the run's configuration.
    pub fn start(
        cfg: LoopConfig,
        model: &'m dyn PretrainModel,
        vs: &tch::nn::VarStore,
        run_dir: &Path,
    ) -> Result<Self> {
        check_precision(&cfg, model)?;
        std::fs::create_dir_all(run_dir).map_err(io_err("creating", run_dir))?;
        cfg.saved.write(run_dir)?;
        let opt = AdamW::new(vs, &cfg.optimizer)?;
        log_optimizer_layout(&opt);
        let metrics = MetricsLog::open(run_dir, None)?;
        let state = TrainState::fresh(cfg.run.seed, cfg.run.threads);
        Self::assemble(
            cfg,
            model,
            opt,
            run_dir,
            vs.device(),
            state,
            Some(metrics),
            None,
        )
    }

    /// A rank other than 0 of a data-parallel run: it reads and writes no
    /// file; [`Self::with_collective`] gives it rank 0's parameters,
    /// optimiser state and data cursor (fresh or resumed). `run_dir` only
    /// names rank 0's checkpoints in what `run` returns.
    pub fn follower(
        cfg: LoopConfig,
        model: &'m dyn PretrainModel,
        vs: &tch::nn::VarStore,
        run_dir: &Path,
    ) -> Result<Self> {
        check_precision(&cfg, model)?;
        let opt = AdamW::new(vs, &cfg.optimizer)?;
        let state = TrainState::fresh(cfg.run.seed, cfg.run.threads);
        Self::assemble(cfg, model, opt, run_dir, vs.device(), state, None, None)
    }

    /// Makes this trainer one rank of a data-parallel run over `coll`, after
    /// [`Self::start`]/[`Self::resume_loop`] on rank 0 and
    /// [`Self::follower`] on the others (every rank calls it at the same
    /// point). Every variable of `vs`, the optimiser's moments and step, and
    /// the trainer state (step, data cursor, best evaluation) are broadcast
    /// from rank 0, so all ranks start identical, fresh or resumed.
    ///
    /// From then on `data.batch_size` is the global batch: each step reads
    /// the same examples as one process would, rank r computing the r-th
    /// slice of batch_size / world_size examples; the losses are weighted by
    /// each rank's share of the targets and the gradients summed, so W ranks
    /// follow one process's loss curve (exactly without dropout; with
    /// dropout each rank draws its own masks). Only rank 0 evaluates (its
    /// score is broadcast) and writes metrics and checkpoints, with a barrier
    /// after each checkpoint.
    pub fn with_collective(
        mut self,
        coll: &'m dyn Collective,
        vs: &tch::nn::VarStore,
    ) -> Result<Self> {
        let w = coll.world_size();
        if coll.is_writer() != self.metrics.is_some() {
            return Err(Error::DataMismatch(format!(
                "rank {} must be built with {}",
                coll.rank(),
                if coll.is_writer() {
                    "Trainer::start or a resume"
                } else {
                    "Trainer::follower"
                }
            )));
        }
        if !self.cfg.batch_size.is_multiple_of(w) {
            return Err(Error::InvalidConfig {
                field: "data.batch_size",
                problem: format!(
                    "the global batch of {} examples does not split evenly over {w} ranks:                      use a multiple of {w}",
                    self.cfg.batch_size
                ),
            });
        }
        if w > 1 {
            let mut vars: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            // The same variables of the same shapes, or the broadcasts below
            // would pair up different tensors.
            let layout: String = vars
                .iter()
                .map(|(n, t)| format!("{n}{:?};", t.size()))
                .collect();
            let mut theirs = layout.clone().into_bytes();
            broadcast_bytes(coll, &mut theirs, 0)?;
            if theirs != layout.as_bytes() {
                return Err(Error::ResumeMismatch(format!(
                    "rank {}'s model has other variables or shapes than rank 0's",
                    coll.rank()
                )));
            }
            let tensors: Vec<tch::Tensor> = vars.into_iter().map(|(_, t)| t).collect();
            broadcast_all(coll, &tensors, 0)?;
            let moments: Vec<tch::Tensor> = self
                .opt
                .state_tensors()
                .into_iter()
                .map(|(_, t)| t.shallow_clone())
                .collect();
            broadcast_all(coll, &moments, 0)?;
            let mut steps = [self.opt.steps_taken() as f64];
            broadcast_values(coll, &mut steps, 0)?;
            self.opt.set_steps_taken(steps[0] as u64);
            let mut state = serde_json::to_vec(&self.state)
                .map_err(|e| Error::DataMismatch(format!("trainer state: {e}")))?;
            broadcast_bytes(coll, &mut state, 0)?;
            let threads = self.state.threads;
            self.state = serde_json::from_slice(&state)
                .map_err(|e| Error::DataMismatch(format!("rank 0's trainer state: {e}")))?;
            self.state.threads = threads;
            if !coll.is_writer() {
                self.last_checkpoint = (self.state.step > 0)
                    .then(|| checkpoint::step_dir(&self.run_dir, self.state.step));
            }
            tracing::info!(
                rank = coll.rank(),
                world_size = w,
                step = self.state.step,
                "joined the data-parallel run"
            );
        }
        self.coll = coll;
        Ok(self)
    }

    /// Continues the run in `run_dir` from its newest checkpoint.
    ///
    /// The configuration must be the one saved in the run directory, except for
    /// `run.max_steps` (a run may be extended); libtorch must use the same thread
    /// count for bit-identical losses. If the newest checkpoint is damaged, the
    /// [`Error::CorruptCheckpoint`] names the newest intact one, to pass to
    /// [`Trainer::resume_from`]. A checkpoint already past `run.max_steps` is
    /// [`Error::AlreadyPast`].
    pub fn resume(
        cfg: TrainConfig,
        model: &'m dyn PretrainModel,
        vs: &tch::nn::VarStore,
        run_dir: &Path,
    ) -> Result<Self> {
        Self::resume_at(LoopConfig::from_train(&cfg)?, model, vs, run_dir, None)
    }

    /// [`Trainer::resume`] (with `checkpoint`, [`Trainer::resume_from`]) for a
    /// run started by [`Trainer::start`].
    pub fn resume_loop(
        cfg: LoopConfig,
        model: &'m dyn PretrainModel,
        vs: &tch::nn::VarStore,
        run_dir: &Path,
        checkpoint: Option<&Path>,
    ) -> Result<Self> {
        Self::resume_at(cfg, model, vs, run_dir, checkpoint)
    }

    /// Continues the run in `run_dir` from `checkpoint`, one of its checkpoints
    /// (see [`checkpoint::resolve`]). Newer checkpoints are moved aside to
    /// `checkpoints/superseded-step-N/` ([`checkpoint::supersede_newer`]) once
    /// this one has loaded, so the run continues from here and a later resume
    /// does not jump back to them.
    pub fn resume_from(
        cfg: TrainConfig,
        model: &'m dyn PretrainModel,
        vs: &tch::nn::VarStore,
        run_dir: &Path,
        checkpoint: &Path,
    ) -> Result<Self> {
        Self::resume_at(
            LoopConfig::from_train(&cfg)?,
            model,
            vs,
            run_dir,
            Some(checkpoint),
        )
    }

    fn resume_at(
        cfg: LoopConfig,
        model: &'m dyn PretrainModel,
        vs: &tch::nn::VarStore,
        run_dir: &Path,
        chosen: Option<&Path>,
    ) -> Result<Self> {
        checkpoint::clean_partial(run_dir)?;
        let (dir, meta) = match chosen {
            Some(dir) => (dir.to_owned(), checkpoint::verify(dir)?),
            None => {
                let (step, dir) = checkpoint::latest(run_dir)?;
                match checkpoint::verify(&dir) {
                    Ok(meta) => (dir, meta),
                    Err(Error::CorruptCheckpoint { path, problem, .. }) => {
                        return Err(Error::CorruptCheckpoint {
                            path,
                            problem,
                            newest_intact: checkpoint::newest_intact(run_dir, step)?,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let state = &meta.state;
        if state.step > cfg.run.max_steps {
            return Err(Error::AlreadyPast {
                step: state.step,
                max_steps: cfg.run.max_steps,
            });
        }
        if state.seed != cfg.run.seed {
            return Err(Error::ResumeMismatch(format!(
                "the checkpoint was trained with seed {}, the config says {}",
                state.seed, cfg.run.seed
            )));
        }
        let mut opt = AdamW::new(vs, &cfg.optimizer)?;
        log_optimizer_layout(&opt);
        checkpoint::load_verified(&dir, &meta, model, &mut opt)?;
        let mut state = meta.state;
        if chosen.is_some() {
            checkpoint::supersede_newer(run_dir, state.step)?;
        }
        if state.threads != cfg.run.threads {
            tracing::warn!(
                saved = state.threads,
                now = cfg.run.threads,
                "resuming with a different thread count: losses will differ from an uninterrupted run in the last bits"
            );
            // The checkpoints written from here on were trained with the new
            // count: a later resume with it is exact again.
            state.threads = cfg.run.threads;
        }
        cfg.saved.write(run_dir)?;
        let metrics = MetricsLog::open(run_dir, Some(state.step))?;
        tracing::info!(step = state.step, from = %dir.display(), "resuming");
        Self::assemble(
            cfg,
            model,
            opt,
            run_dir,
            vs.device(),
            state,
            Some(metrics),
            Some(dir),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        cfg: LoopConfig,
        model: &'m dyn PretrainModel,
        opt: AdamW,
        run_dir: &Path,
        device: Device,
        state: TrainState,
        metrics: Option<MetricsLog>,
        last_checkpoint: Option<PathBuf>,
    ) -> Result<Self> {
        check_precision(&cfg, model)?;
        let schedule = LrSchedule::new(cfg.optimizer.lr, cfg.run.max_steps, &cfg.schedule);
        let objective = objective::from_config(&cfg.objective)?;
        Ok(Self {
            cfg,
            model,
            opt,
            schedule,
            objective,
            run_dir: run_dir.to_owned(),
            device,
            state,
            metrics,
            last_checkpoint,
            order: None,
            coll: &SOLO,
        })
    }

    /// Trains `objective` instead of the configured `[objective] kind`: how a
    /// downstream crate trains an objective of its own. Its losses and
    /// accuracies reach `metrics.jsonl` and the observer like a built-in's.
    pub fn with_objective(mut self, objective: Box<dyn Objective>) -> Self {
        self.objective = objective;
        self
    }

    /// The trainer's state (step, data cursor, best evaluation).
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The optimiser.
    pub fn optimizer(&self) -> &AdamW {
        &self.opt
    }

    /// The objective being trained.
    pub fn objective(&self) -> &dyn Objective {
        self.objective.as_ref()
    }

    /// Next micro-batch's example indices, advancing the data cursor.
    fn next_indices(&mut self, data: &dyn DataSource) -> Result<(u64, u64, Vec<usize>)> {
        let n = data.num_examples();
        // The global batch; this rank reads its slice of it.
        let bs = self.cfg.batch_size;
        let share = bs / self.coll.world_size();
        if n < bs {
            return Err(Error::DataMismatch(format!(
                "{n} training examples, fewer than one batch of {bs}"
            )));
        }
        // The incomplete tail of an epoch is dropped so every batch has the same shape.
        if self.state.offset + bs > n {
            self.state.epoch += 1;
            self.state.offset = 0;
        }
        let epoch = self.state.epoch;
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let order = data.epoch_order(epoch)?;
            if order.len() != n {
                return Err(Error::DataMismatch(format!(
                    "epoch order has {} entries for {n} examples",
                    order.len()
                )));
            }
            self.order = Some((epoch, order));
        }
        let order = self
            .order
            .as_ref()
            .map(|(_, o)| o.as_slice())
            .unwrap_or_default();
        let first = self.state.offset + self.coll.rank() * share;
        let idx = order[first..first + share].to_vec();
        self.state.offset += bs;
        Ok((epoch, first as u64, idx))
    }

    /// Writes a checkpoint now and prunes old ones (rank 0; in a
    /// data-parallel run every rank then waits at a barrier, so none runs
    /// ahead of a checkpoint).
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        let dir = if self.coll.is_writer() {
            let dir = checkpoint::save(&self.run_dir, self.model, &self.opt, &self.state)?;
            let best = if self.cfg.checkpoint.keep_best {
                self.state.best.map(|(s, _)| s)
            } else {
                None
            };
            checkpoint::prune(&self.run_dir, self.cfg.checkpoint.keep_last, best)?;
            dir
        } else {
            checkpoint::step_dir(&self.run_dir, self.state.step)
        };
        self.coll.barrier()?;
        self.last_checkpoint = Some(dir.clone());
        Ok(dir)
    }

    /// Evaluates and logs; `select`: the score competes for the best model
    /// and counts for early stopping (not so before training: the untrained
    /// model has no checkpoint to be chosen).
    fn run_eval(
        &mut self,
        eval: &dyn HeldOut,
        obs: &mut dyn Observer,
        select: bool,
    ) -> Result<Option<Report>> {
        // Rank 0 evaluates; the others take its selection score, so every
        // rank keeps the same best step and early-stopping count.
        let report = match self.metrics {
            Some(_) => Some(eval.evaluate(self.model, self.device)?),
            None => None,
        };
        let mut score = [report
            .as_ref()
            .and_then(|r| eval.selection_score(r))
            .unwrap_or(f64::NAN)];
        broadcast_values(self.coll, &mut score, 0)?;
        let step = self.state.step;
        match score[0] {
            _ if !select => {}
            l if l.is_finite() && self.state.best.is_none_or(|(_, b)| l < b) => {
                self.state.best = Some((step, l));
                self.state.evals_since_best = 0;
            }
            _ => self.state.evals_since_best += 1,
        }
        if let (Some(report), Some(metrics)) = (&report, &mut self.metrics) {
            metrics.write(&MetricsRecord::Eval(EvalRecord {
                step,
                report: report.clone(),
            }))?;
            tracing::info!(step, "eval {}", report.summary());
            obs.on_eval(step, report);
        }
        Ok(report)
    }

    /// Trains until `run.max_steps` or until the observer asks to stop.
    ///
    /// Each iteration is one optimiser step ([`Self::optimizer_step`]),
    /// followed by what is due after it: a metrics line at the end of a log
    /// window, a periodic evaluation and a periodic checkpoint. A fresh run is
    /// evaluated once before the first step; the last step is followed by the
    /// final evaluation and checkpoint ([`Self::finish`]).
    pub fn run(
        &mut self,
        data: &dyn DataSource,
        eval: Option<&dyn HeldOut>,
        obs: &mut dyn Observer,
    ) -> Result<RunOutcome> {
        let mut progress = RunProgress::new();
        self.evaluate_before_training(eval, obs)?;
        while self.state.step < self.cfg.run.max_steps {
            if self.agree_to_stop(obs.should_stop())? {
                return self.stop_with_checkpoint(obs);
            }
            let _span = tracing::debug_span!("step", step = self.state.step).entered();
            let t0 = Instant::now();
            let Some(report) = self.optimizer_step(data, &mut progress)? else {
                // A skipped batch counts as a step but logs, evaluates and
                // checkpoints nothing.
                continue;
            };
            let dt = t0.elapsed().as_secs_f64();
            progress.train_secs += dt;
            progress.window.add(&report, dt);
            obs.on_step(
                self.state.step,
                self.cfg.run.max_steps,
                report.loss,
                report.lr,
                report.tokens as f64 / dt.max(1e-9),
            );
            self.maybe_log(&mut progress, &report, obs)?;
            self.maybe_evaluate(eval, obs)?;
            self.maybe_checkpoint(obs)?;
            if self.out_of_patience() {
                return self.stop_early(obs);
            }
        }
        self.finish(eval, obs, &progress)
    }

    /// Whether any rank was asked to stop (Ctrl-C reaches the ranks at
    /// slightly different times; all must stop after the same step).
    fn agree_to_stop(&self, asked: bool) -> Result<bool> {
        let mut flag = [f64::from(u8::from(asked))];
        reduce_values(self.coll, &mut flag, ReduceOp::Max)?;
        Ok(flag[0] > 0.0)
    }

    /// Whether early stopping is on and the last `patience` evaluations
    /// brought no new best.
    fn out_of_patience(&self) -> bool {
        self.cfg.patience > 0 && self.state.evals_since_best >= self.cfg.patience
    }

    /// Ends the run early: a final checkpoint (a resume continues from here,
    /// for example after `eval.patience` was raised in the run's saved
    /// configuration), and the step of the best evaluation.
    fn stop_early(&mut self, obs: &mut dyn Observer) -> Result<RunOutcome> {
        // The evaluation that ran out of patience was usually followed by a
        // checkpoint of this very step.
        // (Decided from the step alone, the same way on every rank.)
        let this_step = checkpoint::step_dir(&self.run_dir, self.state.step);
        let written = self.last_checkpoint.clone().filter(|d| *d == this_step);
        let dir = match written {
            Some(d) => d,
            None => {
                let d = self.checkpoint()?;
                obs.on_checkpoint(self.state.step, &d);
                d
            }
        };
        tracing::info!(
            step = self.state.step,
            patience = self.cfg.patience,
            "no better held-out score in the last evaluations: stopping early"
        );
        Ok(RunOutcome::EarlyStopped {
            checkpoint: dir,
            step: self.state.step,
            best_step: self.state.best.map(|(s, _)| s),
        })
    }

    /// Scores a fresh run once before training, so curves start from the
    /// untrained model (evaluation draws no randomness, so this changes
    /// nothing else).
    fn evaluate_before_training(
        &mut self,
        eval: Option<&dyn HeldOut>,
        obs: &mut dyn Observer,
    ) -> Result<()> {
        if let Some(e) = eval {
            if self.state.step == 0 && self.cfg.eval_every > 0 {
                self.run_eval(e, obs, false)?;
            }
        }
        Ok(())
    }

    /// Writes a checkpoint because the observer asked to stop.
    fn stop_with_checkpoint(&mut self, obs: &mut dyn Observer) -> Result<RunOutcome> {
        let dir = self.checkpoint()?;
        obs.on_checkpoint(self.state.step, &dir);
        Ok(RunOutcome::Interrupted {
            checkpoint: dir,
            step: self.state.step,
        })
    }

    /// One optimiser step: seeds dropout for it, accumulates the gradients of
    /// `data.grad_accum` micro-batches, clips them and applies AdamW at the
    /// scheduled learning rate. `None` when a non-finite loss or gradient was
    /// skipped ([`Self::skip_or_stop`]); the step counter advances either way.
    fn optimizer_step(
        &mut self,
        data: &dyn DataSource,
        progress: &mut RunProgress,
    ) -> Result<Option<StepReport>> {
        let step = self.state.step;
        seed_step(self.state.seed, step, self.coll.rank());
        let lr = self.schedule.lr(step);
        self.opt.zero_grad()?;
        let mut sums = self.accumulate_gradients(data, step)?;
        let accum = self.cfg.grad_accum as f64;
        let mut totals = [sums.loss, sums.tokens as f64];
        reduce_values(self.coll, &mut totals, ReduceOp::Sum)?;
        sums.tokens = totals[1] as u64;
        let loss = totals[0] / accum;
        let grad_norm = if loss.is_finite() {
            progress.window.allreduce_secs += self.allreduce_gradients()?;
            self.opt.clip_grad_norm(self.cfg.optimizer.max_grad_norm)?
        } else {
            f64::NAN
        };
        if !loss.is_finite() || !grad_norm.is_finite() {
            let bad = if loss.is_finite() { grad_norm } else { loss };
            self.skip_or_stop(step, bad, &mut progress.consecutive_bad)?;
            return Ok(None);
        }
        progress.consecutive_bad = 0;
        self.opt.step(lr)?;
        self.state.step += 1;
        self.state.tokens_seen += sums.tokens;
        Ok(Some(StepReport {
            loss,
            report: self.reduce_report(sums.parts.mean())?,
            lr,
            grad_norm,
            tokens: sums.tokens,
        }))
    }

    /// Sums the gradients of all ranks in place (the losses were already
    /// weighted by each rank's share), in buckets of the flat gradient
    /// buffer; returns the seconds it took (0 for one process).
    fn allreduce_gradients(&self) -> Result<f64> {
        allreduce_flat(self.coll, self.opt.grads())
    }

    /// The objective's report of this rank made the mean over all ranks
    /// (counts summed), for the log.
    fn reduce_report(&self, mut report: Report) -> Result<Report> {
        let w = self.coll.world_size();
        if w == 1 {
            return Ok(report);
        }
        let mut values: Vec<f64> = report
            .losses
            .values()
            .chain(report.accuracies.values())
            .copied()
            .chain(report.counts.values().map(|&c| c as f64))
            .collect();
        reduce_values(self.coll, &mut values, ReduceOp::Sum)?;
        let mut it = values.into_iter();
        for v in report
            .losses
            .values_mut()
            .chain(report.accuracies.values_mut())
        {
            *v = it.next().unwrap_or(f64::NAN) / w as f64;
        }
        for c in report.counts.values_mut() {
            *c = it.next().unwrap_or(0.0) as u64;
        }
        Ok(report)
    }

    /// Forward and backward passes over `data.grad_accum` micro-batches; each
    /// loss is divided by their count, so the gradients add up to the mean.
    fn accumulate_gradients(&mut self, data: &dyn DataSource, step: u64) -> Result<LossSums> {
        let accum = self.cfg.grad_accum;
        let mut sums = LossSums::default();
        for _ in 0..accum {
            let batch = self.next_batch(data, step)?;
            let tb = TensorBatch::from_batch(&batch, self.device)?;
            sums.tokens += tb.real_tokens as u64;
            let out = self.model.forward(&tb, true)?;
            let losses = self.objective.losses(&out, &tb)?;
            sums.loss += self.backward_share(&losses, accum)?;
            sums.parts.add(&losses.report);
        }
        Ok(sums)
    }

    /// Back-propagates this rank's share of the micro-batch's loss, divided
    /// by the number of micro-batches; returns that share (before the
    /// division). One process: the total itself. Several: each term of the
    /// objective weighted by this rank's fraction of that term's targets
    /// over all ranks (an opaque objective: 1 / world size), so that the
    /// shares, and their gradients, add up to the loss of the whole batch.
    fn backward_share(&self, losses: &Losses, accum: usize) -> Result<f64> {
        let w = self.coll.world_size();
        let factors: Vec<f64> = if losses.parts.is_empty() {
            Vec::new()
        } else {
            let local: Vec<f64> = losses.parts.iter().map(|p| p.count).collect();
            let mut all = local.clone();
            reduce_values(self.coll, &mut all, ReduceOp::Sum)?;
            local
                .iter()
                .zip(&all)
                .map(|(n, total)| if *total > 0.0 { n / total } else { 0.0 })
                .collect()
        };
        let share = if w == 1 || (!factors.is_empty() && factors.iter().all(|f| *f == 1.0)) {
            losses.total.shallow_clone()
        } else if factors.is_empty() {
            losses.total.f_div_scalar(w as f64)?
        } else {
            let mut sum: Option<tch::Tensor> = None;
            for (p, f) in losses.parts.iter().zip(&factors) {
                if *f == 0.0 {
                    // This rank holds none of these targets (its term is a
                    // mean of nothing).
                    continue;
                }
                let t = p.term.f_mul_scalar(*f)?;
                sum = Some(match sum {
                    Some(s) => s.f_add(&t)?,
                    None => t,
                });
            }
            match sum {
                Some(s) => s,
                None => return Ok(0.0),
            }
        };
        let scaled = if accum > 1 {
            share.f_div_scalar(accum as f64)?
        } else {
            share.shallow_clone()
        };
        scaled.f_backward()?;
        scalar(&share)
    }

    /// The next training micro-batch of step `step`, masked.
    fn next_batch(&mut self, data: &dyn DataSource, step: u64) -> Result<Batch> {
        let (epoch, first, idx) = self.next_indices(data)?;
        let batch = data.batch(epoch, first, &idx)?;
        let t = &batch.targets;
        let labelled = t.class.is_some() || t.tokens.is_some();
        if t.masked_lm.is_empty() && t.pseudo.is_empty() && t.response.is_empty() && !labelled {
            // The mean MLM loss of no token is NaN; say why instead of
            // letting it surface as a NaN loss blamed on the learning rate.
            return Err(Error::NothingMasked {
                what: format!("the training batch of step {}", step + 1),
                rate: self.cfg.masking_rate,
            });
        }
        Ok(batch)
    }

    /// A non-finite loss or gradient norm (`bad`) at `step`: with
    /// `run.on_nonfinite = "stop"` an error naming the last good checkpoint;
    /// with `"skip"` the gradients are dropped and the step counted as done,
    /// until ten in a row.
    fn skip_or_stop(&mut self, step: u64, bad: f64, consecutive_bad: &mut u32) -> Result<()> {
        match self.cfg.run.on_nonfinite {
            OnNonFinite::Stop => Err(Error::NonFiniteLoss {
                step,
                loss: bad,
                last_good: self.last_checkpoint.clone(),
            }),
            OnNonFinite::Skip => {
                *consecutive_bad += 1;
                self.state.skipped += 1;
                tracing::warn!(
                    step,
                    loss = bad,
                    "non-finite loss or gradient: batch skipped"
                );
                self.opt.zero_grad()?;
                if *consecutive_bad >= 10 {
                    return Err(Error::TooManyNonFinite(*consecutive_bad));
                }
                self.state.step += 1;
                Ok(())
            }
        }
    }

    /// At the end of a log window (every `run.log_every` steps, and the last
    /// step), writes the window's means to `metrics.jsonl`, tells the
    /// observer and starts a new window.
    fn maybe_log(
        &mut self,
        progress: &mut RunProgress,
        last: &StepReport,
        obs: &mut dyn Observer,
    ) -> Result<()> {
        let done = self.state.step;
        if !(done.is_multiple_of(self.cfg.run.log_every) || done == self.cfg.run.max_steps) {
            return Ok(());
        }
        let w = &progress.window;
        let steps = w.steps as f64;
        let m = TrainMetrics {
            step: done,
            loss: w.loss / steps,
            report: w.parts.mean(),
            lr: last.lr,
            grad_norm: last.grad_norm,
            tokens_per_s: w.tokens as f64 / w.secs.max(1e-9),
            tokens_seen: self.state.tokens_seen,
            elapsed_s: progress.train_secs,
            skipped: self.state.skipped,
            allreduce_s: (self.coll.world_size() > 1).then(|| w.allreduce_secs / steps),
        };
        if let Some(metrics) = &mut self.metrics {
            metrics.write(&MetricsRecord::Train(m.clone()))?;
        }
        tracing::debug!(
            step = done,
            loss = m.loss,
            lr = last.lr,
            tok_s = m.tokens_per_s,
            "train"
        );
        obs.on_log(&m);
        progress.window = Window::default();
        Ok(())
    }

    /// Evaluates every `eval.every_steps` steps (the last step is left to
    /// [`Self::finish`]).
    fn maybe_evaluate(&mut self, eval: Option<&dyn HeldOut>, obs: &mut dyn Observer) -> Result<()> {
        let (done, every) = (self.state.step, self.cfg.eval_every);
        if let Some(e) = eval {
            if every > 0 && done.is_multiple_of(every) && done != self.cfg.run.max_steps {
                self.run_eval(e, obs, true)?;
            }
        }
        Ok(())
    }

    /// Checkpoints every `checkpoint.every_steps` steps (the last step is left
    /// to [`Self::finish`]).
    fn maybe_checkpoint(&mut self, obs: &mut dyn Observer) -> Result<()> {
        let (done, every) = (self.state.step, self.cfg.checkpoint.every_steps);
        if every > 0 && done.is_multiple_of(every) && done != self.cfg.run.max_steps {
            let dir = self.checkpoint()?;
            obs.on_checkpoint(done, &dir);
        }
        Ok(())
    }

    /// After the last step: the final evaluation and checkpoint.
    fn finish(
        &mut self,
        eval: Option<&dyn HeldOut>,
        obs: &mut dyn Observer,
        progress: &RunProgress,
    ) -> Result<RunOutcome> {
        let final_eval = match eval {
            Some(e) => self.run_eval(e, obs, true)?,
            None => None,
        };
        let dir = self.checkpoint()?;
        obs.on_checkpoint(self.state.step, &dir);
        tracing::info!(
            steps = self.state.step,
            secs = progress.started.elapsed().as_secs_f64(),
            "training finished"
        );
        Ok(RunOutcome::Finished {
            checkpoint: dir,
            eval: final_eval,
        })
    }
}

/// What one call of [`Trainer::run`] keeps between steps: its clocks, the
/// current log window and the streak of skipped non-finite steps.
struct RunProgress {
    /// When `run` was called.
    started: Instant,
    /// Seconds spent in optimiser steps (not evaluating or checkpointing).
    train_secs: f64,
    /// The steps since the last metrics line.
    window: Window,
    /// Non-finite steps skipped in a row.
    consecutive_bad: u32,
}

impl RunProgress {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            train_secs: 0.0,
            window: Window::default(),
            consecutive_bad: 0,
        }
    }
}

/// Sums over the steps of one log window, for its means.
#[derive(Debug, Default)]
struct Window {
    loss: f64,
    parts: ReportSums,
    steps: u64,
    tokens: u64,
    secs: f64,
    /// Seconds spent summing gradients across ranks.
    allreduce_secs: f64,
}

impl Window {
    fn add(&mut self, step: &StepReport, secs: f64) {
        self.secs += secs;
        self.loss += step.loss;
        self.parts.add(&step.report);
        self.steps += 1;
        self.tokens += step.tokens;
    }
}

/// Losses summed over the micro-batches of one step: the total, and the
/// objective's reports for their means.
#[derive(Debug, Default)]
struct LossSums {
    loss: f64,
    parts: ReportSums,
    tokens: u64,
}

/// One applied optimiser step: its mean losses over the micro-batches, the
/// learning rate and gradient norm, and the non-padding tokens it saw.
#[derive(Debug)]
struct StepReport {
    loss: f64,
    report: Report,
    lr: f64,
    grad_norm: f64,
    tokens: u64,
}

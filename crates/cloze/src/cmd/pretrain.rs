//! `cloze pretrain`: pretrain a BERT from a config preset on prepared shards,
//! with a progress bar, Ctrl-C checkpointing and `--resume`.
//!
//! What it promises about files (the README's "safety" section says the same):
//! - The run directory (`--out RUN`) is checked before any work
//!   ([`cloze_fs::OutputDir::check`]): a regular file, `.` (or an ancestor of
//!   the current directory), a read-only directory, a directory that holds
//!   one of the run's inputs (the data, the config file, a similar-word
//!   source), or a non-empty directory that is not a pretraining run is
//!   refused. A run directory is recognised by its marker `.cloze-output.json`
//!   (written when the run starts) or, for runs made before markers, by
//!   `config.toml` + `metrics.jsonl`. An existing run needs `--resume RUN` to
//!   continue or `--force` to start over; `--force` removes only what a run
//!   writes ([`RUN_FILES`]) and leaves every other file in RUN alone.
//! - The data must fit the model before any work: the manifest's
//!   `max_seq_length` (after padding) must not exceed
//!   `model.max_position_embeddings`; the masking scheme must select tokens.
//! - One writer per run: the whole command holds an exclusive OS lock on RUN
//!   (`RUN/.cloze-run.lock`, plus `cloze-fs`'s lock beside RUN for a fresh
//!   run), released when the process ends in any way, even `kill -9`. A second
//!   `cloze pretrain --out RUN` or `--resume RUN` exits with status 1 naming the
//!   holder's PID and touches nothing.
//! - Ctrl-C once: the trainer finishes the current step, writes a checkpoint,
//!   and the command exits with status 130, printing the exact `--resume`
//!   command. Ctrl-C twice: the process quits at once with status 130 without
//!   running destructors (libtorch's threads are never torn down under it);
//!   checkpoints are published by rename, so the last complete one is intact
//!   and a half-written one is removed by the next `--resume`.
//! - `--resume RUN` continues from the newest checkpoint with the run's saved
//!   settings: flags that would change them are refused with the list of
//!   differences, except those in [`cloze_train::config::RESUME_MAY_CHANGE`]
//!   (`--max-steps`, `--data`, threads, cadence). A damaged newest checkpoint
//!   is refused with the command that resumes from the newest intact one,
//!   `--from-checkpoint STEP`; that moves the newer checkpoints to
//!   `checkpoints/superseded-step-N/`, where they are kept but never used.
//!
//! Threads: libtorch's intra-op thread count is the config's `run.threads`,
//! unless the global `--threads N` is given; then `N` replaces it exactly as
//! `--set run.threads=N` would (saved in `config.toml`; with `--resume` an
//! allowed change, reported), and a warning names both values when they
//! differ. The data pipeline's rayon pool is sized by `--threads` alone
//! (default: all cores). Losses are bit-identical only for the same count.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use cloze_fs::{DirLock, OutputDir, OutputKind};
use cloze_train::config::TrainConfig;
use cloze_train::data::{self, PreparedData};
use cloze_train::trainer::{config_path, RunOutcome, Trainer};
use cloze_train::BertPretrainer;

use crate::cmd::interrupt::{self, Interrupted};
use crate::cmd::run_dir::{self, shell_word, Driver};

/// The preset used when `--config` is not given (and not resuming).
const DEFAULT_PRESET: &str = "bert-tiny";

/// What a run writes into its directory: the only entries `--force` removes.
pub const RUN_FILES: &[&str] = &[
    "config.toml",
    "metrics.jsonl",
    "metrics.jsonl.tmp",
    "checkpoints",
    "model",
    "plots",
    data::DATA_RECORD,
    cloze_fs::MARKER,
];

/// Arguments of `cloze pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// A config file, or a preset name: bert-tiny (the default), bert-mini,
    /// bert-small, bert-base, and for Chinese bert-zh-tiny, bert-zh-wwm,
    /// bert-zh-wwm-ngram, macbert-zh-tiny; unilmv2-tiny; for code cuglm-tiny
    /// and cuglm-complete (with a `cloze data code` directory as --data).
    /// With --resume: only to check that it matches the run.
    #[arg(long)]
    pub config: Option<String>,
    /// Prepared data directory (`cloze data prepare` output; `cloze data
    /// code` output for the cuglm presets); overrides `data.dir`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run directory (config, metrics, checkpoints, final model). An existing
    /// run is refused unless --force is given; other directories are never replaced.
    #[arg(long, default_value = "runs/pretrain")]
    pub out: PathBuf,
    /// Continue the run in this directory from its newest checkpoint, with its
    /// saved settings (only --max-steps, --data, --threads and the logging,
    /// eval and checkpoint cadence may change).
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// With --resume: continue from this checkpoint (a step number, or a
    /// directory under RUN/checkpoints) instead of the newest. Newer checkpoints
    /// are moved to RUN/checkpoints/superseded-step-N/ and kept, never used.
    #[arg(long, value_name = "STEP_OR_DIR", requires = "resume")]
    pub from_checkpoint: Option<String>,
    /// Override any config value: `--set optimizer.lr=3e-4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Shorthand for `--set run.max_steps=N`; with --resume, extends the run.
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
    /// Shorthand for `--set run.precision=P`: `fp32`, or `bf16` (matrix products
    /// in bfloat16 over fp32 weights; about 1.8-2.5x faster per step on a CPU with avx512_bf16).
    #[arg(long)]
    pub precision: Option<cloze_models::Precision>,
    /// Continued pretraining: start from this HuggingFace BERT checkpoint
    /// directory (config.json + model.safetensors; sets `init.from`), or a
    /// cached one by name (`minilm`, after `cloze data fetch minilm`). Its
    /// config.json decides the architecture; the preset's training settings
    /// apply. Prepare the data with the checkpoint's tokenizer
    /// (`cloze data prepare --tokenizer DIR`).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Start over in an existing run directory: removes what the earlier run
    /// wrote (config, metrics, checkpoints, model, plots) and nothing else.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Data-parallel runs (started by `cloze launch` or torchrun): how long
    /// joining the job, and any one exchange between ranks, may wait for the
    /// other ranks before the run fails with an error naming the lost rank.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub dist_timeout: u64,
    /// The global `--threads`, copied here by `main`: when given, it replaces
    /// the config's `run.threads` (see `apply_threads`).
    #[arg(skip)]
    pub global_threads: Option<usize>,
    /// Set when `global_threads` was not given but derived from the launch
    /// (the cores shared among a machine's ranks): then it is no override of
    /// the user's and no warning is due.
    #[arg(skip)]
    pub threads_from_launch: bool,
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
    if let Some(p) = a.precision {
        overrides.push(format!("run.precision=\"{p}\""));
    }
    let mut cfg = apply_threads(base.with_overrides(&overrides)?, a)?;
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

/// Continued pretraining (`--init-from DIR` or `init.from`): the model's shape
/// becomes the checkpoint's. `[model]` values of the preset that differ are
/// replaced, with one notice listing them; a `--set model.*` that contradicts
/// the checkpoint is an error naming both values. The checkpoint path is made
/// absolute so that the saved run config stays valid from any directory.
fn adopt_checkpoint_shape(a: &PretrainArgs, mut cfg: TrainConfig) -> Result<TrainConfig> {
    if let Some(dir) = &a.init_from {
        cfg.init.from = Some(dir.clone());
    }
    let Some(dir) = cfg.init.from.clone() else {
        return Ok(cfg);
    };
    // A cached checkpoint may be named like a dataset: `--init-from minilm`.
    let dir = match dir.to_str() {
        Some(name) if !dir.exists() => crate::cmd::data::resolve(name, "checkpoint")?,
        _ => dir,
    };
    let dir = std::fs::canonicalize(&dir)
        .with_context(|| format!("the checkpoint to start from, {}", dir.display()))?;
    let ckpt = cloze_models::hf::read_config(&dir).with_context(|| {
        format!(
            "{} is not a HuggingFace BERT checkpoint directory (config.json + model.safetensors)",
            dir.display()
        )
    })?;
    let want = cloze_train::bert::model_section(&ckpt);
    let diffs = cloze_train::bert::model_differences(&cfg.model, &want);
    let user_set: Vec<(String, String)> = a
        .overrides
        .iter()
        .filter_map(|o| o.split_once('='))
        .filter_map(|(k, v)| {
            k.trim()
                .strip_prefix("model.")
                .map(|f| (f.to_owned(), v.trim().to_owned()))
        })
        .collect();
    for (field, ours, theirs) in &diffs {
        if let Some((_, value)) = user_set.iter().rev().find(|(f, _)| f == field) {
            bail!(
                "--set model.{field}={value} contradicts the checkpoint {dir}: its config.json has \
                 {field} = {theirs} (a run started from a checkpoint takes its architecture from it; \
                 drop the --set, or train from scratch without --init-from)",
                dir = dir.display()
            );
        }
        let _ = ours;
    }
    if !diffs.is_empty() {
        let list: Vec<String> = diffs
            .iter()
            .map(|(f, ours, theirs)| format!("{f} {ours} -> {theirs}"))
            .collect();
        tracing::info!(
            "starting from {}: its config.json decides the architecture; the preset's [model] \
                 values that differ are ignored: {}",
            dir.display(),
            list.join(", ")
        );
    }
    if cfg.init.scheme == cloze_train::config::InitScheme::OffsetHeads {
        let set_by_user = a
            .overrides
            .iter()
            .any(|o| o.trim_start().starts_with("init.scheme"));
        if !set_by_user {
            // The preset's fresh-model initialisation does not apply to loaded weights.
            cfg.init.scheme = cloze_train::config::InitScheme::Hf;
        }
    }
    cfg.model = want;
    cfg.init.from = Some(dir);
    cfg.validate()?;
    Ok(cfg)
}

/// One row per token the data's tokenizer has beyond the checkpoint's
/// vocabulary (tokens added with `cloze data prepare --add-tokens`): the ids
/// the checkpoint's own tokenizer splits that token into, whose embedding
/// rows the new row averages. Also checks that the data was tokenized with
/// the checkpoint's vocabulary: every id both know must be the same token.
fn added_token_rows(dir: &Path, ckpt_vocab: i64, data: &PreparedData) -> Result<Vec<Vec<i64>>> {
    use cloze_text::tokenizer::{TextTokenizer, WordBoundaries};
    let data_tok = TextTokenizer::from_json_file(&data.tokenizer_path)?;
    let data_vocab = i64::from(data.specials.vocab_size);
    let has_tokenizer = dir.join("tokenizer.json").is_file() || dir.join("vocab.txt").is_file();
    if !has_tokenizer {
        if data_vocab > ckpt_vocab {
            bail!(
                "the data's tokenizer has {data_vocab} ids but the checkpoint {} has {ckpt_vocab} \
                 rows and no tokenizer (tokenizer.json or vocab.txt) to split the extra tokens with",
                dir.display()
            );
        }
        tracing::warn!(
            "{} has no tokenizer.json or vocab.txt: cannot check that the data was tokenized \
                 with the checkpoint's vocabulary",
            dir.display()
        );
        return Ok(Vec::new());
    }
    let ckpt_tok = TextTokenizer::from_path(dir)?;
    let shared = ckpt_tok.vocab_size().min(data.specials.vocab_size);
    if let Some(id) = (0..shared).find(|&i| ckpt_tok.id_to_token(i) != data_tok.id_to_token(i)) {
        bail!(
            "the data in {} was not tokenized with the checkpoint's vocabulary: id {id} is {:?} in \
                 the data's tokenizer but {:?} in {}'s. Prepare the data with \
                 `cloze data prepare --tokenizer {}` (optionally with --add-tokens FILE)",
            data.dir.display(),
            data_tok.id_to_token(id).unwrap_or_default(),
            ckpt_tok.id_to_token(id).unwrap_or_default(),
            dir.display(),
            shell_word(dir)
        );
    }
    let mut rows = Vec::new();
    for id in ckpt_vocab..data_vocab {
        let id32 = u32::try_from(id)?;
        let token = data_tok
            .id_to_token(id32)
            .ok_or_else(|| anyhow!("the data's tokenizer has no token for id {id}"))?;
        let text = token.strip_prefix("##").unwrap_or(&token);
        let pieces = ckpt_tok.encode(text, WordBoundaries::Tokenizer)?;
        let mut ids: Vec<i64> = pieces
            .ids
            .iter()
            .map(|&i| i64::from(i))
            .filter(|&i| i < ckpt_vocab)
            .collect();
        if ids.is_empty() {
            ids.push(i64::from(ckpt_tok.special_tokens().unk));
        }
        rows.push(ids);
    }
    Ok(rows)
}

/// The model architecture of a resumed run that started from a checkpoint:
/// the `config.json` saved with the checkpoint it resumes from (the newest
/// one whose config reads, or `--from-checkpoint`'s), so that resuming does
/// not need the original checkpoint directory any more.
pub(crate) fn resumed_model_config(
    a: &PretrainArgs,
    run: &Path,
) -> Result<cloze_models::BertConfig> {
    let candidates = match &a.from_checkpoint {
        Some(spec) => vec![cloze_train::checkpoint::resolve(run, spec)?],
        None => cloze_train::checkpoint::list(run)?
            .into_iter()
            .rev()
            .map(|(_, d)| d)
            .collect(),
    };
    candidates
        .iter()
        .find_map(|d| cloze_models::hf::read_config(d).ok())
        .ok_or_else(|| {
            anyhow!(
                "no checkpoint of {} has a readable config.json to rebuild the model from",
                run.display()
            )
        })
}

/// The one rule for libtorch's thread count in a run: an explicit global
/// `--threads N` replaces `run.threads` (the config's, after `--set`), as a
/// last `--set run.threads=N` would, so it is saved in the run's config.toml
/// and, on `--resume`, reported like any allowed change. When the two differ
/// a warning says which one wins; without `--threads` the config's value
/// applies.
fn apply_threads(mut cfg: TrainConfig, a: &PretrainArgs) -> Result<TrainConfig> {
    let Some(n) = a.global_threads else {
        return Ok(cfg);
    };
    let n = i32::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| anyhow!("--threads {n}: must be between 1 and {}", i32::MAX))?;
    if a.threads_from_launch {
        tracing::info!(threads = n, "this rank's share of the machine's cores");
    } else if cfg.run.threads != n {
        let whence = if a.resume.is_some() && a.config.is_none() {
            "the run's saved config.toml"
        } else {
            "the config"
        };
        tracing::warn!(
            "--threads {n} overrides run.threads = {} of {whence}: libtorch uses {n} thread(s) \
             (drop --threads to use the config's value)",
            cfg.run.threads
        );
    }
    cfg.run.threads = n;
    Ok(cfg)
}

/// The configuration of a resumed run: its saved one, with only the changes
/// that keep it the same run. Anything else is refused with the differences.
fn resume_config(a: &PretrainArgs, run: &Path) -> Result<TrainConfig> {
    let saved =
        TrainConfig::load(&config_path(run)).context("reading the run's saved config.toml")?;
    let base = match &a.config {
        Some(spec) => {
            let mut c = TrainConfig::load_or_preset(spec)?;
            if c.data.dir.as_os_str().is_empty() {
                c.data.dir = saved.data.dir.clone();
            }
            c
        }
        None => saved.clone(),
    };
    let cfg = effective_config(a, base)?;
    match saved.resume_changes(&cfg) {
        Ok(applied) => {
            for c in applied {
                tracing::info!(change = %c, "resume");
            }
            Ok(cfg)
        }
        Err(cloze_train::Error::ResumeChangesRun { changes }) => {
            let list: String = changes.iter().map(|c| format!("\n  {c}")).collect();
            bail!(
                "cannot resume {run}: these settings would change the run (saved -> requested):{list}\n\
                 A resumed run keeps the settings it was started with; only {may} may change \
                 (--max-steps extends the run). Drop the flags above to continue it as it was, \
                 or start a new run with `--out NEW_DIR`.",
                run = run.display(),
                may = cloze_train::config::RESUME_MAY_CHANGE.join(", ")
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// The input files and directories a run must never delete: the data, the
/// config file, and any similar-word source the masking scheme reads.
fn inputs_of(a: &PretrainArgs, cfg: &TrainConfig) -> Vec<PathBuf> {
    use cloze_mask::{CorruptConfig, SimilarSourceConfig};
    let mut inputs = vec![cfg.data.dir.clone()];
    inputs.extend(cfg.init.from.iter().cloned());
    if let Some(spec) = &a.config {
        if Path::new(spec).exists() {
            inputs.push(PathBuf::from(spec));
        }
    }
    if let CorruptConfig::SimilarWord {
        source: Some(source),
        ..
    } = &cfg.masking.corrupt
    {
        match source {
            SimilarSourceConfig::Cilin {
                path: Some(path), ..
            }
            | SimilarSourceConfig::Word2vec { path, .. } => inputs.push(path.clone()),
            SimilarSourceConfig::Cilin { path: None, .. } => {}
        }
    }
    inputs
}

/// The kind of output a run directory is, for `cloze-fs`.
fn run_kind() -> OutputKind {
    OutputKind::new("pretrain", "--force").with_legacy_markers(&["config.toml", "metrics.jsonl"])
}

/// Checks `--out` before any work: see the module documentation. Holds
/// `cloze-fs`'s lock beside the run directory until dropped.
fn check_out(a: &PretrainArgs, cfg: &TrainConfig) -> Result<OutputDir> {
    let inputs = inputs_of(a, cfg);
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let run = &a.out;
    OutputDir::check(run, &run_kind(), &refs, a.force).map_err(|e| match e {
        cloze_fs::Error::Exists { .. } => anyhow!(
            "{run} already holds a pretraining run: continue it with `cloze pretrain --resume {word}`, \
             or pass --force to start over (that removes the run's config, metrics, checkpoints and \
             model, and nothing else in {run})",
            run = run.display(),
            word = shell_word(run)
        ),
        other => anyhow::Error::new(other),
    })
}

/// Makes the checked `--out` a fresh pretraining run directory (see
/// [`run_dir::start`]).
pub(crate) fn start_run_dir(guard: &OutputDir, run: &Path) -> Result<DirLock> {
    run_dir::start(guard, run, &run_kind(), RUN_FILES)
}

/// Takes the lock of an existing run directory for `--resume`.
fn lock_for_resume(run: &Path) -> Result<DirLock> {
    run_dir::lock_existing(run, &run_kind(), "config.toml", "a pretraining run")
}

/// The flags of this `--resume` that a suggested command must repeat.
fn resume_flags(a: &PretrainArgs) -> String {
    let mut s = String::new();
    if let Some(d) = &a.data {
        s.push_str(&format!(" --data {}", shell_word(d)));
    }
    if let Some(n) = a.max_steps {
        s.push_str(&format!(" --max-steps {n}"));
    }
    if let Some(n) = a.global_threads {
        s.push_str(&format!(" --threads {n}"));
    }
    s
}

/// Turns the trainer's resume errors into messages with the command to run.
fn explain_resume_error(e: cloze_train::Error, a: &PretrainArgs, run: &Path) -> anyhow::Error {
    let word = shell_word(run);
    match e {
        cloze_train::Error::CorruptCheckpoint {
            newest_intact: Some((step, _)),
            ..
        } => anyhow!(
            "{e}\nresume from it with: cloze pretrain --resume {word} --from-checkpoint {step}{extra}\n\
             (the newer checkpoints are then moved to {run}/checkpoints/superseded-step-N/, kept but never used)",
            extra = resume_flags(a),
            run = run.display()
        ),
        cloze_train::Error::CorruptCheckpoint {
            newest_intact: None,
            ..
        } if a.from_checkpoint.is_none() => anyhow!(
            "{e}; no older intact checkpoint remains: start the run over with \
             `cloze pretrain --out {word} --force` (and the same --config/--data/--set flags)"
        ),
        cloze_train::Error::AlreadyPast { step, max_steps } => anyhow!(
            "the run in {} is already at step {step}, past --max-steps {max_steps}: \
             pass a --max-steps above {step} to train it further",
            run.display()
        ),
        other => anyhow::Error::new(other),
    }
}

/// Warns when a run trains in bf16 on a CPU that has no bf16 GEMM instructions
/// (shared by `pretrain` and `finetune`).
pub(crate) fn warn_if_bf16_is_emulated(precision: cloze_models::Precision) {
    if precision == cloze_models::Precision::Bf16 && !cloze_models::precision::cpu_has_bf16_gemm() {
        tracing::warn!(
            "run.precision = \"bf16\" on a CPU without avx512_bf16: libtorch emulates bf16 \
             products, which is slower than fp32 here"
        );
    }
}

/// Runs `cloze pretrain`: one process, or one rank of a data-parallel job
/// when torchrun's variables say so (see [`crate::cmd::dist`]).
pub fn run(mut a: PretrainArgs) -> Result<()> {
    let launch = cloze_dist::Launch::from_env()?;
    if let Some(l) = &launch {
        if a.global_threads.is_none() && l.local_world_size > 1 {
            // The machine's cores are shared among its ranks.
            a.global_threads = Some(crate::cmd::dist::default_threads(l));
            a.threads_from_launch = true;
        }
        if l.restart_count > 0 && a.resume.is_none() && l.rank == 0 {
            // A restarted job continues from its last checkpoint; one that
            // died before its first starts over in its own directory.
            if cloze_train::checkpoint::latest(&a.out).is_ok() {
                tracing::info!(
                    restart = l.restart_count,
                    "restarted job: resuming from the last checkpoint"
                );
                a.resume = Some(a.out.clone());
            } else {
                a.force = true;
            }
        }
    }
    let job = crate::cmd::dist::join(launch, std::time::Duration::from_secs(a.dist_timeout))?;
    if let Some(job) = job
        .as_ref()
        .filter(|j| !crate::cmd::dist::is_writer(Some(j)))
    {
        let stop = interrupt::install("stopping with the other ranks after the current step")?;
        let run_dir = a.resume.clone().unwrap_or_else(|| a.out.clone());
        return crate::cmd::dist::run_follower(job, &run_dir, stop);
    }
    let resuming = a.resume.is_some();
    let run_dir = a.resume.clone().unwrap_or_else(|| a.out.clone());

    // 1. Settings, and the run directory checked and locked, before any work.
    let (cfg, out_guard, mut run_lock) = if resuming {
        let lock = lock_for_resume(&run_dir)?;
        (resume_config(&a, &run_dir)?, None, Some(lock))
    } else {
        let spec = a.config.as_deref().unwrap_or(DEFAULT_PRESET);
        let cfg = adopt_checkpoint_shape(
            &a,
            effective_config(&a, TrainConfig::load_or_preset(spec)?)?,
        )?;
        let guard = check_out(&a, &cfg)?;
        (cfg, Some(guard), None)
    };

    // Code models (CugLM) read `cloze data code` directories: their own path
    // from here on, with the same run-directory guarantees.
    if crate::cmd::pretrain_code::is_code(&cfg) {
        if job.is_some() {
            bail!("the cuglm objectives train in one process (no data-parallel run yet)");
        }
        return crate::cmd::pretrain_code::run(&a, cfg, resuming, &run_dir, out_guard, run_lock);
    }

    // 2. The data must fit the model and the masking scheme, still before the
    //    run directory is created or an earlier run removed.
    tch::set_num_threads(cfg.run.threads);
    let data = PreparedData::open(&cfg.data.dir)?;
    data.check_fits_model(&cfg)?;
    if resuming {
        data::check_model_matches(&run_dir, &data)?;
    }
    let source = data.train_source(&cfg)?;
    // Continued pretraining: the data must use the checkpoint's vocabulary
    // (plus any added tokens), checked before the run directory is touched.
    let init_rows = match (&cfg.init.from, resuming) {
        (Some(dir), false) => {
            let ckpt_vocab = cloze_models::hf::read_config(dir)?.vocab_size;
            Some(added_token_rows(dir, ckpt_vocab, &data)?)
        }
        _ => None,
    };
    let eval = data.eval_set(&cfg)?;

    // 3. A fresh run's directory: locked, cleared of an earlier run (--force), marked.
    if let Some(guard) = &out_guard {
        run_lock = Some(start_run_dir(guard, &run_dir)?);
    }
    let stop = interrupt::install("writing a checkpoint after the current step, then stopping")?;

    let pair_head = cloze_train::objective::entry(&cfg.objective.kind)?
        .pair_task
        .is_some();
    let bert_cfg =
        cloze_train::bert::bert_config(&cfg.model, data.specials.vocab_size, data.specials.pad);
    let device = tch::Device::Cpu;
    let mut model = match (&cfg.init.from, resuming) {
        (Some(dir), false) => {
            let rows = init_rows.unwrap_or_default();
            let (model, report) =
                BertPretrainer::from_checkpoint(dir, pair_head, cfg.run.seed, &rows, device)
                    .with_context(|| format!("starting from {}", dir.display()))?;
            for line in report.notices() {
                tracing::info!("init from {}: {line}", dir.display());
            }
            model
        }
        (Some(_), true) => {
            BertPretrainer::with_config(resumed_model_config(&a, &run_dir)?, pair_head, device)?
        }
        (None, _) if pair_head => BertPretrainer::new(bert_cfg, cfg.run.seed, &cfg.init, device)?,
        (None, _) => BertPretrainer::new_masked_lm(bert_cfg, cfg.run.seed, &cfg.init, device)?,
    };
    if model.config.vocab_size < i64::from(data.specials.vocab_size) {
        bail!(
            "the model has {} word embeddings but the data's tokenizer has {} ids",
            model.config.vocab_size,
            data.specials.vocab_size
        );
    }
    model.precision = cfg.run.precision;
    warn_if_bf16_is_emulated(cfg.run.precision);
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
    if let Some(job) = &job {
        crate::cmd::dist::send_setup(job, &cfg, &model, pair_head)?;
    }
    let trainer = if resuming {
        let resumed = match &a.from_checkpoint {
            Some(spec) => cloze_train::checkpoint::resolve(&run_dir, spec).and_then(|dir| {
                Trainer::resume_from(cfg.clone(), &model, &model.vs, &run_dir, &dir)
            }),
            None => Trainer::resume(cfg.clone(), &model, &model.vs, &run_dir),
        };
        resumed.map_err(|e| explain_resume_error(e, &a, &run_dir))?
    } else {
        Trainer::new(cfg.clone(), &model, &model.vs, &run_dir)?
    };
    let mut trainer = match &job {
        Some(job) => trainer.with_collective(&job.group, &model.vs)?,
        None => trainer,
    };
    data::record_data(&run_dir, &data)?;
    let mut obs = Driver::new(cfg.run.max_steps, trainer.state().step, stop);
    let outcome = trainer.run(
        &source,
        eval.as_ref().map(|e| e as &dyn cloze_train::HeldOut),
        &mut obs,
    );
    obs.bar.finish_and_clear();
    let result = match outcome? {
        RunOutcome::Interrupted { checkpoint, step } => {
            // Not a finished job: exit 130 so `cloze pretrain && cloze eval` stops here.
            Err(anyhow::Error::new(Interrupted(format!(
                "interrupted at step {step}; checkpoint {}\ncontinue with: cloze pretrain --resume {}",
                checkpoint.display(),
                shell_word(&run_dir)
            ))))
        }
        RunOutcome::EarlyStopped {
            checkpoint,
            step,
            best_step,
        } => {
            let model_dir = run_dir.join("model");
            data::export_model(&model, &data, &model_dir)?;
            println!(
                "stopped early at step {step} (eval.patience = {}; best evaluation at step {}); checkpoint {}",
                cfg.eval.patience,
                best_step.map_or("-".to_string(), |s| s.to_string()),
                checkpoint.display()
            );
            println!(
                "model of the last step (HuggingFace format, with tokenizer): {}",
                model_dir.display()
            );
            Ok(())
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
            Ok(())
        }
    };
    // The locks are held until every file of the run is written.
    drop(run_lock);
    drop(out_guard);
    result
}

//! `cloze experiment NAME`: one command that reproduces a claim end to end
//! (data, pretraining, evaluation, fine-tuning over several seeds) and writes
//! a Markdown table and a PNG chart of the result.
//!
//! An experiment is a list of steps, each an ordinary `cloze` subcommand run
//! as a child process of this binary, so every step keeps that command's own
//! guarantees (checked outputs, atomic publication, checkpoints, Ctrl-C). A
//! step whose result is already in the experiment directory is skipped, and a
//! training step cut short is resumed from its last checkpoint (or started
//! over when it had none): running the same command again continues where it
//! stopped. Each step's output goes to `OUT/logs/`.
//!
//! Adding an experiment: a module beside [`macbert_ablation`] with its own
//! `Args` and `run`, one variant in [`Which`].

pub mod code;
pub mod compress;
pub mod continued;
pub mod dialogue;
pub mod macbert_ablation;
pub mod mlmlm;
mod report;
pub mod unilmv2;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::interrupt::{self, Interrupted, EXIT_INTERRUPTED};

/// Arguments of `cloze experiment`.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    #[command(subcommand)]
    pub which: Which,
}

/// The experiments there are.
#[derive(Debug, Subcommand)]
pub enum Which {
    /// MacBERT's masking ablation on Chinese (token, whole-word, n-gram and
    /// similar-word masking; no sentence objective, NSP and SOP), fine-tuned
    /// on sentiment and word segmentation over several seeds, with held-out
    /// MLM accuracy and SIGHAN 2015 correction.
    MacbertAblation(macbert_ablation::AblationArgs),
    /// Continued pretraining: all-MiniLM-L6-v2 trained further with MLM on
    /// the State of the Union corpus against the same architecture trained
    /// from scratch for the same budget, over several seeds: held-out MLM
    /// accuracy and perplexity, and paraphrase similarity before and after.
    ContinuedPretraining(continued::ContinuedArgs),
    /// UniLM-v2's claim at small scale: a BERT and a UniLM-v2 of the same
    /// shape, pretrained alike on Chinese poems and modern text over several
    /// seeds, each fine-tuned for sentiment classification and for couplet
    /// generation (against three baselines).
    Unilmv2(unilmv2::Unilmv2Args),
    /// MLMLM: knowledge-graph link prediction with a fine-tuned masked LM
    /// against frequency, DistMult and ComplEx baselines on UMLS, Nations,
    /// Kinships and a WN18RR-style graph (with a zero-shot split).
    Mlmlm(mlmlm::MlmlmArgs),
    /// Compression of trained encoders: every model pruned (magnitude and
    /// SparseGPT, 50% and 2:4), quantised (GPTQ and RTN, 4 and 3 bits) and
    /// run in int8 (with and without SmoothQuant), each variant scored by
    /// held-out MLM loss and accuracy, embedding cosine to the dense model
    /// and size.
    Compress(compress::CompressArgs),
    /// PLATO-style dialogue: no roles vs two alternating roles vs
    /// per-speaker roles, and the unified vs a fully causal mask, on the
    /// First-Folio plays over several seeds (perplexity, hits@1, distinct-n).
    Dialogue(dialogue::DialogueArgs),
    /// CugLM for code completion: identifier MLM, next-code-segment
    /// prediction and the type head ablated against a plain left-to-right LM
    /// and count baselines, on Java (or TypeScript) over several seeds.
    Code(code::CodeArgs),
}

/// Runs `cloze experiment`; `threads` is the global `--threads`, passed on
/// to every step.
pub fn run(a: ExperimentArgs, threads: Option<usize>) -> Result<()> {
    match a.which {
        Which::MacbertAblation(args) => macbert_ablation::run(args, threads),
        Which::ContinuedPretraining(args) => continued::run(args, threads),
        Which::Unilmv2(args) => unilmv2::run(args, threads),
        Which::Mlmlm(args) => mlmlm::run(args, threads),
        Which::Compress(args) => compress::run(args, threads),
        Which::Dialogue(args) => dialogue::run(args, threads),
        Which::Code(args) => code::run(args, threads),
    }
}

/// Runs the steps of an experiment as child `cloze` processes.
pub struct Steps {
    exe: PathBuf,
    logs: PathBuf,
    threads: Option<usize>,
    stop: Arc<AtomicBool>,
    done: usize,
    ran: usize,
    total: usize,
    started: Instant,
}

impl Steps {
    /// Steps whose logs go to `logs`; `total` counts the steps planned (for
    /// the progress lines). Installs the Ctrl-C handler: the first press
    /// reaches the running step too, which stops cleanly (a training step
    /// after writing a checkpoint), and no further step starts.
    pub fn new(logs: &Path, threads: Option<usize>, total: usize) -> Result<Self> {
        let exe = std::env::current_exe().context("finding the cloze binary")?;
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        let stop = interrupt::install("stopping after the current step")?;
        Ok(Self {
            exe,
            logs: logs.to_path_buf(),
            threads,
            stop,
            done: 0,
            ran: 0,
            total,
            started: Instant::now(),
        })
    }

    /// Counts a step that needs no work (its result exists).
    pub fn skip(&mut self, name: &str) {
        self.done += 1;
        tracing::info!("[{}/{}] {name}: already done", self.done, self.total);
    }

    /// Runs `cloze ARGS`, its standard error (and output, unless captured)
    /// in `logs/NAME.log`. Returns the captured standard output and the
    /// step's wall time in seconds.
    pub fn run(&mut self, name: &str, args: &[OsString], capture: bool) -> Result<(String, f64)> {
        if self.stop.load(Ordering::SeqCst) {
            bail!(Interrupted(self.stopped_message()));
        }
        self.done += 1;
        self.ran += 1;
        let log_path = self.logs.join(format!("{}.log", name.replace('/', "-")));
        tracing::info!(
            "[{}/{}] {name} (log: {}; {:.0} min so far)",
            self.done,
            self.total,
            log_path.display(),
            self.started.elapsed().as_secs_f64() / 60.0
        );
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new(&self.exe);
        if let Some(t) = self.threads {
            cmd.arg("--threads").arg(t.to_string());
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stderr(log.try_clone().context("opening the step's log")?)
            .env("NO_COLOR", "1");
        if capture {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(log);
        }
        let start = Instant::now();
        let out = cmd
            .output()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let seconds = start.elapsed().as_secs_f64();
        if out.status.code() == Some(i32::from(EXIT_INTERRUPTED))
            || self.stop.load(Ordering::SeqCst)
        {
            bail!(Interrupted(self.stopped_message()));
        }
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log_path)
                .map(|t| last_lines(&t, 12))
                .unwrap_or_default();
            bail!(
                "step {name} failed ({}); the end of {}:\n{tail}",
                out.status,
                log_path.display()
            );
        }
        let stdout = String::from_utf8(out.stdout)
            .with_context(|| format!("the output of step {name} is not UTF-8"))?;
        Ok((stdout, seconds))
    }

    /// How many steps this invocation ran (not skipped).
    pub fn ran(&self) -> usize {
        self.ran
    }

    fn stopped_message(&self) -> String {
        "experiment stopped by Ctrl-C; run the same command again to continue from the step it stopped in".into()
    }
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `args` as `OsString`s.
pub fn os_args<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    args.into_iter().map(Into::into).collect()
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    cloze_models::hf::write_atomic(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Claims the experiment directory `out` for the whole command. An
/// experiment of this `kind` already there is continued when its
/// `experiment.json` holds every setting of `wanted` unchanged (settings it
/// holds beyond those, from older versions, do not matter) and refused
/// otherwise, unless `force`; anything else is checked like any output
/// (`OutputDir::check`), started with `run_dir::start` (which may remove only
/// `files` of an earlier run of ours) and given `wanted` as its settings.
pub fn claim_dir(
    out: &Path,
    kind: &cloze_fs::OutputKind,
    files: &[&str],
    wanted: &Value,
    force: bool,
) -> Result<cloze_fs::DirLock> {
    if kind.recognises(out) && !force {
        let lock = cloze_fs::DirLock::acquire(&out.join(super::run_dir::RUN_LOCK), out)?;
        let saved = read_json(&out.join("experiment.json"))?;
        let same = wanted.as_object().is_some_and(|w| {
            w.iter()
                .all(|(k, v)| saved.get(k).unwrap_or(&Value::Null) == v)
        });
        if !same {
            bail!(
                "{} holds this experiment with other settings ({saved}); use the same flags \
                 to continue it, another --out, or --force to start over",
                out.display()
            );
        }
        tracing::info!("continuing the experiment in {}", out.display());
        return Ok(lock);
    }
    let guard = cloze_fs::OutputDir::check(out, kind, &[], force)?;
    let lock = super::run_dir::start(&guard, out, kind, files)?;
    write_json(&out.join("experiment.json"), wanted)?;
    Ok(lock)
}

/// Runs a data step unless `product` exists; records its wall time.
pub fn step_once(
    steps: &mut Steps,
    results: &Path,
    name: &str,
    product: &Path,
    args: impl FnOnce() -> Vec<std::ffi::OsString>,
) -> Result<()> {
    if product.exists() {
        steps.skip(name);
        return Ok(());
    }
    let (_, seconds) = steps.run(name, &args(), false)?;
    save(
        &results.join("data").join(format!("{name}.json")),
        &json!({"seconds": seconds}),
    )
}

/// Runs a step whose standard output is a JSON object unless `result`
/// exists; stores that object with the step's wall time in `result`.
pub fn capture_once(
    steps: &mut Steps,
    name: &str,
    result: &Path,
    args: impl FnOnce() -> Vec<std::ffi::OsString>,
) -> Result<()> {
    if result.exists() {
        steps.skip(name);
        return Ok(());
    }
    let (stdout, seconds) = steps.run(name, &args(), true)?;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("step {name} printed no JSON object"))?;
    let value: Value =
        serde_json::from_str(line).with_context(|| format!("parsing the output of step {name}"))?;
    save(result, &json!({"seconds": seconds, "output": value}))
}

/// Writes a result file, creating its directory.
pub fn save(path: &Path, value: &Value) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    write_json(path, value)
}

/// The precision asked for, else bf16 where the CPU multiplies bf16 in
/// hardware and fp32 elsewhere.
pub fn precision_or_default(asked: Option<cloze_models::Precision>) -> cloze_models::Precision {
    asked.unwrap_or(if cloze_models::precision::cpu_has_bf16_gemm() {
        cloze_models::Precision::Bf16
    } else {
        cloze_models::Precision::Fp32
    })
}

/// The arguments of a training step: `cloze CMD --resume RUN` when `run`
/// holds a checkpoint (a step cut short), else `start()` through
/// [`start_over`].
pub fn resume_or(
    cmd: &str,
    run: &Path,
    start: impl FnOnce() -> Vec<std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    if has_checkpoint(run) {
        let mut v = os_args([cmd, "--resume"]);
        v.push(run.as_os_str().to_owned());
        v
    } else {
        start_over(run, start())
    }
}

/// The arguments that start a training step into `run`, which holds no
/// checkpoint (the caller checked): with `--force` added when `run` exists
/// anyway, a step killed before its first checkpoint (settings and metrics
/// only). The directory lies inside the experiment's own claimed output, so
/// starting it over loses nothing a checkpoint would have kept; without
/// `--force` the training command would refuse it and the experiment could
/// not continue.
fn start_over(run: &Path, mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let forced = args.iter().any(|a| a == "--force");
    if !forced && run.exists() {
        args.push("--force".into());
    }
    args
}

/// Whether a run directory holds at least one checkpoint to resume from.
pub fn has_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints"))
        .map(|mut d| d.any(|e| e.is_ok()))
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn strs(v: &[OsString]) -> Vec<&str> {
        v.iter().map(|a| a.to_str().unwrap_or("?")).collect()
    }

    #[test]
    fn a_training_step_resumes_or_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let start = || os_args(["finetune", "--out", "RUN"]);

        // Never started: the command as given.
        assert_eq!(
            strs(&resume_or("finetune", &run, start)),
            ["finetune", "--out", "RUN"]
        );

        // Killed before its first checkpoint: started over with --force.
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("finetune.toml"), "").unwrap();
        assert_eq!(
            strs(&resume_or("finetune", &run, start)),
            ["finetune", "--out", "RUN", "--force"]
        );
        // ... and never with --force twice.
        let forced = start_over(&run, os_args(["pretrain", "--force"]));
        assert_eq!(strs(&forced), ["pretrain", "--force"]);

        // Cut short after a checkpoint: resumed.
        std::fs::create_dir_all(run.join("checkpoints").join("step-00000010")).unwrap();
        let resumed = resume_or("finetune", &run, start);
        assert_eq!(
            strs(&resumed),
            ["finetune", "--resume", run.to_str().unwrap()]
        );
    }
}

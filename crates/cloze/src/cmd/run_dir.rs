//! What every training command (`cloze pretrain`, `cloze finetune`) does
//! with its run directory and its terminal: the one-writer lock, starting a
//! fresh run (removing only what an earlier run of the same kind wrote),
//! locking an existing run to resume it, and the progress bar that also
//! watches for Ctrl-C.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cloze_core::Report;
use cloze_fs::{DirLock, OutputDir, OutputKind, OutputState};
use cloze_train::metrics::TrainMetrics;
use cloze_train::trainer::Observer;
use indicatif::{ProgressBar, ProgressStyle};

/// The lock file inside a run directory, held for the whole command.
pub const RUN_LOCK: &str = ".cloze-run.lock";

/// A path as a shell word: unchanged when it needs no quoting, else in single quotes.
pub fn shell_word(p: &Path) -> String {
    let s = p.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./+:=@,%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Makes the checked `run` a fresh run directory: takes the run's own lock
/// (so a `--resume` of it cannot run at the same time), removes the entries
/// `files` that an earlier run of the same kind wrote when `--force`
/// replaced one (nothing else), and writes the marker of `kind`.
pub fn start(guard: &OutputDir, run: &Path, kind: &OutputKind, files: &[&str]) -> Result<DirLock> {
    std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    let lock = DirLock::acquire(&run.join(RUN_LOCK), run)?;
    if guard.state() == OutputState::Ours {
        for name in files {
            let p = run.join(name);
            // symlink_metadata: a link is removed as a link, never followed.
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                Ok(_) => std::fs::remove_file(&p),
                Err(_) => continue,
            }
            .with_context(|| format!("removing {} of the earlier run", p.display()))?;
        }
    }
    kind.write_marker(run)?;
    Ok(lock)
}

/// Takes the lock of an existing run directory for `--resume`: it must be
/// a directory holding `config_file` (else it is not `what`).
pub fn lock_existing(
    run: &Path,
    kind: &OutputKind,
    config_file: &str,
    what: &str,
) -> Result<DirLock> {
    if !run.is_dir() {
        bail!(
            "{} is not a directory: there is no run to resume (start one with --out)",
            run.display()
        );
    }
    if !run.join(config_file).is_file() {
        bail!(
            "{} is not {what} (it has no {config_file}): there is nothing to resume",
            run.display()
        );
    }
    let lock = DirLock::acquire(&run.join(RUN_LOCK), run)?;
    if !run.join(cloze_fs::MARKER).exists() {
        // A run made before markers: mark it now.
        kind.write_marker(run)?;
    }
    Ok(lock)
}

/// Progress bar, metrics echo and the Ctrl-C flag: the trainer's observer.
pub struct Driver {
    /// The bar, one position per optimiser step.
    pub bar: ProgressBar,
    /// Set by the Ctrl-C handler.
    pub stop: Arc<AtomicBool>,
}

impl Driver {
    /// A bar over `max_steps` steps, starting at `step`.
    pub fn new(max_steps: u64, step: u64, stop: Arc<AtomicBool>) -> Self {
        let bar = ProgressBar::new(max_steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_position(step);
        Self { bar, stop }
    }

    /// Prints a line above the bar, or straight to stderr when the bar is
    /// hidden (stderr is not a terminal): indicatif's `println` prints nothing
    /// then, and the line would be missing from logs written to files.
    pub fn line(&self, text: String) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }
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
    fn on_eval(&mut self, step: u64, r: &Report) {
        let ppl = r
            .perplexity("mlm")
            .map(|p| format!("  ppl {p:.1}"))
            .unwrap_or_default();
        self.line(format!("step {step:>6}  held-out {}{ppl}", r.summary()));
    }
    fn on_checkpoint(&mut self, step: u64, dir: &Path) {
        tracing::info!(step, dir = %dir.display(), "checkpoint");
    }
    fn should_stop(&mut self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

//! Checkpoints: written atomically, verified on load, pruned to the last K and the best.
//!
//! A checkpoint is a directory `checkpoints/step-NNNNNNNN/` holding the model in
//! HuggingFace format, `optimizer.safetensors` (AdamW moments) and `state.json`
//! (step, data cursor, best evaluation, SHA-256 of every other file). It is
//! assembled under a `.tmp-` name, every file and the directory are fsynced,
//! and only then is it renamed into place, so a crash or `kill -9` at any point
//! leaves either the complete new checkpoint or none, and never touches the
//! previous one. Dropout randomness is re-seeded from (seed, step) at every step,
//! so no generator state needs saving for an exact resume.
//!
//! Resuming normally continues from the newest checkpoint; if it is damaged the
//! error names the newest intact one ([`newest_intact`]). Resuming from an
//! older checkpoint ([`resolve`]) first moves the newer ones aside to
//! `checkpoints/superseded-step-N/` ([`supersede_newer`]): kept, never read,
//! pruned or overwritten by the trainer, for the user to inspect or delete.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::batch::PretrainModel;
use crate::error::{io_err, Error, Result};
use crate::optim::{AdamW, ParamSlot};

/// Where the trainer is: everything besides tensors that an exact resume needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps completed.
    pub step: u64,
    /// Data cursor: the epoch being read.
    pub epoch: u64,
    /// Data cursor: examples of that epoch's order already consumed.
    pub offset: usize,
    /// Non-padding tokens trained on.
    pub tokens_seen: u64,
    /// Batches skipped for a non-finite loss.
    pub skipped: u64,
    /// Best evaluation so far: (step, the held-out task's selection score,
    /// the MLM loss when pretraining; lower is better).
    pub best: Option<(u64, f64)>,
    /// Evaluations since the best one (early stopping counts these).
    #[serde(default)]
    pub evals_since_best: u64,
    /// The master seed the run was started with.
    pub seed: u64,
    /// libtorch threads the run used (bit-identical resume needs the same count).
    pub threads: i32,
}

impl TrainState {
    /// The state of a run that has not started.
    pub fn fresh(seed: u64, threads: i32) -> Self {
        Self {
            step: 0,
            epoch: 0,
            offset: 0,
            tokens_seen: 0,
            skipped: 0,
            best: None,
            evals_since_best: 0,
            seed,
            threads,
        }
    }
}

/// What `state.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Format version of this layout.
    pub format: u32,
    /// Trainer state.
    pub state: TrainState,
    /// The optimiser's parameter layout (checked on resume).
    pub optimizer_slots: Vec<ParamSlot>,
    /// SHA-256 (hex) of every other file in the checkpoint, by file name.
    pub sha256: BTreeMap<String, String>,
}

const FORMAT: u32 = 1;
const STATE_FILE: &str = "state.json";
const OPTIM_FILE: &str = "optimizer.safetensors";

/// The checkpoints directory of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Where the checkpoint of `step` is (or will be) published.
pub fn step_dir(run_dir: &Path, step: u64) -> PathBuf {
    checkpoints_dir(run_dir).join(step_dir_name(step))
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn parse_step(name: &str) -> Option<u64> {
    name.strip_prefix("step-").and_then(|s| s.parse().ok())
}

fn sha256_file(path: &Path) -> Result<String> {
    cloze_fs::digest::sha256_file(path).map_err(io_err("hashing", path))
}

fn fsync_path(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", path))
}

/// Writes a checkpoint for `state` atomically; returns its directory.
pub fn save(
    run_dir: &Path,
    model: &dyn PretrainModel,
    opt: &AdamW,
    state: &TrainState,
) -> Result<PathBuf> {
    let _span = tracing::info_span!("checkpoint", step = state.step).entered();
    let root = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&root).map_err(io_err("creating", &root))?;
    let tmp = root.join(format!(
        ".tmp-{}-{}",
        step_dir_name(state.step),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err("removing", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
    model.save(&tmp)?;
    let named: Vec<(&str, &Tensor)> = opt.state_tensors();
    Tensor::write_safetensors(&named, tmp.join(OPTIM_FILE))?;
    let mut sha256 = BTreeMap::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .map_err(io_err("listing", &tmp))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io_err("listing", &tmp))?;
    entries.sort();
    for p in &entries {
        if p.is_file() {
            fsync_path(p)?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            sha256.insert(name, sha256_file(p)?);
        }
    }
    let meta = CheckpointMeta {
        format: FORMAT,
        state: state.clone(),
        optimizer_slots: opt.slots().to_vec(),
        sha256,
    };
    let state_path = tmp.join(STATE_FILE);
    let text = serde_json::to_string_pretty(&meta).map_err(|source| Error::Json {
        path: state_path.clone(),
        source,
    })?;
    std::fs::write(&state_path, text).map_err(io_err("writing", &state_path))?;
    fsync_path(&state_path)?;
    fsync_path(&tmp)?;
    let dst = root.join(step_dir_name(state.step));
    if dst.exists() {
        // Only reachable when a resumed run re-saves the step it resumed from: the
        // old copy is moved aside first so the name is never half-written.
        let old = root.join(format!(
            ".old-{}-{}",
            step_dir_name(state.step),
            std::process::id()
        ));
        std::fs::rename(&dst, &old).map_err(io_err("renaming", &dst))?;
        std::fs::rename(&tmp, &dst).map_err(io_err("renaming", &tmp))?;
        std::fs::remove_dir_all(&old).map_err(io_err("removing", &old))?;
    } else {
        std::fs::rename(&tmp, &dst).map_err(io_err("renaming", &tmp))?;
    }
    fsync_path(&root)?;
    tracing::debug!(path = %dst.display(), "checkpoint written");
    Ok(dst)
}

/// Complete checkpoints of a run, oldest first.
pub fn list(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = checkpoints_dir(run_dir);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root).map_err(io_err("listing", &root))? {
        let e = e.map_err(io_err("listing", &root))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(step) = parse_step(&name) {
            out.push((step, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes leftovers of interrupted writes (`.tmp-*`, `.old-*`).
pub fn clean_partial(run_dir: &Path) -> Result<()> {
    let root = checkpoints_dir(run_dir);
    if !root.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(&root).map_err(io_err("listing", &root))? {
        let e = e.map_err(io_err("listing", &root))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || name.starts_with(".old-") {
            std::fs::remove_dir_all(e.path()).map_err(io_err("removing", e.path()))?;
        }
    }
    Ok(())
}

/// Deletes all but the newest `keep_last` checkpoints and (if `keep_step`) the best one.
pub fn prune(run_dir: &Path, keep_last: usize, keep_step: Option<u64>) -> Result<()> {
    let all = list(run_dir)?;
    let cut = all.len().saturating_sub(keep_last);
    for (step, path) in &all[..cut] {
        if Some(*step) != keep_step {
            std::fs::remove_dir_all(path).map_err(io_err("removing", path))?;
        }
    }
    Ok(())
}

/// Reads and verifies a checkpoint's metadata: every file must exist and match its checksum.
pub fn verify(dir: &Path) -> Result<CheckpointMeta> {
    let state_path = dir.join(STATE_FILE);
    let corrupt = |problem: String| Error::CorruptCheckpoint {
        path: dir.to_owned(),
        problem,
        newest_intact: None,
    };
    let text = std::fs::read_to_string(&state_path)
        .map_err(|e| corrupt(format!("cannot read {STATE_FILE}: {e}")))?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .map_err(|e| corrupt(format!("{STATE_FILE} does not parse: {e}")))?;
    if meta.format != FORMAT {
        return Err(corrupt(format!(
            "format {} (this build reads {FORMAT})",
            meta.format
        )));
    }
    if !meta.sha256.contains_key(OPTIM_FILE) {
        return Err(corrupt(format!("{OPTIM_FILE} is not listed")));
    }
    for (name, want) in &meta.sha256 {
        let p = dir.join(name);
        if !p.is_file() {
            return Err(corrupt(format!("{name} is missing")));
        }
        let got = sha256_file(&p)?;
        if &got != want {
            return Err(corrupt(format!(
                "{name} does not match its SHA-256 (file damaged)"
            )));
        }
    }
    Ok(meta)
}

/// Restores model weights and optimiser state from `dir`; returns the trainer state.
pub fn restore(dir: &Path, model: &dyn PretrainModel, opt: &mut AdamW) -> Result<TrainState> {
    let meta = verify(dir)?;
    load_verified(dir, &meta, model, opt)?;
    Ok(meta.state)
}

/// Loads a checkpoint whose metadata [`verify`] has just returned.
pub fn load_verified(
    dir: &Path,
    meta: &CheckpointMeta,
    model: &dyn PretrainModel,
    opt: &mut AdamW,
) -> Result<()> {
    model.load_weights(dir)?;
    let tensors = Tensor::read_safetensors(dir.join(OPTIM_FILE))?;
    opt.load_state(&tensors, meta.state.step, &meta.optimizer_slots)?;
    Ok(())
}

/// The newest complete checkpoint of a run.
pub fn latest(run_dir: &Path) -> Result<(u64, PathBuf)> {
    list(run_dir)?
        .pop()
        .ok_or_else(|| Error::NoCheckpoint(run_dir.to_owned()))
}

/// The newest checkpoint older than `below` whose files all verify, if any.
pub fn newest_intact(run_dir: &Path, below: u64) -> Result<Option<(u64, PathBuf)>> {
    for (step, dir) in list(run_dir)?.into_iter().rev() {
        if step < below && verify(&dir).is_ok() {
            return Ok(Some((step, dir)));
        }
    }
    Ok(None)
}

/// Finds one of the run's checkpoints from what a user typed: a step number
/// (`500`), a directory name (`step-00000500`) or a path to the directory.
/// Anything that is not a complete checkpoint of this run is refused with the
/// steps that exist.
pub fn resolve(run_dir: &Path, spec: &str) -> Result<PathBuf> {
    let all = list(run_dir)?;
    let not_found = || Error::CheckpointNotFound {
        run_dir: run_dir.to_owned(),
        spec: spec.to_owned(),
        available: all.iter().map(|(s, _)| *s).collect(),
    };
    if let Ok(step) = spec.trim().parse::<u64>() {
        return all
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, p)| p.clone())
            .ok_or_else(not_found);
    }
    let as_given = Path::new(spec);
    let candidates = [as_given.to_path_buf(), checkpoints_dir(run_dir).join(spec)];
    let Some(found) = candidates.iter().find(|p| p.is_dir()) else {
        return Err(not_found());
    };
    // Compare real paths, so `run/checkpoints/step-5/../step-5` or a relative
    // path from another directory still name the same checkpoint.
    let real = std::fs::canonicalize(found).map_err(io_err("resolving", found))?;
    for (_, p) in &all {
        if std::fs::canonicalize(p).is_ok_and(|q| q == real) {
            return Ok(p.clone());
        }
    }
    Err(not_found())
}

/// Moves every checkpoint newer than `step` to `checkpoints/superseded-step-N`
/// (with `-2`, `-3`, ... if that name is taken), where the trainer never reads,
/// prunes or overwrites it. Resuming from an older checkpoint calls this, so
/// the newer ones (usually damaged) are neither picked up by a later `--resume`
/// nor counted against `keep_last`, and are still there for the user to inspect
/// or delete. Returns the new paths.
pub fn supersede_newer(run_dir: &Path, step: u64) -> Result<Vec<PathBuf>> {
    let root = checkpoints_dir(run_dir);
    let mut moved = Vec::new();
    for (s, dir) in list(run_dir)? {
        if s <= step {
            continue;
        }
        let base = format!("superseded-{}", step_dir_name(s));
        let mut dst = root.join(&base);
        let mut k = 2;
        while dst.exists() {
            dst = root.join(format!("{base}-{k}"));
            k += 1;
        }
        std::fs::rename(&dir, &dst).map_err(io_err("renaming", &dir))?;
        tracing::warn!(from = %dir.display(), to = %dst.display(), "newer checkpoint set aside");
        moved.push(dst);
    }
    if !moved.is_empty() {
        fsync_path(&root)?;
    }
    Ok(moved)
}

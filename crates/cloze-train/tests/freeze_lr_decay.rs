//! `[optimizer] freeze` and `layer_lr_decay` on the tiny BERT of `common`
//! (two layers, an MLM head): what they select, that frozen weights never
//! move, the per-depth step sizes, exact resume, and that the defaults change
//! nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use cloze_train::checkpoint;
use cloze_train::config::TrainConfig;
use cloze_train::optim::layer_depth;
use cloze_train::trainer::{Observer, Quiet, RunOutcome, Trainer};
use cloze_train::Error;
use common::*;
use tch::Tensor;

/// Asks the trainer to stop once `at` steps are done.
struct StopAt {
    at: u64,
    done: u64,
}
impl Observer for StopAt {
    fn on_step(&mut self, step: u64, _: u64, _: f64, _: f64, _: f64) {
        self.done = step;
    }
    fn should_stop(&mut self) -> bool {
        self.done >= self.at
    }
}

fn data() -> Synthetic {
    Synthetic {
        n: 40,
        seed: 3,
        pairs: false,
    }
}

/// Copies of every variable of the model, by name.
fn snapshot(vs: &tch::nn::VarStore) -> BTreeMap<String, Tensor> {
    vs.variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}

/// Trains `cfg` from scratch in `dir` without evaluation; returns the
/// variables before and after.
fn train(
    cfg: &TrainConfig,
    dir: &Path,
) -> anyhow::Result<(BTreeMap<String, Tensor>, BTreeMap<String, Tensor>)> {
    tch::set_num_threads(1);
    let m = model(cfg, false);
    let before = snapshot(&m.vs);
    let mut t = Trainer::new(cfg.clone(), &m, &m.vs, dir)?;
    let out = t.run(&data(), None, &mut Quiet)?;
    assert!(matches!(out, RunOutcome::Finished { .. }), "{out:?}");
    Ok((before, snapshot(&m.vs)))
}

fn bit_identical(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

#[test]
fn frozen_parameters_stay_bit_identical_while_the_rest_train() -> anyhow::Result<()> {
    let _g = torch_lock();
    let dir = tempfile::tempdir()?;
    let cfg = config(6).with_overrides(&[
        r#"optimizer.freeze=["embeddings", "encoder.layer.0"]"#.into(),
        "checkpoint.every_steps=0".into(),
    ])?;
    let (before, after) = train(&cfg, dir.path())?;
    let (mut frozen, mut moved) = (0, 0);
    for (name, old) in &before {
        let now = &after[name];
        if name.starts_with("bert.embeddings.") || name.starts_with("bert.encoder.layer.0.") {
            assert!(bit_identical(old, now), "frozen {name} changed");
            frozen += 1;
        } else {
            assert!(!bit_identical(old, now), "{name} did not train");
            moved += 1;
        }
    }
    assert!(frozen >= 5 && moved >= 10, "{frozen} frozen, {moved} moved");
    // The optimiser's saved layout leaves the frozen tensors out entirely.
    let (_, ck) = checkpoint::latest(dir.path())?;
    let meta = checkpoint::verify(&ck)?;
    assert!(!meta.optimizer_slots.is_empty());
    for s in &meta.optimizer_slots {
        assert!(
            !s.name.starts_with("bert.embeddings.") && !s.name.starts_with("bert.encoder.layer.0."),
            "{} is in the optimiser",
            s.name
        );
    }
    Ok(())
}

#[test]
fn a_resumed_run_with_freeze_and_layer_decay_matches_the_straight_run() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let cfg = config(8).with_overrides(&[
        r#"optimizer.freeze=["embeddings.position_embeddings", "encoder.layer.1.output"]"#.into(),
        "optimizer.layer_lr_decay=0.7".into(),
    ])?;
    let a = tempfile::tempdir()?;
    let b = tempfile::tempdir()?;
    let (_, straight) = train(&cfg, a.path())?;
    {
        let m = model(&cfg, false);
        let mut t = Trainer::new(cfg.clone(), &m, &m.vs, b.path())?;
        let out = t.run(&data(), None, &mut StopAt { at: 4, done: 0 })?;
        assert!(
            matches!(out, RunOutcome::Interrupted { step: 4, .. }),
            "{out:?}"
        );
    }
    let m = model(&cfg, false);
    let mut t = Trainer::resume(cfg, &m, &m.vs, b.path())?;
    assert_eq!(t.state().step, 4);
    t.run(&data(), None, &mut Quiet)?;
    let (la, lb) = (train_losses(a.path()), train_losses(b.path()));
    assert_eq!(la.len(), 8);
    assert_eq!(la, lb, "the resumed run's losses differ");
    let resumed = snapshot(&m.vs);
    for (name, t) in &straight {
        assert!(
            bit_identical(t, &resumed[name]),
            "{name} differs after resume"
        );
    }
    // The saved layout records the per-slot scales.
    let (_, ck) = checkpoint::latest(b.path())?;
    let meta = checkpoint::verify(&ck)?;
    let emb = meta
        .optimizer_slots
        .iter()
        .find(|s| s.name == "bert.embeddings.word_embeddings.weight")
        .ok_or_else(|| anyhow::anyhow!("no word embeddings slot"))?;
    assert!(
        (emb.lr_scale - 0.7f64.powi(3)).abs() < 1e-12,
        "{}",
        emb.lr_scale
    );
    Ok(())
}

#[test]
fn an_unknown_pattern_is_an_error_naming_it_and_the_prefixes() -> anyhow::Result<()> {
    let _g = torch_lock();
    let dir = tempfile::tempdir()?;
    let cfg = config(2).with_overrides(&[r#"optimizer.freeze=["encoder.layers.0"]"#.into()])?;
    let m = model(&cfg, false);
    let err = Trainer::new(cfg.clone(), &m, &m.vs, dir.path()).expect_err("a typo is refused");
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "optimizer.freeze",
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("`encoder.layers.0`"), "{msg}");
    assert!(
        msg.contains("cls, embeddings, encoder.layer.0-1"),
        "the prefixes there are: {msg}"
    );
    // Layer 2 does not exist in a two-layer model either.
    let two = config(2).with_overrides(&[r#"optimizer.freeze=["encoder.layer.2-5"]"#.into()])?;
    assert!(Trainer::new(two, &m, &m.vs, dir.path()).is_err());
    // Freezing everything leaves nothing to train.
    let all = config(2).with_overrides(&[r#"optimizer.freeze=["bert", "cls"]"#.into()])?;
    let err = Trainer::new(all, &m, &m.vs, dir.path()).expect_err("nothing trains");
    assert!(err.to_string().contains("nothing would train"), "{err}");
    assert!(m.vs.variables().values().all(Tensor::requires_grad));
    Ok(())
}

/// Adam's first step moves every parameter with a clear gradient by about its
/// learning rate, so the largest move of each tensor is `lr * decay^(L+1-depth)`.
#[test]
fn layer_lr_decay_scales_the_first_step_by_depth() -> anyhow::Result<()> {
    let _g = torch_lock();
    let (lr, decay) = (1e-2f64, 0.5f64);
    let cfg = config(1).with_overrides(&[
        format!("optimizer.layer_lr_decay={decay}"),
        "optimizer.weight_decay=0.0".into(),
        "optimizer.eps=1e-12".into(),
    ])?;
    let m = model(&cfg, false);
    let before = snapshot(&m.vs);
    let mut opt = cloze_train::AdamW::new(&m.vs, &cfg.optimizer)?;
    let batch = cloze_train::TensorBatch::from_batch(
        &data().make(0, &(0..8).collect::<Vec<_>>()),
        tch::Device::Cpu,
    )?;
    cloze_train::trainer::train_step(
        &m,
        &cloze_train::objective::Mlm { weight: 1.0 },
        &mut opt,
        &batch,
        lr,
        1.0,
    )?;
    let after = snapshot(&m.vs);
    let vars = m.vs.variables();
    let layers = 2;
    let mut max_move = BTreeMap::new();
    for (name, old) in &before {
        // The attention key bias has no gradient in exact arithmetic (softmax
        // ignores a constant added to every score), only rounding noise near
        // eps: Adam's first step is then not `lr`-sized.
        let grad = vars[name].grad().abs().max().double_value(&[]);
        if grad < 1e-6 {
            assert!(
                name.ends_with("attention.self.key.bias"),
                "{name}: gradient {grad}"
            );
            continue;
        }
        let moved = (&after[name] - old).abs().max().double_value(&[]);
        let depth = layer_depth(name, layers);
        let expected = lr * decay.powi((layers + 1 - depth) as i32);
        let ratio = moved / expected;
        assert!(
            (0.99..1.01).contains(&ratio),
            "{name} (depth {depth}) moved {moved}, expected {expected}"
        );
        let group = max_move.entry(depth).or_insert(0.0f64);
        *group = group.max(moved);
    }
    // Every depth is present, and the embeddings move decay^(L+1) times as far as the head.
    assert_eq!(max_move.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
    let ratio = max_move[&0] / max_move[&3];
    assert!((ratio / decay.powi(3) - 1.0).abs() < 0.01, "{ratio}");
    Ok(())
}

#[test]
fn the_defaults_are_bit_identical_to_leaving_the_settings_out() -> anyhow::Result<()> {
    let _g = torch_lock();
    let absent = config(5);
    assert!(absent.optimizer.freeze.is_empty());
    assert_eq!(absent.optimizer.layer_lr_decay, 1.0);
    let explicit = absent.with_overrides(&[
        "optimizer.layer_lr_decay=1.0".into(),
        "optimizer.freeze=[]".into(),
    ])?;
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (_, wa) = train(&absent, a.path())?;
    let (_, wb) = train(&explicit, b.path())?;
    let (la, lb) = (train_losses(a.path()), train_losses(b.path()));
    assert_eq!(la.len(), 5);
    assert_eq!(la, lb);
    assert!(la[4].1 < la[0].1, "the model trained: {la:?}");
    for (name, t) in &wa {
        assert!(bit_identical(t, &wb[name]), "{name} differs");
    }
    // The saved optimiser layout has the format it had before the settings existed.
    let (_, ck) = checkpoint::latest(b.path())?;
    let state = std::fs::read_to_string(ck.join("state.json"))?;
    assert!(state.contains("\"optimizer_slots\""), "{state}");
    assert!(!state.contains("lr_scale"), "{state}");
    Ok(())
}

#[test]
fn the_settings_are_validated_and_fixed_for_a_resume() -> anyhow::Result<()> {
    let cfg = config(4);
    for (over, field) in [
        ("optimizer.layer_lr_decay=0.0", "optimizer.layer_lr_decay"),
        ("optimizer.layer_lr_decay=1.5", "optimizer.layer_lr_decay"),
        (
            r#"optimizer.freeze=["encoder.layer.5-2"]"#,
            "optimizer.freeze",
        ),
        (r#"optimizer.freeze=["encoder..layer"]"#, "optimizer.freeze"),
        (r#"optimizer.freeze=[""]"#, "optimizer.freeze"),
    ] {
        let err = cfg.with_overrides(&[over.into()]).expect_err(over);
        assert!(
            matches!(&err, Error::InvalidConfig { field: f, .. } if *f == field),
            "{over}: {err}"
        );
    }
    // A saved configuration from before the settings existed reads as the defaults.
    let saved = cfg.to_toml()?;
    let text: String = saved
        .lines()
        .filter(|l| !l.starts_with("freeze") && !l.starts_with("layer_lr_decay"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(text, saved, "the settings are written to config.toml");
    let old = TrainConfig::from_toml(&text, Path::new("old.toml"))?;
    assert!(old.resume_changes(&cfg)?.is_empty());
    // Changing either on resume is refused.
    for over in [
        r#"optimizer.freeze=["embeddings"]"#,
        "optimizer.layer_lr_decay=0.9",
    ] {
        let changed = cfg.with_overrides(&[over.into()])?;
        let err = cfg.resume_changes(&changed).expect_err(over);
        assert!(matches!(err, Error::ResumeChangesRun { .. }), "{err}");
    }
    Ok(())
}

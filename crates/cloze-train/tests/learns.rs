//! The whole stack (BERT, flat AdamW, trainer) learns to use context: on
//! synthetic arithmetic sequences a hidden token is predictable only from its
//! neighbours, and held-out accuracy at `[MASK]` positions must rise far above
//! what a context-free predictor can reach.

mod common;

use cloze_train::trainer::{Quiet, RunOutcome, Trainer};
use common::*;

#[test]
fn held_out_accuracy_at_mask_positions_shows_contextual_learning() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let dir = tempfile::tempdir()?;
    let cfg = config(300).with_overrides(&[
        "model.hidden_dropout_prob=0.0".into(),
        "model.attention_probs_dropout_prob=0.0".into(),
        "eval.every_steps=0".into(),
        "checkpoint.every_steps=0".into(),
        "run.log_every=50".into(),
    ])?;
    let m = model(&cfg, false);
    let data = Synthetic {
        n: 400,
        seed: 3,
        pairs: false,
    };
    let mut t = Trainer::new(cfg, &m, &m.vs, dir.path())?;
    let RunOutcome::Finished { eval: Some(e), .. } = t.run(&data, Some(&eval_set()), &mut Quiet)?
    else {
        panic!("no final evaluation")
    };
    // 35 ordinary token values: a context-free guess is right about 1/35 of the time.
    let acc = e.accuracies.get("mlm@mask").copied().unwrap_or(0.0);
    eprintln!("accuracy at [MASK] positions: {acc}");
    assert!(acc > 0.3, "accuracy at [MASK] positions {acc}");
    Ok(())
}

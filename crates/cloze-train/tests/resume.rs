//! Exact resume and the failure paths of the trainer: interruption, NaN, damaged
//! checkpoints, and crashes in the middle of a checkpoint write.

mod common;

use cloze_train::checkpoint;
use cloze_train::config::OnNonFinite;
use cloze_train::trainer::{Observer, Quiet, RunOutcome, Trainer};
use cloze_train::Error;
use common::*;

/// Asks the trainer to stop once `at` steps are done (what Ctrl-C does in the driver).
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

fn straight(dir: &std::path::Path, steps: u64) -> anyhow::Result<RunOutcome> {
    Ok(fresh_run(dir, steps, Some(&eval_set()))?)
}

#[test]
fn resumed_run_reproduces_the_uninterrupted_losses_bit_for_bit() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let a = tempfile::tempdir()?;
    let b = tempfile::tempdir()?;
    // 12 steps at 8 x 2 sequences from 40 examples: crosses epoch boundaries.
    straight(a.path(), 12)?;
    let data = Synthetic {
        n: 40,
        seed: 3,
        pairs: false,
    };
    let cfg = config(12);
    {
        let m = model(&cfg, false);
        let mut t = Trainer::new(cfg.clone(), &m, &m.vs, b.path())?;
        let out = t.run(&data, Some(&eval_set()), &mut StopAt { at: 6, done: 0 })?;
        assert!(
            matches!(out, RunOutcome::Interrupted { step: 6, .. }),
            "{out:?}"
        );
    }
    {
        // A fresh process would build a new, differently initialised model: the
        // checkpoint must overwrite all of it.
        let m = common::model(&cfg.with_overrides(&["run.seed=7".into()])?, false);
        tch::manual_seed(12345);
        let mut t = Trainer::resume(cfg, &m, &m.vs, b.path())?;
        assert_eq!(t.state().step, 6);
        let out = t.run(&data, Some(&eval_set()), &mut Quiet)?;
        assert!(matches!(out, RunOutcome::Finished { .. }));
    }
    let la = train_losses(a.path());
    let lb = train_losses(b.path());
    assert_eq!(la.len(), 12);
    assert_eq!(
        la, lb,
        "losses of the resumed run differ from the straight run"
    );
    // The losses actually moved (the test would be vacuous on a frozen model).
    assert!(la[11].1 < la[0].1, "{la:?}");
    Ok(())
}

#[test]
fn nan_loss_stops_with_the_last_checkpoint_intact() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let dir = tempfile::tempdir()?;
    // A learning rate of 1e30 blows the weights up after the first updates.
    let cfg = config(40).with_overrides(&[
        "optimizer.lr=1e30".into(),
        "optimizer.max_grad_norm=0.0".into(),
        "checkpoint.every_steps=1".into(),
    ])?;
    let m = model(&cfg, false);
    let data = Synthetic {
        n: 40,
        seed: 3,
        pairs: false,
    };
    let mut t = Trainer::new(cfg.clone(), &m, &m.vs, dir.path())?;
    let Err(err) = t.run(&data, None, &mut Quiet) else {
        panic!("a learning rate of 1e30 must fail")
    };
    let Error::NonFiniteLoss {
        step, last_good, ..
    } = &err
    else {
        panic!("expected NonFiniteLoss, got {err:?}")
    };
    assert!(*step >= 1 && *step < 40);
    let last = last_good
        .clone()
        .expect("a checkpoint was written before the blow-up");
    checkpoint::verify(&last)?;
    assert!(err.to_string().contains("optimizer.lr"), "{err}");

    // With `skip`, the run keeps going but gives up after ten bad batches in a row.
    let dir2 = tempfile::tempdir()?;
    let mut skip = cfg;
    skip.run.on_nonfinite = OnNonFinite::Skip;
    let m2 = model(&skip, false);
    let mut t2 = Trainer::new(skip, &m2, &m2.vs, dir2.path())?;
    let Err(err2) = t2.run(&data, None, &mut Quiet) else {
        panic!("ten skipped batches must fail")
    };
    assert!(matches!(err2, Error::TooManyNonFinite(10)), "{err2:?}");
    Ok(())
}

#[test]
fn damaged_checkpoint_is_refused_on_resume() -> anyhow::Result<()> {
    let _g = torch_lock();
    let dir = tempfile::tempdir()?;
    straight(dir.path(), 4)?;
    let (_, ck) = checkpoint::latest(dir.path())?;
    let f = ck.join("optimizer.safetensors");
    let mut bytes = std::fs::read(&f)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&f, bytes)?;
    let cfg = config(8);
    let m = model(&cfg, false);
    let Err(err) = Trainer::resume(cfg, &m, &m.vs, dir.path()) else {
        panic!("a damaged checkpoint must be refused")
    };
    assert!(matches!(err, Error::CorruptCheckpoint { .. }), "{err:?}");
    assert!(err.to_string().contains("optimizer.safetensors"), "{err}");
    Ok(())
}

#[test]
fn a_write_killed_halfway_leaves_the_previous_checkpoint_usable() -> anyhow::Result<()> {
    let _g = torch_lock();
    let dir = tempfile::tempdir()?;
    straight(dir.path(), 4)?;
    let (step, good) = checkpoint::latest(dir.path())?;
    // What a kill -9 during the next write leaves behind: a partial temp directory.
    let partial = checkpoint::checkpoints_dir(dir.path()).join(".tmp-step-00000008-999");
    std::fs::create_dir_all(&partial)?;
    std::fs::write(partial.join("model.safetensors"), b"truncated")?;
    assert_eq!(checkpoint::latest(dir.path())?, (step, good.clone()));
    checkpoint::verify(&good)?;
    let cfg = config(6);
    let m = model(&cfg, false);
    let mut t = Trainer::resume(cfg, &m, &m.vs, dir.path())?;
    assert!(!partial.exists(), "the partial write is cleaned up");
    assert_eq!(t.state().step, 4);
    t.run(
        &Synthetic {
            n: 40,
            seed: 3,
            pairs: false,
        },
        None,
        &mut Quiet,
    )?;
    assert_eq!(checkpoint::latest(dir.path())?.0, 6);
    Ok(())
}

#[test]
fn retention_keeps_the_last_k_and_the_best() -> anyhow::Result<()> {
    let _g = torch_lock();
    let dir = tempfile::tempdir()?;
    straight(dir.path(), 12)?;
    let steps: Vec<u64> = checkpoint::list(dir.path())?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    // every 4 steps + final: 4, 8, 12; keep_last = 2 -> 8, 12 (+ best if older).
    assert!(steps.ends_with(&[8, 12]), "{steps:?}");
    assert!(steps.len() <= 3);
    Ok(())
}

#[test]
fn mlm_plus_pair_objective_trains_and_reports_pair_accuracy() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let dir = tempfile::tempdir()?;
    let cfg = config(6).with_overrides(&["objective.kind=\"mlm_sop\"".into()])?;
    let m = model(&cfg, true);
    let data = Synthetic {
        n: 40,
        seed: 3,
        pairs: true,
    };
    let mut ev = eval_set();
    for b in &mut ev.batches {
        b.targets.pair = Some((0..b.batch_size as i64).map(|i| i % 2).collect());
    }
    let mut t = Trainer::new(cfg, &m, &m.vs, dir.path())?;
    let out = t.run(&data, Some(&ev), &mut Quiet)?;
    let RunOutcome::Finished { eval: Some(e), .. } = out else {
        panic!("no final eval")
    };
    assert!(e.accuracies.contains_key("pair"), "{e:?}");
    let recs = cloze_train::metrics::read_records(&cloze_train::metrics::metrics_path(dir.path()))?;
    assert!(recs.iter().any(
        |r| matches!(r, cloze_train::metrics::MetricsRecord::Train(t) if t.report.losses.contains_key("sop") && t.report.accuracies.contains_key("sop"))
    ));
    // A pair objective on data without pair labels is an error, not a silent MLM run.
    let dir2 = tempfile::tempdir()?;
    let cfg2 = config(2).with_overrides(&["objective.kind=\"mlm_nsp\"".into()])?;
    let m2 = model(&cfg2, true);
    let mut t2 = Trainer::new(cfg2, &m2, &m2.vs, dir2.path())?;
    assert!(matches!(
        t2.run(
            &Synthetic {
                n: 40,
                seed: 3,
                pairs: false
            },
            None,
            &mut Quiet
        ),
        Err(Error::DataMismatch(_))
    ));
    Ok(())
}

#[test]
fn every_bert_parameter_is_updated_by_the_flat_optimizer() -> anyhow::Result<()> {
    let _g = torch_lock();
    let cfg = config(1);
    let m = model(&cfg, false);
    let before: Vec<(String, tch::Tensor)> =
        m.vs.variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach().copy()))
            .collect();
    let mut opt = cloze_train::AdamW::new(&m.vs, &cfg.optimizer)?;
    let batch = cloze_train::TensorBatch::from_batch(
        &Synthetic {
            n: 40,
            seed: 3,
            pairs: false,
        }
        .make(0, &(0..8).collect::<Vec<_>>()),
        tch::Device::Cpu,
    )?;
    for _ in 0..3 {
        cloze_train::trainer::train_step(
            &m,
            &cloze_train::objective::Mlm { weight: 1.0 },
            &mut opt,
            &batch,
            1e-2,
            1.0,
        )?;
    }
    let after = m.vs.variables();
    for (name, old) in &before {
        // The padding row of the word embeddings gets no gradient; every tensor as a whole must move.
        let delta = (&after[name] - old)
            .abs()
            .sum(tch::Kind::Float)
            .double_value(&[]);
        assert!(delta > 0.0, "{name} never changed");
    }
    Ok(())
}

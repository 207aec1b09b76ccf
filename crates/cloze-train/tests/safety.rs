//! What the trainer refuses, and how it says what to do instead: a damaged
//! newest checkpoint (naming the newest intact one), resuming from an older
//! checkpoint, a run already past `run.max_steps`, data longer than the
//! position embeddings, and batches with nothing masked.

mod common;

use cloze_mask::batch::Batch;
use cloze_train::checkpoint;
use cloze_train::trainer::{DataSource, Quiet, Trainer};
use cloze_train::Error;
use common::*;

fn train(dir: &std::path::Path, steps: u64) -> anyhow::Result<()> {
    fresh_run(dir, steps, None)?;
    Ok(())
}

fn damage(ck: &std::path::Path) -> anyhow::Result<()> {
    let f = ck.join("optimizer.safetensors");
    let mut bytes = std::fs::read(&f)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&f, bytes)?;
    Ok(())
}

#[test]
fn damaged_newest_checkpoint_names_the_newest_intact_one_and_resume_from_sets_newer_aside(
) -> anyhow::Result<()> {
    let _g = torch_lock();
    let dir = tempfile::tempdir()?;
    // Checkpoints every 4 steps, keep 2: steps 4 and 8.
    train(dir.path(), 8)?;
    let steps: Vec<u64> = checkpoint::list(dir.path())?
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(steps, [4, 8]);
    let (_, newest) = checkpoint::latest(dir.path())?;
    damage(&newest)?;

    let cfg = config(12);
    let m = model(&cfg, false);
    let Err(err) = Trainer::resume(cfg.clone(), &m, &m.vs, dir.path()) else {
        panic!("a damaged newest checkpoint must be refused")
    };
    match &err {
        Error::CorruptCheckpoint {
            newest_intact: Some((4, p)),
            ..
        } => assert!(p.ends_with("step-00000004"), "{p:?}"),
        other => panic!("expected the newest intact checkpoint named, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("newest intact checkpoint is step 4"),
        "{err}"
    );

    // By step number, by directory name, by path; anything else lists the steps.
    let four = checkpoint::resolve(dir.path(), "4")?;
    assert_eq!(checkpoint::resolve(dir.path(), "step-00000004")?, four);
    assert_eq!(
        checkpoint::resolve(dir.path(), &four.display().to_string())?,
        four
    );
    let missing = checkpoint::resolve(dir.path(), "5").expect_err("no checkpoint at step 5");
    assert!(missing.to_string().contains("4, 8"), "{missing}");
    let outside = tempfile::tempdir()?;
    assert!(checkpoint::resolve(dir.path(), &outside.path().display().to_string()).is_err());

    let m = model(&cfg, false);
    let mut t = Trainer::resume_from(cfg, &m, &m.vs, dir.path(), &four)?;
    assert_eq!(t.state().step, 4);
    let ckdir = checkpoint::checkpoints_dir(dir.path());
    let aside = ckdir.join("superseded-step-00000008");
    assert!(aside.is_dir(), "the newer checkpoint is kept aside");
    assert!(!newest.exists());
    t.run(
        &Synthetic {
            n: 40,
            seed: 3,
            pairs: false,
        },
        None,
        &mut Quiet,
    )?;
    // The run went on from step 4; the set-aside copy was neither pruned nor overwritten.
    assert_eq!(checkpoint::latest(dir.path())?.0, 12);
    assert!(aside.is_dir());
    assert!(checkpoint::verify(&aside).is_err(), "still the damaged one");
    Ok(())
}

#[test]
fn resuming_past_max_steps_says_where_the_run_is() -> anyhow::Result<()> {
    let _g = torch_lock();
    let dir = tempfile::tempdir()?;
    train(dir.path(), 8)?;
    let cfg = config(3);
    let m = model(&cfg, false);
    let Err(err) = Trainer::resume(cfg, &m, &m.vs, dir.path()) else {
        panic!("max_steps below the checkpoint's step must be refused")
    };
    assert!(
        matches!(
            err,
            Error::AlreadyPast {
                step: 8,
                max_steps: 3
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("already at step 8"), "{err}");
    Ok(())
}

/// Synthetic batches with every masked target removed: what a masking scheme
/// that selects nothing produces.
struct NothingMasked(Synthetic);

impl DataSource for NothingMasked {
    fn num_examples(&self) -> usize {
        self.0.num_examples()
    }
    fn epoch_order(&self, epoch: u64) -> cloze_train::Result<Vec<usize>> {
        self.0.epoch_order(epoch)
    }
    fn batch(&self, epoch: u64, first: u64, indices: &[usize]) -> cloze_train::Result<Batch> {
        let mut b = self.0.batch(epoch, first, indices)?;
        b.targets.masked_lm.clear();
        Ok(b)
    }
}

#[test]
fn a_batch_with_nothing_masked_is_a_masking_error_not_a_nan_loss() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let dir = tempfile::tempdir()?;
    let cfg = config(4);
    let m = model(&cfg, false);
    let mut t = Trainer::new(cfg, &m, &m.vs, dir.path())?;
    let data = NothingMasked(Synthetic {
        n: 40,
        seed: 3,
        pairs: false,
    });
    let Err(err) = t.run(&data, None, &mut Quiet) else {
        panic!("no masked token must be an error")
    };
    assert!(matches!(err, Error::NothingMasked { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("masking.select.rate"), "{text}");
    assert!(!text.contains("optimizer.lr"), "{text}");
    Ok(())
}

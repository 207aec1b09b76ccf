//! CugLM code pretraining through the trainer's types: the loss is the
//! weighted sum of its four parts and ablations drop theirs, the
//! left-to-right rows cannot see the future, the typed (type-then-token)
//! prediction uses the category, and a short run lowers the held-out losses.

mod common;

use cloze_core::{SpecialTokens, NO_WORD};
use cloze_mask::{CodeBuilder, CodeConfig, CodeSequence};
use cloze_train::code::{CodeEval, CodeLoss, CodePretrainer, CodeSource};
use cloze_train::trainer::{HeldOut, Quiet, RunOutcome, Trainer};
use cloze_train::{Objective, PretrainModel, TensorBatch};
use common::*;
use tch::Device;

const CATEGORIES: i64 = 4;

fn specials() -> SpecialTokens {
    SpecialTokens {
        vocab_size: VOCAB,
        pad: 0,
        unk: 1,
        cls: 2,
        sep: 3,
        mask: 4,
        pseudo_mask: Some(5),
        all_special: vec![0, 1, 2, 3, 4, 5],
    }
}

/// A toy "language": `kw ( name name ) ;` statements where the keyword
/// (ids 6..10, category 0) decides the identifier's two pieces (ids
/// 10..30, category 2 or 3) and punctuation is category 1.
fn file(seed: u32, statements: usize) -> CodeSequence {
    let mut f = CodeSequence::default();
    for (s, ident) in (0..statements).zip(0u32..) {
        let kw = 6 + (seed + s as u32 * 3) % 4;
        let push = |f: &mut CodeSequence, id: u32, cat: u8, ident: u32| {
            f.ids.push(id);
            f.categories.push(cat);
            f.identifiers.push(ident);
        };
        push(&mut f, kw, 0, NO_WORD);
        push(&mut f, 30, 1, NO_WORD);
        let cat = if kw.is_multiple_of(2) { 2 } else { 3 };
        push(&mut f, 10 + (kw - 6) * 5, cat, ident);
        push(&mut f, 11 + (kw - 6) * 5, cat, ident);
        push(&mut f, 31, 1, NO_WORD);
        push(&mut f, 32, 1, NO_WORD);
    }
    f
}

fn corpus(files: u32) -> Vec<CodeSequence> {
    (0..files).map(|i| file(i, 8 + (i as usize % 5))).collect()
}

fn builder(config: CodeConfig, files: u32) -> CodeBuilder {
    CodeBuilder::new(
        CodeConfig {
            max_len: 27,
            ..config
        },
        specials(),
        corpus(files),
    )
    .expect("valid corpus")
}

fn model(typed: bool) -> anyhow::Result<CodePretrainer> {
    let cfg = config(1).with_overrides(&[
        "model.hidden_dropout_prob=0.0".into(),
        "model.attention_probs_dropout_prob=0.0".into(),
    ])?;
    let mut bc = cloze_train::bert::bert_config(&cfg.model, VOCAB, 0);
    bc.code_category_size = Some(CATEGORIES);
    Ok(CodePretrainer::new(bc, 1, Device::Cpu)?.with_typed(typed))
}

#[test]
fn the_loss_is_the_weighted_sum_of_its_parts_and_ablations_drop_theirs() -> anyhow::Result<()> {
    let _g = torch_lock();
    let m = model(false)?;
    let batch = builder(CodeConfig::default(), 6).batch(&[0, 1, 2, 3], 5, 0);
    let tb = TensorBatch::from_batch(&batch, Device::Cpu)?;
    let out = m.forward(&tb, false)?;
    let loss = CodeLoss {
        mlm_weight: 0.5,
        ncp_weight: 2.0,
        lm_weight: 1.0,
        category_weight: 0.25,
    };
    let l = loss.losses(&out, &tb)?;
    let r = &l.report.losses;
    for part in ["mlm", "ncp", "lm", "category"] {
        assert!(r.contains_key(part), "{part} missing from {r:?}");
    }
    let want = 0.5 * r["mlm"] + 2.0 * r["ncp"] + r["lm"] + 0.25 * r["category"];
    let total = l.total.double_value(&[]);
    assert!((total - want).abs() < 1e-4, "{total} vs {want}");
    // NCP is counted over the bidirectional rows only.
    assert_eq!(l.report.counts["ncp"], 4);

    // The plain left-to-right LM: no MLM, no NCP.
    let lm_only = builder(
        CodeConfig {
            mlm: false,
            ncp: false,
            ..CodeConfig::default()
        },
        6,
    )
    .batch(&[0, 1], 5, 0);
    let tb = TensorBatch::from_batch(&lm_only, Device::Cpu)?;
    let out = m.forward(&tb, false)?;
    let no_type = CodeLoss {
        category_weight: 0.0,
        ..CodeLoss::default()
    };
    let l = no_type.losses(&out, &tb)?;
    let keys: Vec<&String> = l.report.losses.keys().collect();
    assert_eq!(keys, ["lm"]);
    Ok(())
}

#[test]
fn left_to_right_predictions_never_see_a_later_token() -> anyhow::Result<()> {
    let _g = torch_lock();
    let m = model(false)?;
    let b = builder(
        CodeConfig {
            mlm: false,
            ncp: false,
            ..CodeConfig::default()
        },
        6,
    );
    let batch = b.batch(&[0], 5, 0);
    let tb = TensorBatch::from_batch(&batch, Device::Cpu)?;
    let before = m.forward(&tb, false)?.response_logits.expect("lm logits");
    // Change the token at position 10: the predictions at positions 0..10
    // are unchanged, later ones (which see it) change.
    let mut changed = batch.clone();
    changed.input_ids[10] = 33;
    let tb = TensorBatch::from_batch(&changed, Device::Cpu)?;
    let after = m.forward(&tb, false)?.response_logits.expect("lm logits");
    let diff = (&before - &after).abs().amax(&[1i64][..], false);
    for p in 0..10 {
        assert!(
            diff.double_value(&[p]) < 1e-5,
            "position {p} saw the future"
        );
    }
    assert!(
        diff.double_value(&[10]) > 1e-5,
        "position 10 ignores its own token"
    );
    Ok(())
}

#[test]
fn typed_prediction_depends_on_the_category() -> anyhow::Result<()> {
    let _g = torch_lock();
    let m = model(true)?;
    let b = builder(
        CodeConfig {
            mlm: false,
            ncp: false,
            ..CodeConfig::default()
        },
        6,
    );
    let batch = b.batch(&[0], 5, 0);
    let tb = TensorBatch::from_batch(&batch, Device::Cpu)?;
    // Training reads the true categories: change one and that prediction changes.
    let gold = m.forward(&tb, true)?.response_logits.expect("lm logits");
    let mut other = batch.clone();
    let grid = other.targets.tokens.as_mut().expect("categories");
    grid[3] = (grid[3] + 1) % CATEGORIES;
    let tb2 = TensorBatch::from_batch(&other, Device::Cpu)?;
    let swapped = m.forward(&tb2, true)?.response_logits.expect("lm logits");
    let diff = (&gold - &swapped).abs().amax(&[1i64][..], false);
    assert!(diff.double_value(&[3]) > 1e-5);
    assert!(diff.double_value(&[2]) < 1e-6 && diff.double_value(&[4]) < 1e-6);
    // Untyped, the same model ignores the categories.
    let untyped = CodePretrainer { typed: false, ..m };
    let a = untyped
        .forward(&tb, true)?
        .response_logits
        .expect("lm logits");
    let c = untyped
        .forward(&tb2, true)?
        .response_logits
        .expect("lm logits");
    assert!(a.allclose(&c, 0.0, 0.0, false));
    Ok(())
}

#[test]
fn next_token_probabilities_marginalise_the_category() -> anyhow::Result<()> {
    let _g = torch_lock();
    let m = model(true)?;
    let b = builder(
        CodeConfig {
            mlm: false,
            ncp: false,
            ..CodeConfig::default()
        },
        6,
    );
    let batch = b.batch(&[0, 1], 5, 0);
    let tb = TensorBatch::from_batch(&batch, Device::Cpu)?;
    let probs = m.next_token_probs(&tb)?;
    let n = probs.size()[0];
    assert_eq!(probs.size(), [n, i64::from(VOCAB)]);
    let sums = probs.sum_dim_intlist(&[1i64][..], false, tch::Kind::Double);
    assert!(sums.allclose(&sums.ones_like(), 1e-5, 1e-5, false));
    // By hand: each category's conditioned prediction (the training path
    // with every category forced to k; no dropout here), weighted by the
    // category head's probability at the same positions.
    let out = m.forward(&tb, false)?;
    let positions = &tb.response.as_ref().expect("lm rows").positions;
    let cat = out
        .token_logits
        .expect("category logits")
        .reshape([-1, CATEGORIES])
        .index_select(0, positions)
        .softmax(-1, tch::Kind::Float);
    let mut want = probs.zeros_like();
    for k in 0..CATEGORIES {
        let mut forced = batch.clone();
        for c in forced
            .targets
            .tokens
            .as_mut()
            .expect("categories")
            .iter_mut()
        {
            if *c != -100 {
                *c = k;
            }
        }
        let tk = TensorBatch::from_batch(&forced, Device::Cpu)?;
        let given = m
            .forward(&tk, true)?
            .response_logits
            .expect("lm logits")
            .softmax(-1, tch::Kind::Float);
        want += given * cat.narrow(1, k, 1);
    }
    assert!(probs.allclose(&want, 1e-5, 1e-6, false));
    // Untyped: the plain softmax of the left-to-right logits.
    let untyped = CodePretrainer { typed: false, ..m };
    let plain = untyped
        .forward(&tb, false)?
        .response_logits
        .expect("lm logits")
        .softmax(-1, tch::Kind::Float);
    assert!(untyped
        .next_token_probs(&tb)?
        .allclose(&plain, 1e-6, 1e-7, false));
    // Rows without left-to-right targets are refused.
    let mlm_only = builder(
        CodeConfig {
            ncp: false,
            lm: false,
            ..CodeConfig::default()
        },
        6,
    )
    .batch(&[0], 5, 0);
    assert!(untyped
        .next_token_probs(&TensorBatch::from_batch(&mlm_only, Device::Cpu)?)
        .is_err());
    Ok(())
}

#[test]
fn a_short_run_lowers_the_held_out_losses() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let dir = tempfile::tempdir()?;
    let mut cfg = config(150).with_overrides(&[
        "eval.every_steps=0".into(),
        "checkpoint.every_steps=0".into(),
        "data.batch_size=8".into(),
        "data.grad_accum=1".into(),
    ])?;
    cfg.objective.kind = "cuglm".into();
    let mut bc = cloze_train::bert::bert_config(&cfg.model, VOCAB, 0);
    bc.code_category_size = Some(CATEGORIES);
    let m = CodePretrainer::new(bc, 1, Device::Cpu)?;
    let held = builder(CodeConfig::default(), 4);
    let eval = CodeEval::new(&held, CodeLoss::default(), 0, 8, 0);
    let before = eval.evaluate(&m, Device::Cpu)?;
    let source = CodeSource::new(builder(CodeConfig::default(), 40), cfg.run.seed);
    let mut t = Trainer::new(cfg, &m, &m.vs, dir.path())?;
    let RunOutcome::Finished { .. } = t.run(&source, None, &mut Quiet)? else {
        panic!("the run did not finish")
    };
    let after = eval.evaluate(&m, Device::Cpu)?;
    for part in ["lm", "mlm", "category"] {
        let (b, a) = (before.losses[part], after.losses[part]);
        assert!(a < b - 0.3, "{part}: {b} -> {a}");
    }
    assert!(after.accuracies["category"] > 0.8, "{after:?}");
    Ok(())
}

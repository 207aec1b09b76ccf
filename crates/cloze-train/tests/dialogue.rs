//! The dialogue objective through the trainer's types: role ids and response
//! targets reach the model, the loss is the response NLL plus `mlm_weight`
//! times the context MLM loss, and a short run lowers the response loss.

mod common;

use cloze_core::SpecialTokens;
use cloze_mask::{DialogueBuilder, DialogueConfig, DialogueExample};
use cloze_train::dialogue::{DialogueEval, DialogueLoss, DialogueSource};
use cloze_train::trainer::{HeldOut, Quiet, RunOutcome, Trainer};
use cloze_train::{Objective, PretrainModel, TensorBatch};
use common::*;

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

/// Three speakers; each answers with the turn two before it, shifted by one id.
fn scenes(n: usize) -> Vec<DialogueExample> {
    (0..n)
        .map(|i| {
            let base = 6 + (i % 30) as u32;
            let context: Vec<Vec<u32>> = (0..3).map(|k| vec![base, 6 + (base + k) % 34]).collect();
            let response = context[1].iter().map(|t| 6 + (t - 6 + 1) % 34).collect();
            DialogueExample {
                context,
                speakers: vec![1, 2, 3],
                response,
                responder: 2,
            }
        })
        .collect()
}

fn builder(context_mask_prob: f64) -> DialogueBuilder {
    DialogueBuilder::new(
        DialogueConfig {
            max_context_len: 16,
            max_response_len: 6,
            num_roles: 4,
            context_mask_prob,
            ..DialogueConfig::default()
        },
        specials(),
    )
    .expect("valid layout")
}

#[test]
fn the_loss_adds_weighted_context_mlm_to_the_response_nll() -> anyhow::Result<()> {
    let _g = torch_lock();
    let cfg = config(1).with_overrides(&["model.hidden_dropout_prob=0.0".into()])?;
    let mut bc = cloze_train::bert::bert_config(&cfg.model, VOCAB, 0);
    bc.role_type_size = Some(4);
    let m = cloze_train::BertPretrainer::new_masked_lm(bc, 1, &cfg.init, tch::Device::Cpu)?;
    let batch = builder(0.5).batch(&scenes(8), 3, 0, 0);
    assert!(batch.role_ids.is_some() && !batch.targets.masked_lm.is_empty());
    let tb = TensorBatch::from_batch(&batch, tch::Device::Cpu)?;
    assert!(tb.role_ids.is_some());
    let out = m.forward(&tb, false)?;
    let response = out.response_logits.as_ref().expect("response logits");
    assert_eq!(response.size()[0], batch.targets.response.len() as i64);
    let losses = DialogueLoss { mlm_weight: 0.5 }.losses(&out, &tb)?;
    let r = losses.report.losses["response"];
    let mlm = losses.report.losses["mlm"];
    let total = losses.total.double_value(&[]);
    assert!(
        (total - (r + 0.5 * mlm)).abs() < 1e-4,
        "{total} vs {r} + 0.5 x {mlm}"
    );
    // Without context MLM the total is the response loss alone.
    let plain =
        TensorBatch::from_batch(&builder(0.0).batch(&scenes(8), 3, 0, 0), tch::Device::Cpu)?;
    let out = m.forward(&plain, false)?;
    let losses = DialogueLoss { mlm_weight: 0.5 }.losses(&out, &plain)?;
    assert!(!losses.report.losses.contains_key("mlm"));
    Ok(())
}

#[test]
fn a_short_run_lowers_the_held_out_response_loss() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let dir = tempfile::tempdir()?;
    let mut cfg = config(120).with_overrides(&[
        "eval.every_steps=0".into(),
        "checkpoint.every_steps=0".into(),
        "data.batch_size=16".into(),
        "data.grad_accum=1".into(),
    ])?;
    cfg.objective.kind = "dialogue".into();
    let mut bc = cloze_train::bert::bert_config(&cfg.model, VOCAB, 0);
    bc.role_type_size = Some(4);
    let m = cloze_train::BertPretrainer::new_masked_lm(bc, 1, &cfg.init, tch::Device::Cpu)?;
    let eval = DialogueEval::new(&scenes(32), &builder(0.0), 0, 16);
    let before = eval.evaluate(&m, tch::Device::Cpu)?.losses["response"];
    let source = DialogueSource::new(scenes(400), builder(0.0), cfg.run.seed);
    let mut t = Trainer::new(cfg, &m, &m.vs, dir.path())?;
    let RunOutcome::Finished { .. } = t.run(&source, None, &mut Quiet)? else {
        panic!("the run did not finish")
    };
    let after = eval.evaluate(&m, tch::Device::Cpu)?.losses["response"];
    assert!(after < before - 0.5, "{before} -> {after}");
    Ok(())
}

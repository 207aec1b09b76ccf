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

/// The model of `cfg` with four role ids (padding and three speakers).
fn with_roles(cfg: &cloze_train::TrainConfig) -> cloze_models::BertConfig {
    let mut bc = cloze_train::bert::bert_config(&cfg.model, VOCAB, 0);
    bc.role_type_size = Some(4);
    bc
}

/// A dialogue run of `steps` steps in batches of 16, with no evaluation or
/// checkpoints along the way.
fn short_run_config(steps: u64) -> anyhow::Result<cloze_train::TrainConfig> {
    let mut cfg = config(steps).with_overrides(&[
        "eval.every_steps=0".into(),
        "checkpoint.every_steps=0".into(),
        "data.batch_size=16".into(),
        "data.grad_accum=1".into(),
    ])?;
    cfg.objective.kind = "dialogue".into();
    Ok(cfg)
}

#[test]
fn the_loss_adds_weighted_context_mlm_to_the_response_nll() -> anyhow::Result<()> {
    let _g = torch_lock();
    let cfg = config(1).with_overrides(&["model.hidden_dropout_prob=0.0".into()])?;
    let m = cloze_train::BertPretrainer::new_masked_lm(
        with_roles(&cfg),
        1,
        &cfg.init,
        tch::Device::Cpu,
    )?;
    let batch = builder(0.5).batch(&scenes(8), 3, 0, 0);
    assert!(batch.role_ids.is_some() && !batch.targets.masked_lm.is_empty());
    let tb = TensorBatch::from_batch(&batch, tch::Device::Cpu)?;
    assert!(tb.role_ids.is_some());
    let out = m.forward(&tb, false)?;
    let response = out.response_logits.as_ref().expect("response logits");
    assert_eq!(response.size()[0], batch.targets.response.len() as i64);
    let losses = DialogueLoss {
        mlm_weight: 0.5,
        coherence_weight: 1.0,
    }
    .losses(&out, &tb)?;
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
    let losses = DialogueLoss {
        mlm_weight: 0.5,
        coherence_weight: 1.0,
    }
    .losses(&out, &plain)?;
    assert!(!losses.report.losses.contains_key("mlm"));
    Ok(())
}

#[test]
fn a_short_run_lowers_the_held_out_response_loss() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let dir = tempfile::tempdir()?;
    let cfg = short_run_config(120)?;
    let m = cloze_train::BertPretrainer::new_masked_lm(
        with_roles(&cfg),
        1,
        &cfg.init,
        tch::Device::Cpu,
    )?;
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

fn coherence_builder() -> DialogueBuilder {
    DialogueBuilder::new(
        DialogueConfig {
            max_context_len: 16,
            max_response_len: 6,
            num_roles: 4,
            coherence: true,
            ..DialogueConfig::default()
        },
        specials(),
    )
    .expect("valid layout")
}

/// The dialogue of each of `scenes(n)`: samples with the same opening token.
fn scene_groups(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("scene-{}", i % 30)).collect()
}

/// Share of the coherence rows of `batch` that the pair head classifies right.
fn coherence_accuracy(m: &cloze_train::BertPretrainer, batch: &cloze_mask::Batch) -> f64 {
    let tb = TensorBatch::from_batch(batch, tch::Device::Cpu).expect("tensors");
    let out = m.forward(&tb, false).expect("forward");
    let labels = batch.targets.pair.clone().expect("pair labels");
    let predicted = Vec::<i64>::try_from(
        out.pair_logits
            .expect("pair logits")
            .argmax(1, false)
            .view([-1]),
    )
    .expect("predictions");
    let scored: Vec<(i64, i64)> = labels
        .into_iter()
        .zip(predicted)
        .filter(|(l, _)| *l != -100)
        .collect();
    scored.iter().filter(|(l, p)| l == p).count() as f64 / scored.len() as f64
}

#[test]
fn the_coherence_loss_is_the_pair_cross_entropy_of_the_labelled_rows() -> anyhow::Result<()> {
    let _g = torch_lock();
    let cfg = config(1).with_overrides(&["model.hidden_dropout_prob=0.0".into()])?;
    let m = cloze_train::BertPretrainer::new(with_roles(&cfg), 1, &cfg.init, tch::Device::Cpu)?;
    let examples = scenes(6);
    let negatives: Vec<Vec<u32>> = (0..6).map(|i| scenes(12)[i + 6].response.clone()).collect();
    let batch = coherence_builder().batch_with_negatives(&examples, &negatives, 3, 0, 0)?;
    let tb = TensorBatch::from_batch(&batch, tch::Device::Cpu)?;
    let out = m.forward(&tb, false)?;
    let losses = DialogueLoss {
        mlm_weight: 1.0,
        coherence_weight: 0.5,
    }
    .losses(&out, &tb)?;
    // By hand: log-softmax of the 12 labelled rows' pair logits.
    let pair = out.pair_logits.as_ref().expect("pair logits");
    let logp = Vec::<f32>::try_from(pair.log_softmax(-1, tch::Kind::Float).view([-1]))?;
    let labels = batch.targets.pair.clone().expect("labels");
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (r, &l) in labels.iter().enumerate() {
        if l >= 0 {
            sum -= f64::from(logp[r * 2 + l as usize]);
            n += 1;
        }
    }
    assert_eq!(n, 12);
    let coherence = losses.report.losses["coherence"];
    assert!(
        (coherence - sum / n as f64).abs() < 1e-4,
        "{coherence} vs {}",
        sum / n as f64
    );
    let r = losses.report.losses["response"];
    let total = losses.total.double_value(&[]);
    assert!(
        (total - (r + 0.5 * coherence)).abs() < 1e-4,
        "{total} vs {r} + 0.5 x {coherence}"
    );
    // A model without the pair head cannot train coherence.
    let plain = cloze_train::BertPretrainer::new_masked_lm(
        cloze_train::bert::bert_config(&cfg.model, VOCAB, 0),
        1,
        &cfg.init,
        tch::Device::Cpu,
    )?;
    let mut no_roles = tb;
    no_roles.role_ids = None;
    let out = plain.forward(&no_roles, false)?;
    assert!(DialogueLoss {
        mlm_weight: 1.0,
        coherence_weight: 1.0
    }
    .losses(&out, &no_roles)
    .is_err());
    Ok(())
}

#[test]
fn distractors_come_from_other_dialogues_and_repeat_under_the_seed() -> anyhow::Result<()> {
    use cloze_train::trainer::DataSource;
    let n = 90;
    let source =
        DialogueSource::new(scenes(n), coherence_builder(), 5).with_groups(scene_groups(n))?;
    let indices: Vec<usize> = (0..8).collect();
    let a = source.batch(0, 0, &indices)?;
    assert_eq!(a, source.batch(0, 0, &indices)?);
    assert_ne!(a.input_ids, source.batch(1, 0, &indices)?.input_ids);
    // Rows 16..24 hold the distractors; none is the response of a sample of the same scene.
    let l = a.seq_len;
    for (k, &i) in indices.iter().enumerate() {
        let row = &a.input_ids[(16 + k) * l..(17 + k) * l];
        let own_scene: Vec<Vec<i64>> = (0..n)
            .filter(|j| j % 30 == i % 30)
            .map(|j| {
                scenes(n)[j]
                    .response
                    .iter()
                    .map(|&t| i64::from(t))
                    .collect()
            })
            .collect();
        let cls = row.iter().rposition(|&t| t == 2).expect("response [CLS]");
        let response: Vec<i64> = row[cls + 1..]
            .iter()
            .copied()
            .take_while(|&t| t != 3)
            .collect();
        assert!(!own_scene.contains(&response), "row {k}: {response:?}");
    }
    // Coherence needs the scenes, and more than one of them.
    assert!(DialogueSource::new(scenes(4), coherence_builder(), 5)
        .batch(0, 0, &[0, 1])
        .is_err());
    assert!(DialogueSource::new(scenes(4), coherence_builder(), 5)
        .with_groups(vec!["one".into(); 4])
        .is_err());
    Ok(())
}

#[test]
fn a_short_run_learns_to_tell_a_scene_s_reply_from_another_s() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let dir = tempfile::tempdir()?;
    let cfg = short_run_config(600)?;
    let m = cloze_train::BertPretrainer::new(with_roles(&cfg), 1, &cfg.init, tch::Device::Cpu)?;
    let n = 400;
    let held_out =
        DialogueSource::new(scenes(n), coherence_builder(), 99).with_groups(scene_groups(n))?;
    let probe =
        cloze_train::trainer::DataSource::batch(&held_out, 7, 0, &(0..64).collect::<Vec<_>>())?;
    let before = coherence_accuracy(&m, &probe);
    let source = DialogueSource::new(scenes(n), coherence_builder(), cfg.run.seed)
        .with_groups(scene_groups(n))?;
    let mut t = Trainer::new(cfg, &m, &m.vs, dir.path())?;
    let RunOutcome::Finished { .. } = t.run(&source, None, &mut Quiet)? else {
        panic!("the run did not finish")
    };
    let after = coherence_accuracy(&m, &probe);
    eprintln!("coherence accuracy {before} -> {after}");
    assert!(after > 0.9 && after > before + 0.2, "{before} -> {after}");
    Ok(())
}

//! Continued pretraining: a run that starts from a HuggingFace checkpoint
//! keeps every loaded weight (the hf-tiny-bert fixture's logits at step 0),
//! gets a fresh, seeded, tied MLM head when the checkpoint is encoder-only,
//! and grows its vocabulary with rows averaged from existing ones.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cloze_models::hf::{read_safetensors, write_safetensors};
use cloze_models::{HeadStatus, MlmInput};
use cloze_train::BertPretrainer;
use tch::{Device, Kind, Tensor};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cloze-models/tests/fixtures/hf-tiny-bert")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn reference_input(r: &BTreeMap<String, Tensor>) -> MlmInput {
    MlmInput::new(r["input_ids"].shallow_clone())
        .with_token_type_ids(r["token_type_ids"].shallow_clone())
        .with_attention_mask(r["attention_mask"].shallow_clone())
}

/// The fixture without its heads (and pooler): an encoder-only checkpoint
/// like all-MiniLM-L6-v2, saved the way HF's `BertModel` saves (no `bert.`).
fn encoder_only(dir: &Path) {
    let all = read_safetensors(&fixture().join("model.safetensors")).unwrap();
    let encoder: BTreeMap<String, Tensor> = all
        .into_iter()
        .filter(|(k, _)| k.starts_with("bert.embeddings.") || k.starts_with("bert.encoder."))
        .map(|(k, t)| (k.trim_start_matches("bert.").to_string(), t))
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &encoder).unwrap();
    std::fs::copy(fixture().join("config.json"), dir.join("config.json")).unwrap();
}

#[test]
fn starting_from_the_fixture_reproduces_its_logits_at_step_0() {
    let (model, report) =
        BertPretrainer::from_checkpoint(&fixture(), true, 3, &[], Device::Cpu).unwrap();
    assert!(report.load.is_exact(), "{}", report.load);
    assert_eq!(report.load.head("cls.predictions"), HeadStatus::Loaded);
    assert_eq!(report.load.head("cls.seq_relationship"), HeadStatus::Loaded);
    assert_eq!((report.vocab_before, report.vocab_after), (96, 96));
    let r = read_safetensors(&fixture().join("reference.safetensors")).unwrap();
    let out = tch::no_grad(|| {
        model
            .model
            .forward_t(&reference_input(&r), None, false)
            .unwrap()
    });
    assert!(max_abs_diff(&out.mlm_logits, &r["mlm_logits"]) < 1e-5);
    assert!(max_abs_diff(out.pair_logits.as_ref().unwrap(), &r["nsp_logits"]) < 1e-5);
    // The seed decides nothing when every weight is loaded.
    let (other, _) =
        BertPretrainer::from_checkpoint(&fixture(), true, 99, &[], Device::Cpu).unwrap();
    let out2 = tch::no_grad(|| {
        other
            .model
            .forward_t(&reference_input(&r), None, false)
            .unwrap()
    });
    assert!(out.mlm_logits.equal(&out2.mlm_logits));
}

#[test]
fn an_encoder_only_checkpoint_gets_a_fresh_seeded_tied_mlm_head() {
    let dir = tempfile::tempdir().unwrap();
    encoder_only(dir.path());
    let (model, report) =
        BertPretrainer::from_checkpoint(dir.path(), false, 5, &[], Device::Cpu).unwrap();
    assert_eq!(report.load.head("cls.predictions"), HeadStatus::Absent);
    let notices = report.notices().join("\n");
    assert!(
        notices.contains("no MLM head") && notices.contains("tied to the word embeddings"),
        "{notices}"
    );
    let vars = model.vs.variables();
    let word = &vars["bert.embeddings.word_embeddings.weight"];
    // The encoder is the checkpoint's, bit for bit.
    let ckpt = read_safetensors(&dir.path().join("model.safetensors")).unwrap();
    assert!(word.equal(&ckpt["embeddings.word_embeddings.weight"]));
    // HF's initialisation of the head: N(0, 0.02) dense weight, zero biases,
    // LayerNorm at 1.
    let dense = &vars["cls.predictions.transform.dense.weight"];
    let std = dense.std(true).double_value(&[]);
    assert!((0.015..0.025).contains(&std), "dense std {std}");
    assert_eq!(
        vars["cls.predictions.bias"]
            .abs()
            .sum(Kind::Float)
            .double_value(&[]),
        0.0
    );
    assert_eq!(
        vars["cls.predictions.transform.LayerNorm.weight"]
            .sum(Kind::Float)
            .double_value(&[]),
        32.0
    );
    // Tied: changing the word embeddings changes the logits through the decoder.
    let ids = Tensor::from_slice(&[2i64, 17, 33, 4, 90, 3]).unsqueeze(0);
    let before = tch::no_grad(|| {
        model
            .model
            .forward_t(&MlmInput::new(ids.shallow_clone()), None, false)
            .unwrap()
            .mlm_logits
    });
    // Scale the embedding of a token absent from the input: only the decoder
    // reads that row, so its logits (and only its) must move.
    tch::no_grad(|| {
        let _ = word.narrow(0, 50, 1).f_mul_scalar_(3.0).unwrap();
    });
    let after = tch::no_grad(|| {
        model
            .model
            .forward_t(&MlmInput::new(ids), None, false)
            .unwrap()
            .mlm_logits
    });
    let moved = (&after - &before).abs().amax([0i64, 1].as_slice(), false);
    assert!(moved.double_value(&[50]) > 1e-4);
    assert_eq!(moved.double_value(&[51]), 0.0);
    // The fresh head is seeded: the same seed gives the same head, another seed another.
    let head = |seed| {
        let (m, _) =
            BertPretrainer::from_checkpoint(dir.path(), false, seed, &[], Device::Cpu).unwrap();
        m.vs.variables()["cls.predictions.transform.dense.weight"].copy()
    };
    assert!(head(5).equal(dense));
    assert!(!head(6).equal(dense));
}

#[test]
fn added_tokens_grow_the_vocabulary_with_averaged_rows() {
    let rows = vec![vec![5i64, 6], vec![7]];
    let (model, report) =
        BertPretrainer::from_checkpoint(&fixture(), true, 1, &rows, Device::Cpu).unwrap();
    assert_eq!((report.vocab_before, report.vocab_after), (96, 98));
    assert_eq!(model.config.vocab_size, 98);
    assert!(report.notices().join(" ").contains("from 96 to 98"));
    let vars = model.vs.variables();
    let word = &vars["bert.embeddings.word_embeddings.weight"];
    assert_eq!(word.size(), [98, 32]);
    let ckpt = read_safetensors(&fixture().join("model.safetensors")).unwrap();
    let old = &ckpt["bert.embeddings.word_embeddings.weight"];
    assert!(word.narrow(0, 0, 96).equal(old));
    let mean56 = (old.get(5) + old.get(6)) / 2.0;
    assert!(max_abs_diff(&word.get(96), &mean56) < 1e-7);
    assert!(word.get(97).equal(&old.get(7)));
    let bias = &vars["cls.predictions.bias"];
    let old_bias = &ckpt["cls.predictions.bias"];
    assert_eq!(bias.size(), [98]);
    assert!(max_abs_diff(&bias.get(97), &old_bias.get(7)) < 1e-7);
    // The new ids run through the model and get logits of the new width.
    let ids = Tensor::from_slice(&[2i64, 96, 97, 3]).unsqueeze(0);
    let out = tch::no_grad(|| {
        model
            .model
            .forward_t(&MlmInput::new(ids), None, false)
            .unwrap()
    });
    assert_eq!(out.mlm_logits.size(), [1, 4, 98]);
    // An id outside the checkpoint's vocabulary cannot be averaged.
    let bad = BertPretrainer::from_checkpoint(&fixture(), true, 1, &[vec![96]], Device::Cpu);
    assert!(bad.is_err());
}

/// The rows `tests/fixtures/grown-vocab` was grown with: id 96 averages 5
/// and 6, id 97 copies 7.
const GROWN_ROWS: [&[i64]; 2] = [&[5, 6], &[7]];

fn grown_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grown-vocab")
}

/// What a grown model saves is what transformers loads: the fixture under
/// `tests/fixtures/grown-vocab` is the hf-tiny-bert fixture grown by two
/// rows and saved by cloze, and `hf_reference.json` is what transformers'
/// `BertForPreTraining` made of it (`tests/fixtures/make_hf_reference.py`):
/// its vocabulary size, no missing or unexpected key, and its MLM logits on
/// inputs that use the new ids. The model grown now must save the same
/// tensors, so the fixture stays what the code writes.
/// `CLOZE_WRITE_FIXTURES=1` rewrites the fixture's weights and config.
#[test]
fn a_grown_model_loads_in_transformers_with_matching_logits() {
    use cloze_train::PretrainModel;
    let rows: Vec<Vec<i64>> = GROWN_ROWS.iter().map(|r| r.to_vec()).collect();
    let (model, _) =
        BertPretrainer::from_checkpoint(&fixture(), true, 1, &rows, Device::Cpu).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    model.save(fresh.path()).unwrap();
    if std::env::var_os("CLOZE_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(grown_fixture()).unwrap();
        model.save(&grown_fixture()).unwrap();
    }
    let now = read_safetensors(&fresh.path().join("model.safetensors")).unwrap();
    let committed = read_safetensors(&grown_fixture().join("model.safetensors")).unwrap();
    assert_eq!(
        now.keys().collect::<Vec<_>>(),
        committed.keys().collect::<Vec<_>>()
    );
    for (k, t) in &now {
        assert!(
            t.equal(&committed[k]),
            "{k} differs from the committed fixture"
        );
    }
    let hf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(grown_fixture().join("hf_reference.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(hf["vocab_size"], 98);
    assert_eq!(hf["missing_keys"], serde_json::json!([]));
    assert_eq!(hf["unexpected_keys"], serde_json::json!([]));
    let ids: Vec<Vec<i64>> = serde_json::from_value(hf["input_ids"].clone()).unwrap();
    let want: Vec<Vec<Vec<f32>>> = serde_json::from_value(hf["mlm_logits"].clone()).unwrap();
    let loaded = cloze_models::load_pretrained(&grown_fixture(), Device::Cpu).unwrap();
    assert!(loaded.report.is_exact(), "{}", loaded.report);
    let input = MlmInput::new(Tensor::from_slice2(&ids));
    let got = tch::no_grad(|| {
        loaded
            .model
            .forward_t(&input, None, false)
            .unwrap()
            .mlm_logits
    });
    let want =
        Tensor::from_slice2(&want.into_iter().flatten().collect::<Vec<_>>()).reshape(got.size());
    assert!(max_abs_diff(&got, &want) < 1e-5);
}

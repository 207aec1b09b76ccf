//! The fine-tuning heads of the head table: parity with transformers on the
//! hf-tiny-heads fixtures (see tests/fixtures/hf-tiny-heads/README.md), HF's key
//! sets, save/reload round trips and what the load report says.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cloze_models::hf::{read_safetensors, write_safetensors};
use cloze_models::{
    load_with, save_pretrained, BertConfig, BertForQuestionAnswering,
    BertForSequenceClassification, BertForTokenClassification, Error, HeadReport, HeadStatus,
    MlmInput,
};
use tch::nn::VarStore;
use tch::{Device, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn heads_fixture(name: &str) -> PathBuf {
    fixtures().join("hf-tiny-heads").join(name)
}

fn reference(dir: &Path) -> BTreeMap<String, Tensor> {
    read_safetensors(&dir.join("reference.safetensors")).unwrap()
}

fn input(r: &BTreeMap<String, Tensor>) -> MlmInput {
    MlmInput::new(r["input_ids"].shallow_clone())
        .with_token_type_ids(r["token_type_ids"].shallow_clone())
        .with_attention_mask(r["attention_mask"].shallow_clone())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn keys(dir: &Path) -> BTreeSet<String> {
    read_safetensors(&dir.join("model.safetensors"))
        .unwrap()
        .into_keys()
        .collect()
}

fn architectures(dir: &Path) -> serde_json::Value {
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    c["architectures"].clone()
}

/// The one entry a fine-tuning checkpoint loaded into its own class reports.
fn only_head(prefix: &'static str) -> Vec<HeadReport> {
    vec![HeadReport {
        prefix,
        status: HeadStatus::Loaded,
        checkpoint_keys: 2,
    }]
}

#[test]
fn sequence_classification_matches_transformers_within_1e5() {
    let dir = heads_fixture("sequence-classification");
    let p = load_with(&dir, Device::Cpu, BertForSequenceClassification::new).unwrap();
    assert!(p.report.is_exact(), "{}", p.report);
    assert!(p.report.ignored.is_empty());
    assert_eq!(p.report.heads, only_head("classifier"));
    assert_eq!(p.model.head().num_labels(), 3, "from id2label");
    assert_eq!(p.config.classifier_dropout().unwrap(), 0.2);
    let r = reference(&dir);
    let logits = tch::no_grad(|| p.model.forward_t(&input(&r), false)).unwrap();
    assert!(max_abs_diff(&logits, &r["logits"]) < 1e-5);
}

#[test]
fn token_classification_matches_transformers_within_1e5() {
    let dir = heads_fixture("token-classification");
    let p = load_with(&dir, Device::Cpu, BertForTokenClassification::new).unwrap();
    assert!(p.report.is_exact(), "{}", p.report);
    assert_eq!(p.report.heads, only_head("classifier"));
    assert_eq!(p.model.head().num_labels(), 5);
    assert!(
        p.model.bert().pooler().is_none(),
        "HF's token classifier has none"
    );
    let r = reference(&dir);
    let logits = tch::no_grad(|| p.model.forward_t(&input(&r), false)).unwrap();
    assert_eq!(logits.size(), [2, 12, 5]);
    assert!(max_abs_diff(&logits, &r["logits"]) < 1e-5);
}

#[test]
fn question_answering_matches_transformers_within_1e5() {
    let dir = heads_fixture("question-answering");
    let p = load_with(&dir, Device::Cpu, BertForQuestionAnswering::new).unwrap();
    assert!(p.report.is_exact(), "{}", p.report);
    assert_eq!(p.report.heads, only_head("qa_outputs"));
    assert!(p.config.extra.get("id2label").is_none(), "HF's 2 labels");
    let r = reference(&dir);
    let out = tch::no_grad(|| p.model.forward_t(&input(&r), false)).unwrap();
    assert!(max_abs_diff(&out.start_logits, &r["start_logits"]) < 1e-5);
    assert!(max_abs_diff(&out.end_logits, &r["end_logits"]) < 1e-5);
}

/// Builds a seeded model of each class from the fixture's config, saves it, reloads
/// it, and checks the key set against the file transformers wrote.
fn round_trip<M>(
    name: &str,
    build: fn(&tch::nn::Path, &BertConfig) -> cloze_models::Result<M>,
    run: impl Fn(&M, &MlmInput, bool) -> Vec<Tensor>,
) -> (tempfile::TempDir, Vec<Tensor>) {
    let fixture = heads_fixture(name);
    let config = BertConfig::from_file(&fixture.join("config.json")).unwrap();
    tch::manual_seed(17);
    let vs = VarStore::new(Device::Cpu);
    let model = build(&vs.root(), &config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_pretrained(&vs, &config, dir.path()).unwrap();
    // HF's names exactly: the key set of what we save equals transformers' own file.
    assert_eq!(keys(dir.path()), keys(&fixture), "{name}");
    assert_eq!(architectures(dir.path()), architectures(&fixture), "{name}");
    let back = load_with(dir.path(), Device::Cpu, build).unwrap();
    assert!(back.report.is_exact(), "{}", back.report);
    assert_eq!(
        back.config.num_labels().unwrap(),
        config.num_labels().unwrap()
    );
    let r = reference(&fixture);
    let x = input(&r);
    let before = tch::no_grad(|| run(&model, &x, false));
    let after = tch::no_grad(|| run(&back.model, &x, false));
    for (a, b) in before.iter().zip(&after) {
        assert!(a.equal(b), "{name}: outputs differ after save and reload");
    }
    // Training mode reaches the head's dropout (or, for QA, the encoder's).
    let trained = tch::no_grad(|| run(&model, &x, true));
    assert!(max_abs_diff(&trained[0], &before[0]) > 0.0, "{name}");
    (dir, before)
}

#[test]
fn each_head_saves_hfs_keys_and_reloads_bit_exactly() {
    let (dir, out) = round_trip(
        "sequence-classification",
        BertForSequenceClassification::new,
        |m, x, t| vec![m.forward_t(x, t).unwrap()],
    );
    assert_eq!(out[0].size(), [2, 3]);
    let saved = keys(dir.path());
    for k in [
        "classifier.weight",
        "classifier.bias",
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
    ] {
        assert!(saved.contains(k), "{k}");
    }

    let (dir, out) = round_trip(
        "token-classification",
        BertForTokenClassification::new,
        |m, x, t| vec![m.forward_t(x, t).unwrap()],
    );
    assert_eq!(out[0].size(), [2, 12, 5]);
    let saved = keys(dir.path());
    assert!(saved.contains("classifier.weight") && saved.contains("classifier.bias"));
    assert!(!saved.iter().any(|k| k.contains("pooler")));

    let (dir, out) = round_trip(
        "question-answering",
        BertForQuestionAnswering::new,
        |m, x, t| {
            let o = m.forward_t(x, t).unwrap();
            vec![o.start_logits, o.end_logits]
        },
    );
    assert_eq!(out[1].size(), [2, 12]);
    let saved = keys(dir.path());
    assert!(saved.contains("qa_outputs.weight") && saved.contains("qa_outputs.bias"));
    assert!(!saved.iter().any(|k| k.contains("pooler")));
}

#[test]
fn a_classifier_starts_from_a_pretraining_checkpoint_and_the_report_says_so() {
    let mut config = BertConfig::from_file(&fixtures().join("hf-tiny-bert/config.json")).unwrap();
    config.set_num_labels(4);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("hf-tiny-bert/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        config.to_json_string().unwrap(),
    )
    .unwrap();
    let p = load_with(dir.path(), Device::Cpu, BertForSequenceClassification::new).unwrap();
    let r = &p.report;
    assert_eq!(r.missing, ["classifier.bias", "classifier.weight"]);
    assert_eq!(r.unexpected.len(), 7);
    assert!(r.unexpected.iter().all(|k| k.starts_with("cls.")));
    let heads: Vec<(&str, HeadStatus, usize)> = r
        .heads
        .iter()
        .map(|h| (h.prefix, h.status, h.checkpoint_keys))
        .collect();
    assert_eq!(
        heads,
        [
            ("cls.predictions", HeadStatus::NotBuilt, 5),
            ("cls.seq_relationship", HeadStatus::NotBuilt, 2),
            ("classifier", HeadStatus::Absent, 0),
        ]
    );
    let text = r.to_string();
    assert!(text.contains("classifier Absent"), "{text}");
    assert!(
        text.contains("cls.predictions NotBuilt (in checkpoint, not taken)"),
        "{text}"
    );
    // The encoder and its pooler are the checkpoint's.
    let want = read_safetensors(&dir.path().join("model.safetensors")).unwrap();
    let vars = p.vs.variables();
    assert!(vars["bert.pooler.dense.weight"].equal(&want["bert.pooler.dense.weight"]));
    assert_eq!(p.model.head().num_labels(), 4);
}

#[test]
fn a_token_checkpoint_read_as_sequence_classification_reports_the_missing_pooler() {
    let dir = heads_fixture("token-classification");
    let p = load_with(&dir, Device::Cpu, BertForSequenceClassification::new).unwrap();
    assert_eq!(p.report.heads, only_head("classifier"));
    assert_eq!(
        p.report.missing,
        ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    );
}

#[test]
fn labels_that_disagree_with_the_weights_or_the_head_are_errors() {
    // A config with more labels than the classifier in the file.
    let dir = tempfile::tempdir().unwrap();
    let src = heads_fixture("sequence-classification");
    std::fs::copy(
        src.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let mut config = BertConfig::from_file(&src.join("config.json")).unwrap();
    config.set_num_labels(4);
    std::fs::write(
        dir.path().join("config.json"),
        config.to_json_string().unwrap(),
    )
    .unwrap();
    match load_with(dir.path(), Device::Cpu, BertForSequenceClassification::new) {
        Err(Error::CheckpointShape {
            key,
            expected,
            found,
        }) => {
            assert!(key.starts_with("classifier."), "{key}");
            assert_eq!((expected[0], found[0]), (4, 3));
        }
        other => panic!("{other:?}"),
    }
    // Question answering splits its two outputs into start and end: 3 labels is refused.
    let vs = VarStore::new(Device::Cpu);
    assert!(matches!(
        BertForQuestionAnswering::new(&vs.root(), &config),
        Err(Error::InvalidConfig {
            field: "num_labels",
            ..
        })
    ));
    // So is a config naming no label at all.
    let mut none = config.clone();
    none.extra.insert("id2label".into(), serde_json::json!({}));
    assert!(BertForSequenceClassification::new(&vs.root(), &none).is_err());
}

#[test]
fn a_head_tensor_under_an_unprefixed_or_legacy_name_still_loads() {
    // HF's state dicts prefix encoder keys only; a converter that prefixed every key
    // (`bert.classifier.weight`) or wrote TF-era names still loads.
    let src = heads_fixture("token-classification");
    let mut t = read_safetensors(&src.join("model.safetensors")).unwrap();
    let w = t.remove("classifier.weight").unwrap();
    t.insert("bert.classifier.weight".into(), w);
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(&dir.path().join("model.safetensors"), &t).unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let p = load_with(dir.path(), Device::Cpu, BertForTokenClassification::new).unwrap();
    assert!(p.report.is_exact(), "{}", p.report);
    assert!(p.report.renamed.contains(&(
        "bert.classifier.weight".to_string(),
        "classifier.weight".to_string()
    )));
}

//! What `cloze finetune` saves is what transformers loads: the fixtures under
//! `tests/fixtures/finetuned/` are a sequence and a token classifier that
//! `cloze finetune` wrote, and `hf_reference.json` beside each is what
//! transformers' `AutoModelFor...Classification` made of it
//! (`tests/fixtures/make_hf_finetuned.py`): its class, its labels, no
//! missing or unexpected key, and its logits on `inputs.json`. cloze must
//! read the same labels and compute the same logits; and a model fine-tuned
//! now must write the same file layout (config fields and tensor names), so
//! the fixtures stay representative of what the command writes today.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cloze_mask::batch::Batch;
use cloze_train::finetune::{Classifier, TaskKind};
use cloze_train::TensorBatch;
use serde_json::Value;

fn fixture(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/finetuned/{kind}"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn grid(v: &Value) -> Vec<Vec<i64>> {
    serde_json::from_value(v.clone()).expect("int grid")
}

/// `inputs.json` as a batch.
fn batch(dir: &Path) -> TensorBatch {
    let inputs = read_json(&dir.join("inputs.json"));
    let ids = grid(&inputs["input_ids"]);
    let (rows, len) = (ids.len(), ids[0].len());
    let b = Batch {
        batch_size: rows,
        seq_len: len,
        input_ids: ids.concat(),
        token_type_ids: grid(&inputs["token_type_ids"]).concat(),
        attention_mask: grid(&inputs["attention_mask"]).concat(),
        ..Batch::default()
    };
    TensorBatch::from_batch(&b, tch::Device::Cpu).expect("tensors")
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number")],
        other => panic!("not a number: {other}"),
    }
}

fn check(kind: &str, want: TaskKind) {
    let dir = fixture(kind);
    let hf = read_json(&dir.join("hf_reference.json"));
    assert_eq!(hf["class"], want.architecture());
    assert_eq!(hf["missing_keys"], serde_json::json!([]));
    assert_eq!(hf["unexpected_keys"], serde_json::json!([]));
    let model = Classifier::load(&dir, tch::Device::Cpu).expect("load");
    assert_eq!(model.kind(), want);
    let labels: Vec<String> = model.labels().expect("labels");
    let hf_labels: Vec<String> = (0..labels.len())
        .map(|i| {
            hf["id2label"][i.to_string()]
                .as_str()
                .expect("label")
                .to_string()
        })
        .collect();
    assert_eq!(labels, hf_labels);
    let logits = model.logits(&batch(&dir), false).expect("forward");
    let ours: Vec<f64> = Vec::<f32>::try_from(logits.flatten(0, -1))
        .expect("floats")
        .into_iter()
        .map(f64::from)
        .collect();
    let theirs = flat(&hf["logits"]);
    assert_eq!(ours.len(), theirs.len());
    // Padded positions of the token classifier are compared too: both
    // libraries compute them from the same masked attention.
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "{kind}: largest logit difference {worst}");
}

#[test]
fn a_fine_tuned_sequence_classifier_gives_transformers_logits() {
    check("sequence", TaskKind::Sequence);
}

#[test]
fn a_fine_tuned_token_classifier_gives_transformers_logits() {
    check("token", TaskKind::Token);
}

/// The tensor names of a safetensors file.
fn tensor_names(path: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(path).expect("read");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("header size")) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    header
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect()
}

#[test]
fn what_finetune_writes_today_has_the_fixtures_layout() {
    let model = common::model_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let line = |w: &str, l: &str| format!("{{\"text\": \"w10 {w} w12\", \"label\": \"{l}\"}}\n");
    std::fs::write(
        d.join("train.jsonl"),
        line("w50", "pos").repeat(8) + &line("w51", "neg").repeat(8),
    )
    .expect("write");
    let run = d.join("run");
    common::ok(
        common::cloze()
            .args([
                "--threads",
                "1",
                "finetune",
                "--task",
                "sequence",
                "--model",
            ])
            .arg(model.path())
            .arg("--train")
            .arg(d.join("train.jsonl"))
            .arg("--out")
            .arg(&run)
            .args([
                "--max-steps",
                "2",
                "--batch-size",
                "8",
                "--max-length",
                "16",
            ])
            .output()
            .expect("spawn"),
        "finetune",
    );
    let fixture_dir = fixture("sequence");
    assert_eq!(
        tensor_names(&run.join("model/model.safetensors")),
        tensor_names(&fixture_dir.join("model.safetensors"))
    );
    let (now, then) = (
        read_json(&run.join("model/config.json")),
        read_json(&fixture_dir.join("config.json")),
    );
    for field in ["architectures", "id2label", "label2id", "model_type"] {
        assert_eq!(now[field], then[field], "{field}");
    }
}

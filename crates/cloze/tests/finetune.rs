//! `cloze finetune` and `cloze predict` end to end on the tiny fixture model
//! with a word-level tokenizer: both tasks learn a rule the majority class
//! cannot, the saved model is an HF classifier with its label names, and bad
//! input fails with a message before anything is written.

mod common;

use std::path::Path;

use common::{cloze, fails_with, model_dir, ok};
use serde_json::{json, Value};

/// A deterministic pseudo-random word `w10`..`w39` (the filler vocabulary).
fn filler(i: usize, j: usize) -> String {
    format!("w{}", 10 + (i * 7 + j * 13 + i * j) % 30)
}

/// Sequence examples: label `pos` when the text holds `w50`, `neg` when it
/// holds `w51`; 60% are `neg`, so the majority baseline is 0.6.
fn write_sequence(path: &Path, n: usize, offset: usize) -> f64 {
    let mut text = String::new();
    let mut neg = 0;
    for k in 0..n {
        let i = k + offset;
        let is_neg = i % 5 < 3;
        neg += usize::from(is_neg);
        let mut words: Vec<String> = (0..6).map(|j| filler(i, j)).collect();
        words.insert(i % 6, if is_neg { "w51" } else { "w50" }.to_string());
        let label = if is_neg { "neg" } else { "pos" };
        text.push_str(&json!({"text": words.join(" "), "label": label}).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).expect("write examples");
    neg as f64 / n as f64
}

/// Token examples: `B-K` on the key words `w50`..`w54`, `O` elsewhere.
fn write_tokens(path: &Path, n: usize, offset: usize) {
    let mut text = String::new();
    for k in 0..n {
        let i = k + offset;
        let mut tokens: Vec<String> = (0..7).map(|j| filler(i, j)).collect();
        tokens[i % 7] = format!("w{}", 50 + i % 5);
        tokens[(i + 3) % 7] = format!("w{}", 50 + (i / 5) % 5);
        let labels: Vec<&str> = tokens
            .iter()
            .map(|t| if t.as_str() >= "w50" { "B-K" } else { "O" })
            .collect();
        text.push_str(&json!({"tokens": tokens, "labels": labels}).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).expect("write examples");
}

fn finetune(model: &Path, task: &str, dir: &Path, out: &Path) -> std::process::Command {
    let mut c = cloze();
    c.args(["--threads", "1", "finetune", "--task", task, "--model"])
        .arg(model)
        .arg("--train")
        .arg(dir.join("train.jsonl"))
        .arg("--dev")
        .arg(dir.join("dev.jsonl"))
        .arg("--test")
        .arg(dir.join("test.jsonl"))
        .arg("--out")
        .arg(out)
        .args([
            "--epochs",
            "10",
            "--lr",
            "3e-3",
            "--batch-size",
            "16",
            "--max-length",
            "32",
        ]);
    c
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn jsonl(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn sequence_classification_beats_the_majority_class_and_predicts() {
    let model = model_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    write_sequence(&d.join("train.jsonl"), 240, 0);
    write_sequence(&d.join("dev.jsonl"), 40, 1000);
    let majority = write_sequence(&d.join("test.jsonl"), 60, 2000);
    let run = d.join("run");
    ok(
        finetune(model.path(), "sequence", d, &run)
            .output()
            .expect("spawn"),
        "finetune",
    );
    let test = read_json(&run.join("test_metrics.json"));
    let acc = test["accuracies"]["cls"].as_f64().expect("accuracy");
    assert!(
        acc > majority + 0.2,
        "test accuracy {acc} vs majority {majority}"
    );
    // An HF sequence classifier with the label names, and the tokenizer.
    let config = read_json(&run.join("model/config.json"));
    assert_eq!(
        config["architectures"],
        json!(["BertForSequenceClassification"])
    );
    assert_eq!(config["id2label"], json!({"0": "neg", "1": "pos"}));
    assert_eq!(config["label2id"], json!({"neg": 0, "pos": 1}));
    assert!(run.join("model/tokenizer.json").is_file());
    // The run kept its settings, labels included.
    let saved = std::fs::read_to_string(run.join("finetune.toml")).expect("finetune.toml");
    assert!(saved.contains("labels = ["), "{saved}");

    // `cloze predict` gives the same accuracy as the test metrics.
    let out = ok(
        cloze()
            .args(["predict", "--model"])
            .arg(run.join("model"))
            .arg("--input")
            .arg(d.join("test.jsonl"))
            .output()
            .expect("spawn"),
        "predict",
    );
    let preds = jsonl(&out.stdout);
    assert_eq!(preds.len(), 60);
    let gold: Vec<Value> = std::fs::read_to_string(d.join("test.jsonl"))
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let hits = preds
        .iter()
        .zip(&gold)
        .filter(|(p, g)| p["label"] == g["label"])
        .count();
    assert!(
        (hits as f64 / 60.0 - acc).abs() < 1e-9,
        "{hits}/60 vs {acc}"
    );
    let p = &preds[0]["probabilities"];
    let total = p["neg"].as_f64().expect("p") + p["pos"].as_f64().expect("p");
    assert!((total - 1.0).abs() < 1e-4);

    // The model remembers the length it was trained and tested with (32
    // tokens, `model_max_length` as transformers reads it), and `cloze
    // predict` cuts longer inputs there unless told otherwise: a 38-word
    // text gets the probabilities of its first 32 tokens, not of the 40 the
    // position embeddings would allow.
    let tok_config = read_json(&run.join("model/tokenizer_config.json"));
    assert_eq!(tok_config["model_max_length"], json!(32), "{tok_config}");
    let long = d.join("long.jsonl");
    let words: Vec<String> = (0..38).map(|j| filler(7, j)).collect();
    std::fs::write(&long, json!({"text": words.join(" ")}).to_string() + "\n").expect("write");
    let predict_long = |max_length: Option<&str>| {
        let mut c = cloze();
        c.args(["predict", "--model"])
            .arg(run.join("model"))
            .arg("--input")
            .arg(&long);
        if let Some(n) = max_length {
            c.args(["--max-length", n]);
        }
        jsonl(&ok(c.output().expect("spawn"), "predict long").stdout)[0]["probabilities"].clone()
    };
    let default = predict_long(None);
    assert_eq!(default, predict_long(Some("32")));
    assert_ne!(default, predict_long(Some("40")));

    // In bf16 the probabilities stay within bf16 rounding of fp32's, and the
    // label is the same wherever fp32 was not near a tie.
    let out = ok(
        cloze()
            .args(["predict", "--precision", "bf16", "--model"])
            .arg(run.join("model"))
            .arg("--input")
            .arg(d.join("test.jsonl"))
            .output()
            .expect("spawn"),
        "predict --precision bf16",
    );
    let bf16 = jsonl(&out.stdout);
    assert_eq!(bf16.len(), 60);
    let mut differs = false;
    for (a, b) in preds.iter().zip(&bf16) {
        let (pa, pb) = (
            a["probabilities"]["pos"].as_f64().expect("p"),
            b["probabilities"]["pos"].as_f64().expect("p"),
        );
        assert!((pa - pb).abs() < 0.02, "fp32 {pa} vs bf16 {pb}");
        differs |= pa != pb;
        if (pa - 0.5).abs() > 0.02 {
            assert_eq!(a["label"], b["label"], "fp32 {pa} vs bf16 {pb}");
        }
    }
    assert!(differs, "bf16 probabilities equal fp32's to the last bit");

    // The dev curves (loss, accuracy, macro-F1) plot like a pretraining run's.
    ok(
        cloze().arg("plot").arg(&run).output().expect("spawn"),
        "plot",
    );
    assert!(run.join("plots/accuracy.png").is_file());

    // A second run into the same directory is refused without --force.
    let again = finetune(model.path(), "sequence", d, &run)
        .output()
        .expect("spawn");
    fails_with(&again, "already holds a fine-tuning run");
}

#[test]
fn token_classification_learns_tags_and_predicts_one_per_word() {
    let model = model_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    write_tokens(&d.join("train.jsonl"), 200, 0);
    write_tokens(&d.join("dev.jsonl"), 30, 500);
    write_tokens(&d.join("test.jsonl"), 40, 900);
    let run = d.join("run");
    ok(
        finetune(model.path(), "token", d, &run)
            .output()
            .expect("spawn"),
        "finetune",
    );
    let test = read_json(&run.join("test_metrics.json"));
    let f1 = test["accuracies"]["span_f1"].as_f64().expect("span f1");
    // Predicting `O` everywhere (the majority tag) finds no span: F1 0.
    assert!(f1 > 0.8, "span F1 {f1}");
    let config = read_json(&run.join("model/config.json"));
    assert_eq!(
        config["architectures"],
        json!(["BertForTokenClassification"])
    );
    assert_eq!(config["id2label"], json!({"0": "O", "1": "B-K"}));

    std::fs::write(
        d.join("new.jsonl"),
        "{\"tokens\": [\"w12\", \"w52\", \"w30\"]}\n{\"tokens\": [\"w50\"]}\n",
    )
    .expect("write");
    let out = ok(
        cloze()
            .args(["predict", "--model"])
            .arg(run.join("model"))
            .arg("--input")
            .arg(d.join("new.jsonl"))
            .output()
            .expect("spawn"),
        "predict",
    );
    let preds = jsonl(&out.stdout);
    assert_eq!(preds.len(), 2);
    assert_eq!(preds[0]["labels"], json!(["O", "B-K", "O"]));
    assert_eq!(preds[1]["labels"], json!(["B-K"]));
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let model = model_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    write_sequence(&d.join("train.jsonl"), 40, 0);
    write_sequence(&d.join("test.jsonl"), 10, 100);
    let run = d.join("run");

    // A dev label the training data does not have.
    std::fs::write(
        d.join("dev.jsonl"),
        "{\"text\": \"w10 w11\", \"label\": \"neutral\"}\n",
    )
    .expect("write");
    let out = finetune(model.path(), "sequence", d, &run)
        .output()
        .expect("spawn");
    fails_with(&out, "neutral");
    assert!(
        !run.exists(),
        "nothing is written before the data is checked"
    );

    // An empty training file.
    write_sequence(&d.join("dev.jsonl"), 10, 50);
    std::fs::write(d.join("train.jsonl"), "").expect("write");
    let out = finetune(model.path(), "sequence", d, &run)
        .output()
        .expect("spawn");
    fails_with(&out, "train.jsonl");
    assert!(!run.exists());

    // Token examples whose label count differs from their token count.
    std::fs::write(
        d.join("train.jsonl"),
        "{\"tokens\": [\"w10\", \"w11\"], \"labels\": [\"O\"]}\n",
    )
    .expect("write");
    let out = finetune(model.path(), "token", d, &run)
        .output()
        .expect("spawn");
    fails_with(&out, "train.jsonl");
    assert!(!run.exists());

    // A model without a classification head.
    let out = cloze()
        .args(["predict", "--model"])
        .arg(model.path())
        .arg("--input")
        .arg(d.join("test.jsonl"))
        .output()
        .expect("spawn");
    fails_with(
        &out,
        "is not a BertForSequenceClassification or BertForTokenClassification model",
    );
}

#[test]
fn a_vocab_txt_only_base_model_is_fine_tuned_and_keeps_its_casing() {
    // The fixture with its tokens as a BERT vocab.txt, and its casing only
    // in config.json (as older checkpoints keep it), where transformers does
    // not look for it: the fine-tuned model gets a tokenizer_config.json.
    let model = model_dir();
    let base = model.path();
    std::fs::remove_file(base.join("tokenizer.json")).expect("rm");
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vocab.extend((5..96).map(|i| format!("w{i}")));
    std::fs::write(base.join("vocab.txt"), vocab.join("\n") + "\n").expect("vocab");
    let mut config = read_json(&base.join("config.json"));
    // Cased, although the vocabulary has no upper-case piece to show it.
    config["do_lower_case"] = json!(false);
    std::fs::write(base.join("config.json"), config.to_string()).expect("config");

    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    write_sequence(&d.join("train.jsonl"), 40, 0);
    write_sequence(&d.join("dev.jsonl"), 10, 1000);
    write_sequence(&d.join("test.jsonl"), 10, 2000);
    let run = d.join("run");
    ok(
        finetune(base, "sequence", d, &run).output().expect("spawn"),
        "finetune",
    );
    let model_out = run.join("model");
    assert!(model_out.join("vocab.txt").is_file());
    assert!(!model_out.join("tokenizer.json").exists());
    let written = read_json(&model_out.join("tokenizer_config.json"));
    assert_eq!(written["do_lower_case"], json!(false), "{written}");
    assert_eq!(written["tokenizer_class"], json!("BertTokenizer"));

    // `cloze predict` reads the fine-tuned vocab.txt-only directory, cased as
    // the base was: `W10` is not `w10` but an unknown word.
    let input = d.join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"w10 w50 w11\"}\n{\"text\": \"W10 W50 W11\"}\n",
    )
    .expect("write");
    let out = ok(
        cloze()
            .args(["predict", "--model"])
            .arg(&model_out)
            .arg("--input")
            .arg(&input)
            .output()
            .expect("spawn"),
        "predict",
    );
    let preds = jsonl(&out.stdout);
    assert_eq!(preds.len(), 2);
    assert!(preds[0]["probabilities"]["pos"].is_f64(), "{}", preds[0]);
    assert_ne!(preds[0]["probabilities"], preds[1]["probabilities"]);
}

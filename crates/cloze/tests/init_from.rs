//! `cloze pretrain --init-from DIR`: continued pretraining from a HuggingFace
//! checkpoint (the hf-tiny-bert fixture with a word-level tokenizer): the
//! checkpoint decides the architecture, contradicting `--set model.*` values
//! and data tokenized with another vocabulary are refused, and a resumed run
//! no longer needs the checkpoint it started from.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cloze, fails_with, model_dir, ok};

/// Documents of the fixture tokenizer's words `w5` ... `w95`, in a fixed
/// pattern with some regularity to learn.
fn write_word_corpus(path: &Path) {
    let mut text = String::new();
    for doc in 0..30 {
        for s in 0..6 {
            let words: Vec<String> = (0..9)
                .map(|k| format!("w{}", 5 + (doc * 7 + s * 3 + k * k) % 91))
                .collect();
            text.push_str(&words.join(" "));
            text.push('\n');
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Shards of the word corpus tokenized with `tokenizer`, in `dir/data`.
fn prepare_with(dir: &Path, tokenizer: &Path, extra: &[&str]) -> PathBuf {
    let corpus = dir.join("words.txt");
    write_word_corpus(&corpus);
    let data = dir.join("data");
    ok(
        cloze()
            .args(["data", "prepare", "--corpus"])
            .arg(&corpus)
            .arg("--tokenizer")
            .arg(tokenizer)
            .arg("--out")
            .arg(&data)
            .args([
                "--mode",
                "packed",
                "--max-seq-length",
                "32",
                "--holdout-fraction",
                "0.2",
            ])
            .args(extra)
            .output()
            .unwrap(),
        "data prepare",
    );
    data
}

const SETTINGS: &[&str] = &[
    "--set",
    "data.batch_size=4",
    "--set",
    "eval.every_steps=2",
    "--set",
    "checkpoint.every_steps=2",
    "--set",
    "run.threads=1",
];

/// `cloze pretrain --init-from ckpt` at info level (the notices are info lines).
fn pretrain_from(ckpt: &Path, data: &Path, out: &Path, steps: u64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cloze"));
    c.args(["pretrain", "--init-from"])
        .arg(ckpt)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--max-steps", &steps.to_string()])
        .args(SETTINGS);
    c
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_run_starts_from_a_checkpoint_and_resumes_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = model_dir();
    let data = prepare_with(tmp.path(), ckpt.path(), &[]);
    let run = tmp.path().join("run");
    let out = ok(
        pretrain_from(ckpt.path(), &data, &run, 2).output().unwrap(),
        "pretrain --init-from",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The bert-tiny preset's shape is replaced by the checkpoint's, with one notice.
    assert!(
        stderr.contains("decides the architecture") && stderr.contains("hidden_size 128 -> 32"),
        "{stderr}"
    );
    assert!(stderr.contains("tensors loaded"), "{stderr}");
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let cfg: toml::Table = toml::from_str(&saved).unwrap();
    assert_eq!(cfg["model"]["hidden_size"].as_integer(), Some(32));
    assert_eq!(
        cfg["model"]["max_position_embeddings"].as_integer(),
        Some(40)
    );
    assert_eq!(cfg["init"]["scheme"].as_str(), Some("hf"));
    let from = PathBuf::from(cfg["init"]["from"].as_str().unwrap());
    assert!(from.is_absolute());
    assert_eq!(from, ckpt.path().canonicalize().unwrap());
    let model = read_json(&run.join("model/config.json"));
    assert_eq!(model["vocab_size"], 96);
    assert_eq!(model["hidden_size"], 32);
    assert_eq!(model["intermediate_size"], 64);

    // Resuming rebuilds the model from the run's own checkpoint: the directory
    // it started from may be gone.
    let moved = tmp.path().join("moved-away");
    std::fs::rename(ckpt.path(), &moved).unwrap();
    ok(
        cloze()
            .args(["pretrain", "--resume"])
            .arg(&run)
            .args(["--max-steps", "4"])
            .output()
            .unwrap(),
        "resume",
    );
    let steps: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(steps.iter().any(|s| s.ends_with("00000004")), "{steps:?}");
    std::fs::rename(&moved, ckpt.path()).unwrap();
}

#[test]
fn a_set_model_value_that_contradicts_the_checkpoint_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = model_dir();
    let data = prepare_with(tmp.path(), ckpt.path(), &[]);
    let run = tmp.path().join("run");
    let out = pretrain_from(ckpt.path(), &data, &run, 2)
        .args(["--set", "model.hidden_size=64"])
        .output()
        .unwrap();
    fails_with(
        &out,
        "--set model.hidden_size=64 contradicts the checkpoint",
    );
    fails_with(&out, "hidden_size = 32");
    assert!(!run.exists(), "nothing is written before the refusal");
    // A --set that agrees with the checkpoint is accepted.
    ok(
        pretrain_from(ckpt.path(), &data, &run, 1)
            .args(["--set", "model.hidden_size=32"])
            .output()
            .unwrap(),
        "agreeing --set",
    );
}

#[test]
fn data_tokenized_with_another_vocabulary_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = model_dir();
    // A WordPiece tokenizer trained here: same size, different ids.
    let data = common::prepare(tmp.path(), 96);
    let run = tmp.path().join("run");
    let out = pretrain_from(ckpt.path(), &data, &run, 1).output().unwrap();
    fails_with(&out, "was not tokenized with the checkpoint's vocabulary");
    fails_with(&out, "cloze data prepare --tokenizer");
    assert!(!run.exists(), "refused before the run directory is made");
}

#[test]
fn data_with_added_tokens_grows_the_checkpoint_vocabulary() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = model_dir();
    // `w7` is in the fixture's vocabulary (skipped); the other two are new.
    let tokens = tmp.path().join("tokens.txt");
    std::fs::write(&tokens, "# domain words\nquokka\nw7\nnumbat\n").unwrap();
    let data = prepare_with(
        tmp.path(),
        ckpt.path(),
        &["--add-tokens", tokens.to_str().unwrap()],
    );
    let grown = read_json(&data.join("tokenizer.json"));
    let added: Vec<&str> = grown["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["content"].as_str().unwrap())
        .collect();
    assert!(
        added.contains(&"quokka") && added.contains(&"numbat"),
        "{added:?}"
    );
    let run = tmp.path().join("run");
    let out = ok(
        pretrain_from(ckpt.path(), &data, &run, 2).output().unwrap(),
        "pretrain --init-from with added tokens",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vocabulary grown from 96 to 98 ids"),
        "{stderr}"
    );
    let model = read_json(&run.join("model/config.json"));
    assert_eq!(model["vocab_size"], 98);
    // The saved tokenizer keeps the new tokens, so the model and its
    // tokenizer agree on every id.
    let saved = read_json(&run.join("model/tokenizer.json"));
    assert_eq!(saved["added_tokens"], grown["added_tokens"]);
}

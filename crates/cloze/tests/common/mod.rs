//! Helpers shared by the driver's integration tests: running the real
//! `cloze` binary, writing a small corpus, and preparing tokenizer + shards.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `cloze` binary under test, quiet.
pub fn cloze() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cloze"));
    c.arg("-q");
    c
}

pub fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A small English corpus: documents of simple, repetitive sentences, blank-line separated.
pub fn write_corpus(path: &Path, docs: usize) {
    let subjects = [
        "the people",
        "our nation",
        "the congress",
        "this government",
        "the states",
        "our citizens",
    ];
    let verbs = [
        "shall protect",
        "must defend",
        "will support",
        "can improve",
        "should respect",
        "may secure",
    ];
    let objects = [
        "the union",
        "the constitution",
        "our liberty",
        "the common defense",
        "the public peace",
        "our commerce",
    ];
    let mut text = String::new();
    for d in 0..docs {
        for s in 0..12 {
            let k = d * 31 + s * 7;
            text.push_str(&format!(
                "{} {} {} in the year {}.\n",
                subjects[k % 6],
                verbs[(k / 6) % 6],
                objects[(k / 3 + d) % 6],
                1800 + (k % 50)
            ));
        }
        text.push('\n');
    }
    std::fs::write(path, text).expect("corpus written");
}

/// Tokenizer + shards with a held-out split, in `dir`.
pub fn prepare(dir: &Path, vocab: u32) -> PathBuf {
    let corpus = dir.join("corpus.txt");
    write_corpus(&corpus, 60);
    let tok = dir.join("tok");
    let data = dir.join("data");
    train_tokenizer_on(&corpus, &tok, vocab);
    ok(
        cloze()
            .args(["data", "prepare", "--corpus"])
            .arg(&corpus)
            .arg("--tokenizer")
            .arg(&tok)
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
            .output()
            .expect("spawn"),
        "data prepare",
    );
    data
}

pub const SMALL: &[&str] = &[
    "--set",
    "model.hidden_size=32",
    "--set",
    "model.intermediate_size=64",
    "--set",
    "model.num_attention_heads=2",
    "--set",
    "data.batch_size=8",
    "--set",
    "eval.every_steps=5",
    "--set",
    "checkpoint.every_steps=5",
    "--set",
    "schedule.warmup_steps=2",
    "--set",
    "run.log_every=1",
    "--set",
    "run.threads=1",
];

pub fn pretrain(data: &Path, out: &Path, steps: u64) -> Command {
    let mut c = cloze();
    c.args(["pretrain", "--config", "bert-tiny", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out);
    c.args(["--max-steps", &steps.to_string()]).args(SMALL);
    c
}

/// Prepares data in `dir` ([`prepare`], a `vocab`-token tokenizer) and
/// pretrains bert-tiny on it for `steps` steps; returns the data directory
/// and the saved model.
pub fn pretrained_model(dir: &Path, vocab: u32, steps: u64) -> (PathBuf, PathBuf) {
    let data = prepare(dir, vocab);
    let run = dir.join("run");
    ok(
        pretrain(&data, &run, steps).output().expect("spawn"),
        "pretrain",
    );
    (data, run.join("model"))
}

/// Asserts that a run failed (non-zero exit) and that its stderr mentions `needle`.
pub fn fails_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure mentioning {needle:?}, got success\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(needle),
        "stderr does not mention {needle:?}:\n{stderr}"
    );
}

/// A WordPiece tokenizer trained on [`write_corpus`]'s corpus, in `dir/tok`
/// (no shards: for commands that need only a tokenizer).
pub fn train_tokenizer(dir: &Path, vocab: u32) -> PathBuf {
    let corpus = dir.join("tok-corpus.txt");
    write_corpus(&corpus, 20);
    let tok = dir.join("tok");
    train_tokenizer_on(&corpus, &tok, vocab);
    tok
}

/// `cloze tokenizer train` of `corpus` into `tok` (every pair kept: min frequency 1).
pub fn train_tokenizer_on(corpus: &Path, tok: &Path, vocab: u32) {
    ok(
        cloze()
            .args(["tokenizer", "train", "--corpus"])
            .arg(corpus)
            .args([
                "--vocab-size",
                &vocab.to_string(),
                "--min-frequency",
                "1",
                "--out",
            ])
            .arg(tok)
            .output()
            .expect("spawn"),
        "tokenizer train",
    );
}

/// The tiny HF BERT fixture of `cloze-models` (vocabulary 96, 40 positions).
pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cloze-models/tests/fixtures/hf-tiny-bert")
}

/// The fixture's weights and config plus a word-level tokenizer: ids 0-4 are the
/// specials, ids 5..96 the words `w5` ... `w95`.
pub fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(f), dir.path().join(f)).expect("copy fixture");
    }
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let mut vocab = serde_json::Map::new();
    for (i, s) in specials.iter().enumerate() {
        vocab.insert(s.to_string(), i.into());
    }
    for i in 5..96 {
        vocab.insert(format!("w{i}"), i.into());
    }
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(dir.path().join("tokenizer.json"), tok.to_string()).expect("tokenizer");
    dir
}

/// Waits (up to two minutes) until `ckpts` holds at least `n` entries, then
/// kills `child` with SIGKILL and returns its exit status.
pub fn kill_9_once_checkpoints_exist(
    child: &mut std::process::Child,
    ckpts: &Path,
    n: usize,
) -> std::process::ExitStatus {
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(ckpts)
        .map(|d| d.count() < n)
        .unwrap_or(true)
    {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(120),
            "no checkpoints appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    child.wait().expect("wait")
}

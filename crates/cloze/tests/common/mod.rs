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
    ok(
        cloze()
            .args(["tokenizer", "train", "--corpus"])
            .arg(&corpus)
            .args([
                "--vocab-size",
                &vocab.to_string(),
                "--min-frequency",
                "1",
                "--out",
            ])
            .arg(&tok)
            .output()
            .expect("spawn"),
        "tokenizer train",
    );
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

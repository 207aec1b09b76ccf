//! `cloze fill-mask`, `cloze score` and `cloze encode` end to end on the tiny HF
//! fixture, with a word-level tokenizer.json written here for its 96-token
//! vocabulary, and with a BERT vocab.txt of the same tokens instead.

#![allow(clippy::unwrap_used)]

mod common;

use common::model_dir;
use std::path::Path;
use std::process::Command;

fn cloze(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cloze"))
        .args(args)
        .arg("-q")
        .output()
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn fill_mask_predicts_every_mask() {
    let dir = model_dir();
    let out = cloze(&[
        "fill-mask",
        "--model",
        path(dir.path()),
        "--top-k",
        "3",
        "--device",
        "cpu",
        "--json",
        "w5 [MASK] w7 [MASK] w9",
        "w10 [MASK]",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let masks = lines[0]["masks"].as_array().unwrap();
    assert_eq!(masks.len(), 2);
    assert_eq!(masks[0]["position"], 2);
    assert_eq!(masks[1]["position"], 4);
    assert_eq!(masks[0]["candidates"].as_array().unwrap().len(), 3);
    let p0 = masks[0]["candidates"][0]["probability"].as_f64().unwrap();
    assert!(p0 > 0.0 && p0 <= 1.0);
    assert_eq!(lines[1]["masks"].as_array().unwrap().len(), 1);
    // A text without [MASK] is an error, not a silent empty answer.
    let bad = cloze(&[
        "fill-mask",
        "--model",
        path(dir.path()),
        "--device",
        "cpu",
        "w5 w6",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no [MASK]"));
}

#[test]
fn score_prints_one_line_per_sentence_and_a_summary() {
    let dir = model_dir();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "w5 w6 w7 w8\n\nw9 w10\nw11 w12 w13\n").unwrap();
    let out = cloze(&[
        "score",
        "--model",
        path(dir.path()),
        "--input",
        path(&input),
        "--device",
        "cpu",
        "--batch-size",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "three sentences (blank line skipped) and a summary"
    );
    assert_eq!(lines[0]["tokens"], 4);
    assert!(lines[0]["pll"].as_f64().unwrap() < 0.0);
    assert_eq!(lines[3]["tokens"], 9);
    assert!(lines[3]["corpus_pseudo_perplexity"].as_f64().unwrap() > 1.0);
}

#[test]
fn encode_writes_safetensors_and_jsonl() {
    let dir = model_dir();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "w5 w6 w7 w8\nw9 w10\nw11 w12 w13\n").unwrap();
    let st = dir.path().join("out.safetensors");
    let out = cloze(&[
        "encode",
        "--model",
        path(dir.path()),
        "--input",
        path(&input),
        "--output",
        path(&st),
        "--device",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = cloze_models::hf::read_safetensors(&st).unwrap();
    assert_eq!(t["sentence_embeddings"].size(), vec![3, 32]);
    assert_eq!(t["token_states"].size(), vec![6 + 4 + 5, 32]);
    assert_eq!(
        Vec::<i64>::try_from(&t["offsets"]).unwrap(),
        vec![0, 6, 10, 15]
    );
    let jl = dir.path().join("out.jsonl");
    let out = cloze(&[
        "encode",
        "--model",
        path(dir.path()),
        "--input",
        path(&input),
        "--output",
        path(&jl),
        "--device",
        "cpu",
    ]);
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&jl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[1]["tokens"],
        serde_json::json!(["[CLS]", "w9", "w10", "[SEP]"])
    );
    let e0: Vec<f64> = serde_json::from_value(rows[0]["embedding"].clone()).unwrap();
    let s0 = Vec::<f32>::try_from(t["sentence_embeddings"].get(0)).unwrap();
    assert!(
        e0.iter()
            .zip(&s0)
            .all(|(a, b)| (a - f64::from(*b)).abs() < 1e-6),
        "both formats agree"
    );
    let bad = cloze(&[
        "encode",
        "--model",
        path(dir.path()),
        "--input",
        path(&input),
        "--output",
        "x.csv",
    ]);
    assert!(!bad.status.success());
}

#[test]
fn encode_to_a_bare_file_name_writes_in_the_current_directory() {
    // `--output out.jsonl` (no directory part) used to write the file and then
    // fail syncing the directory "" with "No such file or directory".
    let dir = model_dir();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "w5 w6 w7 w8\n").unwrap();
    let out = common::cloze()
        .current_dir(dir.path())
        .args([
            "encode",
            "--model",
            ".",
            "--input",
            "in.txt",
            "--output",
            "out.jsonl",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
}

/// The fixture with the same 96 tokens as a BERT `vocab.txt` and no tokenizer.json.
fn vocab_only_model_dir() -> tempfile::TempDir {
    let dir = model_dir();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vocab.extend((5..96).map(|i| format!("w{i}")));
    std::fs::write(dir.path().join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"do_lower_case": true}"#,
    )
    .unwrap();
    dir
}

#[test]
fn a_vocab_txt_only_checkpoint_serves_fill_mask_score_and_encode() {
    let json = model_dir();
    let vocab = vocab_only_model_dir();
    let run = |dir: &Path, args: &[&str]| {
        let mut all = vec![args[0], "--model", path(dir), "--device", "cpu"];
        all.extend(&args[1..]);
        let out = cloze(&all);
        assert!(
            out.status.success(),
            "{args:?} on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Upper case reads as lower case, as tokenizer_config.json says.
    let fill = ["fill-mask", "--json", "w5 [MASK] w7", "W10 [MASK] w11"];
    let from_vocab = run(vocab.path(), &fill);
    let from_json = run(
        json.path(),
        &["fill-mask", "--json", "w5 [MASK] w7", "w10 [MASK] w11"],
    );
    let masks = |out: &str| -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["masks"].clone())
            .collect()
    };
    assert_eq!(masks(&from_vocab).len(), 2);
    assert_eq!(masks(&from_vocab), masks(&from_json));
    let input = vocab.path().join("in.txt");
    std::fs::write(&input, "w5 w6 w7 w8\nw9 w10\n").unwrap();
    let score = ["score", "--input", path(&input)];
    let scored = run(vocab.path(), &score);
    assert_eq!(scored.lines().count(), 3, "two sentences and a summary");
    assert_eq!(scored, run(json.path(), &score));
    let jl = vocab.path().join("out.jsonl");
    run(
        vocab.path(),
        &["encode", "--input", path(&input), "--output", path(&jl)],
    );
    let rows = std::fs::read_to_string(&jl).unwrap();
    assert!(rows.contains(r#"["[CLS]","w9","w10","[SEP]"]"#), "{rows}");

    // Without either file the checkpoint is refused, naming both.
    std::fs::remove_file(vocab.path().join("vocab.txt")).unwrap();
    let out = cloze(&["fill-mask", "--model", path(vocab.path()), "w5 [MASK]"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no tokenizer.json or vocab.txt"), "{err}");
}

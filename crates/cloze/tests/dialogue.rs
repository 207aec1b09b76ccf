//! The dialogue flow end to end on hand-made samples: `cloze dialogue init`
//! from the plato-tiny preset, `cloze finetune --task dialogue` (roles,
//! attention, resume-safe run directory), `cloze dialogue eval`, and
//! `cloze chat --json` fed from standard input.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::{cloze, fails_with, ok, train_tokenizer_on};

/// Small scenes where each speaker has a habit, as `cloze data dialogue` lines.
fn write_samples(path: &Path, scenes: usize, offset: usize) {
    let lines = [
        ("Ham", "what news my lord"),
        ("Hor", "the king doth wake tonight"),
        ("Ham", "is it a custom"),
        ("Hor", "ay marry is it"),
        ("Mar", "look where it comes again"),
    ];
    let mut out = String::new();
    for s in 0..scenes {
        let id = format!("play/{}", s + offset);
        for k in 1..lines.len() {
            let context: Vec<serde_json::Value> = lines[..k]
                .iter()
                .map(|(who, text)| serde_json::json!({"speaker": who, "text": text}))
                .collect();
            let (who, text) = lines[k];
            let line = serde_json::json!({
                "source": "play",
                "dialogue": id,
                "context": context,
                "response": {"speaker": who, "text": text},
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    std::fs::write(path, out).unwrap();
}

fn preset() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/plato-tiny.toml")
}

#[test]
fn init_train_eval_and_chat() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (train, valid) = (d.join("train.jsonl"), d.join("valid.jsonl"));
    write_samples(&train, 12, 0);
    write_samples(&valid, 4, 100);
    let corpus = d.join("corpus.txt");
    std::fs::write(
        &corpus,
        "what news my lord\nthe king doth wake tonight\nis it a custom\nay marry is it\nlook where it comes again\n".repeat(5),
    )
    .unwrap();
    let tok = d.join("tok");
    train_tokenizer_on(&corpus, &tok, 120);

    let init = d.join("init");
    ok(
        cloze()
            .args(["dialogue", "init", "--config"])
            .arg(preset())
            .arg("--tokenizer")
            .arg(&tok)
            .arg("--out")
            .arg(&init)
            .output()
            .unwrap(),
        "dialogue init",
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(init.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["role_type_size"], 16);
    assert_eq!(config["dialogue"]["roles"], "speaker");
    // A second init into the same place is refused without --force.
    let again = cloze()
        .args(["dialogue", "init", "--config"])
        .arg(preset())
        .arg("--tokenizer")
        .arg(&tok)
        .arg("--out")
        .arg(&init)
        .output()
        .unwrap();
    assert!(!again.status.success());

    let run = d.join("run");
    ok(
        cloze()
            .args(["finetune", "--task", "dialogue", "--model"])
            .arg(&init)
            .arg("--train")
            .arg(&train)
            .arg("--dev")
            .arg(&valid)
            .args([
                "--roles",
                "alternating",
                "--max-steps",
                "30",
                "--lr",
                "3e-3",
                "--batch-size",
                "8",
                "--max-length",
                "64",
                "--out",
            ])
            .arg(&run)
            .output()
            .unwrap(),
        "finetune --task dialogue",
    );
    let model = run.join("model");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["dialogue"]["roles"], "alternating");
    assert_eq!(config["dialogue"]["max_context_len"], 64);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .filter_map(|v| v["losses"]["response"].as_f64())
        .collect();
    assert!(losses.len() >= 2, "{metrics}");
    assert!(
        losses.last().unwrap() < losses.first().unwrap(),
        "the response loss falls: {losses:?}"
    );

    let eval = ok(
        cloze()
            .args(["dialogue", "eval", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&valid)
            .args(["--candidates", "3", "--generate", "4", "--json"])
            .output()
            .unwrap(),
        "dialogue eval",
    );
    let v: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(v["samples"], 16);
    let ppl = v["perplexity"].as_f64().unwrap();
    // Trained below the uniform guess over the vocabulary.
    assert!(ppl > 1.0 && ppl < 120.0, "{v}");
    assert_eq!(v["ranked"], 16);
    assert!((0.0..=1.0).contains(&v["hits_at_1"].as_f64().unwrap()));
    assert_eq!(v["generated"], 4);

    let mut child = cloze()
        .args(["chat", "--model"])
        .arg(&model)
        .args(["--json", "--strategy", "greedy", "--max-len", "8"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Ham: what news my lord\n/reset\nis it a custom\n/quit\nnever read\n")
        .unwrap();
    let out = ok(child.wait_with_output().unwrap(), "chat");
    let replies: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 2, "one answer per turn until /quit");
    for r in &replies {
        assert_eq!(r["speaker"], "model");
        assert!(r["tokens"].as_u64().unwrap() <= 8);
    }

    // A classifier-only flag and a non-dialogue model are refused clearly.
    let bad = cloze()
        .args([
            "finetune", "--task", "sequence", "--roles", "none", "--model",
        ])
        .arg(&init)
        .arg("--train")
        .arg(&train)
        .arg("--out")
        .arg(d.join("bad"))
        .output()
        .unwrap();
    fails_with(&bad, "--task dialogue only");
    let not_dialogue = cloze()
        .args(["chat", "--model"])
        .arg(common::fixture())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    fails_with(&not_dialogue, "not a dialogue model");
}

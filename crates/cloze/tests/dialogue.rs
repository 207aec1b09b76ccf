//! The dialogue flow end to end on hand-made samples: `cloze dialogue init`
//! from the plato-tiny preset, `cloze finetune --task dialogue` (roles,
//! attention, resume-safe run directory, coherence training), `cloze
//! dialogue eval` (of the model ranked by likelihood, PMI or coherence, and
//! of the unigram and retrieval baselines), and `cloze chat --json` fed
//! from standard input.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
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

/// Under `d`: 12 training and 4 held-out samples, a tokenizer trained on
/// their lines and a fresh `cloze dialogue init` model; returns (train,
/// held-out, tokenizer, model).
fn small_plays(d: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let (train, heldout) = (d.join("train.jsonl"), d.join("heldout.jsonl"));
    write_samples(&train, 12, 0);
    write_samples(&heldout, 4, 100);
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
    (train, heldout, tok, init)
}

/// `cloze dialogue eval` ranking three candidates per sample by `rank_by`,
/// generating nothing, as JSON.
fn rank_only(model: &Path, data: &Path, rank_by: &str) -> std::process::Output {
    cloze()
        .args(["dialogue", "eval", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .args([
            "--candidates",
            "3",
            "--generate",
            "0",
            "--rank-by",
            rank_by,
            "--json",
        ])
        .output()
        .unwrap()
}

#[test]
fn init_train_eval_and_chat() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (train, valid, tok, init) = small_plays(d);
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
    assert_eq!(v["rank_by"], "likelihood");
    // Ranking by PMI: the same perplexity; nothing generated, so no distinct-n.
    let pmi = ok(
        rank_only(&model, &valid, "pmi"),
        "dialogue eval --rank-by pmi",
    );
    let p: serde_json::Value = serde_json::from_slice(&pmi.stdout).unwrap();
    assert_eq!(p["rank_by"], "pmi");
    assert_eq!(p["perplexity"], v["perplexity"]);
    assert_eq!(p["ranked"], 16);
    assert!((0.0..=1.0).contains(&p["hits_at_1"].as_f64().unwrap()));
    assert!(p["distinct_1"].is_null());

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

/// PLATO-2's response coherence estimation: `--set dialogue.coherence=true`
/// trains the pair head beside the response loss, the model is saved with
/// it (`BertForPreTraining`), and `dialogue eval --rank-by coherence` ranks
/// with it; a model without the head is refused.
#[test]
fn coherence_training_and_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (train, valid, _tok, init) = small_plays(d);
    let eval = |model: &Path| rank_only(model, &valid, "coherence");
    fails_with(&eval(&init), "no trained coherence head");
    let run = d.join("run");
    ok(
        cloze()
            .args(["finetune", "--task", "dialogue", "--model"])
            .arg(&init)
            .arg("--train")
            .arg(&train)
            .args([
                "--max-steps",
                "12",
                "--lr",
                "3e-3",
                "--batch-size",
                "4",
                "--max-length",
                "64",
                "--set",
                "dialogue.coherence=true",
                "--set",
                "dialogue.coherence_weight=2",
                "--out",
            ])
            .arg(&run)
            .output()
            .unwrap(),
        "finetune --task dialogue with coherence",
    );
    let model = run.join("model");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["dialogue"]["coherence"], true);
    assert_eq!(config["dialogue"]["coherence_weight"], 2.0);
    assert_eq!(config["architectures"][0], "BertForPreTraining");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let train_lines: Vec<serde_json::Value> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .collect();
    assert!(!train_lines.is_empty(), "{metrics}");
    for v in &train_lines {
        // 4 samples a step: 4 coherent and 4 distractor rows, summed over
        // the steps of the logging window.
        let rows = v["counts"]["coherence"].as_u64().unwrap();
        assert!(rows > 0 && rows % 8 == 0, "{v}");
        let response = v["losses"]["response"].as_f64().unwrap();
        let coherence = v["losses"]["coherence"].as_f64().unwrap();
        let total = v["loss"].as_f64().unwrap();
        assert!((total - (response + 2.0 * coherence)).abs() < 1e-3, "{v}");
    }
    let out = ok(eval(&model), "dialogue eval --rank-by coherence");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rank_by"], "coherence");
    assert_eq!(v["ranked"], 16);
    assert!((0.0..=1.0).contains(&v["hits_at_1"].as_f64().unwrap()));
    assert!(v["perplexity"].as_f64().unwrap() > 1.0);
}

/// `cloze dialogue eval --baseline unigram|retrieval`: fitted on the
/// training samples, scored in the tokens and layout of a dialogue model
/// (here a fresh `cloze dialogue init`, whose weights a baseline never reads).
#[test]
fn baselines_score_in_the_models_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (train, test, _tok, model) = small_plays(d);
    let vocab = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(model.join("config.json")).unwrap(),
    )
    .unwrap()["vocab_size"]
        .as_f64()
        .unwrap();
    let eval = |baseline: &str, json: bool| {
        let mut c = cloze();
        c.args(["dialogue", "eval", "--baseline", baseline, "--train"])
            .arg(&train)
            .arg("--model")
            .arg(&model)
            .arg("--data")
            .arg(&test)
            .args(["--candidates", "3", "--seed", "1"]);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let json = |baseline: &str| -> serde_json::Value {
        let out = ok(eval(baseline, true), baseline);
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let u = json("unigram");
    assert_eq!(u["baseline"], "unigram");
    assert_eq!(u["train_samples"], 48);
    assert_eq!(u["samples"], 16);
    assert_eq!(u["ranked"], 16);
    assert_eq!(u["candidates"], 3);
    let ppl = u["perplexity"].as_f64().unwrap();
    // The test lines are the training lines: far below a uniform guess.
    assert!(ppl.is_finite() && ppl > 1.0 && ppl < vocab, "{u}");
    assert!(u["response_tokens"].as_u64().unwrap() >= 16, "{u}");
    assert!((0.0..=1.0).contains(&u["hits_at_1"].as_f64().unwrap()));
    assert!(
        u["distinct_1"].is_null() && u["distinct_2"].is_null(),
        "{u}"
    );
    assert_eq!(u["generated"], 0);

    let r = json("retrieval");
    assert_eq!(r["baseline"], "retrieval");
    assert!(
        r.get("perplexity").is_some() && r["perplexity"].is_null(),
        "no perplexity for a ranker: {r}"
    );
    assert_eq!(r["ranked"], 16);
    assert!((0.0..=1.0).contains(&r["hits_at_1"].as_f64().unwrap()));
    assert!(r["distinct_1"].is_null());
    // The same seed draws the same candidates: a second run agrees exactly.
    assert_eq!(json("retrieval")["hits_at_1"], r["hits_at_1"]);

    let words = ok(eval("retrieval", false), "retrieval, words");
    let words = String::from_utf8_lossy(&words.stdout);
    assert!(words.contains("perplexity n/a"), "{words}");
    assert!(words.contains("hits@1"), "{words}");

    // Bad input is refused clearly.
    let base = || {
        let mut c = cloze();
        c.args(["dialogue", "eval", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&test);
        c
    };
    fails_with(
        &base().args(["--baseline", "unigram"]).output().unwrap(),
        "--train",
    );
    fails_with(
        &base()
            .args(["--baseline", "bigram", "--train"])
            .arg(&train)
            .output()
            .unwrap(),
        "invalid value 'bigram'",
    );
    fails_with(
        &base().arg("--train").arg(&train).output().unwrap(),
        "--baseline",
    );
    fails_with(
        &base()
            .args(["--baseline", "unigram", "--generate", "5", "--train"])
            .arg(&train)
            .output()
            .unwrap(),
        "cannot be used with",
    );
    let empty = d.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    fails_with(
        &base()
            .args(["--baseline", "retrieval", "--train"])
            .arg(&empty)
            .output()
            .unwrap(),
        "holds no dialogue samples",
    );
    fails_with(
        &cloze()
            .args(["dialogue", "eval", "--baseline", "unigram", "--train"])
            .arg(&train)
            .arg("--model")
            .arg(common::fixture())
            .arg("--data")
            .arg(&test)
            .output()
            .unwrap(),
        "not a dialogue model",
    );
}

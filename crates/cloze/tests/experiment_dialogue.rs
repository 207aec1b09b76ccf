//! `cloze experiment dialogue` end to end at toy size: five small plays with
//! several speakers, one seed, a few steps per arm. Every arm is trained and
//! scored, the report has a row per arm with numbers and a row per
//! baseline, and a second run finds everything done.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::{cloze, ok};

/// A play of two scenes in the First-Folio layout, speakers by habit.
fn play(name: &str) -> String {
    let mut text = String::from("Actus Primus. Scoena Prima.\n\nEnter all.\n\n");
    let speakers = ["Anna", "Bert", "Cass"];
    let lines = [
        "good morrow to you all",
        "how fares the house this day",
        "the garden is well and the king is merry",
        "speake it then my lord",
    ];
    for scene in 0..2 {
        if scene == 1 {
            text.push_str("Exeunt.\n\nScena Secunda.\n\nEnter all.\n\n");
        }
        for k in 0..8 {
            let who = speakers[(k + scene) % 3];
            text.push_str(&format!("  {who}. {} in {name}\n\n", lines[k % 4]));
        }
    }
    text
}

fn corpus(dir: &Path) -> std::path::PathBuf {
    let plays = dir.join("plays");
    fs::create_dir_all(&plays).unwrap();
    for name in ["alpha", "beta", "gamma", "delta", "epsilon"] {
        fs::write(plays.join(format!("{name}.txt")), play(name)).unwrap();
    }
    plays
}

#[test]
fn four_arms_train_score_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let plays = corpus(dir.path());
    let out = dir.path().join("exp");
    let run = || {
        cloze()
            .args(["experiment", "dialogue", "--corpus"])
            .arg(&plays)
            .args([
                "--valid",
                "delta",
                "--test",
                "epsilon",
                "--seeds",
                "1",
                "--max-steps",
                "4",
                "--batch-size",
                "4",
                "--vocab-size",
                "120",
                "--generate",
                "3",
                "--candidates",
                "3",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = ok(run(), "experiment dialogue");
    let report = fs::read_to_string(out.join("report.md")).unwrap();
    for arm in [
        "no roles, unified mask",
        "two alternating roles, unified mask",
        "per-speaker roles, unified mask (PLATO)",
        "per-speaker roles, causal mask",
    ] {
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {arm} |")))
            .unwrap_or_else(|| panic!("no row for {arm}:\n{report}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2], "1", "{row}");
        let ppl: f64 = cells[3].parse().unwrap_or_else(|_| panic!("{row}"));
        assert!(ppl > 1.0 && ppl.is_finite(), "{row}");
    }
    // The baselines' rows: the unigram model has a perplexity, the ranker none.
    let baseline = |label: &str| -> Vec<String> {
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no row for {label}:\n{report}"));
        row.split('|').map(|c| c.trim().to_string()).collect()
    };
    let unigram = baseline("baseline: unigram (add-one), no context");
    assert_eq!(unigram[2], "1");
    let ppl: f64 = unigram[3].parse().unwrap_or_else(|_| panic!("{unigram:?}"));
    assert!(ppl > 1.0 && ppl.is_finite(), "{unigram:?}");
    assert_eq!(unigram[5], "n/a", "no distinct-1: {unigram:?}");
    let retrieval = baseline("baseline: TF-IDF retrieval (ranks only)");
    assert_eq!(retrieval[3], "n/a", "no perplexity: {retrieval:?}");
    let hits: f64 = retrieval[4]
        .parse()
        .unwrap_or_else(|_| panic!("{retrieval:?}"));
    assert!((0.0..=100.0).contains(&hits), "{retrieval:?}");
    for b in ["unigram", "retrieval"] {
        let eval: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(out.join(format!("results/eval-{b}-seed1.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(eval["output"]["baseline"], b, "{eval}");
    }
    let baseline_results: std::collections::HashMap<&str, String> = ["unigram", "retrieval"]
        .into_iter()
        .map(|b| {
            let path = out.join(format!("results/eval-{b}-seed1.json"));
            (b, fs::read_to_string(path).unwrap())
        })
        .collect();
    for arm in [
        "none-unified",
        "alternating-unified",
        "speaker-unified",
        "speaker-causal",
    ] {
        let eval: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(out.join(format!("results/eval-{arm}-seed1.json"))).unwrap(),
        )
        .unwrap();
        assert!(eval["output"]["hits_at_1"].as_f64().is_some(), "{eval}");
    }
    // The arms share one initial model, so their layouts are all that differ.
    let config = |arm: &str| -> serde_json::Value {
        serde_json::from_str(
            &fs::read_to_string(out.join(format!("runs/{arm}-seed1/model/config.json"))).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(config("none-unified")["dialogue"]["roles"], "none");
    assert_eq!(config("speaker-causal")["dialogue"]["attention"], "causal");
    assert!(String::from_utf8_lossy(&first.stdout).contains("report:"));

    // Run again: every step is found done.
    let again = ok(run(), "experiment dialogue, again");
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(!log.contains("] train "), "nothing retrained:\n{log}");
    for b in ["unigram", "retrieval"] {
        let path = out.join(format!("results/eval-{b}-seed1.json"));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            baseline_results[b],
            "{b} scored again"
        );
    }
}

//! `cloze finetune --task link`, `cloze kg eval`, `cloze kg baseline` and
//! `cloze kg predict` end to end on the tiny fixture model and a small
//! hand-made graph whose entity labels are one or two tokens long.

mod common;

use std::path::Path;

use common::{cloze, fails_with, model_dir, ok};
use serde_json::Value;

/// Twenty entities `e0`..`e19` labelled `w10`..`w29` (every third also
/// carries a second token, `w40`), two relations: `next` (i -> i+1) and
/// `skip` (i -> i+3), both modulo 20. Every fifth triple is held out, half
/// to valid and half to test.
fn write_graph(dir: &Path) {
    std::fs::create_dir_all(dir).expect("graph dir");
    let (mut train, mut valid, mut test) = (String::new(), String::new(), String::new());
    let mut k = 0;
    for (rel, step) in [("next", 1), ("skip", 3)] {
        for i in 0..20 {
            let line = format!("e{i}\t{rel}\te{}\n", (i + step) % 20);
            match k % 10 {
                4 => valid.push_str(&line),
                9 => test.push_str(&line),
                _ => train.push_str(&line),
            }
            k += 1;
        }
    }
    std::fs::write(dir.join("train.txt"), train).expect("train");
    std::fs::write(dir.join("valid.txt"), valid).expect("valid");
    std::fs::write(dir.join("test.txt"), test).expect("test");
    let mut entities = String::new();
    for i in 0..20 {
        let label = if i % 3 == 0 {
            format!("w{} w40", 10 + i)
        } else {
            format!("w{}", 10 + i)
        };
        entities.push_str(&format!("e{i}\t{label}\t\n"));
    }
    std::fs::write(dir.join("entities.tsv"), entities).expect("entities");
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn link_training_evaluation_and_prediction() {
    let model = model_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = tmp.path().join("graph");
    write_graph(&graph);
    let run = tmp.path().join("run");
    // The relation texts are names of the word-level vocabulary too.
    let out = ok(
        cloze()
            .args(["--threads", "1", "finetune", "--task", "link", "--model"])
            .arg(model.path())
            .arg("--train")
            .arg(&graph)
            .args(["--out"])
            .arg(&run)
            .args(["--max-steps", "30", "--lr", "1e-3", "--batch-size", "16"])
            .args(["--set", "eval.every_steps=15"])
            .output()
            .expect("run finetune"),
        "finetune --task link",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("best valid filtered MRR"), "{stdout}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    let evals: Vec<Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter(|v| v["kind"] == "eval")
        .collect();
    assert_eq!(evals.len(), 3, "evaluations at steps 0, 15 and 30");
    let link = |v: &Value| v["losses"]["link"].as_f64().expect("link loss");
    assert!(
        link(&evals[2]) < link(&evals[0]),
        "the slot loss falls: {metrics}"
    );
    assert!(evals[2]["accuracies"]["mrr"].as_f64().expect("mrr") > 0.0);
    assert!(run.join("model/model.safetensors").is_file());

    // Evaluation: one row per query and candidate length (labels of one and
    // two tokens), the naive scorer one per candidate, the same metrics.
    let eval = |extra: &[&str]| {
        let mut c = cloze();
        c.args(["--threads", "1", "kg", "eval", "--model"])
            .arg(run.join("model"))
            .arg("--graph")
            .arg(&graph)
            .args(["--json", "--batch-size", "7"])
            .args(extra);
        json_of(&ok(c.output().expect("run kg eval"), "kg eval"))
    };
    let grouped = eval(&[]);
    assert_eq!(grouped["triples"], 4);
    assert_eq!(grouped["candidate_lengths"], serde_json::json!([1, 2]));
    assert_eq!(grouped["rows"], 4 * 2 * 2);
    assert_eq!(grouped["rows_per_query"], 2.0);
    let naive = eval(&["--per-candidate"]);
    assert_eq!(naive["rows"], 4 * 2 * 20);
    for key in ["mrr", "hits@1", "hits@10", "head_raw_mrr", "tail_mrr"] {
        let (a, b) = (
            grouped["metrics"]["accuracies"][key]
                .as_f64()
                .expect("metric"),
            naive["metrics"]["accuracies"][key]
                .as_f64()
                .expect("metric"),
        );
        assert!((a - b).abs() < 1e-9, "{key}: {a} vs {b}");
    }
    let mr = grouped["metrics"]["losses"]["mr"].as_f64().expect("mr");
    assert!((1.0..=20.0).contains(&mr));

    // The frequency baseline prints the same table.
    let out = ok(
        cloze()
            .args(["kg", "baseline", "--method", "frequency", "--graph"])
            .arg(&graph)
            .output()
            .expect("run baseline"),
        "kg baseline",
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| both | filtered |"), "{table}");

    // Prediction for a head given as new text, with a new candidate.
    let out = ok(
        cloze()
            .args(["kg", "predict", "--model"])
            .arg(run.join("model"))
            .arg("--graph")
            .arg(&graph)
            .args([
                "--head",
                "w12 w13",
                "--relation",
                "next",
                "--candidate",
                "w50 w51",
            ])
            .args(["--top-k", "3"])
            .output()
            .expect("run predict"),
        "kg predict",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("  1. "), "{text}");
    assert_eq!(
        lines.iter().filter(|l| l.contains(". ")).count(),
        3,
        "{text}"
    );
    assert!(text.contains("candidate \"w50 w51\": rank "), "{text}");
    // A rank among the 20 graph entities and the new candidate.
    assert!(text.contains(" of 21,"), "{text}");

    // A graph without its test split is refused before any training.
    let bad = tmp.path().join("bad");
    write_graph(&bad);
    std::fs::remove_file(bad.join("test.txt")).expect("remove");
    let out = cloze()
        .args(["finetune", "--task", "link", "--model"])
        .arg(model.path())
        .arg("--train")
        .arg(&bad)
        .arg("--out")
        .arg(tmp.path().join("bad-run"))
        .output()
        .expect("run");
    fails_with(&out, "test.txt");
    assert!(!tmp.path().join("bad-run").exists());
}

#[test]
fn link_refuses_a_dev_file() {
    let model = model_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = tmp.path().join("graph");
    write_graph(&graph);
    let out = cloze()
        .args(["finetune", "--task", "link", "--model"])
        .arg(model.path())
        .arg("--train")
        .arg(&graph)
        .arg("--dev")
        .arg(graph.join("valid.txt"))
        .arg("--out")
        .arg(tmp.path().join("run"))
        .output()
        .expect("run");
    fails_with(&out, "evaluates on the graph's own valid.txt");
}

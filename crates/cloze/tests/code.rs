//! The code flow end to end on hand-made Java: `cloze data code`, `cloze
//! pretrain --config cuglm-tiny` (a second writer refused, `--resume`),
//! completion fine-tuning from it (`cuglm-complete`), `cloze code eval` of
//! the model and of the count baselines, and `cloze complete`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{cloze, fails_with, ok};

/// Small classes in two packages; each has getters whose names follow its
/// fields, so identifiers are predictable from context.
fn write_sources(dir: &Path) {
    let fields = [
        ("Point", &["x", "y"][..]),
        ("Size", &["width", "height"]),
        ("Range", &["start", "end"]),
        ("Person", &["name", "age"]),
        ("Order", &["id", "total"]),
        ("Color", &["red", "green"]),
    ];
    for (pkg, offset) in [("alpha", 0usize), ("beta", 3)] {
        for k in 0..8 {
            let (class, names) = fields[(k + offset) % fields.len()];
            let class = format!("{class}{k}");
            let mut src = format!("package {pkg};\n\npublic class {class} {{\n");
            for n in names {
                src.push_str(&format!("    private int {n};\n"));
            }
            for n in names {
                let cap = format!("{}{}", n[..1].to_uppercase(), &n[1..]);
                src.push_str(&format!(
                    "    public int get{cap}() {{\n        return this.{n};\n    }}\n"
                ));
                src.push_str(&format!(
                    "    public void set{cap}(int {n}) {{\n        this.{n} = {n};\n    }}\n"
                ));
            }
            src.push_str("}\n");
            let d = dir.join(pkg);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("{class}.java")), src).unwrap();
        }
    }
    // A file that does not parse: skipped and counted, never fatal.
    std::fs::write(dir.join("alpha/Broken.java"), "class Broken { int x = ; ").unwrap();
}

fn json_line(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {text}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn data_pretrain_resume_complete_and_score() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let src = d.join("src");
    write_sources(&src);
    let data = d.join("data");
    ok(
        cloze()
            .args(["data", "code", "--corpus"])
            .arg(&src)
            .args(["--vocab-size", "300", "--heldout-package", "beta"])
            .args(["--valid-percent", "20", "--test-percent", "20", "--out"])
            .arg(&data)
            .output()
            .unwrap(),
        "data code",
    );

    let run = d.join("run");
    let pretrain = |steps: &str| {
        let mut c = cloze();
        c.args(["pretrain", "--config", "cuglm-tiny", "--data"])
            .arg(&data)
            .args(["--max-steps", steps, "--batch-size", "4"])
            .args(["--set", "code.max_len=48", "--set", "eval.every_steps=3"])
            .args([
                "--set",
                "checkpoint.every_steps=3",
                "--set",
                "run.log_every=1",
            ])
            .args(["--set", "eval.max_examples=8", "--out"])
            .arg(&run);
        c
    };
    ok(pretrain("3").output().unwrap(), "pretrain");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    for part in ["\"mlm\"", "\"ncp\"", "\"lm\"", "\"category\""] {
        assert!(metrics.contains(part), "{part} not logged:\n{metrics}");
    }
    // The run is refused a second start, and continues with --resume.
    fails_with(&pretrain("3").output().unwrap(), "--resume");
    ok(
        cloze()
            .args(["pretrain", "--resume"])
            .arg(&run)
            .args(["--max-steps", "6"])
            .output()
            .unwrap(),
        "resume",
    );
    let model = run.join("model");
    for f in [
        "config.json",
        "model.safetensors",
        "code_model.json",
        "tokenizer.json",
    ] {
        assert!(model.join(f).exists(), "{f} missing from the model");
    }

    let ft = d.join("complete");
    ok(
        cloze()
            .args(["pretrain", "--config", "cuglm-complete", "--init-from"])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .args(["--max-steps", "3", "--batch-size", "4"])
            .args(["--set", "code.max_len=48", "--set", "eval.every_steps=3"])
            .args(["--set", "eval.max_examples=8", "--out"])
            .arg(&ft)
            .output()
            .unwrap(),
        "completion fine-tuning",
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ft.join("model/code_model.json")).unwrap())
            .unwrap();
    assert_eq!(info["typed"], true);

    let scores = json_line(&ok(
        cloze()
            .args(["code", "eval", "--model"])
            .arg(ft.join("model"))
            .arg("--data")
            .arg(&data)
            .arg("--json")
            .output()
            .unwrap(),
        "code eval",
    ));
    let splits = scores["splits"].as_array().unwrap();
    assert_eq!(splits.len(), 2);
    for s in splits {
        let all = &s["scores"]["all"];
        assert!(all["n"].as_u64().unwrap() > 0, "{s}");
        assert!(all["top5"].as_u64() >= all["top1"].as_u64());
        assert!(s["scores"]["identifiers"]["n"].as_u64().unwrap() > 0);
    }
    // The 3-gram baseline on the same rows predicts the same number of tokens.
    let ngram = json_line(&ok(
        cloze()
            .args([
                "code",
                "eval",
                "--baseline",
                "ngram",
                "--max-len",
                "48",
                "--data",
            ])
            .arg(&data)
            .arg("--json")
            .output()
            .unwrap(),
        "n-gram baseline",
    ));
    assert_eq!(
        ngram["splits"][0]["scores"]["all"]["n"],
        splits[0]["scores"]["all"]["n"]
    );

    // Completion at a place in a file (the cursor after `return this.`).
    let file = src.join("alpha/Point0.java");
    let text = std::fs::read_to_string(&file).unwrap();
    // `cloze complete --json` with the cursor just after the first `after`.
    let complete_after = |after: &str, top_k: &str| {
        let (line, col) = text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find(after).map(|c| (i + 1, c + 1 + after.len())))
            .unwrap();
        json_line(&ok(
            cloze()
                .args(["complete", "--model"])
                .arg(ft.join("model"))
                .arg("--file")
                .arg(&file)
                .args(["--line", &line.to_string(), "--col", &col.to_string()])
                .args(["--top-k", top_k, "--json"])
                .output()
                .unwrap(),
            &format!("complete after {after}"),
        ))
    };
    let done = complete_after("this.", "3");
    let candidates = done["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 3);
    assert!(done["category"].as_str().is_some());
    assert_eq!(done["prefix"], "");
    let mut last = 1.0;
    for c in candidates {
        // Whole identifiers: the pieces glued (`##` dropped) spell the text.
        let glued: String = c["pieces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().trim_start_matches("##").to_string())
            .collect();
        assert_eq!(c["text"].as_str().unwrap(), glued);
        let p = c["probability"].as_f64().unwrap();
        assert!(p > 0.0 && p <= last, "{done}");
        last = p;
    }
    // A word touching the cursor is completed: `public int ge|`.
    let typed = complete_after("int ge", "4");
    assert_eq!(typed["prefix"], "ge");
    let candidates = typed["candidates"].as_array().unwrap();
    assert!(!candidates.is_empty(), "{typed}");
    for c in candidates {
        assert!(c["text"].as_str().unwrap().starts_with("ge"), "{typed}");
        assert_eq!(c["word"], true);
    }
    fails_with(
        &cloze()
            .args(["complete", "--model"])
            .arg(ft.join("model"))
            .arg("--file")
            .arg(&file)
            .args(["--line", "999", "--col", "1"])
            .output()
            .unwrap(),
        "past the end",
    );
}

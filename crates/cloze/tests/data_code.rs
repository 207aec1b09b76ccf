//! `cloze data code` through the real binary on a small hand-made directory
//! of Java and TypeScript (no network): the four split files and their
//! records, the held-out package, the broken file skipped and counted, the
//! trained tokenizer, `code.json`'s counts, invalid UTF-8, and the `--out`
//! rule (a foreign directory is never replaced, its own only with
//! `--force`). The real datasets are read by the ignored test at the end.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::{cloze, fails_with, ok};
use serde_json::Value;

/// Two Java packages of 20 files each, a TypeScript package of 20 files,
/// a file that does not parse, and files that are not read.
fn sources(dir: &Path) {
    for (package, base) in [("core", "Account"), ("net", "Socket")] {
        let d = dir.join(package).join("src");
        fs::create_dir_all(&d).unwrap();
        for k in 0..20 {
            let class = format!("{base}{k}");
            let text = format!(
                "package {package};\n\n// A comment that is dropped.\npublic class {class} {{\n    private int balanceValue;\n\n    public int addAmount(int amount) {{\n        int total = balanceValue + amount;\n        this.balanceValue = total;\n        return total;\n    }}\n}}\n"
            );
            fs::write(d.join(format!("{class}.java")), text).unwrap();
        }
    }
    let d = dir.join("web");
    fs::create_dir_all(&d).unwrap();
    for k in 0..20 {
        let text = format!(
            "import * as Util from \"./util.js\"\n\n/** Doc. */\nexport const scaleValue{k} = (input: number, factor: number): number => {{\n  const scaled = input * factor\n  return Util.round(scaled)\n}}\n"
        );
        fs::write(d.join(format!("scale{k}.ts")), text).unwrap();
    }
    fs::write(
        dir.join("core/src/Broken.java"),
        "class Broken { int x = ; ",
    )
    .unwrap();
    fs::write(d.join("types.d.ts"), "export type T = number\n").unwrap();
    fs::write(dir.join("README.md"), "# sources\n").unwrap();
}

fn records(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn data_code(corpus: &Path, out: &Path) -> std::process::Command {
    let mut c = cloze();
    c.args(["data", "code", "--corpus"])
        .arg(corpus)
        .arg("--out")
        .arg(out)
        .args(["--vocab-size", "200"]);
    c
}

#[test]
fn data_code_writes_splits_tokenizer_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("src");
    sources(&corpus);
    let out = tmp.path().join("out");
    let run = ok(
        data_code(&corpus, &out)
            .args(["--heldout-package", "net", "--valid-percent", "10"])
            .output()
            .unwrap(),
        "data code",
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("skipped 1 files"), "{stdout}");

    let summary: Value =
        serde_json::from_str(&fs::read_to_string(out.join("code.json")).unwrap()).unwrap();
    assert_eq!(summary["skipped"], 1);
    assert_eq!(summary["skipped_files"][0]["path"], "core/src/Broken.java");
    assert_eq!(summary["heldout_package"], "net");
    assert!(summary["categories_are"]
        .as_str()
        .unwrap()
        .contains("not static types"));

    let splits = ["train", "valid", "test", "test-package"];
    let mut seen = BTreeSet::new();
    let mut total_files = 0;
    for split in splits {
        let rows = records(&out.join(format!("{split}.jsonl")));
        let counts = &summary["splits"][split];
        assert_eq!(counts["files"], rows.len(), "{split}");
        let lexemes: usize = rows
            .iter()
            .map(|r| r["lexemes"].as_array().unwrap().len())
            .sum();
        assert_eq!(counts["lexemes"], lexemes, "{split}");
        let per_category: u64 = counts["categories"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(per_category as usize, lexemes, "{split}");
        assert!(counts["tokens"].as_u64().unwrap() >= lexemes as u64);
        for r in &rows {
            let path = r["path"].as_str().unwrap();
            assert!(seen.insert(path.to_string()), "{path} in two splits");
            let package = r["package"].as_str().unwrap();
            assert_eq!(path.split('/').next(), Some(package));
            // The held-out package is in its split and nowhere else.
            assert_eq!(
                package == "net",
                split == "test-package",
                "{path} in {split}"
            );
            let language = r["language"].as_str().unwrap();
            assert_eq!(language == "java", path.ends_with(".java"), "{path}");
            for pair in r["lexemes"].as_array().unwrap() {
                let text = pair[0].as_str().unwrap();
                assert!(!text.starts_with("//") && !text.starts_with("/*"), "{text}");
            }
        }
        total_files += rows.len();
    }
    assert_eq!(total_files, 60);
    assert!(!seen.contains("web/types.d.ts") && !seen.contains("core/src/Broken.java"));

    // One record read closely: categories as written by the lexer.
    let all: Vec<Value> = splits
        .iter()
        .flat_map(|s| records(&out.join(format!("{s}.jsonl"))))
        .collect();
    let account = all
        .iter()
        .find(|r| r["path"] == "core/src/Account3.java")
        .unwrap();
    let pairs: Vec<(&str, &str)> = account["lexemes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap()))
        .collect();
    for expected in [
        ("core", "package_name"),
        ("Account3", "type_name"),
        ("balanceValue", "field_name"),
        ("addAmount", "method_name"),
        ("amount", "parameter"),
        ("total", "variable"),
        ("return", "keyword"),
        ("{", "punctuation"),
    ] {
        assert!(pairs.contains(&expected), "{expected:?} not in {pairs:?}");
    }
    let scale = all.iter().find(|r| r["path"] == "web/scale0.ts").unwrap();
    let first: Vec<&str> = scale["lexemes"].as_array().unwrap()[..4]
        .iter()
        .map(|p| p[1].as_str().unwrap())
        .collect();
    assert_eq!(first, ["keyword", "punctuation", "keyword", "package_name"]);

    // The tokenizer loads and keeps case.
    let tok = cloze_code::CodeTokenizer::from_dir(&out.join("tokenizer")).unwrap();
    assert!(tok.vocab_size() <= 200);
    let vocab = fs::read_to_string(out.join("tokenizer/vocab.txt")).unwrap();
    assert!(
        vocab
            .lines()
            .any(|t| t.len() > 1 && t.chars().any(char::is_uppercase) && !t.starts_with('[')),
        "case is kept"
    );
    assert_eq!(summary["tokenizer"]["vocab_size"], tok.vocab_size());

    // Its own output is replaced only with --force; a foreign directory never.
    fails_with(&data_code(&corpus, &out).output().unwrap(), "--force");
    ok(
        data_code(&corpus, &out).arg("--force").output().unwrap(),
        "data code --force",
    );
    let foreign = tmp.path().join("mine");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    let refused = data_code(&corpus, &foreign)
        .arg("--force")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert_eq!(
        fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn data_code_refuses_bad_input_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("src");
    sources(&corpus);
    // An unknown held-out package names the known ones.
    let out = data_code(&corpus, &tmp.path().join("a"))
        .args(["--heldout-package", "nope"])
        .output()
        .unwrap();
    fails_with(&out, "core, net, web");
    // A corpus that is neither a dataset nor a directory.
    let out = cloze()
        .args(["data", "code", "--corpus", "no-such-corpus", "--out"])
        .arg(tmp.path().join("b"))
        .output()
        .unwrap();
    fails_with(&out, "neither jdk-src, ts-src nor an existing directory");
    // Invalid UTF-8 fails naming the file and line, unless --lossy-utf8.
    let mut latin1 = b"class L {\n  String s = \"caf".to_vec();
    latin1.push(0xE9);
    latin1.extend_from_slice(b"\";\n}\n");
    fs::write(corpus.join("core/src/L.java"), latin1).unwrap();
    let out = data_code(&corpus, &tmp.path().join("c")).output().unwrap();
    fails_with(&out, "L.java:2: invalid UTF-8");
    ok(
        data_code(&corpus, &tmp.path().join("d"))
            .arg("--lossy-utf8")
            .output()
            .unwrap(),
        "data code --lossy-utf8",
    );
    let summary: Value =
        serde_json::from_str(&fs::read_to_string(tmp.path().join("d/code.json")).unwrap()).unwrap();
    assert_eq!(summary["lossy_utf8_files"], 1);
}

#[test]
#[ignore = "network: apt-get download openjdk-17-source, npm pack effect, zod, rxjs"]
fn data_code_reads_the_real_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, heldout) in [("jdk-src", "jdk.compiler"), ("ts-src", "zod")] {
        ok(
            cloze().args(["data", "fetch", name]).output().unwrap(),
            "data fetch",
        );
        let out = tmp.path().join(name);
        ok(
            cloze()
                .args(["data", "code", "--corpus", name, "--out"])
                .arg(&out)
                .output()
                .unwrap(),
            "data code",
        );
        let summary: Value =
            serde_json::from_str(&fs::read_to_string(out.join("code.json")).unwrap()).unwrap();
        assert_eq!(summary["heldout_package"], heldout);
        let files: u64 = ["train", "valid", "test", "test-package"]
            .iter()
            .map(|s| summary["splits"][s]["files"].as_u64().unwrap())
            .sum();
        let skipped = summary["skipped"].as_u64().unwrap();
        match name {
            "jdk-src" => assert_eq!((files, skipped), (3_797, 0)),
            _ => assert_eq!(files + skipped, 855),
        }
        assert!(skipped <= 5, "{name}: {skipped} files skipped");
        assert_eq!(summary["splits"]["test-package"]["packages"][0], heldout);
    }
}

//! `cloze correct` end to end on the tiny HF fixture (96 ids, 40 positions)
//! with a character-level Chinese BERT tokenizer written here, and a small
//! confusion set: output shape, the changes' consistency, `--eval` metrics,
//! and the error messages.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Output};

use common::{fails_with, fixture, ok};

const SENTENCES: &[&str] = &["我跟我朋唷打算去法国玩。", "我们门去学小。"];

/// `char<TAB>same tone<TAB>other tone`, as pycorrector's same_pinyin.txt.
const CONFUSION: &str = "#汉字\t同音同调\t同音异调\n\
    唷\t友\t有又\n门\t们\t闷\n们\t门\n小\t校\t晓笑\n学\t雪\t穴\n去\t趣\t区\n\
    跟\t根\t更\n朋\t棚\t碰\n算\t蒜\t酸\n打\t\t大\n法\t发\t罚\n国\t果\t过\n玩\t完\t晚\n我\t\t窝卧\n";

fn cloze(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cloze"));
    c.arg("-q").args(args);
    c
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The confusion file's candidates, as the command reads them.
fn candidates() -> HashMap<char, BTreeSet<char>> {
    let mut m: HashMap<char, BTreeSet<char>> = HashMap::new();
    for l in CONFUSION.lines().skip(1) {
        let mut cols = l.split('\t');
        let c = cols.next().unwrap().chars().next().unwrap();
        m.entry(c).or_default().extend(cols.flat_map(str::chars));
    }
    m
}

/// A checkpoint directory: the fixture's weights and a BERT tokenizer
/// (BertNormalizer splitting Chinese characters, BertPreTokenizer, WordPiece)
/// whose vocabulary is the characters of the sentences and the confusion set.
fn chinese_model() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(f), model.join(f)).unwrap();
    }
    write_tokenizer(&model);
    let conf = dir.path().join("same_pinyin.txt");
    std::fs::write(&conf, CONFUSION).unwrap();
    (dir, model)
}

fn write_tokenizer(dir: &Path) {
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let chars: BTreeSet<char> = SENTENCES
        .iter()
        .flat_map(|s| s.chars())
        .chain(CONFUSION.lines().skip(1).flat_map(str::chars))
        .filter(|c| !c.is_whitespace() && *c != '。')
        .collect();
    assert!(
        chars.len() <= 91,
        "{} characters do not fit 96 ids",
        chars.len()
    );
    let mut vocab = serde_json::Map::new();
    for (i, s) in specials.iter().enumerate() {
        vocab.insert(s.to_string(), i.into());
    }
    for c in chars {
        let id = vocab.len();
        vocab.insert(c.to_string(), id.into());
    }
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": null,
        "model": {"type": "WordPiece", "vocab": vocab, "unk_token": "[UNK]",
            "continuing_subword_prefix": "##", "max_input_chars_per_word": 100}
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Checks one JSON record against its input: the same length, every change
/// a confusion candidate whose probability beats the character's by more
/// than `threshold`, and nothing else changed. Returns the number of changes.
fn check_record(r: &serde_json::Value, input: &str, threshold: f64) -> usize {
    let cands = candidates();
    let src: Vec<char> = input.chars().collect();
    assert_eq!(r["text"], input);
    let corrected: Vec<char> = r["corrected"].as_str().unwrap().chars().collect();
    assert_eq!(corrected.len(), src.len(), "length kept: {r}");
    let mut expected = src.clone();
    let changes = r["changes"].as_array().unwrap();
    for c in changes {
        let i = c["index"].as_u64().unwrap() as usize;
        let from = c["from"].as_str().unwrap().chars().next().unwrap();
        let to = c["to"].as_str().unwrap().chars().next().unwrap();
        assert_eq!(from, src[i], "{c}");
        assert!(
            cands[&from].contains(&to),
            "{to} is not a candidate of {from}"
        );
        let margin =
            c["to_probability"].as_f64().unwrap() - c["from_probability"].as_f64().unwrap();
        assert!(margin > threshold, "{c}");
        expected[i] = to;
    }
    assert_eq!(corrected, expected, "only the listed changes: {r}");
    changes.len()
}

#[test]
fn correct_prints_one_line_per_sentence_and_json_changes() {
    let (dir, model) = chinese_model();
    let conf = dir.path().join("same_pinyin.txt");
    let base = [
        "correct",
        "--model",
        path(&model),
        "--confusion",
        path(&conf),
    ];

    let out = ok(
        cloze(&base)
            .args(["--threshold", "0"])
            .args(SENTENCES)
            .output()
            .unwrap(),
        "correct",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), SENTENCES.len(), "{text}");
    for (l, s) in lines.iter().zip(SENTENCES) {
        assert_eq!(l.chars().count(), s.chars().count());
    }

    for mode in ["direct", "masked"] {
        let out = ok(
            cloze(&base)
                .args(["--threshold", "0", "--json", "--mode", mode])
                .args(SENTENCES)
                .output()
                .unwrap(),
            "correct --json",
        );
        let records = json_lines(&out);
        assert_eq!(records.len(), SENTENCES.len());
        let mut changes = 0;
        for (i, (r, s)) in records.iter().zip(SENTENCES).enumerate() {
            assert_eq!(r["index"], i);
            assert_eq!(r["unread_chars"], 0);
            // Every character but 。 ([UNK]) has a candidate in the vocabulary.
            assert!(r["checked"].as_u64().unwrap() > 0);
            changes += check_record(r, s, 0.0);
        }
        // With threshold 0 the fixture's untrained head prefers some
        // candidate somewhere (fixed weights, so this is deterministic).
        assert!(changes > 0, "{mode}: no change at all");
        if mode == "direct" {
            // The plain output is the JSON's corrected text.
            for (l, r) in lines.iter().zip(&records) {
                assert_eq!(*l, r["corrected"]);
            }
        }
    }

    // A higher threshold can only remove changes.
    let strict = ok(
        cloze(&base)
            .args(["--threshold", "0.9", "--json"])
            .args(SENTENCES)
            .output()
            .unwrap(),
        "correct --threshold 0.9",
    );
    for (r, s) in json_lines(&strict).iter().zip(SENTENCES) {
        check_record(r, s, 0.9);
    }
}

#[test]
fn input_files_keep_line_numbers_and_long_lines_are_corrected_in_their_prefix() {
    let (dir, model) = chinese_model();
    let conf = dir.path().join("same_pinyin.txt");
    let input = dir.path().join("in.txt");
    // 45 characters: more than the fixture's 40 positions.
    let long = "我们门去学小".repeat(7) + "门门门";
    std::fs::write(&input, format!("{}\n\n{long}\n", SENTENCES[1])).unwrap();
    let out = ok(
        cloze(&[
            "correct",
            "--model",
            path(&model),
            "--confusion",
            path(&conf),
        ])
        .args(["--threshold", "0", "--json", "--input", path(&input)])
        .output()
        .unwrap(),
        "correct --input",
    );
    let records = json_lines(&out);
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0]["line"].as_u64(), records[1]["line"].as_u64()),
        (Some(1), Some(3))
    );
    check_record(&records[1], &long, 0.0);
    // [CLS] + 38 characters + [SEP] = 40 tokens; the last 7 are left alone.
    assert_eq!(records[1]["unread_chars"], 7);
    let corrected: String = records[1]["corrected"].as_str().unwrap().into();
    assert!(corrected.ends_with(&long[long.len() - 7 * 3..]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 of 2 sentences are longer than 40 tokens")
            && stderr.contains("the model takes at most 40 tokens")
            && stderr.contains(&format!("line 3 of {}", input.display())),
        "{stderr}"
    );
}

#[test]
fn eval_reports_sentence_level_metrics() {
    let (dir, model) = chinese_model();
    let conf = dir.path().join("same_pinyin.txt");
    let tsv = dir.path().join("test.tsv");
    let pairs = [
        ("我跟我朋唷打算去法国玩。", "我跟我朋友打算去法国玩。"),
        ("我们门去学小。", "我们们去学校。"),
        ("我们去学校。", "我们去学校。"),
        ("我打算去法国。", "我打算去法国。"),
    ];
    let text: String = pairs.iter().map(|(s, t)| format!("{s}\t{t}\n")).collect();
    std::fs::write(&tsv, text).unwrap();
    let base = [
        "correct",
        "--model",
        path(&model),
        "--confusion",
        path(&conf),
        "--threshold",
        "0",
    ];

    let out = ok(
        cloze(&base)
            .args(["--eval", path(&tsv), "--json"])
            .output()
            .unwrap(),
        "correct --eval --json",
    );
    let report = json_lines(&out);
    assert_eq!(report.len(), 1);
    let m = &report[0]["metrics"];
    assert_eq!(m["sentences"], 4);
    assert_eq!(m["erroneous"], 2);
    for level in ["detection", "correction"] {
        for k in ["accuracy", "precision", "recall", "f1"] {
            let v = m[level][k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{level}.{k} = {v}");
        }
    }
    assert_eq!(report[0]["mode"], "direct");
    assert!(report[0]["seconds"].as_f64().unwrap() >= 0.0);

    // The same sentences through plain `correct`: the counts must agree.
    let sources: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let out = ok(
        cloze(&base).arg("--json").args(&sources).output().unwrap(),
        "correct",
    );
    let records = json_lines(&out);
    let changed = |r: &serde_json::Value| !r["changes"].as_array().unwrap().is_empty();
    let n_changed = records.iter().filter(|r| changed(r)).count();
    let false_alarms = records[2..].iter().filter(|r| changed(r)).count();
    let exact = records
        .iter()
        .zip(&pairs)
        .filter(|(r, p)| changed(r) && r["corrected"] == p.1)
        .count();
    assert!(
        n_changed > 0,
        "threshold 0 changes something (fixed weights)"
    );
    assert_eq!(m["changed"], n_changed);
    assert_eq!(m["false_alarms"], false_alarms);
    assert_eq!(
        m["false_positive_rate"].as_f64().unwrap(),
        false_alarms as f64 / 2.0
    );
    assert_eq!(m["correction"]["true_positives"], exact);

    let out = ok(
        cloze(&base).args(["--eval", path(&tsv)]).output().unwrap(),
        "correct --eval",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("4 sentences, 2 with errors"), "{text}");
    for row in ["detection", "correction", "false positive rate"] {
        assert!(text.contains(row), "{text}");
    }
}

#[test]
fn unaligned_pairs_are_named_or_skipped() {
    let (dir, model) = chinese_model();
    let conf = dir.path().join("same_pinyin.txt");
    let tsv = dir.path().join("test.tsv");
    std::fs::write(
        &tsv,
        "我们去学校。\t我们去学校。\n我门去学小。\t我们去学校了。\n我们门。\t我们们。\n",
    )
    .unwrap();
    let base = [
        "correct",
        "--model",
        path(&model),
        "--confusion",
        path(&conf),
    ];
    let out = cloze(&base).args(["--eval", path(&tsv)]).output().unwrap();
    fails_with(&out, &format!("{}, line 2", tsv.display()));
    fails_with(&out, "6 characters but the target 7");
    fails_with(&out, "--skip-unaligned");
    assert!(out.stdout.is_empty());

    let out = ok(
        cloze(&base)
            .args(["--eval", path(&tsv), "--skip-unaligned", "--json"])
            .output()
            .unwrap(),
        "--skip-unaligned",
    );
    let r = &json_lines(&out)[0];
    assert_eq!(r["skipped_unaligned_lines"], serde_json::json!([2]));
    assert_eq!(r["metrics"]["sentences"], 2);
}

#[test]
fn errors_name_what_to_do() {
    let (dir, model) = chinese_model();
    let empty_cache = tempfile::tempdir().unwrap();

    // No --confusion and no cached sighan15.
    let out = cloze(&["correct", "--model", path(&model), "我们"])
        .env("CLOZE_CACHE_DIR", empty_cache.path())
        .output()
        .unwrap();
    fails_with(&out, "cloze data fetch sighan15");
    fails_with(&out, "same_pinyin.txt");

    let conf = dir.path().join("same_pinyin.txt");
    let base = [
        "correct",
        "--model",
        path(&model),
        "--confusion",
        path(&conf),
    ];
    // --eval sighan15 not cached.
    let out = cloze(&base)
        .args(["--eval", "sighan15"])
        .env("CLOZE_CACHE_DIR", empty_cache.path())
        .output()
        .unwrap();
    fails_with(&out, "cloze data fetch sighan15");
    // --eval of neither a file nor sighan15.
    let out = cloze(&base).args(["--eval", "nope.tsv"]).output().unwrap();
    fails_with(&out, "--eval nope.tsv: no such file");

    // A malformed confusion line, named by file and line.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "#header\n门\t们\n门们\n").unwrap();
    let out = cloze(&[
        "correct",
        "--model",
        path(&model),
        "--confusion",
        path(&bad),
        "我们",
    ])
    .output()
    .unwrap();
    fails_with(&out, &format!("{}, line 3", bad.display()));
    let out = cloze(&[
        "correct",
        "--model",
        path(&model),
        "--confusion",
        "/nonexistent.txt",
        "我们",
    ])
    .output()
    .unwrap();
    fails_with(&out, "--confusion /nonexistent.txt: no such file");

    // Out-of-range threshold and mode, refused by the argument parser.
    let out = cloze(&base)
        .args(["--threshold", "1.5", "我们"])
        .output()
        .unwrap();
    fails_with(&out, "--threshold");
    let out = cloze(&base)
        .args(["--mode", "fast", "我们"])
        .output()
        .unwrap();
    fails_with(&out, "direct or masked");
    // Nothing to correct.
    let out = cloze(&base).output().unwrap();
    fails_with(&out, "required");

    // A checkpoint without an MLM head (an encoder only).
    let enc = dir.path().join("encoder");
    let config: cloze_models::BertConfig =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap())
            .unwrap();
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _m = cloze_models::BertModel::new(&(vs.root() / "bert"), &config).unwrap();
    cloze_models::save_pretrained(&vs, &config, &enc).unwrap();
    write_tokenizer(&enc);
    let out = cloze(&[
        "correct",
        "--model",
        path(&enc),
        "--confusion",
        path(&conf),
        "我们",
    ])
    .output()
    .unwrap();
    fails_with(&out, "no MLM head");
    assert!(out.stdout.is_empty());
}

//! `cloze experiment compress` end to end on a small pretrained model and an
//! encode-only copy of it without its MLM head: every variant is made,
//! scored and reported with values that follow from what the variant is
//! (zeros keep the size, GPTQ shrinks it, the dense model is its own
//! reference), a second run skips every finished step and redoes only what
//! was removed, and bad input is refused before anything is written.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{cloze, fails_with, ok, prepare, pretrain};
use serde_json::Value;

/// The variants in table order, as results.json names them.
const VARIANTS: &[&str] = &[
    "dense",
    "magnitude-50",
    "sparsegpt-50",
    "magnitude-2-4",
    "sparsegpt-2-4",
    "int8",
    "int8-smoothquant",
    "gptq-4",
    "gptq-3",
    "rtn-4",
    "rtn-3",
];

/// A copy of the checkpoint `from` without its `cls.*` (head) weights: an
/// encoder like MiniLM.
fn headless_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    let mut weights = cloze_models::hf::read_safetensors(&to.join("model.safetensors")).unwrap();
    weights.retain(|k, _| !k.starts_with("cls."));
    cloze_models::hf::write_safetensors(&to.join("model.safetensors"), &weights).unwrap();
}

fn experiment(out: &Path, model: &Path, enc: &Path, data: &Path, extra: &[&str]) -> Output {
    cloze()
        .args(["experiment", "compress", "--model"])
        .arg(format!("tiny={}", model.display()))
        .arg("--model")
        .arg(format!("enc={}", enc.display()))
        .args(["--encode-only", "enc", "--data"])
        .arg(data)
        .args([
            "--samples",
            "8",
            "--group-size",
            "32",
            "--sentence-count",
            "16",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn results(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

/// The rows of model `name`, by variant.
fn rows<'a>(r: &'a Value, name: &str) -> Vec<(&'a str, &'a Value)> {
    let m = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no model {name} in {r}"));
    m["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["variant"].as_str().unwrap(), v))
        .collect()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// The steps a finished run ran, from its last line.
fn steps_run(out: &Output) -> usize {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap();
    let (_, after) = line
        .split_once('(')
        .unwrap_or_else(|| panic!("no step count in {line:?}"));
    after.split(' ').next().unwrap().parse().unwrap()
}

fn quant_bits(dir: &Path) -> Value {
    let c: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    c["quantization_config"]["bits"].clone()
}

#[test]
fn compress_measures_every_variant_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path(), 200);
    let run = tmp.path().join("run");
    ok(pretrain(&data, &run, 30).output().unwrap(), "pretrain");
    let model = run.join("model");
    let enc = tmp.path().join("enc");
    headless_copy(&model, &enc);
    let out = tmp.path().join("exp");

    let first = ok(experiment(&out, &model, &enc, &data, &[]), "the experiment");
    // Every variant but dense and int8 (the dense files at another
    // precision) is made by a step of its own.
    let made = VARIANTS.len() - 2;
    let total = 2 * VARIANTS.len() + 2 * made + VARIANTS.len();
    assert_eq!(steps_run(&first), total, "every step ran once");
    let r = results(&out);
    for name in ["tiny", "enc"] {
        let rows = rows(&r, name);
        assert_eq!(
            rows.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            VARIANTS,
            "{name}: every variant, in order"
        );
        let row = |id: &str| rows.iter().find(|(v, _)| *v == id).unwrap().1;
        let dense = row("dense");
        let size = f(dense, "size_bytes");
        assert!(
            (f(dense, "cosine_min") - 1.0).abs() < 1e-5
                && (f(dense, "cosine_mean") - 1.0).abs() < 1e-5,
            "{name}: the dense model is its own reference: {dense}"
        );
        // Pruning stores zeros and int8 packs the dense file at load: no
        // smaller on disk. Quantised codes are; 3 bits below 4.
        for id in [
            "magnitude-50",
            "sparsegpt-50",
            "magnitude-2-4",
            "sparsegpt-2-4",
            "int8",
        ] {
            assert_eq!(f(row(id), "size_bytes"), size, "{name}/{id}");
        }
        assert!(
            f(row("int8-smoothquant"), "size_bytes") > size,
            "{name}: factors added"
        );
        for id in ["gptq-4", "gptq-3", "rtn-4", "rtn-3"] {
            assert!(f(row(id), "size_bytes") < size, "{name}/{id} is smaller");
        }
        assert!(f(row("gptq-3"), "size_bytes") < f(row("gptq-4"), "size_bytes"));
        for bits in ["4", "3"] {
            assert_eq!(
                f(row(&format!("gptq-{bits}")), "size_bytes"),
                f(row(&format!("rtn-{bits}")), "size_bytes"),
                "{name}: GPTQ and RTN store the same layout at {bits} bits"
            );
        }
        // Every compressed variant moves the embeddings, not far.
        for id in &VARIANTS[1..] {
            let (lo, mean) = (f(row(id), "cosine_min"), f(row(id), "cosine_mean"));
            assert!(
                lo <= mean && mean < 1.0 && lo > 0.9,
                "{name}/{id}: {lo} {mean}"
            );
        }
        for (id, v) in &rows {
            let timed = !["dense", "int8"].contains(id);
            assert_eq!(
                v["compress_seconds"].as_f64().is_some_and(|s| s > 0.0),
                timed,
                "{name}/{id}: {v}"
            );
            let scored = v["mlm_loss"].as_f64().is_some();
            assert_eq!(scored, name == "tiny", "{name}/{id}: MLM only with a head");
            if scored {
                let acc = f(v, "mlm_accuracy");
                assert!(f(v, "mlm_loss") > 0.0 && (0.0..=1.0).contains(&acc), "{v}");
            }
        }
    }
    // Each variant is the method its row names.
    let models = out.join("models").join("tiny");
    assert_eq!(quant_bits(&models.join("gptq-4")), 4);
    assert_eq!(quant_bits(&models.join("gptq-3")), 3);
    assert_eq!(quant_bits(&models.join("rtn-4")), 4);
    assert_eq!(quant_bits(&models.join("rtn-3")), 3);
    assert!(quant_bits(&models.join("sparsegpt-50")).is_null());
    let w =
        cloze_models::hf::read_safetensors(&models.join("magnitude-50/model.safetensors")).unwrap();
    let q = &w["bert.encoder.layer.0.attention.self.query.weight"];
    let zeros = q.eq(0.0).sum(tch::Kind::Int64).int64_value(&[]);
    assert_eq!(zeros * 2, q.numel() as i64, "magnitude 50% zeroes half");
    let w = cloze_models::hf::read_safetensors(&models.join("magnitude-2-4/model.safetensors"))
        .unwrap();
    let q = &w["bert.encoder.layer.0.attention.self.query.weight"];
    let per_group = q
        .eq(0.0)
        .view([-1, 4])
        .sum_dim_intlist(1, false, tch::Kind::Int64);
    assert!(
        per_group.eq(2).all().int64_value(&[]) == 1,
        "magnitude 2:4 zeroes two of every four input weights"
    );
    assert!(out.join("logs/tiny-gptq-3-compress.log").is_file());
    assert!(out.join("sentences/enc.txt").is_file());

    // The table: a row per variant for both models, MLM columns for the
    // model with a head only.
    let md = std::fs::read_to_string(out.join("compress.md")).unwrap();
    let (tiny_md, enc_md) = md.split_once("## enc").unwrap();
    assert!(tiny_md.contains("## tiny") && tiny_md.contains("| MLM loss |"));
    assert!(!enc_md.contains("MLM loss"), "{enc_md}");
    for label in [
        "dense (fp32)",
        "magnitude 50%",
        "SparseGPT 50%",
        "magnitude 2:4",
        "SparseGPT 2:4",
        "int8 (dynamic",
        "int8 + SmoothQuant",
        "GPTQ 4-bit",
        "GPTQ 3-bit",
        "RTN 4-bit",
        "RTN 3-bit",
    ] {
        for part in [tiny_md, enc_md] {
            assert_eq!(
                part.lines()
                    .filter(|l| l.starts_with(&format!("| {label}")))
                    .count(),
                1,
                "{label} in\n{part}"
            );
        }
    }
    assert!(md.contains("Command: `cloze experiment compress --model tiny="));

    // Again: nothing to do, the same report.
    let again = ok(experiment(&out, &model, &enc, &data, &[]), "the rerun");
    assert_eq!(steps_run(&again), 0);
    assert_eq!(
        std::fs::read_to_string(out.join("compress.md")).unwrap(),
        md
    );
    // A removed result and embedding are redone, alone, to the same values.
    std::fs::remove_file(out.join("results/tiny/gptq-3/eval.json")).unwrap();
    std::fs::remove_file(out.join("embeddings/enc/rtn-4.safetensors")).unwrap();
    let partial = ok(
        experiment(&out, &model, &enc, &data, &[]),
        "the partial rerun",
    );
    assert_eq!(steps_run(&partial), 2);
    let r2 = results(&out);
    let value = |r: &Value, m: &str, id: &str, k: &str| {
        f(rows(r, m).into_iter().find(|(v, _)| *v == id).unwrap().1, k)
    };
    assert_eq!(
        value(&r2, "tiny", "gptq-3", "mlm_loss"),
        value(&r, "tiny", "gptq-3", "mlm_loss")
    );
    assert_eq!(
        value(&r2, "enc", "rtn-4", "cosine_mean"),
        value(&r, "enc", "rtn-4", "cosine_mean")
    );
    // Other settings in the same directory are refused.
    fails_with(
        &experiment(&out, &model, &enc, &data, &["--seed", "1"]),
        "other settings",
    );
}

/// Labelled sentences of the test corpus's vocabulary: `defend` for the
/// sentences that say "must defend", `other` for the rest.
fn write_labelled(path: &Path, n: usize, offset: usize) {
    let verbs = ["must defend", "will support", "can improve"];
    let mut text = String::new();
    for i in 0..n {
        let k = i + offset;
        let verb = verbs[k % 3];
        let label = if k.is_multiple_of(3) {
            "defend"
        } else {
            "other"
        };
        text.push_str(&format!(
            "{{\"text\": \"the people {verb} the union in the year {}\", \"label\": \"{label}\"}}\n",
            1800 + k % 50
        ));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_fine_tuned_classifier_is_scored_by_its_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path(), 200);
    let run = tmp.path().join("run");
    ok(pretrain(&data, &run, 20).output().unwrap(), "pretrain");
    let (train, test) = (
        tmp.path().join("train.jsonl"),
        tmp.path().join("test.jsonl"),
    );
    write_labelled(&train, 48, 0);
    write_labelled(&test, 12, 100);
    let cls = tmp.path().join("cls");
    ok(
        cloze()
            .args(["finetune", "--task", "sequence", "--model"])
            .arg(run.join("model"))
            .arg("--train")
            .arg(&train)
            .args([
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--threads",
                "1",
                "--out",
            ])
            .arg(&cls)
            .output()
            .unwrap(),
        "finetune",
    );
    let out = tmp.path().join("exp");
    let classify = |out: &Path| {
        cloze()
            .args(["experiment", "compress", "--model"])
            .arg(format!("cls={}", cls.join("model").display()))
            .arg("--data")
            .arg(&data)
            .arg("--classify")
            .arg(format!("cls={}", test.display()))
            .args([
                "--samples",
                "8",
                "--group-size",
                "32",
                "--sentence-count",
                "8",
            ])
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let done = ok(classify(&out), "the experiment with a classifier");
    // Per variant: made (all but dense and int8), predicted, encoded.
    assert_eq!(steps_run(&done), (VARIANTS.len() - 2) + 2 * VARIANTS.len());
    let r = results(&out);
    assert_eq!(r["models"][0]["task_examples"], 12);
    assert_eq!(r["models"][0]["encode_only"], true);
    // The dense row's accuracy is the share of `cloze predict`'s labels
    // that match the test file's.
    let predicted = tmp.path().join("dense.jsonl");
    ok(
        cloze()
            .args(["predict", "--model"])
            .arg(cls.join("model"))
            .arg("--input")
            .arg(&test)
            .arg("--output")
            .arg(&predicted)
            .output()
            .unwrap(),
        "predict",
    );
    let gold: Vec<Value> = std::fs::read_to_string(&test)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["label"].clone())
        .collect();
    let right = std::fs::read_to_string(&predicted)
        .unwrap()
        .lines()
        .zip(&gold)
        .filter(|(l, g)| serde_json::from_str::<Value>(l).unwrap()["label"] == **g)
        .count();
    let rows = rows(&r, "cls");
    assert_eq!(rows.len(), VARIANTS.len());
    assert!((f(rows[0].1, "task_accuracy") - right as f64 / 12.0).abs() < 1e-12);
    for (id, v) in &rows {
        let acc = f(v, "task_accuracy");
        assert!((0.0..=1.0).contains(&acc), "{id}: {acc}");
        assert!(
            v["mlm_loss"].is_null(),
            "{id}: a classifier has no MLM score"
        );
    }
    let md = std::fs::read_to_string(out.join("compress.md")).unwrap();
    assert!(
        md.contains("task acc. (%)") && md.contains("12 labelled examples"),
        "{md}"
    );
    // A test file without labels is refused before anything is written.
    std::fs::write(&test, "{\"text\": \"no label here\"}\n").unwrap();
    fails_with(&classify(&tmp.path().join("exp2")), "no \"label\"");
    assert!(!tmp.path().join("exp2").exists());
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exp");
    let fixture = common::model_dir();
    let headless = tmp.path().join("headless");
    headless_copy(fixture.path(), &headless);
    let run = |args: &[&str], model: Option<&PathBuf>| {
        let mut c = cloze();
        c.args(["experiment", "compress", "--out"]).arg(&out);
        if !args.contains(&"--group-size") {
            c.args(["--group-size", "32"]);
        }
        if let Some(m) = model {
            c.arg("--model").arg(format!("m={}", m.display()));
        }
        c.args(args).output().unwrap()
    };
    fails_with(
        &run(&["--model", "no-name-given", "--data", "d"], None),
        "expected NAME=DIR",
    );
    fails_with(
        &run(&["--data", "d", "--encode-only", "other"], Some(&headless)),
        "no --model named other",
    );
    fails_with(
        &run(&["--data", "other=d"], Some(&headless)),
        "no --model named other",
    );
    // An encoder without an MLM head is scored as one only when marked so.
    fails_with(&run(&["--data", "d"], Some(&headless)), "--encode-only m");
    fails_with(
        &run(&["--data", "d", "--encode-only", "m"], Some(&headless)),
        "not a `cloze data prepare` output",
    );
    fails_with(
        &run(
            &["--data", "d", "--encode-only", "m", "--group-size", "24"],
            Some(&headless),
        ),
        "does not divide",
    );
    fails_with(
        &run(&["--data", "d"], Some(&tmp.path().join("missing"))),
        "does not exist",
    );
    assert!(!out.exists(), "nothing written");
}

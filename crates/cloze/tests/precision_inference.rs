//! `--precision bf16` of `cloze fill-mask`, `encode`, `score` and `eval` against
//! the same commands in fp32, end to end through the built binary (issue 21,
//! inference part): the weights are cast once at load and every number that
//! leaves is fp32, close to what fp32 gives, and not bit-identical to it (which
//! would mean the flag was ignored).
//!
//! The MLM commands run on the tiny HF parity fixture (`hf-tiny-bert`, random
//! weights) with the word-level tokenizer of `common::model_dir`. Its
//! distributions are nearly uniform over its 96 ids, so the bounds below are
//! stated against what bf16 can move and, where a near-uniform output would
//! pass a loose bound, also against the uniform distribution.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{cloze, fails_with, model_dir, ok, prepare, pretrain};

/// How far bf16 weights may move one log-probability of the fixture's MLM head,
/// in nats. bf16 keeps 8 significant bits (a relative rounding of at most
/// 2^-9, about 0.2%, on each weight and activation); on this 2-layer model with
/// logits of order 1 that moves a log-probability by a few 1e-3 nats (measured
/// on an avx512_bf16 CPU: at most 0.0067 over the texts below), so 0.015 leaves
/// room for other kernels while a broken cast (garbage, overflow) moves them by
/// far more.
const MAX_LOGP_DRIFT: f64 = 0.015;

/// A fill-mask top-1 is compared only where fp32's top-1 beats its top-2 by more
/// than this many nats: bf16 can lower the first and raise the second by
/// [`MAX_LOGP_DRIFT`] each, so a smaller margin may honestly flip.
const DECISIVE_MARGIN: f64 = 2.0 * MAX_LOGP_DRIFT;

/// The parity fixture's two sentences (reference.safetensors' `input_ids`,
/// `[CLS]` and the last `[SEP]` added by the tokenizer): a pair with a `[MASK]`
/// at token 3, and a single sentence with a `[MASK]` at token 5.
const PARITY: [&str; 2] = [
    "w17 w33 [MASK] w90 w51 [SEP] w60 w61",
    "w5 w6 w7 w8 [MASK] w9 w10 w11 w12 w13",
];

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The parity sentences, then each of them with one more word masked in turn
/// (every word that is not `[MASK]` or `[SEP]`): more masked positions of the
/// same fixture to compare.
fn parity_texts() -> Vec<String> {
    let mut texts: Vec<String> = PARITY.iter().map(|s| s.to_string()).collect();
    for s in PARITY {
        let words: Vec<&str> = s.split(' ').collect();
        for j in 0..words.len() {
            if words[j].starts_with('[') {
                continue;
            }
            let mut w = words.clone();
            w[j] = "[MASK]";
            texts.push(w.join(" "));
        }
    }
    texts
}

/// `cloze fill-mask --json` of `texts` in `precision`: per text, per mask, the
/// candidates as (token, probability), most probable first.
fn fill_mask(model: &Path, texts: &[String], precision: &str) -> Vec<Vec<Vec<(String, f64)>>> {
    let out = ok(
        cloze()
            .args(["fill-mask", "--model", path(model), "--device", "cpu"])
            .args(["--json", "--top-k", "5", "--precision", precision])
            .args(texts)
            .output()
            .unwrap(),
        "fill-mask",
    );
    json_lines(&out)
        .iter()
        .map(|line| {
            line["masks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    m["candidates"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| {
                            (
                                c["token"].as_str().unwrap().to_string(),
                                c["probability"].as_f64().unwrap(),
                            )
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

#[test]
fn fill_mask_bf16_keeps_fp32_top1_where_fp32_is_decisive() {
    let dir = model_dir();
    let texts = parity_texts();
    let fp32 = fill_mask(dir.path(), &texts, "fp32");
    let bf16 = fill_mask(dir.path(), &texts, "bf16");
    assert_eq!(fp32.len(), texts.len());
    assert_eq!(bf16.len(), texts.len());
    let (mut decisive, mut decisive_parity, mut close, mut worst_drift) = (0, 0, Vec::new(), 0f64);
    let mut any_difference = false;
    for (t, (a, b)) in fp32.iter().zip(&bf16).enumerate() {
        assert_eq!(a.len(), b.len(), "text {t}: mask count");
        for (k, (ca, cb)) in a.iter().zip(b).enumerate() {
            // Every log-probability both lists hold moved by at most the drift bound.
            for (tok, pa) in ca {
                if let Some((_, pb)) = cb.iter().find(|(u, _)| u == tok) {
                    let drift = (pa.ln() - pb.ln()).abs();
                    worst_drift = worst_drift.max(drift);
                    any_difference |= pa != pb;
                    assert!(
                        drift <= MAX_LOGP_DRIFT,
                        "text {t} mask {k}: log p({tok}) moved by {drift} nats in bf16"
                    );
                }
            }
            let margin = (ca[0].1 / ca[1].1).ln();
            if margin > DECISIVE_MARGIN {
                decisive += 1;
                decisive_parity += usize::from(t < PARITY.len());
                assert_eq!(
                    ca[0].0, cb[0].0,
                    "text {t} ({:?}) mask {k}: top-1 differs although fp32's margin is {margin} nats",
                    texts[t]
                );
            } else {
                close.push((t, k, margin));
            }
        }
    }
    eprintln!(
        "{decisive} decisive masks (margin > {DECISIVE_MARGIN} nats; {decisive_parity} on the \
         parity sentences as given), too close to call: {close:?}; worst drift {worst_drift:.5} nats"
    );
    assert!(
        decisive_parity >= 1,
        "no parity sentence has a decisive fp32 top-1"
    );
    assert!(
        decisive >= 5,
        "only {decisive} decisive masks: the comparison says little"
    );
    assert!(
        any_difference,
        "bf16 gave exactly fp32's probabilities: was --precision ignored?"
    );
}

/// The dtype of each tensor in a safetensors file, read from its header (not
/// through our reader): `{"name": "F32", ...}`.
fn safetensors_dtypes(file: &Path) -> serde_json::Map<String, serde_json::Value> {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| (k.clone(), v["dtype"].clone()))
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn encode_bf16_writes_fp32_embeddings_at_cosine_0999_to_fp32() {
    let dir = model_dir();
    let input = dir.path().join("in.txt");
    std::fs::write(
        &input,
        format!(
            "{}\n{}\nw9 w10\nw30 w31 w32 w33 w34 w35 w36 w37 w38 w39 w40 w41 w42 w43 w44 w45\n",
            PARITY[0], PARITY[1]
        ),
    )
    .unwrap();
    let encode = |precision: &str, ext: &str| {
        let file = dir.path().join(format!("{precision}.{ext}"));
        ok(
            cloze()
                .args([
                    "encode",
                    "--model",
                    path(dir.path()),
                    "--input",
                    path(&input),
                ])
                .args([
                    "--output",
                    path(&file),
                    "--device",
                    "cpu",
                    "--batch-size",
                    "3",
                ])
                .args(["--precision", precision])
                .output()
                .unwrap(),
            "encode",
        );
        file
    };
    let (f32_file, bf16_file) = (encode("fp32", "safetensors"), encode("bf16", "safetensors"));
    let dtypes = safetensors_dtypes(&bf16_file);
    assert_eq!(dtypes["sentence_embeddings"], "F32", "{dtypes:?}");
    assert_eq!(dtypes["token_states"], "F32", "{dtypes:?}");
    let want = cloze_models::hf::read_safetensors(&f32_file).unwrap();
    let got = cloze_models::hf::read_safetensors(&bf16_file).unwrap();
    let (we, ge) = (&want["sentence_embeddings"], &got["sentence_embeddings"]);
    assert_eq!(ge.size(), vec![4, 32]);
    assert_eq!(ge.size(), we.size());
    for i in 0..4 {
        let a = Vec::<f32>::try_from(we.get(i)).unwrap();
        let b = Vec::<f32>::try_from(ge.get(i)).unwrap();
        let c = cosine(&a, &b);
        assert!(c >= 0.999, "sentence {i}: cosine {c} to fp32");
    }
    let diff = (we - ge).abs().max().double_value(&[]);
    assert!(
        diff > 0.0,
        "bf16 wrote exactly fp32's embeddings: was --precision ignored?"
    );
    // The JSON lines format holds the same fp32 values as the safetensors file.
    let jl = encode("bf16", "jsonl");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&jl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let e3: Vec<f32> = serde_json::from_value(rows[3]["embedding"].clone()).unwrap();
    assert_eq!(e3, Vec::<f32>::try_from(ge.get(3)).unwrap());
}

/// How far bf16 may move a sentence's pseudo-log-likelihood, per scored token,
/// in nats: the sum of per-token log-probabilities, each within a few 1e-3 nats
/// of fp32's (see [`MAX_LOGP_DRIFT`]) and of either sign, so that their mean
/// moves less (measured: below 0.0015 per token); 0.005 per token, which keeps the pseudo-perplexity within 0.5%.
const MAX_PLL_DRIFT_PER_TOKEN: f64 = 0.005;

#[test]
fn score_bf16_is_within_0005_nats_per_token_of_fp32() {
    let dir = model_dir();
    let input = dir.path().join("in.txt");
    let long: Vec<String> = (30..68).map(|i| format!("w{i}")).collect();
    std::fs::write(
        &input,
        format!(
            "{}\n{}\nw9 w10\n{}\n",
            PARITY[0].replace("[MASK]", "w40"),
            PARITY[1].replace("[MASK]", "w20"),
            long.join(" ")
        ),
    )
    .unwrap();
    let score = |precision: &str| {
        json_lines(&ok(
            cloze()
                .args([
                    "score",
                    "--model",
                    path(dir.path()),
                    "--input",
                    path(&input),
                ])
                .args([
                    "--device",
                    "cpu",
                    "--batch-size",
                    "16",
                    "--precision",
                    precision,
                ])
                .output()
                .unwrap(),
            "score",
        ))
    };
    let (a, b) = (score("fp32"), score("bf16"));
    assert_eq!(a.len(), 5, "four sentences and a summary");
    assert_eq!(b.len(), 5);
    let uniform = -(96f64.ln());
    let mut any_difference = false;
    for (x, y) in a[..4].iter().zip(&b[..4]) {
        let tokens = x["tokens"].as_f64().unwrap();
        assert_eq!(x["tokens"], y["tokens"]);
        let (pa, pb) = (x["pll"].as_f64().unwrap(), y["pll"].as_f64().unwrap());
        any_difference |= pa != pb;
        let drift = (pa - pb).abs();
        assert!(
            drift <= MAX_PLL_DRIFT_PER_TOKEN * tokens,
            "{}: pll {pb} in bf16 vs {pa} in fp32 ({tokens} tokens)",
            x["text"]
        );
        // The fixture is close to uniform: bf16 must stay much nearer to fp32
        // than a model that lost its weights (a uniform distribution) would be.
        let off_uniform = (pa - uniform * tokens).abs();
        assert!(
            drift < 0.25 * off_uniform,
            "{}: bf16 moved the pll by {drift}, fp32 is only {off_uniform} from uniform",
            x["text"]
        );
    }
    assert!(
        any_difference,
        "bf16 scored exactly as fp32: was --precision ignored?"
    );
    let (ca, cb) = (
        a[4]["corpus_pseudo_perplexity"].as_f64().unwrap(),
        b[4]["corpus_pseudo_perplexity"].as_f64().unwrap(),
    );
    assert!(
        (ca - cb).abs() / ca <= MAX_PLL_DRIFT_PER_TOKEN,
        "corpus pseudo-perplexity {cb} in bf16 vs {ca}"
    );
}

#[test]
fn eval_bf16_reports_metrics_close_to_fp32() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path(), 200);
    let run = dir.path().join("run");
    ok(pretrain(&data, &run, 30).output().unwrap(), "pretrain");
    let eval = |precision: &str| -> serde_json::Value {
        let out = ok(
            cloze()
                .args([
                    "eval",
                    "--model",
                    path(&run.join("model")),
                    "--data",
                    path(&data),
                ])
                .args(["--json", "--precision", precision])
                .output()
                .unwrap(),
            "eval",
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (a, b) = (eval("fp32"), eval("bf16"));
    eprintln!("fp32 {a}\nbf16 {b}");
    assert_eq!(a["counts"], b["counts"], "the same masked positions");
    let masked = a["counts"]["mlm"].as_f64().unwrap();
    assert!(masked > 0.0);
    // Losses are means of per-position log-probabilities: within the drift bound.
    for (name, la) in a["losses"].as_object().unwrap() {
        let lb = b["losses"][name].as_f64().unwrap();
        let la = la.as_f64().unwrap();
        assert!(
            (la - lb).abs() <= MAX_LOGP_DRIFT,
            "loss {name}: {lb} in bf16 vs {la} in fp32"
        );
    }
    // Accuracies may differ only where a top-1 flips between near-tied
    // candidates: allow 2% of the masked positions (and never the baseline,
    // which does not depend on the model).
    for (name, xa) in a["accuracies"].as_object().unwrap() {
        let (xa, xb) = (
            xa.as_f64().unwrap(),
            b["accuracies"][name].as_f64().unwrap(),
        );
        let bound = if name.starts_with("unigram") {
            0.0
        } else {
            0.02
        };
        assert!(
            (xa - xb).abs() <= bound,
            "accuracy {name}: {xb} in bf16 vs {xa} in fp32 on {masked} positions"
        );
    }
    assert_ne!(
        a["losses"], b["losses"],
        "bf16 gave exactly fp32's losses: was --precision ignored?"
    );
}

#[test]
fn an_unknown_precision_names_the_accepted_ones() {
    let dir = model_dir();
    let m = path(dir.path());
    let commands: [&[&str]; 6] = [
        &["fill-mask", "--model", m, "w5 [MASK]"],
        &[
            "encode", "--model", m, "--input", "in.txt", "--output", "o.jsonl",
        ],
        &["score", "--model", m, "--input", "in.txt"],
        &["eval", "--model", m, "--data", "data"],
        &["correct", "--model", m, "text"],
        &["bench", "encode"],
    ];
    for args in commands {
        let out = cloze()
            .args(args)
            .args(["--precision", "fp16"])
            .output()
            .unwrap();
        fails_with(&out, "invalid value 'fp16' for '--precision");
        fails_with(&out, "expected fp32, bf16 or int8");
    }
}

/// `--precision int8`: the encoder's linears run libtorch's dynamic int8
/// kernel. The fixture's random weights are small, so its hidden states are
/// dominated by the embeddings and the bound is loose in absolute terms; what
/// this checks is that the flag reaches the kernel (the output moves), that
/// what is written stays fp32 and close to fp32's, and that fill-mask runs.
#[test]
fn int8_encode_and_fill_mask_run_the_int8_kernel() {
    let dir = model_dir();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, format!("{}\n{}\nw9 w10\n", PARITY[0], PARITY[1])).unwrap();
    let encode = |precision: &str| {
        let file = dir.path().join(format!("{precision}.safetensors"));
        ok(
            cloze()
                .args(["encode", "--model", path(dir.path())])
                .args(["--input", path(&input), "--output", path(&file)])
                .args(["--device", "cpu", "--precision", precision])
                .output()
                .unwrap(),
            "encode",
        );
        cloze_models::hf::read_safetensors(&file).unwrap()
    };
    let (want, got) = (encode("fp32"), encode("int8"));
    let (we, ge) = (&want["sentence_embeddings"], &got["sentence_embeddings"]);
    assert_eq!(ge.kind(), tch::Kind::Float);
    assert_eq!(ge.size(), we.size());
    for i in 0..3 {
        let a = Vec::<f32>::try_from(we.get(i)).unwrap();
        let b = Vec::<f32>::try_from(ge.get(i)).unwrap();
        let c = cosine(&a, &b);
        assert!(c >= 0.99, "sentence {i}: cosine {c} to fp32");
    }
    let diff = (we - ge).abs().max().double_value(&[]);
    assert!(
        diff > 0.0,
        "int8 wrote exactly fp32's embeddings: was --precision ignored?"
    );
    let texts: Vec<String> = PARITY.iter().map(|s| s.to_string()).collect();
    let filled = fill_mask(dir.path(), &texts, "int8");
    assert_eq!(filled.len(), 2);
    for masks in &filled {
        for candidates in masks {
            assert_eq!(candidates.len(), 5);
            let total: f64 = candidates.iter().map(|c| c.1).sum();
            assert!(total > 0.0 && total <= 1.0 + 1e-6, "{candidates:?}");
        }
    }
}

#[test]
fn int8_is_refused_for_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path(), 200);
    let out = pretrain(&data, &dir.path().join("run"), 2)
        .args(["--precision", "int8"])
        .output()
        .unwrap();
    fails_with(&out, "int8 is for inference");
    assert!(!dir.path().join("run").join("checkpoints").exists());
}

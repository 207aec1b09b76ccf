//! `cloze experiment dialogue`: PLATO's role embeddings and unified mask,
//! ablated at small scale on real multi-party dialogue (the 35 First-Folio
//! plays by default).
//!
//! Data: `cloze data dialogue` (samples split by play), a WordPiece
//! tokenizer trained on the training plays' turns. Per seed, one
//! `cloze dialogue init` model (plato-tiny) is the common start of every
//! arm, which then trains for the same steps on the same batches
//! (`cloze finetune --task dialogue`, only `--roles` and `--attention`
//! differ):
//!
//! - no role embeddings, unified mask;
//! - two alternating roles (Knover's default), unified mask;
//! - per-speaker roles (the responder 0, others by recency), unified mask
//!   (PLATO's set-up);
//! - per-speaker roles, fully causal mask (a left-to-right LM).
//!
//! Each model is scored on the test plays (`cloze dialogue eval`):
//! response perplexity, hits@1 of the true next line among 10 candidates
//! drawn from other scenes, and distinct-1/2 of greedy responses.
//!
//! The bar the arms must clear: two baselines fitted on the training
//! samples (`cloze dialogue eval --baseline unigram|retrieval`), in the
//! tokens and layout of the seed's PLATO arm (every arm has the same
//! tokenizer and lengths). They train nothing and draw nothing but the
//! hits@1 candidates, which use each seed's evaluation seed, so they rank
//! the very candidate sets the arms of that seed rank; the unigram
//! perplexity is the same for every seed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_fs::OutputKind;
use serde_json::{json, Value};

use super::report::{cell, markdown_table};
use super::{capture_once, os_args, read_json, resume_or, save, step_once, Steps};

/// Arguments of `cloze experiment dialogue`.
#[derive(Debug, Args)]
pub struct DialogueArgs {
    /// The experiment directory; running the command again continues it.
    #[arg(long, default_value = "runs/dialogue")]
    pub out: PathBuf,
    /// The dialogue corpus (`cloze data dialogue --corpus`).
    #[arg(long, default_value = "shakespeare")]
    pub corpus: String,
    /// Held-out plays (or files) for the dev set, comma-separated
    /// (`cloze data dialogue --valid`; default: that command's choice).
    #[arg(long)]
    pub valid: Option<String>,
    /// Held-out plays (or files) for the test set (`cloze data dialogue --test`).
    #[arg(long)]
    pub test: Option<String>,
    /// Seeds (1..=N): each has its own initial model, shared by the arms.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Training steps of every arm.
    #[arg(long, default_value_t = 500)]
    pub max_steps: u64,
    /// Samples per step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Longest context in tokens (`[CLS]` and `[SEP]`s included).
    #[arg(long, default_value_t = 96)]
    pub context_len: usize,
    /// Longest response in tokens (`[CLS]` and `[SEP]` included).
    #[arg(long, default_value_t = 40)]
    pub response_len: usize,
    /// Tokenizer vocabulary size.
    #[arg(long, default_value_t = 8000)]
    pub vocab_size: u32,
    /// Responses ranked per test sample for hits@1 (the true one and others
    /// from other scenes).
    #[arg(long, default_value_t = 10)]
    pub candidates: usize,
    /// Test samples ranked for hits@1 (evenly spaced; perplexity covers all).
    #[arg(long, default_value_t = 500)]
    pub rank_samples: usize,
    /// Test samples generated (greedy) for distinct-1/2.
    #[arg(long, default_value_t = 200)]
    pub generate: usize,
    /// Where the Markdown report goes (default OUT/report.md).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Start over: removes what an earlier run of this experiment wrote.
    #[arg(long)]
    pub force: bool,
}

const FILES: &[&str] = &[
    "experiment.json",
    "data",
    "tok",
    "runs",
    "results",
    "logs",
    "report.md",
    cloze_fs::MARKER,
];

/// One arm: its name, `--roles` and `--attention`.
struct Arm {
    name: &'static str,
    label: &'static str,
    roles: &'static str,
    attention: &'static str,
}

/// The baselines (`cloze dialogue eval --baseline NAME`) and their labels.
const BASELINES: &[(&str, &str)] = &[
    ("unigram", "baseline: unigram (add-one), no context"),
    ("retrieval", "baseline: TF-IDF retrieval (ranks only)"),
];

/// The arm whose model lends the baselines its tokenizer and row layout.
const LAYOUT_ARM: &str = "speaker-unified";

const ARMS: &[Arm] = &[
    Arm {
        name: "none-unified",
        label: "no roles, unified mask",
        roles: "none",
        attention: "unified",
    },
    Arm {
        name: "alternating-unified",
        label: "two alternating roles, unified mask",
        roles: "alternating",
        attention: "unified",
    },
    Arm {
        name: "speaker-unified",
        label: "per-speaker roles, unified mask (PLATO)",
        roles: "speaker",
        attention: "unified",
    },
    Arm {
        name: "speaker-causal",
        label: "per-speaker roles, causal mask",
        roles: "speaker",
        attention: "causal",
    },
];

fn kind() -> OutputKind {
    OutputKind::new("experiment dialogue", "--force")
}

fn settings(a: &DialogueArgs) -> Value {
    let mut v = json!({
        "experiment": "dialogue",
        "corpus": a.corpus,
        "max_steps": a.max_steps,
        "batch_size": a.batch_size,
        "lr": a.lr,
        "context_len": a.context_len,
        "response_len": a.response_len,
        "vocab_size": a.vocab_size,
        "generate": a.generate,
    });
    // Only when not the default, so the default settings read as they always have.
    for (key, value) in [("valid", &a.valid), ("test", &a.test)] {
        if let Some(names) = value {
            v[key] = json!(names);
        }
    }
    if a.candidates != 10 {
        v["candidates"] = json!(a.candidates);
    }
    if a.rank_samples != 500 {
        v["rank_samples"] = json!(a.rank_samples);
    }
    v
}

/// Runs the experiment.
pub fn run(a: DialogueArgs, threads: Option<usize>) -> Result<()> {
    if a.seeds == 0 || a.max_steps == 0 || a.batch_size == 0 {
        bail!("--seeds, --max-steps and --batch-size must be positive");
    }
    let started = Instant::now();
    let out = a.out.clone();
    let report_path = a.report.clone().unwrap_or_else(|| out.join("report.md"));
    let _lock = super::claim_dir(&out, &kind(), FILES, &settings(&a), a.force)?;
    let seeds: Vec<u64> = (1..=a.seeds).collect();
    let total = 3 + seeds.len() * (1 + 2 * ARMS.len() + BASELINES.len());
    let mut steps = Steps::new(&out.join("logs"), threads, total)?;
    let results = out.join("results");
    let data = out.join("data");
    let tok = out.join("tok");

    // 1. Data and tokenizer.
    if std::path::Path::new(&a.corpus).exists() {
        steps.skip("fetch");
    } else {
        step_once(
            &mut steps,
            &results,
            "fetch",
            &data.join("train.jsonl"),
            || os_args(["data", "fetch", a.corpus.as_str()]),
        )?;
    }
    step_once(
        &mut steps,
        &results,
        "prepare",
        &data.join("train.jsonl"),
        || {
            let mut v = os_args(["data", "dialogue", "--corpus", a.corpus.as_str()]);
            for (flag, value) in [("--valid", &a.valid), ("--test", &a.test)] {
                if let Some(names) = value {
                    v.extend(os_args([flag, names.as_str()]));
                }
            }
            v.push("--out".into());
            v.push(data.clone().into_os_string());
            v
        },
    )?;
    step_once(
        &mut steps,
        &results,
        "tokenizer",
        &tok.join("tokenizer.json"),
        || {
            let mut v = os_args(["tokenizer", "train", "--corpus"]);
            v.push(data.join("corpus.txt").into_os_string());
            v.extend(os_args([
                "--vocab-size".to_string(),
                a.vocab_size.to_string(),
                "--out".into(),
            ]));
            v.push(tok.clone().into_os_string());
            v
        },
    )?;

    // 2. Per seed: one initial model, every arm from it, each scored.
    // How every eval of a seed ranks: the same candidates, samples and draws.
    let ranking = |seed: u64| {
        os_args([
            "--candidates".to_string(),
            a.candidates.to_string(),
            "--rank-samples".into(),
            a.rank_samples.to_string(),
            "--seed".into(),
            seed.to_string(),
            "--json".into(),
        ])
    };
    for &seed in &seeds {
        let init = out.join("runs").join(format!("init-seed{seed}"));
        step_once(
            &mut steps,
            &results,
            &format!("init-seed{seed}"),
            &init.join("model.safetensors"),
            || {
                let mut v = os_args(["dialogue", "init", "--config", "plato-tiny", "--tokenizer"]);
                v.push(tok.clone().into_os_string());
                v.extend(os_args([
                    "--seed".to_string(),
                    seed.to_string(),
                    "--out".into(),
                ]));
                v.push(init.clone().into_os_string());
                v
            },
        )?;
        for arm in ARMS {
            let name = format!("{}-seed{seed}", arm.name);
            let run = out.join("runs").join(&name);
            let trained = results.join(format!("train-{name}.json"));
            if trained.exists() {
                steps.skip(&format!("train {name}"));
            } else {
                let args = resume_or("finetune", &run, || {
                    let mut v = os_args(["finetune", "--task", "dialogue", "--model"]);
                    v.push(init.clone().into_os_string());
                    v.push("--train".into());
                    v.push(data.join("train.jsonl").into_os_string());
                    v.push("--dev".into());
                    v.push(data.join("valid.jsonl").into_os_string());
                    v.extend(os_args([
                        "--roles".to_string(),
                        arm.roles.into(),
                        "--attention".into(),
                        arm.attention.into(),
                        "--max-steps".into(),
                        a.max_steps.to_string(),
                        "--batch-size".into(),
                        a.batch_size.to_string(),
                        "--lr".into(),
                        a.lr.to_string(),
                        "--seed".into(),
                        seed.to_string(),
                        "--patience".into(),
                        "0".into(),
                        "--max-length".into(),
                        a.context_len.to_string(),
                        "--set".into(),
                        format!("dialogue.max_response_len={}", a.response_len),
                        "--set".into(),
                        format!("eval.every_steps={}", a.max_steps.div_ceil(2).max(1)),
                        "--out".into(),
                    ]));
                    v.push(run.clone().into_os_string());
                    v
                });
                let (_, seconds) = steps.run(&format!("train {name}"), &args, false)?;
                save(&trained, &json!({"seconds": seconds}))?;
            }
            capture_once(
                &mut steps,
                &format!("eval {name}"),
                &results.join(format!("eval-{name}.json")),
                || {
                    let mut v = os_args(["dialogue", "eval", "--model"]);
                    v.push(run.join("model").into_os_string());
                    v.push("--data".into());
                    v.push(data.join("test.jsonl").into_os_string());
                    v.extend(os_args(["--generate".to_string(), a.generate.to_string()]));
                    v.extend(ranking(seed));
                    v
                },
            )?;
        }
        let layout = out
            .join("runs")
            .join(format!("{LAYOUT_ARM}-seed{seed}"))
            .join("model");
        for &(baseline, _) in BASELINES {
            capture_once(
                &mut steps,
                &format!("eval {baseline}-seed{seed}"),
                &results.join(format!("eval-{baseline}-seed{seed}.json")),
                || {
                    let mut v = os_args(["dialogue", "eval", "--baseline", baseline, "--train"]);
                    v.push(data.join("train.jsonl").into_os_string());
                    v.push("--model".into());
                    v.push(layout.clone().into_os_string());
                    v.push("--data".into());
                    v.push(data.join("test.jsonl").into_os_string());
                    v.extend(ranking(seed));
                    v
                },
            )?;
        }
    }

    // 3. The report.
    let text = report(&results, &a, &seeds, &data)?;
    cloze_models::hf::write_atomic(&report_path, text.as_bytes())
        .with_context(|| format!("writing {}", report_path.display()))?;
    println!("{text}");
    println!(
        "report: {} ({} steps run in {:.1} min)",
        report_path.display(),
        steps.ran(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

fn report(
    results: &std::path::Path,
    a: &DialogueArgs,
    seeds: &[u64],
    data: &std::path::Path,
) -> Result<String> {
    let mut text =
        String::from("# PLATO-style dialogue: role embeddings and the unified mask, ablated\n\n");
    text.push_str(&format!(
        "Command: `cloze experiment dialogue --corpus {} --seeds {} --max-steps {} \
         --batch-size {} --lr {} --context-len {} --response-len {} --vocab-size {} \
         --generate {} --candidates {} --rank-samples {}`. Model: plato-tiny (2 layers, \
         hidden 128) from one `cloze dialogue init` per seed, shared by the four arms, which \
         see the same batches for the same steps. Test plays only: response perplexity (every \
         test sample), hits@1 of the true next line among {} candidates (the others from \
         other scenes; chance {:.0}%; {} evenly spaced test samples ranked), distinct-1/2 of \
         greedy responses. Mean ± sd over seeds. The baseline rows are fitted on the \
         training samples (`cloze dialogue eval --baseline unigram|retrieval`) and rank the \
         same candidate sets as the arms of each seed; n/a: a measure the baseline does not \
         have.\n\n",
        a.corpus,
        seeds.len(),
        a.max_steps,
        a.batch_size,
        a.lr,
        a.context_len,
        a.response_len,
        a.vocab_size,
        a.generate,
        a.candidates,
        a.rank_samples,
        a.candidates,
        100.0 / a.candidates.max(1) as f64,
        a.rank_samples
    ));
    if let Ok(stats) = read_json(&data.join("dialogue.json")) {
        let split = |name: &str| {
            let c = &stats["counts"][name];
            format!(
                "{name} {} samples from {} dialogues, {} speakers",
                c["samples"], c["dialogues"], c["speakers"]
            )
        };
        let held_out = |name: &str| -> String {
            stats["sources"][name]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        text.push_str(&format!(
            "Data (`cloze data dialogue`, context up to {} turns): {}; {} ({}); {} ({}).\n\n",
            stats["max_context_turns"],
            split("train"),
            split("valid"),
            held_out("valid"),
            split("test"),
            held_out("test"),
        ));
    }
    let mut rows = Vec::new();
    for arm in ARMS {
        let mut evals = Vec::new();
        let mut train = Vec::new();
        for s in seeds {
            let name = format!("{}-seed{s}", arm.name);
            if let Ok(v) = read_json(&results.join(format!("eval-{name}.json"))) {
                evals.push(v);
                if let Ok(t) = read_json(&results.join(format!("train-{name}.json"))) {
                    train.extend(t["seconds"].as_f64());
                }
            }
        }
        let vals = |k: &str| -> Vec<f64> {
            evals
                .iter()
                .filter_map(|v| v["output"][k].as_f64())
                .collect()
        };
        rows.push(vec![
            arm.label.to_string(),
            evals.len().to_string(),
            cell(&vals("perplexity"), 1.0, 2),
            cell(&vals("hits_at_1"), 100.0, 1),
            cell(&vals("distinct_1"), 1.0, 3),
            cell(&vals("distinct_2"), 1.0, 3),
            cell(&train, 1.0, 0),
        ]);
    }
    for (baseline, label) in BASELINES {
        let evals: Vec<Value> = seeds
            .iter()
            .filter_map(|s| read_json(&results.join(format!("eval-{baseline}-seed{s}.json"))).ok())
            .collect();
        let vals = |k: &str| -> Vec<f64> {
            evals
                .iter()
                .filter_map(|v| v["output"][k].as_f64())
                .collect()
        };
        rows.push(vec![
            label.to_string(),
            evals.len().to_string(),
            cell(&vals("perplexity"), 1.0, 2),
            cell(&vals("hits_at_1"), 100.0, 1),
            cell(&vals("distinct_1"), 1.0, 3),
            cell(&vals("distinct_2"), 1.0, 3),
            cell(&[], 1.0, 0),
        ]);
    }
    text.push_str(&markdown_table(
        &[
            "arm",
            "seeds",
            "test perplexity",
            "hits@1 %",
            "distinct-1",
            "distinct-2",
            "train s",
        ],
        &[false, true, true, true, true, true, true],
        &rows,
    ));
    text.push('\n');
    Ok(text)
}

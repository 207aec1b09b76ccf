//! `cloze experiment code`: CugLM's multi-task pretraining for code
//! completion, ablated at small scale on real code (the JDK's Java library
//! sources, or TypeScript packages).
//!
//! Data: `cloze data code` (files split 90/5/5 by path, plus one held-out
//! package for the cross-project test; a WordPiece vocabulary over the
//! training files with identifiers split at case and underscore
//! boundaries). Per seed, every arm pretrains a cuglm-tiny model for the
//! same steps on the same examples and is then fine-tuned for completion
//! (cuglm-complete: left-to-right rows only) for the same steps:
//!
//! - CugLM: identifier MLM + NCP + left-to-right LM + category head, then
//!   type-then-token completion fine-tuning;
//! - without NCP; - without the identifier MLM (both still typed);
//! - without the type head (category weight 0 in both stages, plain
//!   next-token fine-tuning);
//! - a plain left-to-right LM (the same network, no MLM, NCP or types).
//!
//! Count baselines (frequency, a 3-gram and a 5-gram model with backoff)
//! are trained on the training files. Every model is scored by next-token
//! top-1/top-5 accuracy on the held-out files and the held-out package, on
//! all tokens and on identifier tokens (`cloze code eval`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_fs::OutputKind;
use serde_json::{json, Value};

use super::report::{cell, markdown_table};
use super::{capture_once, os_args, read_json, resume_or, save, step_once, Steps};

/// Arguments of `cloze experiment code`.
#[derive(Debug, Args)]
pub struct CodeArgs {
    /// The experiment directory; running the command again continues it.
    #[arg(long, default_value = "runs/code")]
    pub out: PathBuf,
    /// The code corpus: jdk-src, ts-src, or a directory of sources.
    #[arg(long, default_value = "jdk-src")]
    pub corpus: String,
    /// Seeds (1..=N).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Pretraining steps of every arm.
    #[arg(long, default_value_t = 1000)]
    pub pretrain_steps: u64,
    /// Completion fine-tuning steps of every arm.
    #[arg(long, default_value_t = 400)]
    pub finetune_steps: u64,
    /// Row length (tokens, specials included).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Tokenizer vocabulary size.
    #[arg(long, default_value_t = 8000)]
    pub vocab_size: u32,
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
    "runs",
    "results",
    "logs",
    "report.md",
    cloze_fs::MARKER,
];

/// One arm: its settings for pretraining and fine-tuning.
struct Arm {
    name: &'static str,
    label: &'static str,
    /// `--set` overrides of the pretraining run.
    pretrain: &'static [&'static str],
    /// Whether completion is type-then-token (else plain next-token with
    /// category weight 0).
    typed: bool,
}

const ARMS: &[Arm] = &[
    Arm {
        name: "cuglm",
        label: "CugLM (MLM + NCP + LM + types)",
        pretrain: &[],
        typed: true,
    },
    Arm {
        name: "no-ncp",
        label: "without NCP",
        pretrain: &["code.ncp=false"],
        typed: true,
    },
    Arm {
        name: "no-mlm",
        label: "without the identifier MLM",
        pretrain: &["code.mlm=false"],
        typed: true,
    },
    Arm {
        name: "no-type",
        label: "without the type head",
        pretrain: &["objective.category_weight=0"],
        typed: false,
    },
    Arm {
        name: "lm",
        label: "plain left-to-right LM",
        pretrain: &[
            "code.mlm=false",
            "code.ncp=false",
            "objective.category_weight=0",
        ],
        typed: false,
    },
];

/// Count baselines: name, label, `cloze code eval` flags.
const BASELINES: &[(&str, &str, &[&str])] = &[
    ("frequency", "frequency", &["--baseline", "frequency"]),
    (
        "3-gram",
        "3-gram (backoff)",
        &["--baseline", "ngram", "--order", "3"],
    ),
    (
        "5-gram",
        "5-gram (backoff)",
        &["--baseline", "ngram", "--order", "5"],
    ),
];

fn kind() -> OutputKind {
    OutputKind::new("experiment code", "--force")
}

fn settings(a: &CodeArgs) -> Value {
    json!({
        "experiment": "code",
        "corpus": a.corpus,
        "pretrain_steps": a.pretrain_steps,
        "finetune_steps": a.finetune_steps,
        "max_len": a.max_len,
        "vocab_size": a.vocab_size,
    })
}

/// Runs the experiment.
pub fn run(a: CodeArgs, threads: Option<usize>) -> Result<()> {
    if a.seeds == 0 || a.pretrain_steps == 0 || a.finetune_steps == 0 {
        bail!("--seeds, --pretrain-steps and --finetune-steps must be positive");
    }
    let started = Instant::now();
    let out = a.out.clone();
    let report_path = a.report.clone().unwrap_or_else(|| out.join("report.md"));
    let _lock = super::claim_dir(&out, &kind(), FILES, &settings(&a), a.force)?;
    let seeds: Vec<u64> = (1..=a.seeds).collect();
    let total = 2 + BASELINES.len() + seeds.len() * 3 * ARMS.len();
    let mut steps = Steps::new(&out.join("logs"), threads, total)?;
    let results = out.join("results");
    let data = out.join("data");

    // 1. Data, tokenizer and the count baselines.
    if std::path::Path::new(&a.corpus).exists() {
        steps.skip("fetch");
    } else {
        step_once(
            &mut steps,
            &results,
            "fetch",
            &data.join("code.json"),
            || os_args(["data", "fetch", a.corpus.as_str()]),
        )?;
    }
    step_once(
        &mut steps,
        &results,
        "prepare",
        &data.join("code.json"),
        || {
            let mut v = os_args(["data", "code", "--corpus", a.corpus.as_str()]);
            v.extend(os_args([
                "--vocab-size".to_string(),
                a.vocab_size.to_string(),
                "--out".into(),
            ]));
            v.push(data.clone().into_os_string());
            v
        },
    )?;
    for (name, _, flags) in BASELINES {
        capture_once(
            &mut steps,
            &format!("eval {name}"),
            &results.join(format!("eval-{name}.json")),
            || {
                let mut v = os_args(["code", "eval", "--data"]);
                v.push(data.clone().into_os_string());
                v.extend(os_args(flags.iter().copied()));
                v.extend(os_args([
                    "--max-len".to_string(),
                    a.max_len.to_string(),
                    "--json".into(),
                ]));
                v
            },
        )?;
    }

    // 2. Per seed and arm: pretrain, fine-tune for completion, score.
    for &seed in &seeds {
        for arm in ARMS {
            let name = format!("{}-seed{seed}", arm.name);
            let pre = out.join("runs").join(format!("pretrain-{name}"));
            let ft = out.join("runs").join(format!("complete-{name}"));
            let done = results.join(format!("pretrain-{name}.json"));
            if done.exists() {
                steps.skip(&format!("pretrain {name}"));
            } else {
                let args = resume_or("pretrain", &pre, || {
                    let mut v = os_args(["pretrain", "--config", "cuglm-tiny", "--data"]);
                    v.push(data.clone().into_os_string());
                    v.extend(os_args([
                        "--max-steps".to_string(),
                        a.pretrain_steps.to_string(),
                        "--seed".into(),
                        seed.to_string(),
                        "--set".into(),
                        format!("code.max_len={}", a.max_len),
                        "--set".into(),
                        format!("eval.every_steps={}", a.pretrain_steps),
                        "--set".into(),
                        format!("checkpoint.every_steps={}", a.pretrain_steps.div_ceil(2)),
                    ]));
                    for s in arm.pretrain {
                        v.extend(os_args(["--set", s]));
                    }
                    v.push("--out".into());
                    v.push(pre.clone().into_os_string());
                    v
                });
                let (_, seconds) = steps.run(&format!("pretrain {name}"), &args, false)?;
                save(&done, &json!({"seconds": seconds}))?;
            }
            let done = results.join(format!("complete-{name}.json"));
            if done.exists() {
                steps.skip(&format!("complete {name}"));
            } else {
                let args = resume_or("pretrain", &ft, || {
                    let mut v = os_args(["pretrain", "--config", "cuglm-complete", "--init-from"]);
                    v.push(pre.join("model").into_os_string());
                    v.push("--data".into());
                    v.push(data.clone().into_os_string());
                    v.extend(os_args([
                        "--max-steps".to_string(),
                        a.finetune_steps.to_string(),
                        "--seed".into(),
                        seed.to_string(),
                        "--set".into(),
                        format!("code.max_len={}", a.max_len),
                        "--set".into(),
                        format!("eval.every_steps={}", a.finetune_steps),
                        "--set".into(),
                        format!("checkpoint.every_steps={}", a.finetune_steps.div_ceil(2)),
                    ]));
                    if !arm.typed {
                        v.extend(os_args([
                            "--set",
                            "objective.kind=\"cuglm\"",
                            "--set",
                            "objective.category_weight=0",
                        ]));
                    }
                    v.push("--out".into());
                    v.push(ft.clone().into_os_string());
                    v
                });
                let (_, seconds) = steps.run(&format!("complete {name}"), &args, false)?;
                save(&done, &json!({"seconds": seconds}))?;
            }
            capture_once(
                &mut steps,
                &format!("eval {name}"),
                &results.join(format!("eval-{name}.json")),
                || {
                    let mut v = os_args(["code", "eval", "--model"]);
                    v.push(ft.join("model").into_os_string());
                    v.push("--data".into());
                    v.push(data.clone().into_os_string());
                    v.push("--json".into());
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

/// `(split, all|identifiers, top1|top5)` of one `cloze code eval --json` output.
fn rate(v: &Value, split: &str, group: &str, k: &str) -> Option<f64> {
    let s = v["output"]["splits"]
        .as_array()?
        .iter()
        .find(|s| s["split"] == split)?;
    let h = &s["scores"][group];
    Some(h[k].as_f64()? / h["n"].as_f64()?.max(1.0))
}

fn report(
    results: &std::path::Path,
    a: &CodeArgs,
    seeds: &[u64],
    data: &std::path::Path,
) -> Result<String> {
    let mut text = String::from(
        "# CugLM at small scale: multi-task pretraining for code completion, ablated\n\n",
    );
    text.push_str(&format!(
        "Command: `cloze experiment code --corpus {} --seeds {} --pretrain-steps {} \
         --finetune-steps {} --max-len {} --vocab-size {}`. Model: cuglm-tiny (2 layers, \
         hidden 128), pretrained per arm for the same steps on the same examples, then \
         fine-tuned for completion (left-to-right rows; type-then-token where the arm has \
         types). Next-token accuracy per code-tokenizer token (an identifier split into \
         pieces counts each piece) on every token of the held-out files (test) and of the \
         held-out package (cross-project); \"identifier\" columns count identifier tokens \
         only. Categories are syntactic (tree-sitter), not static types. Mean ± sd over seeds \
         (count baselines are deterministic).\n\n",
        a.corpus,
        seeds.len(),
        a.pretrain_steps,
        a.finetune_steps,
        a.max_len,
        a.vocab_size,
    ));
    if let Ok(stats) = read_json(&data.join("code.json")) {
        let split = |name: &str| {
            let s = &stats["splits"][name];
            format!("{name} {} files / {} tokens", s["files"], s["tokens"])
        };
        text.push_str(&format!(
            "Data (`cloze data code`): {}; {}; {}; {} (held-out package {}); {} files skipped \
             as unparseable.\n\n",
            split("train"),
            split("valid"),
            split("test"),
            split("test-package"),
            stats["heldout_package"],
            stats["skipped"],
        ));
    }
    let header = [
        "model",
        "seeds",
        "test top-1 %",
        "test top-5 %",
        "test ident top-1 %",
        "test ident top-5 %",
        "package top-1 %",
        "package ident top-1 %",
    ];
    let row = |label: &str, evals: &[Value]| -> Vec<String> {
        let vals = |split: &str, group: &str, k: &str| -> Vec<f64> {
            evals
                .iter()
                .filter_map(|v| rate(v, split, group, k))
                .collect()
        };
        vec![
            label.to_string(),
            evals.len().to_string(),
            cell(&vals("test", "all", "top1"), 100.0, 1),
            cell(&vals("test", "all", "top5"), 100.0, 1),
            cell(&vals("test", "identifiers", "top1"), 100.0, 1),
            cell(&vals("test", "identifiers", "top5"), 100.0, 1),
            cell(&vals("test-package", "all", "top1"), 100.0, 1),
            cell(&vals("test-package", "identifiers", "top1"), 100.0, 1),
        ]
    };
    let mut rows = Vec::new();
    for (name, label, _) in BASELINES {
        let evals: Vec<Value> = read_json(&results.join(format!("eval-{name}.json")))
            .into_iter()
            .collect();
        let mut r = row(label, &evals);
        r[1] = "-".into();
        rows.push(r);
    }
    for arm in ARMS {
        let evals: Vec<Value> = seeds
            .iter()
            .filter_map(|s| {
                read_json(&results.join(format!("eval-{}-seed{s}.json", arm.name))).ok()
            })
            .collect();
        rows.push(row(arm.label, &evals));
    }
    text.push_str(&markdown_table(
        &header,
        &[false, true, true, true, true, true, true, true],
        &rows,
    ));
    text.push('\n');
    Ok(text)
}

//! `cloze experiment macbert-ablation`: MacBERT's claims at small scale on
//! real Chinese data.
//!
//! Six tiny BERTs are pretrained on the same corpus (`cloze data tasks`'
//! `zh-pretrain.txt`, an 8k character vocabulary), for the same number of
//! steps, differing in one thing each:
//!
//! - masking, with MLM + SOP: `bert-zh-tiny` (characters), `bert-zh-wwm`
//!   (whole jieba words), `bert-zh-wwm-ngram` (1-4 word n-grams) and
//!   `macbert-zh-tiny` (the n-grams replaced by Cilin synonyms, never `[MASK]`);
//! - the sentence objective, with MacBERT's masking: none (MLM only), NSP, SOP
//!   (the last is `macbert-zh-tiny` itself).
//!
//! Each model is scored on held-out masked-token accuracy (on the same
//! character `[MASK]` masks for all, and on its own masking scheme), used as a
//! spelling corrector on SIGHAN 2015, and fine-tuned on `zh-sentiment` and
//! `zh-cws` with several seeds for a fixed number of steps (no dev-set model
//! selection, so every seed gets the same budget); the test metrics are
//! reported as mean ± sample standard deviation over the seeds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_fs::OutputKind;
use cloze_train::config::TrainConfig;
use serde_json::{json, Value};

use super::report::{self, markdown_table, Panel, Summary};
use super::{capture_once, has_checkpoint, os_args, read_json, save, step_once, Steps};
use crate::cmd::run_dir;

/// Arguments of `cloze experiment macbert-ablation`.
#[derive(Debug, Args)]
pub struct AblationArgs {
    /// The experiment directory. Running the command again with the same
    /// directory continues where it stopped; any other existing directory
    /// is refused.
    #[arg(long, default_value = "runs/macbert-ablation")]
    pub out: PathBuf,
    /// Fine-tuning seeds per model and task (seeds 1..=N). A later run with
    /// more seeds adds the missing ones.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Pretraining steps of every model (32 sequences of at most 128 tokens
    /// each); the presets' own 3,000 by default.
    #[arg(long, default_value_t = 3000)]
    pub pretrain_steps: u64,
    /// Fine-tuning steps of every run (32 examples each).
    #[arg(long, default_value_t = 300)]
    pub finetune_steps: u64,
    /// Peak fine-tuning learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub finetune_lr: f64,
    /// Fine-tune on (and test on) only N evenly spaced examples of each
    /// task's train and test split: a quick check of the whole pipeline, not
    /// a result.
    #[arg(long, value_name = "N")]
    pub task_examples: Option<usize>,
    /// `cloze correct --threshold` on SIGHAN 2015.
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f64,
    /// Where the Markdown report goes (default OUT/ablation.md); the chart is
    /// written next to it with the extension .png.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Start over: removes what an earlier run of this experiment wrote in
    /// OUT, and nothing else.
    #[arg(long)]
    pub force: bool,
}

/// The Chinese datasets the experiment reads.
const DATASETS: &[&str] = &["pd1998", "zh-reviews", "cilin", "sighan15"];

/// What the experiment writes in OUT (removed by `--force`).
const FILES: &[&str] = &[
    "experiment.json",
    "tasks",
    "tasks-subset",
    "tokenizer",
    "data-sop",
    "data-nsp",
    "eval-masks.toml",
    "pretrain",
    "finetune",
    "results",
    "logs",
    "ablation.md",
    "ablation.png",
    cloze_fs::MARKER,
];

/// Vocabulary size of the character-level WordPiece tokenizer.
const VOCAB_SIZE: u32 = 8000;
/// Documents held out of pretraining for the held-out MLM metrics.
const HOLDOUT: f64 = 0.02;

/// Which prepared data a model is pretrained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairs {
    Sop,
    Nsp,
}

impl Pairs {
    fn dir(self) -> &'static str {
        match self {
            Self::Sop => "data-sop",
            Self::Nsp => "data-nsp",
        }
    }
}

/// One pretrained model of the ablation.
struct Variant {
    /// Directory name and row name.
    name: &'static str,
    /// Short label for the chart.
    label: &'static str,
    /// What differs, in words.
    about: &'static str,
    /// The training preset.
    preset: &'static str,
    /// `objective.kind` when it is not the preset's.
    objective: Option<&'static str>,
    data: Pairs,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "bert-zh-tiny",
        label: "char",
        about: "characters, [MASK] 80/10/10",
        preset: "bert-zh-tiny",
        objective: None,
        data: Pairs::Sop,
    },
    Variant {
        name: "bert-zh-wwm",
        label: "wwm",
        about: "whole words, [MASK] 80/10/10",
        preset: "bert-zh-wwm",
        objective: None,
        data: Pairs::Sop,
    },
    Variant {
        name: "bert-zh-wwm-ngram",
        label: "wwm+ngram",
        about: "1-4 word n-grams, [MASK] 80/10/10",
        preset: "bert-zh-wwm-ngram",
        objective: None,
        data: Pairs::Sop,
    },
    Variant {
        name: "macbert-zh-tiny",
        label: "MacBERT",
        about: "1-4 word n-grams, similar word 80/10/10",
        preset: "macbert-zh-tiny",
        objective: None,
        data: Pairs::Sop,
    },
    Variant {
        name: "macbert-zh-tiny-mlm-only",
        label: "Mac, no SOP",
        about: "MacBERT masking, MLM only",
        preset: "macbert-zh-tiny",
        objective: Some("mlm"),
        data: Pairs::Sop,
    },
    Variant {
        name: "macbert-zh-tiny-nsp",
        label: "Mac, NSP",
        about: "MacBERT masking, MLM + NSP",
        preset: "macbert-zh-tiny",
        objective: Some("mlm_nsp"),
        data: Pairs::Nsp,
    },
];

/// The rows of the masking table, then of the sentence-objective table.
const MASKING_ROWS: &[&str] = &[
    "bert-zh-tiny",
    "bert-zh-wwm",
    "bert-zh-wwm-ngram",
    "macbert-zh-tiny",
];
const OBJECTIVE_ROWS: &[(&str, &str)] = &[
    ("macbert-zh-tiny-mlm-only", "none (MLM only)"),
    ("macbert-zh-tiny-nsp", "NSP"),
    ("macbert-zh-tiny", "SOP"),
];

/// A fine-tuning task.
struct Task {
    name: &'static str,
    kind: &'static str,
    /// Its labels in id order (the sorted label set of the full training split).
    labels: &'static str,
    /// The test metric reported, by its name in the report's accuracies.
    metrics: &'static [(&'static str, &'static str)],
}

const TASKS: &[Task] = &[
    Task {
        name: "zh-sentiment",
        kind: "sequence",
        labels: "negative,positive",
        metrics: &[("cls", "sentiment acc"), ("macro_f1", "sentiment macro-F1")],
    },
    Task {
        name: "zh-cws",
        kind: "token",
        labels: "B,E,M,S",
        metrics: &[("span_f1", "CWS word F1")],
    },
];

/// The settings that must match when an experiment directory is continued.
fn settings(a: &AblationArgs) -> Value {
    json!({
        "experiment": "macbert-ablation",
        "pretrain_steps": a.pretrain_steps,
        "finetune_steps": a.finetune_steps,
        "finetune_lr": a.finetune_lr,
        "threshold": a.threshold,
        "task_examples": a.task_examples,
        "vocab_size": VOCAB_SIZE,
        "holdout_fraction": HOLDOUT,
    })
}

fn kind() -> OutputKind {
    OutputKind::new("experiment macbert-ablation", "--force")
}

/// Runs the experiment.
pub fn run(a: AblationArgs, threads: Option<usize>) -> Result<()> {
    if a.seeds == 0 || a.pretrain_steps == 0 || a.finetune_steps == 0 {
        bail!("--seeds, --pretrain-steps and --finetune-steps must be at least 1");
    }
    let started = Instant::now();
    let out = a.out.clone();
    let report_path = a.report.clone().unwrap_or_else(|| out.join("ablation.md"));

    // The experiment directory: continued when it is ours (same settings),
    // else checked like any output and started.
    let wanted = settings(&a);
    let _lock = super::claim_dir(&out, &kind(), FILES, &wanted, a.force)?;

    let seeds: Vec<u64> = (1..=a.seeds).collect();
    let total = 5 + VARIANTS.len() * 4 + VARIANTS.len() * TASKS.len() * seeds.len();
    let mut steps = Steps::new(&out.join("logs"), threads, total)?;
    let results = out.join("results");

    // 1. Data: the task splits and pretraining corpus, a tokenizer, SOP and
    //    NSP instances.
    steps.run(
        "fetch",
        &os_args(
            ["data", "fetch"]
                .into_iter()
                .chain(DATASETS.iter().copied()),
        ),
        false,
    )?;
    let tasks = out.join("tasks");
    step_once(
        &mut steps,
        &results,
        "tasks",
        &tasks.join("splits.json"),
        || {
            os_args([
                "data".into(),
                "tasks".into(),
                "--out".into(),
                tasks.clone().into_os_string(),
            ])
        },
    )?;
    let task_dir = match a.task_examples {
        Some(n) => subset_tasks(&tasks, &out.join("tasks-subset"), n)?,
        None => tasks.clone(),
    };
    let corpus = tasks.join("zh-pretrain.txt");
    let tokenizer = out.join("tokenizer");
    step_once(
        &mut steps,
        &results,
        "tokenizer",
        &tokenizer.join("tokenizer.json"),
        || {
            let mut v = os_args(["tokenizer", "train", "--corpus"]);
            v.push(corpus.clone().into_os_string());
            v.extend(os_args([
                "--vocab-size".to_string(),
                VOCAB_SIZE.to_string(),
                "--out".into(),
            ]));
            v.push(tokenizer.clone().into_os_string());
            v
        },
    )?;
    for pairs in [Pairs::Sop, Pairs::Nsp] {
        let dir = out.join(pairs.dir());
        let mode = if pairs == Pairs::Sop { "sop" } else { "nsp" };
        step_once(
            &mut steps,
            &results,
            pairs.dir(),
            &dir.join(cloze_text::shards::MANIFEST),
            || {
                let mut v = os_args(["data", "prepare", "--corpus"]);
                v.push(corpus.clone().into_os_string());
                v.push("--tokenizer".into());
                v.push(tokenizer.clone().into_os_string());
                v.push("--out".into());
                v.push(dir.clone().into_os_string());
                v.extend(os_args([
                    "--mode".to_string(),
                    mode.into(),
                    "--holdout-fraction".into(),
                    HOLDOUT.to_string(),
                ]));
                v
            },
        )?;
    }
    // The common masks of the held-out MLM metric: bert-zh-tiny's character
    // masking with [MASK], for every model, as plain MLM.
    let masks = out.join("eval-masks.toml");
    {
        let mut cfg = TrainConfig::load_or_preset("bert-zh-tiny")?;
        cfg.objective.kind = "mlm".into();
        let text = format!(
            "# The masks `cloze experiment macbert-ablation` scores every model on.\n{}",
            cfg.to_toml()?
        );
        cloze_models::hf::write_atomic(&masks, text.as_bytes())
            .with_context(|| format!("writing {}", masks.display()))?;
    }

    // 2. Pretraining, then the evaluations of each model.
    for v in VARIANTS {
        pretrain(&mut steps, &out, &results, v, a.pretrain_steps)?;
    }
    for v in VARIANTS {
        let model = out.join("pretrain").join(v.name).join("model");
        let data = out.join(Pairs::Sop.dir());
        let common = results.join("eval-common").join(format!("{}.json", v.name));
        capture_once(
            &mut steps,
            &format!("eval-common/{}", v.name),
            &common,
            || {
                let mut args = os_args(["eval", "--json", "--model"]);
                args.extend([
                    model.clone().into_os_string(),
                    "--data".into(),
                    data.clone().into_os_string(),
                ]);
                args.extend(["--config".into(), masks.clone().into_os_string()]);
                args
            },
        )?;
        let own = results.join("eval-own").join(format!("{}.json", v.name));
        let own_data = out.join(v.data.dir());
        capture_once(&mut steps, &format!("eval-own/{}", v.name), &own, || {
            let mut args = os_args(["eval", "--json", "--model"]);
            args.extend([
                model.clone().into_os_string(),
                "--data".into(),
                own_data.clone().into_os_string(),
            ]);
            args
        })?;
        let sighan = results.join("sighan15").join(format!("{}.json", v.name));
        capture_once(&mut steps, &format!("sighan15/{}", v.name), &sighan, || {
            let mut args = os_args(["correct", "--json", "--eval", "sighan15", "--model"]);
            args.push(model.clone().into_os_string());
            args.extend(os_args([
                "--threshold".to_string(),
                a.threshold.to_string(),
            ]));
            args
        })?;
    }

    // 3. Fine-tuning: seed by seed, so a run cut short still compares every
    //    model on the seeds it finished.
    for &seed in &seeds {
        for v in VARIANTS {
            for t in TASKS {
                finetune(&mut steps, &out, &task_dir, &results, v, t, seed, &a)?;
            }
        }
    }

    // 4. The report.
    let md = render(
        &a,
        &out,
        &results,
        &seeds,
        threads,
        // The fetch step always runs; anything more is work done now.
        (steps.ran() > 1).then(|| started.elapsed().as_secs_f64()),
    )?;
    if let Some(parent) = report_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    cloze_models::hf::write_atomic(&report_path, md.as_bytes())
        .with_context(|| format!("writing {}", report_path.display()))?;
    let png = report_path.with_extension("png");
    report::bar_chart(&png, &panels(&results, &seeds)?)?;
    println!("{md}");
    eprintln!("report: {} and {}", report_path.display(), png.display());
    Ok(())
}

fn pretrain(
    steps: &mut Steps,
    out: &Path,
    results: &Path,
    v: &Variant,
    max_steps: u64,
) -> Result<()> {
    let run = out.join("pretrain").join(v.name);
    let result = results.join("pretrain").join(format!("{}.json", v.name));
    let name = format!("pretrain/{}", v.name);
    if run.join("model").join("config.json").exists() {
        if !result.exists() {
            save(&result, &json!({"seconds": null}))?;
        }
        steps.skip(&name);
        return Ok(());
    }
    let args = if has_checkpoint(&run) {
        let mut a = os_args(["pretrain", "--resume"]);
        a.push(run.clone().into_os_string());
        a
    } else {
        let mut a = os_args(["pretrain", "--config", v.preset, "--data"]);
        a.push(out.join(v.data.dir()).into_os_string());
        a.push("--out".into());
        a.push(run.clone().into_os_string());
        a.extend(os_args([
            "--max-steps".to_string(),
            max_steps.to_string(),
            "--force".into(),
        ]));
        if let Some(kind) = v.objective {
            a.extend(os_args([
                "--set".to_string(),
                format!("objective.kind=\"{kind}\""),
            ]));
        }
        a
    };
    let (_, seconds) = steps.run(&name, &args, false)?;
    let previous = read_json(&result)
        .ok()
        .and_then(|r| r.get("seconds").and_then(Value::as_f64))
        .unwrap_or(0.0);
    save(&result, &json!({"seconds": previous + seconds}))
}

#[allow(clippy::too_many_arguments)]
fn finetune(
    steps: &mut Steps,
    out: &Path,
    tasks: &Path,
    results: &Path,
    v: &Variant,
    t: &Task,
    seed: u64,
    a: &AblationArgs,
) -> Result<()> {
    let run = out
        .join("finetune")
        .join(v.name)
        .join(format!("{}-seed{seed}", t.name));
    let result = results
        .join("finetune")
        .join(v.name)
        .join(format!("{}-seed{seed}.json", t.name));
    let name = format!("finetune/{}/{}-seed{seed}", v.name, t.name);
    if result.exists() {
        steps.skip(&name);
        return Ok(());
    }
    let data = tasks.join(t.name);
    let test = data.join("test.jsonl");
    let metrics = run.join("test_metrics.json");
    let mut seconds = 0.0;
    if !metrics.exists() {
        let args = if has_checkpoint(&run) {
            let mut args = os_args(["finetune", "--resume"]);
            args.push(run.clone().into_os_string());
            args.push("--test".into());
            args.push(test.clone().into_os_string());
            args
        } else {
            let mut args = os_args(["finetune", "--task", t.kind, "--model"]);
            args.push(
                out.join("pretrain")
                    .join(v.name)
                    .join("model")
                    .into_os_string(),
            );
            args.push("--train".into());
            args.push(data.join("train.jsonl").into_os_string());
            args.push("--test".into());
            args.push(test.clone().into_os_string());
            args.push("--out".into());
            args.push(run.clone().into_os_string());
            args.extend(os_args([
                "--seed".to_string(),
                seed.to_string(),
                "--max-steps".into(),
                a.finetune_steps.to_string(),
                "--lr".into(),
                a.finetune_lr.to_string(),
                "--labels".into(),
                t.labels.into(),
                "--force".into(),
            ]));
            args
        };
        seconds = steps.run(&name, &args, false)?.1;
    } else {
        steps.skip(&name);
    }
    let report = read_json(&metrics)?;
    save(&result, &json!({"seconds": seconds, "test": report}))
}

/// Writes `n` evenly spaced examples of every task's train and test split
/// under `subset` (once) and returns `subset`.
fn subset_tasks(tasks: &Path, subset: &Path, n: usize) -> Result<PathBuf> {
    if n == 0 {
        bail!("--task-examples must be at least 1");
    }
    for t in TASKS {
        for split in ["train.jsonl", "test.jsonl"] {
            let to = subset.join(t.name).join(split);
            if to.exists() {
                continue;
            }
            let from = tasks.join(t.name).join(split);
            let text = std::fs::read_to_string(&from)
                .with_context(|| format!("reading {}", from.display()))?;
            // Evenly spaced, so that a split sorted by label keeps every label.
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let step = (lines.len() / n).max(1);
            let head: String = lines
                .iter()
                .step_by(step)
                .take(n)
                .map(|l| format!("{l}\n"))
                .collect();
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            cloze_models::hf::write_atomic(&to, head.as_bytes())
                .with_context(|| format!("writing {}", to.display()))?;
        }
    }
    Ok(subset.to_path_buf())
}

/// A value at `pointer` in the stored result `path`, if both exist.
fn value_at(path: &Path, pointer: &str) -> Option<f64> {
    read_json(path).ok()?.pointer(pointer)?.as_f64()
}

/// The test metric `metric` of `variant` on `task` over `seeds` (those that exist).
fn finetune_values(
    results: &Path,
    variant: &str,
    task: &str,
    metric: &str,
    seeds: &[u64],
) -> Vec<f64> {
    seeds
        .iter()
        .filter_map(|s| {
            value_at(
                &results
                    .join("finetune")
                    .join(variant)
                    .join(format!("{task}-seed{s}.json")),
                &format!("/test/accuracies/{metric}"),
            )
        })
        .collect()
}

/// The columns every table has, for one model.
fn row_cells(results: &Path, variant: &str, seeds: &[u64]) -> Vec<String> {
    let json_of = |dir: &str| results.join(dir).join(format!("{variant}.json"));
    let mut cells = vec![
        report::percent(value_at(&json_of("eval-common"), "/output/accuracies/mlm")),
        report::percent(value_at(&json_of("eval-own"), "/output/accuracies/mlm")),
        report::percent(value_at(
            &json_of("sighan15"),
            "/output/metrics/detection/f1",
        )),
        report::percent(value_at(
            &json_of("sighan15"),
            "/output/metrics/correction/f1",
        )),
        report::percent(value_at(
            &json_of("sighan15"),
            "/output/metrics/false_positive_rate",
        )),
    ];
    for t in TASKS {
        for (metric, _) in t.metrics {
            let values = finetune_values(results, variant, t.name, metric, seeds);
            cells.push(Summary::of(&values).map_or_else(|| "n/a".into(), |s| s.percent()));
        }
    }
    cells
}

fn header<'a>(first: &'a [&'a str]) -> Vec<&'a str> {
    let mut h = first.to_vec();
    h.extend([
        "MLM acc, [MASK] masks",
        "MLM acc, own masks",
        "SIGHAN det F1",
        "SIGHAN corr F1",
        "SIGHAN FPR",
    ]);
    for t in TASKS {
        h.extend(t.metrics.iter().map(|(_, label)| *label));
    }
    h
}

fn variant(name: &str) -> Result<&'static Variant> {
    VARIANTS
        .iter()
        .find(|v| v.name == name)
        .with_context(|| format!("no variant {name}"))
}

/// The sum of the `seconds` of every stored result (the steps' wall time).
fn stored_seconds(dir: &Path) -> (f64, usize) {
    let mut total = (0.0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            let (s, n) = stored_seconds(&p);
            total.0 += s;
            total.1 += n;
        } else if let Some(s) = value_at(&p, "/seconds") {
            total.0 += s;
            total.1 += 1;
        }
    }
    total
}

/// Where the seeds leave the comparison of one fine-tuning metric: the best
/// mean, the runner-up, their gap and the seeds' spread.
fn verdict(
    results: &Path,
    rows: &[&str],
    task: &str,
    metric: &str,
    label: &str,
    seeds: &[u64],
) -> Option<String> {
    let mut means: Vec<(&str, Summary)> = rows
        .iter()
        .filter_map(|r| {
            Summary::of(&finetune_values(results, r, task, metric, seeds)).map(|s| (*r, s))
        })
        .collect();
    if means.len() < 2 {
        return None;
    }
    means.sort_by(|a, b| b.1.mean.total_cmp(&a.1.mean));
    let (best, b) = means[0];
    let (second, s) = means[1];
    let (worst, w) = means[means.len() - 1];
    let gap = (b.mean - s.mean) * 100.0;
    let spread = (b.sd.powi(2) + s.sd.powi(2)).sqrt() * 100.0;
    let reading = if b.n < 2 {
        "one seed: no spread to compare with".to_string()
    } else if gap > 2.0 * spread {
        format!("the gap is over twice the combined sd ({spread:.1})")
    } else {
        format!("within the seeds' spread (combined sd {spread:.1}): no winner at this scale")
    };
    Some(format!(
        "- **{label}**: best {best} {:.1}, then {second} {:.1} (gap {gap:.1} points; {reading}); lowest {worst} {:.1}.",
        b.mean * 100.0,
        s.mean * 100.0,
        w.mean * 100.0
    ))
}

fn render(
    a: &AblationArgs,
    out: &Path,
    results: &Path,
    seeds: &[u64],
    threads: Option<usize>,
    this_run: Option<f64>,
) -> Result<String> {
    let vocab = std::fs::read_to_string(out.join("tokenizer").join("vocab.txt"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let command: Vec<String> = std::env::args()
        .skip(1)
        .map(|s| run_dir::shell_word(Path::new(&s)))
        .collect();
    let (total, _) = stored_seconds(results);
    let (pre, _) = stored_seconds(&results.join("pretrain"));
    let (fine, _) = stored_seconds(&results.join("finetune"));
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let mut md = String::new();
    md.push_str("# MacBERT ablation on Chinese, at small scale\n\n");
    md.push_str(&format!(
        "Written by `cloze {}` (cloze {}) in `{}`.\n\n",
        command.join(" "),
        env!("CARGO_PKG_VERSION"),
        out.display()
    ));
    md.push_str(&format!(
        "Wall time of the steps: **{:.0} min** ({:.0} min pretraining, {:.0} min fine-tuning, \
         {:.0} min data and evaluation) on {cores} cores, {}; {}.\n\n",
        total / 60.0,
        pre / 60.0,
        fine / 60.0,
        (total - pre - fine) / 60.0,
        threads.map_or_else(
            || "all cores for libtorch".to_string(),
            |t| format!("--threads {t}")
        ),
        this_run.map_or_else(
            || "this invocation ran no step: the report is rewritten from the stored results"
                .into(),
            |t| format!("this invocation took {:.0} min", t / 60.0)
        )
    ));
    md.push_str(&format!(
        "Setup: six BERTs of the `bert-zh-tiny` shape (2 layers, hidden 128, 2 heads), each \
         pretrained once (seed 42) for {} steps of 32 sequences on `zh-pretrain.txt` (the \
         `cloze data tasks` corpus: no dev or test text of either task), a character \
         vocabulary of {vocab} tokens (`--vocab-size {VOCAB_SIZE}`). Held-out MLM accuracy is on {}% of the documents held out of \
         pretraining: with the same character `[MASK]` masks for every model, and with the \
         model's own masking scheme. SIGHAN 2015: `cloze correct --eval sighan15 --threshold {}` \
         (sentence level; FPR = error-free sentences changed). Fine-tuning: {} steps of 32 \
         examples at lr {} (10% warm-up, linear decay), max length 128, the last step's model \
         scored on the test split, seeds {}; mean ± sample sd over the seeds. The spread covers \
         fine-tuning only: each model was pretrained once.\n\n",
        a.pretrain_steps,
        HOLDOUT * 100.0,
        a.threshold,
        a.finetune_steps,
        a.finetune_lr,
        seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(n) = a.task_examples {
        md.push_str(&format!(
            "**Fine-tuned and tested on {n} examples of each split only \
             (`--task-examples {n}`): a check of the pipeline, not a result.**\n\n"
        ));
    }
    // Two text columns, then numbers.
    let numeric: Vec<bool> = (0..header(&["", ""]).len()).map(|i| i >= 2).collect();

    md.push_str("## Masking (all with MLM + SOP)\n\n");
    let rows: Vec<Vec<String>> = MASKING_ROWS
        .iter()
        .map(|r| -> Result<Vec<String>> {
            let v = variant(r)?;
            let mut cells = vec![format!("`{}`", v.name), v.about.to_string()];
            cells.extend(row_cells(results, r, seeds));
            Ok(cells)
        })
        .collect::<Result<_>>()?;
    md.push_str(&markdown_table(
        &header(&["model", "masking"]),
        &numeric,
        &rows,
    ));
    md.push('\n');
    for t in TASKS {
        for (metric, label) in t.metrics {
            if let Some(line) = verdict(results, MASKING_ROWS, t.name, metric, label, seeds) {
                md.push_str(&line);
                md.push('\n');
            }
        }
    }

    md.push_str("\n## Sentence objective (MacBERT masking)\n\n");
    let mut obj_header = header(&["model", "sentence task"]);
    obj_header.push("pair acc (held out)");
    let mut obj_numeric = numeric.clone();
    obj_numeric.push(true);
    let obj_names: Vec<&str> = OBJECTIVE_ROWS.iter().map(|(n, _)| *n).collect();
    let rows: Vec<Vec<String>> = OBJECTIVE_ROWS
        .iter()
        .map(|(name, what)| -> Result<Vec<String>> {
            let v = variant(name)?;
            let mut cells = vec![format!("`{}`", v.name), (*what).to_string()];
            cells.extend(row_cells(results, name, seeds));
            let own = results.join("eval-own").join(format!("{name}.json"));
            let pair = ["sop", "nsp"]
                .iter()
                .find_map(|k| value_at(&own, &format!("/output/accuracies/{k}")));
            cells.push(if v.objective == Some("mlm") {
                "no pair task".into()
            } else {
                report::percent(pair)
            });
            Ok(cells)
        })
        .collect::<Result<_>>()?;
    md.push_str(&markdown_table(&obj_header, &obj_numeric, &rows));
    md.push('\n');
    for t in TASKS {
        for (metric, label) in t.metrics {
            if let Some(line) = verdict(results, &obj_names, t.name, metric, label, seeds) {
                md.push_str(&line);
                md.push('\n');
            }
        }
    }
    md.push_str(&format!(
        "\nChart: `{}` (bars: means; error bars: ± one sd over the seeds; each panel's \
         axis spans its own values and does not start at 0).\n",
        a.report
            .clone()
            .unwrap_or_else(|| out.join("ablation.md"))
            .with_extension("png")
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    Ok(md)
}

/// The chart: one panel per fine-tuning metric, then held-out MLM accuracy
/// and SIGHAN correction F1, with a bar per model.
fn panels(results: &Path, seeds: &[u64]) -> Result<Vec<Panel>> {
    let mut panels = Vec::new();
    for t in TASKS {
        for (metric, label) in t.metrics {
            let bars = VARIANTS
                .iter()
                .filter_map(|v| {
                    Summary::of(&finetune_values(results, v.name, t.name, metric, seeds))
                        .map(|s| (v.label.to_string(), s))
                })
                .collect();
            panels.push(Panel {
                title: format!("{label} (test)"),
                bars,
            });
        }
    }
    for (dir, pointer, title) in [
        (
            "eval-common",
            "/output/accuracies/mlm",
            "held-out MLM acc ([MASK])",
        ),
        (
            "sighan15",
            "/output/metrics/correction/f1",
            "SIGHAN15 correction F1",
        ),
    ] {
        let bars = VARIANTS
            .iter()
            .filter_map(|v| {
                value_at(&results.join(dir).join(format!("{}.json", v.name)), pointer)
                    .and_then(|x| Summary::of(&[x]))
                    .map(|s| (v.label.to_string(), s))
            })
            .collect();
        panels.push(Panel {
            title: title.to_string(),
            bars,
        });
    }
    if panels.iter().all(|p| p.bars.is_empty()) {
        bail!("no results to chart in {}", results.display());
    }
    Ok(panels)
}

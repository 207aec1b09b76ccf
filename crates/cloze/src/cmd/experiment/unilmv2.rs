//! `cloze experiment unilmv2`: UniLM-v2's claim that one pseudo-masked LM
//! serves both understanding and generation (Bao et al. 2020, sections 1
//! and 4), at small scale.
//!
//! A BERT (masked LM only) and a UniLM-v2 (pseudo-masked LM: AE + PAR) of the
//! same shape (bert-tiny with the relative position bias; the only
//! difference is the objective and its masking) are pretrained on the same
//! Chinese corpus (Tang and Song poems with the modern sentences of
//! `zh-pretrain.txt`), the same steps, batch and learning rate, over several
//! seeds. Each model is then
//!
//! - scored on held-out masked tokens with the same BERT masks for all
//!   (`cloze eval`);
//! - fine-tuned as a sentiment classifier (`zh-sentiment`, test accuracy);
//! - fine-tuned with the s2s recipe on couplets (`chinese-poetry`: the next
//!   line of a poem from its previous line) and decoded on the test split
//!   (`cloze generate`), scored by BLEU, character F1 and exact match
//!   against three baselines (copying the source, the nearest training
//!   source's target, a position-aligned character table).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_eval::generation_baselines as baselines;
use cloze_eval::generation_metrics::{score_generation, BleuOptions};
use cloze_fs::OutputKind;
use serde_json::{json, Value};

use super::report::{self, cell, markdown_table, Panel, Summary};
use super::{capture_once, os_args, read_json, resume_or, save, step_once, Steps};

/// Arguments of `cloze experiment unilmv2`.
#[derive(Debug, Args)]
pub struct Unilmv2Args {
    /// The experiment directory. Running the command again with the same
    /// directory continues where it stopped; any other existing directory
    /// is refused.
    #[arg(long, default_value = "runs/unilmv2")]
    pub out: PathBuf,
    /// Seeds per arm (seeds 1..=N); a seed sets pretraining (data order,
    /// masks, initialisation) and both fine-tunings of that model.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Pretraining steps of every model (32 packed sequences of at most 128
    /// tokens each).
    #[arg(long, default_value_t = 2000)]
    pub pretrain_steps: u64,
    /// Peak pretraining learning rate (both arms).
    #[arg(long, default_value_t = 1e-3)]
    pub pretrain_lr: f64,
    /// Sentiment fine-tuning steps (32 reviews each).
    #[arg(long, default_value_t = 300)]
    pub cls_steps: u64,
    /// Peak sentiment fine-tuning learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub cls_lr: f64,
    /// Couplet fine-tuning steps (32 pairs each).
    #[arg(long, default_value_t = 8000)]
    pub s2s_steps: u64,
    /// Peak couplet fine-tuning learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub s2s_lr: f64,
    /// Beam size of the couplet decoding (1 = greedy).
    #[arg(long, default_value_t = 4)]
    pub beam: usize,
    /// `cloze generate --no-repeat-ngram` of the couplet decoding (1: no
    /// character twice in a line; 0: off). Beam 4 with 1 scored best of
    /// greedy/beam 4 with and without it on the validation split in a pilot.
    #[arg(long, default_value_t = 1)]
    pub no_repeat_ngram: usize,
    /// Pretraining precision, `fp32` or `bf16`; by default bf16 where the
    /// CPU multiplies bf16 in hardware, else fp32. Fine-tuning runs in fp32.
    #[arg(long)]
    pub precision: Option<cloze_models::Precision>,
    /// Where the Markdown report goes (default OUT/report.md); the chart is
    /// written next to it with the extension .png.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Start over: removes what an earlier run of this experiment wrote in
    /// OUT, and nothing else.
    #[arg(long)]
    pub force: bool,
}

/// What the experiment writes in OUT (removed by `--force`).
const FILES: &[&str] = &[
    "experiment.json",
    "tasks",
    "corpus",
    "tokenizer",
    "data",
    "pretrain",
    "finetune",
    "s2s",
    "generate",
    "results",
    "logs",
    "report.md",
    "report.png",
    cloze_fs::MARKER,
];

/// Datasets read: the couplets and poems, and the sources of `zh-sentiment`
/// and `zh-pretrain.txt`.
const DATASETS: &[&str] = &["chinese-poetry", "pd1998", "zh-reviews"];
/// Vocabulary size of the character-level WordPiece tokenizer (every poem
/// and modern character that occurs in the corpus fits).
const VOCAB_SIZE: u32 = 12000;
/// Documents held out of pretraining for the held-out MLM metric.
const HOLDOUT: f64 = 0.01;
/// Most characters of a couplet line (the corpus has 5- and 7-character
/// lines); the model generates at most one more token, the ending [SEP].
const MAX_LINE: usize = 7;

/// One pretraining arm.
struct Arm {
    name: &'static str,
    label: &'static str,
    /// Label under the chart's bars.
    short: &'static str,
    preset: &'static str,
    /// `--set` overrides on top of the preset.
    sets: &'static [&'static str],
}

/// The two arms: bert-tiny given unilmv2-tiny's relative position bias, so
/// that the models differ only in objective and masking.
const ARMS: &[Arm] = &[
    Arm {
        name: "bert",
        label: "BERT (MLM)",
        short: "BERT",
        preset: "bert-tiny",
        sets: &["model.rel_pos_bins=32", "model.max_rel_pos=128"],
    },
    Arm {
        name: "unilmv2",
        label: "UniLM-v2 (PMLM)",
        short: "UniLM-v2",
        preset: "unilmv2-tiny",
        sets: &[],
    },
];

fn kind() -> OutputKind {
    OutputKind::new("experiment unilmv2", "--force")
}

fn precision_of(a: &Unilmv2Args) -> cloze_models::Precision {
    super::precision_or_default(a.precision)
}

/// The settings that must match when an experiment directory is continued.
fn settings(a: &Unilmv2Args) -> Value {
    json!({
        "experiment": "unilmv2",
        "pretrain_steps": a.pretrain_steps,
        "pretrain_lr": a.pretrain_lr,
        "cls_steps": a.cls_steps,
        "cls_lr": a.cls_lr,
        "s2s_steps": a.s2s_steps,
        "s2s_lr": a.s2s_lr,
        "beam": a.beam,
        "no_repeat_ngram": a.no_repeat_ngram,
        "precision": precision_of(a).to_string(),
        "vocab_size": VOCAB_SIZE,
        "holdout_fraction": HOLDOUT,
    })
}

/// Runs the experiment.
pub fn run(a: Unilmv2Args, threads: Option<usize>) -> Result<()> {
    if a.seeds == 0 || a.pretrain_steps == 0 || a.cls_steps == 0 || a.s2s_steps == 0 || a.beam == 0
    {
        bail!("--seeds, --pretrain-steps, --cls-steps, --s2s-steps and --beam must be at least 1");
    }
    let started = Instant::now();
    let out = a.out.clone();
    let report_path = a.report.clone().unwrap_or_else(|| out.join("report.md"));
    let wanted = settings(&a);
    let _lock = super::claim_dir(&out, &kind(), FILES, &wanted, a.force)?;
    let seeds: Vec<u64> = (1..=a.seeds).collect();
    let total = 4 + ARMS.len() * seeds.len() * 5;
    let mut steps = Steps::new(&out.join("logs"), threads, total)?;
    let results = out.join("results");

    // 1. Data: the datasets; the sentiment splits and modern corpus; the
    //    pretraining corpus (poems + modern text), a tokenizer, packed shards.
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
            let mut v = os_args(["data", "tasks", "--out"]);
            v.push(tasks.clone().into_os_string());
            v
        },
    )?;
    let root = cloze_fetch::datasets::cache_root()?;
    let poetry = cloze_fetch::datasets::dataset_dir(&root, "chinese-poetry");
    let corpus = out.join("corpus");
    write_corpus(
        &corpus,
        &[
            (poetry.join("poems.txt"), "poems.txt"),
            (
                tasks.join(cloze_fetch::tasks::PRETRAIN_FILE),
                "zh-pretrain.txt",
            ),
        ],
    )?;
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
    let data = out.join("data");
    step_once(
        &mut steps,
        &results,
        "prepare",
        &data.join(cloze_text::shards::MANIFEST),
        || {
            let mut v = os_args(["data", "prepare", "--corpus"]);
            v.push(corpus.clone().into_os_string());
            v.push("--tokenizer".into());
            v.push(tokenizer.clone().into_os_string());
            v.push("--out".into());
            v.push(data.clone().into_os_string());
            v.extend(os_args([
                "--mode".to_string(),
                "packed".into(),
                "--max-seq-length".into(),
                "128".into(),
                "--holdout-fraction".into(),
                HOLDOUT.to_string(),
            ]));
            v
        },
    )?;
    let baseline_path = results.join("baselines.json");
    if !baseline_path.exists() {
        save(&baseline_path, &couplet_baselines(&poetry)?)?;
    }

    // 2. Seed by seed, both arms: pretraining, held-out MLM, sentiment,
    //    couplets. A run cut short compares the arms on the seeds it finished.
    for &seed in &seeds {
        for arm in ARMS {
            let name = format!("{}-seed{seed}", arm.name);
            pretrain(&mut steps, &out, &results, &a, arm, seed)?;
            let model = out.join("pretrain").join(&name).join("model");
            capture_once(
                &mut steps,
                &format!("eval/{name}"),
                &results.join("eval").join(format!("{name}.json")),
                || {
                    // The same BERT masks for both arms.
                    let mut v = os_args(["eval", "--json", "--config", "bert-tiny", "--model"]);
                    v.push(model.clone().into_os_string());
                    v.push("--data".into());
                    v.push(data.clone().into_os_string());
                    v
                },
            )?;
            sentiment(&mut steps, &out, &tasks, &results, &a, &name, seed)?;
            couplets(&mut steps, &out, &poetry, &results, &a, &name, seed)?;
        }
    }

    // 3. The report.
    let (text, panels) = report(&out, &results, &a, &seeds)?;
    cloze_models::hf::write_atomic(&report_path, text.as_bytes())
        .with_context(|| format!("writing {}", report_path.display()))?;
    report::bar_chart(&report_path.with_extension("png"), &panels)?;
    println!("{text}");
    println!(
        "report: {} ({} steps run in {:.1} min)",
        report_path.display(),
        steps.ran(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// Copies the corpus files into `dir` (once): `cloze tokenizer train` and
/// `cloze data prepare` read a directory's files as one corpus.
fn write_corpus(dir: &Path, files: &[(PathBuf, &str)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (from, name) in files {
        let to = dir.join(name);
        if to.exists() {
            continue;
        }
        let text = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
        cloze_models::hf::write_atomic(&to, &text)
            .with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}

fn pretrain(
    steps: &mut Steps,
    out: &Path,
    results: &Path,
    a: &Unilmv2Args,
    arm: &Arm,
    seed: u64,
) -> Result<()> {
    let name = format!("{}-seed{seed}", arm.name);
    let run = out.join("pretrain").join(&name);
    let result = results.join("pretrain").join(format!("{name}.json"));
    let step = format!("pretrain/{name}");
    if run.join("model").join("config.json").exists() {
        steps.skip(&step);
        return Ok(());
    }
    let args = resume_or("pretrain", &run, || {
        let mut v = os_args(["pretrain", "--config", arm.preset, "--data"]);
        v.push(out.join("data").into_os_string());
        v.push("--out".into());
        v.push(run.clone().into_os_string());
        v.extend(os_args([
            "--force".to_string(),
            "--max-steps".into(),
            a.pretrain_steps.to_string(),
            "--seed".into(),
            seed.to_string(),
            "--lr".into(),
            format!("{:e}", a.pretrain_lr),
            "--precision".into(),
            precision_of(a).to_string(),
            "--set".into(),
            format!("schedule.warmup_steps={}", (a.pretrain_steps / 10).max(1)),
            "--set".into(),
            format!("eval.every_steps={}", a.pretrain_steps),
            "--set".into(),
            format!("checkpoint.every_steps={}", (a.pretrain_steps / 4).max(1)),
        ]));
        for s in arm.sets {
            v.push("--set".into());
            v.push((*s).into());
        }
        v
    });
    let (_, seconds) = steps.run(&step, &args, false)?;
    let previous = read_json(&result)
        .ok()
        .and_then(|r| r.get("seconds").and_then(Value::as_f64))
        .unwrap_or(0.0);
    save(&result, &json!({"seconds": previous + seconds}))
}

fn sentiment(
    steps: &mut Steps,
    out: &Path,
    tasks: &Path,
    results: &Path,
    a: &Unilmv2Args,
    name: &str,
    seed: u64,
) -> Result<()> {
    let run = out.join("finetune").join(name);
    let result = results.join("sentiment").join(format!("{name}.json"));
    let step = format!("sentiment/{name}");
    if result.exists() {
        steps.skip(&step);
        return Ok(());
    }
    let data = tasks.join("zh-sentiment");
    let test = data.join("test.jsonl");
    let metrics = run.join("test_metrics.json");
    let mut seconds = 0.0;
    if metrics.exists() {
        steps.skip(&step);
    } else {
        let mut args = resume_or("finetune", &run, || {
            let mut v = os_args(["finetune", "--task", "sequence", "--model"]);
            v.push(
                out.join("pretrain")
                    .join(name)
                    .join("model")
                    .into_os_string(),
            );
            v.push("--train".into());
            v.push(data.join("train.jsonl").into_os_string());
            v.push("--out".into());
            v.push(run.clone().into_os_string());
            v.extend(os_args([
                "--seed".to_string(),
                seed.to_string(),
                "--max-steps".into(),
                a.cls_steps.to_string(),
                "--lr".into(),
                a.cls_lr.to_string(),
                "--labels".into(),
                "negative,positive".into(),
                "--force".into(),
            ]));
            v
        });
        args.push("--test".into());
        args.push(test.into_os_string());
        seconds = steps.run(&step, &args, false)?.1;
    }
    let test = read_json(&metrics)?;
    save(&result, &json!({"seconds": seconds, "test": test}))
}

fn couplets(
    steps: &mut Steps,
    out: &Path,
    poetry: &Path,
    results: &Path,
    a: &Unilmv2Args,
    name: &str,
    seed: u64,
) -> Result<()> {
    let run = out.join("s2s").join(name);
    let step = format!("s2s/{name}");
    let mut seconds = 0.0;
    if run.join("model").join("config.json").exists() {
        steps.skip(&step);
    } else {
        let args = resume_or("finetune", &run, || {
            let mut v = os_args(["finetune", "--task", "seq2seq", "--model"]);
            v.push(
                out.join("pretrain")
                    .join(name)
                    .join("model")
                    .into_os_string(),
            );
            v.push("--train".into());
            v.push(poetry.join("train.jsonl").into_os_string());
            v.push("--dev".into());
            v.push(poetry.join("valid.jsonl").into_os_string());
            v.push("--out".into());
            v.push(run.clone().into_os_string());
            v.extend(os_args([
                "--seed".to_string(),
                seed.to_string(),
                "--max-steps".into(),
                a.s2s_steps.to_string(),
                "--batch-size".into(),
                "32".into(),
                // The source part: [CLS] + at most 7 characters + [SEP].
                "--max-length".into(),
                "16".into(),
                "--lr".into(),
                a.s2s_lr.to_string(),
                "--force".into(),
            ]));
            v
        });
        seconds = steps.run(&step, &args, false)?.1;
    }

    let result = results.join("generate").join(format!("{name}.json"));
    let gen_step = format!("generate/{name}");
    if result.exists() {
        steps.skip(&gen_step);
        return Ok(());
    }
    let predictions = out.join("generate").join(format!("{name}.jsonl"));
    std::fs::create_dir_all(out.join("generate"))?;
    if predictions.exists() {
        // A decoding cut short leaves no file (it is published whole), so
        // one that exists is complete.
        steps.skip(&gen_step);
    } else {
        let mut v = os_args(["generate", "--model"]);
        v.push(run.join("model").into_os_string());
        v.push("--input".into());
        v.push(poetry.join("test.jsonl").into_os_string());
        v.push("--output".into());
        v.push(predictions.clone().into_os_string());
        v.extend(os_args([
            "--max-len".to_string(),
            (MAX_LINE + 1).to_string(),
            "--beam".into(),
            a.beam.to_string(),
            "--no-repeat-ngram".into(),
            a.no_repeat_ngram.to_string(),
        ]));
        steps.run(&gen_step, &v, false)?;
    }
    let test = baselines::read_pairs(&poetry.join("test.jsonl"))?;
    let predicted = read_predictions(&predictions)?;
    if predicted.len() != test.len() {
        bail!(
            "{} holds {} predictions for {} test pairs",
            predictions.display(),
            predicted.len(),
            test.len()
        );
    }
    let targets: Vec<&str> = test.iter().map(|p| p.target.as_str()).collect();
    let s = score_generation(&predicted, &targets, &BleuOptions::default())?;
    save(
        &result,
        &json!({
            "seconds": seconds,
            "bleu": s.bleu.score,
            "char_f1": s.char_f1,
            "exact_match": s.exact_match,
            "count": s.count,
        }),
    )
}

/// The `prediction` of every line of a `cloze generate` output.
fn read_predictions(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .with_context(|| format!("parsing a line of {}", path.display()))?;
            v.get("prediction")
                .and_then(Value::as_str)
                .map(|s| s.chars().filter(|c| !c.is_whitespace()).collect())
                .with_context(|| format!("a line of {} has no prediction", path.display()))
        })
        .collect()
}

/// The three simple systems on the couplet test split.
fn couplet_baselines(poetry: &Path) -> Result<Value> {
    let train = baselines::read_pairs(&poetry.join("train.jsonl"))?;
    let test = baselines::read_pairs(&poetry.join("test.jsonl"))?;
    let sources: Vec<&str> = test.iter().map(|p| p.source.as_str()).collect();
    let targets: Vec<&str> = test.iter().map(|p| p.target.as_str()).collect();
    let mut out = serde_json::Map::new();
    for (key, predicted) in [
        ("copy", baselines::copy_source_baseline(&sources)),
        (
            "nearest",
            baselines::nearest_neighbour_baseline(&train, &sources),
        ),
        (
            "aligned",
            baselines::aligned_char_baseline(&train, &sources),
        ),
    ] {
        let s = score_generation(&predicted, &targets, &BleuOptions::default())?;
        out.insert(
            key.into(),
            json!({"bleu": s.bleu.score, "char_f1": s.char_f1, "exact_match": s.exact_match}),
        );
    }
    Ok(Value::Object(out))
}

/// `pointer` in the stored result `path`, if both exist.
fn value_at(path: &Path, pointer: &str) -> Option<f64> {
    read_json(path).ok()?.pointer(pointer)?.as_f64()
}

/// One metric of every finished seed of an arm.
fn per_seed(results: &Path, dir: &str, arm: &str, pointer: &str, seeds: &[u64]) -> Vec<f64> {
    seeds
        .iter()
        .filter_map(|s| {
            value_at(
                &results.join(dir).join(format!("{arm}-seed{s}.json")),
                pointer,
            )
        })
        .collect()
}

/// How two arms' means compare, in words.
fn verdict(what: &str, a: (&str, &[f64]), b: (&str, &[f64]), scale: f64, unit: &str) -> String {
    let (Some(x), Some(y)) = (Summary::of(a.1), Summary::of(b.1)) else {
        return format!("- **{what}**: not measured yet.");
    };
    let (hi, lo) = if x.mean >= y.mean {
        ((a.0, x), (b.0, y))
    } else {
        ((b.0, y), (a.0, x))
    };
    let gap = (hi.1.mean - lo.1.mean) * scale;
    let spread = (hi.1.sd.powi(2) + lo.1.sd.powi(2)).sqrt() * scale;
    let judged = if hi.1.n < 2 || lo.1.n < 2 {
        "one seed: no spread to compare with".to_string()
    } else if gap > 2.0 * spread {
        format!("over twice the combined sd ({spread:.2}{unit})")
    } else {
        format!("within twice the combined sd ({spread:.2}{unit}): not a difference these seeds can show")
    };
    format!(
        "- **{what}**: {} {:.2}{unit} vs {} {:.2}{unit}; gap {gap:.2}{unit}, {judged}.",
        hi.0,
        hi.1.mean * scale,
        lo.0,
        lo.1.mean * scale,
    )
}

fn report(
    out: &Path,
    results: &Path,
    a: &Unilmv2Args,
    seeds: &[u64],
) -> Result<(String, Vec<Panel>)> {
    let base = read_json(&results.join("baselines.json"))?;
    let mut rows = Vec::new();
    for (key, label) in [
        ("copy", "baseline: copy the source"),
        ("nearest", "baseline: nearest training source's target"),
        ("aligned", "baseline: position-aligned character table"),
    ] {
        let at = |m: &str| base.pointer(&format!("/{key}/{m}")).and_then(Value::as_f64);
        rows.push(vec![
            label.to_string(),
            "-".into(),
            "-".into(),
            at("bleu").map_or("n/a".into(), |v| format!("{v:.2}")),
            at("char_f1").map_or("n/a".into(), |v| format!("{:.2}", v * 100.0)),
            at("exact_match").map_or("n/a".into(), |v| format!("{:.2}", v * 100.0)),
            "-".into(),
        ]);
    }
    let mut panels = vec![
        Panel {
            title: "held-out acc. at [MASK] (%)".into(),
            bars: Vec::new(),
        },
        Panel {
            title: "zh-sentiment test acc. (%)".into(),
            bars: Vec::new(),
        },
        Panel {
            title: "couplets: char F1 (%)".into(),
            bars: Vec::new(),
        },
    ];
    let mut by_arm = Vec::new();
    for arm in ARMS {
        let mlm = per_seed(
            results,
            "eval",
            arm.name,
            "/output/accuracies/mlm@mask",
            seeds,
        );
        let cls = per_seed(
            results,
            "sentiment",
            arm.name,
            "/test/accuracies/cls",
            seeds,
        );
        let bleu = per_seed(results, "generate", arm.name, "/bleu", seeds);
        let f1 = per_seed(results, "generate", arm.name, "/char_f1", seeds);
        let em = per_seed(results, "generate", arm.name, "/exact_match", seeds);
        let secs = per_seed(results, "pretrain", arm.name, "/seconds", seeds);
        rows.push(vec![
            format!("{} (n = {})", arm.label, f1.len()),
            cell(&mlm, 100.0, 1),
            cell(&cls, 100.0, 1),
            cell(&bleu, 1.0, 2),
            cell(&f1, 100.0, 2),
            cell(&em, 100.0, 2),
            cell(&secs, 1.0 / 60.0, 1),
        ]);
        for (panel, values) in panels.iter_mut().zip([&mlm, &cls, &f1]) {
            if let Some(s) = Summary::of(values) {
                panel.bars.push((arm.short.into(), s));
            }
        }
        by_arm.push((arm.label, mlm, cls, f1));
    }
    if let Some(v) = base.pointer("/aligned/char_f1").and_then(Value::as_f64) {
        panels[2].bars.push((
            "aligned chars".into(),
            Summary {
                mean: v,
                sd: 0.0,
                n: 1,
            },
        ));
    }
    let table = markdown_table(
        &[
            "system",
            "held-out acc. at [MASK] (%)",
            "zh-sentiment test acc. (%)",
            "couplet BLEU",
            "couplet char F1 (%)",
            "couplet exact match (%)",
            "pretrain min",
        ],
        &[false, true, true, true, true, true, true],
        &rows,
    );
    let (b, u) = (&by_arm[0], &by_arm[1]);
    let verdicts = [
        verdict("held-out MLM", (b.0, &b.1), (u.0, &u.1), 100.0, " points"),
        verdict("sentiment", (b.0, &b.2), (u.0, &u.2), 100.0, " points"),
        verdict(
            "couplet char F1",
            (b.0, &b.3),
            (u.0, &u.3),
            100.0,
            " points",
        ),
    ]
    .join("\n");
    let aligned = base
        .pointer("/aligned/char_f1")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    let beats: Vec<String> = by_arm
        .iter()
        .map(|(label, _, _, f1)| {
            let above = f1.iter().filter(|v| **v > aligned).count();
            format!("{label}: {above} of {} seeds", f1.len())
        })
        .collect();
    let mut decoding = if a.beam > 1 {
        format!("beam search of width {}", a.beam)
    } else {
        "greedy decoding".into()
    };
    if a.no_repeat_ngram > 0 {
        decoding += &format!(", no {}-gram twice in a line", a.no_repeat_ngram);
    }
    let text = format!(
        "# UniLM-v2 vs BERT: one model for understanding and generation\n\n\
         Written by `cloze experiment unilmv2 --out {out} --seeds {n} --pretrain-steps {ps} \
         --cls-steps {cs} --s2s-steps {ss} --beam {beam} --no-repeat-ngram {nr}`.\n\n\
         Both arms are bert-tiny (2 layers, hidden 128) with UniLM-v2's relative position \
         bias, pretrained from scratch for {ps} steps of 32 packed sequences (<= 128 tokens) at \
         peak lr {plr:e} ({prec}) on the same corpus: the `chinese-poetry` poems (train split only) and \
         `zh-pretrain.txt` (People's Daily 1998 and the training reviews), a {vocab}-token \
         character vocabulary. BERT: 15% of tokens masked (80/10/10), loss at the masks. \
         UniLM-v2: blockwise masking and the pseudo-masked LM, L = L_AE + L_PAR. Seeds \
         {seeds:?} (mean ± sample sd); a seed sets the pretraining and both fine-tunings of \
         that model.\n\n\
         - Held-out: 1% of the corpus documents, scored by `cloze eval` on the same BERT masks \
         for both arms.\n\
         - zh-sentiment: `cloze finetune --task sequence`, {cs} steps of 32 at lr {clr:e}, \
         accuracy on the test split.\n\
         - Couplets: `cloze finetune --task seq2seq` on the 231,628 training pairs \
         (line -> next line), {ss} steps of 32 at lr {slr:e}; the 1,999 test pairs decoded \
         with {decoding}, at most {maxlen} tokens. BLEU is sacrebleu's `zh` corpus BLEU \
         without smoothing; char F1 the mean per-line F1 of the characters.\n\n\
         {table}\n\
         {verdicts}\n\
         - **Above the aligned-character baseline** (char F1): {beats}.\n",
        out = out.display(),
        n = seeds.len(),
        ps = a.pretrain_steps,
        cs = a.cls_steps,
        ss = a.s2s_steps,
        beam = a.beam,
        nr = a.no_repeat_ngram,
        plr = a.pretrain_lr,
        clr = a.cls_lr,
        slr = a.s2s_lr,
        vocab = VOCAB_SIZE,
        prec = precision_of(a),
        maxlen = MAX_LINE + 1,
        beats = beats.join("; "),
    );
    Ok((text, panels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_name_the_better_arm_and_judge_the_spread() {
        let v = verdict(
            "x",
            ("a", &[0.50, 0.52]),
            ("b", &[0.60, 0.61]),
            100.0,
            " pt",
        );
        assert!(v.starts_with("- **x**: b 60.50 pt vs a 51.00 pt"), "{v}");
        assert!(v.contains("over twice"), "{v}");
        let v = verdict(
            "x",
            ("a", &[0.50, 0.60]),
            ("b", &[0.55, 0.56]),
            100.0,
            " pt",
        );
        assert!(v.contains("within twice"), "{v}");
        let v = verdict("x", ("a", &[0.5]), ("b", &[]), 100.0, " pt");
        assert!(v.contains("not measured"), "{v}");
    }

    #[test]
    fn predictions_are_read_without_spaces() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("cloze-u2-pred-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let p = dir.join("p.jsonl");
        std::fs::write(
            &p,
            "{\"prediction\":\"山 水\",\"source\":\"x\"}\n\n{\"prediction\":\"\",\"source\":\"y\"}\n",
        )?;
        assert_eq!(
            read_predictions(&p)?,
            vec!["山水".to_string(), String::new()]
        );
        std::fs::write(&p, "{\"source\":\"x\"}\n")?;
        assert!(read_predictions(&p).is_err());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}

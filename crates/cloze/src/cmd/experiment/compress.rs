//! `cloze experiment compress`: what one-shot compression costs trained
//! encoders, measured the same way for every model and method.
//!
//! For each model (a trained MLM such as the demo's, or an encoder such as
//! MiniLM marked `--encode-only`) every entry of [`VARIANTS`] is made by an
//! ordinary `cloze prune` or `cloze quantize` step (or is the dense
//! checkpoint run at another precision), then scored:
//!
//! - held-out masked-LM loss and accuracy (`cloze eval --json`, the same
//!   fixed masks for every variant of a model), unless the model is
//!   encode-only;
//! - the cosine of each sentence's mean-pooled embedding (`cloze encode
//!   --no-token-states`, on the CPU) to the dense model's, lowest and mean;
//! - the size of the variant's checkpoint directory, and the wall time of
//!   the step that made it.
//!
//! Every step's result is stored under `OUT/results/` and skipped when it is
//! there, so running the same command again continues where it stopped. The
//! tables go to `OUT/compress.md`, the numbers to `OUT/results.json`.
//!
//! Sizes are what is on disk: pruned checkpoints store their zeros, and the
//! int8 variants are the dense files quantised when loaded. Nothing here
//! measures speed.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_fs::OutputKind;
use serde_json::{json, Value};
use tch::{Kind, Tensor};

use super::report::markdown_table;
use super::{capture_once, os_args, read_json, save, write_json, Steps};

/// Arguments of `cloze experiment compress`.
#[derive(Debug, Args)]
pub struct CompressArgs {
    /// A model to compress, as NAME=DIR (repeatable): NAME labels its table
    /// and files (letters, digits, `.`, `_`, `-`); DIR is a HuggingFace BERT
    /// checkpoint directory (a pretraining run's `model/`) or the name of a
    /// cached checkpoint (`minilm`).
    #[arg(long = "model", value_name = "NAME=DIR", required = true)]
    pub models: Vec<String>,
    /// Prepared data (`cloze data prepare` output, tokenized like the model):
    /// its held-out split is scored, its training split calibrates SparseGPT,
    /// GPTQ and SmoothQuant. A bare DIR serves every model without data of its
    /// own; NAME=DIR (repeatable) gives model NAME its own (MiniLM needs data
    /// made with its tokenizer).
    #[arg(long = "data", value_name = "[NAME=]DIR", required = true)]
    pub data: Vec<String>,
    /// A model (by NAME) that is scored by its sentence embeddings and size
    /// only, not by masked-LM loss: an encoder without trained MLM head
    /// weights, such as all-MiniLM-L6-v2 (repeatable).
    #[arg(long = "encode-only", value_name = "NAME")]
    pub encode_only: Vec<String>,
    /// A fine-tuned sequence classifier (by NAME: a `cloze finetune --task
    /// sequence` RUN/model) scored for every variant by its accuracy on the
    /// labelled FILE (JSON lines `{"text", "text_pair"?, "label"}`) through
    /// `cloze predict`; it has no MLM head, so it is also encode-only
    /// (repeatable).
    #[arg(long = "classify", value_name = "NAME=FILE")]
    pub classify: Vec<String>,
    /// Sentences for the embedding cosine, one per line, for every model.
    /// Default: --sentence-count sequences of each model's held-out split,
    /// evenly spaced, decoded with the data's tokenizer.
    #[arg(long)]
    pub sentences: Option<PathBuf>,
    /// Held-out sequences decoded as sentences when --sentences is not given.
    #[arg(long, default_value_t = 256)]
    pub sentence_count: usize,
    /// Calibration sequences of SparseGPT, GPTQ and SmoothQuant.
    #[arg(long, default_value_t = 128)]
    pub samples: usize,
    /// Input columns sharing a scale and zero point in GPTQ and RTN (must
    /// divide the hidden and intermediate sizes).
    #[arg(long, default_value_t = 128)]
    pub group_size: i64,
    /// Seed of every calibration draw. The held-out masks are the
    /// evaluation masks of the dense model's run (its `config.toml`, else
    /// the bert-tiny preset), the same for every variant.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The experiment directory. Running the command again with the same
    /// directory and flags continues where it stopped.
    #[arg(long, default_value = "runs/compress")]
    pub out: PathBuf,
    /// Start over: removes what an earlier run of this experiment wrote in
    /// OUT, and nothing else.
    #[arg(long)]
    pub force: bool,
}

/// One row of a model's table: how its checkpoint is made and how it runs.
struct Variant {
    /// File-system name (results, logs, checkpoint directory).
    id: &'static str,
    /// Row label.
    label: &'static str,
    /// The `cloze` subcommand and flags that write its checkpoint from the
    /// dense one (`--model`, `--out`, `--seed` and, where it applies,
    /// calibration and group size are added); `None`: the dense checkpoint.
    make: Option<&'static [&'static str]>,
    /// Whether `make` calibrates on data (`--calibration`, `--samples`).
    calibrated: bool,
    /// Whether `make` takes `--group-size`.
    grouped: bool,
    /// `--precision` of its `eval` and `encode`.
    precision: &'static str,
}

/// Every variant, in table order; the first is the dense reference.
const VARIANTS: &[Variant] = &[
    Variant {
        id: "dense",
        label: "dense (fp32)",
        make: None,
        calibrated: false,
        grouped: false,
        precision: "fp32",
    },
    Variant {
        id: "magnitude-50",
        label: "magnitude 50%",
        make: Some(&["prune", "--method", "magnitude", "--sparsity", "0.5"]),
        calibrated: false,
        grouped: false,
        precision: "fp32",
    },
    Variant {
        id: "sparsegpt-50",
        label: "SparseGPT 50%",
        make: Some(&["prune", "--method", "sparsegpt", "--sparsity", "0.5"]),
        calibrated: true,
        grouped: false,
        precision: "fp32",
    },
    Variant {
        id: "magnitude-2-4",
        label: "magnitude 2:4",
        make: Some(&["prune", "--method", "magnitude", "--pattern", "2:4"]),
        calibrated: false,
        grouped: false,
        precision: "fp32",
    },
    Variant {
        id: "sparsegpt-2-4",
        label: "SparseGPT 2:4",
        make: Some(&["prune", "--method", "sparsegpt", "--pattern", "2:4"]),
        calibrated: true,
        grouped: false,
        precision: "fp32",
    },
    Variant {
        id: "int8",
        label: "int8 (dynamic, per-row weights)",
        make: None,
        calibrated: false,
        grouped: false,
        precision: "int8",
    },
    Variant {
        id: "int8-smoothquant",
        label: "int8 + SmoothQuant (alpha 0.8)",
        make: Some(&["quantize", "--method", "int8", "--smooth-alpha", "0.8"]),
        calibrated: true,
        grouped: false,
        precision: "int8",
    },
    Variant {
        id: "gptq-4",
        label: "GPTQ 4-bit",
        make: Some(&["quantize", "--method", "gptq", "--bits", "4"]),
        calibrated: true,
        grouped: true,
        precision: "fp32",
    },
    Variant {
        id: "gptq-3",
        label: "GPTQ 3-bit",
        make: Some(&["quantize", "--method", "gptq", "--bits", "3"]),
        calibrated: true,
        grouped: true,
        precision: "fp32",
    },
    Variant {
        id: "rtn-4",
        label: "RTN 4-bit",
        make: Some(&["quantize", "--method", "rtn", "--bits", "4"]),
        calibrated: false,
        grouped: true,
        precision: "fp32",
    },
    Variant {
        id: "rtn-3",
        label: "RTN 3-bit",
        make: Some(&["quantize", "--method", "rtn", "--bits", "3"]),
        calibrated: false,
        grouped: true,
        precision: "fp32",
    },
];

/// What the experiment writes in OUT (removed by `--force`).
const FILES: &[&str] = &[
    "experiment.json",
    "models",
    "results",
    "embeddings",
    "sentences",
    "logs",
    "compress.md",
    "results.json",
    cloze_fs::MARKER,
];

fn kind() -> OutputKind {
    OutputKind::new("experiment compress", "--force")
}

/// One `--model`, checked.
#[derive(Debug, Clone)]
struct Model {
    name: String,
    /// The dense checkpoint directory.
    dir: PathBuf,
    /// Its prepared data.
    data: PathBuf,
    encode_only: bool,
    /// Labelled examples a classifier is scored on (`--classify`).
    task: Option<PathBuf>,
}

/// Whether `name` may name a model (and its files).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The models of the flags: names, directories, data and encode-only marks
/// checked, nothing opened yet.
fn parse_models(a: &CompressArgs) -> Result<Vec<Model>> {
    let mut models: Vec<Model> = Vec::new();
    for spec in &a.models {
        let Some((name, dir)) = spec.split_once('=') else {
            bail!(
                "--model {spec:?}: expected NAME=DIR, e.g. --model demo=runs/demo/run/model \
                 or --model minilm=minilm"
            );
        };
        if !valid_name(name) || dir.is_empty() {
            bail!(
                "--model {spec:?}: expected NAME=DIR with a NAME of letters, digits, '.', '_' \
                 or '-' (not starting with '.') and a checkpoint directory, e.g. \
                 --model demo=runs/demo/run/model"
            );
        }
        if models.iter().any(|m| m.name == name) {
            bail!("--model {name}=...: the name {name} is given twice");
        }
        models.push(Model {
            name: name.to_string(),
            dir: PathBuf::from(dir),
            data: PathBuf::new(),
            encode_only: false,
            task: None,
        });
    }
    let mut default_data: Option<PathBuf> = None;
    let mut own: Vec<(String, PathBuf)> = Vec::new();
    for spec in &a.data {
        match spec.split_once('=') {
            Some((name, dir)) if valid_name(name) => {
                if !models.iter().any(|m| m.name == name) {
                    bail!(
                        "--data {spec}: there is no --model named {name} (models: {})",
                        names(&models)
                    );
                }
                if own.iter().any(|(n, _)| n == name) {
                    bail!("--data {name}=...: model {name} is given data twice");
                }
                own.push((name.to_string(), PathBuf::from(dir)));
            }
            _ => {
                if let Some(d) = &default_data {
                    bail!(
                        "--data {spec}: a second data directory for every model (the first is {}); \
                         give a model its own with --data NAME=DIR",
                        d.display()
                    );
                }
                default_data = Some(PathBuf::from(spec));
            }
        }
    }
    for m in &mut models {
        m.data = match own.iter().find(|(n, _)| *n == m.name) {
            Some((_, d)) => d.clone(),
            None => default_data.clone().with_context(|| {
                format!(
                    "model {} has no prepared data: give --data DIR (for every model) or \
                     --data {}=DIR, made by `cloze data prepare` with its tokenizer (it is \
                     needed for calibration and for the held-out sentences)",
                    m.name, m.name
                )
            })?,
        };
    }
    for name in &a.encode_only {
        let Some(m) = models.iter_mut().find(|m| &m.name == name) else {
            bail!(
                "--encode-only {name}: there is no --model named {name} (models: {})",
                names(&models)
            );
        };
        m.encode_only = true;
    }
    for spec in &a.classify {
        let Some((name, file)) = spec.split_once('=').filter(|(_, f)| !f.is_empty()) else {
            bail!("--classify {spec:?}: expected NAME=FILE, e.g. --classify sentiment=test.jsonl");
        };
        let Some(m) = models.iter_mut().find(|m| m.name == name) else {
            bail!(
                "--classify {spec}: there is no --model named {name} (models: {})",
                names(&models)
            );
        };
        if m.task.is_some() {
            bail!("--classify {name}=...: model {name} is given a test file twice");
        }
        m.task = Some(PathBuf::from(file));
        m.encode_only = true;
    }
    Ok(models)
}

/// The gold labels of a `--classify` file, one per line.
fn task_labels(file: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let labels = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a JSON line", file.display(), i + 1))?;
            match &v["label"] {
                Value::String(s) => Ok(s.clone()),
                Value::Null => bail!("{}:{}: no \"label\"", file.display(), i + 1),
                other => Ok(other.to_string()),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if labels.is_empty() {
        bail!("{}: no labelled example", file.display());
    }
    Ok(labels)
}

/// The share of `cloze predict`'s labels in `predicted` equal to `gold`.
fn task_accuracy(gold: &[String], predicted: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(predicted)
        .with_context(|| format!("reading {}", predicted.display()))?;
    let got: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .with_context(|| format!("{}: not a JSON line", predicted.display()))?;
            Ok(match &v["label"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .collect::<Result<_>>()?;
    if got.len() != gold.len() {
        bail!(
            "{}: {} predictions for {} examples",
            predicted.display(),
            got.len(),
            gold.len()
        );
    }
    let right = got.iter().zip(gold).filter(|(a, b)| a == b).count();
    Ok(right as f64 / gold.len() as f64)
}

fn names(models: &[Model]) -> String {
    models
        .iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves each model's directory and checks it and its data: a
/// checkpoint whose linear layers split into groups of `group_size`, an MLM
/// head unless encode-only, prepared data with a held-out split and the
/// model's vocabulary.
fn check_models(models: &mut [Model], group_size: i64) -> Result<()> {
    for m in models.iter_mut() {
        let shown = m.dir.display().to_string();
        m.dir = super::super::data::resolve(&shown, "model")
            .with_context(|| format!("--model {}={shown}", m.name))?;
        if !m.dir.join("config.json").is_file() {
            bail!(
                "--model {}={shown}: not a checkpoint directory (no config.json); it takes a \
                 HuggingFace BERT directory such as RUN/model of `cloze pretrain`",
                m.name
            );
        }
        let c = cloze_models::hf::read_config(&m.dir)?;
        if let Some(cols) = [c.hidden_size, c.intermediate_size]
            .into_iter()
            .find(|cols| cols % group_size != 0)
        {
            bail!(
                "--group-size {group_size} does not divide the {cols} input columns of some \
                 linear layers of model {} (hidden {}, intermediate {}): GPTQ and RTN need a \
                 group size that divides both",
                m.name,
                c.hidden_size,
                c.intermediate_size
            );
        }
        if !m.encode_only {
            let keys = cloze_models::hf::read_weight_files(&m.dir)
                .with_context(|| format!("reading the weights of model {} ({shown})", m.name))?;
            if !keys.keys().any(|k| k.starts_with("cls.predictions.")) {
                bail!(
                    "model {} ({shown}) has no MLM head weights (no cls.predictions.*): its \
                     masked-LM loss would be a random head's; mark it --encode-only {} to score \
                     its embeddings and size only",
                    m.name,
                    m.name
                );
            }
        }
    }
    for m in models.iter() {
        if !m.data.join(cloze_text::shards::MANIFEST).is_file() {
            bail!(
                "--data {}: not a `cloze data prepare` output (no {}); prepare it with the \
                 tokenizer of model {}: `cloze data prepare --corpus CORPUS --tokenizer {} --out {}`",
                m.data.display(),
                cloze_text::shards::MANIFEST,
                m.name,
                m.dir.display(),
                m.data.display()
            );
        }
        let data = cloze_train::data::PreparedData::open(&m.data)
            .with_context(|| format!("opening the data {}", m.data.display()))?;
        cloze_train::data::check_model_matches(&m.dir, &data)?;
        let vocab = cloze_models::hf::read_config(&m.dir)?.vocab_size;
        if vocab != i64::from(data.specials.vocab_size) {
            bail!(
                "model {} has {vocab} vocabulary rows but {} was prepared with a {}-token \
                 vocabulary: prepare data with the model's tokenizer and give it as --data {}=DIR",
                m.name,
                m.data.display(),
                data.specials.vocab_size,
                m.name
            );
        }
        if data.eval.as_ref().is_none_or(|e| e.is_empty()) {
            bail!(
                "{} has no held-out split; prepare it with --holdout-fraction",
                m.data.display()
            );
        }
    }
    Ok(())
}

/// The settings that must match when an experiment directory is continued.
fn settings(a: &CompressArgs, models: &[Model]) -> Value {
    json!({
        "experiment": "compress",
        "models": models.iter().map(|m| json!({
            "name": m.name,
            "dir": m.dir.display().to_string(),
            "data": m.data.display().to_string(),
            "encode_only": m.encode_only,
            "task": m.task.as_ref().map(|t| t.display().to_string()),
        })).collect::<Vec<_>>(),
        "variants": VARIANTS.iter().map(|v| v.id).collect::<Vec<_>>(),
        "sentences": a.sentences.as_ref().map(|p| p.display().to_string()),
        "sentence_count": a.sentence_count,
        "samples": a.samples,
        "group_size": a.group_size,
        "seed": a.seed,
    })
}

/// The command line that reproduces this experiment.
fn command_line(a: &CompressArgs) -> String {
    let mut parts = vec!["cloze experiment compress".to_string()];
    parts.extend(a.models.iter().map(|m| format!("--model {m}")));
    parts.extend(a.data.iter().map(|d| format!("--data {d}")));
    parts.extend(a.encode_only.iter().map(|n| format!("--encode-only {n}")));
    parts.extend(a.classify.iter().map(|c| format!("--classify {c}")));
    match &a.sentences {
        Some(s) => parts.push(format!("--sentences {}", s.display())),
        None => parts.push(format!("--sentence-count {}", a.sentence_count)),
    }
    parts.push(format!(
        "--samples {} --group-size {} --seed {} --out {}",
        a.samples,
        a.group_size,
        a.seed,
        a.out.display()
    ));
    parts.join(" ")
}

/// The `--config` of every `eval` of a model: what `cloze eval` uses for
/// the dense checkpoint by default (its run's `config.toml`, else the
/// bert-tiny preset), so that every variant is scored on the same masks.
fn eval_config(dense: &Path) -> OsString {
    match dense.parent().map(cloze_train::trainer::config_path) {
        Some(p) if p.is_file() => p.into_os_string(),
        _ => "bert-tiny".into(),
    }
}

/// Up to `n` sequences of the held-out split of `data`, evenly spaced,
/// decoded without special tokens, one line each.
fn held_out_sentences(data: &Path, n: usize) -> Result<Vec<String>> {
    let d = cloze_train::data::PreparedData::open(data)
        .with_context(|| format!("opening the data {}", data.display()))?;
    let eval = d
        .eval
        .as_ref()
        .with_context(|| format!("{} has no held-out split", data.display()))?;
    let tok = cloze_text::tokenizer::TextTokenizer::from_path(&d.tokenizer_path)
        .with_context(|| format!("loading the tokenizer of {}", data.display()))?;
    let special: BTreeSet<u32> = d.specials.all_special.iter().copied().collect();
    let total = eval.len();
    let n = n.min(total);
    let mut lines = Vec::with_capacity(n);
    for k in 0..n {
        let inst = eval.get(k * total / n)?;
        let ids: Vec<u32> = inst
            .tokens
            .iter()
            .copied()
            .filter(|t| !special.contains(t))
            .collect();
        let text = tok.decode(&ids)?;
        let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !line.is_empty() {
            lines.push(line);
        }
    }
    if lines.is_empty() {
        bail!(
            "the held-out split of {} decodes to no text",
            data.display()
        );
    }
    Ok(lines)
}

/// Where the files of one model's variant live.
struct Paths {
    /// The checkpoint the variant runs (the dense one for `make: None`).
    model: PathBuf,
    /// The result files' directory.
    results: PathBuf,
    /// Its embeddings.
    embeddings: PathBuf,
}

fn paths(out: &Path, m: &Model, v: &Variant) -> Paths {
    Paths {
        model: if v.make.is_some() {
            out.join("models").join(&m.name).join(v.id)
        } else {
            m.dir.clone()
        },
        results: out.join("results").join(&m.name).join(v.id),
        embeddings: out
            .join("embeddings")
            .join(&m.name)
            .join(format!("{}.safetensors", v.id)),
    }
}

/// Runs the experiment.
pub fn run(a: CompressArgs, threads: Option<usize>) -> Result<()> {
    if a.samples == 0 || a.sentence_count == 0 || a.group_size <= 0 {
        bail!("--samples, --sentence-count and --group-size must be at least 1");
    }
    let mut models = parse_models(&a)?;
    if let Some(s) = &a.sentences {
        let text = std::fs::read_to_string(s)
            .with_context(|| format!("reading --sentences {}", s.display()))?;
        if text.lines().all(|l| l.trim().is_empty()) {
            bail!("--sentences {} holds no sentence", s.display());
        }
    }
    check_models(&mut models, a.group_size)?;
    for task in models.iter().filter_map(|m| m.task.as_deref()) {
        task_labels(task)?;
    }
    let started = Instant::now();
    let out = a.out.clone();
    let _lock = super::claim_dir(&out, &kind(), FILES, &settings(&a, &models), a.force)?;
    let total: usize = models
        .iter()
        .map(|m| {
            VARIANTS
                .iter()
                .map(|v| {
                    usize::from(v.make.is_some())
                        + usize::from(!m.encode_only)
                        + usize::from(m.task.is_some())
                        + 1
                })
                .sum::<usize>()
        })
        .sum();
    let mut steps = Steps::new(&out.join("logs"), threads, total)?;
    let seed = a.seed.to_string();
    let samples = a.samples.to_string();
    let group = a.group_size.to_string();

    for m in &models {
        let sentences = match &a.sentences {
            Some(s) => s.clone(),
            None => {
                let file = out.join("sentences").join(format!("{}.txt", m.name));
                if !file.exists() {
                    let lines = held_out_sentences(&m.data, a.sentence_count)?;
                    if let Some(parent) = file.parent() {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("creating {}", parent.display()))?;
                    }
                    cloze_models::hf::write_atomic(&file, (lines.join("\n") + "\n").as_bytes())?;
                }
                file
            }
        };
        let config = eval_config(&m.dir);
        for v in VARIANTS {
            let p = paths(&out, m, v);
            if let Some(make) = v.make {
                let result = p.results.join("compress.json");
                let name = format!("{}/{}/compress", m.name, v.id);
                if result.exists() {
                    steps.skip(&name);
                } else {
                    let mut args = os_args(make.iter().copied());
                    args.push("--model".into());
                    args.push(m.dir.clone().into_os_string());
                    if v.calibrated {
                        args.push("--calibration".into());
                        args.push(m.data.clone().into_os_string());
                        args.extend(os_args(["--samples", samples.as_str()]));
                    }
                    if v.grouped {
                        args.extend(os_args(["--group-size", group.as_str()]));
                    }
                    args.extend(os_args(["--seed", seed.as_str(), "--force", "--out"]));
                    args.push(p.model.clone().into_os_string());
                    let (_, seconds) = steps.run(&name, &args, false)?;
                    save(&result, &json!({"seconds": seconds}))?;
                }
            }
            if !m.encode_only {
                capture_once(
                    &mut steps,
                    &format!("{}/{}/eval", m.name, v.id),
                    &p.results.join("eval.json"),
                    || {
                        let mut args = os_args(["eval", "--json", "--model"]);
                        args.push(p.model.clone().into_os_string());
                        args.push("--data".into());
                        args.push(m.data.clone().into_os_string());
                        args.push("--config".into());
                        args.push(config.clone());
                        args.extend(os_args(["--precision", v.precision]));
                        args
                    },
                )?;
            }
            if let Some(task) = &m.task {
                let predicted = p.results.join("predict.jsonl");
                let name = format!("{}/{}/predict", m.name, v.id);
                if predicted.exists() {
                    steps.skip(&name);
                } else {
                    std::fs::create_dir_all(&p.results)
                        .with_context(|| format!("creating {}", p.results.display()))?;
                    let mut args = os_args(["predict", "--precision", v.precision, "--model"]);
                    args.push(p.model.clone().into_os_string());
                    args.push("--input".into());
                    args.push(task.clone().into_os_string());
                    args.push("--output".into());
                    args.push(predicted.into_os_string());
                    steps.run(&name, &args, false)?;
                }
            }
            let name = format!("{}/{}/encode", m.name, v.id);
            if p.embeddings.exists() {
                steps.skip(&name);
            } else {
                if let Some(parent) = p.embeddings.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                let mut args = os_args(["encode", "--no-token-states", "--device", "cpu"]);
                args.extend(os_args(["--precision", v.precision, "--model"]));
                args.push(p.model.clone().into_os_string());
                args.push("--input".into());
                args.push(sentences.clone().into_os_string());
                args.push("--output".into());
                args.push(p.embeddings.clone().into_os_string());
                steps.run(&name, &args, false)?;
            }
        }
    }

    let results = collect(&out, &a, &models)?;
    write_json(&out.join("results.json"), &results)?;
    let md = markdown(&results);
    let md_path = out.join("compress.md");
    cloze_models::hf::write_atomic(&md_path, md.as_bytes())
        .with_context(|| format!("writing {}", md_path.display()))?;
    println!("{md}");
    println!(
        "report: {} and {} ({} steps run in {:.1} min)",
        md_path.display(),
        out.join("results.json").display(),
        steps.ran(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// The bytes of a checkpoint directory: every regular file but the marker
/// `cloze` leaves in the directories it writes.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() && entry.file_name() != cloze_fs::MARKER {
            bytes += entry.metadata()?.len();
        }
    }
    Ok(bytes)
}

/// The L2-normalised sentence embeddings of an `encode` output, in f64.
pub(super) fn unit_embeddings(path: &Path) -> Result<Tensor> {
    let mut t = cloze_models::hf::read_safetensors(path)?;
    let e = t
        .remove("sentence_embeddings")
        .with_context(|| format!("{} has no sentence_embeddings", path.display()))?
        .f_to_kind(Kind::Double)?;
    let norm = e
        .f_square()?
        .f_sum_dim_intlist([1i64].as_slice(), true, Kind::Double)?
        .f_sqrt()?;
    Ok(e.f_div(&norm.f_clamp_min(1e-12)?)?)
}

/// The lowest and the mean cosine between the rows of two embedding files
/// (the same sentences in the same order), and how many rows.
fn cosines(dense: &Tensor, path: &Path) -> Result<(f64, f64, i64)> {
    let e = unit_embeddings(path)?;
    if e.size() != dense.size() {
        bail!(
            "{} holds embeddings {:?}, the dense model's are {:?}",
            path.display(),
            e.size(),
            dense.size()
        );
    }
    let cos = dense
        .f_mul(&e)?
        .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Double)?;
    Ok((
        cos.f_min()?.f_double_value(&[])?,
        cos.f_mean(Kind::Double)?.f_double_value(&[])?,
        e.size()[0],
    ))
}

/// Every model's rows, from the stored results and embeddings only.
fn collect(out: &Path, a: &CompressArgs, models: &[Model]) -> Result<Value> {
    let mut entries = Vec::new();
    for m in models {
        let dense = unit_embeddings(&paths(out, m, &VARIANTS[0]).embeddings)?;
        let gold = m.task.as_deref().map(task_labels).transpose()?;
        let mut rows = Vec::new();
        let mut sentences = 0;
        for v in VARIANTS {
            let p = paths(out, m, v);
            let (cos_min, cos_mean, n) = cosines(&dense, &p.embeddings)?;
            sentences = n;
            let compress = if v.make.is_some() {
                read_json(&p.results.join("compress.json"))?["seconds"].as_f64()
            } else {
                None
            };
            let eval = if m.encode_only {
                Value::Null
            } else {
                read_json(&p.results.join("eval.json"))?["output"].clone()
            };
            rows.push(json!({
                "variant": v.id,
                "label": v.label,
                "command": v.make.map(|c| format!("cloze {}", c.join(" "))),
                "precision": v.precision,
                "model_dir": p.model.display().to_string(),
                "size_bytes": dir_bytes(&p.model)?,
                "compress_seconds": compress,
                "mlm_loss": eval.pointer("/losses/mlm"),
                "mlm_accuracy": eval.pointer("/accuracies/mlm"),
                "mlm_accuracy_at_mask": eval.pointer("/accuracies/mlm@mask"),
                "masked_positions": eval.pointer("/counts/mlm"),
                "unigram_accuracy": eval.pointer("/accuracies/unigram"),
                "cosine_min": cos_min,
                "cosine_mean": cos_mean,
                "task_accuracy": gold
                    .as_deref()
                    .map(|g| task_accuracy(g, &p.results.join("predict.jsonl")))
                    .transpose()?,
            }));
        }
        entries.push(json!({
            "name": m.name,
            "dir": m.dir.display().to_string(),
            "data": m.data.display().to_string(),
            "encode_only": m.encode_only,
            "task": m.task.as_ref().map(|t| t.display().to_string()),
            "task_examples": gold.as_ref().map(Vec::len),
            "eval_config": if m.encode_only {
                Value::Null
            } else {
                Value::from(eval_config(&m.dir).to_string_lossy().into_owned())
            },
            "sentences": sentences,
            "variants": rows,
        }));
    }
    Ok(json!({
        "command": command_line(a),
        "seed": a.seed,
        "samples": a.samples,
        "group_size": a.group_size,
        "models": entries,
    }))
}

/// A number with `digits` decimals, or "-".
fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// The Markdown report of [`collect`]'s results.
fn markdown(r: &Value) -> String {
    let mut text = format!(
        "# Compression of trained encoders\n\n\
         Command: `{}`\n\n\
         Each variant is made from the dense checkpoint in one shot (no retraining) by the \
         command in results.json; calibration: {} training sequences of the model's data drawn \
         with seed {}; GPTQ and RTN in groups of {} input columns. MLM: `cloze eval` on the \
         held-out split, the same masks for every variant of a model (loss in nats, accuracy over \
         every predicted position and at the positions shown as [MASK]). Cosine: of each \
         sentence's mean-pooled embedding (`cloze encode`, CPU) to the dense model's, lowest and \
         mean. Size: the checkpoint directory on disk. Pruned checkpoints store their zeros (the \
         dense size), and the int8 variants are the dense files quantised when loaded \
         (`--precision int8`; SmoothQuant adds its factors): neither is smaller on disk. No \
         speed is measured here, and unstructured zeros make no dense kernel faster. \
         Compress s: the wall time of the step that wrote the variant.\n",
        r["command"].as_str().unwrap_or(""),
        r["samples"],
        r["seed"],
        r["group_size"],
    );
    for m in r["models"].as_array().into_iter().flatten() {
        let encode_only = m["encode_only"].as_bool().unwrap_or(false);
        let task = m["task"].as_str();
        text.push_str(&format!(
            "\n## {}\n\n`{}`, data `{}`; {} sentences{}.\n\n",
            m["name"].as_str().unwrap_or(""),
            m["dir"].as_str().unwrap_or(""),
            m["data"].as_str().unwrap_or(""),
            m["sentences"],
            if let Some(t) = task {
                format!(
                    "; a classifier, scored by `cloze predict` on the {} labelled examples of `{t}`",
                    m["task_examples"]
                )
            } else if encode_only {
                "; encode only (no trained MLM head)".to_string()
            } else {
                format!(
                    "; held-out masks of `{}`",
                    m["eval_config"].as_str().unwrap_or("")
                )
            }
        ));
        let rows_in = m["variants"].as_array().cloned().unwrap_or_default();
        let dense_loss = rows_in.first().and_then(|d| d["mlm_loss"].as_f64());
        let dense_task = rows_in.first().and_then(|d| d["task_accuracy"].as_f64());
        let mut rows = Vec::new();
        for v in &rows_in {
            let mut row = vec![v["label"].as_str().unwrap_or("").to_string()];
            if !encode_only {
                let added = match (v["mlm_loss"].as_f64(), dense_loss) {
                    (Some(l), Some(d)) if v["variant"] != "dense" => format!("{:+.4}", l - d),
                    _ => String::new(),
                };
                let pct = |k: &str| {
                    v[k].as_f64()
                        .map_or_else(|| "-".into(), |x| format!("{:.2}", x * 100.0))
                };
                row.extend([
                    num(&v["mlm_loss"], 4),
                    added,
                    pct("mlm_accuracy"),
                    pct("mlm_accuracy_at_mask"),
                ]);
            }
            if task.is_some() {
                let lost = match (v["task_accuracy"].as_f64(), dense_task) {
                    (Some(x), Some(d)) if v["variant"] != "dense" => {
                        format!("{:.2}", (d - x) * 100.0)
                    }
                    _ => String::new(),
                };
                row.extend([
                    v["task_accuracy"]
                        .as_f64()
                        .map_or_else(|| "-".into(), |x| format!("{:.2}", x * 100.0)),
                    lost,
                ]);
            }
            row.extend([
                num(&v["cosine_mean"], 4),
                num(&v["cosine_min"], 4),
                v["size_bytes"]
                    .as_f64()
                    .map_or_else(|| "-".into(), |b| format!("{:.2}", b / 1e6)),
                num(&v["compress_seconds"], 1),
            ]);
            rows.push(row);
        }
        let mut header = vec!["variant"];
        if !encode_only {
            header.extend([
                "MLM loss",
                "loss added",
                "MLM acc. (%)",
                "acc. at [MASK] (%)",
            ]);
        }
        if task.is_some() {
            header.extend(["task acc. (%)", "points lost"]);
        }
        header.extend(["cosine mean", "cosine min", "size (MB)", "compress s"]);
        let mut right = vec![true; header.len()];
        right[0] = false;
        text.push_str(&markdown_table(&header, &right, &rows));
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(models: &[&str], data: &[&str], encode_only: &[&str]) -> CompressArgs {
        CompressArgs {
            models: models.iter().map(|s| s.to_string()).collect(),
            data: data.iter().map(|s| s.to_string()).collect(),
            encode_only: encode_only.iter().map(|s| s.to_string()).collect(),
            classify: Vec::new(),
            sentences: None,
            sentence_count: 8,
            samples: 8,
            group_size: 32,
            seed: 0,
            out: PathBuf::from("out"),
            force: false,
        }
    }

    #[test]
    fn models_take_the_shared_data_or_their_own() {
        let m = parse_models(&args(
            &["demo=runs/demo/model", "minilm=minilm"],
            &["runs/demo/data", "minilm=runs/minilm-data"],
            &["minilm"],
        ))
        .unwrap();
        assert_eq!(m[0].data, PathBuf::from("runs/demo/data"));
        assert!(!m[0].encode_only);
        assert_eq!(m[1].dir, PathBuf::from("minilm"));
        assert_eq!(m[1].data, PathBuf::from("runs/minilm-data"));
        assert!(m[1].encode_only);
        // A path with '=' that is not a model's name is the shared data.
        let m = parse_models(&args(&["a=x"], &["data/v=2"], &[])).unwrap();
        assert_eq!(m[0].data, PathBuf::from("data/v=2"));
    }

    #[test]
    fn bad_specs_are_refused_with_the_expected_form() {
        let err = |a: CompressArgs| parse_models(&a).unwrap_err().to_string();
        assert!(err(args(&["runs/model"], &["d"], &[])).contains("expected NAME=DIR"));
        assert!(err(args(&["=runs/model"], &["d"], &[])).contains("expected NAME=DIR"));
        assert!(err(args(&["a/b=x"], &["d"], &[])).contains("expected NAME=DIR"));
        assert!(err(args(&["a=x", "a=y"], &["d"], &[])).contains("given twice"));
        assert!(err(args(&["a=x"], &["d"], &["b"])).contains("no --model named b"));
        assert!(err(args(&["a=x"], &["b=d"], &[])).contains("no --model named b"));
        assert!(err(args(&["a=x", "b=y"], &["a=d"], &[])).contains("model b has no prepared data"));
        assert!(err(args(&["a=x"], &["d", "e"], &[])).contains("a second data directory"));
        let classify = |specs: &[&str]| CompressArgs {
            classify: specs.iter().map(|s| s.to_string()).collect(),
            ..args(&["a=x"], &["d"], &[])
        };
        assert!(err(classify(&["a"])).contains("expected NAME=FILE"));
        assert!(err(classify(&["a="])).contains("expected NAME=FILE"));
        assert!(err(classify(&["b=t.jsonl"])).contains("no --model named b"));
        assert!(err(classify(&["a=t.jsonl", "a=u.jsonl"])).contains("test file twice"));
        let m = parse_models(&classify(&["a=t.jsonl"])).unwrap();
        assert_eq!(m[0].task, Some(PathBuf::from("t.jsonl")));
        assert!(m[0].encode_only, "a classifier has no MLM head");
    }

    #[test]
    fn the_variant_list_starts_dense_and_names_files_uniquely() {
        assert_eq!(VARIANTS[0].id, "dense");
        assert!(VARIANTS[0].make.is_none());
        let ids: BTreeSet<&str> = VARIANTS.iter().map(|v| v.id).collect();
        assert_eq!(ids.len(), VARIANTS.len());
        assert!(VARIANTS.iter().all(|v| valid_name(v.id)));
    }
}

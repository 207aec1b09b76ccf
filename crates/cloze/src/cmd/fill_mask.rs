//! `cloze fill-mask`: top-k tokens with probabilities for every `[MASK]` of each text.
//!
//! Also home of what `fill-mask`, `score` and `encode` share: checking the `--model`
//! directory, resolving `--max-length` against the model's positions before any
//! work, reading and tokenizing input lines with their line numbers
//! ([`InputLines`]), and reporting (or, with `--strict`, refusing) texts that
//! truncation shortened; and the `--precision` of all four (with `correct`):
//! the weights cast once at load ([`cast_for_inference`]), every number that
//! leaves computed in fp32.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_eval::{FillMaskOptions, ModelTokenizer, Tokenized};
use cloze_models::{
    load_pretrained, BertConfig, BertForPreTraining, HeadStatus, Precision, Pretrained,
};
use tch::Device;

/// Arguments of `cloze fill-mask`.
#[derive(Debug, Args)]
pub struct FillMaskArgs {
    /// Checkpoint directory (config.json, model.safetensors, and tokenizer.json or
    /// a BERT vocab.txt).
    #[arg(long)]
    pub model: PathBuf,
    /// Candidates per mask.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Truncate texts to this many tokens, special tokens included (default and
    /// maximum: the model's max_position_embeddings).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Fail on a text longer than the maximum length instead of truncating it.
    #[arg(long)]
    pub strict: bool,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", value_parser = cloze_models::parse_device)]
    pub device: Device,
    /// Inference precision: fp32, bf16 (weights cast to bfloat16 once at load),
    /// or int8 (linear layers on libtorch's dynamic int8 kernel, CPU only;
    /// probabilities still computed in fp32).
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Texts with one or more `[MASK]` tokens.
    #[arg(required = true)]
    pub text: Vec<String>,
}

/// Refuses a `--model` path that is not a checkpoint directory, with a message
/// saying what one holds, before anything is loaded.
pub(crate) fn check_model_dir(dir: &Path, need_tokenizer: bool) -> Result<()> {
    let shown = dir.display();
    if !dir.is_dir() {
        bail!(
            "--model {shown} is not a directory; it takes a checkpoint directory \
             (config.json, model.safetensors, and tokenizer.json or vocab.txt) such as RUN/model \
             of `cloze pretrain`"
        );
    }
    let weights = dir.join("model.safetensors").is_file()
        || dir.join("model.safetensors.index.json").is_file();
    let mut missing: Vec<&str> = Vec::new();
    if !dir.join("config.json").is_file() {
        missing.push("config.json");
    }
    if !weights {
        missing.push("model.safetensors");
    }
    // The same files `ModelTokenizer::from_dir` looks for.
    if need_tokenizer && cloze_text::tokenizer::tokenizer_file(dir).is_err() {
        missing.push("tokenizer.json or vocab.txt");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let hint = if dir.join("model").join("config.json").is_file() {
        format!(
            "; it looks like a pretraining run: pass --model {}",
            dir.join("model").display()
        )
    } else {
        String::new()
    };
    bail!(
        "--model {shown} is not a checkpoint directory (no {}): it needs config.json, \
         model.safetensors{} as in RUN/model written by `cloze pretrain`{hint}",
        missing.join(", no "),
        if need_tokenizer {
            " and tokenizer.json (or a BERT vocab.txt),"
        } else {
            ","
        }
    )
}

/// Reads `dir/config.json`, so that lengths can be checked before the weights load.
pub(crate) fn read_model_config(dir: &Path) -> Result<BertConfig> {
    cloze_models::hf::read_config(dir).with_context(|| format!("loading {}", dir.display()))
}

/// The maximum length to use: `requested`, which must fit the model's position
/// embeddings, or those when not given.
pub(crate) fn resolve_max_length(requested: Option<usize>, config: &BertConfig) -> Result<usize> {
    let limit = usize::try_from(config.max_position_embeddings)
        .context("max_position_embeddings does not fit in memory")?;
    match requested {
        None => Ok(limit),
        Some(n) if n > limit => bail!(
            "--max-length {n} exceeds the model's max_position_embeddings ({limit}): \
             its position embeddings cover at most {limit} tokens; use --max-length {limit} or less"
        ),
        Some(n) => Ok(n),
    }
}

/// The checkpoint's tokenizer truncating to `max_len`; a length with no room for
/// text is an error naming `--max-length`.
pub(crate) fn load_tokenizer(dir: &Path, max_len: usize) -> Result<ModelTokenizer> {
    match ModelTokenizer::from_dir(dir, max_len) {
        Ok(t) => Ok(t),
        Err(e @ cloze_eval::Error::MaxLengthTooSmall { .. }) => {
            bail!("--max-length {max_len}: {e}")
        }
        Err(e) => Err(e.into()),
    }
}

/// A checkpoint directory opened for inference, before any weight is loaded:
/// its tokenizer truncating to the checked maximum length, and the truncation
/// rule for messages and `--strict`.
pub(crate) struct Opened {
    /// The tokenizer, truncating to `truncation.max_len`.
    pub tok: ModelTokenizer,
    /// The length rule.
    pub truncation: Truncation,
}

/// Checks `--model`, `--max-length` (against the model's positions) and
/// loads the tokenizer: the common start of fill-mask, encode and score.
pub(crate) fn open_for_inference(
    dir: &Path,
    max_length: Option<usize>,
    strict: bool,
) -> Result<Opened> {
    check_model_dir(dir, true)?;
    let config = read_model_config(dir)?;
    let max_len = resolve_max_length(max_length, &config)?;
    let tok = load_tokenizer(dir, max_len)?;
    let truncation = Truncation {
        max_len,
        limit: config.max_position_embeddings as usize,
        strict,
    };
    Ok(Opened { tok, truncation })
}

/// Loads a checkpoint that must have a trained MLM head, its weights cast to
/// `precision` ([`cast_for_inference`]). Non-finite weights are refused by the loader.
pub(crate) fn load_mlm(
    dir: &Path,
    device: Device,
    precision: Precision,
) -> Result<Pretrained<BertForPreTraining>> {
    let mut p =
        load_pretrained(dir, device).with_context(|| format!("loading {}", dir.display()))?;
    if p.report.mlm_head != HeadStatus::Loaded {
        return Err(cloze_eval::Error::NoMlmHead {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    tracing::info!(report = %p.report, "model loaded");
    cast_for_inference(dir, &mut p.vs, &mut p.model, precision, device)?;
    Ok(p)
}

/// Readies freshly loaded weights for inference in `precision` (`--precision`
/// of fill-mask, encode, score, correct, eval and predict): bf16 casts them
/// once, and the model's blocks follow the weights' type, so a bf16 model runs
/// its whole forward pass in bf16; int8 packs the model's linear layers for
/// libtorch's dynamic int8 kernel (CPU only). Heads return fp32 logits, and
/// `cloze_eval` casts hidden states to fp32 before pooling, so every number
/// printed or written is computed from fp32 tensors.
///
/// Int8 uses the SmoothQuant calibration `cloze quantize --method int8` left
/// in the checkpoint directory `dir`, when there is one.
pub(crate) fn cast_for_inference<M: cloze_models::QuantizeInt8>(
    dir: &Path,
    vs: &mut tch::nn::VarStore,
    model: &mut M,
    precision: Precision,
    device: Device,
) -> Result<()> {
    check_inference_precision(precision, device)?;
    let smoothing = inference_smoothing(dir, precision)?;
    let packed = precision.prepare(vs, model, smoothing.as_ref())?;
    tracing::info!(%precision, packed, "weights ready");
    Ok(())
}

/// The int8 smoothing calibration of the checkpoint in `dir` when
/// `precision` is int8 (`None` when it has none, or for another precision,
/// which runs the unchanged weights; that case is logged).
pub(crate) fn inference_smoothing(
    dir: &Path,
    precision: Precision,
) -> Result<Option<cloze_models::Int8Smoothing>> {
    let smoothing = cloze_models::Int8Smoothing::load(dir)
        .with_context(|| format!("reading the int8 calibration of {}", dir.display()))?;
    match (&smoothing, precision) {
        (Some(s), Precision::Int8) => {
            tracing::info!(alpha = s.alpha(), "int8 with SmoothQuant calibration");
        }
        (Some(_), other) => tracing::info!(
            "{} holds an int8 calibration ({}), unused in {other}: pass --precision int8 to use it",
            dir.display(),
            cloze_models::int8::SMOOTHING_FILE
        ),
        (None, _) => {}
    }
    Ok(smoothing.filter(|_| precision == Precision::Int8))
}

/// Refuses an inference precision this device or build cannot run, and warns
/// where it would run slower than fp32.
pub(crate) fn check_inference_precision(precision: Precision, device: Device) -> Result<()> {
    if precision == Precision::Bf16
        && device == Device::Cpu
        && !cloze_models::precision::cpu_has_bf16_gemm()
    {
        tracing::warn!(
            "--precision bf16 on a CPU without avx512_bf16: libtorch emulates bf16 \
             products, which is slower than fp32 here"
        );
    }
    if precision == Precision::Int8 {
        anyhow::ensure!(
            device == Device::Cpu,
            "--precision int8 runs on the CPU (libtorch's int8 linear is a CPU kernel): \
             pass --device cpu, or use --precision bf16 on a GPU"
        );
        anyhow::ensure!(
            cloze_models::int8::available(),
            "--precision int8 needs libtorch's fbgemm engine, which this build lacks \
             (x86-64 builds have it)"
        );
    }
    Ok(())
}

/// A non-empty input line: its number in the file (from 1) and its trimmed text.
pub(crate) struct Line {
    pub number: usize,
    pub text: String,
}

/// Reads the non-empty lines of a text file, keeping their line numbers.
pub(crate) fn read_lines(path: &Path) -> Result<Vec<Line>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<Line> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(number, l)| Line {
            number,
            text: l.to_string(),
        })
        .collect();
    anyhow::ensure!(
        !lines.is_empty(),
        "{} has no non-empty line",
        path.display()
    );
    Ok(lines)
}

/// The non-empty lines of an `--input` file, tokenized and checked against
/// `--strict` before any model work: the common input of `encode` and `score`.
pub(crate) struct InputLines {
    path: PathBuf,
    /// The lines, in file order.
    pub lines: Vec<Line>,
    /// Each line's tokens (`lines[i]` -> `toks[i]`).
    pub toks: Vec<Tokenized>,
}

impl InputLines {
    /// Reads and tokenizes `path`; with `--strict`, a truncated line is an error
    /// naming it.
    pub fn read(path: &Path, tok: &ModelTokenizer, truncation: &Truncation) -> Result<Self> {
        let lines = read_lines(path)?;
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        let toks = tok.tokenize_batch(&texts)?;
        let read = InputLines {
            path: path.to_path_buf(),
            lines,
            toks,
        };
        read.with_inputs(|inputs| truncation.check(&read.toks, inputs))?;
        Ok(read)
    }

    /// The texts, in file order.
    pub fn texts(&self) -> Vec<&str> {
        self.lines.iter().map(|l| l.text.as_str()).collect()
    }

    /// The token ids the model gets, in file order.
    pub fn seqs(&self) -> Vec<Vec<u32>> {
        self.toks.iter().map(|t| t.ids.clone()).collect()
    }

    /// The truncation warning for the end of the output, if a line was truncated.
    pub fn truncation_summary(&self, truncation: &Truncation) -> Option<String> {
        self.with_inputs(|inputs| truncation.summary(&self.toks, inputs))
    }

    /// Runs `f` with the lines named as in messages ("line 7 of in.txt").
    fn with_inputs<R>(&self, f: impl FnOnce(&Inputs<'_>) -> R) -> R {
        let name = |i: usize| format!("line {} of {}", self.lines[i].number, self.path.display());
        f(&Inputs {
            noun: "lines",
            name: &name,
        })
    }
}

/// How to name the inputs in messages about truncation.
pub(crate) struct Inputs<'a> {
    /// Plural noun ("lines", "texts").
    pub noun: &'static str,
    /// The name of input `i` ("line 7 of in.txt", "text 2").
    pub name: &'a dyn Fn(usize) -> String,
}

/// What to do about inputs longer than the maximum length.
pub(crate) struct Truncation {
    /// The maximum length in tokens.
    pub max_len: usize,
    /// The model's `max_position_embeddings`.
    pub limit: usize,
    /// Fail instead of truncating.
    pub strict: bool,
}

impl Truncation {
    /// What to do about a too-long input (`it`) or several (`them`).
    fn advice(&self, it: &str) -> String {
        if self.max_len < self.limit {
            format!(
                "shorten {it} or raise --max-length (the model takes up to {})",
                self.limit
            )
        } else {
            format!(
                "shorten {it}: the model takes at most {} tokens",
                self.limit
            )
        }
    }

    /// With `--strict`, the error naming the first truncated input; run before any
    /// model work.
    pub fn check(&self, toks: &[Tokenized], inputs: &Inputs<'_>) -> Result<()> {
        if !self.strict {
            return Ok(());
        }
        if let Some((i, t)) = toks.iter().enumerate().find(|(_, t)| t.is_truncated()) {
            bail!(
                "{} has {} tokens, more than --max-length {} (--strict); {}",
                (inputs.name)(i),
                t.full_len(),
                self.max_len,
                self.advice("it")
            );
        }
        Ok(())
    }

    /// The count of truncated inputs, for the end of the output; `None` if none was.
    pub fn summary(&self, toks: &[Tokenized], inputs: &Inputs<'_>) -> Option<String> {
        let n = toks.iter().filter(|t| t.is_truncated()).count();
        let (first, t) = toks.iter().enumerate().find(|(_, t)| t.is_truncated())?;
        Some(format!(
            "warning: {n} of {} {} were truncated to {} tokens (the first is {}, {} tokens); \
             {} (--strict makes this an error)",
            toks.len(),
            inputs.noun,
            self.max_len,
            (inputs.name)(first),
            t.full_len(),
            self.advice("them")
        ))
    }
}

/// The first `n` characters of `text`, with an ellipsis if cut.
pub(crate) fn snippet(text: &str, n: usize) -> String {
    let mut s: String = text.chars().take(n).collect();
    if s.len() < text.len() {
        s.push_str("...");
    }
    s
}

/// Runs fill-mask and prints the candidates.
pub fn run(args: FillMaskArgs) -> Result<()> {
    let Opened { tok, truncation } = open_for_inference(&args.model, args.max_length, args.strict)?;
    let max_len = truncation.max_len;
    let opts = FillMaskOptions {
        top_k: args.top_k,
        batch_size: args.batch_size,
        device: args.device,
        ..FillMaskOptions::for_tokenizer(&tok)?
    };
    let mask = opts.mask_id;
    let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
    let toks = tok.tokenize_batch(&texts)?;
    let name = |i: usize| format!("text {} ({:?})", i + 1, snippet(texts[i], 40));
    let inputs = Inputs {
        noun: "texts",
        name: &name,
    };
    for (i, t) in toks.iter().enumerate() {
        if let Some(pos) = t.first_dropped(mask) {
            let how = if max_len < truncation.limit {
                format!(
                    "shorten the text or raise --max-length (the model takes up to {})",
                    truncation.limit
                )
            } else {
                format!(
                    "shorten the text or move the [MASK] earlier: the model takes at most {} tokens",
                    truncation.limit
                )
            };
            bail!(
                "{}: [MASK] at token {pos} is beyond the maximum length {max_len}; {how}",
                name(i)
            );
        }
        if !t.ids.contains(&mask) {
            bail!("{} contains no [MASK] token", name(i));
        }
    }
    truncation.check(&toks, &inputs)?;
    let p = load_mlm(&args.model, args.device, args.precision)?;
    let seqs: Vec<Vec<u32>> = toks.iter().map(|t| t.ids.clone()).collect();
    let out = cloze_eval::fill_mask(&p.model, &seqs, &opts)?;
    for (i, preds) in out.iter().enumerate() {
        if args.json {
            let masks: Vec<serde_json::Value> = preds
                .iter()
                .map(|m| {
                    let c: Vec<serde_json::Value> = m
                        .candidates
                        .iter()
                        .map(|c| serde_json::json!({"token": tok.id_to_token(c.token_id), "token_id": c.token_id, "probability": c.probability}))
                        .collect();
                    serde_json::json!({"position": m.position, "candidates": c})
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"text": texts[i], "truncated": toks[i].is_truncated(), "masks": masks})
            );
        } else {
            println!("{}", texts[i]);
            for (k, m) in preds.iter().enumerate() {
                let c: Vec<String> = m
                    .candidates
                    .iter()
                    .map(|c| format!("{} ({:.4})", tok.id_to_token(c.token_id), c.probability))
                    .collect();
                println!(
                    "  [MASK] {} at token {}: {}",
                    k + 1,
                    m.position,
                    c.join(", ")
                );
            }
        }
    }
    if let Some(s) = truncation.summary(&toks, &inputs) {
        eprintln!("{s}");
    }
    Ok(())
}

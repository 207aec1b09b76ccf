//! `cloze correct`: a masked LM as a Chinese spelling corrector
//! ([`cloze_eval::correct`]), on sentences or evaluated on a test set
//! (`--eval sighan15` or a `source<TAB>target` file) with the sentence-level
//! metrics of [`cloze_eval::csc_metrics`].
//!
//! Everything that can be refused is refused before the weights load: the
//! model directory and `--max-length`, the confusion set (each malformed line
//! named), the input or the whole test set (a pair whose sides differ in
//! length is named by file and line unless `--skip-unaligned`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use cloze_eval::{ConfusionSet, CorrectMode, CorrectOptions, Correction, CscDataset};
use cloze_fetch::datasets;
use cloze_models::Precision;
use tch::Device;

use super::data::BarProgress;
use super::fill_mask::{load_mlm, open_for_inference, read_lines, snippet, Opened};

/// The dataset whose files are the default test set and confusion set.
const SIGHAN15: &str = "sighan15";
/// Its test set, in the dataset's cache directory.
const SIGHAN15_TEST: &str = "sighan2015_test.tsv";
/// Its same-pinyin confusion set.
const SIGHAN15_CONFUSION: &str = "same_pinyin.txt";

/// Arguments of `cloze correct`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("sentences").required(true).args(["input", "eval", "text"])))]
pub struct CorrectArgs {
    /// Checkpoint directory with an MLM head and tokenizer.json (or a BERT vocab.txt).
    #[arg(long)]
    pub model: PathBuf,
    /// Text file, one sentence per line.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Evaluate on a test set instead: `sighan15` (the cached SIGHAN 2015 test
    /// set of `cloze data fetch sighan15`) or a file of `source<TAB>target` lines.
    #[arg(long, value_name = "sighan15|FILE.tsv")]
    pub eval: Option<String>,
    /// With --eval FILE: leave out pairs whose two sides differ in length
    /// (their lines are reported) instead of failing on the first. Always on
    /// for `--eval sighan15`, whose cached copy has 10 such pairs.
    #[arg(long, requires = "eval")]
    pub skip_unaligned: bool,
    /// Confusion set: lines of `char<TAB>candidates[<TAB>candidates]`
    /// (default: same_pinyin.txt of the cached sighan15 dataset).
    #[arg(long, value_name = "FILE")]
    pub confusion: Option<PathBuf>,
    /// Replace a character when p(best candidate) - p(character) exceeds this
    /// (probabilities at that position; 0 <= X < 1).
    #[arg(long, value_name = "X", default_value_t = CorrectOptions::DEFAULT_THRESHOLD,
          value_parser = parse_threshold)]
    pub threshold: f64,
    /// direct: one pass over the unmasked sentence (MacBERT-style);
    /// masked: each candidate position masked in turn (slower).
    #[arg(long, default_value = "direct")]
    pub mode: CorrectMode,
    /// Sequences per forward pass (sentences in direct mode, masked copies in masked mode).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Read at most this many tokens of a sentence, special tokens included;
    /// the rest is left unchanged (default and maximum: the model's
    /// max_position_embeddings).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", value_parser = cloze_models::parse_device)]
    pub device: Device,
    /// Inference precision: fp32, bf16 (weights cast to bfloat16 once at load),
    /// or int8 (linear layers on libtorch's dynamic int8 kernel, CPU only;
    /// probabilities still computed in fp32).
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// JSON output: one line per sentence with its changes, or with --eval one
    /// object with the metrics.
    #[arg(long)]
    pub json: bool,
    /// Sentences to correct.
    pub text: Vec<String>,
}

/// `--threshold`: a number in `[0, 1)`, refused by clap naming the flag.
fn parse_threshold(text: &str) -> Result<f64, String> {
    let x: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(0.0..1.0).contains(&x) {
        return Err(format!(
            "{x} is not in [0, 1): the threshold is a difference of two probabilities"
        ));
    }
    Ok(x)
}

/// The confusion-set file: `--confusion` or the cached sighan15 one.
fn confusion_path(arg: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = arg {
        anyhow::ensure!(p.is_file(), "--confusion {}: no such file", p.display());
        return Ok(p.to_path_buf());
    }
    let root = datasets::cache_root()?;
    let p = datasets::dataset_dir(&root, SIGHAN15).join(SIGHAN15_CONFUSION);
    anyhow::ensure!(
        p.is_file(),
        "the default confusion set {} is missing: run `cloze data fetch {SIGHAN15}` \
         (or pass --confusion FILE)",
        p.display()
    );
    Ok(p)
}

/// The test-set file of `--eval`: an existing file, or `sighan15` in the cache.
fn eval_path(arg: &str) -> Result<PathBuf> {
    let path = Path::new(arg);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if arg == SIGHAN15 {
        return Ok(super::data::resolve(arg, "--eval")?.join(SIGHAN15_TEST));
    }
    bail!(
        "--eval {arg}: no such file; it takes `{SIGHAN15}` (after `cloze data fetch {SIGHAN15}`) \
         or a file of source<TAB>target lines"
    )
}

/// Reads the test set, naming an unaligned pair with the way around it.
fn read_test_set(path: &Path, skip_unaligned: bool) -> Result<CscDataset> {
    let read = if skip_unaligned {
        CscDataset::read_skipping_unaligned(path)
    } else {
        CscDataset::read(path)
    };
    match read {
        Ok(d) => Ok(d),
        Err(e @ cloze_eval::Error::UnalignedPair { .. }) => {
            bail!("{e}; pass --skip-unaligned to leave such pairs out (their lines are reported)")
        }
        Err(e) => Err(e.into()),
    }
}

/// Corrects the sentences, or evaluates on the test set.
pub fn run(args: CorrectArgs) -> Result<()> {
    let Opened { tok, truncation } = open_for_inference(&args.model, args.max_length, false)?;
    let confusion_file = confusion_path(args.confusion.as_deref())?;
    let confusion = ConfusionSet::from_file(&confusion_file)?;
    tracing::info!(file = %confusion_file.display(), chars = confusion.len(), "confusion set");
    let opts = CorrectOptions {
        threshold: args.threshold,
        mode: args.mode,
        batch_size: args.batch_size,
        max_len: truncation.max_len,
        device: args.device,
    };
    let limit = truncation.limit;
    if let Some(eval) = &args.eval {
        // The built-in set is known to hold 10 unaligned pairs (not errors of
        // the user's): they are left out, and listed, without a flag.
        let skip = args.skip_unaligned || eval == SIGHAN15;
        let data = read_test_set(&eval_path(eval)?, skip)?;
        let p = load_mlm(&args.model, args.device, args.precision)?;
        return evaluate(&args, &p.model, &tok, &confusion, &opts, &data, limit);
    }
    // (line number, text): line numbers only for --input.
    let sentences: Vec<(Option<usize>, String)> = match &args.input {
        Some(path) => read_lines(path)?
            .into_iter()
            .map(|l| (Some(l.number), l.text))
            .collect(),
        None => args.text.iter().map(|t| (None, t.clone())).collect(),
    };
    let p = load_mlm(&args.model, args.device, args.precision)?;
    let texts: Vec<String> = sentences.iter().map(|(_, t)| t.clone()).collect();
    let progress = BarProgress::default();
    let out = cloze_eval::correct_with(&p.model, &tok, &texts, &confusion, &opts, &progress)?;
    for (i, ((line, text), c)) in sentences.iter().zip(&out).enumerate() {
        if args.json {
            let mut record = serde_json::json!({"index": i, "text": text, "corrected": c.text,
                "changes": c.changes, "checked": c.checked, "unread_chars": c.unread_chars});
            if let Some(n) = line {
                record["line"] = (*n).into();
            }
            println!("{record}");
        } else {
            println!("{}", c.text);
        }
    }
    let name = |i: usize| match sentences[i].0 {
        Some(n) => format!(
            "line {n} of {}",
            args.input.as_deref().unwrap_or(Path::new("")).display()
        ),
        None => format!("text {} ({:?})", i + 1, snippet(&sentences[i].1, 20)),
    };
    if let Some(s) = unread_summary(&out, opts.max_len, limit, name) {
        eprintln!("{s}");
    }
    Ok(())
}

/// The warning about sentences the model could not read whole; `limit` is
/// the model's `max_position_embeddings`.
fn unread_summary(
    out: &[Correction],
    max_len: usize,
    limit: usize,
    name: impl Fn(usize) -> String,
) -> Option<String> {
    let first = out.iter().position(Correction::is_truncated)?;
    let n = out.iter().filter(|c| c.is_truncated()).count();
    let chars: usize = out.iter().map(|c| c.unread_chars).sum();
    let advice = if max_len < limit {
        format!("raise --max-length to read more (the model takes up to {limit})")
    } else {
        format!("the model takes at most {limit} tokens")
    };
    Some(format!(
        "warning: {n} of {} sentences are longer than {max_len} tokens (the first is {}); \
         only their beginning was corrected and the {chars} characters after it were left \
         unchanged; {advice}",
        out.len(),
        name(first)
    ))
}

/// Runs the corrector over the test set and prints the sentence-level metrics.
fn evaluate(
    args: &CorrectArgs,
    model: &dyn cloze_eval::MaskedLm,
    tok: &cloze_eval::ModelTokenizer,
    confusion: &ConfusionSet,
    opts: &CorrectOptions,
    data: &CscDataset,
    limit: usize,
) -> Result<()> {
    let sources: Vec<String> = data.pairs.iter().map(|p| p.source.clone()).collect();
    let progress = BarProgress::default();
    let start = Instant::now();
    let out = cloze_eval::correct_with(model, tok, &sources, confusion, opts, &progress)?;
    let seconds = start.elapsed().as_secs_f64();
    let predictions: Vec<String> = out.iter().map(|c| c.text.clone()).collect();
    let m = cloze_eval::csc_metrics(&data.pairs, &predictions)
        .with_context(|| format!("scoring {}", data.path.display()))?;
    let truncated = out.iter().filter(|c| c.is_truncated()).count();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"test_set": data.path, "model": args.model, "mode": opts.mode,
                "threshold": opts.threshold, "max_length": opts.max_len,
                "skipped_unaligned_lines": data.skipped, "truncated": truncated,
                "seconds": seconds, "metrics": m})
        );
    } else {
        println!(
            "{}: {} sentences, {} with errors{}",
            data.path.display(),
            m.sentences,
            m.erroneous,
            if data.skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} pairs of unequal length left out (lines {})",
                    data.skipped.len(),
                    data.skipped
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        println!(
            "mode {}, threshold {}, {seconds:.1} s; sentence level (SIGHAN15 convention):",
            opts.mode, opts.threshold
        );
        println!(
            "{:<12}{:>10}{:>11}{:>8}{:>8}",
            "", "accuracy", "precision", "recall", "F1"
        );
        for (name, s) in [("detection", &m.detection), ("correction", &m.correction)] {
            println!(
                "{name:<12}{:>10.4}{:>11.4}{:>8.4}{:>8.4}",
                s.accuracy, s.precision, s.recall, s.f1
            );
        }
        println!(
            "false positive rate {:.4} ({} of {} error-free sentences changed)",
            m.false_positive_rate,
            m.false_alarms,
            m.sentences.saturating_sub(m.erroneous)
        );
    }
    let name = |i: usize| format!("line {} of {}", data.pairs[i].line, data.path.display());
    if let Some(s) = unread_summary(&out, opts.max_len, limit, name) {
        eprintln!("{s}");
    }
    Ok(())
}

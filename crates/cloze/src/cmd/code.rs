//! `cloze code eval`: next-token accuracy of a code model (`cloze pretrain
//! --config cuglm-tiny` or `cuglm-complete`) or of a count baseline on a
//! split of a `cloze data code` directory; and `cloze complete`: the next
//! tokens at a place in a source file, with their predicted category.
//!
//! Accuracy is counted per token of the code tokenizer (an identifier split
//! into pieces counts each piece), over every token of every file of the
//! split: each file is cut into the chunks the trainer uses and each chunk
//! read left to right from `[CLS]`. "Identifiers" are the tokens of
//! identifier categories; categories are syntactic (tree-sitter), not
//! static types.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use cloze_code::Language;
use cloze_eval::code::{CompletionScores, NgramModel};
use cloze_mask::{CodeBuilder, CodeConfig, CodeRow};
use cloze_train::code::CodePretrainer;
use cloze_train::{PretrainModel, TensorBatch};
use serde::Serialize;
use tch::{Device, Kind};

use super::code_data::{category_name, is_identifier, model_info, CodeData};

/// `cloze code ...`.
#[derive(Debug, Args)]
pub struct CodeArgs {
    #[command(subcommand)]
    command: CodeCommand,
}

#[derive(Debug, Subcommand)]
enum CodeCommand {
    /// Next-token accuracy (top-1/top-5, all tokens and identifiers) on a split.
    Eval(EvalArgs),
}

/// What `cloze code eval` scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Baseline {
    /// The most frequent training tokens, whatever the context.
    Frequency,
    /// A count n-gram model with backoff (`--order`).
    Ngram,
}

/// Arguments of `cloze code eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A code model (RUN/model of a cuglm run).
    #[arg(long, required_unless_present = "baseline")]
    model: Option<PathBuf>,
    /// A count baseline trained on the data's train split instead of a model.
    #[arg(long, value_enum, conflicts_with = "model")]
    baseline: Option<Baseline>,
    /// Order of `--baseline ngram`.
    #[arg(long, default_value_t = 3)]
    order: usize,
    /// Row length of a baseline (a model uses its own).
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// The `cloze data code` directory.
    #[arg(long)]
    data: PathBuf,
    /// Splits to score (repeatable): test, test-package, valid.
    #[arg(long = "split", default_values_t = ["test".to_string(), "test-package".to_string()])]
    splits: Vec<String>,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Print one JSON object (one line) instead of the table.
    #[arg(long)]
    json: bool,
}

/// The scores of one split.
#[derive(Debug, Serialize)]
pub struct SplitScores {
    /// The split's name.
    pub split: String,
    /// Files scored.
    pub files: usize,
    /// The scores.
    pub scores: CompletionScores,
}

/// Runs `cloze code ...`.
pub fn run(a: CodeArgs) -> Result<()> {
    match a.command {
        CodeCommand::Eval(e) => eval(e),
    }
}

fn lm_builder(
    data: &CodeData,
    files: Vec<cloze_mask::CodeSequence>,
    max_len: usize,
) -> Result<CodeBuilder> {
    Ok(CodeBuilder::new(
        CodeConfig {
            max_len,
            mlm: false,
            ncp: false,
            lm: true,
            ..CodeConfig::default()
        },
        data.specials.clone(),
        files,
    )?)
}

/// The targets and categories of a left-to-right row.
fn row_targets(row: &CodeRow) -> (Vec<u32>, Vec<u8>) {
    let targets = row.next_targets.iter().map(|t| t.1).collect();
    let cats = row.categories.iter().map(|c| c.1).collect();
    (targets, cats)
}

fn eval(a: EvalArgs) -> Result<()> {
    let data = CodeData::open(&a.data)?;
    let model = match &a.model {
        Some(dir) => {
            let info = model_info(dir)?;
            let m = CodePretrainer::load(dir, Device::Cpu)
                .with_context(|| format!("loading {}", dir.display()))?
                .with_typed(info.typed);
            if m.config.vocab_size != i64::from(data.specials.vocab_size) {
                bail!(
                    "{} has {} word embeddings but {}'s tokenizer {} ids: score a model on data \
                     encoded with its own tokenizer",
                    dir.display(),
                    m.config.vocab_size,
                    a.data.display(),
                    data.specials.vocab_size
                );
            }
            Some((m, info.max_len))
        }
        None => None,
    };
    let baseline = match a.baseline {
        Some(kind) => {
            let order = match kind {
                Baseline::Frequency => 1,
                Baseline::Ngram => a.order,
            };
            let train = data.split("train")?;
            let mut seqs: Vec<Vec<u32>> = Vec::new();
            let b = lm_builder(&data, train, a.max_len)?;
            for i in 0..b.len() {
                if let Some(row) = b.left_to_right_row(i) {
                    seqs.push(row.input_ids);
                }
            }
            Some(NgramModel::train(order, seqs.iter().map(Vec::as_slice))?)
        }
        None => None,
    };
    let mut results = Vec::new();
    for split in &a.splits {
        let files = data.split(split)?;
        let n_files = files.len();
        let max_len = model.as_ref().map_or(a.max_len, |m| m.1);
        let b = lm_builder(&data, files, max_len)?;
        let mut scores = CompletionScores::default();
        let rows: Vec<CodeRow> = (0..b.len())
            .filter_map(|i| b.left_to_right_row(i))
            .collect();
        for chunk in rows.chunks(a.batch_size.max(1)) {
            match (&model, &baseline) {
                (Some((m, _)), _) => {
                    let _guard = tch::no_grad_guard();
                    let batch = b.collate(chunk.to_vec());
                    let tb = TensorBatch::from_batch(&batch, Device::Cpu)?;
                    let out = m.forward(&tb, false)?;
                    let logits = out.response_logits.context("the model gave no LM logits")?;
                    let (t, c): (Vec<u32>, Vec<u8>) = chunk
                        .iter()
                        .flat_map(|row| {
                            row.next_targets
                                .iter()
                                .map(|t| t.1)
                                .zip(row.categories.iter().map(|c| c.1))
                        })
                        .unzip();
                    scores.tally_logits(&logits, &t, &c, is_identifier)?;
                }
                (None, Some(ngram)) => {
                    for row in chunk {
                        let (t, c) = row_targets(row);
                        let ranked: Vec<Vec<u32>> = (0..t.len())
                            .map(|k| ngram.predict(&row.input_ids[..=k], 5))
                            .collect();
                        scores.tally_ranked(&ranked, &t, &c, is_identifier)?;
                    }
                }
                (None, None) => bail!("pass --model or --baseline"),
            }
        }
        results.push(SplitScores {
            split: split.clone(),
            files: n_files,
            scores,
        });
    }
    let what = match (&a.model, a.baseline) {
        (Some(d), _) => d.display().to_string(),
        (None, Some(Baseline::Frequency)) => "frequency baseline".into(),
        (None, _) => format!("{}-gram baseline", a.order),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "model": what, "splits": results }))?
        );
        return Ok(());
    }
    println!("{what}");
    println!(
        "{:<14} {:>6} {:>9} {:>7} {:>7} {:>9} {:>8} {:>8}",
        "split", "files", "tokens", "top-1", "top-5", "idents", "id top-1", "id top-5"
    );
    for r in &results {
        let (s, i) = (&r.scores.all, &r.scores.identifiers);
        println!(
            "{:<14} {:>6} {:>9} {:>6.1}% {:>6.1}% {:>9} {:>7.1}% {:>7.1}%",
            r.split,
            r.files,
            s.n,
            100.0 * s.top1_rate(),
            100.0 * s.top5_rate(),
            i.n,
            100.0 * i.top1_rate(),
            100.0 * i.top5_rate()
        );
    }
    Ok(())
}

/// Arguments of `cloze complete`.
#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// A code model (RUN/model of a cuglm run).
    #[arg(long)]
    model: PathBuf,
    /// The source file (`-` or absent: standard input, completed at its end).
    #[arg(long)]
    file: Option<PathBuf>,
    /// The language when reading standard input (else from the extension).
    #[arg(long, value_parser = ["java", "typescript"])]
    language: Option<String>,
    /// 1-based line of the place to complete (default: the end of the file).
    #[arg(long, requires = "col")]
    line: Option<usize>,
    /// 1-based column (in characters) of the place to complete.
    #[arg(long, requires = "line")]
    col: Option<usize>,
    /// Candidates to print.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Print one JSON object (one line).
    #[arg(long)]
    json: bool,
}

/// The byte offset of 1-based (line, column in characters) in `text`.
fn offset_of(text: &str, line: usize, col: usize) -> Result<usize> {
    let mut start = 0usize;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let body = l.trim_end_matches('\n');
            let chars = body.chars().count();
            if col == 0 || col > chars + 1 {
                bail!("column {col} is outside line {line} ({chars} characters)");
            }
            let within: usize = body.chars().take(col - 1).map(char::len_utf8).sum();
            return Ok(start + within);
        }
        start += l.len();
    }
    bail!("line {line} is past the end of the file")
}

/// One completion candidate.
#[derive(Debug, Serialize)]
struct Candidate {
    token: String,
    probability: f64,
}

/// Runs `cloze complete`.
pub fn complete(a: CompleteArgs) -> Result<()> {
    let (text, language) = match a.file.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let lang = match &a.language {
                Some(l) => Language::from_name(l),
                None => Language::from_path(path),
            }
            .with_context(|| {
                format!(
                    "{}: not a .java or .ts file (pass --language)",
                    path.display()
                )
            })?;
            (text, lang)
        }
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            let lang = a
                .language
                .as_deref()
                .and_then(Language::from_name)
                .context("reading standard input: pass --language java|typescript")?;
            (text, lang)
        }
    };
    let cut = match (a.line, a.col) {
        (Some(l), Some(c)) => offset_of(&text, l, c)?,
        _ => text.len(),
    };
    let info = model_info(&a.model)?;
    let data = CodeData::open(&a.model)?;
    let model = CodePretrainer::load(&a.model, Device::Cpu)?.with_typed(info.typed);
    // The prefix up to the place, lexed leniently: an unfinished statement
    // still gives its lexemes.
    let lexemes = cloze_code::lex_prefix(&text[..cut], language)?;
    let seq = data.encode(&lexemes)?;
    let keep = info.max_len.saturating_sub(1).max(1);
    let start = seq.ids.len().saturating_sub(keep);
    let b = lm_builder(&data, Vec::new(), info.max_len)?;
    // Only the last position is scored: it predicts the token to complete.
    let mut row = b.prompt(&seq.ids[start..]);
    row.next_targets.drain(..row.next_targets.len() - 1);
    let len = row.input_ids.len() as i64;
    let batch = b.collate(vec![row]);
    let tb = TensorBatch::from_batch(&batch, Device::Cpu)?;
    let _guard = tch::no_grad_guard();
    let out = model.forward(&tb, false)?;
    let logits = out.response_logits.context("the model gave no LM logits")?;
    let cat_logits = out
        .token_logits
        .context("the model gave no category logits")?;
    let cat_probs = cat_logits.get(0).get(len - 1).f_softmax(-1, Kind::Float)?;
    let cat_probs: Vec<f64> = Vec::<f64>::try_from(cat_probs.f_to_kind(Kind::Double)?)?;
    let (best_cat, best_p) =
        cat_probs.iter().enumerate().fold(
            (0usize, 0.0f64),
            |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc },
        );
    let probs = logits.get(0).f_softmax(-1, Kind::Float)?;
    let (vals, idx) = probs.f_topk(a.top_k.max(1) as i64, -1, true, true)?;
    let vals: Vec<f64> = Vec::<f64>::try_from(vals.f_to_kind(Kind::Double)?)?;
    let idx: Vec<i64> = Vec::<i64>::try_from(idx)?;
    let candidates: Vec<Candidate> = idx
        .iter()
        .zip(&vals)
        .map(|(&i, &p)| Candidate {
            token: data
                .tokenizer
                .token_text(i as u32)
                .unwrap_or_else(|| format!("<{i}>")),
            probability: p,
        })
        .collect();
    let category = category_name(best_cat as u8);
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({
                "category": category,
                "category_probability": best_p,
                "typed": info.typed,
                "candidates": candidates,
            }))?
        );
        return Ok(());
    }
    let note = if info.typed {
        "tokens predicted given it"
    } else {
        "the model is not type-then-token: tokens do not depend on it"
    };
    println!("next category: {category} ({:.1}%; {note})", 100.0 * best_p);
    for c in &candidates {
        println!("  {:<24} {:>5.1}%", c.token, 100.0 * c.probability);
    }
    Ok(())
}

//! `cloze code eval`: next-token accuracy of a code model (`cloze pretrain
//! --config cuglm-tiny` or `cuglm-complete`) or of a count baseline on a
//! split of a `cloze data code` directory; and `cloze complete`: the most
//! likely next identifiers (whole, through `complete_words`) or tokens at a
//! place in a source file, with the predicted category (docs/code.md).
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
use cloze_code::{continues_identifier, is_identifier_text, Language};
use cloze_eval::code::{complete_words, CompletionScores, NgramModel, WordPieces, WordSearch};
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
    /// Candidates to print (and the beam width of the word search).
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Most tokens of one proposed identifier.
    #[arg(long, default_value_t = 8)]
    max_pieces: usize,
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
    /// The identifier (or keyword, or single token) as typed.
    text: String,
    /// Its tokens.
    pieces: Vec<String>,
    /// Its probability under the model (pieces and the word's end).
    probability: f64,
    /// False for a token that cannot open an identifier (punctuation, literal).
    word: bool,
}

/// The code tokenizer's vocabulary as [`WordPieces`] (texts of the
/// non-special tokens, identifier rules of the code layer).
struct WordVocab {
    texts: Vec<Option<String>>,
}

impl WordVocab {
    fn new(data: &CodeData) -> Self {
        let special = &data.specials.all_special;
        let texts = (0..data.tokenizer.vocab_size())
            .map(|i| {
                if special.contains(&i) {
                    None
                } else {
                    data.tokenizer.token_text(i)
                }
            })
            .collect();
        Self { texts }
    }
}

impl WordPieces for WordVocab {
    fn vocab_size(&self) -> usize {
        self.texts.len()
    }
    fn text(&self, id: u32) -> Option<String> {
        self.texts.get(id as usize).cloned().flatten()
    }
    fn starts_word(&self, token: &str) -> bool {
        is_identifier_text(token)
    }
    fn continues_word(&self, word: &str, token: &str) -> bool {
        continues_identifier(word, token)
    }
}

/// A probability as a percentage, with significant digits even when tiny.
fn percent(p: f64) -> String {
    if p >= 0.001 {
        format!("{:.1}%", 100.0 * p)
    } else {
        format!("{:.1e}%", 100.0 * p)
    }
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
    // still gives its lexemes. A word touching the cursor is being typed:
    // it leaves the prompt and every candidate must start with it.
    let mut lexemes = cloze_code::lex_prefix(&text[..cut], language)?;
    let typed = match lexemes.last() {
        Some(l) if l.end as usize == cut && is_identifier_text(&l.text) => {
            lexemes.pop().map(|l| l.text).unwrap_or_default()
        }
        _ => String::new(),
    };
    let seq = data.encode(&lexemes)?;
    let keep = info.max_len.saturating_sub(1).max(1);
    let b = lm_builder(&data, Vec::new(), info.max_len)?;
    let vocab = WordVocab::new(&data);
    let _guard = tch::no_grad_guard();
    // Category of the next token (the same prompt for every candidate).
    let mut best_cat = (0usize, 0.0f64);
    let mut first_call = true;
    let next = |continuations: &[Vec<u32>]| -> cloze_eval::Result<Vec<Vec<f32>>> {
        let mut run = || -> Result<Vec<Vec<f32>>> {
            let rows = continuations
                .iter()
                .map(|more| {
                    let mut ids = seq.ids.clone();
                    ids.extend_from_slice(more);
                    let start = ids.len().saturating_sub(keep);
                    // Only the last position is scored: it predicts the next token.
                    let mut row = b.prompt(&ids[start..]);
                    row.next_targets.drain(..row.next_targets.len() - 1);
                    row
                })
                .collect::<Vec<_>>();
            let last = rows[0].input_ids.len() as i64 - 1;
            let tb = TensorBatch::from_batch(&b.collate(rows), Device::Cpu)?;
            if first_call {
                first_call = false;
                let cat = model
                    .forward(&tb, false)?
                    .token_logits
                    .context("the model gave no category logits")?
                    .get(0)
                    .get(last)
                    .f_softmax(-1, Kind::Double)?;
                let cat: Vec<f64> = Vec::<f64>::try_from(cat)?;
                for (i, &p) in cat.iter().enumerate() {
                    if p > best_cat.1 {
                        best_cat = (i, p);
                    }
                }
            }
            // A type-then-token model: the token marginal over categories.
            let probs = model.next_token_probs(&tb)?;
            Ok(Vec::<Vec<f32>>::try_from(probs)?)
        };
        run().map_err(|e| cloze_eval::Error::InvalidOption {
            name: "model",
            reason: format!("{e:#}"),
        })
    };
    let search = WordSearch {
        k: a.top_k.max(1),
        max_pieces: a.max_pieces,
        prefix: typed.clone(),
    };
    let found = complete_words(&vocab, &search, next)?;
    let (best_cat, best_p) = best_cat;
    let candidates: Vec<Candidate> = found
        .into_iter()
        .map(|c| Candidate {
            pieces: c
                .pieces
                .iter()
                .map(|&i| {
                    data.tokenizer
                        .token_text(i)
                        .unwrap_or_else(|| format!("<{i}>"))
                })
                .collect(),
            probability: c.probability(),
            word: c.word,
            text: c.text,
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
                "prefix": typed,
                "candidates": candidates,
            }))?
        );
        return Ok(());
    }
    let note = if info.typed {
        "token probabilities summed over every category, each weighted by its probability"
    } else {
        "the model is not type-then-token: tokens do not depend on it"
    };
    println!("next category: {category} ({:.1}%; {note})", 100.0 * best_p);
    if !typed.is_empty() {
        println!("completing `{typed}`");
    }
    if candidates.is_empty() {
        println!("  (no candidate within --max-pieces tokens)");
    }
    for c in &candidates {
        println!(
            "  {:<28} {:>9}  {}",
            c.text,
            percent(c.probability),
            c.pieces.join(" ")
        );
    }
    Ok(())
}

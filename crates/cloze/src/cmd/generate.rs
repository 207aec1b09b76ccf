//! `cloze generate`: sequence-to-sequence generation with a UniLM-v2 model
//! fine-tuned as s2s-ft does (`cloze_mask::Seq2SeqBuilder`'s layout): each
//! input line's source, greedy decoding or (`--beam N`) beam search with
//! s2s-ft's GNMT length penalty (`--length-penalty`), with the key/value
//! cache (or, with `--no-cache`, the whole row re-encoded every step), one
//! JSON line per input with the prediction, and the decoding speed in
//! tokens/s. The defaults are s2s-ft's `decode_seq2seq.py` ones (beam 1, no
//! length penalty, no n-gram blocking) except `--max-len`, which is its
//! training target length (48) rather than its decoding one (128). The
//! output file is written whole at the end (a temporary renamed over it), so
//! an interrupted run leaves an earlier file intact, and it may not be the
//! input.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_eval::generate::{beam_search, GenerateOptions, Generated, LengthPenalty};
use cloze_eval::s2s_generate::{greedy, Decoding, Seq2SeqTokens, UniLmDecoder};
use indicatif::{ProgressBar, ProgressStyle};
use tch::Device;

use super::fill_mask::{check_model_dir, load_mlm, load_tokenizer, read_model_config};

/// Arguments of `cloze generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Checkpoint directory of a model fine-tuned for generation (with its tokenizer).
    #[arg(long)]
    pub model: PathBuf,
    /// Inputs: JSON lines with a `source` field, or plain text lines.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write `{"source", "prediction"}` JSON lines (default: standard output).
    #[arg(long, visible_alias = "out")]
    pub output: Option<PathBuf>,
    /// Most tokens generated per input (s2s-ft's default target length is 48).
    #[arg(long, default_value_t = 48)]
    pub max_len: usize,
    /// Sources decoded together.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Re-encode source and prefix at every step instead of caching keys and
    /// values (the same output, slower; for comparison).
    #[arg(long)]
    pub no_cache: bool,
    /// Hypotheses kept per source; 1 is greedy (s2s-ft's `--beam_size`, default 1).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// GNMT length-penalty exponent: a finished hypothesis scores
    /// log-probability / ((5 + length) / 6)^A (s2s-ft's `--length_penalty`;
    /// 0, the default, is none).
    #[arg(long, default_value_t = 0.0, value_name = "A")]
    pub length_penalty: f64,
    /// Fewest tokens before `[SEP]` may end a prediction (s2s-ft's `--min_len`).
    #[arg(long, default_value_t = 0)]
    pub min_len: usize,
    /// Never repeat an n-gram of this size within a prediction (s2s-ft's
    /// `--forbid_duplicate_ngrams --ngram_size N`).
    #[arg(long, value_name = "N")]
    pub no_repeat_ngram: Option<usize>,
}

impl GenerateArgs {
    /// The search settings these flags ask for, ending sequences at `eos`.
    pub fn options(&self, eos: u32) -> GenerateOptions {
        GenerateOptions {
            beam_size: self.beam,
            max_len: self.max_len,
            min_len: self.min_len,
            length_penalty: if self.length_penalty == 0.0 {
                LengthPenalty::None
            } else {
                LengthPenalty::Gnmt {
                    alpha: self.length_penalty,
                }
            },
            eos,
            no_repeat_ngram: self.no_repeat_ngram,
            batch_size: self.batch_size,
        }
    }
}

/// A source line: the `source` field of a JSON object, else the line itself.
fn source_of(line: &str) -> Result<String> {
    let t = line.trim();
    if t.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(t).context("parsing a JSON line")?;
        return v["source"]
            .as_str()
            .map(str::to_owned)
            .context("a JSON line without a string field `source`");
    }
    Ok(t.to_owned())
}

/// Decoded text: WordPiece puts spaces between CJK characters; they are removed.
pub fn join_cjk(text: &str) -> String {
    let cjk = |c: char| matches!(c as u32, 0x3400..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F | 0x3000..=0x303F | 0xFF00..=0xFFEF);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' && i > 0 && i + 1 < chars.len() && cjk(chars[i - 1]) && cjk(chars[i + 1]) {
            continue;
        }
        out.push(c);
    }
    out
}

/// A generation model ready to decode: weights, tokenizer, special ids.
pub struct Generator {
    /// The model with its MLM head.
    pub model: cloze_models::Pretrained<cloze_models::BertForPreTraining>,
    /// Its tokenizer, truncating sources to leave room for the generated tokens.
    pub tok: cloze_eval::ModelTokenizer,
    /// The ids decoding needs.
    pub tokens: Seq2SeqTokens,
}

impl Generator {
    /// Loads `dir` for generating up to `max_len` tokens per source.
    pub fn load(dir: &std::path::Path, max_len: usize) -> Result<Self> {
        check_model_dir(dir, true)?;
        let config = read_model_config(dir)?;
        let room = usize::try_from(config.max_position_embeddings).unwrap_or(0);
        if room <= max_len + 2 {
            bail!(
                "--max-len {max_len} leaves no room for a source in the model's {room} positions"
            );
        }
        let tok = load_tokenizer(dir, room - max_len)?;
        let tokens = Seq2SeqTokens {
            cls: tok.cls,
            sep: tok.sep,
            pad: tok.pad,
            pseudo: tok.token_id("[PSEUDO_MASK]")?,
        };
        let model = load_mlm(dir, Device::Cpu, cloze_models::Precision::Fp32)?;
        Ok(Self { model, tok, tokens })
    }

    /// The sources' token ids, without the `[CLS]`/`[SEP]` decoding adds.
    fn encode(&self, sources: &[String]) -> Result<Vec<Vec<u32>>> {
        let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
        Ok(self
            .tok
            .encode_batch(&refs)?
            .into_iter()
            .map(|v| v.get(1..v.len().saturating_sub(1)).unwrap_or(&[]).to_vec())
            .collect())
    }

    /// Generates for `sources` (texts) with `decoding`: token ids per source
    /// (greedy, all sources in one batch).
    pub fn ids(
        &self,
        sources: &[String],
        max_len: usize,
        decoding: Decoding,
    ) -> Result<Vec<Vec<u32>>> {
        let ids = self.encode(sources)?;
        Ok(greedy(
            &self.model.model,
            &ids,
            self.tokens,
            max_len,
            decoding,
        )?)
    }

    /// Generates for `sources` (texts) under `options`: beam search when its
    /// beam is wider than 1, greedy otherwise (`options.eos` should be `[SEP]`).
    pub fn generate(
        &self,
        sources: &[String],
        options: &GenerateOptions,
        decoding: Decoding,
    ) -> Result<Vec<Generated>> {
        let ids = self.encode(sources)?;
        let decoder = UniLmDecoder {
            model: &self.model.model,
            tokens: self.tokens,
            max_len: options.max_len,
            decoding,
        };
        Ok(if options.beam_size > 1 {
            beam_search(&decoder, &ids, options)?
        } else {
            cloze_eval::generate::greedy(&decoder, &ids, options)?
        })
    }
}

/// The sources of an input file: one per non-blank line ([`source_of`]).
pub fn read_sources(path: &std::path::Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut sources = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {} line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        sources
            .push(source_of(&line).with_context(|| format!("{} line {}", path.display(), n + 1))?);
    }
    Ok(sources)
}

/// Runs `cloze generate`.
pub fn run(a: GenerateArgs) -> Result<()> {
    if a.max_len == 0 || a.batch_size == 0 || a.beam == 0 {
        bail!("--max-len, --batch-size and --beam must be at least 1");
    }
    if !a.length_penalty.is_finite() {
        bail!("--length-penalty {} is not a number", a.length_penalty);
    }
    if let Some(p) = &a.output {
        if p.exists() && std::fs::canonicalize(p)? == std::fs::canonicalize(&a.input)? {
            bail!("--output {} is the --input file", p.display());
        }
    }
    let g = Generator::load(&a.model, a.max_len)?;
    let options = a.options(g.tokens.sep);
    // Checked before any decoding (a bad --min-len fails here, not after the model ran).
    options.validate()?;
    let sources = read_sources(&a.input)?;
    let decoding = if a.no_cache {
        Decoding::Full
    } else {
        Decoding::Cached
    };
    let bar = ProgressBar::new(sources.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} sources  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let (mut text, mut steps, mut tokens) = (String::new(), 0usize, 0usize);
    let mut predictions = Vec::with_capacity(sources.len());
    for chunk in sources.chunks(a.batch_size) {
        let outs = g.generate(chunk, &options, decoding)?;
        for (src, o) in chunk.iter().zip(&outs) {
            // Each token and the [SEP] that ended it took a step.
            steps += o.len_with_eos();
            tokens += o.tokens.len();
            let prediction = join_cjk(&g.tok.decode(&o.tokens)?);
            text.push_str(
                &serde_json::json!({"source": src, "prediction": prediction}).to_string(),
            );
            text.push('\n');
            predictions.push(prediction);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    match &a.output {
        // A temporary beside the file, renamed over it: an interrupted run
        // leaves the earlier file whole.
        Some(p) => cloze_models::hf::write_atomic(p, text.as_bytes())
            .with_context(|| format!("writing {}", p.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    let search = if a.beam > 1 {
        format!("beam {}", a.beam)
    } else {
        "greedy".to_owned()
    };
    let penalty = if a.length_penalty == 0.0 {
        String::new()
    } else {
        format!(", length penalty {}", a.length_penalty)
    };
    eprintln!(
        "generated {} sequences, {tokens} tokens ({steps} steps with the ending [SEP]s) in \
         {secs:.2} s: {:.0} tokens/s ({search}{penalty}, {})",
        sources.len(),
        steps as f64 / secs.max(1e-9),
        if a.no_cache {
            "no cache: every step re-encodes"
        } else {
            "key/value cache"
        }
    );
    if let Some(targets) = read_targets(&a.input)? {
        let s = cloze_eval::generation_metrics::score_generation(
            &predictions,
            &targets,
            &cloze_eval::generation_metrics::BleuOptions::default(),
        )?;
        eprintln!(
            "against the inputs' targets ({} pairs): BLEU {:.2} (sacrebleu zh, no smoothing), \
             char F1 {:.4}, exact match {:.4}",
            s.count, s.bleu.score, s.char_f1, s.exact_match
        );
    }
    Ok(())
}

/// The `target` of every non-blank input line, when each is a JSON object
/// with one (a test split): what `cloze generate` scores its output against.
pub fn read_targets(path: &std::path::Path) -> Result<Option<Vec<String>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut targets = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            return Ok(None);
        };
        match v.get("target").and_then(serde_json::Value::as_str) {
            Some(t) => targets.push(t.to_owned()),
            None => return Ok(None),
        }
    }
    Ok((!targets.is_empty()).then_some(targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_spaces_are_removed_and_others_kept() {
        assert_eq!(join_cjk("床 前 明 月 光"), "床前明月光");
        assert_eq!(join_cjk("the united states"), "the united states");
        assert_eq!(join_cjk("a 中 文 b"), "a 中文 b");
    }

    #[test]
    fn sources_come_from_json_or_plain_lines() -> Result<()> {
        assert_eq!(source_of(r#"{"source": "x y", "target": "z"}"#)?, "x y");
        assert_eq!(source_of("  plain text ")?, "plain text");
        assert!(source_of(r#"{"target": "z"}"#).is_err());
        Ok(())
    }
}

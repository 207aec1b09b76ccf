//! `cloze tokenizer`: train a WordPiece vocabulary on a corpus.
//!
//! `train` follows the `cloze-fs` output rule: `--out` is checked and locked
//! before the corpus is read (never a file, the current directory, a
//! read-only place, a directory holding the corpus, or someone else's
//! directory; an earlier tokenizer output only with `--force`), and the two
//! files are written into `.OUT.partial-PID-*` and renamed into place. Ctrl-C
//! stops training, writes nothing and exits 130.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cloze_fs::OutputDir;
use cloze_text::corpus::{self, CorpusOptions};
use cloze_text::tokenizer::{
    output_kind, save_tokenizer_files, train_wordpiece_with, TrainOptions, TrainReport, VocabStop,
    RESERVED,
};
use cloze_text::Progress;

use super::data::BarProgress;
use super::interrupt::{self, Interrupted};

/// Arguments of `cloze tokenizer`.
#[derive(Debug, Args)]
pub struct TokenizerArgs {
    #[command(subcommand)]
    command: TokenizerCommand,
}

#[derive(Debug, Subcommand)]
enum TokenizerCommand {
    /// Train a BERT WordPiece vocabulary; writes tokenizer.json and vocab.txt.
    Train(TrainArgs),
}

/// Arguments of `cloze tokenizer train`.
#[derive(Debug, Args)]
struct TrainArgs {
    /// Corpus file or directory (text in BERT format, JSONL, optionally .gz),
    /// or a cached dataset name such as `sotu`.
    #[arg(long)]
    corpus: String,
    /// Vocabulary size, reserved tokens included.
    #[arg(long, default_value_t = 30522)]
    vocab_size: usize,
    /// Output directory: created, or replaced when it is empty or (with
    /// --force) an earlier `cloze tokenizer train` output; anything else is refused.
    #[arg(long)]
    out: PathBuf,
    /// Replace --out when it holds an earlier `cloze tokenizer train` output
    /// (never other files, never a directory holding the corpus).
    #[arg(long)]
    force: bool,
    /// Lower-case text (BERT uncased; the default).
    #[arg(long, overrides_with = "no_lowercase")]
    lowercase: bool,
    /// Keep case (BERT cased).
    #[arg(long)]
    no_lowercase: bool,
    /// Strip accents (default: follow --lowercase, as BERT does).
    #[arg(long)]
    strip_accents: bool,
    /// Never strip accents.
    #[arg(long, conflicts_with = "strip_accents")]
    keep_accents: bool,
    /// Minimum frequency of a merged pair.
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    /// Keep only the N most frequent characters as the alphabet (default: all).
    #[arg(long)]
    limit_alphabet: Option<usize>,
    /// Replace invalid UTF-8 instead of failing.
    #[arg(long)]
    lossy_utf8: bool,
    /// Longest accepted line in bytes (a longer one is an error naming this flag).
    #[arg(long, default_value_t = CorpusOptions::default().max_line_bytes)]
    max_line_bytes: usize,
}

/// Runs `cloze tokenizer ...`.
pub fn run(args: TokenizerArgs) -> Result<()> {
    match args.command {
        TokenizerCommand::Train(a) => train(a),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let _span = tracing::info_span!("tokenizer_train").entered();
    let options = TrainOptions {
        vocab_size: args.vocab_size,
        lowercase: !args.no_lowercase,
        strip_accents: if args.strip_accents {
            Some(true)
        } else if args.keep_accents {
            Some(false)
        } else {
            None
        },
        min_frequency: args.min_frequency,
        limit_alphabet: args.limit_alphabet,
    };
    let corpus_options = CorpusOptions {
        lossy_utf8: args.lossy_utf8,
        max_line_bytes: args.max_line_bytes,
        ..CorpusOptions::default()
    };
    let corpus_path = super::data::resolve(&args.corpus, "corpus")?;
    let total = corpus::corpus_bytes(&corpus_path)
        .with_context(|| format!("reading corpus {}", corpus_path.display()))?;
    // Installed before the output is locked: once the lock exists, Ctrl-C
    // stops cleanly instead of killing the process.
    let stop = interrupt::install("stopping training; nothing will be written")?;
    let guard = OutputDir::check(
        &args.out,
        &output_kind(),
        &[corpus_path.as_path()],
        args.force,
    )?;
    let progress = BarProgress::with_stop(stop.clone());
    progress.stage("reading", Some(total), "bytes");
    // The trainer consumes a plain iterator of strings, so a reader error is
    // parked here and returned after training stops.
    let failure: Arc<Mutex<Option<cloze_text::Error>>> = Arc::default();
    let lines = corpus::lines(&corpus_path, corpus_options)?;
    let sink = failure.clone();
    let progress_ref = &progress;
    let texts = lines.map_while(move |line| match line {
        Ok(l) => {
            progress_ref.advance(l.len() as u64 + 1);
            Some(l)
        }
        Err(e) => {
            if let Ok(mut slot) = sink.lock() {
                *slot = Some(e);
            }
            None
        }
    });
    let trained = train_wordpiece_with(texts, &options, &progress);
    progress.finish();
    if stop.load(Ordering::SeqCst) {
        return Err(anyhow::Error::new(Interrupted(format!(
            "tokenizer train interrupted: nothing was written to {}; run the same command again to train",
            args.out.display()
        ))));
    }
    if let Some(e) = failure.lock().ok().and_then(|mut s| s.take()) {
        return Err(e).with_context(|| format!("reading corpus {}", corpus_path.display()));
    }
    let trained = trained?;
    let tok = trained.tokenizer;
    let staging = guard.staging()?;
    save_tokenizer_files(&tok, staging.path())?;
    let published = guard
        .publish(staging)
        .with_context(|| format!("publishing {}", args.out.display()))?;
    if let Some(note) = size_note(&trained.report) {
        tracing::warn!("{note}");
    }
    println!(
        "tokenizer: {} tokens (reserved: {}), hash {}, written to {}",
        tok.vocab_size(),
        RESERVED.join(" "),
        &tok.hash()[..16],
        published.display()
    );
    Ok(())
}

/// Why the vocabulary is not the size asked for, in words the user can act
/// on; `None` when it is.
fn size_note(r: &TrainReport) -> Option<String> {
    if r.vocab_size > r.requested {
        return Some(format!(
            "vocabulary has {} tokens, more than the {} asked for: the corpus alone needs the {} \
             reserved tokens, {} distinct characters and {} ## continuation pieces; pass \
             --limit-alphabet to keep only the most frequent characters",
            r.vocab_size, r.requested, r.reserved, r.alphabet, r.continuation
        ));
    }
    if !r.is_short() {
        return None;
    }
    let then = match r.stop {
        VocabStop::NoPairs => "after which every word is a single token".to_string(),
        VocabStop::BelowMinFrequency { count } => format!(
            "after which the most frequent pair occurs only {count} time{}",
            if count == 1 { "" } else { "s" }
        ),
        VocabStop::Reached => "and the size was reached".to_string(),
    };
    Some(format!(
        "vocabulary has {} tokens, fewer than the {} asked for: the corpus has only {} distinct \
         characters (with {} ## continuation pieces and the {} reserved tokens) and {} pairs \
         occurring at least --min-frequency ({}) times, {then}. Use a larger corpus or a lower \
         --min-frequency for more tokens, or --vocab-size {} to ask for what this corpus gives",
        r.vocab_size,
        r.requested,
        r.alphabet,
        r.continuation,
        r.reserved,
        r.merges,
        r.min_frequency,
        r.vocab_size
    ))
}

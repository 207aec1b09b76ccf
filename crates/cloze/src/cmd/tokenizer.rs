//! `cloze tokenizer`: train a WordPiece vocabulary on a corpus.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cloze_text::corpus::{self, CorpusOptions};
use cloze_text::tokenizer::{save_tokenizer_dir, train_wordpiece, TrainOptions, RESERVED};
use cloze_text::Progress;

use super::data::BarProgress;

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
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
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
        ..CorpusOptions::default()
    };
    let corpus_path = super::data::resolve(&args.corpus, "corpus")?;
    let total = corpus::corpus_bytes(&corpus_path)
        .with_context(|| format!("reading corpus {}", corpus_path.display()))?;
    let progress = BarProgress::default();
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
    let tok = train_wordpiece(texts, &options)?;
    progress.finish();
    if let Some(e) = failure.lock().ok().and_then(|mut s| s.take()) {
        return Err(e).with_context(|| format!("reading corpus {}", corpus_path.display()));
    }
    save_tokenizer_dir(&tok, &args.out)?;
    println!(
        "tokenizer: {} tokens (reserved: {}), hash {}, written to {}",
        tok.vocab_size(),
        RESERVED.join(" "),
        &tok.hash()[..16],
        args.out.display()
    );
    Ok(())
}

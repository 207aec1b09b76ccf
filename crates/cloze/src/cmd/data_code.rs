//! `cloze data code`: lexed source files for code-aware MLM (CugLM), from
//! the JDK's Java sources, the TypeScript of three npm packages (the
//! `jdk-src` and `ts-src` datasets) or any directory of `.java`/`.ts` files,
//! read by `cloze_code` (tree-sitter) and split by file and by package.
//!
//! `OUT/{train,valid,test,test-package}.jsonl` hold one lexed file a line:
//! `{"path": "java.base/java/util/List.java", "package": "java.base",
//! "language": "java", "lexemes": [["public", "keyword"], ["interface",
//! "keyword"], ["List", "type_name"], ...]}`, comments dropped, every
//! lexeme with its syntactic category (from tree-sitter node kinds, not
//! static types). `test-package.jsonl` is the held-out package (a JDK
//! module, an npm package) for the cross-project test; the other files go
//! to train, valid and test by a hash of their path. `OUT/tokenizer/` is
//! the code tokenizer trained on the train split (`cloze_code::CodeTokenizer`:
//! `tokenizer.json`, `vocab.txt`, `code_tokenizer.json`); `OUT/code.json`
//! the settings and counts (files, skipped unparseable files, lexemes,
//! tokens and lexemes per category, per split). `--out` follows the
//! `cloze-fs` rule of the other data commands: never a file or someone
//! else's directory, its own earlier output only with `--force`, written
//! into a staging directory and renamed into place.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_code::{
    read_corpus, split_files, CodeCategory, CodeFile, CodeSplits, CodeTokenizer,
    CodeTokenizerOptions, ReadOptions, SkippedFile, Split, SplitOptions,
};
use cloze_fetch::{code as code_datasets, datasets};
use cloze_fs::{OutputDir, OutputKind};
use cloze_text::Progress as _;
use rayon::prelude::*;
use serde::Serialize;

use super::data::BarProgress;
use super::interrupt::{self, Interrupted};

/// Arguments of `cloze data code`.
#[derive(Debug, Args)]
pub struct CodeArgs {
    /// `jdk-src` (JDK 17 library sources, Java) or `ts-src` (TypeScript of
    /// effect, zod and rxjs), from the cache (`cloze data fetch jdk-src`);
    /// or a directory of `.java` and `.ts` files (its first-level
    /// directories are the packages).
    #[arg(long)]
    corpus: String,
    /// Output directory: created, or replaced when it is empty or (with
    /// --force) an earlier `cloze data code` output; anything else is refused.
    #[arg(long)]
    out: PathBuf,
    /// Vocabulary size of the code tokenizer (reserved tokens included).
    #[arg(long, default_value_t = 8000, value_parser = clap::value_parser!(u32).range(7..))]
    vocab_size: u32,
    /// Minimum pair frequency of a WordPiece merge.
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    /// Most tokens kept of one literal.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    max_literal_tokens: u32,
    /// The package (first-level directory) held out whole for the
    /// cross-project test. Default: jdk.compiler for jdk-src, zod for
    /// ts-src, none for a directory; `--heldout-package ''` holds none out.
    #[arg(long, value_name = "NAME")]
    heldout_package: Option<String>,
    /// Percent of the other files for validation.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=50))]
    valid_percent: u8,
    /// Percent of the other files for test.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=50))]
    test_percent: u8,
    /// Salt of the path hash that splits files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Replace invalid UTF-8 with U+FFFD instead of failing.
    #[arg(long)]
    lossy_utf8: bool,
    /// Replace --out when it holds an earlier `cloze data code` output.
    #[arg(long)]
    force: bool,
}

/// A resolved `--corpus`.
struct Corpus {
    dir: PathBuf,
    /// The held-out package when `--heldout-package` is not given.
    default_heldout: Option<&'static str>,
}

fn resolve(arg: &str) -> Result<Corpus> {
    let path = Path::new(arg);
    if path.exists() {
        if !path.is_dir() {
            bail!(
                "corpus {} is a file: give a directory of .java and .ts files",
                path.display()
            );
        }
        return Ok(Corpus {
            dir: path.to_path_buf(),
            default_heldout: None,
        });
    }
    let default_heldout = match arg {
        "jdk-src" => code_datasets::JDK_HELD_OUT,
        "ts-src" => code_datasets::TS_HELD_OUT,
        _ => bail!("corpus {arg:?} is neither jdk-src, ts-src nor an existing directory"),
    };
    let root = datasets::cache_root()?;
    let cached = datasets::list(&root)
        .iter()
        .any(|l| l.dataset.name == arg && l.cached);
    if !cached {
        bail!(
            "corpus {arg:?} is a dataset that is not cached yet: run `cloze data fetch {arg}` first"
        );
    }
    Ok(Corpus {
        dir: datasets::dataset_dir(&root, arg),
        default_heldout: Some(default_heldout),
    })
}

/// The output kind of `cloze data code`.
fn output_kind() -> OutputKind {
    OutputKind::new("data code", "--force")
}

/// One line of a split file.
#[derive(Serialize)]
struct Record<'a> {
    path: &'a str,
    package: &'a str,
    language: &'a str,
    lexemes: Vec<(&'a str, &'static str)>,
}

/// The counts of one split.
#[derive(Debug, Clone, Default, Serialize)]
struct SplitCounts {
    files: usize,
    lexemes: usize,
    identifiers: usize,
    /// Code tokens (sub-tokens) of the trained tokenizer.
    tokens: usize,
    /// Lexemes per category, every category listed.
    categories: BTreeMap<&'static str, usize>,
    /// The packages of the split's files.
    packages: Vec<String>,
}

impl SplitCounts {
    fn of(files: &[CodeFile], tokens: usize) -> Self {
        let mut categories: BTreeMap<&'static str, usize> =
            CodeCategory::ALL.iter().map(|c| (c.name(), 0)).collect();
        let mut lexemes = 0;
        let mut identifiers = 0;
        for l in files.iter().flat_map(|f| &f.lexemes) {
            lexemes += 1;
            identifiers += usize::from(l.category.is_identifier());
            *categories.entry(l.category.name()).or_default() += 1;
        }
        Self {
            files: files.len(),
            lexemes,
            identifiers,
            tokens,
            categories,
            packages: cloze_code::corpus::packages(files),
        }
    }
}

/// The tokenizer's part of `code.json`.
#[derive(Serialize)]
struct TokenizerSummary {
    vocab_size: usize,
    requested: usize,
    min_frequency: u64,
    max_literal_tokens: usize,
    /// Why the vocabulary has its size.
    stop: String,
}

/// What `code.json` records.
#[derive(Serialize)]
struct Summary<'a> {
    corpus: &'a str,
    input: String,
    /// A reminder for whoever reads the counts.
    categories_are: &'static str,
    heldout_package: Option<&'a str>,
    valid_percent: u8,
    test_percent: u8,
    seed: u64,
    /// Source files that did not parse (skipped), and which.
    skipped: usize,
    skipped_files: &'a [SkippedFile],
    /// Files whose invalid UTF-8 was replaced (`--lossy-utf8`).
    lossy_utf8_files: usize,
    splits: BTreeMap<&'static str, SplitCounts>,
    tokenizer: TokenizerSummary,
    /// Wall time of each stage, seconds.
    seconds: BTreeMap<&'static str, f64>,
}

fn write_split(path: &Path, files: &[CodeFile]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    for f in files {
        let record = Record {
            path: &f.path,
            package: &f.package,
            language: f.language.name(),
            lexemes: f
                .lexemes
                .iter()
                .map(|l| (l.text.as_str(), l.category.name()))
                .collect(),
        };
        serde_json::to_writer(&mut w, &record)?;
        w.write_all(b"\n")?;
    }
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Code tokens of `files` under `tok`, in parallel.
fn count_tokens(tok: &CodeTokenizer, files: &[CodeFile]) -> Result<usize> {
    files
        .par_iter()
        .map(|f| {
            tok.encode(&f.lexemes)
                .map(|e| e.len())
                .with_context(|| format!("encoding {}", f.path))
        })
        .sum()
}

struct Built {
    splits: CodeSplits,
    counts: BTreeMap<&'static str, SplitCounts>,
}

/// Everything after reading: the tokenizer, the split files, `code.json`.
#[allow(clippy::too_many_arguments)]
fn write_output(
    dir: &Path,
    args: &CodeArgs,
    corpus: &Corpus,
    heldout: Option<&str>,
    splits: CodeSplits,
    skipped: &[SkippedFile],
    lossy_files: usize,
    progress: &BarProgress,
    mut seconds: BTreeMap<&'static str, f64>,
) -> Result<Built> {
    if splits.train.is_empty() {
        bail!(
            "no training files: every file of {} is held out or in valid/test",
            corpus.dir.display()
        );
    }
    let started = Instant::now();
    progress.message(&format!(
        "training a {}-token code vocabulary on {} files",
        args.vocab_size,
        splits.train.len()
    ));
    let options = CodeTokenizerOptions {
        vocab_size: args.vocab_size as usize,
        min_frequency: args.min_frequency,
        max_literal_tokens: args.max_literal_tokens as usize,
    };
    let (tok, report) = CodeTokenizer::train(
        splits.train.iter().map(|f| f.lexemes.as_slice()),
        &options,
        progress,
    )
    .context("training the code tokenizer")?;
    seconds.insert("train_tokenizer", started.elapsed().as_secs_f64());
    let tok_dir = dir.join("tokenizer");
    std::fs::create_dir(&tok_dir).with_context(|| format!("creating {}", tok_dir.display()))?;
    tok.save_files(&tok_dir)
        .with_context(|| format!("saving the tokenizer into {}", tok_dir.display()))?;

    let started = Instant::now();
    let mut counts = BTreeMap::new();
    let total: u64 = Split::ALL.iter().map(|&s| splits.get(s).len() as u64).sum();
    progress.stage("write", Some(total), "files");
    for split in Split::ALL {
        let files = splits.get(split);
        write_split(&dir.join(format!("{}.jsonl", split.name())), files)?;
        let tokens = count_tokens(&tok, files)?;
        counts.insert(split.name(), SplitCounts::of(files, tokens));
        progress.advance(files.len() as u64);
        if progress.cancelled() {
            bail!("interrupted");
        }
    }
    progress.finish();
    seconds.insert("write_and_count", started.elapsed().as_secs_f64());

    let summary = Summary {
        corpus: &args.corpus,
        input: corpus.dir.display().to_string(),
        categories_are:
            "syntactic categories from tree-sitter node kinds and their parents, not static types",
        heldout_package: heldout,
        valid_percent: args.valid_percent,
        test_percent: args.test_percent,
        seed: args.seed,
        skipped: skipped.len(),
        skipped_files: skipped,
        lossy_utf8_files: lossy_files,
        splits: counts.clone(),
        tokenizer: TokenizerSummary {
            vocab_size: report.vocab_size,
            requested: report.requested,
            min_frequency: report.min_frequency,
            max_literal_tokens: tok.max_literal_tokens(),
            stop: format!("{:?}", report.stop),
        },
        seconds,
    };
    let path = dir.join("code.json");
    let mut json = serde_json::to_string_pretty(&summary)?;
    json.push('\n');
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(Built { splits, counts })
}

/// Runs `cloze data code`.
pub fn run(args: CodeArgs) -> Result<()> {
    let corpus = resolve(&args.corpus)?;
    let heldout = match &args.heldout_package {
        Some(name) if name.trim().is_empty() => None,
        Some(name) => Some(name.trim().to_string()),
        None => corpus.default_heldout.map(str::to_string),
    };
    if u16::from(args.valid_percent) + u16::from(args.test_percent) >= 100 {
        bail!("--valid-percent and --test-percent leave no training files");
    }
    let stop = interrupt::install("stopping; nothing will be published")?;
    let guard = OutputDir::check(
        &args.out,
        &output_kind(),
        &[corpus.dir.as_path()],
        args.force,
    )?;
    let progress = BarProgress::with_stop(stop.clone());
    let interrupted = || {
        anyhow::Error::new(Interrupted(format!(
            "data code interrupted: nothing was published to {} (anything already there is untouched)",
            args.out.display()
        )))
    };

    let started = Instant::now();
    let read = read_corpus(
        &corpus.dir,
        &ReadOptions {
            lossy_utf8: args.lossy_utf8,
        },
        &progress,
    );
    if stop.load(Ordering::SeqCst) {
        return Err(interrupted());
    }
    let read = read.with_context(|| format!("reading the sources of {}", corpus.dir.display()))?;
    let mut seconds = BTreeMap::new();
    seconds.insert("lex", started.elapsed().as_secs_f64());
    let lexemes: usize = read.files.iter().map(|f| f.lexemes.len()).sum();
    progress.message(&format!(
        "lexed {} files ({} lexemes) in {:.1} s; {} skipped (do not parse)",
        read.files.len(),
        lexemes,
        seconds["lex"],
        read.skipped.len()
    ));
    let options = SplitOptions {
        valid_percent: args.valid_percent,
        test_percent: args.test_percent,
        heldout_package: heldout.clone(),
        seed: args.seed,
    };
    let splits = split_files(read.files, &options).context("splitting (--heldout-package)")?;

    let staging = guard.staging()?;
    let result = write_output(
        staging.path(),
        &args,
        &corpus,
        heldout.as_deref(),
        splits,
        &read.skipped,
        read.lossy_files,
        &progress,
        seconds,
    );
    progress.finish();
    if stop.load(Ordering::SeqCst) {
        drop(staging);
        return Err(interrupted());
    }
    let built =
        result.with_context(|| format!("writing the code data into {}", args.out.display()))?;
    let dir = guard
        .publish(staging)
        .with_context(|| format!("publishing {}", args.out.display()))?;
    println!(
        "wrote {} from {} (categories are syntactic, from tree-sitter; see code.json)",
        dir.display(),
        corpus.dir.display()
    );
    for split in Split::ALL {
        let c = &built.counts[split.name()];
        let from = if split == Split::TestPackage {
            match &heldout {
                Some(p) => format!(" (package {p})"),
                None => " (no package held out)".into(),
            }
        } else {
            String::new()
        };
        println!(
            "  {:<12} {:>6} files {:>10} lexemes {:>9} identifiers {:>10} tokens{from}",
            split.name(),
            c.files,
            c.lexemes,
            c.identifiers,
            c.tokens
        );
    }
    println!(
        "  skipped {} files that do not parse; {} packages in train",
        read.skipped.len(),
        built
            .splits
            .train
            .iter()
            .map(|f| &f.package)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    Ok(())
}

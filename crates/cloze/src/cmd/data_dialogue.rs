//! `cloze data dialogue`: dialogue samples for PLATO-style models from
//! Shakespeare's plays or chatterbot conversations (read by
//! `cloze_text::dialogue`), split by source so that no play or conversation
//! file is in two splits.
//!
//! `OUT/{train,valid,test}.jsonl` hold one sample a line:
//! `{"source": "hamlet", "dialogue": "hamlet/1.2", "context": [{"speaker":
//! "King", "text": "..."}, ...], "response": {"speaker": "Ham", "text":
//! "..."}}`, the context being up to `--max-context-turns` earlier turns of the
//! same scene or conversation; `OUT/corpus.txt` every turn text of the train
//! split, one a line (for `cloze tokenizer train --corpus`);
//! `OUT/dialogue.json` the settings, the sources of each split and their
//! counts. `--out` follows the `cloze-fs` rule of `cloze data tasks`: never
//! a file or someone else's directory, its own earlier output only with
//! `--force`, written into a staging directory and renamed into place.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_fetch::datasets;
use cloze_fs::{OutputDir, OutputKind};
use cloze_text::dialogue::{
    read_chatterbot_dir, read_shakespeare, samples, split_by_source, Dialogue, DialogueCounts,
    SourceSplit, CHATTERBOT_CHINESE_SPLIT, CHATTERBOT_ENGLISH_SPLIT, SHAKESPEARE_SPLIT,
};
use serde::Serialize;

use super::interrupt::{self, Interrupted};

/// Arguments of `cloze data dialogue`.
#[derive(Debug, Args)]
pub struct DialogueArgs {
    /// `shakespeare` (35 First-Folio plays, one dialogue per scene),
    /// `chatterbot-en` or `chatterbot-zh` (chatterbot-corpus conversations),
    /// from the cache (`cloze data fetch shakespeare|chatterbot`); or a
    /// directory of plays (`*.txt` in the Folio transcriptions' layout) or of
    /// chatterbot `*.yml` files.
    #[arg(long)]
    corpus: String,
    /// Output directory: created, or replaced when it is empty or (with
    /// --force) an earlier `cloze data dialogue` output; anything else is refused.
    #[arg(long)]
    out: PathBuf,
    /// Turns before each response given as its context (1 or more).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    max_context_turns: u32,
    /// Validation sources, comma-separated: play names (`hamlet`) or yml file
    /// stems (`greetings`). Default: julius_caesar,as_you_like_it,richard_ii
    /// for shakespeare; money,movies,psychology for chatterbot-en; money,movies
    /// for chatterbot-zh; none for a directory. `--valid ''` holds none out.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    valid: Option<Vec<String>>,
    /// Test sources, comma-separated. Default: hamlet,twelfe-night,henry_v
    /// for shakespeare; emotion,literature,history for chatterbot-en; emotion
    /// for chatterbot-zh; none for a directory.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    test: Option<Vec<String>>,
    /// Replace --out when it holds an earlier `cloze data dialogue` output.
    #[arg(long)]
    force: bool,
}

/// The files of an output, besides the `cloze-fs` marker.
const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// How a corpus is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Reader {
    Shakespeare,
    Chatterbot,
}

/// A resolved `--corpus`.
struct Corpus {
    dir: PathBuf,
    reader: Reader,
    /// The id prefix of chatterbot dialogues (`english`).
    label: String,
    split: Option<SourceSplit>,
}

impl Corpus {
    fn read(&self) -> Result<Vec<Dialogue>> {
        let read = match self.reader {
            Reader::Shakespeare => read_shakespeare(&self.dir),
            Reader::Chatterbot => read_chatterbot_dir(&self.dir, &self.label),
        };
        read.with_context(|| format!("reading the dialogues of {}", self.dir.display()))
    }
}

/// The directory of a cached dataset, or the message that says how to fetch it.
fn cached(corpus: &str, dataset: &str) -> Result<PathBuf> {
    let root = datasets::cache_root()?;
    let cached = datasets::list(&root)
        .iter()
        .any(|l| l.dataset.name == dataset && l.cached);
    if !cached {
        bail!(
            "corpus {corpus:?} is the {dataset} dataset, which is not cached yet: \
             run `cloze data fetch {dataset}` first"
        );
    }
    Ok(datasets::dataset_dir(&root, dataset))
}

fn has_files(dir: &Path, ext: &str) -> Result<bool> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == ext) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn resolve(arg: &str) -> Result<Corpus> {
    let path = Path::new(arg);
    if path.exists() {
        if !path.is_dir() {
            bail!(
                "corpus {} is a file: give a directory of plays (*.txt) or of chatterbot *.yml files",
                path.display()
            );
        }
        let label = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "dialogues".into());
        let reader = if has_files(path, "txt")? {
            Reader::Shakespeare
        } else if has_files(path, "yml")? {
            Reader::Chatterbot
        } else {
            bail!(
                "corpus {} holds neither plays (*.txt) nor chatterbot conversations (*.yml)",
                path.display()
            );
        };
        return Ok(Corpus {
            dir: path.to_path_buf(),
            reader,
            label,
            split: None,
        });
    }
    let chatterbot = |language: &str, split| -> Result<Corpus> {
        Ok(Corpus {
            dir: cached(arg, "chatterbot")?.join(language),
            reader: Reader::Chatterbot,
            label: language.into(),
            split: Some(split),
        })
    };
    match arg {
        "shakespeare" => Ok(Corpus {
            dir: cached(arg, "shakespeare")?.join("plays"),
            reader: Reader::Shakespeare,
            label: String::new(),
            split: Some(SHAKESPEARE_SPLIT),
        }),
        "chatterbot-en" => chatterbot("english", CHATTERBOT_ENGLISH_SPLIT),
        "chatterbot-zh" => chatterbot("chinese", CHATTERBOT_CHINESE_SPLIT),
        _ => bail!(
            "corpus {arg:?} is neither shakespeare, chatterbot-en, chatterbot-zh \
             nor an existing directory"
        ),
    }
}

/// `--valid`/`--test` as given (empty names dropped), else the corpus's default.
fn names(given: &Option<Vec<String>>, default: Option<&'static [&'static str]>) -> Vec<String> {
    match given {
        Some(v) => v
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => default
            .unwrap_or(&[])
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }
}

/// One value per split.
#[derive(Serialize)]
struct PerSplit<T> {
    train: T,
    valid: T,
    test: T,
}

/// What `dialogue.json` records.
#[derive(Serialize)]
struct Summary<'a> {
    corpus: &'a str,
    reader: Reader,
    input: String,
    max_context_turns: u32,
    /// Each split's sources, in reading order.
    sources: PerSplit<Vec<String>>,
    counts: PerSplit<DialogueCounts>,
}

/// The output kind of `cloze data dialogue`.
fn output_kind() -> OutputKind {
    OutputKind::new("data dialogue", "--force")
}

fn write_lines<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    for item in items {
        serde_json::to_writer(&mut w, item)?;
        w.write_all(b"\n")?;
    }
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_output(
    dir: &Path,
    args: &DialogueArgs,
    corpus: &Corpus,
    splits: [&[Dialogue]; 3],
) -> Result<[DialogueCounts; 3]> {
    let max = args.max_context_turns as usize;
    for (name, dialogues) in SPLITS.iter().zip(splits) {
        write_lines(&dir.join(format!("{name}.jsonl")), &samples(dialogues, max))?;
    }
    let path = dir.join("corpus.txt");
    let mut w = BufWriter::new(
        File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    for turn in splits[0].iter().flat_map(|d| &d.turns) {
        writeln!(w, "{}", turn.text)?;
    }
    w.flush()?;
    let counts = splits.map(DialogueCounts::of);
    let sources = |ds: &[Dialogue]| {
        let mut v: Vec<String> = Vec::new();
        for d in ds {
            if v.last() != Some(&d.source) {
                v.push(d.source.clone());
            }
        }
        v
    };
    let summary = Summary {
        corpus: &args.corpus,
        reader: corpus.reader,
        input: corpus.dir.display().to_string(),
        max_context_turns: args.max_context_turns,
        sources: PerSplit {
            train: sources(splits[0]),
            valid: sources(splits[1]),
            test: sources(splits[2]),
        },
        counts: PerSplit {
            train: counts[0],
            valid: counts[1],
            test: counts[2],
        },
    };
    let path = dir.join("dialogue.json");
    let mut json = serde_json::to_string_pretty(&summary)?;
    json.push('\n');
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(counts)
}

/// Runs `cloze data dialogue`.
pub fn run(args: DialogueArgs) -> Result<()> {
    let corpus = resolve(&args.corpus)?;
    let valid = names(&args.valid, corpus.split.map(|s| s.valid));
    let test = names(&args.test, corpus.split.map(|s| s.test));
    let stop = interrupt::install("stopping; nothing will be published")?;
    let guard = OutputDir::check(
        &args.out,
        &output_kind(),
        &[corpus.dir.as_path()],
        args.force,
    )?;
    let dialogues = corpus.read()?;
    let valid_refs: Vec<&str> = valid.iter().map(String::as_str).collect();
    let test_refs: Vec<&str> = test.iter().map(String::as_str).collect();
    let split = split_by_source(dialogues, &valid_refs, &test_refs)
        .context("choosing the held-out sources (--valid, --test)")?;
    let staging = guard.staging()?;
    let result = write_output(
        staging.path(),
        &args,
        &corpus,
        [&split.train, &split.valid, &split.test],
    );
    if stop.load(Ordering::SeqCst) {
        drop(staging);
        return Err(anyhow::Error::new(Interrupted(format!(
            "data dialogue interrupted: nothing was published to {} (anything already there is untouched)",
            args.out.display()
        ))));
    }
    let counts = result
        .with_context(|| format!("writing the dialogue samples into {}", args.out.display()))?;
    let dir = guard
        .publish(staging)
        .with_context(|| format!("publishing {}", args.out.display()))?;
    println!(
        "wrote {} from {} (context up to {} turns; see dialogue.json)",
        dir.display(),
        corpus.dir.display(),
        args.max_context_turns
    );
    let held_out: [&[String]; 3] = [&[], &valid, &test];
    for ((name, c), held) in SPLITS.iter().zip(counts).zip(held_out) {
        let from = if held.is_empty() {
            String::new()
        } else {
            format!(" from {}", held.join(", "))
        };
        println!(
            "  {name}: {} dialogues, {} samples, {} turns, {} speakers{from}",
            c.dialogues, c.samples, c.turns, c.speakers
        );
    }
    Ok(())
}

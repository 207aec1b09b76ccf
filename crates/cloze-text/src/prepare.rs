//! `prepare`: corpus -> tokens + word ids -> instances -> shards, streaming.
//!
//! The corpus is read in chunks of whole documents (about `chunk_bytes` of
//! text each, a boundary that depends only on the corpus), each chunk is
//! tokenized and turned into instances in parallel with rayon, and its
//! instances are written as one shard per split. NSP's random B segment is
//! drawn from the other documents of the same chunk and split, which keeps
//! memory flat in corpus size.
//!
//! Output follows the `cloze-fs` rule: [`prepare_into`] writes into a fresh
//! directory the caller provides (the staging sibling of a checked
//! [`cloze_fs::OutputDir`]); the caller publishes it. [`prepare`] does all of
//! it for library callers. Nothing is ever written into the final directory
//! before it is complete, an output that is not an earlier `prepare` output
//! (or that holds the corpus or the tokenizer) is never replaced, and a
//! [`Progress::cancelled`] request stops between chunks with
//! [`Error::Cancelled`], the staging directory removed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cloze_fs::{OutputDir, OutputKind};

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::corpus::{corpus_bytes, CorpusOptions, Document, DocumentReader};
use crate::error::{Error, IoContext, Result};
use crate::instance::{Instance, SpecialTokens};
use crate::pretrain::{
    instances_for_document, rng_for, InstanceConfig, Segment, Stream, TokenizedDoc,
};
use crate::progress::Progress;
use crate::shards::{write_shard, Manifest, Split, SplitInfo, FORMAT_VERSION, MANIFEST, TOKENIZER};
use crate::tokenizer::{TextTokenizer, WordBoundaries};

/// Settings of [`prepare`].
#[derive(Debug, Clone)]
pub struct PrepareConfig {
    /// Instance settings.
    pub instances: InstanceConfig,
    /// Fraction of documents held out as the eval split (0 for none).
    pub holdout_fraction: f64,
    /// Word boundary source.
    pub word_boundaries: WordBoundaries,
    /// Corpus reader settings.
    pub corpus: CorpusOptions,
    /// Text bytes per processing chunk (and per shard).
    pub chunk_bytes: usize,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        Self {
            instances: InstanceConfig::default(),
            holdout_fraction: 0.0,
            word_boundaries: WordBoundaries::Auto,
            corpus: CorpusOptions::default(),
            chunk_bytes: 4 << 20,
        }
    }
}

/// What [`prepare`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareReport {
    /// The shard directory: where it was published ([`prepare`]) or the
    /// directory written into ([`prepare_into`]).
    pub out: PathBuf,
    /// Documents read.
    pub documents: u64,
    /// Text tokens produced by the tokenizer (before instances).
    pub text_tokens: u64,
    /// Instances and tokens per split.
    pub train: SplitInfo,
    /// Held-out split.
    pub eval: SplitInfo,
    /// Wall-clock seconds for the whole prepare.
    pub seconds: f64,
    /// `text_tokens / seconds`: tokenize + instances + shard writing.
    pub tokens_per_second: f64,
    /// Peak resident memory of the process (VmHWM) in bytes, where the OS reports it.
    pub peak_rss_bytes: Option<u64>,
    /// Seconds spent per stage: read, tokenize, instances, write.
    pub stage_seconds: StageSeconds,
}

/// Wall-clock seconds per stage of [`prepare`].
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct StageSeconds {
    /// Reading documents.
    pub read: f64,
    /// Tokenizing and word ids (parallel).
    pub tokenize: f64,
    /// Building instances (parallel).
    pub instances: f64,
    /// Encoding, hashing and writing shard files.
    pub write: f64,
}

/// The process's peak resident set size from `/proc/self/status` (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl PrepareConfig {
    /// Checks every setting, so a caller can refuse bad input before any
    /// work: the instance settings ([`InstanceConfig::validate`], including
    /// the [`crate::pretrain::MAX_SEQ_LENGTH`] bound), the holdout fraction
    /// and the chunk size. [`prepare_into`] checks again.
    ///
    /// [`InstanceConfig::validate`]: crate::pretrain::InstanceConfig::validate
    pub fn validate(&self) -> Result<()> {
        self.instances.validate()?;
        if !(0.0..1.0).contains(&self.holdout_fraction) {
            return Err(Error::Config(format!(
                "holdout fraction {} is not in [0, 1)",
                self.holdout_fraction
            )));
        }
        if self.chunk_bytes == 0 {
            return Err(Error::Config("chunk_bytes is 0".into()));
        }
        Ok(())
    }
}

/// The kind of output `prepare` writes, for [`OutputDir::check`]: the command
/// `data prepare`, replaced only with `--force`; directories written before
/// output markers existed are recognised by their manifest, tokenizer copy
/// and first train shard.
pub fn output_kind() -> OutputKind {
    OutputKind::new("data prepare", "--force").with_legacy_markers(&[
        MANIFEST,
        TOKENIZER,
        "train-00000.bin",
    ])
}

/// Tokenizes one document's lines into segments.
pub fn tokenize_document(
    tok: &TextTokenizer,
    doc: &Document,
    words: WordBoundaries,
) -> Result<TokenizedDoc> {
    doc.lines
        .iter()
        .map(|line| {
            let e = tok.encode(line, words)?;
            Ok(Segment {
                ids: e.ids,
                word_ids: e.word_ids,
            })
        })
        .collect()
}

struct SplitWriter {
    split: Split,
    info: SplitInfo,
}

impl SplitWriter {
    fn write(&mut self, dir: &Path, docs: u64, instances: &[Instance]) -> Result<()> {
        self.info.documents += docs;
        if instances.is_empty() {
            return Ok(());
        }
        let file = format!("{}-{:05}.bin", self.split.name(), self.info.shards.len());
        let shard = write_shard(dir, &file, instances)?;
        self.info.instances += shard.instances;
        self.info.tokens += shard.tokens;
        self.info.shards.push(shard);
        Ok(())
    }
}

/// Prepares shards from `corpus` into `out` for library callers: checks `out`
/// with [`output_kind`] (the corpus and the tokenizer's source as inputs),
/// writes into a staging sibling and publishes it.
///
/// An existing `out` is replaced only when it is an earlier `prepare` output
/// (as `cloze data prepare --force` does); any other non-empty directory, a
/// directory holding the corpus or the tokenizer, a file or the current
/// directory is refused with [`Error::Output`] before any work. On any error
/// the previous `out` is left exactly as it was.
pub fn prepare(
    corpus: &Path,
    tokenizer: &TextTokenizer,
    out: &Path,
    config: &PrepareConfig,
    progress: &dyn Progress,
) -> Result<PrepareReport> {
    config.validate()?;
    let guard = OutputDir::check(out, &output_kind(), &[corpus, tokenizer.source()], true)?;
    let staging = guard.staging()?;
    let mut report = prepare_into(corpus, tokenizer, staging.path(), config, progress)?;
    report.out = guard.publish(staging)?;
    Ok(report)
}

/// Writes the shards of `corpus`, a copy of the tokenizer and the manifest
/// into `dir`, an existing empty directory (normally
/// [`OutputDir::staging`]); publishing it is the caller's job, and
/// [`PrepareReport::out`] is `dir`.
///
/// Polls [`Progress::cancelled`] before each chunk and before the manifest,
/// returning [`Error::Cancelled`]; on that or any other error `dir` holds a
/// partial result the caller discards.
pub fn prepare_into(
    corpus: &Path,
    tokenizer: &TextTokenizer,
    dir: &Path,
    config: &PrepareConfig,
    progress: &dyn Progress,
) -> Result<PrepareReport> {
    let _span = tracing::info_span!("prepare", corpus = %corpus.display()).entered();
    config.validate()?;
    let start = Instant::now();
    let total_bytes = corpus_bytes(corpus)?;
    let mut reader = DocumentReader::open(corpus, config.corpus.clone())?;
    let special = tokenizer.special_tokens().clone();
    let mut splits = [
        SplitWriter {
            split: Split::Train,
            info: SplitInfo::default(),
        },
        SplitWriter {
            split: Split::Eval,
            info: SplitInfo::default(),
        },
    ];
    let mut documents = 0u64;
    let mut text_tokens = 0u64;
    let mut stages = StageSeconds::default();
    progress.stage("prepare", Some(total_bytes), "bytes");
    let mut last_bytes = 0u64;
    loop {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let chunk = timed(&mut stages.read, || {
            read_chunk(&mut reader, config.chunk_bytes)
        })?;
        if chunk.is_empty() {
            break;
        }
        let base = documents;
        documents += chunk.len() as u64;
        let tokenized = timed(&mut stages.tokenize, || {
            tokenize_chunk(tokenizer, &chunk, config.word_boundaries)
        })?;
        drop(chunk);
        text_tokens += tokenized
            .iter()
            .flat_map(|d| d.iter().map(|s| s.ids.len() as u64))
            .sum::<u64>();
        for (writer, (docs, ids)) in splits
            .iter_mut()
            .zip(split_held_out(tokenized, base, config))
        {
            let instances = timed(&mut stages.instances, || {
                build_instances(&docs, &ids, config, &special)
            });
            timed(&mut stages.write, || {
                let _s = tracing::debug_span!("write", instances = instances.len()).entered();
                writer.write(dir, docs.len() as u64, &instances)
            })?;
        }
        let now = reader.bytes_read();
        progress.advance(now.saturating_sub(last_bytes));
        last_bytes = now;
    }
    progress.finish();
    if progress.cancelled() {
        return Err(Error::Cancelled);
    }
    let [train, eval] = splits;
    check_produced(corpus, config, documents, &train.info)?;
    write_manifest(
        dir,
        tokenizer,
        Manifest {
            format_version: FORMAT_VERSION,
            tokenizer_hash: tokenizer.hash().to_string(),
            special_tokens: special,
            instances: config.instances,
            word_boundaries: config.word_boundaries,
            holdout_fraction: config.holdout_fraction,
            corpus: corpus.display().to_string(),
            documents,
            train: train.info.clone(),
            eval: eval.info.clone(),
            created_by: format!("cloze-text {}", env!("CARGO_PKG_VERSION")),
        },
    )?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(PrepareReport {
        out: dir.to_path_buf(),
        documents,
        text_tokens,
        train: train.info,
        eval: eval.info,
        seconds,
        tokens_per_second: text_tokens as f64 / seconds.max(1e-9),
        peak_rss_bytes: peak_rss_bytes(),
        stage_seconds: stages,
    })
}

/// Runs `f`, adding its wall-clock seconds to `total`.
fn timed<T>(total: &mut f64, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let out = f();
    *total += t0.elapsed().as_secs_f64();
    out
}

/// Reads whole documents until about `chunk_bytes` of text (empty at the end).
fn read_chunk(reader: &mut DocumentReader, chunk_bytes: usize) -> Result<Vec<Document>> {
    let _s = tracing::debug_span!("read").entered();
    let mut chunk = Vec::new();
    let mut bytes = 0usize;
    while bytes < chunk_bytes {
        match reader.next() {
            Some(doc) => {
                let doc = doc?;
                bytes += doc.bytes();
                chunk.push(doc);
            }
            None => break,
        }
    }
    Ok(chunk)
}

/// Tokenizes a chunk's lines in parallel and regroups them by document.
fn tokenize_chunk(
    tokenizer: &TextTokenizer,
    chunk: &[Document],
    words: WordBoundaries,
) -> Result<Vec<TokenizedDoc>> {
    let _s = tracing::debug_span!("tokenize", docs = chunk.len()).entered();
    // Lines, not documents, are the unit of parallel work: documents vary in
    // size by orders of magnitude and would leave a core idle.
    let lines: Vec<&str> = chunk
        .iter()
        .flat_map(|d| d.lines.iter().map(String::as_str))
        .collect();
    let mut segments: Vec<Segment> = lines
        .par_iter()
        .with_min_len(64)
        .map(|line| {
            let (ids, word_ids) = tokenizer.encode_ids_words(line, words)?;
            Ok(Segment { ids, word_ids })
        })
        .collect::<Result<_>>()?;
    let mut docs = Vec::with_capacity(chunk.len());
    for d in chunk.iter().rev() {
        let rest = segments.split_off(segments.len() - d.lines.len());
        docs.push(rest);
    }
    docs.reverse();
    Ok(docs)
}

/// Splits a chunk's documents (global indices from `base`) into train and
/// held-out eval; whole documents are held out, chosen by (seed, document index).
fn split_held_out(
    tokenized: Vec<TokenizedDoc>,
    base: u64,
    config: &PrepareConfig,
) -> [(Vec<TokenizedDoc>, Vec<u64>); 2] {
    let held_out = |k: u64| {
        config.holdout_fraction > 0.0
            && rng_for(config.instances.seed, Stream::Holdout, k).random::<f64>()
                < config.holdout_fraction
    };
    let mut parts: [(Vec<TokenizedDoc>, Vec<u64>); 2] = Default::default();
    for (k, doc) in tokenized.into_iter().enumerate() {
        let g = base + k as u64;
        let p = usize::from(held_out(g));
        parts[p].0.push(doc);
        parts[p].1.push(g);
    }
    parts
}

/// The instances of some documents, in parallel, in document order.
fn build_instances(
    docs: &[TokenizedDoc],
    ids: &[u64],
    config: &PrepareConfig,
    special: &SpecialTokens,
) -> Vec<Instance> {
    let _s = tracing::debug_span!("instances", docs = docs.len()).entered();
    (0..docs.len())
        .into_par_iter()
        .flat_map_iter(|k| instances_for_document(docs, k, ids[k], &config.instances, special))
        .collect()
}

/// An empty corpus, or one too short for any training instance, is an error.
fn check_produced(
    corpus: &Path,
    config: &PrepareConfig,
    documents: u64,
    train: &SplitInfo,
) -> Result<()> {
    if documents == 0 {
        return Err(Error::EmptyCorpus {
            path: corpus.to_path_buf(),
        });
    }
    if train.instances == 0 {
        return Err(Error::Config(format!(
            "corpus {} produced no training instances (documents too short for max_seq_length {}?)",
            corpus.display(),
            config.instances.max_seq_length
        )));
    }
    Ok(())
}

/// Writes the tokenizer and the manifest beside the shards.
fn write_manifest(dir: &Path, tokenizer: &TextTokenizer, manifest: Manifest) -> Result<()> {
    tokenizer.save_json(&dir.join(TOKENIZER))?;
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, json).at(&path)
}

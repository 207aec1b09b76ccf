//! Prepared shards as masked training batches and a fixed-mask evaluation set.
//!
//! The training stream is a seeded permutation per epoch; the masks of the
//! example at position `k` of epoch `e` come from `cloze-mask` keyed by
//! `(seed, e, k)`, so a resumed run that restores the cursor `(e, k)` sees
//! exactly the batches an uninterrupted run would. The evaluation split is
//! masked once with `eval.mask_seed`, independent of the training seed.

use std::path::{Path, PathBuf};

use cloze_eval::mlm_eval::{EvalSet, UnigramBaseline};
use cloze_mask::batch::{Batch, BatchBuilder};
use cloze_mask::masker::Masker;
use cloze_text::{Instance, SpecialTokens};
use serde::{Deserialize, Serialize};

use crate::batch::PretrainModel;
use crate::config::TrainConfig;
use crate::error::{io_err, Error, Result};
use crate::trainer::DataSource;

/// Random access to unmasked instances.
pub trait Instances {
    /// Number of instances.
    fn len(&self) -> usize;
    /// True when there is none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Instance `i`.
    fn get(&self, i: usize) -> Result<Instance>;
}

impl Instances for Vec<Instance> {
    fn len(&self) -> usize {
        <[Instance]>::len(self)
    }
    fn get(&self, i: usize) -> Result<Instance> {
        self.as_slice()
            .get(i)
            .cloned()
            .ok_or_else(|| Error::DataMismatch(format!("instance {i} out of range")))
    }
}

/// The examples at `indices` (a data source's `batch`), cloned in that
/// order; an index out of range is `Error::DataMismatch`.
pub fn pick<T: Clone>(examples: &[T], indices: &[usize]) -> Result<Vec<T>> {
    indices
        .iter()
        .map(|&i| {
            examples
                .get(i)
                .cloned()
                .ok_or_else(|| Error::DataMismatch(format!("example {i} out of range")))
        })
        .collect()
}

/// A seeded permutation of `0..n` for `epoch`: the order the trainer visits
/// examples in (one implementation, in [`cloze_core::rng`]).
pub use cloze_core::rng::epoch_order;

/// Training batches: instances masked on the fly by a [`BatchBuilder`] (a
/// [`Masker`] for the BERT-style schemes; any scheme that builds its own
/// batches, such as one appending pseudo-mask tokens, fits the same slot).
pub struct MaskedSource<I, B = Masker> {
    instances: I,
    builder: B,
    seed: u64,
}

impl<I: Instances, B: BatchBuilder> MaskedSource<I, B> {
    /// Builds batches of `instances` with `builder` under `seed`.
    pub fn new(instances: I, builder: B, seed: u64) -> Self {
        Self {
            instances,
            builder,
            seed,
        }
    }

    /// Number of training examples.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// True when there is no example.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
}

impl<I: Instances, B: BatchBuilder> DataSource for MaskedSource<I, B> {
    fn num_examples(&self) -> usize {
        self.instances.len()
    }
    fn epoch_order(&self, epoch: u64) -> Result<Vec<usize>> {
        Ok(epoch_order(self.instances.len(), self.seed, epoch))
    }
    fn batch(&self, epoch: u64, first_index: u64, indices: &[usize]) -> Result<Batch> {
        let inst = indices
            .iter()
            .map(|&i| self.instances.get(i))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.builder.build(&inst, self.seed, epoch, first_index)?)
    }
}

/// Token frequencies over every instance (for the unigram baseline).
pub fn unigram_counts(instances: &dyn Instances, vocab_size: u32) -> Result<Vec<u64>> {
    let mut counts = vec![0u64; vocab_size as usize];
    for i in 0..instances.len() {
        for &t in &instances.get(i)?.tokens {
            if let Some(c) = counts.get_mut(t as usize) {
                *c += 1;
            } else {
                return Err(Error::DataMismatch(format!(
                    "token id {t} in instance {i} is outside the vocabulary of {vocab_size}"
                )));
            }
        }
    }
    Ok(counts)
}

/// The first `max_examples` held-out instances, masked once under `mask_seed`.
pub fn build_eval_set(
    instances: &dyn Instances,
    masker: &Masker,
    mask_seed: u64,
    max_examples: usize,
    batch_size: usize,
    baseline: Option<UnigramBaseline>,
    pair_name: &str,
) -> Result<EvalSet> {
    let n = instances.len().min(max_examples);
    let mut batches = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + batch_size).min(n);
        let inst = (start..end)
            .map(|i| instances.get(i))
            .collect::<Result<Vec<_>>>()?;
        batches.push(masker.mask_batch(&inst, mask_seed, 0, start as u64)?);
        start = end;
    }
    if n > 0
        && batches
            .iter()
            .all(|b: &Batch| b.targets.masked_lm.is_empty())
    {
        let rate = masker.config().select.rate();
        return Err(Error::NothingMasked {
            what: "the evaluation set".to_owned(),
            rate,
        });
    }
    Ok(EvalSet {
        batches,
        baseline,
        mask_token: Some(masker.specials().mask),
        pair_name: pair_name.to_owned(),
    })
}

/// What a run directory and an exported model record about their data, so that
/// a model is never silently trained or scored with another tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    /// SHA-256 of the tokenizer the shards were made with.
    pub tokenizer_sha256: String,
    /// Its vocabulary size.
    pub vocab_size: u32,
    /// The prepared data directory.
    pub data_dir: PathBuf,
}

/// The file name of a [`DataRecord`].
pub const DATA_RECORD: &str = "cloze_data.json";

/// Prepared data: training and held-out instances plus the tokenizer they were made with.
pub struct PreparedData {
    /// The directory.
    pub dir: PathBuf,
    /// Training instances.
    pub train: Box<dyn Instances>,
    /// Held-out instances, when the data has an evaluation split.
    pub eval: Option<Box<dyn Instances>>,
    /// Special token ids and vocabulary size.
    pub specials: SpecialTokens,
    /// The tokenizer file.
    pub tokenizer_path: PathBuf,
    /// Its SHA-256.
    pub tokenizer_sha256: String,
    /// The longest instance the data may hold, special tokens included
    /// (the manifest's `max_seq_length`).
    pub max_seq_length: usize,
    /// How the instances were built (`cloze data prepare --mode`): which
    /// sentence-pair labels they carry.
    pub mode: cloze_text::pretrain::Mode,
    /// The tokenizer as a word codec (token ids <-> surface forms), for
    /// schemes that replace whole words (MacBERT's similar words).
    pub codec: std::sync::Arc<dyn cloze_core::WordCodec>,
}

impl std::fmt::Debug for PreparedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedData")
            .field("dir", &self.dir)
            .field("train", &self.train.len())
            .finish_non_exhaustive()
    }
}

impl Instances for cloze_text::shards::ShardSet {
    fn len(&self) -> usize {
        cloze_text::shards::ShardSet::len(self)
    }
    fn get(&self, i: usize) -> Result<Instance> {
        Ok(cloze_text::shards::ShardSet::get(self, i)?)
    }
}

impl PreparedData {
    /// Opens a `cloze data prepare` output directory: both splits, and the
    /// tokenizer copy checked against the manifest's tokenizer hash.
    pub fn open(dir: &Path) -> Result<Self> {
        use cloze_text::shards::{ShardSet, Split, TOKENIZER};
        let train = ShardSet::open_split(dir, Split::Train)?;
        // Loading the tokenizer copy verifies it is the one the shards were made with.
        let codec = std::sync::Arc::new(train.tokenizer()?);
        let manifest = train.manifest().clone();
        let eval = if manifest.eval.instances > 0 {
            Some(Box::new(ShardSet::open_split(dir, Split::Eval)?) as Box<dyn Instances>)
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_owned(),
            specials: manifest.special_tokens.clone(),
            tokenizer_path: dir.join(TOKENIZER),
            tokenizer_sha256: manifest.tokenizer_hash.clone(),
            max_seq_length: manifest.instances.max_seq_length,
            mode: manifest.instances.mode,
            train: Box::new(train),
            eval,
            codec,
        })
    }

    /// The record of this data.
    pub fn record(&self) -> DataRecord {
        DataRecord {
            tokenizer_sha256: self.tokenizer_sha256.clone(),
            vocab_size: self.specials.vocab_size,
            data_dir: self.dir.clone(),
        }
    }

    /// Checks, before any work, that every batch of this data fits the model
    /// of `cfg`: the longest row (the manifest's `max_seq_length`, after
    /// `masking.collate.pad_to`) must be covered by
    /// `model.max_position_embeddings`. Otherwise the first forward pass would
    /// fail (or, for huge lengths, allocate without bound); the error names both
    /// numbers and what to change.
    ///
    /// It also checks that the instances carry the sentence-pair labels the
    /// objective trains (`mlm_nsp` needs `--mode nsp` data, `mlm_sop` `--mode
    /// sop`), so a mismatch stops before the first evaluation, not at the
    /// first training batch.
    pub fn check_fits_model(&self, cfg: &TrainConfig) -> Result<()> {
        use cloze_mask::PadTo;
        let pair_task = crate::objective::entry(&cfg.objective.kind)?.pair_task;
        let needed = match pair_task {
            Some("nsp") => Some((cloze_text::pretrain::Mode::Nsp, "nsp")),
            Some("sop") => Some((cloze_text::pretrain::Mode::Sop, "sop")),
            _ => None,
        };
        if let Some((mode, name)) = needed {
            if self.mode != mode {
                let had = match self.mode {
                    cloze_text::pretrain::Mode::Nsp => "nsp",
                    cloze_text::pretrain::Mode::Sop => "sop",
                    cloze_text::pretrain::Mode::Packed => "packed",
                };
                return Err(Error::DataMismatch(format!(
                    "objective {} trains {name} but {} was prepared with --mode {had}, whose \
                     instances carry no {name} labels; prepare the data with `cloze data \
                     prepare --mode {name}` or train `--set objective.kind=\"mlm\"`",
                    cfg.objective.kind,
                    self.dir.display()
                )));
            }
        }
        let max_len = self.max_seq_length;
        let pad_to = cfg.masking.collate.pad_to;
        // A fixed length shorter than the data is the masker's error per batch;
        // the row is at least as long as the data's longest instance.
        let padded = pad_to.seq_len(max_len).max(max_len);
        let limit = cfg.model.max_position_embeddings;
        if i64::try_from(padded).is_ok_and(|p| p <= limit) {
            return Ok(());
        }
        let limit_len = usize::try_from(limit).unwrap_or(0);
        let mut fixes = vec![format!(
            "set model.max_position_embeddings to at least {padded} (`--set model.max_position_embeddings={padded}`)"
        )];
        match pad_to {
            PadTo::Fixed { len } if len > limit_len => fixes.push(format!(
                "lower masking.collate.pad_to.len to {limit_len} or less"
            )),
            _ => {
                let fitting = match pad_to {
                    PadTo::MultipleOf { multiple } => limit_len / multiple.max(1) * multiple.max(1),
                    PadTo::BatchMax | PadTo::Fixed { .. } => limit_len,
                };
                if fitting > 0 {
                    fixes.push(format!(
                        "prepare the data again with `cloze data prepare --max-seq-length {fitting}` (or less)"
                    ));
                }
            }
        }
        Err(Error::SequenceTooLong {
            data_dir: self.dir.clone(),
            max_seq_length: max_len,
            padded_len: padded,
            max_position_embeddings: limit,
            fix: fixes.join(", or "),
        })
    }

    /// A masker for `cfg.masking` over this data's special tokens.
    pub fn masker(&self, cfg: &TrainConfig) -> Result<Masker> {
        Ok(Masker::builder(cfg.masking.clone(), self.specials.clone())
            .word_codec(self.codec.clone())
            .build()?)
    }

    /// The training stream of `cfg`.
    pub fn train_source<'a>(
        &'a self,
        cfg: &TrainConfig,
    ) -> Result<MaskedSource<&'a dyn Instances>> {
        Ok(MaskedSource::new(
            self.train.as_ref(),
            self.masker(cfg)?,
            cfg.run.seed,
        ))
    }

    /// The unigram baseline of the training split.
    pub fn unigram_baseline(&self) -> Result<Option<UnigramBaseline>> {
        let counts = unigram_counts(self.train.as_ref(), self.specials.vocab_size)?;
        Ok(UnigramBaseline::from_counts(
            &counts,
            &self.specials.all_special,
        ))
    }

    /// The fixed-mask evaluation set of `cfg`, if the data has a held-out split.
    pub fn eval_set(&self, cfg: &TrainConfig) -> Result<Option<EvalSet>> {
        let Some(eval) = &self.eval else {
            return Ok(None);
        };
        let masker = self.masker(cfg)?;
        let baseline = self.unigram_baseline()?;
        Ok(Some(build_eval_set(
            eval.as_ref(),
            &masker,
            cfg.eval.mask_seed,
            cfg.eval.max_examples,
            cfg.eval.batch_size,
            baseline,
            crate::objective::entry(&cfg.objective.kind)?
                .pair_task
                .unwrap_or("pair"),
        )?))
    }
}

impl<T: Instances + ?Sized> Instances for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, i: usize) -> Result<Instance> {
        (**self).get(i)
    }
}

/// Reads the data record of a run or model directory, if it has one.
pub fn read_record(dir: &Path) -> Result<Option<DataRecord>> {
    let p = dir.join(DATA_RECORD);
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(io_err("reading", &p))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| Error::Json { path: p, source })
}

/// Writes the data record into `dir`.
pub fn record_data(dir: &Path, data: &PreparedData) -> Result<()> {
    let p = dir.join(DATA_RECORD);
    let text = serde_json::to_string_pretty(&data.record()).map_err(|source| Error::Json {
        path: p.clone(),
        source,
    })?;
    std::fs::write(&p, text).map_err(io_err("writing", &p))
}

/// Errors when the run or model in `dir` was made with another tokenizer than `data`.
pub fn check_model_matches(dir: &Path, data: &PreparedData) -> Result<()> {
    if let Some(rec) = read_record(dir)? {
        if rec.tokenizer_sha256 != data.tokenizer_sha256
            || rec.vocab_size != data.specials.vocab_size
        {
            return Err(Error::DataMismatch(format!(
                "{} was trained with tokenizer {} ({} ids) from {}, but {} was prepared with tokenizer {} ({} ids)",
                dir.display(),
                short(&rec.tokenizer_sha256),
                rec.vocab_size,
                rec.data_dir.display(),
                data.dir.display(),
                short(&data.tokenizer_sha256),
                data.specials.vocab_size
            )));
        }
    }
    Ok(())
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Saves `model` in HF format into `dir` with the tokenizer and the data record.
pub fn export_model(model: &dyn PretrainModel, data: &PreparedData, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    model.save(dir)?;
    let tok = dir.join("tokenizer.json");
    std::fs::copy(&data.tokenizer_path, &tok).map_err(io_err("copying the tokenizer to", &tok))?;
    record_data(dir, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(100, 1, 0);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 1, 0));
        assert_ne!(a, epoch_order(100, 1, 1));
        assert_ne!(a, epoch_order(100, 2, 0));
    }
}

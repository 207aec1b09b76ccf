//! Sequence-to-sequence fine-tuning batches for UniLM-v2 (Bao et al. 2020,
//! section 3.4), laid out as microsoft/unilm's `s2s-ft` lays them out
//! (`s2s_ft/utils.py`, `Seq2seqDatasetForBert.__getitem__`, branch
//! `mask_way == 'v2'`, the default of `run_seq2seq.py --mask_way`).
//!
//! A row is `[CLS] SRC [SEP]` (segment 0), `TGT [SEP]` (segment 1), then one
//! pseudo token per target token (segment 1), each with the position id of
//! the target token it predicts:
//!
//! ```text
//! [CLS] s1 s2 [SEP] | t1 t2 [SEP] | [P] [P] [P]
//! 0     1  2  3       4  5  6       4   5   6      position ids
//! ```
//!
//! (`s2s_ft/modeling.py`, `BertForSequenceToSequenceWithPseudoMask.forward`:
//! the pseudo part repeats the target's position ids; token types are
//! `source_type_id = 0` and `target_type_id = 1` of `s2s_ft/config.py`.)
//!
//! Visibility (`BertForSequenceToSequenceWithPseudoMask.create_attention_mask`):
//! a source token sees the source (bidirectional); target token i sees the
//! source and target tokens `<= i` (left to right); the pseudo token of
//! target i sees the source, target tokens `< i` and itself, and predicts
//! target token i (the targets of `targets.pseudo`). No token sees a pseudo
//! token other than itself. So at decoding time a pseudo token after the
//! generated prefix predicts the next token, and the prefix's keys and values
//! never change: they can be cached.
//!
//! Truncation (`Seq2seqDatasetForBert.__trunk`): the source part `[CLS] SRC
//! [SEP]` is cut to `max_source_len` tokens (s2s-ft's `--max_source_seq_length`,
//! 464) keeping the first source tokens, the target part `TGT [SEP]` to
//! `max_target_len` (`--max_target_seq_length`, 48); the closing `[SEP]`s stay.
//!
//! Target corruption (`--target_mask_prob`, 0.5 by default): each target
//! token in the input is, with that probability, replaced by `[MASK]` (80%),
//! a random ordinary token (`--random_prob`, 10%) or itself (`--keep_prob`,
//! 10%) (s2s-ft's `get_masked_token`), which makes the model rely on the
//! source rather than copying the prefix. Every draw comes from the example's
//! stream `example_rng(seed, epoch, index)`.
//!
//! Two deliberate differences from s2s-ft: the pseudo token is always the
//! tokenizer's `[PSEUDO_MASK]`, the `[P]` the model saw in pseudo-masked
//! pretraining (s2s-ft feeds `get_masked_token`'s draw there, `[MASK]` 80% of
//! the time and the answer itself 10%, because its checkpoints have no `[P]`
//! token; decoding then feeds `[MASK]`); and a random replacement is an
//! ordinary token, never a special one (s2s-ft draws any id of the
//! vocabulary).

use cloze_core::SpecialTokens;
use rand::RngCore;
use rayon::prelude::*;

use crate::batch::{Batch, MaskedTarget, Span, Targets, Visibility, VisibleBlock};
use crate::error::{Error, Result};
use crate::rng::example_rng;
use crate::special::{threshold, SpecialSet};

/// One source/target pair, as token ids without special tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seq2SeqExample {
    /// The source's tokens.
    pub source: Vec<u32>,
    /// The target's tokens.
    pub target: Vec<u32>,
}

/// Settings of [`Seq2SeqBuilder`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seq2SeqConfig {
    /// Longest source part, `[CLS]` and `[SEP]` included (s2s-ft's
    /// `--max_source_seq_length`, 464).
    pub max_source_len: usize,
    /// Longest target part, the final `[SEP]` included (s2s-ft's
    /// `--max_target_seq_length`, 48).
    pub max_target_len: usize,
    /// Probability that a target input token is corrupted (s2s-ft's
    /// `--target_mask_prob`, 0.5).
    pub target_mask_prob: f64,
    /// Of a corrupted token: probability of a random ordinary token (s2s-ft's
    /// `--random_prob`, 0.1).
    pub random_prob: f64,
    /// Of a corrupted token: probability of keeping it (s2s-ft's
    /// `--keep_prob`, 0.1); the rest is `[MASK]`.
    pub keep_prob: f64,
}

impl Default for Seq2SeqConfig {
    fn default() -> Self {
        Self {
            max_source_len: 464,
            max_target_len: 48,
            target_mask_prob: 0.5,
            random_prob: 0.1,
            keep_prob: 0.1,
        }
    }
}

/// One laid-out row before padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq2SeqRow {
    /// Tokens: source part, target part, pseudo tokens.
    pub input_ids: Vec<u32>,
    /// Segment ids: 0 for the source part, 1 after it.
    pub segment_ids: Vec<u8>,
    /// Position ids; a pseudo token has its target token's.
    pub position_ids: Vec<u32>,
    /// The visibility rule (see the module docs).
    pub blocks: Vec<VisibleBlock>,
    /// `(pseudo position, target token)` pairs, in order.
    pub targets: Vec<(u32, u32)>,
    /// Length of the source part.
    pub source_len: usize,
}

impl Seq2SeqRow {
    /// The row's `len x len` visibility, `[query][key]`, 1 = visible.
    pub fn dense(&self) -> Vec<Vec<u8>> {
        crate::batch::dense_row(&self.blocks, self.input_ids.len())
    }
}

/// Builds sequence-to-sequence rows and batches; see the module docs.
#[derive(Debug, Clone)]
pub struct Seq2SeqBuilder {
    config: Seq2SeqConfig,
    specials: SpecialTokens,
    set: SpecialSet,
    pseudo: u32,
}

impl Seq2SeqBuilder {
    /// A builder over a vocabulary with `[PSEUDO_MASK]`; the lengths must leave
    /// room for one token in each part, the probabilities lie in `[0, 1]`.
    pub fn new(config: Seq2SeqConfig, specials: SpecialTokens) -> Result<Self> {
        let set = SpecialSet::new(&specials)?;
        let pseudo = specials.pseudo_mask.ok_or(Error::MissingSpecialToken {
            token: "[PSEUDO_MASK]",
        })?;
        let invalid = |field: &str, value: String, expected| Error::InvalidValue {
            field: field.to_owned(),
            value,
            expected,
        };
        if config.max_source_len < 3 {
            return Err(invalid(
                "max_source_len",
                config.max_source_len.to_string(),
                "at least 3 ([CLS], a token, [SEP])",
            ));
        }
        if config.max_target_len < 2 {
            return Err(invalid(
                "max_target_len",
                config.max_target_len.to_string(),
                "at least 2 (a token and [SEP])",
            ));
        }
        for (field, p) in [
            ("target_mask_prob", config.target_mask_prob),
            ("random_prob", config.random_prob),
            ("keep_prob", config.keep_prob),
            (
                "random_prob + keep_prob",
                config.random_prob + config.keep_prob,
            ),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::RateOutOfRange {
                    field: field.to_owned(),
                    value: p,
                });
            }
        }
        Ok(Self {
            config,
            specials,
            set,
            pseudo,
        })
    }

    /// The settings.
    pub fn config(&self) -> &Seq2SeqConfig {
        &self.config
    }

    /// Lays out example `index` of `epoch` under `seed`: truncated to the
    /// configured lengths, target tokens corrupted by the example's stream.
    pub fn row(&self, ex: &Seq2SeqExample, seed: u64, epoch: u64, index: u64) -> Seq2SeqRow {
        let s = &self.specials;
        let src_keep = ex.source.len().min(self.config.max_source_len - 2);
        let tgt_keep = ex.target.len().min(self.config.max_target_len - 1);
        let mut input_ids = Vec::with_capacity(src_keep + 2 + 2 * (tgt_keep + 1));
        input_ids.push(s.cls);
        input_ids.extend_from_slice(&ex.source[..src_keep]);
        input_ids.push(s.sep);
        let ns = input_ids.len();
        let mut target: Vec<u32> = ex.target[..tgt_keep].to_vec();
        target.push(s.sep);
        let nt = target.len();
        let mut rng = example_rng(seed, epoch, index);
        let corrupt = threshold(self.config.target_mask_prob);
        let keep = threshold(self.config.keep_prob);
        let random = threshold(self.config.keep_prob + self.config.random_prob);
        for &t in &target {
            let token = if u64::from(rng.next_u32()) < corrupt {
                let p = u64::from(rng.next_u32());
                if p < keep {
                    t
                } else if p < random {
                    self.set.random_ordinary(&mut rng)
                } else {
                    s.mask
                }
            } else {
                t
            };
            input_ids.push(token);
        }
        input_ids.extend(std::iter::repeat_n(self.pseudo, nt));
        let mut segment_ids = vec![0u8; ns];
        segment_ids.resize(ns + 2 * nt, 1);
        let mut position_ids: Vec<u32> = (0..(ns + nt) as u32).collect();
        position_ids.extend(ns as u32..(ns + nt) as u32);
        let (ns32, nt32) = (ns as u32, nt as u32);
        let mut blocks = vec![VisibleBlock {
            queries: Span::new(0, ns32),
            keys: vec![Span::new(0, ns32)],
        }];
        for i in 0..nt32 {
            blocks.push(VisibleBlock {
                queries: Span::new(ns32 + i, ns32 + i + 1),
                keys: vec![Span::new(0, ns32 + i + 1)],
            });
            let p = ns32 + nt32 + i;
            blocks.push(VisibleBlock {
                queries: Span::new(p, p + 1),
                keys: vec![Span::new(0, ns32 + i), Span::new(p, p + 1)],
            });
        }
        let targets = (0..nt).map(|i| ((ns + nt + i) as u32, target[i])).collect();
        Seq2SeqRow {
            input_ids,
            segment_ids,
            position_ids,
            blocks,
            targets,
            source_len: ns,
        }
    }

    /// Examples `first_index..` of `epoch` as one padded batch (rows in
    /// parallel; a pure function of the examples, seed, epoch and index).
    pub fn batch(
        &self,
        examples: &[Seq2SeqExample],
        seed: u64,
        epoch: u64,
        first_index: u64,
    ) -> Batch {
        let rows: Vec<Seq2SeqRow> = examples
            .par_iter()
            .enumerate()
            .map(|(i, ex)| self.row(ex, seed, epoch, first_index + i as u64))
            .collect();
        let l = rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0);
        let b = rows.len();
        let mut batch = Batch {
            batch_size: b,
            seq_len: l,
            input_ids: vec![i64::from(self.specials.pad); b * l],
            token_type_ids: vec![0; b * l],
            attention_mask: vec![0; b * l],
            position_ids: Some(vec![0; b * l]),
            visibility: Some(Visibility {
                rows: Vec::with_capacity(b),
            }),
            role_ids: None,
            targets: Targets::default(),
        };
        for (r, row) in rows.into_iter().enumerate() {
            let cells = r * l..r * l + row.input_ids.len();
            for (k, cell) in cells.clone().enumerate() {
                batch.input_ids[cell] = i64::from(row.input_ids[k]);
                batch.token_type_ids[cell] = i64::from(row.segment_ids[k]);
                if let Some(p) = batch.position_ids.as_mut() {
                    p[cell] = i64::from(row.position_ids[k]);
                }
            }
            batch.attention_mask[cells].fill(1);
            batch
                .targets
                .pseudo
                .extend(row.targets.iter().map(|&(pos, target)| MaskedTarget {
                    row: r as u32,
                    pos,
                    target,
                }));
            if let Some(v) = batch.visibility.as_mut() {
                v.rows.push(row.blocks);
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials() -> SpecialTokens {
        SpecialTokens {
            vocab_size: 50,
            pad: 0,
            unk: 1,
            cls: 2,
            sep: 3,
            mask: 4,
            pseudo_mask: Some(5),
            all_special: vec![0, 1, 2, 3, 4, 5],
        }
    }

    fn clean() -> Seq2SeqConfig {
        Seq2SeqConfig {
            target_mask_prob: 0.0,
            ..Seq2SeqConfig::default()
        }
    }

    #[test]
    fn a_hand_worked_row_entry_by_entry() -> Result<()> {
        let b = Seq2SeqBuilder::new(clean(), specials())?;
        let ex = Seq2SeqExample {
            source: vec![10, 11],
            target: vec![20, 21],
        };
        let row = b.row(&ex, 1, 0, 0);
        // [CLS] s1 s2 [SEP] | t1 t2 [SEP] | [P] [P] [P]
        assert_eq!(row.input_ids, vec![2, 10, 11, 3, 20, 21, 3, 5, 5, 5]);
        assert_eq!(row.position_ids, vec![0, 1, 2, 3, 4, 5, 6, 4, 5, 6]);
        assert_eq!(row.segment_ids, vec![0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
        assert_eq!(row.targets, vec![(7, 20), (8, 21), (9, 3)]);
        #[rustfmt::skip]
        let expected: [[u8; 10]; 10] = [
            // CLS s1 s2 SEP t1 t2 SEP P1 P2 P3
            [1, 1, 1, 1, 0, 0, 0, 0, 0, 0], // [CLS]
            [1, 1, 1, 1, 0, 0, 0, 0, 0, 0], // s1
            [1, 1, 1, 1, 0, 0, 0, 0, 0, 0], // s2
            [1, 1, 1, 1, 0, 0, 0, 0, 0, 0], // [SEP]
            [1, 1, 1, 1, 1, 0, 0, 0, 0, 0], // t1: source, itself
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 0], // t2: source, t1, itself
            [1, 1, 1, 1, 1, 1, 1, 0, 0, 0], // [SEP]
            [1, 1, 1, 1, 0, 0, 0, 1, 0, 0], // [P] for t1: source, itself
            [1, 1, 1, 1, 1, 0, 0, 0, 1, 0], // [P] for t2: source, t1, itself
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 1], // [P] for [SEP]: source, t1 t2, itself
        ];
        let dense = row.dense();
        for (q, want) in expected.iter().enumerate() {
            assert_eq!(dense[q], want.to_vec(), "query {q}");
        }
        Ok(())
    }

    #[test]
    fn truncation_and_corruption_follow_the_settings() -> Result<()> {
        let cfg = Seq2SeqConfig {
            max_source_len: 4,
            max_target_len: 3,
            target_mask_prob: 1.0,
            random_prob: 0.0,
            keep_prob: 0.0,
        };
        let b = Seq2SeqBuilder::new(cfg, specials())?;
        let ex = Seq2SeqExample {
            source: vec![10, 11, 12, 13],
            target: vec![20, 21, 22, 23],
        };
        let row = b.row(&ex, 1, 0, 0);
        // Source cut to 2 tokens, target to 2 + [SEP]; every target input is [MASK].
        assert_eq!(row.input_ids, vec![2, 10, 11, 3, 4, 4, 4, 5, 5, 5]);
        assert_eq!(row.targets, vec![(7, 20), (8, 21), (9, 3)]);
        // About half the target tokens are corrupted at s2s-ft's default.
        let half = Seq2SeqBuilder::new(clean_with(0.5), specials())?;
        let long = Seq2SeqExample {
            source: vec![10],
            target: (20..44).collect(),
        };
        let mut corrupted = 0;
        for i in 0..100 {
            let r = half.row(&long, 3, 0, i);
            corrupted += r.input_ids[3..28]
                .iter()
                .zip(long.target.iter().chain([&3]))
                .filter(|(a, b)| a != b)
                .count();
        }
        let rate = corrupted as f64 / 2500.0;
        assert!((0.4..0.5).contains(&rate), "{rate}"); // 0.5 x 0.9 changed
        Ok(())
    }

    fn clean_with(p: f64) -> Seq2SeqConfig {
        Seq2SeqConfig {
            target_mask_prob: p,
            ..Seq2SeqConfig::default()
        }
    }

    #[test]
    fn batches_are_deterministic_and_need_the_pseudo_token() -> Result<()> {
        let b = Seq2SeqBuilder::new(clean_with(0.5), specials())?;
        let exs: Vec<Seq2SeqExample> = (0..8)
            .map(|i| Seq2SeqExample {
                source: (10..10 + i).collect(),
                target: (20..22 + i % 3).collect(),
            })
            .collect();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .map_err(|e| Error::InvalidValue {
                field: "threads".into(),
                value: e.to_string(),
                expected: "a pool",
            })?
            .install(|| b.batch(&exs, 4, 1, 0));
        assert_eq!(one, b.batch(&exs, 4, 1, 0));
        assert_eq!(
            one.targets.pseudo.len(),
            exs.iter().map(|e| e.target.len() + 1).sum::<usize>()
        );
        let mut no_p = specials();
        no_p.pseudo_mask = None;
        assert!(Seq2SeqBuilder::new(clean(), no_p).is_err());
        Ok(())
    }
}

//! Collation: masked instances as plain row-major `Vec`s the trainer turns into
//! tensors. This is the contract between masking and the models.
//!
//! A [`Batch`] carries the model inputs (ids, segments, padding, and when a
//! scheme needs them explicit position ids and an attention [`Visibility`]
//! rule) and its prediction [`Targets`], one typed group per kind of target.
//! BERT-style schemes fill only `targets.masked_lm` (and `targets.pair` for
//! NSP/SOP data); a scheme that appends tokens, like UniLM-v2's `[P]`
//! pseudo-masks, builds its own rows through [`BatchBuilder`] and fills
//! `position_ids`, `visibility` and `targets.pseudo`, touching nothing else.

use cloze_core::Instance;

use crate::Result;

/// One position whose original token the model must predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MaskedTarget {
    /// Row in the batch.
    pub row: u32,
    /// Position in the row.
    pub pos: u32,
    /// The original token id.
    pub target: u32,
}

/// The prediction targets of a batch, one typed group per kind. Objectives
/// read the groups they train and ignore the rest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Targets {
    /// Masked-LM targets: positions to predict, sorted by `(row, pos)`; the
    /// model gathers only these.
    pub masked_lm: Vec<MaskedTarget>,
    /// Pseudo-token targets (UniLM-v2's partially autoregressive `[P]`
    /// positions), sorted by `(row, pos)`; empty for BERT-style schemes.
    pub pseudo: Vec<MaskedTarget>,
    /// Left-to-right targets of a generated part (a dialogue response): the
    /// token at `pos` predicts `target`, the token that follows it. Sorted by
    /// `(row, pos)`; empty for schemes that generate nothing.
    pub response: Vec<MaskedTarget>,
    /// NSP/SOP class per row, when every instance has a pair label; a
    /// dialogue batch with coherence rows labels its coherence rows (0
    /// coherent, 1 not) and gives its other rows [`IGNORED_LABEL`].
    pub pair: Option<Vec<i64>>,
    /// A class label per row (sequence classification), when the data has them.
    pub class: Option<Vec<i64>>,
    /// A class label per position, row-major `[B * L]` (token classification),
    /// with [`IGNORED_LABEL`] where no label applies (special tokens, padding,
    /// a word's later sub-tokens), when the data has them.
    pub tokens: Option<Vec<i64>>,
}

/// The label of a position that no loss or metric counts: `-100`, HF's
/// `ignore_index`, so label grids read the same in both.
pub const IGNORED_LABEL: i64 = -100;

/// A half-open range of positions `start..end` in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First position.
    pub start: u32,
    /// One past the last position.
    pub end: u32,
}

impl Span {
    /// `start..end`.
    pub fn new(start: u32, end: u32) -> Self {
        Self { start, end }
    }
}

/// A block of query positions and the key spans they may attend to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VisibleBlock {
    /// The query positions the rule applies to.
    pub queries: Span,
    /// The key positions those queries may see (padding stays invisible).
    pub keys: Vec<Span>,
}

/// Who may attend to whom, compactly: per row, blocks of query positions with
/// the key spans each may see. A query position outside every block of its
/// row sees every real token (BERT's bidirectional rule); a position in
/// several blocks sees the union of their keys. Expanded to a dense
/// `[B, L, L]` mask only on the tensor side ([`Visibility::dense`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Visibility {
    /// `rows[r]` holds the blocks of row `r`.
    pub rows: Vec<Vec<VisibleBlock>>,
}

impl Visibility {
    /// The dense `batch_size * seq_len * seq_len` mask, row-major
    /// `[row][query][key]`, 1 where the query may see the key. `attention_mask`
    /// is the batch's padding mask: padding keys are never visible.
    pub fn dense(&self, batch_size: usize, seq_len: usize, attention_mask: &[i64]) -> Vec<u8> {
        let l = seq_len;
        let mut out = vec![0u8; batch_size * l * l];
        for row in 0..batch_size {
            let pad = &attention_mask[row * l..(row + 1) * l];
            let blocks = self.rows.get(row).map(Vec::as_slice).unwrap_or_default();
            let grid = &mut out[row * l * l..(row + 1) * l * l];
            // Each block writes its keys into its queries' rows (time
            // proportional to the cells it allows, not to blocks x L x L);
            // queries no block names see every key.
            let mut ruled = vec![false; l];
            for b in blocks {
                let queries = (b.queries.start as usize).min(l)..(b.queries.end as usize).min(l);
                for q in queries {
                    ruled[q] = true;
                    for s in &b.keys {
                        let keys = (s.start as usize).min(l)..(s.end as usize).min(l);
                        grid[q * l..(q + 1) * l][keys].fill(1);
                    }
                }
            }
            for (q, &is_ruled) in ruled.iter().enumerate() {
                let dst = &mut grid[q * l..(q + 1) * l];
                if !is_ruled {
                    dst.fill(1);
                }
                for (d, &p) in dst.iter_mut().zip(pad) {
                    if p == 0 {
                        *d = 0;
                    }
                }
            }
        }
        out
    }
}

/// One unpadded row's `len x len` visibility under `blocks`, as
/// `[query][key]` rows of 0/1 (for tests and inspection of a layout).
pub fn dense_row(blocks: &[VisibleBlock], len: usize) -> Vec<Vec<u8>> {
    let v = Visibility {
        rows: vec![blocks.to_vec()],
    };
    v.dense(1, len, &vec![1; len])
        .chunks(len.max(1))
        .map(<[u8]>::to_vec)
        .collect()
}

/// A collated batch. Build one with `..Default::default()` rather than
/// listing every field: schemes add optional parts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// Number of rows.
    pub batch_size: usize,
    /// Padded length of every row.
    pub seq_len: usize,
    /// `batch_size * seq_len` token ids, row-major, padded with `[PAD]`.
    pub input_ids: Vec<i64>,
    /// Segment (token type) ids, 0 on padding.
    pub token_type_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Explicit position ids, `batch_size * seq_len`, when positions are not
    /// `0..seq_len` (UniLM-v2's `[M]`/`[P]` tokens share their token's position).
    pub position_ids: Option<Vec<i64>>,
    /// Attention rule beyond padding; `None` is fully bidirectional.
    pub visibility: Option<Visibility>,
    /// Speaker role ids, `batch_size * seq_len`, 0 on padding, for models
    /// with role embeddings (PLATO-style dialogue); `None` for every other scheme.
    pub role_ids: Option<Vec<i64>>,
    /// What to predict.
    pub targets: Targets,
}

impl Batch {
    /// Row `row` of `input_ids`.
    pub fn row(&self, row: usize) -> &[i64] {
        &self.input_ids[row * self.seq_len..(row + 1) * self.seq_len]
    }

    /// Number of real (non-padding) tokens.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }

    /// HuggingFace-style dense labels: the masked-LM target at masked
    /// positions, `ignore` (HF uses -100) everywhere else; for parity checks
    /// against HF's collator.
    pub fn dense_labels(&self, ignore: i64) -> Vec<i64> {
        let mut labels = vec![ignore; self.batch_size * self.seq_len];
        for m in &self.targets.masked_lm {
            labels[m.row as usize * self.seq_len + m.pos as usize] = i64::from(m.target);
        }
        labels
    }

    /// Flat indices `row * seq_len + pos` of `targets`, in order (what an
    /// `index_select` over the flattened hidden states needs).
    pub fn flat_positions(&self, targets: &[MaskedTarget]) -> Vec<i64> {
        targets
            .iter()
            .map(|m| i64::from(m.row) * self.seq_len as i64 + i64::from(m.pos))
            .collect()
    }

    /// Flat indices of the masked-LM positions, in order.
    pub fn masked_flat_positions(&self) -> Vec<i64> {
        self.flat_positions(&self.targets.masked_lm)
    }

    /// The masked-LM target ids, in order.
    pub fn masked_targets(&self) -> Vec<i64> {
        self.targets
            .masked_lm
            .iter()
            .map(|m| i64::from(m.target))
            .collect()
    }
}

/// Anything that turns a run of consecutive examples into a training batch:
/// the seam between masking schemes and the trainer. [`crate::Masker`]
/// implements it for the length-preserving BERT-style schemes; a scheme that
/// appends tokens or needs its own attention rule implements it directly.
///
/// Determinism contract: the batch is a pure function of the instances,
/// `seed`, `epoch` and `first_index` (the position of `instances[0]` in the
/// epoch's order), whatever thread calls it.
pub trait BatchBuilder: Send + Sync + std::fmt::Debug {
    /// Builds the batch of `instances`, examples `first_index..` of `epoch`.
    fn build(
        &self,
        instances: &[Instance],
        seed: u64,
        epoch: u64,
        first_index: u64,
    ) -> Result<Batch>;
}

impl BatchBuilder for crate::Masker {
    fn build(
        &self,
        instances: &[Instance],
        seed: u64,
        epoch: u64,
        first_index: u64,
    ) -> Result<Batch> {
        self.mask_batch(instances, seed, epoch, first_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_expands_blocks_and_hides_padding() {
        // One row of 4 positions, the last one padding. Position 2 sees only
        // 0..2; the others see every real token.
        let v = Visibility {
            rows: vec![vec![VisibleBlock {
                queries: Span::new(2, 3),
                keys: vec![Span::new(0, 2)],
            }]],
        };
        let dense = v.dense(1, 4, &[1, 1, 1, 0]);
        assert_eq!(
            dense,
            vec![
                1, 1, 1, 0, // query 0: all real keys
                1, 1, 1, 0, // query 1
                1, 1, 0, 0, // query 2: keys 0 and 1 only
                1, 1, 1, 0, // query 3 (padding) follows the default rule
            ]
        );
        // Rows without blocks are fully bidirectional.
        let none = Visibility::default().dense(1, 2, &[1, 1]);
        assert_eq!(none, vec![1, 1, 1, 1]);
    }

    #[test]
    fn dense_labels_and_positions_follow_the_masked_lm_targets() {
        let b = Batch {
            batch_size: 2,
            seq_len: 3,
            input_ids: vec![0; 6],
            token_type_ids: vec![0; 6],
            attention_mask: vec![1; 6],
            targets: Targets {
                masked_lm: vec![
                    MaskedTarget {
                        row: 0,
                        pos: 1,
                        target: 7,
                    },
                    MaskedTarget {
                        row: 1,
                        pos: 2,
                        target: 9,
                    },
                ],
                ..Targets::default()
            },
            ..Batch::default()
        };
        assert_eq!(b.dense_labels(-100), vec![-100, 7, -100, -100, -100, 9]);
        assert_eq!(b.masked_flat_positions(), vec![1, 5]);
        assert_eq!(b.masked_targets(), vec![7, 9]);
    }
}

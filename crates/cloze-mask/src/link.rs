//! Entity-slot rows for knowledge-graph link prediction with a masked LM
//! (MLMLM, Clouatre et al. 2021): a triple written as text with the asked
//! entity replaced by as many `[MASK]` tokens as the entity has tokens.
//!
//! The triple always reads in its own order, head, relation, tail, one
//! `[SEP]` after each part:
//!
//! ```text
//! tail asked:  [CLS] head tokens [SEP] relation tokens [SEP] [MASK] x k  [SEP]
//! head asked:  [CLS] [MASK] x k  [SEP] relation tokens [SEP] tail tokens [SEP]
//! segments:    0 ............... 0     1 ............. 1     0 ......... 0
//! ```
//!
//! The relation is segment 1 and both entities segment 0, as KG-BERT (Yao
//! et al. 2019) lays triples out. Training rows ([`SlotLayout::batch`] with
//! answers) predict the answer's tokens at the slot; scoring rows (without)
//! carry the slot positions as targets with id 0, so a model can gather
//! its predictions there. Nothing here is random: the slot is always fully
//! masked, as MLMLM scores it.
//!
//! ```
//! use cloze_mask::link::{Slot, SlotLayout};
//!
//! let layout = SlotLayout { cls: 2, sep: 3, mask: 4, pad: 0 };
//! // head "virus" = [10], relation "causes" = [11], the tail asked with 2 masks.
//! let row = layout.row(Slot::Tail, &[10], &[11], 2);
//! assert_eq!(row.ids, [2, 10, 3, 11, 3, 4, 4, 3]);
//! assert_eq!(row.segments, [0, 0, 0, 1, 1, 0, 0, 0]);
//! assert_eq!(row.slot(), 5..7);
//! let batch = layout.batch(&[row], Some(&[&[20, 21][..]]))?;
//! assert_eq!(batch.masked_targets(), [20, 21]);
//! # Ok::<(), cloze_mask::Error>(())
//! ```

use std::ops::Range;

use cloze_core::SpecialTokens;

use crate::batch::{Batch, MaskedTarget, Targets};
use crate::error::{Error, Result};

/// Which entity of the triple the slot stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// `(?, relation, tail)`.
    Head,
    /// `(head, relation, ?)`.
    Tail,
}

/// The special tokens of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLayout {
    /// `[CLS]`.
    pub cls: u32,
    /// `[SEP]`.
    pub sep: u32,
    /// `[MASK]`, repeated in the slot.
    pub mask: u32,
    /// `[PAD]`.
    pub pad: u32,
}

/// One unpadded row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRow {
    /// Token ids, specials included.
    pub ids: Vec<u32>,
    /// Segment ids, one per token.
    pub segments: Vec<u8>,
    /// First position of the slot.
    pub slot_start: usize,
    /// Number of `[MASK]` tokens in the slot.
    pub slot_len: usize,
}

impl SlotRow {
    /// The positions of the slot.
    pub fn slot(&self) -> Range<usize> {
        self.slot_start..self.slot_start + self.slot_len
    }
}

impl SlotLayout {
    /// The layout of a vocabulary's special tokens.
    pub fn new(specials: &SpecialTokens) -> Self {
        Self {
            cls: specials.cls,
            sep: specials.sep,
            mask: specials.mask,
            pad: specials.pad,
        }
    }

    /// The row asking for `slot` with `slot_len` masks, given the other
    /// entity's tokens (`known`, no specials) and the relation's.
    pub fn row(&self, slot: Slot, known: &[u32], relation: &[u32], slot_len: usize) -> SlotRow {
        let len = known.len() + relation.len() + slot_len + 4;
        let mut ids = Vec::with_capacity(len);
        let mut segments = Vec::with_capacity(len);
        let mut push = |part: &mut dyn Iterator<Item = u32>, segment: u8| {
            for t in part {
                ids.push(t);
                segments.push(segment);
            }
        };
        push(&mut std::iter::once(self.cls), 0);
        let masks = std::iter::repeat_n(self.mask, slot_len);
        let slot_start = match slot {
            Slot::Tail => {
                push(&mut known.iter().copied().chain([self.sep]), 0);
                push(&mut relation.iter().copied().chain([self.sep]), 1);
                let start = 1 + known.len() + 1 + relation.len() + 1;
                push(&mut masks.chain([self.sep]), 0);
                start
            }
            Slot::Head => {
                push(&mut masks.chain([self.sep]), 0);
                push(&mut relation.iter().copied().chain([self.sep]), 1);
                push(&mut known.iter().copied().chain([self.sep]), 0);
                1
            }
        };
        SlotRow {
            ids,
            segments,
            slot_start,
            slot_len,
        }
    }

    /// Pads `rows` into one batch. With `answers` (one per row, as long as
    /// its slot) the masked-LM targets are the answers' tokens; without,
    /// every slot position is a target with id 0 (a scoring batch: the
    /// model's predictions are gathered there, the ids are never read).
    pub fn batch(&self, rows: &[SlotRow], answers: Option<&[&[u32]]>) -> Result<Batch> {
        if let Some(a) = answers {
            if a.len() != rows.len() {
                return Err(Error::InvalidValue {
                    field: "answers".into(),
                    value: a.len().to_string(),
                    expected: "one answer per row",
                });
            }
            if let Some((i, (r, a))) = rows
                .iter()
                .zip(a)
                .enumerate()
                .find(|(_, (r, a))| r.slot_len != a.len())
            {
                return Err(Error::InvalidValue {
                    field: format!("answers[{i}]"),
                    value: format!("{} tokens", a.len()),
                    expected: if r.slot_len == 0 {
                        "no tokens for an empty slot"
                    } else {
                        "as many tokens as the row's slot"
                    },
                });
            }
        }
        let seq_len = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        let n = rows.len() * seq_len;
        let mut input_ids = Vec::with_capacity(n);
        let mut token_type_ids = Vec::with_capacity(n);
        let mut attention_mask = Vec::with_capacity(n);
        let mut masked_lm = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let pad = seq_len - row.ids.len();
            input_ids.extend(row.ids.iter().map(|&t| i64::from(t)));
            input_ids.extend(std::iter::repeat_n(i64::from(self.pad), pad));
            token_type_ids.extend(row.segments.iter().map(|&s| i64::from(s)));
            token_type_ids.extend(std::iter::repeat_n(0, pad));
            attention_mask.extend(std::iter::repeat_n(1, row.ids.len()));
            attention_mask.extend(std::iter::repeat_n(0, pad));
            let answer = answers.and_then(|a| a.get(r));
            for (i, pos) in row.slot().enumerate() {
                masked_lm.push(MaskedTarget {
                    row: r as u32,
                    pos: pos as u32,
                    target: answer.and_then(|a| a.get(i)).copied().unwrap_or(0),
                });
            }
        }
        Ok(Batch {
            batch_size: rows.len(),
            seq_len,
            input_ids,
            token_type_ids,
            attention_mask,
            targets: Targets {
                masked_lm,
                ..Targets::default()
            },
            ..Batch::default()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const L: SlotLayout = SlotLayout {
        cls: 2,
        sep: 3,
        mask: 4,
        pad: 0,
    };

    #[test]
    fn head_rows_put_the_slot_first() {
        let row = L.row(Slot::Head, &[30, 31], &[11], 3);
        assert_eq!(row.ids, [2, 4, 4, 4, 3, 11, 3, 30, 31, 3]);
        assert_eq!(row.segments, [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]);
        assert_eq!(row.slot(), 1..4);
    }

    #[test]
    fn batches_pad_and_target_the_slots_in_row_order() {
        let a = L.row(Slot::Tail, &[10], &[11, 12], 1);
        let b = L.row(Slot::Head, &[10, 13, 14], &[11], 2);
        let batch = L
            .batch(&[a.clone(), b.clone()], Some(&[&[7][..], &[8, 9]]))
            .unwrap();
        assert_eq!(batch.seq_len, 10);
        assert_eq!(batch.row(0), [2, 10, 3, 11, 12, 3, 4, 3, 0, 0]);
        assert_eq!(&batch.attention_mask[..10], [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(batch.masked_flat_positions(), [6, 10 + 1, 10 + 2]);
        assert_eq!(batch.masked_targets(), [7, 8, 9]);
        // Scoring batches keep the positions, with placeholder ids.
        let scoring = L.batch(&[a.clone(), b], None).unwrap();
        assert_eq!(scoring.masked_flat_positions(), [6, 11, 12]);
        assert_eq!(scoring.masked_targets(), [0, 0, 0]);
        // An answer of the wrong length is refused.
        assert!(L.batch(&[a], Some(&[&[7, 7][..]])).is_err());
    }
}

//! UniLM-v2's pseudo-masked layout (Bao et al. 2020, section 3): one row
//! trains the autoencoding (AE) and the partially autoregressive (PAR)
//! objectives at once.
//!
//! A row is the context, then the `[P]` pseudo tokens, then copies of the
//! original tokens, the last two in factorization order (the order the
//! selector drew its spans in; `blockwise` draws one block per step):
//!
//! ```text
//! context (n tokens, [M] at masked positions) | [P] x m | originals x m
//! ```
//!
//! Every appended token carries the position id of the token it stands for
//! (and its segment id), so the model sees a `[P]` and an original "at" the
//! masked position. With steps `s = 1..S` of lengths `len_s` starting at
//! offset `c_s` inside the appended parts, the attention rule of section 3.2
//! is (keys outside these are invisible):
//!
//! - context and `[M]` tokens see the context (with its `[M]`s) only, so the
//!   AE predictions at `[M]` never see an original;
//! - a `[P]` of step s sees the context, the originals of steps `< s` and
//!   the `[P]`s of step s, never its own original (explicit leakage);
//! - an original of step s sees the context and the originals of steps
//!   `<= s`, never a `[P]`; so a later step's `[P]`, which sees this
//!   original, cannot learn through it what the original saw (implicit
//!   leakage).
//!
//! The AE targets ([`crate::Targets::masked_lm`]) are the masked context
//! positions; the PAR targets ([`crate::Targets::pseudo`]) are the `[P]`
//! positions, each predicting the original it stands for.
//!
//! The masked context tokens are corrupted as the scheme says (UniLM-v2
//! section 4.1: `[MASK]` 80%, random 10%, kept 10%), so a kept token is
//! visible in the context to everything, as in BERT; only the appended
//! originals are hidden by the rule above.
//!
//! The worked example of the paper and its full mask are in
//! `docs/unilmv2.md`, and are a unit test below.
//!
//! ```
//! use cloze_mask::{PseudoRow, Step};
//!
//! // x1..x6 (ids 11..16), x2, x4, x5 masked; order {x4, x5} then {x2}.
//! let original = [11, 12, 13, 14, 15, 16];
//! let context = [11, 4, 13, 4, 4, 16]; // [M] = 4
//! let steps = [Step { start: 3, len: 2 }, Step { start: 1, len: 1 }];
//! let row = PseudoRow::new(&context, &original, &[0; 6], &steps, 5)?; // [P] = 5
//! assert_eq!(row.input_ids, [11, 4, 13, 4, 4, 16, 5, 5, 5, 14, 15, 12]);
//! assert_eq!(row.position_ids, [0, 1, 2, 3, 4, 5, 3, 4, 1, 3, 4, 1]);
//! let mask = row.dense();
//! assert_eq!(mask[8][9], 1); // [P] of x2 sees the original x4 (an earlier step)
//! assert_eq!(mask[8][11], 0); // but never its own original x2
//! assert_eq!(mask[6][9], 0); // [P] of x4 does not see x4
//! # Ok::<(), cloze_mask::Error>(())
//! ```

use cloze_core::Instance;
use rayon::prelude::*;

use crate::batch::{Batch, MaskedTarget, Span, Targets, Visibility, VisibleBlock};
use crate::config::PadTo;
use crate::error::{Error, Result};
use crate::masker::Masker;
use crate::stats::MaskStats;

/// One factorization step: the context tokens `start .. start + len`,
/// predicted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// First token position in the context.
    pub start: u32,
    /// Number of tokens.
    pub len: u32,
}

/// One row of the pseudo-masked layout, before padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PseudoRow {
    /// Context (corrupted), then `[P]`s, then originals.
    pub input_ids: Vec<u32>,
    /// Segment ids; an appended token takes its token's.
    pub segment_ids: Vec<u8>,
    /// Position ids; an appended token takes its token's.
    pub position_ids: Vec<u32>,
    /// The attention rule as query blocks (see the module docs).
    pub blocks: Vec<VisibleBlock>,
    /// AE targets `(position, original)`: the masked context positions, sorted.
    pub ae: Vec<(u32, u32)>,
    /// PAR targets `(position, original)`: the `[P]` positions, sorted.
    pub par: Vec<(u32, u32)>,
}

impl PseudoRow {
    /// Lays out one instance: `context` is the corrupted sequence, `original`
    /// the uncorrupted one (same length), `steps` the masked spans in
    /// factorization order, disjoint and inside the sequence (the caller's
    /// selector guarantees both; a step outside the sequence is an error).
    pub fn new(
        context: &[u32],
        original: &[u32],
        segments: &[u8],
        steps: &[Step],
        pseudo_id: u32,
    ) -> Result<Self> {
        let n = context.len();
        if original.len() != n || segments.len() != n {
            return Err(Error::RaggedInstance {
                index: 0,
                tokens: n,
                segments: segments.len(),
                words: original.len(),
            });
        }
        let m: u32 = steps.iter().map(|s| s.len).sum();
        let mut covered = vec![false; n];
        for s in steps {
            let end = s.start as usize + s.len as usize;
            if end > n || covered[s.start as usize..end].iter().any(|&c| c) {
                return Err(Error::InvalidValue {
                    field: "pseudo-masked step".to_owned(),
                    value: format!("{}..{end} of a {n}-token sequence", s.start),
                    expected: "disjoint steps inside the sequence",
                });
            }
            covered[s.start as usize..end].fill(true);
        }
        let total = n + 2 * m as usize;
        let mut input_ids = Vec::with_capacity(total);
        let mut segment_ids = Vec::with_capacity(total);
        let mut position_ids = Vec::with_capacity(total);
        input_ids.extend_from_slice(context);
        segment_ids.extend_from_slice(segments);
        position_ids.extend(0..n as u32);
        let order = || steps.iter().flat_map(|s| s.start..s.start + s.len);
        for pos in order() {
            input_ids.push(pseudo_id);
            segment_ids.push(segments[pos as usize]);
            position_ids.push(pos);
        }
        for pos in order() {
            input_ids.push(original[pos as usize]);
            segment_ids.push(segments[pos as usize]);
            position_ids.push(pos);
        }
        let n32 = n as u32;
        let (p0, o0) = (n32, n32 + m);
        let context_span = Span::new(0, n32);
        let mut blocks = vec![VisibleBlock {
            queries: context_span,
            keys: vec![context_span],
        }];
        let mut par = Vec::with_capacity(m as usize);
        let mut done = 0u32;
        for s in steps.iter().filter(|s| s.len > 0) {
            let pseudo = Span::new(p0 + done, p0 + done + s.len);
            let mut pseudo_keys = vec![context_span];
            if done > 0 {
                pseudo_keys.push(Span::new(o0, o0 + done));
            }
            pseudo_keys.push(pseudo);
            blocks.push(VisibleBlock {
                queries: pseudo,
                keys: pseudo_keys,
            });
            blocks.push(VisibleBlock {
                queries: Span::new(o0 + done, o0 + done + s.len),
                keys: vec![context_span, Span::new(o0, o0 + done + s.len)],
            });
            for k in 0..s.len {
                par.push((pseudo.start + k, original[(s.start + k) as usize]));
            }
            done += s.len;
        }
        let ae = (0..n)
            .filter(|&p| covered[p])
            .map(|p| (p as u32, original[p]))
            .collect();
        Ok(Self {
            input_ids,
            segment_ids,
            position_ids,
            blocks,
            ae,
            par,
        })
    }

    /// Row length: context + 2 x masked tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether the row is empty.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// The row's `len x len` visibility, `[query][key]`, 1 = visible.
    pub fn dense(&self) -> Vec<Vec<u8>> {
        crate::batch::dense_row(&self.blocks, self.len())
    }
}

/// The masker's selection and corruption, laid out as pseudo-masked rows
/// ([`crate::Layout::PseudoMasked`]); called by [`Masker`]'s batch path.
pub(crate) fn collate(
    masker: &Masker,
    pseudo_id: u32,
    instances: &[Instance],
    seed: u64,
    epoch: u64,
    first_index: u64,
    with_stats: bool,
) -> Result<(Batch, MaskStats)> {
    let _span = tracing::trace_span!("pseudo_mask_batch", n = instances.len()).entered();
    let rows: Vec<PseudoRow> = instances
        .par_iter()
        .enumerate()
        .with_min_len(4)
        .map(|(i, inst)| {
            let index = first_index + i as u64;
            let masked = masker.mask(inst, seed, epoch, index)?;
            let steps: Vec<Step> = masked
                .spans
                .iter()
                .map(|s| Step {
                    start: s.start,
                    len: s.tokens,
                })
                .collect();
            PseudoRow::new(
                &masked.input_ids,
                &inst.tokens,
                &inst.segment_ids,
                &steps,
                pseudo_id,
            )
            .map_err(|e| match e {
                Error::RaggedInstance {
                    tokens,
                    segments,
                    words,
                    ..
                } => Error::RaggedInstance {
                    index,
                    tokens,
                    segments,
                    words,
                },
                other => other,
            })
        })
        .collect::<Result<_>>()?;
    let pad_to = masker.config().collate.pad_to;
    let max_len = rows.iter().map(PseudoRow::len).max().unwrap_or(0);
    let seq_len = pad_to.seq_len(max_len);
    if let PadTo::Fixed { len } = pad_to {
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() > len) {
            return Err(Error::TooLong {
                index: first_index + i as u64,
                len: r.len(),
                fixed: len,
            });
        }
    }
    let b = rows.len();
    let pad = i64::from(masker.specials().pad);
    let mut batch = Batch {
        batch_size: b,
        seq_len,
        input_ids: vec![pad; b * seq_len],
        token_type_ids: vec![0; b * seq_len],
        attention_mask: vec![0; b * seq_len],
        position_ids: Some(vec![0; b * seq_len]),
        visibility: Some(Visibility {
            rows: Vec::with_capacity(b),
        }),
        role_ids: None,
        targets: Targets {
            pair: instances
                .iter()
                .map(|x| x.pair_label.map(|p| i64::from(p.class())))
                .collect::<Option<Vec<i64>>>()
                .filter(|_| b > 0),
            ..Targets::default()
        },
    };
    for (r, row) in rows.into_iter().enumerate() {
        let at = r * seq_len;
        let cells = at..at + row.len();
        for (dst, &t) in batch.input_ids[cells.clone()]
            .iter_mut()
            .zip(&row.input_ids)
        {
            *dst = i64::from(t);
        }
        for (dst, &t) in batch.token_type_ids[cells.clone()]
            .iter_mut()
            .zip(&row.segment_ids)
        {
            *dst = i64::from(t);
        }
        if let Some(p) = batch.position_ids.as_mut() {
            for (dst, &t) in p[cells.clone()].iter_mut().zip(&row.position_ids) {
                *dst = i64::from(t);
            }
        }
        batch.attention_mask[cells].fill(1);
        let target = |&(pos, target): &(u32, u32)| MaskedTarget {
            row: r as u32,
            pos,
            target,
        };
        batch.targets.masked_lm.extend(row.ae.iter().map(target));
        batch.targets.pseudo.extend(row.par.iter().map(target));
        if let Some(v) = batch.visibility.as_mut() {
            v.rows.push(row.blocks);
        }
    }
    let stats = if with_stats {
        masker.stats(instances, seed, epoch, first_index)?
    } else {
        MaskStats::default()
    };
    Ok((batch, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the paper (section 3.2, Figure 2): x1..x6 with
    /// x2, x4, x5 masked, factorization order {4, 5} then {2}. Ids 11..16
    /// stand for x1..x6, 4 for [M], 5 for [P].
    #[test]
    fn the_papers_worked_example_entry_by_entry() -> Result<()> {
        let original = [11, 12, 13, 14, 15, 16];
        let context = [11, 4, 13, 4, 4, 16];
        let steps = [Step { start: 3, len: 2 }, Step { start: 1, len: 1 }];
        let row = PseudoRow::new(&context, &original, &[0; 6], &steps, 5)?;
        // x1 [M] x3 [M] [M] x6 | [P]4 [P]5 [P]2 | x4 x5 x2
        assert_eq!(
            row.input_ids,
            vec![11, 4, 13, 4, 4, 16, 5, 5, 5, 14, 15, 12]
        );
        assert_eq!(row.position_ids, vec![0, 1, 2, 3, 4, 5, 3, 4, 1, 3, 4, 1]);
        assert_eq!(row.ae, vec![(1, 12), (3, 14), (4, 15)]);
        assert_eq!(row.par, vec![(6, 14), (7, 15), (8, 12)]);
        #[rustfmt::skip]
        let expected: [[u8; 12]; 12] = [
            //  x1 M2 x3 M4 M5 x6 P4 P5 P2 x4 x5 x2
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], // x1
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], // [M]2
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], // x3
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], // [M]4
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], // [M]5
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], // x6
            [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0], // [P]4: context, step 1's [P]s
            [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0], // [P]5
            [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0], // [P]2: context, x4 x5, itself
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0], // x4: context, step 1's originals
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0], // x5
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1], // x2: context, x4 x5, itself
        ];
        let dense = row.dense();
        for (q, want) in expected.iter().enumerate() {
            assert_eq!(dense[q], want.to_vec(), "query {q}");
        }
        Ok(())
    }

    #[test]
    fn three_steps_see_exactly_the_earlier_originals() -> Result<()> {
        // Ten tokens, steps {7}, {1, 2}, {5}: the [P] of step 3 sees the
        // originals of steps 1 and 2, none of its own or later.
        let original: Vec<u32> = (20..30).collect();
        let mut context = original.clone();
        for p in [1, 2, 5, 7] {
            context[p] = 4;
        }
        let steps = [
            Step { start: 7, len: 1 },
            Step { start: 1, len: 2 },
            Step { start: 5, len: 1 },
        ];
        let row = PseudoRow::new(&context, &original, &[0; 10], &steps, 5)?;
        assert_eq!(row.len(), 18);
        // [P] slots 10..14 stand for 7, 1, 2, 5; originals 14..18 likewise.
        assert_eq!(&row.position_ids[10..], &[7, 1, 2, 5, 7, 1, 2, 5]);
        let d = row.dense();
        let sees = |q: usize| -> Vec<usize> { (0..18).filter(|&k| d[q][k] == 1).collect() };
        let ctx: Vec<usize> = (0..10).collect();
        let with = |extra: &[usize]| -> Vec<usize> {
            let mut v = ctx.clone();
            v.extend_from_slice(extra);
            v
        };
        assert_eq!(sees(10), with(&[10])); // [P]7, step 1
        assert_eq!(sees(11), with(&[11, 12, 14])); // [P]1, step 2: x7
        assert_eq!(sees(12), with(&[11, 12, 14]));
        assert_eq!(sees(13), with(&[13, 14, 15, 16])); // [P]5, step 3: x7 x1 x2
        assert_eq!(sees(14), with(&[14])); // x7
        assert_eq!(sees(15), with(&[14, 15, 16])); // x1
        assert_eq!(sees(17), with(&[14, 15, 16, 17])); // x5
        for q in 0..10 {
            assert_eq!(sees(q), ctx, "context query {q}");
        }
        Ok(())
    }

    #[test]
    fn overlapping_or_outside_steps_are_refused() {
        let ids = [1u32, 2, 3, 4];
        let bad = [Step { start: 1, len: 2 }, Step { start: 2, len: 1 }];
        assert!(PseudoRow::new(&ids, &ids, &[0; 4], &bad, 5).is_err());
        let outside = [Step { start: 3, len: 2 }];
        assert!(PseudoRow::new(&ids, &ids, &[0; 4], &outside, 5).is_err());
    }
}

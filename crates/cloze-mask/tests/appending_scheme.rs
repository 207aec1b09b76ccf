//! A scheme that is not length-preserving, written outside the crate: it
//! appends a pseudo-mask token after each instance for its masked token
//! (the shape of UniLM-v2's `[P]` tokens), gives it the masked token's
//! position id, and hides it from the original tokens. It uses only the
//! public batch contract (`BatchBuilder`, `Targets::pseudo`, `position_ids`,
//! `Visibility`), which is the point: no library code was edited for it.

use cloze_core::{rng::example_rng, Instance, NO_WORD};
use cloze_mask::{Batch, BatchBuilder, MaskedTarget, Span, Targets, Visibility, VisibleBlock};
use rand::Rng;

const PAD: u32 = 0;
const MASK: u32 = 4;
const PSEUDO: u32 = 5;

/// Masks one random non-special token per instance with `[MASK]` and appends
/// a `[P]` for it.
#[derive(Debug)]
struct AppendPseudo;

impl BatchBuilder for AppendPseudo {
    fn build(
        &self,
        instances: &[Instance],
        seed: u64,
        epoch: u64,
        first_index: u64,
    ) -> cloze_mask::Result<Batch> {
        let seq_len = instances.iter().map(|i| i.len() + 1).max().unwrap_or(0);
        let rows = instances.len();
        let mut b = Batch {
            batch_size: rows,
            seq_len,
            input_ids: vec![i64::from(PAD); rows * seq_len],
            token_type_ids: vec![0; rows * seq_len],
            attention_mask: vec![0; rows * seq_len],
            position_ids: Some(vec![0; rows * seq_len]),
            visibility: Some(Visibility::default()),
            targets: Targets::default(),
            ..Batch::default()
        };
        for (r, inst) in instances.iter().enumerate() {
            let n = inst.len();
            let mut rng = example_rng(seed, epoch, first_index + r as u64);
            // Skip [CLS] and [SEP].
            let pos = rng.random_range(1..n - 1);
            let base = r * seq_len;
            for (i, &t) in inst.tokens.iter().enumerate() {
                b.input_ids[base + i] = i64::from(if i == pos { MASK } else { t });
                b.attention_mask[base + i] = 1;
            }
            b.input_ids[base + n] = i64::from(PSEUDO);
            b.attention_mask[base + n] = 1;
            if let Some(p) = b.position_ids.as_mut() {
                for i in 0..n {
                    p[base + i] = i as i64;
                }
                // The pseudo token shares the masked token's position.
                p[base + n] = pos as i64;
            }
            if let Some(v) = b.visibility.as_mut() {
                let n32 = n as u32;
                v.rows.push(vec![
                    // Original tokens never see the appended one.
                    VisibleBlock {
                        queries: Span::new(0, n32),
                        keys: vec![Span::new(0, n32)],
                    },
                    // The pseudo token sees the context and itself.
                    VisibleBlock {
                        queries: Span::new(n32, n32 + 1),
                        keys: vec![Span::new(0, n32 + 1)],
                    },
                ]);
            }
            let target = MaskedTarget {
                row: r as u32,
                pos: n as u32,
                target: inst.tokens[pos],
            };
            b.targets.pseudo.push(target);
        }
        Ok(b)
    }
}

fn instance(tokens: &[u32]) -> Instance {
    let n = tokens.len();
    Instance {
        tokens: tokens.to_vec(),
        segment_ids: vec![0; n],
        word_ids: vec![NO_WORD; n],
        pair_label: None,
    }
}

#[test]
fn an_appending_scheme_fits_the_batch_contract() -> anyhow::Result<()> {
    let data = vec![instance(&[2, 10, 11, 12, 3]), instance(&[2, 20, 21, 3])];
    let builder: &dyn BatchBuilder = &AppendPseudo;
    let b = builder.build(&data, 7, 0, 0)?;
    assert_eq!((b.batch_size, b.seq_len), (2, 6));
    assert!(b.targets.masked_lm.is_empty(), "no BERT-style targets");
    assert_eq!(b.targets.pseudo.len(), 2);
    let positions = b.position_ids.as_deref().unwrap_or_default();
    let dense = b
        .visibility
        .as_ref()
        .map(|v| v.dense(b.batch_size, b.seq_len, &b.attention_mask))
        .unwrap_or_default();
    let l = b.seq_len;
    for (r, inst) in data.iter().enumerate() {
        let n = inst.len();
        let t = b.targets.pseudo[r];
        assert_eq!(t.pos as usize, n, "the [P] is appended after the row");
        assert_eq!(b.row(r)[n], i64::from(PSEUDO));
        let masked_at = positions[r * l + n] as usize;
        assert_eq!(b.row(r)[masked_at], i64::from(MASK));
        assert_eq!(t.target, inst.tokens[masked_at]);
        for q in 0..n {
            assert_eq!(
                dense[(r * l + q) * l + n],
                0,
                "row {r}: {q} must not see [P]"
            );
            assert_eq!(dense[(r * l + q) * l], 1, "row {r}: {q} sees [CLS]");
        }
        assert_eq!(dense[(r * l + n) * l + n], 1, "[P] sees itself");
        for k in n + 1..l {
            assert_eq!(dense[(r * l + n) * l + k], 0, "padding stays hidden");
        }
    }
    // The same (seed, epoch, index) gives the same batch.
    assert_eq!(builder.build(&data, 7, 0, 0)?, b);
    Ok(())
}

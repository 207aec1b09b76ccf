//! UniLM-v2's pseudo-masked scheme through the public `Masker`: the shipped
//! `configs/masking/unilmv2.toml`, the layout's invariants on many random
//! rows, and determinism across thread counts and batch splits.

mod common;

use std::path::PathBuf;

use cloze_mask::{Batch, Masker, MaskingConfig};
use cloze_text::SpecialTokens;
use common::*;

/// The synthetic vocabulary plus `[PSEUDO_MASK]` at id `VOCAB`.
const PSEUDO: u32 = VOCAB;

fn pseudo_specials() -> SpecialTokens {
    let mut s = specials();
    s.vocab_size = VOCAB + 1;
    s.pseudo_mask = Some(PSEUDO);
    s.all_special.push(PSEUDO);
    s
}

fn shipped() -> anyhow::Result<MaskingConfig> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/masking/unilmv2.toml");
    Ok(MaskingConfig::load(&path)?)
}

#[test]
fn the_shipped_scheme_is_the_preset() -> anyhow::Result<()> {
    assert_eq!(shipped()?, MaskingConfig::unilmv2());
    Ok(())
}

#[test]
fn rows_follow_the_layout_and_the_attention_rule() -> anyhow::Result<()> {
    let data = corpus(200, 8, 96);
    let masker = Masker::new(shipped()?, pseudo_specials())?;
    let b = masker.mask_batch(&data, 11, 0, 0)?;
    let l = b.seq_len;
    assert_eq!(l % 8, 0);
    let positions = b.position_ids.as_ref().expect("position ids");
    let dense =
        b.visibility
            .as_ref()
            .expect("visibility")
            .dense(b.batch_size, l, &b.attention_mask);
    for (r, inst) in data.iter().enumerate() {
        let n = inst.len();
        let row = &b.input_ids[r * l..(r + 1) * l];
        let pos = &positions[r * l..(r + 1) * l];
        let ae: Vec<_> = b
            .targets
            .masked_lm
            .iter()
            .filter(|t| t.row == r as u32)
            .collect();
        let par: Vec<_> = b
            .targets
            .pseudo
            .iter()
            .filter(|t| t.row == r as u32)
            .collect();
        let m = par.len();
        // Every masked token has one [P] and one original, and at least 15%
        // of the maskable tokens are masked (blockwise overshoots at most).
        assert_eq!(ae.len(), m);
        let maskable = inst.tokens.iter().filter(|&&t| t >= 5).count();
        assert!(
            m as f64 >= 0.15 * maskable as f64,
            "row {r}: {m} of {maskable}"
        );
        let real = b.attention_mask[r * l..(r + 1) * l]
            .iter()
            .filter(|&&x| x == 1)
            .count();
        assert_eq!(real, n + 2 * m);
        assert_eq!(&pos[..n], (0..n as i64).collect::<Vec<_>>().as_slice());
        for (k, t) in par.iter().enumerate() {
            let p_slot = n + k;
            let o_slot = n + m + k;
            assert_eq!(t.pos as usize, p_slot, "[P] slots are in order");
            assert_eq!(row[p_slot], i64::from(PSEUDO));
            let at = pos[p_slot] as usize;
            assert_eq!(
                pos[o_slot] as usize, at,
                "[P] and original share the position"
            );
            assert_eq!(row[o_slot], i64::from(inst.tokens[at]));
            assert_eq!(t.target, inst.tokens[at], "the [P] predicts its original");
            assert!(
                ae.iter().any(|a| a.pos as usize == at),
                "position {at} is an AE target"
            );
            let sees = |q: usize, k: usize| dense[(r * l + q) * l + k] == 1;
            // No [P] sees its own original; the original sees itself.
            assert!(
                !sees(p_slot, o_slot),
                "row {r}: [P] at {p_slot} sees its original"
            );
            assert!(sees(o_slot, o_slot));
            // No original sees any [P].
            assert!((n..n + m).all(|p| !sees(o_slot, p)));
        }
        // Context tokens see the whole context and nothing appended.
        for q in 0..n {
            assert!((0..n).all(|k| sees_row(&dense, r, l, q, k)));
            assert!((n..l).all(|k| !sees_row(&dense, r, l, q, k)));
        }
        for a in &ae {
            assert_eq!(a.target, inst.tokens[a.pos as usize]);
        }
    }
    Ok(())
}

fn sees_row(dense: &[u8], r: usize, l: usize, q: usize, k: usize) -> bool {
    dense[(r * l + q) * l + k] == 1
}

#[test]
fn blocks_are_factorization_steps_and_later_steps_see_earlier_originals() -> anyhow::Result<()> {
    // With several steps in a row, a [P] sees the originals of every earlier
    // step: the number of originals a [P] sees never decreases along the
    // [P] part, and the last [P] sees at least one original somewhere.
    let data = corpus(100, 40, 128);
    let masker = Masker::new(shipped()?, pseudo_specials())?;
    let b = masker.mask_batch(&data, 5, 2, 0)?;
    let l = b.seq_len;
    let dense =
        b.visibility
            .as_ref()
            .expect("visibility")
            .dense(b.batch_size, l, &b.attention_mask);
    let mut rows_with_history = 0;
    for (r, inst) in data.iter().enumerate() {
        let n = inst.len();
        let m = b
            .targets
            .pseudo
            .iter()
            .filter(|t| t.row == r as u32)
            .count();
        let seen: Vec<usize> = (n..n + m)
            .map(|q| {
                (n + m..n + 2 * m)
                    .filter(|&k| sees_row(&dense, r, l, q, k))
                    .count()
            })
            .collect();
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "row {r}: {seen:?}");
        assert_eq!(seen[0], 0, "the first step sees no original");
        if seen.last().copied().unwrap_or(0) > 0 {
            rows_with_history += 1;
        }
    }
    assert!(
        rows_with_history > 90,
        "{rows_with_history} rows had more than one step"
    );
    Ok(())
}

#[test]
fn batches_are_a_pure_function_of_seed_epoch_and_index() -> anyhow::Result<()> {
    let data = corpus(64, 8, 64);
    let masker = Masker::new(shipped()?, pseudo_specials())?;
    let run = |threads: usize| -> anyhow::Result<Batch> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        Ok(pool.install(|| masker.mask_batch(&data, 3, 1, 100))?)
    };
    let one = run(1)?;
    assert_eq!(one, run(4)?);
    // The second half on its own gives the same rows (as a shorter batch).
    let half = masker.mask_batch(&data[32..], 3, 1, 132)?;
    let l = one.seq_len;
    for r in 0..32 {
        let a = &one.input_ids[(32 + r) * l..(33 + r) * l];
        let h = &half.input_ids[r * half.seq_len..(r + 1) * half.seq_len];
        let len = a
            .iter()
            .zip(&one.attention_mask[(32 + r) * l..])
            .filter(|(_, &m)| m == 1)
            .count();
        assert_eq!(&a[..len], &h[..len], "row {r}");
    }
    Ok(())
}

#[test]
fn a_vocabulary_without_the_pseudo_mask_is_refused_at_build() {
    let err = Masker::new(MaskingConfig::unilmv2(), specials()).expect_err("no [PSEUDO_MASK]");
    assert!(err.to_string().contains("[PSEUDO_MASK]"), "{err}");
}

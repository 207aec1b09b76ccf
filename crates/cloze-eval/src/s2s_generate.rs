//! Greedy sequence-to-sequence decoding with a UniLM-v2 model, with and
//! without a key/value cache (the layout of `cloze_mask::s2s`).
//!
//! A step appends a pseudo token `[P]` at the next target position; its MLM
//! logits give the next token. The source sees itself bidirectionally, a
//! target token sees the source and the tokens before it, the `[P]` sees the
//! source, the generated tokens and itself. Nothing a generated token sees
//! changes later, so its keys and values can be cached:
//!
//! - [`Decoding::Cached`] encodes the source once, then each step feeds only
//!   the token chosen last and the new `[P]` through
//!   `BertModel::forward_incremental`, keeping the token's keys and values;
//! - [`Decoding::Full`] re-encodes source + prefix + `[P]` with the 3-D mask
//!   every step (the reference: both give the same tokens).

use cloze_models::{BertForPreTraining, KvCache, MlmInput};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// How each step runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    /// Keys and values of the source and of generated tokens cached.
    Cached,
    /// The whole row re-encoded every step.
    Full,
}

/// The special ids decoding needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seq2SeqTokens {
    /// `[CLS]`, opening the source.
    pub cls: u32,
    /// `[SEP]`, closing the source and ending a generated sequence.
    pub sep: u32,
    /// `[PAD]`, filling short sources.
    pub pad: u32,
    /// `[PSEUDO_MASK]`, the `[P]` whose logits predict the next token.
    pub pseudo: u32,
}

/// Greedy decoding of each source (token ids without specials) into at most
/// `max_len` tokens, `[SEP]` ending a sequence early (it is not returned).
/// Sources are decoded together as one batch.
pub fn greedy(
    model: &BertForPreTraining,
    sources: &[Vec<u32>],
    tokens: Seq2SeqTokens,
    max_len: usize,
    decoding: Decoding,
) -> Result<Vec<Vec<u32>>> {
    if sources.is_empty() || max_len == 0 {
        return Ok(vec![Vec::new(); sources.len()]);
    }
    let max_pos = model.config().max_position_embeddings;
    let longest = sources.iter().map(Vec::len).max().unwrap_or(0) + 2;
    if (longest + max_len) as i64 > max_pos {
        return Err(Error::InvalidOption {
            name: "max_len",
            reason: format!(
                "a source of {longest} tokens ([CLS] and [SEP] included) plus {max_len} generated \
                 tokens exceeds the model's {max_pos} positions"
            ),
        });
    }
    tch::no_grad(|| match decoding {
        Decoding::Cached => cached(model, sources, tokens, max_len),
        Decoding::Full => full(model, sources, tokens, max_len),
    })
}

/// `[CLS] src [SEP]` per source, right-padded, and each row's real length.
fn source_rows(sources: &[Vec<u32>], t: Seq2SeqTokens) -> (Vec<Vec<i64>>, Vec<i64>) {
    let ls = sources.iter().map(Vec::len).max().unwrap_or(0) + 2;
    let mut rows = Vec::with_capacity(sources.len());
    let mut lens = Vec::with_capacity(sources.len());
    for s in sources {
        let mut r = vec![i64::from(t.cls)];
        r.extend(s.iter().map(|&x| i64::from(x)));
        r.push(i64::from(t.sep));
        lens.push(r.len() as i64);
        r.resize(ls, i64::from(t.pad));
        rows.push(r);
    }
    (rows, lens)
}

fn grid(rows: &[Vec<i64>]) -> Result<Tensor> {
    let b = rows.len() as i64;
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Ok(Tensor::f_from_slice(&flat)?.f_view([b, -1])?)
}

fn mask_tensor(m: &[u8], shape: [i64; 3]) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(m)?
        .f_view(shape)?
        .f_to_kind(Kind::Bool)?)
}

/// The arg-max token of each row of `[B, V]` logits.
fn argmax(logits: &Tensor) -> Result<Vec<u32>> {
    let ids = Vec::<i64>::try_from(logits.f_argmax(-1, false)?.f_to_device(Device::Cpu)?)?;
    Ok(ids.into_iter().map(|i| i as u32).collect())
}

/// Appends `next` to each unfinished row; returns whether all are finished.
fn advance(out: &mut [Vec<u32>], done: &mut [bool], next: &[u32], sep: u32) -> bool {
    for ((o, d), &n) in out.iter_mut().zip(done.iter_mut()).zip(next) {
        if !*d {
            if n == sep {
                *d = true;
            } else {
                o.push(n);
            }
        }
    }
    done.iter().all(|&d| d)
}

fn cached(
    model: &BertForPreTraining,
    sources: &[Vec<u32>],
    t: Seq2SeqTokens,
    max_len: usize,
) -> Result<Vec<Vec<u32>>> {
    let (rows, lens) = source_rows(sources, t);
    let b = rows.len();
    let ls = rows[0].len();
    let bert = model.bert();
    // The source: bidirectional among its real tokens.
    let mut vis = vec![0u8; b * ls * ls];
    for (r, &n) in lens.iter().enumerate() {
        for q in 0..ls {
            for k in 0..n as usize {
                vis[(r * ls + q) * ls + k] = 1;
            }
        }
    }
    let src = MlmInput::new(grid(&rows)?);
    let mut cache = KvCache::new();
    let out = bert.forward_incremental(
        &src,
        &mask_tensor(&vis, [b as i64, ls as i64, ls as i64])?,
        &cache,
    )?;
    let keep: Vec<i64> = (0..ls as i64).collect();
    cache.append(&out, &keep)?;
    let mut generated = vec![Vec::new(); b];
    let mut done = vec![false; b];
    let mut last: Option<Vec<u32>> = None;
    for step in 0..max_len {
        // New tokens: the token chosen last (from the second step on) and the [P].
        let (ids, pos): (Vec<Vec<i64>>, Vec<Vec<i64>>) = (0..b)
            .map(|r| {
                let next_pos = lens[r] + step as i64;
                match &last {
                    Some(l) => (
                        vec![i64::from(l[r]), i64::from(t.pseudo)],
                        vec![next_pos - 1, next_pos],
                    ),
                    None => (vec![i64::from(t.pseudo)], vec![next_pos]),
                }
            })
            .unzip();
        let ln = ids[0].len();
        let lc = cache.len() as usize;
        let keys = lc + ln;
        let mut vis = vec![0u8; b * ln * keys];
        for (r, &n) in lens.iter().enumerate() {
            for q in 0..ln {
                let row = &mut vis[(r * ln + q) * keys..(r * ln + q + 1) * keys];
                row[..n as usize].fill(1); // the real source
                row[ls..lc].fill(1); // the generated tokens cached so far
                row[lc + q] = 1; // itself; the [P] also sees the token before it
                if q == 1 {
                    row[lc] = 1;
                }
            }
        }
        let input = MlmInput::new(grid(&ids)?)
            .with_position_ids(grid(&pos)?)
            .with_token_type_ids(Tensor::f_ones(
                [b as i64, ln as i64],
                (Kind::Int64, Device::Cpu),
            )?);
        let out = bert.forward_incremental(
            &input,
            &mask_tensor(&vis, [b as i64, ln as i64, keys as i64])?,
            &cache,
        )?;
        if ln == 2 {
            cache.append(&out, &[0])?;
        }
        let pseudo_hidden = out.hidden.f_select(1, ln as i64 - 1)?;
        let next = argmax(&model.mlm_logits(&pseudo_hidden)?)?;
        if advance(&mut generated, &mut done, &next, t.sep) {
            break;
        }
        last = Some(next);
    }
    Ok(generated)
}

fn full(
    model: &BertForPreTraining,
    sources: &[Vec<u32>],
    t: Seq2SeqTokens,
    max_len: usize,
) -> Result<Vec<Vec<u32>>> {
    let (src, lens) = source_rows(sources, t);
    let b = src.len();
    let ls = src[0].len();
    let mut generated = vec![Vec::new(); b];
    let mut chosen: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut done = vec![false; b];
    for step in 0..max_len {
        // Row: padded source | the `step` chosen tokens | [P].
        let l = ls + step + 1;
        let mut ids = Vec::with_capacity(b);
        let mut pos = Vec::with_capacity(b);
        let mut types = Vec::with_capacity(b);
        let mut vis = vec![0u8; b * l * l];
        for r in 0..b {
            let n = lens[r] as usize;
            let mut row = src[r].clone();
            row.extend(chosen[r].iter().map(|&x| i64::from(x)));
            row.push(i64::from(t.pseudo));
            ids.push(row);
            let mut p: Vec<i64> = (0..ls as i64).collect();
            p.extend((0..=step as i64).map(|k| lens[r] + k));
            pos.push(p);
            let mut ty = vec![0i64; ls];
            ty.resize(l, 1);
            types.push(ty);
            for q in 0..l {
                let m = &mut vis[(r * l + q) * l..(r * l + q + 1) * l];
                m[..n].fill(1);
                if q >= ls {
                    m[ls..=q].fill(1); // generated tokens up to itself ([P] last)
                }
            }
        }
        let input = MlmInput::new(grid(&ids)?)
            .with_position_ids(grid(&pos)?)
            .with_token_type_ids(grid(&types)?)
            .with_attention_3d(mask_tensor(&vis, [b as i64, l as i64, l as i64])?);
        let hidden = model.bert().forward_t(&input, false)?.last_hidden_state;
        let next = argmax(&model.mlm_logits(&hidden.f_select(1, l as i64 - 1)?)?)?;
        let finished = advance(&mut generated, &mut done, &next, t.sep);
        if finished {
            break;
        }
        for (c, &n) in chosen.iter_mut().zip(&next) {
            c.push(n);
        }
    }
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloze_models::BertConfig;

    fn model(relative: bool) -> Result<(tch::nn::VarStore, BertForPreTraining)> {
        tch::manual_seed(9);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let config = BertConfig {
            vocab_size: 40,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 64,
            max_position_embeddings: 64,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            rel_pos_bins: relative.then_some(8),
            max_rel_pos: relative.then_some(16),
            ..BertConfig::default()
        };
        let m = BertForPreTraining::new_masked_lm(&vs.root(), &config)?;
        Ok((vs, m))
    }

    const T: Seq2SeqTokens = Seq2SeqTokens {
        cls: 2,
        sep: 3,
        pad: 0,
        pseudo: 5,
    };

    #[test]
    fn the_cache_gives_the_same_tokens_as_re_encoding() -> Result<()> {
        for relative in [false, true] {
            let (_vs, m) = model(relative)?;
            let sources = vec![vec![10, 11, 12, 13], vec![20, 21], vec![30, 31, 32]];
            let a = greedy(&m, &sources, T, 12, Decoding::Cached)?;
            let b = greedy(&m, &sources, T, 12, Decoding::Full)?;
            assert_eq!(a, b, "relative bias {relative}");
            assert!(a.iter().any(|s| !s.is_empty()), "something was generated");
            assert!(a.iter().all(|s| s.len() <= 12));
            // One source alone decodes as it does in the batch.
            let alone = greedy(&m, &sources[1..2], T, 12, Decoding::Cached)?;
            assert_eq!(alone[0], a[1]);
        }
        Ok(())
    }

    #[test]
    fn a_request_past_the_positions_is_refused() -> Result<()> {
        let (_vs, m) = model(false)?;
        let long = vec![vec![10u32; 60]];
        assert!(greedy(&m, &long, T, 10, Decoding::Cached).is_err());
        assert!(greedy(&m, &[], T, 10, Decoding::Cached)?.is_empty());
        Ok(())
    }
}

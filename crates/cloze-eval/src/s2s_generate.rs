//! Sequence-to-sequence decoding with a UniLM-v2 model fine-tuned as
//! microsoft/unilm's s2s-ft does (`cloze_mask::s2s`'s layout), with and
//! without a key/value cache.
//!
//! A step appends a pseudo token `[P]` at the next target position; its MLM
//! log-probabilities give the next token. The source sees itself
//! bidirectionally, a target token sees the source and the tokens before it,
//! the `[P]` sees the source, the generated tokens and itself. Nothing a
//! generated token sees changes later, so its keys and values can be cached
//! (s2s-ft's `BertForSeq2SeqDecoder` in `s2s_ft/modeling_decoding.py` caches
//! each layer's hidden states of the generated tokens for the same reason):
//!
//! - [`Decoding::Cached`] encodes the source once, then each step feeds only
//!   the token chosen last (at position `t - 1`) and the new `[P]` (at `t`)
//!   through `BertModel::forward_incremental`, keeping the token's keys and
//!   values and dropping the `[P]`'s;
//! - [`Decoding::Full`] re-encodes source + prefix + `[P]` with the 3-D mask
//!   every step (the reference: both give the same tokens).
//!
//! [`Seq2SeqDecoder`] is the step interface a search drives (one call per
//! step over all hypotheses, [`Seq2SeqDecoder::reorder`] for beams);
//! [`UniLmDecoder`] plugs it into [`crate::generate`]'s greedy and beam
//! search (s2s-ft's `decode_seq2seq.py --beam_size`, `--length_penalty`);
//! [`greedy`] here is the plain arg-max loop over all sources.

use cloze_models::{BertForPreTraining, KvCache, MlmInput};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::generate::StepDecoder;

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

/// Step-by-step decoding state over a set of rows (hypotheses): each row is
/// one source and the tokens fed back for it so far.
///
/// The protocol: [`Seq2SeqDecoder::step`] with `None` first, then with the
/// token chosen for every row at the previous step; each call returns the
/// `[rows, vocab]` log-probabilities of the next token.
/// [`Seq2SeqDecoder::reorder`] between steps selects, repeats or permutes
/// rows (beam search: expand each source into `k` rows, then follow the back
/// pointers). A finished row may keep being fed (any token): rows never see
/// each other, so that only costs time.
pub struct Seq2SeqDecoder<'m> {
    model: &'m BertForPreTraining,
    tokens: Seq2SeqTokens,
    decoding: Decoding,
    device: Device,
    /// `[CLS] src [SEP]` per row, right-padded to a common length.
    src: Vec<Vec<i64>>,
    /// Each row's real source length (`[CLS]` and `[SEP]` included).
    lens: Vec<i64>,
    /// The tokens fed back per row (the full re-encoding needs them; the
    /// cache only their count).
    fed: Vec<Vec<u32>>,
    /// Keys and values of the source and the fed tokens ([`Decoding::Cached`]).
    cache: KvCache,
    /// Steps taken.
    steps: usize,
    /// Steps allowed (the positions checked in [`Seq2SeqDecoder::new`]).
    max_len: usize,
}

impl std::fmt::Debug for Seq2SeqDecoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seq2SeqDecoder")
            .field("decoding", &self.decoding)
            .field("rows", &self.src.len())
            .field("steps", &self.steps)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidOption { name, reason }
}

impl<'m> Seq2SeqDecoder<'m> {
    /// A decoder for `sources` (token ids without specials, at least one) that
    /// may take up to `max_len` steps; with [`Decoding::Cached`] the sources
    /// are encoded here. Refused: no source, or a source plus `max_len`
    /// tokens longer than the model's positions.
    pub fn new(
        model: &'m BertForPreTraining,
        sources: &[Vec<u32>],
        tokens: Seq2SeqTokens,
        max_len: usize,
        decoding: Decoding,
    ) -> Result<Self> {
        if sources.is_empty() {
            return Err(invalid("sources", "nothing to decode".to_owned()));
        }
        let max_pos = model.config().max_position_embeddings;
        let longest = sources.iter().map(Vec::len).max().unwrap_or(0) + 2;
        if (longest + max_len) as i64 > max_pos {
            return Err(invalid(
                "max_len",
                format!(
                    "a source of {longest} tokens ([CLS] and [SEP] included) plus {max_len} \
                     generated tokens exceeds the model's {max_pos} positions"
                ),
            ));
        }
        let (src, lens) = source_rows(sources, tokens);
        let device = model.bert().embeddings().word_embeddings().device();
        let mut dec = Self {
            model,
            tokens,
            decoding,
            device,
            fed: vec![Vec::new(); src.len()],
            src,
            lens,
            cache: KvCache::new(),
            steps: 0,
            max_len,
        };
        if decoding == Decoding::Cached {
            tch::no_grad(|| dec.encode_source())?;
        }
        Ok(dec)
    }

    /// Rows (hypotheses) decoded together.
    pub fn rows(&self) -> usize {
        self.src.len()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The vocabulary size (the width of a step's log-probabilities).
    pub fn vocab_size(&self) -> i64 {
        self.model.config().vocab_size
    }

    /// One step: feeds `last` (the token chosen for each row at the previous
    /// step; `None` at the first step) and a `[P]` at the next position, and
    /// returns the `[P]`'s log-probabilities over the vocabulary, `[rows,
    /// vocab]` fp32 on the model's device.
    pub fn step(&mut self, last: Option<&[u32]>) -> Result<Tensor> {
        if self.steps >= self.max_len {
            return Err(invalid(
                "max_len",
                format!(
                    "step {} asked of a decoder built for {}",
                    self.steps + 1,
                    self.max_len
                ),
            ));
        }
        match (self.steps, last) {
            (0, None) => {}
            (0, Some(_)) => {
                return Err(invalid(
                    "last",
                    "the first step has no token chosen before it".to_owned(),
                ))
            }
            (_, None) => {
                return Err(invalid(
                    "last",
                    "every step after the first feeds the tokens chosen last".to_owned(),
                ))
            }
            (_, Some(l)) if l.len() != self.rows() => {
                return Err(invalid(
                    "last",
                    format!("{} tokens for {} rows", l.len(), self.rows()),
                ))
            }
            (_, Some(l)) => {
                let v = self.vocab_size();
                if let Some(&bad) = l.iter().find(|&&t| i64::from(t) >= v) {
                    return Err(invalid(
                        "last",
                        format!("token {bad} outside the vocabulary of {v}"),
                    ));
                }
                for (f, &t) in self.fed.iter_mut().zip(l) {
                    f.push(t);
                }
            }
        }
        let hidden = tch::no_grad(|| match self.decoding {
            Decoding::Cached => self.cached_step(last.is_some()),
            Decoding::Full => self.full_step(),
        })?;
        self.steps += 1;
        let logits = tch::no_grad(|| self.model.mlm_logits(&hidden))?;
        Ok(logits.f_log_softmax(-1, Kind::Float)?)
    }

    /// Row `i` becomes old row `rows[i]` (repeats and drops allowed; at least
    /// one row): what beam search does after each step, and to expand each
    /// source into its beams before the first.
    pub fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        let n = self.rows();
        if rows.is_empty() {
            return Err(invalid("rows", "a reorder must keep a row".to_owned()));
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(invalid("rows", format!("row {bad} of {n}")));
        }
        if !self.cache.is_empty() {
            let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            self.cache.reorder(&Tensor::f_from_slice(&index)?)?;
        }
        self.src = rows.iter().map(|&r| self.src[r].clone()).collect();
        self.lens = rows.iter().map(|&r| self.lens[r]).collect();
        self.fed = rows.iter().map(|&r| self.fed[r].clone()).collect();
        Ok(())
    }

    fn grid(&self, rows: &[Vec<i64>]) -> Result<Tensor> {
        Ok(grid(rows)?.f_to_device(self.device)?)
    }

    fn mask(&self, m: &[u8], shape: [i64; 3]) -> Result<Tensor> {
        Ok(mask_tensor(m, shape)?.f_to_device(self.device)?)
    }

    /// The source rows, bidirectional among their real tokens, into the cache.
    fn encode_source(&mut self) -> Result<()> {
        let (b, ls) = (self.rows(), self.src[0].len());
        let mut vis = vec![0u8; b * ls * ls];
        for (r, &n) in self.lens.iter().enumerate() {
            for q in 0..ls {
                vis[(r * ls + q) * ls..(r * ls + q) * ls + n as usize].fill(1);
            }
        }
        let input = MlmInput::new(self.grid(&self.src)?);
        let out = self.model.bert().forward_incremental(
            &input,
            &self.mask(&vis, [b as i64, ls as i64, ls as i64])?,
            &self.cache,
        )?;
        let keep: Vec<i64> = (0..ls as i64).collect();
        self.cache.append(&out, &keep)?;
        Ok(())
    }

    /// New tokens: the token fed last (when `with_last`) at position
    /// `len + t - 1` and the `[P]` at `len + t`, `t` tokens fed so far. The
    /// `[P]`'s last-layer hidden state `[rows, H]` comes back.
    fn cached_step(&mut self, with_last: bool) -> Result<Tensor> {
        let (b, ls) = (self.rows(), self.src[0].len());
        let pseudo = i64::from(self.tokens.pseudo);
        let (ids, pos): (Vec<Vec<i64>>, Vec<Vec<i64>>) = (0..b)
            .map(|r| {
                let t = self.fed[r].len() as i64;
                let next = self.lens[r] + t;
                match self.fed[r].last() {
                    Some(&l) if with_last => (vec![i64::from(l), pseudo], vec![next - 1, next]),
                    _ => (vec![pseudo], vec![next]),
                }
            })
            .unzip();
        let ln = ids[0].len();
        let lc = self.cache.len() as usize;
        let keys = lc + ln;
        let mut vis = vec![0u8; b * ln * keys];
        for (r, &n) in self.lens.iter().enumerate() {
            for q in 0..ln {
                let row = &mut vis[(r * ln + q) * keys..(r * ln + q + 1) * keys];
                row[..n as usize].fill(1); // the real source, not its padding
                row[ls..lc].fill(1); // the tokens fed before this step
                row[lc + q] = 1; // itself; the [P] also sees the token fed now
                if q == 1 {
                    row[lc] = 1;
                }
            }
        }
        let input = MlmInput::new(self.grid(&ids)?)
            .with_position_ids(self.grid(&pos)?)
            .with_token_type_ids(Tensor::f_ones(
                [b as i64, ln as i64],
                (Kind::Int64, self.device),
            )?);
        let out = self.model.bert().forward_incremental(
            &input,
            &self.mask(&vis, [b as i64, ln as i64, keys as i64])?,
            &self.cache,
        )?;
        if ln == 2 {
            // Keep the real token's keys and values; the [P]'s are this step's only.
            self.cache.append(&out, &[0])?;
        }
        Ok(out.hidden.f_select(1, ln as i64 - 1)?)
    }

    /// Row: padded source | the fed tokens | `[P]`, re-encoded whole.
    fn full_step(&self) -> Result<Tensor> {
        let (b, ls) = (self.rows(), self.src[0].len());
        let t = self.fed[0].len();
        let l = ls + t + 1;
        let mut ids = Vec::with_capacity(b);
        let mut pos = Vec::with_capacity(b);
        let mut types = Vec::with_capacity(b);
        let mut vis = vec![0u8; b * l * l];
        for r in 0..b {
            let n = self.lens[r] as usize;
            let mut row = self.src[r].clone();
            row.extend(self.fed[r].iter().map(|&x| i64::from(x)));
            row.push(i64::from(self.tokens.pseudo));
            ids.push(row);
            let mut p: Vec<i64> = (0..ls as i64).collect();
            p.extend((0..=t as i64).map(|k| self.lens[r] + k));
            pos.push(p);
            let mut ty = vec![0i64; ls];
            ty.resize(l, 1);
            types.push(ty);
            for q in 0..l {
                let m = &mut vis[(r * l + q) * l..(r * l + q + 1) * l];
                m[..n].fill(1);
                if q >= ls {
                    m[ls..=q].fill(1); // fed tokens up to itself ([P] last)
                }
            }
        }
        let input = MlmInput::new(self.grid(&ids)?)
            .with_position_ids(self.grid(&pos)?)
            .with_token_type_ids(self.grid(&types)?)
            .with_attention_3d(self.mask(&vis, [b as i64, l as i64, l as i64])?);
        let hidden = self
            .model
            .bert()
            .forward_t(&input, false)?
            .last_hidden_state;
        Ok(hidden.f_select(1, l as i64 - 1)?)
    }
}

/// A UniLM-v2 model as a [`StepDecoder`] for [`crate::generate`]'s greedy
/// and beam search: `start` opens a [`Seq2SeqDecoder`] over the sources
/// (token ids without specials) that may take `max_len` steps, which must be
/// at least the search's `GenerateOptions::max_len`; the end of a sequence
/// is [`Seq2SeqTokens::sep`].
#[derive(Debug, Clone, Copy)]
pub struct UniLmDecoder<'m> {
    /// The model with its (tied) MLM head.
    pub model: &'m BertForPreTraining,
    /// The special ids.
    pub tokens: Seq2SeqTokens,
    /// Steps each opened batch may take (positions are checked against it).
    pub max_len: usize,
    /// With or without the key/value cache.
    pub decoding: Decoding,
}

impl<'m> StepDecoder for UniLmDecoder<'m> {
    type State = Seq2SeqDecoder<'m>;
    type Source = Vec<u32>;

    fn start(&self, sources: &[Vec<u32>]) -> Result<Self::State> {
        Seq2SeqDecoder::new(
            self.model,
            sources,
            self.tokens,
            self.max_len,
            self.decoding,
        )
    }

    fn step(&self, state: &mut Self::State, last: Option<&[u32]>) -> Result<Tensor> {
        state.step(last)
    }

    fn reorder(&self, state: &mut Self::State, keep: &[usize]) -> Result<()> {
        state.reorder(keep)
    }
}

/// Greedy decoding of each source (token ids without specials) into at most
/// `max_len` tokens, `[SEP]` ending a sequence early (it is not returned).
/// Sources are decoded together as one batch (s2s-ft's default search:
/// `decode_seq2seq.py --beam_size 1`).
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
    let mut dec = Seq2SeqDecoder::new(model, sources, tokens, max_len, decoding)?;
    let mut generated = vec![Vec::new(); sources.len()];
    let mut done = vec![false; sources.len()];
    let mut last: Option<Vec<u32>> = None;
    for _ in 0..max_len {
        let next = argmax(&dec.step(last.as_deref())?)?;
        if advance(&mut generated, &mut done, &next, tokens.sep) {
            break;
        }
        last = Some(next);
    }
    Ok(generated)
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

/// The arg-max token of each row of `[B, V]` scores.
fn argmax(scores: &Tensor) -> Result<Vec<u32>> {
    let ids = Vec::<i64>::try_from(scores.f_argmax(-1, false)?.f_to_device(Device::Cpu)?)?;
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

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

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

    /// The step log-probabilities of both decoders agree to float rounding at
    /// every step, also after rows are expanded and permuted as beam search
    /// does; and each reordered row ends exactly where decoding its source
    /// alone with the same fed tokens ends (the cache followed its row).
    #[test]
    fn reordered_rows_continue_as_the_rows_they_came_from() -> Result<()> {
        for relative in [false, true] {
            let (_vs, m) = model(relative)?;
            let sources = vec![vec![10, 11, 12, 13], vec![20, 21]];
            let mut c = Seq2SeqDecoder::new(&m, &sources, T, 6, Decoding::Cached)?;
            let mut f = Seq2SeqDecoder::new(&m, &sources, T, 6, Decoding::Full)?;
            // Two beams per source, swapped after every step and fed different tokens.
            c.reorder(&[0, 0, 1, 1])?;
            f.reorder(&[0, 0, 1, 1])?;
            let mut last: Option<Vec<u32>> = None;
            let mut lc = Tensor::new();
            for step in 0..4u32 {
                lc = c.step(last.as_deref())?;
                let lf = f.step(last.as_deref())?;
                assert_eq!(lc.size(), vec![4, 40]);
                assert!(
                    max_diff(&lc, &lf) < 1e-4,
                    "step {step}, relative {relative}"
                );
                if step < 3 {
                    c.reorder(&[1, 0, 3, 2])?;
                    f.reorder(&[1, 0, 3, 2])?;
                    last = Some(vec![6 + step, 7 + step, 20 + step, 21 + step]);
                }
            }
            assert_eq!(
                c.fed[0],
                vec![6, 8, 8],
                "the swaps interleave the histories"
            );
            assert_eq!(c.fed[1], vec![7, 7, 9]);
            for r in 0..4 {
                let src = std::slice::from_ref(&sources[r / 2]);
                let mut alone = Seq2SeqDecoder::new(&m, src, T, 6, Decoding::Cached)?;
                let mut lp = alone.step(None)?;
                for &t in &c.fed[r] {
                    lp = alone.step(Some(&[t]))?;
                }
                assert!(
                    max_diff(&lp.get(0), &lc.get(r as i64)) < 1e-4,
                    "row {r}, relative {relative}"
                );
            }
        }
        Ok(())
    }

    /// The generic searches over [`UniLmDecoder`]: greedy equals the plain
    /// loop here, and beam search gives the same tokens with and without the
    /// cache, a beam of one being greedy.
    #[test]
    fn the_generic_searches_agree_with_and_without_the_cache() -> Result<()> {
        use crate::generate::{beam_search, GenerateOptions, LengthPenalty};
        for relative in [false, true] {
            let (_vs, m) = model(relative)?;
            let sources = vec![vec![10, 11, 12, 13], vec![20, 21], vec![30, 31, 32]];
            let dec = |decoding| UniLmDecoder {
                model: &m,
                tokens: T,
                max_len: 10,
                decoding,
            };
            let options = GenerateOptions::new(T.sep, 10);
            let plain = greedy(&m, &sources, T, 10, Decoding::Cached)?;
            let generic = crate::generate::greedy(&dec(Decoding::Cached), &sources, &options)?;
            let tokens: Vec<Vec<u32>> = generic.iter().map(|g| g.tokens.clone()).collect();
            assert_eq!(tokens, plain, "relative {relative}");
            let beam1 = beam_search(&dec(Decoding::Cached), &sources, &options)?;
            assert_eq!(beam1, generic);
            let wide = GenerateOptions {
                beam_size: 4,
                length_penalty: LengthPenalty::Gnmt { alpha: 1.0 },
                ..options
            };
            let with = beam_search(&dec(Decoding::Cached), &sources, &wide)?;
            let without = beam_search(&dec(Decoding::Full), &sources, &wide)?;
            for (a, b) in with.iter().zip(&without) {
                assert_eq!(a.tokens, b.tokens, "relative {relative}");
                assert!((a.score - b.score).abs() < 1e-3);
            }
        }
        Ok(())
    }

    #[test]
    fn misuse_is_refused() -> Result<()> {
        let (_vs, m) = model(false)?;
        let long = vec![vec![10u32; 60]];
        assert!(greedy(&m, &long, T, 10, Decoding::Cached).is_err());
        assert!(greedy(&m, &[], T, 10, Decoding::Cached)?.is_empty());
        let mut d = Seq2SeqDecoder::new(&m, &[vec![10]], T, 2, Decoding::Cached)?;
        assert!(d.step(Some(&[6])).is_err(), "a token before the first step");
        let _ = d.step(None)?;
        assert!(d.step(None).is_err(), "no token after the first step");
        assert!(d.step(Some(&[6, 7])).is_err(), "two tokens for one row");
        assert!(d.step(Some(&[99])).is_err(), "outside the vocabulary");
        assert!(d.reorder(&[1]).is_err());
        let _ = d.step(Some(&[6]))?;
        assert!(d.step(Some(&[6])).is_err(), "past max_len");
        Ok(())
    }
}

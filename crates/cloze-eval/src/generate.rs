//! Decoding for sequence-to-sequence generation over an abstract step model:
//! [`greedy`] and [`beam_search`], in the evaluation layer. They know nothing
//! of the model: anything that implements [`StepDecoder`] ("the
//! log-probabilities of the next token of every live hypothesis") can be
//! decoded: a UniLM-v2 model with its key/value cache
//! ([`crate::s2s_generate::UniLmDecoder`]) or the toy tables of the tests
//! below.
//!
//! **Rows.** The decoder keeps one row of state per live hypothesis. [`StepDecoder::start`]
//! opens one row per source; after each step the search tells the decoder
//! which rows live on and in which order ([`StepDecoder::reorder`], `keep[i]`
//! = the old row that becomes row `i`, rows may repeat and the count may
//! change), so after the first step of a beam search a source has up to
//! `beam_size` rows (N = sources x beams), and rows of finished hypotheses or
//! finished sources are dropped. A reorder that would keep every row in place
//! is not called. Every step feeds each row the token chosen for it last
//! (none at the first step), so all live rows have the same length.
//!
//! **Beam search** follows fairseq's `sequence_generator` with the scoring of
//! s2s-ft (`BertForSeq2SeqDecoder.beam_search`): per source, the `2·beam`
//! best extensions of its rows by total log-probability; an end-of-sequence
//! (EOS) candidate among the `beam` best finishes that hypothesis (it is kept
//! aside, the EOS not part of its tokens), and the best `beam` other
//! candidates live on. A hypothesis that reaches `max_len` tokens finishes
//! without EOS. A source stops when it holds `beam` finished hypotheses and no
//! live one can still beat the worst of them: log-probabilities are at most 0,
//! so a live hypothesis's score can only fall, and the bound takes its best
//! length penalty over the lengths it could still finish at (exact, not the
//! heuristic "current length" bound). The answer is the finished hypothesis
//! with the best length-penalised score.
//!
//! **Length penalty** ([`LengthPenalty`]): `score = log_prob / lp(len)`,
//! where `len` counts the generated tokens including the EOS (s2s-ft counts
//! the frame of the EOS: `fid + 1`). [`LengthPenalty::Gnmt`] is s2s-ft's
//! `((5 + len) / 6)^alpha` (Wu et al. 2016, "Google's Neural Machine
//! Translation System", eq. 14); [`LengthPenalty::Power`] is fairseq's
//! `len^alpha`.
//!
//! **Constraints.** While fewer than `min_len` tokens are generated the EOS
//! is forbidden (s2s-ft's `min_len`). `no_repeat_ngram = Some(n)` forbids a
//! token that would complete an n-gram already in the hypothesis (s2s-ft's
//! `forbid_duplicate_ngrams` with `ngram_size`, fairseq's
//! `no_repeat_ngram_size`); `n = 1` forbids repeating any token. Forbidden
//! entries get `-inf`.
//!
//! **Determinism.** Ties are broken by order, never by the device: greedy
//! takes the lowest token id among equal maxima; beam search orders
//! candidates by score, then row, then token id, and finished hypotheses of
//! equal score by the order they finished in. Candidates are cut per row on
//! the device by value (every entry at least the row's `2·beam`-th largest),
//! so a tie at the cut keeps all tied entries. Scores are summed in `f64`.
//!
//! ```
//! use cloze_eval::generate::{beam_search, greedy, GenerateOptions, StepDecoder};
//! use cloze_eval::Result;
//! use tch::Tensor;
//!
//! /// A bigram table over 3 tokens (0 is EOS): the next token depends on the last.
//! struct Bigram;
//! impl StepDecoder for Bigram {
//!     type State = usize; // live rows
//!     type Source = Vec<u32>;
//!     fn start(&self, sources: &[Vec<u32>]) -> Result<usize> {
//!         Ok(sources.len())
//!     }
//!     fn step(&self, rows: &mut usize, last: Option<&[u32]>) -> Result<Tensor> {
//!         let table = |last: Option<u32>| match last {
//!             None => [0.1f32, 0.6, 0.3],
//!             Some(1) => [0.2, 0.1, 0.7],
//!             _ => [0.9, 0.05, 0.05],
//!         };
//!         let probs: Vec<f32> = (0..*rows)
//!             .flat_map(|i| table(last.map(|l| l[i])))
//!             .collect();
//!         Ok(Tensor::from_slice(&probs).view([*rows as i64, 3]).log())
//!     }
//!     fn reorder(&self, rows: &mut usize, keep: &[usize]) -> Result<()> {
//!         *rows = keep.len();
//!         Ok(())
//!     }
//! }
//!
//! let options = GenerateOptions { beam_size: 2, ..GenerateOptions::new(0, 5) };
//! let best = beam_search(&Bigram, &[vec![7, 8]], &options)?;
//! assert_eq!(best[0].tokens, [1, 2]); // 0.6 * 0.7 * 0.9
//! assert!(best[0].ended);
//! let fast = greedy(&Bigram, &[vec![7, 8]], &options)?;
//! assert_eq!(fast[0].tokens, best[0].tokens);
//! # Ok::<(), cloze_eval::Error>(())
//! ```

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// An incremental model for decoding: it keeps per-row state (a key/value
/// cache, say) and scores the next token of every live row.
pub trait StepDecoder {
    /// The decoder's state for one batch of sources (one row per live
    /// hypothesis).
    type State;

    /// What one source is: token ids for sequence-to-sequence models
    /// (`Vec<u32>`), a dialogue's context turns and speakers for a dialogue model.
    type Source;

    /// Opens a batch: one row per source, in order. Sources are given as
    /// the decoder wants them (token ids without the specials it adds itself).
    fn start(&self, sources: &[Self::Source]) -> Result<Self::State>;

    /// Log-probabilities `[N, V]` (any float kind, any device; a
    /// log-softmax, so each row's `exp` sums to 1) of the next token of each
    /// of the `N` live rows, given the token chosen for each row at the
    /// previous step (`None` at the first step, when `N` is the number of
    /// sources). The search reads the tensor and never writes into it.
    fn step(&self, state: &mut Self::State, last: Option<&[u32]>) -> Result<Tensor>;

    /// Keeps and reorders rows: row `i` afterwards is the old row `keep[i]`.
    /// Indices may repeat (a hypothesis extended two ways) and `keep` may be
    /// shorter or longer than the current row count.
    fn reorder(&self, state: &mut Self::State, keep: &[usize]) -> Result<()>;
}

/// How a hypothesis's log-probability is normalised by its length.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LengthPenalty {
    /// The plain sum of log-probabilities.
    #[default]
    None,
    /// `log_prob / ((5 + len) / 6)^alpha`: GNMT's penalty (Wu et al. 2016,
    /// eq. 14), what s2s-ft's `--length_penalty` applies.
    Gnmt {
        /// The exponent (s2s-ft applies it when positive; 0 is no penalty).
        alpha: f64,
    },
    /// `log_prob / len^alpha`: fairseq's `--lenpen`.
    Power {
        /// The exponent (1 is the mean log-probability per token).
        alpha: f64,
    },
}

impl LengthPenalty {
    /// The divisor for a hypothesis of `len` tokens (EOS included).
    pub fn divisor(self, len: usize) -> f64 {
        let len = len.max(1) as f64;
        match self {
            LengthPenalty::None => 1.0,
            LengthPenalty::Gnmt { alpha } => ((5.0 + len) / 6.0).powf(alpha),
            LengthPenalty::Power { alpha } => len.powf(alpha),
        }
    }

    /// The score of a hypothesis of `len` tokens (EOS included) with total
    /// log-probability `log_prob`.
    pub fn score(self, log_prob: f64, len: usize) -> f64 {
        log_prob / self.divisor(len)
    }

    fn alpha(self) -> f64 {
        match self {
            LengthPenalty::None => 0.0,
            LengthPenalty::Gnmt { alpha } | LengthPenalty::Power { alpha } => alpha,
        }
    }
}

/// Settings of [`greedy`] and [`beam_search`], checked once by
/// [`GenerateOptions::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Hypotheses kept per source (beam search only; at least 1).
    pub beam_size: usize,
    /// The most decoding steps (at least 1), each choosing one token or the
    /// EOS: a hypothesis that reaches `max_len` tokens ends there without
    /// EOS, and one ended by the EOS has at most `max_len - 1` tokens
    /// (s2s-ft's `max_tgt_length` frames).
    pub max_len: usize,
    /// The fewest tokens before an EOS (at most `max_len`).
    pub min_len: usize,
    /// How scores are normalised by length (beam search's choice; greedy
    /// reports it).
    pub length_penalty: LengthPenalty,
    /// The end-of-sequence id (`[SEP]` for UniLM); never part of the output.
    pub eos: u32,
    /// Forbid a token that would repeat an n-gram of this size (at least 1).
    pub no_repeat_ngram: Option<usize>,
    /// Sources decoded together, one [`StepDecoder::start`] each batch (at
    /// least 1).
    pub batch_size: usize,
}

impl GenerateOptions {
    /// Greedy-sized defaults: beam 1, no minimum, no length penalty, no
    /// n-gram blocking, 32 sources a batch.
    pub fn new(eos: u32, max_len: usize) -> Self {
        GenerateOptions {
            beam_size: 1,
            max_len,
            min_len: 0,
            length_penalty: LengthPenalty::None,
            eos,
            no_repeat_ngram: None,
            batch_size: 32,
        }
    }

    /// Checks every setting; the decoding functions call it first.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, reason: String| Err(Error::InvalidOption { name, reason });
        if self.beam_size == 0 {
            return bad("beam_size", "must be at least 1".into());
        }
        if self.max_len == 0 {
            return bad("max_len", "must be at least 1".into());
        }
        if self.min_len > self.max_len {
            return bad(
                "min_len",
                format!("{} is more than max_len {}", self.min_len, self.max_len),
            );
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.no_repeat_ngram == Some(0) {
            return bad(
                "no_repeat_ngram",
                "an n-gram size must be at least 1".into(),
            );
        }
        let alpha = self.length_penalty.alpha();
        if !alpha.is_finite() {
            return bad("length_penalty", format!("alpha {alpha} is not finite"));
        }
        Ok(())
    }
}

/// The answer for one source.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The generated tokens, without the EOS.
    pub tokens: Vec<u32>,
    /// The sum of the log-probabilities of the tokens, and of the EOS when
    /// one ended the sequence.
    pub log_prob: f64,
    /// `log_prob` under the length penalty (equal to it without one).
    pub score: f64,
    /// True when an EOS ended the sequence; false when it reached `max_len`.
    pub ended: bool,
}

impl Generated {
    /// What a source gets when every continuation was forbidden before any
    /// hypothesis finished (possible only when `min_len` or n-gram blocking
    /// leave no finite log-probability): no tokens, score `-inf`.
    pub fn nothing() -> Self {
        Generated {
            tokens: Vec::new(),
            log_prob: f64::NEG_INFINITY,
            score: f64::NEG_INFINITY,
            ended: false,
        }
    }

    /// The length the penalty sees: tokens plus the EOS.
    pub fn len_with_eos(&self) -> usize {
        self.tokens.len() + usize::from(self.ended)
    }
}

/// Greedy decoding: each source's most probable next token at every step,
/// until the EOS or `max_len`. `beam_size` is ignored; `score` applies the
/// length penalty to the result. Sources are decoded `batch_size` at a time;
/// results come in input order.
pub fn greedy<D: StepDecoder + ?Sized>(
    decoder: &D,
    sources: &[D::Source],
    options: &GenerateOptions,
) -> Result<Vec<Generated>> {
    options.validate()?;
    let _span = tracing::info_span!("greedy", sources = sources.len()).entered();
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(sources.len());
    for batch in sources.chunks(options.batch_size) {
        out.extend(greedy_batch(decoder, batch, options)?);
    }
    Ok(out)
}

/// Beam search (see the module docs): each source's best finished
/// hypothesis under the length penalty. Sources are decoded `batch_size` at
/// a time, all their beams in one step call; results come in input order.
pub fn beam_search<D: StepDecoder + ?Sized>(
    decoder: &D,
    sources: &[D::Source],
    options: &GenerateOptions,
) -> Result<Vec<Generated>> {
    options.validate()?;
    let _span = tracing::info_span!(
        "beam_search",
        sources = sources.len(),
        beam = options.beam_size
    )
    .entered();
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(sources.len());
    for batch in sources.chunks(options.batch_size) {
        out.extend(beam_batch(decoder, batch, options)?);
    }
    Ok(out)
}

/// Checks a step's output and returns it as `f32`.
fn checked(lp: Tensor, rows: usize, eos: u32, step: usize) -> Result<Tensor> {
    let size = lp.size();
    if size.len() != 2 || size[0] != rows as i64 {
        return Err(Error::StepOutput {
            step,
            reason: format!("expected log-probabilities of shape [{rows}, V], got {size:?}"),
        });
    }
    if i64::from(eos) >= size[1] {
        return Err(Error::StepOutput {
            step,
            reason: format!(
                "the EOS id {eos} is outside the vocabulary of {} tokens",
                size[1]
            ),
        });
    }
    let lp = lp.f_to_kind(Kind::Float)?;
    if bool::try_from(lp.f_isnan()?.f_any()?)? {
        return Err(Error::StepOutput {
            step,
            reason: "NaN among the log-probabilities".into(),
        });
    }
    Ok(lp)
}

/// The tokens that would complete an n-gram already in `seq`.
fn repeated_ngram_tokens(seq: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || seq.len() < n {
        return Vec::new();
    }
    let tail = &seq[seq.len() + 1 - n..];
    let mut banned: Vec<u32> = (0..=seq.len() - n)
        .filter(|&i| seq[i..i + n - 1] == *tail)
        .map(|i| seq[i + n - 1])
        .collect();
    banned.sort_unstable();
    banned.dedup();
    banned
}

/// Applies `min_len` and n-gram blocking to `[N, V]` log-probabilities
/// (out of place), `step` tokens having been generated in every row.
fn constrain(
    lp: Tensor,
    histories: &[&[u32]],
    step: usize,
    options: &GenerateOptions,
) -> Result<Tensor> {
    let mut lp = lp;
    if step < options.min_len {
        let eos = Tensor::f_from_slice(&[i64::from(options.eos)])?.f_to_device(lp.device())?;
        lp = lp.f_index_fill(1, &eos, f64::NEG_INFINITY)?;
    }
    if let Some(n) = options.no_repeat_ngram {
        let v = lp.size()[1];
        let flat: Vec<i64> = histories
            .iter()
            .enumerate()
            .flat_map(|(row, seq)| {
                repeated_ngram_tokens(seq, n)
                    .into_iter()
                    .map(move |t| row as i64 * v + i64::from(t))
            })
            .collect();
        if !flat.is_empty() {
            let index = Tensor::f_from_slice(&flat)?.f_to_device(lp.device())?;
            let shape = lp.size();
            lp = lp
                .f_reshape([-1])?
                .f_index_fill(0, &index, f64::NEG_INFINITY)?
                .f_reshape(shape)?;
        }
    }
    Ok(lp)
}

fn greedy_batch<D: StepDecoder + ?Sized>(
    decoder: &D,
    sources: &[D::Source],
    options: &GenerateOptions,
) -> Result<Vec<Generated>> {
    let mut results: Vec<Option<Generated>> = vec![None; sources.len()];
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let mut state = decoder.start(sources)?;
    // The source of each live row, its tokens and log-probability.
    let mut rows: Vec<usize> = (0..sources.len()).collect();
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); sources.len()];
    let mut log_probs = vec![0f64; sources.len()];
    for step in 0..options.max_len {
        let last: Option<Vec<u32>> = (step > 0).then(|| {
            rows.iter()
                .map(|&s| tokens[s].last().copied().unwrap_or(options.eos))
                .collect()
        });
        let lp = decoder.step(&mut state, last.as_deref())?;
        let lp = checked(lp, rows.len(), options.eos, step)?;
        let histories: Vec<&[u32]> = rows.iter().map(|&s| tokens[s].as_slice()).collect();
        let lp = constrain(lp, &histories, step, options)?;
        // argmax returns the first of equal maxima, so ties go to the lowest id.
        let ids = lp.f_argmax(1, true)?;
        let values = lp.f_gather(1, &ids, false)?;
        let ids = Vec::<i64>::try_from(ids.f_reshape([-1])?.f_to_device(Device::Cpu)?)?;
        let values = Vec::<f32>::try_from(values.f_reshape([-1])?.f_to_device(Device::Cpu)?)?;
        let mut keep = Vec::with_capacity(rows.len());
        for (i, &s) in rows.iter().enumerate() {
            let (id, value) = (ids[i] as u32, f64::from(values[i]));
            if !value.is_finite() {
                results[s] = Some(Generated::nothing());
                continue;
            }
            log_probs[s] += value;
            let ended = id == options.eos;
            if !ended {
                tokens[s].push(id);
            }
            if ended || step + 1 == options.max_len {
                let len = tokens[s].len() + usize::from(ended);
                results[s] = Some(Generated {
                    tokens: std::mem::take(&mut tokens[s]),
                    log_prob: log_probs[s],
                    score: options.length_penalty.score(log_probs[s], len),
                    ended,
                });
            } else {
                keep.push(i);
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() != rows.len() {
            decoder.reorder(&mut state, &keep)?;
            rows = keep.iter().map(|&i| rows[i]).collect();
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(Generated::nothing))
        .collect())
}

/// A live hypothesis of beam search.
#[derive(Debug, Clone)]
struct Live {
    source: usize,
    tokens: Vec<u32>,
    log_prob: f64,
}

/// A finished hypothesis and the order it finished in.
#[derive(Debug, Clone)]
struct Finished {
    generated: Generated,
    order: usize,
}

/// The best `beam` finished hypotheses of one source, best first.
#[derive(Debug, Default)]
struct Kept {
    best: Vec<Finished>,
}

impl Kept {
    fn add(&mut self, f: Finished, beam: usize) {
        let at = self
            .best
            .iter()
            .position(|b| {
                f.generated.score > b.generated.score
                    || (f.generated.score == b.generated.score && f.order < b.order)
            })
            .unwrap_or(self.best.len());
        self.best.insert(at, f);
        self.best.truncate(beam);
    }

    /// The worst kept score once `beam` hypotheses are kept.
    fn worst_if_full(&self, beam: usize) -> Option<f64> {
        (self.best.len() >= beam).then(|| self.best[self.best.len() - 1].generated.score)
    }
}

/// For each row, the `(token, log-prob)` entries that can be among its
/// source's best `k` extensions: every finite entry at least the row's
/// `k`-th largest (ties at the cut all kept), in token order.
fn row_candidates(lp: &Tensor, k: usize) -> Result<Vec<Vec<(u32, f64)>>> {
    let size = lp.size();
    let (n, v) = (size[0], size[1]);
    let k = (k as i64).min(v);
    let (top, _) = lp.f_topk(k, 1, true, true)?;
    let cut = top.f_narrow(1, k - 1, 1)?;
    let mask = lp.f_ge_tensor(&cut)?.f_logical_and(&lp.f_isfinite()?)?;
    let at = Vec::<i64>::try_from(
        mask.f_nonzero()?
            .f_reshape([-1])?
            .f_to_device(Device::Cpu)?,
    )?;
    let values = Vec::<f32>::try_from(lp.f_masked_select(&mask)?.f_to_device(Device::Cpu)?)?;
    let mut out = vec![Vec::new(); n as usize];
    for (pair, value) in at.chunks_exact(2).zip(values) {
        out[pair[0] as usize].push((pair[1] as u32, f64::from(value)));
    }
    Ok(out)
}

fn beam_batch<D: StepDecoder + ?Sized>(
    decoder: &D,
    sources: &[D::Source],
    options: &GenerateOptions,
) -> Result<Vec<Generated>> {
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let beam = options.beam_size;
    let penalty = options.length_penalty;
    let mut state = decoder.start(sources)?;
    let mut kept: Vec<Kept> = (0..sources.len()).map(|_| Kept::default()).collect();
    let mut order = 0usize;
    let mut rows: Vec<Live> = (0..sources.len())
        .map(|source| Live {
            source,
            tokens: Vec::new(),
            log_prob: 0.0,
        })
        .collect();
    for step in 0..options.max_len {
        let last: Option<Vec<u32>> = (step > 0).then(|| {
            rows.iter()
                .map(|r| r.tokens.last().copied().unwrap_or(options.eos))
                .collect()
        });
        let lp = decoder.step(&mut state, last.as_deref())?;
        let lp = checked(lp, rows.len(), options.eos, step)?;
        let histories: Vec<&[u32]> = rows.iter().map(|r| r.tokens.as_slice()).collect();
        let lp = constrain(lp, &histories, step, options)?;
        let candidates = row_candidates(&lp, 2 * beam)?;
        let final_step = step + 1 == options.max_len;

        let mut next: Vec<Live> = Vec::with_capacity(rows.len().max(sources.len()) * beam);
        let mut keep: Vec<usize> = Vec::with_capacity(next.capacity());
        let mut start = 0;
        while start < rows.len() {
            let source = rows[start].source;
            let end = start
                + rows[start..]
                    .iter()
                    .take_while(|r| r.source == source)
                    .count();
            // (score, row, token, log-prob), best first; ties by row then token.
            let mut ranked: Vec<(f64, usize, u32)> = (start..end)
                .flat_map(|r| {
                    let base = rows[r].log_prob;
                    candidates[r].iter().map(move |&(t, v)| (base + v, r, t))
                })
                .collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let first_live = next.len();
            let mut live = 0;
            for (rank, &(total, r, t)) in ranked.iter().enumerate() {
                if live == beam && rank >= beam {
                    break;
                }
                if t == options.eos {
                    if rank < beam {
                        let tokens = rows[r].tokens.clone();
                        let score = penalty.score(total, tokens.len() + 1);
                        kept[source].add(
                            Finished {
                                generated: Generated {
                                    tokens,
                                    log_prob: total,
                                    score,
                                    ended: true,
                                },
                                order,
                            },
                            beam,
                        );
                        order += 1;
                    }
                    continue;
                }
                if live == beam {
                    continue;
                }
                live += 1;
                let mut tokens = rows[r].tokens.clone();
                tokens.push(t);
                if final_step {
                    let score = penalty.score(total, tokens.len());
                    kept[source].add(
                        Finished {
                            generated: Generated {
                                tokens,
                                log_prob: total,
                                score,
                                ended: false,
                            },
                            order,
                        },
                        beam,
                    );
                    order += 1;
                } else {
                    next.push(Live {
                        source,
                        tokens,
                        log_prob: total,
                    });
                    keep.push(r);
                }
            }
            // Stop the source once no live hypothesis can beat its worst kept one.
            if let (Some(worst), Some(best_live)) =
                (kept[source].worst_if_full(beam), next.get(first_live))
            {
                let len = step + 1;
                let bound = penalty
                    .score(best_live.log_prob, len + 1)
                    .max(penalty.score(best_live.log_prob, options.max_len));
                if bound <= worst {
                    next.truncate(first_live);
                    keep.truncate(first_live);
                }
            }
            start = end;
        }
        if next.is_empty() {
            break;
        }
        let identity = keep.len() == rows.len() && keep.iter().enumerate().all(|(i, &k)| i == k);
        if !identity {
            decoder.reorder(&mut state, &keep)?;
        }
        rows = next;
    }
    Ok(kept
        .into_iter()
        .map(|k| {
            k.best
                .into_iter()
                .next()
                .map(|f| f.generated)
                .unwrap_or_else(Generated::nothing)
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// What a toy decoder was asked to do.
    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Start(usize),
        Step(Option<Vec<u32>>),
        Reorder(Vec<usize>),
    }

    type Dist = dyn Fn(u32, &[u32]) -> Vec<f64>;

    /// A toy model: the next-token distribution is a function of the
    /// source's first token (its tag) and the row's whole history, which
    /// the state records, so a wrong reorder gives wrong distributions.
    struct Toy {
        vocab: usize,
        dist: Box<Dist>,
        calls: RefCell<Vec<Call>>,
    }

    struct Rows(Vec<(u32, Vec<u32>)>);

    impl Toy {
        fn new(vocab: usize, dist: impl Fn(u32, &[u32]) -> Vec<f64> + 'static) -> Self {
            Toy {
                vocab,
                dist: Box::new(dist),
                calls: RefCell::new(Vec::new()),
            }
        }

        /// A table that depends only on the last token (`None` at the start).
        fn bigram(vocab: usize, table: impl Fn(Option<u32>) -> Vec<f64> + 'static) -> Self {
            Toy::new(vocab, move |_, h| table(h.last().copied()))
        }

        fn calls(&self) -> Vec<Call> {
            self.calls.borrow().clone()
        }
    }

    impl StepDecoder for Toy {
        type State = Rows;
        type Source = Vec<u32>;
        fn start(&self, sources: &[Vec<u32>]) -> Result<Rows> {
            self.calls.borrow_mut().push(Call::Start(sources.len()));
            Ok(Rows(
                sources
                    .iter()
                    .map(|s| (s.first().copied().unwrap_or(0), Vec::new()))
                    .collect(),
            ))
        }
        fn step(&self, state: &mut Rows, last: Option<&[u32]>) -> Result<Tensor> {
            self.calls
                .borrow_mut()
                .push(Call::Step(last.map(<[u32]>::to_vec)));
            if let Some(last) = last {
                assert_eq!(last.len(), state.0.len());
                for (row, &t) in state.0.iter_mut().zip(last) {
                    row.1.push(t);
                }
            }
            let mut flat = Vec::with_capacity(state.0.len() * self.vocab);
            for (tag, history) in &state.0 {
                let p = (self.dist)(*tag, history);
                assert_eq!(p.len(), self.vocab);
                let z: f64 = p.iter().sum();
                flat.extend(p.iter().map(|x| (x / z).ln() as f32));
            }
            Ok(Tensor::from_slice(&flat).view([state.0.len() as i64, self.vocab as i64]))
        }
        fn reorder(&self, state: &mut Rows, keep: &[usize]) -> Result<()> {
            self.calls.borrow_mut().push(Call::Reorder(keep.to_vec()));
            state.0 = keep.iter().map(|&k| state.0[k].clone()).collect();
            Ok(())
        }
    }

    /// A deterministic pseudo-random distribution over `vocab` tokens for
    /// (tag, history), EOS = 0 never dominant at the start.
    fn hashed(vocab: usize) -> impl Fn(u32, &[u32]) -> Vec<f64> {
        move |tag, history| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(tag);
            for &t in history {
                h = (h ^ u64::from(t) ^ 0x9e37).wrapping_mul(0x100_0000_01b3);
            }
            (0..vocab)
                .map(|i| {
                    let x = (h ^ (i as u64 * 0x9e37_79b9))
                        .wrapping_mul(0x2545_f491_4f6c_dd1d)
                        .rotate_left(17);
                    0.05 + (x % 1000) as f64 / 1000.0
                })
                .collect()
        }
    }

    fn ln(x: f64) -> f64 {
        x.ln()
    }

    fn opts(beam: usize, max_len: usize) -> GenerateOptions {
        GenerateOptions {
            beam_size: beam,
            ..GenerateOptions::new(0, max_len)
        }
    }

    #[test]
    fn greedy_follows_the_argmax_and_stops_at_eos() {
        let toy = Toy::bigram(4, |last| match last {
            None => vec![0.1, 0.2, 0.6, 0.1],
            Some(2) => vec![0.1, 0.5, 0.2, 0.2],
            Some(1) => vec![0.7, 0.1, 0.1, 0.1],
            _ => vec![0.25; 4],
        });
        let out = greedy(&toy, &[vec![5]], &opts(1, 10)).unwrap();
        assert_eq!(out[0].tokens, [2, 1]);
        assert!(out[0].ended);
        let expected = ln(0.6) + ln(0.5) + ln(0.7);
        assert!((out[0].log_prob - expected).abs() < 1e-6);
        assert_eq!(out[0].score, out[0].log_prob);
        // Three steps (the third chose the EOS), no reorder for one row.
        assert_eq!(
            toy.calls(),
            [
                Call::Start(1),
                Call::Step(None),
                Call::Step(Some(vec![2])),
                Call::Step(Some(vec![1])),
            ]
        );
    }

    #[test]
    fn greedy_drops_finished_rows_with_a_reorder() {
        // Source tag 1 ends at once; tag 2 goes on for two tokens.
        let toy = Toy::new(3, |tag, h| match (tag, h.len()) {
            (1, _) => vec![0.9, 0.05, 0.05],
            (_, 0 | 1) => vec![0.1, 0.1, 0.8],
            _ => vec![0.8, 0.1, 0.1],
        });
        let out = greedy(&toy, &[vec![1], vec![2]], &opts(1, 10)).unwrap();
        assert_eq!(out[0].tokens, Vec::<u32>::new());
        assert_eq!(out[1].tokens, [2, 2]);
        assert_eq!(
            toy.calls(),
            [
                Call::Start(2),
                Call::Step(None),
                Call::Reorder(vec![1]),
                Call::Step(Some(vec![2])),
                Call::Step(Some(vec![2])),
            ]
        );
    }

    #[test]
    fn ties_go_to_the_lowest_token_id() {
        let toy = Toy::bigram(4, |last| match last {
            None => vec![0.1, 0.3, 0.3, 0.3],
            _ => vec![1.0, 0.0, 0.0, 0.0],
        });
        assert_eq!(
            greedy(&toy, &[vec![0]], &opts(1, 5)).unwrap()[0].tokens,
            [1]
        );
        assert_eq!(
            beam_search(&toy, &[vec![0]], &opts(2, 5)).unwrap()[0].tokens,
            [1]
        );
    }

    #[test]
    fn beam_one_equals_greedy() {
        let toy = Toy::new(6, hashed(6));
        let sources: Vec<Vec<u32>> = (0..7).map(|i| vec![i, i + 1]).collect();
        let options = GenerateOptions {
            batch_size: 3,
            ..opts(1, 8)
        };
        let g = greedy(&toy, &sources, &options).unwrap();
        let b = beam_search(&toy, &sources, &options).unwrap();
        assert_eq!(g, b);
        assert!(g.iter().any(|x| x.tokens.len() > 1));
    }

    #[test]
    fn beam_search_finds_a_more_probable_sequence_than_greedy() {
        // Greedy takes 1 (0.6) and then the best it can is 0.25 more (EOS);
        // 2 (0.4) is followed by the EOS with 0.9: 0.36 > 0.15.
        let toy = Toy::bigram(4, |last| match last {
            None => vec![0.0, 0.6, 0.4, 0.0],
            Some(1) => vec![0.25, 0.25, 0.25, 0.25],
            Some(2) => vec![0.9, 0.05, 0.05, 0.0],
            _ => vec![1.0, 0.0, 0.0, 0.0],
        });
        let g = &greedy(&toy, &[vec![0]], &opts(1, 6)).unwrap()[0];
        let b = &beam_search(&toy, &[vec![0]], &opts(2, 6)).unwrap()[0];
        assert_eq!(g.tokens, [1]);
        assert_eq!(b.tokens, [2]);
        assert!(b.log_prob > g.log_prob + 0.5);
        assert!((b.log_prob - (ln(0.4) + ln(0.9))).abs() < 1e-6);
    }

    /// Every sequence: each either ends with the EOS (0) or has `max_len`
    /// tokens; the one with the highest log-probability.
    fn exhaustive(toy: &Toy, tag: u32, max_len: usize) -> (Vec<u32>, f64) {
        fn walk(
            toy: &Toy,
            tag: u32,
            prefix: &mut Vec<u32>,
            lp: f64,
            max_len: usize,
            best: &mut (Vec<u32>, f64),
        ) {
            let p = (toy.dist)(tag, prefix);
            let z: f64 = p.iter().sum();
            for (t, &x) in p.iter().enumerate() {
                let total = lp + (x / z).ln();
                if t == 0 || prefix.len() + 1 == max_len {
                    let mut seq = prefix.clone();
                    if t != 0 {
                        seq.push(t as u32);
                    }
                    if total > best.1 {
                        *best = (seq, total);
                    }
                } else {
                    prefix.push(t as u32);
                    walk(toy, tag, prefix, total, max_len, best);
                    prefix.pop();
                }
            }
        }
        let mut best = (Vec::new(), f64::NEG_INFINITY);
        walk(toy, tag, &mut Vec::new(), 0.0, max_len, &mut best);
        best
    }

    #[test]
    fn a_beam_wider_than_the_tree_is_exact_for_history_dependent_models() {
        // The distribution depends on the whole history, which the decoder
        // only knows through reorder: a wrong keep list gives wrong answers.
        let toy = Toy::new(4, hashed(4));
        let sources: Vec<Vec<u32>> = (0..5).map(|i| vec![i * 7 + 1]).collect();
        let out = beam_search(&toy, &sources, &opts(128, 4)).unwrap();
        for (s, got) in sources.iter().zip(&out) {
            let (tokens, lp) = exhaustive(&toy, s[0], 4);
            assert_eq!(got.tokens, tokens, "source {s:?}");
            assert!((got.log_prob - lp).abs() < 1e-5);
        }
        assert!(toy
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Reorder(k) if k.len() > 5)));
    }

    #[test]
    fn reorder_gets_the_parent_rows() {
        // beam 2. Step 0 keeps [1] and [2], both from row 0. Step 1: [2,1]
        // (0.3 * 0.95) beats [1,3] (0.5 * 0.5), so row 1 comes first. Step 2:
        // both end (EOS among the 2 best), nothing live can beat them.
        let toy = Toy::new(4, |_, h| match h {
            [] => vec![0.05, 0.5, 0.3, 0.15],
            [1] => vec![0.1, 0.1, 0.3, 0.5],
            [2] => vec![0.02, 0.95, 0.02, 0.01],
            [2, 1] => vec![0.9, 0.04, 0.03, 0.03],
            [1, 3] => vec![0.8, 0.1, 0.05, 0.05],
            _ => vec![0.25; 4],
        });
        let out = beam_search(&toy, &[vec![9]], &opts(2, 6)).unwrap();
        assert_eq!(out[0].tokens, [2, 1]);
        assert!((out[0].log_prob - (ln(0.3) + ln(0.95) + ln(0.9))).abs() < 1e-6);
        assert_eq!(
            toy.calls(),
            [
                Call::Start(1),
                Call::Step(None),
                Call::Reorder(vec![0, 0]),
                Call::Step(Some(vec![1, 2])),
                Call::Reorder(vec![1, 0]),
                Call::Step(Some(vec![1, 3])),
            ]
        );
    }

    #[test]
    fn max_len_is_respected() {
        // The EOS is never likely: every hypothesis runs to max_len.
        let toy = Toy::new(5, |_, _| vec![1e-6, 0.4, 0.3, 0.2, 0.1]);
        for max_len in [1, 3, 7] {
            let g = &greedy(&toy, &[vec![1]], &opts(1, max_len)).unwrap()[0];
            assert_eq!(g.tokens.len(), max_len);
            assert!(!g.ended);
            let b = &beam_search(&toy, &[vec![1], vec![2]], &opts(3, max_len)).unwrap();
            assert!(b.iter().all(|x| x.tokens.len() == max_len && !x.ended));
            let steps = toy
                .calls()
                .iter()
                .filter(|c| matches!(c, Call::Step(_)))
                .count();
            assert!(steps <= 2 * max_len);
            toy.calls.borrow_mut().clear();
        }
    }

    #[test]
    fn eos_ends_a_hypothesis_and_is_not_returned() {
        let toy = Toy::new(3, |_, h| {
            if h.len() == 2 {
                vec![0.9, 0.05, 0.05]
            } else {
                vec![0.01, 0.9, 0.09]
            }
        });
        for out in [
            greedy(&toy, &[vec![1]], &opts(1, 10)).unwrap(),
            beam_search(&toy, &[vec![1]], &opts(3, 10)).unwrap(),
        ] {
            assert_eq!(out[0].tokens, [1, 1]);
            assert!(out[0].ended);
            assert_eq!(out[0].len_with_eos(), 3);
        }
    }

    #[test]
    fn min_len_forbids_an_early_eos() {
        let toy = Toy::new(3, |_, _| vec![0.8, 0.15, 0.05]);
        let options = GenerateOptions {
            min_len: 2,
            ..opts(1, 10)
        };
        let g = &greedy(&toy, &[vec![1]], &options).unwrap()[0];
        assert_eq!(g.tokens, [1, 1]);
        assert!(g.ended);
        let b = &beam_search(
            &toy,
            &[vec![1]],
            &GenerateOptions {
                beam_size: 2,
                ..options
            },
        )
        .unwrap()[0];
        assert_eq!(b.tokens, [1, 1]);
    }

    #[test]
    fn repeated_ngrams_can_be_forbidden() {
        assert_eq!(repeated_ngram_tokens(&[1, 2, 1], 2), [2]);
        assert_eq!(repeated_ngram_tokens(&[1, 2, 3, 1, 2], 3), [3]);
        assert_eq!(repeated_ngram_tokens(&[4, 5, 4], 1), [4, 5]);
        assert!(repeated_ngram_tokens(&[1, 2], 3).is_empty());
        // The model loves token 1, then 2.
        let toy = Toy::new(4, |_, _| vec![0.01, 0.6, 0.3, 0.09]);
        let plain = &greedy(&toy, &[vec![1]], &opts(1, 4)).unwrap()[0];
        assert_eq!(plain.tokens, [1, 1, 1, 1]);
        let options = GenerateOptions {
            no_repeat_ngram: Some(1),
            ..opts(1, 4)
        };
        let g = &greedy(&toy, &[vec![1]], &options).unwrap()[0];
        assert_eq!(g.tokens, [1, 2, 3]);
        assert!(g.ended, "only the EOS is left");
        let options = GenerateOptions {
            no_repeat_ngram: Some(2),
            ..opts(1, 5)
        };
        let g = &greedy(&toy, &[vec![1]], &options).unwrap()[0];
        assert_eq!(g.tokens, [1, 1, 2, 1, 3]);
        let b = &beam_search(
            &toy,
            &[vec![1]],
            &GenerateOptions {
                beam_size: 3,
                ..options
            },
        )
        .unwrap()[0];
        let bigrams: Vec<_> = b.tokens.windows(2).collect();
        for (i, w) in bigrams.iter().enumerate() {
            assert!(!bigrams[..i].contains(w), "{:?}", b.tokens);
        }
    }

    #[test]
    fn length_penalty_changes_the_choice() {
        // [1] then EOS: 0.55; [1, 2] then EOS: 0.45 * 0.95 = 0.4275.
        let toy = Toy::new(4, |_, h| match h {
            [] => vec![1e-9, 1.0, 1e-9, 1e-9],
            [1] => vec![0.55, 1e-9, 0.45, 1e-9],
            _ => vec![0.95, 0.02, 0.02, 0.01],
        });
        let short = &beam_search(&toy, &[vec![1]], &opts(2, 6)).unwrap()[0];
        assert_eq!(short.tokens, [1]);
        // Per token: -0.598 / 2 = -0.299 against -0.850 / 3 = -0.283.
        let power = GenerateOptions {
            length_penalty: LengthPenalty::Power { alpha: 1.0 },
            ..opts(2, 6)
        };
        let long = &beam_search(&toy, &[vec![1]], &power).unwrap()[0];
        assert_eq!(long.tokens, [1, 2]);
        assert!((long.score - long.log_prob / 3.0).abs() < 1e-9);
        // GNMT with alpha 3: (7/6)^3 = 1.588 against (8/6)^3 = 2.370.
        let gnmt = GenerateOptions {
            length_penalty: LengthPenalty::Gnmt { alpha: 3.0 },
            ..opts(2, 6)
        };
        assert_eq!(
            beam_search(&toy, &[vec![1]], &gnmt).unwrap()[0].tokens,
            [1, 2]
        );
        let mild = GenerateOptions {
            length_penalty: LengthPenalty::Gnmt { alpha: 1.0 },
            ..opts(2, 6)
        };
        assert_eq!(beam_search(&toy, &[vec![1]], &mild).unwrap()[0].tokens, [1]);
    }

    #[test]
    fn penalties_follow_their_formulas() {
        assert_eq!(LengthPenalty::None.divisor(9), 1.0);
        assert!((LengthPenalty::Gnmt { alpha: 1.0 }.divisor(7) - 2.0).abs() < 1e-12);
        assert!((LengthPenalty::Power { alpha: 0.5 }.divisor(16) - 4.0).abs() < 1e-12);
        assert_eq!(LengthPenalty::Power { alpha: 1.0 }.score(-6.0, 3), -2.0);
    }

    #[test]
    fn batching_does_not_change_the_answers() {
        let toy = Toy::new(7, hashed(7));
        let sources: Vec<Vec<u32>> = (0..6).map(|i| vec![i * 3]).collect();
        let one = GenerateOptions {
            batch_size: 1,
            ..opts(3, 6)
        };
        let all = GenerateOptions {
            batch_size: 6,
            ..opts(3, 6)
        };
        let a = beam_search(&toy, &sources, &one).unwrap();
        let starts = toy
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Start(1)))
            .count();
        assert_eq!(starts, 6);
        let b = beam_search(&toy, &sources, &all).unwrap();
        assert_eq!(a, b);
        let c = greedy(&toy, &sources, &one).unwrap();
        assert_eq!(c, greedy(&toy, &sources, &all).unwrap());
    }

    #[test]
    fn options_are_checked_once() {
        let toy = Toy::new(3, |_, _| vec![1.0, 1.0, 1.0]);
        for (bad, name) in [
            (opts(0, 5), "beam_size"),
            (opts(1, 0), "max_len"),
            (
                GenerateOptions {
                    min_len: 6,
                    ..opts(1, 5)
                },
                "min_len",
            ),
            (
                GenerateOptions {
                    batch_size: 0,
                    ..opts(1, 5)
                },
                "batch_size",
            ),
            (
                GenerateOptions {
                    no_repeat_ngram: Some(0),
                    ..opts(1, 5)
                },
                "no_repeat_ngram",
            ),
            (
                GenerateOptions {
                    length_penalty: LengthPenalty::Gnmt { alpha: f64::NAN },
                    ..opts(1, 5)
                },
                "length_penalty",
            ),
        ] {
            for result in [
                greedy(&toy, &[vec![1]], &bad),
                beam_search(&toy, &[vec![1]], &bad),
            ] {
                match result {
                    Err(Error::InvalidOption { name: n, .. }) => assert_eq!(n, name),
                    other => panic!("{name}: {other:?}"),
                }
            }
        }
        assert!(toy.calls().is_empty(), "nothing ran");
    }

    #[test]
    fn a_bad_step_output_is_an_error() {
        struct Wrong;
        impl StepDecoder for Wrong {
            type State = ();
            type Source = Vec<u32>;
            fn start(&self, _: &[Vec<u32>]) -> Result<()> {
                Ok(())
            }
            fn step(&self, _: &mut (), _: Option<&[u32]>) -> Result<Tensor> {
                Ok(Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)))
            }
            fn reorder(&self, _: &mut (), _: &[usize]) -> Result<()> {
                Ok(())
            }
        }
        let err = greedy(&Wrong, &[vec![1]], &opts(1, 3)).unwrap_err();
        assert!(matches!(err, Error::StepOutput { step: 0, .. }), "{err}");
        let eos_outside = GenerateOptions::new(9, 3);
        let err = beam_search(&Wrong, &[vec![1], vec![1], vec![1]], &eos_outside).unwrap_err();
        assert!(err.to_string().contains("EOS id 9"), "{err}");
    }

    #[test]
    fn no_sources_no_calls() {
        let toy = Toy::new(3, |_, _| vec![1.0; 3]);
        assert!(beam_search(&toy, &[], &opts(2, 3)).unwrap().is_empty());
        assert!(greedy(&toy, &[], &opts(1, 3)).unwrap().is_empty());
        assert!(toy.calls().is_empty());
    }
}

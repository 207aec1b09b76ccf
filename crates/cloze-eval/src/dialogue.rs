//! Dialogue evaluation and generation for PLATO-style models (rows from
//! `cloze_mask::DialogueBuilder`; the model is a `BertForPreTraining` whose
//! MLM head predicts the next response token, with role embeddings when the
//! rows carry role ids).
//!
//! - [`DialogueScorer::score`]: each sample's response log-likelihood and
//!   token count (the opening `[CLS]` predicts the first word, the last word
//!   the closing `[SEP]`); [`perplexity`] over a set is
//!   `exp(-sum log p / sum tokens)`.
//! - [`DialogueScorer::hits_at_1`]: for each sample, the true response
//!   against `candidates - 1` responses drawn (seeded) from samples of other
//!   dialogues, each scored by its mean log-likelihood per token; hits@1 is
//!   the share where the true response scores highest (ties count against
//!   it), as PLATO's and ConvAI2's hits@1 among 20 and Knover's ranking do
//!   with their own scorers. The candidates come from one seeded draw,
//!   [`draw_candidates`], and any [`CandidateScorer`] ranks them through
//!   [`hits_at_1_with`], so the baselines of [`crate::dialogue_baselines`]
//!   rank exactly the candidate sets the network ranks.
//! - [`PmiScorer`] ranks by how much the context raised each candidate's
//!   likelihood, [`CoherenceScorer`] by the pair head of a model trained
//!   with response coherence estimation (PLATO-2).
//! - [`DialogueDecoder`]: a [`StepDecoder`] for [`crate::generate`]'s greedy
//!   and beam search and for [`sample`] (top-k / top-p): the context is
//!   encoded once into a key/value cache ([`Decoding::Cached`]), then each
//!   step feeds the token chosen last; [`Decoding::Full`] re-encodes the
//!   whole row every step (the reference the cache is tested against).
//! - [`distinct`]: distinct-n (Li et al. 2016), distinct n-grams over all
//!   n-grams of the generated responses.

use std::collections::HashSet;

use cloze_core::rng::{rng_for, Stream};
use cloze_mask::{DialogueBuilder, DialogueExample, DialogueRow, RoleScheme};
use cloze_models::{BertForPreTraining, KvCache, MlmInput};
use rand::Rng;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::generate::{GenerateOptions, Generated, StepDecoder};
pub use crate::s2s_generate::Decoding;

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidOption { name, reason }
}

/// A response's log-likelihood under the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResponseScore {
    /// Sum of the log-probabilities of its tokens (the closing `[SEP]` included).
    pub log_likelihood: f64,
    /// Tokens predicted.
    pub tokens: usize,
}

impl ResponseScore {
    /// Mean log-probability per token (`-inf` for an empty response).
    pub fn mean(&self) -> f64 {
        if self.tokens == 0 {
            f64::NEG_INFINITY
        } else {
            self.log_likelihood / self.tokens as f64
        }
    }
}

/// `exp(-sum log p / sum tokens)` over `scores`.
pub fn perplexity(scores: &[ResponseScore]) -> f64 {
    let (ll, n) = scores.iter().fold((0.0, 0usize), |(ll, n), s| {
        (ll + s.log_likelihood, n + s.tokens)
    });
    (-ll / n.max(1) as f64).exp()
}

/// Distinct-n of `responses` (token sequences): distinct n-grams divided by
/// all n-grams; 0 when there is none.
pub fn distinct(responses: &[Vec<u32>], n: usize) -> f64 {
    let mut all = 0usize;
    let mut seen: HashSet<&[u32]> = HashSet::new();
    for r in responses {
        if n == 0 || r.len() < n {
            continue;
        }
        for g in r.windows(n) {
            all += 1;
            seen.insert(g);
        }
    }
    if all == 0 {
        0.0
    } else {
        seen.len() as f64 / all as f64
    }
}

/// The model input of laid-out rows: ids, segments, padding, the 3-D mask and
/// role ids (when the scheme has roles).
fn input_of(rows: &[&DialogueRow], builder: &DialogueBuilder) -> Result<MlmInput> {
    let batch = builder.collate(rows.iter().map(|r| (*r).clone()).collect());
    let (b, l) = (batch.batch_size as i64, batch.seq_len as i64);
    let grid = |v: &[i64]| -> Result<Tensor> { Ok(Tensor::f_from_slice(v)?.f_view([b, l])?) };
    let mut input = MlmInput::new(grid(&batch.input_ids)?)
        .with_token_type_ids(grid(&batch.token_type_ids)?)
        .with_attention_mask(grid(&batch.attention_mask)?);
    if let Some(v) = &batch.visibility {
        let dense = v.dense(batch.batch_size, batch.seq_len, &batch.attention_mask);
        input = input.with_attention_3d(
            Tensor::f_from_slice(&dense)?
                .f_view([b, l, l])?
                .f_to_kind(Kind::Bool)?,
        );
    }
    if let Some(r) = &batch.role_ids {
        input = input.with_role_ids(grid(r)?);
    }
    Ok(input)
}

/// Scores responses with a dialogue model; see the module docs.
#[derive(Debug)]
pub struct DialogueScorer<'m> {
    /// The model with its (tied) MLM head.
    pub model: &'m BertForPreTraining,
    /// The row layout the model was trained with (its context MLM is not used).
    pub builder: &'m DialogueBuilder,
    /// Samples scored together.
    pub batch_size: usize,
}

impl DialogueScorer<'_> {
    fn device(&self) -> Device {
        self.model.bert().embeddings().word_embeddings().device()
    }

    /// Each example's response log-likelihood, in order.
    pub fn score(&self, examples: &[DialogueExample]) -> Result<Vec<ResponseScore>> {
        let _guard = tch::no_grad_guard();
        let device = self.device();
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(self.batch_size.max(1)) {
            // Training rows without corruption: the prompt plus the closing [SEP].
            let rows: Vec<DialogueRow> = chunk
                .iter()
                .map(|ex| {
                    let mut row = self.builder.row(ex, 0, 0, 0);
                    let prompt = self.builder.prompt(ex);
                    // Context MLM (if configured) corrupts training rows only.
                    row.input_ids[..prompt.context_len]
                        .copy_from_slice(&prompt.input_ids[..prompt.context_len]);
                    row.mlm_targets.clear();
                    row
                })
                .collect();
            let refs: Vec<&DialogueRow> = rows.iter().collect();
            let input = input_of(&refs, self.builder)?.to_device(device)?;
            let l = input.input_ids.size()[1];
            let mut flat = Vec::new();
            let mut targets = Vec::new();
            for (r, row) in rows.iter().enumerate() {
                for &(pos, t) in &row.response_targets {
                    flat.push(r as i64 * l + i64::from(pos));
                    targets.push(i64::from(t));
                }
            }
            let positions = Tensor::f_from_slice(&flat)?.f_to_device(device)?;
            let logits = self
                .model
                .forward_t(&input, Some(&positions), false)?
                .mlm_logits;
            let logp = logits
                .f_log_softmax(-1, Kind::Float)?
                .f_gather(
                    1,
                    &Tensor::f_from_slice(&targets)?
                        .f_to_device(device)?
                        .f_unsqueeze(1)?,
                    false,
                )?
                .f_to_device(Device::Cpu)?;
            let logp = Vec::<f32>::try_from(logp.f_view([-1])?)?;
            let mut k = 0;
            for row in &rows {
                let n = row.response_targets.len();
                let ll: f64 = logp[k..k + n].iter().map(|&x| f64::from(x)).sum();
                k += n;
                out.push(ResponseScore {
                    log_likelihood: ll,
                    tokens: n,
                });
            }
        }
        Ok(out)
    }

    /// Hits@1 among `candidates` responses per sample (see the module docs):
    /// `groups[i]` names the dialogue of sample `i`; distractors come from
    /// other groups, drawn from `seed`. Returns the share of hits and the
    /// number of samples ranked.
    pub fn hits_at_1(
        &self,
        examples: &[DialogueExample],
        groups: &[String],
        candidates: usize,
        seed: u64,
    ) -> Result<(f64, usize)> {
        let all: Vec<usize> = (0..examples.len()).collect();
        self.hits_at_1_of(examples, groups, &all, candidates, seed)
    }

    /// [`DialogueScorer::hits_at_1`] ranking only the samples `which`
    /// (distractors still come from every sample of other groups, and
    /// sample `i` draws them from its own stream, so a sample ranks the same
    /// whichever others are ranked). The candidates are those of
    /// [`draw_candidates`], ranked by [`hits_at_1_with`].
    pub fn hits_at_1_of(
        &self,
        examples: &[DialogueExample],
        groups: &[String],
        which: &[usize],
        candidates: usize,
        seed: u64,
    ) -> Result<(f64, usize)> {
        hits_at_1_with(self, examples, groups, which, candidates, seed)
    }
}

impl CandidateScorer for DialogueScorer<'_> {
    /// Each pair's mean log-likelihood per response token.
    fn score_candidates(&self, pairs: &[DialogueExample]) -> Result<Vec<f64>> {
        Ok(self.score(pairs)?.iter().map(ResponseScore::mean).collect())
    }
}

/// Ranks candidates by their pointwise mutual information with the context
/// (Li et al. 2016's maximum mutual information ranking, the "anti-LM"
/// form): a candidate's log-likelihood given the context minus its
/// log-likelihood with no context at all (the responder speaking first),
/// per response token. Plain likelihood prefers candidates made of frequent
/// words whatever the context; this asks how much the context raised each
/// candidate's likelihood. The no-context rows are outside what the model
/// was trained on (every training sample has a context); they stand in for
/// the response's prior.
#[derive(Debug, Clone, Copy)]
pub struct PmiScorer<'s, 'm>(pub &'s DialogueScorer<'m>);

impl CandidateScorer for PmiScorer<'_, '_> {
    fn score_candidates(&self, pairs: &[DialogueExample]) -> Result<Vec<f64>> {
        let given = self.0.score(pairs)?;
        let bare: Vec<DialogueExample> = pairs
            .iter()
            .map(|p| DialogueExample {
                context: Vec::new(),
                speakers: Vec::new(),
                ..p.clone()
            })
            .collect();
        let alone = self.0.score(&bare)?;
        Ok(given
            .iter()
            .zip(&alone)
            .map(|(g, a)| {
                if g.tokens == 0 {
                    f64::NEG_INFINITY
                } else {
                    (g.log_likelihood - a.log_likelihood) / g.tokens as f64
                }
            })
            .collect())
    }
}

/// Ranks candidates by response coherence estimation (PLATO-2's evaluation
/// model): each pair is laid out as a [`DialogueBuilder::coherence_row`]
/// (context and candidate read in both directions) and scored by the pair
/// head's margin on `[CLS]`, coherent minus incoherent logit. Meaningful for
/// a model trained with `coherence = true`; the model must have the pair
/// head (an error otherwise).
#[derive(Debug)]
pub struct CoherenceScorer<'m> {
    /// The model with its pooler and pair head.
    pub model: &'m BertForPreTraining,
    /// The row layout the model was trained with.
    pub builder: &'m DialogueBuilder,
    /// Pairs scored together.
    pub batch_size: usize,
}

impl CandidateScorer for CoherenceScorer<'_> {
    fn score_candidates(&self, pairs: &[DialogueExample]) -> Result<Vec<f64>> {
        let _guard = tch::no_grad_guard();
        let device = self.model.bert().embeddings().word_embeddings().device();
        let none = Tensor::f_zeros([0], (Kind::Int64, device))?;
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(self.batch_size.max(1)) {
            let rows: Vec<DialogueRow> = chunk
                .iter()
                .map(|ex| self.builder.coherence_row(ex))
                .collect();
            let refs: Vec<&DialogueRow> = rows.iter().collect();
            let input = input_of(&refs, self.builder)?.to_device(device)?;
            let Some(logits) = self
                .model
                .forward_t(&input, Some(&none), false)?
                .pair_logits
            else {
                return Err(invalid(
                    "model",
                    "ranking by coherence needs a model with the pair head: train it with \
                     dialogue.coherence = true"
                        .to_owned(),
                ));
            };
            let logits = logits.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?;
            let margin = logits.f_select(1, 0)?.f_sub(&logits.f_select(1, 1)?)?;
            out.extend(Vec::<f32>::try_from(margin)?.into_iter().map(f64::from));
        }
        Ok(out)
    }
}

/// The tokens [`DialogueScorer::score`] predicts for `ex`, in order: the
/// response's words as the builder lays out a training row (cut to
/// `max_response_len - 1`), then the closing `[SEP]` when the cut keeps it.
/// Baselines count and score exactly these, so their perplexities are over
/// the network's tokens.
pub fn target_tokens(builder: &DialogueBuilder, ex: &DialogueExample) -> Vec<u32> {
    builder
        .row(ex, 0, 0, 0)
        .response_targets
        .iter()
        .map(|&(_, t)| t)
        .collect()
}

/// Scores candidate responses in a sample's context for hits@1 (the
/// network by mean log-likelihood per token, baselines by their own
/// measure); higher ranks first.
pub trait CandidateScorer {
    /// One score per pair: `pairs[k]` is a sample (its context, speakers
    /// and responder) with a candidate response in place of its own.
    fn score_candidates(&self, pairs: &[DialogueExample]) -> Result<Vec<f64>>;
}

/// One sample's candidates for hits@1: the samples whose responses are
/// ranked in the context of `sample`, the true one (`sample` itself) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateSet {
    /// The sample whose context the responses are ranked in.
    pub sample: usize,
    /// `sample`, then the samples (of other groups) lending a distractor.
    pub responses: Vec<usize>,
}

/// Draws the candidates of the samples `which` (the one draw every scorer
/// ranks, network and baselines alike): sample `i` draws `candidates - 1`
/// distinct samples of groups other than `groups[i]` from its own stream
/// `rng_for(seed, Stream::Sampling, i)`, with `candidates * 50` tries; a
/// sample that finds too few is left out. Errors: fewer than 2 candidates, a
/// sample index out of range, no sample left to rank.
pub fn draw_candidates(
    groups: &[String],
    which: &[usize],
    candidates: usize,
    seed: u64,
) -> Result<Vec<CandidateSet>> {
    if candidates < 2 {
        return Err(invalid(
            "candidates",
            format!("{candidates}: ranking needs at least 2"),
        ));
    }
    let n = groups.len();
    if let Some(&bad) = which.iter().find(|&&i| i >= n) {
        return Err(invalid("which", format!("sample {bad} of {n}")));
    }
    let mut sets = Vec::new();
    for &i in which {
        let mut rng = rng_for(seed, Stream::Sampling, i as u64);
        let mut picks = Vec::with_capacity(candidates - 1);
        // Bounded tries: a set with too few other dialogues ranks fewer samples.
        for _ in 0..candidates * 50 {
            if picks.len() + 1 == candidates {
                break;
            }
            let j = rng.random_range(0..n);
            if groups[j] != groups[i] && !picks.contains(&j) {
                picks.push(j);
            }
        }
        if picks.len() + 1 < candidates {
            continue;
        }
        let mut responses = vec![i];
        responses.extend(picks);
        sets.push(CandidateSet {
            sample: i,
            responses,
        });
    }
    if sets.is_empty() {
        return Err(invalid(
            "groups",
            format!(
                "no sample has {} responses from other dialogues to rank against",
                candidates - 1
            ),
        ));
    }
    Ok(sets)
}

/// Whether the true response (`scores[0]`) scores strictly above every
/// other: a tie counts against it.
pub fn is_hit(scores: &[f64]) -> bool {
    scores
        .split_first()
        .is_some_and(|(truth, rest)| rest.iter().all(|d| d < truth))
}

/// Hits@1 of `scorer` over the samples `which` (see the module docs): the
/// candidates of [`draw_candidates`], each paired with the sample's context
/// and scored together, a hit by [`is_hit`]. Returns the share of hits and
/// the number of samples ranked.
pub fn hits_at_1_with(
    scorer: &dyn CandidateScorer,
    examples: &[DialogueExample],
    groups: &[String],
    which: &[usize],
    candidates: usize,
    seed: u64,
) -> Result<(f64, usize)> {
    if groups.len() != examples.len() {
        return Err(invalid(
            "groups",
            format!("{} groups for {} samples", groups.len(), examples.len()),
        ));
    }
    let sets = draw_candidates(groups, which, candidates, seed)?;
    let pairs: Vec<DialogueExample> = sets
        .iter()
        .flat_map(|set| {
            let i = set.sample;
            set.responses.iter().map(move |&j| DialogueExample {
                response: examples[j].response.clone(),
                ..examples[i].clone()
            })
        })
        .collect();
    let scores = scorer.score_candidates(&pairs)?;
    if scores.len() != pairs.len() {
        return Err(invalid(
            "scorer",
            format!("{} scores for {} candidates", scores.len(), pairs.len()),
        ));
    }
    let hits = scores.chunks(candidates).filter(|c| is_hit(c)).count();
    Ok((hits as f64 / sets.len() as f64, sets.len()))
}

/// A dialogue model as a [`StepDecoder`]: a source is a [`DialogueExample`]
/// whose context (and speakers) are read and whose response is ignored; see
/// the module docs. `max_len` bounds the steps of one `start`.
#[derive(Debug, Clone, Copy)]
pub struct DialogueDecoder<'m> {
    /// The model with its (tied) MLM head.
    pub model: &'m BertForPreTraining,
    /// The row layout the model was trained with.
    pub builder: &'m DialogueBuilder,
    /// With or without the key/value cache.
    pub decoding: Decoding,
    /// Steps allowed per source.
    pub max_len: usize,
}

/// The decoding state of a batch of rows.
pub struct DialogueState {
    /// Each row's source with the tokens fed so far as its response.
    rows: Vec<DialogueExample>,
    /// Each row's prompt length (context and the opening `[CLS]`).
    lens: Vec<i64>,
    /// Padded prompt length (the cache's first part).
    prompt_len: i64,
    cache: KvCache,
    steps: usize,
}

impl std::fmt::Debug for DialogueState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialogueState")
            .field("rows", &self.rows.len())
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl DialogueDecoder<'_> {
    fn device(&self) -> Device {
        self.model.bert().embeddings().word_embeddings().device()
    }

    /// Log-probabilities of the next token at each row's last position.
    fn next_from(&self, hidden: &Tensor, last: &[i64]) -> Result<Tensor> {
        let index = Tensor::f_from_slice(last)?.f_to_device(hidden.device())?;
        let b = last.len() as i64;
        let h = hidden.size()[2];
        let picked = hidden.f_gather(
            1,
            &index.f_view([b, 1, 1])?.f_expand([b, 1, h], false)?,
            false,
        )?;
        let logits = self.model.mlm_logits(&picked.f_squeeze_dim(1)?)?;
        Ok(logits.f_log_softmax(-1, Kind::Float)?)
    }

    /// Re-encodes every row whole ([`Decoding::Full`]).
    fn full_step(&self, state: &DialogueState) -> Result<Tensor> {
        let prompts: Vec<DialogueRow> = state.rows.iter().map(|r| self.builder.prompt(r)).collect();
        let refs: Vec<&DialogueRow> = prompts.iter().collect();
        let input = input_of(&refs, self.builder)?.to_device(self.device())?;
        let hidden = self
            .model
            .bert()
            .forward_t(&input, false)?
            .last_hidden_state;
        let last: Vec<i64> = prompts
            .iter()
            .map(|p| p.input_ids.len() as i64 - 1)
            .collect();
        self.next_from(&hidden, &last)
    }

    /// Encodes the prompts into the cache ([`Decoding::Cached`], first step).
    fn encode_prompts(&self, state: &mut DialogueState) -> Result<Tensor> {
        let prompts: Vec<DialogueRow> = state.rows.iter().map(|r| self.builder.prompt(r)).collect();
        let refs: Vec<&DialogueRow> = prompts.iter().collect();
        let mut input = input_of(&refs, self.builder)?.to_device(self.device())?;
        let vis = input
            .attention_3d
            .take()
            .ok_or_else(|| invalid("rows", "a dialogue row has a 3-D mask".to_owned()))?;
        // Padding keys are hidden by the 3-D mask already (collate writes
        // them invisible); the padding mask must not be passed twice.
        input.attention_mask = None;
        let out = self
            .model
            .bert()
            .forward_incremental(&input, &vis, &state.cache)?;
        let l = input.input_ids.size()[1];
        state.prompt_len = l;
        let keep: Vec<i64> = (0..l).collect();
        state.cache.append(&out, &keep)?;
        let last: Vec<i64> = state.lens.iter().map(|&n| n - 1).collect();
        self.next_from(&out.hidden, &last)
    }

    /// Feeds each row's last token ([`Decoding::Cached`], later steps).
    fn cached_step(&self, state: &mut DialogueState, last: &[u32]) -> Result<Tensor> {
        let device = self.device();
        let b = state.rows.len();
        let lc = state.cache.len();
        let fed = state.steps as i64; // tokens fed, this one included
        let keys = lc + 1;
        let mut vis = vec![0u8; b * keys as usize];
        for (r, &n) in state.lens.iter().enumerate() {
            let row = &mut vis[r * keys as usize..(r + 1) * keys as usize];
            row[..n as usize].fill(1); // the real prompt, not its padding
            row[state.prompt_len as usize..].fill(1); // fed tokens and itself
        }
        let ids: Vec<i64> = last.iter().map(|&t| i64::from(t)).collect();
        let pos: Vec<i64> = state.lens.iter().map(|&n| n - 1 + fed).collect();
        let col = |v: &[i64]| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(v)?
                .f_view([b as i64, 1])?
                .f_to_device(device)?)
        };
        let mut input = MlmInput::new(col(&ids)?)
            .with_position_ids(col(&pos)?)
            .with_token_type_ids(col(&vec![1; b])?);
        if self.builder.config().roles != RoleScheme::None {
            let role = i64::from(self.builder.roles(&state.rows[0]).1);
            input = input.with_role_ids(col(&vec![role; b])?);
        }
        let mask = Tensor::f_from_slice(&vis)?
            .f_view([b as i64, 1, keys])?
            .f_to_kind(Kind::Bool)?
            .f_to_device(device)?;
        let out = self
            .model
            .bert()
            .forward_incremental(&input, &mask, &state.cache)?;
        state.cache.append(&out, &[0])?;
        self.next_from(&out.hidden, &vec![0; b])
    }
}

impl StepDecoder for DialogueDecoder<'_> {
    type State = DialogueState;
    type Source = DialogueExample;

    fn start(&self, sources: &[DialogueExample]) -> Result<DialogueState> {
        if sources.is_empty() {
            return Err(invalid("sources", "nothing to decode".to_owned()));
        }
        let rows: Vec<DialogueExample> = sources
            .iter()
            .map(|s| DialogueExample {
                response: Vec::new(),
                ..s.clone()
            })
            .collect();
        let lens: Vec<i64> = rows
            .iter()
            .map(|r| self.builder.prompt(r).input_ids.len() as i64)
            .collect();
        let longest = lens.iter().copied().max().unwrap_or(0);
        let max_pos = self.model.config().max_position_embeddings;
        if longest + self.max_len as i64 > max_pos {
            return Err(invalid(
                "max_len",
                format!(
                    "a context of {longest} tokens plus {} generated tokens exceeds the \
                     model's {max_pos} positions",
                    self.max_len
                ),
            ));
        }
        Ok(DialogueState {
            rows,
            lens,
            prompt_len: 0,
            cache: KvCache::new(),
            steps: 0,
        })
    }

    fn step(&self, state: &mut DialogueState, last: Option<&[u32]>) -> Result<Tensor> {
        if state.steps >= self.max_len {
            return Err(invalid(
                "max_len",
                format!(
                    "step {} asked of a decoder built for {}",
                    state.steps + 1,
                    self.max_len
                ),
            ));
        }
        let _guard = tch::no_grad_guard();
        let out = match (state.steps, last) {
            (0, None) => match self.decoding {
                Decoding::Cached => self.encode_prompts(state)?,
                Decoding::Full => self.full_step(state)?,
            },
            (s, Some(l)) if s > 0 && l.len() == state.rows.len() => {
                let v = self.model.config().vocab_size;
                if let Some(&bad) = l.iter().find(|&&t| i64::from(t) >= v) {
                    return Err(invalid(
                        "last",
                        format!("token {bad} outside the vocabulary of {v}"),
                    ));
                }
                for (row, &t) in state.rows.iter_mut().zip(l) {
                    row.response.push(t);
                }
                match self.decoding {
                    Decoding::Cached => self.cached_step(state, l)?,
                    Decoding::Full => self.full_step(state)?,
                }
            }
            _ => {
                return Err(invalid(
                    "last",
                    "the first step takes no token, every later one a token per row".to_owned(),
                ))
            }
        };
        state.steps += 1;
        Ok(out)
    }

    fn reorder(&self, state: &mut DialogueState, keep: &[usize]) -> Result<()> {
        let n = state.rows.len();
        if keep.is_empty() {
            return Err(invalid("rows", "a reorder must keep a row".to_owned()));
        }
        if let Some(&bad) = keep.iter().find(|&&r| r >= n) {
            return Err(invalid("rows", format!("row {bad} of {n}")));
        }
        if !state.cache.is_empty() {
            let index: Vec<i64> = keep.iter().map(|&r| r as i64).collect();
            state.cache.reorder(&Tensor::f_from_slice(&index)?)?;
        }
        state.rows = keep.iter().map(|&r| state.rows[r].clone()).collect();
        state.lens = keep.iter().map(|&r| state.lens[r]).collect();
        Ok(())
    }
}

/// Settings of [`sample`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Keep only the `k` most probable tokens (0: no limit).
    pub top_k: usize,
    /// Keep the fewest most probable tokens whose probabilities sum to at
    /// least `p` (nucleus sampling, Holtzman et al. 2020; 1: no limit).
    pub top_p: f64,
    /// Divide the log-probabilities by this before sampling (1: unchanged).
    pub temperature: f64,
    /// Seed; source `i` draws from the stream `(seed, Sampling, i)`, so the
    /// result does not depend on the batch size.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            top_k: 0,
            top_p: 1.0,
            temperature: 1.0,
            seed: 0,
        }
    }
}

/// Draws a token from one row of log-probabilities under `s`.
fn draw(logp: &[f32], s: &Sampling, rng: &mut impl Rng) -> u32 {
    let mut order: Vec<usize> = (0..logp.len()).filter(|&i| logp[i].is_finite()).collect();
    // Highest first; ties by id, so the draw is deterministic.
    order.sort_by(|&a, &b| logp[b].total_cmp(&logp[a]).then(a.cmp(&b)));
    if s.top_k > 0 {
        order.truncate(s.top_k);
    }
    let t = s.temperature;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| (f64::from(logp[i]) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut keep = order.len();
    if s.top_p < 1.0 {
        let mut acc = 0.0;
        for (k, w) in weights.iter().enumerate() {
            acc += w / total;
            if acc >= s.top_p {
                keep = k + 1;
                break;
            }
        }
    }
    let mass: f64 = weights[..keep].iter().sum();
    let mut u = rng.random::<f64>() * mass;
    for (k, w) in weights[..keep].iter().enumerate() {
        if u < *w {
            return order[k] as u32;
        }
        u -= w;
    }
    order[keep.saturating_sub(1)] as u32
}

/// Top-k / top-p sampling over any [`StepDecoder`]: each source draws its next
/// token from its own seeded stream until the EOS or `max_len` (`beam_size`,
/// `length_penalty` and `no_repeat_ngram` of `options` are not used; `min_len`
/// forbids the EOS before it). Sources are decoded `batch_size` at a time.
pub fn sample<D: StepDecoder + ?Sized>(
    decoder: &D,
    sources: &[D::Source],
    options: &GenerateOptions,
    s: &Sampling,
) -> Result<Vec<Generated>> {
    options.validate()?;
    if !(s.top_p > 0.0 && s.top_p <= 1.0) {
        return Err(invalid("top_p", format!("{} is not in (0, 1]", s.top_p)));
    }
    if !(s.temperature > 0.0 && s.temperature.is_finite()) {
        return Err(invalid(
            "temperature",
            format!("{} must be positive", s.temperature),
        ));
    }
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(sources.len());
    for (k, batch) in sources.chunks(options.batch_size).enumerate() {
        let first = k * options.batch_size;
        let mut rngs: Vec<_> = (0..batch.len())
            .map(|i| rng_for(s.seed, Stream::Sampling, (first + i) as u64))
            .collect();
        let mut state = decoder.start(batch)?;
        let mut done: Vec<Option<Generated>> = vec![None; batch.len()];
        let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); batch.len()];
        let mut log_prob = vec![0.0f64; batch.len()];
        let mut last: Option<Vec<u32>> = None;
        for step in 0..options.max_len {
            let logp = decoder.step(&mut state, last.as_deref())?;
            let v = logp.size()[1] as usize;
            let flat = Vec::<f32>::try_from(
                logp.f_to_kind(Kind::Float)?
                    .f_to_device(Device::Cpu)?
                    .f_view([-1])?,
            )?;
            let mut next = Vec::with_capacity(batch.len());
            for (r, rng) in rngs.iter_mut().enumerate() {
                let mut row = flat[r * v..(r + 1) * v].to_vec();
                if step < options.min_len {
                    row[options.eos as usize] = f32::NEG_INFINITY;
                }
                let t = if done[r].is_some() {
                    options.eos
                } else {
                    draw(&row, s, rng)
                };
                if done[r].is_none() {
                    log_prob[r] += f64::from(row[t as usize]);
                    if t == options.eos {
                        done[r] = Some(Generated {
                            tokens: std::mem::take(&mut tokens[r]),
                            log_prob: log_prob[r],
                            score: log_prob[r],
                            ended: true,
                        });
                    } else {
                        tokens[r].push(t);
                    }
                }
                next.push(t);
            }
            if done.iter().all(Option::is_some) {
                break;
            }
            last = Some(next);
        }
        for (r, d) in done.into_iter().enumerate() {
            out.push(d.unwrap_or_else(|| Generated {
                tokens: std::mem::take(&mut tokens[r]),
                log_prob: log_prob[r],
                score: log_prob[r],
                ended: false,
            }));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{beam_search, greedy};
    use cloze_core::SpecialTokens;
    use cloze_mask::{DialogueAttention, DialogueConfig};
    use cloze_models::BertConfig;

    fn model(roles: bool) -> Result<(tch::nn::VarStore, BertForPreTraining)> {
        tch::manual_seed(11);
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
            role_type_size: roles.then_some(8),
            ..BertConfig::default()
        };
        let m = BertForPreTraining::new_masked_lm(&vs.root(), &config)?;
        Ok((vs, m))
    }

    fn builder(roles: RoleScheme, attention: DialogueAttention) -> DialogueBuilder {
        let specials = SpecialTokens {
            vocab_size: 40,
            pad: 0,
            unk: 1,
            cls: 2,
            sep: 3,
            mask: 4,
            pseudo_mask: None,
            all_special: vec![0, 1, 2, 3, 4],
        };
        let config = DialogueConfig {
            roles,
            num_roles: 8,
            attention,
            ..DialogueConfig::default()
        };
        DialogueBuilder::new(config, specials).expect("valid settings")
    }

    fn sources() -> Vec<DialogueExample> {
        vec![
            DialogueExample {
                context: vec![vec![10, 11, 12], vec![13, 14]],
                speakers: vec![1, 2],
                response: vec![],
                responder: 1,
            },
            DialogueExample {
                context: vec![vec![20]],
                speakers: vec![5],
                response: vec![],
                responder: 6,
            },
            DialogueExample {
                context: vec![vec![30, 31], vec![32], vec![33, 34, 35]],
                speakers: vec![1, 2, 3],
                response: vec![],
                responder: 2,
            },
        ]
    }

    #[test]
    fn cached_and_uncached_decoding_give_the_same_tokens() -> Result<()> {
        for (roles, attention) in [
            (RoleScheme::Speaker, DialogueAttention::Unified),
            (RoleScheme::Alternating, DialogueAttention::Causal),
            (RoleScheme::None, DialogueAttention::Unified),
        ] {
            let (_vs, m) = model(roles != RoleScheme::None)?;
            let b = builder(roles, attention);
            let dec = |decoding| DialogueDecoder {
                model: &m,
                builder: &b,
                decoding,
                max_len: 10,
            };
            let options = GenerateOptions::new(3, 10);
            let src = sources();
            let cached = greedy(&dec(Decoding::Cached), &src, &options)?;
            let full = greedy(&dec(Decoding::Full), &src, &options)?;
            for (c, f) in cached.iter().zip(&full) {
                assert_eq!(c.tokens, f.tokens, "{roles:?} {attention:?}");
                assert!((c.log_prob - f.log_prob).abs() < 1e-4);
            }
            assert!(cached.iter().any(|g| !g.tokens.is_empty()));
            let beam = GenerateOptions {
                beam_size: 3,
                ..options.clone()
            };
            let cached = beam_search(&dec(Decoding::Cached), &src, &beam)?;
            let full = beam_search(&dec(Decoding::Full), &src, &beam)?;
            assert_eq!(
                cached.iter().map(|g| &g.tokens).collect::<Vec<_>>(),
                full.iter().map(|g| &g.tokens).collect::<Vec<_>>()
            );
            // Sampling is seeded per source: the batch size does not matter.
            let s = Sampling {
                top_k: 5,
                top_p: 0.9,
                seed: 4,
                ..Sampling::default()
            };
            let one = GenerateOptions {
                batch_size: 1,
                ..options.clone()
            };
            let tokens = |g: Vec<Generated>| g.into_iter().map(|g| g.tokens).collect::<Vec<_>>();
            assert_eq!(
                tokens(sample(&dec(Decoding::Cached), &src, &options, &s)?),
                tokens(sample(&dec(Decoding::Cached), &src, &one, &s)?)
            );
        }
        Ok(())
    }

    #[test]
    fn no_response_token_sees_a_later_one() -> Result<()> {
        let (_vs, m) = model(true)?;
        let b = builder(RoleScheme::Speaker, DialogueAttention::Unified);
        let scorer = DialogueScorer {
            model: &m,
            builder: &b,
            batch_size: 4,
        };
        let mut a = sources()[0].clone();
        a.response = vec![20, 21, 22, 23];
        let mut changed = a.clone();
        changed.response[3] = 30;
        // Log-probabilities of each response token, one example at a time.
        let per_token = |ex: &DialogueExample| -> Result<Vec<f64>> {
            (1..=ex.response.len())
                .map(|k| {
                    let prefix = DialogueExample {
                        response: ex.response[..k].to_vec(),
                        ..ex.clone()
                    };
                    let s = scorer.score(std::slice::from_ref(&prefix))?;
                    Ok(s[0].log_likelihood)
                })
                .collect()
        };
        let (pa, pc) = (per_token(&a)?, per_token(&changed)?);
        // Prefixes ending before the changed token score the same...
        for k in 0..2 {
            assert!(
                (pa[k] - pc[k]).abs() < 1e-5,
                "prefix {k}: {} vs {}",
                pa[k],
                pc[k]
            );
        }
        // ...and the full scores differ (the change is seen where it should be).
        assert!((pa[3] - pc[3]).abs() > 1e-6);
        // The context, by contrast, is seen by everything.
        let mut ctx = a.clone();
        ctx.context[0][0] = 15;
        assert!((per_token(&ctx)?[0] - pa[0]).abs() > 1e-6);
        Ok(())
    }

    #[test]
    fn scores_add_up_and_ranking_counts_ties_against_the_truth() -> Result<()> {
        let (_vs, m) = model(true)?;
        let b = builder(RoleScheme::Speaker, DialogueAttention::Unified);
        let scorer = DialogueScorer {
            model: &m,
            builder: &b,
            batch_size: 2,
        };
        let mut examples = sources();
        for (i, e) in examples.iter_mut().enumerate() {
            e.response = vec![20 + i as u32, 21];
        }
        let together = scorer.score(&examples)?;
        for (i, e) in examples.iter().enumerate() {
            let alone = scorer.score(std::slice::from_ref(e))?;
            assert!((alone[0].log_likelihood - together[i].log_likelihood).abs() < 1e-4);
            assert_eq!(alone[0].tokens, 3); // two words and [SEP]
        }
        let groups: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let (h, n) = scorer.hits_at_1(&examples, &groups, 3, 0)?;
        assert_eq!(n, 3);
        assert!((0.0..=1.0).contains(&h));
        // A subset ranks its samples exactly as the full ranking does.
        let (h0, n0) = scorer.hits_at_1_of(&examples, &groups, &[0], 3, 0)?;
        assert_eq!(n0, 1);
        assert!(h0 == 0.0 || h0 == 1.0);
        assert!(scorer.hits_at_1_of(&examples, &groups, &[3], 3, 0).is_err());
        // Identical responses everywhere: every ranking is a tie, so no hit.
        let same: Vec<DialogueExample> = examples
            .iter()
            .map(|e| DialogueExample {
                response: vec![20, 21],
                ..e.clone()
            })
            .collect();
        assert_eq!(scorer.hits_at_1(&same, &groups, 3, 0)?, (0.0, 3));
        // Too few other dialogues to draw from is an error, not a silent 0.
        let one_group = vec!["a".to_string(); 3];
        assert!(scorer.hits_at_1(&examples, &one_group, 3, 0).is_err());

        // PMI: the likelihood given the context minus that given none, per token.
        let pmi = PmiScorer(&scorer).score_candidates(&examples)?;
        for (i, e) in examples.iter().enumerate() {
            let bare = DialogueExample {
                context: Vec::new(),
                speakers: Vec::new(),
                ..e.clone()
            };
            let alone = scorer.score(std::slice::from_ref(&bare))?[0];
            let want = (together[i].log_likelihood - alone.log_likelihood) / 3.0;
            assert!((pmi[i] - want).abs() < 1e-4, "{} vs {want}", pmi[i]);
            // Not the plain mean: the no-context likelihood is subtracted.
            assert!((pmi[i] - together[i].mean()).abs() > 1e-6);
        }
        let (hp, np) = hits_at_1_with(&PmiScorer(&scorer), &examples, &groups, &[0, 1, 2], 3, 0)?;
        assert_eq!(np, 3);
        assert!((0.0..=1.0).contains(&hp));
        Ok(())
    }

    #[test]
    fn coherence_scores_are_the_pair_margin_on_rows_read_both_ways() -> Result<()> {
        let b = builder(RoleScheme::Speaker, DialogueAttention::Unified);
        let pairs: Vec<DialogueExample> = sources()
            .into_iter()
            .zip([vec![15, 16], vec![21], vec![36, 37, 38]])
            .map(|(ex, response)| DialogueExample { response, ..ex })
            .collect();
        // A model without the pair head cannot rank by coherence.
        let (_vs, plain) = model(true)?;
        let scorer = CoherenceScorer {
            model: &plain,
            builder: &b,
            batch_size: 3,
        };
        assert!(scorer.score_candidates(&pairs).is_err());

        tch::manual_seed(12);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let config = BertConfig {
            role_type_size: Some(8),
            ..plain.config().clone()
        };
        let m = BertForPreTraining::new(&vs.root(), &config)?;
        let together = CoherenceScorer {
            model: &m,
            builder: &b,
            batch_size: 3,
        }
        .score_candidates(&pairs)?;
        let alone = CoherenceScorer {
            model: &m,
            builder: &b,
            batch_size: 1,
        }
        .score_candidates(&pairs)?;
        assert_eq!(together.len(), 3);
        for (t, a) in together.iter().zip(&alone) {
            assert!((t - a).abs() < 1e-5, "{together:?} vs {alone:?}");
        }
        // By hand for the first pair: its coherence row, the pair logits' margin.
        let row = b.coherence_row(&pairs[0]);
        let input = input_of(&[&row], &b)?;
        let none = Tensor::f_zeros([0], (Kind::Int64, Device::Cpu))?;
        let logits = m
            .forward_t(&input, Some(&none), false)?
            .pair_logits
            .expect("pair head");
        let margin = logits.f_double_value(&[0, 0])? - logits.f_double_value(&[0, 1])?;
        assert!(
            (together[0] - margin).abs() < 1e-5,
            "{} vs {margin}",
            together[0]
        );
        // The response is read: another candidate scores differently.
        let other = DialogueExample {
            response: vec![30, 31, 32],
            ..pairs[0].clone()
        };
        let changed = CoherenceScorer {
            model: &m,
            builder: &b,
            batch_size: 1,
        }
        .score_candidates(&[other])?;
        assert!((changed[0] - together[0]).abs() > 1e-6);
        Ok(())
    }

    #[test]
    fn distinct_counts_unique_ngrams() {
        let r = vec![vec![1, 2, 1, 2], vec![1, 2]];
        assert!((distinct(&r, 1) - 2.0 / 6.0).abs() < 1e-12);
        assert!((distinct(&r, 2) - 2.0 / 4.0).abs() < 1e-12);
        assert_eq!(distinct(&r, 5), 0.0);
    }

    #[test]
    fn perplexity_is_the_exponential_of_the_mean_loss() {
        let s = [
            ResponseScore {
                log_likelihood: -2.0,
                tokens: 1,
            },
            ResponseScore {
                log_likelihood: -4.0,
                tokens: 3,
            },
        ];
        assert!((perplexity(&s) - 1.5f64.exp()).abs() < 1e-12);
        assert_eq!(s[0].mean(), -2.0);
    }

    #[test]
    fn top_k_and_top_p_limit_the_draws() {
        let logp: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let mut rng = rng_for(1, Stream::Sampling, 0);
        let k1 = Sampling {
            top_k: 1,
            ..Sampling::default()
        };
        assert!((0..50).all(|_| draw(&logp, &k1, &mut rng) == 0));
        let p = Sampling {
            top_p: 0.8,
            ..Sampling::default()
        };
        let seen: HashSet<u32> = (0..400).map(|_| draw(&logp, &p, &mut rng)).collect();
        assert_eq!(seen, HashSet::from([0, 1]));
        let all: HashSet<u32> = (0..2000)
            .map(|_| draw(&logp, &Sampling::default(), &mut rng))
            .collect();
        assert_eq!(all.len(), 4);
    }
}

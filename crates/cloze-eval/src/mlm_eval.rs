//! Held-out masked-LM evaluation: loss, perplexity, masked-token accuracy,
//! sentence-pair accuracy, and the unigram-frequency baseline on the same masks.
//!
//! An [`EvalSet`] is held-out data masked once with a fixed seed; [`MlmTask`]
//! is the [`Task`] that scores any [`MlmModel`] on it (the trainer's periodic
//! evaluation and `cloze eval` alike). The accumulator works on logits
//! tensors. Perplexity is `exp` of the mean per-token negative log-likelihood
//! over every masked position of the split.

use cloze_core::Report;
use cloze_mask::{Batch, MaskedTarget};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

use crate::fill_mask::Candidate;
use crate::task::{self, Task};
use crate::Result;

/// Held-out batches with fixed masks, plus the unigram baseline to compare with.
#[derive(Debug, Clone)]
pub struct EvalSet {
    /// The batches, masked once with the evaluation seed.
    pub batches: Vec<Batch>,
    /// The most-frequent-training-token predictor, when known.
    pub baseline: Option<UnigramBaseline>,
    /// The `[MASK]` id, to also score the positions where the token was hidden.
    pub mask_token: Option<u32>,
    /// The name the sentence-pair accuracy is reported under (`nsp`, `sop`).
    pub pair_name: String,
}

/// What a model predicts for one masked batch.
#[derive(Debug)]
pub struct MlmOutput {
    /// `[N, V]` vocabulary logits at the batch's masked-LM targets, in order.
    pub mlm_logits: Tensor,
    /// `[B, 2]` sentence-pair logits, when the model has a pair head.
    pub pair_logits: Option<Tensor>,
    /// `[N_p, V]` vocabulary logits at the batch's pseudo-token targets
    /// (UniLM-v2's `[P]`), in order, when the batch has them.
    pub pseudo_logits: Option<Tensor>,
}

/// A model that predicts the masked-LM targets of a collated batch: what
/// held-out MLM evaluation needs, whatever the model.
pub trait MlmModel {
    /// Predicts `batch` in evaluation mode (no dropout).
    fn predict_batch(&self, batch: &Batch) -> Result<MlmOutput>;
}

/// The held-out MLM evaluation as a [`Task`]: each input is one masked batch.
#[derive(Debug, Clone, Copy)]
pub struct MlmTask<'a> {
    /// The evaluation set.
    pub set: &'a EvalSet,
}

impl<'a> Task for MlmTask<'a> {
    type Model = dyn MlmModel + 'a;
    type Input = Batch;
    type Prediction = MlmOutput;
    type Metrics = MlmEvalAccumulator;

    fn inputs(&self) -> &[Batch] {
        &self.set.batches
    }

    fn predict(&self, model: &Self::Model, input: &Batch) -> Result<MlmOutput> {
        model.predict_batch(input)
    }

    fn accumulate(&self, acc: &mut MlmEvalAccumulator, b: &Batch, out: MlmOutput) -> Result<()> {
        let device = out.mlm_logits.device();
        let targets = Tensor::f_from_slice(&b.masked_targets())?.f_to_device(device)?;
        acc.add_mlm(&out.mlm_logits, &targets)?;
        if let (Some(l), Some(y)) = (&out.pair_logits, &b.targets.pair) {
            acc.add_pair(l, &Tensor::f_from_slice(y)?.f_to_device(device)?)?;
        }
        if let Some(l) = &out.pseudo_logits {
            let ids: Vec<i64> = b
                .targets
                .pseudo
                .iter()
                .map(|m| i64::from(m.target))
                .collect();
            acc.add_pseudo(l, &Tensor::f_from_slice(&ids)?.f_to_device(device)?)?;
        }
        let masked = &b.targets.masked_lm;
        let at_mask: Vec<bool> = masked
            .iter()
            .map(|m| {
                self.set.mask_token.is_some_and(|id| {
                    b.input_ids[m.row as usize * b.seq_len + m.pos as usize] == i64::from(id)
                })
            })
            .collect();
        if self.set.mask_token.is_some() {
            acc.add_mask_positions(
                &out.mlm_logits,
                &targets,
                &Tensor::f_from_slice(&at_mask)?.f_to_device(device)?,
            )?;
        }
        if let Some(base) = &self.set.baseline {
            acc.add_baseline(
                base,
                masked.iter().map(|m| m.target).zip(at_mask.iter().copied()),
            );
        }
        Ok(())
    }

    fn report(&self, acc: &MlmEvalAccumulator) -> Report {
        acc.finish().report(&self.set.pair_name)
    }
}

/// Scores `model` on `set` without gradients: the typed metrics of the MLM
/// task (its [`Report`] is [`MlmEvalMetrics::report`]).
pub fn evaluate(model: &dyn MlmModel, set: &EvalSet) -> Result<MlmEvalMetrics> {
    let _span = tracing::info_span!("eval", batches = set.batches.len()).entered();
    Ok(task::evaluate(&MlmTask { set }, model)?.finish())
}

/// The model's top guesses at one masked-LM target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetGuesses {
    /// The target: row, position and true token.
    pub target: MaskedTarget,
    /// The `top_k` most probable tokens, most probable first.
    pub guesses: Vec<Candidate>,
}

/// Fill-mask over a masked batch: the `top_k` guesses at every masked-LM
/// target, in target order (what `cloze eval --examples` prints).
pub fn guesses_at_targets(
    model: &dyn MlmModel,
    batch: &Batch,
    top_k: usize,
) -> Result<Vec<TargetGuesses>> {
    let out = tch::no_grad(|| model.predict_batch(batch))?;
    let vocab = out.mlm_logits.size().last().copied().unwrap_or(0);
    if top_k == 0 || top_k as i64 > vocab {
        return Err(crate::Error::InvalidOption {
            name: "top_k",
            reason: format!("{top_k} is not in 1..={vocab}"),
        });
    }
    let probs = out.mlm_logits.f_softmax(-1, Kind::Float)?;
    let (p, i) = probs.f_topk(top_k as i64, -1, true, true)?;
    let p = Vec::<f32>::try_from(p.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
    let i = Vec::<i64>::try_from(i.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
    Ok(batch
        .targets
        .masked_lm
        .iter()
        .enumerate()
        .map(|(k, &target)| TargetGuesses {
            target,
            guesses: (0..top_k)
                .map(|j| Candidate {
                    token_id: i[k * top_k + j] as u32,
                    probability: f64::from(p[k * top_k + j]),
                })
                .collect(),
        })
        .collect())
}

/// Summary of one evaluation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlmEvalMetrics {
    /// Mean cross-entropy (nats) over all masked positions.
    pub mlm_loss: f64,
    /// `exp(mlm_loss)`.
    pub perplexity: f64,
    /// Fraction of masked positions whose arg-max prediction is the original token.
    pub accuracy: f64,
    /// Number of masked positions scored.
    pub masked_tokens: u64,
    /// NSP/SOP accuracy, when the model has a pair head and the data pair labels.
    pub pair_accuracy: Option<f64>,
    /// Accuracy of always predicting the most frequent training token on the same masks.
    pub unigram_baseline_accuracy: Option<f64>,
    /// Accuracy on the positions whose input was replaced by `[MASK]` only: the
    /// positions where the original token is not visible, so the model must use
    /// context (kept tokens are trivially copied, random ones are rare).
    #[serde(default)]
    pub mask_token_accuracy: Option<f64>,
    /// Number of those `[MASK]` positions.
    #[serde(default)]
    pub mask_tokens: u64,
    /// The unigram baseline on the `[MASK]` positions only.
    #[serde(default)]
    pub mask_token_baseline_accuracy: Option<f64>,
    /// Mean cross-entropy (nats) at the `[MASK]` positions. More sensitive than
    /// accuracy: a model can use context (lower loss) long before its top guess
    /// stops being the most frequent word.
    #[serde(default)]
    pub mask_token_loss: Option<f64>,
    /// Cross-entropy of the add-one-smoothed unigram distribution of the training
    /// data at the same `[MASK]` positions: what a context-free model scores.
    #[serde(default)]
    pub mask_token_baseline_loss: Option<f64>,
    /// Mean cross-entropy (nats) at the pseudo-token (`[P]`) targets of
    /// UniLM-v2's partially autoregressive objective, when the batches have them.
    #[serde(default)]
    pub par_loss: Option<f64>,
    /// Accuracy at the pseudo-token targets.
    #[serde(default)]
    pub par_accuracy: Option<f64>,
    /// Number of pseudo-token targets scored.
    #[serde(default)]
    pub par_tokens: u64,
}

impl MlmEvalMetrics {
    /// The metrics as named values. Losses and accuracies: `mlm` (every
    /// masked position), `mlm@mask` (positions shown as `[MASK]`), `unigram`
    /// and `unigram@mask` (the baseline on the same positions); the pair
    /// accuracy under `pair_name`; counts of `mlm` and `mlm@mask` positions.
    pub fn report(&self, pair_name: &str) -> Report {
        let mut r = Report::new()
            .loss("mlm", self.mlm_loss)
            .accuracy("mlm", self.accuracy)
            .count("mlm", self.masked_tokens);
        let put =
            |map: &mut std::collections::BTreeMap<String, f64>, name: &str, v: Option<f64>| {
                if let Some(v) = v {
                    map.insert(name.to_owned(), v);
                }
            };
        put(&mut r.losses, "mlm@mask", self.mask_token_loss);
        put(&mut r.losses, "unigram@mask", self.mask_token_baseline_loss);
        put(&mut r.accuracies, "mlm@mask", self.mask_token_accuracy);
        put(&mut r.accuracies, "unigram", self.unigram_baseline_accuracy);
        put(
            &mut r.accuracies,
            "unigram@mask",
            self.mask_token_baseline_accuracy,
        );
        put(&mut r.accuracies, pair_name, self.pair_accuracy);
        put(&mut r.losses, "par", self.par_loss);
        put(&mut r.accuracies, "par", self.par_accuracy);
        if self.mask_tokens > 0 {
            r.counts.insert("mlm@mask".to_owned(), self.mask_tokens);
        }
        if self.par_tokens > 0 {
            r.counts.insert("par".to_owned(), self.par_tokens);
        }
        r
    }
}

/// Adds up batches of predictions; [`Self::finish`] gives the metrics.
#[derive(Debug, Clone, Default)]
pub struct MlmEvalAccumulator {
    nll_sum: f64,
    correct: u64,
    count: u64,
    pair_correct: u64,
    pair_count: u64,
    baseline_correct: u64,
    baseline_seen: bool,
    at_mask_correct: u64,
    at_mask_count: u64,
    at_mask_baseline_correct: u64,
    at_mask_nll_sum: f64,
    at_mask_baseline_nll_sum: f64,
    at_mask_baseline_scored: u64,
    par_nll_sum: f64,
    par_correct: u64,
    par_count: u64,
}

impl MlmEvalAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `[N, V]` logits of masked positions and their `[N]` target ids.
    pub fn add_mlm(&mut self, logits: &Tensor, targets: &Tensor) -> Result<(), tch::TchError> {
        let (nll, hits, n) = summed_nll_and_hits(logits, targets)?;
        self.nll_sum += nll;
        self.correct += hits;
        self.count += n;
        Ok(())
    }

    /// Adds `[N_p, V]` logits of pseudo-token (`[P]`) positions and their
    /// `[N_p]` targets.
    pub fn add_pseudo(&mut self, logits: &Tensor, targets: &Tensor) -> Result<(), tch::TchError> {
        let (nll, hits, n) = summed_nll_and_hits(logits, targets)?;
        self.par_nll_sum += nll;
        self.par_correct += hits;
        self.par_count += n;
        Ok(())
    }

    /// Adds `[B, 2]` pair logits and their `[B]` labels.
    pub fn add_pair(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(), tch::TchError> {
        let pred = logits.f_argmax(-1, false)?;
        let correct = pred
            .f_eq_tensor(labels)?
            .f_sum(Kind::Int64)?
            .f_int64_value(&[])?;
        self.pair_correct += correct.max(0) as u64;
        self.pair_count += labels.size().first().copied().unwrap_or(0).max(0) as u64;
        Ok(())
    }

    /// Adds the subset of positions whose input token was `[MASK]`: `at_mask`
    /// is a `[N]` bool tensor over the same rows as `logits` and `targets`.
    pub fn add_mask_positions(
        &mut self,
        logits: &Tensor,
        targets: &Tensor,
        at_mask: &Tensor,
    ) -> Result<(), tch::TchError> {
        let nll = logits
            .f_to_kind(Kind::Float)?
            .f_cross_entropy_loss::<Tensor>(targets, None, Reduction::None, -100, 0.0)?;
        let nll_at_mask = nll
            .f_mul(&at_mask.f_to_kind(Kind::Float)?)?
            .f_sum(Kind::Double)?;
        self.at_mask_nll_sum += nll_at_mask.f_double_value(&[])?;
        let hits = logits
            .f_argmax(-1, false)?
            .f_eq_tensor(targets)?
            .f_logical_and(at_mask)?;
        self.at_mask_correct += hits.f_sum(Kind::Int64)?.f_int64_value(&[])?.max(0) as u64;
        self.at_mask_count += at_mask.f_sum(Kind::Int64)?.f_int64_value(&[])?.max(0) as u64;
        Ok(())
    }

    /// Scores the unigram baseline on the same masked positions, given as
    /// `(target, input was [MASK])` pairs.
    pub fn add_baseline(
        &mut self,
        baseline: &UnigramBaseline,
        targets: impl IntoIterator<Item = (u32, bool)>,
    ) {
        self.baseline_seen = true;
        for (t, at_mask) in targets {
            if at_mask {
                if let Some(lp) = baseline.log_prob(t) {
                    self.at_mask_baseline_nll_sum -= lp;
                    self.at_mask_baseline_scored += 1;
                }
            }
            if t == baseline.token {
                self.baseline_correct += 1;
                if at_mask {
                    self.at_mask_baseline_correct += 1;
                }
            }
        }
    }

    /// The metrics so far.
    pub fn finish(&self) -> MlmEvalMetrics {
        let denom = self.count.max(1) as f64;
        let mlm_loss = self.nll_sum / denom;
        MlmEvalMetrics {
            mlm_loss,
            perplexity: mlm_loss.exp(),
            accuracy: self.correct as f64 / denom,
            masked_tokens: self.count,
            pair_accuracy: (self.pair_count > 0)
                .then(|| self.pair_correct as f64 / self.pair_count as f64),
            unigram_baseline_accuracy: self
                .baseline_seen
                .then(|| self.baseline_correct as f64 / denom),
            mask_token_accuracy: (self.at_mask_count > 0)
                .then(|| self.at_mask_correct as f64 / self.at_mask_count as f64),
            mask_tokens: self.at_mask_count,
            mask_token_baseline_accuracy: (self.baseline_seen && self.at_mask_count > 0)
                .then(|| self.at_mask_baseline_correct as f64 / self.at_mask_count as f64),
            mask_token_loss: (self.at_mask_count > 0)
                .then(|| self.at_mask_nll_sum / self.at_mask_count as f64),
            mask_token_baseline_loss: (self.at_mask_baseline_scored > 0)
                .then(|| self.at_mask_baseline_nll_sum / self.at_mask_baseline_scored as f64),
            par_loss: (self.par_count > 0).then(|| self.par_nll_sum / self.par_count as f64),
            par_accuracy: (self.par_count > 0)
                .then(|| self.par_correct as f64 / self.par_count as f64),
            par_tokens: self.par_count,
        }
    }
}

/// Summed cross-entropy, arg-max hits and count of `[N, V]` logits against
/// `[N]` targets (zeros when `N` is 0).
fn summed_nll_and_hits(
    logits: &Tensor,
    targets: &Tensor,
) -> Result<(f64, u64, u64), tch::TchError> {
    let n = targets.size().first().copied().unwrap_or(0);
    if n == 0 {
        return Ok((0.0, 0, 0));
    }
    let logits = logits.f_to_kind(Kind::Float)?;
    let nll = logits.f_cross_entropy_loss::<Tensor>(targets, None, Reduction::Sum, -100, 0.0)?;
    let hits = logits
        .f_argmax(-1, false)?
        .f_eq_tensor(targets)?
        .f_sum(Kind::Int64)?
        .f_int64_value(&[])?;
    Ok((
        nll.f_to_kind(Kind::Double)?.f_double_value(&[])?,
        hits.max(0) as u64,
        n.max(0) as u64,
    ))
}

/// The unigram-frequency baseline: predict the training data's most frequent
/// non-special token at every masked position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnigramBaseline {
    /// The predicted token id.
    pub token: u32,
    /// How often it occurs in the training data.
    pub count: u64,
    /// Non-special tokens counted.
    pub total: u64,
    /// Per-id counts (specials zeroed), for the smoothed unigram distribution.
    #[serde(skip)]
    counts: Vec<u64>,
}

impl UnigramBaseline {
    /// Picks the most frequent token from per-id counts, ignoring `special` ids
    /// (they are never masked, so predicting one could never be right).
    /// Ties go to the lower id. `None` when every count is zero.
    pub fn from_counts(counts: &[u64], special: &[u32]) -> Option<Self> {
        let mut best: Option<(u32, u64)> = None;
        let mut total = 0u64;
        for (id, &c) in counts.iter().enumerate() {
            let id = u32::try_from(id).ok()?;
            if special.contains(&id) {
                continue;
            }
            total += c;
            if c > 0 && best.is_none_or(|(_, bc)| c > bc) {
                best = Some((id, c));
            }
        }
        let kept = counts
            .iter()
            .enumerate()
            .map(|(id, &c)| {
                let special = u32::try_from(id).map_or(true, |id| special.contains(&id));
                if special {
                    0
                } else {
                    c
                }
            })
            .collect();
        best.map(|(token, count)| Self {
            token,
            count,
            total,
            counts: kept,
        })
    }

    /// Natural log of the add-one-smoothed unigram probability of `token`,
    /// `(count + 1) / (total + vocabulary size)`; `None` for ids outside the counts.
    pub fn log_prob(&self, token: u32) -> Option<f64> {
        let c = *self.counts.get(token as usize)?;
        let vocab = self.counts.len() as u64;
        Some(((c + 1) as f64 / (self.total + vocab) as f64).ln())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_loss_and_perplexity() -> Result<(), tch::TchError> {
        let mut acc = MlmEvalAccumulator::new();
        // Two positions over a 3-token vocabulary: the first is right with certainty-ish
        // logits, the second is uniform (arg-max picks id 0, target 2: wrong).
        let logits = Tensor::from_slice(&[0f32, 100., 0., 0., 0., 0.]).view([2, 3]);
        acc.add_mlm(&logits, &Tensor::from_slice(&[1i64, 2]))?;
        let m = acc.finish();
        assert_eq!(m.masked_tokens, 2);
        assert!((m.accuracy - 0.5).abs() < 1e-12);
        assert!(
            (m.mlm_loss - 3f64.ln() / 2.0).abs() < 1e-5,
            "{}",
            m.mlm_loss
        );
        assert!((m.perplexity - m.mlm_loss.exp()).abs() < 1e-9);
        assert_eq!(m.pair_accuracy, None);
        assert_eq!(m.unigram_baseline_accuracy, None);
        Ok(())
    }

    #[test]
    fn pseudo_targets_are_scored_apart_and_reported_as_par() -> Result<(), tch::TchError> {
        let mut acc = MlmEvalAccumulator::new();
        let logits = Tensor::from_slice(&[0f32, 100., 0., 0., 0., 0.]).view([2, 3]);
        acc.add_mlm(&logits, &Tensor::from_slice(&[1i64, 1]))?;
        // Three [P] targets, two right with certainty, one uniform and wrong.
        let pseudo = Tensor::from_slice(&[100f32, 0., 0., 0., 0., 100., 0., 0., 0.]).view([3, 3]);
        acc.add_pseudo(&pseudo, &Tensor::from_slice(&[0i64, 2, 1]))?;
        let m = acc.finish();
        assert_eq!((m.masked_tokens, m.par_tokens), (2, 3));
        assert!((m.par_accuracy.unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.par_loss.unwrap_or(0.0) - 3f64.ln() / 3.0).abs() < 1e-5);
        let r = m.report("pair");
        assert_eq!(r.counts.get("par"), Some(&3));
        assert!(r.losses.contains_key("par") && r.accuracies.contains_key("par"));
        // Without pseudo targets nothing is reported under `par`.
        let plain = MlmEvalAccumulator::new().finish().report("pair");
        assert!(!plain.losses.contains_key("par"));
        Ok(())
    }

    #[test]
    fn baseline_skips_specials_and_scores_the_same_masks() {
        let b = UnigramBaseline::from_counts(&[50, 9, 3, 9], &[0]);
        let Some(b) = b else {
            panic!("a baseline exists")
        };
        assert_eq!((b.token, b.count, b.total), (1, 9, 21));
        let mut acc = MlmEvalAccumulator::new();
        let logits = Tensor::zeros([4, 4], (Kind::Float, tch::Device::Cpu));
        assert!(acc
            .add_mlm(&logits, &Tensor::from_slice(&[1i64, 1, 2, 3]))
            .is_ok());
        let at_mask = Tensor::from_slice(&[true, false, true, true]);
        assert!(acc
            .add_mask_positions(&logits, &Tensor::from_slice(&[1i64, 1, 2, 3]), &at_mask)
            .is_ok());
        acc.add_baseline(&b, [(1, true), (1, false), (2, true), (3, true)]);
        let m = acc.finish();
        assert_eq!(m.unigram_baseline_accuracy, Some(0.5));
        assert_eq!(m.mask_tokens, 3);
        // Uniform logits predict id 0 everywhere: never right on this subset.
        assert_eq!(m.mask_token_accuracy, Some(0.0));
        assert!((m.mask_token_baseline_accuracy.unwrap_or(0.0) - 1.0 / 3.0).abs() < 1e-12);
        // Uniform logits over 4 ids: ln 4 nats at each [MASK] position.
        assert!((m.mask_token_loss.unwrap_or(0.0) - 4f64.ln()).abs() < 1e-5);
        // Smoothed unigram over counts [0 (special), 9, 3, 9], total 21, 4 ids:
        // p(1) = 10/25, p(2) = 4/25, p(3) = 10/25 at the three [MASK] targets.
        let expected = -((0.4f64).ln() + (0.16f64).ln() + (0.4f64).ln()) / 3.0;
        assert!((m.mask_token_baseline_loss.unwrap_or(0.0) - expected).abs() < 1e-9);
        assert_eq!(UnigramBaseline::from_counts(&[0, 0], &[]), None);
    }

    #[test]
    fn pair_accuracy() -> Result<(), tch::TchError> {
        let mut acc = MlmEvalAccumulator::new();
        acc.add_pair(
            &Tensor::from_slice(&[1f32, 0., 0., 1., 1., 0.]).view([3, 2]),
            &Tensor::from_slice(&[0i64, 1, 1]),
        )?;
        assert!((acc.finish().pair_accuracy.unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-12);
        Ok(())
    }
}

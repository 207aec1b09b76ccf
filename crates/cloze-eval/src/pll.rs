//! Pseudo-log-likelihood scoring (Salazar et al. 2020, "Masked Language Model Scoring"):
//! mask each token in turn, sum the log-probabilities of the true tokens.

use cloze_models::BertForPreTraining;
use tch::{Device, Kind, Tensor};

use crate::batch::{check_lengths, pad_batch, plan_batches};
use crate::Result;

/// The score of one sequence.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PllScore {
    /// Sum over scored tokens of `log P(token | rest)`, natural log.
    pub pll: f64,
    /// Number of scored tokens (special tokens excluded).
    pub tokens: usize,
    /// `exp(-pll / tokens)`; 1.0 when nothing was scored.
    pub pseudo_perplexity: f64,
}

/// Corpus pseudo-perplexity: `exp(-(sum of PLL) / (sum of scored tokens))`.
pub fn corpus_pseudo_perplexity(scores: &[PllScore]) -> f64 {
    let n: usize = scores.iter().map(|s| s.tokens).sum();
    let pll: f64 = scores.iter().map(|s| s.pll).sum();
    if n == 0 {
        1.0
    } else {
        (-pll / n as f64).exp()
    }
}

/// Scores each sequence (with its `[CLS]`/`[SEP]`); tokens in `skip` (the special
/// tokens) are context only, never scored. A sequence of n scored tokens becomes n
/// masked copies; copies of all sequences are batched together, `batch_size` rows at a
/// time, sorted by length, and only the one masked row per copy is projected.
pub fn pseudo_log_likelihood(
    model: &BertForPreTraining,
    seqs: &[Vec<u32>],
    mask_id: u32,
    pad: u32,
    skip: &[u32],
    batch_size: usize,
    device: Device,
) -> Result<Vec<PllScore>> {
    let _span = tracing::info_span!("pll", n = seqs.len(), batch = batch_size).entered();
    check_lengths(seqs, model.config().max_position_embeddings)?;
    // One row per (sequence, position) to score.
    let copies: Vec<(usize, usize)> = seqs
        .iter()
        .enumerate()
        .flat_map(|(s, toks)| {
            toks.iter()
                .enumerate()
                .filter(|(_, t)| !skip.contains(t))
                .map(move |(p, _)| (s, p))
        })
        .collect();
    let lengths: Vec<usize> = copies.iter().map(|&(s, _)| seqs[s].len()).collect();
    let mut sums = vec![0f64; seqs.len()];
    let mut counts = vec![0usize; seqs.len()];
    let _g = tch::no_grad_guard();
    for batch in plan_batches(&lengths, batch_size, true)? {
        let masked: Vec<Vec<u32>> = batch
            .iter()
            .map(|&c| {
                let (s, p) = copies[c];
                let mut row = seqs[s].clone();
                row[p] = mask_id;
                row
            })
            .collect();
        let rows: Vec<&[u32]> = masked.iter().map(Vec::as_slice).collect();
        let padded = pad_batch(&rows, pad, device)?;
        let flat: Vec<i64> = batch
            .iter()
            .enumerate()
            .map(|(r, &c)| r as i64 * padded.len + copies[c].1 as i64)
            .collect();
        let targets: Vec<i64> = batch
            .iter()
            .map(|&c| i64::from(seqs[copies[c].0][copies[c].1]))
            .collect();
        let positions = Tensor::f_from_slice(&flat)?.f_to_device(device)?;
        let logits = model
            .forward_t(&padded.input, Some(&positions), false)?
            .mlm_logits;
        let logp = logits.f_log_softmax(-1, Kind::Float)?;
        let target = Tensor::f_from_slice(&targets)?
            .f_to_device(device)?
            .f_unsqueeze(1)?;
        let picked = Vec::<f32>::try_from(
            logp.f_gather(1, &target, false)?
                .f_to_device(Device::Cpu)?
                .f_flatten(0, -1)?,
        )?;
        for (k, &c) in batch.iter().enumerate() {
            sums[copies[c].0] += f64::from(picked[k]);
            counts[copies[c].0] += 1;
        }
    }
    Ok(sums
        .into_iter()
        .zip(counts)
        .map(|(pll, tokens)| PllScore {
            pll,
            tokens,
            pseudo_perplexity: if tokens == 0 {
                1.0
            } else {
                (-pll / tokens as f64).exp()
            },
        })
        .collect())
}

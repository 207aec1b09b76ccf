//! Pseudo-log-likelihood scoring (Salazar et al. 2020, "Masked Language Model Scoring"):
//! mask each token in turn, sum the log-probabilities of the true tokens.

use cloze_core::SpecialTokens;
use tch::{Device, Tensor};

use crate::batch::{check_batch_size, check_lengths, check_token_id, pad_batch, plan_batches};
use crate::{MaskedLm, ModelTokenizer, Result};

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

/// What [`pseudo_log_likelihood`] needs besides the model and the sequences.
///
/// Build it with [`PllOptions::new`] (or from a tokenizer or the special tokens)
/// and change the public fields; [`pseudo_log_likelihood`] checks it against the
/// model with [`PllOptions::validate`] before any work.
#[derive(Debug, Clone, PartialEq)]
pub struct PllOptions {
    /// The `[MASK]` id put in place of each scored token.
    pub mask_id: u32,
    /// The `[PAD]` id that shorter rows of a batch are padded with.
    pub pad_id: u32,
    /// Ids that are context only, never scored: the special tokens.
    pub skip: Vec<u32>,
    /// Masked copies per forward pass, at least 1.
    pub batch_size: usize,
    /// Where the model's weights are; inputs are built there.
    pub device: Device,
}

impl PllOptions {
    /// The given special ids, skipping nothing, with 64 masked copies per forward
    /// pass, on the CPU.
    pub fn new(mask_id: u32, pad_id: u32) -> Self {
        PllOptions {
            mask_id,
            pad_id,
            skip: Vec::new(),
            batch_size: 64,
            device: Device::Cpu,
        }
    }

    /// [`Self::new`] with a checkpoint tokenizer's `[MASK]` and `[PAD]`, skipping
    /// `[CLS]`, `[SEP]` and `[PAD]`; a tokenizer without `[MASK]` is
    /// [`crate::Error::MissingToken`].
    pub fn for_tokenizer(tok: &ModelTokenizer) -> Result<Self> {
        Ok(PllOptions {
            skip: vec![tok.cls, tok.sep, tok.pad],
            ..Self::new(tok.mask_id()?, tok.pad)
        })
    }

    /// [`Self::new`] with a vocabulary's `[MASK]` and `[PAD]`, skipping `[CLS]`,
    /// `[SEP]` and `[PAD]` as [`Self::for_tokenizer`] does. Other special tokens
    /// (`[UNK]`) stay scored, as in Salazar et al.
    pub fn from_special_tokens(specials: &SpecialTokens) -> Self {
        PllOptions {
            skip: vec![specials.cls, specials.sep, specials.pad],
            ..Self::new(specials.mask, specials.pad)
        }
    }

    /// Checks the options against a model's vocabulary of `vocab_size` ids:
    /// `batch_size` at least 1 and both special ids inside the vocabulary;
    /// otherwise [`crate::Error::InvalidOption`] naming the field.
    pub fn validate(&self, vocab_size: i64) -> Result<()> {
        check_batch_size(self.batch_size)?;
        check_token_id("mask_id", self.mask_id, vocab_size)?;
        check_token_id("pad_id", self.pad_id, vocab_size)
    }
}

/// Scores each sequence (with its `[CLS]`/`[SEP]`); tokens in `opts.skip` are
/// context only, never scored. A sequence of n scored tokens becomes n masked
/// copies; copies of all sequences are batched together, `opts.batch_size` rows at
/// a time, sorted by length, and only the one masked row per copy is projected
/// ([`MaskedLm::log_probs_at`]).
///
/// Errors: invalid options ([`PllOptions::validate`]) or a sequence longer than the
/// model's positions ([`crate::Error::TooLong`]), before any forward pass.
pub fn pseudo_log_likelihood(
    model: &dyn MaskedLm,
    seqs: &[Vec<u32>],
    opts: &PllOptions,
) -> Result<Vec<PllScore>> {
    let _span = tracing::info_span!("pll", n = seqs.len(), batch = opts.batch_size).entered();
    opts.validate(model.vocab_size())?;
    check_lengths(seqs, model.max_positions())?;
    let (mask_id, skip, device) = (opts.mask_id, &opts.skip, opts.device);
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
    for batch in plan_batches(&lengths, opts.batch_size, true)? {
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
        let padded = pad_batch(&rows, opts.pad_id, device)?;
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
        let logp = model.log_probs_at(&padded.input, &positions)?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn special_tokens_give_the_ids_and_skip_the_frame() {
        let o = PllOptions::from_special_tokens(&SpecialTokens::bert_base_uncased());
        assert_eq!((o.mask_id, o.pad_id, o.batch_size), (103, 0, 64));
        assert_eq!(o.skip, vec![101, 102, 0]);
        assert!(o.validate(30522).is_ok());
        assert!(PllOptions::new(4, 0).skip.is_empty());
    }

    #[test]
    fn options_out_of_their_domain_are_named() {
        let name = |o: &PllOptions| match o.validate(96) {
            Err(Error::InvalidOption { name, .. }) => name,
            other => panic!("expected an invalid option, got {other:?}"),
        };
        let zero = PllOptions {
            batch_size: 0,
            ..PllOptions::new(4, 0)
        };
        assert_eq!(name(&zero), "batch_size");
        assert_eq!(name(&PllOptions::new(96, 0)), "mask_id");
        assert_eq!(name(&PllOptions::new(4, 96)), "pad_id");
        assert!(PllOptions::new(95, 0).validate(96).is_ok());
    }

    #[test]
    fn corpus_pseudo_perplexity_weights_by_tokens() {
        let score = |pll: f64, tokens| PllScore {
            pll,
            tokens,
            pseudo_perplexity: 0.0,
        };
        let s = [score(-2.0, 1), score(-6.0, 3)];
        assert!((corpus_pseudo_perplexity(&s) - 2f64.exp()).abs() < 1e-12);
        assert_eq!(corpus_pseudo_perplexity(&[score(0.0, 0)]), 1.0);
    }
}

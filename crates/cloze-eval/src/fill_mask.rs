//! Fill-mask: the top-k vocabulary entries, with probabilities, at every `[MASK]`.

use cloze_core::SpecialTokens;
use tch::{Device, Tensor};

use crate::batch::{check_batch_size, check_lengths, check_token_id, pad_batch, plan_batches};
use crate::{Error, MaskedLm, ModelTokenizer, Result};

/// One candidate for a masked position.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    /// Vocabulary id.
    pub token_id: u32,
    /// Softmax probability over the vocabulary.
    pub probability: f64,
}

/// The predictions at one `[MASK]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MaskPrediction {
    /// Index of the masked token in the sequence (`[CLS]` is 0).
    pub position: usize,
    /// The `top_k` candidates, most probable first.
    pub candidates: Vec<Candidate>,
}

/// What [`fill_mask`] needs besides the model and the sequences.
///
/// Build it with [`FillMaskOptions::new`] (or from a tokenizer or the special
/// tokens) and change the public fields; [`fill_mask`] checks it against the model
/// with [`FillMaskOptions::validate`] before any work.
#[derive(Debug, Clone, PartialEq)]
pub struct FillMaskOptions {
    /// The `[MASK]` id: every occurrence is predicted.
    pub mask_id: u32,
    /// The `[PAD]` id that shorter sequences of a batch are padded with.
    pub pad_id: u32,
    /// Candidates per mask, in `1..=vocab_size`.
    pub top_k: usize,
    /// Sequences per forward pass, at least 1.
    pub batch_size: usize,
    /// Where the model's weights are; inputs are built there.
    pub device: Device,
}

impl FillMaskOptions {
    /// The given special ids with 5 candidates per mask, 32 sequences per
    /// forward pass, on the CPU.
    pub fn new(mask_id: u32, pad_id: u32) -> Self {
        FillMaskOptions {
            mask_id,
            pad_id,
            top_k: 5,
            batch_size: 32,
            device: Device::Cpu,
        }
    }

    /// [`Self::new`] with the `[MASK]` and `[PAD]` ids of a checkpoint's tokenizer;
    /// a tokenizer without `[MASK]` is [`Error::MissingToken`].
    pub fn for_tokenizer(tok: &ModelTokenizer) -> Result<Self> {
        Ok(Self::new(tok.mask_id()?, tok.pad))
    }

    /// [`Self::new`] with the `[MASK]` and `[PAD]` ids of a vocabulary's special
    /// tokens (as prepared data and the masking layer know them).
    pub fn from_special_tokens(specials: &SpecialTokens) -> Self {
        Self::new(specials.mask, specials.pad)
    }

    /// Checks the options against a model's vocabulary of `vocab_size` ids:
    /// `top_k` in `1..=vocab_size`, `batch_size` at least 1, and both special ids
    /// inside the vocabulary; otherwise [`Error::InvalidOption`] naming the field.
    pub fn validate(&self, vocab_size: i64) -> Result<()> {
        if self.top_k == 0 || i64::try_from(self.top_k).map_or(true, |k| k > vocab_size) {
            return Err(Error::InvalidOption {
                name: "top_k",
                reason: format!("{} is not in 1..={vocab_size}", self.top_k),
            });
        }
        check_batch_size(self.batch_size)?;
        check_token_id("mask_id", self.mask_id, vocab_size)?;
        check_token_id("pad_id", self.pad_id, vocab_size)
    }
}

/// Predicts every `opts.mask_id` position of every sequence (which carry their
/// `[CLS]`/`[SEP]`), returning each sequence's masks in order. Several masks per
/// sequence are predicted independently in one pass, as BERT's MLM objective does;
/// only the masked rows are projected onto the vocabulary. Probabilities are the
/// exponentials of [`MaskedLm::log_probs_at`].
///
/// Errors: invalid options ([`FillMaskOptions::validate`]), a sequence longer than
/// the model's positions ([`Error::TooLong`]) or without a mask ([`Error::NoMask`]),
/// all before any forward pass.
pub fn fill_mask(
    model: &dyn MaskedLm,
    seqs: &[Vec<u32>],
    opts: &FillMaskOptions,
) -> Result<Vec<Vec<MaskPrediction>>> {
    let top_k = opts.top_k;
    let _span = tracing::info_span!("fill_mask", n = seqs.len(), top_k).entered();
    opts.validate(model.vocab_size())?;
    check_lengths(seqs, model.max_positions())?;
    for (index, s) in seqs.iter().enumerate() {
        if !s.contains(&opts.mask_id) {
            return Err(Error::NoMask { index });
        }
    }
    let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
    let _g = tch::no_grad_guard();
    let mut out: Vec<Vec<MaskPrediction>> = vec![Vec::new(); seqs.len()];
    for batch in plan_batches(&lengths, opts.batch_size, true)? {
        let rows: Vec<&[u32]> = batch.iter().map(|&i| seqs[i].as_slice()).collect();
        let p = pad_batch(&rows, opts.pad_id, opts.device)?;
        let mut flat = Vec::new();
        let mut owners = Vec::new();
        for (row, r) in rows.iter().enumerate() {
            for (pos, &t) in r.iter().enumerate() {
                if t == opts.mask_id {
                    flat.push(row as i64 * p.len + pos as i64);
                    owners.push((batch[row], pos));
                }
            }
        }
        let positions = Tensor::f_from_slice(&flat)?.f_to_device(opts.device)?;
        let log_probs = model.log_probs_at(&p.input, &positions)?;
        // The exponential is monotonic, so the top k of the log-probabilities are
        // the top k of the probabilities; only those k values are exponentiated.
        let (vals, idx) = log_probs.f_topk(top_k as i64, -1, true, true)?;
        let vals = vals.f_exp()?;
        let vals = Vec::<f32>::try_from(vals.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
        let idx = Vec::<i64>::try_from(idx.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
        for (k, &(seq, pos)) in owners.iter().enumerate() {
            let candidates = (0..top_k)
                .map(|j| Candidate {
                    token_id: idx[k * top_k + j] as u32,
                    probability: f64::from(vals[k * top_k + j]),
                })
                .collect();
            out[seq].push(MaskPrediction {
                position: pos,
                candidates,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn invalid(opts: &FillMaskOptions, vocab: i64) -> &'static str {
        match opts.validate(vocab) {
            Err(Error::InvalidOption { name, .. }) => name,
            other => panic!("expected an invalid option, got {other:?}"),
        }
    }

    #[test]
    fn options_default_to_five_candidates_on_the_cpu() {
        let o = FillMaskOptions::new(4, 0);
        assert_eq!((o.mask_id, o.pad_id, o.top_k, o.batch_size), (4, 0, 5, 32));
        assert_eq!(o.device, Device::Cpu);
        assert!(o.validate(96).is_ok());
        let bert = FillMaskOptions::from_special_tokens(&SpecialTokens::bert_base_uncased());
        assert_eq!((bert.mask_id, bert.pad_id), (103, 0));
    }

    #[test]
    fn options_out_of_their_domain_are_named() {
        let base = FillMaskOptions::new(4, 0);
        let top = |top_k| FillMaskOptions {
            top_k,
            ..base.clone()
        };
        assert_eq!(invalid(&top(0), 96), "top_k");
        assert_eq!(invalid(&top(97), 96), "top_k");
        assert!(
            top(96).validate(96).is_ok(),
            "the whole vocabulary is allowed"
        );
        let batch = FillMaskOptions {
            batch_size: 0,
            ..base.clone()
        };
        assert_eq!(invalid(&batch, 96), "batch_size");
        assert_eq!(invalid(&FillMaskOptions::new(96, 0), 96), "mask_id");
        assert_eq!(invalid(&FillMaskOptions::new(4, 200), 96), "pad_id");
    }
}

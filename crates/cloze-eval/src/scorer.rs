//! The one interface inference needs from a masked language model: log-probabilities
//! over the vocabulary at chosen positions of a padded batch.
//!
//! [`crate::fill_mask()`] and [`crate::pseudo_log_likelihood()`] are written against
//! [`MaskedLm`] alone, so a new masked-LM head (or a model from another crate) gets
//! both by implementing three methods. [`BertForPreTraining`] implements it here.

use cloze_models::{BertForPreTraining, MlmInput};
use tch::{Kind, Tensor};

use crate::Result;

/// A masked language model as inference sees it.
///
/// The trait is object safe: the functions of this crate take `&dyn MaskedLm`, so
/// a caller can pick the model at run time.
///
/// ```
/// use std::path::Path;
/// use cloze_eval::MaskedLm;
/// use cloze_models::{load_pretrained, MlmInput};
/// use tch::{Device, Tensor};
///
/// let dir = Path::new("../cloze-models/tests/fixtures/hf-tiny-bert");
/// let loaded = load_pretrained(dir, Device::Cpu)?;
/// let model: &dyn MaskedLm = &loaded.model;
/// // One row `[CLS] w w [MASK] w [SEP]`; the mask is at flat position 0 * 6 + 3.
/// let input = MlmInput::new(Tensor::from_slice(&[2i64, 17, 23, 4, 31, 3]).unsqueeze(0));
/// let log_probs = model.log_probs_at(&input, &Tensor::from_slice(&[3i64]))?;
/// assert_eq!(log_probs.size(), [1, model.vocab_size()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait MaskedLm {
    /// Vocabulary size `V`: the width of the rows [`Self::log_probs_at`] returns.
    fn vocab_size(&self) -> i64;

    /// The longest sequence, special tokens included, the model accepts (BERT's
    /// `max_position_embeddings`).
    fn max_positions(&self) -> i64;

    /// `[N, V]` float32 natural-log probabilities over the vocabulary at the `N`
    /// flat positions `row * L + pos` (1-D int64, on the input's device) of the
    /// padded input `[B, L]`, computed in eval mode (no dropout) and without
    /// gradients. Row `i` of the result belongs to `flat_positions[i]`.
    fn log_probs_at(&self, input: &MlmInput, flat_positions: &Tensor) -> Result<Tensor>;
}

impl MaskedLm for BertForPreTraining {
    fn vocab_size(&self) -> i64 {
        self.config().vocab_size
    }

    fn max_positions(&self) -> i64 {
        self.config().max_position_embeddings
    }

    fn log_probs_at(&self, input: &MlmInput, flat_positions: &Tensor) -> Result<Tensor> {
        // Inference never needs a graph; the guard nests, so a caller's own guard is
        // unaffected.
        let _g = tch::no_grad_guard();
        // Passing the positions makes the model project only those rows onto the
        // vocabulary, which is most of the head's cost on long inputs.
        let logits = self
            .forward_t(input, Some(flat_positions), false)?
            .mlm_logits;
        // Log-softmax in float32 whatever the model's dtype, so half-precision
        // weights do not lose the small probabilities scoring sums.
        Ok(logits.f_log_softmax(-1, Kind::Float)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_fixture as fixture;
    use cloze_models::load_pretrained;
    use tch::Device;

    fn ids(rows: &[&[i64]]) -> Tensor {
        let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
    }

    #[test]
    fn bert_reports_its_config_through_the_trait() {
        let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
        let model: &dyn MaskedLm = &p.model;
        assert_eq!(model.vocab_size(), 96);
        assert_eq!(model.max_positions(), 40);
    }

    #[test]
    fn log_prob_rows_are_distributions_in_position_order() {
        let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
        let model: &dyn MaskedLm = &p.model;
        let input = MlmInput::new(ids(&[&[2, 17, 23, 4, 31, 3], &[2, 4, 40, 41, 4, 3]]));
        // Out of order on purpose: row i must belong to position i of the list.
        let positions = Tensor::from_slice(&[10i64, 3, 7]);
        let lp = model.log_probs_at(&input, &positions).unwrap();
        assert_eq!(lp.size(), [3, 96]);
        assert_eq!(lp.kind(), Kind::Float);
        assert!(!lp.requires_grad());
        let sums = Vec::<f64>::try_from(lp.exp().sum_dim_intlist(-1, false, Kind::Double)).unwrap();
        for s in sums {
            assert!((s - 1.0).abs() < 1e-5, "row sums to {s}");
        }
        let logits = tch::no_grad(|| p.model.forward_t(&input, None, false))
            .unwrap()
            .mlm_logits
            .view([12, 96]);
        for (row, flat) in [10i64, 3, 7].into_iter().enumerate() {
            let want = logits.get(flat).log_softmax(-1, Kind::Float);
            let diff = (lp.get(row as i64) - want).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "row {row} (position {flat}) differs by {diff}");
        }
    }

    #[test]
    fn a_bf16_model_returns_fp32_log_probs_near_fp32() {
        let fp32 = load_pretrained(&fixture(), Device::Cpu).unwrap();
        let mut bf16 = load_pretrained(&fixture(), Device::Cpu).unwrap();
        cloze_models::Precision::Bf16
            .cast_weights(&mut bf16.vs)
            .unwrap();
        let input = MlmInput::new(ids(&[&[2, 17, 33, 4, 90, 51, 3], &[2, 5, 6, 7, 8, 4, 3]]));
        let positions = Tensor::from_slice(&[3i64, 12, 8]);
        let want = fp32.model.log_probs_at(&input, &positions).unwrap();
        let got = bf16.model.log_probs_at(&input, &positions).unwrap();
        assert_eq!(got.kind(), Kind::Float);
        let sums =
            Vec::<f64>::try_from(got.exp().sum_dim_intlist(-1, false, Kind::Double)).unwrap();
        for s in sums {
            assert!((s - 1.0).abs() < 1e-5, "row sums to {s}");
        }
        // bf16 keeps 8 significant bits: the log-probabilities move, but by
        // thousandths of a nat on this fixture, not more than 0.015.
        let diff = (&got - &want).abs().max().double_value(&[]);
        assert!(
            diff > 0.0 && diff < 0.015,
            "bf16 log-probabilities differ by {diff}"
        );
    }

    #[test]
    fn positions_outside_the_batch_are_an_error() {
        let p = load_pretrained(&fixture(), Device::Cpu).unwrap();
        let input = MlmInput::new(ids(&[&[2, 17, 4, 3]]));
        let err = p
            .model
            .log_probs_at(&input, &Tensor::from_slice(&[4i64]))
            .unwrap_err();
        assert!(
            matches!(
                err,
                crate::Error::Model(cloze_models::Error::MaskedPositions { .. })
            ),
            "{err:?}"
        );
    }
}

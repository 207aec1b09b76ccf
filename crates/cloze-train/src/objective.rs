//! Training objectives as weighted sums of losses.
//!
//! An [`Objective`] turns a model's outputs into one scalar to differentiate and
//! named parts to log. MLM, MLM+NSP and MLM+SOP are built in; UniLM-v2's
//! pseudo-masked LM or MLMLM's link-prediction loss implement the same trait.

use tch::{Kind, Reduction, Tensor};

use crate::batch::{ModelOutput, TensorBatch};
use crate::config::{ObjectiveConfig, ObjectiveKind};
use crate::error::{Error, Result};

/// The losses of one batch.
#[derive(Debug)]
pub struct Losses {
    /// The weighted sum to back-propagate.
    pub total: Tensor,
    /// Unweighted components by name (`mlm`, `nsp`, `sop`), for logging.
    pub parts: Vec<(&'static str, Tensor)>,
}

/// A training objective.
pub trait Objective {
    /// Short name for logs (`mlm`, `mlm+nsp`, ...).
    fn name(&self) -> &'static str;
    /// Whether batches must carry pair labels.
    fn needs_pair_labels(&self) -> bool;
    /// Computes the losses of one forward pass.
    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> Result<Losses>;
}

/// Mean cross-entropy of the masked positions.
pub fn mlm_loss(out: &ModelOutput, batch: &TensorBatch) -> Result<Tensor> {
    Ok(out.mlm_logits.f_cross_entropy_loss::<Tensor>(
        &batch.targets,
        None,
        Reduction::Mean,
        -100,
        0.0,
    )?)
}

/// Masked language modelling alone.
#[derive(Debug, Clone)]
pub struct Mlm {
    /// Loss weight.
    pub weight: f64,
}

impl Objective for Mlm {
    fn name(&self) -> &'static str {
        "mlm"
    }
    fn needs_pair_labels(&self) -> bool {
        false
    }
    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> Result<Losses> {
        let mlm = mlm_loss(out, batch)?;
        let total = if self.weight == 1.0 {
            mlm.shallow_clone()
        } else {
            mlm.f_mul_scalar(self.weight)?
        };
        Ok(Losses {
            total,
            parts: vec![("mlm", mlm)],
        })
    }
}

/// MLM plus a two-class sentence-pair loss (NSP or SOP).
#[derive(Debug, Clone)]
pub struct MlmPair {
    /// `nsp` or `sop`.
    pub pair_name: &'static str,
    /// Weight of the MLM loss.
    pub mlm_weight: f64,
    /// Weight of the pair loss.
    pub pair_weight: f64,
}

impl Objective for MlmPair {
    fn name(&self) -> &'static str {
        if self.pair_name == "nsp" {
            "mlm+nsp"
        } else {
            "mlm+sop"
        }
    }
    fn needs_pair_labels(&self) -> bool {
        true
    }
    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> Result<Losses> {
        let mlm = mlm_loss(out, batch)?;
        let (logits, labels) = match (&out.pair_logits, &batch.pair_labels) {
            (Some(l), Some(y)) => (l, y),
            (None, _) => {
                return Err(Error::DataMismatch(format!(
                    "objective {} needs a model with a pair head",
                    self.name()
                )))
            }
            (_, None) => {
                return Err(Error::DataMismatch(format!(
                    "objective {} needs instances with {} labels; prepare the data with pairs",
                    self.name(),
                    self.pair_name
                )))
            }
        };
        let pair =
            logits.f_cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)?;
        let total = mlm
            .f_mul_scalar(self.mlm_weight)?
            .f_add(&pair.f_mul_scalar(self.pair_weight)?)?;
        Ok(Losses {
            total,
            parts: vec![("mlm", mlm), (self.pair_name, pair)],
        })
    }
}

/// Builds the configured objective.
pub fn from_config(cfg: &ObjectiveConfig) -> Box<dyn Objective> {
    match cfg.kind {
        ObjectiveKind::Mlm => Box::new(Mlm {
            weight: cfg.mlm_weight,
        }),
        ObjectiveKind::MlmNsp => Box::new(MlmPair {
            pair_name: "nsp",
            mlm_weight: cfg.mlm_weight,
            pair_weight: cfg.pair_weight,
        }),
        ObjectiveKind::MlmSop => Box::new(MlmPair {
            pair_name: "sop",
            mlm_weight: cfg.mlm_weight,
            pair_weight: cfg.pair_weight,
        }),
    }
}

/// Float value of a scalar tensor.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.f_to_kind(Kind::Double)?.f_double_value(&[])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn batch(pairs: bool) -> TensorBatch {
        let d = Device::Cpu;
        TensorBatch {
            input_ids: Tensor::zeros([2, 4], (Kind::Int64, d)),
            token_type_ids: Tensor::zeros([2, 4], (Kind::Int64, d)),
            attention_mask: Tensor::ones([2, 4], (Kind::Int64, d)),
            masked_positions: Tensor::from_slice(&[1i64, 5]),
            targets: Tensor::from_slice(&[2i64, 0]),
            pair_labels: pairs.then(|| Tensor::from_slice(&[1i64, 0])),
            batch_size: 2,
            seq_len: 4,
            real_tokens: 8,
        }
    }

    #[test]
    fn weighted_pair_loss_adds_up() -> Result<()> {
        let out = ModelOutput {
            mlm_logits: Tensor::from_slice(&[0f32, 0., 0., 1., 2., 3.]).view([2, 3]),
            pair_logits: Some(Tensor::from_slice(&[0f32, 0., 0., 0.]).view([2, 2])),
        };
        let b = batch(true);
        let obj = MlmPair {
            pair_name: "sop",
            mlm_weight: 1.0,
            pair_weight: 0.5,
        };
        let l = obj.losses(&out, &b)?;
        let mlm = scalar(&l.parts[0].1)?;
        let pair = scalar(&l.parts[1].1)?;
        // Row 0: uniform over 3 -> ln 3; row 1: target 0 of logits (1,2,3).
        let expected_mlm = (3f64.ln() + (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 1.0) / 2.0;
        assert!((mlm - expected_mlm).abs() < 1e-5);
        assert!((pair - 2f64.ln()).abs() < 1e-6);
        assert!((scalar(&l.total)? - (mlm + 0.5 * pair)).abs() < 1e-5);
        assert!(Mlm { weight: 1.0 }.losses(&out, &b)?.parts.len() == 1);
        Ok(())
    }

    #[test]
    fn pair_objective_without_labels_is_a_clear_error() {
        let out = ModelOutput {
            mlm_logits: Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
            pair_logits: None,
        };
        let obj = from_config(&ObjectiveConfig {
            kind: ObjectiveKind::MlmNsp,
            mlm_weight: 1.0,
            pair_weight: 1.0,
        });
        assert!(obj.losses(&out, &batch(false)).is_err());
    }
}

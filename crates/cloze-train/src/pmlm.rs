//! UniLM-v2's pseudo-masked language model objective (Bao et al. 2020,
//! equation 7): `L = l_AE * L_AE + l_PAR * L_PAR`.
//!
//! - `L_AE`, the autoencoding loss: cross-entropy of the original tokens at
//!   the `[M]` positions of the context (the batch's masked-LM targets), each
//!   predicted from the context alone.
//! - `L_PAR`, the partially autoregressive loss: cross-entropy of the
//!   original tokens at the appended `[P]` positions (the batch's pseudo
//!   targets), each predicted from the context and the originals of earlier
//!   factorization steps.
//!
//! Both are means over their own positions; the paper weighs them 1 and 1
//! (`[objective] mlm_weight` is `l_AE`, `par_weight` is `l_PAR`). The
//! batches come from the pseudo-masked layout of `cloze-mask`
//! (`[collate] layout = "pseudo_masked"`); the softmax is the model's MLM
//! head, tied to the word embeddings, for both parts.
//!
//! Reported under `mlm` (the AE loss and accuracy, comparable with held-out
//! MLM evaluation, which scores the same `[M]` positions) and `par`.

use cloze_core::Report;
use tch::{Reduction, Tensor};

use crate::batch::{ModelOutput, TensorBatch};
use crate::config::ObjectiveConfig;
use crate::error::{Error, Result};
use crate::objective::{accuracy, labelled, mlm_loss, scalar, LossPart, Losses, Objective};

/// The pseudo-masked LM objective; see the module docs.
#[derive(Debug, Clone)]
pub struct Pmlm {
    /// `l_AE`, the weight of the autoencoding loss.
    pub ae_weight: f64,
    /// `l_PAR`, the weight of the partially autoregressive loss.
    pub par_weight: f64,
}

impl Pmlm {
    /// The weights of `cfg` (`mlm_weight` and `par_weight`).
    pub fn new(cfg: &ObjectiveConfig) -> Self {
        Self {
            ae_weight: cfg.mlm_weight,
            par_weight: cfg.par_weight,
        }
    }
}

impl Objective for Pmlm {
    fn name(&self) -> &str {
        "pmlm"
    }

    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> Result<Losses> {
        let (Some(logits), Some(pseudo)) = (&out.pseudo_logits, &batch.pseudo) else {
            return Err(Error::DataMismatch(
                "objective pmlm needs pseudo-masked batches ([masking.collate] layout = \
                 \"pseudo_masked\", as in configs/masking/unilmv2.toml) and a model that \
                 predicts their [P] positions"
                    .to_owned(),
            ));
        };
        let ae = mlm_loss(out, batch)?;
        let par = logits.f_cross_entropy_loss::<Tensor>(
            &pseudo.targets,
            None,
            Reduction::Mean,
            -100,
            0.0,
        )?;
        let parts = vec![
            LossPart {
                term: ae.f_mul_scalar(self.ae_weight)?,
                count: labelled(&batch.targets)?,
            },
            LossPart {
                term: par.f_mul_scalar(self.par_weight)?,
                count: labelled(&pseudo.targets)?,
            },
        ];
        let report = Report::new()
            .loss("mlm", scalar(&ae)?)
            .accuracy("mlm", accuracy(&out.mlm_logits, &batch.targets)?)
            .count("mlm", batch.num_masked().max(0) as u64)
            .loss("par", scalar(&par)?)
            .accuracy("par", accuracy(logits, &pseudo.targets)?)
            .count("par", pseudo.targets.size()[0].max(0) as u64);
        Losses::of_parts(parts, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::PositionTargets;
    use tch::{Device, Kind};

    fn ce(logits: &Tensor, targets: &Tensor) -> f64 {
        logits
            .cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, -100, 0.0)
            .double_value(&[])
    }

    #[test]
    fn the_loss_is_the_weighted_sum_of_ae_and_par_and_both_are_reported() -> Result<()> {
        tch::manual_seed(3);
        let mut batch = TensorBatch::synthetic(2, 16, 50, 0.3, 1)?;
        let n = batch.num_masked();
        let opts = (Kind::Float, Device::Cpu);
        let mlm = Tensor::f_randn([n, 50], opts)?;
        let par = Tensor::f_randn([3, 50], opts)?;
        let par_targets = Tensor::from_slice(&[4i64, 9, 30]);
        batch.pseudo = Some(PositionTargets {
            positions: Tensor::from_slice(&[16i64, 17, 18]),
            targets: par_targets.shallow_clone(),
        });
        let mut out = ModelOutput::new(mlm.shallow_clone());
        out.pseudo_logits = Some(par.shallow_clone());
        let obj = Pmlm {
            ae_weight: 0.5,
            par_weight: 2.0,
        };
        let l = obj.losses(&out, &batch)?;
        let (ae, pr) = (ce(&mlm, &batch.targets), ce(&par, &par_targets));
        assert!((scalar(&l.total)? - (0.5 * ae + 2.0 * pr)).abs() < 1e-5);
        assert!((l.report.losses["mlm"] - ae).abs() < 1e-6);
        assert!((l.report.losses["par"] - pr).abs() < 1e-6);
        assert_eq!(l.report.counts["par"], 3);
        assert_eq!(l.report.counts["mlm"], n as u64);
        assert!(l.report.accuracies.contains_key("par"));
        // Without [P] predictions the objective refuses, naming the layout.
        let plain = ModelOutput::new(mlm);
        let err = obj.losses(&plain, &batch).expect_err("no pseudo logits");
        assert!(err.to_string().contains("pseudo_masked"), "{err}");
        Ok(())
    }
}

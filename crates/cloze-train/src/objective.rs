//! Training objectives: weighted sums of losses, and what each one reports.
//!
//! An [`Objective`] turns a model's outputs into one scalar to differentiate
//! and a [`Report`] of named, typed values (its losses and accuracies) that
//! the trainer averages into `metrics.jsonl` and the progress line without
//! knowing the names. MLM, MLM+NSP and MLM+SOP are built in; each objective
//! is one entry of [`OBJECTIVES`], the single place a config's
//! `[objective] kind` is looked up. A new objective (UniLM-v2's pseudo-masked
//! LM, MLMLM's link prediction) is a module implementing [`Objective`] plus
//! one entry there; a downstream crate can also hand one to
//! [`crate::Trainer::with_objective`] without registering it.

use cloze_core::Report;
use tch::{Kind, Reduction, Tensor};

use crate::batch::{ModelOutput, TensorBatch};
use crate::config::ObjectiveConfig;
use crate::error::{Error, Result};

/// The losses of one batch.
#[derive(Debug)]
pub struct Losses {
    /// The weighted sum to back-propagate.
    pub total: Tensor,
    /// Unweighted component losses and accuracies by name, for logging.
    pub report: Report,
    /// `total` as its terms, each a weighted mean over its own count of
    /// targets (masked tokens, pairs, pseudo tokens). Data-parallel training
    /// weighs each rank's term by its share of the targets of all ranks, so
    /// W ranks with batch B compute the loss of one batch W*B. Empty for an
    /// objective that does not say ([`Losses::opaque`]): ranks then average
    /// their losses, each counting the same.
    pub parts: Vec<LossPart>,
}

/// One term of a total loss: a (weighted) mean over `count` targets.
#[derive(Debug)]
pub struct LossPart {
    /// The weighted mean.
    pub term: Tensor,
    /// The targets it averages over.
    pub count: f64,
}

impl Losses {
    /// A total that is the sum of `parts` (added in order).
    pub fn of_parts(parts: Vec<LossPart>, report: Report) -> Result<Self> {
        let mut iter = parts.iter();
        let Some(first) = iter.next() else {
            return Err(Error::DataMismatch("an objective returned no loss".into()));
        };
        let mut total = first.term.shallow_clone();
        for p in iter {
            total = total.f_add(&p.term)?;
        }
        Ok(Self {
            total,
            report,
            parts,
        })
    }

    /// One mean over `count` targets.
    pub fn mean(total: Tensor, count: f64, report: Report) -> Self {
        let parts = vec![LossPart {
            term: total.shallow_clone(),
            count,
        }];
        Self {
            total,
            report,
            parts,
        }
    }

    /// A total whose counts the objective does not give.
    pub fn opaque(total: Tensor, report: Report) -> Self {
        Self {
            total,
            report,
            parts: Vec::new(),
        }
    }
}

/// Targets of `labels` that a cross-entropy with `ignore_index = -100`
/// averages over.
pub fn labelled(labels: &Tensor) -> Result<f64> {
    if labels.numel() == 0 {
        return Ok(0.0);
    }
    let n = tch::no_grad(|| labels.f_ne(-100)?.f_sum(Kind::Int64)?.f_int64_value(&[]))?;
    Ok(n as f64)
}

/// Held-out cross-entropy (no smoothing) and accuracy of one group of
/// position targets over fixed batches, reported under `name` with its
/// count: what [`crate::s2s::Seq2SeqEval`] and
/// [`crate::dialogue::DialogueEval`] compute. `pick` returns a batch's
/// `(logits, targets)` of that group, `None` for a batch without it.
pub fn held_out_positions(
    batches: &[cloze_mask::Batch],
    model: &dyn crate::batch::PretrainModel,
    device: tch::Device,
    name: &str,
    pick: fn(&ModelOutput, &TensorBatch) -> Option<(Tensor, Tensor)>,
) -> Result<Report> {
    let _guard = tch::no_grad_guard();
    let (mut nll, mut hits, mut n) = (0.0, 0.0, 0u64);
    for b in batches {
        let tb = TensorBatch::from_batch(b, device)?;
        let out = model.forward(&tb, false)?;
        let Some((logits, targets)) = pick(&out, &tb) else {
            continue;
        };
        let count = targets.size()[0].max(0) as u64;
        let loss =
            logits.f_cross_entropy_loss::<Tensor>(&targets, None, Reduction::Sum, -100, 0.0)?;
        nll += scalar(&loss)?;
        hits += accuracy(&logits, &targets)? * count as f64;
        n += count;
    }
    let d = n.max(1) as f64;
    Ok(Report::new()
        .loss(name, nll / d)
        .accuracy(name, hits / d)
        .count(name, n))
}

/// A training objective.
pub trait Objective {
    /// Short name for logs (`mlm`, `mlm_sop`, ...).
    fn name(&self) -> &str;
    /// Computes the losses of one forward pass.
    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> Result<Losses>;
}

/// A built-in objective: its config name, what the model needs, and how to build it.
#[derive(Debug, Clone, Copy)]
pub struct ObjectiveEntry {
    /// The `[objective] kind` that selects it.
    pub name: &'static str,
    /// One line for `--help` texts and errors.
    pub about: &'static str,
    /// The sentence-pair task it trains (`nsp`, `sop`), if any: the model
    /// then needs the pair head (and its pooler), and the held-out pair
    /// accuracy is reported under this name.
    pub pair_task: Option<&'static str>,
    /// Builds it from the `[objective]` section.
    pub build: fn(&ObjectiveConfig) -> Box<dyn Objective>,
}

/// The registry of objectives a config can name.
pub const OBJECTIVES: &[ObjectiveEntry] = &[
    ObjectiveEntry {
        name: "mlm",
        about: "masked language modelling only",
        pair_task: None,
        build: |c| {
            Box::new(Mlm {
                weight: c.mlm_weight,
            })
        },
    },
    ObjectiveEntry {
        name: "mlm_nsp",
        about: "MLM plus next-sentence prediction (original BERT)",
        pair_task: Some("nsp"),
        build: |c| Box::new(MlmPair::new("nsp", c)),
    },
    ObjectiveEntry {
        name: "mlm_sop",
        about: "MLM plus sentence-order prediction (ALBERT)",
        pair_task: Some("sop"),
        build: |c| Box::new(MlmPair::new("sop", c)),
    },
    ObjectiveEntry {
        name: "pmlm",
        about:
            "UniLM-v2 pseudo-masked LM: autoencoding at [M] plus partially autoregressive at [P]",
        pair_task: None,
        build: |c| Box::new(crate::pmlm::Pmlm::new(c)),
    },
    ObjectiveEntry {
        name: "seq2seq",
        about: "UniLM-v2 sequence-to-sequence fine-tuning: the target tokens at their pseudo tokens, label smoothing 0.1",
        pair_task: None,
        build: |_| Box::new(crate::s2s::Seq2SeqLoss::default()),
    },
    ObjectiveEntry {
        name: "dialogue",
        about: "PLATO-style dialogue: the response's next tokens given the context (plus mlm_weight x context MLM and pair_weight x response coherence when the rows have them)",
        pair_task: None,
        build: |c| {
            Box::new(crate::dialogue::DialogueLoss {
                mlm_weight: c.mlm_weight,
                coherence_weight: c.pair_weight,
            })
        },
    },
    ObjectiveEntry {
        name: "cuglm",
        about: "CugLM code pretraining: identifier MLM + next-code-segment prediction + left-to-right LM + token-category head",
        pair_task: None,
        build: |c| Box::new(crate::code::CodeLoss::from_config(c)),
    },
    ObjectiveEntry {
        name: "cuglm_complete",
        about: "CugLM completion fine-tuning: type-then-token left-to-right LM + token-category head",
        pair_task: None,
        build: |c| Box::new(crate::code::CodeLoss::from_config(c)),
    },
    ObjectiveEntry {
        name: "sequence_classification",
        about: "fine-tuning: cross-entropy of one class per example",
        pair_task: None,
        build: |_| Box::new(crate::finetune::ClassLoss::Sequence),
    },
    ObjectiveEntry {
        name: "token_classification",
        about: "fine-tuning: cross-entropy of one class per labelled token",
        pair_task: None,
        build: |_| Box::new(crate::finetune::ClassLoss::Token),
    },
];

/// The registry entry called `name`, or an error listing the known names.
pub fn entry(name: &str) -> Result<&'static ObjectiveEntry> {
    OBJECTIVES
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Error::InvalidConfig {
            field: "objective.kind",
            problem: format!(
                "unknown objective {name:?}; known: {}",
                OBJECTIVES
                    .iter()
                    .map(|e| format!("{} ({})", e.name, e.about))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// Builds the configured objective.
pub fn from_config(cfg: &ObjectiveConfig) -> Result<Box<dyn Objective>> {
    Ok((entry(&cfg.kind)?.build)(cfg))
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

/// Fraction of rows of `logits` whose arg-max is the label (no gradient).
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let n = labels.size().first().copied().unwrap_or(0);
    if n == 0 {
        return Ok(0.0);
    }
    let hits = tch::no_grad(|| -> Result<i64> {
        Ok(logits
            .f_argmax(-1, false)?
            .f_eq_tensor(labels)?
            .f_sum(Kind::Int64)?
            .f_int64_value(&[])?)
    })?;
    Ok(hits as f64 / n as f64)
}

/// The masked-LM part of a report: loss, accuracy and count under `mlm`.
fn mlm_report(mlm: &Tensor, out: &ModelOutput, batch: &TensorBatch) -> Result<Report> {
    Ok(Report::new()
        .loss("mlm", scalar(mlm)?)
        .accuracy("mlm", accuracy(&out.mlm_logits, &batch.targets)?)
        .count("mlm", batch.num_masked().max(0) as u64))
}

/// Masked language modelling alone.
#[derive(Debug, Clone)]
pub struct Mlm {
    /// Loss weight.
    pub weight: f64,
}

impl Objective for Mlm {
    fn name(&self) -> &str {
        "mlm"
    }
    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> Result<Losses> {
        let mlm = mlm_loss(out, batch)?;
        let total = if self.weight == 1.0 {
            mlm.shallow_clone()
        } else {
            mlm.f_mul_scalar(self.weight)?
        };
        Ok(Losses::mean(
            total,
            labelled(&batch.targets)?,
            mlm_report(&mlm, out, batch)?,
        ))
    }
}

/// MLM plus a two-class sentence-pair loss (NSP or SOP).
#[derive(Debug, Clone)]
pub struct MlmPair {
    /// `nsp` or `sop`: the name the pair loss is reported under.
    pub pair_name: &'static str,
    /// Weight of the MLM loss.
    pub mlm_weight: f64,
    /// Weight of the pair loss.
    pub pair_weight: f64,
}

impl MlmPair {
    /// The pair task `pair_name` with the weights of `cfg`.
    pub fn new(pair_name: &'static str, cfg: &ObjectiveConfig) -> Self {
        Self {
            pair_name,
            mlm_weight: cfg.mlm_weight,
            pair_weight: cfg.pair_weight,
        }
    }
}

impl Objective for MlmPair {
    fn name(&self) -> &str {
        if self.pair_name == "nsp" {
            "mlm_nsp"
        } else {
            "mlm_sop"
        }
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
        let parts = vec![
            LossPart {
                term: mlm.f_mul_scalar(self.mlm_weight)?,
                count: labelled(&batch.targets)?,
            },
            LossPart {
                term: pair.f_mul_scalar(self.pair_weight)?,
                count: labelled(labels)?,
            },
        ];
        let report = mlm_report(&mlm, out, batch)?
            .loss(self.pair_name, scalar(&pair)?)
            .accuracy(self.pair_name, accuracy(logits, labels)?);
        Losses::of_parts(parts, report)
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
            position_ids: None,
            attention_3d: None,
            masked_positions: Tensor::from_slice(&[1i64, 5]),
            targets: Tensor::from_slice(&[2i64, 0]),
            pseudo: None,
            response: None,
            role_ids: None,
            pair_labels: pairs.then(|| Tensor::from_slice(&[1i64, 0])),
            class_labels: None,
            token_labels: None,
            batch_size: 2,
            seq_len: 4,
            real_tokens: 8,
        }
    }

    #[test]
    fn weighted_pair_loss_adds_up() -> Result<()> {
        let out = ModelOutput::new(Tensor::from_slice(&[0f32, 0., 0., 1., 2., 3.]).view([2, 3]))
            .with_pair_logits(Some(Tensor::from_slice(&[0f32, 0., 0., 0.]).view([2, 2])));
        let b = batch(true);
        let obj = MlmPair {
            pair_name: "sop",
            mlm_weight: 1.0,
            pair_weight: 0.5,
        };
        let l = obj.losses(&out, &b)?;
        let mlm = l.report.losses["mlm"];
        let pair = l.report.losses["sop"];
        // Row 0: uniform over 3 -> ln 3; row 1: target 0 of logits (1,2,3).
        let expected_mlm = (3f64.ln() + (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 1.0) / 2.0;
        assert!((mlm - expected_mlm).abs() < 1e-5);
        assert!((pair - 2f64.ln()).abs() < 1e-6);
        assert!((scalar(&l.total)? - (mlm + 0.5 * pair)).abs() < 1e-5);
        // Arg-max picks id 0 in row 0 (target 2) and id 2 in row 1 (target 0):
        // both wrong; with those targets swapped, both right.
        assert_eq!(l.report.accuracies["mlm"], 0.0);
        assert_eq!(
            accuracy(&out.mlm_logits, &Tensor::from_slice(&[0i64, 2]))?,
            1.0
        );
        assert_eq!(l.report.counts["mlm"], 2);
        let only = Mlm { weight: 1.0 }.losses(&out, &b)?.report;
        assert_eq!(only.losses.keys().collect::<Vec<_>>(), ["mlm"]);
        Ok(())
    }

    #[test]
    fn pair_objective_without_labels_is_a_clear_error() {
        let out = ModelOutput::new(Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)));
        let obj = from_config(&ObjectiveConfig {
            kind: "mlm_nsp".into(),
            ..ObjectiveConfig::default()
        });
        let Ok(obj) = obj else {
            panic!("mlm_nsp is registered")
        };
        assert!(obj.losses(&out, &batch(false)).is_err());
        let unknown = from_config(&ObjectiveConfig {
            kind: "mlm_xyz".into(),
            ..ObjectiveConfig::default()
        });
        let Err(e) = unknown else {
            panic!("an unknown objective is refused")
        };
        assert!(e.to_string().contains("mlm_sop"), "{e}");
    }
}

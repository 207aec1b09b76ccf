//! Code-aware pretraining and completion fine-tuning on the trainer, after
//! CugLM (Liu et al., ASE 2020, arXiv 2012.14631): rows from
//! `cloze_mask::CodeBuilder`, one BERT encoder with the MLM head, the pair
//! head (next-code-segment prediction) and the token-category head
//! ([`cloze_models::CategoryHead`]).
//!
//! - [`CodeLoss`] (`[objective] kind = "cuglm"`): the weighted sum of the
//!   identifier MLM (`mlm_weight`), NCP (`pair_weight`), the left-to-right
//!   LM (`lm_weight`) and the category head (`category_weight`), each a mean
//!   over its own targets and reported under `mlm`, `ncp`, `lm` and
//!   `category` with its accuracy. A part whose rows or labels a batch lacks
//!   (an ablation) is left out; a zero weight leaves it out too.
//! - [`CodePretrainer`]: the model behind [`PretrainModel`]. With `typed`
//!   (CugLM's completion fine-tuning) the left-to-right prediction is
//!   type-then-token: the category head reads position `k`'s state, the
//!   category (the true one while training, the predicted one otherwise) is
//!   embedded and added to the state, and the vocabulary projection reads
//!   the sum.
//! - [`CodeSource`] and [`CodeEval`]: the training batches and the held-out
//!   batches (laid out once under a fixed seed).

use std::path::Path;

use cloze_core::Report;
use cloze_mask::{Batch, CodeBuilder};
use cloze_models::{BertConfig, BertForPreTraining, CategoryHead, Precision};
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

use crate::batch::{ModelOutput, PretrainModel, TensorBatch};
use crate::bert::model_input;
use crate::data::epoch_order;
use crate::error::{Error, Result};
use crate::objective::{labelled, scalar, LossPart, Losses, Objective};
use crate::trainer::{DataSource, HeldOut};

/// CugLM's multi-task loss; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodeLoss {
    /// Weight of the identifier MLM.
    pub mlm_weight: f64,
    /// Weight of next-code-segment prediction.
    pub ncp_weight: f64,
    /// Weight of the left-to-right LM.
    pub lm_weight: f64,
    /// Weight of the token-category head.
    pub category_weight: f64,
}

impl Default for CodeLoss {
    fn default() -> Self {
        Self {
            mlm_weight: 1.0,
            ncp_weight: 1.0,
            lm_weight: 1.0,
            category_weight: 1.0,
        }
    }
}

impl CodeLoss {
    /// The weights of an `[objective]` section (`pair_weight` is NCP's).
    pub fn from_config(c: &crate::config::ObjectiveConfig) -> Self {
        Self {
            mlm_weight: c.mlm_weight,
            ncp_weight: c.pair_weight,
            lm_weight: c.lm_weight,
            category_weight: c.category_weight,
        }
    }
}

/// Accuracy over the labels that are not `-100`.
pub fn labelled_accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let n = labelled(labels)?;
    if n == 0.0 {
        return Ok(0.0);
    }
    let hits = tch::no_grad(|| -> Result<i64> {
        Ok(logits
            .f_argmax(-1, false)?
            .f_eq_tensor(labels)?
            .f_logical_and(&labels.f_ne(-100)?)?
            .f_sum(Kind::Int64)?
            .f_int64_value(&[])?)
    })?;
    Ok(hits as f64 / n)
}

/// One weighted cross-entropy part over the labels that are not `-100`, or
/// `None` when there are none or the weight is 0.
fn part(
    name: &str,
    logits: &Tensor,
    labels: &Tensor,
    weight: f64,
    report: &mut Report,
) -> Result<Option<LossPart>> {
    let count = labelled(labels)?;
    if count == 0.0 || weight == 0.0 {
        return Ok(None);
    }
    let loss = logits.f_cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)?;
    *report = std::mem::take(report)
        .loss(name, scalar(&loss)?)
        .accuracy(name, labelled_accuracy(logits, labels)?)
        .count(name, count as u64);
    Ok(Some(LossPart {
        term: loss.f_mul_scalar(weight)?,
        count,
    }))
}

impl Objective for CodeLoss {
    fn name(&self) -> &str {
        "cuglm"
    }

    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> Result<Losses> {
        let mut report = Report::new();
        let mut parts = Vec::new();
        if batch.num_masked() > 0 {
            parts.extend(part(
                "mlm",
                &out.mlm_logits,
                &batch.targets,
                self.mlm_weight,
                &mut report,
            )?);
        }
        if let (Some(logits), Some(labels)) = (&out.pair_logits, &batch.pair_labels) {
            parts.extend(part("ncp", logits, labels, self.ncp_weight, &mut report)?);
        }
        if let (Some(logits), Some(r)) = (&out.response_logits, &batch.response) {
            parts.extend(part("lm", logits, &r.targets, self.lm_weight, &mut report)?);
        }
        if let (Some(logits), Some(labels)) = (&out.token_logits, &batch.token_labels) {
            let c = logits.size().last().copied().unwrap_or(0);
            parts.extend(part(
                "category",
                &logits.f_reshape([-1, c])?,
                &labels.f_reshape([-1])?,
                self.category_weight,
                &mut report,
            )?);
        }
        if parts.is_empty() {
            return Err(Error::DataMismatch(
                "objective cuglm found nothing to train in the batch: it needs rows from \
                 cloze_mask::CodeBuilder with masked identifiers, NCP labels or \
                 left-to-right targets, and a non-zero weight for them"
                    .to_owned(),
            ));
        }
        Losses::of_parts(parts, report)
    }
}

/// A code model: BERT with the MLM, pair and token-category heads.
#[derive(Debug)]
pub struct CodePretrainer {
    /// The variables (HuggingFace names; the category head under `cls.category`).
    pub vs: VarStore,
    /// Encoder, MLM head and pair head (HF's `BertForPreTraining`).
    pub model: BertForPreTraining,
    /// The category head.
    pub category: CategoryHead,
    /// The HF configuration, with `code_category_size`.
    pub config: BertConfig,
    /// The precision of the forward pass.
    pub precision: Precision,
    /// Type-then-token left-to-right prediction (CugLM's completion head).
    pub typed: bool,
}

impl CodePretrainer {
    /// A freshly initialised model, seeded by `seed`. `config` must have a
    /// positive `code_category_size`. Its `architectures` is set to
    /// `BertForPreTraining`, the class transformers loads it as (ignoring the
    /// category head).
    pub fn new(mut config: BertConfig, seed: u64, device: Device) -> Result<Self> {
        config.architectures = Some(vec!["BertForPreTraining".into()]);
        tch::manual_seed(cloze_core::rng::torch_seed(
            seed,
            cloze_core::rng::Stream::ModelInit,
            0,
        ));
        let vs = VarStore::new(device);
        let model = BertForPreTraining::new(&vs.root(), &config)?;
        let category = CategoryHead::new(&vs.root(), &config)?;
        Ok(Self {
            vs,
            model,
            category,
            config,
            precision: Precision::Fp32,
            typed: false,
        })
    }

    /// A model saved by [`PretrainModel::save`] (every weight must be there).
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let config = cloze_models::hf::read_config(dir)?;
        let m = Self::new(config, 0, device)?;
        m.load_weights(dir)?;
        Ok(m)
    }

    /// Switches type-then-token prediction on or off.
    pub fn with_typed(mut self, typed: bool) -> Self {
        self.typed = typed;
        self
    }

    /// Next-token probabilities `[N, V]` at the left-to-right targets of
    /// `batch` (its `response` positions), inference only. Untyped: the
    /// softmax of the vocabulary projection. Typed: the token marginal over
    /// categories, `sum_c P(c) P(token | c)`, every category's conditioned
    /// prediction weighted by the category head's probability (evaluation
    /// instead conditions on the most likely category, as CugLM does).
    pub fn next_token_probs(&self, batch: &TensorBatch) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let input = model_input(batch);
        let response = batch.response.as_ref().ok_or(Error::ObjectiveInput {
            objective: "next-token probabilities",
            problem: "the batch has no left-to-right rows",
        })?;
        cloze_models::autocast(self.precision, || {
            let h = self
                .model
                .bert()
                .forward_t(&input, false)?
                .last_hidden_state;
            let flat = h.f_reshape([-1, self.config.hidden_size])?;
            let states = flat.f_index_select(0, &response.positions)?;
            if !self.typed {
                return Ok(self.model.mlm_logits(&states)?.f_softmax(-1, Kind::Float)?);
            }
            let c = self.category.num_categories();
            let cat = self
                .category
                .forward(&h)?
                .f_reshape([-1, c])?
                .f_index_select(0, &response.positions)?
                .f_softmax(-1, Kind::Float)?;
            let n = states.size()[0];
            let mut total: Option<Tensor> = None;
            for k in 0..c {
                let ks = Tensor::f_full([n], k, (Kind::Int64, states.device()))?;
                let given = self
                    .model
                    .mlm_logits(&self.category.condition(&states, &ks)?)?
                    .f_softmax(-1, Kind::Float)?;
                let part = given.f_mul(&cat.f_narrow(1, k, 1)?)?;
                total = Some(match total {
                    Some(t) => t.f_add(&part)?,
                    None => part,
                });
            }
            total.ok_or(Error::ObjectiveInput {
                objective: "next-token probabilities",
                problem: "the category head has no categories",
            })
        })
    }

    /// Hidden states `[N, H]` at `positions` conditioned on their category:
    /// `gold` where it is a category (training), else the head's prediction.
    fn conditioned(
        &self,
        hidden: &Tensor,
        category_logits: &Tensor,
        positions: &Tensor,
        gold: Option<&Tensor>,
    ) -> Result<Tensor> {
        let c = self.category.num_categories();
        let predicted = category_logits
            .f_reshape([-1, c])?
            .f_index_select(0, positions)?
            .f_argmax(-1, false)?;
        let cats = match gold {
            Some(g) => {
                let g = g.f_reshape([-1])?.f_index_select(0, positions)?;
                g.f_where_self(&g.f_ne(-100)?, &predicted)?
            }
            None => predicted,
        };
        Ok(self.category.condition(hidden, &cats)?)
    }
}

impl PretrainModel for CodePretrainer {
    fn forward(&self, batch: &TensorBatch, train: bool) -> Result<ModelOutput> {
        let input = model_input(batch);
        cloze_models::autocast(self.precision, || {
            let out = self.model.bert().forward_t(&input, train)?;
            let h = out.last_hidden_state;
            let width = self.config.hidden_size;
            let flat = h.f_reshape([-1, width])?;
            let mlm = self
                .model
                .mlm_logits(&flat.f_index_select(0, &batch.masked_positions)?)?;
            let pair = match (self.model.pair_head(), &out.pooler_output) {
                (Some(head), Some(pooled)) => Some(head.forward(pooled)?),
                _ => None,
            };
            let categories = self.category.forward(&h)?;
            let response = match &batch.response {
                Some(r) => {
                    let mut states = flat.f_index_select(0, &r.positions)?;
                    if self.typed {
                        let gold = if train {
                            batch.token_labels.as_ref()
                        } else {
                            None
                        };
                        states = self.conditioned(&states, &categories, &r.positions, gold)?;
                    }
                    Some(self.model.mlm_logits(&states)?)
                }
                None => None,
            };
            let mut output = ModelOutput::new(mlm).with_pair_logits(pair);
            output.response_logits = response;
            output.token_logits = Some(categories);
            Ok(output)
        })
    }

    fn save(&self, dir: &Path) -> Result<()> {
        cloze_models::save_pretrained(&self.vs, &self.config, dir)?;
        Ok(())
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn load_weights(&self, dir: &Path) -> Result<()> {
        let report = cloze_models::hf::load_weights(&self.vs, dir)?;
        if !report.missing.is_empty() || !report.unexpected.is_empty() {
            return Err(Error::CorruptCheckpoint {
                path: dir.to_owned(),
                problem: format!("weights do not match the model: {report}"),
                newest_intact: None,
            });
        }
        Ok(())
    }
}

/// A code corpus as training batches: example `i` of epoch `e` is laid out
/// from the stream `(seed, e, i)`, so a resumed run sees the same rows.
#[derive(Debug)]
pub struct CodeSource {
    builder: CodeBuilder,
    seed: u64,
}

impl CodeSource {
    /// Batches of `builder`'s examples under `seed`.
    pub fn new(builder: CodeBuilder, seed: u64) -> Self {
        Self { builder, seed }
    }

    /// The builder.
    pub fn builder(&self) -> &CodeBuilder {
        &self.builder
    }
}

impl DataSource for CodeSource {
    fn num_examples(&self) -> usize {
        self.builder.len()
    }

    fn epoch_order(&self, epoch: u64) -> Result<Vec<usize>> {
        Ok(epoch_order(self.builder.len(), self.seed, epoch))
    }

    fn batch(&self, epoch: u64, _first_index: u64, indices: &[usize]) -> Result<Batch> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.builder.len()) {
            return Err(Error::DataMismatch(format!(
                "example {bad} of a code corpus of {} examples",
                self.builder.len()
            )));
        }
        let picked: Vec<u64> = indices.iter().map(|&i| i as u64).collect();
        Ok(self.builder.batch(&picked, self.seed, epoch))
    }
}

/// Held-out code as fixed batches (every example once, epoch 0 under a
/// fixed seed); reports the losses and accuracies of [`CodeLoss`], the
/// left-to-right loss choosing the best checkpoint when the LM is trained,
/// else the MLM loss.
#[derive(Debug)]
pub struct CodeEval {
    batches: Vec<Batch>,
    objective: CodeLoss,
    primary: &'static str,
}

impl CodeEval {
    /// `builder`'s examples, `batch_size` a batch, laid out under `seed`;
    /// at most `max_examples` of them (0: all), spread evenly over the corpus.
    pub fn new(
        builder: &CodeBuilder,
        objective: CodeLoss,
        seed: u64,
        batch_size: usize,
        max_examples: usize,
    ) -> Self {
        let n = builder.len() as u64;
        let k = if max_examples == 0 {
            n
        } else {
            n.min(max_examples as u64)
        };
        let picked: Vec<u64> = (0..k).map(|i| i * n / k.max(1)).collect();
        let batches = picked
            .chunks(batch_size.max(1))
            .map(|indices| builder.batch(indices, seed, 0))
            .collect();
        let cfg = builder.config();
        let primary = if cfg.lm {
            "lm"
        } else if cfg.mlm {
            "mlm"
        } else {
            "ncp"
        };
        Self {
            batches,
            objective,
            primary,
        }
    }
}

impl HeldOut for CodeEval {
    fn evaluate(&self, model: &dyn PretrainModel, device: Device) -> Result<Report> {
        let _guard = tch::no_grad_guard();
        // Each part is averaged over all its targets: sums of
        // loss x count and accuracy x count, divided at the end.
        let mut sums: Vec<(String, f64, f64, f64)> = Vec::new();
        for b in &self.batches {
            let tb = TensorBatch::from_batch(b, device)?;
            let out = model.forward(&tb, false)?;
            let losses = self.objective.losses(&out, &tb)?;
            for name in ["mlm", "ncp", "lm", "category"] {
                let r = &losses.report;
                let (Some(&loss), Some(&count)) = (r.losses.get(name), r.counts.get(name)) else {
                    continue;
                };
                let acc = r.accuracies.get(name).copied().unwrap_or(0.0);
                let n = count as f64;
                match sums.iter_mut().find(|s| s.0 == name) {
                    Some(s) => {
                        s.1 += loss * n;
                        s.2 += acc * n;
                        s.3 += n;
                    }
                    None => sums.push((name.to_owned(), loss * n, acc * n, n)),
                }
            }
        }
        let mut report = Report::new();
        for (name, loss, acc, n) in sums {
            let d = n.max(1.0);
            report = report
                .loss(&name, loss / d)
                .accuracy(&name, acc / d)
                .count(&name, n as u64);
        }
        Ok(report)
    }

    fn primary_loss(&self) -> &str {
        self.primary
    }
}

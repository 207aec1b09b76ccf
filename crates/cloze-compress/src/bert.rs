//! One-shot pruning of a BERT encoder, layer by layer, as SparseGPT prunes a
//! transformer: the calibration batches are embedded once; for each encoder
//! layer in order, the inputs of its six linear layers are gathered from the
//! batches as they come out of the layers already pruned, each linear layer
//! is pruned from its Hessian, and the pruned layer is run to give the next
//! layer its inputs. Query, key and value share one input and so one
//! Hessian. Embeddings, the pooler and the heads stay dense.

use std::collections::HashMap;

use cloze_models::{BertModel, LinearSite, MlmInput};
use tch::{Kind, Tensor};

use crate::{magnitude, sparsegpt, Error, Hessian, PruneConfig, Result};

/// How weights are chosen for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The smallest magnitudes of each matrix (no calibration).
    Magnitude,
    /// SparseGPT: Hessian-aware selection and reconstruction of the rest.
    SparseGpt,
}

/// What happened to one linear layer.
#[derive(Debug, Clone)]
pub struct LayerReport {
    /// Encoder layer index.
    pub layer: usize,
    /// Which linear layer.
    pub site: LinearSite,
    /// Zero weights after pruning.
    pub zeros: i64,
    /// Weights in the matrix.
    pub numel: i64,
    /// trace((W - W') H (W - W')^T) on the calibration inputs (0 without them).
    pub error: f64,
}

/// Calibration inputs and the rows of their flattened tokens that are real
/// (not padding), which alone enter the Hessians.
struct Batch {
    state: cloze_models::LayerwiseState,
    real: Option<Tensor>,
}

/// Prunes every linear layer of `bert`'s encoder in place. `calibration`
/// (required by SparseGPT, unused by magnitude pruning) is a list of
/// batches; `on_layer(done, total)` is called after each encoder layer.
pub fn prune_encoder(
    bert: &BertModel,
    calibration: &[MlmInput],
    method: Method,
    cfg: &PruneConfig,
    on_layer: &mut dyn FnMut(usize, usize),
) -> Result<Vec<LayerReport>> {
    cfg.validate()?;
    if method == Method::SparseGpt && calibration.is_empty() {
        return Err(Error::NoCalibration);
    }
    let mut batches = match method {
        Method::Magnitude => Vec::new(),
        Method::SparseGpt => calibration
            .iter()
            .map(|input| {
                let real = match &input.attention_mask {
                    Some(m) => Some(m.f_reshape([-1])?.f_nonzero()?.f_reshape([-1])?),
                    None => None,
                };
                Ok(Batch {
                    state: bert.layerwise_start(input)?,
                    real,
                })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let layers = bert.num_layers();
    let mut reports = Vec::new();
    for layer in 0..layers {
        let _span = tracing::info_span!("prune_layer", layer).entered();
        let hessians = gather_hessians(bert, layer, &batches)?;
        for site in LinearSite::ALL {
            let linear = bert.layer_linear(layer, site)?;
            let weight = linear.weight();
            let (pruned, error) = match method {
                Method::Magnitude => (magnitude(weight, cfg)?, 0.0),
                Method::SparseGpt => {
                    let h = hessians
                        .get(&hessian_site(site))
                        .ok_or(Error::NoCalibration)?
                        .matrix();
                    let out = sparsegpt(weight, h, cfg)?;
                    let err = crate::reconstruction_error(weight, &out.weight, h)?;
                    (out, err)
                }
            };
            tch::no_grad(|| -> Result<()> {
                let mut w = weight.shallow_clone();
                w.f_copy_(&pruned.weight)?;
                Ok(())
            })?;
            let zeros = weight.f_eq(0.0)?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
            reports.push(LayerReport {
                layer,
                site,
                zeros,
                numel: weight.numel() as i64,
                error,
            });
        }
        // The next layer sees the outputs of this one as pruned.
        tch::no_grad(|| -> Result<()> {
            for b in &mut batches {
                b.state = bert.layerwise_step(layer, &b.state, &mut |_, _| Ok(()))?;
            }
            Ok(())
        })?;
        on_layer(layer + 1, layers);
    }
    Ok(reports)
}

/// The site whose Hessian `site` uses (query, key and value share an input).
fn hessian_site(site: LinearSite) -> LinearSite {
    match site {
        LinearSite::Key | LinearSite::Value => LinearSite::Query,
        other => other,
    }
}

/// The Hessians of layer `layer`'s linear inputs over every batch (none
/// without calibration).
fn gather_hessians(
    bert: &BertModel,
    layer: usize,
    batches: &[Batch],
) -> Result<HashMap<LinearSite, Hessian>> {
    let mut hessians: HashMap<LinearSite, Hessian> = HashMap::new();
    tch::no_grad(|| -> Result<()> {
        for b in batches {
            let mut failure: Option<Error> = None;
            bert.layerwise_step(layer, &b.state, &mut |site, x| {
                if hessian_site(site) != site || failure.is_some() {
                    return Ok(());
                }
                let cols = x.size().last().copied().unwrap_or(0);
                let rows = match x.f_reshape([-1, cols]) {
                    Ok(r) => r,
                    Err(e) => {
                        failure = Some(e.into());
                        return Ok(());
                    }
                };
                let rows = match &b.real {
                    Some(idx) => match rows.f_index_select(0, idx) {
                        Ok(r) => r,
                        Err(e) => {
                            failure = Some(e.into());
                            return Ok(());
                        }
                    },
                    None => rows,
                };
                let h = match hessians.entry(site) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        match Hessian::new(cols, rows.device()) {
                            Ok(h) => e.insert(h),
                            Err(err) => {
                                failure = Some(err);
                                return Ok(());
                            }
                        }
                    }
                };
                if let Err(e) = h.add_batch(&rows) {
                    failure = Some(e);
                }
                Ok(())
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(())
    })?;
    Ok(hessians)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cloze_models::BertConfig;
    use tch::nn::VarStore;
    use tch::Device;

    fn config() -> BertConfig {
        BertConfig {
            hidden_size: 32,
            num_attention_heads: 2,
            intermediate_size: 64,
            num_hidden_layers: 2,
            vocab_size: 60,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            ..BertConfig::default()
        }
    }

    /// A model with large random weights (an untrained N(0, 0.02) encoder is
    /// nearly the identity through its residuals) and a copy of it.
    fn models() -> ((VarStore, BertModel), (VarStore, BertModel)) {
        tch::manual_seed(5);
        let a = VarStore::new(Device::Cpu);
        let ma = BertModel::new(&a.root(), &config()).unwrap();
        tch::no_grad(|| {
            for (_, mut t) in a.variables() {
                let r = t.randn_like().f_mul_scalar(0.3).unwrap();
                t.copy_(&r);
            }
        });
        let mut b = VarStore::new(Device::Cpu);
        let mb = BertModel::new(&b.root(), &config()).unwrap();
        b.copy(&a).unwrap();
        ((a, ma), (b, mb))
    }

    fn inputs(n: usize) -> Vec<MlmInput> {
        (0..n)
            .map(|_| MlmInput::new(Tensor::randint(60, [4, 12], (Kind::Int64, Device::Cpu))))
            .collect()
    }

    fn output(bert: &BertModel, inputs: &[MlmInput]) -> Tensor {
        let outs: Vec<Tensor> = inputs
            .iter()
            .map(|x| bert.forward_t(x, false).unwrap().last_hidden_state)
            .collect();
        Tensor::cat(&outs, 0)
    }

    #[test]
    fn sparsegpt_keeps_the_encoder_closer_to_dense_than_magnitude() {
        let ((_va, sparse), (_vb, mag)) = models();
        let calibration = inputs(8);
        let dense = output(&sparse, &calibration);
        let cfg = PruneConfig {
            block_size: 16,
            ..PruneConfig::default()
        };
        let mut layers_done = Vec::new();
        let reports = prune_encoder(
            &sparse,
            &calibration,
            Method::SparseGpt,
            &cfg,
            &mut |d, t| layers_done.push((d, t)),
        )
        .unwrap();
        prune_encoder(&mag, &[], Method::Magnitude, &cfg, &mut |_, _| {}).unwrap();
        assert_eq!(layers_done, vec![(1, 2), (2, 2)]);
        assert_eq!(reports.len(), 12);
        for r in &reports {
            assert_eq!(r.zeros * 2, r.numel, "{:?} of layer {}", r.site, r.layer);
            assert!(r.error > 0.0);
        }
        let err = |m: &BertModel| {
            (output(m, &calibration) - &dense)
                .square()
                .sum(Kind::Double)
                .double_value(&[])
        };
        let (es, em) = (err(&sparse), err(&mag));
        assert!(es < em, "SparseGPT {es} vs magnitude {em}");
    }

    #[test]
    fn sparsegpt_without_calibration_is_an_error() {
        let ((_va, m), _) = models();
        let e = prune_encoder(
            &m,
            &[],
            Method::SparseGpt,
            &PruneConfig::default(),
            &mut |_, _| {},
        );
        assert!(matches!(e, Err(Error::NoCalibration)));
    }
}

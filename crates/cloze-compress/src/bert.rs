//! One-shot compression of a BERT encoder, layer by layer, as SparseGPT and
//! GPTQ treat a transformer: the calibration batches are embedded once; for
//! each encoder layer in order, the inputs of its six linear layers are
//! gathered from the batches as they come out of the layers already changed,
//! each matrix is pruned or quantised from its Hessian, and the changed
//! layer is run to give the next layer its inputs. Query, key and value
//! share one input and so one Hessian. Embeddings, the pooler and the heads
//! stay as they are.

use std::collections::HashMap;

use cloze_models::{BertModel, LinearSite, MlmInput};
use tch::{Kind, Tensor};

use crate::{
    gptq, magnitude, rtn, sparsegpt, Error, Hessian, PruneConfig, QuantConfig, Quantized, Result,
};

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
    let calibrated = method == Method::SparseGpt;
    encoder_pass(
        bert,
        calibration,
        calibrated,
        on_layer,
        &mut |_, _, weight, h| {
            Ok(match (method, h) {
                (Method::SparseGpt, Some(h)) => sparsegpt(weight, h, cfg)?.weight,
                (Method::SparseGpt, None) => return Err(Error::NoCalibration),
                (Method::Magnitude, _) => magnitude(weight, cfg)?.weight,
            })
        },
    )
}

/// How weights are rounded to the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantMethod {
    /// Round to nearest, group by group (no calibration).
    Rtn,
    /// GPTQ: column by column with the rounding error spread over the rest.
    Gptq,
}

/// One quantised matrix: its encoder layer, its place and its codes.
pub type QuantizedLayer = (usize, LinearSite, Quantized);

/// Quantises every linear layer of `bert`'s encoder: each weight is
/// replaced in place by what its codes stand for (so later layers calibrate
/// on the quantised outputs, as GPTQ does), and the codes are returned by
/// `(layer, site)`.
pub fn quantize_encoder(
    bert: &BertModel,
    calibration: &[MlmInput],
    method: QuantMethod,
    cfg: &QuantConfig,
    on_layer: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<LayerReport>, Vec<QuantizedLayer>)> {
    cfg.validate()?;
    let mut codes = Vec::new();
    let reports = encoder_pass(
        bert,
        calibration,
        method == QuantMethod::Gptq,
        on_layer,
        &mut |layer, site, weight, h| {
            let q = match (method, h) {
                (QuantMethod::Gptq, Some(h)) => gptq(weight, h, cfg)?,
                (QuantMethod::Gptq, None) => return Err(Error::NoCalibration),
                (QuantMethod::Rtn, _) => rtn(weight, cfg)?,
            };
            let w = q.dequantize()?;
            codes.push((layer, site, q));
            Ok(w)
        },
    )?;
    Ok((reports, codes))
}

/// One change of a matrix: `(layer, site, weight, its input Hessian when
/// calibrated)` to the new weight.
type Change<'a> = dyn FnMut(usize, LinearSite, &Tensor, Option<&Tensor>) -> Result<Tensor> + 'a;

/// The layer-by-layer pass: for each encoder layer, the Hessians of its
/// linear inputs (when `calibrated`), `change` applied to its six matrices
/// in place, and the changed layer run for the next layer's inputs.
fn encoder_pass(
    bert: &BertModel,
    calibration: &[MlmInput],
    calibrated: bool,
    on_layer: &mut dyn FnMut(usize, usize),
    change: &mut Change<'_>,
) -> Result<Vec<LayerReport>> {
    if calibrated && calibration.is_empty() {
        return Err(Error::NoCalibration);
    }
    let mut batches = if calibrated {
        start_batches(bert, calibration)?
    } else {
        Vec::new()
    };
    let layers = bert.num_layers();
    let mut reports = Vec::new();
    for layer in 0..layers {
        let _span = tracing::info_span!("compress_layer", layer).entered();
        let hessians = gather_hessians(bert, layer, &batches)?;
        for site in LinearSite::ALL {
            let weight = bert.layer_linear(layer, site)?.weight();
            let h = hessians.get(&hessian_site(site)).map(Hessian::matrix);
            let new = change(layer, site, weight, h)?;
            let error = match h {
                Some(h) => crate::reconstruction_error(weight, &new, h)?,
                None => 0.0,
            };
            tch::no_grad(|| -> Result<()> {
                let mut w = weight.shallow_clone();
                w.f_copy_(&new)?;
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
        // The next layer sees the outputs of this one as changed.
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

/// The calibration batches embedded, with their real rows.
fn start_batches(bert: &BertModel, calibration: &[MlmInput]) -> Result<Vec<Batch>> {
    calibration
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
        .collect()
}

/// The flattened rows `[N, in]` of a linear's input `x` `[B, L, in]` that
/// belong to real tokens.
fn real_rows(x: &Tensor, real: Option<&Tensor>) -> Result<Tensor> {
    let cols = x.size().last().copied().unwrap_or(0);
    let rows = x.f_reshape([-1, cols])?;
    Ok(match real {
        Some(idx) => rows.f_index_select(0, idx)?,
        None => rows,
    })
}

/// SmoothQuant's calibration of `bert` for int8 inference (Xiao et al.
/// 2023): the per-channel maximum `max|X_j|` of the input of every encoder
/// linear over the real tokens of `calibration`, from the unchanged model
/// (query, key and value share one input), with migration strength `alpha`
/// (the paper's default for BERT-sized encoders is 0.5; 0.8 measured better
/// on MiniLM here). `on_layer(done, total)` is called after each layer.
pub fn int8_smoothing(
    bert: &BertModel,
    calibration: &[MlmInput],
    alpha: f64,
    on_layer: &mut dyn FnMut(usize, usize),
) -> Result<cloze_models::Int8Smoothing> {
    if calibration.is_empty() {
        return Err(Error::NoCalibration);
    }
    let mut out = cloze_models::Int8Smoothing::new(alpha)?;
    let mut batches = start_batches(bert, calibration)?;
    let layers = bert.num_layers();
    for layer in 0..layers {
        let mut maxima: HashMap<LinearSite, Tensor> = HashMap::new();
        tch::no_grad(|| -> Result<()> {
            for b in &mut batches {
                let mut failure: Option<Error> = None;
                let next = bert.layerwise_step(layer, &b.state, &mut |site, x| {
                    if hessian_site(site) != site || failure.is_some() {
                        return Ok(());
                    }
                    let step = real_rows(x, b.real.as_ref()).and_then(|rows| {
                        let m = rows
                            .f_abs()?
                            .f_amax([0i64].as_slice(), false)?
                            .f_to_kind(Kind::Float)?;
                        Ok(match maxima.remove(&site) {
                            Some(prev) => prev.f_maximum(&m)?,
                            None => m,
                        })
                    });
                    match step {
                        Ok(m) => {
                            maxima.insert(site, m);
                        }
                        Err(e) => failure = Some(e),
                    }
                    Ok(())
                })?;
                if let Some(e) = failure {
                    return Err(e);
                }
                b.state = next;
            }
            Ok(())
        })?;
        for (site, m) in maxima {
            out.insert(layer, site, &m)?;
        }
        on_layer(layer + 1, layers);
    }
    Ok(out)
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
                let rows = match real_rows(x, b.real.as_ref()) {
                    Ok(r) => r,
                    Err(e) => {
                        failure = Some(e);
                        return Ok(());
                    }
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
    fn gptq_keeps_the_encoder_closer_to_dense_than_round_to_nearest() {
        let ((_va, g), (_vb, r)) = models();
        let calibration = inputs(8);
        let dense = output(&g, &calibration);
        let cfg = QuantConfig {
            bits: 3,
            group_size: 16,
            block_size: 16,
            ..QuantConfig::default()
        };
        let (_, codes) =
            quantize_encoder(&g, &calibration, QuantMethod::Gptq, &cfg, &mut |_, _| {}).unwrap();
        quantize_encoder(&r, &[], QuantMethod::Rtn, &cfg, &mut |_, _| {}).unwrap();
        assert_eq!(codes.len(), 12);
        // The model holds exactly what the codes stand for.
        let (layer, site, q) = &codes[4];
        let w = g.layer_linear(*layer, *site).unwrap().weight();
        assert!(w.equal(&q.dequantize().unwrap()));
        let err = |m: &BertModel| {
            (output(m, &calibration) - &dense)
                .square()
                .sum(Kind::Double)
                .double_value(&[])
        };
        let (eg, er) = (err(&g), err(&r));
        assert!(eg < er, "GPTQ {eg} vs RTN {er}");
    }

    #[test]
    fn int8_smoothing_records_input_maxima_over_real_tokens() {
        let ((_va, m), _) = models();
        let mut batches = inputs(3);
        // The last two positions of the first batch are padding: whatever the
        // embeddings give there must not enter the maxima.
        let mask = Tensor::ones([4, 12], (Kind::Int64, Device::Cpu));
        let _ = mask.narrow(1, 10, 2).fill_(0);
        batches[0].attention_mask = Some(mask);
        let before = output(&m, &batches);
        let mut calls = Vec::new();
        let s = int8_smoothing(&m, &batches, 0.8, &mut |d, t| calls.push((d, t))).unwrap();
        assert_eq!(calls, vec![(1, 2), (2, 2)]);
        assert_eq!(s.len(), 2 * 4);
        assert!((s.alpha() - 0.8).abs() < 1e-12);
        for layer in 0..2 {
            for (site, width) in [
                (LinearSite::Query, 32),
                (LinearSite::AttentionOutput, 32),
                (LinearSite::Intermediate, 32),
                (LinearSite::Output, 64),
            ] {
                let max = s.input_max(layer, site).unwrap();
                assert_eq!(max.size(), [width]);
                assert!(max.min().double_value(&[]) > 0.0);
            }
        }
        // Layer 0's attention reads the embeddings: its maxima are theirs,
        // over the real tokens only.
        let want = batches
            .iter()
            .map(|b| {
                let h = m.layerwise_start(b).unwrap().hidden.reshape([-1, 32]);
                let h = match &b.attention_mask {
                    Some(mask) => h.index_select(0, &mask.reshape([-1]).nonzero().reshape([-1])),
                    None => h,
                };
                h.abs().amax([0i64].as_slice(), false)
            })
            .reduce(|a, b| a.maximum(&b))
            .unwrap();
        let got = s.input_max(0, LinearSite::Key).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(got).unwrap(),
            Vec::<f32>::try_from(&want).unwrap()
        );
        // Calibration reads the model and changes nothing.
        let after = output(&m, &batches);
        assert_eq!(f64::try_from((&after - &before).abs().max()).unwrap(), 0.0);
        assert!(matches!(
            int8_smoothing(&m, &[], 0.8, &mut |_, _| {}),
            Err(Error::NoCalibration)
        ));
        assert!(int8_smoothing(&m, &batches, 1.5, &mut |_, _| {}).is_err());
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

//! Int8 inference: the packed dynamic int8 linear against fp32, per-channel
//! weight scales, SmoothQuant smoothing, bad inputs, and a whole encoder
//! packed by `quantize_int8`.
#![allow(clippy::unwrap_used)]

use cloze_models::{
    BertConfig, BertForPreTraining, BertModel, Error, Int8Linear, Int8Smoothing, LinearSite,
    MlmInput, Precision, QuantizeInt8,
};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a - b).norm().double_value(&[]);
    diff / b.norm().double_value(&[])
}

#[test]
fn int8_linear_matches_fp32_within_the_quantisation_error() {
    tch::manual_seed(1);
    let w = Tensor::randn([64, 48], (Kind::Float, Device::Cpu)) * 0.05;
    let b = Tensor::randn([64], (Kind::Float, Device::Cpu)) * 0.1;
    let x = Tensor::randn([4, 10, 48], (Kind::Float, Device::Cpu));
    let reference = x.linear(&w, Some(&b));
    let q = Int8Linear::pack(&w, Some(&b)).unwrap();
    assert_eq!(q.dims(), (48, 64));
    let y = q.forward(&x).unwrap();
    assert_eq!(y.size(), [4, 10, 64]);
    assert_eq!(y.kind(), Kind::Float);
    let err = rel_err(&y, &reference);
    // 8-bit weights and 7-bit activations: about 1-2% relative error, and not
    // zero (the product really ran in int8).
    assert!(err < 0.04, "relative error {err}");
    assert!(
        err > 1e-4,
        "relative error {err}: the product was not quantised"
    );
    // A bf16 input is converted to fp32 first; a non-contiguous one is fine.
    let y16 = q.forward(&x.to_kind(Kind::BFloat16)).unwrap();
    assert_eq!(y16.kind(), Kind::Float);
    assert!(rel_err(&y16, &reference) < 0.05);
    let xt = x.transpose(0, 1);
    assert!(!xt.is_contiguous());
    let yt = q.forward(&xt).unwrap();
    assert!(rel_err(&yt, &reference.transpose(0, 1)) < 0.04);
}

#[test]
fn weight_scales_are_per_output_row() {
    // Rows whose magnitudes differ by up to 10^4: one scale for the whole
    // matrix would round the small rows to zero; a scale per row keeps every
    // output column as accurate as the others.
    tch::manual_seed(2);
    let rows = 8;
    let scale = Tensor::from_slice(&[1e-4f32, 1e-3, 1e-2, 1e-1, 1.0, 1e-4, 1e-2, 1.0]);
    let w = Tensor::randn([rows, 32], (Kind::Float, Device::Cpu)) * scale.unsqueeze(1);
    let x = Tensor::randn([64, 32], (Kind::Float, Device::Cpu));
    let reference = x.linear::<Tensor>(&w, None);
    let y = Int8Linear::pack(&w, None).unwrap().forward(&x).unwrap();
    for r in 0..rows {
        let err = rel_err(&y.select(1, r), &reference.select(1, r));
        assert!(err < 0.05, "output column {r}: relative error {err}");
    }
}

#[test]
fn bad_shapes_are_errors() {
    let w = Tensor::randn([8, 4], (Kind::Float, Device::Cpu));
    assert!(matches!(
        Int8Linear::pack(&w.view([32]), None),
        Err(Error::Int8(_))
    ));
    let bias = Tensor::zeros([5], (Kind::Float, Device::Cpu));
    let err = Int8Linear::pack(&w, Some(&bias)).unwrap_err().to_string();
    assert!(err.contains("bias"), "{err}");
    let ints = Tensor::ones([8, 4], (Kind::Int64, Device::Cpu));
    assert!(matches!(Int8Linear::pack(&ints, None), Err(Error::Int8(_))));
    let q = Int8Linear::pack(&w, None).unwrap();
    let err = q
        .forward(&Tensor::randn([3, 5], (Kind::Float, Device::Cpu)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[8, 4]") && err.contains("[3, 5]"), "{err}");
    assert!(q
        .forward(&Tensor::randn([4], (Kind::Float, Device::Cpu)))
        .is_err());
}

fn config() -> BertConfig {
    BertConfig {
        vocab_size: 120,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        max_position_embeddings: 32,
        ..Default::default()
    }
}

fn input() -> MlmInput {
    let ids = Tensor::from_slice(&[2i64, 17, 33, 4, 90, 3, 8, 61, 77, 12, 5, 3]).view([2, 6]);
    MlmInput::new(ids)
}

fn cosines(a: &Tensor, b: &Tensor) -> Tensor {
    let a = a.view([-1, a.size()[a.dim() - 1]]).to_kind(Kind::Double);
    let b = b.view([-1, b.size()[b.dim() - 1]]).to_kind(Kind::Double);
    let dot = (&a * &b).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    dot / (a.norm_scalaropt_dim(2, [1i64].as_slice(), false)
        * b.norm_scalaropt_dim(2, [1i64].as_slice(), false))
}

#[test]
fn a_packed_encoder_agrees_with_fp32() {
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let mut model = BertModel::new(&vs.root(), &config()).unwrap();
    // Larger weights than the N(0, 0.02) initialisation, so that the linears
    // (not the embeddings) dominate the hidden states.
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            if name.ends_with("dense.weight") || name.contains("self.") && name.ends_with("weight")
            {
                let _ = v.normal_(0.0, 0.15);
            }
        }
    });
    let dense = tch::no_grad(|| model.forward_t(&input(), false)).unwrap();
    let packed = model.quantize_int8(None).unwrap();
    // Per layer: fused query/key/value, attention output, intermediate,
    // output; plus the pooler.
    assert_eq!(packed, 2 * 4 + 1);
    let q = tch::no_grad(|| model.forward_t(&input(), false)).unwrap();
    let token = cosines(&q.last_hidden_state, &dense.last_hidden_state);
    let min = token.min().double_value(&[]);
    assert!(min > 0.99, "token-state cosine {min}");
    assert!(
        rel_err(&q.last_hidden_state, &dense.last_hidden_state) > 1e-5,
        "the packed encoder gave fp32's exact output"
    );
    let pooled = cosines(
        q.pooler_output.as_ref().unwrap(),
        dense.pooler_output.as_ref().unwrap(),
    );
    assert!(pooled.min().double_value(&[]) > 0.99);
}

#[test]
fn precision_int8_prepares_an_mlm_model() {
    tch::manual_seed(4);
    let mut vs = VarStore::new(Device::Cpu);
    let mut model = BertForPreTraining::new_masked_lm(&vs.root(), &config()).unwrap();
    let masked = Tensor::from_slice(&[3i64, 9]);
    let dense = tch::no_grad(|| model.forward_t(&input(), Some(&masked), false)).unwrap();
    let n = Precision::Int8.prepare(&mut vs, &mut model, None).unwrap();
    // No pooler in the MLM layout; the head's transform is packed.
    assert_eq!(n, 2 * 4 + 1);
    // The variables themselves are untouched (fp32, same values).
    for (_, v) in vs.variables() {
        assert_eq!(v.kind(), Kind::Float);
    }
    let q = tch::no_grad(|| model.forward_t(&input(), Some(&masked), false)).unwrap();
    assert_eq!(q.mlm_logits.size(), dense.mlm_logits.size());
    let c = cosines(&q.mlm_logits, &dense.mlm_logits);
    assert!(c.min().double_value(&[]) > 0.99);
    assert_eq!(
        Precision::Fp32.prepare(&mut vs, &mut model, None).unwrap(),
        0
    );
}

#[test]
fn int8_is_a_named_inference_only_precision() {
    let p: Precision = "int8".parse().unwrap();
    assert_eq!(p, Precision::Int8);
    assert!(!p.trains());
    assert!(Precision::Bf16.trains() && Precision::Fp32.trains());
    assert_eq!(p.kind(), Kind::Float);
    cloze_models::autocast(p, || {
        assert_eq!(cloze_models::precision::product_kind(), None)
    });
    let err = "int4".parse::<Precision>().unwrap_err().to_string();
    assert!(err.contains("int8"), "{err}");
}

/// Inputs `[rows, in]` of unit scale except channel 0, 50x larger: the
/// outlier channel that per-tensor activation quantisation handles badly.
fn outlier_inputs(rows: i64, cols: i64) -> Tensor {
    let x = Tensor::randn([rows, cols], (Kind::Float, Device::Cpu));
    let scale = Tensor::ones([cols], (Kind::Float, Device::Cpu));
    let _ = scale.get(0).fill_(50.0);
    x * scale.view([1, cols])
}

#[test]
fn smoothing_factors_follow_the_smoothquant_formula() {
    let s = Int8Smoothing::new(0.5).unwrap();
    let x_max = Tensor::from_slice(&[4.0f32, 1.0, 0.0]);
    // Column maxima of |W|: 1, 4, 0.25.
    let w = Tensor::from_slice(&[1.0f32, -4.0, 0.25, -0.5, 2.0, 0.1]).view([2, 3]);
    let f = Vec::<f32>::try_from(s.factors(&x_max, &w).unwrap()).unwrap();
    // sqrt(4 / 1), sqrt(1 / 4), sqrt(1e-5 / 0.25) for the dead channel.
    let want = [2.0f32, 0.5, (1e-5f32 / 0.25).sqrt()];
    for (g, w) in f.iter().zip(want) {
        assert!((g - w).abs() < 1e-6 * w.max(1.0), "{f:?} vs {want:?}");
    }
    let wrong = Tensor::from_slice(&[1.0f32, 2.0]);
    let err = s.factors(&wrong, &w).unwrap_err().to_string();
    assert!(err.contains("another model"), "{err}");
    for bad in [0.0, -0.1, 1.5, f64::NAN] {
        let err = Int8Smoothing::new(bad).unwrap_err().to_string();
        assert!(err.contains("(0, 1]"), "{err}");
    }
}

#[test]
fn smoothing_lowers_the_error_on_an_outlier_channel() {
    if !cloze_models::int8::available() {
        return;
    }
    tch::manual_seed(5);
    let w = Tensor::randn([96, 64], (Kind::Float, Device::Cpu)) * 0.05;
    let b = Tensor::randn([96], (Kind::Float, Device::Cpu)) * 0.1;
    let x = outlier_inputs(256, 64);
    let exact = x.linear(&w, Some(&b));
    let plain = Int8Linear::pack(&w, Some(&b)).unwrap();
    assert!(!plain.is_smoothed());
    let plain_err = rel_err(&plain.forward(&x).unwrap(), &exact);
    let x_max = x.abs().amax([0i64].as_slice(), false);
    let s = Int8Smoothing::new(0.8).unwrap();
    let factors = s.factors(&x_max, &w).unwrap();
    let smoothed = Int8Linear::pack_smoothed(&w, Some(&b), Some(&factors)).unwrap();
    assert!(smoothed.is_smoothed());
    let smooth_err = rel_err(&smoothed.forward(&x).unwrap(), &exact);
    assert!(
        smooth_err < 0.5 * plain_err,
        "smoothed {smooth_err} vs plain {plain_err}"
    );
    // Bad factors are refused, not applied.
    let negative = -factors.shallow_clone();
    assert!(Int8Linear::pack_smoothed(&w, Some(&b), Some(&negative)).is_err());
    let short = factors.narrow(0, 0, 10);
    let err = Int8Linear::pack_smoothed(&w, Some(&b), Some(&short))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[96, 64]"), "{err}");
}

#[test]
fn a_smoothing_file_round_trips_and_must_fit_the_model() {
    if !cloze_models::int8::available() {
        return;
    }
    tch::manual_seed(6);
    let cfg = config();
    let mut s = Int8Smoothing::new(0.7).unwrap();
    for layer in 0..2 {
        for (site, width) in [
            (LinearSite::Query, cfg.hidden_size),
            (LinearSite::AttentionOutput, cfg.hidden_size),
            (LinearSite::Intermediate, cfg.hidden_size),
            (LinearSite::Output, cfg.intermediate_size),
        ] {
            let m = Tensor::rand([width], (Kind::Float, Device::Cpu)) + 0.5;
            s.insert(layer, site, &m).unwrap();
        }
    }
    assert_eq!(s.len(), 8);
    // Key and value share the query's input.
    assert!(s.input_max(1, LinearSite::Value).is_some());
    let dir = tempfile::tempdir().unwrap();
    assert!(Int8Smoothing::load(dir.path()).unwrap().is_none());
    s.save(dir.path()).unwrap();
    let back = Int8Smoothing::load(dir.path()).unwrap().unwrap();
    assert!((back.alpha() - 0.7).abs() < 1e-6);
    assert_eq!(back.len(), 8);
    let a = s.input_max(1, LinearSite::Output).unwrap();
    let b = back.input_max(1, LinearSite::Output).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(a).unwrap(),
        Vec::<f32>::try_from(b).unwrap()
    );

    let vs = VarStore::new(Device::Cpu);
    let mut model = BertModel::new(&vs.root(), &cfg).unwrap();
    let dense = tch::no_grad(|| model.forward_t(&input(), false)).unwrap();
    assert_eq!(model.quantize_int8(Some(&back)).unwrap(), 2 * 4 + 1);
    let q = tch::no_grad(|| model.forward_t(&input(), false)).unwrap();
    let c = cosines(&q.last_hidden_state, &dense.last_hidden_state);
    assert!(c.min().double_value(&[]) > 0.99);

    // A model with a third layer finds no calibration for it.
    let deeper = BertConfig {
        num_hidden_layers: 3,
        ..config()
    };
    let vs = VarStore::new(Device::Cpu);
    let mut model = BertModel::new(&vs.root(), &deeper).unwrap();
    let err = model.quantize_int8(Some(&back)).unwrap_err().to_string();
    assert!(err.contains("encoder.layer.2"), "{err}");
}

#[test]
fn padding_never_reaches_the_int8_input_ranges() {
    if !cloze_models::int8::available() {
        return;
    }
    tch::manual_seed(7);
    let vs = VarStore::new(Device::Cpu);
    let mut model = BertModel::new(&vs.root(), &config()).unwrap();
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            if name.ends_with("weight") && !name.contains("LayerNorm") {
                let _ = v.normal_(0.0, 0.15);
            }
        }
    });
    model.quantize_int8(None).unwrap();
    // The same four real tokens, then four padding positions holding
    // different ids (and so different, possibly huge, states).
    let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 0, 0, 0, 0]).view([1, 8]);
    let run = |pad: [i64; 4]| {
        let mut ids = vec![2i64, 17, 33, 4];
        ids.extend(pad);
        let input = MlmInput::new(Tensor::from_slice(&ids).view([1, 8]))
            .with_attention_mask(mask.shallow_clone());
        tch::no_grad(|| model.forward_t(&input, false))
            .unwrap()
            .last_hidden_state
            .narrow(1, 0, 4)
    };
    let a = run([0, 0, 0, 0]);
    let b = run([90, 61, 77, 119]);
    assert_eq!(
        f64::try_from((&a - &b).abs().max()).unwrap(),
        0.0,
        "the real tokens' int8 states depend on what the padding holds"
    );
}

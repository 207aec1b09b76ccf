//! bf16 mixed precision in training: the loss and gradients of a bf16 step stay
//! within bf16 rounding of the fp32 step's, every weight, gradient and optimiser
//! value stays fp32, a bf16 run learns, and resuming a bf16 run is exact.

mod common;

use cloze_models::Precision;
use cloze_train::batch::{PretrainModel, TensorBatch};
use cloze_train::config::OptimizerConfig;
use cloze_train::objective::{Mlm, Objective};
use cloze_train::trainer::{Observer, Quiet, RunOutcome, Trainer};
use cloze_train::AdamW;
use common::*;
use tch::{Kind, Tensor};

/// The loss of one forward pass (no dropout) and the flattened gradient of
/// every trainable variable after its backward pass.
fn loss_and_gradient(
    m: &cloze_train::BertPretrainer,
    batch: &TensorBatch,
) -> anyhow::Result<(f64, Tensor)> {
    for mut v in m.vs.trainable_variables() {
        v.zero_grad();
    }
    let out = m.forward(batch, false)?;
    assert_eq!(
        out.mlm_logits.kind(),
        Kind::Float,
        "logits come back in fp32 whatever the precision"
    );
    let losses = Mlm { weight: 1.0 }.losses(&out, batch)?;
    losses.total.f_backward()?;
    let mut grads = Vec::new();
    for v in m.vs.trainable_variables() {
        let g = v.grad();
        assert_eq!(v.kind(), Kind::Float, "a weight left fp32");
        if g.defined() {
            assert_eq!(g.kind(), Kind::Float, "a gradient is not fp32");
            grads.push(g.f_reshape([-1])?);
        }
    }
    let loss = losses.total.f_double_value(&[])?;
    Ok((loss, Tensor::f_cat(&grads, 0)?))
}

#[test]
fn a_bf16_step_is_within_bf16_rounding_of_fp32_and_everything_stays_fp32() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let cfg = config(1);
    let mut m = model(&cfg, false);
    let batch = TensorBatch::from_batch(
        &Synthetic {
            n: 16,
            seed: 3,
            pairs: false,
        }
        .make(0, &(0..16).collect::<Vec<_>>()),
        tch::Device::Cpu,
    )?;
    let (l32, g32) = loss_and_gradient(&m, &batch)?;
    m.precision = Precision::Bf16;
    let (l16, g16) = loss_and_gradient(&m, &batch)?;
    // bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2% per value);
    // through two small layers the loss moves by a few tenths of a percent.
    let rel = (l16 - l32).abs() / l32;
    assert!(
        rel < 1e-2,
        "bf16 loss {l16} vs fp32 {l32}: relative gap {rel}"
    );
    assert!(
        l16 != l32,
        "the bf16 loss equals the fp32 one to the last bit: were the products cast at all?"
    );
    let cos = g16.f_dot(&g32)?.f_double_value(&[])?
        / (g16.f_norm()?.f_double_value(&[])? * g32.f_norm()?.f_double_value(&[])?);
    assert!(cos > 0.99, "gradient direction moved by bf16: cosine {cos}");
    // An optimiser step in bf16 updates the fp32 weights and leaves them fp32.
    let before: Vec<Tensor> =
        m.vs.trainable_variables()
            .iter()
            .map(Tensor::copy)
            .collect();
    let hp = OptimizerConfig {
        lr: 1e-3,
        weight_decay: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-6,
        max_grad_norm: 1.0,
        freeze: Vec::new(),
        layer_lr_decay: 1.0,
    };
    let mut opt = AdamW::new(&m.vs, &hp)?;
    let loss =
        cloze_train::trainer::train_step(&m, &Mlm { weight: 1.0 }, &mut opt, &batch, 1e-3, 1.0)?;
    assert!(loss.is_finite());
    // The update follows the bf16 gradient, not only weight decay: its
    // direction agrees with the fp32 gradient's descent direction.
    let mut update = Vec::new();
    for (v, b) in m.vs.trainable_variables().iter().zip(&before) {
        assert_eq!(v.kind(), Kind::Float);
        update.push(v.f_sub(b)?.f_reshape([-1])?);
    }
    let update = Tensor::f_cat(&update, 0)?;
    let descent = update.f_dot(&g32)?.f_double_value(&[])?;
    assert!(
        descent < 0.0,
        "the bf16 step did not move against the gradient ({descent})"
    );

    // A model whose precision differs from the run's is refused before any
    // file is written.
    let dir = tempfile::tempdir()?;
    let run = dir.path().join("run");
    let bf16 = cfg.with_overrides(&["run.precision=bf16".into()])?;
    let fp32_model = model(&cfg, false);
    let err = Trainer::new(bf16, &fp32_model, &fp32_model.vs, &run)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("bf16") && err.contains("fp32"), "{err}");
    assert!(!run.exists(), "the refused run wrote {}", run.display());
    Ok(())
}

/// Asks the trainer to stop once `at` steps are done (what Ctrl-C does).
struct StopAt(u64, u64);
impl Observer for StopAt {
    fn on_step(&mut self, step: u64, _: u64, _: f64, _: f64, _: f64) {
        self.1 = step;
    }
    fn should_stop(&mut self) -> bool {
        self.1 >= self.0
    }
}

#[test]
fn a_bf16_run_learns_and_resumes_bit_for_bit() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let cfg = config(60).with_overrides(&["run.precision=bf16".into()])?;
    assert_eq!(cfg.run.precision, Precision::Bf16);
    let data = Synthetic {
        n: 40,
        seed: 3,
        pairs: false,
    };
    let a = tempfile::tempdir()?;
    let b = tempfile::tempdir()?;
    let finished = {
        let m = model(&cfg, false);
        let mut t = Trainer::new(cfg.clone(), &m, &m.vs, a.path())?;
        t.run(&data, Some(&eval_set()), &mut Quiet)?
    };
    {
        let m = model(&cfg, false);
        let mut t = Trainer::new(cfg.clone(), &m, &m.vs, b.path())?;
        let out = t.run(&data, Some(&eval_set()), &mut StopAt(27, 0))?;
        assert!(
            matches!(out, RunOutcome::Interrupted { step: 27, .. }),
            "{out:?}"
        );
    }
    {
        let m = model(&cfg.with_overrides(&["run.seed=9".into()])?, false);
        let mut t = Trainer::resume(cfg.clone(), &m, &m.vs, b.path())?;
        assert_eq!(t.state().step, 27);
        t.run(&data, Some(&eval_set()), &mut Quiet)?;
    }
    let la = train_losses(a.path());
    let lb = train_losses(b.path());
    assert_eq!(la.len(), 60);
    assert_eq!(la, lb, "the resumed bf16 run differs from the straight one");
    // The same run in fp32: the bf16 curve learns as much (mean of the last
    // five losses within 2% of fp32's, both well under the first five's).
    let c = tempfile::tempdir()?;
    {
        let fp32 = cfg.with_overrides(&["run.precision=fp32".into()])?;
        let m = model(&fp32, false);
        let mut t = Trainer::new(fp32, &m, &m.vs, c.path())?;
        t.run(&data, Some(&eval_set()), &mut Quiet)?;
    }
    let lc = train_losses(c.path());
    let mean = |l: &[(u64, f64)]| l.iter().map(|(_, x)| x).sum::<f64>() / l.len() as f64;
    let n = la.len();
    let (first16, last16) = (mean(&la[..5]), mean(&la[n - 5..]));
    let (first32, last32) = (mean(&lc[..5]), mean(&lc[n - 5..]));
    assert!(last32 < first32 - 0.2, "fp32 did not learn: {lc:?}");
    assert!(last16 < first16 - 0.2, "bf16 did not learn: {la:?}");
    assert!(
        (last16 - last32).abs() < 0.02 * last32,
        "bf16 ends at {last16}, fp32 at {last32}"
    );

    // The final checkpoint holds fp32 tensors.
    let RunOutcome::Finished { checkpoint, .. } = finished else {
        anyhow::bail!("the straight run did not finish: {finished:?}");
    };
    let saved = Tensor::read_safetensors(checkpoint.join("model.safetensors"))?;
    assert!(!saved.is_empty());
    for (name, t) in &saved {
        assert_eq!(t.kind(), Kind::Float, "{name} saved as {:?}", t.kind());
    }

    // Resuming with another precision is refused, naming the setting.
    let fp32 = cfg.with_overrides(&["run.precision=fp32".into()])?;
    let err = cfg.resume_changes(&fp32).err().map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("run.precision")),
        "{err:?}"
    );
    Ok(())
}

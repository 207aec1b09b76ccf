//! AdamW with decoupled weight decay over one flat parameter buffer.
//!
//! At construction every trainable variable of the [`VarStore`] is moved into a
//! single contiguous buffer (the variables become views of it), and each
//! variable's gradient is likewise made a view of one flat gradient buffer.
//! Autograd then accumulates into those views in place, so that the global
//! gradient norm, clipping and the whole AdamW update are a handful of
//! vectorised libtorch operations over two or three large tensors instead of
//! a loop of small ones; and the optimiser state is two flat tensors that are
//! saved and restored bit-exactly.
//!
//! Parameters whose HuggingFace name marks them as a bias or a LayerNorm weight
//! are laid out last and excluded from weight decay, as in BERT.

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Kind, Tensor};

use crate::config::OptimizerConfig;
use crate::error::{Error, Result};

/// Where one parameter lives in the flat buffers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSlot {
    /// The variable's name in the store (HuggingFace naming).
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// First element in the flat buffer.
    pub offset: i64,
    /// Number of elements.
    pub numel: i64,
    /// Whether weight decay applies to it.
    pub decay: bool,
}

/// True when HF naming says the parameter must not be weight-decayed.
pub fn excluded_from_decay(name: &str) -> bool {
    name.ends_with(".bias")
        || name.ends_with("_bias")
        || name == "bias"
        || name.contains("LayerNorm")
        || name.contains("layer_norm")
        || name.contains("layernorm")
}

/// The AdamW optimiser with its flat state.
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<ParamSlot>,
    params: Tensor,
    grads: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    scratch: Tensor,
    n_decay: i64,
    step: u64,
    hp: OptimizerConfig,
}

impl AdamW {
    /// Takes over every trainable variable of `vs` (they become views into one buffer).
    ///
    /// Build the optimiser after the model and before the first forward pass;
    /// loading weights later must copy into the existing variables (in place).
    pub fn new(vs: &VarStore, hp: &OptimizerConfig) -> Result<Self> {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        // Decayed first, then the rest; alphabetical inside each group so the layout
        // (and therefore the saved optimiser state) never depends on hash order.
        named.sort_by(|a, b| {
            (excluded_from_decay(&a.0), &a.0).cmp(&(excluded_from_decay(&b.0), &b.0))
        });
        // A tied weight registered under two names is one tensor: keep its first name.
        let mut seen = std::collections::HashSet::new();
        named.retain(|(_, t)| seen.insert(t.data_ptr() as usize));
        let device = vs.device();
        let mut slots = Vec::with_capacity(named.len());
        let mut offset = 0i64;
        for (name, t) in &named {
            let numel = i64::try_from(t.numel())
                .map_err(|_| Error::DataMismatch(format!("{name} too large")))?;
            slots.push(ParamSlot {
                name: name.clone(),
                shape: t.size(),
                offset,
                numel,
                decay: !excluded_from_decay(name),
            });
            offset += numel;
        }
        let total = offset;
        let n_decay = slots.iter().filter(|s| s.decay).map(|s| s.numel).sum();
        let opts = (Kind::Float, device);
        let params = Tensor::f_zeros([total], opts)?;
        let mut grads = Tensor::f_zeros([total], opts)?;
        tch::no_grad(|| -> Result<()> {
            for ((_, t), s) in named.iter().zip(&slots) {
                params
                    .f_narrow(0, s.offset, s.numel)?
                    .f_copy_(&t.f_reshape([-1])?.f_to_kind(Kind::Float)?)?;
            }
            Ok(())
        })?;
        // Give every parameter a defined gradient so it can be re-pointed: one
        // backward pass through a zero-weighted sum of all parameters.
        let mut sum = Tensor::f_zeros([], opts)?;
        for (_, t) in &named {
            sum = sum.f_add(&t.f_sum(Kind::Float)?.f_mul_scalar(0.0)?)?;
        }
        sum.f_backward()?;
        for ((_, t), s) in named.iter().zip(&slots) {
            let mut var = t.shallow_clone();
            var.f_set_data(
                &params
                    .f_narrow(0, s.offset, s.numel)?
                    .f_view(s.shape.as_slice())?,
            )?;
            let mut g = var.grad();
            g.f_set_data(
                &grads
                    .f_narrow(0, s.offset, s.numel)?
                    .f_view(s.shape.as_slice())?,
            )?;
        }
        let _ = tch::no_grad(|| grads.f_zero_())?;
        Ok(Self {
            slots,
            exp_avg: Tensor::f_zeros([total], opts)?,
            exp_avg_sq: Tensor::f_zeros([total], opts)?,
            scratch: Tensor::f_zeros([total], opts)?,
            params,
            grads,
            n_decay,
            step: 0,
            hp: hp.clone(),
        })
    }

    /// The parameter layout.
    pub fn slots(&self) -> &[ParamSlot] {
        &self.slots
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> i64 {
        self.params.numel() as i64
    }

    /// Optimiser steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// The flat gradient buffer (every parameter's `.grad` is a view of it).
    pub fn grads(&self) -> &Tensor {
        &self.grads
    }

    /// The flat parameter buffer.
    pub fn params(&self) -> &Tensor {
        &self.params
    }

    /// Clears the accumulated gradients (in place, keeping the views).
    pub fn zero_grad(&mut self) -> Result<()> {
        let _ = tch::no_grad(|| self.grads.f_zero_())?;
        Ok(())
    }

    /// Global L2 norm of the accumulated gradients.
    pub fn grad_norm(&self) -> Result<f64> {
        Ok(tch::no_grad(|| self.grads.f_norm())?.f_double_value(&[])?)
    }

    /// Scales the gradients so their global norm is at most `max_norm` (0 = off);
    /// returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.grad_norm()?;
        if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
            let coef = max_norm / (norm + 1e-6);
            let _ = tch::no_grad(|| self.grads.f_mul_scalar_(coef))?;
        }
        Ok(norm)
    }

    /// One AdamW update with learning rate `lr` from the accumulated gradients:
    /// eight element-wise libtorch operations over the whole flat buffers, with
    /// no temporaries (the scratch buffer is reused every step).
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let hp = &self.hp;
        let t = (self.step + 1) as i32;
        let bc1 = 1.0 - hp.beta1.powi(t);
        let bc2_sqrt = (1.0 - hp.beta2.powi(t)).sqrt();
        tch::no_grad(|| -> Result<()> {
            if hp.weight_decay > 0.0 && self.n_decay > 0 {
                let _ = self
                    .params
                    .f_narrow(0, 0, self.n_decay)?
                    .f_mul_scalar_(1.0 - lr * hp.weight_decay)?;
            }
            let _ = self.exp_avg.f_lerp_(&self.grads, 1.0 - hp.beta1)?;
            let _ = self.grads.f_mul_out(&self.scratch, &self.grads)?;
            let _ = self.exp_avg_sq.f_lerp_(&self.scratch, 1.0 - hp.beta2)?;
            let _ = self.exp_avg_sq.f_sqrt_out(&self.scratch)?;
            // p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), written as
            // p += m / ((sqrt(v) + eps*sqrt(bc2)) * (-bc1 / (lr*sqrt(bc2)))) because
            // tch's addcdiv_ takes no scalar factor.
            let _ = self.scratch.f_add_scalar_(hp.eps * bc2_sqrt)?;
            let _ = self.scratch.f_mul_scalar_(-bc1 / (lr * bc2_sqrt))?;
            let _ = self.params.f_addcdiv_(&self.exp_avg, &self.scratch)?;
            Ok(())
        })?;
        self.step += 1;
        Ok(())
    }

    /// The state to checkpoint: both moment buffers.
    pub fn state_tensors(&self) -> Vec<(&'static str, &Tensor)> {
        vec![("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)]
    }

    /// Restores moments and step count saved by [`Self::state_tensors`] with the same layout.
    pub fn load_state(
        &mut self,
        tensors: &[(String, Tensor)],
        step: u64,
        slots: &[ParamSlot],
    ) -> Result<()> {
        if slots != self.slots.as_slice() {
            return Err(Error::ResumeMismatch(
                "the optimiser's parameter layout differs from the model's".into(),
            ));
        }
        for (name, dst) in [
            ("exp_avg", &mut self.exp_avg),
            ("exp_avg_sq", &mut self.exp_avg_sq),
        ] {
            let src = tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| Error::ResumeMismatch(format!("optimiser state lacks `{name}`")))?;
            if src.size() != dst.size() {
                return Err(Error::ResumeMismatch(format!(
                    "optimiser `{name}` has shape {:?}, expected {:?}",
                    src.size(),
                    dst.size()
                )));
            }
            tch::no_grad(|| dst.f_copy_(src))?;
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{Module, VarStore};
    use tch::Device;

    fn hp() -> OptimizerConfig {
        OptimizerConfig {
            lr: 1e-2,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            max_grad_norm: 1.0,
        }
    }

    #[test]
    fn decay_exclusion_follows_hf_names() {
        assert!(excluded_from_decay(
            "bert.encoder.layer.0.attention.output.LayerNorm.weight"
        ));
        assert!(excluded_from_decay(
            "bert.encoder.layer.0.attention.self.query.bias"
        ));
        assert!(!excluded_from_decay(
            "bert.encoder.layer.0.attention.self.query.weight"
        ));
        assert!(!excluded_from_decay(
            "bert.embeddings.word_embeddings.weight"
        ));
    }

    #[test]
    fn gradients_accumulate_into_the_flat_buffer() -> Result<()> {
        let vs = VarStore::new(Device::Cpu);
        let lin = tch::nn::linear(vs.root() / "dense", 3, 2, Default::default());
        let mut opt = AdamW::new(&vs, &hp())?;
        let x = Tensor::from_slice(&[1f32, 2., 3.]).view([1, 3]);
        lin.forward(&x).sum(Kind::Float).backward();
        // d/dW of sum(Wx+b) is x for each output row, 1 for the bias.
        let g: Vec<f32> = Vec::try_from(opt.grads())?;
        let slot_w = opt
            .slots()
            .iter()
            .find(|s| s.name == "dense.weight")
            .cloned();
        let slot_b = opt.slots().iter().find(|s| s.name == "dense.bias").cloned();
        let (w, b) = (
            slot_w.ok_or(Error::NoCheckpoint("w".into()))?,
            slot_b.ok_or(Error::NoCheckpoint("b".into()))?,
        );
        assert!(w.decay && !b.decay);
        assert_eq!(
            &g[w.offset as usize..(w.offset + 6) as usize],
            &[1., 2., 3., 1., 2., 3.]
        );
        assert_eq!(&g[b.offset as usize..(b.offset + 2) as usize], &[1., 1.]);
        // A second backward adds.
        lin.forward(&x).sum(Kind::Float).backward();
        let g2: Vec<f32> = Vec::try_from(opt.grads())?;
        assert_eq!(g2[b.offset as usize], 2.0);
        opt.zero_grad()?;
        assert_eq!(opt.grad_norm()?, 0.0);
        Ok(())
    }

    /// Compares one step with a plain per-tensor AdamW written from the paper's formula.
    #[test]
    fn step_matches_reference_adamw() -> Result<()> {
        let vs = VarStore::new(Device::Cpu);
        let lin = tch::nn::linear(vs.root() / "dense", 4, 3, Default::default());
        let w0 = lin.ws.detach().copy();
        let b0 = lin.bs.as_ref().map(|b| b.detach().copy());
        let mut opt = AdamW::new(
            &vs,
            &OptimizerConfig {
                max_grad_norm: 0.0,
                ..hp()
            },
        )?;
        let x = Tensor::from_slice(&[0.5f32, -1., 2., 0.25]).view([1, 4]);
        let mut expected_w = w0.shallow_clone();
        let (mut m, mut v) = (w0.zeros_like(), w0.zeros_like());
        for step in 1..=3 {
            opt.zero_grad()?;
            lin.forward(&x).square().sum(Kind::Float).backward();
            let g = lin.ws.grad().detach().copy();
            let lr = 0.01 * step as f64;
            opt.step(lr)?;
            let (b1, b2, eps, wd) = (0.9f64, 0.999f64, 1e-6, 0.1);
            expected_w = &expected_w * (1.0 - lr * wd);
            m = &m * b1 + &g * (1.0 - b1);
            v = &v * b2 + &g * &g * (1.0 - b2);
            let mhat = &m / (1.0 - b1.powi(step));
            let vhat = &v / (1.0 - b2.powi(step));
            expected_w = &expected_w - mhat / (vhat.sqrt() + eps) * lr;
        }
        let diff = (&lin.ws - &expected_w).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "max diff {diff}");
        // The bias is not decayed but does move.
        let b_moved = (lin
            .bs
            .as_ref()
            .map(|b| b.detach())
            .unwrap_or_else(|| Tensor::zeros([3], (Kind::Float, Device::Cpu)))
            - b0.unwrap_or_else(|| Tensor::zeros([3], (Kind::Float, Device::Cpu))))
        .abs()
        .sum(Kind::Float)
        .double_value(&[]);
        assert!(b_moved > 0.0);
        assert_eq!(opt.steps_taken(), 3);
        Ok(())
    }

    #[test]
    fn clipping_bounds_the_global_norm() -> Result<()> {
        let vs = VarStore::new(Device::Cpu);
        let lin = tch::nn::linear(vs.root() / "l", 8, 8, Default::default());
        let mut opt = AdamW::new(&vs, &hp())?;
        (lin.forward(&Tensor::ones([4, 8], (Kind::Float, Device::Cpu))) * 100.0)
            .sum(Kind::Float)
            .backward();
        let before = opt.clip_grad_norm(1.0)?;
        assert!(before > 1.0);
        let after = opt.grad_norm()?;
        assert!((after - 1.0).abs() < 1e-3, "{after}");
        // The views still see the clipped values.
        let via_var = lin.ws.grad().norm().double_value(&[]);
        assert!(via_var <= 1.0 + 1e-3);
        Ok(())
    }
}

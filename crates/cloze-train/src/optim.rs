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
//!
//! Two settings select parameters by their HuggingFace names
//! (`[optimizer] freeze` and `layer_lr_decay`, for continued pretraining and
//! fine-tuning): frozen parameters ([`freeze`], [`ParamPattern`]) stop
//! requiring gradients and are left out of the flat buffers altogether, and
//! layer-wise learning-rate decay gives each parameter a learning rate that
//! shrinks with its distance from the output ([`layer_depth`],
//! [`layer_lr_scale`]), applied as one per-element scale tensor.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Kind, Tensor};

use crate::config::OptimizerConfig;
use crate::error::{Error, Result};

/// Where one parameter lives in the flat buffers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Its learning rate as a fraction of the scheduled one (layer-wise decay,
    /// [`layer_lr_scale`]). It is 1 without layer-wise decay, and then left out
    /// of the saved metadata, so checkpoints written before the setting existed
    /// load with the same layout and new ones look exactly like them.
    #[serde(default = "unit_scale", skip_serializing_if = "is_unit_scale")]
    pub lr_scale: f64,
}

fn unit_scale() -> f64 {
    1.0
}

// serde's `skip_serializing_if` passes a reference.
fn is_unit_scale(scale: &f64) -> bool {
    *scale == 1.0
}

/// The error for a bad `[optimizer] freeze` entry.
fn bad_freeze(problem: String) -> Error {
    Error::InvalidConfig {
        field: "optimizer.freeze",
        problem,
    }
}

/// The dotted components of a HuggingFace parameter name without the optional
/// leading `bert` (the encoder's prefix inside a model with heads).
fn hf_components(name: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = name.split('.').collect();
    if parts.first() == Some(&"bert") {
        parts.remove(0);
    }
    parts
}

/// `text` when it is a non-empty run of ASCII digits, as a number.
fn layer_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One component of a [`ParamPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternPart {
    /// Matches this component exactly.
    Exact(String),
    /// Matches an integer component from the first to the second, inclusive.
    Range(u64, u64),
}

/// A parameter selector of `[optimizer] freeze`: a dotted prefix of
/// HuggingFace parameter names.
///
/// The pattern matches a name when its components equal the name's first
/// components, whole component by whole component (so `encoder.layer.1`
/// matches layer 1 but not layer 10). A leading `bert.` is ignored on both
/// sides, so `embeddings` matches `bert.embeddings.word_embeddings.weight`;
/// the pattern `bert` alone matches every parameter under `bert.` (the
/// encoder without the heads). A component written `a-b` with integers
/// `a <= b` matches any integer from `a` to `b` inclusive:
/// `encoder.layer.0-5` matches the first six layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamPattern {
    text: String,
    parts: Vec<PatternPart>,
    /// The pattern was `bert` (it then has no parts).
    whole_encoder: bool,
}

impl ParamPattern {
    /// Parses a pattern; an empty pattern, an empty component (`a..b`, a
    /// leading or trailing dot) or a malformed or empty range (`5-2`, `a-b`)
    /// is an [`Error::InvalidConfig`] for `optimizer.freeze` naming it.
    pub fn parse(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(bad_freeze("has an empty pattern".into()));
        }
        let raw: Vec<&str> = text.split('.').collect();
        if raw.iter().any(|c| c.is_empty()) {
            return Err(bad_freeze(format!(
                "pattern `{text}` has an empty component (two dots in a row, or a leading or trailing dot)"
            )));
        }
        let mut parts = Vec::with_capacity(raw.len());
        for component in hf_components(text) {
            let part = match component.split_once('-') {
                None => PatternPart::Exact(component.to_owned()),
                Some((a, b)) => match (layer_number(a), layer_number(b)) {
                    (Some(a), Some(b)) if a <= b => PatternPart::Range(a, b),
                    (Some(a), Some(b)) => {
                        return Err(bad_freeze(format!(
                            "pattern `{text}`: the range `{a}-{b}` is empty (write the smaller number first)"
                        )))
                    }
                    _ => {
                        return Err(bad_freeze(format!(
                            "pattern `{text}`: `{component}` is not a range of layer numbers (write `a-b` with integers a <= b)"
                        )))
                    }
                },
            };
            parts.push(part);
        }
        let whole_encoder = parts.is_empty();
        Ok(Self {
            text: text.to_owned(),
            parts,
            whole_encoder,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` (a HuggingFace parameter name) is selected.
    pub fn matches(&self, name: &str) -> bool {
        if self.whole_encoder {
            return name.split('.').next() == Some("bert");
        }
        let components = hf_components(name);
        components.len() >= self.parts.len()
            && self
                .parts
                .iter()
                .zip(&components)
                .all(|(part, c)| match part {
                    PatternPart::Exact(e) => e == c,
                    PatternPart::Range(a, b) => {
                        layer_number(c).is_some_and(|n| (*a..=*b).contains(&n))
                    }
                })
    }
}

impl std::fmt::Display for ParamPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks the layer settings of `hp`: `layer_lr_decay` must be in (0, 1] and
/// every `freeze` entry a valid [`ParamPattern`]; returns the parsed patterns.
/// [`crate::TrainConfig::validate`] and [`AdamW::new`] both call it, so a
/// fine-tuning configuration (which shares [`OptimizerConfig`]) is checked too.
pub fn layer_settings(hp: &OptimizerConfig) -> Result<Vec<ParamPattern>> {
    let d = hp.layer_lr_decay;
    if !(d > 0.0 && d <= 1.0) {
        return Err(Error::InvalidConfig {
            field: "optimizer.layer_lr_decay",
            problem: format!("must be in (0, 1] (1 turns it off), got {d}"),
        });
    }
    hp.freeze.iter().map(|p| ParamPattern::parse(p)).collect()
}

/// The encoder layer a HuggingFace name belongs to: `i` for
/// `[bert.]encoder.layer.i.*`.
fn encoder_layer(name: &str) -> Option<u64> {
    match hf_components(name).as_slice() {
        ["encoder", "layer", i, ..] => layer_number(i),
        _ => None,
    }
}

/// The number of encoder layers among `names`: one more than the largest `i`
/// of a `[bert.]encoder.layer.i.*` name, 0 when there is none.
pub fn num_layers<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names
        .into_iter()
        .filter_map(encoder_layer)
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

/// A parameter's depth for layer-wise learning-rate decay, by HuggingFace
/// name, in a model of `num_layers` encoder layers: `embeddings.*` 0,
/// `encoder.layer.i.*` i + 1, everything else (pooler, heads) `num_layers + 1`.
/// A leading `bert.` is ignored.
pub fn layer_depth(name: &str, num_layers: u64) -> u64 {
    let top = num_layers + 1;
    if hf_components(name).first() == Some(&"embeddings") {
        return 0;
    }
    encoder_layer(name).map_or(top, |i| (i + 1).min(top))
}

/// A parameter's learning rate as a fraction of the scheduled one under
/// layer-wise decay `decay`: `decay^(num_layers + 1 - depth)`, so the heads
/// train at the full rate, the top layer at `decay` times it and the
/// embeddings at `decay^(num_layers + 1)` times it.
pub fn layer_lr_scale(name: &str, num_layers: u64, decay: f64) -> f64 {
    let steps = num_layers + 1 - layer_depth(name, num_layers);
    decay.powi(i32::try_from(steps).unwrap_or(i32::MAX))
}

/// How many tensors and parameters train and how many are frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FreezeSummary {
    /// Tensors that train (a tensor registered under two names counts once).
    pub trainable_tensors: usize,
    /// Their elements.
    pub trainable_params: i64,
    /// Tensors that do not require gradients.
    pub frozen_tensors: usize,
    /// Their elements.
    pub frozen_params: i64,
}

/// The distinct first components of `names` (a leading `bert.` ignored), with
/// the encoder's layers shown as a range, for an error message.
fn available_prefixes<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    let layers = num_layers(names.iter().copied());
    let mut prefixes: BTreeSet<String> = BTreeSet::new();
    for name in &names {
        let first = hf_components(name).first().copied().unwrap_or_default();
        if first == "encoder" && layers > 0 {
            prefixes.insert(format!("encoder.layer.0-{}", layers - 1));
        } else {
            prefixes.insert(first.to_owned());
        }
    }
    prefixes.into_iter().collect::<Vec<_>>().join(", ")
}

/// Freezes the variables of `vs` that any of `patterns` ([`ParamPattern`])
/// selects: they stop requiring gradients, so [`AdamW::new`] leaves them out
/// of its buffers and they keep their values bit for bit. Returns the counts
/// of trainable and frozen tensors afterwards.
///
/// A pattern that selects no variable is an error naming it and listing the
/// prefixes there are (a typo must not silently train everything), and so is
/// a freeze that leaves nothing to train; in both cases no variable is
/// changed. The outcome depends only on the names, so a resumed run freezes
/// exactly what the original did. A tensor registered under several names is
/// frozen when any of them is selected. Freezing is never undone: a variable
/// that already did not require gradients stays so.
pub fn freeze(vs: &VarStore, patterns: &[String]) -> Result<FreezeSummary> {
    let patterns: Vec<ParamPattern> = patterns
        .iter()
        .map(|p| ParamPattern::parse(p))
        .collect::<Result<_>>()?;
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for p in &patterns {
        if !vars.iter().any(|(n, _)| p.matches(n)) {
            return Err(bad_freeze(format!(
                "pattern `{p}` matches no parameter; the parameters start with: {}",
                available_prefixes(vars.iter().map(|(n, _)| n.as_str()))
            )));
        }
    }
    let selected = |name: &str, t: &Tensor| -> bool {
        patterns.iter().any(|p| p.matches(name)) || !t.requires_grad()
    };
    let frozen_ptrs: HashSet<usize> = vars
        .iter()
        .filter(|(n, t)| selected(n, t))
        .map(|(_, t)| t.data_ptr() as usize)
        .collect();
    let mut summary = FreezeSummary::default();
    let mut counted = HashSet::new();
    for (name, t) in &vars {
        let ptr = t.data_ptr() as usize;
        if !counted.insert(ptr) {
            continue;
        }
        let numel = i64::try_from(t.numel())
            .map_err(|_| Error::DataMismatch(format!("{name} too large")))?;
        if frozen_ptrs.contains(&ptr) {
            summary.frozen_tensors += 1;
            summary.frozen_params += numel;
        } else {
            summary.trainable_tensors += 1;
            summary.trainable_params += numel;
        }
    }
    if !patterns.is_empty() && summary.trainable_tensors == 0 {
        return Err(bad_freeze(format!(
            "[{}] freezes every parameter: nothing would train",
            patterns
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (_, t) in &vars {
        if t.requires_grad() && frozen_ptrs.contains(&(t.data_ptr() as usize)) {
            let _ = t.f_set_requires_grad(false)?;
        }
    }
    Ok(summary)
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
    /// Per-element learning-rate scale (layer-wise decay); `None` when every
    /// scale is 1, which keeps the update exactly as without the setting.
    lr_scale: Option<Tensor>,
    n_decay: i64,
    step: u64,
    hp: OptimizerConfig,
    frozen: FreezeSummary,
}

impl AdamW {
    /// Takes over every trainable variable of `vs` (they become views into one buffer).
    ///
    /// First the variables that `hp.freeze` selects are frozen ([`freeze`]):
    /// they are left out of the buffers and never change. With
    /// `hp.layer_lr_decay` below 1 every slot gets its [`layer_lr_scale`]
    /// (the layer count is read from the names of all of `vs`'s variables).
    /// Both depend only on the names, so every run with the same settings,
    /// and its resumption, lays out the same buffers.
    ///
    /// Build the optimiser after the model and before the first forward pass;
    /// loading weights later must copy into the existing variables (in place).
    pub fn new(vs: &VarStore, hp: &OptimizerConfig) -> Result<Self> {
        layer_settings(hp)?;
        let frozen = freeze(vs, &hp.freeze)?;
        let all_names: Vec<String> = vs.variables().into_keys().collect();
        let layers = num_layers(all_names.iter().map(String::as_str));
        let decay = hp.layer_lr_decay;
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
                lr_scale: if decay < 1.0 {
                    layer_lr_scale(name, layers, decay)
                } else {
                    1.0
                },
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
        let lr_scale = if slots.iter().any(|s| s.lr_scale != 1.0) {
            let scale = Tensor::f_ones([total], opts)?;
            for s in &slots {
                let _ = scale.f_narrow(0, s.offset, s.numel)?.f_fill_(s.lr_scale)?;
            }
            Some(scale)
        } else {
            None
        };
        Ok(Self {
            lr_scale,
            frozen,
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

    /// How many tensors and parameters train and how many are frozen
    /// (`[optimizer] freeze`, counted when the optimiser was built).
    pub fn freeze_summary(&self) -> FreezeSummary {
        self.frozen
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
    ///
    /// Under layer-wise decay each parameter's learning rate is `lr` times its
    /// slot's `lr_scale`, for the Adam update and for the decoupled weight
    /// decay alike (`p *= 1 - lr * lr_scale * weight_decay`): four more
    /// element-wise operations with the scale tensor.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let hp = &self.hp;
        let t = (self.step + 1) as i32;
        let bc1 = 1.0 - hp.beta1.powi(t);
        let bc2_sqrt = (1.0 - hp.beta2.powi(t)).sqrt();
        tch::no_grad(|| -> Result<()> {
            if hp.weight_decay > 0.0 && self.n_decay > 0 {
                let mut decayed = self.params.f_narrow(0, 0, self.n_decay)?;
                match &self.lr_scale {
                    None => {
                        let _ = decayed.f_mul_scalar_(1.0 - lr * hp.weight_decay)?;
                    }
                    Some(scale) => {
                        // The scratch buffer is free until the second moment below.
                        let mut factor = self.scratch.f_narrow(0, 0, self.n_decay)?;
                        let _ = scale
                            .f_narrow(0, 0, self.n_decay)?
                            .f_mul_scalar_out(&factor, -lr * hp.weight_decay)?;
                        let _ = factor.f_add_scalar_(1.0)?;
                        let _ = decayed.f_mul_(&factor)?;
                    }
                }
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
            if let Some(scale) = &self.lr_scale {
                // Dividing the denominator by the scale multiplies the step by it.
                let _ = self.scratch.f_div_(scale)?;
            }
            let _ = self.params.f_addcdiv_(&self.exp_avg, &self.scratch)?;
            Ok(())
        })?;
        self.step += 1;
        Ok(())
    }

    /// Makes the step count `n` (a rank of a data-parallel run takes rank 0's).
    pub fn set_steps_taken(&mut self, n: u64) {
        self.step = n;
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
                "the optimiser's parameter layout differs from the model's (a different model, \
                 or different `optimizer.freeze` or `optimizer.layer_lr_decay` settings)"
                    .into(),
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
            freeze: Vec::new(),
            layer_lr_decay: 1.0,
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
    fn freeze_patterns_match_whole_components_and_ignore_the_bert_prefix() -> Result<()> {
        let p = |t: &str| ParamPattern::parse(t);
        let query = "bert.encoder.layer.3.attention.self.query.weight";
        assert!(p("encoder.layer.0-5")?.matches(query));
        assert!(p("bert.encoder.layer.3")?.matches(query));
        assert!(p("encoder.layer.3.attention.self.query.weight")?.matches(query));
        assert!(!p("encoder.layer.4-5")?.matches(query));
        assert!(!p("encoder.layer.0-2")?.matches(query));
        // Whole components: layer 1 is not layer 10, nor a prefix of a word.
        let ten = "bert.encoder.layer.10.output.dense.weight";
        assert!(!p("encoder.layer.1")?.matches(ten));
        assert!(p("encoder.layer.10")?.matches(ten));
        assert!(p("encoder.layer.9-11")?.matches(ten));
        assert!(!p("encoder.lay")?.matches(ten));
        // A range matches integers only.
        assert!(!p("encoder.layer.0-5")?.matches("bert.encoder.layers.x.weight"));
        assert!(p("embeddings")?.matches("bert.embeddings.word_embeddings.weight"));
        assert!(p("embeddings")?.matches("embeddings.LayerNorm.weight"));
        assert!(!p("embeddings")?.matches("cls.predictions.bias"));
        let head = p("cls.predictions")?;
        assert!(head.matches("cls.predictions.bias"));
        assert!(head.matches("cls.predictions.transform.dense.weight"));
        assert!(!head.matches("cls.seq_relationship.weight"));
        // A pattern longer than the name does not match it.
        assert!(!p("cls.predictions.bias.x")?.matches("cls.predictions.bias"));
        // `bert` alone is the encoder, not the heads.
        let encoder = p("bert")?;
        assert!(encoder.matches(query));
        assert!(encoder.matches("bert.pooler.dense.bias"));
        assert!(!encoder.matches("cls.predictions.bias"));
        assert_eq!(head.as_str(), "cls.predictions");
        Ok(())
    }

    #[test]
    fn malformed_freeze_patterns_are_refused_naming_them() {
        for (bad, says) in [
            ("", "empty pattern"),
            ("encoder..layer", "empty component"),
            (".embeddings", "empty component"),
            ("embeddings.", "empty component"),
            ("encoder.layer.5-2", "`5-2` is empty"),
            ("encoder.layer.a-b", "`a-b` is not a range"),
            ("encoder.layer.-1", "`-1` is not a range"),
            ("encoder.layer.1-", "`1-` is not a range"),
        ] {
            let err = ParamPattern::parse(bad).expect_err(bad);
            let Error::InvalidConfig { field, problem } = &err else {
                panic!("{bad}: {err}")
            };
            assert_eq!(*field, "optimizer.freeze");
            assert!(problem.contains(says), "{bad}: {problem}");
        }
    }

    #[test]
    fn layer_depths_and_scales_follow_hf_names() {
        let names = [
            "bert.embeddings.word_embeddings.weight",
            "bert.encoder.layer.0.attention.self.query.weight",
            "bert.encoder.layer.11.output.LayerNorm.bias",
            "bert.pooler.dense.weight",
            "cls.predictions.bias",
        ];
        let l = num_layers(names);
        assert_eq!(l, 12);
        assert_eq!(num_layers(["cls.predictions.bias"]), 0);
        let depths: Vec<u64> = names.iter().map(|n| layer_depth(n, l)).collect();
        assert_eq!(depths, [0, 1, 12, 13, 13]);
        // Without the `bert.` prefix (a bare encoder) the depths are the same.
        assert_eq!(layer_depth("encoder.layer.4.output.dense.weight", l), 5);
        assert_eq!(layer_depth("embeddings.LayerNorm.weight", l), 0);
        let d = 0.8f64;
        assert_eq!(layer_lr_scale("cls.predictions.bias", l, d), 1.0);
        assert_eq!(layer_lr_scale(names[2], l, d), 0.8);
        assert!((layer_lr_scale(names[1], l, d) - d.powi(12)).abs() < 1e-15);
        assert!((layer_lr_scale(names[0], l, d) - d.powi(13)).abs() < 1e-15);
        assert_eq!(layer_lr_scale(names[0], l, 1.0), 1.0);
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        for decay in [0.0, -0.5, 1.5, f64::NAN] {
            let err = layer_settings(&OptimizerConfig {
                layer_lr_decay: decay,
                ..hp()
            })
            .expect_err("out of range");
            assert!(
                matches!(
                    err,
                    Error::InvalidConfig {
                        field: "optimizer.layer_lr_decay",
                        ..
                    }
                ),
                "{decay}: {err}"
            );
        }
        let ok = layer_settings(&OptimizerConfig {
            layer_lr_decay: 0.5,
            freeze: vec!["embeddings".into(), "encoder.layer.0-1".into()],
            ..hp()
        });
        assert_eq!(ok.map(|p| p.len()).ok(), Some(2));
    }

    /// A store with BERT's naming: embeddings, two layers, a head.
    fn layered_store() -> (VarStore, Vec<String>) {
        let vs = VarStore::new(Device::Cpu);
        let names = [
            "bert.embeddings.word_embeddings",
            "bert.encoder.layer.0.dense",
            "bert.encoder.layer.1.dense",
            "cls.predictions.dense",
        ];
        for n in names {
            let mut p = vs.root();
            for c in n.split('.') {
                p = p / c;
            }
            let _ = tch::nn::linear(p, 3, 3, Default::default());
        }
        (vs, names.iter().map(|n| format!("{n}.weight")).collect())
    }

    #[test]
    fn freeze_refuses_unknown_patterns_and_freezing_everything_untouched() -> Result<()> {
        let (vs, _) = layered_store();
        let err = freeze(&vs, &["encoder.layr.0".into()]).expect_err("a typo");
        let msg = err.to_string();
        assert!(msg.contains("`encoder.layr.0`"), "{msg}");
        assert!(
            msg.contains("cls, embeddings, encoder.layer.0-1"),
            "the available prefixes are listed: {msg}"
        );
        let err = freeze(&vs, &["bert".into(), "cls".into()]).expect_err("everything");
        assert!(err.to_string().contains("nothing would train"), "{err}");
        // Neither error froze anything.
        assert!(vs.variables().values().all(Tensor::requires_grad));
        let summary = freeze(&vs, &["encoder.layer.0-1".into()])?;
        assert_eq!(
            summary,
            FreezeSummary {
                trainable_tensors: 4,
                trainable_params: 24,
                frozen_tensors: 4,
                frozen_params: 24,
            }
        );
        for (name, t) in vs.variables() {
            assert_eq!(t.requires_grad(), !name.contains("encoder"), "{name}");
        }
        Ok(())
    }

    #[test]
    fn frozen_variables_are_left_out_of_the_buffers() -> Result<()> {
        let (vs, _) = layered_store();
        let opt = AdamW::new(
            &vs,
            &OptimizerConfig {
                freeze: vec!["bert.embeddings".into()],
                ..hp()
            },
        )?;
        assert_eq!(opt.num_params(), 3 * 12);
        assert!(opt.slots().iter().all(|s| !s.name.contains("embeddings")));
        assert_eq!(opt.freeze_summary().frozen_tensors, 2);
        Ok(())
    }

    /// With no gradient, a step is the decoupled weight decay alone, at each
    /// parameter's own learning rate.
    #[test]
    fn layer_decay_scales_the_decoupled_weight_decay() -> Result<()> {
        let (vs, names) = layered_store();
        let before: Vec<Tensor> = names
            .iter()
            .map(|n| vs.variables()[n].detach().copy())
            .collect();
        let (lr, wd, decay) = (0.1, 0.5, 0.5);
        let mut opt = AdamW::new(
            &vs,
            &OptimizerConfig {
                weight_decay: wd,
                layer_lr_decay: decay,
                ..hp()
            },
        )?;
        let scales: Vec<f64> = names
            .iter()
            .map(|n| {
                opt.slots()
                    .iter()
                    .find(|s| &s.name == n)
                    .map_or(f64::NAN, |s| s.lr_scale)
            })
            .collect();
        // Embeddings, layer 0, layer 1 (the top), head: decay^3, ^2, ^1, 1.
        assert_eq!(scales, [0.125, 0.25, 0.5, 1.0]);
        opt.step(lr)?;
        for ((name, old), scale) in names.iter().zip(&before).zip(&scales) {
            let now = vs.variables()[name].detach();
            let expected = old * (1.0 - lr * scale * wd);
            let diff = (&now - &expected).abs().max().double_value(&[]);
            assert!(diff < 1e-7, "{name}: off by {diff}");
            assert!(
                (&now - old).abs().max().double_value(&[]) > 1e-4,
                "{name} decayed"
            );
        }
        Ok(())
    }

    #[test]
    fn slots_saved_before_layer_decay_still_load() -> Result<()> {
        let old = r#"{"name":"dense.weight","shape":[2,3],"offset":0,"numel":6,"decay":true}"#;
        let slot: ParamSlot =
            serde_json::from_str(old).map_err(|e| Error::DataMismatch(e.to_string()))?;
        assert_eq!(slot.lr_scale, 1.0);
        // An unscaled slot is written as before; a scaled one keeps its scale.
        let back = serde_json::to_string(&slot).map_err(|e| Error::DataMismatch(e.to_string()))?;
        assert_eq!(back, old);
        let scaled = ParamSlot {
            lr_scale: 0.25,
            ..slot
        };
        let text =
            serde_json::to_string(&scaled).map_err(|e| Error::DataMismatch(e.to_string()))?;
        assert!(text.contains(r#""lr_scale":0.25"#), "{text}");
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

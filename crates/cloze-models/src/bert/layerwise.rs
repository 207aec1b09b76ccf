//! The encoder one layer at a time, showing the input of every linear layer:
//! what one-shot compression (SparseGPT, GPTQ) calibrates on. A pass embeds
//! the calibration batches once ([`BertModel::layerwise_start`]), then for
//! each layer in order records the inputs of its linear layers, changes their
//! weights, and runs the changed layer ([`BertModel::layerwise_step`]) to
//! get the next layer's inputs.

use tch::Tensor;

use super::layers::Linear;
use super::model::BertModel;
use super::MlmInput;
use crate::{Error, Result};

/// A linear layer of an encoder layer, by its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinearSite {
    /// `attention.self.query`.
    Query,
    /// `attention.self.key`.
    Key,
    /// `attention.self.value`.
    Value,
    /// `attention.output.dense`.
    AttentionOutput,
    /// `intermediate.dense`.
    Intermediate,
    /// `output.dense`.
    Output,
}

impl LinearSite {
    /// Every site, in the order the layer applies them.
    pub const ALL: [LinearSite; 6] = [
        LinearSite::Query,
        LinearSite::Key,
        LinearSite::Value,
        LinearSite::AttentionOutput,
        LinearSite::Intermediate,
        LinearSite::Output,
    ];

    /// HF's name of the module under `encoder.layer.{i}`.
    pub fn hf_name(self) -> &'static str {
        match self {
            LinearSite::Query => "attention.self.query",
            LinearSite::Key => "attention.self.key",
            LinearSite::Value => "attention.self.value",
            LinearSite::AttentionOutput => "attention.output.dense",
            LinearSite::Intermediate => "intermediate.dense",
            LinearSite::Output => "output.dense",
        }
    }
}

/// A batch between two encoder layers: its hidden states and the attention
/// bias (padding, 3-D mask, relative positions) every layer applies.
#[derive(Debug)]
pub struct LayerwiseState {
    /// Hidden states `[B, L, H]` entering the next layer.
    pub hidden: Tensor,
    bias: Option<Tensor>,
}

impl BertModel {
    /// Encoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The linear layer at `site` of encoder layer `layer` (its weight is the
    /// model's variable: changing it in place changes the model).
    pub fn layer_linear(&self, layer: usize, site: LinearSite) -> Result<&Linear> {
        let l = self.layers.get(layer).ok_or(Error::NoSuchLayer {
            layer,
            layers: self.layers.len(),
        })?;
        Ok(l.linear(site))
    }

    /// Embeds `input` (eval mode) and builds its attention bias: the state
    /// before layer 0.
    pub fn layerwise_start(&self, input: &MlmInput) -> Result<LayerwiseState> {
        input.validate(&self.config)?;
        let hidden = self.embeddings.forward_t(input, false)?;
        let bias = self.attention_bias(input, hidden.kind())?;
        Ok(LayerwiseState { hidden, bias })
    }

    /// Runs encoder layer `layer` (eval mode) on `state`, calling `probe`
    /// with the input of each linear layer before it is applied; returns the
    /// state after the layer. Running every layer in order gives the
    /// encoder's output.
    pub fn layerwise_step(
        &self,
        layer: usize,
        state: &LayerwiseState,
        probe: &mut dyn FnMut(LinearSite, &Tensor) -> Result<()>,
    ) -> Result<LayerwiseState> {
        let l = self.layers.get(layer).ok_or(Error::NoSuchLayer {
            layer,
            layers: self.layers.len(),
        })?;
        let hidden = l.forward_probed(&state.hidden, state.bias.as_ref(), probe)?;
        Ok(LayerwiseState {
            hidden,
            bias: state.bias.as_ref().map(Tensor::shallow_clone),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BertConfig;
    use tch::{Device, Kind};

    #[test]
    fn stepping_through_the_layers_is_the_encoder_and_shows_every_input() -> Result<()> {
        let _rng = crate::rng_lock();
        tch::manual_seed(3);
        let config = BertConfig {
            hidden_size: 16,
            num_attention_heads: 2,
            intermediate_size: 40,
            num_hidden_layers: 3,
            vocab_size: 50,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            ..BertConfig::default()
        };
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let bert = BertModel::new(&vs.root(), &config)?;
        let ids = Tensor::f_randint(50, [2, 7], (Kind::Int64, Device::Cpu))?;
        let input = MlmInput::new(ids).with_attention_mask(
            Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]).view([2, 7]),
        );
        let whole = bert.forward_t(&input, false)?.last_hidden_state;
        let mut state = bert.layerwise_start(&input)?;
        let mut seen = Vec::new();
        for layer in 0..bert.num_layers() {
            state = bert.layerwise_step(layer, &state, &mut |site, x| {
                seen.push((layer, site, x.size()));
                Ok(())
            })?;
        }
        let diff = whole
            .f_sub(&state.hidden)?
            .f_abs()?
            .f_max()?
            .f_double_value(&[])?;
        assert!(
            diff < 1e-5,
            "layer by layer differs from the encoder by {diff}"
        );
        assert_eq!(seen.len(), 3 * 6);
        for (i, (layer, site, size)) in seen.iter().enumerate() {
            assert_eq!(*layer, i / 6);
            assert_eq!(*site, LinearSite::ALL[i % 6]);
            let width = if *site == LinearSite::Output { 40 } else { 16 };
            assert_eq!(size, &vec![2, 7, width], "{site:?}");
            // The probed input has the width of the weight's input side.
            let w = bert.layer_linear(*layer, *site)?.weight();
            assert_eq!(w.size()[1], width);
        }
        assert!(bert.layer_linear(3, LinearSite::Query).is_err());
        assert_eq!(LinearSite::Intermediate.hf_name(), "intermediate.dense");
        Ok(())
    }
}

//! The sentence-pair head (`cls.seq_relationship`): next-sentence prediction in
//! HF's `BertForPreTraining` and `BertForNextSentencePrediction`, and sentence-order
//! prediction (ALBERT's SOP) with the same two-way layer.

use tch::nn::Path;
use tch::Tensor;

use super::HeadSpec;
use crate::bert::Linear;
use crate::{BertConfig, Result};

/// `Linear(H, 2)` over the pooler output.
#[derive(Debug)]
pub struct PairHead {
    linear: Linear,
}

impl PairHead {
    /// Its row of the head table.
    pub const SPEC: HeadSpec = HeadSpec {
        name: "pair (NSP/SOP)",
        prefix: "cls.seq_relationship",
        architecture: "BertForNextSentencePrediction",
        pooler: true,
        variables: |c| Ok(vec![("weight", vec![2, c.hidden_size]), ("bias", vec![2])]),
        derived: &[],
        aliases: &[],
    };

    /// Creates `cls.seq_relationship.{weight,bias}` under `root` (the model's path).
    pub fn new(root: &Path, config: &BertConfig) -> Result<Self> {
        Ok(PairHead {
            linear: Linear::new(&Self::SPEC.path(root), config.hidden_size, 2, config)?,
        })
    }

    /// `[B, H]` pooler output -> `[B, 2]` logits (HF's NSP labels: class 0 means
    /// the second segment follows the first).
    pub fn forward(&self, pooled: &Tensor) -> Result<Tensor> {
        crate::precision::to_fp32(&self.linear.forward(pooled)?)
    }
}

//! Token classification (`classifier` over every token's state): HF's
//! `BertForTokenClassification` (named-entity recognition, tagging).

use tch::nn::Path;
use tch::Tensor;

use super::{ClassifierLayer, HeadSpec};
use crate::{BertConfig, BertModel, MlmInput, Result};

/// Sequence output -> dropout -> `classifier` `Linear(H, num_labels)`.
#[derive(Debug)]
pub struct TokenClassificationHead {
    layer: ClassifierLayer,
}

impl TokenClassificationHead {
    /// Its row of the head table: the same keys as the sequence classifier's, on an
    /// encoder without a pooler (which is how a saved model tells them apart).
    pub const SPEC: HeadSpec = HeadSpec {
        name: "token classification",
        prefix: "classifier",
        architecture: "BertForTokenClassification",
        pooler: false,
        variables: ClassifierLayer::variables,
        derived: &[],
        aliases: &[],
    };

    /// Creates `classifier.{weight,bias}` under `root` (the model's path); the
    /// dropout is [`BertConfig::classifier_dropout`].
    pub fn new(root: &Path, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            layer: ClassifierLayer::new(&Self::SPEC.path(root), config)?,
        })
    }

    /// The number of classes.
    pub fn num_labels(&self) -> i64 {
        self.layer.num_labels()
    }

    /// `[B, L, H]` hidden states -> `[B, L, num_labels]` logits; `train` switches
    /// dropout on.
    pub fn forward_t(&self, hidden: &Tensor, train: bool) -> Result<Tensor> {
        self.layer.forward_t(hidden, train)
    }
}

/// The encoder without a pooler (`bert.*`) and a [`TokenClassificationHead`]
/// (`classifier.*`): HF's `BertForTokenClassification`, key for key.
#[derive(Debug)]
pub struct BertForTokenClassification {
    bert: BertModel,
    head: TokenClassificationHead,
}

impl BertForTokenClassification {
    /// Builds the model under `p` (normally `vs.root()`).
    pub fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        let bert = BertModel::new_without_pooler(&(p / "bert"), config)?;
        let head = TokenClassificationHead::new(p, config)?;
        Ok(BertForTokenClassification { bert, head })
    }

    /// The encoder.
    pub fn bert(&self) -> &BertModel {
        &self.bert
    }

    /// The head.
    pub fn head(&self) -> &TokenClassificationHead {
        &self.head
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        self.bert.config()
    }

    /// `[B, L, num_labels]` logits (padding positions included); `train` switches
    /// dropout on.
    pub fn forward_t(&self, input: &MlmInput, train: bool) -> Result<Tensor> {
        let out = self.bert.forward_t(input, train)?;
        self.head.forward_t(&out.last_hidden_state, train)
    }
}

impl crate::QuantizeInt8 for BertForTokenClassification {
    /// Packs the encoder's linears (the small output layer stays fp32).
    fn quantize_int8(&mut self, smoothing: Option<&crate::Int8Smoothing>) -> crate::Result<usize> {
        self.bert.quantize_int8(smoothing)
    }
}

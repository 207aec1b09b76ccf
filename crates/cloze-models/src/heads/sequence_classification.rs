//! Sequence classification (`classifier` over the pooler output): HF's
//! `BertForSequenceClassification`.

use tch::nn::Path;
use tch::Tensor;

use super::{ClassifierLayer, HeadSpec};
use crate::{BertConfig, BertModel, Error, MlmInput, Result};

/// Pooler output -> dropout -> `classifier` `Linear(H, num_labels)`.
#[derive(Debug)]
pub struct SequenceClassificationHead {
    layer: ClassifierLayer,
}

impl SequenceClassificationHead {
    /// Its row of the head table; `num_labels` comes from the config
    /// ([`BertConfig::num_labels`]).
    pub const SPEC: HeadSpec = HeadSpec {
        name: "sequence classification",
        prefix: "classifier",
        architecture: "BertForSequenceClassification",
        pooler: true,
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

    /// `[B, H]` pooler output -> `[B, num_labels]` logits; `train` switches dropout on.
    pub fn forward_t(&self, pooled: &Tensor, train: bool) -> Result<Tensor> {
        self.layer.forward_t(pooled, train)
    }
}

/// The encoder with its pooler (`bert.*`) and a [`SequenceClassificationHead`]
/// (`classifier.*`): HF's `BertForSequenceClassification`, key for key.
#[derive(Debug)]
pub struct BertForSequenceClassification {
    bert: BertModel,
    head: SequenceClassificationHead,
}

impl BertForSequenceClassification {
    /// Builds the model under `p` (normally `vs.root()`).
    pub fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        let bert = BertModel::new(&(p / "bert"), config)?;
        let head = SequenceClassificationHead::new(p, config)?;
        Ok(BertForSequenceClassification { bert, head })
    }

    /// The encoder.
    pub fn bert(&self) -> &BertModel {
        &self.bert
    }

    /// The head.
    pub fn head(&self) -> &SequenceClassificationHead {
        &self.head
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        self.bert.config()
    }

    /// `[B, num_labels]` logits; `train` switches dropout on.
    pub fn forward_t(&self, input: &MlmInput, train: bool) -> Result<Tensor> {
        let out = self.bert.forward_t(input, train)?;
        let pooled = out.pooler_output.ok_or(Error::NoPooler {
            head: SequenceClassificationHead::SPEC.name,
        })?;
        self.head.forward_t(&pooled, train)
    }
}

impl crate::QuantizeInt8 for BertForSequenceClassification {
    /// Packs the encoder's linears (the small output layer stays fp32).
    fn quantize_int8(&mut self, smoothing: Option<&crate::Int8Smoothing>) -> crate::Result<usize> {
        self.bert.quantize_int8(smoothing)
    }
}

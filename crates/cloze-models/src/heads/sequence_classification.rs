//! Sequence classification (`classifier` over the pooler output): HF's
//! `BertForSequenceClassification`.

use tch::nn::Path;
use tch::Tensor;

use super::HeadSpec;
use crate::bert::{dropout, Linear};
use crate::{BertConfig, BertModel, Error, MlmInput, Result};

/// Pooler output -> dropout -> `classifier` `Linear(H, num_labels)`.
#[derive(Debug)]
pub struct SequenceClassificationHead {
    classifier: Linear,
    dropout: f64,
    num_labels: i64,
}

impl SequenceClassificationHead {
    /// Its row of the head table; `num_labels` comes from the config
    /// ([`BertConfig::num_labels`]).
    pub const SPEC: HeadSpec = HeadSpec {
        name: "sequence classification",
        prefix: "classifier",
        architecture: "BertForSequenceClassification",
        pooler: true,
        variables: |c| {
            let n = c.num_labels()?;
            Ok(vec![("weight", vec![n, c.hidden_size]), ("bias", vec![n])])
        },
        derived: &[],
        aliases: &[],
    };

    /// Creates `classifier.{weight,bias}` under `root` (the model's path); the
    /// dropout is [`BertConfig::classifier_dropout`].
    pub fn new(root: &Path, config: &BertConfig) -> Result<Self> {
        let num_labels = config.num_labels()?;
        Ok(SequenceClassificationHead {
            classifier: Linear::new(
                &Self::SPEC.path(root),
                config.hidden_size,
                num_labels,
                config,
            )?,
            dropout: config.classifier_dropout()?,
            num_labels,
        })
    }

    /// The number of classes.
    pub fn num_labels(&self) -> i64 {
        self.num_labels
    }

    /// `[B, H]` pooler output -> `[B, num_labels]` logits; `train` switches dropout on.
    pub fn forward_t(&self, pooled: &Tensor, train: bool) -> Result<Tensor> {
        self.classifier
            .forward(&dropout(pooled, self.dropout, train)?)
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

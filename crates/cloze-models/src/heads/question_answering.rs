//! Extractive question answering (`qa_outputs`: a start and an end logit per
//! token): HF's `BertForQuestionAnswering`.

use tch::nn::Path;
use tch::Tensor;

use super::HeadSpec;
use crate::bert::Linear;
use crate::{BertConfig, BertModel, Error, MlmInput, Result};

/// Span logits: where the answer starts and where it ends.
#[derive(Debug)]
pub struct QaLogits {
    /// `[B, L]`.
    pub start_logits: Tensor,
    /// `[B, L]`.
    pub end_logits: Tensor,
}

/// `qa_outputs` `Linear(H, 2)` over every token's state, split into start and end
/// logits. HF sizes the layer by `num_labels` and then splits it in two, so a
/// config whose `num_labels` is not 2 is refused here rather than at the split.
#[derive(Debug)]
pub struct QuestionAnsweringHead {
    qa_outputs: Linear,
}

impl QuestionAnsweringHead {
    /// Its row of the head table.
    pub const SPEC: HeadSpec = HeadSpec {
        name: "question answering",
        prefix: "qa_outputs",
        architecture: "BertForQuestionAnswering",
        pooler: false,
        variables: |c| {
            check_two_labels(c)?;
            Ok(vec![("weight", vec![2, c.hidden_size]), ("bias", vec![2])])
        },
        derived: &[],
        aliases: &[],
    };

    /// Creates `qa_outputs.{weight,bias}` under `root` (the model's path).
    pub fn new(root: &Path, config: &BertConfig) -> Result<Self> {
        check_two_labels(config)?;
        Ok(QuestionAnsweringHead {
            qa_outputs: Linear::new(&Self::SPEC.path(root), config.hidden_size, 2, config)?,
        })
    }

    /// `[B, L, H]` hidden states -> start and end logits `[B, L]` each.
    pub fn forward(&self, hidden: &Tensor) -> Result<QaLogits> {
        let logits = crate::precision::to_fp32(&self.qa_outputs.forward(hidden)?)?;
        Ok(QaLogits {
            start_logits: logits.f_select(-1, 0)?.f_contiguous()?,
            end_logits: logits.f_select(-1, 1)?.f_contiguous()?,
        })
    }
}

fn check_two_labels(config: &BertConfig) -> Result<()> {
    match config.num_labels()? {
        2 => Ok(()),
        n => Err(Error::InvalidConfig {
            field: "num_labels",
            reason: format!("question answering needs 2 (start, end), got {n}"),
        }),
    }
}

/// The encoder without a pooler (`bert.*`) and a [`QuestionAnsweringHead`]
/// (`qa_outputs.*`): HF's `BertForQuestionAnswering`, key for key.
#[derive(Debug)]
pub struct BertForQuestionAnswering {
    bert: BertModel,
    head: QuestionAnsweringHead,
}

impl BertForQuestionAnswering {
    /// Builds the model under `p` (normally `vs.root()`).
    pub fn new(p: &Path, config: &BertConfig) -> Result<Self> {
        let bert = BertModel::new_without_pooler(&(p / "bert"), config)?;
        let head = QuestionAnsweringHead::new(p, config)?;
        Ok(BertForQuestionAnswering { bert, head })
    }

    /// The encoder.
    pub fn bert(&self) -> &BertModel {
        &self.bert
    }

    /// The head.
    pub fn head(&self) -> &QuestionAnsweringHead {
        &self.head
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        self.bert.config()
    }

    /// Start and end logits `[B, L]` (padding positions included; HF leaves masking
    /// them to the caller too). Question answering has no dropout after the encoder.
    pub fn forward_t(&self, input: &MlmInput, train: bool) -> Result<QaLogits> {
        let out = self.bert.forward_t(input, train)?;
        self.head.forward(&out.last_hidden_state)
    }
}

impl crate::QuantizeInt8 for BertForQuestionAnswering {
    /// Packs the encoder's linears (the small output layer stays fp32).
    fn quantize_int8(&mut self, smoothing: Option<&crate::Int8Smoothing>) -> crate::Result<usize> {
        self.bert.quantize_int8(smoothing)
    }
}

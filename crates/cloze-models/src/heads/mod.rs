//! Heads over the BERT encoder, and [`HEADS`], the table that drives their
//! checkpoint io.
//!
//! Each head kind is a module of its own: its [`HeadSpec`] (the HF checkpoint prefix,
//! the HF class it makes with the encoder, its variables and their shapes), the head
//! (`new(path, &config)` creating its variables under that prefix, `forward`), and,
//! for the fine-tuning heads, the HF model class it completes (for example
//! [`BertForSequenceClassification`]: the encoder at `bert.*` plus the head).
//!
//! [`crate::hf`] reads nothing head-specific but this table: which checkpoint keys
//! belong to a head rather than to the encoder, which of them are derived (the tied
//! decoder) and skipped, which are older aliases, what each head's load status is
//! ([`crate::LoadReport::heads`]), and which `architectures` a saved `config.json`
//! names. Adding a head is its module plus one line in [`HEADS`] (see
//! docs/ARCHITECTURE.md, "Adding a head").
//!
//! A head outside this crate needs no entry: the loader copies every checkpoint
//! tensor whose name is a variable, so a downstream head built from the public
//! blocks ([`crate::Linear`], [`crate::LayerNorm`], [`crate::dropout`],
//! [`crate::BertModel`]) saves and loads by name (see `tests/custom_head.rs`); the
//! table only adds the HF-specific rules and the report.

use tch::nn::Path;

use crate::{BertConfig, Result};

pub mod category;
pub mod masked_lm;
pub mod pair;
pub mod question_answering;
pub mod sequence_classification;
pub mod token_classification;

pub use category::CategoryHead;
pub use masked_lm::MlmHead;
pub use pair::PairHead;
pub use question_answering::{BertForQuestionAnswering, QaLogits, QuestionAnsweringHead};
pub use sequence_classification::{BertForSequenceClassification, SequenceClassificationHead};
pub use token_classification::{BertForTokenClassification, TokenClassificationHead};

/// The head table: every head this crate knows, keyed by its checkpoint prefix.
/// Two rows may share a prefix (HF's sequence and token classifiers are both
/// `classifier`); they then have the same variables and differ by their encoder
/// (with or without pooler) and their input.
pub const HEADS: &[HeadSpec] = &[
    MlmHead::SPEC,
    PairHead::SPEC,
    SequenceClassificationHead::SPEC,
    TokenClassificationHead::SPEC,
    QuestionAnsweringHead::SPEC,
    CategoryHead::SPEC,
];

/// A head's variables: `(name under the prefix, shape)` pairs.
pub type HeadVariables = Vec<(&'static str, Vec<i64>)>;

/// A head's row in [`HEADS`]: what the checkpoint io needs to know about it.
#[derive(Debug, Clone, Copy)]
pub struct HeadSpec {
    /// A short name for reports ("masked LM", "sequence classification").
    pub name: &'static str,
    /// The HF checkpoint prefix of the head's keys, without the trailing dot
    /// (`cls.predictions`); the head's variables are named `{prefix}.{variable}`
    /// at the model's root (no `bert.`).
    pub prefix: &'static str,
    /// The HF class that is the encoder plus this head alone, written to
    /// `config.json`'s `architectures` when a model with only this head is saved.
    pub architecture: &'static str,
    /// Whether that class's encoder has a pooler (`bert.pooler.dense.*`).
    pub pooler: bool,
    /// The head's variables for a config: names under `prefix` and shapes.
    pub variables: fn(&BertConfig) -> Result<HeadVariables>,
    /// Keys under `prefix` that HF checkpoints may hold but that are derived from
    /// other weights (the tied decoder), skipped on load and never saved.
    pub derived: &'static [&'static str],
    /// `(alias, canonical)` pairs under `prefix`: a checkpoint key `alias` loads
    /// into `canonical` when the checkpoint lacks `canonical`, and is skipped
    /// (reported as ignored) when it has both.
    pub aliases: &'static [(&'static str, &'static str)],
}

impl HeadSpec {
    /// The path of the head's variables under `root` (the model's path, normally
    /// `vs.root()`): `root / "cls" / "predictions"` for `cls.predictions`.
    pub fn path<'a>(&self, root: &Path<'a>) -> Path<'a> {
        self.prefix
            .split('.')
            .fold(root.clone(), |p, part| p.sub(part))
    }

    /// The part of a checkpoint key (without `bert.`) after this head's prefix and
    /// its dot, if the key is the head's.
    pub fn strip<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix)?.strip_prefix('.')
    }
}

/// Dropout then `classifier` `Linear(H, num_labels)`: the layer HF's sequence
/// and token classifiers share (they differ only in what they are given and in
/// their encoder's pooler). `num_labels` and the dropout come from the config.
#[derive(Debug)]
pub(crate) struct ClassifierLayer {
    linear: crate::bert::Linear,
    dropout: f64,
    num_labels: i64,
}

impl ClassifierLayer {
    /// The variables of a `classifier` row of [`HEADS`].
    pub(crate) fn variables(c: &BertConfig) -> Result<HeadVariables> {
        let n = c.num_labels()?;
        Ok(vec![("weight", vec![n, c.hidden_size]), ("bias", vec![n])])
    }

    /// Creates `weight` and `bias` under `path`.
    pub(crate) fn new(path: &Path, config: &BertConfig) -> Result<Self> {
        let num_labels = config.num_labels()?;
        Ok(Self {
            linear: crate::bert::Linear::new(path, config.hidden_size, num_labels, config)?,
            dropout: config.classifier_dropout()?,
            num_labels,
        })
    }

    pub(crate) fn num_labels(&self) -> i64 {
        self.num_labels
    }

    /// `[..., H]` -> `[..., num_labels]` fp32 logits; `train` switches dropout on.
    pub(crate) fn forward_t(&self, x: &tch::Tensor, train: bool) -> Result<tch::Tensor> {
        crate::precision::to_fp32(&self.linear.forward(&crate::bert::dropout(
            x,
            self.dropout,
            train,
        )?)?)
    }
}

/// The row of the head whose prefix `key` (a checkpoint key without `bert.`) is
/// under, and the rest of the key. Rows sharing a prefix share their key rules, so
/// the first is as good as any.
pub fn head_of_key(key: &str) -> Option<(&'static HeadSpec, &str)> {
    HEADS
        .iter()
        .find_map(|spec| spec.strip(key).map(|rest| (spec, rest)))
}

/// The distinct prefixes of [`HEADS`], in table order.
pub fn prefixes() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for spec in HEADS {
        if !out.contains(&spec.prefix) {
            out.push(spec.prefix);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tch::nn::VarStore;
    use tch::Device;

    use super::*;
    use crate::BertModel;

    fn config() -> BertConfig {
        let mut c = BertConfig {
            vocab_size: 50,
            hidden_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 20,
            ..BertConfig::default()
        };
        c.set_num_labels(3);
        c.code_category_size = Some(4);
        c
    }

    /// Builds the head of `spec` at the root of a fresh VarStore (the MLM head with
    /// a stand-in decoder) and returns its variables and shapes.
    fn built(spec: &HeadSpec, config: &BertConfig) -> BTreeMap<String, Vec<i64>> {
        let _rng = crate::rng_lock();
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        match spec.prefix {
            "cls.predictions" => {
                let enc = BertModel::new_without_pooler(&(&root / "bert"), config).unwrap();
                MlmHead::new(&root, config, enc.embeddings().word_embeddings()).map(|_| ())
            }
            "cls.seq_relationship" => PairHead::new(&root, config).map(|_| ()),
            "classifier" if spec.pooler => {
                SequenceClassificationHead::new(&root, config).map(|_| ())
            }
            "classifier" => TokenClassificationHead::new(&root, config).map(|_| ()),
            "qa_outputs" => QuestionAnsweringHead::new(&root, config).map(|_| ()),
            "cls.category" => CategoryHead::new(&root, config).map(|_| ()),
            other => panic!("a table row without a test: {other}"),
        }
        .unwrap();
        vs.variables()
            .into_iter()
            .filter_map(|(k, t)| spec.strip(&k).map(|rest| (rest.to_string(), t.size())))
            .collect()
    }

    /// The test config, with the two labels question answering insists on.
    fn config_for(spec: &HeadSpec) -> BertConfig {
        let mut c = config();
        if spec.prefix == "qa_outputs" {
            c.set_num_labels(2);
        }
        c
    }

    #[test]
    fn every_row_declares_exactly_the_variables_its_head_creates() {
        for spec in HEADS {
            let c = config_for(spec);
            let declared: BTreeMap<String, Vec<i64>> = (spec.variables)(&c)
                .unwrap()
                .into_iter()
                .map(|(k, s)| (k.to_string(), s))
                .collect();
            assert_eq!(declared, built(spec, &c), "{}", spec.name);
            for d in spec.derived {
                assert!(!declared.contains_key(*d), "{d} is derived, not a variable");
            }
            for (alias, canonical) in spec.aliases {
                assert!(declared.contains_key(*canonical), "{alias} -> {canonical}");
            }
        }
    }

    #[test]
    fn rows_that_share_a_prefix_share_their_key_rules() {
        for a in HEADS {
            let config = config_for(a);
            for b in HEADS.iter().filter(|b| b.prefix == a.prefix) {
                assert_eq!(
                    (a.variables)(&config).unwrap(),
                    (b.variables)(&config).unwrap()
                );
                assert_eq!(a.derived, b.derived);
                assert_eq!(a.aliases, b.aliases);
                // The pooler tells them apart when a model is saved.
                assert!(std::ptr::eq(a, b) || a.pooler != b.pooler);
            }
        }
        assert_eq!(
            prefixes(),
            [
                "cls.predictions",
                "cls.seq_relationship",
                "classifier",
                "qa_outputs",
                "cls.category"
            ]
        );
    }

    #[test]
    fn keys_are_split_at_the_prefix_and_its_dot_only() {
        let (spec, rest) = head_of_key("cls.predictions.transform.dense.weight").unwrap();
        assert_eq!(
            (spec.prefix, rest),
            ("cls.predictions", "transform.dense.weight")
        );
        assert_eq!(head_of_key("classifier.bias").unwrap().1, "bias");
        assert!(head_of_key("classifier_extra.bias").is_none());
        assert!(head_of_key("encoder.layer.0.output.dense.bias").is_none());
        let vs = VarStore::new(Device::Cpu);
        let p = MlmHead::SPEC.path(&vs.root());
        assert_eq!(p.components().collect::<Vec<_>>(), ["cls", "predictions"]);
    }
}

//! `BertConfig`: HuggingFace's `config.json` for BERT, read and written with HF's field names.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The activation functions HF configs name in `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Exact GELU, `x * Phi(x)` with the error function (HF `gelu`).
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU with the tanh approximation (HF `gelu_new`).
    #[serde(rename = "gelu_new")]
    GeluNew,
    /// The same tanh approximation under PyTorch's name.
    #[serde(rename = "gelu_pytorch_tanh")]
    GeluPytorchTanh,
    /// The same tanh approximation, HF's "fast" spelling.
    #[serde(rename = "gelu_fast")]
    GeluFast,
    /// `x * sigmoid(1.702 x)`.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Rectified linear unit.
    #[serde(rename = "relu")]
    Relu,
    /// `x * sigmoid(x)`.
    #[serde(rename = "silu")]
    Silu,
    /// Same as `silu`, older name.
    #[serde(rename = "swish")]
    Swish,
    /// Hyperbolic tangent.
    #[serde(rename = "tanh")]
    Tanh,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(self, xs: &tch::Tensor) -> Result<tch::Tensor> {
        Ok(match self {
            Activation::Gelu => xs.f_gelu("none")?,
            Activation::GeluNew | Activation::GeluPytorchTanh | Activation::GeluFast => {
                xs.f_gelu("tanh")?
            }
            Activation::QuickGelu => xs.f_mul(&xs.f_mul_scalar(1.702)?.f_sigmoid()?)?,
            Activation::Relu => xs.f_relu()?,
            Activation::Silu | Activation::Swish => xs.f_silu()?,
            Activation::Tanh => xs.f_tanh()?,
        })
    }
}

/// BERT hyper-parameters under HuggingFace `config.json` names.
///
/// Fields this crate does not interpret (`architectures`, `transformers_version`,
/// `use_cache`, ...) are kept in [`BertConfig::extra`] so that a read-then-write
/// round trip loses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    /// Rows of the word embedding table.
    pub vocab_size: i64,
    /// Width of every hidden state.
    pub hidden_size: i64,
    /// Number of encoder layers.
    pub num_hidden_layers: i64,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: i64,
    /// Width of the feed-forward block.
    pub intermediate_size: i64,
    /// Activation of the feed-forward block and of the MLM head transform.
    pub hidden_act: Activation,
    /// Dropout on embeddings and sub-layer outputs.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Rows of the position embedding table: the longest sequence the model accepts.
    pub max_position_embeddings: i64,
    /// Rows of the token-type (segment) embedding table.
    pub type_vocab_size: i64,
    /// Standard deviation of the normal initialisation.
    pub initializer_range: f64,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: f64,
    /// Padding token id; its word-embedding row starts at zero and gets no gradient.
    pub pad_token_id: Option<i64>,
    /// Only `"absolute"` is supported; kept so configs round-trip.
    pub position_embedding_type: String,
    /// HF's model type, `"bert"`.
    pub model_type: String,
    /// The HF classes this checkpoint is meant for; `save_pretrained` fills it in.
    pub architectures: Option<Vec<String>>,
    /// Buckets of the T5-style relative position bias of UniLM-v2 (Bao et al. 2020,
    /// arXiv 2002.12804), under the name microsoft/unilm's s2s-ft gives it in
    /// `config.json`; `None` or 0 leaves the bias out (plain BERT). s2s-ft's
    /// UniLM-v2 checkpoints use 32 buckets with [`BertConfig::max_rel_pos`] 128.
    /// When enabled the encoder gains one variable, `rel_pos_bias.weight`
    /// `[num_attention_heads, rel_pos_bins]`, shared by every layer (see
    /// [`crate::RelativePositionBias`]). Written back only when the file has it,
    /// so a plain BERT `config.json` round-trips unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rel_pos_bins: Option<i64>,
    /// The distance (in position ids) from which on every relative position
    /// shares the last logarithmic bucket (T5's `max_distance`; s2s-ft's
    /// `max_rel_pos`, 128 for UniLM-v2). Read only when
    /// [`BertConfig::rel_pos_bins`] is positive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rel_pos: Option<i64>,
    /// Rows of the role-embedding table of PLATO-style dialogue models
    /// (Bao et al., PLATO-2 and PLATO-XL; Knover's `role_type_size`, 128 in
    /// PLATO-XL): a learnt vector per speaker role added to the token,
    /// position and segment embeddings. `None` or 0 leaves the table out
    /// (plain BERT); when set the encoder gains `embeddings.role_embeddings.weight`
    /// `[role_type_size, hidden_size]`, which transformers' `BertModel` ignores
    /// on load. Written back only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_type_size: Option<i64>,
    /// Number of syntactic token categories of code-aware models (CugLM's
    /// type head, [`crate::CategoryHead`]); not an HF field, written back
    /// only when set, and ignored by transformers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_category_size: Option<i64>,
    /// Every other field of the file, written back unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for BertConfig {
    /// HF's `BertConfig()` defaults (bert-base-uncased sizes).
    fn default() -> Self {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
            position_embedding_type: "absolute".to_string(),
            model_type: "bert".to_string(),
            architectures: None,
            rel_pos_bins: None,
            max_rel_pos: None,
            role_type_size: None,
            code_category_size: None,
            extra: serde_json::Map::new(),
        }
    }
}

impl BertConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Serialises to pretty JSON with HF's field names.
    pub fn to_json_string(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            path: "config.json".into(),
            source,
        })
    }

    /// The relative position bias settings `(num_buckets, max_distance)` when
    /// [`BertConfig::rel_pos_bins`] is positive, `None` for plain BERT (absent
    /// or 0, as in s2s-ft). Call after [`BertConfig::validate`], which checks
    /// that the pair makes sense.
    pub fn relative_position(&self) -> Option<(i64, i64)> {
        match self.rel_pos_bins {
            Some(bins) if bins > 0 => Some((bins, self.max_rel_pos.unwrap_or(0))),
            _ => None,
        }
    }

    /// Per-head width, `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Number of output classes of a classification head, as transformers reads it:
    /// the length of `id2label` when the file has one, else `num_labels`, else 2
    /// (HF's default, for which transformers writes neither field). Both live in
    /// [`BertConfig::extra`].
    pub fn num_labels(&self) -> Result<i64> {
        let bad = |reason: String| Error::InvalidConfig {
            field: "num_labels",
            reason,
        };
        let n = match (self.extra.get("id2label"), self.extra.get("num_labels")) {
            (Some(serde_json::Value::Object(m)), _) => m.len() as i64,
            (Some(v), _) if !v.is_null() => {
                return Err(bad(format!("id2label must be an object, got {v}")))
            }
            (_, Some(v)) if !v.is_null() => v
                .as_i64()
                .ok_or_else(|| bad(format!("num_labels must be an integer, got {v}")))?,
            _ => 2,
        };
        if n <= 0 {
            return Err(bad(format!("{n} labels: a classifier needs at least one")));
        }
        Ok(n)
    }

    /// The number of token categories of a code-aware model
    /// ([`BertConfig::code_category_size`]), which must be positive.
    pub fn code_categories(&self) -> Result<i64> {
        match self.code_category_size {
            Some(n) if n > 0 => Ok(n),
            other => Err(Error::InvalidConfig {
                field: "code_category_size",
                reason: format!(
                    "{other:?}: a model with a token-category head needs a positive number of categories"
                ),
            }),
        }
    }

    /// Sets the number of classes the way transformers writes it: `id2label`
    /// (`{"0": "LABEL_0", ...}`) and `label2id`, replacing any `num_labels` field, so
    /// that what is saved loads in transformers with a classifier of the same shape.
    pub fn set_num_labels(&mut self, n: usize) {
        let names: Vec<String> = (0..n).map(|i| format!("LABEL_{i}")).collect();
        self.set_labels(&names);
    }

    /// Names the classes: `id2label` (`{"0": names[0], ...}`) and `label2id`,
    /// replacing any `num_labels` field, as transformers writes a config whose
    /// labels have names.
    pub fn set_labels(&mut self, names: &[String]) {
        let id2label = names
            .iter()
            .enumerate()
            .map(|(i, name)| (i.to_string(), serde_json::Value::from(name.as_str())))
            .collect();
        let label2id = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), serde_json::Value::from(i)))
            .collect();
        self.extra.remove("num_labels");
        self.extra
            .insert("id2label".into(), serde_json::Value::Object(id2label));
        self.extra
            .insert("label2id".into(), serde_json::Value::Object(label2id));
    }

    /// The class names in id order: `id2label`'s values when the file has it
    /// (its keys must be `0..n`), else `LABEL_i` for the [`Self::num_labels`]
    /// classes, as transformers names them.
    pub fn labels(&self) -> Result<Vec<String>> {
        let n = self.num_labels()?;
        let Some(serde_json::Value::Object(map)) = self.extra.get("id2label") else {
            return Ok((0..n).map(|i| format!("LABEL_{i}")).collect());
        };
        (0..n)
            .map(|i| match map.get(&i.to_string()) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(v) => Ok(v.to_string()),
                None => Err(Error::InvalidConfig {
                    field: "id2label",
                    reason: format!("has {n} entries but no key \"{i}\""),
                }),
            })
            .collect()
    }

    /// Dropout before a classification head's linear layer: `classifier_dropout` when
    /// the file sets it (a number), else `hidden_dropout_prob`, as in HF's
    /// `BertForSequenceClassification` and `BertForTokenClassification`.
    pub fn classifier_dropout(&self) -> Result<f64> {
        match self.extra.get("classifier_dropout") {
            None | Some(serde_json::Value::Null) => Ok(self.hidden_dropout_prob),
            Some(v) => match v.as_f64() {
                Some(p) if (0.0..1.0).contains(&p) => Ok(p),
                _ => Err(Error::InvalidConfig {
                    field: "classifier_dropout",
                    reason: format!("{v} is not a probability in [0, 1)"),
                }),
            },
        }
    }

    /// Checks every size and probability; models call this before creating variables.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (field, v) in positive {
            if v <= 0 {
                return Err(Error::InvalidConfig {
                    field,
                    reason: format!("{v} must be positive"),
                });
            }
        }
        if let Some(n) = self.role_type_size.filter(|&n| n < 0) {
            return Err(Error::InvalidConfig {
                field: "role_type_size",
                reason: format!("{n} must be 0 (no role embeddings) or positive"),
            });
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::InvalidConfig {
                field: "num_attention_heads",
                reason: format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            });
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::InvalidConfig {
                    field,
                    reason: format!("{p} is not in [0, 1)"),
                });
            }
        }
        if !self.initializer_range.is_finite() || self.initializer_range < 0.0 {
            return Err(Error::InvalidConfig {
                field: "initializer_range",
                reason: format!("{} must be finite and non-negative", self.initializer_range),
            });
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(Error::InvalidConfig {
                field: "layer_norm_eps",
                reason: format!("{} must be positive", self.layer_norm_eps),
            });
        }
        if let Some(pad) = self.pad_token_id {
            if pad < 0 || pad >= self.vocab_size {
                return Err(Error::InvalidConfig {
                    field: "pad_token_id",
                    reason: format!("{pad} is outside the vocabulary of {}", self.vocab_size),
                });
            }
        }
        self.validate_relative_position()?;
        if self.position_embedding_type != "absolute" {
            return Err(Error::InvalidConfig {
                field: "position_embedding_type",
                reason: format!(
                    "{:?} is not supported (only \"absolute\")",
                    self.position_embedding_type
                ),
            });
        }
        Ok(())
    }
}

impl BertConfig {
    /// The bucket function halves `rel_pos_bins` (one half per direction) and
    /// halves it again (`max_exact`: exact buckets for distances below it, then
    /// logarithmic ones up to `max_rel_pos`); it divides by `ln(max_rel_pos /
    /// max_exact)`. So it needs `max_exact >= 1` (at least 4 buckets) and
    /// `max_rel_pos > max_exact`, which s2s-ft never checks (it would compute
    /// NaN buckets). An odd count is accepted as s2s-ft accepts it (its last
    /// bucket is then never used).
    fn validate_relative_position(&self) -> Result<()> {
        let bins = self.rel_pos_bins.unwrap_or(0);
        let max = self.max_rel_pos.unwrap_or(0);
        if bins < 0 {
            return Err(Error::InvalidConfig {
                field: "rel_pos_bins",
                reason: format!("{bins} must be 0 (off) or at least 4"),
            });
        }
        if max < 0 {
            return Err(Error::InvalidConfig {
                field: "max_rel_pos",
                reason: format!("{max} must not be negative"),
            });
        }
        if bins == 0 {
            return Ok(());
        }
        if bins < 4 {
            return Err(Error::InvalidConfig {
                field: "rel_pos_bins",
                reason: format!(
                    "{bins} buckets: the bucket function needs at least 4 (2 per direction, \
                     of which half exact)"
                ),
            });
        }
        let max_exact = bins / 2 / 2;
        if max <= max_exact {
            return Err(Error::InvalidConfig {
                field: "max_rel_pos",
                reason: format!(
                    "{max} must exceed the {max_exact} exact buckets per direction that \
                     rel_pos_bins {bins} gives (s2s-ft uses 128 with 32 bins)"
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hf_names_and_keeps_unknown_fields() {
        let json = r#"{"vocab_size": 96, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu_new",
            "transformers_version": "5.24.0", "architectures": ["BertForPreTraining"]}"#;
        let c: BertConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.hidden_act, Activation::GeluNew);
        assert_eq!(c.max_position_embeddings, 512, "defaults fill the rest");
        assert_eq!(c.extra["transformers_version"], "5.24.0");
        let back: serde_json::Value = serde_json::from_str(&c.to_json_string().unwrap()).unwrap();
        assert_eq!(back["transformers_version"], "5.24.0");
        assert_eq!(back["hidden_act"], "gelu_new");
        assert_eq!(back["num_attention_heads"], 4);
    }

    #[test]
    fn num_labels_and_classifier_dropout_follow_transformers() {
        let c = BertConfig::default();
        assert_eq!(c.num_labels().unwrap(), 2, "HF's default writes no field");
        assert_eq!(c.classifier_dropout().unwrap(), 0.1);
        let c: BertConfig = serde_json::from_str(
            r#"{"id2label": {"0": "neg", "1": "neu", "2": "pos"}, "num_labels": 7,
                "classifier_dropout": 0.25}"#,
        )
        .unwrap();
        assert_eq!(
            c.num_labels().unwrap(),
            3,
            "id2label wins, as in transformers"
        );
        assert_eq!(c.classifier_dropout().unwrap(), 0.25);
        let c: BertConfig = serde_json::from_str(r#"{"num_labels": 5}"#).unwrap();
        assert_eq!(c.num_labels().unwrap(), 5);
        let mut c: BertConfig = serde_json::from_str(r#"{"num_labels": 5}"#).unwrap();
        c.set_num_labels(4);
        assert_eq!(c.num_labels().unwrap(), 4);
        let back: serde_json::Value = serde_json::from_str(&c.to_json_string().unwrap()).unwrap();
        assert_eq!(back["id2label"]["3"], "LABEL_3");
        assert_eq!(back["label2id"]["LABEL_0"], 0);
        assert!(back.get("num_labels").is_none());
        let mut named = BertConfig::default();
        named.set_labels(&["neg".to_string(), "pos".to_string()]);
        assert_eq!(named.labels().unwrap(), ["neg", "pos"]);
        assert_eq!(named.extra["label2id"]["pos"], 1);
        let gap: BertConfig =
            serde_json::from_str(r#"{"id2label": {"0": "a", "2": "c"}}"#).unwrap();
        assert!(gap.labels().is_err(), "keys must be 0..n");
        assert_eq!(
            BertConfig::default().labels().unwrap(),
            ["LABEL_0", "LABEL_1"]
        );
        for bad in [
            r#"{"num_labels": 0}"#,
            r#"{"num_labels": "x"}"#,
            r#"{"id2label": {}}"#,
            r#"{"id2label": [1]}"#,
        ] {
            let c: BertConfig = serde_json::from_str(bad).unwrap();
            assert!(c.num_labels().is_err(), "{bad}");
        }
        let c: BertConfig = serde_json::from_str(r#"{"classifier_dropout": 1.5}"#).unwrap();
        assert!(c.classifier_dropout().is_err());
    }

    #[test]
    fn rejects_bad_values() {
        let c = BertConfig {
            hidden_size: 30,
            num_attention_heads: 4,
            ..Default::default()
        };
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "num_attention_heads",
                ..
            })
        ));
        let c = BertConfig {
            pad_token_id: Some(99999),
            ..Default::default()
        };
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "pad_token_id",
                ..
            })
        ));
        assert!(serde_json::from_str::<BertConfig>(r#"{"hidden_act": "bogus"}"#).is_err());
    }

    #[test]
    fn relative_position_fields_round_trip_and_are_checked() {
        // Absent: plain BERT, and nothing new is written back.
        let plain: BertConfig = serde_json::from_str(r#"{"vocab_size": 96}"#).unwrap();
        assert_eq!(plain.relative_position(), None);
        let back: serde_json::Value =
            serde_json::from_str(&plain.to_json_string().unwrap()).unwrap();
        assert!(back.get("rel_pos_bins").is_none() && back.get("max_rel_pos").is_none());
        // s2s-ft writes both, 0 when off; they survive a round trip either way.
        let off: BertConfig =
            serde_json::from_str(r#"{"rel_pos_bins": 0, "max_rel_pos": 0}"#).unwrap();
        assert_eq!(off.relative_position(), None);
        assert!(off.validate().is_ok());
        let back: serde_json::Value = serde_json::from_str(&off.to_json_string().unwrap()).unwrap();
        assert_eq!(
            (back["rel_pos_bins"].clone(), back["max_rel_pos"].clone()),
            (0.into(), 0.into())
        );
        let on: BertConfig =
            serde_json::from_str(r#"{"rel_pos_bins": 32, "max_rel_pos": 128}"#).unwrap();
        assert!(on.validate().is_ok());
        assert_eq!(on.relative_position(), Some((32, 128)));
        assert!(
            on.extra.is_empty(),
            "parsed into the fields, not kept as extra"
        );
        let again: BertConfig = serde_json::from_str(&on.to_json_string().unwrap()).unwrap();
        assert_eq!(again, on);
        for (bins, max, field) in [
            (-1, 128, "rel_pos_bins"),
            (2, 128, "rel_pos_bins"),
            (32, 0, "max_rel_pos"),
            (32, 8, "max_rel_pos"),
            (0, -3, "max_rel_pos"),
        ] {
            let c = BertConfig {
                rel_pos_bins: Some(bins),
                max_rel_pos: Some(max),
                ..Default::default()
            };
            match c.validate() {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field, "{bins} {max}"),
                other => panic!("{bins} {max}: {other:?}"),
            }
        }
        let smallest = BertConfig {
            rel_pos_bins: Some(4),
            max_rel_pos: Some(2),
            ..Default::default()
        };
        assert!(smallest.validate().is_ok());
    }

    #[test]
    fn activations_match_their_formulas() {
        let x = tch::Tensor::from_slice(&[-2.0f32, -0.5, 0.0, 0.5, 2.0]);
        let gelu = Vec::<f32>::try_from(Activation::Gelu.apply(&x).unwrap()).unwrap();
        // 0.5 * x * (1 + erf(x / sqrt 2)) at x = 0.5 is 0.345731...
        assert!((gelu[3] - 0.345_731_1).abs() < 1e-6);
        let tanh = Vec::<f32>::try_from(Activation::GeluNew.apply(&x).unwrap()).unwrap();
        assert!((tanh[3] - 0.345_714).abs() < 1e-5);
        let relu = Vec::<f32>::try_from(Activation::Relu.apply(&x).unwrap()).unwrap();
        assert_eq!(relu, vec![0.0, 0.0, 0.0, 0.5, 2.0]);
    }
}

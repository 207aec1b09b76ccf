//! The training configuration: one TOML file with a section per concern.
//!
//! Every section denies unknown fields so that a typo (`lr_rate`) is an error
//! naming the field rather than a silently ignored setting. Presets ship in the
//! repository's `configs/` directory and are embedded here so the binary works
//! from any directory.

use std::path::{Path, PathBuf};

use cloze_models::Precision;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};

/// The whole configuration of a pretraining run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Seeds, threads, length of the run, logging.
    pub run: RunConfig,
    /// Transformer shape (the vocabulary size comes from the tokenizer).
    pub model: ModelConfig,
    /// How a fresh model's weights start (a resumed run loads its own).
    #[serde(default)]
    pub init: InitConfig,
    /// The masking scheme, passed to `cloze-mask` as is.
    pub masking: cloze_mask::MaskingConfig,
    /// Which losses are trained and their weights.
    #[serde(default)]
    pub objective: ObjectiveConfig,
    /// AdamW hyper-parameters and gradient clipping.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Where the prepared data lives and how it is batched.
    pub data: DataConfig,
    /// Held-out evaluation during training.
    pub eval: EvalConfig,
    /// Checkpoint cadence and retention.
    pub checkpoint: CheckpointConfig,
    /// CugLM's code rows (`cuglm` and `cuglm_complete` objectives only; the
    /// data is then a `cloze data code` directory and `masking` is unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<cloze_mask::CodeConfig>,
}

/// What to do when a batch's loss is NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnNonFinite {
    /// Stop the run with an error; the last checkpoint stays intact.
    #[default]
    Stop,
    /// Drop the batch (no parameter update) and continue; stop after 10 in a row.
    Skip,
}

/// `[run]`: seeds, threads and length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Master seed: initialisation, data order, masking and dropout derive from it.
    pub seed: u64,
    /// libtorch intra-op threads (results are bit-identical only for the same
    /// count). The driver's global `cloze --threads N`, when given, replaces
    /// this value (as `--set run.threads=N` would).
    pub threads: i32,
    /// Number of optimiser steps.
    pub max_steps: u64,
    /// Log a metrics line every this many optimiser steps.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Reaction to a non-finite loss.
    #[serde(default)]
    pub on_nonfinite: OnNonFinite,
    /// `"fp32"`, or `"bf16"`: matrix products in bfloat16 over fp32 master
    /// weights and optimiser state (see [`cloze_models::precision`]).
    /// Checkpoints are fp32 either way. (`"int8"` is inference only and
    /// refused here.)
    #[serde(default)]
    pub precision: Precision,
}

fn default_log_every() -> u64 {
    10
}

/// `[model]`: the BERT shape, with HuggingFace `config.json` field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Number of transformer layers.
    pub num_hidden_layers: i64,
    /// Attention heads per layer (must divide `hidden_size`).
    pub num_attention_heads: i64,
    /// Width of the feed-forward block.
    pub intermediate_size: i64,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: i64,
    /// Number of segment (token type) ids.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    /// Dropout on hidden states.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Standard deviation of the normal initialisation.
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// LayerNorm epsilon.
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// Buckets of UniLM-v2's T5-style relative position bias (32 in the
    /// paper's models, under s2s-ft's `config.json` name); absent or 0 is
    /// plain BERT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rel_pos_bins: Option<i64>,
    /// Distance from which relative positions share the last bucket (128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rel_pos: Option<i64>,
}

fn default_type_vocab() -> i64 {
    2
}
fn default_init_range() -> f64 {
    0.02
}
fn default_ln_eps() -> f64 {
    1e-12
}

/// `[init]`: how a fresh model's weights start.
///
/// The offset-head fields are kept whatever the scheme (and checked when it
/// is `offset_heads`), so that
/// `--set init.scheme=hf` or `--set init.scheme=offset_heads` switches a
/// preset without touching the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// Which initialisation.
    #[serde(default)]
    pub scheme: InitScheme,
    /// `offset_heads`: relative position per first-layer head (`-1`: the
    /// previous token).
    #[serde(default = "default_offsets")]
    pub offsets: Vec<i64>,
    /// `offset_heads`: amplitude of the position embeddings' sines and cosines.
    #[serde(default = "default_position_amplitude")]
    pub position_amplitude: f64,
    /// `offset_heads`: scale of the heads' query-key product on positions.
    #[serde(default = "one")]
    pub strength: f64,
    /// Continued pretraining: a HuggingFace BERT checkpoint directory
    /// (`config.json` + `model.safetensors`) whose weights the run starts from
    /// instead of a fresh initialisation (`cloze pretrain --init-from DIR`).
    /// The model's shape then comes from the checkpoint's `config.json`; heads
    /// the checkpoint lacks start from HF's initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<PathBuf>,
}

/// The initialisation schemes of `[init]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// HF's: every weight N(0, `initializer_range`), biases 0, LayerNorm 1.
    #[default]
    Hf,
    /// HF's, then sinusoidal position embeddings and first-layer heads that
    /// attend to fixed relative positions from the first step
    /// (`cloze_models::OffsetHeads`); for short runs of small models.
    OffsetHeads,
}

impl Default for InitConfig {
    fn default() -> Self {
        let heads = cloze_models::OffsetHeads::default();
        Self {
            scheme: InitScheme::Hf,
            offsets: heads.offsets,
            position_amplitude: heads.position_amplitude,
            strength: heads.strength,
            from: None,
        }
    }
}

fn default_offsets() -> Vec<i64> {
    cloze_models::OffsetHeads::default().offsets
}

fn default_position_amplitude() -> f64 {
    cloze_models::OffsetHeads::default().position_amplitude
}

impl InitConfig {
    /// The model-layer settings, `None` for HF's plain initialisation.
    pub fn offset_heads(&self) -> Option<cloze_models::OffsetHeads> {
        match self.scheme {
            InitScheme::Hf => None,
            InitScheme::OffsetHeads => Some(cloze_models::OffsetHeads {
                offsets: self.offsets.clone(),
                position_amplitude: self.position_amplitude,
                strength: self.strength,
            }),
        }
    }
}

/// `init.<field>` for a field of `cloze_models::OffsetHeads`.
fn init_field(field: &'static str) -> &'static str {
    match field {
        "offsets" => "init.offsets",
        "position_amplitude" => "init.position_amplitude",
        "strength" => "init.strength",
        _ => "init",
    }
}

/// `[objective]`: the losses and their weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveConfig {
    /// Which objective: a name in [`crate::objective::OBJECTIVES`]
    /// (`mlm`, `mlm_nsp`, `mlm_sop`).
    #[serde(default = "default_objective")]
    pub kind: String,
    /// Weight of the masked-LM loss.
    #[serde(default = "one")]
    pub mlm_weight: f64,
    /// Weight of the NSP/SOP loss (ignored for `mlm`).
    #[serde(default = "one")]
    pub pair_weight: f64,
    /// Weight of UniLM-v2's partially autoregressive loss `l_PAR` (`pmlm`
    /// only; equation 7 of the paper uses 1, with `mlm_weight` as `l_AE`).
    #[serde(default = "one")]
    pub par_weight: f64,
    /// Weight of the left-to-right LM loss (`cuglm` only).
    #[serde(default = "one")]
    pub lm_weight: f64,
    /// Weight of the token-category (type) head's loss (`cuglm` only).
    #[serde(default = "one")]
    pub category_weight: f64,
}

fn one() -> f64 {
    1.0
}

fn default_objective() -> String {
    "mlm".into()
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            kind: default_objective(),
            mlm_weight: 1.0,
            pair_weight: 1.0,
            par_weight: 1.0,
            lm_weight: 1.0,
            category_weight: 1.0,
        }
    }
}

/// `[optimizer]`: AdamW with decoupled weight decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate (reached at the end of warm-up).
    pub lr: f64,
    /// Decoupled weight decay (not applied to biases and LayerNorm weights).
    pub weight_decay: f64,
    /// First-moment decay.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// Second-moment decay.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Denominator epsilon.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Clip the global gradient norm to this value; 0 disables clipping.
    #[serde(default = "one")]
    pub max_grad_norm: f64,
    /// Parameters that do not train, selected by HuggingFace name
    /// (`["embeddings", "encoder.layer.0-5"]`; empty by default).
    ///
    /// Each entry is a dotted prefix matched by whole components, a leading
    /// `bert.` ignored: `embeddings` selects
    /// `bert.embeddings.word_embeddings.weight`, `encoder.layer.1` selects
    /// layer 1 but not layer 10, `cls.predictions` the MLM head, `bert` the
    /// whole encoder; a component `a-b` matches the integers a to b
    /// inclusive (`encoder.layer.0-5`). See [`crate::optim::ParamPattern`].
    /// Frozen parameters stop requiring gradients, are left out of the
    /// optimiser's buffers and keep their values bit for bit. The MLM
    /// decoder's weight *is* the word-embedding matrix, so freezing
    /// `embeddings` freezes the decoder too (while `cls.predictions` leaves
    /// it training). A pattern that matches nothing is an error listing the
    /// prefixes there are, and so is freezing every parameter.
    #[serde(default)]
    pub freeze: Vec<String>,
    /// Layer-wise learning-rate decay, in (0, 1]; 1 (the default) turns it off.
    ///
    /// By HuggingFace name, `embeddings.*` has depth 0, `encoder.layer.i.*`
    /// depth i + 1 and everything else (pooler, heads) depth L + 1, L being
    /// the number of encoder layers. A parameter's learning rate, for the
    /// update and the decoupled weight decay alike, is the scheduled rate
    /// times `layer_lr_decay^(L + 1 - depth)`: the heads train at the full
    /// rate, the top layer at `layer_lr_decay` times it, the embeddings (and
    /// the MLM decoder tied to them) at `layer_lr_decay^(L + 1)` times it.
    #[serde(default = "one")]
    pub layer_lr_decay: f64,
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-6
}

/// Shape of the learning-rate decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Linear to `min_lr_ratio * lr` at `max_steps`.
    #[default]
    Linear,
    /// Half-cosine to `min_lr_ratio * lr` at `max_steps`.
    Cosine,
    /// Constant after warm-up.
    Constant,
}

/// `[schedule]`: linear warm-up, then decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Steps of linear warm-up from 0 to the peak learning rate (capped at `run.max_steps`).
    pub warmup_steps: u64,
    /// Decay shape after warm-up.
    #[serde(default)]
    pub decay: Decay,
    /// Final learning rate as a fraction of the peak.
    #[serde(default)]
    pub min_lr_ratio: f64,
}

/// `[data]`: the prepared data directory and batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Directory written by `cloze data prepare` (overridden by `--data`).
    #[serde(default)]
    pub dir: PathBuf,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches accumulated per optimiser step.
    #[serde(default = "one_usize")]
    pub grad_accum: usize,
}

fn one_usize() -> usize {
    1
}

/// `[eval]`: held-out evaluation with fixed masks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate every this many optimiser steps (and at the end); 0 only at the end.
    pub every_steps: u64,
    /// At most this many held-out sequences are evaluated.
    pub max_examples: usize,
    /// Sequences per evaluation batch.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// Seed of the evaluation masks, independent of the training seed so that
    /// runs with different seeds are scored on the same masks.
    #[serde(default = "default_eval_seed")]
    pub mask_seed: u64,
    /// Early stopping: end the run after this many evaluations in a row
    /// without a new best held-out score; 0 (the default) never stops early.
    #[serde(default)]
    pub patience: u64,
}

fn default_eval_batch() -> usize {
    64
}
fn default_eval_seed() -> u64 {
    20_240_601
}

/// `[checkpoint]`: cadence and retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Write a checkpoint every this many optimiser steps (and at the end); 0 only at the end.
    pub every_steps: u64,
    /// How many of the newest checkpoints to keep.
    pub keep_last: usize,
    /// Also keep the checkpoint with the lowest evaluation loss.
    #[serde(default = "yes")]
    pub keep_best: bool,
}

fn yes() -> bool {
    true
}

/// The presets shipped in `configs/`, embedded at build time.
pub const PRESETS: &[(&str, &str)] = &[
    ("bert-tiny", include_str!("../../../configs/bert-tiny.toml")),
    ("bert-mini", include_str!("../../../configs/bert-mini.toml")),
    (
        "bert-small",
        include_str!("../../../configs/bert-small.toml"),
    ),
    ("bert-base", include_str!("../../../configs/bert-base.toml")),
    (
        "bert-zh-tiny",
        include_str!("../../../configs/bert-zh-tiny.toml"),
    ),
    (
        "bert-zh-wwm",
        include_str!("../../../configs/bert-zh-wwm.toml"),
    ),
    (
        "bert-zh-wwm-ngram",
        include_str!("../../../configs/bert-zh-wwm-ngram.toml"),
    ),
    (
        "macbert-zh-tiny",
        include_str!("../../../configs/macbert-zh-tiny.toml"),
    ),
    (
        "unilmv2-tiny",
        include_str!("../../../configs/unilmv2-tiny.toml"),
    ),
    (
        "cuglm-tiny",
        include_str!("../../../configs/cuglm-tiny.toml"),
    ),
    (
        "cuglm-complete",
        include_str!("../../../configs/cuglm-complete.toml"),
    ),
];

impl TrainConfig {
    /// Parses a configuration from TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| Error::ConfigParse {
            path: origin.to_owned(),
            source: Box::new(e),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err("reading config", path))?;
        Self::from_toml(&text, path)
    }

    /// A shipped preset by name (`bert-tiny`, `bert-mini`, `bert-small`,
    /// `bert-base`, and the Chinese ablation's `bert-zh-tiny`, `bert-zh-wwm`,
    /// `bert-zh-wwm-ngram`, `macbert-zh-tiny`, UniLM-v2's `unilmv2-tiny`, and
    /// CugLM's `cuglm-tiny` and `cuglm-complete`).
    pub fn preset(name: &str) -> Option<Self> {
        PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(n, text)| {
                Self::from_toml(text, Path::new(&format!("configs/{n}.toml"))).ok()
            })
    }

    /// Loads `spec` as a file path if one exists, else as a preset name.
    pub fn load_or_preset(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.exists() {
            return Self::load(path);
        }
        match PRESETS.iter().find(|(n, _)| *n == spec) {
            Some((n, text)) => Self::from_toml(text, Path::new(&format!("configs/{n}.toml"))),
            None => Err(Error::Io {
                op: "reading config (not a file, nor a preset: bert-tiny, bert-mini, bert-small, bert-base, bert-zh-tiny, bert-zh-wwm, bert-zh-wwm-ngram, macbert-zh-tiny, unilmv2-tiny, cuglm-tiny, cuglm-complete)",
                path: path.to_owned(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        }
    }

    /// Serialises the configuration as TOML (what is saved into the run directory).
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Applies `key=value` overrides with dotted keys (`optimizer.lr=3e-4`).
    ///
    /// The value is parsed as a TOML value (a bare word that is not valid TOML is
    /// taken as a string). The key must already exist in the configuration or be a
    /// field the section accepts; the result is re-validated.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let mut doc: toml::Table = toml::Table::try_from(self)?;
        apply_overrides(&mut doc, overrides)?;
        let text = toml::to_string(&doc)?;
        // Name the overrides as the origin, so an unknown key reads e.g.
        // "config overrides `optimizer.lrate=1`: unknown field `lrate`".
        let origin = format!("overrides `{}`", overrides.join(" "));
        Self::from_toml(&text, Path::new(&origin))
    }

    /// Checks ranges that serde cannot express.
    pub fn validate(&self) -> Result<()> {
        fn bad(field: &'static str, problem: impl Into<String>) -> Error {
            Error::InvalidConfig {
                field,
                problem: problem.into(),
            }
        }
        if !self.run.precision.trains() {
            return Err(bad(
                "run.precision",
                format!(
                    "{} is for inference (encode, fill-mask, score, eval); train in fp32 or bf16",
                    self.run.precision
                ),
            ));
        }
        let m = &self.model;
        if m.hidden_size <= 0
            || m.num_hidden_layers <= 0
            || m.num_attention_heads <= 0
            || m.intermediate_size <= 0
        {
            return Err(bad("model", "sizes must be positive"));
        }
        if m.max_position_embeddings <= 0 {
            return Err(bad("model.max_position_embeddings", "must be at least 1"));
        }
        if m.hidden_size % m.num_attention_heads != 0 {
            return Err(bad(
                "model.num_attention_heads",
                format!(
                    "must divide hidden_size {} (got {})",
                    m.hidden_size, m.num_attention_heads
                ),
            ));
        }
        for (field, p) in [
            ("model.hidden_dropout_prob", m.hidden_dropout_prob),
            (
                "model.attention_probs_dropout_prob",
                m.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(bad(field, format!("must be in [0, 1), got {p}")));
            }
        }
        if self.init.from.is_some() && self.init.scheme == InitScheme::OffsetHeads {
            return Err(bad(
                "init.scheme",
                "\"offset_heads\" initialises a fresh model; it cannot be combined with init.from \
                 (a run that starts from a checkpoint keeps the checkpoint's weights)",
            ));
        }
        if let Some(init) = self.init.offset_heads() {
            init.validate(m.hidden_size, m.num_attention_heads, m.num_hidden_layers)
                .map_err(|e| match e {
                    cloze_models::Error::InvalidConfig { field, reason } => {
                        bad(init_field(field), reason)
                    }
                    other => bad("init", other.to_string()),
                })?;
        }
        self.masking.validate().map_err(Error::InvalidMasking)?;
        crate::objective::entry(&self.objective.kind)?;
        // UniLM-v2's objective and its layout go together: PMLM needs the [P]
        // rows, and any other objective would ignore their targets (and
        // pay for the appended tokens).
        let pseudo_rows = self.masking.collate.layout == cloze_mask::Layout::PseudoMasked;
        if (self.objective.kind == "pmlm") != pseudo_rows {
            return Err(bad(
                "objective.kind",
                format!(
                    "objective {:?} with masking.collate.layout {:?}: the pmlm objective and the \
                     \"pseudo_masked\" layout go together (see configs/unilmv2-tiny.toml)",
                    self.objective.kind,
                    if pseudo_rows {
                        "pseudo_masked"
                    } else {
                        "in_place"
                    },
                ),
            ));
        }
        let code_objective = self.objective.kind.starts_with("cuglm");
        match (&self.code, code_objective) {
            (Some(c), true) if c.max_len as i64 > m.max_position_embeddings => {
                return Err(bad(
                    "code.max_len",
                    format!(
                        "{} exceeds model.max_position_embeddings {}",
                        c.max_len, m.max_position_embeddings
                    ),
                ));
            }
            (None, true) => {
                return Err(bad(
                    "code",
                    format!(
                        "objective {:?} needs a [code] section (see configs/cuglm-tiny.toml)",
                        self.objective.kind
                    ),
                ));
            }
            (Some(_), false) => {
                return Err(bad(
                    "code",
                    format!(
                        "a [code] section goes with the cuglm objectives, not {:?}",
                        self.objective.kind
                    ),
                ));
            }
            _ => {}
        }
        for (field, w) in [
            ("objective.mlm_weight", self.objective.mlm_weight),
            ("objective.pair_weight", self.objective.pair_weight),
            ("objective.par_weight", self.objective.par_weight),
            ("objective.lm_weight", self.objective.lm_weight),
            ("objective.category_weight", self.objective.category_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(bad(field, format!("must be finite and >= 0, got {w}")));
            }
        }
        let o = &self.optimizer;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(bad(
                "optimizer.lr",
                format!("must be positive and finite, got {}", o.lr),
            ));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(bad("optimizer.weight_decay", "must be >= 0"));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return Err(bad("optimizer.beta1/beta2", "must be in [0, 1)"));
        }
        if o.eps.is_nan() || o.eps <= 0.0 {
            return Err(bad("optimizer.eps", "must be positive"));
        }
        if o.max_grad_norm.is_nan() || o.max_grad_norm < 0.0 {
            return Err(bad("optimizer.max_grad_norm", "must be >= 0"));
        }
        // `layer_lr_decay` in (0, 1] and the syntax of the `freeze` patterns;
        // whether each pattern matches a parameter is known once the model is built.
        crate::optim::layer_settings(o)?;
        if self.run.max_steps == 0 {
            return Err(bad("run.max_steps", "must be at least 1"));
        }
        if self.run.threads <= 0 {
            return Err(bad("run.threads", "must be at least 1"));
        }
        if self.run.log_every == 0 {
            return Err(bad("run.log_every", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.schedule.min_lr_ratio) {
            return Err(bad("schedule.min_lr_ratio", "must be in [0, 1]"));
        }
        if self.data.batch_size == 0 {
            return Err(bad("data.batch_size", "must be at least 1"));
        }
        if self.data.grad_accum == 0 {
            return Err(bad("data.grad_accum", "must be at least 1"));
        }
        if self.eval.batch_size == 0 {
            return Err(bad("eval.batch_size", "must be at least 1"));
        }
        if self.checkpoint.keep_last == 0 {
            return Err(bad("checkpoint.keep_last", "must be at least 1"));
        }
        Ok(())
    }

    /// Sequences consumed by one optimiser step.
    pub fn sequences_per_step(&self) -> usize {
        self.data.batch_size * self.data.grad_accum
    }

    /// The masking scheme's selection rate (`masking.select.rate`), for messages.
    pub fn masking_rate(&self) -> f64 {
        self.masking.select.rate()
    }

    /// Every setting whose value differs between `self` and `other`, by dotted
    /// key (`optimizer.lr`), in key order.
    pub fn differences(&self, other: &Self) -> Result<Vec<ConfigChange>> {
        let mut a = std::collections::BTreeMap::new();
        let mut b = std::collections::BTreeMap::new();
        flatten("", &toml::Table::try_from(self)?, &mut a);
        flatten("", &toml::Table::try_from(other)?, &mut b);
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let show =
            |v: Option<&toml::Value>| v.map_or_else(|| "(unset)".to_owned(), |v| v.to_string());
        Ok(keys
            .into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| ConfigChange {
                key: k.clone(),
                old: show(a.get(k)),
                new: show(b.get(k)),
            })
            .collect())
    }

    /// Checks the configuration a resumed run would use (`requested`) against
    /// the one it was started with (`self`, the saved `config.toml`). Changes
    /// to the keys in [`RESUME_MAY_CHANGE`] are returned (to be reported);
    /// any other change is refused with [`Error::ResumeChangesRun`] listing
    /// every refused difference.
    pub fn resume_changes(&self, requested: &Self) -> Result<Vec<ConfigChange>> {
        let (allowed, refused): (Vec<_>, Vec<_>) = self
            .differences(requested)?
            .into_iter()
            .partition(|c| RESUME_MAY_CHANGE.contains(&c.key.as_str()));
        if refused.is_empty() {
            Ok(allowed)
        } else {
            Err(Error::ResumeChangesRun { changes: refused })
        }
    }
}

/// The settings a resumed run may change: the length of the run (which also
/// stretches the learning-rate schedule), where the data lives (its tokenizer
/// is still checked), libtorch's thread count (`--threads N` or
/// `--set run.threads=N`; losses then differ from an uninterrupted run in the
/// last bits), and logging, evaluation and
/// checkpoint cadence. Everything else decides what is trained and is kept.
pub const RESUME_MAY_CHANGE: &[&str] = &[
    "run.max_steps",
    "data.dir",
    "run.threads",
    "run.log_every",
    "eval.every_steps",
    "checkpoint.every_steps",
    "checkpoint.keep_last",
    "checkpoint.keep_best",
];

/// One setting that differs between two configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Dotted key, e.g. `optimizer.lr`.
    pub key: String,
    /// The first configuration's value, as TOML (`(unset)` when absent).
    pub old: String,
    /// The second configuration's value.
    pub new: String,
}

impl std::fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.key, self.old, self.new)
    }
}

/// Flattens nested tables into dotted keys; arrays and scalars are leaves.
fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut std::collections::BTreeMap<String, toml::Value>,
) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            other => {
                out.insert(key, other.clone());
            }
        }
    }
}

/// Parses an override value as TOML, falling back to a plain string.
fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_validates() {
        for (name, _) in PRESETS {
            let cfg = TrainConfig::preset(name);
            assert!(cfg.is_some(), "preset {name} does not parse");
        }
    }

    #[test]
    fn typo_is_an_error_naming_the_field() {
        let (_, text) = PRESETS[0];
        let bad = text.replace("weight_decay", "weight_decya");
        let Err(err) = TrainConfig::from_toml(&bad, Path::new("x.toml")) else {
            panic!("a typo must be an error")
        };
        let chain = format!("{:?}", anyhow_like(&err));
        assert!(chain.contains("weight_decya"), "{chain}");
    }

    fn anyhow_like(e: &Error) -> String {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(c) = src {
            s.push_str(": ");
            s.push_str(&c.to_string());
            src = c.source();
        }
        s
    }

    #[test]
    fn init_section_defaults_to_hf_and_is_checked() -> Result<()> {
        let (_, text) = PRESETS[0];
        let start = text
            .find("[init]")
            .ok_or(Error::BadOverride("no [init]".into()))?;
        let end = start + text[start..].find("\n[").unwrap_or(text.len() - start) + 1;
        // Without the section: HF's initialisation.
        let plain = format!("{}{}", &text[..start], &text[end..]);
        let cfg = TrainConfig::from_toml(&plain, Path::new("x"))?;
        assert_eq!(cfg.init, InitConfig::default());
        assert!(cfg.init.offset_heads().is_none());
        // A preset switches scheme with one override.
        let on = cfg.with_overrides(&["init.scheme=offset_heads".into()])?;
        assert!(on.init.offset_heads().is_some());
        // The preset's section parses into offset heads.
        let tiny = TrainConfig::from_toml(text, Path::new("x"))?;
        let heads = tiny
            .init
            .offset_heads()
            .ok_or(Error::BadOverride("hf".into()))?;
        assert_eq!(heads.offsets, [-1, 1]);
        let off = tiny.with_overrides(&["init.scheme=hf".into()])?;
        assert!(off.init.offset_heads().is_none());
        // A typo inside the section names the field.
        let typo = text.replace("position_amplitude", "position_amplitud");
        let err = TrainConfig::from_toml(&typo, Path::new("x")).expect_err("a typo is refused");
        let chain = format!("{:?}", anyhow_like(&err));
        assert!(chain.contains("position_amplitud"), "{chain}");
        // More offsets than first-layer heads, and a bad strength, are refused.
        for (over, field) in [
            ("init.offsets=[-1, 1, 2]", "init.offsets"),
            ("init.strength=-1.0", "init.strength"),
        ] {
            let err = tiny.with_overrides(&[over.into()]).expect_err("refused");
            assert!(
                matches!(err, Error::InvalidConfig { field: f, .. } if f == field),
                "{over}: {err}"
            );
        }
        Ok(())
    }

    #[test]
    fn overrides_apply_and_reject_unknown_keys() -> Result<()> {
        let cfg = TrainConfig::preset("bert-tiny").ok_or(Error::BadOverride("preset".into()))?;
        let o = cfg.with_overrides(&["optimizer.lr=0.5".into(), "run.max_steps=7".into()])?;
        assert_eq!(o.optimizer.lr, 0.5);
        assert_eq!(o.run.max_steps, 7);
        assert!(cfg.with_overrides(&["optimizer.lrr=0.5".into()]).is_err());
        assert!(cfg.with_overrides(&["nosection.lr=0.5".into()]).is_err());
        assert!(cfg.with_overrides(&["optimizer.lr=-1".into()]).is_err());
        Ok(())
    }

    #[test]
    fn resume_changes_list_refused_keys_and_allow_the_safe_ones() -> Result<()> {
        let saved = TrainConfig::preset("bert-tiny").ok_or(Error::BadOverride("preset".into()))?;
        assert!(saved.differences(&saved)?.is_empty());
        let longer =
            saved.with_overrides(&["run.max_steps=9000".into(), "run.threads=1".into()])?;
        let ok = saved.resume_changes(&longer)?;
        let keys: Vec<&str> = ok.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["run.max_steps", "run.threads"]);
        let changed = saved.with_overrides(&[
            "optimizer.lr=1e-4".into(),
            "masking.select.rate=0.2".into(),
            "run.max_steps=9000".into(),
        ])?;
        let err = saved
            .resume_changes(&changed)
            .expect_err("lr and masking changes are refused");
        let Error::ResumeChangesRun { changes } = &err else {
            panic!("expected ResumeChangesRun, got {err}")
        };
        let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "masking.select.rate: 0.15 -> 0.2",
                "optimizer.lr: 0.002 -> 0.0001"
            ]
        );
        assert!(
            err.to_string().contains("optimizer.lr: 0.002 -> 0.0001"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn masking_that_selects_nothing_is_a_config_error_naming_the_rate() -> Result<()> {
        let cfg = TrainConfig::preset("bert-tiny").ok_or(Error::BadOverride("preset".into()))?;
        let err = cfg
            .with_overrides(&[
                "masking.select.rate=0.0".into(),
                "masking.select.min_predictions=0".into(),
            ])
            .expect_err("a rate of 0 selects nothing");
        assert!(matches!(err, Error::InvalidMasking(_)), "{err}");
        let chain = anyhow_like(&err);
        assert!(
            chain.contains("[masking]") && chain.contains("select.rate"),
            "{chain}"
        );
        Ok(())
    }

    #[test]
    fn effective_config_round_trips() -> Result<()> {
        let cfg = TrainConfig::preset("bert-small").ok_or(Error::BadOverride("preset".into()))?;
        let back = TrainConfig::from_toml(&cfg.to_toml()?, Path::new("x"))?;
        assert_eq!(cfg, back);
        Ok(())
    }
}

/// Sets dotted `key=value` overrides (`optimizer.lr=3e-4`) in a configuration
/// serialised as a TOML table: the value is parsed as TOML (a bare word that
/// is not valid TOML is taken as a string); every section on the way must
/// exist. Deserialising the table afterwards checks the keys.
pub(crate) fn apply_overrides(doc: &mut toml::Table, overrides: &[String]) -> Result<()> {
    for o in overrides {
        let (key, raw) = o
            .split_once('=')
            .ok_or_else(|| Error::BadOverride(o.clone()))?;
        let value = parse_value(raw.trim());
        let mut parts: Vec<&str> = key.trim().split('.').collect();
        let last = parts
            .pop()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::BadOverride(o.clone()))?;
        let mut table = &mut *doc;
        for p in parts {
            table = table
                .get_mut(p)
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| Error::BadOverride(o.clone()))?;
        }
        table.insert(last.to_owned(), value);
    }
    Ok(())
}

/// What the training loop itself needs, whatever it trains: the sections of a
/// [`TrainConfig`] that [`crate::Trainer`] reads, plus the configuration file
/// the run directory keeps. Pretraining derives it from its [`TrainConfig`]
/// ([`LoopConfig::from_train`]); fine-tuning builds it from its own
/// configuration, so each task keeps a file with only its own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopConfig {
    /// Seeds, threads, length of the run, logging.
    pub run: RunConfig,
    /// The objective, looked up in [`crate::objective::OBJECTIVES`].
    pub objective: ObjectiveConfig,
    /// AdamW hyper-parameters and gradient clipping.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Evaluate every this many steps (and at the end); 0 only at the end.
    pub eval_every: u64,
    /// Stop after this many evaluations without a new best; 0 never.
    pub patience: u64,
    /// Checkpoint cadence and retention.
    pub checkpoint: CheckpointConfig,
    /// The masking rate, named when a training batch has nothing to predict.
    pub masking_rate: f64,
    /// The run's configuration as the run directory keeps it.
    pub saved: SavedConfig,
}

/// A run's configuration file: its name in the run directory and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedConfig {
    /// File name inside the run directory (`config.toml` for pretraining).
    pub file: &'static str,
    /// The TOML text.
    pub text: String,
}

impl SavedConfig {
    /// Writes the file into `run_dir` (replacing an earlier copy).
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let path = run_dir.join(self.file);
        std::fs::write(&path, &self.text).map_err(io_err("writing", &path))
    }
}

impl LoopConfig {
    /// The loop settings of a pretraining run; its whole configuration is
    /// saved as `config.toml`.
    pub fn from_train(cfg: &TrainConfig) -> Result<Self> {
        Ok(Self {
            run: cfg.run.clone(),
            objective: cfg.objective.clone(),
            optimizer: cfg.optimizer.clone(),
            schedule: cfg.schedule.clone(),
            batch_size: cfg.data.batch_size,
            grad_accum: cfg.data.grad_accum,
            eval_every: cfg.eval.every_steps,
            patience: cfg.eval.patience,
            checkpoint: cfg.checkpoint.clone(),
            masking_rate: cfg.masking_rate(),
            saved: SavedConfig {
                file: "config.toml",
                text: cfg.to_toml()?,
            },
        })
    }
}

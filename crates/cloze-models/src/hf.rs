//! HuggingFace checkpoint io: `config.json` + `model.safetensors` in, the same out.
//!
//! Variable names in the `VarStore` are HF's keys, so loading is a name lookup with
//! three normalisations: an optional `bert.` prefix on encoder keys (HF's `BertModel`
//! saves without it, the `BertFor*` classes with it), legacy TF-era LayerNorm names
//! (`gamma`/`beta` -> `weight`/`bias`), and the rules of the head table
//! ([`crate::heads::HEADS`]): head keys sit at the root under their prefix
//! (`cls.predictions`, `cls.seq_relationship`, `classifier`, `qa_outputs`), keys a
//! head derives (the tied decoder `cls.predictions.decoder.weight`) are skipped, and
//! older aliases (`cls.predictions.decoder.bias`) load when the canonical key is
//! missing. The [`LoadReport`] says, per head of the table, whether the model has
//! it, whether the checkpoint holds it, and whether it was loaded.
//!
//! Any model built over a `VarStore` loads through [`load_with`], including one whose
//! head is defined outside this crate: a checkpoint key that names a variable is
//! copied into it whatever the key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, View};
use safetensors::SafeTensors;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::bert::{BertConfig, BertForPreTraining, BertModel};
use crate::heads::{self, HEADS};
use crate::{Error, Result};

/// Whether a head of the model received weights from the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStatus {
    /// Every variable of the head was in the checkpoint.
    Loaded,
    /// The model has the head but the checkpoint does not (it keeps its random init).
    Absent,
    /// Only part of the head was in the checkpoint.
    Partial,
    /// The model was built without this head.
    NotBuilt,
}

/// What a load did to one head of the head table ([`crate::heads::HEADS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadReport {
    /// The head's checkpoint prefix (`cls.predictions`, `classifier`, ...).
    pub prefix: &'static str,
    /// Whether the model's head under this prefix received weights;
    /// [`HeadStatus::NotBuilt`] when the model has no such head (its checkpoint
    /// keys are then in [`LoadReport::unexpected`]).
    pub status: HeadStatus,
    /// How many checkpoint keys lie under the prefix, derived and alias keys
    /// included; 0 means the checkpoint has no such head.
    pub checkpoint_keys: usize,
}

impl HeadReport {
    /// True when the checkpoint holds keys of this head.
    pub fn in_checkpoint(&self) -> bool {
        self.checkpoint_keys > 0
    }
}

/// What a load did, key by key and head by head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Number of model variables that received checkpoint values.
    pub loaded: usize,
    /// Model variables the checkpoint did not provide (they keep their initialisation).
    pub missing: Vec<String>,
    /// Checkpoint keys that no model variable takes.
    pub unexpected: Vec<String>,
    /// `(checkpoint key, variable name)` pairs whose names differ (prefix, gamma/beta).
    pub renamed: Vec<(String, String)>,
    /// Checkpoint keys skipped on purpose: buffers such as `embeddings.position_ids`,
    /// keys a head derives (the tied decoder) and aliases of keys also present.
    pub ignored: Vec<String>,
    /// One entry per head-table prefix that the model has or the checkpoint holds,
    /// in table order.
    pub heads: Vec<HeadReport>,
    /// The status of the `cls.predictions` entry of [`LoadReport::heads`], kept as a
    /// field for callers written before the head table.
    pub mlm_head: HeadStatus,
    /// The status of the `cls.seq_relationship` entry of [`LoadReport::heads`].
    pub pair_head: HeadStatus,
}

impl LoadReport {
    /// True when nothing was missing and nothing unexpected.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }

    /// The status of the head under `prefix` ([`HeadStatus::NotBuilt`] when the
    /// model has none, including for prefixes outside the table).
    pub fn head(&self, prefix: &str) -> HeadStatus {
        self.heads
            .iter()
            .find(|h| h.prefix == prefix)
            .map_or(HeadStatus::NotBuilt, |h| h.status)
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tensors loaded, {} missing, {} unexpected, {} ignored; heads:",
            self.loaded,
            self.missing.len(),
            self.unexpected.len(),
            self.ignored.len(),
        )?;
        if self.heads.is_empty() {
            write!(f, " none")?;
        }
        for (i, h) in self.heads.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{} {:?}", h.prefix, h.status)?;
            if h.status == HeadStatus::NotBuilt {
                write!(f, " (in checkpoint, not taken)")?;
            }
        }
        if !self.missing.is_empty() {
            write!(f, "; missing: {}", self.missing.join(", "))?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "; unexpected: {}", self.unexpected.join(", "))?;
        }
        Ok(())
    }
}

/// A model loaded from a checkpoint directory, with the `VarStore` that owns its weights.
#[derive(Debug)]
pub struct Pretrained<M> {
    /// The variables (HF names).
    pub vs: VarStore,
    /// The model built over `vs`.
    pub model: M,
    /// The checkpoint's configuration.
    pub config: BertConfig,
    /// What was loaded, missing, unexpected.
    pub report: LoadReport,
}

/// Reads `dir/config.json`.
pub fn read_config(dir: &Path) -> Result<BertConfig> {
    BertConfig::from_file(&dir.join("config.json"))
}

/// Loads a checkpoint as [`BertForPreTraining`]. An encoder-only checkpoint loads too:
/// the report then says `cls.predictions` is [`HeadStatus::Absent`] and the head keeps
/// its initialisation.
/// Errors if any encoder weight is missing or the checkpoint holds encoder weights
/// the config does not describe (e.g. more layers): those mean config and weights disagree.
/// Also errors ([`Error::NonFiniteWeights`]) if a tensor the model takes holds NaN or
/// infinity (see [`check_finite`]).
pub fn load_pretrained(dir: &Path, device: Device) -> Result<Pretrained<BertForPreTraining>> {
    load_with(dir, device, BertForPreTraining::new)
}

/// Loads the encoder only (HF's `BertModel`), from any BERT checkpoint; heads in the
/// file are reported as unexpected and otherwise ignored. Non-finite weights are an
/// error, as for [`load_pretrained`].
pub fn load_encoder(dir: &Path, device: Device) -> Result<Pretrained<BertModel>> {
    load_with(dir, device, BertModel::new)
}

/// Reads the config, builds a model with `build` under a fresh VarStore, loads the
/// weights into it and insists that every encoder weight was found and that every
/// weight it took is finite. Heads need not be in the checkpoint: one that is not
/// keeps its initialisation and the report says so (loading a
/// [`crate::BertForSequenceClassification`] from a pretraining checkpoint is how
/// fine-tuning starts).
///
/// `build` is any constructor `fn(&Path, &BertConfig) -> Result<M>`:
/// `load_with(dir, device, BertForQuestionAnswering::new)`, or a downstream model
/// whose head this crate does not know.
///
/// The finiteness check lives here rather than in each command because every user
/// of a loaded model (fill-mask, encode, score, eval, a run initialised from a
/// checkpoint) is equally served by refusing NaN weights, and it costs one sum
/// reduction per tensor on the CPU copy just read from disk (see [`check_finite`]).
/// [`load_weights`] (the trainer's resume path, which has its own checkpoint
/// integrity rules) does not check; callers can use [`check_finite`] there.
pub fn load_with<M>(
    dir: &Path,
    device: Device,
    build: impl FnOnce(&tch::nn::Path, &BertConfig) -> Result<M>,
) -> Result<Pretrained<M>> {
    let _span = tracing::info_span!("load_checkpoint", dir = %dir.display()).entered();
    let config = read_config(dir)?;
    let tensors = read_weights(dir)?;
    load_tensors_with(config, tensors, device, build)
}

/// [`load_with`] for a checkpoint already in memory: `tensors` as read by
/// [`read_weights`] (possibly changed, e.g. by [`grow_vocabulary`]) and the
/// `config` they fit. The same checks apply: every encoder weight present,
/// nothing the config does not describe, every tensor finite.
pub fn load_tensors_with<M>(
    config: BertConfig,
    tensors: BTreeMap<String, Tensor>,
    device: Device,
    build: impl FnOnce(&tch::nn::Path, &BertConfig) -> Result<M>,
) -> Result<Pretrained<M>> {
    let vs = VarStore::new(device);
    let model = build(&vs.root(), &config)?;
    let report = assign(&vs, tensors, Finite::Check)?;
    check_encoder_complete(&report)?;
    Ok(Pretrained {
        vs,
        model,
        config,
        report,
    })
}

/// A key without its optional `bert.` prefix.
fn bare(key: &str) -> &str {
    key.strip_prefix("bert.").unwrap_or(key)
}

/// Embedding and layer weights, and UniLM-v2's relative position bias (s2s-ft's
/// `bert.rel_pos_bias.weight`): what must agree between config and checkpoint, so
/// that a checkpoint trained with the bias does not silently load into a model
/// without it (or the reverse). The pooler and the heads may be absent (they keep
/// their initialisation).
fn is_encoder_key(key: &str) -> bool {
    let b = bare(key);
    b.starts_with("embeddings.") || b.starts_with("encoder.") || b.starts_with("rel_pos_bias.")
}

fn check_encoder_complete(report: &LoadReport) -> Result<()> {
    let missing: Vec<String> = report
        .missing
        .iter()
        .filter(|k| is_encoder_key(k))
        .cloned()
        .collect();
    let unexpected: Vec<String> = report
        .unexpected
        .iter()
        .filter(|k| is_encoder_key(k))
        .cloned()
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        Ok(())
    } else {
        Err(Error::CheckpointMismatch {
            missing,
            unexpected,
        })
    }
}

/// Copies every checkpoint tensor of `dir` into the matching variable of `vs`, whatever
/// model was built in it, and reports what matched. Shape disagreements are errors.
pub fn load_weights(vs: &VarStore, dir: &Path) -> Result<LoadReport> {
    let _span = tracing::info_span!("load_weights", dir = %dir.display()).entered();
    let tensors = read_weights(dir)?;
    assign(vs, tensors, Finite::Trust)
}

/// Errors with [`Error::NonFiniteWeights`] naming the first floating-point tensor
/// (in iteration order) that holds a NaN or an infinity. Integer tensors are skipped
/// (they are always finite).
///
/// Cost: one sum reduction per tensor. A NaN or infinity anywhere makes an IEEE sum
/// non-finite, so a finite sum proves the tensor finite; only a non-finite sum (a bad
/// tensor, or finite values whose sum overflowed) is looked at element by element
/// with `isfinite`. On a BERT-base-sized set of weights the sum is about ten times
/// faster than `isfinite().all()`, which allocates several full-size temporaries.
pub fn check_finite<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>) -> Result<()> {
    let _g = tch::no_grad_guard();
    for (key, t) in tensors {
        check_finite_one(key, t)?;
    }
    Ok(())
}

fn check_finite_one(key: &str, t: &Tensor) -> Result<()> {
    if !t.is_floating_point() || t.f_sum(t.kind())?.f_double_value(&[])?.is_finite() {
        return Ok(());
    }
    if t.f_isfinite()?.f_all()?.f_int64_value(&[])? != 0 {
        // Finite values whose sum overflowed (possible in half precision).
        return Ok(());
    }
    let count = |m: Tensor| -> Result<i64> { Ok(m.f_sum(Kind::Int64)?.f_int64_value(&[])?) };
    Err(Error::NonFiniteWeights {
        key: key.to_string(),
        nan: count(t.f_isnan()?)?,
        inf: count(t.f_isinf()?)?,
        numel: t.numel() as i64,
    })
}

/// Whether [`assign`] checks each tensor it copies for NaN and infinity.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Finite {
    Check,
    Trust,
}

fn legacy_rename(key: &str) -> String {
    if let Some(stem) = key.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = key.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        key.to_string()
    }
}

/// Buffers HF keeps in the state dicts of older versions; recomputed here.
const ENCODER_BUFFERS: &[&str] = &["embeddings.position_ids", "embeddings.token_type_ids"];

/// Where a checkpoint key goes.
enum Target {
    /// Into the variable of this name (which may not exist: then it is unexpected).
    Variable(String),
    /// Nowhere, on purpose (a buffer, a derived key, an alias of a present key).
    Ignored,
}

/// The variable a checkpoint key names, by the rules of the module docs.
fn target_of(
    key: &str,
    vars: &HashMap<String, Tensor>,
    prefixed: bool,
    checkpoint: &BTreeSet<String>,
) -> Target {
    let name = legacy_rename(key);
    let bare = bare(&name);
    if ENCODER_BUFFERS.contains(&bare) {
        return Target::Ignored;
    }
    if let Some((spec, rest)) = heads::head_of_key(bare) {
        if spec.derived.contains(&rest) {
            return Target::Ignored;
        }
        if let Some((_, canonical)) = spec.aliases.iter().find(|(alias, _)| *alias == rest) {
            let canonical = format!("{}.{canonical}", spec.prefix);
            return if checkpoint.contains(&canonical) {
                Target::Ignored
            } else {
                Target::Variable(canonical)
            };
        }
        return Target::Variable(bare.to_string());
    }
    // Encoder keys (and a downstream head's): the name itself if the model has it,
    // else with or without `bert.` as the model is laid out.
    Target::Variable(if vars.contains_key(&name) {
        name
    } else if prefixed {
        format!("bert.{bare}")
    } else {
        bare.to_string()
    })
}

fn assign(vs: &VarStore, tensors: BTreeMap<String, Tensor>, finite: Finite) -> Result<LoadReport> {
    let vars = vs.variables();
    let prefixed = vars.keys().any(|k| k.starts_with("bert."));
    // Every checkpoint key as the table sees it (renamed, without `bert.`).
    let checkpoint: BTreeSet<String> = tensors
        .keys()
        .map(|k| bare(&legacy_rename(k)).to_string())
        .collect();
    let mut filled: BTreeSet<String> = BTreeSet::new();
    let mut report = LoadReport {
        loaded: 0,
        missing: vec![],
        unexpected: vec![],
        renamed: vec![],
        ignored: vec![],
        heads: vec![],
        mlm_head: HeadStatus::NotBuilt,
        pair_head: HeadStatus::NotBuilt,
    };
    for (key, src) in &tensors {
        let target = match target_of(key, &vars, prefixed, &checkpoint) {
            Target::Ignored => {
                report.ignored.push(key.clone());
                continue;
            }
            Target::Variable(name) => name,
        };
        let Some(var) = vars.get(&target) else {
            report.unexpected.push(key.clone());
            continue;
        };
        if filled.contains(&target) {
            // A second key for the same variable (both `x` and `bert.x`): keep the first.
            report.unexpected.push(key.clone());
            continue;
        }
        if var.size() != src.size() {
            return Err(Error::CheckpointShape {
                key: key.clone(),
                expected: var.size(),
                found: src.size(),
            });
        }
        if !src.is_floating_point() && var.is_floating_point() {
            return Err(Error::UnsupportedDtype {
                key: key.clone(),
                dtype: format!("{:?}", src.kind()),
            });
        }
        if finite == Finite::Check {
            // Only tensors the model takes: a NaN in an unused head is not our concern.
            tch::no_grad(|| check_finite_one(key, src))?;
        }
        let mut var = var.shallow_clone();
        tch::no_grad(|| var.f_copy_(src))?;
        if &target != key {
            report.renamed.push((key.clone(), target.clone()));
        }
        filled.insert(target);
        report.loaded += 1;
    }
    let mut missing: Vec<String> = vars
        .keys()
        .filter(|k| !filled.contains(*k))
        .cloned()
        .collect();
    missing.sort();
    report.missing = missing;
    report.heads = head_reports(&vars, &filled, &checkpoint);
    report.mlm_head = report.head(crate::heads::MlmHead::SPEC.prefix);
    report.pair_head = report.head(crate::heads::PairHead::SPEC.prefix);
    tracing::info!(%report, "checkpoint loaded");
    Ok(report)
}

/// True when `key` lies under `prefix` (the prefix, then a dot).
fn under(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('.'))
}

fn head_reports(
    vars: &HashMap<String, Tensor>,
    filled: &BTreeSet<String>,
    checkpoint: &BTreeSet<String>,
) -> Vec<HeadReport> {
    heads::prefixes()
        .into_iter()
        .filter_map(|prefix| {
            let total = vars.keys().filter(|k| under(k, prefix)).count();
            let got = filled.iter().filter(|k| under(k, prefix)).count();
            let checkpoint_keys = checkpoint.iter().filter(|k| under(k, prefix)).count();
            let status = match (total, got) {
                (0, _) => HeadStatus::NotBuilt,
                (_, 0) => HeadStatus::Absent,
                (t, g) if t == g => HeadStatus::Loaded,
                _ => HeadStatus::Partial,
            };
            (total > 0 || checkpoint_keys > 0).then_some(HeadReport {
                prefix,
                status,
                checkpoint_keys,
            })
        })
        .collect()
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads every tensor of one safetensors file onto the CPU, keyed by name.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|source| Error::Safetensors {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| Error::UnsupportedDtype {
            key: name.clone(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Grows a checkpoint's vocabulary in memory: one new row per entry of
/// `new_rows`, appended after `config.vocab_size`, in the word-embedding
/// table and in the MLM decoder bias (when the checkpoint has one). Row `k`
/// is the mean of the existing rows listed in `new_rows[k]`: the ids the
/// checkpoint's own tokenizer splits the new token into, a common recipe
/// that starts a domain word near the meaning of its pieces. Updates
/// `config.vocab_size`. An empty id list or an id outside the old vocabulary
/// is an error ([`Error::InvalidConfig`]).
pub fn grow_vocabulary(
    tensors: &mut BTreeMap<String, Tensor>,
    config: &mut BertConfig,
    new_rows: &[Vec<i64>],
) -> Result<()> {
    if new_rows.is_empty() {
        return Ok(());
    }
    let old = config.vocab_size;
    if let Some(bad) = new_rows
        .iter()
        .find(|ids| ids.is_empty() || ids.iter().any(|&i| i < 0 || i >= old))
    {
        return Err(Error::InvalidConfig {
            field: "vocab_size",
            reason: format!(
                "a new token's row must average existing rows (ids below {old}), got {bad:?}"
            ),
        });
    }
    let grow = |t: &Tensor| -> Result<Tensor> {
        let mut rows = Vec::with_capacity(new_rows.len());
        for ids in new_rows {
            let index = Tensor::from_slice(ids).to_device(t.device());
            rows.push(t.f_index_select(0, &index)?.f_mean_dim(
                Some([0i64].as_slice()),
                true,
                t.kind(),
            )?);
        }
        let mut parts = vec![t.shallow_clone()];
        parts.extend(rows);
        Ok(Tensor::f_cat(&parts, 0)?)
    };
    let mut grown = 0;
    for (key, t) in tensors.iter_mut() {
        let b = bare(key);
        let is_rows = b == "embeddings.word_embeddings.weight"
            || b == "cls.predictions.bias"
            || b == "cls.predictions.decoder.bias"
            || b == "cls.predictions.decoder.weight";
        if is_rows && t.size().first() == Some(&old) {
            *t = grow(t)?;
            grown += 1;
        }
    }
    if grown == 0 {
        return Err(Error::CheckpointMismatch {
            missing: vec!["embeddings.word_embeddings.weight".into()],
            unexpected: Vec::new(),
        });
    }
    config.vocab_size = old + new_rows.len() as i64;
    Ok(())
}

/// Reads `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
/// A GPTQ checkpoint (`quantization_config` in `config.json`, see
/// [`crate::quantized`]) is dequantised: its layers come back as fp32 `weight`s.
pub fn read_weights(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    let mut tensors = read_weight_files(dir)?;
    // Only a quantised checkpoint's config is read here (a dense one is the
    // caller's business, and its errors are reported where it is read).
    let quantised = std::fs::read_to_string(dir.join("config.json"))
        .is_ok_and(|text| text.contains("\"quantization_config\""));
    if quantised {
        let config = read_config(dir)?;
        if let Some(q) = crate::quantized::GptqConfig::from_extra(&config.extra)? {
            crate::quantized::dequantize_all(&mut tensors, q)?;
        }
    }
    Ok(tensors)
}

/// The tensors of the weight files as stored.
pub fn read_weight_files(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return read_safetensors(&single);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(Error::NoWeights {
            dir: dir.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(&index).map_err(io_err(&index))?;
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let idx: Index = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: index.clone(),
        source,
    })?;
    let shards: BTreeSet<&String> = idx.weight_map.values().collect();
    let mut out = BTreeMap::new();
    for shard in shards {
        out.extend(read_safetensors(&dir.join(shard))?);
    }
    Ok(out)
}

struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_owned(name: &str, t: &Tensor) -> Result<Owned> {
    let dtype = dtype_of(t.kind()).ok_or_else(|| Error::UnsupportedDtype {
        key: name.to_string(),
        dtype: format!("{:?}", t.kind()),
    })?;
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    Ok(Owned {
        dtype,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        data,
    })
}

/// Writes named tensors as a safetensors file with `{"format": "pt"}` metadata (which
/// transformers requires), atomically.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let owned = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), to_owned(k, t)?)))
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes =
        safetensors::tensor::serialize(owned.iter().map(|(k, o)| (k.as_str(), o)), Some(meta))
            .map_err(|source| Error::Safetensors {
                path: path.to_path_buf(),
                source,
            })?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsyncs it
/// and renames it into place, so a reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // A bare file name has the parent "" (not None): that is the current directory.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        // Make the rename itself durable.
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The HF class whose key set a `VarStore` matches, for `config.json`'s
/// `architectures`, read off the head table: no head is `BertModel`, one head is
/// its row's class (the pooler tells the sequence classifier from the token
/// classifier), the MLM and pair heads together are `BertForPreTraining` (HF's one
/// class with two heads). `None` for a layout HF has no class for, such as a head
/// defined outside this crate: the caller's `architectures` then stands.
fn architecture(names: &BTreeSet<&str>) -> Option<&'static str> {
    let outside = names.iter().any(|k| {
        let b = bare(k);
        !(is_encoder_key(k) || b.starts_with("pooler.") || heads::head_of_key(k).is_some())
    });
    if outside {
        return None;
    }
    let pooler = names.iter().any(|k| bare(k).starts_with("pooler."));
    let present: Vec<&str> = heads::prefixes()
        .into_iter()
        .filter(|p| names.iter().any(|k| under(k, p)))
        .collect();
    match present.as_slice() {
        [] => Some("BertModel"),
        [mlm, pair]
            if *mlm == crate::heads::MlmHead::SPEC.prefix
                && *pair == crate::heads::PairHead::SPEC.prefix =>
        {
            Some("BertForPreTraining")
        }
        [one] => {
            let rows = || HEADS.iter().filter(|s| s.prefix == *one);
            rows()
                .find(|s| s.pooler == pooler)
                .or_else(|| rows().next())
                .map(|s| s.architecture)
        }
        _ => None,
    }
}

/// Saves `vs` as `dir/model.safetensors` + `dir/config.json` in HF's format, each
/// written atomically. Derived keys (the tied decoder) are not variables, so they are
/// omitted exactly as transformers omits them; `architectures` is set from the key
/// set by the head table (see the module docs), or left as `config` has it for a
/// layout outside the table.
pub fn save_pretrained(vs: &VarStore, config: &BertConfig, dir: &Path) -> Result<()> {
    let _span = tracing::info_span!("save_pretrained", dir = %dir.display()).entered();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Checkpoints are fp32 whatever precision the weights were cast to for
    // inference (`Precision::cast_weights`).
    let tensors: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| {
            if t.is_floating_point() && t.kind() != Kind::Float {
                t.f_to_kind(Kind::Float).map(|f| (name, f))
            } else {
                Ok((name, t))
            }
        })
        .collect::<std::result::Result<_, _>>()?;
    let names: BTreeSet<&str> = tensors.keys().map(String::as_str).collect();
    let mut config = config.clone();
    if let Some(arch) = architecture(&names) {
        config.architectures = Some(vec![arch.to_string()]);
    }
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    let json = config.to_json_string()?;
    write_atomic(&dir.join("config.json"), json.as_bytes())
}

//! Knowledge-graph embedding baselines for link prediction: DistMult (Yang
//! et al. 2015) and ComplEx (Trouillon et al. 2016), trained here with tch
//! so that `cloze-eval`'s link-prediction table can set a masked LM beside
//! a model that only ever sees the graph.
//!
//! **The recipe** is the one of Lacroix, Usunier and Obozinski (2018,
//! "Canonical tensor decomposition for knowledge base completion"), which
//! Dettmers et al. (2018) also use for ConvE:
//! - every training triple `(h, r, t)` gives two queries, `(h, r) -> t` and
//!   `(t, r⁻¹) -> h`, where `r⁻¹` is a relation of its own (the reciprocal,
//!   id `r + num_relations`);
//! - each query scores every entity in one matrix product and is trained
//!   with the softmax cross-entropy of its true answer (1-vs-all);
//! - the embeddings of the query's entity, its relation and its answer are
//!   penalised by the weighted N3 norm (the sum of their cubed moduli,
//!   divided by the batch size);
//! - Adagrad (or Adam), embeddings initialised as N(0, 1) times a small
//!   scale (1e-3 in the paper).
//!
//! [`KgeConfig::preset`] gives settings measured on UMLS (the figures are in
//! the preset's documentation). At prediction time a tail query
//! `(h, r, ?)` is scored with `r` and a head query `(?, r, t)` with `r⁻¹`
//! from `t`, so both directions are one matrix product per batch of
//! queries ([`KgeModel`] implements [`LinkScorer`]).
//!
//! **Determinism:** the initialisation draws from a ChaCha8 stream of the
//! config's seed ([`cloze_core::rng::Stream::ModelInit`]), not from
//! libtorch's global generator, and each epoch visits the queries in
//! [`cloze_core::rng::epoch_order`]; nothing else is random, so the same
//! seed on the same machine and thread count gives bit-identical
//! embeddings. The caller sets libtorch's thread count; the matrices are
//! small (UMLS: 128 x 400 by 400 x 135), so one thread is as fast as two.
//!
//! ```no_run
//! use cloze_eval::link::evaluate_links;
//! use cloze_text::kg::{KnowledgeGraph, Split};
//! use cloze_train::kge::{KgeConfig, KgeKind, KgeModel};
//!
//! let graph = KnowledgeGraph::load("umls".as_ref())?;
//! let config = KgeConfig::preset(KgeKind::ComplEx);
//! let run = KgeModel::train(&graph, &config, tch::Device::Cpu, &mut |p| {
//!     eprintln!("epoch {} loss {:.4} valid MRR {:?}", p.epoch, p.loss, p.valid_mrr);
//! })?;
//! let test = evaluate_links(&run.model, graph.split(Split::Test), &graph.known_answers(), 256)?;
//! println!("filtered test MRR {:.3}", test.both().filtered.mrr());
//! run.model.save("runs/umls-complex".as_ref())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;
use std::time::Instant;

use cloze_core::rng::{epoch_order, rng_for, Stream};
use cloze_eval::link::{evaluate_links, Direction, LinkQuery, LinkScorer};
use cloze_text::kg::{KnowledgeGraph, Split};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{OptimizerConfig as _, VarStore};
use tch::{Device, Kind, Reduction, TchError, Tensor};

use crate::error::{io_err, Error, Result};

/// The weights file [`KgeModel::save`] writes (safetensors, tensors
/// `entities` and `relations`).
pub const KGE_WEIGHTS: &str = "kge.safetensors";

/// The JSON file [`KgeModel::save`] writes beside the weights: the config
/// and the vocabulary sizes.
pub const KGE_CONFIG: &str = "kge.json";

/// The format tag inside [`KGE_CONFIG`].
const FORMAT: &str = "cloze-kge/1";

/// Queries per batch when the validation split is ranked during training.
const EVAL_BATCH: usize = 512;

/// Adagrad's denominator floor (PyTorch's default).
const ADAGRAD_EPS: f64 = 1e-10;

/// Which factorisation scores a triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KgeKind {
    /// `score(h, r, t) = Σ_i h_i r_i t_i` over real vectors of `dim`
    /// (Yang et al. 2015). Symmetric in `h` and `t` for one relation; the
    /// reciprocal relations give head queries their own relation vectors.
    #[serde(rename = "distmult")]
    DistMult,
    /// `score(h, r, t) = Re(Σ_i h_i r_i conj(t_i))` over complex vectors of
    /// `dim` components (Trouillon et al. 2016), stored as `dim` real parts
    /// followed by `dim` imaginary parts.
    #[serde(rename = "complex")]
    ComplEx,
}

impl KgeKind {
    /// `"distmult"` or `"complex"`.
    pub fn name(self) -> &'static str {
        match self {
            KgeKind::DistMult => "distmult",
            KgeKind::ComplEx => "complex",
        }
    }
}

/// The optimiser that fits the embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KgeOptimizer {
    /// Adagrad without decay and a zero initial accumulator, as Lacroix et
    /// al. (2018) train with (learning rate 0.1 there).
    Adagrad,
    /// Adam with PyTorch's default betas (0.9, 0.999) and no weight decay.
    Adam,
}

/// The settings of one embedding run. Every field has a default, so a JSON
/// or TOML file need only name what it changes; the defaults are DistMult's
/// [`KgeConfig::preset`] whatever `model` says, so a ComplEx run from a
/// file should name its `lr` and `n3` too (or start from
/// `KgeConfig::preset(KgeKind::ComplEx)` in code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KgeConfig {
    /// The factorisation.
    pub model: KgeKind,
    /// Embedding size: real components for DistMult, complex components
    /// (the rank) for ComplEx, which stores twice as many reals.
    pub dim: usize,
    /// Passes over the training queries (each triple in both directions).
    pub epochs: usize,
    /// Queries per optimiser step.
    pub batch_size: usize,
    /// The optimiser.
    pub optimizer: KgeOptimizer,
    /// Its learning rate (constant).
    pub lr: f64,
    /// Weight of the N3 penalty (Lacroix et al. 2018); 0 turns it off.
    pub n3: f64,
    /// Standard deviation of the initial embeddings.
    pub init_scale: f64,
    /// Rank the validation split every this many epochs (and after the
    /// last); 0 never ranks it.
    pub eval_every: usize,
    /// Keep the embeddings of the evaluation with the best filtered valid
    /// MRR rather than those of the last epoch (needs `eval_every > 0`).
    pub keep_best: bool,
    /// Seeds the initialisation and the order of the queries.
    pub seed: u64,
}

impl Default for KgeConfig {
    fn default() -> Self {
        Self::preset(KgeKind::DistMult)
    }
}

impl KgeConfig {
    /// Settings chosen on the UMLS validation split (filtered MRR, seed 0,
    /// a small grid over lr, N3 weight, batch size and optimiser): 200
    /// dimensions (ComplEx: rank 200), batches of 128 queries, N(0, 1e-3)
    /// initialisation, Adagrad, 100 epochs with validation every 5 keeping
    /// the best. DistMult trains at lr 0.03 with N3 weight 1e-3, ComplEx at
    /// lr 0.1 with N3 weight 5e-3; at higher rates DistMult peaks early and
    /// then overfits, and Adam at 1e-3 ends well below Adagrad on both.
    /// The measured test figures are in `crates/cloze-train/tests/kge_umls.rs`.
    pub fn preset(model: KgeKind) -> Self {
        let (lr, n3) = match model {
            KgeKind::DistMult => (0.03, 1e-3),
            KgeKind::ComplEx => (0.1, 5e-3),
        };
        Self {
            model,
            dim: 200,
            epochs: 100,
            batch_size: 128,
            optimizer: KgeOptimizer::Adagrad,
            lr,
            n3,
            init_scale: 1e-3,
            eval_every: 5,
            keep_best: true,
            seed: 0,
        }
    }

    /// Refuses values no run can use, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, problem: &str| {
            Err(Error::InvalidConfig {
                field,
                problem: problem.to_owned(),
            })
        };
        if self.dim == 0 {
            return bad("dim", "must be at least 1");
        }
        if self.dim > 1 << 20 {
            return bad("dim", "must be at most 1048576");
        }
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "must be a positive finite number");
        }
        if !(self.n3.is_finite() && self.n3 >= 0.0) {
            return bad("n3", "must be zero or a positive finite number");
        }
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            return bad("init_scale", "must be a positive finite number");
        }
        if self.keep_best && self.eval_every == 0 {
            return bad(
                "keep_best",
                "needs eval_every > 0: the best epoch is chosen on the validation split",
            );
        }
        Ok(())
    }

    /// Reals per embedding row: `dim` for DistMult, `2 * dim` for ComplEx.
    fn width(&self) -> i64 {
        let d = self.dim as i64;
        match self.model {
            KgeKind::DistMult => d,
            KgeKind::ComplEx => 2 * d,
        }
    }
}

/// One line of the training log, handed to the progress callback after
/// every epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KgeProgress {
    /// The epoch just finished, from 1.
    pub epoch: usize,
    /// Mean loss over the epoch's batches (cross-entropy plus N3).
    pub loss: f64,
    /// Filtered MRR on the validation split, both directions, when it was
    /// ranked after this epoch.
    pub valid_mrr: Option<f64>,
    /// Seconds since training started.
    pub seconds: f64,
}

/// What [`KgeModel::train`] returns.
#[derive(Debug)]
pub struct KgeRun {
    /// The trained model: the best validation epoch's embeddings when
    /// `keep_best` is set, else the last epoch's.
    pub model: KgeModel,
    /// One entry per epoch.
    pub log: Vec<KgeProgress>,
    /// The epoch whose embeddings the model holds.
    pub kept_epoch: usize,
    /// The filtered valid MRR of that epoch, when it was ranked.
    pub kept_valid_mrr: Option<f64>,
    /// Training wall time in seconds (validation included).
    pub seconds: f64,
}

/// What [`KGE_CONFIG`] holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedKge {
    format: String,
    num_entities: usize,
    num_relations: usize,
    config: KgeConfig,
}

/// DistMult or ComplEx embeddings of a graph's entities and relations (with
/// one reciprocal relation per relation).
pub struct KgeModel {
    vs: VarStore,
    /// `[num_entities, width]`.
    entities: Tensor,
    /// `[2 * num_relations, width]`: the relations, then their reciprocals.
    relations: Tensor,
    config: KgeConfig,
    num_entities: usize,
    num_relations: usize,
}

impl std::fmt::Debug for KgeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KgeModel")
            .field("config", &self.config)
            .field("num_entities", &self.num_entities)
            .field("num_relations", &self.num_relations)
            .finish_non_exhaustive()
    }
}

impl KgeModel {
    /// A freshly initialised model for `num_entities` entities and
    /// `num_relations` relations (reciprocals are added here), seeded by
    /// `config.seed`.
    pub fn new(
        config: &KgeConfig,
        num_entities: usize,
        num_relations: usize,
        device: Device,
    ) -> Result<Self> {
        config.validate()?;
        let too_big = |what: &str, n: usize| Error::KgeGraph {
            problem: format!("{n} {what} do not fit an embedding table"),
        };
        if num_entities == 0 || num_relations == 0 {
            return Err(Error::KgeGraph {
                problem: format!(
                    "a model needs at least one entity and one relation \
                     (got {num_entities} and {num_relations})"
                ),
            });
        }
        let n_ent = i64::try_from(num_entities)
            .ok()
            .filter(|&n| u32::try_from(n).is_ok())
            .ok_or_else(|| too_big("entities", num_entities))?;
        let n_rel = i64::try_from(num_relations)
            .ok()
            .filter(|&n| u32::try_from(2 * n).is_ok())
            .ok_or_else(|| too_big("relations", num_relations))?;
        let width = config.width();
        // A cap of 2^31 reals (8 GiB) per table keeps a mistyped size an
        // error rather than an allocation failure.
        let cap = |rows: i64, what: &str, n: usize| {
            if rows * width > 1 << 31 {
                Err(too_big(what, n))
            } else {
                Ok(())
            }
        };
        cap(n_ent, "entities", num_entities)?;
        cap(2 * n_rel, "relations", num_relations)?;
        let vs = VarStore::new(device);
        let mut rng = rng_for(config.seed, Stream::ModelInit, 0);
        let mut normal = |rows: i64| -> Result<Tensor, TchError> {
            let n = (rows * width) as usize;
            let values: Vec<f32> = (0..n)
                .map(|_| (standard_normal(&mut rng) * config.init_scale) as f32)
                .collect();
            Tensor::f_from_slice(&values)?.f_view([rows, width])
        };
        let (entities, relations) = (normal(n_ent)?, normal(2 * n_rel)?);
        let root = vs.root();
        let entities = root.f_var_copy("entities", &entities)?;
        let relations = root.f_var_copy("relations", &relations)?;
        Ok(Self {
            vs,
            entities,
            relations,
            config: config.clone(),
            num_entities,
            num_relations,
        })
    }

    /// The settings the model was built (and trained) with.
    pub fn config(&self) -> &KgeConfig {
        &self.config
    }

    /// Relations of the graph, without the reciprocals.
    pub fn num_relations(&self) -> usize {
        self.num_relations
    }

    /// Trains a fresh model on the training triples of `graph`, ranking the
    /// validation split every `config.eval_every` epochs, and calls
    /// `progress` after every epoch.
    pub fn train(
        graph: &KnowledgeGraph,
        config: &KgeConfig,
        device: Device,
        progress: &mut dyn FnMut(KgeProgress),
    ) -> Result<KgeRun> {
        let _span = tracing::info_span!("kge_train", model = config.model.name()).entered();
        let start = Instant::now();
        let mut model = Self::new(config, graph.entities.len(), graph.relations.len(), device)?;
        let rel_offset = graph.relations.len() as i64;
        // Both directions of every training triple: (known, relation, answer).
        let mut queries: Vec<[i64; 3]> = Vec::with_capacity(2 * graph.train.len());
        for t in &graph.train {
            let (h, r, t) = (i64::from(t.head), i64::from(t.relation), i64::from(t.tail));
            queries.push([h, r, t]);
            queries.push([t, r + rel_offset, h]);
        }
        if queries.is_empty() {
            return Err(Error::KgeGraph {
                problem: "the graph has no training triples".into(),
            });
        }
        let known = graph.known_answers();
        let mut optimizer = Optim::new(&model, config)?;
        let mut log = Vec::with_capacity(config.epochs);
        let mut best: Option<(f64, usize, [Tensor; 2])> = None;
        for epoch in 1..=config.epochs {
            let order = epoch_order(queries.len(), config.seed, epoch as u64);
            let mut loss_sum = 0.0;
            let mut batches = 0usize;
            for chunk in order.chunks(config.batch_size) {
                let pick =
                    |k: usize| -> Vec<i64> { chunk.iter().map(|&i| queries[i][k]).collect() };
                let loss = model.train_step(&pick(0), &pick(1), &pick(2), &mut optimizer)?;
                if !loss.is_finite() {
                    return Err(Error::KgeNonFinite { epoch, loss });
                }
                loss_sum += loss;
                batches += 1;
            }
            let ranks_now =
                config.eval_every > 0 && (epoch % config.eval_every == 0 || epoch == config.epochs);
            let valid_mrr = if ranks_now && !graph.valid.is_empty() {
                let m = evaluate_links(&model, graph.split(Split::Valid), &known, EVAL_BATCH)?;
                Some(m.both().filtered.mrr())
            } else {
                None
            };
            if let (Some(mrr), true) = (valid_mrr, config.keep_best) {
                if best.as_ref().is_none_or(|(b, _, _)| mrr > *b) {
                    best = Some((mrr, epoch, model.snapshot()?));
                }
            }
            let entry = KgeProgress {
                epoch,
                loss: loss_sum / batches.max(1) as f64,
                valid_mrr,
                seconds: start.elapsed().as_secs_f64(),
            };
            tracing::debug!(epoch, loss = entry.loss, valid_mrr = ?entry.valid_mrr, "kge epoch");
            progress(entry.clone());
            log.push(entry);
        }
        let last_mrr = log.last().and_then(|e| e.valid_mrr);
        let (kept_epoch, kept_valid_mrr) = match best {
            Some((mrr, epoch, saved)) => {
                model.restore(&saved)?;
                (epoch, Some(mrr))
            }
            None => (config.epochs, last_mrr),
        };
        Ok(KgeRun {
            model,
            log,
            kept_epoch,
            kept_valid_mrr,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// One optimiser step on a batch of queries (reciprocal relations
    /// already resolved); returns the batch loss.
    fn train_step(
        &mut self,
        known: &[i64],
        relation: &[i64],
        answer: &[i64],
        optimizer: &mut Optim,
    ) -> Result<f64> {
        let device = self.vs.device();
        let known = Tensor::f_from_slice(known)?.f_to_device(device)?;
        let relation = Tensor::f_from_slice(relation)?.f_to_device(device)?;
        let answer = Tensor::f_from_slice(answer)?.f_to_device(device)?;
        let lhs = self.entities.f_index_select(0, &known)?;
        let rel = self.relations.f_index_select(0, &relation)?;
        let rhs = self.entities.f_index_select(0, &answer)?;
        let logits = self
            .query_vectors(&lhs, &rel)?
            .f_matmul(&self.entities.f_tr()?)?;
        let fit =
            logits.f_cross_entropy_loss::<Tensor>(&answer, None, Reduction::Mean, -100, 0.0)?;
        let loss = if self.config.n3 > 0.0 {
            let batch = known.size()[0] as f64;
            let reg = self
                .n3_sum(&lhs)?
                .f_add(&self.n3_sum(&rel)?)?
                .f_add(&self.n3_sum(&rhs)?)?
                .f_mul_scalar(self.config.n3 / batch)?;
            fit.f_add(&reg)?
        } else {
            fit
        };
        optimizer.step(self, &loss)?;
        Ok(loss.f_double_value(&[])?)
    }

    /// The query vectors whose dot product with an entity's row is the
    /// triple's score: `lhs ∘ rel` for DistMult; for ComplEx the complex
    /// product `lhs · rel` (so that `Re(<lhs · rel, conj t>)` is a dot
    /// product of real rows).
    fn query_vectors(&self, lhs: &Tensor, rel: &Tensor) -> Result<Tensor, TchError> {
        match self.config.model {
            KgeKind::DistMult => lhs.f_mul(rel),
            KgeKind::ComplEx => {
                let d = self.config.dim as i64;
                let (a, b) = (lhs.f_narrow(1, 0, d)?, lhs.f_narrow(1, d, d)?);
                let (c, e) = (rel.f_narrow(1, 0, d)?, rel.f_narrow(1, d, d)?);
                let re = a.f_mul(&c)?.f_sub(&b.f_mul(&e)?)?;
                let im = a.f_mul(&e)?.f_add(&b.f_mul(&c)?)?;
                Tensor::f_cat(&[re, im], 1)
            }
        }
    }

    /// `Σ |x_i|³` over the rows of `x`, with `|x_i|` the modulus of each
    /// complex component for ComplEx. The cube of the modulus is computed as
    /// `(re² + im²)^1.5`, whose gradient stays finite at zero.
    fn n3_sum(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let cubes = match self.config.model {
            KgeKind::DistMult => x.f_abs()?.f_pow_tensor_scalar(3)?,
            KgeKind::ComplEx => {
                let d = self.config.dim as i64;
                let sq = x
                    .f_narrow(1, 0, d)?
                    .f_square()?
                    .f_add(&x.f_narrow(1, d, d)?.f_square()?)?;
                sq.f_pow_tensor_scalar(1.5)?
            }
        };
        cubes.f_sum(Kind::Float)
    }

    /// A copy of the embeddings.
    fn snapshot(&self) -> Result<[Tensor; 2]> {
        let _guard = tch::no_grad_guard();
        let copy = |t: &Tensor| -> Result<Tensor, TchError> {
            let mut c = t.f_empty_like()?;
            c.f_copy_(t)?;
            Ok(c)
        };
        Ok([copy(&self.entities)?, copy(&self.relations)?])
    }

    /// Puts back embeddings from [`Self::snapshot`].
    fn restore(&mut self, saved: &[Tensor; 2]) -> Result<()> {
        let _guard = tch::no_grad_guard();
        self.entities.f_copy_(&saved[0])?;
        self.relations.f_copy_(&saved[1])?;
        Ok(())
    }

    /// Writes [`KGE_WEIGHTS`] and [`KGE_CONFIG`] into `dir` (created if
    /// missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        self.vs.save(dir.join(KGE_WEIGHTS))?;
        let saved = SavedKge {
            format: FORMAT.to_owned(),
            num_entities: self.num_entities,
            num_relations: self.num_relations,
            config: self.config.clone(),
        };
        let path = dir.join(KGE_CONFIG);
        let json = serde_json::to_string_pretty(&saved).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, json + "\n").map_err(io_err("writing", &path))
    }

    /// Reads a model [`Self::save`] wrote into `dir`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let path = dir.join(KGE_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
        let saved: SavedKge = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        if saved.format != FORMAT {
            return Err(Error::KgeFile {
                path,
                problem: format!("format {:?}, expected {FORMAT:?}", saved.format),
                source: None,
            });
        }
        let mut model = Self::new(
            &saved.config,
            saved.num_entities,
            saved.num_relations,
            device,
        )?;
        let weights = dir.join(KGE_WEIGHTS);
        if !weights.is_file() {
            return Err(Error::KgeFile {
                path: weights,
                problem: "missing".into(),
                source: None,
            });
        }
        // VarStore::load copies each stored tensor into the variable of the
        // same name and refuses a missing name or a different shape.
        model.vs.load(&weights).map_err(|e| Error::KgeFile {
            path: weights,
            problem: format!("the weights do not match {KGE_CONFIG}"),
            source: Some(e),
        })?;
        Ok(model)
    }
}

impl LinkScorer for KgeModel {
    fn num_entities(&self) -> usize {
        self.num_entities
    }

    fn score(&self, queries: &[LinkQuery]) -> cloze_eval::Result<Vec<Vec<f32>>> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let mut known = Vec::with_capacity(queries.len());
        let mut relation = Vec::with_capacity(queries.len());
        for q in queries {
            if q.known as usize >= self.num_entities || q.relation as usize >= self.num_relations {
                return Err(cloze_eval::Error::InvalidOption {
                    name: "query",
                    reason: format!(
                        "entity {} / relation {} outside the model's {} entities and {} relations",
                        q.known, q.relation, self.num_entities, self.num_relations
                    ),
                });
            }
            known.push(i64::from(q.known));
            relation.push(match q.direction {
                Direction::Tail => i64::from(q.relation),
                Direction::Head => i64::from(q.relation) + self.num_relations as i64,
            });
        }
        let _guard = tch::no_grad_guard();
        let device = self.vs.device();
        let known = Tensor::f_from_slice(&known)?.f_to_device(device)?;
        let relation = Tensor::f_from_slice(&relation)?.f_to_device(device)?;
        let lhs = self.entities.f_index_select(0, &known)?;
        let rel = self.relations.f_index_select(0, &relation)?;
        let scores = self
            .query_vectors(&lhs, &rel)?
            .f_matmul(&self.entities.f_tr()?)?
            .f_to_kind(Kind::Float)?
            .f_to_device(Device::Cpu)?;
        Ok(Vec::<Vec<f32>>::try_from(&scores)?)
    }
}

/// One draw from N(0, 1) by the Box-Muller transform: our own stream
/// rather than libtorch's global generator, so initialising a model is
/// unaffected by other threads seeding libtorch and gives the same values
/// on every device.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    // 1 - [0, 1) keeps the logarithm's argument in (0, 1].
    let u = 1.0 - rng.random::<f64>();
    let v = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The optimiser state.
enum Optim {
    /// One squared-gradient accumulator per variable.
    Adagrad {
        lr: f64,
        sums: [Tensor; 2],
    },
    Adam(tch::nn::Optimizer),
}

impl Optim {
    fn new(model: &KgeModel, config: &KgeConfig) -> Result<Self> {
        Ok(match config.optimizer {
            KgeOptimizer::Adagrad => Optim::Adagrad {
                lr: config.lr,
                sums: [
                    model.entities.f_zeros_like()?,
                    model.relations.f_zeros_like()?,
                ],
            },
            KgeOptimizer::Adam => {
                Optim::Adam(tch::nn::Adam::default().build(&model.vs, config.lr)?)
            }
        })
    }

    /// Backpropagates `loss` and updates the model's embeddings.
    fn step(&mut self, model: &mut KgeModel, loss: &Tensor) -> Result<()> {
        match self {
            Optim::Adam(opt) => {
                opt.zero_grad();
                loss.f_backward()?;
                opt.step();
            }
            Optim::Adagrad { lr, sums } => {
                loss.f_backward()?;
                let _guard = tch::no_grad_guard();
                for (param, sum) in [&mut model.entities, &mut model.relations]
                    .into_iter()
                    .zip(sums.iter_mut())
                {
                    let grad = param.f_grad()?;
                    let _ = sum.f_addcmul_(&grad, &grad)?;
                    let denom = sum.f_sqrt()?.f_add_scalar(ADAGRAD_EPS)?;
                    let _ = param.f_addcdiv_(&grad.f_mul_scalar(-*lr)?, &denom)?;
                    param.zero_grad();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cloze_eval::link::LinkMetrics;
    use std::fmt::Write as _;

    /// 20 entities on a ring; `next` links i to i+1 and `skip` links i to
    /// i+2 (mod 20). Two forward triples of each relation are held out for
    /// validation and two for test. When `mirrored`, every triple also
    /// comes reversed (both relations symmetric), and the reversed triples
    /// all stay in training.
    fn ring(mirrored: bool) -> KnowledgeGraph {
        let name = |i: usize| format!("e{:02}", i % 20);
        let (mut train, mut valid, mut test) = (String::new(), String::new(), String::new());
        for i in 0..20 {
            for (rel, step) in [("next", 1), ("skip", 2)] {
                let out = match (i * 7 + step) % 10 {
                    0 => &mut valid,
                    5 => &mut test,
                    _ => &mut train,
                };
                writeln!(out, "{}\t{rel}\t{}", name(i), name(i + step)).unwrap();
                if mirrored {
                    writeln!(train, "{}\t{rel}\t{}", name(i + step), name(i)).unwrap();
                }
            }
        }
        KnowledgeGraph::from_texts(&train, &valid, &test).unwrap()
    }

    fn small(model: KgeKind) -> KgeConfig {
        KgeConfig {
            dim: 16,
            epochs: 150,
            batch_size: 16,
            lr: 0.1,
            n3: 1e-3,
            init_scale: 0.1,
            eval_every: 0,
            keep_best: false,
            seed: 7,
            ..KgeConfig::preset(model)
        }
    }

    fn test_metrics(g: &KnowledgeGraph, m: &KgeModel) -> LinkMetrics {
        evaluate_links(m, g.split(Split::Test), &g.known_answers(), 64).unwrap()
    }

    fn all_scores(g: &KnowledgeGraph, m: &KgeModel) -> Vec<Vec<f32>> {
        let qs: Vec<LinkQuery> = g
            .test
            .iter()
            .flat_map(|t| [LinkQuery::tail_of(t), LinkQuery::head_of(t)])
            .collect();
        m.score(&qs).unwrap()
    }

    #[test]
    fn learns_a_symmetric_ring_well_above_chance() {
        tch::set_num_threads(1);
        let g = ring(true);
        assert_eq!((g.entities.len(), g.relations.len()), (20, 2));
        assert_eq!((g.train.len(), g.valid.len(), g.test.len()), (72, 4, 4));
        // Each held-out triple's reverse is in training, and both models
        // can score a relation symmetrically. A random order of 20
        // candidates gives a mean reciprocal rank of H(20) / 20 ≈ 0.18.
        for kind in [KgeKind::DistMult, KgeKind::ComplEx] {
            let config = KgeConfig {
                epochs: 50,
                ..small(kind)
            };
            let run = KgeModel::train(&g, &config, Device::Cpu, &mut |_| {}).unwrap();
            let first = run.log.first().unwrap().loss;
            let last = run.log.last().unwrap().loss;
            let mrr = test_metrics(&g, &run.model).both().filtered.mrr();
            assert!(last < 0.5 * first, "{kind:?}: loss {first} -> {last}");
            assert!(mrr > 0.8, "{kind:?}: filtered test MRR {mrr}");
        }
    }

    #[test]
    fn complex_composes_steps_around_a_ring() {
        tch::set_num_threads(1);
        let g = ring(false);
        assert_eq!((g.entities.len(), g.relations.len()), (20, 2));
        assert_eq!((g.train.len(), g.valid.len(), g.test.len()), (32, 4, 4));
        // ComplEx can hold `next` as a rotation and `skip` as twice that
        // rotation, so the held-out steps follow from the others. (DistMult
        // cannot: its score is symmetric in head and tail, so `next` from
        // i ranks i - 1 as high as i + 1.) A random order of 20 candidates
        // gives a mean reciprocal rank of H(20) / 20 ≈ 0.18.
        let run = KgeModel::train(&g, &small(KgeKind::ComplEx), Device::Cpu, &mut |_| {}).unwrap();
        let first = run.log.first().unwrap().loss;
        let last = run.log.last().unwrap().loss;
        assert!(last < 0.1 * first, "loss {first} -> {last}");
        let mrr = test_metrics(&g, &run.model).both().filtered.mrr();
        assert!(mrr > 0.8, "filtered test MRR {mrr}");
    }

    #[test]
    fn keeps_the_best_validation_epoch_and_reports_progress() {
        tch::set_num_threads(1);
        let g = ring(false);
        let config = KgeConfig {
            eval_every: 10,
            keep_best: true,
            epochs: 45,
            ..small(KgeKind::ComplEx)
        };
        let mut seen = Vec::new();
        let run = KgeModel::train(&g, &config, Device::Cpu, &mut |p| seen.push(p)).unwrap();
        assert_eq!(seen, run.log);
        assert_eq!(run.log.len(), 45);
        let ranked: Vec<usize> = run
            .log
            .iter()
            .filter(|p| p.valid_mrr.is_some())
            .map(|p| p.epoch)
            .collect();
        assert_eq!(ranked, [10, 20, 30, 40, 45]);
        let best = run
            .log
            .iter()
            .filter_map(|p| p.valid_mrr)
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(run.kept_valid_mrr, Some(best));
        assert_eq!(run.log[run.kept_epoch - 1].valid_mrr, Some(best));
        // The kept embeddings are that epoch's: ranking valid again gives its MRR.
        let again = evaluate_links(&run.model, &g.valid, &g.known_answers(), EVAL_BATCH).unwrap();
        assert_eq!(again.both().filtered.mrr(), best);
    }

    #[test]
    fn the_same_seed_gives_identical_scores() {
        tch::set_num_threads(1);
        let g = ring(false);
        let config = KgeConfig {
            epochs: 10,
            ..small(KgeKind::ComplEx)
        };
        let train = |c: &KgeConfig| KgeModel::train(&g, c, Device::Cpu, &mut |_| {}).unwrap();
        let a = all_scores(&g, &train(&config).model);
        let b = all_scores(&g, &train(&config).model);
        let bits =
            |s: &[Vec<f32>]| -> Vec<u32> { s.iter().flatten().map(|x| x.to_bits()).collect() };
        assert_eq!(bits(&a), bits(&b));
        let other = all_scores(
            &g,
            &train(&KgeConfig {
                seed: 8,
                ..config.clone()
            })
            .model,
        );
        assert_ne!(bits(&a), bits(&other));
    }

    /// Sets the embeddings by hand.
    fn with_embeddings(config: &KgeConfig, entities: &[f32], relations: &[f32]) -> KgeModel {
        let width = config.width();
        let n_ent = entities.len() / width as usize;
        let n_rel = relations.len() / width as usize / 2;
        let mut m = KgeModel::new(config, n_ent, n_rel, Device::Cpu).unwrap();
        let _guard = tch::no_grad_guard();
        m.entities
            .f_copy_(&Tensor::from_slice(entities).view([n_ent as i64, width]))
            .unwrap();
        m.relations
            .f_copy_(&Tensor::from_slice(relations).view([2 * n_rel as i64, width]))
            .unwrap();
        m
    }

    fn query(known: u32, direction: Direction) -> LinkQuery {
        LinkQuery {
            known,
            relation: 0,
            direction,
        }
    }

    #[test]
    fn distmult_scores_by_hand_with_the_reciprocal_for_heads() {
        let config = KgeConfig {
            dim: 2,
            ..KgeConfig::preset(KgeKind::DistMult)
        };
        // Entities (1, 2), (3, -1), (0.5, 4); relation r = (2, 1), r⁻¹ = (-1, 3).
        let m = with_embeddings(&config, &[1., 2., 3., -1., 0.5, 4.], &[2., 1., -1., 3.]);
        let s = m
            .score(&[query(0, Direction::Tail), query(1, Direction::Head)])
            .unwrap();
        // (e0, r, t): e0 ∘ r = (2, 2), dotted with each entity.
        assert_eq!(s[0], [6.0, 4.0, 9.0]);
        // (h, r, e1) asked as (e1, r⁻¹, ?): e1 ∘ r⁻¹ = (-3, -3).
        assert_eq!(s[1], [-9.0, -6.0, -13.5]);
    }

    #[test]
    fn complex_scores_by_hand_with_the_reciprocal_for_heads() {
        let config = KgeConfig {
            dim: 1,
            ..KgeConfig::preset(KgeKind::ComplEx)
        };
        // Entities 1+2i, 3-i, 0+1i; r = 0+1i (a quarter turn), r⁻¹ = 2+0i.
        let m = with_embeddings(&config, &[1., 2., 3., -1., 0., 1.], &[0., 1., 2., 0.]);
        let s = m
            .score(&[query(0, Direction::Tail), query(1, Direction::Head)])
            .unwrap();
        // Re(h r conj(t)) with h r = (1+2i) i = -2+i:
        // t = 1+2i: (-2+i)(1-2i) = 0+5i -> 0; t = 3-i: (-2+i)(3+i) = -7+i -> -7;
        // t = i: (-2+i)(-i) = 1+2i -> 1.
        assert_eq!(s[0], [0.0, -7.0, 1.0]);
        // Head query from e1 = 3-i with r⁻¹ = 2: 6-2i, so Re((6-2i) conj t) =
        // 6 re(t) - 2 im(t)... i.e. 6*1 + (-2)(2) = 2, 6*3 + (-2)(-1) = 20, -2.
        assert_eq!(s[1], [2.0, 20.0, -2.0]);
        // An out-of-range query is an error, not a panic.
        assert!(m.score(&[query(3, Direction::Tail)]).is_err());
        assert!(m
            .score(&[LinkQuery {
                relation: 1,
                ..query(0, Direction::Tail)
            }])
            .is_err());
    }

    #[test]
    fn save_then_load_scores_identically() {
        tch::set_num_threads(1);
        let g = ring(false);
        let config = KgeConfig {
            epochs: 5,
            ..small(KgeKind::ComplEx)
        };
        let run = KgeModel::train(&g, &config, Device::Cpu, &mut |_| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model");
        run.model.save(&path).unwrap();
        let back = KgeModel::load(&path, Device::Cpu).unwrap();
        assert_eq!(back.config(), &config);
        assert_eq!(back.num_entities(), 20);
        assert_eq!(back.num_relations(), 2);
        assert_eq!(all_scores(&g, &run.model), all_scores(&g, &back));
        // Weights that do not fit the config are refused.
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.join(KGE_CONFIG)).unwrap()).unwrap();
        json["config"]["dim"] = 8.into();
        std::fs::write(path.join(KGE_CONFIG), json.to_string()).unwrap();
        let err = KgeModel::load(&path, Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::KgeFile { .. }), "{err}");
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let field = |c: KgeConfig| match c.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let base = KgeConfig::default;
        assert_eq!(field(KgeConfig { dim: 0, ..base() }), "dim");
        assert_eq!(
            field(KgeConfig {
                epochs: 0,
                ..base()
            }),
            "epochs"
        );
        assert_eq!(
            field(KgeConfig {
                batch_size: 0,
                ..base()
            }),
            "batch_size"
        );
        assert_eq!(
            field(KgeConfig {
                lr: f64::NAN,
                ..base()
            }),
            "lr"
        );
        assert_eq!(field(KgeConfig { n3: -1.0, ..base() }), "n3");
        assert_eq!(
            field(KgeConfig {
                init_scale: 0.0,
                ..base()
            }),
            "init_scale"
        );
        assert_eq!(
            field(KgeConfig {
                eval_every: 0,
                ..base()
            }),
            "keep_best"
        );
        assert!(base().validate().is_ok());
        // The JSON form names its fields and fills the rest from the default.
        let c: KgeConfig = serde_json::from_str(r#"{"model": "complex", "dim": 8}"#).unwrap();
        assert_eq!(
            (c.model, c.dim, c.epochs),
            (KgeKind::ComplEx, 8, base().epochs)
        );
        assert!(serde_json::from_str::<KgeConfig>(r#"{"dimension": 8}"#).is_err());
        assert!(KgeModel::new(&base(), 0, 1, Device::Cpu).is_err());
    }
}

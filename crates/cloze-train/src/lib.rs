//! `cloze-train`: the training layer. AdamW over a flat parameter buffer,
//! learning-rate schedules, objectives as weighted losses, the training loop
//! with gradient accumulation and clipping, atomic checkpoints with exact
//! resume, periodic held-out evaluation and a JSONL metrics log.
//!
//! Neighbours: it drives a model from `cloze-models` (through the small
//! [`PretrainModel`] trait), reads masked batches produced by `cloze-mask` from
//! `cloze-text` shards (through [`DataSource`]), and scores them with
//! `cloze-eval`'s MLM metrics. It draws no progress bars and parses no
//! arguments: the driver observes it through [`Observer`].
//!
//! What it refuses, with typed errors that say what to change: data longer
//! than the model's position embeddings ([`data::PreparedData::check_fits_model`],
//! [`Error::SequenceTooLong`]); a masking scheme that selects nothing
//! ([`Error::InvalidMasking`] at config validation, [`Error::NothingMasked`]
//! for a batch without a masked token); resuming with settings that would
//! change the run ([`TrainConfig::resume_changes`], [`Error::ResumeChangesRun`]),
//! past `run.max_steps` ([`Error::AlreadyPast`]) or from a damaged checkpoint
//! ([`Error::CorruptCheckpoint`] names the newest intact one, which
//! [`Trainer::resume_from`] continues from).

//!
//! A few training steps on a synthetic batch, from a preset's settings
//! (`cloze pretrain` adds prepared shards, masking, evaluation and checkpoints
//! around the same step through [`Trainer`]):
//!
//! ```
//! use cloze_train::bert::{bert_config, BertPretrainer};
//! use cloze_train::config::InitConfig;
//! use cloze_train::objective::Mlm;
//! use cloze_train::trainer::train_step;
//! use cloze_train::{AdamW, TensorBatch, TrainConfig};
//!
//! let mut cfg = TrainConfig::load_or_preset("bert-tiny")?;
//! cfg.model.hidden_size = 32;
//! cfg.model.intermediate_size = 64;
//! cfg.model.num_attention_heads = 2;
//! let vocab = 100;
//! let model = BertPretrainer::new_masked_lm(
//!     bert_config(&cfg.model, vocab, 0),
//!     42,
//!     &InitConfig::default(),
//!     tch::Device::Cpu,
//! )?;
//! let mut opt = AdamW::new(&model.vs, &cfg.optimizer)?;
//! // 4 x 16 random ids, 15% of the positions to predict.
//! let batch = TensorBatch::synthetic(4, 16, i64::from(vocab), 0.15, 0)?;
//! let objective = Mlm { weight: 1.0 };
//! let first = train_step(&model, &objective, &mut opt, &batch, 1e-3, 1.0)?;
//! let mut last = first;
//! for _ in 0..20 {
//!     last = train_step(&model, &objective, &mut opt, &batch, 1e-3, 1.0)?;
//! }
//! assert!(last < first, "the loss on a repeated batch falls: {first} -> {last}");
//! # Ok::<(), cloze_train::Error>(())
//! ```

pub mod batch;
pub mod bench;
pub mod bert;
pub mod checkpoint;
pub mod code;
pub mod config;
pub mod data;
pub mod dialogue;

pub mod error;
pub mod finetune;
pub mod kge;
pub mod link;
pub mod metrics;
pub mod objective;
pub mod optim;
pub mod pmlm;
pub mod s2s;
pub mod schedule;
pub mod trainer;

pub use batch::{ModelOutput, PretrainModel, TensorBatch};
pub use bert::BertPretrainer;
pub use cloze_eval::mlm_eval::EvalSet;
pub use config::{LoopConfig, TrainConfig};
pub use error::{Error, Result};
pub use objective::Objective;
pub use optim::AdamW;
pub use schedule::LrSchedule;
pub use trainer::{evaluate, DataSource, HeldOut, Observer, RunOutcome, Trainer};

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

pub mod batch;
pub mod bench;
pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod data;

pub mod error;
pub mod metrics;
pub mod objective;
pub mod optim;
pub mod schedule;
pub mod trainer;

pub use batch::{ModelOutput, PretrainModel, TensorBatch};
pub use bert::BertPretrainer;
pub use config::TrainConfig;
pub use error::{Error, Result};
pub use objective::Objective;
pub use optim::AdamW;
pub use schedule::LrSchedule;
pub use trainer::{evaluate, DataSource, EvalSet, Observer, RunOutcome, Trainer};

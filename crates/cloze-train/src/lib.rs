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

//! Shared fixtures: a tiny BERT and synthetic masked batches with learnable structure.

#![allow(dead_code, missing_docs)]

use std::path::Path;

use cloze_mask::batch::{Batch, MaskedTarget};
use cloze_train::config::TrainConfig;
use cloze_train::trainer::{DataSource, Quiet, RunOutcome, Trainer};
use cloze_train::{BertPretrainer, Result};
use cloze_train::{EvalSet, HeldOut};

pub const VOCAB: u32 = 40;
pub const SEQ: usize = 16;

/// Synthetic data: each row is an arithmetic sequence of ids (start + k*step mod
/// range), so masked tokens are predictable from their neighbours.
pub struct Synthetic {
    pub n: usize,
    pub seed: u64,
    pub pairs: bool,
}

fn mix(a: u64, b: u64, c: u64) -> u64 {
    cloze_train::trainer::mix_seed(a, b, c)
}

impl Synthetic {
    pub fn make(&self, epoch: u64, indices: &[usize]) -> Batch {
        let bs = indices.len();
        let mut b = Batch {
            batch_size: bs,
            seq_len: SEQ,
            ..Default::default()
        };
        for (row, &i) in indices.iter().enumerate() {
            let start = (i as u64 * 7 % 30) as i64 + 5;
            let step = (i % 3) as i64 + 1;
            for pos in 0..SEQ {
                let tok = if pos == 0 {
                    2
                } else {
                    5 + (start - 5 + step * pos as i64) % 35
                };
                let r = mix(self.seed, epoch, (i * SEQ + pos) as u64);
                let masked = pos > 0 && r % 100 < 15;
                b.input_ids.push(if masked { 4 } else { tok });
                b.token_type_ids.push(0);
                b.attention_mask.push(1);
                if masked {
                    b.targets.masked_lm.push(MaskedTarget {
                        row: row as u32,
                        pos: pos as u32,
                        target: tok as u32,
                    });
                }
            }
        }
        if b.targets.masked_lm.is_empty() {
            b.targets.masked_lm.push(MaskedTarget {
                row: 0,
                pos: 1,
                target: b.input_ids[1] as u32,
            });
        }
        if self.pairs {
            b.targets.pair = Some(indices.iter().map(|&i| (i % 2) as i64).collect());
        }
        b
    }
}

impl DataSource for Synthetic {
    fn num_examples(&self) -> usize {
        self.n
    }
    fn epoch_order(&self, epoch: u64) -> Result<Vec<usize>> {
        let mut v: Vec<usize> = (0..self.n).collect();
        v.sort_by_key(|&i| mix(self.seed, epoch + 1000, i as u64));
        Ok(v)
    }
    fn batch(&self, epoch: u64, _first: u64, indices: &[usize]) -> Result<Batch> {
        Ok(self.make(epoch, indices))
    }
}

pub fn eval_set() -> EvalSet {
    let s = Synthetic {
        n: 64,
        seed: 99,
        pairs: false,
    };
    let batches = (0..4)
        .map(|k| {
            s.make(
                0,
                &(k * 16..(k + 1) * 16).map(|i| i + 1000).collect::<Vec<_>>(),
            )
        })
        .collect();
    EvalSet {
        batches,
        baseline: cloze_eval::mlm_eval::UnigramBaseline::from_counts(
            &[0, 0, 0, 0, 0, 9, 8],
            &[0, 1, 2, 3, 4],
        ),
        mask_token: Some(4),
        pair_name: "pair".into(),
    }
}

pub fn config(max_steps: u64) -> TrainConfig {
    let text = format!(
        r#"
[run]
seed = 7
threads = 1
max_steps = {max_steps}
log_every = 1
[model]
hidden_size = 32
num_hidden_layers = 2
num_attention_heads = 2
intermediate_size = 64
max_position_embeddings = 32
hidden_dropout_prob = 0.1
attention_probs_dropout_prob = 0.1
[masking]
units = {{ type = "tokens" }}
select = {{ type = "budget", rate = 0.15 }}
corrupt = {{ type = "bert" }}
[optimizer]
lr = 3e-3
weight_decay = 0.01
[schedule]
warmup_steps = 3
[data]
batch_size = 8
grad_accum = 2
[eval]
every_steps = 5
max_examples = 64
[checkpoint]
every_steps = 4
keep_last = 2
"#
    );
    TrainConfig::from_toml(&text, Path::new("test.toml")).expect("test config parses")
}

pub fn model(cfg: &TrainConfig, pair_head: bool) -> BertPretrainer {
    let bc = cloze_train::bert::bert_config(&cfg.model, VOCAB, 0);
    let (seed, device) = (cfg.run.seed, tch::Device::Cpu);
    let mut m = if pair_head {
        BertPretrainer::new(bc, seed, &cfg.init, device)
    } else {
        BertPretrainer::new_masked_lm(bc, seed, &cfg.init, device)
    }
    .expect("model builds");
    // As the driver does: the run's precision applies to the model's forward.
    m.precision = cfg.run.precision;
    m
}

/// The train losses logged in a run directory, by step.
pub fn train_losses(run_dir: &Path) -> Vec<(u64, f64)> {
    cloze_train::metrics::read_records(&cloze_train::metrics::metrics_path(run_dir))
        .expect("metrics readable")
        .into_iter()
        .filter_map(|r| match r {
            cloze_train::metrics::MetricsRecord::Train(t) => Some((t.step, t.loss)),
            _ => None,
        })
        .collect()
}

/// libtorch's generator is process-wide: tests that train hold this lock so that
/// their initialisation and dropout draws do not interleave under `cargo test`.
pub fn torch_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh run of `steps` steps on 40 synthetic MLM examples (one libtorch
/// thread, no pair head), evaluated on `eval` when given.
pub fn fresh_run(dir: &Path, steps: u64, eval: Option<&EvalSet>) -> Result<RunOutcome> {
    tch::set_num_threads(1);
    let cfg = config(steps);
    let m = model(&cfg, false);
    let data = Synthetic {
        n: 40,
        seed: 3,
        pairs: false,
    };
    let mut t = Trainer::new(cfg, &m, &m.vs, dir)?;
    t.run(&data, eval.map(|e| e as &dyn HeldOut), &mut Quiet)
}

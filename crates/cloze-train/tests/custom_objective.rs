//! An objective written outside the library: masked LM with label smoothing,
//! which also reports how confident the model is. It is trained through the
//! public `Objective` trait and `Trainer::with_objective`, and its named
//! values reach `metrics.jsonl`, the observer and the held-out report with no
//! library code knowing its names.

mod common;

use cloze_core::Report;
use cloze_train::metrics::{metrics_path, read_records, MetricsRecord, TrainMetrics};
use cloze_train::objective::{accuracy, Losses};
use cloze_train::trainer::{Observer, RunOutcome, Trainer};
use cloze_train::{HeldOut, ModelOutput, Objective, TensorBatch};
use common::{config, eval_set, model, torch_lock, Synthetic};
use tch::{Kind, Reduction, Tensor};

/// Cross-entropy against targets smoothed by `smoothing`.
struct Smoothed {
    smoothing: f64,
}

impl Objective for Smoothed {
    fn name(&self) -> &str {
        "smoothed_mlm"
    }

    fn losses(&self, out: &ModelOutput, batch: &TensorBatch) -> cloze_train::Result<Losses> {
        let loss = out.mlm_logits.f_cross_entropy_loss::<Tensor>(
            &batch.targets,
            None,
            Reduction::Mean,
            -100,
            self.smoothing,
        )?;
        let confidence = tch::no_grad(|| -> cloze_train::Result<f64> {
            Ok(out
                .mlm_logits
                .f_softmax(-1, Kind::Float)?
                .f_amax(-1, false)?
                .f_mean(Kind::Double)?
                .f_double_value(&[])?)
        })?;
        let report = Report::new()
            .loss("smoothed", loss.f_double_value(&[])?)
            .accuracy("top1", accuracy(&out.mlm_logits, &batch.targets)?)
            .accuracy("confidence", confidence);
        Ok(Losses::opaque(loss, report))
    }
}

/// Keeps what the trainer tells its observer.
#[derive(Default)]
struct Seen {
    logs: Vec<TrainMetrics>,
    evals: Vec<Report>,
}

impl Observer for Seen {
    fn on_log(&mut self, m: &TrainMetrics) {
        self.logs.push(m.clone());
    }
    fn on_eval(&mut self, _step: u64, report: &Report) {
        self.evals.push(report.clone());
    }
}

#[test]
fn an_objective_from_outside_trains_and_is_reported_by_name() -> anyhow::Result<()> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let dir = tempfile::tempdir()?;
    let cfg = config(10);
    let m = model(&cfg, false);
    let data = Synthetic {
        n: 40,
        seed: 3,
        pairs: false,
    };
    let eval = eval_set();
    let mut seen = Seen::default();
    let mut t = Trainer::new(cfg, &m, &m.vs, dir.path())?
        .with_objective(Box::new(Smoothed { smoothing: 0.1 }));
    assert_eq!(t.objective().name(), "smoothed_mlm");
    let out = t.run(&data, Some(&eval as &dyn HeldOut), &mut seen)?;
    assert!(matches!(out, RunOutcome::Finished { .. }));

    // The observer saw the objective's own names, and nothing else.
    assert_eq!(seen.logs.len(), 10, "log_every = 1");
    for l in &seen.logs {
        assert_eq!(l.report.losses.keys().collect::<Vec<_>>(), ["smoothed"]);
        let conf = l.report.accuracies["confidence"];
        assert!((0.0..=1.0).contains(&conf), "{conf}");
        assert!(l.report.accuracies.contains_key("top1"));
    }
    // The objective is what was minimised: its loss falls.
    let first = seen.logs[0].report.losses["smoothed"];
    let last = seen.logs[9].report.losses["smoothed"];
    assert!(last < first, "smoothed loss {first} -> {last}");
    // The trainer's total is the objective's loss (weight 1, no other part).
    assert!((seen.logs[9].loss - last).abs() < 1e-9);

    // metrics.jsonl holds the same names, and held-out lines the task's.
    let records = read_records(&metrics_path(dir.path()))?;
    let train_names: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Train(t) => Some(t.report.losses.keys().cloned().collect::<Vec<_>>()),
            MetricsRecord::Eval(_) => None,
        })
        .collect();
    assert_eq!(train_names.len(), 10);
    assert!(train_names.iter().all(|n| n == &["smoothed".to_string()]));
    let evals: Vec<&Report> = records
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Eval(e) => Some(&e.report),
            MetricsRecord::Train(_) => None,
        })
        .collect();
    assert!(!evals.is_empty());
    assert_eq!(seen.evals.len(), evals.len());
    assert!(evals.iter().all(|e| e.losses.contains_key("mlm")));
    Ok(())
}

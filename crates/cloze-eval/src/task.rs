//! The evaluation-task abstraction: inputs -> predictions -> metrics.
//!
//! A [`Task`] owns its inputs (held-out masked batches, labelled texts,
//! knowledge-graph queries, source documents), asks a model for predictions
//! one input at a time, folds each prediction into a metrics accumulator and
//! finally reports named, typed values ([`Report`]). [`run`] drives any task
//! without gradients, so a task is only its own types and four methods: the
//! held-out MLM evaluation ([`crate::mlm_eval::MlmTask`]) is the first one;
//! classification, link prediction and generation slot in the same way.

use cloze_core::Report;

use crate::Result;

/// An evaluation task over a fixed set of inputs.
pub trait Task {
    /// What is evaluated (usually a trait object such as `dyn MlmModel`).
    type Model: ?Sized;
    /// One unit of work (a batch, a query, a document).
    type Input;
    /// The model's answer for one input.
    type Prediction;
    /// Running sums of the metrics.
    type Metrics: Default;

    /// The inputs, in a fixed order.
    fn inputs(&self) -> &[Self::Input];
    /// The model's prediction for one input (called without gradients).
    fn predict(&self, model: &Self::Model, input: &Self::Input) -> Result<Self::Prediction>;
    /// Folds one prediction into the metrics.
    fn accumulate(
        &self,
        metrics: &mut Self::Metrics,
        input: &Self::Input,
        prediction: Self::Prediction,
    ) -> Result<()>;
    /// The named values of the finished metrics.
    fn report(&self, metrics: &Self::Metrics) -> Report;
}

/// Runs `task` on `model` without gradients and returns its finished metrics.
pub fn evaluate<T: Task>(task: &T, model: &T::Model) -> Result<T::Metrics> {
    let _span = tracing::info_span!("task", inputs = task.inputs().len()).entered();
    let _g = tch::no_grad_guard();
    let mut metrics = T::Metrics::default();
    for input in task.inputs() {
        let prediction = task.predict(model, input)?;
        task.accumulate(&mut metrics, input, prediction)?;
    }
    Ok(metrics)
}

/// Runs `task` on `model` and returns its report.
pub fn run<T: Task>(task: &T, model: &T::Model) -> Result<Report> {
    Ok(task.report(&evaluate(task, model)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy task: the model is a function from a number to a guess; the
    /// metric is the fraction of exact guesses.
    struct Parity(Vec<(u32, bool)>);

    impl Task for Parity {
        type Model = dyn Fn(u32) -> bool;
        type Input = (u32, bool);
        type Prediction = bool;
        type Metrics = (u64, u64);
        fn inputs(&self) -> &[(u32, bool)] {
            &self.0
        }
        fn predict(&self, model: &Self::Model, input: &(u32, bool)) -> Result<bool> {
            Ok(model(input.0))
        }
        fn accumulate(&self, m: &mut (u64, u64), input: &(u32, bool), p: bool) -> Result<()> {
            m.0 += u64::from(p == input.1);
            m.1 += 1;
            Ok(())
        }
        fn report(&self, m: &(u64, u64)) -> Report {
            Report::new()
                .accuracy("parity", m.0 as f64 / m.1.max(1) as f64)
                .count("parity", m.1)
        }
    }

    #[test]
    fn a_task_goes_from_inputs_to_a_report() -> Result<()> {
        let task = Parity(vec![(1, false), (2, true), (3, false), (5, true)]);
        let even: &dyn Fn(u32) -> bool = &|n| n % 2 == 0;
        let r = run(&task, even)?;
        assert_eq!(r.accuracies["parity"], 0.75);
        assert_eq!(r.counts["parity"], 4);
        Ok(())
    }
}

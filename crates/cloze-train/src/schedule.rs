//! Learning-rate schedules: linear warm-up, then linear, cosine or no decay.
//!
//! The rate is a pure function of the step, so a resumed run needs only the
//! step counter to continue the schedule exactly.

use crate::config::{Decay, ScheduleConfig};

/// A learning-rate schedule over a fixed number of optimiser steps.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    peak: f64,
    warmup: u64,
    total: u64,
    decay: Decay,
    min_ratio: f64,
}

impl LrSchedule {
    /// Builds the schedule for `total` steps peaking at `peak`.
    pub fn new(peak: f64, total: u64, cfg: &ScheduleConfig) -> Self {
        Self {
            peak,
            warmup: cfg.warmup_steps.min(total),
            total,
            decay: cfg.decay,
            min_ratio: cfg.min_lr_ratio,
        }
    }

    /// The learning rate used by optimiser step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            // Step 0 gets a small positive rate rather than 0 so no step is wasted.
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).clamp(0.0, 1.0);
        let factor = match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => 1.0 - progress,
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        self.peak * (self.min_ratio + (1.0 - self.min_ratio) * factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(decay: Decay) -> ScheduleConfig {
        ScheduleConfig {
            warmup_steps: 10,
            decay,
            min_lr_ratio: 0.0,
        }
    }

    #[test]
    fn warmup_rises_linearly_to_peak() {
        let s = LrSchedule::new(1.0, 110, &cfg(Decay::Linear));
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(4) - 0.5).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn linear_and_cosine_reach_the_floor() {
        let lin = LrSchedule::new(2.0, 110, &cfg(Decay::Linear));
        assert!((lin.lr(60) - 1.0).abs() < 1e-12);
        assert!(lin.lr(110).abs() < 1e-12);
        let cos = LrSchedule::new(2.0, 110, &cfg(Decay::Cosine));
        assert!((cos.lr(60) - 1.0).abs() < 1e-12);
        assert!(cos.lr(35) > lin.lr(35));
        let mut floor = cfg(Decay::Cosine);
        floor.min_lr_ratio = 0.1;
        let f = LrSchedule::new(2.0, 110, &floor);
        assert!((f.lr(110) - 0.2).abs() < 1e-12);
        let c = LrSchedule::new(2.0, 110, &cfg(Decay::Constant));
        assert_eq!(c.lr(100), 2.0);
    }
}

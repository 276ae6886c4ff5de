//! The learning-rate schedules of [`crate::config::Schedule`], stepped once per iteration.
//!
//! One scheduler for every kind, with its position as the record, so the learning rate at any
//! iteration is a closed form (`lr_at`) that the metrics can report.

use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::tensor::backend::Backend;

use crate::config::Schedule;

/// A schedule over a run of `iterations_per_epoch × epochs` steps.
#[derive(Debug, Clone)]
pub struct Scheduler {
    lr: f64,
    schedule: Schedule,
    per_epoch: usize,
    total: usize,
    /// Steps taken so far.
    pub iteration: usize,
}

impl Scheduler {
    /// A scheduler at iteration 0.
    pub fn new(lr: f64, schedule: Schedule, per_epoch: usize, epochs: usize) -> Self {
        Self {
            lr,
            schedule,
            per_epoch: per_epoch.max(1),
            total: (per_epoch * epochs).max(1),
            iteration: 0,
        }
    }

    /// The learning rate of step `i` (0-based).
    pub fn lr_at(&self, i: usize) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine { min_lr } => {
                let t = (i as f64 / self.total as f64).min(1.0);
                min_lr + 0.5 * (self.lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Step {
                every_epochs,
                gamma,
            } => self.lr * gamma.powi((i / self.per_epoch / every_epochs) as i32),
        }
    }
}

impl LrScheduler for Scheduler {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        let lr = self.lr_at(self.iteration);
        self.iteration += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.iteration
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.iteration = record;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_step_values() {
        let s = Scheduler::new(0.1, Schedule::Cosine { min_lr: 0.0 }, 10, 2);
        assert_eq!(s.lr_at(0), 0.1);
        assert!((s.lr_at(10) - 0.05).abs() < 1e-12);
        assert!(s.lr_at(20).abs() < 1e-12);
        let s = Scheduler::new(
            0.1,
            Schedule::Step {
                every_epochs: 2,
                gamma: 0.5,
            },
            10,
            6,
        );
        assert_eq!((s.lr_at(19), s.lr_at(20), s.lr_at(45)), (0.1, 0.05, 0.025));
        let mut s = Scheduler::new(0.3, Schedule::Constant, 1, 1);
        assert_eq!((s.step(), s.iteration), (0.3, 1));
    }
}

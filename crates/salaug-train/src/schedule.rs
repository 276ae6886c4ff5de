//! The learning-rate schedules of [`crate::config::Schedule`], stepped once per iteration,
//! with an optional linear warm-up (`train.warmup_epochs`) by burn-optim's
//! [`LinearLrScheduler`] multiplying the schedule.
//!
//! One scheduler for every kind, with its position as the record, so the learning rate at any
//! iteration is a function of the iteration (`lr_at`) that the metrics can report, and a
//! resumed run continues with the same rates.

use burn::optim::lr_scheduler::linear::{LinearLrScheduler, LinearLrSchedulerConfig};
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
    /// The warm-up factor's scheduler (from `warmup_start` to 1 over its steps) and its steps.
    warmup: Option<(LinearLrSchedulerConfig, usize)>,
    /// The warm-up factor's scheduler at `iteration`.
    warming: Option<LinearLrScheduler>,
    /// Steps taken so far.
    pub iteration: usize,
}

impl Scheduler {
    /// A scheduler at iteration 0, without warm-up.
    pub fn new(lr: f64, schedule: Schedule, per_epoch: usize, epochs: usize) -> Self {
        Self {
            lr,
            schedule,
            per_epoch: per_epoch.max(1),
            total: (per_epoch * epochs).max(1),
            warmup: None,
            warming: None,
            iteration: 0,
        }
    }

    /// The same schedule multiplied by a linear warm-up factor that rises from `start` (in
    /// (0, 1]) at step 0 to 1 at step `steps`, and stays 1 (`steps` = 0: no warm-up).
    pub fn with_warmup(mut self, steps: usize, start: f64) -> anyhow::Result<Self> {
        if steps == 0 {
            return Ok(self);
        }
        let config = LinearLrSchedulerConfig::new(start, 1.0, steps);
        let warming = config
            .init()
            .map_err(|e| anyhow::anyhow!("train.warmup_start = {start}: {e}"))?;
        self.warmup = Some((config, steps));
        self.warming = Some(warming);
        Ok(self)
    }

    /// The schedule's learning rate at step `i`, before warm-up.
    fn scheduled(&self, i: usize) -> f64 {
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

    /// The warm-up scheduler after `i` steps.
    fn warming_after(&self, i: usize) -> Option<LinearLrScheduler> {
        let (config, steps) = self.warmup.as_ref()?;
        let mut s = config.init().expect("checked by with_warmup");
        for _ in 0..i.min(steps + 1) {
            s.step();
        }
        Some(s)
    }

    /// The learning rate of step `i` (0-based).
    pub fn lr_at(&self, i: usize) -> f64 {
        let factor = self.warming_after(i).map_or(1.0, |mut s| s.step());
        self.scheduled(i) * factor
    }
}

impl LrScheduler for Scheduler {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        let factor = self.warming.as_mut().map_or(1.0, |s| s.step());
        let lr = self.scheduled(self.iteration) * factor;
        self.iteration += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.iteration
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.iteration = record;
        self.warming = self.warming_after(record);
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

    #[test]
    fn warmup_rises_linearly_then_leaves_the_schedule_and_resumes_where_it_stopped() {
        let s = Scheduler::new(0.2, Schedule::Constant, 10, 2)
            .with_warmup(4, 0.2)
            .unwrap();
        let lrs: Vec<f64> = (0..6).map(|i| s.lr_at(i)).collect();
        for (got, want) in lrs.iter().zip([0.04, 0.08, 0.12, 0.16, 0.2, 0.2]) {
            assert!((got - want).abs() < 1e-12, "{lrs:?}");
        }
        // Stepping gives lr_at, from the start and from a record (a resumed run).
        let mut a = s.clone();
        let stepped: Vec<f64> = (0..6).map(|_| a.step()).collect();
        assert_eq!(stepped, lrs);
        let mut b = s.clone().load_record::<crate::backend::Selected>(2);
        assert_eq!((b.step(), b.step()), (lrs[2], lrs[3]));
        // Multiplies a decaying schedule.
        let c = Scheduler::new(0.1, Schedule::Cosine { min_lr: 0.0 }, 10, 2)
            .with_warmup(5, 0.5)
            .unwrap();
        let plain = Scheduler::new(0.1, Schedule::Cosine { min_lr: 0.0 }, 10, 2);
        assert!((c.lr_at(0) - 0.5 * plain.lr_at(0)).abs() < 1e-12);
        assert_eq!(c.lr_at(12), plain.lr_at(12));
        assert!(Scheduler::new(0.1, Schedule::Constant, 1, 1)
            .with_warmup(3, 0.0)
            .is_err());
    }
}

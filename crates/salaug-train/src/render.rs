//! Progress for the Learner, as researchers read it: every `train.log_every` steps the running
//! L_class / L_sal and accuracy of the epoch, images per second, the learning rate and the
//! whole run's ETA, on an indicatif bar on a terminal and as a log line (the run's
//! `train.log`, and stderr when it is not a terminal); a second bar for the held-out phase.
//!
//! The same reads check the steps' losses: the first step whose L_class, L_sal, L_inv or L is
//! NaN or infinite stops the epoch (burn's [`Interrupter`]), and the epoch loop names the
//! step and the term ([`crate::tally::NonFinite`]).

use std::io::IsTerminal;
use std::time::Instant;

use burn::train::metric::MetricDefinition;
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::{Interrupter, LearnerSummary};
use indicatif::{ProgressBar, ProgressStyle};

use crate::schedule::Scheduler;
use crate::tally::Split;
use crate::trainee::Plan;

/// What a run's epochs share with their renderers: where the steps' rows are, how to stop,
/// the schedule and the run's clock.
#[derive(Clone)]
pub struct Watch {
    /// The model's plan (its tallies hold the steps' rows).
    pub plan: Plan,
    /// Stops the epoch when a loss is not finite.
    pub interrupter: Interrupter,
    /// The run's learning-rate schedule (for the rate of a step).
    pub scheduler: Scheduler,
    /// Steps per epoch.
    pub per_epoch: usize,
    /// Epochs of the run.
    pub epochs: usize,
    /// Read and show the running measures every this many steps.
    pub log_every: usize,
    /// The held-out phase's name (`validation` or `test`).
    pub held_out: &'static str,
    /// Wall seconds of the epochs finished in this session (their mean estimates the rest).
    pub finished: Vec<f64>,
}

/// Renders one epoch's progress.
pub struct Progress {
    epoch: usize,
    watch: Watch,
    bar: Option<ProgressBar>,
    epoch_started: Instant,
    phase_started: Instant,
    phase: &'static str,
    last_step: usize,
    last_items: usize,
}

impl Progress {
    /// A renderer for epoch `epoch` (1-based).
    pub fn new(epoch: usize, watch: Watch) -> Self {
        let now = Instant::now();
        Self {
            epoch,
            watch,
            bar: None,
            epoch_started: now,
            phase_started: now,
            phase: "train",
            last_step: 0,
            last_items: 0,
        }
    }

    fn bar(&mut self, total: usize) -> &ProgressBar {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len}")
                    .expect("valid template"),
            );
            bar
        });
        bar.set_length(total as u64);
        bar
    }

    fn enter(&mut self, phase: &'static str) {
        if phase != self.phase {
            self.phase = phase;
            self.phase_started = Instant::now();
            self.last_items = 0;
        }
    }

    /// The whole run's remaining seconds: the epoch's remaining steps at this epoch's pace,
    /// the later epochs at the mean of this session's finished epochs (or at this epoch's
    /// training pace before one has finished).
    fn eta(&self, step: usize) -> f64 {
        let w = &self.watch;
        let spent = self.epoch_started.elapsed().as_secs_f64();
        let per_step = spent / step.max(1) as f64;
        let this = per_step * w.per_epoch.saturating_sub(step) as f64;
        let per_epoch = if w.finished.is_empty() {
            per_step * w.per_epoch as f64
        } else {
            w.finished.iter().sum::<f64>() / w.finished.len() as f64
        };
        this + per_epoch * w.epochs.saturating_sub(self.epoch) as f64
    }

    fn train(&mut self, step: usize) {
        self.enter("train");
        let (per_epoch, log_every) = (self.watch.per_epoch, self.watch.log_every);
        let due = step == 1 || step == per_epoch || step >= self.last_step + log_every;
        let terminal = std::io::stderr().is_terminal();
        if terminal {
            // The bar moves every step; its measures change on the logged steps.
            self.bar(per_epoch).set_position(step as u64);
        }
        if !due {
            return;
        }
        let w = &self.watch;
        self.last_step = step;
        let (tally, bad) = w.plan.0.tallies.running(Split::Train);
        if bad.is_some() {
            w.interrupter.stop(Some("a loss is not finite"));
        }
        let secs = self.phase_started.elapsed().as_secs_f64().max(1e-9);
        let lr = w
            .scheduler
            .lr_at((self.epoch - 1) * w.per_epoch + step.saturating_sub(1));
        let mut line = format!(
            "epoch {}/{} step {step}/{}: L_class {:.4}",
            self.epoch,
            w.epochs,
            w.per_epoch,
            tally.mean(tally.class)
        );
        if tally.sal != 0.0 {
            line += &format!(", L_sal {:.4}", tally.mean(tally.sal));
        }
        if tally.inv != 0.0 {
            line += &format!(", L_inv {:.4}", tally.mean(tally.inv));
        }
        line += &format!(
            ", acc {:.1}%, {:.0} images/s, lr {lr:.2e}, ETA {}",
            100.0 * tally.accuracy(),
            tally.originals as f64 / secs,
            clock(self.eta(step))
        );
        if terminal {
            let bar = self.bar(w.per_epoch).clone();
            bar.set_position(step as u64);
            bar.set_message(line.clone());
            bar.suspend(|| tracing::info!("{line}"));
        } else {
            tracing::info!("{line}");
        }
    }

    fn held_out(&mut self, done: usize, total: usize) {
        let name = self.watch.held_out;
        self.enter(name);
        let msg = format!("epoch {}/{} {name}", self.epoch, self.watch.epochs);
        if std::io::stderr().is_terminal() {
            let bar = self.bar(total).clone();
            bar.set_message(msg);
            bar.set_position(done as u64);
        } else if done == total || done >= self.last_items + (total / 4).max(1) {
            self.last_items = done;
            let secs = self.phase_started.elapsed().as_secs_f64();
            tracing::info!("{msg}: {done}/{total} images, {secs:.0} s");
        }
    }
}

/// Seconds as `1h02m03s`, `2m03s` or `3s`.
fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl MetricsRendererTraining for Progress {
    fn update_train(&mut self, _state: MetricState) {}
    fn update_valid(&mut self, _state: MetricState) {}
    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let step = item
            .iteration
            .or_else(|| item.progress.as_ref().map(|p| p.items_processed))
            .unwrap_or(0);
        self.train(step);
    }
    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let (done, total) = item
            .progress
            .as_ref()
            .map(|p| (p.items_processed, p.items_total))
            .unwrap_or((0, 0));
        self.held_out(done, total);
    }
    fn on_train_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for Progress {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
    fn render_test(&mut self, _item: EvaluationProgress, _: Vec<ProgressType>) {}
    fn on_test_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRenderer for Progress {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, _definition: MetricDefinition) {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_reads_as_hours_minutes_seconds() {
        assert_eq!(super::clock(3.4), "3s");
        assert_eq!(super::clock(123.0), "2m03s");
        assert_eq!(super::clock(3723.0), "1h02m03s");
    }
}

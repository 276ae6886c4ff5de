//! Progress for the Learner: an indicatif bar with ETA on a terminal, plain log lines
//! otherwise (CI, files, pipes).

use std::io::IsTerminal;
use std::time::Instant;

use burn::train::metric::MetricDefinition;
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::LearnerSummary;
use indicatif::{ProgressBar, ProgressStyle};

/// Renders one epoch's progress.
pub struct Progress {
    epoch: usize,
    epochs: usize,
    bar: Option<ProgressBar>,
    started: Instant,
    last_logged: usize,
    phase: &'static str,
}

impl Progress {
    /// A renderer for epoch `epoch` of `epochs`.
    pub fn new(epoch: usize, epochs: usize) -> Self {
        Self {
            epoch,
            epochs,
            bar: None,
            started: Instant::now(),
            last_logged: 0,
            phase: "train",
        }
    }

    fn show(&mut self, phase: &'static str, done: usize, total: usize) {
        if phase != self.phase {
            self.phase = phase;
            self.started = Instant::now();
            self.last_logged = 0;
        }
        if std::io::stderr().is_terminal() {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = ProgressBar::new(total as u64);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} images (ETA {eta})",
                    )
                    .expect("valid template"),
                );
                bar
            });
            bar.set_length(total as u64);
            bar.set_message(format!("epoch {}/{} {phase}", self.epoch, self.epochs));
            bar.set_position(done as u64);
        } else {
            // About ten lines per phase.
            let step = (total / 10).max(1);
            if done == total || done >= self.last_logged + step || done < self.last_logged {
                self.last_logged = done;
                let secs = self.started.elapsed().as_secs_f64();
                let eta = if done > 0 {
                    secs / done as f64 * (total - done) as f64
                } else {
                    0.0
                };
                tracing::info!(
                    "epoch {}/{} {phase}: {done}/{total} images, {secs:.0} s, ETA {eta:.0} s",
                    self.epoch,
                    self.epochs
                );
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn items(item: &TrainingProgress) -> (usize, usize) {
    item.progress
        .as_ref()
        .map(|p| (p.items_processed, p.items_total))
        .unwrap_or((0, 0))
}

impl MetricsRendererTraining for Progress {
    fn update_train(&mut self, _state: MetricState) {}
    fn update_valid(&mut self, _state: MetricState) {}
    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let (done, total) = items(&item);
        self.show("train", done, total);
    }
    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let (done, total) = items(&item);
        self.show("test", done, total);
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

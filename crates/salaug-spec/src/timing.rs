//! The record `salaug time` prints: the timing of training steps of one configuration.

use serde::{Deserialize, Serialize};

/// Timed training steps of one run configuration (`salaug time --json` prints one per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// Model architecture (`model.arch`).
    pub arch: String,
    /// Training strategy (`ref`, `inv`, `sal`, `inv+sal`).
    pub strategy: String,
    /// Original images per step (`train.batch_size`); a step holds them and their
    /// augmented copies.
    pub batch: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
    /// Wall time of each timed step, in ms.
    pub times_ms: Vec<f64>,
    /// Median of [`Self::times_ms`].
    pub median_ms: f64,
    /// Mean of [`Self::times_ms`].
    pub mean_ms: f64,
    /// CPU time of the process over the timed steps divided by their wall time: 2.0 means
    /// two cores busy throughout. `None` where the platform does not report it.
    pub cpu_cores: Option<f64>,
    /// Resident memory before the model was built (data loaded), MiB.
    pub baseline_rss_mib: Option<f64>,
    /// Peak resident memory from then until the end of the timed steps, MiB (Linux `VmHWM`,
    /// reset at the baseline where the kernel allows it).
    pub peak_rss_mib: Option<f64>,
    /// Worker threads of the CPU backend.
    pub threads: usize,
    /// The backend's name for the device.
    pub device: String,
}

impl StepTiming {
    /// A record from per-step wall times (ms); median and mean computed here.
    pub fn summarise(times_ms: Vec<f64>) -> (f64, f64) {
        let mut sorted = times_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
        };
        let mean = sorted.iter().sum::<f64>() / n.max(1) as f64;
        (median, mean)
    }

    /// Peak memory above the baseline, MiB.
    pub fn peak_over_baseline_mib(&self) -> Option<f64> {
        Some(self.peak_rss_mib? - self.baseline_rss_mib?)
    }

    /// The JSON line `salaug time --json` prints.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a timing record serialises")
    }

    /// Reads the record from the output of `salaug time --json` (its last non-empty line).
    pub fn from_output(output: &str) -> Result<StepTiming, String> {
        let line = output
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .ok_or("salaug time printed nothing")?;
        serde_json::from_str(line.trim())
            .map_err(|e| format!("unexpected output of salaug time ({e}): {line:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mean() {
        assert_eq!(StepTiming::summarise(vec![3.0, 1.0, 2.0]), (2.0, 2.0));
        assert_eq!(StepTiming::summarise(vec![4.0, 1.0, 2.0, 3.0]), (2.5, 2.5));
    }

    #[test]
    fn round_trips_through_the_json_line() {
        let t = StepTiming {
            arch: "resnet18".into(),
            strategy: "sal".into(),
            batch: 32,
            warmup: 1,
            times_ms: vec![10.0, 12.0],
            median_ms: 11.0,
            mean_ms: 11.0,
            cpu_cores: Some(1.9),
            baseline_rss_mib: Some(100.0),
            peak_rss_mib: Some(350.5),
            threads: 2,
            device: "Cpu".into(),
        };
        let out = format!("some log line\n{}\n\n", t.to_json_line());
        assert_eq!(StepTiming::from_output(&out).unwrap(), t);
        assert_eq!(t.peak_over_baseline_mib(), Some(250.5));
        assert!(StepTiming::from_output("garbage").is_err());
    }
}

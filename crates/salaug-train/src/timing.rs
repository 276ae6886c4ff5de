//! `salaug time`: the wall time, CPU use and memory of training steps, as the paper's table 4
//! and `cargo xtask bench peer` measure them.
//!
//! One step is exactly a training step of `salaug train` ([`Trainee::losses`], backward,
//! optimiser update) on one fixed batch of `train.batch_size` training images (a balanced
//! subset of that size, the only images loaded), with the device synchronised after each step.
//! With `exclude_transform` (the paper's table 4 method: "data loading and image
//! transformation are excluded"), `T(x)` is computed before each step's timer starts
//! ([`Trainee::prepare`]); the forward, the maps, their inverse warp, the distance, the
//! backward and the update are timed ([`Trainee::losses_of`]). Memory is measured from the moment the data
//! are loaded: the baseline is the resident set then, and the peak high-water mark is reset
//! there (Linux), so the peak covers the model, the optimiser and the steps.

use salaug_core::AutodiffBase;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use burn::backend::Autodiff;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use salaug_spec::StepTiming;

use crate::config::RunConfig;
use crate::data::{load_data, Data};
use crate::data::{Batch, ImageBatcher};
use crate::optim::{with_optimizer, WithOptimizer};
use crate::trainee::build_model;
use crate::trainee::Trainee;

/// Times `warmup` untimed and then `iters` timed training steps of `config`.
pub fn time_steps<B: AutodiffBase>(
    config: RunConfig,
    warmup: usize,
    iters: usize,
    exclude_transform: bool,
    device: &B::Device,
) -> Result<StepTiming> {
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let mut config = config;
    let (data, n) = one_batch(&mut config, "to time a step")?;
    let baseline = process::reset_peak_rss();
    let steps = with_optimizer(
        &config.train,
        Steps::<B> {
            config: &config,
            data: &data,
            batch: n,
            warmup,
            iters,
            exclude_transform,
            device,
        },
    )?;
    let (times_ms, cpu_cores) = steps;
    let (median_ms, mean_ms) = StepTiming::summarise(times_ms.clone());
    Ok(StepTiming {
        arch: config.model.arch.name().to_string(),
        strategy: config.train.strategy.name().to_string(),
        batch: n,
        warmup,
        times_ms,
        median_ms,
        mean_ms,
        cpu_cores,
        baseline_rss_mib: baseline,
        peak_rss_mib: process::peak_rss_mib(),
        threads: threads(),
        device: B::name(device),
    })
}

/// Worker threads of the CPU backends (rayon's pool).
/// The data of one step of `config` (also `salaug step`'s): only its batch is loaded (and
/// decoded, for class folders), the first images of a balanced subset of `train.batch_size`,
/// with one test image; `config`'s limits are set to say so. Returns the data and the
/// batch's size; fewer than 2 images are an error ending in `what`.
pub(crate) fn one_batch(config: &mut RunConfig, what: &str) -> Result<(Data, usize)> {
    let limit = config.data.train_limit.unwrap_or(usize::MAX);
    config.data.train_limit = Some(limit.min(config.train.batch_size));
    config.data.test_limit = Some(1);
    let data = load_data(&config.data)?;
    let n = config.train.batch_size.min(data.train.len());
    if n < 2 {
        bail!("need at least 2 training images {what}");
    }
    Ok((data, n))
}

fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The timed loop, for any optimiser.
struct Steps<'a, B: Backend> {
    config: &'a RunConfig,
    data: &'a Data,
    batch: usize,
    warmup: usize,
    iters: usize,
    exclude_transform: bool,
    device: &'a B::Device,
}

impl<B: AutodiffBase> WithOptimizer<Autodiff<B>, Trainee<Autodiff<B>>> for Steps<'_, B> {
    /// Per-step wall times (ms) and the process's CPU use over the timed steps.
    type Output = Result<(Vec<f64>, Option<f64>)>;

    fn run<O>(self, make: impl Fn() -> O) -> Self::Output
    where
        O: Optimizer<Trainee<Autodiff<B>>, Autodiff<B>> + 'static,
    {
        let mut model = build_model::<Autodiff<B>>(self.config, self.data, self.device)?;
        let batch: Batch<Autodiff<B>> =
            ImageBatcher::new(self.data.train.clone()).make((0..self.batch).collect(), self.device);
        let mut optim = make();
        let lr = self.config.train.lr;
        let mut times = Vec::with_capacity(self.iters);
        let (mut cpu0, mut wall0) = (None, Instant::now());
        for i in 0..self.warmup + self.iters {
            if i == self.warmup {
                cpu0 = process::cpu_seconds();
                wall0 = Instant::now();
            }
            let prepared = if self.exclude_transform {
                let p = model.prepare(&batch)?;
                B::sync(self.device).map_err(|e| anyhow!("device sync failed: {e:?}"))?;
                Some(p)
            } else {
                None
            };
            let started = Instant::now();
            let prepared = match prepared {
                Some(p) => p,
                None => model.prepare(&batch)?,
            };
            let l = model.losses_of(prepared)?;
            let grads = GradientsParams::from_grads(l.total.backward(), &model);
            model = optim.step(lr, model, grads);
            B::sync(self.device).map_err(|e| anyhow!("device sync failed: {e:?}"))?;
            if i >= self.warmup {
                times.push(1e3 * started.elapsed().as_secs_f64());
            }
        }
        let wall = wall0.elapsed().as_secs_f64();
        let cpu = match (cpu0, process::cpu_seconds()) {
            (Some(a), Some(b)) if wall > 0.0 => Some((b - a) / wall),
            _ => None,
        };
        Ok((times, cpu))
    }
}

/// Resident memory and CPU time of this process (Linux `/proc`, `getrusage`).
pub mod process {
    fn status_mib(key: &str) -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(key))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    /// The current resident set, MiB.
    pub fn rss_mib() -> Option<f64> {
        status_mib("VmRSS:")
    }

    /// The peak resident set since start (or since [`reset_peak_rss`]), MiB.
    pub fn peak_rss_mib() -> Option<f64> {
        status_mib("VmHWM:")
    }

    /// Resets the peak to the current resident set where the kernel allows it (writing 5 to
    /// `/proc/self/clear_refs`), and returns the current resident set, MiB.
    pub fn reset_peak_rss() -> Option<f64> {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        rss_mib()
    }

    /// User + system CPU seconds of the whole process (all threads).
    pub fn cpu_seconds() -> Option<f64> {
        #[cfg(unix)]
        {
            let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            // SAFETY: getrusage writes a `rusage` into the pointer on success.
            let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
            if rc != 0 {
                return None;
            }
            let u = unsafe { usage.assume_init() };
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            Some(secs(u.ru_utime) + secs(u.ru_stime))
        }
        #[cfg(not(unix))]
        None
    }
}

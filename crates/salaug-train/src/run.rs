//! A training run: the epoch loop around burn's Learner, checkpoints, resume and per-epoch
//! metrics, all under one run directory. The data come from [`crate::data::load_data`], the
//! model from [`crate::trainee::build_model`], the measurements from [`crate::metrics`].
//!
//! ```text
//! <run>/config.toml     the resolved config (with the normalisation actually used)
//! <run>/metrics.csv     one row per finished epoch
//! <run>/train.log       the log (also on stderr)
//! <run>/checkpoint/     model, optimiser and scheduler after each of the last two epochs
//! <run>/model.mpk       the final model
//! <run>/.lock           held (an OS file lock) by the process training into the run
//! ```
//!
//! A run directory belongs to one process at a time: [`RunDir::lock`] takes an exclusive lock
//! on `<run>/.lock` (released by the OS when the process ends, however it ends), and a second
//! `salaug train` on the same directory fails at once naming the holder, before it writes
//! anything.
//!
//! Each epoch is one `SupervisedTraining::launch` that starts from the previous epoch's
//! checkpoint. A fresh run and a resumed one therefore take exactly the same path: `--resume`
//! continues after the last epoch in `metrics.csv` whose checkpoint exists, with the same
//! shuffles (seeded by run seed and epoch) and augmentations (seeded by run seed and batch).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::backend::Autodiff;
use burn::module::Module;
use burn::optim::Optimizer;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::train::checkpoint::KeepLastNCheckpoints;
use burn::train::{ExecutionStrategy, Learner, MultiDeviceOptim, SupervisedTraining};
use salaug_spec::EpochMetrics;

use crate::config::RunConfig;
use crate::data::{load_data, loader, steps_per_epoch, Batch, Data, Deal, ImageBatcher, Order};
use crate::metrics::{consistency, held_out, read_metrics, HeldOut};
use crate::optim::{with_optimizer, WithOptimizer};
use crate::render::Progress;
use crate::schedule::Scheduler;
use crate::trainee::{build_model, Trainee};

/// The recorder of checkpoints and final models (full precision, named MessagePack).
pub type ModelRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// A run directory locked by this process for as long as the value lives.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    _lock: std::fs::File,
}

impl RunDir {
    /// Creates `path` if needed and takes its lock, or fails at once if another process holds
    /// it (the error names that process's id, which the holder writes into the lock file).
    pub fn lock(path: &Path) -> Result<RunDir> {
        use std::io::{Read, Seek, Write};
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let file_path = path.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&file_path)
            .with_context(|| format!("opening {}", file_path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                bail!(
                    "{} is in use: {holder} is training into it (lock {}); wait for it to end or \
                     choose another output directory",
                    path.display(),
                    file_path.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", file_path.display()));
            }
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("writing {}", file_path.display()))?;
        Ok(RunDir {
            path: path.to_path_buf(),
            _lock: file,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn checkpoint_exists(dir: &Path, epoch: usize) -> bool {
    ["model", "optim", "scheduler"].iter().all(|n| {
        dir.join("checkpoint")
            .join(format!("{n}-{epoch}.mpk"))
            .exists()
    })
}

/// What `salaug train` is asked: a fresh run of the config file `config` (with `--set`
/// overrides) into `out` (default `runs/<config file stem>`), or resuming the run directory
/// `resume` with its own config. Returns the config, the run directory and whether it resumes.
pub fn resolve(
    config: Option<&Path>,
    set: &[String],
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
) -> Result<(RunConfig, PathBuf, bool)> {
    match (config, resume) {
        (_, Some(dir)) => {
            let path = dir.join("config.toml");
            if !path.exists() {
                bail!("{}: not a run directory (no config.toml)", dir.display());
            }
            Ok((RunConfig::load(&path, &[])?, dir, true))
        }
        (Some(path), None) => {
            let config = RunConfig::load(path, set)?;
            let dir =
                out.unwrap_or_else(|| Path::new("runs").join(path.file_stem().unwrap_or_default()));
            Ok((config, dir, false))
        }
        (None, None) => bail!("pass --config or --resume"),
    }
}

/// Trains `config` into `dir` on backend `B` (the Learner runs on `Autodiff<B>`), on
/// `devices` (the devices of `config.train.devices`, one or more; the first is the main one,
/// which holds the model, steps the optimiser and evaluates).
///
/// With `resume`, continues after the last finished epoch of `dir`; otherwise `dir` must not
/// hold a run yet. `dir` is locked ([`RunDir::lock`]) by the caller, before it opens its log
/// there. Returns every epoch's metrics (including earlier ones when resuming).
pub fn train<B: Backend>(
    mut config: RunConfig,
    dir: &RunDir,
    resume: bool,
    devices: &[B::Device],
) -> Result<Vec<EpochMetrics>> {
    let dir = dir.path();
    if devices.len() != config.train.devices.len() {
        bail!(
            "train.devices names {} device(s) but {} were given",
            config.train.devices.len(),
            devices.len()
        );
    }
    let done = read_metrics(dir)?;
    if !done.is_empty() && !resume {
        bail!(
            "{} already holds a run ({} epoch(s) in metrics.csv); pass --resume to continue it or choose another output directory",
            dir.display(),
            done.len()
        );
    }
    let start = match done.last() {
        Some(last) if !checkpoint_exists(dir, last.epoch) => bail!(
            "{}: metrics.csv ends at epoch {} but its checkpoint is missing; cannot resume",
            dir.display(),
            last.epoch
        ),
        Some(last) => last.epoch + 1,
        None => 1,
    };
    let data = load_data(&config.data)?;
    // The resolved config, with the normalisation used.
    config.data.mean = Some(data.mean.clone());
    config.data.std = Some(data.std.clone());
    std::fs::write(dir.join("config.toml"), config.to_toml())
        .with_context(|| format!("writing {}", dir.join("config.toml").display()))?;
    with_optimizer(
        &config.train.optimizer,
        Epochs::<B> {
            config: &config,
            data: &data,
            dir,
            start,
            devices,
        },
    )?;
    read_metrics(dir)
}

/// The epoch loop of [`train`], for any optimiser.
struct Epochs<'a, B: Backend> {
    config: &'a RunConfig,
    data: &'a Data,
    dir: &'a Path,
    start: usize,
    devices: &'a [B::Device],
}

impl<B: Backend> WithOptimizer<Autodiff<B>, Trainee<Autodiff<B>>> for Epochs<'_, B> {
    type Output = Result<()>;
    fn run<O>(self, make: impl Fn() -> O) -> Result<()>
    where
        O: Optimizer<Trainee<Autodiff<B>>, Autodiff<B>> + 'static,
    {
        epochs::<B, O>(
            self.config,
            self.data,
            self.dir,
            self.start,
            self.devices,
            make,
        )
    }
}

fn epochs<B, O>(
    config: &RunConfig,
    data: &Data,
    dir: &Path,
    start: usize,
    devices: &[B::Device],
    optimizer: impl Fn() -> O,
) -> Result<()>
where
    B: Backend,
    O: Optimizer<Trainee<Autodiff<B>>, Autodiff<B>> + 'static,
{
    let t = &config.train;
    let device = &devices[0];
    let per_epoch = steps_per_epoch(data.train.len(), t.batch_size, devices.len());
    if start == 1 {
        preflight::<B>(config, data, device)?;
    }
    for epoch in start..=t.epochs {
        let started = Instant::now();
        let model = build_model::<Autodiff<B>>(config, data, device)?;
        let plan = model.plan.clone();
        let scheduler = Scheduler::new(t.lr, t.schedule, per_epoch, t.epochs);
        let lr = scheduler.lr_at(epoch * per_epoch - 1);
        let shuffle = config
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(epoch as u64);
        let order = match devices.len() {
            1 => Order::Shuffled(shuffle),
            n => Order::Dealt(Arc::new(Deal::new(data.train.len(), n, shuffle))),
        };
        let train_loader =
            loader::<Autodiff<B>>(&data.train, t.batch_size, t.workers, order, device);
        let test_loader = loader::<B>(
            &data.test,
            t.batch_size.max(64),
            t.workers,
            Order::InOrder,
            device,
        );
        let mut training = SupervisedTraining::new(dir, train_loader, test_loader)
            .num_epochs(epoch)
            .with_file_checkpointer(ModelRecorder::new())
            .with_checkpointing_strategy(KeepLastNCheckpoints::new(2))
            .renderer(Progress::new(epoch, t.epochs))
            .with_application_logger(None);
        if epoch > 1 {
            training = training.checkpoint(epoch - 1);
        }
        if devices.len() > 1 {
            training = training.with_training_strategy(
                ExecutionStrategy::multi(devices.to_vec(), MultiDeviceOptim::OptimMainDevice)
                    .into(),
            );
        }
        let result = training.launch(Learner::new(model, optimizer(), scheduler));
        let trained = result.model;
        drop(result.renderer);
        let (tr, va) = plan.0.tallies.take();
        if tr.originals == 0 {
            bail!("epoch {epoch} trained on no batches");
        }
        let consistency = consistency(
            &trained,
            &config.loss.method,
            &data.test,
            config.metrics.consistency_images,
            device,
        )?;
        let every = config.metrics.held_out_every;
        let measured = match config.metrics.held_out_images {
            Some(0) => HeldOut::default(),
            _ if epoch % every != 0 && epoch != t.epochs => HeldOut::default(),
            count => held_out(&trained, &data.test, &config.augment, count, device)?,
        };
        let m = EpochMetrics {
            epoch,
            train_loss: tr.mean(tr.total),
            train_class: tr.mean(tr.class),
            train_sal: tr.mean(tr.sal),
            train_inv: tr.mean(tr.inv),
            train_acc: tr.accuracy(),
            test_loss: va.mean(va.total),
            test_acc: va.accuracy(),
            consistency,
            lr,
            seconds: started.elapsed().as_secs_f64(),
            held_out: measured,
        };
        tracing::info!(
            "epoch {epoch}/{}: {}, lr {:.3e}, {:.1} s",
            t.epochs,
            salaug_spec::measures::summary(&m),
            m.lr,
            m.seconds
        );
        if !m.train_loss.is_finite() {
            bail!(
                "epoch {epoch}: the training loss is {}; lower train.lr or the loss weights",
                m.train_loss
            );
        }
        m.append(&salaug_spec::metrics::in_run(dir))?;
        if epoch == t.epochs {
            let path = dir.join("model");
            ModelRecorder::new()
                .record(trained.into_record(), path.clone())
                .with_context(|| format!("saving {}.mpk", path.display()))?;
        }
    }
    Ok(())
}

/// One training step on the first batch, before the Learner starts: a configuration that
/// cannot train (an augmentation without the comparison asked for, a feature tap or Grad-CAM
/// layer the model lacks, a shape that does not fit) is reported as an error instead of a
/// panic mid-run.
fn preflight<B: Backend>(config: &RunConfig, data: &Data, device: &B::Device) -> Result<()> {
    let model = build_model::<Autodiff<B>>(config, data, device)?;
    if data.train.len() < 2 || data.test.is_empty() {
        bail!(
            "{} training and {} test images: at least 2 and 1 are needed",
            data.train.len(),
            data.test.len()
        );
    }
    let n = config.train.batch_size.min(data.train.len()).clamp(2, 4);
    let batch: Batch<Autodiff<B>> =
        ImageBatcher::new(data.train.clone()).make((0..n).collect(), device);
    let l = model
        .losses(&batch)
        .context("the configuration cannot train (checked on the first images)")?;
    let v = l.total.into_scalar().elem::<f64>();
    if !v.is_finite() {
        bail!("the loss of the first images is {v}");
    }
    // The held-out saliency distance uses the run's method whatever the strategy (a `ref` run
    // is measured with the method its `sal` twin trains): check it runs, e.g. that a Grad-CAM
    // layer exists.
    crate::metrics::consistency(&model, &config.loss.method, &data.test, 2, device)
        .context("the held-out saliency distance cannot run with loss.method")?;
    model.plan.0.tallies.take();
    Ok(())
}

/// Loads a finished run's config, data and final model (on `B`, evaluation level).
pub fn load_run<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(RunConfig, Data, Trainee<B>)> {
    let path = dir.join("config.toml");
    let config = RunConfig::load(&path, &[])?;
    let data = load_data(&config.data)?;
    let model = build_model::<B>(&config, &data, device)?;
    let file = dir.join("model");
    if !file.with_extension("mpk").exists() {
        bail!(
            "{}: no final model (model.mpk); is the run finished?",
            dir.display()
        );
    }
    let record = ModelRecorder::new()
        .load(file.clone(), device)
        .with_context(|| format!("loading {}.mpk", file.display()))?;
    Ok((config, data, model.load_record(record)))
}

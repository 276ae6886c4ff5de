//! A training run: the epoch loop around burn's Learner, checkpoints, resume and per-epoch
//! metrics, all under one run directory. The data come from [`crate::data::load_data`], the
//! model from [`crate::trainee::build_model`], the measurements from [`crate::metrics`].
//!
//! ```text
//! <run>/config.toml     the resolved config (with the normalisation actually used)
//! <run>/metrics.csv     one row per finished epoch
//! <run>/train.log       the log (also on stderr)
//! <run>/checkpoint/     model, optimiser and scheduler after each of the last two epochs
//! <run>/best.mpk        with train.keep = "best:<measure>": the best epoch's model so far
//! <run>/model.mpk       the final model: the kept one (train.keep)
//! <run>/result.csv      the kept model's measures on the test set (metrics.csv's columns)
//! <run>/provenance.toml one entry per session (fresh start or resume): version, commit,
//!                       backend, devices, threads, command line
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
//!
//! Each epoch is measured on the held-out set ([`Data::held_out`]): the validation split when
//! `data.validation` is set (the test set is then measured once, on the kept model), else the
//! test set. `train.keep` and `train.early_stop` choose from `metrics.csv`'s rows
//! ([`crate::select`]), so a resumed run keeps and stops as an uninterrupted one would.

use salaug_core::AutodiffBase;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::module::Module;
use burn::optim::Optimizer;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::train::checkpoint::KeepLastNCheckpoints;
use burn::train::{ExecutionStrategy, Interrupter, Learner, SupervisedTraining};
use salaug_spec::EpochMetrics;

use crate::config::Keep;
use crate::config::RunConfig;
use crate::data::{load_data, loader, steps_per_epoch, Batch, Data, ImageBatcher, Order};
use crate::group::Member;
use crate::metrics::{consistency, held_out, loss_and_accuracy, read_metrics, HeldOut};
use crate::optim::{with_optimizer, WithOptimizer};
use crate::render::{Progress, Watch};
use crate::schedule::Scheduler;
use crate::select;
use crate::tally::{Split, Tally};
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
///
/// With `group` (a rank of several processes, [`crate::group`]), `dir` is this rank's
/// directory ([`crate::group::Group::rank_dir`]) and `devices` names one device; rank 0
/// writes the run's metrics and final model, the other ranks only their checkpoints, and the
/// returned metrics are rank 0's (empty on the other ranks).
pub fn train<B: AutodiffBase>(
    mut config: RunConfig,
    dir: &RunDir,
    resume: bool,
    devices: &[B::Device],
    group: Option<&Arc<Member>>,
) -> Result<Vec<EpochMetrics>> {
    let dir = dir.path();
    if devices.len() != config.train.devices.len() {
        bail!(
            "train.devices names {} device(s) but {} were given",
            config.train.devices.len(),
            devices.len()
        );
    }
    if group.is_some() && devices.len() != 1 {
        bail!(
            "a rank of a group trains on one device, but train.devices names {}: start one \
             rank per device",
            devices.len()
        );
    }
    if let Some(path) = &config.model.pretrained {
        if config.model.pretrained_sha256.is_none() {
            // A fresh run: record which file it starts from.
            config.model.pretrained_sha256 = Some(crate::weights::sha256(path)?);
        }
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
    // The last epoch: train.epochs, or where early stopping ended the run before.
    let end = config
        .train
        .early_stop
        .as_ref()
        .and_then(|rule| select::stops(&done, rule))
        .unwrap_or(config.train.epochs);
    let (start, end) = match group {
        None => (start, end),
        Some(g) => agree_to_start::<B>(g, &config, dir, start, end, &devices[0])?,
    };
    let user_norm = config.data.mean.is_some() || config.data.std.is_some();
    let mut data = load_data(&config.data)?;
    if let (Keep::Best(m), None) = (&config.train.keep, &data.validation) {
        tracing::warn!(
            "train.keep = \"best:{m}\" without data.validation chooses the epoch by the test \
             set, and the test accuracy of that choice is biased upwards; set data.validation"
        );
    }
    if config.model.pretrained.is_some() {
        let [c, _, _] = data.train.shape();
        crate::weights::key_map(&config.model_config(c, data.train.classes()))?;
        if !user_norm {
            // torchvision's weights expect ImageNet's normalisation.
            data.mean = crate::weights::IMAGENET_MEAN.to_vec();
            data.std = crate::weights::IMAGENET_STD.to_vec();
        }
    }
    // The resolved config, with the normalisation used.
    config.data.mean = Some(data.mean.clone());
    config.data.std = Some(data.std.clone());
    salaug_spec::write_whole(&dir.join("config.toml"), config.to_toml().as_bytes())
        .with_context(|| format!("writing {}", dir.join("config.toml").display()))?;
    record_provenance(dir, &config, start)?;
    with_optimizer(
        &config.train,
        Epochs::<B> {
            config: &config,
            data: &data,
            dir,
            start,
            end,
            devices,
            group,
        },
    )?;
    if let Some(g) = group {
        g.finish::<B>()?;
    }
    read_metrics(dir)
}

/// Appends this session (a fresh start or a resume) to `<run>/provenance.toml`: the salaug
/// version and the git commit it was built from, the backend, devices and threads, the
/// command line, and when it started.
fn record_provenance(dir: &Path, config: &RunConfig, start: usize) -> Result<()> {
    let path = dir.join("provenance.toml");
    let mut text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    use toml::Value;
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let mut entry = toml::Table::new();
    entry.insert("salaug".into(), env!("CARGO_PKG_VERSION").into());
    entry.insert("commit".into(), env!("SALAUG_GIT_COMMIT").into());
    entry.insert("backend".into(), crate::backend::NAME.into());
    entry.insert("devices".into(), strings(config.train.devices.clone()));
    entry.insert("threads".into(), Value::Integer(threads as i64));
    entry.insert("first_epoch".into(), Value::Integer(start as i64));
    entry.insert("started_unix_s".into(), Value::Integer(started as i64));
    entry.insert("command".into(), strings(std::env::args().collect()));
    let mut session = toml::Table::new();
    session.insert("session".into(), Value::Array(vec![Value::Table(entry)]));
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&toml::to_string(&session).context("provenance as TOML")?);
    salaug_spec::write_whole(&path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The ranks' agreement before a group trains: the same resolved config (but for the device
/// names), rank 0's first epoch, and on every rank the checkpoint to resume from.
fn agree_to_start<B: Backend>(
    g: &Member,
    config: &RunConfig,
    dir: &Path,
    start: usize,
    end: usize,
    device: &B::Device,
) -> Result<(usize, usize)> {
    let mut shared = config.clone();
    shared.train.devices.clear();
    g.agree::<B>("resolved config", shared.to_toml().as_bytes(), device)?;
    let span = g.from_root::<B>(
        &[start as f64, end as f64],
        "the first and last epochs",
        device,
    )?;
    let (start, end) = (span[0] as usize, span[1] as usize);
    let ok = start == 1 || checkpoint_exists(dir, start - 1);
    g.all_ok::<B>(
        ok,
        "the checkpoints to resume from",
        || {
            format!(
                "{} holds no checkpoint of epoch {} (rank 0 resumes after it)",
                dir.display(),
                start - 1
            )
        },
        device,
    )?;
    Ok((start, end))
}

/// The epoch loop of [`train`], for any optimiser.
struct Epochs<'a, B: Backend> {
    config: &'a RunConfig,
    data: &'a Data,
    dir: &'a Path,
    start: usize,
    end: usize,
    devices: &'a [B::Device],
    group: Option<&'a Arc<Member>>,
}

impl<B: AutodiffBase> WithOptimizer<Autodiff<B>, Trainee<Autodiff<B>>> for Epochs<'_, B> {
    type Output = Result<()>;
    fn run<O>(self, make: impl Fn() -> O) -> Result<()>
    where
        O: Optimizer<Trainee<Autodiff<B>>, Autodiff<B>> + 'static,
    {
        epochs::<B, O>(
            self.config,
            self.data,
            self.dir,
            (self.start, self.end),
            self.devices,
            self.group,
            make,
        )
    }
}

#[allow(clippy::too_many_arguments)]
/// burn's strategy for several devices of one process: MultiDevice (one worker thread per
/// device; the gradients moved to the first device and summed, one optimiser step there).
#[cfg(not(feature = "cuda-ddp"))]
fn several_devices<B: AutodiffBase>(devices: &[B::Device]) -> ExecutionStrategy<Autodiff<B>> {
    use burn::train::MultiDeviceOptim;
    ExecutionStrategy::multi(devices.to_vec(), MultiDeviceOptim::OptimMainDevice)
}

/// burn's strategy for several devices of one process in the `cuda-ddp` build: DDP (one
/// worker thread and optimiser per GPU; each gradient all-reduced through NCCL inside the
/// backward, as a sum). The step scales its loss by 1/devices as for MultiDevice, so the
/// update is the same: the mean of the devices' gradients.
#[cfg(feature = "cuda-ddp")]
fn several_devices<B: AutodiffBase>(devices: &[B::Device]) -> ExecutionStrategy<Autodiff<B>> {
    use burn::tensor::backend::distributed::{DistributedConfig, ReduceOperation};
    ExecutionStrategy::ddp(
        devices.to_vec(),
        DistributedConfig {
            all_reduce_op: ReduceOperation::Sum,
        },
    )
}

fn epochs<B, O>(
    config: &RunConfig,
    data: &Data,
    dir: &Path,
    (start, end): (usize, usize),
    devices: &[B::Device],
    group: Option<&Arc<Member>>,
    optimizer: impl Fn() -> O,
) -> Result<()>
where
    B: AutodiffBase,
    O: Optimizer<Trainee<Autodiff<B>>, Autodiff<B>> + 'static,
{
    let t = &config.train;
    let device = &devices[0];
    let n = data.train.len();
    let per_epoch = match group {
        Some(g) => steps_per_epoch(n.div_ceil(g.group.world), t.batch_size, 1),
        None => steps_per_epoch(n, t.batch_size, devices.len()),
    };
    if start == 1 {
        preflight::<B>(config, data, device)?;
    }
    let (held, held_name) = data.held_out();
    let warmup = (t.warmup_epochs * per_epoch as f64).round() as usize;
    let schedule = Scheduler::new(t.lr, t.schedule, per_epoch, t.epochs)
        .with_warmup(warmup, t.warmup_start)?;
    let mut finished = Vec::new();
    for epoch in start..=end {
        let started = Instant::now();
        let mut model = build_model::<Autodiff<B>>(config, data, device)?;
        if epoch == 1 {
            if let Some(path) = &config.model.pretrained {
                start_from_pretrained(&mut model, config, data, path)?;
            }
        }
        let plan = model.plan.clone();
        if let Some(g) = group {
            let _ = plan.0.group.set(Arc::clone(g));
        }
        let scheduler = schedule.clone();
        let lr = scheduler.lr_at(epoch * per_epoch - 1);
        let order = match group {
            Some(g) => Order::of_rank_epoch(n, g.group.world, g.rank(), config.seed, epoch),
            None => Order::of_epoch(n, devices.len(), config.seed, epoch),
        };
        let train_loader =
            loader::<Autodiff<B>>(&data.train, t.batch_size, t.workers, order, device);
        let held_loader = loader::<B>(
            held,
            t.batch_size.max(64),
            t.workers,
            Order::InOrder,
            device,
        );
        let interrupter = Interrupter::new();
        let watch = Watch {
            plan: plan.clone(),
            interrupter: interrupter.clone(),
            scheduler: schedule.clone(),
            per_epoch,
            epochs: end,
            log_every: t.log_every,
            held_out: held_name,
            finished: finished.clone(),
        };
        let mut training = SupervisedTraining::new(dir, train_loader, held_loader)
            .num_epochs(epoch)
            .with_file_checkpointer(ModelRecorder::new())
            .with_checkpointing_strategy(KeepLastNCheckpoints::new(2))
            .renderer(Progress::new(epoch, watch))
            .with_interrupter(interrupter)
            .with_application_logger(None);
        if epoch > 1 {
            training = training.checkpoint(epoch - 1);
        }
        if devices.len() > 1 {
            training = training.with_training_strategy(several_devices::<B>(devices).into());
        }
        let result = training.launch(Learner::new(model, optimizer(), scheduler));
        let mut trained = result.model;
        drop(result.renderer);
        if let (_, Some(bad)) = plan.0.tallies.running(Split::Train) {
            let shard = match devices.len() {
                1 => String::new(),
                _ => format!(" (device {})", bad.shard),
            };
            bail!(
                "epoch {epoch} step {}/{per_epoch}{shard}: {} is not finite; the run stops \
                 there (nothing of epoch {epoch} is kept). Lower train.lr or the loss weights, \
                 or set train.warmup_epochs or train.grad_clip",
                bad.step + 1,
                bad.term
            );
        }
        let (mut tr, va) = plan.0.tallies.take();
        if let Some(g) = group {
            tr = group_tally::<B>(g, &tr, device)?;
            let mine = Member::fingerprint(&Trainee::<Autodiff<B>>::from_inner(trained.clone()));
            let root = g.from_root::<B>(&mine, "the weights' fingerprint", device)?;
            g.all_ok::<B>(
                root == mine,
                "the weights",
                || {
                    format!(
                        "its weights after epoch {epoch} differ from rank 0's (sum {:e} and \
                         {:e}): the ranks have diverged",
                        mine[0], root[0]
                    )
                },
                device,
            )?;
            // Every rank continues from rank 0's model (its BatchNorm running statistics),
            // and the next epoch starts from this epoch's checkpoint: the others rewrite theirs.
            trained = g.from_root_model::<B, _>(trained, device)?;
            if g.rank() != 0 {
                save_model(
                    &trained,
                    &dir.join("checkpoint").join(format!("model-{epoch}")),
                )?;
                tracing::info!(
                    "rank {}: epoch {epoch}/{} trained ({:.1} s); rank 0 writes its metrics",
                    g.rank(),
                    t.epochs,
                    started.elapsed().as_secs_f64()
                );
                if g.from_root::<B>(&[0.0], "whether the run ends", device)?[0] != 0.0 {
                    break;
                }
                continue;
            }
        }
        if tr.originals == 0 {
            bail!("epoch {epoch} trained on no batches");
        }
        let consistency = consistency(
            &trained,
            &config.loss.method,
            held,
            config.metrics.consistency_images,
            device,
        )?;
        let every = config.metrics.held_out_every;
        // (held_out_images = 0: held_out measures nothing, every field NaN.)
        let measured = match config.metrics.held_out_images {
            _ if epoch % every != 0 && epoch != t.epochs => HeldOut::default(),
            count => held_out(&trained, held, &config.augment, count, device)?,
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
            "epoch {epoch}/{} ({held_name}): {}, lr {:.3e}, {:.1} s",
            t.epochs,
            salaug_spec::measures::summary(&m),
            m.lr,
            m.seconds
        );
        m.append(&salaug_spec::metrics::in_run(dir))?;
        finished.push(m.seconds);
        // Read back rather than kept in memory: keep and early_stop choose from the values as
        // the file holds them, as a resumed run does.
        let rows = read_metrics(dir)?;
        if let Keep::Best(key) = &t.keep {
            if select::best(&rows, key).map(|c| c.epoch) == Some(epoch) {
                save_model(&trained, &dir.join("best"))?;
            }
        }
        let stopped = t.early_stop.as_ref().and_then(|r| select::stops(&rows, r)) == Some(epoch);
        if stopped && epoch < t.epochs {
            let rule = t.early_stop.as_ref().expect("stopped by it");
            tracing::info!(
                "train.early_stop: {} has not improved for {} measured epoch(s); the run ends \
                 after epoch {epoch} of {}",
                rule.measure,
                rule.patience,
                t.epochs
            );
        }
        let last = stopped || epoch == end;
        if let Some(g) = group {
            g.from_root::<B>(&[last as u8 as f64], "whether the run ends", device)?;
        }
        if last {
            finish::<B>(config, data, dir, &rows, Some((epoch, trained)), device)?;
            break;
        }
    }
    let rank0 = group.is_none_or(|g| g.rank() == 0);
    if rank0 && !salaug_spec::metrics::result_in_run(dir).exists() {
        // A run killed after its last epoch's row and before its result: finish it now.
        let rows = read_metrics(dir)?;
        if rows.last().map(|r| r.epoch) == Some(end) {
            finish::<B>(config, data, dir, &rows, None, device)?;
        }
    }
    Ok(())
}

/// Ends a run whose last epoch is the last row of `rows`: saves the kept model
/// (`train.keep`) as `model.mpk` and writes `result.csv`, the kept epoch's row with, when the
/// epochs were measured on a validation split, the kept model's measures on the test set.
/// `last` is the last epoch's model when it is in memory (else it is read from its
/// checkpoint).
fn finish<B: AutodiffBase>(
    config: &RunConfig,
    data: &Data,
    dir: &Path,
    rows: &[EpochMetrics],
    last: Option<(usize, Trainee<B>)>,
    device: &B::Device,
) -> Result<()> {
    let chosen = select::kept(rows, &config.train.keep).context("the run has no epoch")?;
    let row = rows
        .iter()
        .find(|r| r.epoch == chosen.epoch)
        .expect("chosen among the rows")
        .clone();
    let kept = match last {
        Some((epoch, model)) if epoch == chosen.epoch => model,
        _ => {
            let file = match config.train.keep {
                Keep::Last => dir
                    .join("checkpoint")
                    .join(format!("model-{}", chosen.epoch)),
                Keep::Best(_) => dir.join("best"),
            };
            let record = ModelRecorder::new()
                .load(file.clone(), device)
                .with_context(|| format!("loading the kept model {}.mpk", file.display()))?;
            build_model::<B>(config, data, device)?.load_record(record)
        }
    };
    save_model(&kept, &dir.join("model"))?;
    let mut result = row;
    if data.validation.is_some() {
        let (loss, acc) =
            loss_and_accuracy(&kept, &data.test, config.train.batch_size.max(64), device)?;
        result.test_loss = loss;
        result.test_acc = acc;
        result.consistency = consistency(
            &kept,
            &config.loss.method,
            &data.test,
            config.metrics.consistency_images,
            device,
        )?;
        let count = config.metrics.held_out_images;
        result.held_out = held_out(&kept, &data.test, &config.augment, count, device)?;
    }
    result.write_alone(&salaug_spec::metrics::result_in_run(dir))?;
    let how = match &config.train.keep {
        Keep::Last => "the last epoch".to_string(),
        Keep::Best(m) => format!(
            "best {m} {:.4} on the {} set",
            chosen.value,
            data.held_out().1
        ),
    };
    tracing::info!(
        "kept epoch {} ({how}); on the test set: {}",
        chosen.epoch,
        salaug_spec::measures::summary(&result)
    );
    Ok(())
}

/// Loads `model.pretrained` into a fresh run's model, and says what it loaded.
fn start_from_pretrained<B: Backend>(
    model: &mut Trainee<B>,
    config: &RunConfig,
    data: &Data,
    path: &Path,
) -> Result<()> {
    let [c, _, _] = data.train.shape();
    let model_config = config.model_config(c, data.train.classes());
    let loaded = crate::weights::load_pretrained(&mut model.model, &model_config, path)?;
    let sha = config.model.pretrained_sha256.as_deref().unwrap_or("?");
    tracing::info!(
        "model.pretrained: {} tensors from {} (sha256 {sha})",
        loaded.applied,
        path.display()
    );
    if let Some(n) = loaded.head_replaced {
        tracing::info!(
            "model.pretrained: the file's head has {n} classes, the data {}: the head is new \
             (seeded by the run seed)",
            model_config.num_classes
        );
    }
    Ok(())
}

/// Saves `model` to `<path>.mpk` whole or not at all: written to `<path>-part.mpk`, then
/// renamed over the old file (a process killed while writing leaves the old file).
fn save_model<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<()> {
    let file = path.with_extension("mpk");
    let part = PathBuf::from(format!("{}-part", path.display()));
    ModelRecorder::new()
        .record(model.clone().into_record(), part.clone())
        .with_context(|| format!("saving {}", file.display()))?;
    std::fs::rename(part.with_extension("mpk"), &file)
        .with_context(|| format!("saving {}", file.display()))
}

/// The training tally of the whole group (every rank's steps), on every rank.
fn group_tally<B: Backend>(g: &Member, tr: &Tally, device: &B::Device) -> Result<Tally> {
    let counts = [tr.correct, tr.seen, tr.originals].map(|c| c as f64);
    let mine = [
        tr.class, tr.sal, tr.inv, tr.total, counts[0], counts[1], counts[2],
    ];
    let s = g.sum::<B>(&mine, "the epoch's training measures", device)?;
    Ok(Tally {
        class: s[0],
        sal: s[1],
        inv: s[2],
        total: s[3],
        correct: s[4].round() as usize,
        seen: s[5].round() as usize,
        originals: s[6].round() as usize,
    })
}

/// One training step on the first batch, before the Learner starts: a configuration that
/// cannot train (an augmentation without the comparison asked for, a feature tap or Grad-CAM
/// layer the model lacks, a shape that does not fit) is reported as an error instead of a
/// panic mid-run.
fn preflight<B: AutodiffBase>(config: &RunConfig, data: &Data, device: &B::Device) -> Result<()> {
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

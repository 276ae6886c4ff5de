//! A training run: data, model, the epoch loop around burn's Learner, checkpoints, resume and
//! per-epoch metrics, all under one run directory.
//!
//! ```text
//! <run>/config.toml     the resolved config (with the normalisation actually used)
//! <run>/metrics.csv     one row per finished epoch
//! <run>/train.log       the log (also on stderr)
//! <run>/checkpoint/     model, optimiser and scheduler after each of the last two epochs
//! <run>/model.mpk       the final model
//! ```
//!
//! Each epoch is one `SupervisedTraining::launch` that starts from the previous epoch's
//! checkpoint. A fresh run and a resumed one therefore take exactly the same path: `--resume`
//! continues after the last epoch in `metrics.csv` whose checkpoint exists, with the same
//! shuffles (seeded by run seed and epoch) and augmentations (seeded by run seed and batch).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::backend::Autodiff;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::module::Module;
use burn::optim::Optimizer;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::train::checkpoint::KeepLastNCheckpoints;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{Learner, SupervisedTraining};
use rand::{rngs::StdRng, SeedableRng};
use salaug_augment::{Augmentation, Compare, HorizontalFlip, Rescale, Rotation};
use salaug_core::{input_gradient, materialize, ChannelReduction, SaliencyLossConfig};
use salaug_spec::metrics;
pub use salaug_spec::EpochMetrics;

use crate::config::{self, RunConfig};
use crate::data::{
    load, locate, read_image_folder, Batch, DatasetKind, ImageBatcher, ImageSet, IndexDataset,
    Split,
};
use crate::render::Progress;
use crate::schedule::Scheduler;
use crate::trainee::{Plan, Trainee};

/// The recorder of checkpoints and final models (full precision, named MessagePack).
pub type ModelRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// The prepared training and test images.
#[derive(Debug, Clone)]
pub struct Data {
    /// Training images.
    pub train: Arc<ImageSet>,
    /// Held-out test images.
    pub test: Arc<ImageSet>,
    /// Where they were read from.
    pub root: PathBuf,
}

/// Finds, reads, subsets and prepares the data; fills in `data.mean`/`data.std` if absent.
pub fn load_data(config: &mut RunConfig) -> Result<Data> {
    let kind = config.data.dataset;
    let root = locate(
        kind,
        config.data.dir.as_deref(),
        &salaug_spec::data::cache_dir(),
    )?;
    tracing::info!("reading {} from {}", kind.name(), root.display());
    let (train, test) = if kind == DatasetKind::ImageFolder {
        (
            read_image_folder(&root, Split::Train, config.data.folder_size)?,
            read_image_folder(&root, Split::Test, config.data.folder_size)?,
        )
    } else {
        (
            load(kind, &root, Split::Train)?,
            load(kind, &root, Split::Test)?,
        )
    };
    let prep = config.data.prepare;
    let train = prep.apply(train.balanced_subset(config.data.train_limit));
    let test = prep.apply(test.balanced_subset(config.data.test_limit));
    let c = train.shape[0];
    if config.data.mean.is_none() || config.data.std.is_none() {
        let (mean, std) = channel_stats(&train);
        config.data.mean.get_or_insert(mean);
        config.data.std.get_or_insert(std);
    }
    for (key, v) in [
        ("data.mean", &config.data.mean),
        ("data.std", &config.data.std),
    ] {
        let n = v.as_ref().map_or(0, Vec::len);
        if n != 1 && n != c {
            bail!("{key} has {n} values for images with {c} channel(s)");
        }
    }
    tracing::info!(
        "{} training and {} test images of {:?}, {} classes",
        train.len(),
        test.len(),
        train.shape,
        train.classes
    );
    Ok(Data {
        train: Arc::new(train),
        test: Arc::new(test),
        root,
    })
}

/// Per-channel mean and standard deviation of a set, in `[0, 1]` units.
pub fn channel_stats(set: &ImageSet) -> (Vec<f64>, Vec<f64>) {
    let [c, h, w] = set.shape;
    let mut sum = vec![0f64; c];
    let mut sq = vec![0f64; c];
    for i in 0..set.len() {
        for (ch, plane) in set.image(i).chunks(h * w).enumerate() {
            for &p in plane {
                let v = p as f64 / 255.0;
                sum[ch] += v;
                sq[ch] += v * v;
            }
        }
    }
    let n = (set.len() * h * w).max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| (q / n - m * m).max(0.0).sqrt().max(1e-3))
        .collect();
    (mean, std)
}

/// A freshly initialised trainee for `config` and `data`, seeded by the run seed.
pub fn build_model<B: Backend>(
    config: &RunConfig,
    data: &Data,
    device: &B::Device,
) -> Result<Trainee<B>> {
    let [c, _, _] = data.train.shape;
    let model_config = config.model_config(c, data.train.classes);
    model_config.validate()?;
    let plan = Plan::new(
        config,
        data.train.classes,
        config.data.mean.clone().unwrap_or_else(|| vec![0.0]),
        config.data.std.clone().unwrap_or_else(|| vec![1.0]),
    )?;
    B::seed(device, config.seed);
    let model = Trainee {
        model: model_config.init::<B>(device),
        plan,
    };
    materialize(&model);
    Ok(model)
}

/// Reads `metrics.csv` of a run directory (empty if absent).
pub fn read_metrics(dir: &Path) -> Result<Vec<EpochMetrics>> {
    Ok(EpochMetrics::read(&metrics::in_run(dir))?)
}

/// The fixed transforms of the saliency-consistency metric: a horizontal flip, a rotation
/// by up to 10° and a rescale by up to 10%, each always applied, drawn from seed 0.
pub fn consistency_transforms() -> Vec<Augmentation> {
    vec![
        Augmentation::HorizontalFlip(HorizontalFlip { p: 1.0 }),
        Augmentation::Rotation(Rotation {
            p: 1.0,
            ..Default::default()
        }),
        Augmentation::Rescale(Rescale {
            p: 1.0,
            ..Default::default()
        }),
    ]
}

/// Saliency consistency on `images`: the mean over [`consistency_transforms`] of the MSE
/// between min-max-normalised `S(x)` and `T⁻¹(S(T(x)))` (gradient maps, max over channels,
/// valid pixels only), in chunks of 64 images. Lower is more consistent. BatchNorm uses batch
/// statistics here, as in the training step's saliency pass.
pub fn consistency<B: Backend>(
    model: &Trainee<B>,
    set: &ImageSet,
    count: usize,
    device: &B::Device,
) -> Result<f64> {
    let loss = SaliencyLossConfig {
        reduction: ChannelReduction::Max,
        ..Default::default()
    }
    .init()?;
    let n = count.min(set.len());
    if n == 0 {
        return Ok(f64::NAN);
    }
    let mut total = 0.0;
    let mut parts = 0usize;
    for t in consistency_transforms() {
        let mut rng = StdRng::seed_from_u64(0);
        for start in (0..n).step_by(64) {
            let idx: Vec<usize> = (start..(start + 64).min(n)).collect();
            if idx.len() < 2 {
                continue;
            }
            let x = set.tensor::<B>(&idx, device);
            let y: Vec<i64> = idx.iter().map(|&i| set.labels[i] as i64).collect();
            let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y.clone(), [idx.len()]), device);
            let aug = t.run(x.clone(), &mut rng)?;
            let both = Tensor::cat(vec![x, aug.images], 0);
            let targets = Tensor::cat(vec![y.clone(), y], 0);
            let g = input_gradient(model, both, targets, &[])?.gradient;
            let maps = loss.reduce(g).chunk(2, 0);
            let pair = aug
                .transfer
                .pair(maps[0].clone(), maps[1].clone(), Compare::Inverse)?;
            let d = loss.forward(pair.reference, pair.other, pair.mask)?;
            total += d.into_scalar().elem::<f64>() * idx.len() as f64;
            parts += idx.len();
        }
    }
    Ok(total / parts.max(1) as f64)
}

/// Accuracy of `model` on `set`. BatchNorm uses its running statistics on a plain backend
/// (evaluation mode) and batch statistics on an autodiff backend (training mode), so the same
/// call measures both.
pub fn evaluate<B: Backend>(
    model: &Trainee<B>,
    set: &Arc<ImageSet>,
    batch: usize,
    device: &B::Device,
) -> f64 {
    let batcher = ImageBatcher::new(set.clone());
    let mut correct = 0;
    for start in (0..set.len()).step_by(batch) {
        let idx: Vec<usize> = (start..(start + batch).min(set.len())).collect();
        let b: Batch<B> = batcher.make(idx, device);
        correct += crate::trainee::accuracy(model, b.images, b.targets);
    }
    correct as f64 / set.len().max(1) as f64
}

fn checkpoint_exists(dir: &Path, epoch: usize) -> bool {
    ["model", "optim", "scheduler"].iter().all(|n| {
        dir.join("checkpoint")
            .join(format!("{n}-{epoch}.mpk"))
            .exists()
    })
}

/// Trains `config` into `dir` on backend `B` (the Learner runs on `Autodiff<B>`).
///
/// With `resume`, continues after the last finished epoch of `dir`; otherwise `dir` must not
/// hold a run yet. Returns every epoch's metrics (including earlier ones when resuming).
pub fn train<B: Backend>(
    mut config: RunConfig,
    dir: &Path,
    resume: bool,
    device: &B::Device,
) -> Result<Vec<EpochMetrics>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
    let data = load_data(&mut config)?;
    // The resolved config, with the normalisation used.
    std::fs::write(dir.join("config.toml"), config.to_toml())
        .with_context(|| format!("writing {}", dir.join("config.toml").display()))?;
    config.train.optimizer.with(Epochs::<B> {
        config: &config,
        data: &data,
        dir,
        start,
        device,
    })?;
    read_metrics(dir)
}

/// The epoch loop of [`train`], for any optimiser.
struct Epochs<'a, B: Backend> {
    config: &'a RunConfig,
    data: &'a Data,
    dir: &'a Path,
    start: usize,
    device: &'a B::Device,
}

impl<B: Backend> config::WithOptimizer<B> for Epochs<'_, B> {
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
            self.device,
            make,
        )
    }
}

fn epochs<B, O>(
    config: &RunConfig,
    data: &Data,
    dir: &Path,
    start: usize,
    device: &B::Device,
    optimizer: impl Fn() -> O,
) -> Result<()>
where
    B: Backend,
    O: Optimizer<Trainee<Autodiff<B>>, Autodiff<B>> + 'static,
{
    let t = &config.train;
    let per_epoch = data.train.len().div_ceil(t.batch_size);
    if start == 1 {
        preflight::<B>(config, data, device)?;
    }
    for epoch in start..=t.epochs {
        let started = Instant::now();
        let model = build_model::<Autodiff<B>>(config, data, device)?;
        let plan = model.plan.clone();
        let scheduler = Scheduler::new(t.lr, t.schedule, per_epoch, t.epochs);
        let lr = scheduler.lr_at(epoch * per_epoch - 1);
        let train_loader: Arc<dyn DataLoader<Autodiff<B>, Batch<Autodiff<B>>>> =
            DataLoaderBuilder::new(ImageBatcher::new(data.train.clone()))
                .batch_size(t.batch_size)
                .shuffle(
                    config
                        .seed
                        .wrapping_mul(1_000_003)
                        .wrapping_add(epoch as u64),
                )
                .num_workers(t.workers)
                .set_device(device.clone())
                .build(IndexDataset::new(data.train.len()));
        let test_loader: Arc<dyn DataLoader<B, Batch<B>>> =
            DataLoaderBuilder::new(ImageBatcher::new(data.test.clone()))
                .batch_size(t.batch_size.max(64))
                .num_workers(t.workers)
                .set_device(device.clone())
                .build(IndexDataset::new(data.test.len()));
        let mut training = SupervisedTraining::new(dir, train_loader, test_loader)
            .metrics((AccuracyMetric::new(), LossMetric::new()))
            .num_epochs(epoch)
            .with_file_checkpointer(ModelRecorder::new())
            .with_checkpointing_strategy(KeepLastNCheckpoints::new(2))
            .renderer(Progress::new(epoch, t.epochs))
            .with_application_logger(None);
        if epoch > 1 {
            training = training.checkpoint(epoch - 1);
        }
        let result = training.launch(Learner::new(model, optimizer(), scheduler));
        let trained = result.model;
        drop(result.renderer);
        let (tr, va) = plan.take_tallies();
        if tr.originals == 0 {
            bail!("epoch {epoch} trained on no batches");
        }
        let consistency = consistency(
            &trained,
            &data.test,
            config.metrics.consistency_images,
            device,
        )?;
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
        };
        tracing::info!(
            "epoch {epoch}/{}: loss {:.4} (class {:.4}, sal {:.4}, inv {:.4}), train acc {:.2}%, test acc {:.2}%, consistency {:.5}, lr {:.3e}, {:.1} s",
            t.epochs,
            m.train_loss,
            m.train_class,
            m.train_sal,
            m.train_inv,
            100.0 * m.train_acc,
            100.0 * m.test_acc,
            m.consistency,
            m.lr,
            m.seconds
        );
        if !m.train_loss.is_finite() {
            bail!(
                "epoch {epoch}: the training loss is {}; lower train.lr or the loss weights",
                m.train_loss
            );
        }
        m.append(&metrics::in_run(dir))?;
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
/// cannot train (an augmentation without the comparison asked for, a feature tap the model
/// lacks, a shape that does not fit) is reported as an error instead of a panic mid-run.
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
    model.plan.take_tallies();
    Ok(())
}

/// Loads a finished run's config, data and final model (on `B`, evaluation level).
pub fn load_run<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(RunConfig, Data, Trainee<B>)> {
    let path = dir.join("config.toml");
    let mut config = RunConfig::load(&path, &[])?;
    let data = load_data(&mut config)?;
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

//! The model as the Learner trains it: a zoo [`Model`] behind input normalisation, with the
//! saliency training step ([`TrainStep`]) and the evaluation step ([`InferenceStep`]).
//!
//! One step, for a batch of originals `x` with labels `y`:
//! 1. draw `T` from a generator seeded by the run seed and the batch's dataset indices
//!    (deterministic, and the same after `--resume`), and compute `T(x)` and its soft labels;
//! 2. one forward of `[x; T(x)]`: with `L_sal`, [`salaug_core::SaliencyLoss::of_batch`] (the
//!    library's one `L_sal` pipeline, with the run's method, each image explaining its soft
//!    label) gives `L_sal` with the maps paired by the augmentation's
//!    [`salaug_augment::Transfer`] (inverse warp or expected map), and from the same lifted
//!    forward the logits (for `L_class`, cross-entropy with the soft labels) and features (for
//!    `L_inv`) tracked at the training level, and the BatchNorm running-statistics update
//!    (with `loss.second_order = { finite_difference = … }`,
//!    [`salaug_core::SaliencyLoss::of_batch_first_order`] gives the same from first-order
//!    passes). Without `L_sal`, a plain forward at the training level;
//! 3. `L = α·L_class + β·L_sal + γ·L_inv`, one backward at the training level. The step's
//!    measurements stay on the device as one small row per step and are read once per epoch
//!    ([`crate::tally`]); burn's Learner computes no metrics of its own.

use salaug_core::AutodiffBase;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use rand::{rngs::StdRng, SeedableRng};
use salaug_augment::{Augmentation, Labels};
use salaug_core::{
    invariance_loss, materialize, BatchNormMode, Classifier, Explain, SaliencyLoss, SecondOrder,
};
use salaug_models::Model;

use crate::config::{LossConfig, RunConfig, Strategy};
use crate::data::{Batch, Data};
use crate::group::Member;
use crate::tally::{row, Split, Tallies};

/// What the step does, built once per model from the run config and the data (it keeps only
/// the settings the step reads), and shared by every copy of the model.
#[derive(Debug)]
pub struct PlanInner {
    /// The run seed (with the batch's indices, it seeds the batch's augmentation).
    pub seed: u64,
    /// Which loss terms are trained.
    pub strategy: Strategy,
    /// `T`.
    pub augment: Augmentation,
    /// The loss settings (`[loss]`).
    pub loss: LossConfig,
    /// The saliency loss of `loss.saliency`.
    pub sal_loss: SaliencyLoss,
    /// Number of classes.
    pub classes: usize,
    /// Per-channel normalisation.
    pub mean: Vec<f64>,
    /// Per-channel normalisation.
    pub std: Vec<f64>,
    /// The devices that train together (`train.devices`): each step's gradient is divided by
    /// it, so that burn's sum over the devices is their mean.
    pub devices: usize,
    /// The steps' measurements of the current epoch.
    pub tallies: Tallies,
    /// The group of processes this one trains with, if any: each step's gradients are
    /// replaced by their mean over the group ([`crate::group`]). Set once, before training.
    pub group: OnceLock<Arc<Member>>,
}

/// Cheap-to-clone handle on a [`PlanInner`].
#[derive(Debug, Clone)]
pub struct Plan(pub Arc<PlanInner>);

impl Plan {
    /// The plan of a run config with the dataset's class count and normalisation.
    pub fn new(
        config: &RunConfig,
        classes: usize,
        mean: Vec<f64>,
        std: Vec<f64>,
    ) -> anyhow::Result<Plan> {
        Ok(Plan(Arc::new(PlanInner {
            seed: config.seed,
            strategy: config.train.strategy,
            augment: config.augment.clone(),
            loss: config.loss.clone(),
            sal_loss: config.loss.saliency.init()?,
            classes,
            mean,
            std,
            devices: config.train.devices.len(),
            tallies: Tallies::default(),
            group: OnceLock::new(),
        })))
    }
}

/// A zoo model with its input normalisation and training plan.
#[derive(Module, Debug)]
pub struct Trainee<B: Backend> {
    /// The network.
    pub model: Model<B>,
    /// The plan (not a parameter: skipped by records).
    #[module(skip)]
    pub plan: Plan,
}

impl<B: Backend> Trainee<B> {
    /// Images in `[0, 1]` to the network's input: `(x - mean) / std` per channel.
    pub fn normalize(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let c = images.dims()[1];
        let device = images.device();
        let p = &self.plan.0;
        (images - per_channel(&p.mean, c, &device)) / per_channel(&p.std, c, &device)
    }
}

/// `[1, c, 1, 1]` of per-channel values `v` (the last one repeated when `v` is shorter, e.g.
/// one gray value for replicated RGB channels).
pub fn per_channel<B: Backend>(v: &[f64], c: usize, device: &B::Device) -> Tensor<B, 4> {
    let v: Vec<f32> = (0..c).map(|i| v[i.min(v.len() - 1)] as f32).collect();
    Tensor::<B, 1>::from_floats(v.as_slice(), device).reshape([1, c, 1, 1])
}

impl<B: Backend> Classifier<B> for Trainee<B> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.model.logits(self.normalize(images))
    }
    fn feature_names(&self) -> Vec<String> {
        self.model.feature_names()
    }
    fn cam_layer(&self) -> Option<String> {
        self.model.cam_layer()
    }
    fn logits_and_features(
        &self,
        images: Tensor<B, 4>,
        taps: &[String],
    ) -> salaug_core::Result<(Tensor<B, 2>, Vec<Tensor<B, 4>>)> {
        self.model.logits_and_features(self.normalize(images), taps)
    }
}

salaug_core::impl_lift!(Trainee);

/// Cross-entropy with soft targets: `mean_i −Σ_k w[i,k] · log softmax(logits)[i,k]`.
pub fn soft_cross_entropy<B: Backend>(logits: Tensor<B, 2>, weights: Tensor<B, 2>) -> Tensor<B, 1> {
    (log_softmax(logits, 1) * weights).sum_dim(1).mean().neg()
}

/// The generator of a batch's augmentation: the run seed mixed with the batch's indices.
pub fn batch_rng(seed: u64, indices: &[usize]) -> StdRng {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seed, indices).hash(&mut h);
    StdRng::seed_from_u64(h.finish())
}

/// The losses of one step.
#[derive(Debug, Clone)]
pub struct StepLosses<B: Backend> {
    /// `α·L_class + β·L_sal + γ·L_inv` (only the trained terms).
    pub total: Tensor<B, 1>,
    /// L_class.
    pub class: Tensor<B, 1>,
    /// L_sal, when trained.
    pub sal: Option<Tensor<B, 1>>,
    /// L_inv, when trained.
    pub inv: Option<Tensor<B, 1>>,
    /// Logits of `[x; T(x)]`.
    pub logits: Tensor<B, 2>,
    /// Hard targets of `[x; T(x)]` (the largest soft-label weight for mixed images).
    pub targets: Tensor<B, 1, Int>,
}

/// A batch ready for the step's losses: `[x; T(x)]` with the soft labels and hard targets of
/// both halves, and the augmentation's map transfer (step 1 of the module docs).
#[derive(Debug, Clone)]
pub struct Prepared<B: Backend> {
    /// `[x; T(x)]`.
    pub images: Tensor<B, 4>,
    /// Soft labels of `[x; T(x)]`, `[2·batch, classes]`.
    pub weights: Tensor<B, 2>,
    /// Hard targets of `[x; T(x)]` (the largest soft-label weight for mixed images).
    pub targets: Tensor<B, 1, Int>,
    /// How the maps of `T(x)` relate to those of `x`.
    pub transfer: salaug_augment::Transfer,
}

impl<B: Backend> Trainee<B> {
    /// Step 1: draws `T` for `batch` (seeded by the run seed and the batch's indices) and
    /// computes `T(x)` with its labels.
    pub fn prepare(&self, batch: &Batch<B>) -> anyhow::Result<Prepared<B>> {
        let p = &self.plan.0;
        let x = batch.images.clone();
        let n = x.dims()[0];
        let device = x.device();
        let k = p.classes;
        let mut rng = batch_rng(p.seed, &batch.indices);
        let aug = p.augment.run(x.clone(), &mut rng)?;
        let soft = aug.labels.soft_targets(&batch.labels, k);
        let mut weights = Labels::Same.soft_targets(&batch.labels, k);
        weights.extend_from_slice(&soft);
        let weights: Vec<f32> = weights.into_iter().map(|w| w as f32).collect();
        let weights = Tensor::<B, 2>::from_data(TensorData::new(weights, [2 * n, k]), &device);
        let targets: Vec<i64> = (batch.labels.iter().copied())
            .chain(aug.labels.hard_targets(&batch.labels, k))
            .map(|l| l as i64)
            .collect();
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [2 * n]), &device);
        Ok(Prepared {
            images: Tensor::cat(vec![x, aug.images], 0),
            weights,
            targets,
            transfer: aug.transfer,
        })
    }
}

impl<B: AutodiffBackend + AutodiffBase> Trainee<B> {
    /// The losses of one training step (steps 1–2 of the module docs); no backward.
    pub fn losses(&self, batch: &Batch<B>) -> anyhow::Result<StepLosses<B>> {
        self.losses_of(self.prepare(batch)?)
    }

    /// Step 2 on a prepared batch: the forward (with the maps, their pairing and `L_sal` when
    /// trained) and the loss terms; no backward.
    pub fn losses_of(&self, prepared: Prepared<B>) -> anyhow::Result<StepLosses<B>> {
        let p = &self.plan.0;
        let (strategy, loss) = (p.strategy, &p.loss);
        let Prepared {
            images: both,
            weights,
            targets,
            transfer,
        } = prepared;
        let device = both.device();

        let taps: &[String] = if strategy.invariance() {
            &loss.taps
        } else {
            &[]
        };
        // One forward of [x; T(x)]: with L_sal, the lifted pass gives the logits, features and
        // maps (and updates BatchNorm's running statistics); without, a plain forward.
        let (logits, features, sal) = if strategy.saliency() {
            let explain = Explain::weights(weights.clone())
                .with_taps(taps)
                .with_batch_norm(BatchNormMode::BatchUpdating);
            let pair = |s, s_aug| transfer.pair(s, s_aug, loss.compare);
            let out = match loss.second_order {
                SecondOrder::Exact => {
                    p.sal_loss
                        .of_batch(self, &loss.method, both, &explain, pair)?
                }
                SecondOrder::FiniteDifference(fd) => {
                    p.sal_loss
                        .of_batch_first_order(self, &loss.method, both, &explain, fd, pair)?
                }
            };
            (out.logits, out.features, Some(out.loss))
        } else {
            let (logits, features) = self.logits_and_features(both, taps)?;
            (logits, features, None)
        };
        let class = soft_cross_entropy(logits.clone(), weights);
        let inv = if strategy.invariance() {
            let (a, b): (Vec<_>, Vec<_>) = features
                .into_iter()
                .map(|f| {
                    let halves = f.chunk(2, 0);
                    (halves[0].clone(), halves[1].clone())
                })
                .unzip();
            Some(invariance_loss(&a, &b, loss.feature_distance, &device)?)
        } else {
            None
        };
        let total = loss
            .weights
            .combine(class.clone(), sal.clone(), inv.clone());
        Ok(StepLosses {
            total,
            class,
            sal,
            inv,
            logits,
            targets,
        })
    }
}

/// The number of rows of `logits` whose largest entry is at `targets`, as a `[1]` float tensor
/// (exact below 2^24).
pub fn correct<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let pred = logits.argmax(1).flatten::<1>(0, 1);
    pred.equal(targets).float().sum()
}

impl<B: AutodiffBackend + AutodiffBase> TrainStep for Trainee<B> {
    type Input = Batch<B>;
    type Output = ();

    /// One step on `batch`. With several devices (burn's MultiDevice strategy sums the
    /// devices' gradients), the gradient is that of `L / devices`, so the sum is the mean of
    /// the devices' gradients, as PyTorch's DDP gives; and only the batches of shard 0 (the
    /// main device's) update the BatchNorm running statistics, as DDP keeps rank 0's: the
    /// other devices train on a copy whose running statistics are their own and dropped, so
    /// the statistics do not depend on which worker thread writes first.
    ///
    /// In the `cuda-ddp` build (burn's DDP: each GPU's worker holds its own replica, whose
    /// parameters are marked for the all-reduce) every shard steps its own replica, since a
    /// copy's gradients would never reach the all-reduce; the running statistics are then
    /// burn's, the mean over the workers' values.
    fn step(&self, batch: Batch<B>) -> TrainOutput<()> {
        let private;
        let model = if batch.shard == 0 || cfg!(feature = "cuda-ddp") {
            self
        } else {
            private = Trainee::from_inner(self.valid());
            &private
        };
        // Configurations are checked by a preflight step before training starts, so a failure
        // here is a bug, not bad input.
        let l = model
            .losses(&batch)
            .unwrap_or_else(|e| panic!("training step failed after a successful preflight: {e}"));
        let n = batch.labels.len();
        let measured = row(
            l.class.inner(),
            l.sal.map(Tensor::inner),
            l.inv.map(Tensor::inner),
            l.total.clone().inner(),
            correct(l.logits.inner(), l.targets.inner()),
        );
        let p = &self.plan.0;
        (p.tallies).push(Split::Train, batch.shard, measured, n, 2 * n);
        let objective = match p.devices {
            1 => l.total,
            devices => l.total.div_scalar(devices as f64),
        };
        let mut out = TrainOutput::new(model, objective.backward(), ());
        if let Some(group) = p.group.get() {
            out.grads = group
                .mean_gradients(model, out.grads)
                .unwrap_or_else(|e| crate::group::fail(&e));
        }
        out
    }
}

impl<B: Backend> InferenceStep for Trainee<B> {
    type Input = Batch<B>;
    type Output = ();

    fn step(&self, batch: Batch<B>) {
        let logits = self.logits(batch.images);
        let k = logits.dims()[1];
        let loss = soft_cross_entropy(logits.clone(), batch.targets.clone().one_hot(k).float());
        let n = batch.labels.len();
        let measured = row(
            loss.clone(),
            None,
            None,
            loss,
            correct(logits, batch.targets),
        );
        (self.plan.0.tallies).push(Split::Valid, batch.shard, measured, n, n);
    }
}

/// Evaluation-mode accuracy of `model` (running BatchNorm statistics) on `images`.
pub fn accuracy<B: Backend>(
    model: &Trainee<B>,
    images: Tensor<B, 4>,
    targets: Tensor<B, 1, Int>,
) -> usize {
    correct(model.logits(images), targets)
        .into_scalar()
        .elem::<f64>() as usize
}

/// A freshly initialised trainee for `config` and `data`, seeded by the run seed.
pub fn build_model<B: Backend>(
    config: &RunConfig,
    data: &Data,
    device: &B::Device,
) -> anyhow::Result<Trainee<B>> {
    let [c, _, _] = data.train.shape();
    let classes = data.train.classes();
    let model_config = config.model_config(c, classes);
    model_config.validate()?;
    let plan = Plan::new(config, classes, data.mean.clone(), data.std.clone())?;
    B::seed(device, config.seed);
    let model = Trainee {
        model: model_config.init::<B>(device),
        plan,
    };
    materialize(&model);
    Ok(model)
}

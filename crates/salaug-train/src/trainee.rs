//! The model as the Learner trains it: a zoo [`Model`] behind input normalisation, with the
//! saliency training step ([`TrainStep`]) and the evaluation step ([`InferenceStep`]).
//!
//! One step, for a batch of originals `x` with labels `y`:
//! 1. draw `T` from a generator seeded by the run seed and the batch's dataset indices
//!    (deterministic, and the same after `--resume`), and compute `T(x)` and its soft labels;
//! 2. one forward of `[x; T(x)]`: with `L_sal`, the lifted forward and backward of
//!    [`salaug_core::training_pass`] give the logits (for `L_class`, cross-entropy with the
//!    soft labels) and features (for `L_inv`) tracked at the training level, both halves' maps,
//!    differentiable in the weights, and the BatchNorm running-statistics update; the maps are
//!    reduced, paired by the augmentation's [`salaug_augment::Transfer`] (inverse warp or
//!    expected map), normalised and compared. Without `L_sal`, a plain forward at the training
//!    level;
//! 3. `L = α·L_class + β·L_sal + γ·L_inv`, one backward at the training level.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use rand::{rngs::StdRng, SeedableRng};
use salaug_augment::{Augmentation, Compare, Labels};
use salaug_core::{
    invariance_loss, materialize, training_pass, Classifier, FeatureDistance, LossWeights,
    SaliencyKind, SaliencyLoss, SaliencyMethod,
};
use salaug_models::Model;

use crate::config::{RunConfig, Strategy};
use crate::data::{Batch, Data};

/// Running sums of one split's per-step losses, read at the end of each epoch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// Σ L_class · images.
    pub class: f64,
    /// Σ L_sal · images.
    pub sal: f64,
    /// Σ L_inv · images.
    pub inv: f64,
    /// Σ L · images.
    pub total: f64,
    /// Correctly classified images (for training: originals and augmented).
    pub correct: usize,
    /// Images classified.
    pub seen: usize,
    /// Original images (the batch's `x`).
    pub originals: usize,
}

impl Tally {
    /// Mean of a sum over the originals.
    pub fn mean(&self, sum: f64) -> f64 {
        sum / self.originals.max(1) as f64
    }
    /// Accuracy in [0, 1].
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}

/// What the step does, shared by every copy of the model.
#[derive(Debug)]
pub struct PlanInner {
    /// Which terms train.
    pub strategy: Strategy,
    /// `T`.
    pub augment: Augmentation,
    /// α, β, γ.
    pub weights: LossWeights,
    /// The saliency loss.
    pub sal_loss: SaliencyLoss,
    /// Saliency method.
    pub method: SaliencyKind,
    /// Inverse or expected comparison.
    pub compare: Compare,
    /// Features for L_inv.
    pub taps: Vec<String>,
    /// Distance for L_inv.
    pub feature_distance: FeatureDistance,
    /// Number of classes.
    pub classes: usize,
    /// Per-channel normalisation.
    pub mean: Vec<f64>,
    /// Per-channel normalisation.
    pub std: Vec<f64>,
    /// Run seed (mixed with batch indices for the augmentation draws).
    pub seed: u64,
    /// Training-step sums for the current epoch.
    pub train: Mutex<Tally>,
    /// Evaluation-step sums for the current epoch.
    pub valid: Mutex<Tally>,
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
            strategy: config.train.strategy,
            augment: config.augment.clone(),
            weights: config.loss.weights,
            sal_loss: config.loss.saliency.init()?,
            method: config.loss.method,
            compare: config.loss.compare,
            taps: config.loss.taps.clone(),
            feature_distance: config.loss.feature_distance,
            classes,
            mean,
            std,
            seed: config.seed,
            train: Mutex::default(),
            valid: Mutex::default(),
        })))
    }

    /// Takes (and resets) the training and evaluation sums.
    pub fn take_tallies(&self) -> (Tally, Tally) {
        let t = std::mem::take(&mut *self.0.train.lock().expect("tally lock"));
        let v = std::mem::take(&mut *self.0.valid.lock().expect("tally lock"));
        (t, v)
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
        let col = |v: &[f64]| {
            let v: Vec<f32> = (0..c).map(|i| v[i.min(v.len() - 1)] as f32).collect();
            Tensor::<B, 1>::from_floats(v.as_slice(), &device).reshape([1, c, 1, 1])
        };
        (images - col(&p.mean)) / col(&p.std)
    }
}

impl<B: Backend> Classifier<B> for Trainee<B> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.model.logits(self.normalize(images))
    }
    fn feature_names(&self) -> Vec<String> {
        self.model.feature_names()
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

impl<B: AutodiffBackend> Trainee<B> {
    /// The losses of one training step (steps 1–2 of the module docs); no backward.
    pub fn losses(&self, batch: &Batch<B>) -> anyhow::Result<StepLosses<B>> {
        let p = &self.plan.0;
        let x = batch.images.clone();
        let [n, _, _, _] = x.dims();
        let device = x.device();
        let k = p.classes;
        let mut rng = batch_rng(p.seed, &batch.indices);
        let aug = p.augment.run(x.clone(), &mut rng)?;
        let soft = aug.labels.soft_targets(&batch.labels, k);
        let mut weights = Labels::Same.soft_targets(&batch.labels, k);
        weights.extend_from_slice(&soft);
        let weights: Vec<f32> = weights.into_iter().map(|w| w as f32).collect();
        let weights = Tensor::<B, 2>::from_data(TensorData::new(weights, [2 * n, k]), &device);
        let mut targets: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
        targets.extend(soft.chunks(k).map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as i64)
                .unwrap_or(0)
        }));
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [2 * n]), &device);
        let both = Tensor::cat(vec![x, aug.images], 0);

        let taps: &[String] = if p.strategy.invariance() {
            &p.taps
        } else {
            &[]
        };
        // One forward of [x; T(x)]: with L_sal, the lifted pass gives the logits, features and
        // maps (and updates BatchNorm's running statistics); without, a plain forward.
        let (logits, features, sal) = if p.strategy.saliency() {
            let pass = training_pass(self, both.clone(), weights.clone(), taps)?;
            let sal = self.saliency_loss_of(pass.gradient, both, &aug.transfer)?;
            (pass.logits, pass.features, Some(sal))
        } else {
            let (logits, features) = self.logits_and_features(both, taps)?;
            (logits, features, None)
        };
        let class = soft_cross_entropy(logits.clone(), weights);
        let inv = if p.strategy.invariance() {
            let (a, b): (Vec<_>, Vec<_>) = features
                .into_iter()
                .map(|f| {
                    let halves = f.chunk(2, 0);
                    (halves[0].clone(), halves[1].clone())
                })
                .unzip();
            Some(invariance_loss(&a, &b, p.feature_distance, &device)?)
        } else {
            None
        };
        let total = p.weights.combine(class.clone(), sal.clone(), inv.clone());
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

impl<B: Backend> Trainee<B> {
    /// `L_sal` of a batch `[x; T(x)]` from its input gradient `grad` (the score of each image's
    /// soft label), with the run's saliency method, loss and comparison; differentiable in the
    /// weights at an autodiff level.
    pub fn saliency_loss_of(
        &self,
        grad: Tensor<B, 4>,
        both: Tensor<B, 4>,
        transfer: &salaug_augment::Transfer,
    ) -> anyhow::Result<Tensor<B, 1>> {
        let p = &self.plan.0;
        let maps = if p.method.multiplies_by_input() {
            grad * both
        } else {
            grad
        };
        let maps = p.sal_loss.reduce(maps).chunk(2, 0);
        let pair = transfer.pair(maps[0].clone(), maps[1].clone(), p.compare)?;
        Ok(p.sal_loss.forward(pair.reference, pair.other, pair.mask)?)
    }
}

fn scalar<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_scalar().elem::<f64>()
}

fn correct<B: Backend>(logits: &Tensor<B, 2>, targets: &Tensor<B, 1, Int>) -> usize {
    let pred = logits.clone().argmax(1).flatten::<1>(0, 1);
    pred.equal(targets.clone())
        .int()
        .sum()
        .into_scalar()
        .elem::<i64>() as usize
}

impl<B: AutodiffBackend> TrainStep for Trainee<B> {
    type Input = Batch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: Batch<B>) -> TrainOutput<ClassificationOutput<B>> {
        // Configurations are checked by a preflight step before training starts, so a failure
        // here is a bug, not bad input.
        let l = self
            .losses(&batch)
            .unwrap_or_else(|e| panic!("training step failed after a successful preflight: {e}"));
        let n = batch.labels.len();
        {
            let mut t = self.plan.0.train.lock().expect("tally lock");
            t.class += scalar(&l.class) * n as f64;
            t.sal += l.sal.as_ref().map_or(0.0, scalar) * n as f64;
            t.inv += l.inv.as_ref().map_or(0.0, scalar) * n as f64;
            t.total += scalar(&l.total) * n as f64;
            t.correct += correct(&l.logits, &l.targets);
            t.seen += 2 * n;
            t.originals += n;
        }
        let grads = l.total.backward();
        TrainOutput::new(
            self,
            grads,
            ClassificationOutput::new(l.total.detach(), l.logits.detach(), l.targets),
        )
    }
}

impl<B: Backend> InferenceStep for Trainee<B> {
    type Input = Batch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: Batch<B>) -> ClassificationOutput<B> {
        let logits = self.logits(batch.images);
        let k = logits.dims()[1];
        let loss = soft_cross_entropy(logits.clone(), batch.targets.clone().one_hot(k).float());
        let n = batch.labels.len();
        {
            let mut v = self.plan.0.valid.lock().expect("tally lock");
            v.class += scalar(&loss) * n as f64;
            v.total += scalar(&loss) * n as f64;
            v.correct += correct(&logits, &batch.targets);
            v.seen += n;
            v.originals += n;
        }
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

/// Evaluation-mode accuracy of `model` (running BatchNorm statistics) on `images`.
pub fn accuracy<B: Backend>(
    model: &Trainee<B>,
    images: Tensor<B, 4>,
    targets: Tensor<B, 1, Int>,
) -> usize {
    correct(&model.logits(images), &targets)
}

/// A freshly initialised trainee for `config` and `data`, seeded by the run seed.
pub fn build_model<B: Backend>(
    config: &RunConfig,
    data: &Data,
    device: &B::Device,
) -> anyhow::Result<Trainee<B>> {
    let [c, _, _] = data.train.shape;
    let model_config = config.model_config(c, data.train.classes);
    model_config.validate()?;
    let plan = Plan::new(
        config,
        data.train.classes,
        data.mean.clone(),
        data.std.clone(),
    )?;
    B::seed(device, config.seed);
    let model = Trainee {
        model: model_config.init::<B>(device),
        plan,
    };
    materialize(&model);
    Ok(model)
}

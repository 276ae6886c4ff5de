//! One struct per TOML table of the run config. Each has `#[serde(default)]` and one
//! [`Default`] (the only place its defaults are stated), and a `validate` that names the key
//! of a bad value.

use std::path::PathBuf;

use anyhow::{bail, Result};
use salaug_augment::Compare;
use salaug_core::{FeatureDistance, LossWeights, SaliencyKind, SaliencyLossConfig, SecondOrder};
use salaug_models::{Arch, Head, Stem};
use salaug_spec::measures::{Better, Measure, MEASURES};
use serde::{Deserialize, Serialize};

use super::names::named;

named! {
    /// The datasets salaug reads (`data.dataset`).
    pub enum DatasetKind ("dataset") {
        /// Fashion-MNIST (Zalando), 28×28 gray, 10 classes.
        FashionMnist = "fashion_mnist",
        /// CIFAR-10, 32×32 RGB, 10 classes.
        Cifar10 = "cifar10",
        /// CIFAR-100, 32×32 RGB, 100 classes (fine labels).
        Cifar100 = "cifar100",
        /// SVHN cropped digits, 32×32 RGB, 10 classes.
        Svhn = "svhn",
        /// ImageNet-style class folders.
        ImageFolder = "image_folder",
    }
}

/// How to bring a dataset to the shape a model expects (applied by `salaug_train::data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Prepare {
    /// Zero-pad each image evenly to `pad_to × pad_to` (Fashion-MNIST 28 → 32).
    pub pad_to: Option<usize>,
    /// Then resize (bilinear) to `resize_to × resize_to` (the paper upscales to 224).
    pub resize_to: Option<usize>,
    /// Replicate a gray channel to 3 (for models with RGB stems).
    pub rgb: bool,
}

/// Dataset and preprocessing (`[data]`; `dataset` is required).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Which dataset.
    pub dataset: DatasetKind,
    /// Folder holding the dataset's files (else `$SALAUG_DATA`, then system folders).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Use only this many training images (a balanced, deterministic subset).
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Use only this many test images.
    #[serde(default)]
    pub test_limit: Option<usize>,
    /// Image side for class-folder datasets (224 when absent).
    #[serde(default = "DataConfig::default_folder_size")]
    pub folder_size: usize,
    /// Padding, resizing, gray to RGB.
    #[serde(flatten)]
    pub prepare: Prepare,
    /// Per-channel mean for normalisation; computed from the training images when absent
    /// (and written into the run's resolved config).
    #[serde(default)]
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviation, likewise.
    #[serde(default)]
    pub std: Option<Vec<f64>>,
    /// A validation split held out of the training images (after `train_limit`): a count
    /// (`5000`) or a fraction (`0.1`). Those images never train; the per-epoch held-out
    /// measures are taken on them and the test set is measured once, on the kept model.
    #[serde(default)]
    pub validation: Option<Holdout>,
}

/// The size of `data.validation`: a count of images or a fraction of the training set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Holdout {
    /// This many images.
    Count(usize),
    /// This fraction of the training images (in (0, 1)), rounded, at least 1.
    Fraction(f64),
}

impl Holdout {
    /// The number of images held out of `n` training images, leaving at least 2 to train.
    pub fn of(self, n: usize) -> Result<usize> {
        let k = match self {
            Holdout::Count(k) => k,
            Holdout::Fraction(f) => ((f * n as f64).round() as usize).max(1),
        };
        if k + 2 > n {
            bail!(
                "data.validation holds out {k} of {n} training images: at least 2 must be left \
                 to train"
            );
        }
        Ok(k)
    }
}

impl DataConfig {
    fn default_folder_size() -> usize {
        224
    }

    /// The section for `dataset` with every other key at its default.
    pub fn new(dataset: DatasetKind) -> Self {
        Self {
            dataset,
            dir: None,
            train_limit: None,
            test_limit: None,
            folder_size: Self::default_folder_size(),
            prepare: Prepare::default(),
            mean: None,
            std: None,
            validation: None,
        }
    }

    /// Checks every value, naming the key.
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("data.train_limit", self.train_limit),
            ("data.test_limit", self.test_limit),
        ] {
            if v == Some(0) {
                bail!("{key} = 0: must be at least 1 (or absent for all)");
            }
        }
        for (key, v) in [("data.mean", &self.mean), ("data.std", &self.std)] {
            if let Some(v) = v {
                if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                    bail!("{key} = {v:?}: must be finite numbers, one per channel");
                }
            }
        }
        if let Some(std) = &self.std {
            if std.iter().any(|&s| s <= 0.0) {
                bail!("data.std = {std:?}: must be > 0");
            }
        }
        if self.prepare.resize_to == Some(0) || self.prepare.pad_to == Some(0) {
            bail!("data.resize_to / data.pad_to must be at least 1");
        }
        if self.folder_size == 0 {
            bail!("data.folder_size = 0: must be at least 1");
        }
        match self.validation {
            Some(Holdout::Count(0)) => bail!("data.validation = 0: hold out at least 1 image"),
            Some(Holdout::Fraction(f)) if !(f > 0.0 && f < 1.0) => {
                bail!("data.validation = {f}: a fraction must be in (0, 1), a count an integer")
            }
            _ => {}
        }
        Ok(())
    }
}

/// The network (`[model]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// Architecture.
    pub arch: Arch,
    /// ImageNet (7×7/2 stem) or small-image (3×3/1) variant.
    pub stem: Stem,
    /// Width multiplier.
    pub width: f64,
    /// The small CNN's head: `"grid"` (average pooling to 4×4) or `"global"` (global average
    /// pooling: no image-independent lattice in the maps; issue 23's lattice study).
    pub head: Head,
    /// torchvision weights to start from: a `state_dict` saved as `.pth` or `.safetensors`
    /// (ResNet-18/50, DenseNet-121/169, VGG-16/19-BN; `stem = "imagenet"`, width 1, 3 input
    /// channels; docs/training.md). Read
    /// once, when a fresh run starts; the head is new when the class count differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PathBuf>,
    /// The SHA-256 of `pretrained`, recorded in the resolved config when the run starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretrained_sha256: Option<String>,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            arch: Arch::SmallCnn,
            stem: Stem::Small,
            width: 1.0,
            head: Head::Grid,
            pretrained: None,
            pretrained_sha256: None,
        }
    }
}

named! {
    /// Which loss terms train the model (`train.strategy`).
    #[derive(Default)]
    pub enum Strategy ("strategy") {
        /// `L_class` on `x` and `T(x)`.
        #[default]
        Ref = "ref",
        /// `+ γ·L_inv`.
        Inv = "inv",
        /// `+ β·L_sal`.
        Sal = "sal",
        /// `+ β·L_sal + γ·L_inv`.
        InvSal = "inv+sal",
    }
}

impl Strategy {
    /// Whether `L_sal` is trained.
    pub fn saliency(self) -> bool {
        matches!(self, Strategy::Sal | Strategy::InvSal)
    }
    /// Whether `L_inv` is trained.
    pub fn invariance(self) -> bool {
        matches!(self, Strategy::Inv | Strategy::InvSal)
    }
}

/// Optimiser (`train.optimizer`). A key left out of the table takes the value it has when the
/// whole table is left out: `{ kind = "sgd" }` is the default optimiser itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Optimizer {
    /// SGD with momentum (dampening 0, as PyTorch), optional Nesterov and L2 weight decay.
    Sgd {
        /// Momentum (0 for none; default 0.9).
        #[serde(default = "Optimizer::sgd_momentum")]
        momentum: f64,
        /// Nesterov momentum (default on).
        #[serde(default = "Optimizer::sgd_nesterov")]
        nesterov: bool,
        /// L2 penalty added to the gradient (default 5e-4).
        #[serde(default = "Optimizer::sgd_weight_decay")]
        weight_decay: f64,
    },
    /// Adam with optional L2 weight decay.
    Adam {
        /// L2 penalty (default 0).
        #[serde(default)]
        weight_decay: f64,
    },
    /// AdamW (decoupled weight decay).
    #[serde(rename = "adamw")]
    AdamW {
        /// Decoupled decay rate (default 1e-2).
        #[serde(default = "Optimizer::adamw_weight_decay")]
        weight_decay: f64,
    },
}

impl Optimizer {
    fn sgd_momentum() -> f64 {
        0.9
    }
    fn sgd_nesterov() -> bool {
        true
    }
    fn sgd_weight_decay() -> f64 {
        5e-4
    }
    fn adamw_weight_decay() -> f64 {
        1e-2
    }

    /// Checks every value, naming the key.
    pub fn validate(&self) -> Result<()> {
        let weight_decay = match *self {
            Optimizer::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                if !(0.0..1.0).contains(&momentum) {
                    bail!("train.optimizer.momentum = {momentum}: must be in [0, 1)");
                }
                weight_decay
            }
            Optimizer::Adam { weight_decay } | Optimizer::AdamW { weight_decay } => weight_decay,
        };
        if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
            bail!("train.optimizer.weight_decay = {weight_decay}: must be ≥ 0");
        }
        Ok(())
    }
}

impl Default for Optimizer {
    /// SGD, Nesterov momentum 0.9, weight decay 5e-4.
    fn default() -> Self {
        Optimizer::Sgd {
            momentum: Self::sgd_momentum(),
            nesterov: Self::sgd_nesterov(),
            weight_decay: Self::sgd_weight_decay(),
        }
    }
}

/// Learning-rate schedule, stepped every iteration (`train.schedule`; implemented by
/// [`crate::schedule::Scheduler`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Schedule {
    /// Constant.
    Constant,
    /// Cosine annealing from `lr` to `min_lr` over the whole run.
    Cosine {
        /// Final learning rate (default 0).
        #[serde(default)]
        min_lr: f64,
    },
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        /// Epochs between decays.
        every_epochs: usize,
        /// Factor (default 0.1).
        #[serde(default = "Schedule::step_gamma")]
        gamma: f64,
    },
}

impl Schedule {
    fn step_gamma() -> f64 {
        0.1
    }
}

impl Default for Schedule {
    /// Cosine annealing to 0.
    fn default() -> Self {
        Schedule::Cosine { min_lr: 0.0 }
    }
}

/// Optimisation (`[train]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Which loss terms.
    pub strategy: Strategy,
    /// Epochs.
    pub epochs: usize,
    /// Original images per batch (the step sees twice as many with `T(x)`).
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// Schedule.
    pub schedule: Schedule,
    /// Data-loader worker threads.
    pub workers: usize,
    /// The devices that train, by name (`salaug_train::backend::parse_device`: `default`,
    /// `cpu`, `cuda:0`, `wgpu:0`, …). With several, burn's MultiDevice strategy trains one
    /// batch of `batch_size` per device per step and averages their gradients (the same
    /// device may be listed twice); docs/training.md.
    pub devices: Vec<String>,
    /// The model a run ends with (`model.mpk`, the test measures, `salaug export`): `"last"`,
    /// or `"best:<measure>"`, the epoch with the best value of a held-out column of
    /// `metrics.csv` (e.g. `"best:test_acc"`; with `data.validation`, measured on it).
    pub keep: Keep,
    /// Stop when a held-out measure has not improved for `patience` measured epochs.
    pub early_stop: Option<EarlyStop>,
    /// Linear learning-rate warm-up over this many epochs (fractions allowed; 0: none):
    /// burn-optim's linear scheduler from `warmup_start × lr` to `lr`, multiplying the
    /// schedule.
    pub warmup_epochs: f64,
    /// The warm-up's first factor, in (0, 1].
    pub warmup_start: f64,
    /// Gradient clipping by burn-optim, per parameter tensor: `{ norm = 1.0 }` scales each
    /// tensor's gradient to L2 norm at most 1 (PyTorch's `clip_grad_norm_` takes the norm of
    /// all tensors together), `{ value = 0.5 }` clamps every entry to [-0.5, 0.5].
    pub grad_clip: Option<GradClip>,
    /// Log a progress line (running losses, images/s, learning rate, whole-run ETA) and check
    /// the losses for NaN/inf every this many steps.
    pub log_every: usize,
}

/// `train.keep`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Keep {
    /// The last epoch's model.
    Last,
    /// The model of the epoch with the best value of this `metrics.csv` column.
    Best(String),
}

impl TryFrom<String> for Keep {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        match s.strip_prefix("best:") {
            None if s == "last" => Ok(Keep::Last),
            None => Err(format!(
                "train.keep = {s:?}: expected \"last\" or \"best:<measure>\""
            )),
            Some(m) => {
                held_out_measure(m).map_err(|e| format!("train.keep: {e}"))?;
                Ok(Keep::Best(m.to_string()))
            }
        }
    }
}

impl From<Keep> for String {
    fn from(k: Keep) -> String {
        match k {
            Keep::Last => "last".into(),
            Keep::Best(m) => format!("best:{m}"),
        }
    }
}

/// `train.early_stop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStop {
    /// A held-out column of `metrics.csv` (e.g. `"test_acc"`).
    pub measure: String,
    /// Measured epochs without improvement before the run stops.
    pub patience: usize,
    /// An improvement smaller than this does not count (default 0).
    #[serde(default)]
    pub min_delta: f64,
}

/// `train.grad_clip`, burn-optim's `GradientClippingConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GradClip {
    /// Each parameter tensor's gradient to at most this L2 norm.
    Norm(f64),
    /// Every gradient entry into [-v, v].
    Value(f64),
}

/// The held-out measure `key` of `metrics.csv` that `train.keep` or `train.early_stop` may
/// select on: one with a better direction, measured on held-out images.
pub fn held_out_measure(key: &str) -> std::result::Result<&'static Measure, String> {
    let selectable = || {
        MEASURES
            .iter()
            .filter(|m| is_held_out(m))
            .map(|m| m.key)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match MEASURES.iter().find(|m| m.key == key) {
        Some(m) if is_held_out(m) => Ok(m),
        Some(_) => Err(format!(
            "{key:?} is not a held-out measure; choose one of {}",
            selectable()
        )),
        None => Err(format!(
            "no measure {key:?} in metrics.csv; choose one of {}",
            selectable()
        )),
    }
}

fn is_held_out(m: &Measure) -> bool {
    m.better != Better::Neither && !m.key.starts_with("train_")
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Ref,
            epochs: 2,
            batch_size: 64,
            lr: 0.05,
            optimizer: Optimizer::default(),
            schedule: Schedule::default(),
            workers: 1,
            devices: vec!["default".to_string()],
            keep: Keep::Last,
            early_stop: None,
            warmup_epochs: 0.0,
            warmup_start: 0.01,
            grad_clip: None,
            log_every: 50,
        }
    }
}

impl TrainConfig {
    /// Checks every value, naming the key.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("train.epochs = 0: must be at least 1");
        }
        if self.batch_size < 2 {
            bail!(
                "train.batch_size = {}: must be at least 2 (BatchNorm)",
                self.batch_size
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("train.lr = {}: must be a finite number > 0", self.lr);
        }
        if self.workers == 0 {
            bail!("train.workers = 0: must be at least 1");
        }
        if self.devices.is_empty() {
            bail!("train.devices = []: name at least one device (e.g. [\"default\"])");
        }
        if self.devices.len() > u16::MAX as usize {
            bail!(
                "train.devices: {} devices, at most 65535",
                self.devices.len()
            );
        }
        self.optimizer.validate()?;
        if !(self.warmup_epochs >= 0.0 && self.warmup_epochs.is_finite()) {
            bail!(
                "train.warmup_epochs = {}: must be a finite number >= 0",
                self.warmup_epochs
            );
        }
        if !(self.warmup_start > 0.0 && self.warmup_start <= 1.0) {
            bail!(
                "train.warmup_start = {}: must be in (0, 1]",
                self.warmup_start
            );
        }
        if let Some(clip) = self.grad_clip {
            let (GradClip::Norm(v) | GradClip::Value(v)) = clip;
            if !(v > 0.0 && v.is_finite()) {
                bail!("train.grad_clip = {clip:?}: the bound must be a finite number > 0");
            }
        }
        if let Some(e) = &self.early_stop {
            held_out_measure(&e.measure).map_err(|m| anyhow::anyhow!("train.early_stop: {m}"))?;
            if e.patience == 0 {
                bail!("train.early_stop.patience = 0: must be at least 1");
            }
            if !(e.min_delta >= 0.0 && e.min_delta.is_finite()) {
                bail!(
                    "train.early_stop.min_delta = {}: must be a finite number >= 0",
                    e.min_delta
                );
            }
        }
        if self.log_every == 0 {
            bail!("train.log_every = 0: must be at least 1");
        }
        match self.schedule {
            Schedule::Constant => {}
            Schedule::Cosine { min_lr } => {
                if !(min_lr >= 0.0 && min_lr <= self.lr) {
                    bail!("train.schedule.min_lr = {min_lr}: must be in [0, train.lr]");
                }
            }
            Schedule::Step {
                every_epochs,
                gamma,
            } => {
                if every_epochs == 0 {
                    bail!("train.schedule.every_epochs = 0: must be at least 1");
                }
                if !(gamma > 0.0 && gamma <= 1.0) {
                    bail!("train.schedule.gamma = {gamma}: must be in (0, 1]");
                }
            }
        }
        Ok(())
    }
}

/// The loss terms (`[loss]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// α, β, γ.
    #[serde(flatten)]
    pub weights: LossWeights,
    /// Saliency method: a name as on the command line (`"gradient"`, `"grad_cam"`,
    /// `"grad_cam:layer4"`, `"smooth_grad:guided_backprop"`, …) or a table with settings.
    pub method: SaliencyKind,
    /// Channel reduction, map normalisation, distance.
    pub saliency: SaliencyLossConfig,
    /// Compare in the original frame (inverse), the augmented frame (expected) or auto.
    pub compare: Compare,
    /// Features for `L_inv`.
    pub taps: Vec<String>,
    /// Feature distance for `L_inv`.
    pub feature_distance: FeatureDistance,
    /// How `L_sal`'s parameter gradient is computed: `"exact"` (double backpropagation) or
    /// `{ finite_difference = { step = 1e-4, scheme = "forward" } }` (first-order autodiff;
    /// the gradient, input × gradient and SmoothGrad around them).
    pub second_order: SecondOrder,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            weights: LossWeights::default(),
            method: SaliencyKind::Gradient,
            saliency: SaliencyLossConfig::default(),
            compare: Compare::Auto,
            taps: vec!["pool".into()],
            feature_distance: FeatureDistance::L2,
            second_order: SecondOrder::Exact,
        }
    }
}

impl LossConfig {
    /// Checks every value, naming the key; `strategy` tells which terms are trained.
    pub fn validate(&self, strategy: Strategy) -> Result<()> {
        self.weights.validate()?;
        self.saliency.init()?;
        self.method.validate()?;
        if strategy.saliency() {
            self.second_order.validate(&self.method)?;
        }
        if strategy.invariance() && self.taps.is_empty() {
            bail!(
                "loss.taps is empty but train.strategy = \"{strategy}\" needs features for L_inv"
            );
        }
        Ok(())
    }
}

/// Evaluation metrics (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Held-out images for the saliency-consistency metric (the first ones of the test set).
    pub consistency_images: usize,
    /// Held-out images (the first ones of the test set) for the held-out measures
    /// (`salaug_train::metrics::held_out`: accuracy under the augmentation and the panel, map
    /// agreement, deletion/insertion); absent: the whole test set; 0: not measured.
    pub held_out_images: Option<usize>,
    /// Measure the held-out measures after every this many epochs and after the last (the
    /// other rows of `metrics.csv` hold NaN there): they cost about as much as a training
    /// epoch of the test set's size.
    pub held_out_every: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            consistency_images: 256,
            held_out_images: None,
            held_out_every: 1,
        }
    }
}

impl MetricsConfig {
    /// Checks every value, naming the key.
    pub fn validate(&self) -> Result<()> {
        if self.held_out_every == 0 {
            bail!("metrics.held_out_every = 0: must be at least 1");
        }
        Ok(())
    }
}

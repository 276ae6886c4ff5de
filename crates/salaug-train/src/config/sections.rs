//! One struct per TOML table of the run config. Each has `#[serde(default)]` and one
//! [`Default`] (the only place its defaults are stated), and a `validate` that names the key
//! of a bad value.

use std::path::PathBuf;

use anyhow::{bail, Result};
use salaug_augment::Compare;
use salaug_core::{FeatureDistance, LossWeights, SaliencyKind, SaliencyLossConfig};
use salaug_models::{Arch, Stem};
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
        }
    }
}

impl LossConfig {
    /// Checks every value, naming the key; `strategy` tells which terms are trained.
    pub fn validate(&self, strategy: Strategy) -> Result<()> {
        self.weights.validate()?;
        self.saliency.init()?;
        self.method.validate()?;
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

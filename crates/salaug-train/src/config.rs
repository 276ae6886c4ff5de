//! The run configuration: one TOML file, overridable with `--set key=value`.
//!
//! ```toml
//! seed = 0
//! [data]
//! dataset = "fashion_mnist"
//! train_limit = 2000
//! pad_to = 32
//! [model]
//! arch = "small_cnn"
//! [augment]
//! kind = "rotation"
//! [train]
//! strategy = "sal"
//! epochs = 2
//! [loss]
//! beta = 1.0
//! ```
//!
//! Unknown keys are errors; every value is checked by [`RunConfig::validate`] with the key's
//! name in the message.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use salaug_augment::{Augmentation, Compare};
use salaug_core::{FeatureDistance, LossWeights, SaliencyKind, SaliencyLossConfig};
use salaug_models::{Arch, ModelConfig, Stem};
use serde::{Deserialize, Serialize};

use crate::data::{DatasetKind, Prepare};

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A label for the run (reports and logs).
    #[serde(default)]
    pub name: String,
    /// Seeds initialisation, shuffling and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// Dataset and preprocessing.
    pub data: DataConfig,
    /// The network.
    #[serde(default)]
    pub model: ModelSection,
    /// `T`, the augmentation.
    #[serde(default = "default_augment")]
    pub augment: Augmentation,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
    /// The loss terms.
    #[serde(default)]
    pub loss: LossConfig,
    /// Evaluation metrics.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

fn default_augment() -> Augmentation {
    Augmentation::None
}

/// Dataset and preprocessing.
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
    /// Image side for class-folder datasets.
    #[serde(default = "default_folder_size")]
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

fn default_folder_size() -> usize {
    224
}

/// The network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Architecture.
    #[serde(default = "small_cnn")]
    pub arch: Arch,
    /// ImageNet (7×7/2 stem) or small-image (3×3/1) variant.
    #[serde(default)]
    pub stem: Stem,
    /// Width multiplier.
    #[serde(default = "one")]
    pub width: f64,
}

fn small_cnn() -> Arch {
    Arch::SmallCnn
}

fn one() -> f64 {
    1.0
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            arch: Arch::SmallCnn,
            stem: Stem::Small,
            width: 1.0,
        }
    }
}

/// Which loss terms train the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Strategy {
    /// `L_class` on `x` and `T(x)`.
    #[default]
    #[serde(rename = "ref")]
    Ref,
    /// `+ γ·L_inv`.
    #[serde(rename = "inv")]
    Inv,
    /// `+ β·L_sal`.
    #[serde(rename = "sal")]
    Sal,
    /// `+ β·L_sal + γ·L_inv`.
    #[serde(rename = "inv+sal")]
    InvSal,
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
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Ref => "ref",
            Strategy::Inv => "inv",
            Strategy::Sal => "sal",
            Strategy::InvSal => "inv+sal",
        }
    }
}

/// Optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Optimizer {
    /// SGD with momentum (dampening 0, as PyTorch), optional Nesterov and L2 weight decay.
    Sgd {
        /// Momentum (0 for none).
        #[serde(default = "momentum")]
        momentum: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
        /// L2 penalty added to the gradient.
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam with optional L2 weight decay.
    Adam {
        /// L2 penalty.
        #[serde(default)]
        weight_decay: f64,
    },
    /// AdamW (decoupled weight decay).
    #[serde(rename = "adamw")]
    AdamW {
        /// Decoupled decay rate.
        #[serde(default = "adamw_decay")]
        weight_decay: f64,
    },
}

/// Work that needs the run's optimiser, whatever its burn type (see [`Optimizer::with`]).
pub trait WithOptimizer<B: burn::tensor::backend::Backend> {
    /// What the work returns.
    type Output;
    /// Does the work; `make` builds a fresh optimiser (state-free) of the configured kind.
    fn run<O>(self, make: impl Fn() -> O) -> Self::Output
    where
        O: burn::optim::Optimizer<
                crate::trainee::Trainee<burn::backend::Autodiff<B>>,
                burn::backend::Autodiff<B>,
            > + 'static;
}

impl Optimizer {
    /// Runs `work` with burn's optimiser of this configuration: the one place that turns the
    /// config into burn's optimiser configs (training and `salaug time` both go through it).
    pub fn with<B: burn::tensor::backend::Backend, W: WithOptimizer<B>>(
        &self,
        work: W,
    ) -> W::Output {
        use burn::optim::{
            decay::WeightDecayConfig, momentum::MomentumConfig, AdamConfig, AdamWConfig, SgdConfig,
        };
        match *self {
            Optimizer::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                let mut c = SgdConfig::new();
                if momentum > 0.0 {
                    c = c.with_momentum(Some(
                        MomentumConfig::new()
                            .with_momentum(momentum)
                            .with_dampening(0.0)
                            .with_nesterov(nesterov),
                    ));
                }
                if weight_decay > 0.0 {
                    c = c.with_weight_decay(Some(WeightDecayConfig::new(weight_decay as f32)));
                }
                work.run(|| c.init())
            }
            Optimizer::Adam { weight_decay } => {
                let c = AdamConfig::new().with_weight_decay(
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)),
                );
                work.run(|| c.init())
            }
            Optimizer::AdamW { weight_decay } => {
                let c = AdamWConfig::new().with_weight_decay(weight_decay as f32);
                work.run(|| c.init())
            }
        }
    }
}

fn momentum() -> f64 {
    0.9
}
fn adamw_decay() -> f64 {
    1e-2
}

/// Learning-rate schedule, stepped every iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Schedule {
    /// Constant.
    Constant,
    /// Cosine annealing from `lr` to `min_lr` over the whole run.
    Cosine {
        /// Final learning rate.
        #[serde(default)]
        min_lr: f64,
    },
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        /// Epochs between decays.
        every_epochs: usize,
        /// Factor.
        #[serde(default = "tenth")]
        gamma: f64,
    },
}

fn tenth() -> f64 {
    0.1
}

/// Optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Which loss terms.
    #[serde(default)]
    pub strategy: Strategy,
    /// Epochs.
    #[serde(default = "epochs")]
    pub epochs: usize,
    /// Original images per batch (the step sees twice as many with `T(x)`).
    #[serde(default = "batch_size")]
    pub batch_size: usize,
    /// Initial learning rate.
    #[serde(default = "lr")]
    pub lr: f64,
    /// Optimiser.
    #[serde(default = "sgd")]
    pub optimizer: Optimizer,
    /// Schedule.
    #[serde(default = "cosine")]
    pub schedule: Schedule,
    /// Data-loader worker threads.
    #[serde(default = "one_usize")]
    pub workers: usize,
}

fn epochs() -> usize {
    2
}
fn batch_size() -> usize {
    64
}
fn lr() -> f64 {
    0.05
}
fn one_usize() -> usize {
    1
}
fn sgd() -> Optimizer {
    Optimizer::Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
    }
}
fn cosine() -> Schedule {
    Schedule::Cosine { min_lr: 0.0 }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Ref,
            epochs: epochs(),
            batch_size: batch_size(),
            lr: lr(),
            optimizer: sgd(),
            schedule: cosine(),
            workers: 1,
        }
    }
}

/// The loss terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// α, β, γ.
    #[serde(flatten)]
    pub weights: LossWeights,
    /// Saliency method.
    #[serde(default)]
    pub method: SaliencyKind,
    /// Channel reduction, map normalisation, distance.
    #[serde(default)]
    pub saliency: SaliencyLossConfig,
    /// Compare in the original frame (inverse), the augmented frame (expected) or auto.
    #[serde(default)]
    pub compare: Compare,
    /// Features for `L_inv`.
    #[serde(default = "taps")]
    pub taps: Vec<String>,
    /// Feature distance for `L_inv`.
    #[serde(default)]
    pub feature_distance: FeatureDistance,
}

fn taps() -> Vec<String> {
    vec!["pool".into()]
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            weights: LossWeights::default(),
            method: SaliencyKind::Gradient,
            saliency: SaliencyLossConfig::default(),
            compare: Compare::Auto,
            taps: taps(),
            feature_distance: FeatureDistance::L2,
        }
    }
}

/// Evaluation metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Held-out images for the saliency-consistency metric (the first ones of the test set).
    #[serde(default = "consistency_images")]
    pub consistency_images: usize,
    /// Held-out images (the first ones of the test set) for the held-out measures
    /// (`salaug_train::metrics::held_out`: accuracy under the augmentation and the panel, map
    /// agreement, deletion/insertion); absent: the whole test set; 0: not measured.
    #[serde(default)]
    pub held_out_images: Option<usize>,
    /// Measure the held-out measures after every this many epochs and after the last (the
    /// other rows of `metrics.csv` hold NaN there): they cost about as much as a training
    /// epoch of the test set's size.
    #[serde(default = "one_epoch")]
    pub held_out_every: usize,
}

fn one_epoch() -> usize {
    1
}

fn consistency_images() -> usize {
    256
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            consistency_images: consistency_images(),
            held_out_images: None,
            held_out_every: 1,
        }
    }
}

impl RunConfig {
    /// Parses TOML text, applies `key=value` overrides (dotted keys, TOML values; a bare word
    /// is taken as a string), and validates.
    pub fn parse(text: &str, overrides: &[String]) -> Result<RunConfig> {
        let mut value: toml::Value = toml::from_str(text).context("not valid TOML")?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let config: RunConfig = value
            .try_into()
            .map_err(|e: toml::de::Error| anyhow!("{}", e.to_string().trim()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text, overrides).with_context(|| format!("config {}", path.display()))
    }

    /// The TOML text of this config.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config serialises")
    }

    /// The model's config for `channels` input channels and `classes` classes.
    pub fn model_config(&self, channels: usize, classes: usize) -> ModelConfig {
        ModelConfig::new(self.model.arch, self.model.stem, channels, classes)
            .with_width(self.model.width)
    }

    /// Checks every value, naming the key.
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        if t.epochs == 0 {
            bail!("train.epochs = 0: must be at least 1");
        }
        if t.batch_size < 2 {
            bail!(
                "train.batch_size = {}: must be at least 2 (BatchNorm)",
                t.batch_size
            );
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            bail!("train.lr = {}: must be a finite number > 0", t.lr);
        }
        if t.workers == 0 {
            bail!("train.workers = 0: must be at least 1");
        }
        if self.metrics.held_out_every == 0 {
            bail!("metrics.held_out_every = 0: must be at least 1");
        }
        match t.optimizer {
            Optimizer::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                if !(0.0..1.0).contains(&momentum) {
                    bail!("train.optimizer.momentum = {momentum}: must be in [0, 1)");
                }
                if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
                    bail!("train.optimizer.weight_decay = {weight_decay}: must be ≥ 0");
                }
            }
            Optimizer::Adam { weight_decay } | Optimizer::AdamW { weight_decay } => {
                if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
                    bail!("train.optimizer.weight_decay = {weight_decay}: must be ≥ 0");
                }
            }
        }
        match t.schedule {
            Schedule::Constant => {}
            Schedule::Cosine { min_lr } => {
                if !(min_lr >= 0.0 && min_lr <= t.lr) {
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
        self.loss.weights.validate()?;
        self.loss.saliency.init()?;
        self.loss.method.validate()?;
        if self.train.strategy.invariance() && self.loss.taps.is_empty() {
            bail!(
                "loss.taps is empty but train.strategy = \"{}\" needs features for L_inv",
                t.strategy.name()
            );
        }
        self.augment.validate()?;
        let model = self.model_config(1, 10);
        model.validate()?;
        for (key, v) in [
            ("data.train_limit", self.data.train_limit),
            ("data.test_limit", self.data.test_limit),
        ] {
            if v == Some(0) {
                bail!("{key} = 0: must be at least 1 (or absent for all)");
            }
        }
        for (key, v) in [("data.mean", &self.data.mean), ("data.std", &self.data.std)] {
            if let Some(v) = v {
                if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                    bail!("{key} = {v:?}: must be finite numbers, one per channel");
                }
            }
        }
        if let Some(std) = &self.data.std {
            if std.iter().any(|&s| s <= 0.0) {
                bail!("data.std = {std:?}: must be > 0");
            }
        }
        if self.data.prepare.resize_to == Some(0) || self.data.prepare.pad_to == Some(0) {
            bail!("data.resize_to / data.pad_to must be at least 1");
        }
        Ok(())
    }
}

/// Sets `a.b.c = value` in a TOML tree.
fn apply_override(root: &mut toml::Value, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow!("--set {assignment}: expected key=value"))?;
    let key = key.trim();
    let raw = raw.trim();
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed v"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set {assignment}: empty key segment");
    }
    let mut node = root;
    for part in &parts[..parts.len() - 1] {
        let table = node
            .as_table_mut()
            .ok_or_else(|| anyhow!("--set {assignment}: {part} is not a table"))?;
        node = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    node.as_table_mut()
        .ok_or_else(|| anyhow!("--set {assignment}: parent of {key} is not a table"))?
        .insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[data]\ndataset = \"fashion_mnist\"\n";

    #[test]
    fn defaults_and_overrides() {
        let c = RunConfig::parse(
            MINIMAL,
            &[
                "train.strategy=sal".into(),
                "loss.beta = 2.5".into(),
                "augment.kind = \"rotation\"".into(),
                "augment.max_degrees = 10.0".into(),
                "train.optimizer = {kind = \"adamw\"}".into(),
                "loss.method = {smooth_grad = {of = \"input_x_gradient\", samples = 3}}".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            c.loss.method,
            SaliencyKind::SmoothGrad(salaug_core::SmoothGrad {
                inner: Box::new(SaliencyKind::InputXGradient),
                samples: 3,
                noise_level: 0.15,
            })
        );
        assert_eq!(c.train.strategy, Strategy::Sal);
        assert_eq!(c.loss.weights.beta, 2.5);
        assert_eq!(c.augment.name(), "rotation");
        assert!(
            matches!(c.train.optimizer, Optimizer::AdamW { weight_decay } if weight_decay == 1e-2)
        );
        // The resolved config round-trips.
        assert_eq!(RunConfig::parse(&c.to_toml(), &[]).unwrap(), c);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (set, key) in [
            ("train.lr = -1.0", "train.lr"),
            ("train.epochs = 0", "train.epochs"),
            ("loss.beta = -2.0", "loss.beta"),
            ("model.width = 0.0", "model.width"),
            ("train.strategy = \"sall\"", "sall"),
            ("train.bogus = 1", "bogus"),
            ("augment.kind = \"rotation\"", "rotation"),
            ("data.dataset = \"mnist\"", "mnist"),
            (
                "loss.method = {smooth_grad = {of = \"gradient\", samples = 0}}",
                "smooth_grad.samples",
            ),
            ("loss.method = \"guided\"", "guided"),
        ] {
            let extra: Vec<String> = if set.starts_with("augment.kind") {
                vec![set.into(), "augment.p = 2.0".into()]
            } else {
                vec![set.into()]
            };
            let err = format!("{:#}", RunConfig::parse(MINIMAL, &extra).unwrap_err());
            assert!(err.contains(key), "{set}: {err}");
        }
        assert!(RunConfig::parse("[data\n", &[]).is_err());
        assert!(RunConfig::parse(MINIMAL, &["novalue".into()]).is_err());
    }
}

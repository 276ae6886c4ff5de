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
//! method = "grad_cam:block2"
//! ```
//!
//! Every TOML table is one struct of [`sections`] with one `Default` and its own `validate`;
//! unknown keys are errors, and every error names the key. This module depends on no other
//! module of the crate: data, optimiser, step and run loop read it.

mod names;
mod overrides;
pub mod sections;

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use salaug_augment::Augmentation;
use salaug_models::ModelConfig;
use serde::{Deserialize, Serialize};

pub use sections::{
    held_out_measure, DataConfig, DatasetKind, EarlyStop, GradClip, Holdout, Keep, LossConfig,
    MetricsConfig, ModelSection, Optimizer, Prepare, Schedule, Strategy, TrainConfig,
};

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
    /// `T`, the augmentation (default: none).
    #[serde(default = "no_augmentation")]
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

fn no_augmentation() -> Augmentation {
    Augmentation::None
}

impl RunConfig {
    /// A config for `dataset` with every other key at its default.
    pub fn new(dataset: DatasetKind) -> Self {
        Self {
            name: String::new(),
            seed: 0,
            data: DataConfig::new(dataset),
            model: ModelSection::default(),
            augment: no_augmentation(),
            train: TrainConfig::default(),
            loss: LossConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }

    /// Parses TOML text, applies `key=value` overrides (dotted keys, TOML values; a bare word
    /// is taken as a string), and validates.
    pub fn parse(text: &str, overrides: &[String]) -> Result<RunConfig> {
        let mut value: toml::Value = toml::from_str(text).context("not valid TOML")?;
        for o in overrides {
            overrides::apply(&mut value, o)?;
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
            .with_head(self.model.head)
    }

    /// Checks every section, naming the key of a bad value.
    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.model_config(1, 10).validate()?;
        self.augment.validate()?;
        self.train.validate()?;
        self.loss.validate(self.train.strategy)?;
        self.metrics.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use salaug_core::SaliencyKind;

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
    fn a_config_with_only_the_dataset_is_the_default_config() {
        let c = RunConfig::parse(MINIMAL, &[]).unwrap();
        assert_eq!(c, RunConfig::new(DatasetKind::FashionMnist));
    }

    #[test]
    fn a_partial_optimizer_table_keeps_the_other_defaults() {
        // The trap of the past: `{ kind = "sgd" }` silently turned off Nesterov momentum and
        // weight decay, which leaving the key out gives.
        let c = RunConfig::parse(MINIMAL, &["train.optimizer = {kind = \"sgd\"}".into()]).unwrap();
        assert_eq!(c.train.optimizer, Optimizer::default());
        let c = RunConfig::parse(
            MINIMAL,
            &["train.optimizer = {kind = \"sgd\", nesterov = false}".into()],
        )
        .unwrap();
        assert_eq!(
            c.train.optimizer,
            Optimizer::Sgd {
                momentum: 0.9,
                nesterov: false,
                weight_decay: 5e-4
            }
        );
    }

    #[test]
    fn the_saliency_method_takes_its_command_line_names() {
        for (text, name) in [
            ("\"grad_cam\"", "grad_cam"),
            ("\"grad_cam:block2\"", "grad_cam:block2"),
            ("\"smooth_grad\"", "smooth_grad:gradient"),
            (
                "\"smooth_grad:guided_backprop\"",
                "smooth_grad:guided_backprop",
            ),
            ("{ grad_cam = {} }", "grad_cam"),
            ("\"deconvnet\"", "deconvnet"),
        ] {
            let c = RunConfig::parse(MINIMAL, &[format!("loss.method = {text}")]).unwrap();
            assert_eq!(c.loss.method.name(), name, "{text}");
            assert_eq!(RunConfig::parse(&c.to_toml(), &[]).unwrap(), c, "{text}");
        }
    }

    #[test]
    fn names_are_written_once() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>().unwrap(), *s);
        }
        for d in DatasetKind::ALL {
            let c = RunConfig::parse(&format!("[data]\ndataset = \"{d}\"\n"), &[]).unwrap();
            assert_eq!(c.data.dataset, *d);
        }
        let e = "sall".parse::<Strategy>().unwrap_err();
        assert!(e.contains("ref, inv, sal, inv+sal"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (set, key) in [
            ("train.lr = -1.0", "train.lr"),
            ("train.epochs = 0", "train.epochs"),
            ("loss.beta = -2.0", "loss.beta"),
            ("model.width = 0.0", "model.width"),
            ("model.head = \"gap\"", "gap"),
            ("train.strategy = \"sall\"", "sall"),
            ("train.bogus = 1", "bogus"),
            ("augment.kind = \"rotation\"", "rotation"),
            ("data.dataset = \"mnist\"", "mnist"),
            (
                "loss.method = {smooth_grad = {of = \"gradient\", samples = 0}}",
                "smooth_grad.samples",
            ),
            ("loss.method = \"guided\"", "guided"),
            (
                "train.optimizer = {kind = \"sgd\", momentum = 1.5}",
                "train.optimizer.momentum",
            ),
            ("metrics.held_out_every = 0", "metrics.held_out_every"),
            ("data.validation = 0", "data.validation"),
            ("data.validation = 1.5", "data.validation"),
            ("train.keep = \"best\"", "train.keep"),
            ("train.keep = \"best:accuracy\"", "test_acc"),
            ("train.keep = \"best:train_loss\"", "not a held-out measure"),
            (
                "train.early_stop = {measure = \"test_acc\", patience = 0}",
                "train.early_stop.patience",
            ),
            (
                "train.early_stop = {measure = \"lr\", patience = 2}",
                "train.early_stop",
            ),
            ("train.warmup_epochs = -1.0", "train.warmup_epochs"),
            ("train.warmup_start = 0.0", "train.warmup_start"),
            ("train.grad_clip = {norm = 0.0}", "train.grad_clip"),
            ("train.grad_clip = {clip = 1.0}", "clip"),
            ("train.log_every = 0", "train.log_every"),
        ] {
            let extra: Vec<String> = if set.starts_with("augment.kind") {
                vec![set.into(), "augment.p = 2.0".into()]
            } else {
                vec![set.into()]
            };
            let err = format!("{:#}", RunConfig::parse(MINIMAL, &extra).unwrap_err());
            assert!(err.contains(key), "{set}: {err}");
        }
        // The finite-difference L_sal gradient: a bad step, and a method it cannot serve.
        for (set, key) in [
            (
                "loss.second_order = {finite_difference = {step = 0.0}}",
                "loss.second_order.finite_difference.step",
            ),
            (
                "loss.second_order = {finite_difference = {}}",
                "loss.second_order = \"exact\"",
            ),
        ] {
            let extra = [
                "train.strategy = \"sal\"".into(),
                "loss.method = \"guided_backprop\"".into(),
                set.into(),
            ];
            let err = format!("{:#}", RunConfig::parse(MINIMAL, &extra).unwrap_err());
            assert!(err.contains(key), "{set}: {err}");
        }
        let err = RunConfig::parse(
            MINIMAL,
            &[
                "model.head = \"global\"".into(),
                "model.arch = \"resnet18\"".into(),
            ],
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("model.head"), "{err:#}");
        // The loop's settings parse as documented and survive the resolved config.
        let c = RunConfig::parse(
            MINIMAL,
            &[
                "data.validation = 0.1".into(),
                "train.keep = \"best:test_acc\"".into(),
                "train.early_stop = {measure = \"consistency\", patience = 3}".into(),
                "train.grad_clip = {norm = 1.0}".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.data.validation, Some(Holdout::Fraction(0.1)));
        assert_eq!(c.train.keep, Keep::Best("test_acc".into()));
        assert_eq!(c.train.grad_clip, Some(GradClip::Norm(1.0)));
        assert_eq!(RunConfig::parse(&c.to_toml(), &[]).unwrap(), c);
        let n = RunConfig::parse(MINIMAL, &["data.validation = 5000".into()]).unwrap();
        assert_eq!(n.data.validation, Some(Holdout::Count(5000)));
        assert!(RunConfig::parse("[data\n", &[]).is_err());
        assert!(RunConfig::parse(MINIMAL, &["novalue".into()]).is_err());
    }
}

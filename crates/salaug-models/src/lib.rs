//! # salaug-models
//!
//! The paper's model zoo, built only from twice-differentiable operations so that every model
//! can be trained on a saliency loss (a gradient of a gradient) on burn 0.21.
//!
//! | [`Arch`] | reference | ImageNet parameters (1000 classes) |
//! |---|---|---|
//! | `resnet18` | torchvision `resnet18` | 11,689,512 |
//! | `resnet50` | torchvision `resnet50` (v1.5) | 25,557,032 |
//! | `densenet121` | torchvision `densenet121` | 7,978,856 |
//! | `densenet169` | torchvision `densenet169` | 14,149,480 |
//! | `vgg16_bn` | torchvision `vgg16_bn` | 138,365,992 |
//! | `vgg19_bn` | torchvision `vgg19_bn` | 143,678,248 |
//! | `small_cnn` | two conv blocks, for CPU runs | — |
//!
//! Every model has an ImageNet variant ([`Stem::ImageNet`]: 7×7/2 stem + max pool, 224×224
//! input) and a small-image variant ([`Stem::Small`]: 3×3/1 stem, for 32×32 and 28×28), any
//! number of input channels and classes, and a width multiplier for CPU-scale runs. Each
//! exposes its stage outputs as named features for the invariance loss L_inv.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::Tensor;
//! use salaug_core::Classifier;
//! use salaug_models::{Arch, ModelConfig, Stem};
//!
//! let device = Default::default();
//! let model = ModelConfig::new(Arch::ResNet18, Stem::Small, 3, 10)
//!     .with_width(0.25)
//!     .init::<Autodiff<Flex>>(&device);
//! let logits = model.logits(Tensor::zeros([8, 3, 32, 32], &device)); // [8, 10]
//! # let _ = logits;
//! ```
//!
//! [`ops`] holds the layers that replace burn 0.21's unsafe ones (linear, max/avg/adaptive
//! pooling); `tests/forbidden_ops.rs` fails if any model file names one of the unsafe ops.

// `Model` holds each family unboxed: it is built once per model and never moved in a hot
// loop, and boxing would break `derive(Module)`. (Crate-wide: the lint fires on the record
// enum that the derive writes inside the `zoo!` expansion, where no item attribute reaches.)
#![allow(clippy::large_enum_variant)]

pub mod densenet;
pub mod ops;
pub mod resnet;
pub mod small_cnn;
pub mod vgg;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use salaug_core::{Classifier, Error as CoreError};

pub use densenet::DenseNet;
pub use resnet::ResNet;
pub use small_cnn::SmallCnn;
pub use vgg::Vgg;

/// Named intermediate features of one forward pass, in forward order.
pub type Features<B> = Vec<(&'static str, Tensor<B, 4>)>;

/// Defines the zoo from one list: the families (the [`Model`] variants, each a module with
/// its `FEATURES`, its `CAM_LAYER` and a `forward_features`) and the architectures (the
/// [`Arch`] variants, each with its config and command-line name and how it is built). The
/// enums, [`Arch::ALL`], [`Arch::name`], [`ModelConfig::init`] and every dispatch of
/// [`Model`] come from it.
macro_rules! zoo {
    (
        families {
            $( $(#[doc = $fdoc:literal])* $family:ident($module:ident::$ty:ident), )*
        }
        archs |$config:ident, $device:ident| {
            $(
                $(#[doc = $adoc:literal])*
                $arch:ident = $name:literal => $built:ident($build:expr),
            )*
        }
    ) => {
        /// The architectures of the zoo.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Arch {
            $( $(#[doc = $adoc])* #[serde(rename = $name)] $arch, )*
        }

        impl Arch {
            /// Every architecture, in the order of the table above.
            pub const ALL: [Arch; [$($name),*].len()] = [$(Arch::$arch),*];

            /// The name used in configs and on the command line.
            pub fn name(self) -> &'static str {
                match self {
                    $( Arch::$arch => $name, )*
                }
            }
        }

        /// Any model of the zoo.
        #[derive(Module, Debug)]
        pub enum Model<B: Backend> {
            $( $(#[doc = $fdoc])* $family($ty<B>), )*
        }

        impl<B: Backend> Model<B> {
            /// Logits and every named feature of one forward pass.
            pub fn forward_features(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Features<B>) {
                match self {
                    $( Model::$family(m) => m.forward_features(x), )*
                }
            }

            /// The last convolutional stage: Grad-CAM's layer when none is given.
            fn last_stage(&self) -> &'static str {
                match self {
                    $( Model::$family(_) => $module::CAM_LAYER, )*
                }
            }

            /// The names of [`Self::forward_features`]' features, in forward order.
            fn feature_list(&self) -> &'static [&'static str] {
                match self {
                    $( Model::$family(_) => &$module::FEATURES, )*
                }
            }
        }

        /// The model of `arch`, built from `config` on `device` (settings already checked).
        fn build<B: Backend>(
            arch: Arch,
            $config: &ModelConfig,
            $device: &B::Device,
        ) -> Model<B> {
            match arch {
                $( Arch::$arch => Model::$built($build), )*
            }
        }
    };
}

zoo! {
    families {
        /// ResNet-18 or ResNet-50.
        ResNet(resnet::ResNet),
        /// DenseNet-121 or DenseNet-169.
        DenseNet(densenet::DenseNet),
        /// VGG-16-BN or VGG-19-BN.
        Vgg(vgg::Vgg),
        /// The small CNN.
        SmallCnn(small_cnn::SmallCnn),
    }
    archs |c, device| {
        /// ResNet-18.
        ResNet18 = "resnet18" => ResNet(ResNet::new(c, resnet::RESNET18_BLOCKS, false, device)),
        /// ResNet-50.
        ResNet50 = "resnet50" => ResNet(ResNet::new(c, resnet::RESNET50_BLOCKS, true, device)),
        /// DenseNet-121.
        DenseNet121 = "densenet121" =>
            DenseNet(DenseNet::new(c, densenet::DENSENET121_BLOCKS, device)),
        /// DenseNet-169.
        DenseNet169 = "densenet169" =>
            DenseNet(DenseNet::new(c, densenet::DENSENET169_BLOCKS, device)),
        /// VGG-16 with BatchNorm.
        Vgg16Bn = "vgg16_bn" => Vgg(Vgg::new(c, vgg::VGG16_STAGES, device)),
        /// VGG-19 with BatchNorm.
        Vgg19Bn = "vgg19_bn" => Vgg(Vgg::new(c, vgg::VGG19_STAGES, device)),
        /// The small CNN for fast CPU runs.
        SmallCnn = "small_cnn" => SmallCnn(SmallCnn::new(c, device)),
    }
}

impl Arch {
    /// The architecture called `name` (see [`Self::name`]).
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl core::fmt::Display for Arch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the small CNN's classifier reads (`model.head`; the other architectures have one
/// head each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Average pooling to a 4×4 grid: a coarse layout of the last feature maps (on 28×28
    /// inputs, windows over a 7×7 map that overlap, which puts a fixed lattice into the
    /// gradients).
    #[default]
    Grid,
    /// Global average pooling: one value per channel, no lattice.
    Global,
}

impl Head {
    /// The side of the pooled grid.
    pub fn side(self) -> usize {
        match self {
            Head::Grid => 4,
            Head::Global => 1,
        }
    }
}

/// The stem (and, for VGG, the head) of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// 7×7/2 convolution and 3×3/2 max pool (VGG: 7×7 adaptive pool and the 4096-4096
    /// classifier), for 224×224 inputs.
    #[serde(rename = "imagenet")]
    ImageNet,
    /// 3×3/1 convolution, no pool (VGG: global average pool and one linear layer), for 32×32
    /// and 28×28 inputs.
    #[default]
    Small,
}

/// What to build: architecture, variant, input channels, classes and width.
#[derive(Config, Debug, PartialEq)]
pub struct ModelConfig {
    /// The architecture.
    pub arch: Arch,
    /// ImageNet or small-image variant.
    pub stem: Stem,
    /// Channels of the input images (3 for RGB, 1 for grayscale).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Multiplies every channel count (and DenseNet's growth rate); 1.0 is the paper's model.
    #[config(default = 1.0)]
    pub width: f64,
    /// The small CNN's head ([`Head`]); only [`Head::Grid`] for the other architectures.
    #[config(default = "Head::Grid")]
    pub head: Head,
}

impl ModelConfig {
    /// Checks the settings: at least one input channel, two classes, and a width in (0, 16].
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |name, value: String, reason| {
            Err(CoreError::InvalidSetting {
                name,
                value,
                reason,
            })
        };
        if self.in_channels == 0 {
            return bad("model.in_channels", "0".into(), "must be at least 1");
        }
        if self.num_classes < 2 {
            return bad(
                "model.num_classes",
                self.num_classes.to_string(),
                "must be at least 2",
            );
        }
        if !(self.width > 0.0 && self.width <= 16.0) {
            return bad(
                "model.width",
                self.width.to_string(),
                "must be a number in (0, 16]",
            );
        }
        if self.head != Head::Grid && self.arch != Arch::SmallCnn {
            return bad(
                "model.head",
                format!("{:?}", self.head).to_lowercase(),
                "only the small CNN has a choice of head",
            );
        }
        Ok(())
    }

    /// Builds the model on `device`.
    ///
    /// # Panics
    /// If the settings are out of range; call [`Self::validate`] first on user input.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Model<B> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        build(self.arch, self, device)
    }
}

impl<B: Backend> Classifier<B> for Model<B> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_features(images).0
    }

    fn feature_names(&self) -> Vec<String> {
        self.feature_list().iter().map(|s| s.to_string()).collect()
    }

    fn cam_layer(&self) -> Option<String> {
        Some(self.last_stage().to_string())
    }

    fn logits_and_features(
        &self,
        images: Tensor<B, 4>,
        taps: &[String],
    ) -> salaug_core::Result<(Tensor<B, 2>, Vec<Tensor<B, 4>>)> {
        if let Some(unknown) = taps
            .iter()
            .find(|t| !self.feature_list().contains(&t.as_str()))
        {
            return Err(CoreError::UnknownTap {
                name: unknown.clone(),
                available: self.feature_names(),
            });
        }
        let (logits, features) = self.forward_features(images);
        let picked = taps
            .iter()
            .map(|t| {
                features
                    .iter()
                    .find(|(name, _)| name == t)
                    .map(|(_, f)| f.clone())
                    .expect("every listed feature is produced by the forward pass")
            })
            .collect();
        Ok((logits, picked))
    }
}

salaug_core::impl_lift!(Model);

/// Passes the named feature through [`salaug_core::tap`] (the hook of Grad-CAM) and records
/// it; the rest of the forward continues from the returned tensor.
fn record<B: Backend>(
    features: &mut Features<B>,
    name: &'static str,
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let x = salaug_core::tap(name, x);
    features.push((name, x.clone()));
    x
}

/// The number of trainable parameters of `model`: tensors that require a gradient on the
/// autodiff backend `B`. Unlike burn's `num_params`, BatchNorm running statistics (which burn
/// visits as parameters) are not counted, as in PyTorch's `parameters()`.
pub fn trainable_params<B: burn::tensor::backend::AutodiffBackend, M: Module<B>>(
    model: &M,
) -> usize {
    struct Count(usize);
    impl<B: burn::tensor::backend::AutodiffBackend> burn::module::ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let tensor = param.val();
            if tensor.is_require_grad() {
                self.0 += tensor.shape().num_elements();
            }
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

//! # salaug-augment
//!
//! The paper's augmentations as batched tensor ops on any Burn backend, each one unit with its
//! parameter sampling, its `apply` and its map [`Transfer`] side by side.
//!
//! - Parameters are drawn per image from a seeded [`StdRng`], returned to the caller and
//!   replayable: `apply(x, &params)` gives the same images every time.
//! - Every augmentation says how saliency maps of `T(x)` relate to maps of `x`: geometric ones
//!   have an inverse warp with a validity mask, photometric ones are identities, mixing ones give
//!   the expected map (the originals' maps mixed the same way). See [`transfer`].
//! - Geometry follows one convention, documented in [`geometry`].
//! - Images are in `[0, 1]`, before normalisation.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use rand::{rngs::StdRng, SeedableRng};
//! use salaug_augment::{Augmentation, Compare};
//!
//! let device = Default::default();
//! let x = Tensor::<Flex, 4>::zeros([8, 3, 32, 32], &device);
//! let aug = Augmentation::Rotation(Default::default());
//! let mut rng = StdRng::seed_from_u64(0);
//! let out = aug.run(x.clone(), &mut rng).unwrap();
//! // … saliency maps s (of x) and s_aug (of out.images), one channel each …
//! # let (s, s_aug) = (x.clone().narrow(1, 0, 1), x.narrow(1, 0, 1));
//! let pair = out.transfer.pair(s, s_aug, Compare::Auto).unwrap();
//! // L_sal = distance(pair.reference, pair.other) over pair.mask
//! ```

pub mod affine;
pub mod augmix;
pub mod check;
pub mod clahe;
pub mod color;
pub mod crop;
pub mod error;
pub mod flip;
pub mod geometry;
pub mod mix;
pub mod transfer;

use burn::prelude::*;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

pub use affine::{Rescale, Rotation, Translation};
pub use augmix::AugMix;
pub use clahe::Clahe;
pub use color::{ColorJitter, Grayscale};
pub use crop::ResizedCrop;
pub use error::{Error, Result};
pub use flip::{HorizontalFlip, VerticalFlip};
pub use mix::{CutMix, CutOut, MixUp};
pub use transfer::{Compare, Labels, MapPair, Transfer};

/// One augmentation: how to check its settings, draw its parameters, apply them, and relate
/// the saliency maps and labels. Each unit implements it in its own file; the list of units
/// is the `augmentations!` invocation in this file.
pub trait Augment {
    /// What one draw fixes for a batch (per image).
    type Params: Clone + core::fmt::Debug + PartialEq;

    /// Checks every setting (probabilities in [0, 1], positive α, ranges in order, …); errors
    /// name the field (the [`Augmentation`] holding the unit prefixes the unit's name).
    fn validate(&self) -> Result<()>;

    /// Draws parameters for `batch` images of `size = [h, w]`.
    fn sample(&self, batch: usize, size: [usize; 2], rng: &mut StdRng) -> Self::Params;

    /// Applies the drawn parameters.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, h, w]`, values in `[0, 1]`
    /// - output: same
    fn apply<B: Backend>(&self, images: Tensor<B, 4>, params: &Self::Params) -> Tensor<B, 4>;

    /// How the maps of the augmented images relate to the originals' maps.
    fn transfer(&self, params: &Self::Params, size: [usize; 2]) -> Transfer;

    /// How the labels of the augmented images relate to the originals' labels.
    fn labels(&self, _params: &Self::Params) -> Labels {
        Labels::Same
    }
}

/// A unit as listed in the `augmentations!` invocation: its config name and its variant of [`Params`].
/// Implemented by the list, not by hand.
pub trait Unit: Augment {
    /// The name in configs (`kind = "…"`).
    const NAME: &'static str;
    /// Its parameters as [`Params`].
    fn wrap(params: Self::Params) -> Params;
    /// Its parameters out of [`Params`], if they are its kind.
    fn unwrap(params: &Params) -> Option<&Self::Params>;
}

/// A call made on whichever unit an [`Augmentation`] holds (see [`Augmentation::visit`]).
pub trait Visit {
    /// What the call returns.
    type Output;
    /// The call on unit `unit`.
    fn unit<A: Unit>(self, unit: &A) -> Self::Output;
}

/// The one list of units: the config name of each and its type. It defines [`Augmentation`]
/// (with the presets), [`Params`] (one variant per unit, named as the unit), [`Unit`] for
/// every unit, [`Augmentation::name`] and [`Augmentation::visit`]. Adding an augmentation is
/// its type with an [`Augment`] impl (its own file, or beside its kin), its `pub mod` /
/// `pub use` lines at the top of this file, and one line here.
macro_rules! augmentations {
    ($($(#[$doc:meta])* $name:literal => $unit:ident,)*) => {
        /// Every augmentation and preset, as written in config files (`kind = "rotation"`, …).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum Augmentation {
            /// No augmentation: `T(x) = x`.
            #[serde(rename = "none")]
            None,
            $($(#[$doc])* #[serde(rename = $name)] $unit($unit),)*
            /// The paper's "Combined": every single transform of table 1 (horizontal flip,
            /// vertical flip, rescale, CLAHE, rotation), each with its default probability.
            #[serde(rename = "combined")]
            Combined,
            /// The paper's table 3 "affine transformation with the parameters described in
            /// Table 1": the geometric transforms of [`Augmentation::Combined`] (horizontal
            /// flip, vertical flip, rescale, rotation), each with its default probability.
            #[serde(rename = "affine")]
            Affine,
            /// SimCLR: resized crop, horizontal flip, colour jitter of strength `strength`
            /// (p = 0.8), grayscale (p = 0.2).
            #[serde(rename = "simclr")]
            Simclr {
                /// Colour-jitter strength s (paper: 0.5).
                #[serde(default = "default_strength")]
                strength: f64,
            },
            /// These augmentations in order.
            #[serde(rename = "sequence")]
            Sequence {
                /// The steps.
                steps: Vec<Augmentation>,
            },
        }

        /// Parameters drawn by an [`Augmentation`], to replay it.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Params {
            /// No augmentation.
            None,
            $($(#[$doc])* $unit(<$unit as Augment>::Params),)*
            /// One entry per step of a sequence or preset.
            Sequence(Vec<Params>),
        }

        $(impl Unit for $unit {
            const NAME: &'static str = $name;
            fn wrap(params: Self::Params) -> Params {
                Params::$unit(params)
            }
            fn unwrap(params: &Params) -> Option<&Self::Params> {
                match params {
                    Params::$unit(p) => Some(p),
                    _ => None,
                }
            }
        })*

        impl Augmentation {
            /// The config names of the units, in the list's order.
            pub const UNITS: &'static [&'static str] = &[$($name),*];

            /// The name of this augmentation in configs.
            pub fn name(&self) -> &'static str {
                match self {
                    Augmentation::None => "none",
                    $(Augmentation::$unit(_) => $name,)*
                    Augmentation::Combined => "combined",
                    Augmentation::Affine => "affine",
                    Augmentation::Simclr { .. } => "simclr",
                    Augmentation::Sequence { .. } => "sequence",
                }
            }

            /// Makes `call` on the unit this variant holds; `None` for `none`, the presets and
            /// sequences.
            pub fn visit<V: Visit>(&self, call: V) -> Option<V::Output> {
                match self {
                    $(Augmentation::$unit(unit) => Some(call.unit(unit)),)*
                    Augmentation::None
                    | Augmentation::Combined
                    | Augmentation::Affine
                    | Augmentation::Simclr { .. }
                    | Augmentation::Sequence { .. } => None,
                }
            }
        }

        impl Params {
            /// The config name of the unit that drew these parameters.
            fn name(&self) -> &'static str {
                match self {
                    Params::None => "none",
                    $(Params::$unit(_) => $name,)*
                    Params::Sequence(_) => "sequence",
                }
            }
        }
    };
}

augmentations! {
    /// Left-right mirror.
    "horizontal_flip" => HorizontalFlip,
    /// Top-bottom mirror.
    "vertical_flip" => VerticalFlip,
    /// Magnification about the centre.
    "rescale" => Rescale,
    /// Rotation about the centre.
    "rotation" => Rotation,
    /// Shift.
    "translation" => Translation,
    /// SimCLR's random resized crop.
    "resized_crop" => ResizedCrop,
    /// Colour jitter.
    "color_jitter" => ColorJitter,
    /// Random grayscale.
    "grayscale" => Grayscale,
    /// Contrast enhancement by CLAHE.
    "clahe" => Clahe,
    /// MixUp.
    "mix_up" => MixUp,
    /// CutOut.
    "cut_out" => CutOut,
    /// CutMix.
    "cut_mix" => CutMix,
    /// AugMix.
    "aug_mix" => AugMix,
}

fn default_strength() -> f64 {
    0.5
}

/// The result of running an augmentation on a batch.
#[derive(Debug, Clone)]
pub struct Augmented<B: Backend> {
    /// `T(x)`.
    pub images: Tensor<B, 4>,
    /// The parameters drawn, to replay with [`Augmentation::apply`].
    pub params: Params,
    /// How the maps compare.
    pub transfer: Transfer,
    /// How the labels relate.
    pub labels: Labels,
}

/// [`Augment::validate`], errors prefixed with the unit's name.
struct Validate;
impl Visit for Validate {
    type Output = Result<()>;
    fn unit<A: Unit>(self, unit: &A) -> Result<()> {
        prefixed(A::NAME, unit.validate())
    }
}

/// A setting error of `owner`'s field, named `owner.field`.
fn prefixed(owner: &str, checked: Result<()>) -> Result<()> {
    checked.map_err(|e| match e {
        Error::InvalidSetting {
            name,
            value,
            reason,
        } => Error::InvalidSetting {
            name: format!("{owner}.{name}"),
            value,
            reason,
        },
        other => other,
    })
}

/// [`Augment::sample`].
struct Sample<'a> {
    batch: usize,
    size: [usize; 2],
    rng: &'a mut StdRng,
}
impl Visit for Sample<'_> {
    type Output = Params;
    fn unit<A: Unit>(self, unit: &A) -> Params {
        A::wrap(unit.sample(self.batch, self.size, self.rng))
    }
}

/// [`Augment::apply`] with the unit's own parameters.
struct Apply<'a, B: Backend> {
    images: Tensor<B, 4>,
    params: &'a Params,
}
impl<B: Backend> Visit for Apply<'_, B> {
    type Output = Result<Tensor<B, 4>>;
    fn unit<A: Unit>(self, unit: &A) -> Self::Output {
        Ok(unit.apply(self.images, own::<A>(self.params)?))
    }
}

/// [`Augment::transfer`] with the unit's own parameters.
struct MapTransfer<'a> {
    params: &'a Params,
    size: [usize; 2],
}
impl Visit for MapTransfer<'_> {
    type Output = Result<Transfer>;
    fn unit<A: Unit>(self, unit: &A) -> Self::Output {
        Ok(unit.transfer(own::<A>(self.params)?, self.size))
    }
}

/// [`Augment::labels`] with the unit's own parameters.
struct LabelMap<'a> {
    params: &'a Params,
}
impl Visit for LabelMap<'_> {
    type Output = Result<Labels>;
    fn unit<A: Unit>(self, unit: &A) -> Self::Output {
        Ok(unit.labels(own::<A>(self.params)?))
    }
}

/// Unit `A`'s own parameters out of `params`, or the mismatch error.
fn own<A: Unit>(params: &Params) -> Result<&A::Params> {
    A::unwrap(params).ok_or_else(|| mismatch(A::NAME, params))
}

fn mismatch(augmentation: &'static str, params: &Params) -> Error {
    Error::ParamsMismatch {
        augmentation,
        params: params.name(),
    }
}

impl Augmentation {
    /// The steps a preset or sequence stands for (`None` for a single unit).
    pub fn steps(&self) -> Option<Vec<Augmentation>> {
        match self {
            Augmentation::Combined => Some(vec![
                Augmentation::HorizontalFlip(Default::default()),
                Augmentation::VerticalFlip(Default::default()),
                Augmentation::Rescale(Default::default()),
                Augmentation::Clahe(Clahe {
                    p: 0.5,
                    ..Default::default()
                }),
                Augmentation::Rotation(Default::default()),
            ]),
            Augmentation::Affine => Some(vec![
                Augmentation::HorizontalFlip(Default::default()),
                Augmentation::VerticalFlip(Default::default()),
                Augmentation::Rescale(Default::default()),
                Augmentation::Rotation(Default::default()),
            ]),
            Augmentation::Simclr { strength } => Some(vec![
                Augmentation::ResizedCrop(Default::default()),
                Augmentation::HorizontalFlip(Default::default()),
                Augmentation::ColorJitter(ColorJitter::simclr(*strength)),
                Augmentation::Grayscale(Default::default()),
            ]),
            Augmentation::Sequence { steps } => Some(steps.clone()),
            _ => None,
        }
    }

    /// Checks every setting (each unit's [`Augment::validate`], and the presets').
    pub fn validate(&self) -> Result<()> {
        match self {
            Augmentation::Simclr { strength } => {
                prefixed(self.name(), check::positive("strength", *strength))
            }
            Augmentation::Sequence { steps } => steps.iter().try_for_each(Augmentation::validate),
            _ => self.visit(Validate).unwrap_or(Ok(())),
        }
    }

    /// Draws parameters for `batch` images of `size = [h, w]`.
    pub fn sample(&self, batch: usize, size: [usize; 2], rng: &mut StdRng) -> Params {
        if let Some(steps) = self.steps() {
            return Params::Sequence(steps.iter().map(|s| s.sample(batch, size, rng)).collect());
        }
        self.visit(Sample { batch, size, rng })
            .unwrap_or(Params::None)
    }

    /// The steps of a preset or sequence paired with their parameters.
    fn step_params<'a>(&self, params: &'a Params) -> Result<Vec<(Augmentation, &'a Params)>> {
        match (self.steps(), params) {
            (Some(steps), Params::Sequence(ps)) if steps.len() == ps.len() => {
                Ok(steps.into_iter().zip(ps).collect())
            }
            _ => Err(mismatch(self.name(), params)),
        }
    }

    /// Applies drawn (or replayed) parameters to `images` (`[batch, channels, h, w]` in [0, 1]).
    pub fn apply<B: Backend>(&self, images: Tensor<B, 4>, params: &Params) -> Result<Tensor<B, 4>> {
        match (self, params) {
            (Augmentation::None, Params::None) => Ok(images),
            (Augmentation::None, _) => Err(mismatch("none", params)),
            _ if self.steps().is_some() => {
                let mut x = images;
                for (step, p) in self.step_params(params)? {
                    x = step.apply(x, p)?;
                }
                Ok(x)
            }
            _ => self.visit(Apply { images, params }).expect("a single unit"),
        }
    }

    /// How the maps of images augmented with `params` relate to the originals' maps.
    pub fn transfer(&self, params: &Params, size: [usize; 2]) -> Result<Transfer> {
        match (self, params) {
            (Augmentation::None, Params::None) => Ok(Transfer::Identity),
            (Augmentation::None, _) => Err(mismatch("none", params)),
            _ if self.steps().is_some() => {
                let mut t = Transfer::Identity;
                for (step, p) in self.step_params(params)? {
                    t = t.then(step.transfer(p, size)?, size)?;
                }
                Ok(t)
            }
            _ => self
                .visit(MapTransfer { params, size })
                .expect("a single unit"),
        }
    }

    /// How the labels of images augmented with `params` relate to the originals' labels.
    pub fn labels(&self, params: &Params) -> Result<Labels> {
        match (self, params) {
            (Augmentation::None, Params::None) => Ok(Labels::Same),
            (Augmentation::None, _) => Err(mismatch("none", params)),
            _ if self.steps().is_some() => {
                let mut labels = Labels::Same;
                for (step, p) in self.step_params(params)? {
                    match (step.labels(p)?, &labels) {
                        (Labels::Same, _) => {}
                        (mixed, Labels::Same) => labels = mixed,
                        _ => {
                            return Err(Error::Unsupported(
                                "two label-mixing augmentations in one sequence",
                            ))
                        }
                    }
                }
                Ok(labels)
            }
            _ => self.visit(LabelMap { params }).expect("a single unit"),
        }
    }

    /// Validates, draws parameters and applies them: everything a training step needs.
    pub fn run<B: Backend>(&self, images: Tensor<B, 4>, rng: &mut StdRng) -> Result<Augmented<B>> {
        self.validate()?;
        let [n, _, h, w] = images.dims();
        let params = self.sample(n, [h, w], rng);
        Ok(Augmented {
            images: self.apply(images, &params)?,
            transfer: self.transfer(&params, [h, w])?,
            labels: self.labels(&params)?,
            params,
        })
    }
}

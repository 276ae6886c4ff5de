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
//! ```no_run
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

/// One augmentation: how to draw its parameters, apply them, and relate the saliency maps.
pub trait Augment {
    /// What one draw fixes for a batch (per image).
    type Params: Clone + core::fmt::Debug + PartialEq;

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

/// Every augmentation and preset, as written in config files (`kind = "rotation"`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Augmentation {
    /// No augmentation: `T(x) = x`.
    None,
    /// Left-right mirror.
    HorizontalFlip(HorizontalFlip),
    /// Top-bottom mirror.
    VerticalFlip(VerticalFlip),
    /// Magnification about the centre.
    Rescale(Rescale),
    /// Rotation about the centre.
    Rotation(Rotation),
    /// Shift.
    Translation(Translation),
    /// SimCLR's random resized crop.
    ResizedCrop(ResizedCrop),
    /// Colour jitter.
    ColorJitter(ColorJitter),
    /// Random grayscale.
    Grayscale(Grayscale),
    /// Contrast enhancement by CLAHE.
    Clahe(Clahe),
    /// MixUp.
    MixUp(MixUp),
    /// CutOut.
    CutOut(CutOut),
    /// CutMix.
    CutMix(CutMix),
    /// AugMix.
    AugMix(AugMix),
    /// The paper's "Combined": every single transform of table 1 (horizontal flip, vertical
    /// flip, rescale, CLAHE, rotation), each with its default probability.
    Combined,
    /// SimCLR: resized crop, horizontal flip, colour jitter of strength `strength` (p = 0.8),
    /// grayscale (p = 0.2).
    Simclr {
        /// Colour-jitter strength s (paper: 0.5).
        #[serde(default = "default_strength")]
        strength: f64,
    },
    /// These augmentations in order.
    Sequence {
        /// The steps.
        steps: Vec<Augmentation>,
    },
}

fn default_strength() -> f64 {
    0.5
}

/// Parameters drawn by an [`Augmentation`], to replay it.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    /// No augmentation.
    None,
    /// Per-image flips (either direction).
    Flip(Vec<bool>),
    /// Per-image forward maps.
    Affine(Vec<geometry::Affine>),
    /// Per-image crop boxes.
    Crop(Vec<crop::CropBox>),
    /// Per-image jitter.
    Jitter(Vec<color::Jitter>),
    /// Per-image grayscale choice.
    Gray(Vec<bool>),
    /// Per-image CLAHE clip limit.
    Clahe(Vec<Option<f64>>),
    /// MixUp's partners and weights.
    MixUp(mix::MixUpParams),
    /// CutOut's holes.
    CutOut(Vec<mix::PixelBox>),
    /// CutMix's partners and boxes.
    CutMix(mix::CutMixParams),
    /// AugMix's chains and weights.
    AugMix(augmix::AugMixParams),
    /// One entry per step of a sequence or preset.
    Sequence(Vec<Params>),
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

/// Dispatches a call to the unit behind a variant, with its parameters.
macro_rules! dispatch {
    ($self:expr, $params:expr, |$unit:ident, $p:ident| $body:expr, seq: $seq:expr) => {
        match ($self, $params) {
            (Augmentation::HorizontalFlip($unit), Params::Flip($p)) => $body,
            (Augmentation::VerticalFlip($unit), Params::Flip($p)) => $body,
            (Augmentation::Rescale($unit), Params::Affine($p)) => $body,
            (Augmentation::Rotation($unit), Params::Affine($p)) => $body,
            (Augmentation::Translation($unit), Params::Affine($p)) => $body,
            (Augmentation::ResizedCrop($unit), Params::Crop($p)) => $body,
            (Augmentation::ColorJitter($unit), Params::Jitter($p)) => $body,
            (Augmentation::Grayscale($unit), Params::Gray($p)) => $body,
            (Augmentation::Clahe($unit), Params::Clahe($p)) => $body,
            (Augmentation::MixUp($unit), Params::MixUp($p)) => $body,
            (Augmentation::CutOut($unit), Params::CutOut($p)) => $body,
            (Augmentation::CutMix($unit), Params::CutMix($p)) => $body,
            (Augmentation::AugMix($unit), Params::AugMix($p)) => $body,
            (aug, params) => ($seq)(aug, params),
        }
    };
}

impl Augmentation {
    /// The name of this augmentation in configs.
    pub fn name(&self) -> &'static str {
        match self {
            Augmentation::None => "none",
            Augmentation::HorizontalFlip(_) => "horizontal_flip",
            Augmentation::VerticalFlip(_) => "vertical_flip",
            Augmentation::Rescale(_) => "rescale",
            Augmentation::Rotation(_) => "rotation",
            Augmentation::Translation(_) => "translation",
            Augmentation::ResizedCrop(_) => "resized_crop",
            Augmentation::ColorJitter(_) => "color_jitter",
            Augmentation::Grayscale(_) => "grayscale",
            Augmentation::Clahe(_) => "clahe",
            Augmentation::MixUp(_) => "mix_up",
            Augmentation::CutOut(_) => "cut_out",
            Augmentation::CutMix(_) => "cut_mix",
            Augmentation::AugMix(_) => "aug_mix",
            Augmentation::Combined => "combined",
            Augmentation::Simclr { .. } => "simclr",
            Augmentation::Sequence { .. } => "sequence",
        }
    }

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

    /// Checks every setting (probabilities in [0, 1], positive α, ranges in order, …).
    pub fn validate(&self) -> Result<()> {
        let name = self.name();
        let bad = |field: &str, value: f64, reason: &'static str| {
            Err(Error::InvalidSetting {
                name: format!("{name}.{field}"),
                value: value.to_string(),
                reason,
            })
        };
        let prob = |field: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                bad(field, p, "a probability must be in [0, 1]")
            }
        };
        let positive = |field: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                bad(field, v, "must be a finite number > 0")
            }
        };
        let range = |field: &str, [lo, hi]: [f64; 2], min: f64| {
            if lo.is_finite() && hi.is_finite() && lo <= hi && lo >= min {
                Ok(())
            } else {
                bad(
                    field,
                    lo,
                    "must be a range [lo, hi] with lo ≤ hi, within bounds",
                )
            }
        };
        match self {
            Augmentation::None | Augmentation::Combined => Ok(()),
            Augmentation::HorizontalFlip(a) => prob("p", a.p),
            Augmentation::VerticalFlip(a) => prob("p", a.p),
            Augmentation::Rescale(a) => {
                prob("p", a.p)?;
                range("min_zoom", [a.min_zoom, a.max_zoom], -0.9)
            }
            Augmentation::Rotation(a) => {
                prob("p", a.p)?;
                range("max_degrees", [0.0, a.max_degrees], 0.0)
            }
            Augmentation::Translation(a) => {
                prob("p", a.p)?;
                range("max_fraction", [0.0, a.max_fraction], 0.0)?;
                if a.max_fraction > 1.0 {
                    return bad("max_fraction", a.max_fraction, "must be at most 1");
                }
                Ok(())
            }
            Augmentation::ResizedCrop(a) => {
                range("scale", a.scale, 1e-6)?;
                if a.scale[1] > 1.0 {
                    return bad("scale", a.scale[1], "the area fraction is at most 1");
                }
                range("ratio", a.ratio, 1e-6)
            }
            Augmentation::ColorJitter(a) => {
                prob("p", a.p)?;
                for (f, v) in [
                    ("brightness", a.brightness),
                    ("contrast", a.contrast),
                    ("saturation", a.saturation),
                ] {
                    range(f, [0.0, v], 0.0)?;
                }
                if !(0.0..=0.5).contains(&a.hue) {
                    return bad("hue", a.hue, "the hue shift is in [0, 0.5] turns");
                }
                Ok(())
            }
            Augmentation::Grayscale(a) => prob("p", a.p),
            Augmentation::Clahe(a) => {
                prob("p", a.p)?;
                range("clip_limit", a.clip_limit, 0.0)?;
                if a.grid[0] == 0 || a.grid[1] == 0 {
                    return bad("grid", 0.0, "needs at least one tile per axis");
                }
                Ok(())
            }
            Augmentation::MixUp(a) => positive("alpha", a.alpha),
            Augmentation::CutOut(a) => {
                prob("p", a.p)?;
                prob("size", a.size)
            }
            Augmentation::CutMix(a) => positive("alpha", a.alpha),
            Augmentation::AugMix(a) => {
                positive("alpha", a.alpha)?;
                positive("width", a.width as f64)?;
                if !(a.severity >= 0.1 && a.severity <= 10.0) {
                    return bad("severity", a.severity, "must be in [0.1, 10]");
                }
                Ok(())
            }
            Augmentation::Simclr { strength } => positive("strength", *strength),
            Augmentation::Sequence { steps } => steps.iter().try_for_each(Augmentation::validate),
        }
    }

    /// Draws parameters for `batch` images of `size = [h, w]`.
    pub fn sample(&self, batch: usize, size: [usize; 2], rng: &mut StdRng) -> Params {
        if let Some(steps) = self.steps() {
            return Params::Sequence(steps.iter().map(|s| s.sample(batch, size, rng)).collect());
        }
        match self {
            Augmentation::None => Params::None,
            Augmentation::HorizontalFlip(a) => Params::Flip(a.sample(batch, size, rng)),
            Augmentation::VerticalFlip(a) => Params::Flip(a.sample(batch, size, rng)),
            Augmentation::Rescale(a) => Params::Affine(a.sample(batch, size, rng)),
            Augmentation::Rotation(a) => Params::Affine(a.sample(batch, size, rng)),
            Augmentation::Translation(a) => Params::Affine(a.sample(batch, size, rng)),
            Augmentation::ResizedCrop(a) => Params::Crop(a.sample(batch, size, rng)),
            Augmentation::ColorJitter(a) => Params::Jitter(a.sample(batch, size, rng)),
            Augmentation::Grayscale(a) => Params::Gray(a.sample(batch, size, rng)),
            Augmentation::Clahe(a) => Params::Clahe(a.sample(batch, size, rng)),
            Augmentation::MixUp(a) => Params::MixUp(a.sample(batch, size, rng)),
            Augmentation::CutOut(a) => Params::CutOut(a.sample(batch, size, rng)),
            Augmentation::CutMix(a) => Params::CutMix(a.sample(batch, size, rng)),
            Augmentation::AugMix(a) => Params::AugMix(a.sample(batch, size, rng)),
            Augmentation::Combined
            | Augmentation::Simclr { .. }
            | Augmentation::Sequence { .. } => {
                unreachable!("presets have steps")
            }
        }
    }

    fn mismatch(&self, params: &Params) -> Error {
        Error::ParamsMismatch {
            augmentation: self.name(),
            params: match params {
                Params::None => "none",
                Params::Flip(_) => "flip",
                Params::Affine(_) => "affine",
                Params::Crop(_) => "crop",
                Params::Jitter(_) => "jitter",
                Params::Gray(_) => "grayscale",
                Params::Clahe(_) => "clahe",
                Params::MixUp(_) => "mix_up",
                Params::CutOut(_) => "cut_out",
                Params::CutMix(_) => "cut_mix",
                Params::AugMix(_) => "aug_mix",
                Params::Sequence(_) => "sequence",
            },
        }
    }

    /// The steps of a preset or sequence paired with their parameters.
    fn step_params<'a>(&self, params: &'a Params) -> Result<Vec<(Augmentation, &'a Params)>> {
        match (self.steps(), params) {
            (Some(steps), Params::Sequence(ps)) if steps.len() == ps.len() => {
                Ok(steps.into_iter().zip(ps).collect())
            }
            _ => Err(self.mismatch(params)),
        }
    }

    /// Applies drawn (or replayed) parameters to `images` (`[batch, channels, h, w]` in [0, 1]).
    pub fn apply<B: Backend>(&self, images: Tensor<B, 4>, params: &Params) -> Result<Tensor<B, 4>> {
        dispatch!(self, params, |unit, p| Ok(unit.apply(images, p)), seq: |aug: &Augmentation, params: &Params| {
            if let (Augmentation::None, Params::None) = (aug, params) {
                return Ok(images);
            }
            let mut x = images;
            for (step, p) in aug.step_params(params)? {
                x = step.apply(x, p)?;
            }
            Ok(x)
        })
    }

    /// How the maps of images augmented with `params` relate to the originals' maps.
    pub fn transfer(&self, params: &Params, size: [usize; 2]) -> Result<Transfer> {
        dispatch!(self, params, |unit, p| Ok(unit.transfer(p, size)), seq: |aug: &Augmentation, params: &Params| {
            if let (Augmentation::None, Params::None) = (aug, params) {
                return Ok(Transfer::Identity);
            }
            let mut t = Transfer::Identity;
            for (step, p) in aug.step_params(params)? {
                t = t.then(step.transfer(p, size)?, size)?;
            }
            Ok(t)
        })
    }

    /// How the labels of images augmented with `params` relate to the originals' labels.
    pub fn labels(&self, params: &Params) -> Result<Labels> {
        dispatch!(self, params, |unit, p| Ok(unit.labels(p)), seq: |aug: &Augmentation, params: &Params| {
            if let (Augmentation::None, Params::None) = (aug, params) {
                return Ok(Labels::Same);
            }
            let mut labels = Labels::Same;
            for (step, p) in aug.step_params(params)? {
                match (step.labels(p)?, &labels) {
                    (Labels::Same, _) => {}
                    (mixed, Labels::Same) => labels = mixed,
                    _ => return Err(Error::Unsupported("two label-mixing augmentations in one sequence")),
                }
            }
            Ok(labels)
        })
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

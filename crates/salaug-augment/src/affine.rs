//! Rescale, rotation and translation: one random affine map per image, warped bilinearly
//! (see [`crate::geometry`] for the convention); inverses are interpolated warps with a
//! validity mask.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::geometry::{warp, Affine};
use crate::transfer::Transfer;
use crate::{check, Augment};

/// The centre of an image, in pixel coordinates.
pub(crate) fn centre([h, w]: [usize; 2]) -> (f64, f64) {
    ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0)
}

/// A uniform draw in `[lo, hi]` (exactly `lo` when the range is empty).
pub(crate) fn uniform(rng: &mut StdRng, [lo, hi]: [f64; 2]) -> f64 {
    if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

/// Random magnification about the centre by a factor in `[1 + min_zoom, 1 + max_zoom]`
/// (paper: up to 10%), applied with probability `p`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rescale {
    /// Smallest relative magnification (negative values shrink).
    pub min_zoom: f64,
    /// Largest relative magnification.
    pub max_zoom: f64,
    /// Probability that an image is rescaled.
    pub p: f64,
}

impl Default for Rescale {
    fn default() -> Self {
        Self {
            min_zoom: 0.0,
            max_zoom: 0.1,
            p: 1.0,
        }
    }
}

/// Random rotation about the centre by up to `max_degrees` either way (paper: 10°),
/// counter-clockwise as displayed for positive angles, applied with probability `p`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rotation {
    /// Largest angle, in degrees.
    pub max_degrees: f64,
    /// Probability that an image is rotated.
    pub p: f64,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_degrees: 10.0,
            p: 1.0,
        }
    }
}

/// Random shift by up to `max_fraction` of the width (horizontally) and height (vertically),
/// applied with probability `p`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Translation {
    /// Largest shift as a fraction of the image side.
    pub max_fraction: f64,
    /// Probability that an image is shifted.
    pub p: f64,
}

impl Default for Translation {
    fn default() -> Self {
        Self {
            max_fraction: 0.1,
            p: 1.0,
        }
    }
}

/// Implements [`Augment`] for a unit whose parameters are one forward map per image.
macro_rules! affine_unit {
    ($unit:ty, |$s:ident, $size:ident, $rng:ident| $draw:expr, validate: |$v:ident| $check:expr) => {
        impl Augment for $unit {
            type Params = Vec<Affine>;

            fn validate(&self) -> Result<()> {
                let $v = self;
                check::prob("p", $v.p)?;
                $check
            }

            fn sample(&self, batch: usize, $size: [usize; 2], $rng: &mut StdRng) -> Vec<Affine> {
                let $s = self;
                (0..batch)
                    .map(|_| {
                        if $rng.random_bool($s.p) {
                            $draw
                        } else {
                            Affine::IDENTITY
                        }
                    })
                    .collect()
            }

            fn apply<B: Backend>(
                &self,
                images: Tensor<B, 4>,
                params: &Vec<Affine>,
            ) -> Tensor<B, 4> {
                warp(images, params)
            }

            fn transfer(&self, params: &Vec<Affine>, _size: [usize; 2]) -> Transfer {
                Transfer::Warp(params.clone())
            }
        }
    };
}

affine_unit!(Rescale, |s, size, rng| {
    let zoom = 1.0 + uniform(rng, [s.min_zoom, s.max_zoom]);
    let (cx, cy) = centre(size);
    Affine::scale_about(zoom, zoom, cx, cy)
}, validate: |s| check::range("min_zoom", [s.min_zoom, s.max_zoom], -0.9));

affine_unit!(Rotation, |s, size, rng| {
    let degrees = uniform(rng, [-s.max_degrees, s.max_degrees]);
    let (cx, cy) = centre(size);
    Affine::rotation_about(degrees, cx, cy)
}, validate: |s| check::range("max_degrees", [0.0, s.max_degrees], 0.0));

affine_unit!(Translation, |s, size, rng| {
    let [h, w] = size;
    let tx = uniform(rng, [-s.max_fraction, s.max_fraction]) * w as f64;
    let ty = uniform(rng, [-s.max_fraction, s.max_fraction]) * h as f64;
    Affine::translation(tx, ty)
}, validate: |s| {
    check::range("max_fraction", [0.0, s.max_fraction], 0.0)?;
    if s.max_fraction > 1.0 {
        return check::bad("max_fraction", s.max_fraction, "must be at most 1");
    }
    Ok(())
});

//! How the saliency maps of an augmented batch are compared with those of the originals.
//!
//! Every augmentation returns a [`Transfer`] for the parameters it drew. It offers up to two
//! comparisons:
//! - [`Transfer::inverse`]: warp the augmented image's map back into the original frame,
//!   `T⁻¹(S(T(x)))`, with a validity mask for pixels that came from outside the frame;
//! - [`Transfer::expected`]: carry the originals' maps forward, `T(S(x))` (or, for mixing,
//!   the same mixture of the originals' maps), giving the expected map in the augmented frame.
//!
//! Photometric transforms are identity transfers. Both directions are linear in the maps and
//! built from twice-differentiable tensor ops, so `L_sal` trains through them.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::geometry::{per_pixel, per_sample, select_per_sample, take, valid_mask, warp, Affine};

/// One term of a mixture: `weight ⊙ warp(maps[source])`.
#[derive(Debug, Clone, PartialEq)]
pub struct MixTerm {
    /// For each output image, the index of the original it takes its content from.
    pub source: Vec<usize>,
    /// Per output image, the forward map applied to that original (AugMix's chains), or
    /// `None` for no warp.
    pub warp: Option<Vec<Affine>>,
    /// Per output image, how much of it this term contributes.
    pub weight: MixWeight,
}

/// The weight of a [`MixTerm`].
#[derive(Debug, Clone, PartialEq)]
pub enum MixWeight {
    /// One factor per image (MixUp, AugMix).
    Scalar(Vec<f64>),
    /// One factor per pixel, `[batch, 1, h, w]` flattened row-major (CutOut, CutMix boxes).
    Pixels {
        /// The factors.
        values: Vec<f64>,
        /// `[h, w]` of each image.
        size: [usize; 2],
    },
}

/// The relation between the maps of an augmented batch and the maps of its originals.
#[derive(Debug, Clone, PartialEq)]
pub enum Transfer {
    /// Maps are compared as they are (photometric transforms).
    Identity,
    /// Per-image horizontal and vertical mirror, exact.
    Flip {
        /// Whether image `i` was mirrored left-right.
        horizontal: Vec<bool>,
        /// Whether image `i` was mirrored top-bottom.
        vertical: Vec<bool>,
    },
    /// Per-image forward affine map (see [`crate::geometry`]).
    Warp(Vec<Affine>),
    /// The augmented image is a mixture of (possibly warped) originals; no inverse exists.
    Mix(Vec<MixTerm>),
}

/// Which comparison the saliency loss uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// The inverse where one exists, else the expected map.
    #[default]
    Auto,
    /// `S(x)` against `T⁻¹(S(T(x)))` in the original frame.
    Inverse,
    /// `T(S(x))` against `S(T(x))` in the augmented frame.
    Expected,
}

pub use salaug_core::MapPair;

impl Transfer {
    /// Whether [`Self::inverse`] exists.
    pub fn invertible(&self) -> bool {
        !matches!(self, Transfer::Mix(_))
    }

    /// The originals' maps carried into the augmented frame, and the valid pixels there.
    ///
    /// # Shapes
    /// - `maps`: `[batch, channels, h, w]` (usually one channel)
    /// - mask: `[batch, 1, h, w]`
    pub fn expected<B: Backend>(&self, maps: Tensor<B, 4>) -> (Tensor<B, 4>, Option<Tensor<B, 4>>) {
        let [_, _, h, w] = maps.dims();
        let device = maps.device();
        match self {
            Transfer::Identity => (maps, None),
            Transfer::Flip {
                horizontal,
                vertical,
            } => (flip(maps, horizontal, vertical), None),
            Transfer::Warp(forward) => (
                warp(maps, forward),
                Some(valid_mask(forward, [h, w], &device)),
            ),
            Transfer::Mix(terms) => {
                let mixed = terms
                    .iter()
                    .map(|t| t.apply(maps.clone()))
                    .reduce(|a, b| a + b)
                    .expect("a mixture has at least one term");
                (mixed, None)
            }
        }
    }

    /// The augmented images' maps brought back into the original frame, and the valid pixels.
    ///
    /// Fails for mixtures, which have no inverse.
    pub fn inverse<B: Backend>(
        &self,
        maps: Tensor<B, 4>,
    ) -> Result<(Tensor<B, 4>, Option<Tensor<B, 4>>)> {
        let [_, _, h, w] = maps.dims();
        let device = maps.device();
        match self {
            Transfer::Identity | Transfer::Flip { .. } => Ok(self.expected(maps)),
            Transfer::Warp(forward) => {
                let back: Vec<Affine> = forward.iter().map(Affine::inverse).collect();
                Ok((warp(maps, &back), Some(valid_mask(&back, [h, w], &device))))
            }
            Transfer::Mix(_) => Err(Error::NotInvertible),
        }
    }

    /// The pair of maps the saliency loss compares, for the originals' maps `original` and the
    /// augmented images' maps `augmented` (same shapes).
    pub fn pair<B: Backend>(
        &self,
        original: Tensor<B, 4>,
        augmented: Tensor<B, 4>,
        compare: Compare,
    ) -> Result<MapPair<B>> {
        if original.dims() != augmented.dims() {
            return Err(Error::Shape {
                what: "original and augmented maps",
                expected: original.dims().to_vec(),
                got: augmented.dims().to_vec(),
            });
        }
        let inverse = match compare {
            Compare::Auto => self.invertible(),
            Compare::Inverse => true,
            Compare::Expected => false,
        };
        if inverse {
            let (other, mask) = self.inverse(augmented)?;
            Ok(MapPair {
                reference: original,
                other,
                mask,
            })
        } else {
            let (reference, mask) = self.expected(original);
            Ok(MapPair {
                reference,
                other: augmented,
                mask,
            })
        }
    }

    /// The transfer of "`self`, then `then`".
    ///
    /// Identity, flips and warps compose freely (flips become affine maps when mixed with
    /// warps); a mixture composes only with identities.
    pub fn then(self, then: Transfer, [h, w]: [usize; 2]) -> Result<Transfer> {
        Ok(match (self, then) {
            (Transfer::Identity, t) | (t, Transfer::Identity) => t,
            (
                Transfer::Flip {
                    horizontal: h1,
                    vertical: v1,
                },
                Transfer::Flip {
                    horizontal: h2,
                    vertical: v2,
                },
            ) => Transfer::Flip {
                horizontal: h1.iter().zip(&h2).map(|(a, b)| a ^ b).collect(),
                vertical: v1.iter().zip(&v2).map(|(a, b)| a ^ b).collect(),
            },
            (Transfer::Mix(_), _) | (_, Transfer::Mix(_)) => {
                return Err(Error::Unsupported(
                    "composing a mixing augmentation with a geometric one",
                ))
            }
            (first, second) => {
                let (a, b) = (first.affines([h, w]), second.affines([h, w]));
                Transfer::Warp(a.iter().zip(&b).map(|(a, b)| b.after(a)).collect())
            }
        })
    }

    /// Flips and warps as affine maps.
    fn affines(&self, [h, w]: [usize; 2]) -> Vec<Affine> {
        match self {
            Transfer::Flip {
                horizontal,
                vertical,
            } => horizontal
                .iter()
                .zip(vertical)
                .map(|(&fh, &fv)| {
                    let mut a = Affine::IDENTITY;
                    if fh {
                        a = Affine::flip_x(w).after(&a);
                    }
                    if fv {
                        a = Affine::flip_y(h).after(&a);
                    }
                    a
                })
                .collect(),
            Transfer::Warp(a) => a.clone(),
            Transfer::Identity | Transfer::Mix(_) => unreachable!("handled by Transfer::then"),
        }
    }
}

impl MixTerm {
    fn apply<B: Backend>(&self, maps: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, _, h, w] = maps.dims();
        let device = maps.device();
        let taken = take(maps, &self.source);
        let warped = match &self.warp {
            Some(forward) => warp(taken, forward),
            None => taken,
        };
        match &self.weight {
            MixWeight::Scalar(v) => warped * per_sample::<B>(v, &device),
            MixWeight::Pixels { values, size } => {
                assert_eq!(*size, [h, w], "mixing weights of another image size");
                warped * per_pixel::<B>(values.clone(), [n, h, w], &device)
            }
        }
    }
}

/// Mirrors image `i` left-right where `horizontal[i]` and top-bottom where `vertical[i]`.
pub fn flip<B: Backend>(x: Tensor<B, 4>, horizontal: &[bool], vertical: &[bool]) -> Tensor<B, 4> {
    let x = if horizontal.iter().any(|f| *f) {
        select_per_sample(horizontal, x.clone().flip([3]), x)
    } else {
        x
    };
    if vertical.iter().any(|f| *f) {
        select_per_sample(vertical, x.clone().flip([2]), x)
    } else {
        x
    }
}

/// How the labels of an augmented batch relate to the originals' labels.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Image `i` keeps label `i`.
    Same,
    /// Image `i` has label weights `Σ_k weight_k[i] · onehot(label[source_k[i]])`.
    Mixed(Vec<(Vec<usize>, Vec<f64>)>),
}

impl Labels {
    /// Soft targets `[batch, classes]` (row-major) for the originals' class indices `labels`.
    pub fn soft_targets(&self, labels: &[usize], classes: usize) -> Vec<f64> {
        let n = labels.len();
        let mut out = vec![0.0; n * classes];
        match self {
            Labels::Same => {
                for (i, &l) in labels.iter().enumerate() {
                    out[i * classes + l] = 1.0;
                }
            }
            Labels::Mixed(terms) => {
                for (source, weight) in terms {
                    for i in 0..n {
                        out[i * classes + labels[source[i]]] += weight[i];
                    }
                }
            }
        }
        out
    }

    /// Hard targets for the originals' class indices `labels`: per image, the class with the
    /// largest soft-target weight (the last of equal weights); the label itself for `Same`.
    pub fn hard_targets(&self, labels: &[usize], classes: usize) -> Vec<usize> {
        self.soft_targets(labels, classes)
            .chunks(classes)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i)
            })
            .collect()
    }
}

//! Augmentations that mix images: MixUp, CutOut, CutMix. They have no inverse; the expected
//! map mixes the originals' maps the same way (a cut-out region is mixed with the map of a
//! blank image, which is taken as zero).

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::geometry::{per_pixel, per_sample, take};
use crate::transfer::{Labels, MixTerm, MixWeight, Transfer};
use crate::{check, Augment};

/// A draw from Beta(α, α) (α > 0; validated by the config).
pub(crate) fn beta(rng: &mut StdRng, alpha: f64) -> f64 {
    Beta::new(alpha, alpha)
        .expect("alpha validated as > 0")
        .sample(rng)
}

/// A random partner for every image (a permutation of the batch).
fn partners(batch: usize, rng: &mut StdRng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..batch).collect();
    p.shuffle(rng);
    p
}

/// MixUp (Zhang et al. 2018): `λ·x + (1 − λ)·x[partner]`, λ ~ Beta(α, α) per image, labels
/// mixed with the same λ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixUp {
    /// α of the Beta distribution.
    pub alpha: f64,
}

impl Default for MixUp {
    fn default() -> Self {
        Self { alpha: 1.0 }
    }
}

/// MixUp's draw: each image's partner and weight λ.
#[derive(Debug, Clone, PartialEq)]
pub struct MixUpParams {
    /// Index of the image mixed in.
    pub partner: Vec<usize>,
    /// Weight of the image itself.
    pub lambda: Vec<f64>,
}

impl Augment for MixUp {
    type Params = MixUpParams;

    fn validate(&self) -> Result<()> {
        check::positive("alpha", self.alpha)
    }

    fn sample(&self, batch: usize, _size: [usize; 2], rng: &mut StdRng) -> MixUpParams {
        let lambda = (0..batch).map(|_| beta(rng, self.alpha)).collect();
        MixUpParams {
            partner: partners(batch, rng),
            lambda,
        }
    }

    fn apply<B: Backend>(&self, images: Tensor<B, 4>, p: &MixUpParams) -> Tensor<B, 4> {
        let device = images.device();
        let l = per_sample::<B>(&p.lambda, &device);
        let other = take(images.clone(), &p.partner);
        images * l.clone() + other * (l.neg() + 1.0)
    }

    fn transfer(&self, p: &MixUpParams, _size: [usize; 2]) -> Transfer {
        Transfer::Mix(self.terms(p))
    }

    fn labels(&self, p: &MixUpParams) -> Labels {
        Labels::Mixed(
            self.terms(p)
                .into_iter()
                .map(|t| match t.weight {
                    MixWeight::Scalar(w) => (t.source, w),
                    MixWeight::Pixels { .. } => unreachable!(),
                })
                .collect(),
        )
    }
}

impl MixUp {
    fn terms(&self, p: &MixUpParams) -> Vec<MixTerm> {
        let n = p.lambda.len();
        vec![
            MixTerm {
                source: (0..n).collect(),
                warp: None,
                weight: MixWeight::Scalar(p.lambda.clone()),
            },
            MixTerm {
                source: p.partner.clone(),
                warp: None,
                weight: MixWeight::Scalar(p.lambda.iter().map(|l| 1.0 - l).collect()),
            },
        ]
    }
}

/// A box in pixels, `[top, left, bottom, right)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelBox {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// One past the last row.
    pub bottom: usize,
    /// One past the last column.
    pub right: usize,
}

impl PixelBox {
    /// A box of `bh × bw` centred on `(cy, cx)`, clipped to the `[h, w]` frame.
    fn centred(cy: usize, cx: usize, bh: usize, bw: usize, [h, w]: [usize; 2]) -> Self {
        PixelBox {
            top: cy.saturating_sub(bh / 2),
            left: cx.saturating_sub(bw / 2),
            bottom: (cy + bh.div_ceil(2)).min(h),
            right: (cx + bw.div_ceil(2)).min(w),
        }
    }

    /// Its area in pixels.
    pub fn area(&self) -> usize {
        (self.bottom - self.top) * (self.right - self.left)
    }

    /// `1` outside the box and `0` inside, for `boxes.len()` images of `[h, w]`, row-major.
    fn keep_mask(boxes: &[PixelBox], [h, w]: [usize; 2]) -> Vec<f64> {
        let mut m = vec![1.0; boxes.len() * h * w];
        for (i, b) in boxes.iter().enumerate() {
            for y in b.top..b.bottom {
                for x in b.left..b.right {
                    m[(i * h + y) * w + x] = 0.0;
                }
            }
        }
        m
    }
}

/// CutOut (DeVries & Taylor 2017): a square of side `size × min(h, w)` centred anywhere in
/// the image (clipped at the border) is set to zero, with probability `p`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CutOut {
    /// Side of the square as a fraction of the shorter image side (CIFAR: 16/32 = 0.5).
    pub size: f64,
    /// Probability that an image gets a hole.
    pub p: f64,
}

impl Default for CutOut {
    fn default() -> Self {
        Self { size: 0.5, p: 1.0 }
    }
}

impl Augment for CutOut {
    /// Per image, the hole (an empty box when none).
    type Params = Vec<PixelBox>;

    fn validate(&self) -> Result<()> {
        check::prob("p", self.p)?;
        check::prob("size", self.size)
    }

    fn sample(&self, batch: usize, [h, w]: [usize; 2], rng: &mut StdRng) -> Vec<PixelBox> {
        let side = ((h.min(w) as f64 * self.size).round() as usize).max(1);
        (0..batch)
            .map(|_| {
                if rng.random_bool(self.p) {
                    let (cy, cx) = (rng.random_range(0..h), rng.random_range(0..w));
                    PixelBox::centred(cy, cx, side, side, [h, w])
                } else {
                    PixelBox {
                        top: 0,
                        left: 0,
                        bottom: 0,
                        right: 0,
                    }
                }
            })
            .collect()
    }

    fn apply<B: Backend>(&self, images: Tensor<B, 4>, p: &Vec<PixelBox>) -> Tensor<B, 4> {
        let [n, _, h, w] = images.dims();
        let device = images.device();
        images * per_pixel::<B>(PixelBox::keep_mask(p, [h, w]), [n, h, w], &device)
    }

    fn transfer(&self, p: &Vec<PixelBox>, size: [usize; 2]) -> Transfer {
        Transfer::Mix(vec![MixTerm {
            source: (0..p.len()).collect(),
            warp: None,
            weight: MixWeight::Pixels {
                values: PixelBox::keep_mask(p, size),
                size,
            },
        }])
    }
}

/// CutMix (Yun et al. 2019): a box from a partner image is pasted in; λ ~ Beta(α, α) sets the
/// box's area `(1 − λ)·h·w` (side ratio `√(1 − λ)`), the centre is uniform and the box is
/// clipped, and labels are mixed by the area actually kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CutMix {
    /// α of the Beta distribution.
    pub alpha: f64,
}

impl Default for CutMix {
    fn default() -> Self {
        Self { alpha: 1.0 }
    }
}

/// CutMix's draw: each image's partner and pasted box.
#[derive(Debug, Clone, PartialEq)]
pub struct CutMixParams {
    /// Index of the image the box comes from.
    pub partner: Vec<usize>,
    /// The pasted box, per image.
    pub boxes: Vec<PixelBox>,
    /// `[h, w]` of the images.
    pub size: [usize; 2],
}

impl CutMixParams {
    /// Per image, the fraction of pixels that stay its own.
    pub fn kept(&self) -> Vec<f64> {
        let total = (self.size[0] * self.size[1]) as f64;
        self.boxes
            .iter()
            .map(|b| 1.0 - b.area() as f64 / total)
            .collect()
    }
}

impl Augment for CutMix {
    type Params = CutMixParams;

    fn validate(&self) -> Result<()> {
        check::positive("alpha", self.alpha)
    }

    fn sample(&self, batch: usize, [h, w]: [usize; 2], rng: &mut StdRng) -> CutMixParams {
        let boxes = (0..batch)
            .map(|_| {
                let cut = (1.0 - beta(rng, self.alpha)).sqrt();
                let (bh, bw) = (
                    (h as f64 * cut).round() as usize,
                    (w as f64 * cut).round() as usize,
                );
                let (cy, cx) = (rng.random_range(0..h), rng.random_range(0..w));
                PixelBox::centred(cy, cx, bh, bw, [h, w])
            })
            .collect();
        CutMixParams {
            partner: partners(batch, rng),
            boxes,
            size: [h, w],
        }
    }

    fn apply<B: Backend>(&self, images: Tensor<B, 4>, p: &CutMixParams) -> Tensor<B, 4> {
        let [n, _, h, w] = images.dims();
        let device = images.device();
        let keep = per_pixel::<B>(PixelBox::keep_mask(&p.boxes, [h, w]), [n, h, w], &device);
        let other = take(images.clone(), &p.partner);
        images * keep.clone() + other * (keep.neg() + 1.0)
    }

    fn transfer(&self, p: &CutMixParams, size: [usize; 2]) -> Transfer {
        let keep = PixelBox::keep_mask(&p.boxes, size);
        let paste = keep.iter().map(|k| 1.0 - k).collect();
        Transfer::Mix(vec![
            MixTerm {
                source: (0..p.boxes.len()).collect(),
                warp: None,
                weight: MixWeight::Pixels { values: keep, size },
            },
            MixTerm {
                source: p.partner.clone(),
                warp: None,
                weight: MixWeight::Pixels {
                    values: paste,
                    size,
                },
            },
        ])
    }

    fn labels(&self, p: &CutMixParams) -> Labels {
        let kept = p.kept();
        let n = kept.len();
        Labels::Mixed(vec![
            ((0..n).collect(), kept.clone()),
            (p.partner.clone(), kept.iter().map(|k| 1.0 - k).collect()),
        ])
    }
}

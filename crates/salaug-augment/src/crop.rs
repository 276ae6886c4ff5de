//! SimCLR's random resized crop: a box of random area and aspect ratio, resized back to the
//! full frame. Its inverse is the interpolated warp back, valid inside the crop's footprint.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::geometry::{warp, Affine};
use crate::transfer::Transfer;
use crate::{check, Augment};

/// Random resized crop, as torchvision's `RandomResizedCrop` samples it: area fraction in
/// `scale`, aspect ratio (w/h) log-uniform in `ratio`, 10 tries, else a central crop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResizedCrop {
    /// Range of the crop's area as a fraction of the image (SimCLR: 0.08–1).
    pub scale: [f64; 2],
    /// Range of the crop's aspect ratio width/height (SimCLR: 3/4–4/3).
    pub ratio: [f64; 2],
}

impl Default for ResizedCrop {
    fn default() -> Self {
        Self {
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
        }
    }
}

/// A crop box in pixels: top row, left column, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl CropBox {
    /// The forward map of "crop this box, resize to `[h, w]`": the box's corner pixel centres
    /// land on the frame's corner pixel centres.
    pub fn forward(&self, [h, w]: [usize; 2]) -> Affine {
        let sx = (w as f64 - 1.0) / (self.width.max(2) as f64 - 1.0);
        let sy = (h as f64 - 1.0) / (self.height.max(2) as f64 - 1.0);
        Affine([
            [sx, 0.0, -sx * self.left as f64],
            [0.0, sy, -sy * self.top as f64],
        ])
    }
}

impl ResizedCrop {
    fn draw(&self, [h, w]: [usize; 2], rng: &mut StdRng) -> CropBox {
        let area = (h * w) as f64;
        let (lo, hi) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let target = area * crate::affine::uniform(rng, self.scale);
            let aspect = crate::affine::uniform(rng, [lo, hi]).exp();
            let cw = (target * aspect).sqrt().round() as usize;
            let ch = (target / aspect).sqrt().round() as usize;
            if cw >= 2 && ch >= 2 && cw <= w && ch <= h {
                return CropBox {
                    top: rng.random_range(0..=h - ch),
                    left: rng.random_range(0..=w - cw),
                    height: ch,
                    width: cw,
                };
            }
        }
        // Fallback: the central crop with the ratio clamped into range.
        let in_ratio = w as f64 / h as f64;
        let (cw, ch) = if in_ratio < self.ratio[0] {
            (w, (w as f64 / self.ratio[0]).round() as usize)
        } else if in_ratio > self.ratio[1] {
            ((h as f64 * self.ratio[1]).round() as usize, h)
        } else {
            (w, h)
        };
        CropBox {
            top: (h - ch) / 2,
            left: (w - cw) / 2,
            height: ch,
            width: cw,
        }
    }
}

impl Augment for ResizedCrop {
    type Params = Vec<CropBox>;

    fn validate(&self) -> Result<()> {
        check::range("scale", self.scale, 1e-6)?;
        if self.scale[1] > 1.0 {
            return check::bad("scale", self.scale[1], "the area fraction is at most 1");
        }
        check::range("ratio", self.ratio, 1e-6)
    }

    fn sample(&self, batch: usize, size: [usize; 2], rng: &mut StdRng) -> Vec<CropBox> {
        (0..batch).map(|_| self.draw(size, rng)).collect()
    }

    fn apply<B: Backend>(&self, images: Tensor<B, 4>, params: &Vec<CropBox>) -> Tensor<B, 4> {
        let [_, _, h, w] = images.dims();
        let forward: Vec<Affine> = params.iter().map(|b| b.forward([h, w])).collect();
        warp(images, &forward)
    }

    fn transfer(&self, params: &Vec<CropBox>, size: [usize; 2]) -> Transfer {
        Transfer::Warp(params.iter().map(|b| b.forward(size)).collect())
    }
}

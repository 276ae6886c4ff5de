//! Contrast enhancement by CLAHE, contrast-limited adaptive histogram equalisation (Zuiderveld
//! 1994), with OpenCV's conventions: 256 bins, a grid of tiles, each tile's histogram clipped
//! at `clip_limit × tile_pixels / 256` (at least 1) with the excess spread evenly over all
//! bins, the tile's lookup table `round(cdf × 255 / tile_pixels)`, and every pixel mapped by
//! bilinear blending of the four nearest tiles' tables (tile centres as nodes, clamped at the
//! borders). Channels are equalised independently (as Kornia's `equalize_clahe`). Maps are
//! compared as they are (identity transfer).
//!
//! Histograms are not a tensor operation: the images are read back to the host, equalised and
//! uploaded again. The augmented images need no gradient, so this costs only a copy.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::affine::uniform;
use crate::error::Result;
use crate::geometry::map_planes;
use crate::transfer::Transfer;
use crate::{check, Augment};

const BINS: usize = 256;

/// CLAHE with a clip limit drawn per image from `clip_limit` (albumentations: 1–4) on a
/// `grid` of tiles, applied with probability `p`.
///
/// The default grid is 2×2: on the paper's 32×32 images a tile then has 256 pixels, one per
/// bin, so the clip limit counts as written. (With 8×8-pixel tiles every limit ≤ 4 would clip
/// to one count per bin.) Use 8×8 for 224×224 images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Clahe {
    /// Range of the clip limit (relative to a flat histogram).
    pub clip_limit: [f64; 2],
    /// Tiles per column and per row, `[rows, columns]`.
    pub grid: [usize; 2],
    /// Probability that an image is equalised.
    pub p: f64,
}

impl Default for Clahe {
    fn default() -> Self {
        Self {
            clip_limit: [1.0, 4.0],
            grid: [2, 2],
            p: 1.0,
        }
    }
}

impl Augment for Clahe {
    /// Per image: the clip limit, or `None` when it is left alone.
    type Params = Vec<Option<f64>>;

    fn validate(&self) -> Result<()> {
        check::prob("p", self.p)?;
        check::range("clip_limit", self.clip_limit, 0.0)?;
        if self.grid[0] == 0 || self.grid[1] == 0 {
            return check::bad("grid", 0.0, "needs at least one tile per axis");
        }
        Ok(())
    }

    fn sample(&self, batch: usize, _size: [usize; 2], rng: &mut StdRng) -> Vec<Option<f64>> {
        (0..batch)
            .map(|_| {
                rng.random_bool(self.p)
                    .then(|| uniform(rng, self.clip_limit))
            })
            .collect()
    }

    fn apply<B: Backend>(&self, images: Tensor<B, 4>, params: &Vec<Option<f64>>) -> Tensor<B, 4> {
        if params.iter().all(Option::is_none) {
            return images;
        }
        let [_, _, h, w] = images.dims();
        map_planes(images, |image, plane| {
            if let Some(clip) = params[image] {
                let levels: Vec<u8> = plane.iter().map(|v| to_level(*v)).collect();
                let out = clahe(&levels, [h, w], self.grid, clip);
                for (p, o) in plane.iter_mut().zip(out) {
                    *p = o as f32 / 255.0;
                }
            }
        })
    }

    fn transfer(&self, _params: &Vec<Option<f64>>, _size: [usize; 2]) -> Transfer {
        Transfer::Identity
    }
}

/// `[0, 1]` to an 8-bit level.
pub(crate) fn to_level(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// CLAHE of one 8-bit plane of `[h, w]` pixels; returns 8-bit levels.
///
/// # Panics
/// If the grid has more tiles than pixels along an axis.
pub fn clahe(levels: &[u8], [h, w]: [usize; 2], [gy, gx]: [usize; 2], clip_limit: f64) -> Vec<u8> {
    assert!(
        gy >= 1 && gx >= 1 && gy <= h && gx <= w,
        "CLAHE grid {gy}×{gx} on {h}×{w}"
    );
    // Tile boundaries: tile t covers rows floor(t·h/gy) .. floor((t+1)·h/gy).
    let rows: Vec<usize> = (0..=gy).map(|t| t * h / gy).collect();
    let cols: Vec<usize> = (0..=gx).map(|t| t * w / gx).collect();
    let mut luts = vec![[0u8; BINS]; gy * gx];
    for ty in 0..gy {
        for tx in 0..gx {
            let mut hist = [0usize; BINS];
            for y in rows[ty]..rows[ty + 1] {
                for x in cols[tx]..cols[tx + 1] {
                    hist[levels[y * w + x] as usize] += 1;
                }
            }
            let area = (rows[ty + 1] - rows[ty]) * (cols[tx + 1] - cols[tx]);
            luts[ty * gx + tx] = tile_lut(hist, area, clip_limit);
        }
    }
    // Tile centres, the nodes of the bilinear blend.
    let centre = |b: &[usize], t: usize| (b[t] + b[t + 1]) as f64 / 2.0 - 0.5;
    let node = |b: &[usize], g: usize, p: usize| -> (usize, usize, f64) {
        let p = p as f64;
        if p <= centre(b, 0) {
            return (0, 0, 0.0);
        }
        if p >= centre(b, g - 1) {
            return (g - 1, g - 1, 0.0);
        }
        let mut t = 0;
        while centre(b, t + 1) < p {
            t += 1;
        }
        let f = (p - centre(b, t)) / (centre(b, t + 1) - centre(b, t));
        (t, t + 1, f)
    };
    let mut out = vec![0u8; h * w];
    for y in 0..h {
        let (t0, t1, fy) = node(&rows, gy, y);
        for x in 0..w {
            let (s0, s1, fx) = node(&cols, gx, x);
            let v = levels[y * w + x] as usize;
            let l = |ty: usize, tx: usize| luts[ty * gx + tx][v] as f64;
            let top = (1.0 - fx) * l(t0, s0) + fx * l(t0, s1);
            let bottom = (1.0 - fx) * l(t1, s0) + fx * l(t1, s1);
            out[y * w + x] = ((1.0 - fy) * top + fy * bottom).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// The clipped, redistributed, equalising lookup table of one tile.
fn tile_lut(mut hist: [usize; BINS], area: usize, clip_limit: f64) -> [u8; BINS] {
    if clip_limit > 0.0 {
        let limit = ((clip_limit * area as f64 / BINS as f64) as usize).max(1);
        let mut excess = 0;
        for h in hist.iter_mut() {
            if *h > limit {
                excess += *h - limit;
                *h = limit;
            }
        }
        let batch = excess / BINS;
        let mut residual = excess - batch * BINS;
        for h in hist.iter_mut() {
            *h += batch;
        }
        if let Some(step) = BINS.checked_div(residual) {
            let step = step.max(1);
            let mut i = 0;
            while i < BINS && residual > 0 {
                hist[i] += 1;
                residual -= 1;
                i += step;
            }
        }
    }
    let scale = (BINS - 1) as f64 / area as f64;
    let mut lut = [0u8; BINS];
    let mut sum = 0;
    for (l, h) in lut.iter_mut().zip(hist) {
        sum += h;
        *l = (sum as f64 * scale).round().clamp(0.0, 255.0) as u8;
    }
    lut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tile_without_clip_is_histogram_equalisation() {
        // 2×2 image, levels 0, 0, 100, 200: cdf 2, 3, 4 of 4 → 255·[2, 3, 4]/4.
        let out = clahe(&[0, 0, 100, 200], [2, 2], [1, 1], 0.0);
        assert_eq!(out, vec![128, 128, 191, 255]); // 127.5 rounds to 128, 191.25 to 191
    }

    #[test]
    fn clipping_flattens_a_peaked_histogram() {
        // 16 pixels, 12 at level 10 and 4 at level 200, clip limit 2 → limit max(2·16/256, 1) = 1.
        // Clipped: one at 10, one at 200; excess 14 spread as residual: one count each at bins
        // 0, 18, 36, … (step 256/14 = 18), 14 bins.
        let mut img = vec![10u8; 12];
        img.extend([200u8; 4]);
        let out = clahe(&img, [4, 4], [1, 1], 2.0);
        // cdf at 10: bin 0 (+1) and bin 10 (1) → 2; cdf at 200: 2 + bins 18..198 (11) + 1 = 14.
        let at10 = (2.0f64 * 255.0 / 16.0).round() as u8;
        let at200 = (14.0f64 * 255.0 / 16.0).round() as u8;
        assert_eq!(out[0], at10);
        assert_eq!(out[15], at200);
    }

    #[test]
    fn tiles_blend_bilinearly_between_centres() {
        // 1×4 image, two 1×2 tiles: left tile levels {0, 255}, right tile {0, 255}. Every tile
        // maps 0 → 128 and 255 → 255; pixels at the borders use their own tile only.
        let out = clahe(&[0, 255, 0, 255], [1, 4], [1, 2], 0.0);
        assert_eq!(out, vec![128, 255, 128, 255]);
        // Left tile all 0 (lut[0] = 255), right tile {0, 255} (lut[0] = 128): pixel 1 lies
        // between the centres 0.5 and 2.5, a quarter of the way: 0.75·255 + 0.25·128 = 223.25.
        let out = clahe(&[0, 0, 0, 255], [1, 4], [1, 2], 0.0);
        assert_eq!(out[1], 223);
        assert_eq!(out[0], 255);
    }
}

//! Photometric transforms of SimCLR: colour jitter and random grayscale. Maps are compared as
//! they are (identity transfer). Images are in `[0, 1]`, before any normalisation.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::affine::uniform;
use crate::error::Result;
use crate::geometry::{per_sample, select_per_sample};
use crate::transfer::Transfer;
use crate::{check, Augment};

/// ITU-R 601 luma, `[n, 1, h, w]` (the image itself when it has one channel).
pub(crate) fn luma<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let c = x.dims()[1];
    if c == 1 {
        return x;
    }
    x.clone().narrow(1, 0, 1) * 0.299
        + x.clone().narrow(1, 1, 1) * 0.587
        + x.narrow(1, 2, 1) * 0.114
}

/// Colour jitter as torchvision's `ColorJitter`, wrapped in `RandomApply(p)`: brightness,
/// contrast and saturation factors uniform in `[1 − s, 1 + s]`, a hue shift uniform in
/// `±hue` turns, applied in a random order per image. SimCLR with strength `s`:
/// `0.8s, 0.8s, 0.8s, 0.2s`, `p = 0.8`. Saturation and hue leave one-channel images alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColorJitter {
    /// Brightness spread.
    pub brightness: f64,
    /// Contrast spread.
    pub contrast: f64,
    /// Saturation spread.
    pub saturation: f64,
    /// Largest hue shift, in turns (≤ 0.5).
    pub hue: f64,
    /// Probability that an image is jittered.
    pub p: f64,
}

impl ColorJitter {
    /// SimCLR's jitter of strength `s` (paper: 0.5).
    pub fn simclr(s: f64) -> Self {
        Self {
            brightness: 0.8 * s,
            contrast: 0.8 * s,
            saturation: 0.8 * s,
            hue: 0.2 * s,
            p: 0.8,
        }
    }
}

impl Default for ColorJitter {
    fn default() -> Self {
        Self::simclr(0.5)
    }
}

/// One image's jitter: factors (1 = unchanged), hue shift (0 = unchanged) and order
/// (0 brightness, 1 contrast, 2 saturation, 3 hue).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    /// Brightness factor.
    pub brightness: f64,
    /// Contrast factor.
    pub contrast: f64,
    /// Saturation factor.
    pub saturation: f64,
    /// Hue shift in turns.
    pub hue: f64,
    /// The order of the four operations.
    pub order: [u8; 4],
}

impl Jitter {
    /// No change.
    pub const NONE: Jitter = Jitter {
        brightness: 1.0,
        contrast: 1.0,
        saturation: 1.0,
        hue: 0.0,
        order: [0, 1, 2, 3],
    };

    fn neutral_for(op: u8) -> f64 {
        if op == 3 {
            0.0
        } else {
            1.0
        }
    }

    fn value(&self, op: u8) -> f64 {
        match op {
            0 => self.brightness,
            1 => self.contrast,
            2 => self.saturation,
            _ => self.hue,
        }
    }
}

impl Augment for ColorJitter {
    type Params = Vec<Jitter>;

    fn validate(&self) -> Result<()> {
        check::prob("p", self.p)?;
        for (f, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            check::range(f, [0.0, v], 0.0)?;
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return check::bad("hue", self.hue, "the hue shift is in [0, 0.5] turns");
        }
        Ok(())
    }

    fn sample(&self, batch: usize, _size: [usize; 2], rng: &mut StdRng) -> Vec<Jitter> {
        (0..batch)
            .map(|_| {
                if !rng.random_bool(self.p) {
                    return Jitter::NONE;
                }
                let mut order = [0u8, 1, 2, 3];
                order.shuffle(rng);
                let factor = |rng: &mut StdRng, s: f64| uniform(rng, [(1.0 - s).max(0.0), 1.0 + s]);
                Jitter {
                    brightness: factor(rng, self.brightness),
                    contrast: factor(rng, self.contrast),
                    saturation: factor(rng, self.saturation),
                    hue: uniform(rng, [-self.hue, self.hue]),
                    order,
                }
            })
            .collect()
    }

    fn apply<B: Backend>(&self, images: Tensor<B, 4>, params: &Vec<Jitter>) -> Tensor<B, 4> {
        let device = images.device();
        let mut x = images;
        for step in 0..4 {
            // Each image runs its `step`-th operation; the other operations get neutral values.
            for op in 0..4u8 {
                let values: Vec<f64> = params
                    .iter()
                    .map(|j| {
                        if j.order[step] == op {
                            j.value(op)
                        } else {
                            Jitter::neutral_for(op)
                        }
                    })
                    .collect();
                if values.iter().all(|v| *v == Jitter::neutral_for(op)) {
                    continue;
                }
                let changed: Vec<bool> = values
                    .iter()
                    .map(|v| *v != Jitter::neutral_for(op))
                    .collect();
                let f = per_sample::<B>(&values, &device);
                let y = match op {
                    0 => (x.clone() * f).clamp(0.0, 1.0),
                    1 => {
                        let [n, _, _, _] = x.dims();
                        let m = luma(x.clone())
                            .reshape([n as i32, -1])
                            .mean_dim(1)
                            .reshape([n, 1, 1, 1]);
                        ((x.clone() - m.clone()) * f + m).clamp(0.0, 1.0)
                    }
                    2 if x.dims()[1] == 3 => {
                        let g = luma(x.clone());
                        (g.clone() + (x.clone() - g) * f).clamp(0.0, 1.0)
                    }
                    3 if x.dims()[1] == 3 => shift_hue(x.clone(), f),
                    _ => x.clone(),
                };
                x = select_per_sample(&changed, y, x);
            }
        }
        x
    }

    fn transfer(&self, _params: &Vec<Jitter>, _size: [usize; 2]) -> Transfer {
        Transfer::Identity
    }
}

/// Rotates the hue of RGB images in `[0, 1]` by `shift` turns (`[n, 1, 1, 1]`), through HSV.
pub(crate) fn shift_hue<B: Backend>(x: Tensor<B, 4>, shift: Tensor<B, 4>) -> Tensor<B, 4> {
    let (r, g, b) = (
        x.clone().narrow(1, 0, 1),
        x.clone().narrow(1, 1, 1),
        x.clone().narrow(1, 2, 1),
    );
    let maxc = x.clone().max_dim(1);
    let minc = x.min_dim(1);
    let delta = maxc.clone() - minc;
    let v = maxc.clone();
    let s = delta.clone() / maxc.clone().clamp_min(1e-12);
    let d = delta.clone().clamp_min(1e-12);
    let rc = (maxc.clone() - r.clone()) / d.clone();
    let gc = (maxc.clone() - g.clone()) / d.clone();
    let bc = (maxc.clone() - b) / d;
    // colorsys: h = bc − gc (r max), 2 + rc − bc (g max), 4 + gc − rc (b max).
    let h = (gc.clone() - rc.clone() + 4.0)
        .mask_where(g.equal(maxc.clone()), rc.clone() - bc.clone() + 2.0)
        .mask_where(r.equal(maxc), bc - gc);
    let h = (h / 6.0 + shift).mask_fill(delta.lower_equal_elem(0.0), 0.0);
    let h = h.clone() - h.floor(); // wrap to [0, 1)
    let h6 = h * 6.0;
    let i = h6.clone().floor().clamp(0.0, 5.0);
    let f = h6 - i.clone();
    let p = v.clone() * (s.clone().neg() + 1.0);
    let q = v.clone() * ((s.clone() * f.clone()).neg() + 1.0);
    let t = v.clone() * ((s * (f.neg() + 1.0)).neg() + 1.0);
    let pick = |choices: [&Tensor<B, 4>; 6]| {
        let mut out = choices[0].clone() * i.clone().equal_elem(0.0).float();
        for (k, c) in choices.iter().enumerate().skip(1) {
            out = out + (*c).clone() * i.clone().equal_elem(k as f64).float();
        }
        out
    };
    let r = pick([&v, &q, &p, &p, &t, &v]);
    let g = pick([&t, &v, &v, &q, &p, &p]);
    let b = pick([&p, &p, &t, &v, &v, &q]);
    Tensor::cat(vec![r, g, b], 1)
}

/// Random grayscale with probability `p` (SimCLR: 0.2): the image becomes its luma, repeated
/// on every channel. One-channel images are unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grayscale {
    /// Probability that an image is turned gray.
    pub p: f64,
}

impl Default for Grayscale {
    fn default() -> Self {
        Self { p: 0.2 }
    }
}

impl Augment for Grayscale {
    type Params = Vec<bool>;

    fn validate(&self) -> Result<()> {
        check::prob("p", self.p)
    }

    fn sample(&self, batch: usize, _size: [usize; 2], rng: &mut StdRng) -> Vec<bool> {
        (0..batch).map(|_| rng.random_bool(self.p)).collect()
    }

    fn apply<B: Backend>(&self, images: Tensor<B, 4>, params: &Vec<bool>) -> Tensor<B, 4> {
        let [n, c, h, w] = images.dims();
        if c == 1 {
            return images;
        }
        let gray = luma(images.clone()).expand([n, c, h, w]);
        select_per_sample(params, gray, images)
    }

    fn transfer(&self, _params: &Vec<bool>, _size: [usize; 2]) -> Transfer {
        Transfer::Identity
    }
}

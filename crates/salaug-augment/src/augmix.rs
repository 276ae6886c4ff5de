//! AugMix (Hendrycks et al. 2020, <https://arxiv.org/abs/1912.02781>), following the
//! reference `augment_and_mix`: `width` chains of `depth` operations (random 1–3 by default)
//! drawn from the standard list (autocontrast, equalize, posterize, rotate, solarize, shear x/y,
//! translate x/y) at a random level up to `severity`; chain weights ~ Dirichlet(α), mixing
//! weight m ~ Beta(α, α); `out = (1 − m)·x + m·Σ wᵢ·chainᵢ(x)`.
//!
//! The expected map is the same mixture of the originals' maps carried forward by each chain's
//! geometric operations (photometric operations leave maps alone): `(1 − m)·S(x) + m·Σ wᵢ·Aᵢ(S(x))`
//! with `Aᵢ` the composition of chain i's affine maps, warped once.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

use crate::affine::centre;
use crate::clahe::to_level;
use crate::error::Result;
use crate::geometry::{map_planes, per_sample, select_per_sample, warp, Affine};
use crate::mix::beta;
use crate::transfer::{MixTerm, MixWeight, Transfer};
use crate::{check, Augment};

/// AugMix settings (reference defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugMix {
    /// Number of chains.
    pub width: usize,
    /// Operations per chain; 0 means random in 1–3.
    pub depth: usize,
    /// Largest operation level (1–10).
    pub severity: f64,
    /// Dirichlet and Beta parameter.
    pub alpha: f64,
}

impl Default for AugMix {
    fn default() -> Self {
        Self {
            width: 3,
            depth: 0,
            severity: 3.0,
            alpha: 1.0,
        }
    }
}

/// One AugMix operation with its drawn level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Per-channel stretch of the range to `[0, 1]`.
    AutoContrast,
    /// Per-channel histogram equalisation (PIL's `ImageOps.equalize`).
    Equalize,
    /// Keep this many high bits of each 8-bit level.
    Posterize(u8),
    /// Invert levels at or above this 8-bit threshold.
    Solarize(u16),
    /// Rotation, shear or translation, as its forward map.
    Geometric(Affine),
}

/// AugMix's draw for a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct AugMixParams {
    /// `[image][chain]` → the chain's operations, in order.
    pub chains: Vec<Vec<Vec<Op>>>,
    /// `[image][chain]` → Dirichlet weight; each row sums to one.
    pub weights: Vec<Vec<f64>>,
    /// Per image, the weight m of the mixture against the original.
    pub m: Vec<f64>,
}

impl AugMix {
    fn op(&self, size: [usize; 2], rng: &mut StdRng) -> Op {
        let level = crate::affine::uniform(rng, [0.1, self.severity]);
        let int = |max: f64| (level * max / 10.0) as i64;
        let float = |max: f64| level * max / 10.0;
        let sign = |rng: &mut StdRng| if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let (cx, cy) = centre(size);
        match rng.random_range(0..9) {
            0 => Op::AutoContrast,
            1 => Op::Equalize,
            2 => Op::Posterize((4 - int(4.0)).clamp(1, 8) as u8),
            3 => Op::Geometric(Affine::rotation_about(sign(rng) * int(30.0) as f64, cx, cy)),
            4 => Op::Solarize((256 - int(256.0)).clamp(0, 256) as u16),
            // PIL's affine (1, k, 0, 0, 1, 0) samples the source at (x + k·y, y).
            5 => Op::Geometric(Affine::shear_x(sign(rng) * float(0.3), 0.0).inverse()),
            6 => Op::Geometric(Affine::shear_y(sign(rng) * float(0.3), 0.0).inverse()),
            7 => Op::Geometric(Affine::translation(
                sign(rng) * int(size[1] as f64 / 3.0) as f64,
                0.0,
            )),
            _ => Op::Geometric(Affine::translation(
                0.0,
                sign(rng) * int(size[0] as f64 / 3.0) as f64,
            )),
        }
    }

    /// The composed forward map of each image's chain `chain`.
    fn chain_affines(p: &AugMixParams, chain: usize) -> Vec<Affine> {
        p.chains
            .iter()
            .map(|chains| {
                chains[chain]
                    .iter()
                    .fold(Affine::IDENTITY, |acc, op| match op {
                        Op::Geometric(a) => a.after(&acc),
                        _ => acc,
                    })
            })
            .collect()
    }
}

/// Dirichlet(α, …, α) of `k` components, via normalised Gamma draws.
fn dirichlet(rng: &mut StdRng, alpha: f64, k: usize) -> Vec<f64> {
    let gamma = Gamma::new(alpha, 1.0).expect("alpha validated as > 0");
    let draws: Vec<f64> = (0..k).map(|_| gamma.sample(rng)).collect();
    let total: f64 = draws.iter().sum();
    if total > 0.0 {
        draws.iter().map(|d| d / total).collect()
    } else {
        vec![1.0 / k as f64; k]
    }
}

impl Augment for AugMix {
    type Params = AugMixParams;

    fn validate(&self) -> Result<()> {
        check::positive("alpha", self.alpha)?;
        check::positive("width", self.width as f64)?;
        if !(self.severity >= 0.1 && self.severity <= 10.0) {
            return check::bad("severity", self.severity, "must be in [0.1, 10]");
        }
        Ok(())
    }

    fn sample(&self, batch: usize, size: [usize; 2], rng: &mut StdRng) -> AugMixParams {
        let mut chains = Vec::with_capacity(batch);
        let mut weights = Vec::with_capacity(batch);
        let mut m = Vec::with_capacity(batch);
        for _ in 0..batch {
            weights.push(dirichlet(rng, self.alpha, self.width));
            m.push(beta(rng, self.alpha));
            chains.push(
                (0..self.width)
                    .map(|_| {
                        let depth = if self.depth == 0 {
                            rng.random_range(1..=3)
                        } else {
                            self.depth
                        };
                        (0..depth).map(|_| self.op(size, rng)).collect()
                    })
                    .collect(),
            );
        }
        AugMixParams { chains, weights, m }
    }

    fn apply<B: Backend>(&self, images: Tensor<B, 4>, p: &AugMixParams) -> Tensor<B, 4> {
        let device = images.device();
        let n = p.m.len();
        let mut mixed = images.zeros_like();
        for chain in 0..self.width {
            let mut x = images.clone();
            let depth = p.chains.iter().map(|c| c[chain].len()).max().unwrap_or(0);
            for step in 0..depth {
                let ops: Vec<Option<Op>> = p
                    .chains
                    .iter()
                    .map(|c| c[chain].get(step).copied())
                    .collect();
                x = apply_step(x, &ops);
            }
            let w: Vec<f64> = (0..n).map(|i| p.weights[i][chain]).collect();
            mixed = mixed + x * per_sample::<B>(&w, &device);
        }
        let m = per_sample::<B>(&p.m, &device);
        images * (m.clone().neg() + 1.0) + mixed * m
    }

    fn transfer(&self, p: &AugMixParams, _size: [usize; 2]) -> Transfer {
        let n = p.m.len();
        let mut terms = vec![MixTerm {
            source: (0..n).collect(),
            warp: None,
            weight: MixWeight::Scalar(p.m.iter().map(|m| 1.0 - m).collect()),
        }];
        for chain in 0..self.width {
            terms.push(MixTerm {
                source: (0..n).collect(),
                warp: Some(Self::chain_affines(p, chain)),
                weight: MixWeight::Scalar((0..n).map(|i| p.m[i] * p.weights[i][chain]).collect()),
            });
        }
        Transfer::Mix(terms)
    }
}

/// One step of every image's chain (`None`: that image's chain has ended).
fn apply_step<B: Backend>(x: Tensor<B, 4>, ops: &[Option<Op>]) -> Tensor<B, 4> {
    let device = x.device();
    let uses = |f: &dyn Fn(&Op) -> bool| -> Vec<bool> {
        ops.iter().map(|o| o.as_ref().is_some_and(f)).collect()
    };
    let mut x = x;
    let auto = uses(&|o| matches!(o, Op::AutoContrast));
    if auto.iter().any(|u| *u) {
        x = select_per_sample(&auto, autocontrast(x.clone()), x);
    }
    let eq = uses(&|o| matches!(o, Op::Equalize));
    if eq.iter().any(|u| *u) {
        x = select_per_sample(&eq, equalize(x.clone()), x);
    }
    let post = uses(&|o| matches!(o, Op::Posterize(_)));
    if post.iter().any(|u| *u) {
        let step: Vec<f64> = ops
            .iter()
            .map(|o| match o {
                Some(Op::Posterize(bits)) => (1u32 << (8 - bits)) as f64,
                _ => 1.0,
            })
            .collect();
        let s = per_sample::<B>(&step, &device);
        let levels = (x.clone() * 255.0).round().clamp(0.0, 255.0);
        let y = (levels / s.clone()).floor() * s / 255.0;
        x = select_per_sample(&post, y, x);
    }
    let sol = uses(&|o| matches!(o, Op::Solarize(_)));
    if sol.iter().any(|u| *u) {
        let thr: Vec<f64> = ops
            .iter()
            .map(|o| match o {
                Some(Op::Solarize(t)) => *t as f64 / 255.0,
                _ => 2.0,
            })
            .collect();
        let t = per_sample::<B>(&thr, &device);
        let [n, c, h, w] = x.dims();
        let above = x.clone().greater_equal(t.expand([n, c, h, w]));
        x = x.clone().mask_where(above, x.neg() + 1.0);
    }
    let geo: Vec<Affine> = ops
        .iter()
        .map(|o| match o {
            Some(Op::Geometric(a)) => *a,
            _ => Affine::IDENTITY,
        })
        .collect();
    warp(x, &geo)
}

/// Per image and channel, stretches the range of values to `[0, 1]` (constant planes stay).
fn autocontrast<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let flat = x.clone().reshape([n, c, h * w]);
    let lo = flat.clone().min_dim(2).reshape([n, c, 1, 1]);
    let hi = flat.max_dim(2).reshape([n, c, 1, 1]);
    let range = hi - lo.clone();
    let flat_plane = range.clone().lower_equal_elem(1e-6).expand([n, c, h, w]);
    let stretched = (x.clone() - lo) / range.clamp_min(1e-6);
    stretched.mask_where(flat_plane, x)
}

/// Per image and channel, PIL's `ImageOps.equalize` on 8-bit levels.
fn equalize<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    map_planes(x, |_, plane| {
        let mut hist = [0usize; 256];
        for p in plane.iter() {
            hist[to_level(*p) as usize] += 1;
        }
        let last = hist.iter().rposition(|c| *c > 0).map_or(0, |i| hist[i]);
        let step = (plane.len() - last) / 255;
        if step == 0 {
            return;
        }
        let mut lut = [0f32; 256];
        let mut acc = step / 2;
        for (l, count) in lut.iter_mut().zip(hist) {
            *l = ((acc / step).min(255)) as f32 / 255.0;
            acc += count;
        }
        for p in plane.iter_mut() {
            *p = lut[to_level(*p) as usize];
        }
    })
}

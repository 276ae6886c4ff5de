//! Horizontal and vertical flips: exact, their own inverse.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::transfer::{flip, Transfer};
use crate::{check, Augment};

/// Mirrors each image left-right with probability `p` (paper default 0.5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HorizontalFlip {
    /// Probability that an image is flipped.
    pub p: f64,
}

/// Mirrors each image top-bottom with probability `p` (paper default 0.5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerticalFlip {
    /// Probability that an image is flipped.
    pub p: f64,
}

impl Default for HorizontalFlip {
    fn default() -> Self {
        Self { p: 0.5 }
    }
}

impl Default for VerticalFlip {
    fn default() -> Self {
        Self { p: 0.5 }
    }
}

/// Per image: whether it is flipped.
fn coins(p: f64, batch: usize, rng: &mut StdRng) -> Vec<bool> {
    (0..batch).map(|_| rng.random_bool(p)).collect()
}

impl Augment for HorizontalFlip {
    type Params = Vec<bool>;

    fn validate(&self) -> Result<()> {
        check::prob("p", self.p)
    }

    fn sample(&self, batch: usize, _size: [usize; 2], rng: &mut StdRng) -> Vec<bool> {
        coins(self.p, batch, rng)
    }

    fn apply<B: Backend>(&self, images: Tensor<B, 4>, params: &Vec<bool>) -> Tensor<B, 4> {
        flip(images, params, &vec![false; params.len()])
    }

    fn transfer(&self, params: &Vec<bool>, _size: [usize; 2]) -> Transfer {
        Transfer::Flip {
            horizontal: params.clone(),
            vertical: vec![false; params.len()],
        }
    }
}

impl Augment for VerticalFlip {
    type Params = Vec<bool>;

    fn validate(&self) -> Result<()> {
        check::prob("p", self.p)
    }

    fn sample(&self, batch: usize, _size: [usize; 2], rng: &mut StdRng) -> Vec<bool> {
        coins(self.p, batch, rng)
    }

    fn apply<B: Backend>(&self, images: Tensor<B, 4>, params: &Vec<bool>) -> Tensor<B, 4> {
        flip(images, &vec![false; params.len()], params)
    }

    fn transfer(&self, params: &Vec<bool>, _size: [usize; 2]) -> Transfer {
        Transfer::Flip {
            horizontal: vec![false; params.len()],
            vertical: params.clone(),
        }
    }
}

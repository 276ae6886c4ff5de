//! Distances between two batches of one-channel maps, with an optional validity mask.

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::normalize::safe_div;

/// A per-image distance between maps.
///
/// With a mask (1 = valid pixel), only valid pixels count and averages are over valid pixels;
/// an image without any valid pixel has distance 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    /// Mean squared error (the paper's choice).
    #[default]
    Mse,
    /// Mean absolute error.
    L1,
    /// `1 − cos(a, b)`; a map with zero norm has cosine 0 (distance 1).
    Cosine,
}

impl Distance {
    /// The distance of each image pair.
    ///
    /// # Shapes
    /// - `a`, `b`, `mask`: `[batch, channels, height, width]` (all equal)
    /// - output: `[batch]`
    pub fn forward_no_reduction<B: Backend>(
        &self,
        a: Tensor<B, 4>,
        b: Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
        eps: f64,
    ) -> Tensor<B, 1> {
        let [batch, channels, height, width] = a.dims();
        let pixels = channels * height * width;
        let a = a.reshape([batch, pixels]);
        let b = b.reshape([batch, pixels]);
        let mask = mask.map(|m| m.reshape([batch, pixels]));
        let per_pixel = |d: Tensor<B, 2>| -> Tensor<B, 1> {
            match &mask {
                None => d.mean_dim(1).reshape([batch]),
                Some(m) => {
                    let n = m.clone().sum_dim(1).clamp_min(1.0);
                    ((d * m.clone()).sum_dim(1) / n).reshape([batch])
                }
            }
        };
        match self {
            Distance::Mse => per_pixel((a - b).powi_scalar(2)),
            Distance::L1 => per_pixel((a - b).abs()),
            Distance::Cosine => {
                let (a, b) = match &mask {
                    None => (a, b),
                    Some(m) => (a * m.clone(), b * m.clone()),
                };
                let dot = (a.clone() * b.clone()).sum_dim(1);
                let norms = a.powi_scalar(2).sum_dim(1) * b.powi_scalar(2).sum_dim(1);
                // sqrt only of values above eps², so its derivative stays finite.
                let ok = norms.clone().greater_elem(eps * eps);
                let den = norms.mask_fill(ok.bool_not(), 1.0).sqrt();
                let cos = safe_div(dot, den, 0.0);
                (cos.ones_like() - cos).reshape([batch])
            }
        }
    }

    /// The mean distance over the batch, `[1]`.
    pub fn forward<B: Backend>(
        &self,
        a: Tensor<B, 4>,
        b: Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
        eps: f64,
    ) -> Tensor<B, 1> {
        self.forward_no_reduction(a, b, mask, eps).mean()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{tensor4, values, TB};

    #[test]
    fn distances_match_hand_computed_values() {
        let a = tensor4::<TB>(&[1.0, 0.0, 0.0, 1.0], [2, 1, 1, 2]);
        let b = tensor4::<TB>(&[0.0, 1.0, 0.0, 3.0], [2, 1, 1, 2]);
        assert_eq!(
            values(Distance::Mse.forward_no_reduction(a.clone(), b.clone(), None, 1e-12)),
            [1.0, 2.0]
        );
        assert_eq!(
            values(Distance::L1.forward_no_reduction(a.clone(), b.clone(), None, 1e-12)),
            [1.0, 1.0]
        );
        let cos = values(Distance::Cosine.forward_no_reduction(a.clone(), b.clone(), None, 1e-12));
        assert!(
            (cos[0] - 1.0).abs() < 1e-12 && cos[1].abs() < 1e-12,
            "{cos:?}"
        );
        assert_eq!(values(Distance::Mse.forward(a, b, None, 1e-12)), [1.5]);
    }

    #[test]
    fn mask_ignores_invalid_pixels() {
        let a = tensor4::<TB>(&[1.0, 5.0], [1, 1, 1, 2]);
        let b = tensor4::<TB>(&[3.0, -5.0], [1, 1, 1, 2]);
        let mask = tensor4::<TB>(&[1.0, 0.0], [1, 1, 1, 2]);
        assert_eq!(
            values(Distance::Mse.forward(a.clone(), b.clone(), Some(mask.clone()), 1e-12)),
            [4.0]
        );
        assert_eq!(
            values(Distance::L1.forward(a.clone(), b.clone(), Some(mask.clone()), 1e-12)),
            [2.0]
        );
        let none = tensor4::<TB>(&[0.0, 0.0], [1, 1, 1, 2]);
        assert_eq!(
            values(Distance::Mse.forward(a, b, Some(none), 1e-12)),
            [0.0]
        );
    }

    #[test]
    fn cosine_of_zero_map_is_finite() {
        let a = tensor4::<TB>(&[0.0, 0.0], [1, 1, 1, 2]);
        let b = tensor4::<TB>(&[1.0, 2.0], [1, 1, 1, 2]);
        assert_eq!(
            values(Distance::Cosine.forward(a.clone(), b, None, 1e-12)),
            [1.0]
        );
        assert_eq!(
            values(Distance::Cosine.forward(a.clone(), a, None, 1e-12)),
            [1.0]
        );
    }
}

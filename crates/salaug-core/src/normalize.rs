//! Per-map normalisation, NaN-free for all-zero and constant maps.

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

/// How each one-channel map is normalised on its own before the distance is taken.
///
/// With a validity mask, statistics are taken over the valid pixels only and invalid pixels
/// are set to zero. A map whose statistic (range, max, sum or standard deviation) is not
/// above `eps` normalises to all zeros, with zero gradient: never NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MapNorm {
    /// `(m − min) / (max − min)`, into `[0, 1]` (the default).
    #[default]
    MinMax,
    /// `m / max |m|`, into `[−1, 1]`, keeping the sign and zero.
    MaxAbs,
    /// `m / Σ |m|`: non-negative maps sum to one.
    UnitSum,
    /// `(m − mean) / std` (population standard deviation).
    Standardize,
    /// No normalisation.
    Identity,
}

/// Large value used to exclude masked pixels from a minimum or maximum.
const EXCLUDED: f64 = 1e30;

impl MapNorm {
    /// Normalises every map of the batch on its own.
    ///
    /// # Shapes
    /// - `maps`: `[batch, 1, height, width]`
    /// - `mask`: `[batch, 1, height, width]` of 0/1 (1 = valid), optional
    /// - output: `[batch, 1, height, width]`
    pub fn forward<B: Backend>(
        &self,
        maps: Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
        eps: f64,
    ) -> Tensor<B, 4> {
        let shape = maps.dims();
        let [batch, channels, height, width] = shape;
        let m = maps.reshape([batch, channels * height * width]);
        let v = mask.map(|mask| mask.reshape([batch, channels * height * width]));
        let out = match self {
            MapNorm::Identity => return apply_mask(m, v).reshape(shape),
            MapNorm::MinMax => {
                let (min, max) = match &v {
                    None => (m.clone().min_dim(1), m.clone().max_dim(1)),
                    Some(v) => {
                        let off = (v.ones_like() - v.clone()) * EXCLUDED;
                        (
                            (m.clone() + off.clone()).min_dim(1),
                            (m.clone() - off).max_dim(1),
                        )
                    }
                };
                safe_div(m - min.clone(), max - min, eps)
            }
            MapNorm::MaxAbs => {
                let max = apply_mask(m.clone().abs(), v.clone()).max_dim(1);
                safe_div(m, max, eps)
            }
            MapNorm::UnitSum => {
                let sum = apply_mask(m.clone().abs(), v.clone()).sum_dim(1);
                safe_div(m, sum, eps)
            }
            MapNorm::Standardize => {
                let (mean, var) = match &v {
                    None => {
                        let mean = m.clone().mean_dim(1);
                        let var = (m.clone() - mean.clone()).powi_scalar(2).mean_dim(1);
                        (mean, var)
                    }
                    Some(v) => {
                        let n = v.clone().sum_dim(1).clamp_min(1.0);
                        let mean = (m.clone() * v.clone()).sum_dim(1) / n.clone();
                        let var =
                            ((m.clone() - mean.clone()).powi_scalar(2) * v.clone()).sum_dim(1) / n;
                        (mean, var)
                    }
                };
                // sqrt only of values above eps², so its derivative stays finite.
                let ok = var.clone().greater_elem(eps * eps);
                let std = var.mask_fill(ok.clone().bool_not(), 1.0).sqrt();
                (m - mean) / std * ok.float()
            }
        };
        apply_mask(out, v).reshape(shape)
    }
}

/// `num / den` where `den > eps`, and 0 (with zero gradient) elsewhere.
///
/// The denominator is replaced by one where it is too small, so neither the value nor the
/// gradient can become NaN or infinite. `den` is `[batch, 1]`, `num` is `[batch, pixels]`.
pub(crate) fn safe_div<B: Backend>(num: Tensor<B, 2>, den: Tensor<B, 2>, eps: f64) -> Tensor<B, 2> {
    let ok = den.clone().greater_elem(eps);
    let den = den.mask_fill(ok.clone().bool_not(), 1.0);
    num / den * ok.float()
}

fn apply_mask<B: Backend>(m: Tensor<B, 2>, mask: Option<Tensor<B, 2>>) -> Tensor<B, 2> {
    match mask {
        Some(mask) => m * mask,
        None => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{tensor4, values, TB};

    const ALL: [MapNorm; 5] = [
        MapNorm::MinMax,
        MapNorm::MaxAbs,
        MapNorm::UnitSum,
        MapNorm::Standardize,
        MapNorm::Identity,
    ];

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-9, "{a:?} != {b:?}");
        }
    }

    #[test]
    fn norms_match_hand_computed_values() {
        let m = tensor4::<TB>(&[-1.0, 1.0, 3.0, 1.0], [1, 1, 2, 2]);
        close(
            &values(MapNorm::MinMax.forward(m.clone(), None, 1e-12)),
            &[0.0, 0.5, 1.0, 0.5],
        );
        close(
            &values(MapNorm::MaxAbs.forward(m.clone(), None, 1e-12)),
            &[-1.0 / 3.0, 1.0 / 3.0, 1.0, 1.0 / 3.0],
        );
        close(
            &values(MapNorm::UnitSum.forward(m.clone(), None, 1e-12)),
            &[-1.0 / 6.0, 1.0 / 6.0, 0.5, 1.0 / 6.0],
        );
        // mean 1, population std sqrt(2)
        let s = 2f64.sqrt();
        close(
            &values(MapNorm::Standardize.forward(m, None, 1e-12)),
            &[-2.0 / s, 0.0, 2.0 / s, 0.0],
        );
    }

    #[test]
    fn all_zero_and_constant_maps_normalise_to_zero() {
        for norm in ALL {
            for fill in [0.0, 2.5] {
                let m = tensor4::<TB>(&[fill; 4], [1, 1, 2, 2]);
                let out = values(norm.forward(m, None, 1e-12));
                let expected =
                    if fill == 0.0 || matches!(norm, MapNorm::MinMax | MapNorm::Standardize) {
                        [0.0; 4]
                    } else {
                        // Constant non-zero maps keep their (well-defined) scale-normalised value.
                        match norm {
                            MapNorm::MaxAbs => [1.0; 4],
                            MapNorm::UnitSum => [0.25; 4],
                            _ => [fill; 4],
                        }
                    };
                close(&out, &expected);
            }
        }
    }

    #[test]
    fn mask_restricts_statistics_and_zeroes_invalid_pixels() {
        // The masked pixel holds a huge value that would dominate if it were counted.
        let m = tensor4::<TB>(&[0.0, 2.0, 1.0, 100.0], [1, 1, 2, 2]);
        let mask = tensor4::<TB>(&[1.0, 1.0, 1.0, 0.0], [1, 1, 2, 2]);
        close(
            &values(MapNorm::MinMax.forward(m.clone(), Some(mask.clone()), 1e-12)),
            &[0.0, 1.0, 0.5, 0.0],
        );
        close(
            &values(MapNorm::MaxAbs.forward(m, Some(mask), 1e-12)),
            &[0.0, 1.0, 0.5, 0.0],
        );
    }
}

//! Channel reduction: raw `[batch, channels, h, w]` maps to one channel.

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

/// How the channels of a raw map are reduced to one (`[batch, 1, h, w]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChannelReduction {
    /// Maximum over channels of the signed gradient (the paper's eq. 2).
    #[default]
    Max,
    /// Maximum over channels of the absolute gradient (Simonyan et al.).
    AbsMax,
    /// Euclidean norm over channels, smoothed at zero: `sqrt(Σ g² + ε²) − ε` with ε = 1e-12,
    /// so that all-zero maps keep finite first and second derivatives.
    L2,
}

/// Smoothing constant of [`ChannelReduction::L2`].
pub const L2_EPS: f64 = 1e-12;

impl ChannelReduction {
    /// Reduces the channel axis.
    ///
    /// # Shapes
    /// - `maps`: `[batch, channels, height, width]`
    /// - output: `[batch, 1, height, width]`
    pub fn forward<B: Backend>(&self, maps: Tensor<B, 4>) -> Tensor<B, 4> {
        if maps.dims()[1] == 1 {
            return match self {
                ChannelReduction::Max => maps,
                ChannelReduction::AbsMax | ChannelReduction::L2 => maps.abs(),
            };
        }
        match self {
            ChannelReduction::Max => maps.max_dim(1),
            ChannelReduction::AbsMax => maps.abs().max_dim(1),
            ChannelReduction::L2 => {
                (maps.powi_scalar(2).sum_dim(1) + L2_EPS * L2_EPS).sqrt() - L2_EPS
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{tensor4, values, TB};

    #[test]
    fn reductions_match_hand_computed_values() {
        // Two channels, one pixel each of [3, -4] and [-1, 0.5].
        let maps = tensor4::<TB>(&[3.0, -1.0, -4.0, 0.5], [1, 2, 1, 2]);
        assert_eq!(
            values(ChannelReduction::Max.forward(maps.clone())),
            [3.0, 0.5]
        );
        assert_eq!(
            values(ChannelReduction::AbsMax.forward(maps.clone())),
            [4.0, 1.0]
        );
        let l2 = values(ChannelReduction::L2.forward(maps));
        assert!((l2[0] - 5.0).abs() < 1e-9 && (l2[1] - 1.25f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn single_channel_is_identity_for_max_and_abs_for_others() {
        let maps = tensor4::<TB>(&[-2.0, 1.0], [1, 1, 1, 2]);
        assert_eq!(
            values(ChannelReduction::Max.forward(maps.clone())),
            [-2.0, 1.0]
        );
        assert_eq!(values(ChannelReduction::L2.forward(maps)), [2.0, 1.0]);
    }
}

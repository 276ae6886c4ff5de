//! The losses of the method: L = α·L_class + β·L_sal + γ·L_inv.

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::distance::Distance;
use crate::error::{check_shape, Error, Result};
use crate::normalize::MapNorm;
use crate::reduce::ChannelReduction;
use crate::saliency::SaliencyMethod;
use crate::second_order::Explain;
use crate::second_order::{AutodiffBase, Lift};

/// Settings of the saliency loss L_sal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaliencyLossConfig {
    /// Channel reduction of raw maps (default: max, the paper's eq. 2).
    pub reduction: ChannelReduction,
    /// Per-map normalisation (default: min-max).
    pub norm: MapNorm,
    /// Distance between normalised maps (default: MSE, as the paper).
    pub distance: Distance,
    /// Statistics (range, norm, …) not above `eps` count as zero.
    pub eps: f64,
}

impl Default for SaliencyLossConfig {
    fn default() -> Self {
        Self {
            reduction: ChannelReduction::Max,
            norm: MapNorm::MinMax,
            distance: Distance::Mse,
            eps: 1e-12,
        }
    }
}

impl SaliencyLossConfig {
    /// Checks the settings and returns the loss.
    pub fn init(&self) -> Result<SaliencyLoss> {
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return Err(Error::InvalidSetting {
                name: "saliency_loss.eps",
                value: self.eps.to_string(),
                reason: "must be a finite number ≥ 0",
            });
        }
        Ok(SaliencyLoss { config: *self })
    }
}

/// The saliency loss: distance between normalised maps of the originals and expected maps.
#[derive(Debug, Clone, Copy)]
pub struct SaliencyLoss {
    config: SaliencyLossConfig,
}

impl SaliencyLoss {
    /// The settings of this loss.
    pub fn config(&self) -> &SaliencyLossConfig {
        &self.config
    }

    /// Reduces raw maps `[batch, channels, h, w]` to `[batch, 1, h, w]` (before any warp).
    pub fn reduce<B: Backend>(&self, raw: Tensor<B, 4>) -> Tensor<B, 4> {
        self.config.reduction.forward(raw)
    }

    /// Normalises each map on its own (over the valid pixels when a mask is given).
    pub fn normalize<B: Backend>(
        &self,
        maps: Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        self.config.norm.forward(maps, mask, self.config.eps)
    }

    /// The per-image loss `[batch]` between `maps` and `expected`, both one-channel.
    ///
    /// Both are normalised on their own (restricted to `mask` if given), then compared.
    ///
    /// # Shapes
    /// - `maps`, `expected`, `mask`: `[batch, 1, height, width]`
    pub fn forward_no_reduction<B: Backend>(
        &self,
        maps: Tensor<B, 4>,
        expected: Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
    ) -> Result<Tensor<B, 1>> {
        let shape = maps.dims();
        check_shape("saliency_loss expected maps", &shape, &expected.dims())?;
        if shape[1] != 1 {
            return Err(Error::Shape {
                what: "saliency_loss maps (reduce channels first)",
                expected: vec![shape[0], 1, shape[2], shape[3]],
                got: shape.to_vec(),
            });
        }
        if let Some(mask) = &mask {
            check_shape("saliency_loss mask", &shape, &mask.dims())?;
        }
        let a = self.normalize(maps, mask.clone());
        let b = self.normalize(expected, mask.clone());
        Ok(self
            .config
            .distance
            .forward_no_reduction(a, b, mask, self.config.eps))
    }

    /// The mean of [`Self::forward_no_reduction`] over the batch, `[1]`.
    pub fn forward<B: Backend>(
        &self,
        maps: Tensor<B, 4>,
        expected: Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
    ) -> Result<Tensor<B, 1>> {
        Ok(self.forward_no_reduction(maps, expected, mask)?.mean())
    }
}

/// Two maps to compare and the pixels where the comparison is valid.
#[derive(Debug, Clone)]
pub struct MapPair<B: Backend> {
    /// The reference: `S(x)` (inverse) or the expected map `T(S(x))` (expected).
    pub reference: Tensor<B, 4>,
    /// The other map: `T⁻¹(S(T(x)))` (inverse) or `S(T(x))` (expected).
    pub other: Tensor<B, 4>,
    /// `[batch, 1, h, w]` of 0/1, or `None` when every pixel is valid.
    pub mask: Option<Tensor<B, 4>>,
}

impl<B: Backend> MapPair<B> {
    /// A pair valid at every pixel.
    pub fn new(reference: Tensor<B, 4>, other: Tensor<B, 4>) -> Self {
        Self {
            reference,
            other,
            mask: None,
        }
    }

    /// The pairing of a horizontal flip, which is its own inverse: `S(x)` against
    /// `flip(S(flip(x)))`, every pixel valid. A pairing for [`SaliencyLoss::of_batch`]; the
    /// augmentations of salaug-augment give theirs with `Transfer::pair`.
    pub fn flip_back(original: Tensor<B, 4>, augmented: Tensor<B, 4>) -> Result<Self> {
        Ok(Self::new(original, augmented.flip([3])))
    }
}

/// `L_sal` of a batch `[x; T(x)]` and what its one forward pass gave.
#[derive(Debug, Clone)]
pub struct BatchSaliency<B: Backend> {
    /// `L_sal`, the mean over the pairs, `[1]`.
    pub loss: Tensor<B, 1>,
    /// The compared maps (reduced to one channel, not normalised) and their valid pixels.
    pub pair: MapPair<B>,
    /// Logits of `[x; T(x)]`, `[2·batch, classes]`.
    pub logits: Tensor<B, 2>,
    /// The requested features of `[x; T(x)]`, in order.
    pub features: Vec<Tensor<B, 4>>,
}

impl SaliencyLoss {
    /// `L_sal` of a batch `images = [x; T(x)]` (originals first, then their augmented images,
    /// in the same order): the maps of `method` for `explain` (which covers the whole batch),
    /// reduced to one channel, split into the originals' and the augmented images' halves,
    /// paired by `pair` (the augmentation's inverse warp or expected map, e.g.
    /// `|x, tx| transfer.pair(x, tx, compare)`), normalised and compared.
    ///
    /// At an autodiff level the loss is differentiable in the model's parameters (second
    /// order). This is the one way salaug computes `L_sal`: the training step, the metrics, the
    /// examples and the tests call it.
    ///
    /// # Shapes
    /// - `images`: `[2·batch, channels, height, width]`
    pub fn of_batch<B, M, S, E>(
        &self,
        model: &M,
        method: &S,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
        pair: impl FnOnce(Tensor<B, 4>, Tensor<B, 4>) -> core::result::Result<MapPair<B>, E>,
    ) -> core::result::Result<BatchSaliency<B>, E>
    where
        B: AutodiffBase,
        M: Lift<B>,
        S: SaliencyMethod,
        E: From<Error>,
    {
        check_pairs(&images.dims())?;
        let out = method.attribute(model, images, explain)?;
        let halves = self.reduce(out.maps).chunk(2, 0);
        let [originals, augmented] = [halves[0].clone(), halves[1].clone()];
        let pair = pair(originals, augmented)?;
        let loss = self.forward(
            pair.reference.clone(),
            pair.other.clone(),
            pair.mask.clone(),
        )?;
        Ok(BatchSaliency {
            loss,
            pair,
            logits: out.logits,
            features: out.features,
        })
    }
}

/// Checks that a saliency batch `[x; T(x)]` of `dims` holds an even, non-zero number of images.
pub(crate) fn check_pairs(dims: &[usize; 4]) -> Result<()> {
    let [both, channels, height, width] = *dims;
    if both == 0 || both % 2 != 0 {
        return Err(Error::Shape {
            what: "saliency batch [x; T(x)] (an even, non-zero number of images)",
            expected: vec![2 * both.div_ceil(2).max(1), channels, height, width],
            got: vec![both, channels, height, width],
        });
    }
    Ok(())
}

/// The distance used by the feature-invariance loss L_inv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FeatureDistance {
    /// Mean absolute difference.
    L1,
    /// Mean squared difference.
    #[default]
    L2,
}

/// L_inv: the mean over layers of the mean element-wise distance between the features of the
/// originals (`a`) and of the augmented images (`b`), layer by layer.
///
/// An empty list gives 0. Fails if the lists differ in length or a pair differs in shape.
pub fn invariance_loss<B: Backend>(
    a: &[Tensor<B, 4>],
    b: &[Tensor<B, 4>],
    distance: FeatureDistance,
    device: &B::Device,
) -> Result<Tensor<B, 1>> {
    check_shape(
        "invariance_loss feature lists (lengths)",
        &[a.len()],
        &[b.len()],
    )?;
    let mut total = Tensor::<B, 1>::zeros([1], device);
    for (fa, fb) in a.iter().zip(b) {
        check_shape("invariance_loss feature pair", &fa.dims(), &fb.dims())?;
        let diff = fa.clone() - fb.clone();
        let d = match distance {
            FeatureDistance::L1 => diff.abs().mean(),
            FeatureDistance::L2 => diff.powi_scalar(2).mean(),
        };
        total = total + d;
    }
    Ok(if a.is_empty() {
        total
    } else {
        total / a.len() as f64
    })
}

/// The weights of L = α·L_class + β·L_sal + γ·L_inv.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossWeights {
    /// α, weight of the classification loss.
    pub alpha: f64,
    /// β, weight of the saliency loss.
    pub beta: f64,
    /// γ, weight of the feature-invariance loss.
    pub gamma: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            beta: 1.0,
            gamma: 1.0,
        }
    }
}

impl LossWeights {
    /// Checks that every weight is finite and ≥ 0.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("loss.alpha", self.alpha),
            ("loss.beta", self.beta),
            ("loss.gamma", self.gamma),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(Error::InvalidSetting {
                    name,
                    value: value.to_string(),
                    reason: "loss weights must be finite numbers ≥ 0",
                });
            }
        }
        Ok(())
    }

    /// α·class + β·sal + γ·inv, leaving out the terms that are `None`.
    pub fn combine<B: Backend>(
        &self,
        class: Tensor<B, 1>,
        sal: Option<Tensor<B, 1>>,
        inv: Option<Tensor<B, 1>>,
    ) -> Tensor<B, 1> {
        let mut total = class * self.alpha;
        if let Some(sal) = sal {
            total = total + sal * self.beta;
        }
        if let Some(inv) = inv {
            total = total + inv * self.gamma;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{tensor4, values, TB};

    #[test]
    fn weights_combine_terms() {
        let dev = Default::default();
        let w = LossWeights {
            alpha: 2.0,
            beta: 3.0,
            gamma: 5.0,
        };
        let one = Tensor::<TB, 1>::ones([1], &dev);
        assert_eq!(
            values(w.combine(one.clone(), Some(one.clone()), Some(one.clone()))),
            [10.0]
        );
        assert_eq!(values(w.combine(one.clone(), None, Some(one))), [7.0]);
    }

    #[test]
    fn bad_weights_are_rejected_with_their_name() {
        let err = LossWeights {
            beta: f64::NAN,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("loss.beta"), "{err}");
        assert!(LossWeights {
            gamma: -1.0,
            ..Default::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn shape_mismatch_is_an_error_not_a_panic() {
        let loss = SaliencyLossConfig::default().init().unwrap();
        let a = tensor4::<TB>(&[0.0; 4], [1, 1, 2, 2]);
        let b = tensor4::<TB>(&[0.0; 2], [1, 1, 1, 2]);
        assert!(matches!(
            loss.forward(a.clone(), b, None),
            Err(Error::Shape { .. })
        ));
        let c = tensor4::<TB>(&[0.0; 8], [1, 2, 2, 2]);
        assert!(loss.forward(c.clone(), c, None).is_err());
    }

    #[test]
    fn invariance_loss_is_mean_over_layers() {
        let dev = Default::default();
        let a = vec![
            tensor4::<TB>(&[1.0, 1.0], [1, 2, 1, 1]),
            tensor4::<TB>(&[0.0], [1, 1, 1, 1]),
        ];
        let b = vec![
            tensor4::<TB>(&[0.0, 3.0], [1, 2, 1, 1]),
            tensor4::<TB>(&[2.0], [1, 1, 1, 1]),
        ];
        // layer 1: (1 + 4)/2 = 2.5, layer 2: 4 → mean 3.25
        assert_eq!(
            values(invariance_loss(&a, &b, FeatureDistance::L2, &dev).unwrap()),
            [3.25]
        );
        // layer 1: (1 + 2)/2 = 1.5, layer 2: 2 → mean 1.75
        assert_eq!(
            values(invariance_loss(&a, &b, FeatureDistance::L1, &dev).unwrap()),
            [1.75]
        );
        assert!(invariance_loss(&a[..1], &b, FeatureDistance::L1, &dev).is_err());
    }
}

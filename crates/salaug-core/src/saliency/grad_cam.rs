//! Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391).

use burn::tensor::{activation::relu, backend::Backend, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{Attribution, Explain, SaliencyMethod};
use crate::error::{Error, Result};
use crate::second_order::{layer_gradient, Lift};

/// The class activation map of a feature `A` (`[batch, K, h, w]`): channel weights
/// `α_k = mean_{i,j} ∂score/∂A_k[i, j]`, then `ReLU(Σ_k α_k·A_k)`, resized to the input with
/// [`resize_bilinear`]. The map has one channel.
///
/// Needs a model that passes the feature through [`crate::tap`] (every `salaug-models` model
/// does, for each of its named features). Trainable: `A` and `∂score/∂A` are both
/// differentiable in the weights (the second through the layers above `A`), and the weighting,
/// the ReLU and the resize are ordinary differentiable operations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradCam {
    /// The feature (one of the model's tap names); `None`: the model's
    /// [`cam_layer`](crate::Classifier::cam_layer), its last convolutional stage.
    #[serde(default)]
    pub layer: Option<String>,
}

impl GradCam {
    /// Grad-CAM at the feature `layer`.
    pub fn at(layer: impl Into<String>) -> Self {
        Self {
            layer: Some(layer.into()),
        }
    }
}

impl SaliencyMethod for GradCam {
    fn attribute<B: Backend, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>> {
        let [_, _, height, width] = images.dims();
        let layer = match &self.layer {
            Some(layer) => layer.clone(),
            None => model.cam_layer().ok_or_else(|| Error::Unsupported {
                what: format!(
                    "Grad-CAM without a layer: this model names no default; set \
                     grad_cam.layer to one of {:?}",
                    model.feature_names()
                ),
            })?,
        };
        let out = layer_gradient(model, images, explain, &layer)?;
        let [batch, channels, _, _] = out.gradient.dims();
        let alpha = out
            .gradient
            .mean_dim(3)
            .mean_dim(2)
            .reshape([batch, channels, 1, 1]);
        let cam = relu((out.activation * alpha).sum_dim(1)); // [batch, 1, h, w]
        Ok(Attribution {
            maps: resize_bilinear(cam, [height, width]),
            logits: out.logits,
            features: out.features,
        })
    }
}

/// Bilinear resize with half-pixel centres (PyTorch's `interpolate(mode="bilinear",
/// align_corners=False)`, OpenCV's `resize`), written as two products with constant
/// interpolation matrices, `R_h · x · R_wᵀ`, which are differentiable to any order (burn
/// 0.21's `interpolate` is not twice differentiable).
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]`
/// - output: `[batch, channels, height, width]`
pub fn resize_bilinear<B: Backend>(x: Tensor<B, 4>, [height, width]: [usize; 2]) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    if (h, w) == (height, width) {
        return x;
    }
    let device = x.device();
    let cols = interpolation_matrix::<B>(w, width, &device); // [w, width]
    let rows = interpolation_matrix::<B>(h, height, &device); // [h, height]
    let x = x.reshape([n * c * h, w]).matmul(cols); // [n·c·h, width]
    let x = x.reshape([n, c, h, width]).swap_dims(2, 3); // [n, c, width, h]
    let x = x.reshape([n * c * width, h]).matmul(rows); // [n·c·width, height]
    x.reshape([n, c, width, height]).swap_dims(2, 3)
}

/// `[len, out]` matrix whose column `i` holds the two weights of output `i`: source position
/// `max(0, (i + ½)·len/out − ½)`, its floor and the next sample (clamped at the edge).
fn interpolation_matrix<B: Backend>(len: usize, out: usize, device: &B::Device) -> Tensor<B, 2> {
    let mut m = vec![0.0f64; len * out];
    for i in 0..out {
        let src = ((i as f64 + 0.5) * len as f64 / out as f64 - 0.5).max(0.0);
        let lo = (src.floor() as usize).min(len - 1);
        let hi = (lo + 1).min(len - 1);
        let frac = src - lo as f64;
        m[lo * out + i] += 1.0 - frac;
        m[hi * out + i] += frac;
    }
    Tensor::from_data(
        TensorData::new(m, [len, out]).convert::<B::FloatElem>(),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{tensor4, values, TB};

    #[test]
    fn bilinear_resize_matches_pytorch_values() {
        // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4),
        // mode="bilinear", align_corners=False)
        let x = tensor4::<TB>(&[1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2]);
        let expected = [
            1.0, 1.25, 1.75, 2.0, //
            1.5, 1.75, 2.25, 2.5, //
            2.5, 2.75, 3.25, 3.5, //
            3.0, 3.25, 3.75, 4.0,
        ];
        let got = values(resize_bilinear(x, [4, 4]));
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-12, "{got:?}");
        }
        // Down to 1×1: the centre, the mean of the four; to 2×3: rows kept, columns mixed.
        let x = tensor4::<TB>(&[1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2]);
        assert_eq!(values(resize_bilinear(x.clone(), [1, 1])), [2.5]);
        let got = values(resize_bilinear(x, [2, 3]));
        let expected = [1.0, 1.5, 2.0, 3.0, 3.5, 4.0];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-12, "{got:?}");
        }
    }
}

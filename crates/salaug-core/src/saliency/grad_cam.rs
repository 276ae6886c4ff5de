//! Grad-CAM (Selvaraju et al. 2017, <https://arxiv.org/abs/1610.02391>).

use burn::tensor::{activation::relu, Tensor};
use serde::{Deserialize, Serialize};

use super::{Attribution, Explain, SaliencyMethod};
use crate::error::{Error, Result};
use crate::resample::resize_bilinear;
use crate::second_order::{layer_gradient, AutodiffBase, Lift};

/// The class activation map of a feature `A` (`[batch, K, h, w]`): channel weights
/// `α_k = mean_{i,j} ∂score/∂A_k[i, j]`, then `ReLU(Σ_k α_k·A_k)`, resized to the input with
/// [`resize_bilinear`](crate::resample::resize_bilinear). The map has one channel.
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
    fn attribute<B: AutodiffBase, M: Lift<B>>(
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

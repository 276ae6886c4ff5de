//! Saliency methods: each one turns a model, images and target classes into raw maps.
//!
//! Every method is one unit (one file) implementing [`SaliencyMethod`]. Maps come back at the
//! model's own backend level with their graph to the parameters intact, so a loss on them is
//! trainable (second order). [`SaliencyKind`] names the methods in configs.
//!
//! Methods that change the backward rule of ReLU (guided backprop, DeconvNet) or need an inner
//! layer's gradient (Grad-CAM) slot in as further units; they need a model hook and are not
//! provided yet.

mod gradient;
mod input_x_gradient;
mod smooth_grad;

pub use gradient::Gradient;
pub use input_x_gradient::InputXGradient;
pub use smooth_grad::SmoothGrad;

use burn::tensor::{backend::Backend, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::second_order::Lift;

/// Raw saliency maps plus what the same forward pass produced.
#[derive(Debug, Clone)]
pub struct Attribution<B: Backend> {
    /// Raw maps, `[batch, channels, height, width]` (reduce them with
    /// [`ChannelReduction`](crate::ChannelReduction)).
    pub maps: Tensor<B, 4>,
    /// Logits of the images, `[batch, classes]`, usable for the classification loss.
    pub logits: Tensor<B, 2>,
    /// Requested feature taps, in order.
    pub features: Vec<Tensor<B, 4>>,
}

/// A saliency (attribution) method.
pub trait SaliencyMethod {
    /// Raw maps of `images` for the classes `targets` (`[batch]`), plus the logits and the
    /// features named in `taps` from the same forward pass.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - `targets`: `[batch]`
    /// - maps: same shape as `images`
    fn attribute<B: Backend, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        targets: Tensor<B, 1, Int>,
        taps: &[String],
    ) -> Result<Attribution<B>>;

    /// Whether the maps are multiplied by the input (gradient × input style).
    fn multiplies_by_input(&self) -> bool {
        false
    }
}

/// The saliency methods by name, for configs and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SaliencyKind {
    /// Vanilla gradient of the label's logit (the paper's eq. 1).
    #[default]
    Gradient,
    /// Gradient × input.
    InputXGradient,
}

impl SaliencyMethod for SaliencyKind {
    fn attribute<B: Backend, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        targets: Tensor<B, 1, Int>,
        taps: &[String],
    ) -> Result<Attribution<B>> {
        match self {
            SaliencyKind::Gradient => Gradient.attribute(model, images, targets, taps),
            SaliencyKind::InputXGradient => InputXGradient.attribute(model, images, targets, taps),
        }
    }

    fn multiplies_by_input(&self) -> bool {
        matches!(self, SaliencyKind::InputXGradient)
    }
}

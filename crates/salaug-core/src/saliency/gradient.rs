//! Vanilla gradient saliency (Simonyan et al. 2014, https://arxiv.org/abs/1312.6034).

use burn::tensor::{backend::Backend, Int, Tensor};

use super::{Attribution, SaliencyMethod};
use crate::error::Result;
use crate::second_order::{input_gradient, Lift};

/// The gradient of the target class's logit with respect to the input pixels (paper eq. 1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gradient;

impl SaliencyMethod for Gradient {
    fn attribute<B: Backend, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        targets: Tensor<B, 1, Int>,
        taps: &[String],
    ) -> Result<Attribution<B>> {
        let out = input_gradient(model, images, targets, taps)?;
        Ok(Attribution {
            maps: out.gradient,
            logits: out.logits,
            features: out.features,
        })
    }
}

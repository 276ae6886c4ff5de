//! Gradient × input (Shrikumar et al. 2016, https://arxiv.org/abs/1605.01713).

use burn::tensor::{backend::Backend, Int, Tensor};

use super::{Attribution, SaliencyMethod};
use crate::error::Result;
use crate::second_order::{input_gradient, Lift};

/// The input gradient of the target logit multiplied element-wise by the input.
#[derive(Debug, Clone, Copy, Default)]
pub struct InputXGradient;

impl SaliencyMethod for InputXGradient {
    fn attribute<B: Backend, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        targets: Tensor<B, 1, Int>,
        taps: &[String],
    ) -> Result<Attribution<B>> {
        let out = input_gradient(model, images.clone(), targets, taps)?;
        Ok(Attribution {
            maps: out.gradient * images,
            logits: out.logits,
            features: out.features,
        })
    }

    fn multiplies_by_input(&self) -> bool {
        true
    }
}

//! Gradient × input (Shrikumar et al. 2016, <https://arxiv.org/abs/1605.01713>).

use burn::tensor::Tensor;

use super::{Attribution, Explain, SaliencyMethod};
use crate::error::Result;
use crate::second_order::{input_gradient, AutodiffBase, Lift};

/// The input gradient of the target score multiplied element-wise by the input.
#[derive(Debug, Clone, Copy, Default)]
pub struct InputXGradient;

impl SaliencyMethod for InputXGradient {
    fn attribute<B: AutodiffBase, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>> {
        let mut out: Attribution<B> = input_gradient(model, images.clone(), explain)?.into();
        out.maps = out.maps * images;
        Ok(out)
    }
}

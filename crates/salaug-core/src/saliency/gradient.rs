//! Vanilla gradient saliency (Simonyan et al. 2014, <https://arxiv.org/abs/1312.6034>).

use burn::tensor::Tensor;

use super::{Attribution, Explain, SaliencyMethod};
use crate::error::Result;
use crate::second_order::{input_gradient, AutodiffBase, Lift};

/// The gradient of the target score with respect to the input pixels (paper eq. 1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gradient;

impl SaliencyMethod for Gradient {
    fn attribute<B: AutodiffBase, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>> {
        Ok(input_gradient(model, images, explain)?.into())
    }
}

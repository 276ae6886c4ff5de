//! Guided backpropagation (Springenberg et al. 2015, <https://arxiv.org/abs/1412.6806>).

use burn::tensor::Tensor;

use super::{Attribution, Explain, SaliencyMethod};
use crate::error::Result;
use crate::second_order::{ruled_input_gradient, AutodiffBase, Lift, ReluRule};

/// The input gradient with every ReLU passing back only positive gradient where its input was
/// positive: `R_in = (f > 0)·(R > 0)·R` (the paper's eq. 4, [`ReluRule::Guided`]).
///
/// Needs a model whose ReLUs are [`crate::relu`] (every `salaug-models` model); a forward
/// that computes no ReLU through it is an error. Trainable: the masks are constants almost
/// everywhere, so the map's derivative in the weights is that of the masked chain of weights.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuidedBackprop;

impl SaliencyMethod for GuidedBackprop {
    fn attribute<B: AutodiffBase, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>> {
        Ok(ruled_input_gradient(model, images, explain, ReluRule::Guided)?.into())
    }
}

//! DeconvNet (Zeiler & Fergus 2014, <https://arxiv.org/abs/1311.2901>).

use burn::tensor::Tensor;

use super::{Attribution, Explain, SaliencyMethod};
use crate::error::Result;
use crate::second_order::{ruled_input_gradient, AutodiffBase, Lift, ReluRule};

/// The input gradient with every ReLU passing back the positive part of its incoming gradient,
/// whatever its forward input was: `R_in = (R > 0)·R` (the paper's eq. 4,
/// [`ReluRule::Deconv`]).
///
/// Needs a model whose ReLUs are [`crate::relu`] (every `salaug-models` model); a forward
/// that computes no ReLU through it is an error. Trainable as [`super::GuidedBackprop`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DeconvNet;

impl SaliencyMethod for DeconvNet {
    fn attribute<B: AutodiffBase, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>> {
        Ok(ruled_input_gradient(model, images, explain, ReluRule::Deconv)?.into())
    }
}

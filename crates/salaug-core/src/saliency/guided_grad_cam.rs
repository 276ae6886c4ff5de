//! Guided Grad-CAM (Selvaraju et al. 2017): the guided map weighted by the class activation map.

use burn::tensor::Tensor;

use super::{Attribution, Explain, GradCam, GuidedBackprop, SaliencyMethod};
use crate::error::Result;
use crate::second_order::{AutodiffBase, Lift};

/// [`GuidedBackprop`]'s map multiplied pixel by pixel by [`GradCam`]'s (resized to the input),
/// from two passes one level up. The logits and features are those of the guided pass, and
/// only that pass updates BatchNorm's running statistics when asked to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuidedGradCam(pub GradCam);

impl SaliencyMethod for GuidedGradCam {
    fn attribute<B: AutodiffBase, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>> {
        let mut out = GuidedBackprop.attribute(model, images.clone(), explain)?;
        let cam = self.0.attribute(model, images, &explain.again())?;
        out.maps = out.maps * cam.maps;
        Ok(out)
    }
}

//! The one trait a model implements to be used with salaug.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::error::{Error, Result};

/// An image classifier: images in, logits out, and optionally named intermediate features.
///
/// Implement it generically (`impl<B: Backend> Classifier<B> for MyNet<B>`) so that the same
/// model can run one autodiff level up (see [`crate::second_order`]). The forward must be twice
/// differentiable: in burn 0.21 that rules out `nn::Linear`, the pooling modules and
/// `interpolate` (they panic under double backward) and `max_pool1d`/`repeat_dim` (silently
/// wrong). `salaug-models` ships safe replacements.
pub trait Classifier<B: Backend>: Module<B> {
    /// Logits of `images`.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - output: `[batch, num_classes]`
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2>;

    /// Names of the intermediate features this model can return (stage outputs), in forward order.
    fn feature_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// The feature where Grad-CAM looks when no layer is given: by convention the last
    /// convolutional stage. `None` (the default): Grad-CAM needs an explicit layer.
    fn cam_layer(&self) -> Option<String> {
        None
    }

    /// Logits plus the features named in `taps`, in the order of `taps`, from one forward pass.
    ///
    /// Features are 4-D (`[batch, channels, h, w]`; pooled vectors are `[batch, channels, 1, 1]`).
    /// The default implementation exposes no features and only accepts an empty `taps`.
    fn logits_and_features(
        &self,
        images: Tensor<B, 4>,
        taps: &[String],
    ) -> Result<(Tensor<B, 2>, Vec<Tensor<B, 4>>)> {
        match taps.first() {
            None => Ok((self.logits(images), Vec::new())),
            Some(name) => Err(Error::UnknownTap {
                name: name.clone(),
                available: self.feature_names(),
            }),
        }
    }
}

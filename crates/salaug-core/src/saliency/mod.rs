//! Saliency methods: each one turns a model, images and what to explain into raw maps.
//!
//! Every method is one unit (one file) implementing [`SaliencyMethod`]. Maps come back at the
//! model's own backend level with their graph to the parameters intact, so a loss on them is
//! trainable (second order). [`SaliencyKind`] names the methods in configs; the whole
//! `[x; T(x)] → L_sal` pipeline is [`SaliencyLoss::of_batch`](crate::SaliencyLoss::of_batch).
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

/// The score a map explains: its input gradient is the map.
#[derive(Debug, Clone)]
pub enum Target<B: Backend> {
    /// Each image's logit of one class, `[batch]` class indices (the paper's eq. 1).
    Class(Tensor<B, 1, Int>),
    /// `Σ_k w[i, k] · logit[i, k]` for soft labels `[batch, classes]`: a MixUp or CutMix image
    /// explains the mixture of its sources' labels. One-hot rows give exactly [`Target::Class`].
    Weights(Tensor<B, 2>),
}

/// What a saliency computation is asked: the target score, the feature taps to return from the
/// same forward pass, and whether that forward updates BatchNorm's running statistics.
#[derive(Debug, Clone)]
pub struct Explain<'a, B: Backend> {
    /// The score whose input gradient is the map.
    pub target: Target<B>,
    /// Features to return (by the model's tap names), in order.
    pub taps: &'a [String],
    /// Whether the forward pass writes BatchNorm's running statistics back into the model, as
    /// a training forward at the model's level does (a training step's one forward). Off, the
    /// model's statistics are left alone.
    pub update_running_stats: bool,
}

impl<'a, B: Backend> Explain<'a, B> {
    /// Explain each image's class `classes[i]` (`[batch]`); no taps, statistics left alone.
    pub fn class(classes: Tensor<B, 1, Int>) -> Self {
        Self::target(Target::Class(classes))
    }

    /// Explain each image's soft label `weights[i]` (`[batch, classes]`).
    pub fn weights(weights: Tensor<B, 2>) -> Self {
        Self::target(Target::Weights(weights))
    }

    fn target(target: Target<B>) -> Self {
        Self {
            target,
            taps: &[],
            update_running_stats: false,
        }
    }

    /// Also return these features of the same forward pass.
    pub fn with_taps(mut self, taps: &'a [String]) -> Self {
        self.taps = taps;
        self
    }

    /// Let the forward pass update BatchNorm's running statistics (see the field).
    pub fn updating_running_stats(mut self) -> Self {
        self.update_running_stats = true;
        self
    }
}

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

impl<B: Backend> From<crate::second_order::InputGradient<B>> for Attribution<B> {
    /// The input gradient as the raw maps, with the logits and features of its forward pass.
    fn from(out: crate::second_order::InputGradient<B>) -> Self {
        Attribution {
            maps: out.gradient,
            logits: out.logits,
            features: out.features,
        }
    }
}

/// A saliency (attribution) method.
pub trait SaliencyMethod {
    /// Raw maps of `images` for the score `explain.target`, plus the logits and the features
    /// named in `explain.taps` from the same forward pass.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - maps: same shape as `images`
    fn attribute<B: Backend, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>>;
}

impl<S: SaliencyMethod + ?Sized> SaliencyMethod for Box<S> {
    fn attribute<B: Backend, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>> {
        (**self).attribute(model, images, explain)
    }
}

/// The saliency methods by name, for configs and the CLI.
///
/// In TOML: `method = "gradient"`, `method = "input_x_gradient"`, or SmoothGrad around either,
/// `method = { smooth_grad = { of = "gradient", samples = 10, noise_level = 0.15 } }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SaliencyKind {
    /// Vanilla gradient of the label's logit (the paper's eq. 1).
    #[default]
    Gradient,
    /// Gradient × input.
    InputXGradient,
    /// SmoothGrad: the mean map of noisy copies, around any method.
    SmoothGrad(SmoothGrad<Box<SaliencyKind>>),
}

impl SaliencyKind {
    /// Checks the method's settings (SmoothGrad's sample count and noise level).
    pub fn validate(&self) -> Result<()> {
        match self {
            SaliencyKind::Gradient | SaliencyKind::InputXGradient => Ok(()),
            SaliencyKind::SmoothGrad(s) => {
                s.validate()?;
                s.inner.validate()
            }
        }
    }
}

impl SaliencyMethod for SaliencyKind {
    fn attribute<B: Backend, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>> {
        match self {
            SaliencyKind::Gradient => Gradient.attribute(model, images, explain),
            SaliencyKind::InputXGradient => InputXGradient.attribute(model, images, explain),
            SaliencyKind::SmoothGrad(s) => s.attribute(model, images, explain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        method: SaliencyKind,
    }

    fn parse(text: &str) -> std::result::Result<SaliencyKind, String> {
        toml::from_str::<Holder>(text)
            .map(|h| h.method)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_method_is_named_in_configs() {
        assert_eq!(
            parse("method = \"gradient\"").unwrap(),
            SaliencyKind::Gradient
        );
        assert_eq!(
            parse("method = \"input_x_gradient\"").unwrap(),
            SaliencyKind::InputXGradient
        );
        let s =
            parse("method = { smooth_grad = { of = \"input_x_gradient\", samples = 4 } }").unwrap();
        assert_eq!(
            s,
            SaliencyKind::SmoothGrad(SmoothGrad {
                inner: Box::new(SaliencyKind::InputXGradient),
                samples: 4,
                noise_level: 0.15,
            })
        );
        s.validate().unwrap();
        assert!(parse("method = \"guided\"").is_err());
        assert!(parse("method = { smooth_grad = { of = \"gradient\", sample = 4 } }").is_err());
    }

    #[test]
    fn bad_smooth_grad_settings_are_rejected_with_their_name() {
        let s = parse("method = { smooth_grad = { of = \"gradient\", samples = 0 } }").unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("smooth_grad.samples"), "{err}");
        let s =
            parse("method = { smooth_grad = { of = \"gradient\", noise_level = -1.0 } }").unwrap();
        assert!(s.validate().is_err());
    }
}

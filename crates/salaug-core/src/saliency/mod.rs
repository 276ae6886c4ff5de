//! Saliency methods: each one turns a model, images and what to explain into raw maps.
//!
//! Every method is one unit (one file) implementing [`SaliencyMethod`]. Maps come back at the
//! model's own backend level with their graph to the parameters intact, so a loss on them is
//! trainable (second order). [`SaliencyKind`] names the methods in configs; the whole
//! `[x; T(x)] → L_sal` pipeline is [`SaliencyLoss::of_batch`](crate::SaliencyLoss::of_batch).
//!
//! Methods that change the backward rule of ReLU ([`GuidedBackprop`], [`DeconvNet`]) or need an
//! inner feature's gradient ([`GradCam`], [`GuidedGradCam`]) reach into the model through its
//! hooks ([`crate::relu`], [`crate::tap`]); every `salaug-models` model has them.

mod deconvnet;
mod grad_cam;
mod gradient;
mod guided_backprop;
mod guided_grad_cam;
mod input_x_gradient;
mod smooth_grad;

pub use deconvnet::DeconvNet;
pub use grad_cam::GradCam;
pub use gradient::Gradient;
pub use guided_backprop::GuidedBackprop;
pub use guided_grad_cam::GuidedGradCam;
pub use input_x_gradient::InputXGradient;
pub use smooth_grad::SmoothGrad;

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::second_order::{AutodiffBase, Explain, Lift};

/// Raw saliency maps plus what the same forward pass produced.
#[derive(Debug, Clone)]
pub struct Attribution<B: Backend> {
    /// Raw maps, `[batch, channels, height, width]`, or `[batch, 1, height, width]` for the
    /// class activation maps (reduce them with [`ChannelReduction`](crate::ChannelReduction)).
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
    /// - maps: same shape as `images` (one channel for [`GradCam`])
    fn attribute<B: AutodiffBase, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>>;
}

impl<S: SaliencyMethod + ?Sized> SaliencyMethod for Box<S> {
    fn attribute<B: AutodiffBase, M: Lift<B>>(
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
/// One spelling everywhere: on the command line ([`str::parse`]) and in configs alike a method
/// is named `"gradient"`, `"input_x_gradient"`, `"guided_backprop"`, `"deconvnet"`,
/// `"grad_cam"` (the model's default layer) or `"grad_cam:layer4"`, the same for
/// `guided_grad_cam`, and `"smooth_grad"` (around the gradient) or `"smooth_grad:<method>"`
/// (10 samples, noise level 0.15). A config may also give the settings as a table:
/// `method = { grad_cam = { layer = "layer4" } }`,
/// `method = { smooth_grad = { of = "gradient", samples = 10, noise_level = 0.15 } }`.
/// Serialised, a method is its name, or the table where it has settings.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SaliencyKind {
    /// Vanilla gradient of the label's logit (the paper's eq. 1).
    #[default]
    Gradient,
    /// Gradient × input.
    InputXGradient,
    /// Guided backpropagation (the paper's eq. 4, first rule).
    GuidedBackprop,
    /// DeconvNet (the paper's eq. 4, second rule).
    #[serde(rename = "deconvnet")]
    DeconvNet,
    /// Grad-CAM at a feature.
    GradCam(GradCam),
    /// Guided Grad-CAM: the guided map times Grad-CAM's, at a feature.
    GuidedGradCam(GradCam),
    /// SmoothGrad: the mean map of noisy copies, around any method.
    SmoothGrad(SmoothGrad<Box<SaliencyKind>>),
}

impl SaliencyKind {
    /// Every method once, at its defaults (Grad-CAM at the model's default layer, SmoothGrad
    /// around the gradient), in the order of the enum: the list that the method tests of
    /// salaug-core, salaug-models and salaug-train iterate. A new method is one unit (its
    /// file), one variant (the compiler then asks for its arms in `name`, `attribute` and
    /// `uses_hooks`), one arm of `FromStr` with its name in the parse error (a test checks the
    /// message names every entry here) and one entry here.
    pub fn every() -> Vec<SaliencyKind> {
        vec![
            SaliencyKind::Gradient,
            SaliencyKind::InputXGradient,
            SaliencyKind::GuidedBackprop,
            SaliencyKind::DeconvNet,
            SaliencyKind::GradCam(GradCam::default()),
            SaliencyKind::GuidedGradCam(GradCam::default()),
            SaliencyKind::SmoothGrad(SmoothGrad::with_defaults(Box::new(SaliencyKind::Gradient))),
        ]
    }

    /// Whether the method reaches into the model's forward through its hooks
    /// ([`crate::relu`] or [`crate::tap`]), so that only models written with them support it.
    pub fn uses_hooks(&self) -> bool {
        match self {
            SaliencyKind::Gradient | SaliencyKind::InputXGradient => false,
            SaliencyKind::GuidedBackprop
            | SaliencyKind::DeconvNet
            | SaliencyKind::GradCam(_)
            | SaliencyKind::GuidedGradCam(_) => true,
            SaliencyKind::SmoothGrad(s) => s.inner.uses_hooks(),
        }
    }

    /// Checks the method's settings (SmoothGrad's sample count and noise level).
    pub fn validate(&self) -> Result<()> {
        match self {
            SaliencyKind::SmoothGrad(s) => {
                s.validate()?;
                s.inner.validate()
            }
            _ => Ok(()),
        }
    }

    /// The name on the command line, e.g. `gradient`, `grad_cam:layer4`,
    /// `smooth_grad:guided_backprop` (SmoothGrad's settings are not part of it).
    pub fn name(&self) -> String {
        let cam = |base: &str, g: &GradCam| match &g.layer {
            Some(layer) => format!("{base}:{layer}"),
            None => base.to_string(),
        };
        match self {
            SaliencyKind::Gradient => "gradient".into(),
            SaliencyKind::InputXGradient => "input_x_gradient".into(),
            SaliencyKind::GuidedBackprop => "guided_backprop".into(),
            SaliencyKind::DeconvNet => "deconvnet".into(),
            SaliencyKind::GradCam(g) => cam("grad_cam", g),
            SaliencyKind::GuidedGradCam(g) => cam("guided_grad_cam", g),
            SaliencyKind::SmoothGrad(s) => format!("smooth_grad:{}", s.inner.name()),
        }
    }
}

impl core::str::FromStr for SaliencyKind {
    type Err = Error;

    /// Parses [`SaliencyKind::name`]'s form.
    fn from_str(text: &str) -> Result<Self> {
        let (head, rest) = match text.split_once(':') {
            Some((head, rest)) => (head, Some(rest)),
            None => (text, None),
        };
        let layer = || GradCam {
            layer: rest.map(str::to_string),
        };
        let kind = match (head, rest) {
            ("gradient", None) => SaliencyKind::Gradient,
            ("input_x_gradient", None) => SaliencyKind::InputXGradient,
            ("guided_backprop", None) => SaliencyKind::GuidedBackprop,
            ("deconvnet", None) => SaliencyKind::DeconvNet,
            ("grad_cam", _) => SaliencyKind::GradCam(layer()),
            ("guided_grad_cam", _) => SaliencyKind::GuidedGradCam(layer()),
            ("smooth_grad", inner) => SaliencyKind::SmoothGrad(SmoothGrad::with_defaults(
                Box::new(inner.map_or(Ok(SaliencyKind::Gradient), str::parse)?),
            )),
            _ => {
                return Err(Error::InvalidSetting {
                    name: "saliency method",
                    value: text.to_string(),
                    reason: "expected gradient, input_x_gradient, guided_backprop, deconvnet, \
                             grad_cam[:layer], guided_grad_cam[:layer] or smooth_grad[:<method>]",
                })
            }
        };
        Ok(kind)
    }
}

impl<'de> Deserialize<'de> for SaliencyKind {
    /// A name ([`str::parse`]'s form) or a one-key table of a method with settings.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        use serde::de::{Error as _, MapAccess, Visitor};
        struct Kind;
        impl<'de> Visitor<'de> for Kind {
            type Value = SaliencyKind;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a saliency method name or a table such as { grad_cam = { layer = \"layer4\" } }")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> core::result::Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> core::result::Result<Self::Value, A::Error> {
                let key: String = map
                    .next_key()?
                    .ok_or_else(|| A::Error::custom("an empty table names no saliency method"))?;
                let kind = match key.as_str() {
                    "grad_cam" => SaliencyKind::GradCam(map.next_value()?),
                    "guided_grad_cam" => SaliencyKind::GuidedGradCam(map.next_value()?),
                    "smooth_grad" => SaliencyKind::SmoothGrad(map.next_value()?),
                    other => {
                        return Err(A::Error::custom(format!(
                            "unknown saliency method table `{other}`: tables are for grad_cam, \
                             guided_grad_cam and smooth_grad; name the others as strings"
                        )))
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(A::Error::custom(format!(
                        "a saliency method table names one method, not also `{extra}`"
                    )));
                }
                Ok(kind)
            }
        }
        d.deserialize_any(Kind)
    }
}

impl SaliencyMethod for SaliencyKind {
    fn attribute<B: AutodiffBase, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>> {
        match self {
            SaliencyKind::Gradient => Gradient.attribute(model, images, explain),
            SaliencyKind::InputXGradient => InputXGradient.attribute(model, images, explain),
            SaliencyKind::GuidedBackprop => GuidedBackprop.attribute(model, images, explain),
            SaliencyKind::DeconvNet => DeconvNet.attribute(model, images, explain),
            SaliencyKind::GradCam(g) => g.attribute(model, images, explain),
            SaliencyKind::GuidedGradCam(g) => {
                GuidedGradCam(g.clone()).attribute(model, images, explain)
            }
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
        assert_eq!(
            parse("method = \"guided_backprop\"").unwrap(),
            SaliencyKind::GuidedBackprop
        );
        assert_eq!(
            parse("method = \"deconvnet\"").unwrap(),
            SaliencyKind::DeconvNet
        );
        assert_eq!(
            parse("method = { grad_cam = {} }").unwrap(),
            SaliencyKind::GradCam(GradCam::default())
        );
        assert_eq!(
            parse("method = { guided_grad_cam = { layer = \"layer4\" } }").unwrap(),
            SaliencyKind::GuidedGradCam(GradCam::at("layer4"))
        );
        assert!(parse("method = { grad_cam = { layers = \"x\" } }").is_err());
        assert!(parse("method = \"guided\"").is_err());
        // The command line's names are a config's too.
        assert_eq!(
            parse("method = \"grad_cam\"").unwrap(),
            SaliencyKind::GradCam(GradCam::default())
        );
        assert_eq!(
            parse("method = \"guided_grad_cam:layer4\"").unwrap(),
            SaliencyKind::GuidedGradCam(GradCam::at("layer4"))
        );
        assert_eq!(
            parse("method = \"smooth_grad\"").unwrap(),
            SaliencyKind::SmoothGrad(SmoothGrad::with_defaults(Box::new(SaliencyKind::Gradient)))
        );
        assert!(parse("method = { gradient = {} }").is_err());
        assert!(parse("method = { smooth_grad = { of = \"gradient\", sample = 4 } }").is_err());
    }

    /// [`SaliencyKind::every`] names each method once, by a name that parses back to it and
    /// that the parse error lists.
    #[test]
    fn every_method_is_listed_once() {
        let every = SaliencyKind::every();
        let names: std::collections::HashSet<String> = every.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), every.len());
        let err = "nope".parse::<SaliencyKind>().unwrap_err().to_string();
        for kind in &every {
            let head = kind.name();
            let head = head.split(':').next().unwrap();
            assert!(err.contains(head), "{head} missing from: {err}");
            assert_eq!(kind.name().parse::<SaliencyKind>().unwrap(), *kind);
        }
    }

    #[test]
    fn command_line_names_round_trip() {
        for name in [
            "gradient",
            "input_x_gradient",
            "guided_backprop",
            "deconvnet",
            "grad_cam",
            "grad_cam:layer4",
            "guided_grad_cam:block2",
            "smooth_grad:guided_backprop",
            "smooth_grad:smooth_grad:grad_cam:pool",
        ] {
            let kind: SaliencyKind = name.parse().unwrap();
            assert_eq!(kind.name(), name);
        }
        assert_eq!(
            "grad_cam:stage5".parse::<SaliencyKind>().unwrap(),
            SaliencyKind::GradCam(GradCam::at("stage5"))
        );
        assert_eq!(
            "smooth_grad".parse::<SaliencyKind>().unwrap(),
            "smooth_grad:gradient".parse::<SaliencyKind>().unwrap()
        );
        for bad in ["guided", "gradient:x", "smooth_grad:nope", ""] {
            let err = bad.parse::<SaliencyKind>().unwrap_err().to_string();
            assert!(err.contains("saliency method"), "{bad}: {err}");
        }
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

//! SmoothGrad (Smilkov et al. 2017, <https://arxiv.org/abs/1706.03825>): a wrapper over any method.

use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

use super::{Attribution, Explain, SaliencyMethod};
use crate::error::{Error, Result};
use crate::second_order::{AutodiffBase, Lift};

/// Averages the maps of `samples` noisy copies of the images (Gaussian noise with standard
/// deviation `noise_level × (max − min)` of each image).
///
/// The logits and features returned are those of the first noisy copy, and only that copy's
/// forward updates BatchNorm's running statistics when asked to. The noise comes from the
/// backend's seeded generator (`B::seed`), so runs are reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmoothGrad<S> {
    /// The wrapped method (`of` in configs).
    #[serde(rename = "of")]
    pub inner: S,
    /// Number of noisy copies (≥ 1; ours: 10 when not given).
    #[serde(default = "default_samples")]
    pub samples: usize,
    /// Noise standard deviation relative to each image's value range (default 0.15, the
    /// SmoothGrad paper's recommended 10–20 %).
    #[serde(default = "default_noise_level")]
    pub noise_level: f64,
}

fn default_samples() -> usize {
    10
}

fn default_noise_level() -> f64 {
    0.15
}

impl<S> SmoothGrad<S> {
    /// Wraps `inner` with noise level 0.15 and `samples` copies.
    pub fn new(inner: S, samples: usize) -> Self {
        Self {
            inner,
            samples,
            noise_level: default_noise_level(),
        }
    }

    /// Wraps `inner` with the default settings (10 copies, noise level 0.15), as a config that
    /// names only `of` gets.
    pub fn with_defaults(inner: S) -> Self {
        Self::new(inner, default_samples())
    }

    /// Checks the sample count and the noise level.
    pub fn validate(&self) -> Result<()> {
        if self.samples == 0 {
            return Err(Error::InvalidSetting {
                name: "smooth_grad.samples",
                value: "0".into(),
                reason: "at least one noisy copy is needed",
            });
        }
        if !(self.noise_level >= 0.0 && self.noise_level.is_finite()) {
            return Err(Error::InvalidSetting {
                name: "smooth_grad.noise_level",
                value: self.noise_level.to_string(),
                reason: "must be a finite number ≥ 0",
            });
        }
        Ok(())
    }
}

impl<S: SaliencyMethod> SaliencyMethod for SmoothGrad<S> {
    fn attribute<B: AutodiffBase, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
    ) -> Result<Attribution<B>> {
        self.validate()?;
        let [batch, channels, height, width] = images.dims();
        let flat = images
            .clone()
            .detach()
            .reshape([batch, channels * height * width]);
        let range = (flat.clone().max_dim(1) - flat.min_dim(1)).reshape([batch, 1, 1, 1]);
        let sigma = range * self.noise_level;
        let mut first: Option<Attribution<B>> = None;
        let mut sum: Option<Tensor<B, 4>> = None;
        let mut explain = explain.clone();
        for _ in 0..self.samples {
            let noise = Tensor::<B, 4>::random(
                images.shape(),
                Distribution::Normal(0.0, 1.0),
                &images.device(),
            ) * sigma.clone();
            let out = self
                .inner
                .attribute(model, images.clone() + noise, &explain)?;
            explain = explain.again();
            sum = Some(match sum {
                None => out.maps.clone(),
                Some(acc) => acc + out.maps.clone(),
            });
            first.get_or_insert(out);
        }
        let mut out = first.expect("samples ≥ 1");
        out.maps = sum.expect("samples ≥ 1") / self.samples as f64;
        Ok(out)
    }
}

//! SmoothGrad (Smilkov et al. 2017, https://arxiv.org/abs/1706.03825): a wrapper over any method.

use burn::tensor::{backend::Backend, Distribution, Int, Tensor};

use super::{Attribution, SaliencyMethod};
use crate::error::{Error, Result};
use crate::second_order::Lift;

/// Averages the maps of `samples` noisy copies of the images (Gaussian noise with standard
/// deviation `noise_level × (max − min)` of each image).
///
/// The logits and features returned are those of the first noisy copy. The noise comes from
/// the backend's seeded generator (`B::seed`), so runs are reproducible.
#[derive(Debug, Clone, Copy)]
pub struct SmoothGrad<S> {
    /// The wrapped method.
    pub inner: S,
    /// Number of noisy copies (≥ 1).
    pub samples: usize,
    /// Noise standard deviation relative to each image's value range (paper default 0.15).
    pub noise_level: f64,
}

impl<S: SaliencyMethod> SmoothGrad<S> {
    /// Wraps `inner` with the paper's defaults (noise level 0.15) and `samples` copies.
    pub fn new(inner: S, samples: usize) -> Self {
        Self {
            inner,
            samples,
            noise_level: 0.15,
        }
    }
}

impl<S: SaliencyMethod> SaliencyMethod for SmoothGrad<S> {
    fn attribute<B: Backend, M: Lift<B>>(
        &self,
        model: &M,
        images: Tensor<B, 4>,
        targets: Tensor<B, 1, Int>,
        taps: &[String],
    ) -> Result<Attribution<B>> {
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
        let [batch, channels, height, width] = images.dims();
        let flat = images
            .clone()
            .detach()
            .reshape([batch, channels * height * width]);
        let range = (flat.clone().max_dim(1) - flat.min_dim(1)).reshape([batch, 1, 1, 1]);
        let sigma = range * self.noise_level;
        let mut first: Option<Attribution<B>> = None;
        let mut sum: Option<Tensor<B, 4>> = None;
        for _ in 0..self.samples {
            let noise = Tensor::<B, 4>::random(
                images.shape(),
                Distribution::Normal(0.0, 1.0),
                &images.device(),
            ) * sigma.clone();
            let out = self
                .inner
                .attribute(model, images.clone() + noise, targets.clone(), taps)?;
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

    fn multiplies_by_input(&self) -> bool {
        self.inner.multiplies_by_input()
    }
}

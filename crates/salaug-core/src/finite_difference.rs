//! A first-order way to `L_sal`'s parameter gradient: finite differences along the map's
//! sensitivity, with no `Autodiff<Autodiff<B>>`.
//!
//! `L_sal` depends on the parameters θ only through the input gradient `g = ∂s/∂x` of the
//! target score `s`. With `v = ∂L_sal/∂g` held fixed,
//!
//! ```text
//! ∇_θ L_sal = (∂g/∂θ)ᵀ·v = ∇_θ (∂s/∂x · v) ≈ ∇_θ [s(x + εv) − s(x)] / ε
//! ```
//!
//! (forward difference; the central one is `[s(x + εv) − s(x − εv)] / 2ε`). Every term is a
//! first-order quantity: `g` from one backward to the images, `v` from one backward through
//! the maps' reduction, pairing, normalisation and distance (with `g` as the leaf), and the
//! difference from two forwards whose ordinary backward gives the gradient. Karakida et al.
//! (ICLR 2023, <https://arxiv.org/abs/2210.02720>) use the forward difference for
//! gradient-norm regularisers.
//!
//! A ReLU network is piecewise linear in its input, and its input gradient is the derivative
//! on the piece the images are on: the ReLU masks and the positions of the maxima (max
//! pooling) of the forward at `x`, ties broken as autodiff breaks them. Flat image regions
//! (Fashion-MNIST's black background, zero padding) put many inputs of a max pool at exactly
//! the same value, so any perturbation, however small, moves some maxima and with them
//! `∇_θ s` by a finite amount: a plain quotient then grows as 1/ε instead of converging. Every
//! score is therefore taken with the activation pattern of the forward at `x`
//! ([`crate::relu`] and [`crate::max_dim`] record it there and replay it at `x ± εv`), on
//! which `s` is smooth and its derivative is exactly the one autodiff differentiates; a model
//! whose ReLUs and max pooling do not use these hooks is differentiated across its kinks.
//!
//! [`SaliencyLoss::of_batch_first_order`] returns `L_sal` with its exact value and this
//! gradient, so a training step uses it exactly as it uses [`SaliencyLoss::of_batch`]'s.
//! It needs only `B: AutodiffBackend` (the level a model trains at): it is also how
//! salaug-core can follow burn past 0.21, whose later versions have first-order autodiff only.
//! It serves the methods whose map is a function of the plain input gradient: the gradient,
//! gradient × input and SmoothGrad around either; the others are an
//! [`Error::Unsupported`].

use burn::module::AutodiffModule;
use burn::tensor::{backend::AutodiffBackend, Distribution, ElementConversion, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loss::{check_pairs, BatchSaliency, MapPair, SaliencyLoss};
use crate::saliency::SaliencyKind;
use crate::second_order::{
    running_state, set_running_state, with_pattern, BatchNormMode, Explain, SharedPattern,
};
use crate::Classifier;

/// How `L_sal`'s parameter gradient is computed (`loss.second_order` in a run config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecondOrder {
    /// Double backpropagation through nested autodiff ([`SaliencyLoss::of_batch`]).
    #[default]
    Exact,
    /// Finite differences along the map's sensitivity
    /// ([`SaliencyLoss::of_batch_first_order`]).
    FiniteDifference(FiniteDifference),
}

impl SecondOrder {
    /// Checks the settings, and that `method` has a first-order path when one is asked for.
    pub fn validate(&self, method: &SaliencyKind) -> Result<()> {
        match self {
            SecondOrder::Exact => Ok(()),
            SecondOrder::FiniteDifference(fd) => {
                fd.validate()?;
                Copies::of(method).map(|_| ())
            }
        }
    }
}

/// The difference scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// `[s(x + εv) − s(x)] / ε`: one extra forward, error O(ε).
    #[default]
    Forward,
    /// `[s(x + εv) − s(x − εv)] / 2ε`: two extra forwards, error O(ε²).
    Central,
}

/// Settings of the finite-difference path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FiniteDifference {
    /// The size of the perturbation `εv`: its root mean square over the batch's pixels, in the
    /// units of the images the model is given (ε = step / rms(v)). Default: see
    /// [`FiniteDifference::DEFAULT_STEP`].
    pub step: f64,
    /// Forward (default) or central difference.
    pub scheme: Scheme,
}

impl FiniteDifference {
    /// The default step, chosen by the sweep in docs/method.md.
    pub const DEFAULT_STEP: f64 = 1e-4;

    /// Checks that the step is a finite number > 0.
    pub fn validate(&self) -> Result<()> {
        if self.step > 0.0 && self.step.is_finite() {
            Ok(())
        } else {
            Err(Error::InvalidSetting {
                name: "loss.second_order.finite_difference.step",
                value: self.step.to_string(),
                reason: "must be a finite number > 0",
            })
        }
    }
}

impl Default for FiniteDifference {
    fn default() -> Self {
        Self {
            step: Self::DEFAULT_STEP,
            scheme: Scheme::Forward,
        }
    }
}

/// A method's map as a function of the images and their input gradient: the images are
/// explained at `samples` copies (SmoothGrad's noisy ones, else the images themselves), and
/// the map is the mean of each copy's `gradient` (× its images with `times_input`).
struct Copies {
    samples: usize,
    noise_level: Option<f64>,
    times_input: bool,
}

impl Copies {
    fn of(method: &SaliencyKind) -> Result<Copies> {
        let plain = |times_input| Copies {
            samples: 1,
            noise_level: None,
            times_input,
        };
        match method {
            SaliencyKind::Gradient => Ok(plain(false)),
            SaliencyKind::InputXGradient => Ok(plain(true)),
            SaliencyKind::SmoothGrad(s) => match *s.inner {
                SaliencyKind::Gradient | SaliencyKind::InputXGradient => {
                    s.validate()?;
                    Ok(Copies {
                        samples: s.samples,
                        noise_level: Some(s.noise_level),
                        times_input: *s.inner == SaliencyKind::InputXGradient,
                    })
                }
                _ => Err(unsupported(method)),
            },
            _ => Err(unsupported(method)),
        }
    }
}

fn unsupported(method: &SaliencyKind) -> Error {
    Error::Unsupported {
        what: format!(
            "the finite-difference L_sal gradient for `{}`: it serves the methods whose map is \
             a function of the plain input gradient (gradient, input_x_gradient and smooth_grad \
             around them); guided backpropagation, DeconvNet and Grad-CAM change the backward \
             rules or read an inner feature: use loss.second_order = \"exact\"",
            method.name()
        ),
    }
}

impl SaliencyLoss {
    /// [`SaliencyLoss::of_batch`] by first-order autodiff alone: the same `L_sal` (value,
    /// maps, pairing), whose gradient with respect to the model's parameters is the finite
    /// difference of the module docs instead of double backpropagation. The logits and
    /// features come from one forward of the images (SmoothGrad: of its first noisy copy, as
    /// [`SaliencyLoss::of_batch`] gives them) tracked at level `B`; only that forward moves
    /// BatchNorm's running statistics, and only with [`BatchNormMode::BatchUpdating`].
    ///
    /// Fails as [`SaliencyLoss::of_batch`] does, and for a method without a first-order path
    /// or [`BatchNormMode::Running`] (an evaluation-mode map is not trained).
    pub fn of_batch_first_order<B, M, E>(
        &self,
        model: &M,
        method: &SaliencyKind,
        images: Tensor<B, 4>,
        explain: &Explain<'_, B>,
        fd: FiniteDifference,
        pair: impl FnOnce(Tensor<B, 4>, Tensor<B, 4>) -> core::result::Result<MapPair<B>, E>,
    ) -> core::result::Result<BatchSaliency<B>, E>
    where
        B: AutodiffBackend,
        M: Classifier<B> + AutodiffModule<B> + Clone,
        E: From<Error>,
    {
        fd.validate()?;
        let copies = Copies::of(method)?;
        if explain.batch_norm == BatchNormMode::Running {
            return Err(Error::Unsupported {
                what: "BatchNormMode::Running with the finite-difference L_sal gradient: it \
                       trains training-mode maps (BatchNormMode::Batch or BatchUpdating)"
                    .to_string(),
            }
            .into());
        }
        check_pairs(&images.dims())?;
        let [both, channels, height, width] = images.dims();
        let images = images.detach();
        let device = images.device();
        // The images each copy explains (SmoothGrad's noise drawn as `SmoothGrad` draws it).
        let xs: Vec<Tensor<B, 4>> = match copies.noise_level {
            None => vec![images.clone()],
            Some(level) => {
                let flat = images.clone().reshape([both, channels * height * width]);
                let range = (flat.clone().max_dim(1) - flat.min_dim(1)).reshape([both, 1, 1, 1]);
                let sigma = range * level;
                (0..copies.samples)
                    .map(|_| {
                        let noise = Tensor::<B, 4>::random(
                            images.shape(),
                            Distribution::Normal(0.0, 1.0),
                            &device,
                        );
                        images.clone() + noise * sigma.clone()
                    })
                    .collect()
            }
        };
        let saved = synced_state(model);
        // 1. The input gradient of each copy, by one backward to the images (the parameters
        // untracked: no parameter gradient is computed).
        let frozen = model.clone().no_grad();
        let mut leaves = Vec::with_capacity(xs.len());
        for x in &xs {
            let leaf = x.clone().require_grad();
            let grads = explain
                .target
                .score(frozen.logits(leaf.clone()))?
                .backward();
            let g = leaf
                .grad(&grads)
                .unwrap_or_else(|| leaf.clone().inner().zeros_like());
            leaves.push(Tensor::<B, 4>::from_inner(g).require_grad());
        }
        // 2. L_sal of the maps as functions of the gradients (the leaves), and v = ∂L_sal/∂g.
        let mut sum: Option<Tensor<B, 4>> = None;
        for (x, g) in xs.iter().zip(&leaves) {
            let map = match copies.times_input {
                true => g.clone() * x.clone(),
                false => g.clone(),
            };
            sum = Some(match sum {
                None => map,
                Some(sum) => sum + map,
            });
        }
        let maps = sum.expect("at least one copy") / copies.samples as f64;
        let halves = self.reduce(maps).chunk(2, 0);
        let pair = pair(halves[0].clone(), halves[1].clone())?;
        let loss = self.forward(
            pair.reference.clone(),
            pair.other.clone(),
            pair.mask.clone(),
        )?;
        let value = loss.clone().inner();
        let grads = loss.backward();
        let vs: Vec<_> = leaves
            .iter()
            .map(|g| {
                g.grad(&grads)
                    .unwrap_or_else(|| g.clone().inner().zeros_like())
            })
            .collect();
        restore(model, saved.clone());
        // 3. The forward whose logits and features the step uses: the only one that may move
        // the running statistics. It records the activation pattern at the first copy.
        let patterns: Vec<SharedPattern> = xs.iter().map(|_| SharedPattern::default()).collect();
        let (logits, features) = with_pattern(&patterns[0], || {
            model.logits_and_features(xs[0].clone(), explain.taps)
        })?;
        let kept = match explain.batch_norm {
            BatchNormMode::BatchUpdating => synced_state(model),
            _ => saved,
        };
        // 4. The difference quotient of the score along each copy's v, tracked in θ, every
        // score taken with the activation pattern at the copy (ReLU masks, max positions).
        let score = |x: Tensor<B, 4>, pattern: &SharedPattern| -> Result<Tensor<B, 1>> {
            with_pattern(pattern, || explain.target.score(model.logits(x)))
        };
        let replay = |x: Tensor<B, 4>, pattern: &SharedPattern| -> Result<Tensor<B, 1>> {
            pattern.borrow_mut().rewind();
            let s = score(x, pattern)?;
            if !pattern.borrow().replayed_all() {
                return Err(Error::Unsupported {
                    what: "the finite-difference L_sal gradient: the forward at the perturbed \
                           images took another path through the model's ReLUs and max pooling \
                           than the forward at the images; use loss.second_order = \"exact\""
                        .to_string(),
                });
            }
            Ok(s)
        };
        let mut quotient: Option<Tensor<B, 1>> = None;
        for (k, ((x, v), pattern)) in xs.iter().zip(vs).zip(&patterns).enumerate() {
            let n = v.shape().num_elements() as f64;
            let rms = v
                .clone()
                .powi_scalar(2)
                .sum()
                .into_scalar()
                .elem::<f64>()
                .sqrt()
                / n.sqrt();
            if !rms.is_finite() || rms <= 0.0 {
                continue; // L_sal does not depend on this copy's gradient, or is not finite
            }
            let eps = fd.step / rms;
            let shift = Tensor::<B, 4>::from_inner(v) * eps;
            let base = match k {
                0 => explain.target.score(logits.clone())?,
                _ => score(x.clone(), pattern)?, // records this copy's pattern
            };
            let q = match fd.scheme {
                Scheme::Forward => (replay(x.clone() + shift, pattern)? - base) / eps,
                Scheme::Central => {
                    let plus = replay(x.clone() + shift.clone(), pattern)?;
                    (plus - replay(x.clone() - shift, pattern)?) / (2.0 * eps)
                }
            };
            quotient = Some(match quotient {
                None => q,
                Some(sum) => sum + q,
            });
        }
        restore(model, kept);
        // L_sal's value, with the quotient's gradient (the quotient minus itself is zero).
        let mut loss = Tensor::<B, 1>::from_inner(value);
        if let Some(q) = quotient {
            loss = loss + (q.clone() - q.detach());
        }
        let constant = |t: Tensor<B, 4>| Tensor::<B, 4>::from_inner(t.inner());
        Ok(BatchSaliency {
            loss,
            pair: MapPair {
                reference: constant(pair.reference),
                other: constant(pair.other),
                mask: pair.mask.map(constant),
            },
            logits,
            features,
        })
    }
}

/// `model`'s running statistics, with the updates of its forwards so far (burn's
/// `RunningState` keeps a forward's update aside until it is synced; `valid` syncs).
fn synced_state<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
) -> std::collections::HashMap<burn::module::ParamId, burn::tensor::TensorPrimitive<B>> {
    let _ = model.valid();
    running_state(model)
}

/// Sets `model`'s running statistics to `state`, dropping the updates of its forwards since.
fn restore<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    state: std::collections::HashMap<burn::module::ParamId, burn::tensor::TensorPrimitive<B>>,
) {
    let _ = model.valid();
    set_running_state(model, state);
}

//! # salaug-core
//!
//! Saliency-map consistency losses with second-order gradients, for any [Burn](https://burn.dev)
//! model (Al-afandi, Magyar, Horváth 2022, <https://arxiv.org/abs/2205.14686>).
//!
//! A training batch holds original images `x` and augmented images `T(x)`. The saliency map of
//! an image is the gradient of its label's logit with respect to the pixels, reduced to one
//! channel. The maps of `T(x)` are brought back to the frame of `x` (or the maps of `x` are
//! carried forward to the frame of `T(x)`); each map is normalised on its own and a distance
//! between them is the saliency loss `L_sal`. Training minimises
//! `L = α·L_class + β·L_sal + γ·L_inv`, which needs the gradient of a gradient: the model is
//! evaluated one autodiff level up ([`second_order`]) and the maps come back differentiable.
//!
//! ```
//! # use burn::backend::{Autodiff, Flex};
//! # use burn::module::{Module, Param};
//! # use burn::tensor::{backend::{AutodiffBackend, Backend}, Distribution, Int, Tensor};
//! # use salaug_core::{Classifier, Explain, Lift, MapPair, SaliencyKind, SaliencyLossConfig};
//! # #[derive(Module, Debug)]
//! # struct Net<B: Backend> { w: Param<Tensor<B, 2>> }
//! # impl<B: Backend> Classifier<B> for Net<B> {
//! #     fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
//! #         x.flatten::<2>(1, 3).matmul(self.w.val()).tanh()
//! #     }
//! # }
//! # salaug_core::impl_lift!(Net);
//! # fn step<B: AutodiffBackend, M: Lift<B>>(model: &M, x: Tensor<B, 4>, y: Tensor<B, 1, Int>)
//! #     -> salaug_core::Result<B::Gradients> {
//! let loss = SaliencyLossConfig::default().init()?;
//! // Horizontal flip: T(x) and its inverse on maps are both `flip([3])`.
//! let batch = Tensor::cat(vec![x.clone(), x.flip([3])], 0);
//! let explain = Explain::class(Tensor::cat(vec![y.clone(), y], 0));
//! let out = loss.of_batch(model, &SaliencyKind::Gradient, batch, &explain, MapPair::flip_back)?;
//! let grads = out.loss.backward(); // reaches every parameter: second order
//! # Ok(grads) }
//! # let device = Default::default();
//! # let w = Tensor::<Autodiff<Flex>, 2>::random([3 * 4 * 4, 5], Distribution::Normal(0.0, 0.1), &device);
//! # let model = Net { w: Param::from_tensor(w.require_grad()) };
//! # let x = Tensor::random([2, 3, 4, 4], Distribution::Normal(0.0, 1.0), &device);
//! # let grads = step(&model, x, Tensor::from_ints([0, 3], &device)).unwrap();
//! # assert!(model.w.val().grad(&grads).is_some_and(|g| g.abs().sum().into_scalar() > 0.0));
//! ```
//!
//! With salaug-augment, the pairing of any augmentation is `|s, s_aug| transfer.pair(s, s_aug,
//! compare)`.

pub mod classifier;
pub mod distance;
pub mod error;
pub mod finite_difference;
pub mod gradcheck;
pub mod loss;
pub mod metrics;
pub mod normalize;
pub mod reduce;
pub mod resample;
pub mod saliency;
pub mod second_order;

pub use classifier::Classifier;
pub use distance::Distance;
pub use error::{Error, Result};
pub use finite_difference::{FiniteDifference, Scheme, SecondOrder};
pub use loss::{
    invariance_loss, BatchSaliency, FeatureDistance, LossWeights, MapPair, SaliencyLoss,
    SaliencyLossConfig,
};
pub use normalize::MapNorm;
pub use reduce::ChannelReduction;
pub use saliency::{
    Attribution, DeconvNet, GradCam, Gradient, GuidedBackprop, GuidedGradCam, InputXGradient,
    SaliencyKind, SaliencyMethod, SmoothGrad,
};
pub use second_order::{
    input_gradient, layer_gradient, lift, materialize, max_dim, relu, ruled_input_gradient, tap,
    uses_batch_stats, AutodiffBase, BatchNormMode, Explain, InputGradient, LayerGradient, Lift,
    Outer, ReluRule, Target,
};

#[cfg(test)]
pub(crate) mod tests {
    //! Small helpers shared by the unit tests.
    use burn::tensor::{backend::Backend, Tensor, TensorData};

    /// The unit-test backend: f64 on ndarray.
    pub type TB = burn::backend::NdArray<f64>;

    pub fn tensor4<B: Backend>(values: &[f64], shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Default::default())
    }

    pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
    }
}

//! Layers that are twice differentiable on burn 0.21, used by every model of the zoo.
//!
//! burn 0.21's `nn::Linear`, `max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d` and
//! `interpolate` panic under double backward; `max_pool1d` and `repeat_dim` give silently
//! wrong gradients. The replacements here are built from primitive ops whose nested-autodiff
//! gradients are correct (matmul, reshape, `max_dim`/`mean_dim`, `select`, `pad`), and each is
//! checked against burn's own op on the forward pass and against finite differences at second
//! order (tests at the bottom of this file). `tests/forbidden_ops.rs` fails if a model file
//! names one of the unsafe ops.

use burn::module::{Param, RunningState};
use burn::prelude::*;
use burn::tensor::ops::PadMode;
use burn::tensor::Distribution;

/// Configuration of [`Linear`].
#[derive(Config, Debug)]
pub struct LinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether to add a bias.
    #[config(default = true)]
    pub bias: bool,
}

/// A fully connected layer, `y = x·W + b`, as matmul plus bias.
///
/// Initialised as PyTorch's `nn.Linear`: weight and bias uniform in `±1/√d_input`.
/// The weight is stored `[d_input, d_output]` (burn's `nn::Linear` layout).
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `[d_input, d_output]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[d_output]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl LinearConfig {
    /// Creates the layer on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Linear<B> {
        let bound = 1.0 / (self.d_input as f64).sqrt();
        let uniform = Distribution::Uniform(-bound, bound);
        Linear {
            weight: Param::from_tensor(Tensor::random(
                [self.d_input, self.d_output],
                uniform,
                device,
            )),
            bias: self
                .bias
                .then(|| Param::from_tensor(Tensor::random([self.d_output], uniform, device))),
        }
    }
}

impl<B: Backend> Linear<B> {
    /// # Shapes
    /// - `x`: `[batch, d_input]`
    /// - output: `[batch, d_output]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = x.matmul(self.weight.val());
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze(),
            None => y,
        }
    }
}

/// Value used to pad before a max pooling: below any activation, finite so that no NaN can
/// appear in a gradient.
const MAX_POOL_PAD: f32 = -3.0e38;

/// Output size of a pooling window along one axis (floor mode, as PyTorch's default).
fn pooled_len(len: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    assert!(
        len + 2 * padding >= kernel && stride > 0,
        "pooling window {kernel} (stride {stride}, padding {padding}) does not fit an axis of {len}"
    );
    (len + 2 * padding - kernel) / stride + 1
}

/// The `kernel` strided views of axis `dim`, stacked on a new last axis.
fn windows<B: Backend>(
    x: Tensor<B, 4>,
    dim: usize,
    kernel: usize,
    stride: usize,
    out: usize,
) -> Tensor<B, 5> {
    let device = x.device();
    let views = (0..kernel)
        .map(|k| {
            let idx: Vec<i64> = (0..out).map(|o| (k + o * stride) as i64).collect();
            x.clone().select(
                dim,
                Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [out]), &device),
            )
        })
        .collect();
    Tensor::stack(views, 4)
}

#[derive(Clone, Copy)]
enum Reduce {
    Max,
    Mean,
}

impl Reduce {
    /// Reduces axis `dim`, keeping it with size 1.
    fn along<B: Backend, const D: usize>(self, x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
        match self {
            // salaug-core's hook: the finite-difference path replays its maximum's position.
            Reduce::Max => salaug_core::max_dim(x, dim),
            Reduce::Mean => x.mean_dim(dim),
        }
    }
}

fn pool2d<B: Backend>(
    x: Tensor<B, 4>,
    kernel: usize,
    stride: usize,
    padding: usize,
    reduce: Reduce,
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let (ho, wo) = (
        pooled_len(h, kernel, stride, padding),
        pooled_len(w, kernel, stride, padding),
    );
    if kernel == stride && padding == 0 {
        // Non-overlapping windows: one reshape and two reductions.
        let x = x
            .slice([0..n, 0..c, 0..ho * kernel, 0..wo * kernel])
            .reshape([n, c, ho, kernel, wo, kernel]);
        return reduce.along(reduce.along(x, 5), 3).reshape([n, c, ho, wo]);
    }
    let x = if padding > 0 {
        let value = match reduce {
            Reduce::Max => MAX_POOL_PAD,
            Reduce::Mean => 0.0, // count_include_pad = true, as PyTorch's default
        };
        x.pad(
            (padding, padding, padding, padding),
            PadMode::Constant(value),
        )
    } else {
        x
    };
    // Separable: reduce the rows of each window, then its columns.
    let rows = windows(x, 2, kernel, stride, ho); // [n, c, ho, w', k]
    let rows = reduce.along(rows, 4).reshape([n, c, ho, w + 2 * padding]);
    let cols = windows(rows, 3, kernel, stride, wo); // [n, c, ho, wo, k]
    reduce.along(cols, 4).reshape([n, c, ho, wo])
}

/// Max pooling over `kernel × kernel` windows (floor mode, padding never selected).
///
/// Non-overlapping windows (`kernel == stride`, no padding) take one reshape; others, such as
/// the ImageNet stem's 3×3 / stride 2 / padding 1, take `kernel` strided views per axis.
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]`
/// - output: `[batch, channels, (h + 2p − k)/s + 1, (w + 2p − k)/s + 1]`
pub fn max_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Tensor<B, 4> {
    pool2d(x, kernel, stride, padding, Reduce::Max)
}

/// Average pooling over `kernel × kernel` windows (floor mode, zero padding counted, as
/// PyTorch's `AvgPool2d` defaults). DenseNet's transitions use `avg_pool2d(x, 2, 2, 0)`.
///
/// # Shapes
/// As [`max_pool2d`].
pub fn avg_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Tensor<B, 4> {
    pool2d(x, kernel, stride, padding, Reduce::Mean)
}

/// Global average pooling.
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]`
/// - output: `[batch, channels]`
pub fn global_avg_pool<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
}

/// Adaptive average pooling to `[out_h, out_w]`, exactly as PyTorch's `AdaptiveAvgPool2d`.
///
/// Output cell `i` averages input rows `floor(i·h/out_h) .. ceil((i+1)·h/out_h)` (and the same
/// for columns); when the input is smaller than the output, cells repeat inputs. Written as two
/// products with constant averaging matrices, `A_h · x · A_wᵀ`, which are twice differentiable.
/// VGG's ImageNet head uses it to bring any input size to 7×7.
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]`
/// - output: `[batch, channels, out_h, out_w]`
pub fn adaptive_avg_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    [out_h, out_w]: [usize; 2],
) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    if (h, w) == (out_h, out_w) {
        return x;
    }
    let device = x.device();
    let rows = averaging_matrix::<B>(h, out_h, &device);
    let cols = averaging_matrix::<B>(w, out_w, &device);
    salaug_core::resample::separable(x, rows, cols)
}

/// `[len, out]` matrix whose column `i` averages PyTorch's adaptive window `i`.
fn averaging_matrix<B: Backend>(len: usize, out: usize, device: &B::Device) -> Tensor<B, 2> {
    assert!(len > 0 && out > 0, "adaptive pooling of {len} to {out}");
    let mut m = vec![0.0f64; len * out];
    for i in 0..out {
        let start = i * len / out;
        let end = ((i + 1) * len).div_ceil(out);
        for r in start..end {
            m[r * out + i] = 1.0 / (end - start) as f64;
        }
    }
    Tensor::from_data(
        TensorData::new(m, [len, out]).convert::<B::FloatElem>(),
        device,
    )
}

/// A `k × k` convolution with `padding` on every side, initialised as torchvision initialises
/// the zoo's convolutions (Kaiming normal, fan-out, ReLU gain).
pub fn conv<B: Backend>(
    [cin, cout]: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
    device: &B::Device,
) -> burn::nn::conv::Conv2d<B> {
    burn::nn::conv::Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(burn::nn::PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(bias)
        .with_initializer(burn::nn::Initializer::KaimingNormal {
            gain: core::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// BatchNorm over `channels` (γ = 1, β = 0, momentum 0.1, ε = 1e-5, as PyTorch).
pub fn batch_norm<B: Backend>(channels: usize, device: &B::Device) -> BatchNorm<B> {
    BatchNorm {
        gamma: Param::from_tensor(Tensor::ones([channels], device)),
        beta: Param::from_tensor(Tensor::zeros([channels], device)),
        running_mean: RunningState::new(Tensor::zeros([channels], device)),
        running_var: RunningState::new(Tensor::ones([channels], device)),
        momentum: 0.1,
        epsilon: 1e-5,
    }
}

/// Batch normalisation of `[batch, channels, h, w]` feature maps: burn's `nn::BatchNorm`
/// (same fields, same results up to rounding), written with fewer full-size operations.
///
/// In training mode (an autodiff backend) the statistics are taken over batch and pixels of
/// the `[batch, channels, h·w]` view (two reductions along contiguous or leading axes, no
/// transposed copy), and the output is `(x − μ) · (γ / √(σ² + ε)) + β`: four full-size
/// operations where burn's takes eight (two `swap_dims` copies, then subtract, divide,
/// multiply, add). Every full-size operation is differentiated again at second order, so the
/// saving counts twice in a saliency step. In evaluation mode it is `x · s + t` with `s`, `t`
/// per channel from the running statistics. Training mode is what
/// [`salaug_core::uses_batch_stats`] says: on autodiff backends, except in an explaining pass
/// with [`salaug_core::BatchNormMode::Running`] (maps of the model as it predicts). The
/// running variance is the biased batch variance, as burn's (PyTorch keeps the unbiased one);
/// momentum 0.1.
#[derive(Module, Debug)]
pub struct BatchNorm<B: Backend> {
    /// Scale γ, `[channels]`.
    pub gamma: Param<Tensor<B, 1>>,
    /// Shift β, `[channels]`.
    pub beta: Param<Tensor<B, 1>>,
    /// Running mean, `[channels]`.
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running (biased) variance, `[channels]`.
    pub running_var: RunningState<Tensor<B, 1>>,
    /// Weight of the new batch in the running statistics.
    pub momentum: f64,
    /// Added to the variance.
    pub epsilon: f64,
}

impl<B: Backend> BatchNorm<B> {
    /// # Shapes
    /// - `x`: `[batch, channels, h, w]`
    /// - output: the same
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let device = x.device();
        let x = x.reshape([n, c, h * w]);
        let per_channel = |t: Tensor<B, 1>| t.reshape([1, c, 1]);
        let y = if salaug_core::uses_batch_stats::<B>(&device) {
            let mean = x.clone().mean_dim(2).mean_dim(0); // [1, c, 1]
            let centered = x - mean.clone();
            let var = centered.clone().square().mean_dim(2).mean_dim(0);
            let m = self.momentum;
            let update = |state: &RunningState<Tensor<B, 1>>, batch: Tensor<B, 3>| {
                let old = state.value_sync().to_device(&device);
                // Stored detached, as burn-nn's BatchNorm does: otherwise each step's update
                // is an autodiff node that links to the previous step's, a graph that no
                // backward ever frees and that burn_autodiff's orphan sweep rescans at every
                // backward (an epoch of 3,750 steps stalled in `cleanup_orphaned_entries`).
                state.update(
                    old.mul_scalar(1.0 - m)
                        .add(batch.detach().reshape([c]).mul_scalar(m))
                        .detach(),
                );
            };
            update(&self.running_mean, mean);
            update(&self.running_var, var.clone());
            let scale = per_channel(self.gamma.val()) / var.add_scalar(self.epsilon).sqrt();
            centered * scale + per_channel(self.beta.val())
        } else {
            // On an autodiff backend (a `BatchNormMode::Running` pass) the statistics may have
            // been updated by this module's own training forwards: read the synced values.
            let (var, mean) = if B::ad_enabled(&device) {
                (
                    self.running_var.value_sync(),
                    self.running_mean.value_sync(),
                )
            } else {
                (self.running_var.value(), self.running_mean.value())
            };
            let (var, mean) = (var.to_device(&device), mean.to_device(&device));
            let scale = self.gamma.val() / var.add_scalar(self.epsilon).sqrt();
            let shift = self.beta.val() - mean * scale.clone();
            x * per_channel(scale) + per_channel(shift)
        };
        y.reshape([n, c, h, w])
    }
}

/// `channels × width`, rounded, at least 1: the width multiplier of every model.
pub fn scaled(channels: usize, width: f64) -> usize {
    ((channels as f64 * width).round() as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{AutodiffModule, Module};
    use burn::tensor::module as burn_ops;
    use salaug_core::gradcheck::{gradcheck, GradcheckBackend as GB, GradcheckConfig};

    type TB = burn::backend::NdArray<f64>;

    fn seeded<B: Backend, const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
        let n: usize = shape.iter().product();
        // A fixed pseudo-random permutation: distinct values, so max pooling has no ties.
        let v: Vec<f64> = (0..n)
            .map(|i| ((i as u64 * 7919 + seed * 104729) % 100_003) as f64 / 50_000.0 - 1.0)
            .collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn assert_close<const D: usize>(a: Tensor<TB, D>, b: Tensor<TB, D>) {
        assert_eq!(a.dims(), b.dims());
        let (a, b) = (
            a.into_data().to_vec::<f64>().unwrap(),
            b.into_data().to_vec::<f64>().unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-12, "{x} != {y}");
        }
    }

    #[test]
    fn max_pool_matches_burn_forward() {
        let x = seeded::<TB, 4>([2, 3, 9, 8], 1);
        for (k, s, p) in [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (3, 3, 0)] {
            let ours = max_pool2d(x.clone(), k, s, p);
            let theirs = burn_ops::max_pool2d(x.clone(), [k, k], [s, s], [p, p], [1, 1], false);
            assert_close(ours, theirs);
        }
    }

    #[test]
    fn avg_pool_matches_burn_forward() {
        let x = seeded::<TB, 4>([2, 3, 9, 8], 2);
        for (k, s, p) in [(2, 2, 0), (3, 2, 1), (3, 1, 1)] {
            let ours = avg_pool2d(x.clone(), k, s, p);
            let theirs = burn_ops::avg_pool2d(x.clone(), [k, k], [s, s], [p, p], true, false);
            assert_close(ours, theirs);
        }
    }

    #[test]
    fn adaptive_avg_pool_matches_burn_forward() {
        // Shrinking (divisible and not), identity, and growing, as VGG's 7×7 head sees.
        let x = seeded::<TB, 4>([2, 3, 9, 8], 6);
        for out in [[3, 4], [4, 3], [9, 8], [1, 1]] {
            let theirs = burn_ops::adaptive_avg_pool2d(x.clone(), out);
            assert_close(adaptive_avg_pool2d(x.clone(), out), theirs);
        }
        let small = seeded::<TB, 4>([1, 2, 2, 3], 7);
        let theirs = burn_ops::adaptive_avg_pool2d(small.clone(), [7, 7]);
        assert_close(adaptive_avg_pool2d(small, [7, 7]), theirs);
    }

    #[test]
    fn global_avg_pool_matches_adaptive_pool() {
        let x = seeded::<TB, 4>([2, 3, 5, 4], 3);
        let theirs = burn_ops::adaptive_avg_pool2d(x.clone(), [1, 1]).reshape([2, 3]);
        assert_close(global_avg_pool(x), theirs);
    }

    #[test]
    fn linear_matches_burn_linear() {
        let device = Default::default();
        let ours = LinearConfig::new(5, 3).init::<TB>(&device);
        let mut theirs = burn::nn::LinearConfig::new(5, 3).init::<TB>(&device);
        theirs.weight = ours.weight.clone();
        theirs.bias = ours.bias.clone();
        let x = seeded::<TB, 2>([4, 5], 4);
        assert_close(ours.forward(x.clone()), theirs.forward(x));
        assert_eq!(ours.num_params(), 5 * 3 + 3);
    }

    /// Our BatchNorm gives burn's outputs and running statistics, in training mode (autodiff
    /// backend) and in evaluation mode.
    #[test]
    fn batch_norm_matches_burn_batch_norm() {
        type AD = burn::backend::Autodiff<TB>;
        let device = Default::default();
        let ours = batch_norm::<AD>(3, &device);
        let mut theirs = burn::nn::BatchNormConfig::new(3).init::<AD>(&device);
        let gamma = seeded::<AD, 1>([3], 8).add_scalar(1.5);
        let beta = seeded::<AD, 1>([3], 9);
        let ours = BatchNorm {
            gamma: Param::from_tensor(gamma.clone()),
            beta: Param::from_tensor(beta.clone()),
            ..ours
        };
        theirs.gamma = Param::from_tensor(gamma);
        theirs.beta = Param::from_tensor(beta);
        for step in 0..3u64 {
            let x = seeded::<AD, 4>([4, 3, 5, 6], 10 + step)
                .mul_scalar(2.0)
                .add_scalar(0.3);
            let (a, b) = (ours.forward(x.clone()), theirs.forward(x));
            assert_close(a.inner(), b.inner());
        }
        let stats = |m: &RunningState<Tensor<AD, 1>>| m.value_sync().inner();
        assert_close(stats(&ours.running_mean), stats(&theirs.running_mean));
        assert_close(stats(&ours.running_var), stats(&theirs.running_var));
        // Evaluation mode: the plain backend uses the running statistics.
        let (ours, theirs) = (ours.valid(), theirs.valid());
        let x = seeded::<TB, 4>([2, 3, 4, 4], 20);
        assert_close(ours.forward(x.clone()), theirs.forward(x));
    }

    /// A BatchNorm between the input and a linear head: `logits = W · mean_hw(bn(x))`.
    #[derive(Module, Debug)]
    struct Normed<B: Backend> {
        bn: BatchNorm<B>,
        head: Linear<B>,
    }

    impl<B: Backend> salaug_core::Classifier<B> for Normed<B> {
        fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
            self.head.forward(global_avg_pool(self.bn.forward(x)))
        }
    }
    salaug_core::impl_lift!(Normed);

    /// `BatchNormMode::Running`: in the explaining pass (on autodiff one level up) BatchNorm
    /// computes what evaluation mode computes, leaves its running statistics alone, and the
    /// input gradient is evaluation mode's; outside the pass it is in training mode again.
    #[test]
    fn running_mode_explains_the_model_in_evaluation_mode() {
        use salaug_core::{input_gradient, BatchNormMode, Classifier, Explain};
        type AD = burn::backend::Autodiff<TB>;
        let device = Default::default();
        let model = Normed::<AD> {
            bn: batch_norm(3, &device),
            head: LinearConfig::new(3, 2).init(&device),
        };
        let _ = model
            .bn
            .forward(seeded::<AD, 4>([4, 3, 5, 6], 30).add_scalar(0.7)); // move the stats
        let before = model.bn.running_mean.value_sync().inner();
        let x = seeded::<AD, 4>([2, 3, 4, 4], 31);
        let y = Tensor::<AD, 1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
        let explain = Explain::class(y).with_batch_norm(BatchNormMode::Running);
        let out = input_gradient(&model, x.clone(), &explain).unwrap();
        let eval = model.valid();
        assert_close(out.logits.inner(), eval.logits(x.clone().inner()));
        assert_close(model.bn.running_mean.value_sync().inner(), before);
        // d logit[i, y_i] / d x[i, c, ·, ·] summed over the pixels: s_c · W[c, y_i], with
        // s = γ / √(running var + ε) (the batch statistics would couple the images instead).
        let scale = model.bn.gamma.val().inner()
            / (model.bn.running_var.value_sync().inner())
                .add_scalar(model.bn.epsilon)
                .sqrt();
        let w = model.head.weight.val().inner(); // [3, 2]
        let expected = w.mul(scale.reshape([3, 1])).transpose(); // [class, channel]
        assert_close(
            out.gradient.inner().sum_dim(3).sum_dim(2).reshape([2, 3]),
            expected,
        );
        // Training mode again outside the pass.
        let z = model.bn.forward(seeded::<AD, 4>([4, 3, 5, 6], 32));
        assert!(z.inner().mean().into_scalar().abs() < 1e-9);
    }

    /// A probe network `conv → layer → tanh → score` whose saliency loss is gradchecked.
    #[derive(Module, Debug)]
    struct Probe<B: Backend> {
        conv: burn::nn::conv::Conv2d<B>,
        head: Linear<B>,
        layer: usize,
    }

    impl<B: Backend> salaug_core::Classifier<B> for Probe<B> {
        fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
            let y = self.conv.forward(x).tanh();
            let y = match self.layer {
                0 => max_pool2d(y, 3, 2, 1),
                1 => max_pool2d(y, 2, 2, 0),
                2 => avg_pool2d(y, 2, 2, 0),
                3 => avg_pool2d(y, 3, 2, 1),
                _ => adaptive_avg_pool2d(y, [2, 3]),
            };
            self.head.forward(global_avg_pool(y.tanh()))
        }
    }
    salaug_core::impl_lift!(Probe);

    #[test]
    fn every_layer_is_twice_differentiable() {
        let device = Default::default();
        let x = seeded::<GB, 4>([2, 2, 7, 7], 5);
        let y = Tensor::<GB, 1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
        for layer in 0..5 {
            GB::seed(&device, 11);
            let model = Probe::<GB> {
                conv: burn::nn::conv::Conv2dConfig::new([2, 4], [3, 3]).init(&device),
                head: LinearConfig::new(4, 3).init(&device),
                layer,
            };
            let report = gradcheck(
                &model,
                |m| {
                    let out = salaug_core::SaliencyMethod::attribute(
                        &salaug_core::Gradient,
                        m,
                        x.clone(),
                        &salaug_core::Explain::class(y.clone()),
                    )
                    .unwrap();
                    let s = out.maps.max_dim(1);
                    (s.clone() - s.flip([3])).powi_scalar(2).mean()
                },
                GradcheckConfig::default(),
            );
            println!("layer {layer}:\n{report}");
            report.assert_within(1e-6);
        }
    }
}

//! Bring your own Burn model: train it with `L = α·L_class + β·L_sal`.
//!
//! A 2-conv BatchNorm CNN on 64 images of 28×28 (32 originals + their horizontal flips; the
//! pixels are seeded noise, this example is about the API). It runs a few plain steps
//! (cross-entropy on both halves) and a few saliency steps, prints the losses, and times both.
//!
//! ```text
//! cargo run --release -p salaug-core --example train_step            # flex (default)
//! cargo run --release -p salaug-core --example train_step --no-default-features --features ndarray
//! ```
#![recursion_limit = "256"]

use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::Distribution;
use salaug_core::{Classifier, Explain, LossWeights, MapPair, SaliencyKind, SaliencyLossConfig};

type Cpu = burn::backend::Flex;

/// The training backend: one autodiff level. salaug adds the second one inside the step.
type B = Autodiff<Cpu>;

/// Your model. Only twice-differentiable ops: no `nn::Linear` or pooling modules in burn 0.21.
#[derive(Module, Debug)]
struct Net<B: Backend> {
    conv1: Conv2d<B>,
    bn1: BatchNorm<B>,
    conv2: Conv2d<B>,
    bn2: BatchNorm<B>,
    fc_weight: Param<Tensor<B, 2>>,
    fc_bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Net<B> {
    fn new(classes: usize, device: &B::Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(1, 32),
            bn1: BatchNormConfig::new(32).init(device),
            conv2: conv(32, 64),
            bn2: BatchNormConfig::new(64).init(device),
            fc_weight: Param::from_tensor(Tensor::random(
                [64, classes],
                Distribution::Normal(0.0, 0.125),
                device,
            )),
            fc_bias: Param::from_tensor(Tensor::zeros([classes], device)),
        }
    }
}

/// 2×2 max pooling as reshape + max_dim (burn's max_pool2d panics under double backward).
fn max_pool2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h / 2, 2, w / 2, 2])
        .max_dim(5)
        .max_dim(3)
        .reshape([n, c, h / 2, w / 2])
}

impl<B: Backend> Classifier<B> for Net<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = max_pool2(relu(self.bn1.forward(self.conv1.forward(x)))); // [n, 32, 14, 14]
        let x = max_pool2(relu(self.bn2.forward(self.conv2.forward(x)))); // [n, 64, 7, 7]
        let [n, c, _, _] = x.dims();
        let x = x.mean_dim(3).mean_dim(2).reshape([n, c]); // global average pooling
        x.matmul(self.fc_weight.val()) + self.fc_bias.val().unsqueeze() // linear as matmul + bias
    }
}

// Lets salaug run `Net` one autodiff level up, sharing its parameters.
salaug_core::impl_lift!(Net);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    B::seed(&device, 42);
    let classes = 10;
    let mut model = Net::<B>::new(classes, &device);
    let mut optim = AdamConfig::new().init::<B, Net<B>>();
    let sal_loss = SaliencyLossConfig::default().init()?;
    let weights = LossWeights {
        alpha: 1.0,
        beta: 1.0,
        gamma: 0.0,
    };
    weights.validate()?;
    let ce = CrossEntropyLossConfig::new().init(&device);

    let x = Tensor::<B, 4>::random([32, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
    let y = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            (0..32).map(|i| (i % classes) as i64).collect::<Vec<_>>(),
            [32],
        ),
        &device,
    );
    // The batch: originals and their horizontal flips (T = flip, T⁻¹ on maps = flip).
    let images = Tensor::cat(vec![x.clone(), x.flip([3])], 0);
    let targets = Tensor::cat(vec![y.clone(), y], 0);

    println!("backend: {}", std::any::type_name::<Cpu>());
    let steps = 6;
    let mut plain_ms = Vec::new();
    for step in 0..steps {
        let t = Instant::now();
        let loss = ce.forward(model.logits(images.clone()), targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        let value: f32 = loss.into_scalar().elem();
        plain_ms.push(t.elapsed().as_secs_f64() * 1e3);
        println!(
            "plain    step {step}: L_class {value:.4}  ({:.0} ms)",
            plain_ms[step]
        );
    }

    let mut sal_ms = Vec::new();
    for step in 0..steps {
        let t = Instant::now();
        // One lifted forward + backward gives the logits and the input-gradient maps; the maps
        // of x are compared with T⁻¹(S(T(x))), here the flipped-back maps of the flips.
        let explain = Explain::class(targets.clone());
        let out = sal_loss.of_batch(
            &model,
            &SaliencyKind::Gradient,
            images.clone(),
            &explain,
            MapPair::flip_back,
        )?;
        let l_class = ce.forward(out.logits, targets.clone());
        let l_sal = out.loss;
        let loss = weights.combine(l_class.clone(), Some(l_sal.clone()), None);
        let grads = GradientsParams::from_grads(loss.backward(), &model); // second order
        model = optim.step(1e-3, model, grads);
        let (c, s): (f32, f32) = (l_class.into_scalar().elem(), l_sal.into_scalar().elem());
        sal_ms.push(t.elapsed().as_secs_f64() * 1e3);
        println!(
            "saliency step {step}: L_class {c:.4}  L_sal {s:.5}  ({:.0} ms)",
            sal_ms[step]
        );
    }

    let median = |v: &mut Vec<f64>| {
        let mut w = v[1..].to_vec(); // skip the warm-up step
        w.sort_by(f64::total_cmp);
        w[w.len() / 2]
    };
    let (p, s) = (median(&mut plain_ms), median(&mut sal_ms));
    println!(
        "median over steps 1..{steps}: plain {p:.0} ms, saliency {s:.0} ms, ratio {:.2}",
        s / p
    );
    Ok(())
}

//! A small conv + BatchNorm + ReLU + pooling + linear classifier built from explicit seeded
//! values, so the same network can be instantiated on any backend. Its ReLUs and features go
//! through salaug-core's hooks, so every saliency method works on it.
#![allow(dead_code)]

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use salaug_core::{
    relu, tap, ChannelReduction, Classifier, Distance, Error, Explain, MapNorm, MapPair,
    SaliencyKind, SaliencyLossConfig,
};

pub fn uniform(rng: &mut StdRng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

pub fn tensor<B: Backend, const D: usize>(
    values: Vec<f64>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(
        TensorData::new(values, shape).convert::<B::FloatElem>(),
        device,
    )
}

/// A 3×3 convolution (padding 1) with weights in ±`scale` and bias in ±0.1, drawn from `rng`
/// in that order.
fn seeded_conv<B: Backend>(
    rng: &mut StdRng,
    [cin, cout]: [usize; 2],
    scale: f64,
    device: &B::Device,
) -> Conv2d<B> {
    let mut conv = Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device);
    conv.weight = Param::from_tensor(tensor(
        uniform(rng, cout * cin * 9, scale),
        [cout, cin, 3, 3],
        device,
    ));
    conv.bias = Some(Param::from_tensor(tensor(
        uniform(rng, cout, 0.1),
        [cout],
        device,
    )));
    conv
}

#[derive(Module, Debug)]
pub struct TestNet<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub head_weight: Param<Tensor<B, 2>>,
    pub head_bias: Param<Tensor<B, 1>>,
}

pub const CLASSES: usize = 3;

impl<B: Backend> TestNet<B> {
    /// Deterministic weights from `seed`, identical on every backend.
    pub fn new(seed: u64, device: &B::Device) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let conv1 = seeded_conv(&mut rng, [3, 4], 0.5, device);
        let mut bn1 = BatchNormConfig::new(4).init(device);
        bn1.gamma = Param::from_tensor(tensor(
            uniform(&mut rng, 4, 0.2).iter().map(|v| 1.0 + v).collect(),
            [4],
            device,
        ));
        bn1.beta = Param::from_tensor(tensor(uniform(&mut rng, 4, 0.2), [4], device));
        let conv2 = seeded_conv(&mut rng, [4, 5], 0.4, device);
        Self {
            conv1,
            bn1,
            conv2,
            head_weight: Param::from_tensor(tensor(
                uniform(&mut rng, 5 * CLASSES, 0.8),
                [5, CLASSES],
                device,
            )),
            head_bias: Param::from_tensor(tensor(
                uniform(&mut rng, CLASSES, 0.1),
                [CLASSES],
                device,
            )),
        }
    }

    fn trunk(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let x = relu(self.bn1.forward(self.conv1.forward(x))); // [n, 4, h, w]
        let [n, c, h, w] = x.dims();
        // 2×2 max pooling, twice differentiable: reshape + max_dim.
        // Through salaug-core's hook, which the finite-difference path records and replays.
        let windows = x.reshape([n, c, h / 2, 2, w / 2, 2]);
        let pooled =
            salaug_core::max_dim(salaug_core::max_dim(windows, 5), 3).reshape([n, c, h / 2, w / 2]);
        let pooled = tap("pool1", pooled);
        let x = tap("conv2", relu(self.conv2.forward(pooled.clone()))); // [n, 5, h/2, w/2]
        (pooled, x)
    }

    fn head(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [n, c, _, _] = x.dims();
        let x = x.mean_dim(3).mean_dim(2).reshape([n, c]); // global average pooling
        x.matmul(self.head_weight.val()) + self.head_bias.val().unsqueeze()
    }
}

impl<B: Backend> Classifier<B> for TestNet<B> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head(self.trunk(images).1)
    }

    fn feature_names(&self) -> Vec<String> {
        vec!["pool1".into(), "conv2".into()]
    }

    fn cam_layer(&self) -> Option<String> {
        Some("conv2".into())
    }

    fn logits_and_features(
        &self,
        images: Tensor<B, 4>,
        taps: &[String],
    ) -> salaug_core::Result<(Tensor<B, 2>, Vec<Tensor<B, 4>>)> {
        let (pool1, conv2) = self.trunk(images);
        let features = taps
            .iter()
            .map(|t| match t.as_str() {
                "pool1" => Ok(pool1.clone()),
                "conv2" => Ok(conv2.clone()),
                _ => Err(Error::UnknownTap {
                    name: t.clone(),
                    available: self.feature_names(),
                }),
            })
            .collect::<salaug_core::Result<Vec<_>>>()?;
        Ok((self.head(conv2), features))
    }
}

salaug_core::impl_lift!(TestNet);

/// The BatchNorm running statistics of `model` (mean, then variance), synced.
pub fn running_stats<B: Backend>(model: &TestNet<B>) -> Vec<f64> {
    let values = |t: Tensor<B, 1>| t.into_data().convert::<f64>().to_vec::<f64>().unwrap();
    let mut v = values(model.bn1.running_mean.value_sync());
    v.extend(values(model.bn1.running_var.value_sync()));
    v
}

/// Seeded images `[n, 3, size, size]` in [-1, 1] and labels.
pub fn batch<B: Backend>(
    seed: u64,
    n: usize,
    size: usize,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let x = tensor(
        uniform(&mut rng, n * 3 * size * size, 1.0),
        [n, 3, size, size],
        device,
    );
    let y: Vec<i64> = (0..n).map(|i| (i % CLASSES) as i64).collect();
    (x, Tensor::from_data(TensorData::new(y, [n]), device))
}

/// The paper's setting with a horizontal flip: maps of `x` vs flipped-back maps of `flip(x)`.
pub fn flip_sal_loss<B: AutodiffBackend>(
    model: &TestNet<B>,
    x: &Tensor<B, 4>,
    y: &Tensor<B, 1, Int>,
    config: SaliencyLossConfig,
    method: SaliencyKind,
    masked: bool,
) -> Tensor<B, 1>
where
    TestNet<B>: salaug_core::Lift<B>,
{
    let loss = config.init().unwrap();
    let images = Tensor::cat(vec![x.clone(), x.clone().flip([3])], 0);
    let explain = Explain::class(Tensor::cat(vec![y.clone(), y.clone()], 0));
    loss.of_batch(model, &method, images, &explain, |s, s_aug| {
        let [n, _, h, w] = s.dims();
        let mask = masked.then(|| {
            // Ignore the outermost columns, as a warp's validity mask would.
            Tensor::<B, 4>::ones([n, 1, h, w], &x.device()).slice_assign(
                [0..n, 0..1, 0..h, 0..1],
                Tensor::zeros([n, 1, h, 1], &x.device()),
            )
        });
        Ok::<_, Error>(MapPair {
            reference: s,
            other: s_aug.flip([3]),
            mask,
        })
    })
    .unwrap()
    .loss
}

/// Every reduction × normalisation × distance (3 × 5 × 3 = 45 settings).
pub fn every_setting() -> Vec<SaliencyLossConfig> {
    let mut out = Vec::new();
    for reduction in [
        ChannelReduction::Max,
        ChannelReduction::AbsMax,
        ChannelReduction::L2,
    ] {
        for norm in [
            MapNorm::MinMax,
            MapNorm::MaxAbs,
            MapNorm::UnitSum,
            MapNorm::Standardize,
            MapNorm::Identity,
        ] {
            for distance in [Distance::Mse, Distance::L1, Distance::Cosine] {
                out.push(SaliencyLossConfig {
                    reduction,
                    norm,
                    distance,
                    ..Default::default()
                });
            }
        }
    }
    out
}

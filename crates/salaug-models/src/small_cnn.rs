//! A small CNN for fast CPU runs: two conv-BN-ReLU-pool blocks, average pooling to a 4×4 grid
//! (or, with [`Head::Global`], to one value per channel) and a linear head (the network of the
//! project's CPU benchmarks).
//!
//! Small-image stem: 3×3/1 convolutions, each block closed by a 2×2 max pool. ImageNet stem:
//! the first convolution is 7×7/2 and its pool 3×3/2 with padding 1, as in the ResNet stem.
//! Named features: `block1`, `block2`, `pool`.

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use salaug_core::relu;

use crate::ops::{
    adaptive_avg_pool2d, batch_norm, conv, max_pool2d, scaled, BatchNorm, Linear, LinearConfig,
};
use crate::{record, Features, Head, ModelConfig, Stem};

/// Conv-BN-ReLU-max-pool ×2, adaptive average pooling to 4×4 (or 1×1), linear.
#[derive(Module, Debug)]
pub struct SmallCnn<B: Backend> {
    conv1: Conv2d<B>,
    bn1: BatchNorm<B>,
    conv2: Conv2d<B>,
    bn2: BatchNorm<B>,
    /// Whether the first block uses the ImageNet stem (7×7/2 conv, 3×3/2 pool).
    imagenet_stem: bool,
    /// Side of the pooled grid the classifier reads: by default a coarse layout (4×4) rather
    /// than a single global average, so that two convolutions suffice to tell apart classes
    /// that differ in shape (Fashion-MNIST's shirts, pullovers and coats); 1 with
    /// [`Head::Global`].
    side: usize,
    fc: Linear<B>,
}

/// Feature names of the small CNN, in forward order.
pub const FEATURES: [&str; 3] = ["block1", "block2", "pool"];

/// The last convolutional stage: Grad-CAM's layer when none is given.
pub const CAM_LAYER: &str = "block2";

impl<B: Backend> SmallCnn<B> {
    /// 32 × width and 64 × width channels.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let (c1, c2) = (scaled(32, config.width), scaled(64, config.width));
        let side = config.head.side();
        debug_assert!(side == 4 || config.head == Head::Global);
        let imagenet_stem = config.stem == Stem::ImageNet;
        let conv1 = if imagenet_stem {
            conv([config.in_channels, c1], 7, 2, 3, false, device)
        } else {
            conv([config.in_channels, c1], 3, 1, 1, false, device)
        };
        Self {
            conv1,
            bn1: batch_norm(c1, device),
            conv2: conv([c1, c2], 3, 1, 1, false, device),
            bn2: batch_norm(c2, device),
            imagenet_stem,
            side: config.head.side(),
            fc: LinearConfig::new(c2 * side * side, config.num_classes).init(device),
        }
    }

    /// Logits and every named feature ([`FEATURES`]) of one forward pass.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`
    /// - logits: `[batch, num_classes]`
    pub fn forward_features(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Features<B>) {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let x = if self.imagenet_stem {
            max_pool2d(x, 3, 2, 1)
        } else {
            max_pool2d(x, 2, 2, 0)
        }; // [n, 32w, h/2, w/2] (small stem)
        let mut features = Vec::with_capacity(FEATURES.len());
        let x = record(&mut features, "block1", x);
        let x = max_pool2d(relu(self.bn2.forward(self.conv2.forward(x))), 2, 2, 0); // [n, 64w, h/4, w/4]
        let x = record(&mut features, "block2", x);
        let s = self.side;
        let pooled = adaptive_avg_pool2d(x, [s, s]); // [n, 64w, 4, 4] (1, 1 global)
        let pooled = record(&mut features, "pool", pooled);
        let [n, c, _, _] = pooled.dims();
        let logits = self.fc.forward(pooled.reshape([n, c * s * s]));
        (logits, features)
    }
}

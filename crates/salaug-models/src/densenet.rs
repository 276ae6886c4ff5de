//! DenseNet-121 and DenseNet-169 (Huang et al. 2017, <https://arxiv.org/abs/1608.06993>),
//! following torchvision's `densenet.py`: growth rate 32, bottleneck width 4 × growth,
//! compression 0.5 in the transitions, 2 × growth initial features.
//!
//! The ImageNet stem is a 7×7/2 convolution, BatchNorm, ReLU and a 3×3/2 max pool; the
//! small-image stem is one 3×3/1 convolution with BatchNorm and ReLU. Named features: `stem`,
//! `block1` … `block4` (`block4` after the final BatchNorm and ReLU), `pool`.

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use salaug_core::relu;

use crate::ops::{
    avg_pool2d, batch_norm, conv, global_avg_pool, max_pool2d, scaled, BatchNorm, Linear,
    LinearConfig,
};
use crate::{record, Features, ModelConfig, Stem};

/// BN-ReLU-Conv1×1-BN-ReLU-Conv3×3, producing `growth` new channels.
#[derive(Module, Debug)]
pub struct DenseLayer<B: Backend> {
    norm1: BatchNorm<B>,
    conv1: Conv2d<B>,
    norm2: BatchNorm<B>,
    conv2: Conv2d<B>,
}

impl<B: Backend> DenseLayer<B> {
    fn new(cin: usize, growth: usize, bn_size: usize, device: &B::Device) -> Self {
        Self {
            norm1: batch_norm(cin, device),
            conv1: conv([cin, bn_size * growth], 1, 1, 0, false, device),
            norm2: batch_norm(bn_size * growth, device),
            conv2: conv([bn_size * growth, growth], 3, 1, 1, false, device),
        }
    }

    /// Appends the new channels to `x`.
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = self.conv1.forward(relu(self.norm1.forward(x.clone())));
        let y = self.conv2.forward(relu(self.norm2.forward(y)));
        Tensor::cat(vec![x, y], 1)
    }
}

/// BN-ReLU-Conv1×1 (compression) and 2×2 average pooling between dense blocks.
#[derive(Module, Debug)]
pub struct Transition<B: Backend> {
    norm: BatchNorm<B>,
    conv: Conv2d<B>,
}

impl<B: Backend> Transition<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        avg_pool2d(self.conv.forward(relu(self.norm.forward(x))), 2, 2, 0)
    }
}

/// A DenseNet-BC.
#[derive(Module, Debug)]
pub struct DenseNet<B: Backend> {
    conv0: Conv2d<B>,
    norm0: BatchNorm<B>,
    /// Whether the stem ends in the 3×3/2 max pool (ImageNet stem).
    stem_pool: bool,
    blocks: Vec<Vec<DenseLayer<B>>>,
    transitions: Vec<Transition<B>>,
    norm5: BatchNorm<B>,
    classifier: Linear<B>,
}

/// Layers per dense block of DenseNet-121.
pub const DENSENET121_BLOCKS: [usize; 4] = [6, 12, 24, 16];
/// Layers per dense block of DenseNet-169.
pub const DENSENET169_BLOCKS: [usize; 4] = [6, 12, 32, 32];

/// Feature names of every DenseNet, in forward order.
pub const FEATURES: [&str; 6] = ["stem", "block1", "block2", "block3", "block4", "pool"];

/// The last convolutional stage: Grad-CAM's layer when none is given.
pub const CAM_LAYER: &str = "block4";

impl<B: Backend> DenseNet<B> {
    /// A DenseNet-BC with `blocks` layers per dense block (growth 32 × width, bottleneck 4,
    /// compression 0.5).
    pub fn new(config: &ModelConfig, blocks: [usize; 4], device: &B::Device) -> Self {
        let growth = scaled(32, config.width);
        let bn_size = 4;
        let init = 2 * growth;
        let (conv0, stem_pool) = match config.stem {
            Stem::ImageNet => (
                conv([config.in_channels, init], 7, 2, 3, false, device),
                true,
            ),
            Stem::Small => (
                conv([config.in_channels, init], 3, 1, 1, false, device),
                false,
            ),
        };
        let mut channels = init;
        let mut dense = Vec::new();
        let mut transitions = Vec::new();
        for (i, &count) in blocks.iter().enumerate() {
            dense.push(
                (0..count)
                    .map(|j| DenseLayer::new(channels + j * growth, growth, bn_size, device))
                    .collect(),
            );
            channels += count * growth;
            if i + 1 < blocks.len() {
                let out = channels / 2;
                transitions.push(Transition {
                    norm: batch_norm(channels, device),
                    conv: conv([channels, out], 1, 1, 0, false, device),
                });
                channels = out;
            }
        }
        Self {
            conv0,
            norm0: batch_norm(init, device),
            stem_pool,
            blocks: dense,
            transitions,
            norm5: batch_norm(channels, device),
            classifier: LinearConfig::new(channels, config.num_classes).init(device),
        }
    }

    /// Logits and every named feature ([`FEATURES`]) of one forward pass.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`
    /// - logits: `[batch, num_classes]`
    pub fn forward_features(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Features<B>) {
        let mut features = Vec::with_capacity(FEATURES.len());
        let mut x = relu(self.norm0.forward(self.conv0.forward(x)));
        if self.stem_pool {
            x = max_pool2d(x, 3, 2, 1);
        }
        x = record(&mut features, "stem", x);
        let last = self.blocks.len() - 1;
        for (i, block) in self.blocks.iter().enumerate() {
            for layer in block {
                x = layer.forward(x);
            }
            if i < last {
                x = record(&mut features, FEATURES[i + 1], x);
                x = self.transitions[i].forward(x);
            }
        }
        x = relu(self.norm5.forward(x));
        x = record(&mut features, "block4", x);
        let pooled = global_avg_pool(x);
        let [n, c] = pooled.dims();
        let pooled = record(&mut features, "pool", pooled.reshape([n, c, 1, 1]));
        (self.classifier.forward(pooled.reshape([n, c])), features)
    }
}

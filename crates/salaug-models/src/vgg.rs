//! VGG-16-BN and VGG-19-BN (Simonyan & Zisserman 2015, <https://arxiv.org/abs/1409.1556>),
//! following torchvision's `vgg.py` (configurations "D" and "E" with BatchNorm).
//!
//! ImageNet variant: five stages of 3×3 conv + BN + ReLU, each closed by a 2×2 max pool, then
//! adaptive average pooling to 7×7 and the 4096-4096 classifier with dropout 0.5. Small-image
//! variant (CIFAR style): the fifth max pool is replaced by global average pooling and the
//! classifier is one linear layer (512 → classes), so 28×28 and 32×32 inputs both fit. The
//! `stem` setting picks the head, since VGG has no separate stem. Named features: `stage1` …
//! `stage5`, `pool`.

use burn::nn::conv::Conv2d;
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use salaug_core::relu;

use crate::ops::{
    adaptive_avg_pool2d, batch_norm, conv, global_avg_pool, max_pool2d, scaled, BatchNorm, Linear,
    LinearConfig,
};
use crate::{record, Features, ModelConfig, Stem};

/// 3×3 convolution (with bias, as torchvision), BatchNorm, ReLU.
#[derive(Module, Debug)]
pub struct ConvBnRelu<B: Backend> {
    conv: Conv2d<B>,
    bn: BatchNorm<B>,
}

impl<B: Backend> ConvBnRelu<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        relu(self.bn.forward(self.conv.forward(x)))
    }
}

/// The ImageNet classifier: 25088 → 4096 → 4096 → classes, ReLU and dropout between.
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    fc1: Linear<B>,
    fc2: Linear<B>,
    fc3: Linear<B>,
    dropout: Dropout,
}

/// The head of a VGG.
// Built once per model and never moved in a hot loop; boxing would break `derive(Module)`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Head<B: Backend> {
    /// Adaptive 7×7 average pooling and the three-layer classifier.
    ImageNet(Classifier<B>),
    /// Global average pooling and one linear layer.
    Small(Linear<B>),
}

/// A VGG with BatchNorm.
#[derive(Module, Debug)]
pub struct Vgg<B: Backend> {
    stages: Vec<Vec<ConvBnRelu<B>>>,
    head: Head<B>,
}

/// Output channels of each conv, stage by stage, of VGG-16 (configuration "D").
pub const VGG16_STAGES: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];
/// Output channels of each conv, stage by stage, of VGG-19 (configuration "E").
pub const VGG19_STAGES: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256, 256],
    &[512, 512, 512, 512],
    &[512, 512, 512, 512],
];

/// Feature names of every VGG, in forward order.
pub const FEATURES: [&str; 6] = ["stage1", "stage2", "stage3", "stage4", "stage5", "pool"];

/// The last convolutional stage: Grad-CAM's layer when none is given.
pub const CAM_LAYER: &str = "stage5";

impl<B: Backend> Vgg<B> {
    /// A VGG-BN with the given conv widths per stage.
    pub fn new(config: &ModelConfig, stages: [&[usize]; 5], device: &B::Device) -> Self {
        let mut cin = config.in_channels;
        let stages = stages
            .iter()
            .map(|widths| {
                widths
                    .iter()
                    .map(|&c| {
                        let cout = scaled(c, config.width);
                        let layer = ConvBnRelu {
                            conv: conv([cin, cout], 3, 1, 1, true, device),
                            bn: batch_norm(cout, device),
                        };
                        cin = cout;
                        layer
                    })
                    .collect()
            })
            .collect();
        let head = match config.stem {
            Stem::ImageNet => {
                let hidden = scaled(4096, config.width);
                Head::ImageNet(Classifier {
                    fc1: LinearConfig::new(cin * 49, hidden).init(device),
                    fc2: LinearConfig::new(hidden, hidden).init(device),
                    fc3: LinearConfig::new(hidden, config.num_classes).init(device),
                    dropout: DropoutConfig::new(0.5).init(),
                })
            }
            Stem::Small => Head::Small(LinearConfig::new(cin, config.num_classes).init(device)),
        };
        Self { stages, head }
    }

    /// Logits and every named feature ([`FEATURES`]) of one forward pass.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`, with `h, w ≥ 32` for the ImageNet head (five
    ///   pools) and `≥ 16` for the small one
    /// - logits: `[batch, num_classes]`
    pub fn forward_features(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Features<B>) {
        let small = matches!(self.head, Head::Small(_));
        let mut features = Vec::with_capacity(FEATURES.len());
        let mut x = x;
        let last = self.stages.len() - 1;
        for (i, stage) in self.stages.iter().enumerate() {
            for layer in stage {
                x = layer.forward(x);
            }
            if !(small && i == last) {
                x = max_pool2d(x, 2, 2, 0);
            }
            x = record(&mut features, FEATURES[i], x);
        }
        let logits = match &self.head {
            Head::ImageNet(head) => {
                let pooled = adaptive_avg_pool2d(x, [7, 7]); // [n, c, 7, 7]
                let [n, c, _, _] = pooled.dims();
                let pooled = record(&mut features, "pool", pooled);
                let x = pooled.reshape([n, c * 49]);
                let x = head.dropout.forward(relu(head.fc1.forward(x)));
                let x = head.dropout.forward(relu(head.fc2.forward(x)));
                head.fc3.forward(x)
            }
            Head::Small(fc) => {
                let pooled = global_avg_pool(x);
                let [n, c] = pooled.dims();
                let pooled = record(&mut features, "pool", pooled.reshape([n, c, 1, 1]));
                fc.forward(pooled.reshape([n, c]))
            }
        };
        (logits, features)
    }
}

//! ResNet-18 and ResNet-50 (He et al. 2016, <https://arxiv.org/abs/1512.03385>), following
//! torchvision's `resnet.py` ("ResNet v1.5": the stride of a bottleneck sits on its 3×3 conv).
//!
//! The ImageNet stem is a 7×7/2 convolution and a 3×3/2 max pool; the small-image stem (CIFAR
//! style) is one 3×3/1 convolution and no pool. Named features: `stem`, `layer1` … `layer4`,
//! `pool` (the pooled vector as `[batch, channels, 1, 1]`).

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use salaug_core::relu;

use crate::ops::{
    batch_norm, conv, global_avg_pool, max_pool2d, scaled, BatchNorm, Linear, LinearConfig,
};
use crate::{record, Features, ModelConfig, Stem};

/// The 1×1 convolution + BatchNorm on a residual shortcut that changes shape.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    conv: Conv2d<B>,
    bn: BatchNorm<B>,
}

impl<B: Backend> Downsample<B> {
    fn new(cin: usize, cout: usize, stride: usize, device: &B::Device) -> Self {
        Self {
            conv: conv([cin, cout], 1, stride, 0, false, device),
            bn: batch_norm(cout, device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.bn.forward(self.conv.forward(x))
    }
}

/// Two 3×3 convolutions (ResNet-18/34).
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    conv1: Conv2d<B>,
    bn1: BatchNorm<B>,
    conv2: Conv2d<B>,
    bn2: BatchNorm<B>,
    downsample: Option<Downsample<B>>,
}

/// 1×1, 3×3 (strided), 1×1 ×4 convolutions (ResNet-50 and deeper).
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    conv1: Conv2d<B>,
    bn1: BatchNorm<B>,
    conv2: Conv2d<B>,
    bn2: BatchNorm<B>,
    conv3: Conv2d<B>,
    bn3: BatchNorm<B>,
    downsample: Option<Downsample<B>>,
}

/// One residual block.
// Built once per model and never moved in a hot loop; boxing would break `derive(Module)`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block<B: Backend> {
    /// ResNet-18's block.
    Basic(BasicBlock<B>),
    /// ResNet-50's block.
    Bottleneck(Bottleneck<B>),
}

impl<B: Backend> Block<B> {
    /// `cin` channels in, `planes × expansion` out.
    fn new(bottleneck: bool, cin: usize, planes: usize, stride: usize, device: &B::Device) -> Self {
        let expansion = if bottleneck { 4 } else { 1 };
        let cout = planes * expansion;
        let downsample =
            (stride != 1 || cin != cout).then(|| Downsample::new(cin, cout, stride, device));
        if bottleneck {
            Block::Bottleneck(Bottleneck {
                conv1: conv([cin, planes], 1, 1, 0, false, device),
                bn1: batch_norm(planes, device),
                conv2: conv([planes, planes], 3, stride, 1, false, device),
                bn2: batch_norm(planes, device),
                conv3: conv([planes, cout], 1, 1, 0, false, device),
                bn3: batch_norm(cout, device),
                downsample,
            })
        } else {
            Block::Basic(BasicBlock {
                conv1: conv([cin, planes], 3, stride, 1, false, device),
                bn1: batch_norm(planes, device),
                conv2: conv([planes, planes], 3, 1, 1, false, device),
                bn2: batch_norm(planes, device),
                downsample,
            })
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Block::Basic(b) => {
                let identity = shortcut(&b.downsample, x.clone());
                let out = relu(b.bn1.forward(b.conv1.forward(x)));
                let out = b.bn2.forward(b.conv2.forward(out));
                relu(out + identity)
            }
            Block::Bottleneck(b) => {
                let identity = shortcut(&b.downsample, x.clone());
                let out = relu(b.bn1.forward(b.conv1.forward(x)));
                let out = relu(b.bn2.forward(b.conv2.forward(out)));
                let out = b.bn3.forward(b.conv3.forward(out));
                relu(out + identity)
            }
        }
    }
}

/// The residual shortcut: the identity, or the downsampling projection.
fn shortcut<B: Backend>(downsample: &Option<Downsample<B>>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    match downsample {
        Some(d) => d.forward(x),
        None => x,
    }
}

/// A ResNet: stem, four stages of residual blocks, global average pooling, linear head.
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    conv1: Conv2d<B>,
    bn1: BatchNorm<B>,
    /// Whether the stem ends in the 3×3/2 max pool (ImageNet stem).
    stem_pool: bool,
    layers: Vec<Vec<Block<B>>>,
    fc: Linear<B>,
}

/// Blocks per stage of ResNet-18.
pub const RESNET18_BLOCKS: [usize; 4] = [2, 2, 2, 2];
/// Blocks per stage of ResNet-50.
pub const RESNET50_BLOCKS: [usize; 4] = [3, 4, 6, 3];

/// Feature names of every ResNet, in forward order.
pub const FEATURES: [&str; 6] = ["stem", "layer1", "layer2", "layer3", "layer4", "pool"];

/// The last convolutional stage: Grad-CAM's layer when none is given.
pub const CAM_LAYER: &str = "layer4";

impl<B: Backend> ResNet<B> {
    /// A ResNet with `blocks` per stage, basic or bottleneck blocks, as `config` says.
    pub fn new(
        config: &ModelConfig,
        blocks: [usize; 4],
        bottleneck: bool,
        device: &B::Device,
    ) -> Self {
        let w = |c| scaled(c, config.width);
        let (conv1, stem_pool) = match config.stem {
            Stem::ImageNet => (
                conv([config.in_channels, w(64)], 7, 2, 3, false, device),
                true,
            ),
            Stem::Small => (
                conv([config.in_channels, w(64)], 3, 1, 1, false, device),
                false,
            ),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let mut cin = w(64);
        let layers = [64, 128, 256, 512]
            .into_iter()
            .zip(blocks)
            .enumerate()
            .map(|(stage, (planes, count))| {
                let planes = w(planes);
                (0..count)
                    .map(|i| {
                        let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                        let block = Block::new(bottleneck, cin, planes, stride, device);
                        cin = planes * expansion;
                        block
                    })
                    .collect()
            })
            .collect();
        Self {
            conv1,
            bn1: batch_norm(w(64), device),
            stem_pool,
            layers,
            fc: LinearConfig::new(cin, config.num_classes).init(device),
        }
    }

    /// Logits and every named feature ([`FEATURES`]) of one forward pass.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`
    /// - logits: `[batch, num_classes]`
    pub fn forward_features(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Features<B>) {
        let mut features = Vec::with_capacity(FEATURES.len());
        let mut x = relu(self.bn1.forward(self.conv1.forward(x))); // [n, 64w, h/2 | h, ..]
        if self.stem_pool {
            x = max_pool2d(x, 3, 2, 1); // [n, 64w, h/4, w/4]
        }
        x = record(&mut features, "stem", x);
        for (name, stage) in FEATURES[1..5].iter().zip(&self.layers) {
            for block in stage {
                x = block.forward(x);
            }
            x = record(&mut features, name, x);
        }
        let pooled = global_avg_pool(x); // [n, c]
        let [n, c] = pooled.dims();
        let pooled = record(&mut features, "pool", pooled.reshape([n, c, 1, 1]));
        (self.fc.forward(pooled.reshape([n, c])), features)
    }
}

//! What the multi-device and multi-process tests share: the real-data guard, the one-step
//! config, and the float and gradient readers of a model.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use salaug_train::backend::Selected;

/// 8 training images and one batch of 4 per device or rank (two of them): one optimiser step
/// of plain SGD, whose update the tests compute by hand.
pub const ONE_STEP: &str = r#"
seed = 3
[data]
dataset = "fashion_mnist"
train_limit = 8
test_limit = 4
[model]
arch = "small_cnn"
stem = "small"
width = 0.25
[augment]
kind = "rotation"
max_degrees = 10.0
p = 1.0
[train]
strategy = "sal"
epochs = 1
batch_size = 4
lr = 0.5
optimizer = { kind = "sgd", momentum = 0.0, nesterov = false, weight_decay = 0.0 }
schedule = { kind = "constant" }
[loss]
beta = 10.0
[metrics]
consistency_images = 2
held_out_images = 0
"#;

/// Fails the test with the install command unless real Fashion-MNIST is here.
pub fn require_data() {
    assert!(
        Path::new(salaug_spec::data::DEBIAN_FASHION_MNIST)
            .join("t10k-images-idx3-ubyte.gz")
            .exists(),
        "these tests need real Fashion-MNIST: apt-get install dataset-fashion-mnist"
    );
}

/// Every float of a module (parameters and running statistics) in visiting order, with its id.
pub fn floats<B: Backend, M: Module<B>>(m: &M) -> Vec<(ParamId, Vec<f32>)> {
    struct All(Vec<(ParamId, Vec<f32>)>);
    impl<B: Backend> ModuleVisitor<B> for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let v = p.val().into_data().convert::<f32>();
            self.0.push((p.id, v.to_vec::<f32>().unwrap()));
        }
    }
    let mut all = All(Vec::new());
    m.visit(&mut all);
    all.0
}

/// The gradient of parameter `id` (of any rank the small CNN has), if it is a parameter.
pub fn grad_of(g: &GradientsParams, id: ParamId) -> Option<Vec<f32>> {
    fn flat<const D: usize>(t: Tensor<Selected, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }
    (g.get::<Selected, 1>(id).map(flat))
        .or_else(|| g.get::<Selected, 2>(id).map(flat))
        .or_else(|| g.get::<Selected, 3>(id).map(flat))
        .or_else(|| g.get::<Selected, 4>(id).map(flat))
}

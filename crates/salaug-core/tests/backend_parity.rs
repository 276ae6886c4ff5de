//! The same saliency-loss gradients on every CPU backend (and on wgpu through a Vulkan
//! driver, software or not, when the `wgpu` feature is on and a driver is installed).

mod common;

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use common::{batch, flip_sal_loss, TestNet};
use salaug_core::{SaliencyKind, SaliencyLossConfig};

struct Collect<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: Vec<Vec<f64>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            self.out
                .push(g.into_data().convert::<f64>().to_vec::<f64>().unwrap());
        }
    }
}

/// The loss value and the gradient of every parameter, flattened, on backend `B`.
fn saliency_gradients<B: Backend>(device: &B::Device) -> (f64, Vec<Vec<f64>>) {
    let model = TestNet::<Autodiff<B>>::new(7, device);
    let (x, y) = batch::<Autodiff<B>>(11, 4, 8, device);
    let loss = flip_sal_loss(
        &model,
        &x,
        &y,
        SaliencyLossConfig::default(),
        SaliencyKind::Gradient,
        true,
    );
    let value = loss
        .clone()
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .unwrap()[0];
    let grads = loss.backward();
    let mut collect = Collect::<Autodiff<B>> {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut collect);
    (value, collect.out)
}

/// Largest over parameter tensors of ‖a − b‖, relative to the norm of the whole gradient `b`.
///
/// (Per-tensor relative differences would be meaningless for tensors whose true gradient is
/// zero, such as a convolution bias followed by BatchNorm: there both sides are round-off.)
fn max_relative_difference(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "different number of parameters with a gradient"
    );
    let norm: f64 = b.iter().flatten().map(|y| y * y).sum::<f64>().sqrt();
    a.iter()
        .zip(b)
        .map(|(a, b)| {
            assert_eq!(a.len(), b.len());
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt()
                / norm
        })
        .fold(0.0, f64::max)
}

// All backends here compute in f32: burn 0.21 fixes the default float dtype per device type
// for the whole process, so NdArray<f64> cannot be mixed with NdArray<f32> in one test binary.

#[test]
fn flex_and_ndarray_give_the_same_second_order_gradients() {
    let (l_flex, g_flex) = saliency_gradients::<burn::backend::Flex>(&Default::default());
    let (l_nd, g_nd) = saliency_gradients::<burn::backend::NdArray<f32>>(&Default::default());
    let d = max_relative_difference(&g_flex, &g_nd);
    println!("loss flex {l_flex:.7} ndarray {l_nd:.7}; gradient difference {d:.2e} of its norm");
    assert_eq!(
        g_flex.len(),
        5,
        "conv1 w, conv1 b, bn gamma, conv2 w, head w carry gradients"
    );
    assert!((l_flex - l_nd).abs() < 1e-5 * l_nd.abs().max(1.0));
    assert!(d < 1e-5, "flex vs ndarray: {d:e}");
}

/// Runs when the crate is built with `--features wgpu` and a Vulkan driver (Debian:
/// `mesa-vulkan-drivers`, the software rasteriser lavapipe) is installed; says so otherwise.
/// Under CI (the environment variable `CI` set, as `.ci/run` does after installing the
/// driver) a missing driver fails the test instead of skipping it.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_gives_the_same_second_order_gradients() {
    let has_driver = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .any(|d| {
            std::fs::read_dir(d)
                .map(|mut e| e.next().is_some())
                .unwrap_or(false)
        });
    if !has_driver {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no Vulkan driver is installed (no ICD file in /usr/share/vulkan/icd.d \
             or /etc/vulkan/icd.d): the wgpu parity test cannot run; .ci/run installs \
             mesa-vulkan-drivers"
        );
        println!("SKIPPED: no Vulkan driver installed (apt-get install mesa-vulkan-drivers)");
        return;
    }
    let (l_gpu, g_gpu) = saliency_gradients::<burn::backend::Wgpu>(&Default::default());
    let (l_nd, g_nd) = saliency_gradients::<burn::backend::NdArray<f32>>(&Default::default());
    let d = max_relative_difference(&g_gpu, &g_nd);
    println!("loss wgpu {l_gpu:.7} ndarray {l_nd:.7}; gradient difference {d:.2e} of its norm");
    assert!((l_gpu - l_nd).abs() < 1e-5 * l_nd.abs().max(1.0));
    assert!(d < 1e-5, "wgpu vs ndarray: {d:e}");
}

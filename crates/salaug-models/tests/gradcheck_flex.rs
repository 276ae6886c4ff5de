//! The finite-difference checks of `gradcheck.rs`, on flex: the CPU backend salaug trains on,
//! with salaug's patched kernels (`vendor/burn-flex/PATCHES.md`: convolution and its
//! gradients, strided and broadcast element-wise ops, gather/scatter) in f64. Every second
//! derivative of L_sal through the zoo's models must match finite differences there too.
//!
//! Its own test binary: the process's flex device is set to f64 before any tensor exists.

mod common;

use burn::backend::{Autodiff, Flex};
use burn::tensor::DType;
use common::{check, check_bottleneck_family, check_densenet_family};
use salaug_models::Arch;

type B = Autodiff<Flex>;

fn f64_flex() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        burn::tensor::set_default_dtypes::<Flex>(&Default::default(), DType::F64, DType::I64)
            .expect("flex computes in f64");
    });
}

#[test]
fn small_cnn_on_flex_passes_gradcheck() {
    f64_flex();
    check::<B>(Arch::SmallCnn, 0.125, 8, 6);
}

#[test]
fn resnet18_on_flex_passes_gradcheck() {
    f64_flex();
    check::<B>(Arch::ResNet18, 1.0 / 16.0, 16, 3);
}

#[test]
fn resnet_bottleneck_family_on_flex_passes_gradcheck() {
    f64_flex();
    check_bottleneck_family::<B>();
}

#[test]
fn densenet_family_on_flex_passes_gradcheck() {
    f64_flex();
    check_densenet_family::<B>();
}

#[test]
fn vgg16_bn_on_flex_passes_gradcheck() {
    f64_flex();
    check::<B>(Arch::Vgg16Bn, 1.0 / 32.0, 16, 2);
}

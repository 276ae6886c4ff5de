//! Every family of the zoo, narrowed and on a tiny batch, passes the finite-difference check
//! of L_sal's gradient (f64, second order) for every parameter tensor.
//!
//! Its own test binary: burn 0.21 fixes the float dtype of `NdArray` per process (see
//! `salaug_core::gradcheck`), so no f32 ndarray tensor may appear here.

mod common;

use common::{
    check, check_bottleneck_family, check_densenet_family, check_direction, check_method,
    check_model,
};
use salaug_core::gradcheck::GradcheckBackend as GB;
use salaug_core::SaliencyKind;
use salaug_models::{Arch, Head};

#[test]
fn resnet18_narrow_passes_gradcheck() {
    // 16×16 so that stage 4 is 2×2: train-mode BatchNorm over two 1×1 values (batch 2) is a
    // near-sign function, too ill-conditioned for finite differences.
    check::<GB>(Arch::ResNet18, 1.0 / 16.0, 16, 3);
}

#[test]
fn resnet_bottleneck_family_passes_gradcheck() {
    check_bottleneck_family::<GB>();
}

#[test]
fn densenet_family_passes_gradcheck() {
    check_densenet_family::<GB>();
}

#[test]
fn vgg16_bn_narrow_passes_gradcheck() {
    check::<GB>(Arch::Vgg16Bn, 1.0 / 32.0, 16, 2);
}

// The full-depth checks below run in `cargo xtask gradcheck-full` (PASS/FAIL per model); their
// last results, and the entries that remain above the tolerance with why, are recorded in
// docs/method.md ("With this rule, the full-depth checks ...").
#[test]
#[ignore = "one entry at 1.57e-6 (docs/method.md); about 30 s; cargo xtask gradcheck-full"]
fn resnet50_narrow_passes_gradcheck() {
    check::<GB>(Arch::ResNet50, 1.0 / 32.0, 16, 1);
}

#[test]
#[ignore = "slow (7 min), one entry at 1.55e-6 (docs/method.md); cargo xtask gradcheck-full"]
fn densenet121_narrow_passes_gradcheck() {
    check::<GB>(Arch::DenseNet121, 1.0 / 32.0, 8, 1);
}

#[test]
#[ignore = "slow (tens of minutes): full depth; cargo xtask gradcheck-full"]
fn densenet169_narrow_passes_gradcheck() {
    check::<GB>(Arch::DenseNet169, 1.0 / 32.0, 8, 1);
}

/// Full depth, but a few seconds (4.4 s on 2 cores, 2026-12-02): it runs with the suite.
#[test]
fn vgg19_bn_narrow_passes_gradcheck() {
    check::<GB>(Arch::Vgg19Bn, 1.0 / 32.0, 16, 2);
}

#[test]
fn small_cnn_narrow_passes_gradcheck() {
    check::<GB>(Arch::SmallCnn, 0.125, 8, 6);
}

/// The small CNN with global average pooling (`model.head = "global"`, issue 23's lattice
/// study): the pooled features are `[n, c, 1, 1]`.
#[test]
fn small_cnn_with_a_global_head_passes_gradcheck() {
    check_model::<GB>(
        |device| {
            common::config(Arch::SmallCnn, 0.125)
                .with_head(Head::Global)
                .init::<GB>(device)
        },
        "small_cnn global head",
        8,
        6,
        &SaliencyKind::Gradient,
    );
}

/// Guided backpropagation, DeconvNet, Grad-CAM (default layer) and guided Grad-CAM through two
/// zoo models: their hooks (every ReLU, the last stage's tap) inside real architectures.
///
/// DeconvNet through ResNet-18 is checked along a direction instead of entry by entry: every
/// ReLU passes back `(R > 0)·R` whatever its input, so L_sal has switches on scales down to
/// about 1e-7 of a weight, and per-entry quotients at 1e-6…1e-8 straddle one too often to
/// judge (errors up to 8e-3 with most quotients unconverged). Along one direction the
/// quotients converge to the analytic derivative as the step shrinks (docs/method.md).
#[test]
fn saliency_methods_pass_gradcheck_on_zoo_models() {
    let hooked = SaliencyKind::every()
        .into_iter()
        .filter(SaliencyKind::uses_hooks);
    for method in hooked {
        check_method::<GB>(Arch::SmallCnn, 0.125, 8, 6, &method);
        if method != SaliencyKind::DeconvNet {
            check_method::<GB>(Arch::ResNet18, 1.0 / 16.0, 16, 3, &method);
        }
    }
    check_direction::<GB>(
        Arch::ResNet18,
        1.0 / 16.0,
        16,
        &SaliencyKind::DeconvNet,
        1e-6,
    );
    check_direction::<GB>(
        Arch::ResNet18,
        1.0 / 16.0,
        16,
        &SaliencyKind::GuidedBackprop,
        1e-6,
    );
}

//! Every family of the zoo, narrowed and on a tiny batch, passes the finite-difference check
//! of L_sal's gradient (f64, second order) for every parameter tensor.
//!
//! Its own test binary: burn 0.21 fixes the float dtype of `NdArray` per process (see
//! `salaug_core::gradcheck`), so no f32 ndarray tensor may appear here.

use burn::prelude::*;
use burn::tensor::Distribution;
use salaug_core::gradcheck::{gradcheck, GradcheckBackend as GB, GradcheckConfig};
use salaug_core::{SaliencyKind, SaliencyLossConfig, SaliencyMethod};
use salaug_models::{Arch, DenseNet, Model, ModelConfig, ResNet, Stem};

fn config(arch: Arch, width: f64) -> ModelConfig {
    ModelConfig::new(arch, Stem::Small, 2, 3).with_width(width)
}

fn check(arch: Arch, width: f64, side: usize, entries_per_param: usize) {
    check_model(
        |device| config(arch, width).init::<GB>(device),
        arch.name(),
        side,
        entries_per_param,
    );
}

/// The tests of this binary run in parallel and burn's backend RNG is global: seeding, weight
/// initialisation (lazy, so up to materialisation) and the input draw happen under this lock,
/// so every test sees the same values whatever runs beside it.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Finite-difference step. The input gradient of a ReLU network is discontinuous where a
/// pre-activation crosses zero; the smaller the step, the rarer a difference that straddles
/// such a kink (f64 round-off stays ~1e-9 relative at this step).
const STEP: f64 = 1e-6;

fn check_model(
    build: impl FnOnce(&burn::backend::ndarray::NdArrayDevice) -> Model<GB>,
    arch: &str,
    side: usize,
    entries_per_param: usize,
) {
    let device = Default::default();
    let (model, x) = {
        let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        GB::seed(&device, 3);
        let model = build(&device);
        salaug_core::materialize(&model);
        let x = Tensor::<GB, 4>::random([2, 2, side, side], Distribution::Default, &device);
        (model, x)
    };
    let y = Tensor::<GB, 1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let loss = SaliencyLossConfig::default().init().unwrap();
    let report = gradcheck(
        &model,
        |m| {
            // The maps of x against the flipped-back maps of flip(x).
            let batch = Tensor::cat(vec![x.clone(), x.clone().flip([3])], 0);
            let targets = Tensor::cat(vec![y.clone(), y.clone()], 0);
            let out = SaliencyKind::Gradient
                .attribute(m, batch, targets, &[])
                .unwrap();
            let maps = loss.reduce(out.maps).chunk(2, 0);
            loss.forward(maps[0].clone(), maps[1].clone().flip([3]), None)
                .unwrap()
        },
        GradcheckConfig {
            entries_per_param,
            step: STEP,
            ..Default::default()
        },
    );
    println!(
        "{arch}: {} parameter tensors, max rel error {:.2e}",
        report.params.len(),
        report.max_rel_error()
    );
    report.assert_within(1e-6);
}

#[test]
fn resnet18_narrow_passes_gradcheck() {
    // 16×16 so that stage 4 is 2×2: train-mode BatchNorm over two 1×1 values (batch 2) is a
    // near-sign function, too ill-conditioned for finite differences.
    check(Arch::ResNet18, 1.0 / 16.0, 16, 3);
}

#[test]
fn resnet_bottleneck_family_passes_gradcheck() {
    // ResNet-50's code path (bottleneck blocks, projection shortcuts) with one block per stage.
    let build = |device: &_| {
        Model::ResNet(ResNet::new(
            &config(Arch::ResNet50, 1.0 / 16.0),
            [1, 1, 1, 1],
            true,
            device,
        ))
    };
    check_model(build, "resnet-bottleneck-1111", 16, 3);
}

#[test]
fn densenet_family_passes_gradcheck() {
    // DenseNet-121/169's code path (dense layers, transitions, final norm) with two layers per
    // block; the full depths are the ignored tests below.
    let build = |device: &_| {
        Model::DenseNet(DenseNet::new(
            &config(Arch::DenseNet121, 1.0 / 16.0),
            [2, 2, 2, 2],
            device,
        ))
    };
    check_model(build, "densenet-2222", 8, 3);
}

#[test]
fn vgg16_bn_narrow_passes_gradcheck() {
    check(Arch::Vgg16Bn, 1.0 / 32.0, 16, 2);
}

// The full-depth checks below, as last run (2026-11-25, `cargo xtask gradcheck-full`):
// densenet169 passes (1.1e-7); resnet50 (4.7e-4), vgg19_bn (3.0e-4) and densenet121 (1.6e-6)
// each fail on one or two entries while every other entry agrees to ~1e-7. Rerunning resnet50
// and vgg19_bn at step 1e-7 made those entries agree (resnet50 then passes at 8.6e-7): they are
// differences that straddle a ReLU kink, where the input gradient jumps. At steps ≤ 3e-7,
// vgg19_bn's conv biases before BatchNorm (true gradient exactly 0) show round-off above the
// tolerance instead, so no single step serves a net this deep. The fix belongs in
// `salaug_core::gradcheck` (re-estimate an entry whose differences at h and h/10 disagree),
// not in these tests.
#[test]
#[ignore = "slow (minutes): full depth; cargo xtask gradcheck-full"]
fn resnet50_narrow_passes_gradcheck() {
    check(Arch::ResNet50, 1.0 / 32.0, 16, 1);
}

#[test]
#[ignore = "slow (tens of minutes): full depth; cargo xtask gradcheck-full"]
fn densenet121_narrow_passes_gradcheck() {
    check(Arch::DenseNet121, 1.0 / 32.0, 8, 1);
}

#[test]
#[ignore = "slow (tens of minutes): full depth; cargo xtask gradcheck-full"]
fn densenet169_narrow_passes_gradcheck() {
    check(Arch::DenseNet169, 1.0 / 32.0, 8, 1);
}

#[test]
#[ignore = "slow (minutes): cargo xtask gradcheck-full"]
fn vgg19_bn_narrow_passes_gradcheck() {
    check(Arch::Vgg19Bn, 1.0 / 32.0, 16, 2);
}

#[test]
fn small_cnn_narrow_passes_gradcheck() {
    check(Arch::SmallCnn, 0.125, 8, 6);
}

//! The finite-difference check of the zoo's L_sal, shared by the ndarray (`gradcheck.rs`) and
//! flex (`gradcheck_flex.rs`) test binaries.
#![allow(dead_code)]

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use salaug_core::gradcheck::{gradcheck, GradcheckConfig};
use salaug_core::{Explain, MapPair, SaliencyKind, SaliencyLossConfig};
use salaug_models::{Arch, DenseNet, Model, ModelConfig, ResNet, Stem};

pub fn config(arch: Arch, width: f64) -> ModelConfig {
    ModelConfig::new(arch, Stem::Small, 2, 3).with_width(width)
}

/// ResNet-50's code path (bottleneck blocks, projection shortcuts) with one block per stage.
pub fn check_bottleneck_family<B: AutodiffBackend>() {
    let build = |device: &_| {
        Model::ResNet(ResNet::new(
            &config(Arch::ResNet50, 1.0 / 16.0),
            [1, 1, 1, 1],
            true,
            device,
        ))
    };
    check_model::<B>(
        build,
        "resnet-bottleneck-1111",
        16,
        3,
        &SaliencyKind::Gradient,
    );
}

/// DenseNet-121/169's code path (dense layers, transitions, final norm) with two layers per
/// block, at 8×8.
pub fn check_densenet_family<B: AutodiffBackend>() {
    let build = |device: &_| {
        Model::DenseNet(DenseNet::new(
            &config(Arch::DenseNet121, 1.0 / 16.0),
            [2, 2, 2, 2],
            device,
        ))
    };
    check_model::<B>(build, "densenet-2222", 8, 3, &SaliencyKind::Gradient);
}

pub fn check<B: AutodiffBackend>(arch: Arch, width: f64, side: usize, entries_per_param: usize) {
    check_method::<B>(
        arch,
        width,
        side,
        entries_per_param,
        &SaliencyKind::Gradient,
    );
}

/// [`check`] with the maps of `method`.
pub fn check_method<B: AutodiffBackend>(
    arch: Arch,
    width: f64,
    side: usize,
    entries_per_param: usize,
    method: &SaliencyKind,
) {
    check_model::<B>(
        |device| config(arch, width).init::<B>(device),
        &format!("{} {}", arch.name(), method.name()),
        side,
        entries_per_param,
        method,
    );
}

/// The tests of a binary run in parallel and burn's backend RNG is global: seeding, weight
/// initialisation (lazy, so up to materialisation) and the input draw happen under this lock,
/// so every test sees the same values whatever runs beside it.
pub static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Finite-difference step. The input gradient of a ReLU network is discontinuous where a
/// pre-activation crosses zero; the smaller the step, the rarer a difference that straddles
/// such a kink (f64 round-off stays ~1e-9 relative at this step).
pub const STEP: f64 = 1e-6;

/// The derivative of L_sal through `method` along one random direction of all parameters of
/// `arch` (width, `side` × `side` inputs as in [`check`]) against central differences at
/// steps 1e-6 … 1e-9, which must converge to it within `tol`.
pub fn check_direction<B: AutodiffBackend>(
    arch: Arch,
    width: f64,
    side: usize,
    method: &SaliencyKind,
    tol: f64,
) {
    let device = Default::default();
    let (model, x) = {
        let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(&device, 3);
        let model = config(arch, width).init::<B>(&device);
        salaug_core::materialize(&model);
        let x = Tensor::<B, 4>::random([2, 2, side, side], Distribution::Default, &device);
        (model, x)
    };
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let loss = SaliencyLossConfig::default().init().unwrap();
    let report = salaug_core::gradcheck::directional_check(
        &model,
        |m| {
            let batch = Tensor::cat(vec![x.clone(), x.clone().flip([3])], 0);
            let explain = Explain::class(Tensor::cat(vec![y.clone(), y.clone()], 0));
            loss.of_batch(m, method, batch, &explain, MapPair::flip_back)
                .unwrap()
                .loss
        },
        11,
        &[1e-6, 1e-7, 1e-8, 1e-9],
    );
    println!("{} {}: {report}", arch.name(), method.name());
    report.assert_within(tol);
}

pub fn check_model<B: AutodiffBackend>(
    build: impl FnOnce(&B::Device) -> Model<B>,
    arch: &str,
    side: usize,
    entries_per_param: usize,
    method: &SaliencyKind,
) {
    let device = Default::default();
    let (model, x) = {
        let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(&device, 3);
        let model = build(&device);
        salaug_core::materialize(&model);
        let x = Tensor::<B, 4>::random([2, 2, side, side], Distribution::Default, &device);
        (model, x)
    };
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let loss = SaliencyLossConfig::default().init().unwrap();
    let report = gradcheck(
        &model,
        |m| {
            // The maps of x against the flipped-back maps of flip(x).
            let batch = Tensor::cat(vec![x.clone(), x.clone().flip([3])], 0);
            let explain = Explain::class(Tensor::cat(vec![y.clone(), y.clone()], 0));
            loss.of_batch(m, method, batch, &explain, MapPair::flip_back)
                .unwrap()
                .loss
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

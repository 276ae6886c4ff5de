//! L_sal's gradient through the inverse warps of rotation and resized crop, and through the
//! expected maps of CutMix (gather + per-pixel weights) and AugMix (warps inside a mixture),
//! passes the finite-difference check (f64, second order). Its own test binary: f64 ndarray
//! only.

use burn::prelude::*;
use burn::tensor::Distribution;
use rand::rngs::StdRng;
use rand::SeedableRng;
use salaug_augment::{AugMix, Augmentation, Compare, CutMix, ResizedCrop, Rotation, Transfer};
use salaug_core::gradcheck::{gradcheck, GradcheckBackend as GB, GradcheckConfig};
use salaug_core::{Explain, SaliencyKind, SaliencyLossConfig};
use salaug_models::{Arch, ModelConfig, Stem};

/// The tests of this binary run in parallel and burn's backend RNG is global: seeding, weight
/// initialisation (lazy, so up to materialisation) and the input draw happen under this lock.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check(aug: Augmentation, compare: Compare) {
    let device = Default::default();
    let (model, x) = {
        let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        GB::seed(&device, 21);
        let model = ModelConfig::new(Arch::SmallCnn, Stem::Small, 1, 3)
            .with_width(0.125)
            .init::<GB>(&device);
        salaug_core::materialize(&model);
        let x = Tensor::<GB, 4>::random([2, 1, 8, 8], Distribution::Uniform(0.0, 1.0), &device);
        (model, x)
    };
    let y = Tensor::<GB, 1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let out = aug.run(x.clone(), &mut StdRng::seed_from_u64(2)).unwrap();
    match compare {
        Compare::Inverse => assert!(matches!(out.transfer, Transfer::Warp(_))),
        _ => assert!(matches!(out.transfer, Transfer::Mix(_))),
    }
    let loss = SaliencyLossConfig::default().init().unwrap();
    let report = gradcheck(
        &model,
        |m| {
            let batch = Tensor::cat(vec![x.clone(), out.images.clone()], 0);
            let explain = Explain::class(Tensor::cat(vec![y.clone(), y.clone()], 0));
            loss.of_batch(m, &SaliencyKind::Gradient, batch, &explain, |s, s_aug| {
                out.transfer.pair(s, s_aug, compare)
            })
            .unwrap()
            .loss
        },
        GradcheckConfig::default(),
    );
    println!(
        "{}: max rel error {:.2e}\n{report}",
        aug.name(),
        report.max_rel_error()
    );
    report.assert_within(1e-6);
}

#[test]
fn saliency_loss_through_rotation_inverse_passes_gradcheck() {
    check(
        Augmentation::Rotation(Rotation {
            max_degrees: 10.0,
            p: 1.0,
        }),
        Compare::Inverse,
    );
}

#[test]
fn saliency_loss_through_resized_crop_inverse_passes_gradcheck() {
    check(
        Augmentation::ResizedCrop(ResizedCrop {
            scale: [0.3, 0.8],
            ..Default::default()
        }),
        Compare::Inverse,
    );
}

#[test]
fn saliency_loss_through_cutmix_expected_map_passes_gradcheck() {
    check(Augmentation::CutMix(CutMix::default()), Compare::Expected);
}

#[test]
fn saliency_loss_through_augmix_expected_map_passes_gradcheck() {
    check(Augmentation::AugMix(AugMix::default()), Compare::Expected);
}

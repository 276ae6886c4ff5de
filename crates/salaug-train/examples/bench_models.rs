//! Plain vs saliency training step of the zoo's models (small-image variants).
//!
//! A plain step is forward + cross-entropy + backward on a batch `x`. A saliency step is what
//! salaug trains with: one lifted forward/backward over `[x, flip(x)]` for the maps (second
//! order), L_class on both halves + L_sal between the maps, and the backward of that sum.
//! Prints the median wall time of `SALAUG_BENCH_REPS` (default 3) runs after one warm-up.
//!
//! `cargo xtask bench models [--backend flex|ndarray]`; `SALAUG_BENCH_ARCHS=resnet18,small_cnn`
//! (default `resnet18`), `SALAUG_BENCH_BATCH` (64), `SALAUG_BENCH_SIDE` (32).

use burn::backend::Autodiff;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use salaug_core::{Classifier, Explain, MapPair, SaliencyKind, SaliencyLossConfig};
use salaug_models::{Arch, Model, ModelConfig, Stem};
use salaug_train::backend::Selected;

type AD = Autodiff<Selected>;

mod common;

use common::{env_usize as env, median_ms};

fn plain_step(model: &Model<AD>, x: Tensor<AD, 4>, y: Tensor<AD, 1, Int>) {
    let loss = CrossEntropyLossConfig::new()
        .init(&x.device())
        .forward(model.logits(x), y);
    let grads = loss.backward();
    drop(grads);
}

fn saliency_step(model: &Model<AD>, x: Tensor<AD, 4>, y: Tensor<AD, 1, Int>) {
    let device = x.device();
    let loss = SaliencyLossConfig::default().init().unwrap();
    let batch = Tensor::cat(vec![x.clone(), x.flip([3])], 0);
    let targets = Tensor::cat(vec![y.clone(), y], 0);
    let out = loss
        .of_batch(
            model,
            &SaliencyKind::Gradient,
            batch,
            &Explain::class(targets.clone()),
            MapPair::flip_back,
        )
        .unwrap();
    let l_sal = out.loss;
    let l_class = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(out.logits, targets);
    let grads = (l_class + l_sal).backward();
    drop(grads);
}

fn main() {
    salaug_train::backend::tune_allocator();
    let reps = env("SALAUG_BENCH_REPS", 3);
    let batch = env("SALAUG_BENCH_BATCH", 64);
    let side = env("SALAUG_BENCH_SIDE", 32);
    let archs = std::env::var("SALAUG_BENCH_ARCHS").unwrap_or_else(|_| "resnet18".into());
    let device = Default::default();
    println!(
        "backend {}, {batch} images of 3×{side}×{side}, median of {reps}",
        std::any::type_name::<Selected>()
    );
    println!("| model | plain step (ms) | saliency step (ms) | ratio |");
    println!("|---|---|---|---|");
    for name in archs.split(',') {
        let Some(arch) = Arch::from_name(name.trim()) else {
            eprintln!("unknown architecture '{name}'");
            std::process::exit(2);
        };
        AD::seed(&device, 0);
        let model = ModelConfig::new(arch, Stem::Small, 3, 10).init::<AD>(&device);
        let x = Tensor::<AD, 4>::random([batch, 3, side, side], Distribution::Default, &device);
        let y = Tensor::<AD, 1, Int>::from_data(
            TensorData::new((0..batch as i64).map(|i| i % 10).collect(), [batch]),
            &device,
        );
        let plain = median_ms(reps, || plain_step(&model, x.clone(), y.clone()));
        let sal = median_ms(reps, || saliency_step(&model, x.clone(), y.clone()));
        println!("| {arch} | {plain:.0} | {sal:.0} | {:.2} |", sal / plain);
    }
}

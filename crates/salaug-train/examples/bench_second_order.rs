//! The finite-difference L_sal gradient against the exact one (`loss.second_order`), on the
//! training step of `configs/bench-peer.toml`: real Fashion-MNIST images (32 originals and
//! their flips), train-mode BatchNorm, f32, each model at its seeded initialisation and after
//! `SALAUG_BENCH_TRAINED` (default 20) exact SGD steps of that config. For each step size and
//! scheme: the cosine between the two parameter gradients of L_sal and the relative error of
//! the finite-difference gradient's norm.
//!
//! `cargo xtask bench second-order` runs it (with the step timings); alone:
//! `cargo run --release -p salaug-train --example bench_second_order`, with
//! `SALAUG_BENCH_ARCHS=small_cnn,resnet18,densenet121` (default `small_cnn,resnet18`).

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use salaug_core::{BatchNormMode, Explain, FiniteDifference, Scheme};
use salaug_train::backend::Selected;
use salaug_train::config::RunConfig;
use salaug_train::data::{load_data, Batch, ImageBatcher};
use salaug_train::trainee::{build_model, Trainee};

type AD = Autodiff<Selected>;

#[allow(dead_code)] // its timing helper: the step times come from `salaug time`
mod common;

/// The steps of the sweep (the RMS of the perturbation, in pixel units of [0, 1] images).
const STEPS: [f64; 7] = [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2];

fn flat<B: AutodiffBackend, M: Module<B>>(model: &M, grads: &B::Gradients) -> Vec<f64> {
    struct Flat<'a, B: AutodiffBackend>(&'a B::Gradients, Vec<f64>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Flat<'_, B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            // Zeros where the loss does not reach the parameter (no gradient at all).
            match p.val().grad(self.0) {
                Some(g) => {
                    let v = g.into_data().convert::<f64>();
                    self.1.extend(v.as_slice::<f64>().unwrap());
                }
                None => self.1.extend(vec![0.0; p.val().shape().num_elements()]),
            }
        }
    }
    let mut f = Flat::<B>(grads, Vec::new());
    model.visit(&mut f);
    f.1
}

/// The parameter gradient of L_sal on `batch`, exact (`None`) or by finite differences.
fn l_sal_gradient(
    model: &Trainee<AD>,
    batch: &Batch<AD>,
    fd: Option<FiniteDifference>,
) -> Vec<f64> {
    let p = &model.plan.0;
    let prepared = model.prepare(batch).expect("a prepared batch");
    let explain = Explain::weights(prepared.weights.clone()).with_batch_norm(BatchNormMode::Batch);
    let pair = |s, s_aug| prepared.transfer.pair(s, s_aug, p.loss.compare);
    let out = match fd {
        None => p.sal_loss.of_batch(
            model,
            &p.loss.method,
            prepared.images.clone(),
            &explain,
            pair,
        ),
        Some(fd) => p.sal_loss.of_batch_first_order(
            model,
            &p.loss.method,
            prepared.images.clone(),
            &explain,
            fd,
            pair,
        ),
    }
    .expect("L_sal");
    flat(model, &out.loss.backward())
}

fn compare(got: &[f64], exact: &[f64]) -> (f64, f64) {
    let dot: f64 = got.iter().zip(exact).map(|(a, b)| a * b).sum();
    let ng = got.iter().map(|a| a * a).sum::<f64>().sqrt();
    let ne = exact.iter().map(|b| b * b).sum::<f64>().sqrt();
    (dot / (ng * ne), (ng - ne).abs() / ne)
}

fn main() -> anyhow::Result<()> {
    salaug_train::backend::tune_allocator();
    let archs = std::env::var("SALAUG_BENCH_ARCHS").unwrap_or_else(|_| "small_cnn,resnet18".into());
    let trained = common::env_usize("SALAUG_BENCH_TRAINED", 20);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let device = Default::default();
    println!(
        "L_sal's parameter gradient, finite difference against exact: configs/bench-peer.toml \
         (32 Fashion-MNIST images + flips, train-mode BatchNorm, f32, backend {}); cosine / \
         relative error of the norm, at initialisation and after {trained} exact SGD steps.\n",
        std::any::type_name::<Selected>()
    );
    println!("| model | weights | scheme | step | cosine | norm error |");
    println!("|---|---|---|---|---|---|");
    for arch in archs.split(',').map(str::trim) {
        let mut sets = vec![format!("model.arch={arch}")];
        if arch != "small_cnn" {
            sets.extend(["data.pad_to=32", "data.rgb=true", "model.stem=small"].map(String::from));
        }
        let config = RunConfig::load(&root.join("configs/bench-peer.toml"), &sets)?;
        let data = load_data(&config.data)?;
        let mut model = build_model::<AD>(&config, &data, &device)?;
        let n = config.train.batch_size.min(data.train.len());
        let batch: Batch<AD> =
            ImageBatcher::new(data.train.clone()).make((0..n).collect(), &device);
        let mut optim = SgdConfig::new().init();
        let states: &[&str] = match trained {
            0 => &["initial"],
            _ => &["initial", "trained"],
        };
        for &weights in states {
            if weights == "trained" {
                for _ in 0..trained {
                    let grads = model.losses(&batch)?.total.backward();
                    let grads = GradientsParams::from_grads(grads, &model);
                    model = optim.step(config.train.lr, model, grads);
                }
            }
            let exact = l_sal_gradient(&model, &batch, None);
            for scheme in [Scheme::Forward, Scheme::Central] {
                for step in STEPS {
                    let got =
                        l_sal_gradient(&model, &batch, Some(FiniteDifference { step, scheme }));
                    let (cos, err) = compare(&got, &exact);
                    println!(
                        "| {arch} | {weights} | {scheme:?} | {step:e} | {cos:.6} | {err:.2e} |"
                    );
                }
            }
        }
    }
    Ok(())
}

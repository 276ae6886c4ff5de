//! Micro-benchmark of the twice-differentiable layers (`cargo xtask bench layers`).
//!
//! For each layer and formulation: the forward pass on the plain backend, and a full
//! second-order pass (outer forward, input gradient, a loss on it, inner backward), in ms
//! (median of `SALAUG_BENCH_REPS` runs, default 7, after one warm-up). burn's own op is timed
//! beside ours for the forward (its double backward panics in burn 0.21).
//!
//! ```text
//! cargo run --release -p salaug-models --example bench_layers                       # flex
//! cargo run --release -p salaug-models --example bench_layers --no-default-features --features ndarray
//! ```
#![recursion_limit = "256"]

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::module as burn_ops;
use burn::tensor::Distribution;
use salaug_models::ops;

type Cpu = salaug_train::backend::Selected;

type I = Autodiff<Cpu>;
type O = Autodiff<I>;

mod common;

fn reps() -> usize {
    common::env_usize("SALAUG_BENCH_REPS", 7)
}

/// Median wall time in ms of `f` over `reps()` runs.
fn time(f: impl FnMut()) -> f64 {
    common::median_ms(reps(), f)
}

fn sync<B: Backend, const D: usize>(t: Tensor<B, D>) {
    let _ = t.sum().into_data();
}

/// Forward on the plain backend.
fn forward(x: &Tensor<Cpu, 4>, layer: &dyn Fn(Tensor<Cpu, 4>) -> Tensor<Cpu, 4>) -> f64 {
    time(|| sync(layer(x.clone())))
}

/// Second order: d/dw of ‖∂ Σ layer(x·w)² / ∂x‖² with w a scalar weight at the inner level.
fn second_order(x: &Tensor<Cpu, 4>, layer: &dyn Fn(Tensor<O, 4>) -> Tensor<O, 4>) -> f64 {
    time(|| {
        let w = Tensor::<I, 1>::ones([1], &x.device()).require_grad();
        let xo = Tensor::<O, 4>::from_inner(Tensor::from_inner(x.clone())).require_grad();
        let y = layer(xo.clone() * Tensor::<O, 1>::from_inner(w.clone()).reshape([1, 1, 1, 1]));
        let g = y.powi_scalar(2).sum().backward();
        let gx = xo.grad(&g).unwrap();
        let gi = gx.powi_scalar(2).sum().backward();
        sync(w.grad(&gi).unwrap());
    })
}

fn row(name: &str, fwd: f64, second: Option<f64>) {
    match second {
        Some(s) => println!("| {name:<44} | {fwd:>9.2} | {s:>12.2} |"),
        None => println!("| {name:<44} | {fwd:>9.2} | {:>12} |", "panics"),
    }
}

fn main() {
    salaug_train::backend::tune_allocator();
    let device = Default::default();
    Cpu::seed(&device, 0);
    let x = Tensor::<Cpu, 4>::random([64, 64, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    println!(
        "backend {}, input [64, 64, 28, 28], median of {} runs, ms\n",
        std::any::type_name::<Cpu>(),
        reps()
    );
    println!(
        "| {:<44} | {:>9} | {:>12} |",
        "layer / formulation", "forward", "second order"
    );
    println!("|{}|{}|{}|", "-".repeat(46), "-".repeat(11), "-".repeat(14));

    row(
        "identity (harness cost)",
        forward(&x, &|t| t),
        Some(second_order(&x, &|t| t)),
    );
    row(
        "max pool 2/2/0, ours (reshape + max_dim)",
        forward(&x, &|t| ops::max_pool2d(t, 2, 2, 0)),
        Some(second_order(&x, &|t| ops::max_pool2d(t, 2, 2, 0))),
    );
    row(
        "max pool 2/2/0, burn max_pool2d",
        forward(&x, &|t| {
            burn_ops::max_pool2d(t, [2, 2], [2, 2], [0, 0], [1, 1], false)
        }),
        None,
    );
    row(
        "max pool 3/2/1, ours (pad + select windows)",
        forward(&x, &|t| ops::max_pool2d(t, 3, 2, 1)),
        Some(second_order(&x, &|t| ops::max_pool2d(t, 3, 2, 1))),
    );
    row(
        "max pool 3/2/1, burn max_pool2d",
        forward(&x, &|t| {
            burn_ops::max_pool2d(t, [3, 3], [2, 2], [1, 1], [1, 1], false)
        }),
        None,
    );
    row(
        "avg pool 2/2/0, ours (reshape + mean_dim)",
        forward(&x, &|t| ops::avg_pool2d(t, 2, 2, 0)),
        Some(second_order(&x, &|t| ops::avg_pool2d(t, 2, 2, 0))),
    );
    row(
        "avg pool 2/2/0, burn avg_pool2d",
        forward(&x, &|t| {
            burn_ops::avg_pool2d(t, [2, 2], [2, 2], [0, 0], true, false)
        }),
        None,
    );
    let gap = |t: Tensor<O, 4>| {
        let [n, c, _, _] = t.dims();
        ops::global_avg_pool(t).reshape([n, c, 1, 1])
    };
    let gap_i = |t: Tensor<Cpu, 4>| {
        let [n, c, _, _] = t.dims();
        ops::global_avg_pool(t).reshape([n, c, 1, 1])
    };
    row(
        "global avg pool, ours (reshape + mean_dim)",
        forward(&x, &gap_i),
        Some(second_order(&x, &gap)),
    );
    row(
        "global avg pool, mean_dim(3).mean_dim(2)",
        forward(&x, &|t| t.mean_dim(3).mean_dim(2)),
        Some(second_order(&x, &|t| t.mean_dim(3).mean_dim(2))),
    );
    row(
        "global avg pool, burn adaptive_avg_pool2d",
        forward(&x, &|t| burn_ops::adaptive_avg_pool2d(t, [1, 1])),
        None,
    );

    let lin = ops::LinearConfig::new(64 * 28, 10).init::<Cpu>(&device);
    let lin_o = ops::LinearConfig::new(64 * 28, 10).init::<O>(&device);
    let flat = |t: Tensor<Cpu, 4>| t.reshape([64 * 28, 64 * 28]);
    row(
        "linear 1792→10, ours (matmul + bias)",
        forward(&x, &|t| lin.forward(flat(t)).reshape([1, 1, 1792, 10])),
        Some(second_order(&x, &|t| {
            lin_o
                .forward(t.reshape([64 * 28, 64 * 28]))
                .reshape([1, 1, 1792, 10])
        })),
    );
    let burn_lin = burn::nn::LinearConfig::new(64 * 28, 10).init::<Cpu>(&device);
    row(
        "linear 1792→10, burn nn::Linear",
        forward(&x, &|t| burn_lin.forward(flat(t)).reshape([1, 1, 1792, 10])),
        None,
    );
}

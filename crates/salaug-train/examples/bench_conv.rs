//! Convolution kernels of the CPU backend, per layer shape (`cargo xtask bench conv`).
//!
//! For each convolution of the small-image ResNet-18 at batch `SALAUG_BENCH_BATCH` (default
//! 128: a saliency step's 64 originals + 64 augmented): the forward convolution, the input
//! gradient and the weight gradient, each in ms and GFLOP/s (median of `SALAUG_BENCH_REPS`
//! runs, default 5). These three kernels are all the convolution work of a training step,
//! plain or second-order.

use burn::tensor::ops::{ConvOptions, ModuleOps};
use burn::tensor::{Distribution, Tensor, TensorPrimitive};

mod common;

type Cpu = salaug_train::backend::Selected;

fn float<const D: usize>(t: Tensor<Cpu, D>) -> burn::tensor::ops::FloatTensor<Cpu> {
    match t.into_primitive() {
        TensorPrimitive::Float(t) => t,
        _ => unreachable!("float tensor"),
    }
}

fn main() {
    salaug_train::backend::tune_allocator();
    let batch = common::env_usize("SALAUG_BENCH_BATCH", 128);
    let reps = common::env_usize("SALAUG_BENCH_REPS", 5);
    let device = Default::default();
    // (name, cin, cout, input size, kernel, stride, padding): ResNet-18, small-image variant.
    let layers = [
        ("stem 3→64 3×3", 3, 64, 32, 3, 1, 1),
        ("layer1 64→64 3×3", 64, 64, 32, 3, 1, 1),
        ("layer2 64→128 3×3/2", 64, 128, 32, 3, 2, 1),
        ("layer2 128→128 3×3", 128, 128, 16, 3, 1, 1),
        ("layer2 down 64→128 1×1/2", 64, 128, 32, 1, 2, 0),
        ("layer3 256→256 3×3", 256, 256, 8, 3, 1, 1),
        ("layer4 512→512 3×3", 512, 512, 4, 3, 1, 1),
    ];
    println!("batch {batch}, {} threads", rayon_threads());
    println!(
        "| layer | forward ms | GFLOP/s | input grad ms | GFLOP/s | weight grad ms | GFLOP/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, cin, cout, size, k, s, p) in layers {
        let x = Tensor::<Cpu, 4>::random([batch, cin, size, size], Distribution::Default, &device);
        let w = Tensor::<Cpu, 4>::random([cout, cin, k, k], Distribution::Default, &device);
        let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
        let y = Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(Cpu::conv2d(
            float(x.clone()),
            float(w.clone()),
            None,
            options.clone(),
        )));
        let [_, _, oh, ow] = y.dims();
        let flop = 2.0 * (batch * cout * cin * k * k * oh * ow) as f64;
        let fwd = common::median_ms(reps, || {
            let _ = Cpu::conv2d(float(x.clone()), float(w.clone()), None, options.clone());
        });
        let xg = common::median_ms(reps, || {
            let _ = Cpu::conv2d_x_backward(
                float(x.clone()),
                float(w.clone()),
                float(y.clone()),
                options.clone(),
            );
        });
        let wg = common::median_ms(reps, || {
            let _ = Cpu::conv2d_weight_backward(
                float(x.clone()),
                float(w.clone()),
                float(y.clone()),
                options.clone(),
            );
        });
        let rate = |ms: f64| flop / ms / 1e6;
        println!(
            "| {name} | {fwd:.1} | {:.0} | {xg:.1} | {:.0} | {wg:.1} | {:.0} |",
            rate(fwd),
            rate(xg),
            rate(wg)
        );
    }
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
}

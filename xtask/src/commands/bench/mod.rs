//! `cargo xtask bench <bench>`: one subcommand per benchmark, each with only its own flags.
//!
//! `peer` and `methods` time the training step of `configs/bench-peer.toml` through
//! `salaug time` ([`common`]); the others run an example of a workspace crate ([`example`]).

mod common;
mod example;
mod group;
mod methods;
mod peer;
mod second_order;

use anyhow::Result;
use clap::Subcommand;

/// The benchmarks; each runs in release mode and prints its table.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// salaug's training step against the same step in PyTorch, side by side
    /// (`../shared/peers/torch_saliency_bench.py`; writes `results/bench-peer.md` and `.json`).
    Peer(peer::PeerArgs),
    /// That step with each saliency method against the gradient (writes
    /// `results/bench-methods.md` and `.json`).
    Methods(common::StepArgs),
    /// The finite-difference L_sal gradient against the exact one: agreement over a sweep of
    /// steps, step time and peak memory (writes `results/bench-second-order.md`, `.json`).
    SecondOrder(common::StepArgs),
    /// Training throughput of one process against `salaug launch --local N` with the same
    /// threads, and the group's all-reduce traffic (writes `results/bench-group.md`, `.json`).
    Group(group::GroupArgs),
    /// The convolution kernels per ResNet-18 layer (ms, GFLOP/s).
    Conv(example::ExampleArgs),
    /// The twice-differentiable layers vs burn's ops.
    Layers(example::ExampleArgs),
    /// Plain vs saliency training step of the salaug-core example network.
    Step(example::ExampleArgs),
    /// Plain vs saliency step of the zoo's models (SALAUG_BENCH_ARCHS).
    Models(example::ExampleArgs),
    /// Class-folder images/s decoded and augmented against the step's own
    /// (SALAUG_BENCH_IMAGES, _SIZE, _ARCH, _WORKERS, _BATCH, _DATA).
    Data(example::ExampleArgs),
}

/// Runs the benchmark.
pub fn handle(bench: Bench) -> Result<()> {
    match bench {
        Bench::Peer(args) => peer::handle(args),
        Bench::Methods(args) => methods::handle(args),
        Bench::SecondOrder(args) => second_order::handle(args),
        Bench::Group(args) => group::handle(args),
        Bench::Conv(args) => example::handle("salaug-train", "bench_conv", args),
        Bench::Layers(args) => example::handle("salaug-train", "bench_layers", args),
        Bench::Step(args) => example::handle("salaug-core", "train_step", args),
        Bench::Models(args) => example::handle("salaug-train", "bench_models", args),
        Bench::Data(args) => example::handle("salaug-train", "bench_data", args),
    }
}

//! The benchmarks that are examples of the workspace's crates (`conv`, `layers`, `step`,
//! `models`, `data`): `cargo run --release --example <name>` with one CPU backend.

use anyhow::Result;
use clap::Args;

use crate::salaug_bin::cargo;

/// The flags of an example benchmark.
#[derive(Debug, Args)]
pub struct ExampleArgs {
    /// CPU backend to measure.
    #[arg(long, default_value = "flex", value_parser = ["flex", "ndarray"])]
    backend: String,
}

/// Runs the example `example` of `package` in release mode with the backend feature.
pub fn handle(package: &str, example: &str, args: ExampleArgs) -> Result<()> {
    cargo(&[
        "run",
        "--release",
        "-p",
        package,
        "--example",
        example,
        "--no-default-features",
        "--features",
        &args.backend,
    ])
}

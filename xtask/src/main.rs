//! Project tasks: `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).

use std::process::Command as Process;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "salaug project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile the workspace once per backend feature (`cargo check --no-default-features
    /// --features salaug-core/<backend>`): flex, ndarray, wgpu, cuda. Needs no GPU.
    CheckBackends {
        /// Only these backends (default: all four).
        #[arg(value_parser = ["flex", "ndarray", "wgpu", "cuda"])]
        backends: Vec<String>,
    },
    /// Run the slow finite-difference checks that CI skips (`#[ignore]`): L_sal's gradient for
    /// narrow full-depth ResNet-50, DenseNet-121, DenseNet-169 and VGG-19-BN (tens of minutes).
    GradcheckFull,
    /// Run a benchmark in release mode and print its table.
    Bench {
        /// `layers`: the twice-differentiable layers vs burn's ops (salaug-models);
        /// `step`: plain vs saliency training step of the salaug-core example network;
        /// `models`: plain vs saliency step of the zoo's models (SALAUG_BENCH_ARCHS).
        #[arg(value_parser = ["layers", "step", "models"])]
        what: String,
        /// CPU backend to measure.
        #[arg(long, default_value = "flex", value_parser = ["flex", "ndarray"])]
        backend: String,
    },
}

const BACKENDS: [&str; 4] = ["flex", "ndarray", "wgpu", "cuda"];

fn cargo(args: &[&str]) -> Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = Process::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!("cargo {} failed with {status}", args.join(" "));
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::CheckBackends { backends } => {
            let chosen: Vec<&str> = if backends.is_empty() {
                BACKENDS.to_vec()
            } else {
                backends.iter().map(String::as_str).collect()
            };
            for backend in chosen {
                let feature = format!("salaug-core/{backend}");
                cargo(&[
                    "check",
                    "--release",
                    "--workspace",
                    "--exclude",
                    "xtask",
                    "--no-default-features",
                    "--features",
                    &feature,
                ])?;
                eprintln!("ok: {backend}");
            }
            Ok(())
        }
        Command::GradcheckFull => cargo(&[
            "test",
            "--release",
            "-p",
            "salaug-models",
            "--test",
            "gradcheck",
            "--",
            "--ignored",
            "--nocapture",
        ]),
        Command::Bench { what, backend } => {
            let (package, example) = match what.as_str() {
                "layers" => ("salaug-models", "bench_layers"),
                "models" => ("salaug-models", "bench_models"),
                _ => ("salaug-core", "train_step"),
            };
            cargo(&[
                "run",
                "--release",
                "-p",
                package,
                "--example",
                example,
                "--no-default-features",
                "--features",
                &backend,
            ])
        }
    }
}

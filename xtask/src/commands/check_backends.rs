//! `cargo xtask check-backends`: the workspace compiled once per backend feature.

use anyhow::Result;
use clap::Args;

use crate::salaug_bin::cargo;

/// The backend features of `salaug-train` (each forwards to salaug-core, salaug-models and
/// salaug-augment); `cuda-ddp` is CUDA with burn's `distributed` (multi-GPU DDP through NCCL),
/// a build of its own because that feature turns the CPU backends' autodiff off.
const BACKENDS: [&str; 5] = ["flex", "ndarray", "wgpu", "cuda", "cuda-ddp"];

/// The flags of `cargo xtask check-backends`.
#[derive(Debug, Args)]
pub struct CheckBackendsArgs {
    /// Only these backends (default: all five).
    #[arg(value_parser = BACKENDS)]
    backends: Vec<String>,
}

/// `cargo check --release --workspace --exclude xtask --no-default-features --features
/// salaug-train/<backend>` for each chosen backend. (salaug-core's feature alone would leave
/// the `salaug` binary without a backend: `backend::Selected` follows salaug-train's features.)
pub fn handle(args: CheckBackendsArgs) -> Result<()> {
    let chosen: Vec<&str> = if args.backends.is_empty() {
        BACKENDS.to_vec()
    } else {
        args.backends.iter().map(String::as_str).collect()
    };
    for backend in chosen {
        let feature = format!("salaug-train/{backend}");
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

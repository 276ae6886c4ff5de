//! `cargo xtask check-backends`: the workspace compiled once per backend feature.

use anyhow::Result;
use clap::Args;

use crate::salaug_bin::cargo;

/// The backend features of `salaug-core`.
const BACKENDS: [&str; 4] = ["flex", "ndarray", "wgpu", "cuda"];

/// The flags of `cargo xtask check-backends`.
#[derive(Debug, Args)]
pub struct CheckBackendsArgs {
    /// Only these backends (default: all four).
    #[arg(value_parser = BACKENDS)]
    backends: Vec<String>,
}

/// `cargo check --release --workspace --exclude xtask --no-default-features --features
/// salaug-core/<backend>` for each chosen backend.
pub fn handle(args: CheckBackendsArgs) -> Result<()> {
    let chosen: Vec<&str> = if args.backends.is_empty() {
        BACKENDS.to_vec()
    } else {
        args.backends.iter().map(String::as_str).collect()
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

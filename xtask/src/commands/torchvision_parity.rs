//! `cargo xtask torchvision-parity`: torchvision models with seeded random weights (no
//! download), saved as `.pth` and `.safetensors` by the PyTorch peer environment, loaded into
//! salaug through `model.pretrained`'s loader, and compared logit by logit in evaluation mode
//! (`crates/salaug-train/examples/torchvision_parity.{py,rs}`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::salaug_bin::{cargo, workspace_root};

/// The flags of `cargo xtask torchvision-parity`.
#[derive(Debug, Args)]
pub struct TorchvisionParityArgs {
    /// The Python with torch, torchvision and safetensors (default: `$SALAUG_PEER_PYTHON`,
    /// else `../shared/peers/.venv/bin/python`, made by `../shared/peers/setup.sh`).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Architectures (torchvision names that salaug has a key map for).
    #[arg(long, value_delimiter = ',', default_values_t = ["resnet18".to_string(), "resnet50".into(), "densenet121".into(), "densenet169".into(), "vgg16_bn".into(), "vgg19_bn".into()])]
    models: Vec<String>,
}

/// Writes each model with the script, then compares with the example; fails if any logit
/// differs by more than 1e-4.
pub fn handle(args: TorchvisionParityArgs) -> Result<()> {
    let root = workspace_root();
    let python = args
        .python
        .or_else(|| std::env::var_os("SALAUG_PEER_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| root.join("../shared/peers/.venv/bin/python"));
    if !python.exists() {
        bail!(
            "no Python at {}: make the peer environment (../shared/peers/setup.sh, then pip \
             install torchvision safetensors) or pass --python",
            python.display()
        );
    }
    let script = root.join("crates/salaug-train/examples/torchvision_parity.py");
    let scratch = std::env::temp_dir().join(format!("salaug-tv-parity-{}", std::process::id()));
    for arch in &args.models {
        let dir = scratch.join(arch);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let status = Command::new(&python)
            .arg(&script)
            .arg(&dir)
            .arg(arch)
            .env("OMP_NUM_THREADS", "2")
            .status()
            .with_context(|| format!("starting {}", python.display()))?;
        if !status.success() {
            bail!("{} {arch} failed ({status})", script.display());
        }
        cargo(&[
            "run",
            "--release",
            "-p",
            "salaug-train",
            "--no-default-features",
            "--features",
            "flex",
            "--example",
            "torchvision_parity",
            "--",
            dir.to_str().context("a UTF-8 temp path")?,
            arch,
        ])?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

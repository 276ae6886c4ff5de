//! What the step benchmarks `peer` and `methods` share: their flags, the per-model setup of
//! the step of `configs/bench-peer.toml`, the `salaug` build that times it and the results
//! files.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;
use salaug_spec::StepTiming;

use crate::salaug_bin::{self, workspace_root};

/// The flags of the step benchmarks.
#[derive(Debug, Clone, Args)]
pub struct StepArgs {
    /// Models (small_cnn, resnet18, densenet121).
    #[arg(long, value_delimiter = ',', default_values_t = ["small_cnn".to_string(), "resnet18".into(), "densenet121".into()])]
    pub models: Vec<String>,
    /// Threads (of both sides, for `peer`).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Untimed steps (default per model: 3, 1, 1).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Timed steps (default per model: 20, 5, 3).
    #[arg(long)]
    pub iters: Option<usize>,
}

impl StepArgs {
    /// Warm-up and timed steps of `arch`: the flags, else the model's defaults.
    pub fn steps(&self, arch: &str) -> (usize, usize) {
        let (dw, di) = default_steps(arch);
        (self.warmup.unwrap_or(dw), self.iters.unwrap_or(di))
    }
}

/// Where the tables and the raw records go (under the workspace root).
pub const OUT: &str = "results";

/// The finite-difference L_sal gradient at its default step, as a `--set` (issue 24: a
/// different algorithm from the exact double backpropagation).
pub const FINITE_DIFFERENCE: &str = "loss.second_order={ finite_difference = {} }";

/// The `salaug` (flex) that times the steps, Fashion-MNIST at hand; and the step's config.
pub fn salaug_and_config() -> Result<(PathBuf, PathBuf)> {
    let root = workspace_root();
    let download = crate::fashion_mnist::ensure(None)?;
    let bin = salaug_bin::build("flex", download)?;
    std::fs::create_dir_all(root.join(OUT)).with_context(|| format!("creating {OUT}"))?;
    Ok((bin, root.join("configs/bench-peer.toml")))
}

/// The script's name of a salaug architecture, and the per-model `--set`s of the step.
pub fn model_setup(arch: &str) -> Result<(&'static str, Vec<String>)> {
    let name = match arch {
        "small_cnn" => "smallcnn",
        "resnet18" => "resnet18",
        "densenet121" => "densenet121",
        other => {
            bail!("bench peer: no PyTorch twin of {other:?} (small_cnn, resnet18, densenet121)")
        }
    };
    let mut sets = vec![format!("model.arch={arch}")];
    if arch != "small_cnn" {
        // 3×32×32, small-image stem, width 1: the script's CIFAR-style variants.
        sets.extend(
            [
                "data.pad_to=32",
                "data.rgb=true",
                "model.stem=small",
                "model.width=1.0",
            ]
            .map(String::from),
        );
    }
    Ok((name, sets))
}

/// Warm-up and timed steps per model (a step of DenseNet-121 takes seconds).
fn default_steps(arch: &str) -> (usize, usize) {
    match arch {
        "small_cnn" => (3, 20),
        "resnet18" => (1, 5),
        _ => (1, 3),
    }
}

/// `stem.md` (the table) and `stem.json` (the raw records).
pub fn write_results(stem: &Path, md: &str, raw: &[serde_json::Value]) -> Result<()> {
    std::fs::write(stem.with_extension("md"), md)
        .with_context(|| format!("writing {}.md", stem.display()))?;
    std::fs::write(
        stem.with_extension("json"),
        serde_json::to_string_pretty(raw)?,
    )
    .with_context(|| format!("writing {}.json", stem.display()))
}

/// `salaug time --config config --set …` in its own process with `threads` worker threads.
pub fn time_step(
    bin: &Path,
    config: &Path,
    threads: usize,
    warmup: usize,
    iters: usize,
    sets: &[String],
) -> Result<StepTiming> {
    eprintln!(
        "salaug time {}: {warmup} warm-up + {iters} timed steps",
        sets.join(" ")
    );
    let mut cmd = Command::new(bin);
    cmd.current_dir(workspace_root())
        .env("RAYON_NUM_THREADS", threads.to_string())
        .args(["time", "--config"])
        .arg(config)
        .args([
            "--warmup",
            &warmup.to_string(),
            "--iters",
            &iters.to_string(),
        ]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", bin.display()))?;
    if !out.status.success() {
        bail!("salaug time {} failed ({})", sets.join(" "), out.status);
    }
    StepTiming::from_output(&String::from_utf8_lossy(&out.stdout)).map_err(anyhow::Error::msg)
}

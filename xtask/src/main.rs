//! Project tasks: `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).

mod bench;
mod profile;
mod report;
mod reproduce;

use std::path::PathBuf;
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
    /// Reproduce one of the paper's tables from `configs/<table>.toml`: runs every cell and
    /// seed through the `salaug` binary (skipping finished runs, resuming interrupted ones) and
    /// writes `results/<table>-<mode>.md` and `.csv`.
    Reproduce {
        /// Which table.
        #[arg(value_parser = ["table1", "table2", "table3", "table4"])]
        table: String,
        /// Pipeline smoke test on Fashion-MNIST, minutes on 2 cores (the default).
        #[arg(long, group = "mode")]
        quick: bool,
        /// CPU study on Fashion-MNIST that learns (≥ 85 % reference accuracy; tables 1, 2):
        /// hours on 2 cores.
        #[arg(long, group = "mode")]
        cpu: bool,
        /// The paper's protocol (224×224, its models and settings; for a GPU machine with the
        /// datasets at hand).
        #[arg(long, group = "mode")]
        paper: bool,
        /// Ours: the paper's grid at 32×32 with small-image models (tables 1, 2).
        #[arg(long, group = "mode")]
        small32: bool,
        /// Seeds per cell (default: the table's, 5 for table 1, 3 for table 2).
        #[arg(long)]
        seeds: Option<usize>,
        /// Backend the `salaug` binary is built with.
        #[arg(long, default_value = "flex", value_parser = ["flex", "ndarray", "wgpu", "cuda"])]
        backend: String,
        /// Folder holding the datasets (else $SALAUG_DATA and system folders).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Output folder for the tables and run directories.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Runs trained at once, each a `salaug` process (on 2 CPU cores, 2 keeps both busy:
        /// one flex process uses about 1.4).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
    /// Where a training step's time goes, by kernel: builds `salaug` in the `profiling`
    /// profile, records `salaug time` (the step of configs/bench-peer.toml) with `perf`
    /// (Debian: linux-perf) and tabulates the samples.
    Profile {
        /// Model (small_cnn, resnet18, densenet121, …).
        #[arg(long, default_value = "resnet18")]
        model: String,
        /// Strategy (ref = plain step, sal = saliency step).
        #[arg(long, default_value = "sal")]
        strategy: String,
        /// Untimed steps.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Recorded steps.
        #[arg(long, default_value_t = 3)]
        iters: usize,
    },
    /// Run a benchmark in release mode and print its table.
    Bench {
        /// `peer`: salaug's training step against the same step in PyTorch, side by side
        /// (`../shared/peers/torch_saliency_bench.py`; writes `results/bench-peer.md`);
        /// `methods`: that step with each saliency method against the gradient
        /// (`results/bench-methods.md`);
        /// `conv`: the convolution kernels per ResNet-18 layer (ms, GFLOP/s);
        /// `layers`: the twice-differentiable layers vs burn's ops (salaug-models);
        /// `step`: plain vs saliency training step of the salaug-core example network;
        /// `models`: plain vs saliency step of the zoo's models (SALAUG_BENCH_ARCHS);
        /// `data`: class-folder images/s decoded and augmented against the step's own
        /// (SALAUG_BENCH_IMAGES, _SIZE, _ARCH, _WORKERS, _BATCH, _DATA).
        #[arg(value_parser = ["peer", "methods", "conv", "layers", "step", "models", "data"])]
        what: String,
        /// CPU backend to measure (not `peer`, which measures the default build).
        #[arg(long, default_value = "flex", value_parser = ["flex", "ndarray"])]
        backend: String,
        /// `peer`, `methods`: models (small_cnn, resnet18, densenet121).
        #[arg(long, value_delimiter = ',', default_values_t = ["small_cnn".to_string(), "resnet18".into(), "densenet121".into()])]
        models: Vec<String>,
        /// `peer`: threads of both sides.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// `peer`: untimed steps (default per model: 3, 1, 1).
        #[arg(long)]
        warmup: Option<usize>,
        /// `peer`: timed steps (default per model: 20, 5, 3).
        #[arg(long)]
        iters: Option<usize>,
        /// `peer`: the PyTorch script.
        #[arg(long, default_value = "../shared/peers/torch_saliency_bench.py")]
        script: PathBuf,
        /// `peer`: Python of the PyTorch environment (default: $SALAUG_PEER_PYTHON, else
        /// /tmp/torch-peer or a .venv beside the script, when present).
        #[arg(long)]
        python: Option<PathBuf>,
        /// `peer`: measure salaug only.
        #[arg(long)]
        no_torch: bool,
    },
}

const BACKENDS: [&str; 4] = ["flex", "ndarray", "wgpu", "cuda"];

pub(crate) fn cargo(args: &[&str]) -> Result<()> {
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
        Command::Reproduce {
            table,
            quick: _,
            cpu,
            paper,
            small32,
            seeds,
            backend,
            data_dir,
            out,
            jobs,
        } => {
            if seeds == Some(0) {
                bail!("--seeds must be at least 1");
            }
            let md = reproduce::reproduce(&reproduce::Options {
                table,
                mode: match (cpu, paper, small32) {
                    (true, _, _) => salaug_spec::Mode::Cpu,
                    (_, true, _) => salaug_spec::Mode::Paper,
                    (_, _, true) => salaug_spec::Mode::Small32,
                    _ => salaug_spec::Mode::Quick,
                },
                seeds,
                backend,
                data_dir,
                out,
                jobs,
            })?;
            println!("{md}");
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
        Command::Profile {
            model,
            strategy,
            warmup,
            iters,
        } => {
            println!("{}", profile::profile(&model, &strategy, warmup, iters)?);
            Ok(())
        }
        Command::Bench {
            what,
            backend,
            models,
            threads,
            warmup,
            iters,
            script,
            python,
            no_torch,
        } => {
            if what == "methods" {
                let md = bench::methods(&bench::PeerOptions {
                    models,
                    threads,
                    warmup,
                    iters,
                    script,
                    python: None,
                    out: "results".into(),
                })?;
                println!("{md}");
                return Ok(());
            }
            if what == "peer" {
                let root = reproduce::workspace_root();
                let script = root.join(script);
                let python = if no_torch {
                    None
                } else {
                    let python = python.or_else(|| bench::default_python(&script));
                    if python.is_none() {
                        eprintln!(
                            "no PyTorch environment found (see ../shared/peers/RESULTS.md; \
                             --python, $SALAUG_PEER_PYTHON): measuring salaug only"
                        );
                    } else if !script.exists() {
                        bail!("{}: PyTorch script not found (--script)", script.display());
                    }
                    python
                };
                let md = bench::peer(&bench::PeerOptions {
                    models,
                    threads,
                    warmup,
                    iters,
                    script,
                    python,
                    out: "results".into(),
                })?;
                println!("{md}");
                return Ok(());
            }
            let (package, example) = match what.as_str() {
                "layers" => ("salaug-models", "bench_layers"),
                "models" => ("salaug-models", "bench_models"),
                "conv" => ("salaug-models", "bench_conv"),
                "data" => ("salaug-train", "bench_data"),
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

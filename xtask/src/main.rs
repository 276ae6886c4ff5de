//! Project tasks: `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! One module per command under [`commands`] (its flags and its `handle`); what several
//! commands share lives beside them: [`salaug_bin`] (the workspace, cargo, the `salaug`
//! binary), [`fashion_mnist`] (finding or installing the data), [`pool`] (the worker pool),
//! [`stats`] (means, t intervals), [`table`] (the one markdown + CSV writer) and [`report`]
//! (the reproduction tables).

mod commands;
mod fashion_mnist;
mod pool;
mod report;
mod salaug_bin;
mod stats;
mod table;
#[cfg(test)]
mod testing;

use anyhow::Result;
use clap::{Parser, Subcommand};

use commands::{
    bench, check_backends, device_bundle, gradcheck_full, profile, reproduce, study,
    torchvision_parity,
};

#[derive(Parser)]
#[command(about = "salaug project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile the workspace once per backend feature (`cargo check --no-default-features
    /// --features salaug-train/<backend>`): flex, ndarray, wgpu, cuda, cuda-ddp. Needs no GPU.
    CheckBackends(check_backends::CheckBackendsArgs),
    /// Pack what a borrowed GPU machine (no Rust, no network, ≤ 64 MiB) runs in ≤ 8 minutes:
    /// stripped, gzipped `salaug` of the cuda and flex builds, a Fashion-MNIST subset, configs, the
    /// PyTorch peer step and run.sh (step parity, table-4 timing, PyTorch, a table-1 cell).
    DeviceBundle(device_bundle::DeviceBundleArgs),
    /// Run the slow finite-difference checks that CI skips (`#[ignore]`): L_sal's gradient for
    /// narrow full-depth ResNet-50, DenseNet-121 and DenseNet-169 (tens of minutes; VGG-19-BN's
    /// runs in the suite), one model at a time, with PASS or FAIL per model.
    GradcheckFull(gradcheck_full::GradcheckFullArgs),
    /// Reproduce one of the paper's tables from `configs/<table>.toml`: runs every cell and
    /// seed through the `salaug` binary (skipping finished runs, resuming interrupted ones) and
    /// writes `results/<table>-<mode>.md` and `.csv`.
    Reproduce(reproduce::ReproduceArgs),
    /// Run one of our studies, `configs/studies/<name>.toml` (arms of a strategy, e.g. β ×
    /// map form, paired by seed with their baseline): resumable as `reproduce`; writes
    /// `results/studies/<name>.{md,csv,paired.csv,runs.csv,svg}`.
    Study(study::StudyArgs),
    /// Where a training step's time goes, by kernel: builds `salaug` in the `profiling`
    /// profile, records `salaug time` (the step of configs/bench-peer.toml) with `perf`
    /// (Debian: linux-perf) and tabulates the samples.
    Profile(profile::ProfileArgs),
    /// Run a benchmark in release mode and print its table.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// torchvision ResNet-18/50, DenseNet-121/169 and VGG-16/19-BN with seeded random weights,
    /// saved as .pth and .safetensors by the PyTorch peer environment, loaded by
    /// `model.pretrained`'s loader: the same evaluation logits within 1e-4 (needs the
    /// environment: ../shared/peers/setup.sh).
    TorchvisionParity(torchvision_parity::TorchvisionParityArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::CheckBackends(args) => check_backends::handle(args),
        Command::DeviceBundle(args) => device_bundle::handle(args),
        Command::GradcheckFull(args) => gradcheck_full::handle(args),
        Command::Reproduce(args) => reproduce::handle(args),
        Command::Study(args) => study::handle(args),
        Command::Profile(args) => profile::handle(args),
        Command::Bench(bench) => bench::handle(bench),
        Command::TorchvisionParity(args) => torchvision_parity::handle(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_parses_as_before() {
        Cli::command().debug_assert();
        let parse = |line: &str| Cli::try_parse_from(line.split_whitespace());
        for ok in [
            "xtask bench peer",
            "xtask device-bundle --no-build --train-images 100",
            "xtask bench peer --models small_cnn,resnet18 --threads 4 --warmup 1 --iters 2 --no-torch",
            "xtask bench peer --script s.py --python /usr/bin/python3",
            "xtask bench methods --models resnet18 --threads 1 --iters 3",
            "xtask bench conv --backend ndarray",
            "xtask bench layers",
            "xtask bench step",
            "xtask bench models --backend flex",
            "xtask bench data",
            "xtask reproduce table1 --cpu --seeds 2 --jobs 2 --data-dir /d --out o",
            "xtask study beta --seeds 3 --jobs 2",
            "xtask profile --model small_cnn --strategy ref --warmup 0 --iters 1",
            "xtask check-backends flex cuda",
            "xtask gradcheck-full",
            "xtask gradcheck-full --models resnet50,densenet169",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok).err());
        }
        // Each bench takes only the flags it uses.
        for bad in [
            "xtask bench methods --python /usr/bin/python3",
            "xtask bench methods --no-torch",
            "xtask bench peer --backend ndarray",
            "xtask bench conv --models resnet18",
            "xtask bench conv --backend wgpu",
            "xtask bench nothing",
            "xtask reproduce table1 --cpu --paper",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let Command::Bench(bench::Bench::Methods(m)) =
            parse("xtask bench methods").unwrap().command
        else {
            panic!("methods")
        };
        assert_eq!(m.models, ["small_cnn", "resnet18", "densenet121"]);
        assert_eq!((m.threads, m.warmup, m.iters), (2, None, None));
    }
}

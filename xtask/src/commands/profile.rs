//! `cargo xtask profile`: where a training step's time goes, by kernel.
//!
//! Builds `salaug` in the `profiling` profile ([`salaug_bin::build_profiling`]: release code
//! with line tables, frame pointers forced) into `target/profiling`, records `salaug time` of
//! one model and strategy (the step of `configs/bench-peer.toml`) with
//! `perf record -e cpu-clock --call-graph fp`, and sorts every sample into the kernel it
//! belongs to: the classes below are tried in order and the first one that names any frame of
//! the sample's stack takes it (so GEMM called by a convolution counts as convolution). It
//! also reports the share of samples the main thread spends outside rayon's workers (serial
//! work: autodiff bookkeeping, small or unthreaded ops), which bounds the CPU use. Needs
//! `perf` (Debian: `linux-perf`); the machine's PMU is not needed (`cpu-clock`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::salaug_bin::{self, workspace_root};

/// The flags of `cargo xtask profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
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
}

/// Profiles the step and prints the table of kernels.
pub fn handle(args: ProfileArgs) -> Result<()> {
    println!(
        "{}",
        profile(&args.model, &args.strategy, args.warmup, args.iters)?
    );
    Ok(())
}

/// Kernel classes, matched against frames from the innermost outwards; the first class with a
/// matching frame wins. Later classes only when no frame matches an earlier one.
const CLASSES: &[(&str, &[&str])] = &[
    (
        "convolution: weight gradient",
        &["conv2d_gemm::conv2d_w_grad", "conv2d_weight_backward"],
    ),
    (
        "convolution: input gradient",
        &["conv2d_gemm::conv2d_x_grad", "conv_transpose"],
    ),
    (
        "convolution: forward",
        &["conv2d_gemm::conv2d", "ops::conv::"],
    ),
    ("matmul", &["ops::matmul"]),
    (
        "element-wise binary",
        &["ops::binary::", "strided_walk::zip"],
    ),
    (
        "element-wise unary / scalar",
        &[
            "ops::unary::",
            "ops::activation",
            "strided_walk::par_",
            "scalar_op",
        ],
    ),
    ("reductions", &["ops::reduce::"]),
    (
        "comparisons, masks",
        &["ops::comparison", "ops::mask", "ops::bool"],
    ),
    ("gather / scatter / select", &["gather_scatter"]),
    (
        "copies: cat, slice, to_contiguous",
        &[
            "ops::cat",
            "ops::slice",
            "to_contiguous",
            "copy_contiguous",
            "ops::expand",
        ],
    ),
    (
        "tensor creation (zeros, ones, random)",
        &[
            "float_zeros",
            "float_ones",
            "float_random",
            "FlexTensor::empty",
        ],
    ),
    ("GEMM, caller not on the stack", &["gemm_"]),
    ("autodiff bookkeeping", &["burn_autodiff"]),
    (
        "allocator (malloc, free, page clearing)",
        &[
            "malloc",
            "_int_free",
            "cfree",
            "clear_page",
            "do_anonymous_page",
        ],
    ),
    (
        "thread pool: spinning, stealing, waking",
        &["rayon_core::", "crossbeam", "futex"],
    ),
];

fn profile(model: &str, strategy: &str, warmup: usize, iters: usize) -> Result<String> {
    let root = workspace_root();
    let bin = salaug_bin::build_profiling()?;
    let data = std::env::temp_dir().join(format!("salaug-profile-{}.data", std::process::id()));
    let mut cmd = Command::new("perf");
    cmd.current_dir(&root)
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "999",
            "--call-graph",
            "fp",
            "-o",
        ])
        .arg(&data)
        .arg("--")
        .arg(&bin)
        .args(["time", "--config", "configs/bench-peer.toml"])
        .args([
            "--warmup",
            &warmup.to_string(),
            "--iters",
            &iters.to_string(),
        ])
        .args(["--set", &format!("train.strategy={strategy}")])
        .args(["--set", &format!("model.arch={model}")]);
    if model != "small_cnn" {
        for s in ["data.pad_to=32", "data.rgb=true"] {
            cmd.args(["--set", s]);
        }
    }
    let out = cmd
        .stderr(std::process::Stdio::null())
        .output()
        .context("could not start perf (Debian package linux-perf)")?;
    if !out.status.success() {
        bail!("perf record failed ({})", out.status);
    }
    let report = classify(&data)?;
    let _ = std::fs::remove_file(&data);
    Ok(format!(
        "{model}, {strategy} step (configs/bench-peer.toml), {warmup} warm-up + {iters} timed steps\n\n{report}"
    ))
}

/// Reads `perf script` of `data` and tabulates the samples by class.
fn classify(data: &Path) -> Result<String> {
    let out = Command::new("perf")
        .args(["script", "-F", "pid,tid,ip,sym", "-i"])
        .arg(data)
        .output()
        .context("perf script")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut total, mut main, mut faults, mut loading) = (0usize, 0usize, 0usize, 0usize);
    let mut header: Option<(String, String)> = None;
    let mut stack: Vec<String> = Vec::new();
    let mut flush = |header: &Option<(String, String)>, stack: &mut Vec<String>| {
        let Some((pid, tid)) = header else { return };
        // Reading and decoding the data set happens once before the timed steps: not part of
        // the step, so left out of the shares.
        if stack.iter().any(|f| f.contains("salaug_train::data")) {
            loading += 1;
            stack.clear();
            return;
        }
        total += 1;
        if pid == tid {
            main += 1;
        }
        if stack.iter().take(8).any(|f| f.contains("page_fault")) {
            faults += 1;
        }
        let class = CLASSES
            .iter()
            .find(|(_, pats)| stack.iter().any(|f| pats.iter().any(|p| f.contains(p))))
            .map(|(name, _)| *name)
            .unwrap_or("other");
        *counts.entry(class).or_default() += 1;
        stack.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&header, &mut stack);
            header = None;
        } else if let Some((pid, tid)) = sample_header(line) {
            // `perf script` pads the ids to a fixed width: a header may start with spaces.
            header = Some((pid.to_string(), tid.to_string()));
        } else if let Some((_ip, sym)) = line.trim().split_once(char::is_whitespace) {
            stack.push(sym.trim().to_string());
        }
    }
    flush(&header, &mut stack);
    if total == 0 {
        bail!("perf recorded no samples");
    }
    let pct = |n: usize| 100.0 * n as f64 / total as f64;
    let mut rows: Vec<_> = counts.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    let mut md = String::from("| kernel | share of CPU samples |\n|---|---|\n");
    for (class, n) in rows {
        md.push_str(&format!("| {class} | {:.1} % |\n", pct(n)));
    }
    md.push_str(&format!(
        "\n{total} samples of the steps (999 Hz; {loading} more while loading the data, left out); page faults {:.1} %; main thread {:.1} % \
         (its work is serial: rayon's workers run the parallel kernels)\n",
        pct(faults),
        pct(main)
    ));
    Ok(md)
}

/// The `pid/tid` of a sample's header line of `perf script -F pid,tid,ip,sym`; `None` for a
/// stack frame (`ip symbol`).
fn sample_header(line: &str) -> Option<(&str, &str)> {
    let ids = line.split_whitespace().next()?;
    let (pid, tid) = ids.split_once('/')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(pid) && numeric(tid)).then_some((pid, tid))
}

#[cfg(test)]
mod tests {
    use super::sample_header;

    #[test]
    fn headers_are_told_from_frames_whatever_their_padding() {
        assert_eq!(sample_header(" 5996/5997  "), Some(("5996", "5997")));
        assert_eq!(sample_header("123456/123456"), Some(("123456", "123456")));
        assert_eq!(sample_header("\tffffffff8220193c _raw_spin_unlock"), None);
        assert_eq!(sample_header("\t55d0c0a1b2c3 std::path/to::thing"), None);
    }
}

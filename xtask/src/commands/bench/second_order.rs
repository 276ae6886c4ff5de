//! `cargo xtask bench second-order`: the finite-difference L_sal gradient
//! (`loss.second_order = { finite_difference = … }`) against the exact one: its agreement
//! with the exact gradient over a sweep of steps (the example `bench_second_order`), and the
//! training step's time and peak memory in both modes (`salaug time`), in one sitting.

use anyhow::{bail, Context, Result};

use super::common::{
    model_setup, salaug_and_config, time_step, write_results, StepArgs, FINITE_DIFFERENCE, OUT,
};
use crate::salaug_bin::{cargo_command, workspace_root};

/// Runs the sweep, then times the step of `configs/bench-peer.toml` (32 originals + 32 flips,
/// β = 1) per model with the exact and the finite-difference L_sal gradient. Writes
/// `results/bench-second-order.md` and `.json`, prints the tables.
pub fn handle(opts: StepArgs) -> Result<()> {
    let (bin, config) = salaug_and_config()?;
    std::env::set_var("SALAUG_BENCH_ARCHS", opts.models.join(","));
    std::env::set_var("RAYON_NUM_THREADS", opts.threads.to_string());
    let args = [
        "run",
        "--release",
        "-p",
        "salaug-train",
        "--example",
        "bench_second_order",
        "--no-default-features",
        "--features",
        "flex",
    ];
    eprintln!("$ cargo {}", args.join(" "));
    let out = cargo_command()
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("could not start cargo")?;
    if !out.status.success() {
        bail!("the example bench_second_order failed ({})", out.status);
    }
    let sweep = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{sweep}");
    let mut md = format!(
        "Training step of configs/bench-peer.toml (32 originals + 32 flips, β = 1, gradient \
         maps), {} threads: the exact L_sal gradient (double backpropagation) against the \
         finite difference at its default step (a different algorithm: first-order passes \
         only); median ms over the timed steps, peak memory over the baseline (MiB), ratios \
         finite difference / exact.\n\n\
         | model | exact ms | finite-difference ms | time ratio | exact peak MiB | \
         finite-difference peak MiB | memory ratio |\n|---|---|---|---|---|---|---|\n",
        opts.threads
    );
    let mut raw = Vec::new();
    for arch in &opts.models {
        let (_, mut sets) = model_setup(arch)?;
        sets.push("train.strategy=sal".into());
        let (warmup, iters) = opts.steps(arch);
        let exact = time_step(&bin, &config, opts.threads, warmup, iters, &sets)?;
        sets.push(FINITE_DIFFERENCE.into());
        let fd = time_step(&bin, &config, opts.threads, warmup, iters, &sets)?;
        let mib = |t: &salaug_spec::StepTiming| t.peak_over_baseline_mib();
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", a / b),
            _ => "–".to_string(),
        };
        let show = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
        md.push_str(&format!(
            "| {arch} | {:.1} | {:.1} | {:.2} | {} | {} | {} |\n",
            exact.median_ms,
            fd.median_ms,
            fd.median_ms / exact.median_ms,
            show(mib(&exact)),
            show(mib(&fd)),
            ratio(mib(&fd), mib(&exact)),
        ));
        for (mode, t) in [("exact", &exact), ("finite_difference", &fd)] {
            let mut value = serde_json::to_value(t)?;
            value["second_order"] = serde_json::Value::from(mode);
            raw.push(value);
        }
    }
    md.push('\n');
    md.push_str(&sweep);
    write_results(
        &workspace_root().join(OUT).join("bench-second-order"),
        &md,
        &raw,
    )?;
    println!("{md}");
    Ok(())
}

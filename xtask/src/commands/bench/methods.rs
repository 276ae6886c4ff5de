//! `cargo xtask bench methods`: the training step of `configs/bench-peer.toml` with each
//! saliency method, against the plain gradient's.

use anyhow::Result;

use super::common::{model_setup, salaug_and_config, time_step, write_results, StepArgs, OUT};
use crate::salaug_bin::workspace_root;

/// The saliency methods of `cargo xtask bench methods`: (label, `loss.method` in TOML).
const METHODS: [(&str, &str); 7] = [
    ("gradient", "\"gradient\""),
    ("input_x_gradient", "\"input_x_gradient\""),
    ("guided_backprop", "\"guided_backprop\""),
    ("deconvnet", "\"deconvnet\""),
    ("grad_cam (last stage)", "{ grad_cam = {} }"),
    ("guided_grad_cam (last stage)", "{ guided_grad_cam = {} }"),
    (
        "smooth_grad of gradient, 4 samples",
        "{ smooth_grad = { of = \"gradient\", samples = 4 } }",
    ),
];

/// `cargo xtask bench methods`: the training step of `configs/bench-peer.toml` (32 originals +
/// 32 flips, β = 1) with each saliency method, against the plain gradient's, per model; each
/// (model, method) in its own process, all in one sitting. Writes `results/bench-methods.md`
/// and `.json`, prints the table.
pub fn handle(opts: StepArgs) -> Result<()> {
    let (bin, config) = salaug_and_config()?;
    let mut md = format!(
        "Training step of configs/bench-peer.toml (32 originals + 32 flips, β = 1) per saliency \
         method, {} threads; median ms over the timed steps, ratio to the gradient's step, peak \
         memory over the baseline (MiB).\n\n\
         | model | method | ms | ratio to gradient | peak MiB |\n|---|---|---|---|---|\n",
        opts.threads
    );
    let mut raw = Vec::new();
    for arch in &opts.models {
        let (_, sets) = model_setup(arch)?;
        let (warmup, iters) = opts.steps(arch);
        let mut row = |label: &str, extra: &[String], base: Option<f64>| -> Result<f64> {
            let mut sets = sets.clone();
            sets.extend_from_slice(extra);
            let t = time_step(&bin, &config, opts.threads, warmup, iters, &sets)?;
            let ratio = base.map_or("1.00".to_string(), |b| format!("{:.2}", t.median_ms / b));
            md.push_str(&format!(
                "| {arch} | {label} | {:.1} | {ratio} | {} |\n",
                t.median_ms,
                t.peak_over_baseline_mib()
                    .map_or("–".to_string(), |v| format!("{v:.0}")),
            ));
            let mut value = serde_json::to_value(&t)?;
            value["method"] = serde_json::Value::from(label);
            raw.push(value);
            Ok(t.median_ms)
        };
        let mut base = None;
        for (label, method) in METHODS {
            let ms = row(
                label,
                &["train.strategy=sal".into(), format!("loss.method={method}")],
                base,
            )?;
            base.get_or_insert(ms);
        }
        row(
            "none (ref: cross-entropy only)",
            &["train.strategy=ref".into()],
            base,
        )?;
    }
    write_results(&workspace_root().join(OUT).join("bench-methods"), &md, &raw)?;
    println!("{md}");
    Ok(())
}

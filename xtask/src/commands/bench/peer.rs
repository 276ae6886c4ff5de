//! `cargo xtask bench peer`: salaug's training step against the same step in PyTorch, side by
//! side in one run.
//!
//! The step is the one `../shared/peers/torch_saliency_bench.py` defines (and
//! `configs/bench-peer.toml` mirrors): 32 originals + their horizontal flips, train-mode
//! BatchNorm, plain SGD; "plain" is cross-entropy on both halves, "saliency" adds L_sal with
//! β = 1 (gradient maps, max of |gradient| over channels, min-max, MSE, flipped back). salaug's
//! side is `salaug time` (the real training step); PyTorch's side is the script, run when its
//! Python environment exists. Each side reports the median step time, CPU use and peak memory
//! over its baseline (salaug: resident set once the data are loaded; PyTorch: after
//! `import torch`), each (model, step) in its own process. salaug's saliency step is also
//! timed with the finite-difference L_sal gradient (`loss.second_order = { finite_difference
//! = {} }`), a different algorithm from PyTorch's exact step, reported in its own columns.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;
use salaug_spec::StepTiming;
use serde::Deserialize;

use super::common::{
    model_setup, salaug_and_config, time_step, write_results, StepArgs, FINITE_DIFFERENCE, OUT,
};
use crate::salaug_bin::workspace_root;

/// The flags of `cargo xtask bench peer`.
#[derive(Debug, Args)]
pub struct PeerArgs {
    #[command(flatten)]
    step: StepArgs,
    /// The PyTorch script.
    #[arg(long, default_value = "../shared/peers/torch_saliency_bench.py")]
    script: PathBuf,
    /// Python of the PyTorch environment (default: $SALAUG_PEER_PYTHON, else
    /// /tmp/torch-peer or a .venv beside the script, when present).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Measure salaug only.
    #[arg(long)]
    no_torch: bool,
}

/// What `bench peer` compares.
#[derive(Debug, Clone)]
struct PeerOptions {
    /// Models, threads, steps.
    step: StepArgs,
    /// The PyTorch script.
    script: PathBuf,
    /// The Python of the PyTorch environment (`None`: salaug only).
    python: Option<PathBuf>,
}

/// Finds the PyTorch side, measures both and prints the table.
pub fn handle(args: PeerArgs) -> Result<()> {
    let script = workspace_root().join(args.script);
    let python = if args.no_torch {
        None
    } else {
        let python = args.python.or_else(|| default_python(&script));
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
    let md = peer(&PeerOptions {
        step: args.step,
        script,
        python,
    })?;
    println!("{md}");
    Ok(())
}

/// One model's row: both sides, both steps.
#[derive(Debug)]
struct Row {
    model: String,
    plain: StepTiming,
    sal: StepTiming,
    /// The saliency step with the finite-difference L_sal gradient.
    fd: StepTiming,
    torch: Option<TorchModel>,
}

/// The PyTorch script's JSON, the parts used here.
#[derive(Debug, Deserialize)]
struct TorchJson {
    timings: Vec<TorchTiming>,
    #[serde(default)]
    memory: Vec<TorchMemory>,
}

#[derive(Debug, Deserialize)]
struct TorchTiming {
    model: String,
    steps: std::collections::BTreeMap<String, TorchStep>,
    cpu: TorchCpu,
}

#[derive(Debug, Deserialize)]
struct TorchStep {
    median_ms: f64,
}

#[derive(Debug, Deserialize)]
struct TorchCpu {
    own_cpu_cores: f64,
    other_procs_cpu_cores: f64,
}

#[derive(Debug, Deserialize)]
struct TorchMemory {
    model: String,
    step: String,
    peak_minus_import_mib: f64,
}

/// PyTorch's side of one model.
#[derive(Debug)]
struct TorchModel {
    plain_ms: f64,
    sal_ms: f64,
    cpu_cores: f64,
    other_cores: f64,
    plain_mib: Option<f64>,
    sal_mib: Option<f64>,
}

/// The Python of the PyTorch environment: `--python`, else `$SALAUG_PEER_PYTHON`, else the
/// virtual environments `../shared/peers/RESULTS.md` suggests, when present.
fn default_python(script: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SALAUG_PEER_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let beside = script.parent().map(|d| d.join(".venv/bin/python"));
    [Some(PathBuf::from("/tmp/torch-peer/bin/python")), beside]
        .into_iter()
        .flatten()
        .find(|p| p.exists())
}

fn peer(opts: &PeerOptions) -> Result<String> {
    let (bin, config) = salaug_and_config()?;
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for arch in &opts.step.models {
        let (torch_name, sets) = model_setup(arch)?;
        let (warmup, iters) = opts.step.steps(arch);
        let mut side = |strategy: &str, second_order: &str| -> Result<StepTiming> {
            let mut sets = sets.clone();
            sets.push(format!("train.strategy={strategy}"));
            if second_order != "exact" {
                sets.push(FINITE_DIFFERENCE.into());
            }
            let t = time_step(&bin, &config, opts.step.threads, warmup, iters, &sets)?;
            let mut value = serde_json::to_value(&t)?;
            value["second_order"] = serde_json::Value::from(second_order);
            raw.push(value);
            Ok(t)
        };
        let plain = side("ref", "exact")?;
        let sal = side("sal", "exact")?;
        let fd = side("sal", "finite_difference")?;
        let torch = match &opts.python {
            Some(python) => Some(torch_side(opts, python, torch_name, warmup, iters)?),
            None => None,
        };
        rows.push(Row {
            model: arch.clone(),
            plain,
            sal,
            fd,
            torch,
        });
    }
    let md = table(&rows, opts);
    write_results(&workspace_root().join(OUT).join("bench-peer"), &md, &raw)?;
    Ok(md)
}

fn torch_side(
    opts: &PeerOptions,
    python: &Path,
    model: &str,
    warmup: usize,
    iters: usize,
) -> Result<TorchModel> {
    let json =
        std::env::temp_dir().join(format!("salaug-peer-{model}-{}.json", std::process::id()));
    eprintln!("PyTorch {model}: {warmup} warm-up + {iters} timed steps, 3-step memory probes");
    let status = Command::new(python)
        .arg(&opts.script)
        .args(["--models", model, "--no-check", "--threads"])
        .arg(opts.step.threads.to_string())
        .args([
            "--warmup",
            &warmup.to_string(),
            "--iters",
            &iters.to_string(),
        ])
        .args(["--mem-iters", "3", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("starting {}", python.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", opts.script.display());
    }
    let text = std::fs::read_to_string(&json)?;
    let _ = std::fs::remove_file(&json);
    let parsed: TorchJson = serde_json::from_str(&text).context("the PyTorch script's JSON")?;
    let t = parsed
        .timings
        .iter()
        .find(|t| t.model == model)
        .with_context(|| format!("no timing of {model} in the PyTorch JSON"))?;
    let ms = |step: &str| t.steps.get(step).map(|s| s.median_ms);
    let mem = |step: &str| {
        parsed
            .memory
            .iter()
            .find(|m| m.model == model && m.step == step)
            .map(|m| m.peak_minus_import_mib)
    };
    Ok(TorchModel {
        plain_ms: ms("A").context("no step A")?,
        sal_ms: ms("B").context("no step B")?,
        cpu_cores: t.cpu.own_cpu_cores,
        other_cores: t.cpu.other_procs_cpu_cores,
        plain_mib: mem("A"),
        sal_mib: mem("B"),
    })
}

fn table(rows: &[Row], opts: &PeerOptions) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or("–".to_string(), |v| format!("{v:.d$}"));
    let mut md = format!(
        "Training step, 32 originals + 32 flips, {} threads; median ms (ratio = salaug / PyTorch); \
         CPU = cores busy over the timed steps; peak memory over the baseline (MiB). The last \
         three columns: salaug's saliency step with the finite-difference L_sal gradient (forward \
         difference, step 1e-4), a different algorithm from PyTorch's exact (double \
         backpropagation) step, against that exact step.\n\n",
        opts.step.threads
    );
    md.push_str(
        "| model | PyTorch plain | salaug plain | ratio | PyTorch saliency | salaug saliency | ratio \
         | saliency / plain (PyTorch, salaug) | CPU salaug plain, saliency (PyTorch) \
         | peak MiB saliency: salaug (PyTorch) | peak MiB plain: salaug (PyTorch) \
         | salaug saliency, finite difference | ratio to PyTorch saliency | peak MiB finite \
         difference |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let t = r.torch.as_ref();
        let ratio = |ours: f64, theirs: Option<f64>| theirs.map(|v| ours / v);
        md.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {:.1} | {} | {}, {:.2} | {}, {} ({}) | {} ({}) | {} ({}) \
             | {:.1} | {} | {} |\n",
            r.model,
            f(t.map(|t| t.plain_ms), 1),
            r.plain.median_ms,
            f(ratio(r.plain.median_ms, t.map(|t| t.plain_ms)), 2),
            f(t.map(|t| t.sal_ms), 1),
            r.sal.median_ms,
            f(ratio(r.sal.median_ms, t.map(|t| t.sal_ms)), 2),
            f(t.map(|t| t.sal_ms / t.plain_ms), 2),
            r.sal.median_ms / r.plain.median_ms,
            f(r.plain.cpu_cores, 2),
            f(r.sal.cpu_cores, 2),
            f(t.map(|t| t.cpu_cores), 2),
            f(r.sal.peak_over_baseline_mib(), 0),
            f(t.and_then(|t| t.sal_mib), 0),
            f(r.plain.peak_over_baseline_mib(), 0),
            f(t.and_then(|t| t.plain_mib), 0),
            r.fd.median_ms,
            f(ratio(r.fd.median_ms, t.map(|t| t.sal_ms)), 2),
            f(r.fd.peak_over_baseline_mib(), 0),
        ));
    }
    if let Some(busy) = rows
        .iter()
        .filter_map(|r| r.torch.as_ref().map(|t| t.other_cores))
        .reduce(f64::max)
    {
        md.push_str(&format!(
            "\nOther processes used up to {busy:.2} cores during PyTorch's timed loops.\n"
        ));
    }
    md
}

//! `cargo xtask bench peer`: salaug's training step against the same step in PyTorch, side by
//! side in one run; `cargo xtask bench methods`: the same step with each saliency method.
//!
//! The step is the one `../shared/peers/torch_saliency_bench.py` defines (and
//! `configs/bench-peer.toml` mirrors): 32 originals + their horizontal flips, train-mode
//! BatchNorm, plain SGD; "plain" is cross-entropy on both halves, "saliency" adds L_sal with
//! β = 1 (gradient maps, max of |gradient| over channels, min-max, MSE, flipped back). salaug's
//! side is `salaug time` (the real training step); PyTorch's side is the script, run when its
//! Python environment exists. Each side reports the median step time, CPU use and peak memory
//! over its baseline (salaug: resident set once the data are loaded; PyTorch: after
//! `import torch`), each (model, step) in its own process.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use salaug_spec::StepTiming;
use serde::Deserialize;

use crate::reproduce::{build_salaug, ensure_fashion_mnist, workspace_root};

/// What `bench peer` compares.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// salaug architectures (`small_cnn`, `resnet18`, `densenet121`).
    pub models: Vec<String>,
    /// Threads of both sides.
    pub threads: usize,
    /// Untimed steps (default: per model).
    pub warmup: Option<usize>,
    /// Timed steps (default: per model).
    pub iters: Option<usize>,
    /// The PyTorch script.
    pub script: PathBuf,
    /// The Python of the PyTorch environment (`None`: salaug only).
    pub python: Option<PathBuf>,
    /// Where the table and the raw records go.
    pub out: PathBuf,
}

/// One model's row: both sides, both steps.
#[derive(Debug)]
struct Row {
    model: String,
    plain: StepTiming,
    sal: StepTiming,
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

/// The script's name of a salaug architecture, and the per-model `--set`s of the step.
fn model_setup(arch: &str) -> Result<(&'static str, Vec<String>)> {
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

/// The Python of the PyTorch environment: `--python`, else `$SALAUG_PEER_PYTHON`, else the
/// virtual environments `../shared/peers/RESULTS.md` suggests, when present.
pub fn default_python(script: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SALAUG_PEER_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let beside = script.parent().map(|d| d.join(".venv/bin/python"));
    [Some(PathBuf::from("/tmp/torch-peer/bin/python")), beside]
        .into_iter()
        .flatten()
        .find(|p| p.exists())
}

pub fn peer(opts: &PeerOptions) -> Result<String> {
    let root = workspace_root();
    let download = ensure_fashion_mnist(None)?;
    let bin = build_salaug("flex", download)?;
    let config = root.join("configs/bench-peer.toml");
    std::fs::create_dir_all(root.join(&opts.out))
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for arch in &opts.models {
        let (torch_name, sets) = model_setup(arch)?;
        let (dw, di) = default_steps(arch);
        let (warmup, iters) = (opts.warmup.unwrap_or(dw), opts.iters.unwrap_or(di));
        let mut side = |strategy: &str| -> Result<StepTiming> {
            let mut sets = sets.clone();
            sets.push(format!("train.strategy={strategy}"));
            let t = time_step(&bin, &config, opts.threads, warmup, iters, &sets)?;
            raw.push(serde_json::to_value(&t)?);
            Ok(t)
        };
        let plain = side("ref")?;
        let sal = side("sal")?;
        let torch = match &opts.python {
            Some(python) => Some(torch_side(opts, python, torch_name, warmup, iters)?),
            None => None,
        };
        rows.push(Row {
            model: arch.clone(),
            plain,
            sal,
            torch,
        });
    }
    let md = table(&rows, opts);
    write_results(&root.join(&opts.out).join("bench-peer"), &md, &raw)?;
    Ok(md)
}

/// `stem.md` (the table) and `stem.json` (the raw records).
fn write_results(stem: &Path, md: &str, raw: &[serde_json::Value]) -> Result<()> {
    std::fs::write(stem.with_extension("md"), md)
        .with_context(|| format!("writing {}.md", stem.display()))?;
    std::fs::write(
        stem.with_extension("json"),
        serde_json::to_string_pretty(raw)?,
    )
    .with_context(|| format!("writing {}.json", stem.display()))
}

/// `salaug time --config config --set …` in its own process with `threads` worker threads.
fn time_step(
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
/// and `.json`.
pub fn methods(opts: &PeerOptions) -> Result<String> {
    let root = workspace_root();
    let download = ensure_fashion_mnist(None)?;
    let bin = build_salaug("flex", download)?;
    let config = root.join("configs/bench-peer.toml");
    std::fs::create_dir_all(root.join(&opts.out))
        .with_context(|| format!("creating {}", opts.out.display()))?;
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
        let (dw, di) = default_steps(arch);
        let (warmup, iters) = (opts.warmup.unwrap_or(dw), opts.iters.unwrap_or(di));
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
    write_results(&root.join(&opts.out).join("bench-methods"), &md, &raw)?;
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
        .arg(opts.threads.to_string())
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
         CPU = cores busy over the timed steps; peak memory over the baseline (MiB).\n\n",
        opts.threads
    );
    md.push_str(
        "| model | PyTorch plain | salaug plain | ratio | PyTorch saliency | salaug saliency | ratio \
         | saliency / plain (PyTorch, salaug) | CPU salaug plain, saliency (PyTorch) \
         | peak MiB saliency: salaug (PyTorch) | peak MiB plain: salaug (PyTorch) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let t = r.torch.as_ref();
        let ratio = |ours: f64, theirs: Option<f64>| theirs.map(|v| ours / v);
        md.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {:.1} | {} | {}, {:.2} | {}, {} ({}) | {} ({}) | {} ({}) |\n",
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

//! `cargo xtask reproduce tableN`: the paper's experiment grids, run through the `salaug`
//! binary, summarised as `results/<table>-<mode>.{md,csv}`.
//!
//! A table spec (`configs/tableN.toml`) names a base run config per mode, the grid
//! (datasets × models × augmentations × strategies) and the seeds. Each cell and seed is one
//! run directory under `results/<table>-<mode>/<cell>/seed<k>/`:
//! - finished (as many rows in `metrics.csv` as its config has epochs): skipped;
//! - interrupted after at least one epoch: continued with `salaug train --resume`;
//! - interrupted in its first epoch: started again.
//!
//! `--quick` replaces the paper's datasets with Fashion-MNIST (the real data these CPU
//! machines have), so cells that differ only by dataset collapse into one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use salaug_spec::data::DEBIAN_FASHION_MNIST;
use salaug_spec::StepTiming;
use salaug_spec::{metrics, Cell, EpochMetrics, Mode, TableSpec};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Nothing usable: start (again).
    Fresh,
    /// Some epochs done: `--resume`.
    Partial(usize),
    /// All epochs done.
    Done,
}

/// The finished epochs of a run directory and their final row.
pub fn run_state(dir: &Path) -> Result<RunState> {
    let config = dir.join("config.toml");
    let metrics = metrics::in_run(dir);
    if !config.exists() || !metrics.exists() {
        return Ok(RunState::Fresh);
    }
    let text = std::fs::read_to_string(&config)?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
    let epochs = value
        .get("train")
        .and_then(|t| t.get("epochs"))
        .and_then(|e| e.as_integer())
        .with_context(|| format!("{}: no train.epochs", config.display()))?
        as usize;
    let rows = EpochMetrics::read(&metrics)?.len();
    Ok(if rows >= epochs {
        RunState::Done
    } else if rows == 0 {
        RunState::Fresh
    } else {
        RunState::Partial(rows)
    })
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// One row of an accuracy table.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub cell: Cell,
    /// Final test accuracy (%) per finished seed.
    pub acc: Vec<f64>,
    /// Final saliency consistency per finished seed.
    pub consistency: Vec<f64>,
    pub paper: Option<f64>,
}

fn pm(v: &[f64], scale: f64, digits: usize) -> String {
    if v.is_empty() {
        return "—".into();
    }
    let (m, s) = mean_std(v);
    if v.len() == 1 {
        format!("{:.*}", digits, m * scale)
    } else {
        format!("{:.*} ± {:.*}", digits, m * scale, digits, s * scale)
    }
}

/// The markdown and CSV of an accuracy table.
pub fn write_accuracy_table(title: &str, description: &str, rows: &[Summary]) -> (String, String) {
    let mut md = format!("## {title}\n\n{description}\n\n");
    md.push_str("| dataset | model | augmentation | strategy | seeds | test accuracy (%) | saliency consistency (×10³, lower is better) | paper (%) |\n|---|---|---|---|---|---|---|---|\n");
    let mut csv = String::from("dataset,model,augment,strategy,seeds,acc_mean,acc_std,consistency_mean,consistency_std,paper\n");
    for r in rows {
        let c = &r.cell;
        let paper = r.paper.map_or("n/a".to_string(), |p| format!("{p:.2}"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            c.dataset,
            c.model,
            c.augment,
            c.strategy,
            r.acc.len(),
            pm(&r.acc, 1.0, 2),
            pm(&r.consistency, 1e3, 3),
            paper
        );
        let (am, asd) = if r.acc.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            mean_std(&r.acc)
        };
        let (cm, csd) = if r.consistency.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            mean_std(&r.consistency)
        };
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{am:.4},{asd:.4},{cm:.6},{csd:.6},{}",
            c.dataset,
            c.model,
            c.augment,
            c.strategy,
            r.acc.len(),
            r.paper.map_or(String::new(), |p| p.to_string())
        );
    }
    (md, csv)
}

/// One row of the timing table.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub model: String,
    pub plain_ms: f64,
    pub sal_ms: f64,
    pub plain_mib: Option<f64>,
    pub sal_mib: Option<f64>,
    pub device: String,
}

/// The markdown and CSV of the timing table.
pub fn write_timing_table(title: &str, description: &str, rows: &[Timing]) -> (String, String) {
    let mut md = format!("## {title}\n\n{description}\n\n");
    md.push_str("| model | baseline step (ms) | saliency step (ms) | ratio | peak memory baseline (MiB) | peak memory saliency (MiB) | device |\n|---|---|---|---|---|---|---|\n");
    let mut csv = String::from("model,plain_ms,sal_ms,ratio,plain_peak_mib,sal_peak_mib,device\n");
    let mib = |m: Option<f64>| m.map_or("n/a".to_string(), |m| format!("{m:.0}"));
    for t in rows {
        let ratio = t.sal_ms / t.plain_ms;
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.2} | {} | {} | {} |",
            t.model,
            t.plain_ms,
            t.sal_ms,
            ratio,
            mib(t.plain_mib),
            mib(t.sal_mib),
            t.device
        );
        let _ = writeln!(
            csv,
            "{},{:.3},{:.3},{:.4},{},{},{}",
            t.model,
            t.plain_ms,
            t.sal_ms,
            ratio,
            t.plain_mib.map_or(String::new(), |m| format!("{m:.1}")),
            t.sal_mib.map_or(String::new(), |m| format!("{m:.1}")),
            t.device
        );
    }
    (md, csv)
}

/// Options of one `reproduce` call.
#[derive(Debug, Clone)]
pub struct Options {
    pub table: String,
    pub mode: Mode,
    pub seeds: Option<usize>,
    pub backend: String,
    pub data_dir: Option<PathBuf>,
    pub out: PathBuf,
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub(crate) fn build_salaug(backend: &str, download: bool) -> Result<PathBuf> {
    let features = if download {
        format!("{backend},download")
    } else {
        backend.to_string()
    };
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        "salaug-train",
        "--no-default-features",
        "--features",
        &features,
    ])?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    Ok(target.join("release").join("salaug"))
}

const FASHION_MNIST_FILE: &str = "t10k-images-idx3-ubyte.gz";

/// Quick mode needs Fashion-MNIST. Finds it where `salaug` looks, else installs the Debian
/// package (as root, or with sudo), else asks for a `salaug` built with the `download` feature,
/// which fetches the official files (md5-checked) into its cache. Returns whether to build
/// with `download`.
pub(crate) fn ensure_fashion_mnist(data_dir: Option<&Path>) -> Result<bool> {
    let places = salaug_spec::data::search_path("fashion_mnist", data_dir);
    if let Some(found) = places.iter().find(|p| p.join(FASHION_MNIST_FILE).exists()) {
        eprintln!("data: Fashion-MNIST found in {}", found.display());
        return Ok(false);
    }
    if data_dir.is_some() {
        bail!(
            "Fashion-MNIST is not in the --data-dir given (looked in {})",
            places
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let sudo = !root
        && Command::new("sudo")
            .args(["-n", "true"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    let apt = Command::new("apt-get").arg("--version").output().is_ok();
    if apt && (root || sudo) {
        eprintln!("data: Fashion-MNIST not found; installing the Debian package: apt-get install -y dataset-fashion-mnist");
        let run = |args: &[&str]| -> bool {
            let mut c = if sudo {
                Command::new("sudo")
            } else {
                Command::new(args[0])
            };
            if sudo {
                c.args(args);
            } else {
                c.args(&args[1..]);
            }
            c.env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let installed = run(&["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"])
            || (run(&["apt-get", "update", "-qq"])
                && run(&["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"]));
        if installed
            && Path::new(DEBIAN_FASHION_MNIST)
                .join(FASHION_MNIST_FILE)
                .exists()
        {
            eprintln!("data: installed to {DEBIAN_FASHION_MNIST}");
            return Ok(false);
        }
        eprintln!("data: the Debian package could not be installed");
    }
    eprintln!(
        "data: Fashion-MNIST not found; building salaug with the `download` feature to fetch it from its official address (md5-checked) into $SALAUG_DATA or ~/.cache/salaug"
    );
    Ok(true)
}

fn salaug(bin: &Path, args: &[String]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .current_dir(workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", bin.display()))?;
    if !out.status.success() {
        bail!("salaug {} failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs (or continues) a table and writes its results; returns the markdown.
pub fn reproduce(opts: &Options) -> Result<String> {
    let root = workspace_root();
    let spec = TableSpec::load(&root.join("configs").join(format!("{}.toml", opts.table)))?;
    let mode = spec.mode(opts.mode);
    let base = root.join(&mode.base);
    if !base.exists() {
        bail!("{}: base config {} not found", opts.table, base.display());
    }
    let seeds = opts.seeds.unwrap_or(spec.seeds);
    let out_dir = root.join(&opts.out);
    let runs = out_dir.join(format!("{}-{}", spec.table, opts.mode.name()));
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    eprintln!(
        "reproduce {} --{} ({} seed(s), backend {}): {}",
        spec.table,
        opts.mode.name(),
        seeds,
        opts.backend,
        mode.description
    );
    let download = match opts.mode {
        Mode::Quick => ensure_fashion_mnist(opts.data_dir.as_deref())?,
        Mode::Paper => false,
    };
    let bin = build_salaug(&opts.backend, download)?;
    let title = format!("{} — {} ({})", spec.table, spec.title, opts.mode.name());
    let (md, csv) = if spec.kind == "timing" {
        let rows = timing(&spec, opts, &bin, &base)?;
        write_timing_table(&title, &mode.description, &rows)
    } else {
        let rows = accuracy_runs(&spec, opts, seeds, &bin, &base, &runs)?;
        write_accuracy_table(&title, &mode.description, &rows)
    };
    let stem = out_dir.join(format!("{}-{}", spec.table, opts.mode.name()));
    for (ext, text) in [("md", &md), ("csv", &csv)] {
        let path = stem.with_extension(ext);
        let tmp = stem.with_extension(format!("{ext}.part"));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(md)
}

fn accuracy_runs(
    spec: &TableSpec,
    opts: &Options,
    seeds: usize,
    bin: &Path,
    base: &Path,
    runs: &Path,
) -> Result<Vec<Summary>> {
    let cells = spec.cells(opts.mode);
    let total = cells.len() * seeds;
    let mut summaries = Vec::new();
    let mut k = 0;
    for cell in cells {
        let mut acc = Vec::new();
        let mut consistency = Vec::new();
        for seed in 0..seeds {
            k += 1;
            let dir = runs.join(cell.dir_name()).join(format!("seed{seed}"));
            let state = run_state(&dir)?;
            let label = format!("[{k}/{total}] {} seed {seed}", cell.id());
            match state {
                RunState::Done => eprintln!("{label}: finished earlier, skipped"),
                RunState::Partial(epochs) => {
                    eprintln!("{label}: resuming after epoch {epochs} ({})", dir.display());
                    salaug(
                        bin,
                        &["train".into(), "--resume".into(), dir.display().to_string()],
                    )?;
                }
                RunState::Fresh => {
                    if dir.exists() {
                        std::fs::remove_dir_all(&dir)
                            .with_context(|| format!("clearing {}", dir.display()))?;
                    }
                    eprintln!("{label}: training ({})", dir.display());
                    let mut args = vec![
                        "train".to_string(),
                        "--config".into(),
                        base.display().to_string(),
                        "--out".into(),
                        dir.display().to_string(),
                    ];
                    for s in spec.sets(opts.mode, &cell, seed, opts.data_dir.as_deref()) {
                        args.push("--set".into());
                        args.push(s);
                    }
                    salaug(bin, &args)?;
                }
            }
            let rows = EpochMetrics::read(&metrics::in_run(&dir))?;
            let last = rows.last().context("a finished run has metrics")?;
            acc.push(100.0 * last.test_acc);
            consistency.push(last.consistency);
        }
        summaries.push(Summary {
            paper: spec.paper_figures.get(&cell.id()).copied(),
            cell,
            acc,
            consistency,
        });
    }
    Ok(summaries)
}

fn timing(spec: &TableSpec, opts: &Options, bin: &Path, base: &Path) -> Result<Vec<Timing>> {
    let mode = spec.mode(opts.mode);
    let (warmup, iters) = (mode.warmup.unwrap_or(100), mode.iters.unwrap_or(100));
    let dataset = mode
        .datasets
        .clone()
        .unwrap_or_else(|| spec.grid.datasets.clone())
        .into_iter()
        .next()
        .unwrap_or_else(|| "fashion_mnist".into());
    let mut rows = Vec::new();
    for model in &spec.grid.models {
        let mut measured = BTreeMap::new();
        for strategy in ["ref", "sal"] {
            let cell = Cell {
                dataset: dataset.clone(),
                model: model.clone(),
                augment: spec
                    .grid
                    .augments
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "horizontal_flip".into()),
                strategy: strategy.into(),
            };
            eprintln!("timing {model} {strategy}: {warmup} warm-up + {iters} timed steps");
            let mut args = vec![
                "time".to_string(),
                "--config".into(),
                base.display().to_string(),
                "--warmup".into(),
                warmup.to_string(),
                "--iters".into(),
                iters.to_string(),
            ];
            for s in spec.sets(opts.mode, &cell, 0, opts.data_dir.as_deref()) {
                args.push("--set".into());
                args.push(s);
            }
            let out = salaug(bin, &args)?;
            measured.insert(
                strategy,
                StepTiming::from_output(&out).map_err(anyhow::Error::msg)?,
            );
        }
        let (p, s) = (&measured["ref"], &measured["sal"]);
        rows.push(Timing {
            model: model.clone(),
            plain_ms: p.mean_ms,
            sal_ms: s.mean_ms,
            plain_mib: p.peak_rss_mib,
            sal_mib: s.peak_rss_mib,
            device: p.device.clone(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_spec_parses_and_its_base_configs_exist() {
        let root = workspace_root();
        for t in ["table1", "table2", "table3", "table4"] {
            let spec = TableSpec::load(&root.join(format!("configs/{t}.toml"))).unwrap();
            assert_eq!(spec.table, t);
            for mode in [Mode::Quick, Mode::Paper] {
                assert!(root.join(&spec.mode(mode).base).exists(), "{t} {mode:?}");
                assert!(!spec.cells(mode).is_empty());
            }
        }
        let t1 = TableSpec::load(&root.join("configs/table1.toml")).unwrap();
        assert_eq!(t1.seeds, 5);
        // Quick mode collapses the paper's two datasets into Fashion-MNIST.
        assert_eq!(t1.cells(Mode::Paper).len(), 2 * t1.cells(Mode::Quick).len());
        assert_eq!(
            TableSpec::load(&root.join("configs/table2.toml"))
                .unwrap()
                .seeds,
            3
        );
    }

    fn fake_run(dir: &Path, epochs: usize, rows: usize) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!("[train]\nepochs = {epochs}\n"),
        )
        .unwrap();
        let mut csv = format!("{}\n", EpochMetrics::header());
        for e in 1..=rows {
            let row = EpochMetrics {
                epoch: e,
                train_loss: 1.0,
                train_class: 1.0,
                train_sal: 0.0,
                train_inv: 0.0,
                train_acc: 0.5,
                test_loss: 1.0,
                test_acc: e as f64 / 10.0,
                consistency: 0.01,
                lr: 0.1,
                seconds: 1.0,
            };
            csv.push_str(&format!("{}\n", row.csv_row()));
        }
        std::fs::write(metrics::in_run(dir), csv).unwrap();
    }

    #[test]
    fn finished_runs_are_skipped_and_interrupted_ones_resumed() {
        let tmp = std::env::temp_dir().join(format!("xtask-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        assert_eq!(run_state(&tmp.join("none")).unwrap(), RunState::Fresh);
        fake_run(&tmp.join("done"), 2, 2);
        assert_eq!(run_state(&tmp.join("done")).unwrap(), RunState::Done);
        fake_run(&tmp.join("half"), 3, 1);
        assert_eq!(run_state(&tmp.join("half")).unwrap(), RunState::Partial(1));
        fake_run(&tmp.join("first"), 3, 0);
        assert_eq!(run_state(&tmp.join("first")).unwrap(), RunState::Fresh);
        std::fs::write(tmp.join("half/metrics.csv"), "epoch,test_acc\n1\n").unwrap();
        assert!(
            run_state(&tmp.join("half")).is_err(),
            "a malformed metrics file is an error"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn tables_have_mean_and_std_and_the_paper_figure() {
        let cell = Cell {
            dataset: "fashion_mnist".into(),
            model: "resnet18".into(),
            augment: "rotation".into(),
            strategy: "sal".into(),
        };
        let rows = vec![
            Summary {
                cell: cell.clone(),
                acc: vec![80.0, 82.0, 84.0],
                consistency: vec![0.010, 0.012, 0.014],
                paper: Some(95.5),
            },
            Summary {
                cell,
                acc: vec![70.0],
                consistency: vec![0.02],
                paper: None,
            },
        ];
        let (md, csv) = write_accuracy_table("T", "D", &rows);
        assert!(md.contains("| fashion_mnist | resnet18 | rotation | sal | 3 | 82.00 ± 2.00 | 12.000 ± 2.000 | 95.50 |"), "{md}");
        assert!(md.contains("| 1 | 70.00 | 20.000 | n/a |"), "{md}");
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "fashion_mnist,resnet18,rotation,sal,3,82.0000,2.0000,0.012000,0.002000,95.5"
        );
        let (md, csv) = write_timing_table(
            "T4",
            "D",
            &[Timing {
                model: "resnet18".into(),
                plain_ms: 100.0,
                sal_ms: 250.0,
                plain_mib: Some(512.0),
                sal_mib: None,
                device: "cpu".into(),
            }],
        );
        assert!(
            md.contains("| resnet18 | 100.0 | 250.0 | 2.50 | 512 | n/a | cpu |"),
            "{md}"
        );
        assert!(csv.contains("resnet18,100.000,250.000,2.5000,512.0,,cpu"));
    }
}

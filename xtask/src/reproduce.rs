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
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use salaug_spec::data::DEBIAN_FASHION_MNIST;
use salaug_spec::StepTiming;
use salaug_spec::{metrics, Cell, EpochMetrics, Mode, PaperFigures, TableSpec};

use crate::report::{accuracy_table, timing_table, CellRuns, Timing};

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

/// Options of one `reproduce` call.
#[derive(Debug, Clone)]
pub struct Options {
    pub table: String,
    pub mode: Mode,
    pub seeds: Option<usize>,
    pub backend: String,
    pub data_dir: Option<PathBuf>,
    pub out: PathBuf,
    /// Runs trained at once (each a `salaug` process).
    pub jobs: usize,
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
    let Some(mode) = spec.try_mode(opts.mode) else {
        bail!(
            "{} has no --{} mode (it has: {})",
            spec.table,
            opts.mode.name(),
            spec.modes()
                .iter()
                .map(|m| format!("--{}", m.name()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
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
        Mode::Quick | Mode::Cpu => ensure_fashion_mnist(opts.data_dir.as_deref())?,
        Mode::Paper | Mode::Small32 => false,
    };
    // Every run of the table uses this build, even if target/ is rebuilt meanwhile.
    let built = build_salaug(&opts.backend, download)?;
    let bin = runs.join(".salaug");
    let part = runs.join(".salaug.part");
    std::fs::copy(&built, &part)
        .and_then(|_| std::fs::rename(&part, &bin))
        .with_context(|| format!("copying {} to {}", built.display(), bin.display()))?;
    let figures = PaperFigures::load(&root.join(salaug_spec::paper::FILE))?;
    let title = format!("{} — {} ({})", spec.table, spec.title, opts.mode.name());
    let mut files = Vec::new();
    let md = if spec.kind == "timing" {
        let rows = timing(&spec, opts, &figures, &bin, &base)?;
        let (md, csv) = timing_table(&title, &mode.description, &rows);
        files.push(("csv", csv));
        md
    } else {
        let cells = accuracy_runs(&spec, opts, seeds, &figures, &bin, &base, &runs)?;
        let (md, csv, paired) = accuracy_table(&title, &mode.description, &cells, &spec.compare);
        files.push(("csv", csv));
        if !spec.compare.is_empty() {
            files.push(("paired.csv", paired));
        }
        md
    };
    files.insert(0, ("md", md.clone()));
    let stem = out_dir.join(format!("{}-{}", spec.table, opts.mode.name()));
    for (ext, text) in &files {
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
    figures: &PaperFigures,
    bin: &Path,
    base: &Path,
    runs: &Path,
) -> Result<Vec<CellRuns>> {
    let cells = spec.cells(opts.mode);
    let jobs: Vec<(usize, usize)> = (0..cells.len())
        .flat_map(|c| (0..seeds).map(move |seed| (c, seed)))
        .collect();
    let dir_of = |c: usize, seed: usize| runs.join(cells[c].dir_name()).join(format!("seed{seed}"));
    // Runs are independent: `opts.jobs` workers take them in grid order.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if k >= jobs.len() || failed.lock().expect("lock").is_some() {
                    break;
                }
                let (c, seed) = jobs[k];
                let label = format!("[{}/{}] {} seed {seed}", k + 1, jobs.len(), cells[c].id());
                let done = run_one(
                    spec,
                    opts,
                    &cells[c],
                    seed,
                    &label,
                    bin,
                    base,
                    &dir_of(c, seed),
                );
                if let Err(e) = done {
                    failed.lock().expect("lock").get_or_insert(e);
                    break;
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("lock") {
        return Err(e);
    }
    let mut summaries = Vec::new();
    for (c, cell) in cells.iter().enumerate() {
        let mut finished = Vec::new();
        for seed in 0..seeds {
            let rows = EpochMetrics::read(&metrics::in_run(&dir_of(c, seed)))?;
            let last = rows
                .into_iter()
                .last()
                .context("a finished run has metrics")?;
            finished.push((seed, last));
        }
        summaries.push(CellRuns {
            paper: figures.for_cell(spec, opts.mode, cell),
            cell: cell.clone(),
            runs: finished,
        });
    }
    Ok(summaries)
}

/// Trains one run of a cell to its end: skipped when finished, resumed when interrupted
/// after an epoch, started (again) otherwise.
#[allow(clippy::too_many_arguments)]
fn run_one(
    spec: &TableSpec,
    opts: &Options,
    cell: &Cell,
    seed: usize,
    label: &str,
    bin: &Path,
    base: &Path,
    dir: &Path,
) -> Result<()> {
    match run_state(dir)? {
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
                std::fs::remove_dir_all(dir)
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
            for s in spec.sets(opts.mode, cell, seed, opts.data_dir.as_deref()) {
                args.push("--set".into());
                args.push(s);
            }
            salaug(bin, &args)?;
        }
    }
    Ok(())
}

fn timing(
    spec: &TableSpec,
    opts: &Options,
    figures: &PaperFigures,
    bin: &Path,
    base: &Path,
) -> Result<Vec<Timing>> {
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
        let mut paper = BTreeMap::new();
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
            if mode.exclude_transform {
                args.push("--exclude-transform".into());
            }
            for s in spec.sets(opts.mode, &cell, 0, opts.data_dir.as_deref()) {
                args.push("--set".into());
                args.push(s);
            }
            let out = salaug(bin, &args)?;
            paper.insert(
                strategy,
                figures
                    .for_cell(spec, opts.mode, &cell)
                    .first()
                    .map(|f| f.1),
            );
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
            paper: paper["ref"].zip(paper["sal"]),
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
            for mode in spec.modes() {
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
            let row = crate::report::tests::test_row(e, e as f64 / 10.0);
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
}

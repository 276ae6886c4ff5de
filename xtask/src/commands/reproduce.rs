//! `cargo xtask reproduce tableN`: the paper's experiment grids, run through the `salaug`
//! binary, summarised as `results/<table>-<mode>.{md,csv}`.
//!
//! A table spec (`configs/tableN.toml`) names a base run config per mode, the grid
//! (datasets × models × augmentations × strategies) and the seeds. Each cell and seed is one
//! run directory under `results/<table>-<mode>/<cell>/seed<k>/`:
//! - finished (a `result.csv`, which a run writes when it ends, early stopping included; for
//!   runs written before it, as many rows in `metrics.csv` as its config has epochs): skipped;
//! - interrupted after at least one epoch: continued with `salaug train --resume`;
//! - interrupted in its first epoch: started again.
//!
//! The runs go through a copy of one `salaug` build ([`salaug_bin`]), `--jobs` at once
//! ([`pool`]); the tables are written by [`crate::report`]. `--quick` replaces the paper's
//! datasets with Fashion-MNIST (the real data these CPU machines have, [`fashion_mnist`]), so
//! cells that differ only by dataset collapse into one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use salaug_spec::StepTiming;
use salaug_spec::{metrics, Cell, EpochMetrics, Mode, PaperFigures, TableSpec};

use crate::report::{accuracy_table, timing_table, CellRuns, Timing};
use crate::{fashion_mnist, pool, salaug_bin};

/// The flags of `cargo xtask reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Which table.
    #[arg(value_parser = ["table1", "table2", "table3", "table4"])]
    table: String,
    /// Pipeline smoke test on Fashion-MNIST, minutes on 2 cores (the default).
    #[arg(long, group = "mode")]
    quick: bool,
    /// CPU study on Fashion-MNIST that learns (tables 1, 2; table 1: reference 84.1–86.7 %
    /// per cell, 52 min on 2 cores with --jobs 2; table 2: hours).
    #[arg(long, group = "mode")]
    cpu: bool,
    /// The paper's protocol (224×224, its models and settings; for a GPU machine with the
    /// datasets at hand).
    #[arg(long, group = "mode")]
    paper: bool,
    /// Ours: the paper's grid at 32×32 with small-image models (tables 1, 2).
    #[arg(long, group = "mode")]
    small32: bool,
    #[command(flatten)]
    runs: RunFlags,
    /// Output folder for the tables and run directories.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Runs trained at once, each a `salaug` process (on 2 CPU cores, 2 keeps both busy:
    /// one flex process uses about 1.4). With more than one, each run's progress stays in its
    /// `train.log` and one line is printed per finished run.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
}

/// The flags `reproduce` and `study` share: how the runs of a spec are trained.
#[derive(Debug, Clone, Args)]
pub struct RunFlags {
    /// Seeds per cell (default: the spec's: 5 for table 1, 3 for table 2 and the studies).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Backend the `salaug` binary is built with.
    #[arg(long, default_value = "flex", value_parser = ["flex", "ndarray", "wgpu", "cuda"])]
    pub backend: String,
    /// Folder holding the datasets (else $SALAUG_DATA and system folders).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Runs (or continues) the table and prints its markdown.
pub fn handle(args: ReproduceArgs) -> Result<()> {
    let ReproduceArgs {
        table,
        quick: _,
        cpu,
        paper,
        small32,
        runs,
        out,
        jobs,
    } = args;
    let mode = match (cpu, paper, small32) {
        (true, _, _) => Mode::Cpu,
        (_, true, _) => Mode::Paper,
        (_, _, true) => Mode::Small32,
        _ => Mode::Quick,
    };
    let done = reproduce(&Options {
        spec: salaug_bin::workspace_root()
            .join("configs")
            .join(format!("{table}.toml")),
        name: format!("{table}-{}", mode.name()),
        mode,
        runs,
        out,
        jobs,
    })?;
    println!("{}", done.md);
    Ok(())
}

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
    // result.csv: written when a run ends (also when it stopped early); older runs lack it.
    let ended = metrics::result_in_run(dir).exists();
    Ok(if ended || rows >= epochs {
        RunState::Done
    } else if rows == 0 {
        RunState::Fresh
    } else {
        RunState::Partial(rows)
    })
}

/// Options of one `reproduce` call.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The table (or study) spec.
    pub spec: PathBuf,
    /// The outputs' name: `<out>/<name>.md`, `.csv`, the run directories under `<out>/<name>/`.
    pub name: String,
    pub mode: Mode,
    pub runs: RunFlags,
    /// Folder of the outputs, relative to the workspace root.
    pub out: PathBuf,
    /// Runs trained at once (each a `salaug` process).
    pub jobs: usize,
}

/// What a finished [`reproduce`] wrote.
pub(crate) struct Reproduced {
    /// The spec.
    pub spec: TableSpec,
    /// The markdown of the tables.
    pub md: String,
    /// Every cell with its finished runs (empty for timing tables).
    pub cells: Vec<CellRuns>,
    /// The run directory of a cell's seed.
    pub dirs: Vec<Vec<PathBuf>>,
    /// `<out>/<name>`: the stem of the written files.
    pub stem: PathBuf,
}

/// Runs (or continues) a table and writes its results.
pub(crate) fn reproduce(opts: &Options) -> Result<Reproduced> {
    if opts.runs.seeds == Some(0) {
        bail!("--seeds must be at least 1");
    }
    let root = salaug_bin::workspace_root();
    let spec = TableSpec::load(&opts.spec)?;
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
        bail!("{}: base config {} not found", spec.table, base.display());
    }
    let seeds = opts.runs.seeds.unwrap_or(spec.seeds);
    let out_dir = root.join(&opts.out);
    let runs = out_dir.join(&opts.name);
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    eprintln!(
        "{} --{} ({} seed(s), backend {}): {}",
        spec.table,
        opts.mode.name(),
        seeds,
        opts.runs.backend,
        mode.description
    );
    let download = match opts.mode {
        Mode::Quick | Mode::Cpu => fashion_mnist::ensure(opts.runs.data_dir.as_deref())?,
        Mode::Paper | Mode::Small32 => false,
    };
    // Every run of the table uses this build, even if target/ is rebuilt meanwhile.
    let bin = salaug_bin::copy_into(&salaug_bin::build(&opts.runs.backend, download)?, &runs)?;
    let figures = PaperFigures::load(&root.join(salaug_spec::paper::FILE))?;
    let title = format!("{} — {} ({})", spec.table, spec.title, opts.mode.name());
    let mut files = Vec::new();
    let (mut cells, mut dirs) = (Vec::new(), Vec::new());
    let md = if spec.kind == "timing" {
        let rows = timing(&spec, opts, &figures, &bin, &base)?;
        let (md, csv) = timing_table(&title, &mode.description, &rows);
        files.push(("csv", csv));
        md
    } else {
        (cells, dirs) = accuracy_runs(&spec, opts, seeds, &figures, &bin, &base, &runs)?;
        let (md, csv, paired) = accuracy_table(&title, &mode.description, &cells, &spec.compare);
        files.push(("csv", csv));
        if !spec.compare.is_empty() {
            files.push(("paired.csv", paired));
        }
        md
    };
    files.insert(0, ("md", md.clone()));
    let stem = out_dir.join(&opts.name);
    for (ext, text) in &files {
        write_atomic(&stem.with_extension(ext), text)?;
    }
    Ok(Reproduced {
        spec,
        md,
        cells,
        dirs,
        stem,
    })
}

/// Writes `text` to `path` through `<path>.part`, so that a file is whole or absent.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn accuracy_runs(
    spec: &TableSpec,
    opts: &Options,
    seeds: usize,
    figures: &PaperFigures,
    bin: &Path,
    base: &Path,
    runs: &Path,
) -> Result<(Vec<CellRuns>, Vec<Vec<PathBuf>>)> {
    let cells = spec.cells(opts.mode);
    // Seed by seed, so that an interrupted study has every cell at its first seeds.
    let jobs: Vec<(usize, usize)> = (0..seeds)
        .flat_map(|seed| (0..cells.len()).map(move |c| (c, seed)))
        .collect();
    let dir_of = |c: usize, seed: usize| runs.join(cells[c].dir_name()).join(format!("seed{seed}"));
    // Runs are independent: `opts.jobs` workers take them in grid order.
    pool::run_all(opts.jobs, jobs.len(), |k| {
        let (c, seed) = jobs[k];
        let label = format!("[{}/{}] {} seed {seed}", k + 1, jobs.len(), cells[c].id());
        run_one(
            spec,
            opts,
            &cells[c],
            seed,
            &label,
            bin,
            base,
            &dir_of(c, seed),
        )
    })?;
    let mut summaries = Vec::new();
    let mut dirs = Vec::new();
    for (c, cell) in cells.iter().enumerate() {
        let mut finished = Vec::new();
        for seed in 0..seeds {
            let last = metrics::result(&dir_of(c, seed))?.context("a finished run has metrics")?;
            finished.push((seed, last));
        }
        summaries.push(CellRuns {
            paper: figures.for_cell(spec, opts.mode, cell),
            cell: cell.clone(),
            runs: finished,
        });
        dirs.push((0..seeds).map(|seed| dir_of(c, seed)).collect());
    }
    Ok((summaries, dirs))
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
    // Runs side by side would interleave their progress: each then says one line when it
    // ends (its train.log holds the rest).
    let quiet = opts.jobs > 1;
    let salaug = |args: &[String]| match quiet {
        true => salaug_bin::run_quiet(bin, args),
        false => salaug_bin::run(bin, args),
    };
    let started = std::time::Instant::now();
    match run_state(dir)? {
        RunState::Done => {
            eprintln!("{label}: finished earlier, skipped");
            return Ok(());
        }
        RunState::Partial(epochs) => {
            if !quiet {
                eprintln!("{label}: resuming after epoch {epochs} ({})", dir.display());
            }
            salaug(&["train".into(), "--resume".into(), dir.display().to_string()])?;
        }
        RunState::Fresh => {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("clearing {}", dir.display()))?;
            }
            if !quiet {
                eprintln!("{label}: training ({})", dir.display());
            }
            let mut args = vec![
                "train".to_string(),
                "--config".into(),
                base.display().to_string(),
                "--out".into(),
                dir.display().to_string(),
            ];
            for s in spec.sets(opts.mode, cell, seed, opts.runs.data_dir.as_deref()) {
                args.push("--set".into());
                args.push(s);
            }
            salaug(&args)?;
        }
    }
    if quiet {
        let r = metrics::result(dir)?.context("a finished run has a result")?;
        eprintln!(
            "{label}: done in {:.0} s, kept epoch {}: test accuracy {:.2}%, held-out L_sal \
             distance {:.5} ({})",
            started.elapsed().as_secs_f64(),
            r.epoch,
            100.0 * r.test_acc,
            r.consistency,
            dir.display()
        );
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
            for s in spec.sets(opts.mode, &cell, 0, opts.runs.data_dir.as_deref()) {
                args.push("--set".into());
                args.push(s);
            }
            let out = salaug_bin::run(bin, &args)?;
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
        let root = salaug_bin::workspace_root();
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
            let row = crate::testing::test_row(e, e as f64 / 10.0);
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

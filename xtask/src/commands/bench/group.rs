//! `cargo xtask bench group`: training throughput of one process against a group of ranks on
//! this machine (`salaug launch --local N`), with the same total number of threads, and what
//! the group's gradient all-reduces cost.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use salaug_spec::EpochMetrics;

use super::common::{salaug_and_config, write_results, OUT};
use crate::salaug_bin::workspace_root;

/// The flags of `cargo xtask bench group`.
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    /// Ranks of the group.
    #[arg(long, default_value_t = 2)]
    pub ranks: usize,
    /// Threads in all: the single process gets them all, each rank `threads / ranks`.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Training images (of Fashion-MNIST; the group shares them out).
    #[arg(long, default_value_t = 2000)]
    pub images: usize,
    /// Epochs of each run.
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
}

/// One run's figures.
struct Run {
    label: String,
    epoch_seconds: f64,
    wall: f64,
    traffic: Option<String>,
}

/// `cargo xtask bench group`: `configs/ci-fmnist.toml` (the small CNN, `sal`, batch 16 per
/// process) trained by one process and by a local group, in one sitting; images per second
/// over the epochs' time (`seconds` of metrics.csv, which includes a 100-image test pass),
/// and rank 0's all-reduce traffic. Writes `results/bench-group.md` and `.json`.
pub fn handle(args: GroupArgs) -> Result<()> {
    if args.ranks < 2 || args.threads < args.ranks {
        bail!("--ranks must be at least 2 and --threads at least --ranks");
    }
    let (bin, _) = salaug_and_config()?;
    let root = workspace_root();
    let config = root.join("configs/ci-fmnist.toml");
    let scratch = std::env::temp_dir().join(format!("salaug-bench-group-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let sets = [
        format!("data.train_limit={}", args.images),
        "data.test_limit=100".into(),
        "metrics.held_out_images=0".into(),
        "metrics.consistency_images=32".into(),
        format!("train.epochs={}", args.epochs),
    ];
    let mut runs = Vec::new();
    for ranks in [1, args.ranks] {
        let out = scratch.join(format!("ranks-{ranks}"));
        let mut c = Command::new(&bin);
        if ranks > 1 {
            c.args(["launch", "--local", &ranks.to_string(), "--"]);
        }
        c.arg("train")
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&out);
        for s in &sets {
            c.args(["--set", s]);
        }
        let threads = args.threads / ranks;
        c.env("RAYON_NUM_THREADS", threads.to_string())
            .env("RUST_LOG", "warn,salaug_train::group=info")
            .current_dir(&root);
        eprintln!("bench group: {ranks} process(es) × {threads} thread(s)");
        let started = Instant::now();
        let status = c.status().context("starting salaug")?;
        let wall = started.elapsed().as_secs_f64();
        if !status.success() {
            bail!("the run with {ranks} process(es) failed ({status})");
        }
        let rows = EpochMetrics::read(&salaug_spec::metrics::in_run(&out))?;
        let traffic = traffic_line(&out.join("train.log"))?;
        runs.push(Run {
            label: format!("{ranks} × {threads} thread(s)"),
            epoch_seconds: rows.iter().map(|r| r.seconds).sum(),
            wall,
            traffic,
        });
    }
    let images = (args.images * args.epochs) as f64;
    let mut md = format!(
        "configs/ci-fmnist.toml (small CNN, `sal`, batch 16 per process), {} training images, \
         {} epochs, {} threads in all; images/s over the epochs' time (metrics.csv `seconds`, \
         a 100-image test pass included); wall time includes start-up and data loading.\n\n\
         | processes × threads | images/s | epochs' s | wall s | rank 0's gradient all-reduces |\n\
         |---|---|---|---|---|\n",
        args.images, args.epochs, args.threads
    );
    let mut raw = Vec::new();
    for r in &runs {
        md.push_str(&format!(
            "| {} | {:.0} | {:.1} | {:.1} | {} |\n",
            r.label,
            images / r.epoch_seconds,
            r.epoch_seconds,
            r.wall,
            r.traffic.as_deref().unwrap_or("–")
        ));
        raw.push(serde_json::json!({
            "run": r.label,
            "images_per_s": images / r.epoch_seconds,
            "epoch_seconds": r.epoch_seconds,
            "wall_s": r.wall,
            "traffic": r.traffic,
        }));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    write_results(&root.join(OUT).join("bench-group"), &md, &raw)?;
    println!("{md}");
    Ok(())
}

/// Rank 0's log line of what the gradient all-reduces cost (`crate::group::Member::finish`).
fn traffic_line(log: &Path) -> Result<Option<String>> {
    let text = match std::fs::read_to_string(log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", log.display())),
    };
    Ok(text
        .lines()
        .filter_map(|l| l.split_once("rank 0: ").map(|(_, rest)| rest))
        .find(|rest| rest.contains("gradient all-reduces"))
        .map(str::to_string))
}

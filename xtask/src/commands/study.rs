//! `cargo xtask study <name>`: one of our studies, `configs/studies/<name>.toml`, run as
//! `reproduce` runs a table (a [`TableSpec`] whose strategies are named arms,
//! `[variants.<name>]`, each compared with its baseline, paired by seed), written as
//! `results/studies/<name>.md`, `.csv`, `.paired.csv`, every run's every epoch in
//! `<name>.runs.csv` (the per-run `metrics.csv` files, labelled by cell and seed, small enough
//! to commit), and `<name>.svg`: the paired differences against the arms' `x` (e.g. β), one
//! line per `series`, with their 95 % intervals.
//!
//! A study is resumable as a table is: finished runs are skipped, interrupted ones resumed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use plotters::prelude::*;
use salaug_spec::{metrics, EpochMetrics, Measure, TableSpec};

use super::reproduce::{reproduce, write_atomic, Options, Reproduced, RunFlags};
use crate::report::{compare, paired_measures, Comparison};
use crate::salaug_bin;

/// The flags of `cargo xtask study`.
#[derive(Debug, Args)]
pub struct StudyArgs {
    /// The study: `configs/studies/<name>.toml`.
    name: String,
    #[command(flatten)]
    runs: RunFlags,
    /// Output folder.
    #[arg(long, default_value = "results/studies")]
    out: PathBuf,
    /// Runs trained at once (2 keeps 2 CPU cores busy).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

/// The measures a study's plot draws: clean accuracy and map agreement.
const PLOTTED: [&str; 3] = ["test_acc", "map_spearman", "consistency"];

/// Runs (or continues) the study and writes its files.
pub fn handle(args: StudyArgs) -> Result<()> {
    let dir = salaug_bin::workspace_root().join("configs/studies");
    let spec = dir.join(format!("{}.toml", args.name));
    if !spec.exists() {
        bail!(
            "no study {:?}: {} does not exist (studies: {})",
            args.name,
            spec.display(),
            studies(&dir).join(", ")
        );
    }
    let modes = TableSpec::load(&spec)?.modes();
    let [mode] = modes[..] else {
        bail!("{}: a study has exactly one mode", spec.display());
    };
    let done = reproduce(&Options {
        spec,
        name: args.name.clone(),
        mode,
        runs: args.runs,
        out: args.out,
        jobs: args.jobs,
    })?;
    write_atomic(&done.stem.with_extension("runs.csv"), &runs_csv(&done)?)?;
    let comparisons = compare(&done.cells, &done.spec.compare);
    let points = plot_points(&done.spec, &comparisons);
    if !points.is_empty() {
        let svg = done.stem.with_extension("svg");
        plot(&done.spec.title, &points, &svg)?;
        eprintln!("wrote {}", svg.display());
    }
    println!("{}", done.md);
    Ok(())
}

/// The studies in `dir`, by name.
fn studies(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != "toml" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

/// Every epoch row of every run: `augment,arm,seed,` then the `metrics.csv` columns.
fn runs_csv(done: &Reproduced) -> Result<String> {
    let mut csv = format!("augment,arm,seed,{}\n", EpochMetrics::header());
    for (cell, dirs) in done.cells.iter().zip(&done.dirs) {
        for (seed, dir) in dirs.iter().enumerate() {
            let path = metrics::in_run(dir);
            let rows =
                EpochMetrics::read(&path).with_context(|| format!("reading {}", path.display()))?;
            for r in rows {
                writeln!(
                    csv,
                    "{},{},{seed},{}",
                    cell.cell.augment,
                    cell.cell.strategy,
                    r.csv_row()
                )?;
            }
        }
    }
    Ok(csv)
}

/// One point of the plot: a paired difference of an arm with an `x`.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    /// The panel's column (the augmentation).
    augment: String,
    /// The arm's series.
    series: String,
    /// The arm's x.
    x: f64,
    /// Per [`PLOTTED`] measure: (mean, lo, hi) of the paired difference.
    diffs: Vec<(f64, f64, f64)>,
}

fn plotted() -> Vec<(usize, &'static Measure)> {
    PLOTTED
        .iter()
        .map(|key| {
            paired_measures()
                .enumerate()
                .find(|(_, m)| m.key == *key)
                .unwrap_or_else(|| panic!("{key} is a paired measure"))
        })
        .collect()
}

/// The points of the comparisons whose treatment is an arm with an `x`: one per arm and
/// augmentation, against `ref` where the study compares the arm with it (the method's baseline),
/// else against the arm's first baseline.
fn plot_points(spec: &TableSpec, comparisons: &[Comparison]) -> Vec<Point> {
    let measures = plotted();
    let chosen = |c: &Comparison| {
        let same = |o: &&Comparison| o.treatment == c.treatment;
        let first = comparisons.iter().find(same).expect("c itself");
        let with_ref = comparisons
            .iter()
            .filter(same)
            .find(|o| o.baseline.strategy == "ref");
        std::ptr::eq(with_ref.unwrap_or(first), c)
    };
    comparisons
        .iter()
        .filter(|c| chosen(c))
        .filter_map(|c| {
            let v = spec.variants.get(&c.treatment.strategy)?;
            Some(Point {
                augment: c.treatment.augment.clone(),
                series: v
                    .series
                    .clone()
                    .unwrap_or_else(|| c.treatment.strategy.clone()),
                x: v.x?,
                diffs: measures
                    .iter()
                    .map(|(i, _)| {
                        let d = &c.diffs[*i];
                        (d.mean, d.lo, d.hi)
                    })
                    .collect(),
            })
        })
        .collect()
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(0, 0, 0),
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

fn draw<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("drawing the study plot: {e}")
}

/// Draws `points` as one panel per (measure, augmentation): the x values evenly spaced in
/// order (β from 0 has no log scale), each series offset a little so that the intervals do
/// not hide each other, zero (the baseline) as a grey line.
fn plot(title: &str, points: &[Point], out: &Path) -> Result<()> {
    let mut xs: Vec<f64> = points.iter().map(|p| p.x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let mut augments: Vec<&str> = Vec::new();
    let mut series: Vec<&str> = Vec::new();
    for p in points {
        if !augments.contains(&p.augment.as_str()) {
            augments.push(&p.augment);
        }
        if !series.contains(&p.series.as_str()) {
            series.push(&p.series);
        }
    }
    if series.len() > COLOURS.len() {
        bail!(
            "{} series: at most {} per plot",
            series.len(),
            COLOURS.len()
        );
    }
    let measures = plotted();
    let tmp = out.with_extension("svg.part");
    {
        let (w, h) = (
            560 * augments.len() as u32,
            330 * measures.len() as u32 + 90,
        );
        let root = SVGBackend::new(&tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw)?;
        let (top, body) = root.split_vertically(90);
        top.draw(&Text::new(
            format!("{title}: treatment − baseline, paired by seed, mean and 95 % t interval"),
            (10, 8),
            ("sans-serif", 18).into_font(),
        ))
        .map_err(draw)?;
        for (k, s) in series.iter().enumerate() {
            let (x, y) = (10 + 480 * (k as i32 % 2), 34 + 22 * (k as i32 / 2));
            top.draw(&Rectangle::new(
                [(x, y + 4), (x + 14, y + 14)],
                COLOURS[k].filled(),
            ))
            .map_err(draw)?;
            top.draw(&Text::new(
                s.to_string(),
                (x + 20, y),
                ("sans-serif", 15).into_font(),
            ))
            .map_err(draw)?;
        }
        let panels = body.split_evenly((measures.len(), augments.len()));
        let n = xs.len() as f64;
        for (j, (_, m)) in measures.iter().enumerate() {
            for (a, augment) in augments.iter().enumerate() {
                let area = &panels[j * augments.len() + a];
                let here: Vec<&Point> = points.iter().filter(|p| p.augment == *augment).collect();
                let (mut lo, mut hi) = (0.0f64, 0.0f64);
                for p in &here {
                    let (mean, l, u) = p.diffs[j];
                    for v in [mean, l, u] {
                        if v.is_finite() {
                            lo = lo.min(v);
                            hi = hi.max(v);
                        }
                    }
                }
                let pad = 0.08 * (hi - lo).max(1e-9);
                let unit = if m.scale == 100.0 { " (points)" } else { "" };
                let scaled = if m.scale == 1e3 { " ×10³" } else { "" };
                let mut chart = ChartBuilder::on(area)
                    .caption(
                        format!("{augment}: Δ {}{scaled}{unit}", short_head(m)),
                        ("sans-serif", 16),
                    )
                    .margin(12)
                    .x_label_area_size(34)
                    .y_label_area_size(56)
                    .build_cartesian_2d(-0.5..n - 0.5, (lo - pad)..(hi + pad))
                    .map_err(draw)?;
                let label = |v: &f64| {
                    let i = v.round();
                    match ((v - i).abs() < 1e-6, xs.get(i as usize)) {
                        (true, Some(x)) if i >= 0.0 => format!("{x}"),
                        _ => String::new(),
                    }
                };
                // Enough decimals for the axis' range (Spearman differences are hundredths).
                let digits = (2.0 - (hi - lo + 2.0 * pad).log10().floor()).clamp(0.0, 6.0) as usize;
                let y_label = |v: &f64| format!("{v:.digits$}");
                chart
                    .configure_mesh()
                    .x_labels(xs.len())
                    .x_label_formatter(&label)
                    .y_label_formatter(&y_label)
                    .light_line_style(WHITE)
                    .x_desc("β")
                    .disable_x_mesh()
                    .draw()
                    .map_err(draw)?;
                chart
                    .draw_series(LineSeries::new(
                        [(-0.5, 0.0), (n - 0.5, 0.0)],
                        RGBColor(150, 150, 150).stroke_width(2),
                    ))
                    .map_err(draw)?;
                for (k, s) in series.iter().enumerate() {
                    let colour = COLOURS[k];
                    let offset = (k as f64 - (series.len() as f64 - 1.0) / 2.0) * 0.12;
                    let mut line: Vec<(f64, f64, f64, f64)> = here
                        .iter()
                        .filter(|p| p.series == *s)
                        .map(|p| {
                            let i = xs.iter().position(|x| *x == p.x).expect("an x") as f64;
                            let (mean, l, u) = p.diffs[j];
                            (i + offset, mean, l, u)
                        })
                        .filter(|(_, mean, _, _)| mean.is_finite())
                        .collect();
                    line.sort_by(|a, b| a.0.total_cmp(&b.0));
                    chart
                        .draw_series(LineSeries::new(
                            line.iter().map(|&(x, y, _, _)| (x, y)),
                            colour.stroke_width(2),
                        ))
                        .map_err(draw)?;
                    chart
                        .draw_series(
                            line.iter()
                                .map(|&(x, y, _, _)| Circle::new((x, y), 4, colour.filled())),
                        )
                        .map_err(draw)?;
                    chart
                        .draw_series(
                            line.iter()
                                .filter(|(_, _, l, u)| l.is_finite() && u.is_finite())
                                .map(|&(x, _, l, u)| {
                                    PathElement::new(vec![(x, l), (x, u)], colour.stroke_width(1))
                                }),
                        )
                        .map_err(draw)?;
                }
            }
        }
        root.present().map_err(draw)?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// A measure's table head without its unit note.
fn short_head(m: &Measure) -> String {
    let head = m.head.split(" (").next().unwrap_or(m.head);
    head.replace(" ×10³", "")
}

/// The series of a spec's arms in file order, for the tests.
#[cfg(test)]
fn series_of(spec: &TableSpec) -> std::collections::BTreeMap<String, Vec<f64>> {
    let mut out = std::collections::BTreeMap::<String, Vec<f64>>::new();
    for v in spec.variants.values() {
        if let (Some(s), Some(x)) = (&v.series, v.x) {
            out.entry(s.clone()).or_default().push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CellRuns;
    use crate::testing::{cell, full_row};
    use salaug_spec::Mode;

    #[test]
    fn every_study_parses_with_one_mode_and_its_arms_compared() {
        let dir = salaug_bin::workspace_root().join("configs/studies");
        let names = studies(&dir);
        assert!(names.contains(&"beta".to_string()), "{names:?}");
        for name in names {
            let spec = TableSpec::load(&dir.join(format!("{name}.toml"))).unwrap();
            assert_eq!(spec.modes().len(), 1, "{name}");
            let mode = spec.modes()[0];
            assert!(salaug_bin::workspace_root()
                .join(&spec.mode(mode).base)
                .exists());
            for [b, t] in &spec.compare {
                assert!(spec.grid.strategies.contains(b) && spec.grid.strategies.contains(t));
            }
        }
        let beta = TableSpec::load(&dir.join("beta.toml")).unwrap();
        let series = series_of(&beta);
        assert_eq!(series.len(), 3, "{series:?}");
        assert!(series.values().any(|x| x == &[0.0]));
        let cells = beta.cells(Mode::Cpu);
        assert_eq!(cells.len(), 2 * 10);
        let abs = cells
            .iter()
            .find(|c| c.strategy == "sal-b1-abs" && c.augment == "rotation")
            .unwrap();
        let sets = beta.sets(Mode::Cpu, abs, 2, None);
        for want in [
            "train.strategy=\"sal\"",
            "loss.beta=1.0",
            "loss.saliency.reduction=\"abs_max\"",
            "augment.max_degrees=10.0",
            "seed=2",
        ] {
            assert!(sets.contains(&want.to_string()), "{want}: {sets:?}");
        }
    }

    #[test]
    fn the_plot_draws_each_arm_against_its_x() {
        let spec: TableSpec = toml::from_str(
            r#"
table = "s"
title = "S"
seeds = 2
compare = [["none", "b"], ["ref", "a"], ["ref", "b"]]
[cpu]
base = "configs/cpu-base.toml"
description = "d"
[grid]
datasets = ["fashion_mnist"]
models = ["small_cnn"]
augments = ["rotation"]
strategies = ["none", "ref", "a", "b"]
[variants.a]
strategy = "sal"
x = 0.0
series = "zero"
[variants.b]
strategy = "sal"
sets = ["loss.beta=3.0"]
x = 3.0
series = "three"
"#,
        )
        .unwrap();
        let runs = |acc: [f64; 2]| vec![(0, full_row(acc[0], 0.0)), (1, full_row(acc[1], 0.1))];
        let arm = |augment: &str, strategy: &str, acc: [f64; 2]| CellRuns {
            cell: cell("small_cnn", augment, strategy),
            runs: runs(acc),
            paper: vec![],
        };
        let cells = vec![
            arm("none", "none", [0.70, 0.72]),
            arm("rotation", "ref", [0.80, 0.82]),
            arm("rotation", "a", [0.80, 0.82]),
            arm("rotation", "b", [0.81, 0.84]),
        ];
        let points = plot_points(&spec, &compare(&cells, &spec.compare));
        assert_eq!(points.len(), 2, "b against ref only, not also against none");
        assert_eq!((points[0].x, points[0].series.as_str()), (0.0, "zero"));
        assert_eq!(points[0].diffs[0].0, 0.0, "identical runs differ by zero");
        assert!((points[1].diffs[0].0 - 1.5).abs() < 1e-9, "{points:?}");
        let out = std::env::temp_dir().join(format!("study-plot-{}.svg", std::process::id()));
        plot("S", &points, &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("rotation: Δ clean acc. (points)"), "{svg}");
        assert!(svg.contains("three") && svg.contains("zero"));
        if std::env::var_os("KEEP_PLOT").is_none() {
            std::fs::remove_file(&out).unwrap();
        }
    }
}

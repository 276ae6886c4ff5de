//! `salaug plot`: training curves of one or more runs from their `metrics.csv`, as one SVG
//! (plotters): the loss terms, the accuracies (training, clean test, under the run's
//! augmentation and under the panel), map agreement (Spearman, top-10 % IoU), faithfulness
//! (deletion and insertion areas with their random-order baselines) and the held-out `L_sal`
//! distance, per epoch: the panels of `salaug_spec::measures::MEASURES`. Runs are told apart by colour, measures by line style; epochs where a
//! measure was not taken (NaN) are skipped.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use salaug_spec::measures::panels;

use crate::metrics::read_metrics;

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// The label of a run directory: its last two path components (`cell/seed0`).
pub fn run_label(dir: &Path) -> String {
    let parts: Vec<String> = dir
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

/// Draws the curves of `runs` into the SVG file `out`; returns the number of runs drawn.
pub fn plot_runs(runs: &[PathBuf], out: &Path) -> Result<usize> {
    if runs.is_empty() {
        bail!("no run directories given");
    }
    if runs.len() > COLOURS.len() {
        bail!("{} runs: at most {} per plot", runs.len(), COLOURS.len());
    }
    let mut all = Vec::new();
    for dir in runs {
        let rows = read_metrics(dir)?;
        if rows.is_empty() {
            bail!("{}: no finished epoch in metrics.csv", dir.display());
        }
        all.push((run_label(dir), rows));
    }
    let tmp = out.with_extension("svg.part");
    {
        let root = SVGBackend::new(&tmp, (1800, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(draw)?;
        let legend: Vec<String> = all
            .iter()
            .enumerate()
            .map(|(i, (label, _))| format!("colour {}: {label}", i + 1))
            .collect();
        let (top, body) = root.split_vertically(40);
        top.draw(&Text::new(
            legend.join("   "),
            (10, 12),
            ("sans-serif", 16).into_font(),
        ))
        .map_err(draw)?;
        let epochs = all.iter().map(|(_, r)| r.len()).max().unwrap_or(1);
        let panels = panels();
        let layout = (panels.len().div_ceil(4), 4);
        for (area, (title, measures)) in body.split_evenly(layout).iter().zip(&panels) {
            let points: Vec<Vec<Vec<(f64, f64)>>> = all
                .iter()
                .map(|(_, rows)| {
                    measures
                        .iter()
                        .map(|m| {
                            rows.iter()
                                .map(|r| (r.epoch as f64, (m.get)(r)))
                                .filter(|(_, v)| v.is_finite())
                                .collect()
                        })
                        .collect()
                })
                .collect();
            let values = points.iter().flatten().flatten().map(|p| p.1);
            let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
            let (lo, hi) = if lo > hi {
                (0.0, 1.0)
            } else if hi - lo < 1e-12 {
                (lo - 0.5, hi + 0.5)
            } else {
                let pad = 0.05 * (hi - lo);
                (lo - pad, hi + pad)
            };
            let mut chart = ChartBuilder::on(area)
                .caption(*title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(30)
                .y_label_area_size(55)
                .build_cartesian_2d(0.5..epochs as f64 + 0.5, lo..hi)
                .map_err(draw)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(epochs.min(10) + 1)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .draw()
                .map_err(draw)?;
            for (r, series) in points.iter().enumerate() {
                let colour = COLOURS[r];
                for (s, pts) in series.iter().enumerate() {
                    // Series differ by marker (circle, triangle, cross, square) and the first
                    // is drawn thicker; runs differ by colour.
                    let style = ShapeStyle {
                        color: colour.to_rgba(),
                        filled: true,
                        stroke_width: if s == 0 { 2 } else { 1 },
                    };
                    let marker = move |p: (f64, f64), size: i32| -> DynElement<'static, SVGBackend, (f64, f64)> {
                        match s {
                            0 => Circle::new(p, size, style).into_dyn(),
                            1 => TriangleMarker::new(p, size + 1, style).into_dyn(),
                            2 => Cross::new(p, size + 1, style).into_dyn(),
                            _ => Rectangle::new([p, p], style).into_dyn(),
                        }
                    };
                    let drawn = chart
                        .draw_series(LineSeries::new(pts.iter().copied(), style))
                        .map_err(draw)?;
                    if r == 0 {
                        let label = measures[s].panel.map_or("", |p| p.1);
                        drawn.label(label).legend(move |(x, y)| {
                            EmptyElement::at((x, y))
                                + PathElement::new(vec![(0, 0), (20, 0)], style)
                                + match s {
                                    0 => Circle::new((10, 0), 3, style).into_dyn(),
                                    1 => TriangleMarker::new((10, 0), 4, style).into_dyn(),
                                    2 => Cross::new((10, 0), 4, style).into_dyn(),
                                    _ => Rectangle::new([(8, -2), (12, 2)], style).into_dyn(),
                                }
                        });
                    }
                    chart
                        .draw_series(pts.iter().map(|&p| marker(p, 3)))
                        .map_err(draw)?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(draw)?;
        }
        root.present().map_err(draw)?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(all.len())
}

fn draw<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e:?}")
}

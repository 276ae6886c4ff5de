//! The tables `cargo xtask reproduce` writes: per cell the mean ± sample standard deviation
//! over seeds of every measure of the reproduction tables
//! ([`salaug_spec::measures::table_measures`]), the paper's figure beside ours, and the paired
//! differences (treatment − baseline, paired by seed) with 95 % confidence intervals. Each
//! table is built once as a [`Table`] and rendered as markdown and CSV.

use salaug_spec::measures::{table_measures, Measure};
use salaug_spec::{Cell, EpochMetrics};

use crate::stats::{mean_std, Paired};
use crate::table::{self, Table};

/// The measures compared between paired runs (the random-order baselines are not).
pub(crate) fn paired_measures() -> impl Iterator<Item = &'static Measure> {
    table_measures().filter(|m| m.table.is_some_and(|t| t.paired))
}

/// The CSV key of a table measure.
fn key(m: &Measure) -> &'static str {
    m.table.expect("a table measure").key
}

/// One cell of an accuracy table: the final metrics row of each finished seed.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRuns {
    /// The cell.
    pub cell: Cell,
    /// `(seed, final row)`.
    pub runs: Vec<(usize, EpochMetrics)>,
    /// The paper's figures for this cell, `(paper dataset, %)`.
    pub paper: Vec<(String, f64)>,
}

fn values(runs: &[(usize, EpochMetrics)], m: &Measure) -> Vec<f64> {
    runs.iter()
        .map(|(_, r)| (m.get)(r))
        .filter(|v| v.is_finite())
        .collect()
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

fn paper_text(p: &[(String, f64)], signed: bool) -> String {
    if p.is_empty() {
        return "n/a".into();
    }
    p.iter()
        .map(|(d, v)| {
            if signed {
                format!("{d} {v:+.1}")
            } else {
                format!("{d} {v:.1}")
            }
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A paired comparison of two cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The baseline cell.
    pub baseline: Cell,
    /// The treatment cell.
    pub treatment: Cell,
    /// Per measure (in [`paired_measures`] order), the paired difference.
    pub diffs: Vec<Paired>,
    /// The paper's difference per paper dataset.
    pub paper: Vec<(String, f64)>,
}

/// The paired comparisons of `cells` for each `[baseline, treatment]` strategy pair: cells of
/// the same dataset, model and augmentation (the baseline `none` has no augmentation),
/// runs paired by seed.
pub fn compare(cells: &[CellRuns], pairs: &[[String; 2]]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for [b, t] in pairs {
        for treat in cells.iter().filter(|c| &c.cell.strategy == t) {
            let augment = if b == "none" {
                "none".to_string()
            } else {
                treat.cell.augment.clone()
            };
            let Some(base) = cells.iter().find(|c| {
                c.cell.strategy == *b
                    && c.cell.dataset == treat.cell.dataset
                    && c.cell.model == treat.cell.model
                    && c.cell.augment == augment
            }) else {
                continue;
            };
            let diffs = paired_measures()
                .map(|m| {
                    let d: Vec<f64> = treat
                        .runs
                        .iter()
                        .filter_map(|(seed, r)| {
                            let other = base.runs.iter().find(|(s, _)| s == seed)?;
                            let v = ((m.get)(r) - (m.get)(&other.1)) * m.scale;
                            v.is_finite().then_some(v)
                        })
                        .collect();
                    Paired::of(&d)
                })
                .collect();
            let paper = treat
                .paper
                .iter()
                .filter_map(|(d, v)| {
                    let bv = base.paper.iter().find(|(bd, _)| bd == d)?.1;
                    Some((d.clone(), v - bv))
                })
                .collect();
            out.push(Comparison {
                baseline: base.cell.clone(),
                treatment: treat.cell.clone(),
                diffs,
                paper,
            });
        }
    }
    out
}

fn interval(p: &Paired, digits: usize) -> String {
    if p.n == 0 {
        return "—".into();
    }
    let mark = if p.excludes_zero() { " *" } else { "" };
    if p.n == 1 {
        return format!("{:+.*} (1 seed)", digits, p.mean);
    }
    format!(
        "{:+.*} [{:+.*}, {:+.*}]{mark}",
        digits, p.mean, digits, p.lo, digits, p.hi
    )
}

/// `{:.6}` of each value, for the CSVs.
fn fixed6(vs: impl IntoIterator<Item = f64>) -> impl Iterator<Item = String> {
    vs.into_iter().map(|v| format!("{v:.6}"))
}

/// The per-cell table: mean ± sd over seeds of every measure, the paper's figures.
fn cells_table(cells: &[CellRuns]) -> Table {
    let mut t = Table::new();
    t.same("dataset")
        .same("model")
        .column("augmentation", ["augment"])
        .same("strategy")
        .same("seeds");
    for m in table_measures() {
        let k = key(m);
        t.column(m.head, [format!("{k}_mean"), format!("{k}_std")]);
    }
    t.column("paper (%)", ["paper"]);
    for c in cells {
        let cell = &c.cell;
        let mut row = vec![
            table::Cell::text(&cell.dataset),
            table::Cell::text(&cell.model),
            table::Cell::text(&cell.augment),
            table::Cell::text(&cell.strategy),
            table::Cell::text(c.runs.len().to_string()),
        ];
        for m in table_measures() {
            let v = values(&c.runs, m);
            let (mean, sd) = if v.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                mean_std(&v)
            };
            row.push(table::Cell::new(
                pm(&v, m.scale, m.digits),
                fixed6([mean * m.scale, sd * m.scale]),
            ));
        }
        let paper: Vec<String> = c.paper.iter().map(|(d, v)| format!("{d}={v}")).collect();
        row.push(table::Cell::new(
            paper_text(&c.paper, false),
            [paper.join(";")],
        ));
        t.row(row);
    }
    t
}

/// The paired differences' table.
fn paired_table(comparisons: &[Comparison]) -> Table {
    let mut t = Table::new();
    t.same("dataset")
        .same("model")
        .column("augmentation", ["augment"])
        .column("treatment − baseline", ["baseline", "treatment"])
        .same("pairs");
    for m in paired_measures() {
        let k = key(m);
        t.column(
            format!("Δ {}", m.head),
            [format!("{k}_diff"), format!("{k}_lo"), format!("{k}_hi")],
        );
    }
    t.column("paper Δ (points)", ["paper_diff"]);
    for c in comparisons {
        let n = c.diffs.first().map_or(0, |d| d.n);
        let mut row = vec![
            table::Cell::text(&c.treatment.dataset),
            table::Cell::text(&c.treatment.model),
            table::Cell::text(&c.treatment.augment),
            table::Cell::new(
                format!("{} − {}", c.treatment.strategy, c.baseline.strategy),
                [c.baseline.strategy.clone(), c.treatment.strategy.clone()],
            ),
            table::Cell::text(n.to_string()),
        ];
        for (m, d) in paired_measures().zip(&c.diffs) {
            row.push(table::Cell::new(
                interval(d, m.digits),
                fixed6([d.mean, d.lo, d.hi]),
            ));
        }
        let p: Vec<String> = c.paper.iter().map(|(d, v)| format!("{d}={v:.2}")).collect();
        row.push(table::Cell::new(paper_text(&c.paper, true), [p.join(";")]));
        t.row(row);
    }
    t
}

/// The markdown of an accuracy table, its per-cell CSV and its paired-difference CSV.
pub fn accuracy_table(
    title: &str,
    description: &str,
    cells: &[CellRuns],
    pairs: &[[String; 2]],
) -> (String, String, String) {
    let per_cell = cells_table(cells);
    let paired = paired_table(&compare(cells, pairs));
    let mut md = format!("## {title}\n\n{description}\n\n");
    md.push_str("Mean ± sample standard deviation over seeds of the final model, on the held-out set, BatchNorm in evaluation mode (docs/reproduction.md defines each measure); train acc. is the last epoch's running accuracy on its training batches (x and T(x), training mode), so train acc. − clean acc. is the generalisation gap.\n\n");
    md.push_str(&per_cell.markdown());
    if !paired.is_empty() {
        md.push_str("\n### Paired differences (treatment − baseline)\n\nPer seed, the treatment run minus the baseline run of the same seed (same initialisation, data order and augmentation draws), then the mean and its 95 % t interval over seeds (accuracies in points). `*`: the interval excludes zero.\n\n");
        md.push_str(&paired.markdown());
    }
    (md, per_cell.csv(), paired.csv())
}

/// One row of the timing table.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Architecture.
    pub model: String,
    /// Baseline step, mean ms.
    pub plain_ms: f64,
    /// Saliency step, mean ms.
    pub sal_ms: f64,
    /// Peak resident memory of the baseline process.
    pub plain_mib: Option<f64>,
    /// Peak resident memory of the saliency process.
    pub sal_mib: Option<f64>,
    /// The backend's device.
    pub device: String,
    /// The paper's `(baseline, saliency)` ms on its GPU.
    pub paper: Option<(f64, f64)>,
}

/// The markdown and CSV of the timing table.
pub fn timing_table(title: &str, description: &str, rows: &[Timing]) -> (String, String) {
    let mut t = Table::new();
    t.same("model")
        .column("baseline step (ms)", ["plain_ms"])
        .column("saliency step (ms)", ["sal_ms"])
        .same("ratio")
        .column("peak memory baseline (MiB)", ["plain_peak_mib"])
        .column("peak memory saliency (MiB)", ["sal_peak_mib"])
        .same("device")
        .column("paper baseline (ms)", ["paper_plain_ms"])
        .column("paper saliency (ms)", ["paper_sal_ms"])
        .column("paper ratio", ["paper_ratio"]);
    let mib = |m: Option<f64>| {
        table::Cell::new(
            m.map_or("n/a".to_string(), |m| format!("{m:.0}")),
            [m.map_or(String::new(), |m| format!("{m:.1}"))],
        )
    };
    for r in rows {
        let ratio = r.sal_ms / r.plain_ms;
        let paper = |md: Option<String>, csv: Option<String>| {
            table::Cell::new(md.unwrap_or("n/a".into()), [csv.unwrap_or_default()])
        };
        let p = r.paper;
        t.row(vec![
            table::Cell::text(&r.model),
            table::Cell::new(format!("{:.1}", r.plain_ms), [format!("{:.3}", r.plain_ms)]),
            table::Cell::new(format!("{:.1}", r.sal_ms), [format!("{:.3}", r.sal_ms)]),
            table::Cell::new(format!("{ratio:.2}"), [format!("{ratio:.4}")]),
            mib(r.plain_mib),
            mib(r.sal_mib),
            table::Cell::text(&r.device),
            paper(
                p.map(|(b, _)| format!("{b:.2}")),
                p.map(|(b, _)| b.to_string()),
            ),
            paper(
                p.map(|(_, s)| format!("{s:.2}")),
                p.map(|(_, s)| s.to_string()),
            ),
            paper(
                p.map(|(b, s)| format!("{:.2}", s / b)),
                p.map(|(b, s)| format!("{:.4}", s / b)),
            ),
        ]);
    }
    let md = format!("## {title}\n\n{description}\n\n{}", t.markdown());
    (md, t.csv())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{accuracy_fixture, cell, test_row, timing_fixture};

    fn row(acc: f64, spearman: f64) -> EpochMetrics {
        let mut r = test_row(1, acc);
        r.held_out.map_spearman = spearman;
        r
    }

    #[test]
    fn tables_pair_seeds_and_show_the_paper() {
        let cells = vec![
            CellRuns {
                cell: cell("resnet18", "rotation", "ref"),
                runs: vec![
                    (0, row(0.80, 0.5)),
                    (1, row(0.82, 0.5)),
                    (2, row(0.84, 0.6)),
                ],
                paper: vec![("svhn".into(), 91.6), ("cifar10".into(), 74.5)],
            },
            CellRuns {
                cell: cell("resnet18", "rotation", "sal"),
                // Seed 2 unfinished: two pairs.
                runs: vec![(0, row(0.81, 0.7)), (1, row(0.84, 0.8))],
                paper: vec![("svhn".into(), 91.9), ("cifar10".into(), 75.4)],
            },
        ];
        let pairs = [["ref".to_string(), "sal".to_string()]];
        let (md, csv, paired) = accuracy_table("T", "D", &cells, &pairs);
        assert!(
            md.contains("| fashion_mnist | resnet18 | rotation | ref | 3 | 82.00 ± 2.00 |"),
            "{md}"
        );
        assert!(md.contains("| svhn 91.6 · cifar10 74.5 |"), "{md}");
        // Accuracy differences +1 and +2 points: mean 1.5, sd 0.707, t(1) = 12.706.
        let half = 12.706 * 0.5f64.sqrt() / 2f64.sqrt();
        let c = &compare(&cells, &pairs)[0];
        assert_eq!(c.diffs[0].n, 2);
        assert!((c.diffs[0].mean - 1.5).abs() < 1e-9);
        assert!((c.diffs[0].hi - (1.5 + half)).abs() < 1e-9);
        assert!(
            md.contains("| fashion_mnist | resnet18 | rotation | sal − ref | 2 | +1.50 ["),
            "{md}"
        );
        // Spearman +0.2 and +0.3; the paper's differences per dataset.
        assert!((c.diffs[3].mean - 0.25).abs() < 1e-9);
        assert!(md.contains("svhn +0.3 · cifar10 +0.9"), "{md}");
        assert!(csv
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("fashion_mnist,resnet18,rotation,ref,3,82.000000,2.000000"));
        assert!(csv.contains("svhn=91.6;cifar10=74.5"));
        assert!(paired
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("fashion_mnist,resnet18,rotation,ref,sal,2,1.500000"));
        // Measures not measured (NaN) are left out, not averaged as NaN.
        assert!(md.contains("| — |"), "{md}");
    }

    #[test]
    fn timing_table_has_the_paper_columns() {
        let (md, csv) = timing_table("T4", "D", &timing_fixture()[..1]);
        assert!(
            md.contains(
                "| resnet50 | 100.0 | 250.0 | 2.50 | 512 | n/a | cpu | 307.57 | 2156.14 | 7.01 |"
            ),
            "{md}"
        );
        assert!(csv.contains("resnet50,100.000,250.000,2.5000,512.0,,cpu,307.57,2156.14,7.0102"));
    }

    /// The files as the writer before the shared [`Table`] wrote them for the fixtures
    /// (the markdown with the heads of the random-order baselines now from
    /// [`Measure::head`]).
    #[test]
    fn the_outputs_are_those_of_the_fixtures() {
        let (cells, pairs) = accuracy_fixture();
        let (md, csv, paired) = accuracy_table("T", "D", &cells, &pairs);
        assert_eq!(md, include_str!("testdata/accuracy.md"));
        assert_eq!(csv, include_str!("testdata/accuracy.csv"));
        assert_eq!(paired, include_str!("testdata/paired.csv"));
        let (md, csv2, paired) = accuracy_table("T", "D", &cells, &[]);
        assert_eq!(csv2, csv);
        assert_eq!(
            paired,
            include_str!("testdata/paired.csv")
                .lines()
                .next()
                .unwrap()
                .to_string()
                + "\n"
        );
        assert!(!md.contains("Paired differences"));
        assert_eq!(
            md,
            include_str!("testdata/accuracy.md")
                .split("\n### Paired")
                .next()
                .unwrap()
        );
        let (md, csv) = timing_table("T4", "D", &timing_fixture());
        assert_eq!(md, include_str!("testdata/timing.md"));
        assert_eq!(csv, include_str!("testdata/timing.csv"));
    }
}

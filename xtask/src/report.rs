//! The tables `cargo xtask reproduce` writes: per cell the mean ± sample standard deviation
//! over seeds of every measure, the paper's figure beside ours, and the paired differences
//! (treatment − baseline, paired by seed) with 95 % confidence intervals.

use std::fmt::Write as _;

use salaug_spec::{Cell, EpochMetrics};

/// Mean and sample standard deviation (0 for one value).
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

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (two-sided 95 %), from the
/// standard table; the normal 1.96 above 30.
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        _ => 1.96,
    }
}

/// A paired difference: mean, and the 95 % t interval (NaN bounds for one pair).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Pairs.
    pub n: usize,
    /// Mean difference.
    pub mean: f64,
    /// Lower bound of the 95 % interval.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Paired {
    /// The mean of `diffs` with `mean ± t(n−1) · sd / √n`.
    pub fn of(diffs: &[f64]) -> Paired {
        let n = diffs.len();
        let (mean, sd) = mean_std(diffs);
        let half = t975(n.saturating_sub(1)) * sd / (n as f64).sqrt();
        Paired {
            n,
            mean,
            lo: mean - half,
            hi: mean + half,
        }
    }

    /// Whether the interval excludes zero.
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }
}

/// One measure of a run as the tables show it.
pub struct Measure {
    /// Column name in the CSV files.
    pub key: &'static str,
    /// Column head in the markdown.
    pub head: &'static str,
    /// Multiplier for display.
    pub scale: f64,
    /// Decimals shown.
    pub digits: usize,
    /// The value of a run's final row.
    pub get: fn(&EpochMetrics) -> f64,
}

/// The measures of an accuracy table, in column order.
pub const MEASURES: [Measure; 10] = [
    Measure {
        key: "acc",
        head: "clean acc. (%)",
        scale: 100.0,
        digits: 2,
        get: |m| m.test_acc,
    },
    Measure {
        key: "aug_acc",
        head: "acc. on T(test) (%)",
        scale: 100.0,
        digits: 2,
        get: |m| m.held_out.aug_acc,
    },
    Measure {
        key: "panel_acc",
        head: "acc. on panel (%)",
        scale: 100.0,
        digits: 2,
        get: |m| m.held_out.panel_acc,
    },
    Measure {
        key: "spearman",
        head: "map Spearman",
        scale: 1.0,
        digits: 3,
        get: |m| m.held_out.map_spearman,
    },
    Measure {
        key: "iou",
        head: "map top-10 % IoU",
        scale: 1.0,
        digits: 3,
        get: |m| m.held_out.map_iou,
    },
    Measure {
        key: "deletion",
        head: "deletion AUC ↓",
        scale: 1.0,
        digits: 3,
        get: |m| m.held_out.deletion_auc,
    },
    Measure {
        key: "deletion_random",
        head: "(random order)",
        scale: 1.0,
        digits: 3,
        get: |m| m.held_out.deletion_auc_random,
    },
    Measure {
        key: "insertion",
        head: "insertion AUC ↑",
        scale: 1.0,
        digits: 3,
        get: |m| m.held_out.insertion_auc,
    },
    Measure {
        key: "insertion_random",
        head: "(random order)",
        scale: 1.0,
        digits: 3,
        get: |m| m.held_out.insertion_auc_random,
    },
    Measure {
        key: "lsal_distance",
        head: "held-out L_sal distance ×10³ (the objective)",
        scale: 1e3,
        digits: 3,
        get: |m| m.consistency,
    },
];

/// The measures compared between paired runs (the random-order baselines are not).
fn paired_measures() -> impl Iterator<Item = &'static Measure> {
    MEASURES.iter().filter(|m| !m.key.ends_with("_random"))
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

/// The markdown of an accuracy table, its per-cell CSV and its paired-difference CSV.
pub fn accuracy_table(
    title: &str,
    description: &str,
    cells: &[CellRuns],
    pairs: &[[String; 2]],
) -> (String, String, String) {
    let mut md = format!("## {title}\n\n{description}\n\n");
    md.push_str("Mean ± sample standard deviation over seeds of the final model, on the held-out set, BatchNorm in evaluation mode (docs/reproduction.md defines each measure).\n\n");
    md.push_str("| dataset | model | augmentation | strategy | seeds |");
    for m in &MEASURES {
        let _ = write!(md, " {} |", m.head);
    }
    md.push_str(" paper (%) |\n|");
    md.push_str(&"---|".repeat(6 + MEASURES.len()));
    md.push('\n');
    let mut csv = String::from("dataset,model,augment,strategy,seeds");
    for m in &MEASURES {
        let _ = write!(csv, ",{0}_mean,{0}_std", m.key);
    }
    csv.push_str(",paper\n");
    for c in cells {
        let cell = &c.cell;
        let _ = write!(
            md,
            "| {} | {} | {} | {} | {} |",
            cell.dataset,
            cell.model,
            cell.augment,
            cell.strategy,
            c.runs.len()
        );
        let _ = write!(
            csv,
            "{},{},{},{},{}",
            cell.dataset,
            cell.model,
            cell.augment,
            cell.strategy,
            c.runs.len()
        );
        for m in &MEASURES {
            let v = values(&c.runs, m);
            let _ = write!(md, " {} |", pm(&v, m.scale, m.digits));
            let (mean, sd) = if v.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                mean_std(&v)
            };
            let _ = write!(csv, ",{:.6},{:.6}", mean * m.scale, sd * m.scale);
        }
        let _ = writeln!(md, " {} |", paper_text(&c.paper, false));
        let paper: Vec<String> = c.paper.iter().map(|(d, v)| format!("{d}={v}")).collect();
        let _ = writeln!(csv, ",{}", paper.join(";"));
    }
    let comparisons = compare(cells, pairs);
    let mut paired = String::from("dataset,model,augment,baseline,treatment,pairs");
    for m in paired_measures() {
        let _ = write!(paired, ",{0}_diff,{0}_lo,{0}_hi", m.key);
    }
    paired.push_str(",paper_diff\n");
    if !comparisons.is_empty() {
        md.push_str("\n### Paired differences (treatment − baseline)\n\nPer seed, the treatment run minus the baseline run of the same seed (same initialisation, data order and augmentation draws), then the mean and its 95 % t interval over seeds (accuracies in points). `*`: the interval excludes zero.\n\n| dataset | model | augmentation | treatment − baseline | pairs |");
        for m in paired_measures() {
            let _ = write!(md, " Δ {} |", m.head);
        }
        md.push_str(" paper Δ (points) |\n|");
        md.push_str(&"---|".repeat(6 + paired_measures().count()));
        md.push('\n');
        for c in &comparisons {
            let n = c.diffs.first().map_or(0, |d| d.n);
            let _ = write!(
                md,
                "| {} | {} | {} | {} − {} | {} |",
                c.treatment.dataset,
                c.treatment.model,
                c.treatment.augment,
                c.treatment.strategy,
                c.baseline.strategy,
                n
            );
            let _ = write!(
                paired,
                "{},{},{},{},{},{}",
                c.treatment.dataset,
                c.treatment.model,
                c.treatment.augment,
                c.baseline.strategy,
                c.treatment.strategy,
                n
            );
            for (m, d) in paired_measures().zip(&c.diffs) {
                let _ = write!(md, " {} |", interval(d, m.digits));
                let _ = write!(paired, ",{:.6},{:.6},{:.6}", d.mean, d.lo, d.hi);
            }
            let _ = writeln!(md, " {} |", paper_text(&c.paper, true));
            let p: Vec<String> = c.paper.iter().map(|(d, v)| format!("{d}={v:.2}")).collect();
            let _ = writeln!(paired, ",{}", p.join(";"));
        }
    }
    (md, csv, paired)
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
    let mut md = format!("## {title}\n\n{description}\n\n");
    md.push_str("| model | baseline step (ms) | saliency step (ms) | ratio | peak memory baseline (MiB) | peak memory saliency (MiB) | device | paper baseline (ms) | paper saliency (ms) | paper ratio |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let mut csv = String::from(
        "model,plain_ms,sal_ms,ratio,plain_peak_mib,sal_peak_mib,device,paper_plain_ms,paper_sal_ms,paper_ratio\n",
    );
    let mib = |m: Option<f64>| m.map_or("n/a".to_string(), |m| format!("{m:.0}"));
    for t in rows {
        let ratio = t.sal_ms / t.plain_ms;
        let (pp, ps, pr) = match t.paper {
            Some((p, s)) => (
                format!("{p:.2}"),
                format!("{s:.2}"),
                format!("{:.2}", s / p),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.2} | {} | {} | {} | {pp} | {ps} | {pr} |",
            t.model,
            t.plain_ms,
            t.sal_ms,
            ratio,
            mib(t.plain_mib),
            mib(t.sal_mib),
            t.device
        );
        let (cp, cs, cr) = match t.paper {
            Some((p, s)) => (p.to_string(), s.to_string(), format!("{:.4}", s / p)),
            None => Default::default(),
        };
        let _ = writeln!(
            csv,
            "{},{:.3},{:.3},{:.4},{},{},{},{cp},{cs},{cr}",
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use salaug_spec::HeldOut;

    /// A metrics row of epoch `epoch` with test accuracy `acc` (also the fake runs of
    /// reproduce's tests).
    pub(crate) fn test_row(epoch: usize, acc: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 1.0,
            train_class: 1.0,
            train_sal: 0.0,
            train_inv: 0.0,
            train_acc: 0.5,
            test_loss: 1.0,
            test_acc: acc,
            consistency: 0.01,
            lr: 0.1,
            seconds: 1.0,
            held_out: HeldOut::default(),
        }
    }

    fn row(acc: f64, spearman: f64) -> EpochMetrics {
        let mut r = test_row(1, acc);
        r.held_out.map_spearman = spearman;
        r
    }

    fn cell(strategy: &str) -> Cell {
        Cell {
            dataset: "fashion_mnist".into(),
            model: "resnet18".into(),
            augment: "rotation".into(),
            strategy: strategy.into(),
        }
    }

    #[test]
    fn t_interval_by_hand() {
        // Differences 1, 2, 3: mean 2, sd 1, half width 4.303 / √3.
        let p = Paired::of(&[1.0, 2.0, 3.0]);
        assert_eq!(p.n, 3);
        assert!((p.mean - 2.0).abs() < 1e-12);
        assert!((p.hi - (2.0 + 4.303 / 3f64.sqrt())).abs() < 1e-12);
        // lo = 2 − 2.484 < 0: three seeds this spread do not exclude zero.
        assert!(!p.excludes_zero());
        // 1.8, 2.0, 2.2: sd 0.2, half width 0.497.
        assert!(Paired::of(&[1.8, 2.0, 2.2]).excludes_zero());
        assert!(Paired::of(&[-1.8, -2.0, -2.2]).excludes_zero());
        assert_eq!(t975(1), 12.706);
        assert_eq!(t975(100), 1.96);
    }

    #[test]
    fn tables_pair_seeds_and_show_the_paper() {
        let cells = vec![
            CellRuns {
                cell: cell("ref"),
                runs: vec![
                    (0, row(0.80, 0.5)),
                    (1, row(0.82, 0.5)),
                    (2, row(0.84, 0.6)),
                ],
                paper: vec![("svhn".into(), 91.6), ("cifar10".into(), 74.5)],
            },
            CellRuns {
                cell: cell("sal"),
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
        let (md, csv) = timing_table(
            "T4",
            "D",
            &[Timing {
                model: "resnet50".into(),
                plain_ms: 100.0,
                sal_ms: 250.0,
                plain_mib: Some(512.0),
                sal_mib: None,
                device: "cpu".into(),
                paper: Some((307.57, 2156.14)),
            }],
        );
        assert!(
            md.contains(
                "| resnet50 | 100.0 | 250.0 | 2.50 | 512 | n/a | cpu | 307.57 | 2156.14 | 7.01 |"
            ),
            "{md}"
        );
        assert!(csv.contains("resnet50,100.000,250.000,2.5000,512.0,,cpu,307.57,2156.14,7.0102"));
    }
}

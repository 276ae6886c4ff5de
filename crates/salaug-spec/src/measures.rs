//! The one table of what a run measures per epoch: [`MEASURES`].
//!
//! Every reader and writer of a measure iterates this table: `metrics.csv` (its columns, their
//! number format and which ones an old file may lack, in [`crate::metrics`]), the run log's
//! epoch line and `salaug eval`'s summary ([`summary`]), `salaug plot`'s panels
//! ([`Measure::panel`]) and the tables of `cargo xtask reproduce` ([`Measure::table`]).
//! A new measure is one field of [`EpochMetrics`] or [`HeldOut`](crate::HeldOut) (where the
//! training code stores it) plus one row here.

use crate::metrics::EpochMetrics;

/// How a value is written in `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An integer (`{:.0}` of the value as `i64`).
    Integer,
    /// Fixed-point with this many decimals.
    Fixed(usize),
    /// Scientific notation with this many decimals.
    Exponent(usize),
}

impl Format {
    /// The value as written in the file.
    pub fn write(self, v: f64) -> String {
        match self {
            Format::Integer => format!("{}", v as i64),
            Format::Fixed(d) => format!("{v:.d$}"),
            Format::Exponent(d) => format!("{v:.d$e}"),
        }
    }
}

/// Which direction of a measure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Higher values are better (accuracy, agreement, insertion area).
    Higher,
    /// Lower values are better (losses, deletion area, the held-out distance).
    Lower,
    /// Neither (a baseline, a setting, a count or a time).
    Neither,
}

/// How a measure appears in the tables of `cargo xtask reproduce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableColumn {
    /// The column's key in the table CSVs (`<key>_mean`, `<key>_diff`, …).
    pub key: &'static str,
    /// Whether the paired differences (treatment − baseline) include it; a random-order
    /// baseline is shown but not compared.
    pub paired: bool,
    /// Its place among the table's columns (ascending).
    pub order: u8,
}

/// One measure of an epoch: where it lives, how it is written, shown and compared.
#[derive(Debug, Clone, Copy)]
pub struct Measure {
    /// The column of `metrics.csv`.
    pub key: &'static str,
    /// Its number format there.
    pub format: Format,
    /// Whether every `metrics.csv` has it (the held-out measures were added later and read as
    /// NaN from files without them).
    pub required: bool,
    /// The heading in tables, the log and `salaug eval`.
    pub head: &'static str,
    /// Display multiplier (100 for percentages).
    pub scale: f64,
    /// Decimals shown.
    pub digits: usize,
    /// Which direction is better.
    pub better: Better,
    /// Whether the run log's epoch line and `salaug eval`'s summary show it.
    pub summary: bool,
    /// The panel of `salaug plot` that draws it (measures of one panel share it), with the
    /// series label; `None`: not drawn.
    pub panel: Option<(&'static str, &'static str)>,
    /// Its column in the reproduction tables; `None`: not in them.
    pub table: Option<TableColumn>,
    /// The value in a row.
    pub get: fn(&EpochMetrics) -> f64,
    /// Stores a value read from a file.
    pub set: fn(&mut EpochMetrics, f64),
}

impl Measure {
    /// The value as shown: scaled, with the measure's decimals.
    pub fn show(&self, v: f64) -> String {
        format!("{:.*}", self.digits, v * self.scale)
    }
}

const fn table(order: u8, key: &'static str) -> Option<TableColumn> {
    Some(TableColumn {
        key,
        paired: true,
        order,
    })
}

const fn baseline(order: u8, key: &'static str) -> Option<TableColumn> {
    Some(TableColumn {
        key,
        paired: false,
        order,
    })
}

/// Every measure, in `metrics.csv` column order.
pub const MEASURES: &[Measure] = &[
    Measure {
        key: "epoch",
        format: Format::Integer,
        required: true,
        head: "epoch",
        scale: 1.0,
        digits: 0,
        better: Better::Neither,
        summary: false,
        panel: None,
        table: None,
        get: |m| m.epoch as f64,
        set: |m, v| m.epoch = v as usize,
    },
    Measure {
        key: "train_loss",
        format: Format::Fixed(6),
        required: true,
        head: "loss",
        scale: 1.0,
        digits: 4,
        better: Better::Lower,
        summary: true,
        panel: None,
        table: None,
        get: |m| m.train_loss,
        set: |m, v| m.train_loss = v,
    },
    Measure {
        key: "train_class",
        format: Format::Fixed(6),
        required: true,
        head: "L_class",
        scale: 1.0,
        digits: 4,
        better: Better::Lower,
        summary: true,
        panel: Some(("training L_class", "L_class")),
        table: None,
        get: |m| m.train_class,
        set: |m, v| m.train_class = v,
    },
    Measure {
        key: "train_sal",
        format: Format::Fixed(6),
        required: true,
        head: "L_sal",
        scale: 1.0,
        digits: 4,
        better: Better::Lower,
        summary: true,
        panel: Some(("training L_sal, L_inv", "L_sal")),
        table: None,
        get: |m| m.train_sal,
        set: |m, v| m.train_sal = v,
    },
    Measure {
        key: "train_inv",
        format: Format::Fixed(6),
        required: true,
        head: "L_inv",
        scale: 1.0,
        digits: 4,
        better: Better::Lower,
        summary: true,
        panel: Some(("training L_sal, L_inv", "L_inv")),
        table: None,
        get: |m| m.train_inv,
        set: |m, v| m.train_inv = v,
    },
    Measure {
        key: "train_acc",
        format: Format::Fixed(6),
        required: true,
        head: "train acc. (%)",
        scale: 100.0,
        digits: 2,
        better: Better::Higher,
        summary: true,
        panel: Some(("accuracy", "train")),
        table: table(10, "train_acc"),
        get: |m| m.train_acc,
        set: |m, v| m.train_acc = v,
    },
    Measure {
        key: "test_loss",
        format: Format::Fixed(6),
        required: true,
        head: "test loss",
        scale: 1.0,
        digits: 4,
        better: Better::Lower,
        summary: false,
        panel: None,
        table: None,
        get: |m| m.test_loss,
        set: |m, v| m.test_loss = v,
    },
    Measure {
        key: "test_acc",
        format: Format::Fixed(6),
        required: true,
        head: "clean acc. (%)",
        scale: 100.0,
        digits: 2,
        better: Better::Higher,
        summary: true,
        panel: Some(("accuracy", "test")),
        table: table(0, "acc"),
        get: |m| m.test_acc,
        set: |m, v| m.test_acc = v,
    },
    Measure {
        key: "consistency",
        format: Format::Fixed(6),
        required: true,
        head: "held-out L_sal distance ×10³ (the objective)",
        scale: 1e3,
        digits: 3,
        better: Better::Lower,
        summary: true,
        panel: Some(("held-out L_sal distance (the objective)", "distance")),
        table: table(9, "lsal_distance"),
        get: |m| m.consistency,
        set: |m, v| m.consistency = v,
    },
    Measure {
        key: "lr",
        format: Format::Exponent(6),
        required: true,
        head: "lr",
        scale: 1.0,
        digits: 6,
        better: Better::Neither,
        summary: false,
        panel: Some(("learning rate (last step)", "lr")),
        table: None,
        get: |m| m.lr,
        set: |m, v| m.lr = v,
    },
    Measure {
        key: "seconds",
        format: Format::Fixed(2),
        required: true,
        head: "seconds",
        scale: 1.0,
        digits: 1,
        better: Better::Neither,
        summary: false,
        panel: None,
        table: None,
        get: |m| m.seconds,
        set: |m, v| m.seconds = v,
    },
    Measure {
        key: "aug_acc",
        format: Format::Fixed(6),
        required: false,
        head: "acc. on T(test) (%)",
        scale: 100.0,
        digits: 2,
        better: Better::Higher,
        summary: true,
        panel: Some(("accuracy", "test, T(x)")),
        table: table(1, "aug_acc"),
        get: |m| m.held_out.aug_acc,
        set: |m, v| m.held_out.aug_acc = v,
    },
    Measure {
        key: "panel_acc",
        format: Format::Fixed(6),
        required: false,
        head: "acc. on panel (%)",
        scale: 100.0,
        digits: 2,
        better: Better::Higher,
        summary: true,
        panel: Some(("accuracy", "test, panel")),
        table: table(2, "panel_acc"),
        get: |m| m.held_out.panel_acc,
        set: |m, v| m.held_out.panel_acc = v,
    },
    Measure {
        key: "map_spearman",
        format: Format::Fixed(6),
        required: false,
        head: "map Spearman",
        scale: 1.0,
        digits: 3,
        better: Better::Higher,
        summary: true,
        panel: Some(("map agreement x vs T^-1(S(T(x)))", "Spearman")),
        table: table(3, "spearman"),
        get: |m| m.held_out.map_spearman,
        set: |m, v| m.held_out.map_spearman = v,
    },
    Measure {
        key: "map_iou",
        format: Format::Fixed(6),
        required: false,
        head: "map top-10 % IoU",
        scale: 1.0,
        digits: 3,
        better: Better::Higher,
        summary: true,
        panel: Some(("map agreement x vs T^-1(S(T(x)))", "top-10% IoU")),
        table: table(4, "iou"),
        get: |m| m.held_out.map_iou,
        set: |m, v| m.held_out.map_iou = v,
    },
    Measure {
        key: "deletion_auc",
        format: Format::Fixed(6),
        required: false,
        head: "deletion AUC ↓",
        scale: 1.0,
        digits: 3,
        better: Better::Lower,
        summary: true,
        panel: Some(("deletion AUC (lower: faithful)", "map order")),
        table: table(5, "deletion"),
        get: |m| m.held_out.deletion_auc,
        set: |m, v| m.held_out.deletion_auc = v,
    },
    Measure {
        key: "insertion_auc",
        format: Format::Fixed(6),
        required: false,
        head: "insertion AUC ↑",
        scale: 1.0,
        digits: 3,
        better: Better::Higher,
        summary: true,
        panel: Some(("insertion AUC (higher: faithful)", "map order")),
        table: table(7, "insertion"),
        get: |m| m.held_out.insertion_auc,
        set: |m, v| m.held_out.insertion_auc = v,
    },
    Measure {
        key: "deletion_auc_random",
        format: Format::Fixed(6),
        required: false,
        head: "deletion AUC, random order",
        scale: 1.0,
        digits: 3,
        better: Better::Neither,
        summary: true,
        panel: Some(("deletion AUC (lower: faithful)", "random order")),
        table: baseline(6, "deletion_random"),
        get: |m| m.held_out.deletion_auc_random,
        set: |m, v| m.held_out.deletion_auc_random = v,
    },
    Measure {
        key: "insertion_auc_random",
        format: Format::Fixed(6),
        required: false,
        head: "insertion AUC, random order",
        scale: 1.0,
        digits: 3,
        better: Better::Neither,
        summary: true,
        panel: Some(("insertion AUC (higher: faithful)", "random order")),
        table: baseline(8, "insertion_random"),
        get: |m| m.held_out.insertion_auc_random,
        set: |m, v| m.held_out.insertion_auc_random = v,
    },
];

/// The measure with `metrics.csv` column `key`.
pub fn by_key(key: &str) -> Option<&'static Measure> {
    MEASURES.iter().find(|m| m.key == key)
}

/// The measures of the reproduction tables, in their column order ([`TableColumn::order`]).
pub fn table_measures() -> impl Iterator<Item = &'static Measure> {
    let mut v: Vec<&'static Measure> = MEASURES.iter().filter(|m| m.table.is_some()).collect();
    v.sort_by_key(|m| m.table.map(|t| t.order));
    v.into_iter()
}

/// The panels of `salaug plot`, in first-appearance order: title and its measures.
pub fn panels() -> Vec<(&'static str, Vec<&'static Measure>)> {
    let mut out: Vec<(&'static str, Vec<&'static Measure>)> = Vec::new();
    for m in MEASURES {
        if let Some((title, _)) = m.panel {
            match out.iter_mut().find(|(t, _)| *t == title) {
                Some((_, ms)) => ms.push(m),
                None => out.push((title, vec![m])),
            }
        }
    }
    out
}

/// One line of `head value` pairs of the measures marked [`Measure::summary`] (the run log's
/// epoch line and `salaug eval`), NaN (not measured) ones left out.
pub fn summary(m: &EpochMetrics) -> String {
    MEASURES
        .iter()
        .filter(|x| x.summary)
        .filter_map(|x| {
            let v = (x.get)(m);
            v.is_finite().then(|| format!("{} {}", x.head, x.show(v)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_every_getter_reads_what_its_setter_wrote() {
        for (i, a) in MEASURES.iter().enumerate() {
            for b in &MEASURES[i + 1..] {
                assert_ne!(a.key, b.key);
                if let (Some(x), Some(y)) = (a.table, b.table) {
                    assert_ne!(x.key, y.key);
                }
            }
        }
        let mut row = EpochMetrics::not_measured(0);
        for (i, m) in MEASURES.iter().enumerate() {
            (m.set)(&mut row, (i + 1) as f64);
        }
        for (i, m) in MEASURES.iter().enumerate() {
            assert_eq!((m.get)(&row), (i + 1) as f64, "{}", m.key);
        }
    }

    #[test]
    fn the_plot_has_eight_panels_and_the_tables_eleven_columns() {
        let panels = panels();
        assert_eq!(panels.len(), 8);
        assert_eq!(panels[2].0, "accuracy");
        assert_eq!(panels[2].1.len(), 4);
        let keys: Vec<&str> = table_measures().map(|m| m.table.unwrap().key).collect();
        assert_eq!(
            keys,
            [
                "acc",
                "aug_acc",
                "panel_acc",
                "spearman",
                "iou",
                "deletion",
                "deletion_random",
                "insertion",
                "insertion_random",
                "lsal_distance",
                "train_acc"
            ]
        );
    }

    #[test]
    fn the_summary_leaves_out_what_was_not_measured() {
        let mut row = EpochMetrics::not_measured(3);
        row.test_acc = 0.8125;
        row.train_loss = 0.5;
        assert_eq!(summary(&row), "loss 0.5000, clean acc. (%) 81.25");
    }
}

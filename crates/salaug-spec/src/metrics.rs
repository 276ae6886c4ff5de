//! `<run>/metrics.csv`: one row per finished epoch. `salaug train` appends rows, and `salaug
//! eval`, `--resume`, `cargo xtask reproduce` and the tests read them, all through
//! [`EpochMetrics`]. Rows are read by the header's column names, so a file stays readable when
//! columns are added. The columns are the rows of [`crate::measures::MEASURES`].

use std::path::{Path, PathBuf};

use crate::measures::MEASURES;

/// The metrics file of a run directory.
pub fn in_run(dir: &Path) -> PathBuf {
    dir.join("metrics.csv")
}

/// The result file of a run directory: one row in `metrics.csv`'s columns, the measures of the
/// model the run kept (`train.keep`) on the test set, its `epoch` the kept epoch.
pub fn result_in_run(dir: &Path) -> PathBuf {
    dir.join("result.csv")
}

/// A run's result: the row of `result.csv`, or for a run written before that file existed, the
/// last row of `metrics.csv`; `None` when the run has finished no epoch.
pub fn result(dir: &Path) -> Result<Option<EpochMetrics>, MetricsError> {
    let path = result_in_run(dir);
    if path.exists() {
        let row = EpochMetrics::read(&path)?.pop();
        if row.is_none() {
            return Err(MetricsError::Row {
                path,
                line: 2,
                text: "(no row)".into(),
            });
        }
        return Ok(row);
    }
    Ok(EpochMetrics::read(&in_run(dir))?.pop())
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss L.
    pub train_loss: f64,
    /// Mean L_class.
    pub train_class: f64,
    /// Mean L_sal (0 when not trained).
    pub train_sal: f64,
    /// Mean L_inv (0 when not trained).
    pub train_inv: f64,
    /// Training accuracy on `x` and `T(x)` (batch statistics).
    pub train_acc: f64,
    /// Test cross-entropy (evaluation mode).
    pub test_loss: f64,
    /// Test accuracy (evaluation mode, running statistics).
    pub test_acc: f64,
    /// The training objective measured on held-out images: the `L_sal`-style distance (MSE of
    /// min-max-normalised gradient maps) between `S(x)` and `T⁻¹(S(T(x)))` over the fixed
    /// panel of transforms (lower is more consistent). `sal` optimises this very quantity.
    pub consistency: f64,
    /// The held-out measures that are not the training objective (NaN in files written
    /// before they existed).
    pub held_out: HeldOut,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch (training, test and consistency).
    pub seconds: f64,
}

/// Measures of the final model on held-out images (evaluation mode) that do not repeat the
/// training objective. Computed by `salaug_train::metrics::held_out`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    /// Accuracy on the held-out images transformed by the run's own augmentation (evaluation
    /// mode; mixed images count for their largest label weight).
    pub aug_acc: f64,
    /// Mean accuracy on the held-out images under the fixed panel of geometric transforms.
    pub panel_acc: f64,
    /// Mean Spearman rank correlation of the |gradient| maps of `x` and `T⁻¹(S(T(x)))` over
    /// valid pixels, over the panel (1: same pixel order).
    pub map_spearman: f64,
    /// Mean IoU of the top 10 % pixels of the same two maps.
    pub map_iou: f64,
    /// Deletion area of the |gradient| map's pixel order (lower is more faithful).
    pub deletion_auc: f64,
    /// Insertion area of the map's order (higher is more faithful).
    pub insertion_auc: f64,
    /// Deletion area of a random pixel order (the baseline of `deletion_auc`).
    pub deletion_auc_random: f64,
    /// Insertion area of a random pixel order.
    pub insertion_auc_random: f64,
}

impl Default for HeldOut {
    /// Not measured: every field NaN.
    fn default() -> Self {
        HeldOut {
            aug_acc: f64::NAN,
            panel_acc: f64::NAN,
            map_spearman: f64::NAN,
            map_iou: f64::NAN,
            deletion_auc: f64::NAN,
            insertion_auc: f64::NAN,
            deletion_auc_random: f64::NAN,
            insertion_auc_random: f64::NAN,
        }
    }
}

/// A `metrics.csv` that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The header lacks a column.
    #[error("{}: no column {column:?} in the header", path.display())]
    Column {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: &'static str,
    },
    /// A row is not a metrics row.
    #[error("{}: line {line} is not a metrics row: {text}", path.display())]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

impl EpochMetrics {
    /// A row of epoch `epoch` in which nothing was measured (every other value NaN).
    pub fn not_measured(epoch: usize) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: f64::NAN,
            train_class: f64::NAN,
            train_sal: f64::NAN,
            train_inv: f64::NAN,
            train_acc: f64::NAN,
            test_loss: f64::NAN,
            test_acc: f64::NAN,
            consistency: f64::NAN,
            held_out: HeldOut::default(),
            lr: f64::NAN,
            seconds: f64::NAN,
        }
    }

    /// The header line.
    pub fn header() -> String {
        MEASURES.iter().map(|m| m.key).collect::<Vec<_>>().join(",")
    }

    /// The row as written to the file.
    pub fn csv_row(&self) -> String {
        MEASURES
            .iter()
            .map(|m| m.format.write((m.get)(self)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The rows of `path` (none if the file does not exist).
    pub fn read(path: &Path) -> Result<Vec<EpochMetrics>, MetricsError> {
        let io = |source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut lines = text.lines().enumerate();
        let header: Vec<&str> = lines
            .next()
            .map(|(_, h)| h.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let mut at = Vec::with_capacity(MEASURES.len());
        for m in MEASURES {
            let col = header.iter().position(|h| *h == m.key);
            if col.is_none() && m.required {
                return Err(MetricsError::Column {
                    path: path.to_path_buf(),
                    column: m.key,
                });
            }
            at.push(col);
        }
        let mut rows = Vec::new();
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let bad = || MetricsError::Row {
                path: path.to_path_buf(),
                line: i + 1,
                text: line.to_string(),
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != header.len() {
                return Err(bad());
            }
            let mut row = EpochMetrics::not_measured(0);
            for (m, col) in MEASURES.iter().zip(&at) {
                if let Some(col) = *col {
                    (m.set)(&mut row, fields[col].parse().map_err(|_| bad())?);
                }
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Writes `path` (whole, [`crate::write_whole`]) as the header and this one row.
    pub fn write_alone(&self, path: &Path) -> Result<(), MetricsError> {
        let text = format!("{}\n{}\n", EpochMetrics::header(), self.csv_row());
        crate::write_whole(path, text.as_bytes()).map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Appends this row to `path`, writing the header first when the file is new. The file is
    /// replaced whole ([`crate::write_whole`]): a process killed meanwhile leaves the rows
    /// before, never half a row.
    pub fn append(&self, path: &Path) -> Result<(), MetricsError> {
        let io = |source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("{}\n", EpochMetrics::header())
            }
            Err(e) => return Err(io(e)),
        };
        text.push_str(&self.csv_row());
        text.push('\n');
        crate::write_whole(path, text.as_bytes()).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 1.5151134,
            train_class: 1.365919,
            train_sal: 0.014919,
            train_inv: 0.0,
            train_acc: 0.500977,
            test_loss: 0.756195,
            test_acc: 0.75,
            consistency: 0.011634,
            lr: 3.011359e-5,
            seconds: 155.129,
            held_out: HeldOut {
                aug_acc: 0.7,
                panel_acc: 0.6,
                map_spearman: 0.5,
                map_iou: 0.4,
                deletion_auc: 0.3,
                insertion_auc: 0.6,
                deletion_auc_random: 0.45,
                insertion_auc_random: 0.5,
            },
        }
    }

    #[test]
    fn rows_are_written_as_before_and_read_back() {
        assert_eq!(
            EpochMetrics::header(),
            "epoch,train_loss,train_class,train_sal,train_inv,train_acc,test_loss,test_acc,consistency,lr,seconds,aug_acc,panel_acc,map_spearman,map_iou,deletion_auc,insertion_auc,deletion_auc_random,insertion_auc_random"
        );
        // The format of the files written before this module existed, then the held-out
        // metrics.
        assert_eq!(
            row(1).csv_row(),
            "1,1.515113,1.365919,0.014919,0.000000,0.500977,0.756195,0.750000,0.011634,3.011359e-5,155.13,0.700000,0.600000,0.500000,0.400000,0.300000,0.600000,0.450000,0.500000"
        );
        let dir = std::env::temp_dir().join(format!("salaug-spec-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        let _ = std::fs::remove_file(&path);
        assert!(EpochMetrics::read(&path).unwrap().is_empty());
        row(1).append(&path).unwrap();
        row(2).append(&path).unwrap();
        let back = EpochMetrics::read(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].epoch, 2);
        assert_eq!(back[0].csv_row(), row(1).csv_row());
        // The run's result: the last row while there is no result.csv, then its row.
        assert_eq!(result(&dir).unwrap().unwrap().epoch, 2);
        row(1).write_alone(&result_in_run(&dir)).unwrap();
        assert_eq!(result(&dir).unwrap().unwrap().csv_row(), row(1).csv_row());
        std::fs::write(result_in_run(&dir), EpochMetrics::header()).unwrap();
        assert!(result(&dir).is_err(), "a result file without its row");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn columns_are_found_by_name_and_bad_rows_are_errors() {
        let dir = std::env::temp_dir().join(format!("salaug-spec-cols-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        // Reordered and with an extra column: still read by name.
        let mut header: Vec<&str> = EpochMetrics::header().leak().split(',').collect();
        header.reverse();
        let values: Vec<String> = (0..header.len()).map(|i| i.to_string()).collect();
        std::fs::write(
            &path,
            format!("new_col,{}\n9,{}\n", header.join(","), values.join(",")),
        )
        .unwrap();
        let rows = EpochMetrics::read(&path).unwrap();
        assert_eq!(
            rows[0].epoch,
            MEASURES.len() - 1,
            "epoch is the last of the reversed columns"
        );
        assert_eq!(rows[0].seconds, 8.0);
        assert_eq!(rows[0].held_out.insertion_auc_random, 0.0);
        // A file written before the held-out metrics existed: those read as NaN.
        let old = "epoch,train_loss,train_class,train_sal,train_inv,train_acc,test_loss,test_acc,consistency,lr,seconds";
        std::fs::write(&path, format!("{old}\n1,1,1,0,0,0.5,1,0.6,0.01,0.1,3.5\n")).unwrap();
        let rows = EpochMetrics::read(&path).unwrap();
        assert_eq!((rows[0].test_acc, rows[0].seconds), (0.6, 3.5));
        assert!(
            rows[0].held_out.aug_acc.is_nan() && rows[0].held_out.insertion_auc_random.is_nan()
        );
        std::fs::write(&path, "epoch,test_acc\n1,0.5\n").unwrap();
        let e = EpochMetrics::read(&path).unwrap_err().to_string();
        assert!(e.contains("no column \"train_loss\""), "{e}");
        std::fs::write(&path, format!("{}\n1,2\n", EpochMetrics::header())).unwrap();
        let e = EpochMetrics::read(&path).unwrap_err().to_string();
        assert!(e.contains("line 2 is not a metrics row"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

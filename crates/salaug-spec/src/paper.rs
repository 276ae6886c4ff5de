//! The paper's figures: `configs/paper-tables.csv`, a byte-for-byte copy of the paper's
//! `tables.csv` (one row per figure of its tables 1–4, keyed
//! `table,dataset,model,augmentation,strategy`). The reproduction tables read their paper
//! column from it; no figure is typed anywhere else.

use std::path::{Path, PathBuf};

use crate::table::{Cell, Mode, TableSpec};

/// The paper's figures file, relative to the workspace root.
pub const FILE: &str = "configs/paper-tables.csv";

/// One figure of the paper.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Table number.
    pub table: u32,
    /// The paper's dataset name.
    pub dataset: String,
    /// The paper's model name.
    pub model: String,
    /// The paper's augmentation name.
    pub augmentation: String,
    /// The paper's strategy name.
    pub strategy: String,
    /// The figure.
    pub value: f64,
    /// Its unit (`top1_percent`, `ms_per_iteration_rtx2080ti`).
    pub unit: String,
}

/// Every figure of the paper.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PaperFigures {
    /// The rows, in file order.
    pub figures: Vec<Figure>,
}

/// A figures file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PaperError {
    /// The file cannot be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a figure.
    #[error("{}: line {line}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        reason: String,
    },
}

const HEADER: &str = "table,dataset,model,augmentation,strategy,value,unit";

impl PaperFigures {
    /// Reads the figures file.
    pub fn load(path: &Path) -> Result<PaperFigures, PaperError> {
        let text = std::fs::read_to_string(path).map_err(|source| PaperError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| PaperError::Line {
            path: path.to_path_buf(),
            line,
            reason,
        })
    }

    /// Parses the text of a figures file; errors carry the 1-based line.
    pub fn parse(text: &str) -> Result<PaperFigures, (usize, String)> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, h)) if h.trim() == HEADER => {}
            _ => return Err((1, format!("the header must be {HEADER}"))),
        }
        let mut figures = Vec::new();
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let [table, dataset, model, augmentation, strategy, value, unit] = f[..] else {
                return Err((i + 1, format!("expected 7 fields: {line}")));
            };
            let bad = |what: &str| (i + 1, format!("{what} is not a number: {line}"));
            figures.push(Figure {
                table: table.parse().map_err(|_| bad("table"))?,
                dataset: dataset.into(),
                model: model.into(),
                augmentation: augmentation.into(),
                strategy: strategy.into(),
                value: value.parse().map_err(|_| bad("value"))?,
                unit: unit.into(),
            });
        }
        Ok(PaperFigures { figures })
    }

    /// The figure of one key, in the paper's names.
    pub fn get(
        &self,
        table: u32,
        dataset: &str,
        model: &str,
        augmentation: &str,
        strategy: &str,
    ) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| {
                f.table == table
                    && f.dataset == dataset
                    && f.model == model
                    && f.augmentation == augmentation
                    && f.strategy == strategy
            })
            .map(|f| f.value)
    }

    /// The paper's figures for one of our cells, as `(paper dataset, figure)`: for every
    /// dataset of the table's grid in the modes that replace the datasets (quick, cpu: the
    /// paper's figures for the same model, augmentation and strategy on each of its
    /// datasets), else for the cell's own dataset. Our names are renamed as the spec's
    /// `paper_table` says. Empty when the paper has no such figure.
    pub fn for_cell(&self, spec: &TableSpec, mode: Mode, cell: &Cell) -> Vec<(String, f64)> {
        let Some(key) = &spec.paper_table else {
            return Vec::new();
        };
        let rename = |map: &std::collections::BTreeMap<String, String>, ours: &str| {
            map.get(ours).cloned().unwrap_or_else(|| ours.to_string())
        };
        let m = spec.try_mode(mode);
        let datasets = match m.and_then(|m| m.datasets.as_ref()) {
            Some(_) => spec.grid.datasets.clone(),
            None => vec![cell.dataset.clone()],
        };
        // A mode that replaces the models (the cpu study's small CNN) is compared with the
        // paper's model of the grid at the same position.
        let model = match m.and_then(|m| m.models.as_ref()) {
            Some(ours) => ours
                .iter()
                .position(|o| *o == cell.model)
                .and_then(|i| spec.grid.models.get(i))
                .cloned()
                .unwrap_or_else(|| cell.model.clone()),
            None => cell.model.clone(),
        };
        let mut out: Vec<(String, f64)> = Vec::new();
        for d in datasets {
            let d = rename(&key.datasets, &d);
            if out.iter().any(|(seen, _)| *seen == d) {
                continue;
            }
            if let Some(v) = self.get(
                key.table,
                &d,
                &model,
                &rename(&key.augments, &cell.augment),
                &rename(&key.strategies, &cell.strategy),
            ) {
                out.push((d, v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_read_and_looked_up() {
        let text = format!("{HEADER}\n1,svhn,resnet18,rotation,sal,91.9,top1_percent\n4,imagenet,resnet50,combined,saliency,2156.14,ms_per_iteration_rtx2080ti\n");
        let p = PaperFigures::parse(&text).unwrap();
        assert_eq!(p.get(1, "svhn", "resnet18", "rotation", "sal"), Some(91.9));
        assert_eq!(p.get(1, "cifar10", "resnet18", "rotation", "sal"), None);
        assert_eq!(
            p.get(4, "imagenet", "resnet50", "combined", "saliency"),
            Some(2156.14)
        );
        assert_eq!(PaperFigures::parse("a,b\n").unwrap_err().0, 1);
        let e = PaperFigures::parse(&format!("{HEADER}\n1,svhn,resnet18,rotation,sal,x,u\n"));
        assert_eq!(e.unwrap_err().0, 2);
    }
}

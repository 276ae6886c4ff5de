//! The reproduction table specs (`configs/tableN.toml`): the grid of cells of a table and the
//! `--set` overrides of each run. `cargo xtask reproduce` runs them and the tests check that
//! every cell gives a valid run config, both through these types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A table spec that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file cannot be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The spec.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a table spec.
    #[error("parsing {}: {source}", path.display())]
    Parse {
        /// The spec.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A setting is out of range.
    #[error("checking {}: {reason}", path.display())]
    Invalid {
        /// The spec.
        path: PathBuf,
        /// Which setting, and why.
        reason: String,
    },
}

/// Which scale to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pipeline smoke test on Fashion-MNIST: minutes on 2 CPU cores; the networks stay far
    /// from trained.
    Quick,
    /// A study on real Fashion-MNIST sized so that the reference learns (table 1: 84.1–86.7 %
    /// per cell) and a table finishes on 2 CPU cores within a few hours.
    Cpu,
    /// The paper's protocol where the paper states it (its datasets, 224×224, its models);
    /// what it leaves unsaid is ours and labelled so.
    Paper,
    /// Ours, not the paper's: the paper's grid at 32×32 with the small-image model variants.
    Small32,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 4] = [Mode::Quick, Mode::Cpu, Mode::Paper, Mode::Small32];

    /// `quick`, `cpu`, `paper` or `small32` (results folders and file names).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Cpu => "cpu",
            Mode::Paper => "paper",
            Mode::Small32 => "small32",
        }
    }
}

/// One mode's settings in a table spec.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModeSpec {
    /// Base run config, relative to the workspace root.
    pub base: PathBuf,
    /// What this mode is, printed above the table.
    pub description: String,
    /// `--set` overrides for every run.
    #[serde(default)]
    pub sets: Vec<String>,
    /// Replaces the grid's datasets (quick mode: `["fashion_mnist"]`).
    #[serde(default)]
    pub datasets: Option<Vec<String>>,
    /// Replaces the grid's models (the cpu study of table 1: the small CNN).
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// table4: untimed warm-up steps.
    #[serde(default)]
    pub warmup: Option<usize>,
    /// table4: timed steps.
    #[serde(default)]
    pub iters: Option<usize>,
    /// table4: time the step without the image transformation (the paper's method: `T(x)`
    /// is computed before the timer starts; maps, their warp, the distance and the
    /// gradients are timed).
    #[serde(default)]
    pub exclude_transform: bool,
}

/// The grid of a table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Dataset names (`data.dataset`).
    pub datasets: Vec<String>,
    /// Architectures (`model.arch`).
    pub models: Vec<String>,
    /// Augmentation kinds (`augment.kind`).
    pub augments: Vec<String>,
    /// `ref`, `inv`, `sal`, `inv+sal`, or `none` (no augmentation, class loss only).
    pub strategies: Vec<String>,
}

/// A table spec, `configs/tableN.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// `table1` … `table4`.
    pub table: String,
    /// Printed above the table.
    pub title: String,
    /// `accuracy` (training runs) or `timing` (table 4).
    #[serde(default = "accuracy")]
    pub kind: String,
    /// Seeds per cell by default.
    pub seeds: usize,
    /// The pipeline smoke test.
    #[serde(default)]
    pub quick: Option<ModeSpec>,
    /// The CPU study (tables 1 and 2).
    #[serde(default)]
    pub cpu: Option<ModeSpec>,
    /// The paper's protocol.
    #[serde(default)]
    pub paper: Option<ModeSpec>,
    /// The 32×32 small-image alternative (tables 1 and 2).
    #[serde(default)]
    pub small32: Option<ModeSpec>,
    /// The cells.
    pub grid: Grid,
    /// Extra `--set`s per augmentation name (its parameters, e.g. the rotation range).
    #[serde(default)]
    pub augment_sets: BTreeMap<String, Vec<String>>,
    /// `--set`s per dataset, in the modes that run the grid's datasets (paper, small32).
    #[serde(default)]
    pub dataset_sets: BTreeMap<String, Vec<String>>,
    /// `--set`s per strategy (e.g. table 3's loss weights).
    #[serde(default)]
    pub strategy_sets: BTreeMap<String, Vec<String>>,
    /// Named arms of a study: a strategy with its own `--set`s (e.g. `sal` at β = 1 with
    /// |gradient| maps). A name here can stand in `grid.strategies` and `compare`.
    #[serde(default)]
    pub variants: BTreeMap<String, Variant>,
    /// Paired comparisons reported with their differences: `[baseline, treatment]`
    /// strategies, paired by seed within a dataset/model/augmentation (default `ref`/`sal`).
    #[serde(default = "ref_sal")]
    pub compare: Vec<[String; 2]>,
    /// Where this table's figures are in the paper's `tables.csv` (none for our own studies).
    #[serde(default)]
    pub paper_table: Option<PaperKey>,
}

/// One arm of a study (`[variants.<name>]`): the strategy it trains, its `--set`s and where
/// the study's plot puts it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// `ref`, `inv`, `sal`, `inv+sal` or `none`.
    pub strategy: String,
    /// `--set`s after the cell's own.
    #[serde(default)]
    pub sets: Vec<String>,
    /// The plot's x value (e.g. β).
    #[serde(default)]
    pub x: Option<f64>,
    /// The plot's series (e.g. the map form); arms with the same series are joined by a line.
    #[serde(default)]
    pub series: Option<String>,
}

const STRATEGIES: [&str; 5] = ["ref", "inv", "sal", "inv+sal", "none"];

fn ref_sal() -> Vec<[String; 2]> {
    vec![["ref".into(), "sal".into()]]
}

/// How the cells of a spec are named in the paper's `tables.csv` (`table, dataset, model,
/// augmentation, strategy`): the table number and the renamings of our names (a name not
/// listed is the same in both).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PaperKey {
    /// The paper's table number.
    pub table: u32,
    /// Our dataset name → the paper's.
    #[serde(default)]
    pub datasets: BTreeMap<String, String>,
    /// Our augmentation name → the paper's.
    #[serde(default)]
    pub augments: BTreeMap<String, String>,
    /// Our strategy → the paper's.
    #[serde(default)]
    pub strategies: BTreeMap<String, String>,
}

fn accuracy() -> String {
    "accuracy".into()
}

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cell {
    /// `data.dataset`.
    pub dataset: String,
    /// `model.arch`.
    pub model: String,
    /// `augment.kind` (`none` for the strategy `none`).
    pub augment: String,
    /// `train.strategy`, or `none` (no augmentation, class loss only).
    pub strategy: String,
}

impl Cell {
    /// `dataset/model/augment/strategy`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.dataset, self.model, self.augment, self.strategy
        )
    }

    /// A folder name.
    pub fn dir_name(&self) -> String {
        self.id().replace('/', "-").replace('+', "_")
    }
}

impl TableSpec {
    /// Reads, parses and checks a table spec.
    pub fn load(path: &Path) -> Result<TableSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let spec: TableSpec = toml::from_str(&text).map_err(|source| SpecError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        spec.validate().map_err(|reason| SpecError::Invalid {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(spec)
    }

    /// Checks the settings serde cannot: non-empty grids, known strategies and kinds.
    pub fn validate(&self) -> Result<(), String> {
        if self.seeds == 0 {
            return Err("seeds = 0: must be at least 1".to_string());
        }
        if !matches!(self.kind.as_str(), "accuracy" | "timing") {
            return Err(format!(
                "kind = {:?}: must be \"accuracy\" or \"timing\"",
                self.kind
            ));
        }
        if self.quick.is_none() && self.cpu.is_none() && self.paper.is_none() {
            return Err("no mode: give at least one of [quick], [cpu], [paper]".to_string());
        }
        for (name, v) in &self.variants {
            if !STRATEGIES.contains(&v.strategy.as_str()) {
                return Err(format!(
                    "variants.{name}.strategy: unknown strategy {:?} ({})",
                    v.strategy,
                    STRATEGIES.join(", ")
                ));
            }
            if STRATEGIES.contains(&name.as_str()) {
                return Err(format!("variants.{name}: a strategy's own name"));
            }
        }
        for s in &self.grid.strategies {
            if !STRATEGIES.contains(&s.as_str()) && !self.variants.contains_key(s) {
                return Err(format!(
                    "grid.strategies: unknown strategy {s:?} ({}, or a name in [variants])",
                    STRATEGIES.join(", ")
                ));
            }
        }
        for pair in &self.compare {
            for s in pair {
                if !self.grid.strategies.contains(s) {
                    return Err(format!(
                        "compare: {s:?} is not one of grid.strategies {:?}",
                        self.grid.strategies
                    ));
                }
            }
        }
        if self.grid.models.is_empty() || self.grid.strategies.is_empty() {
            return Err("grid.models and grid.strategies must not be empty".to_string());
        }
        if self.kind == "accuracy"
            && (self.grid.datasets.is_empty() || self.grid.augments.is_empty())
        {
            return Err("grid.datasets and grid.augments must not be empty".to_string());
        }
        Ok(())
    }

    /// The settings of one mode, if the table has it.
    pub fn try_mode(&self, mode: Mode) -> Option<&ModeSpec> {
        match mode {
            Mode::Quick => self.quick.as_ref(),
            Mode::Cpu => self.cpu.as_ref(),
            Mode::Paper => self.paper.as_ref(),
            Mode::Small32 => self.small32.as_ref(),
        }
    }

    /// The settings of one mode.
    ///
    /// # Panics
    /// If the table has no such mode (check with [`TableSpec::try_mode`]).
    pub fn mode(&self, mode: Mode) -> &ModeSpec {
        self.try_mode(mode)
            .unwrap_or_else(|| panic!("{} has no --{} mode", self.table, mode.name()))
    }

    /// The modes this table has.
    pub fn modes(&self) -> Vec<Mode> {
        Mode::ALL
            .into_iter()
            .filter(|m| self.try_mode(*m).is_some())
            .collect()
    }

    /// The strategy a grid entry trains: a variant's, or the entry itself.
    pub fn strategy_of<'a>(&'a self, entry: &'a str) -> &'a str {
        self.variants
            .get(entry)
            .map_or(entry, |v| v.strategy.as_str())
    }

    /// The cells run in `mode` (datasets replaced in quick mode, duplicates removed), in
    /// grid order.
    pub fn cells(&self, mode: Mode) -> Vec<Cell> {
        let datasets = self
            .mode(mode)
            .datasets
            .clone()
            .unwrap_or_else(|| self.grid.datasets.clone());
        let models = self
            .mode(mode)
            .models
            .clone()
            .unwrap_or_else(|| self.grid.models.clone());
        let augments = if self.grid.augments.is_empty() {
            vec!["none".to_string()]
        } else {
            self.grid.augments.clone()
        };
        let mut out: Vec<Cell> = Vec::new();
        for d in &datasets {
            for m in &models {
                for a in &augments {
                    for s in &self.grid.strategies {
                        let augment = if self.strategy_of(s) == "none" {
                            "none".to_string()
                        } else {
                            a.clone()
                        };
                        let c = Cell {
                            dataset: d.clone(),
                            model: m.clone(),
                            augment,
                            strategy: s.clone(),
                        };
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                }
            }
        }
        out
    }

    /// The `--set` overrides of one run.
    pub fn sets(
        &self,
        mode: Mode,
        cell: &Cell,
        seed: usize,
        data_dir: Option<&Path>,
    ) -> Vec<String> {
        let m = self.mode(mode);
        let mut sets = m.sets.clone();
        if m.datasets.is_none() {
            sets.extend(
                self.dataset_sets
                    .get(&cell.dataset)
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        sets.push(format!("data.dataset=\"{}\"", cell.dataset));
        sets.push(format!("model.arch=\"{}\"", cell.model));
        let strategy = match self.strategy_of(&cell.strategy) {
            "none" => "ref",
            s => s,
        };
        sets.push(format!("train.strategy=\"{strategy}\""));
        sets.push(format!("augment={{kind=\"{}\"}}", cell.augment));
        sets.extend(
            self.augment_sets
                .get(&cell.augment)
                .cloned()
                .unwrap_or_default(),
        );
        sets.extend(
            self.strategy_sets
                .get(&cell.strategy)
                .cloned()
                .unwrap_or_default(),
        );
        if let Some(v) = self.variants.get(&cell.strategy) {
            sets.extend(v.sets.iter().cloned());
        }
        sets.push(format!("seed={seed}"));
        if let Some(d) = data_dir {
            sets.push(format!("data.dir=\"{}\"", d.display()));
        }
        sets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_overrides() {
        let spec: TableSpec = toml::from_str(
            r#"
table = "t"
title = "T"
seeds = 2
[quick]
base = "b.toml"
description = "q"
sets = ["train.epochs=1"]
datasets = ["fashion_mnist"]
[paper]
base = "p.toml"
description = "p"
[grid]
datasets = ["svhn", "cifar10"]
models = ["resnet18"]
augments = ["rotation"]
strategies = ["none", "sal"]
[augment_sets]
rotation = ["augment.max_degrees=10.0"]
[strategy_sets]
sal = ["loss.beta=2.0"]
[paper_table]
table = 1
"#,
        )
        .unwrap();
        let cells = spec.cells(Mode::Quick);
        assert_eq!(cells.len(), 2);
        assert_eq!(
            cells[0].augment, "none",
            "strategy none trains without augmentation"
        );
        let sets = spec.sets(Mode::Quick, &cells[1], 1, Some(Path::new("/d")));
        assert_eq!(
            sets,
            [
                "train.epochs=1",
                "data.dataset=\"fashion_mnist\"",
                "model.arch=\"resnet18\"",
                "train.strategy=\"sal\"",
                "augment={kind=\"rotation\"}",
                "augment.max_degrees=10.0",
                "loss.beta=2.0",
                "seed=1",
                "data.dir=\"/d\"",
            ]
        );
        assert_eq!(spec.cells(Mode::Paper).len(), 4);
        let bad = toml::from_str::<TableSpec>("table = 1").is_err();
        assert!(bad);
        assert_eq!(spec.modes(), [Mode::Quick, Mode::Paper]);
        assert!(spec.try_mode(Mode::Cpu).is_none());
        assert_eq!(spec.compare, [["ref".to_string(), "sal".to_string()]]);
    }

    #[test]
    fn variants_are_named_arms_of_a_strategy() {
        let text = |strategies: &str, variant: &str| {
            format!(
                r#"
table = "s"
title = "S"
seeds = 1
compare = [["ref", "low"]]
[cpu]
base = "b.toml"
description = "c"
[grid]
datasets = ["fashion_mnist"]
models = ["small_cnn"]
augments = ["rotation"]
strategies = {strategies}
[variants.low]
{variant}
"#
            )
        };
        let spec: TableSpec = toml::from_str(&text(
            r#"["ref", "low", "bare"]"#,
            "strategy = \"sal\"\nsets = [\"loss.beta=0.5\"]\nx = 0.5\n[variants.bare]\nstrategy = \"none\"",
        ))
        .unwrap();
        spec.validate().unwrap();
        assert_eq!(
            spec.modes(),
            [Mode::Cpu],
            "a study needs neither quick nor paper"
        );
        let cells = spec.cells(Mode::Cpu);
        assert_eq!(
            cells[2].augment, "none",
            "a variant of none has no augmentation"
        );
        let sets = spec.sets(Mode::Cpu, &cells[1], 0, None);
        assert!(
            sets.contains(&"train.strategy=\"sal\"".to_string()),
            "{sets:?}"
        );
        assert_eq!(
            sets[sets.len() - 2],
            "loss.beta=0.5",
            "the arm's sets come last"
        );
        let sets = spec.sets(Mode::Cpu, &cells[2], 0, None);
        assert!(
            sets.contains(&"train.strategy=\"ref\"".to_string()),
            "{sets:?}"
        );
        // An arm of an unknown strategy, a name that is not an arm, an arm named as a strategy.
        for (strategies, variant, why) in [
            (
                r#"["ref", "low"]"#,
                "strategy = \"sall\"",
                "variants.low.strategy",
            ),
            (
                r#"["ref", "lo"]"#,
                "strategy = \"sal\"",
                "unknown strategy \"lo\"",
            ),
        ] {
            let spec: TableSpec = toml::from_str(&text(strategies, variant)).unwrap();
            let err = spec.validate().unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let named_ref =
            text(r#"["ref"]"#, "strategy = \"sal\"").replace("variants.low", "variants.ref");
        let spec: TableSpec =
            toml::from_str(&named_ref.replace(r#"compare = [["ref", "low"]]"#, "")).unwrap();
        assert!(spec
            .validate()
            .unwrap_err()
            .contains("a strategy's own name"));
        let no_mode = text(r#"["ref"]"#, "strategy = \"sal\"")
            .replace("[cpu]\nbase = \"b.toml\"\ndescription = \"c\"\n", "");
        let spec: TableSpec = toml::from_str(&no_mode).unwrap();
        assert!(spec.validate().unwrap_err().contains("no mode"));
    }
}

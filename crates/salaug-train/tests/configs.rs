//! Every config in `configs/` parses and validates, and every cell of the reproduction table
//! specs gives a valid run config: the cells and their `--set` overrides come from
//! `salaug_spec::TableSpec`, exactly as `cargo xtask reproduce` passes them.

use std::path::Path;

use salaug_spec::{Mode, TableSpec};
use salaug_train::RunConfig;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn run_configs_parse() {
    for name in [
        "ci-fmnist",
        "fmnist-sal",
        "quick-base",
        "paper-base",
        "bench-peer",
    ] {
        let path = root().join(format!("configs/{name}.toml"));
        RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

#[test]
fn every_table_cell_is_a_valid_run_config() {
    for t in ["table1", "table2", "table3", "table4"] {
        let spec = TableSpec::load(&root().join(format!("configs/{t}.toml"))).unwrap();
        for mode in [Mode::Quick, Mode::Paper] {
            let base = std::fs::read_to_string(root().join(&spec.mode(mode).base)).unwrap();
            for cell in spec.cells(mode) {
                let sets = spec.sets(mode, &cell, 1, Some(Path::new("/data")));
                RunConfig::parse(&base, &sets)
                    .unwrap_or_else(|e| panic!("{t} {mode:?} {sets:?}: {e:#}"));
            }
        }
    }
}

//! Every config in `configs/` parses and validates, and every cell of the reproduction table
//! specs gives a valid run config (the overrides `cargo xtask reproduce` passes).

use std::path::Path;

use salaug_train::RunConfig;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn run_configs_parse() {
    for name in ["ci-fmnist", "fmnist-sal", "quick-base", "paper-base"] {
        let path = root().join(format!("configs/{name}.toml"));
        RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

#[test]
fn every_table_cell_is_a_valid_run_config() {
    for t in ["table1", "table2", "table3", "table4"] {
        let spec: toml::Value = toml::from_str(
            &std::fs::read_to_string(root().join(format!("configs/{t}.toml"))).unwrap(),
        )
        .unwrap();
        let strings = |v: Option<&toml::Value>| -> Vec<String> {
            v.and_then(|v| v.as_array())
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        let grid = &spec["grid"];
        for mode in ["quick", "paper"] {
            let m = &spec[mode];
            let base = std::fs::read_to_string(root().join(m["base"].as_str().unwrap())).unwrap();
            let datasets = m
                .get("datasets")
                .map_or_else(|| strings(grid.get("datasets")), |d| strings(Some(d)));
            for dataset in &datasets {
                for model in strings(grid.get("models")) {
                    for augment in strings(grid.get("augments")) {
                        for strategy in strings(grid.get("strategies")) {
                            let mut sets = strings(m.get("sets"));
                            if mode == "paper" {
                                sets.extend(strings(
                                    spec.get("dataset_sets").and_then(|d| d.get(dataset)),
                                ));
                            }
                            sets.push(format!("data.dataset=\"{dataset}\""));
                            sets.push(format!("model.arch=\"{model}\""));
                            let s = if strategy == "none" { "ref" } else { &strategy };
                            sets.push(format!("train.strategy=\"{s}\""));
                            let a = if strategy == "none" { "none" } else { &augment };
                            sets.push(format!("augment={{kind=\"{a}\"}}"));
                            sets.extend(strings(spec.get("augment_sets").and_then(|d| d.get(a))));
                            RunConfig::parse(&base, &sets)
                                .unwrap_or_else(|e| panic!("{t} {mode} {sets:?}: {e:#}"));
                        }
                    }
                }
            }
        }
    }
}

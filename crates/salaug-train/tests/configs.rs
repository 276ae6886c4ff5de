//! Every config in `configs/` parses and validates, and every cell of the reproduction table
//! specs gives a valid run config: the cells and their `--set` overrides come from
//! `salaug_spec::TableSpec`, exactly as `cargo xtask reproduce` passes them.

use std::path::Path;

use salaug_augment::{Augmentation, HorizontalFlip, Rescale, Rotation, VerticalFlip};
use salaug_models::{Arch, Stem};
use salaug_spec::{Cell, Mode, PaperFigures, TableSpec};
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
        "cpu-base",
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
        for mode in spec.modes() {
            let base = std::fs::read_to_string(root().join(&spec.mode(mode).base)).unwrap();
            for cell in spec.cells(mode) {
                let sets = spec.sets(mode, &cell, 1, Some(Path::new("/data")));
                RunConfig::parse(&base, &sets)
                    .unwrap_or_else(|e| panic!("{t} {mode:?} {sets:?}: {e:#}"));
            }
        }
    }
}

fn spec(t: &str) -> TableSpec {
    TableSpec::load(&root().join(format!("configs/{t}.toml"))).unwrap()
}

/// The run config of one cell, as `cargo xtask reproduce` resolves it.
fn resolve(spec: &TableSpec, mode: Mode, cell: &Cell) -> RunConfig {
    let base = std::fs::read_to_string(root().join(&spec.mode(mode).base)).unwrap();
    RunConfig::parse(&base, &spec.sets(mode, cell, 0, None)).unwrap()
}

/// Table 1's augmentation settings as the paper states them (50 % vertical mirror and CLAHE,
/// rotation ≤ 10°, magnification ≤ 10 %; horizontal mirror at 50 % is our reading of
/// "random"); the mixing augmentations keep their own papers' defaults.
fn check_table1_augment(cell: &Cell, a: &Augmentation) {
    let clahe_p = |a: &Augmentation| match a {
        Augmentation::Clahe(c) => c.p,
        other => panic!("not CLAHE: {other:?}"),
    };
    match cell.augment.as_str() {
        "horizontal_flip" => {
            assert_eq!(*a, Augmentation::HorizontalFlip(HorizontalFlip { p: 0.5 }))
        }
        "vertical_flip" => assert_eq!(*a, Augmentation::VerticalFlip(VerticalFlip { p: 0.5 })),
        "clahe" => assert_eq!(clahe_p(a), 0.5),
        "rotation" => assert_eq!(
            *a,
            Augmentation::Rotation(Rotation {
                max_degrees: 10.0,
                p: 1.0
            })
        ),
        "rescale" => assert_eq!(
            *a,
            Augmentation::Rescale(Rescale {
                min_zoom: 0.0,
                max_zoom: 0.1,
                p: 1.0
            })
        ),
        "combined" => {
            let steps = a.steps().unwrap();
            assert_eq!(steps.len(), 5, "Combined = all five single transforms");
            assert!(steps.contains(&Augmentation::HorizontalFlip(HorizontalFlip { p: 0.5 })));
            assert!(steps.contains(&Augmentation::VerticalFlip(VerticalFlip { p: 0.5 })));
            assert!(steps.contains(&Augmentation::Rotation(Rotation {
                max_degrees: 10.0,
                p: 1.0
            })));
            assert!(steps.contains(&Augmentation::Rescale(Rescale {
                min_zoom: 0.0,
                max_zoom: 0.1,
                p: 1.0
            })));
            assert_eq!(clahe_p(&steps[3]), 0.5);
        }
        "mix_up" | "cut_out" | "aug_mix" => {
            let default: Augmentation =
                toml::from_str(&format!("kind = \"{}\"", cell.augment)).unwrap();
            assert_eq!(*a, default);
        }
        other => panic!("table 1 has no augmentation {other}"),
    }
}

/// `--paper` is the paper where the paper speaks (../shared/paper/README.md lists what it
/// states): each point is checked on the run configs the specs resolve to.
#[test]
fn paper_mode_follows_the_paper() {
    // Tables 1-2: rescaled to 224×224, the models the paper names (ImageNet variants).
    let t1 = spec("table1");
    assert_eq!(t1.seeds, 5);
    assert_eq!(t1.grid.datasets, ["svhn", "cifar10"]);
    for cell in t1.cells(Mode::Paper) {
        let c = resolve(&t1, Mode::Paper, &cell);
        assert_eq!(c.data.prepare.resize_to, Some(224), "{}", cell.id());
        assert_eq!(
            (c.model.arch, c.model.stem),
            (Arch::ResNet18, Stem::ImageNet)
        );
        check_table1_augment(&cell, &c.augment);
    }
    // The augmentation settings are the paper's in every mode (the cpu study included).
    for mode in [Mode::Quick, Mode::Cpu, Mode::Small32] {
        for cell in t1.cells(mode) {
            check_table1_augment(&cell, &resolve(&t1, mode, &cell).augment);
        }
    }
    // The 32×32 alternative is labelled as ours.
    let small = t1.mode(Mode::Small32);
    assert!(small.description.contains("not the paper's protocol"));
    for cell in t1.cells(Mode::Small32) {
        let c = resolve(&t1, Mode::Small32, &cell);
        assert_eq!(
            (c.data.prepare.resize_to, c.model.stem),
            (None, Stem::Small)
        );
    }

    let t2 = spec("table2");
    assert_eq!(t2.seeds, 3);
    assert_eq!(t2.grid.datasets, ["svhn", "cifar10", "cifar100"]);
    assert_eq!(t2.grid.models, ["densenet121", "resnet18"]);
    for cell in t2.cells(Mode::Paper) {
        let c = resolve(&t2, Mode::Paper, &cell);
        assert_eq!(
            (c.data.prepare.resize_to, c.model.stem),
            (Some(224), Stem::ImageNet)
        );
        assert_eq!(c.augment, Augmentation::Simclr { strength: 0.5 });
    }

    // Table 3: table 1's affine transforms; class+inv at 0.5/0.5 and class+inv+sal uniform,
    // as ratios to the paper's L_class (the sum of two cross-entropies; ours is their mean,
    // so the paper's weight on L_class is α/2 here).
    let t3 = spec("table3");
    let geometric: Vec<Augmentation> = Augmentation::Combined
        .steps()
        .unwrap()
        .into_iter()
        .filter(|a| !matches!(a, Augmentation::Clahe(_)))
        .collect();
    for cell in t3.cells(Mode::Paper) {
        let c = resolve(&t3, Mode::Paper, &cell);
        assert_eq!(c.data.folder_size, 224);
        assert_eq!(c.model.stem, Stem::ImageNet);
        let w = &c.loss.weights;
        let paper_class = w.alpha / 2.0;
        match cell.strategy.as_str() {
            "none" => assert_eq!(c.augment, Augmentation::None),
            "inv" => {
                assert_eq!(c.augment.steps().unwrap(), geometric);
                assert_eq!((paper_class, w.gamma), (0.5, 0.5));
                assert!(c.train.strategy.invariance() && !c.train.strategy.saliency());
            }
            "inv+sal" => {
                assert_eq!(c.augment.steps().unwrap(), geometric);
                assert_eq!((paper_class, w.beta, w.gamma), (1.0, 1.0, 1.0));
                assert!(c.train.strategy.invariance() && c.train.strategy.saliency());
            }
            other => panic!("table 3 has no strategy {other}"),
        }
    }

    // Table 4: the second 100 batches, image transformation excluded, 224×224 inputs.
    let t4 = spec("table4");
    let m = t4.mode(Mode::Paper);
    assert_eq!(
        (m.warmup, m.iters, m.exclude_transform),
        (Some(100), Some(100), true)
    );
    for cell in t4.cells(Mode::Paper) {
        let c = resolve(&t4, Mode::Paper, &cell);
        assert_eq!((c.data.folder_size, c.model.stem), (224, Stem::ImageNet));
    }

    // Settings the paper does not state are labelled as ours.
    let base = std::fs::read_to_string(root().join("configs/paper-base.toml")).unwrap();
    assert!(base.contains("Everything in this file is OURS"));
    for t in [&t1, &t2, &t3] {
        assert!(
            t.mode(Mode::Paper).description.contains("Ours"),
            "{}",
            t.table
        );
    }
}

/// Every figure of the paper's tables is the paper column of some cell in paper mode, read
/// from the copy of the paper's tables.csv (identical to ../shared/paper/tables.csv when that
/// is at hand).
#[test]
fn every_paper_figure_reaches_its_table() {
    let path = root().join(salaug_spec::paper::FILE);
    let figures = PaperFigures::load(&path).unwrap();
    assert_eq!(figures.figures.len(), 73);
    let shared = root().join("../shared/paper/tables.csv");
    if shared.exists() {
        assert_eq!(
            std::fs::read(&shared).unwrap(),
            std::fs::read(&path).unwrap()
        );
    }
    let mut used = 0;
    for t in ["table1", "table2", "table3", "table4"] {
        let spec = spec(t);
        for cell in spec.cells(Mode::Paper) {
            let found = figures.for_cell(&spec, Mode::Paper, &cell);
            assert!(found.len() <= 1, "{t} {}", cell.id());
            if found.is_empty() {
                // Only our extra row of table 4 (ResNet-18 is not in the paper's table 4).
                assert_eq!(
                    (t, cell.model.as_str()),
                    ("table4", "resnet18"),
                    "{}",
                    cell.id()
                );
            }
            used += found.len();
        }
    }
    assert_eq!(used, 73, "every figure is used once");
    // The cpu study compares with the paper's ResNet-18 on both of its datasets.
    let t1 = spec("table1");
    let cell = t1
        .cells(Mode::Cpu)
        .into_iter()
        .find(|c| c.augment == "rotation" && c.strategy == "sal")
        .unwrap();
    assert_eq!(cell.model, "small_cnn");
    assert_eq!(
        figures.for_cell(&t1, Mode::Cpu, &cell),
        [("svhn".to_string(), 91.9), ("cifar10".to_string(), 75.4)]
    );
}

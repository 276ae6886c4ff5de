//! Test fixtures shared by the tests of several modules: metrics rows, the cells of an
//! accuracy table and the rows of a timing table (`src/testdata/` holds the tables written
//! from them).

use salaug_spec::{Cell, EpochMetrics, HeldOut};

use crate::report::{CellRuns, Timing};

/// A metrics row of epoch `epoch` with test accuracy `acc`, the held-out measures not
/// measured (NaN).
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

/// A final row with every held-out measure set, derived from `x` so seeds differ.
pub(crate) fn full_row(acc: f64, x: f64) -> EpochMetrics {
    let mut r = test_row(5, acc);
    r.consistency = 0.004 + x / 1000.0;
    r.held_out = HeldOut {
        aug_acc: acc - 0.05 + x / 100.0,
        panel_acc: acc - 0.1 - x / 50.0,
        map_spearman: 0.4 + x,
        map_iou: 0.3 + x / 2.0,
        deletion_auc: 0.2 - x / 3.0,
        insertion_auc: 0.6 + x / 4.0,
        deletion_auc_random: 0.35 + x / 10.0,
        insertion_auc_random: 0.45 - x / 10.0,
    };
    r
}

/// A cell of Fashion-MNIST.
pub(crate) fn cell(model: &str, augment: &str, strategy: &str) -> Cell {
    Cell {
        dataset: "fashion_mnist".into(),
        model: model.into(),
        augment: augment.into(),
        strategy: strategy.into(),
    }
}

/// An accuracy table's cells: three strategies of one model (seeds unfinished, measures
/// missing, the paper's figures present and absent) and a cell of another model, with the
/// strategy pairs compared.
pub(crate) fn accuracy_fixture() -> (Vec<CellRuns>, Vec<[String; 2]>) {
    let cells = vec![
        CellRuns {
            cell: cell("resnet18", "none", "none"),
            runs: vec![(0, full_row(0.78, 0.01)), (1, full_row(0.79, 0.02))],
            paper: vec![("svhn".into(), 90.25)],
        },
        CellRuns {
            cell: cell("resnet18", "rotation", "ref"),
            runs: vec![
                (0, full_row(0.80, 0.03)),
                (1, full_row(0.82, 0.05)),
                (2, full_row(0.84, 0.04)),
            ],
            paper: vec![("svhn".into(), 91.6), ("cifar10".into(), 74.5)],
        },
        CellRuns {
            cell: cell("resnet18", "rotation", "sal"),
            runs: vec![
                (0, full_row(0.81, 0.07)),
                (1, full_row(0.84, 0.09)),
                (2, test_row(5, 0.83)),
            ],
            paper: vec![("svhn".into(), 91.9), ("cifar10".into(), 75.4)],
        },
        CellRuns {
            cell: cell("small_cnn", "rotation", "ref"),
            runs: vec![(0, full_row(0.7, 0.1))],
            paper: vec![],
        },
        CellRuns {
            cell: cell("small_cnn", "rotation", "sal"),
            runs: vec![(0, test_row(5, 0.71))],
            paper: vec![],
        },
        CellRuns {
            cell: cell("densenet121", "rotation", "sal"),
            runs: vec![],
            paper: vec![],
        },
    ];
    let pairs = vec![
        ["ref".to_string(), "sal".to_string()],
        ["none".to_string(), "sal".to_string()],
    ];
    (cells, pairs)
}

/// A timing table's rows: with and without the paper's figures and memory.
pub(crate) fn timing_fixture() -> Vec<Timing> {
    vec![
        Timing {
            model: "resnet50".into(),
            plain_ms: 100.0,
            sal_ms: 250.0,
            plain_mib: Some(512.0),
            sal_mib: None,
            device: "cpu".into(),
            paper: Some((307.57, 2156.14)),
        },
        Timing {
            model: "densenet121".into(),
            plain_ms: 123.456,
            sal_ms: 456.789,
            plain_mib: Some(1024.25),
            sal_mib: Some(2047.75),
            device: "cuda:0".into(),
            paper: None,
        },
    ]
}

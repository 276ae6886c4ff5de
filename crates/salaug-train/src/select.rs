//! Choosing from a run's epochs by a held-out measure: the epoch `train.keep = "best:<m>"`
//! keeps and the epoch at which `train.early_stop` ends the run. Both are functions of the
//! rows of `metrics.csv` alone, so a resumed run reaches the same choice as an uninterrupted
//! one.

use salaug_spec::measures::Better;
use salaug_spec::EpochMetrics;

use crate::config::{held_out_measure, EarlyStop, Keep};

/// An epoch chosen by a measure, with its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chosen {
    /// The epoch (1-based).
    pub epoch: usize,
    /// The measure's value there.
    pub value: f64,
}

/// Whether `a` is better than `b` by more than `delta` in the measure's direction.
fn better(direction: Better, a: f64, b: f64, delta: f64) -> bool {
    match direction {
        Better::Higher => a > b + delta,
        Better::Lower => a < b - delta,
        Better::Neither => false,
    }
}

/// The measured values of `key` in `rows` (epochs whose value is NaN were not measured).
fn measured<'a>(
    rows: &'a [EpochMetrics],
    key: &str,
) -> (Better, impl Iterator<Item = Chosen> + 'a) {
    let m = held_out_measure(key).expect("checked by the config");
    let values = rows
        .iter()
        .map(move |r| Chosen {
            epoch: r.epoch,
            value: (m.get)(r),
        })
        .filter(|c| !c.value.is_nan());
    (m.better, values)
}

/// The epoch with the best value of `key` (the first of equals); `None` before one is
/// measured.
pub fn best(rows: &[EpochMetrics], key: &str) -> Option<Chosen> {
    let (direction, values) = measured(rows, key);
    values.fold(None, |best, c| match best {
        Some(b) if !better(direction, c.value, b.value, 0.0) => Some(b),
        _ => Some(c),
    })
}

/// The epoch that `keep` chooses among `rows`: the last row's, or the best one's.
pub fn kept(rows: &[EpochMetrics], keep: &Keep) -> Option<Chosen> {
    match keep {
        Keep::Last => rows.last().map(|r| Chosen {
            epoch: r.epoch,
            value: f64::NAN,
        }),
        Keep::Best(key) => best(rows, key),
    }
}

/// The epoch after which `rule` stops the run: the first at which `patience` measured epochs
/// in a row have not improved on the best before them by more than `min_delta`.
pub fn stops(rows: &[EpochMetrics], rule: &EarlyStop) -> Option<usize> {
    let (direction, values) = measured(rows, &rule.measure);
    let mut best: Option<f64> = None;
    let mut since = 0;
    for c in values {
        match best {
            Some(b) if !better(direction, c.value, b, rule.min_delta) => {
                since += 1;
                if since >= rule.patience {
                    return Some(c.epoch);
                }
            }
            _ => {
                best = Some(c.value);
                since = 0;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(acc: &[f64]) -> Vec<EpochMetrics> {
        acc.iter()
            .enumerate()
            .map(|(i, &a)| {
                let mut r = EpochMetrics::not_measured(i + 1);
                r.test_acc = a;
                r.test_loss = 1.0 - a;
                r
            })
            .collect()
    }

    #[test]
    fn best_and_early_stop_follow_the_measures_direction_and_skip_unmeasured_epochs() {
        let r = rows(&[0.5, 0.7, f64::NAN, 0.7, 0.65, 0.69, 0.8]);
        assert_eq!(best(&r, "test_acc").unwrap().epoch, 7);
        assert_eq!(
            best(&r[..6], "test_acc").unwrap().epoch,
            2,
            "the first of equals"
        );
        assert_eq!(best(&r[..2], "test_loss").unwrap().epoch, 2);
        assert_eq!(best(&r[..1], "test_acc").unwrap().value, 0.5);
        assert_eq!(best(&rows(&[f64::NAN]), "test_acc"), None);
        let rule = |patience, min_delta| EarlyStop {
            measure: "test_acc".into(),
            patience,
            min_delta,
        };
        // Epochs 4, 5, 6 do not beat epoch 2 (epoch 3 was not measured).
        assert_eq!(stops(&r, &rule(3, 0.0)), Some(6));
        assert_eq!(stops(&r, &rule(4, 0.0)), None);
        assert_eq!(stops(&r, &rule(1, 0.0)), Some(4));
        // An improvement within min_delta does not count: 0.5 → 0.7 counts, 0.7 → 0.8 too.
        assert_eq!(stops(&rows(&[0.5, 0.52, 0.53]), &rule(2, 0.05)), Some(3));
        assert_eq!(
            kept(&r, &Keep::Last).map(|c| c.epoch),
            Some(7),
            "the last epoch"
        );
        assert_eq!(kept(&r, &Keep::Best("test_acc".into())).unwrap().epoch, 7);
    }
}

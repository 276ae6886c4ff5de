//! The steps' measurements during an epoch: each step leaves one small row on its device, and
//! the epoch loop reads them all when the epoch ends ([`Tallies::take`]), so training never
//! waits on a device read.
//!
//! A row is typed by the trait [`PendingRow`] rather than by one backend: the training step
//! runs on `Autodiff<B>` and the evaluation step on `B`, and with several devices each worker
//! leaves its rows on its own device; every row is read where it lives.

use std::sync::Mutex;

use burn::prelude::*;

/// One split's per-step measurements, summed at the end of each epoch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// Σ L_class · images.
    pub class: f64,
    /// Σ L_sal · images.
    pub sal: f64,
    /// Σ L_inv · images.
    pub inv: f64,
    /// Σ L · images.
    pub total: f64,
    /// Correctly classified images (for training: originals and augmented).
    pub correct: usize,
    /// Images classified.
    pub seen: usize,
    /// Original images (the batch's `x`).
    pub originals: usize,
}

impl Tally {
    /// Mean of a sum over the originals.
    pub fn mean(&self, sum: f64) -> f64 {
        sum / self.originals.max(1) as f64
    }
    /// Accuracy in [0, 1].
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}

/// Entries of a step's row: `[L_class, L_sal, L_inv, L, correct]`.
pub const ROW: usize = 5;

/// A step's row, still on its device, of any backend.
pub trait PendingRow: Send + std::fmt::Debug {
    /// Reads the row's [`ROW`] entries (waits for the device).
    fn read(self: Box<Self>) -> Vec<f64>;
}

impl<B: Backend> PendingRow for Tensor<B, 1> {
    fn read(self: Box<Self>) -> Vec<f64> {
        (*self)
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("a float row converts to f64")
    }
}

/// A step's row `[L_class, L_sal, L_inv, L, correct]` of its loss terms (absent terms as 0)
/// and its correct count.
pub fn row<B: Backend>(
    class: Tensor<B, 1>,
    sal: Option<Tensor<B, 1>>,
    inv: Option<Tensor<B, 1>>,
    total: Tensor<B, 1>,
    correct: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let device = class.device();
    let zero = || Tensor::<B, 1>::zeros([1], &device);
    Tensor::cat(
        vec![
            class,
            sal.unwrap_or_else(zero),
            inv.unwrap_or_else(zero),
            total,
            correct,
        ],
        0,
    )
}

/// A row, on its device until it is first read.
#[derive(Debug)]
struct Value {
    pending: Option<Box<dyn PendingRow>>,
    read: Vec<f64>,
}

impl Value {
    fn read(&mut self) -> &[f64] {
        if let Some(row) = self.pending.take() {
            self.read = row.read();
        }
        &self.read
    }
}

/// A recorded row: its place (the step's number within its shard, the shard), the row, the
/// step's originals and images classified.
type Entry = ((usize, usize), Value, usize, usize);

/// The names of a row's loss entries, in row order.
pub const TERMS: [&str; 4] = ["L_class", "L_sal", "L_inv", "L"];

/// The first loss term that is not finite in a step's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFinite {
    /// The step's number in the epoch (0-based; with several devices, each device's step of
    /// that number).
    pub step: usize,
    /// The shard (device) whose row it is.
    pub shard: usize,
    /// The term ([`TERMS`]).
    pub term: &'static str,
}

/// The rows of one split, and the steps recorded per shard so far.
#[derive(Debug, Default)]
struct Rows {
    entries: Vec<Entry>,
    steps: Vec<usize>,
}

impl Rows {
    fn push(&mut self, shard: usize, row: Box<dyn PendingRow>, originals: usize, seen: usize) {
        if self.steps.len() <= shard {
            self.steps.resize(shard + 1, 0);
        }
        let step = self.steps[shard];
        self.steps[shard] += 1;
        let value = Value {
            pending: Some(row),
            read: Vec::new(),
        };
        self.entries.push(((step, shard), value, originals, seen));
    }

    /// Reads the rows recorded so far (each once; they stay for [`Rows::take`]) and sums
    /// them in step order, with the first step whose loss terms are not all finite.
    fn running(&mut self) -> (Tally, Option<NonFinite>) {
        self.entries.sort_by_key(|e| e.0);
        let mut tally = Tally::default();
        let mut bad = None;
        for ((step, shard), value, originals, seen) in &mut self.entries {
            let row = value.read();
            if bad.is_none() {
                if let Some(t) = (0..TERMS.len()).find(|&t| !row[t].is_finite()) {
                    bad = Some(NonFinite {
                        step: *step,
                        shard: *shard,
                        term: TERMS[t],
                    });
                }
            }
            add(&mut tally, row, *originals, *seen);
        }
        (tally, bad)
    }

    /// The sums of the rows so far in f64, in step order (with several shards: step by step,
    /// shard by shard, whichever worker finished first), so the sums are deterministic;
    /// empties the list.
    fn take(&mut self) -> Tally {
        let mut entries = std::mem::take(&mut self.entries);
        self.steps.clear();
        entries.sort_by_key(|e| e.0);
        let mut tally = Tally::default();
        for (_, mut value, originals, seen) in entries {
            add(&mut tally, value.read(), originals, seen);
        }
        tally
    }
}

fn add(tally: &mut Tally, row: &[f64], originals: usize, seen: usize) {
    debug_assert_eq!(row.len(), ROW);
    let n = originals as f64;
    tally.class += row[0] * n;
    tally.sal += row[1] * n;
    tally.inv += row[2] * n;
    tally.total += row[3] * n;
    tally.correct += row[4] as usize;
    tally.seen += seen;
    tally.originals += originals;
}

/// Which step a row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training step (originals and augmented images).
    Train,
    /// The evaluation step on the test set.
    Valid,
}

/// The training and evaluation rows of the current epoch, shared by every copy of the model
/// (and by every worker when several devices train).
#[derive(Debug, Default)]
pub struct Tallies {
    train: Mutex<Rows>,
    valid: Mutex<Rows>,
}

impl Tallies {
    fn rows(&self, split: Split) -> std::sync::MutexGuard<'_, Rows> {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
        }
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a step's row of `originals` original images and `seen` images classified, from
    /// a batch of shard `shard` (0 with one device).
    pub fn push<B: Backend>(
        &self,
        split: Split,
        shard: usize,
        row: Tensor<B, 1>,
        originals: usize,
        seen: usize,
    ) {
        (self.rows(split)).push(shard, Box::new(row), originals, seen);
    }

    /// The sums of one split's rows so far (reading them from their devices, which waits for
    /// the steps), and the first step with a loss term that is not finite. The rows stay
    /// for [`Tallies::take`], whose sums are the same.
    pub fn running(&self, split: Split) -> (Tally, Option<NonFinite>) {
        self.rows(split).running()
    }

    /// Takes (and resets) the training and evaluation sums.
    pub fn take(&self) -> (Tally, Tally) {
        let t = self.rows(Split::Train).take();
        let v = self.rows(Split::Valid).take();
        (t, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;

    type B = crate::backend::Selected;

    #[test]
    fn rows_of_two_backend_levels_sum_in_step_order() {
        let device = Default::default();
        let tallies = Tallies::default();
        let t = |v: f32| Tensor::<B, 1>::from_floats([v], &device);
        let r = row(t(1.0), Some(t(2.0)), None, t(3.0), t(4.0));
        tallies.push(Split::Train, 0, r, 2, 4);
        let a = |v: f32| Tensor::<Autodiff<B>, 1>::from_floats([v], &device);
        let r = row(a(0.5), None, Some(a(1.0)), a(1.5), a(3.0));
        tallies.push(Split::Train, 0, r, 3, 6);
        let r = row(t(0.25), None, None, t(0.25), t(1.0));
        tallies.push(Split::Valid, 0, r, 1, 1);
        let (train, valid) = tallies.take();
        assert_eq!(
            train,
            Tally {
                class: 1.0 * 2.0 + 0.5 * 3.0,
                sal: 4.0,
                inv: 3.0,
                total: 3.0 * 2.0 + 1.5 * 3.0,
                correct: 7,
                seen: 10,
                originals: 5,
            }
        );
        assert_eq!(valid.correct, 1);
        assert_eq!(valid.mean(valid.total), 0.25);
        assert_eq!(train.accuracy(), 0.7);
        // Taking empties both lists.
        assert_eq!(tallies.take(), (Tally::default(), Tally::default()));
        // Running sums read the rows so far and leave them for take(), and name the first
        // step with a loss that is not finite.
        tallies.push(
            Split::Train,
            0,
            row(t(1.0), None, None, t(1.0), t(1.0)),
            1,
            2,
        );
        tallies.push(
            Split::Train,
            0,
            row(t(2.0), Some(t(f32::NAN)), None, t(f32::NAN), t(1.0)),
            1,
            2,
        );
        tallies.push(
            Split::Train,
            0,
            row(t(f32::INFINITY), None, None, t(1.0), t(0.0)),
            1,
            2,
        );
        let (so_far, bad) = tallies.running(Split::Train);
        assert_eq!(so_far.class, f64::INFINITY);
        assert_eq!(
            bad,
            Some(NonFinite {
                step: 1,
                shard: 0,
                term: "L_sal"
            })
        );
        let (taken, _) = tallies.take();
        assert_eq!((taken.originals, taken.correct), (3, 2));
    }
}

#[cfg(test)]
mod order {
    use super::*;

    type B = crate::backend::Selected;

    /// The f64 sum of rows whose order matters in the last bits.
    fn sum(pushes: &[(usize, f32)]) -> f64 {
        let device = Default::default();
        let tallies = Tallies::default();
        for &(shard, v) in pushes {
            let t = |v: f32| Tensor::<B, 1>::from_floats([v], &device);
            tallies.push(
                Split::Train,
                shard,
                row(t(v), None, None, t(v), t(0.0)),
                1,
                1,
            );
        }
        tallies.take().0.total
    }

    #[test]
    fn rows_of_several_shards_sum_in_the_same_order_whichever_worker_finishes_first() {
        let (a, b, c, d) = (1e20_f32, 1.0, -1e20, 1.0);
        // Steps 0 and 1 of shards 0 and 1, pushed in two interleavings.
        let first = sum(&[(0, a), (1, b), (1, c), (0, d)]);
        let second = sum(&[(1, b), (0, a), (0, d), (1, c)]);
        assert_eq!(first.to_bits(), second.to_bits());
        // Summed step by step, shard by shard: a + b + d + c (0 in f64; the first push order
        // would give 1).
        assert_eq!(first, ((a as f64 + b as f64) + d as f64) + c as f64);
        assert_eq!(first, 0.0);
    }
}

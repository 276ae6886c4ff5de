//! Per-epoch measurements of a model on held-out images, and the run directory's
//! `metrics.csv` (its columns are defined once, in `salaug_spec::metrics`):
//! - accuracy, clean ([`evaluate`]), under the run's augmentation and under a fixed [`panel`]
//!   of geometric transforms;
//! - map agreement that is not the training objective: Spearman rank correlation and top-10 %
//!   IoU of the |gradient| maps of `x` and `T⁻¹(S(T(x)))` over valid pixels, for the panel;
//! - faithfulness of the |gradient| maps: deletion and insertion areas against a random order;
//! - the training objective itself measured on held-out images ([`consistency`], with the
//!   run's saliency method), named for what it is: `sal` minimises it, so it shows that the
//!   loss generalises, not that the method helps.
//!
//! All but [`consistency`] run the model in evaluation mode (BatchNorm with running
//! statistics), the maps included ([`BatchNormMode::Running`]).

use salaug_core::AutodiffBase;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::{rngs::StdRng, SeedableRng};
use salaug_augment::{Augmentation, Compare, HorizontalFlip, Rescale, Rotation, VerticalFlip};
use salaug_core::metrics::{deletion_insertion, salient_order, spearman, top_fraction_iou};
use salaug_core::{
    BatchNormMode, ChannelReduction, Classifier, Explain, SaliencyKind, SaliencyLossConfig,
    SaliencyMethod,
};
pub use salaug_spec::{EpochMetrics, HeldOut};

use crate::data::{Batch, ImageBatcher, Images};
use crate::trainee::{accuracy, correct, per_channel, soft_cross_entropy, Trainee};

/// Reads `metrics.csv` of a run directory (empty if absent).
pub fn read_metrics(dir: &Path) -> Result<Vec<EpochMetrics>> {
    Ok(EpochMetrics::read(&salaug_spec::metrics::in_run(dir))?)
}

/// The fixed panel of geometric transforms of the held-out metrics: a horizontal flip, a
/// vertical flip, a rotation by up to 10° and a magnification by up to 10 % (the paper's
/// table 1 ranges), each always applied, with parameters drawn from fixed seeds.
pub fn panel() -> Vec<Augmentation> {
    vec![
        Augmentation::HorizontalFlip(HorizontalFlip { p: 1.0 }),
        Augmentation::VerticalFlip(VerticalFlip { p: 1.0 }),
        Augmentation::Rotation(Rotation {
            p: 1.0,
            ..Default::default()
        }),
        Augmentation::Rescale(Rescale {
            p: 1.0,
            ..Default::default()
        }),
    ]
}

/// Saliency consistency on `images`: the mean over the [`panel`] of the MSE
/// between min-max-normalised `S(x)` and `T⁻¹(S(T(x)))` (maps of `method`, the run's
/// `loss.method` in its metrics, max over channels, valid pixels only), in chunks of 64 images.
/// Lower is more consistent. BatchNorm uses batch statistics here, as in the training step's
/// saliency pass. The backend's generator is seeded per chunk, so a method that draws noise
/// (SmoothGrad) is a deterministic function of the weights here; the next epoch reseeds it.
pub fn consistency<B: AutodiffBase>(
    model: &Trainee<B>,
    method: &SaliencyKind,
    set: &Arc<Images>,
    count: usize,
    device: &B::Device,
) -> Result<f64> {
    let loss = SaliencyLossConfig {
        reduction: ChannelReduction::Max,
        ..Default::default()
    }
    .init()?;
    let n = count.min(set.len());
    if n == 0 {
        return Ok(f64::NAN);
    }
    let batcher = ImageBatcher::new(Arc::clone(set));
    let mut total = 0.0;
    let mut parts = 0usize;
    for (k, t) in panel().into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(0);
        for start in (0..n).step_by(64) {
            let idx: Vec<usize> = (start..(start + 64).min(n)).collect();
            if idx.len() < 2 {
                continue;
            }
            // A method that draws noise (SmoothGrad) draws the same noise for every model.
            B::seed(device, (k * n + start) as u64);
            let m = idx.len();
            let Batch {
                images: x,
                targets: y,
                ..
            } = batcher.try_make::<B>(idx, device)?;
            let aug = t.run(x.clone(), &mut rng)?;
            let both = Tensor::cat(vec![x, aug.images], 0);
            let explain = Explain::class(Tensor::cat(vec![y.clone(), y], 0));
            let d = loss
                .of_batch(model, method, both, &explain, |s, s_aug| {
                    aug.transfer.pair(s, s_aug, Compare::Inverse)
                })?
                .loss;
            total += d.into_scalar().elem::<f64>() * m as f64;
            parts += m;
        }
    }
    Ok(total / parts.max(1) as f64)
}

/// Accuracy of `model` on `set`. BatchNorm uses its running statistics on a plain backend
/// (evaluation mode) and batch statistics on an autodiff backend (training mode), so the same
/// call measures both.
pub fn evaluate<B: Backend>(
    model: &Trainee<B>,
    set: &Arc<Images>,
    batch: usize,
    device: &B::Device,
) -> Result<f64> {
    Ok(loss_and_accuracy(model, set, batch, device)?.1)
}

/// Mean cross-entropy and accuracy of `model` on `set` (as [`evaluate`]; the evaluation
/// step's measures, `test_loss` and `test_acc`).
pub fn loss_and_accuracy<B: Backend>(
    model: &Trainee<B>,
    set: &Arc<Images>,
    batch: usize,
    device: &B::Device,
) -> Result<(f64, f64)> {
    let batcher = ImageBatcher::new(set.clone());
    let (mut right, mut loss) = (0, 0.0);
    for start in (0..set.len()).step_by(batch) {
        let idx: Vec<usize> = (start..(start + batch).min(set.len())).collect();
        let b: Batch<B> = batcher.try_make(idx, device)?;
        let n = b.labels.len();
        let logits = model.logits(b.images);
        let k = logits.dims()[1];
        let ce = soft_cross_entropy(logits.clone(), b.targets.clone().one_hot(k).float());
        loss += ce.into_scalar().elem::<f64>() * n as f64;
        right += correct(logits, b.targets).into_scalar().elem::<f64>() as usize;
    }
    let n = set.len().max(1) as f64;
    Ok((loss / n, right as f64 / n))
}

/// Held-out images per chunk of the held-out metrics.
const CHUNK: usize = 64;
/// Steps of the deletion and insertion curves.
pub const FAITHFULNESS_STEPS: usize = 10;
/// The fraction of most salient pixels compared by the IoU.
pub const TOP_FRACTION: f64 = 0.1;

/// Sums of per-image values and their counts (NaNs, e.g. the rank correlation of a constant
/// map, are left out).
#[derive(Default)]
struct Mean(f64, usize);

impl Mean {
    fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.0 += v;
            self.1 += 1;
        }
    }
    fn get(&self) -> f64 {
        if self.1 == 0 {
            f64::NAN
        } else {
            self.0 / self.1 as f64
        }
    }
}

/// The values of a tensor on the host, as f32.
pub(crate) fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 values")
}

/// The held-out measures of [`HeldOut`] on the first `count` images of `set` (`None`: all),
/// for a model at a plain backend (evaluation mode), in chunks of 64 images. `augment` is
/// the run's augmentation. Every random draw (the augmentation's and the panel's parameters,
/// the random pixel orders) is seeded by the chunk, so two runs are measured on the same
/// transformed images.
pub fn held_out<B: AutodiffBase>(
    model: &Trainee<B>,
    set: &Arc<Images>,
    augment: &Augmentation,
    count: Option<usize>,
    device: &B::Device,
) -> Result<HeldOut> {
    let n = count.unwrap_or(usize::MAX).min(set.len());
    if n == 0 {
        return Ok(HeldOut::default());
    }
    let batcher = ImageBatcher::new(Arc::clone(set));
    let panel = panel();
    let k = set.classes();
    let [c, _, _] = set.shape();
    let mean = per_channel::<B>(&model.plan.0.mean, c, device);
    let (mut aug_correct, mut panel_correct, mut panel_seen) = (0usize, 0usize, 0usize);
    let (mut rho, mut iou) = (Mean::default(), Mean::default());
    let [mut del, mut ins, mut del_r, mut ins_r] = std::array::from_fn(|_| Mean::default());
    for start in (0..n).step_by(CHUNK) {
        let idx: Vec<usize> = (start..(start + CHUNK).min(n)).collect();
        let m = idx.len();
        let Batch {
            images: x,
            targets: y,
            labels,
            ..
        } = batcher.try_make::<B>(idx, device)?;
        let [_, _, h, w] = x.dims();
        let seed = |salt: u64| StdRng::seed_from_u64((salt << 32) ^ start as u64);

        // The run's augmentation: accuracy for the label with the largest weight.
        let aug = augment.run(x.clone(), &mut seed(1))?;
        let hard: Vec<i64> = (aug.labels.hard_targets(&labels, k).into_iter())
            .map(|l| l as i64)
            .collect();
        let hard = Tensor::<B, 1, Int>::from_data(TensorData::new(hard, [m]), device);
        aug_correct += accuracy(model, aug.images, hard);

        // |gradient| maps in evaluation mode, of x and of each panel transform of x.
        let maps = |images: Tensor<B, 4>| -> Result<(Tensor<B, 4>, Tensor<B, 2>)> {
            let explain = Explain::class(y.clone()).with_batch_norm(BatchNormMode::Running);
            let out = SaliencyKind::Gradient.attribute(model, images, &explain)?;
            Ok((ChannelReduction::AbsMax.forward(out.maps), out.logits))
        };
        let (s_x, _) = maps(x.clone())?;
        for (i, t) in panel.iter().enumerate() {
            let out = t.run(x.clone(), &mut seed(2 + i as u64))?;
            let (s_t, logits) = maps(out.images)?;
            panel_correct += correct(logits, y.clone()).into_scalar().elem::<f64>() as usize;
            panel_seen += m;
            let pair = out.transfer.pair(s_x.clone(), s_t, Compare::Inverse)?;
            let (a, b) = (host(pair.reference), host(pair.other));
            let mask: Option<Vec<bool>> = pair
                .mask
                .map(|v| host(v).iter().map(|&v| v > 0.5).collect());
            for j in 0..m {
                let px = j * h * w..(j + 1) * h * w;
                let valid = mask.as_ref().map(|v| &v[px.clone()]);
                rho.add(spearman(&a[px.clone()], &b[px.clone()], valid));
                iou.add(top_fraction_iou(
                    &a[px.clone()],
                    &b[px],
                    valid,
                    TOP_FRACTION,
                ));
            }
        }

        // Deletion and insertion in the map's order and in a random order, on the
        // dataset's mean colour.
        let s = host(s_x);
        let mut rng = seed(100);
        let mut orders: Vec<Vec<usize>> = s.chunks(h * w).map(salient_order).collect();
        for _ in 0..m {
            let mut o: Vec<usize> = (0..h * w).collect();
            o.shuffle(&mut rng);
            orders.push(o);
        }
        let base = mean.clone().expand([2 * m, c, h, w]);
        let both_labels: Vec<usize> = labels.iter().chain(&labels).copied().collect();
        let f = deletion_insertion(
            model,
            Tensor::cat(vec![x.clone(), x], 0),
            base,
            &both_labels,
            &orders,
            FAITHFULNESS_STEPS,
        )?;
        for j in 0..m {
            del.add(f.deletion[j]);
            ins.add(f.insertion[j]);
            del_r.add(f.deletion[m + j]);
            ins_r.add(f.insertion[m + j]);
        }
    }
    Ok(HeldOut {
        aug_acc: aug_correct as f64 / n.max(1) as f64,
        panel_acc: panel_correct as f64 / panel_seen.max(1) as f64,
        map_spearman: rho.get(),
        map_iou: iou.get(),
        deletion_auc: del.get(),
        insertion_auc: ins.get(),
        deletion_auc_random: del_r.get(),
        insertion_auc_random: ins_r.get(),
    })
}

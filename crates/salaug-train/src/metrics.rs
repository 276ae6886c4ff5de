//! Per-epoch measurements of a model: accuracy and the saliency-consistency distance, and the
//! run directory's `metrics.csv` (its columns are defined once, in `salaug_spec::metrics`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use burn::prelude::*;
use rand::{rngs::StdRng, SeedableRng};
use salaug_augment::{Augmentation, Compare, HorizontalFlip, Rescale, Rotation};
use salaug_core::{ChannelReduction, Explain, SaliencyKind, SaliencyLossConfig};
pub use salaug_spec::EpochMetrics;

use crate::data::{Batch, ImageBatcher, Images};
use crate::trainee::Trainee;

/// Reads `metrics.csv` of a run directory (empty if absent).
pub fn read_metrics(dir: &Path) -> Result<Vec<EpochMetrics>> {
    Ok(EpochMetrics::read(&salaug_spec::metrics::in_run(dir))?)
}

/// The fixed transforms of the saliency-consistency metric: a horizontal flip, a rotation
/// by up to 10° and a rescale by up to 10%, each always applied, drawn from seed 0.
pub fn consistency_transforms() -> Vec<Augmentation> {
    vec![
        Augmentation::HorizontalFlip(HorizontalFlip { p: 1.0 }),
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

/// Saliency consistency on `images`: the mean over [`consistency_transforms`] of the MSE
/// between min-max-normalised `S(x)` and `T⁻¹(S(T(x)))` (gradient maps, max over channels,
/// valid pixels only), in chunks of 64 images. Lower is more consistent. BatchNorm uses batch
/// statistics here, as in the training step's saliency pass.
pub fn consistency<B: Backend>(
    model: &Trainee<B>,
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
    for t in consistency_transforms() {
        let mut rng = StdRng::seed_from_u64(0);
        for start in (0..n).step_by(64) {
            let idx: Vec<usize> = (start..(start + 64).min(n)).collect();
            if idx.len() < 2 {
                continue;
            }
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
                .of_batch(
                    model,
                    &SaliencyKind::Gradient,
                    both,
                    &explain,
                    |s, s_aug| aug.transfer.pair(s, s_aug, Compare::Inverse),
                )?
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
    let batcher = ImageBatcher::new(set.clone());
    let mut correct = 0;
    for start in (0..set.len()).step_by(batch) {
        let idx: Vec<usize> = (start..(start + batch).min(set.len())).collect();
        let b: Batch<B> = batcher.try_make(idx, device)?;
        correct += crate::trainee::accuracy(model, b.images, b.targets);
    }
    Ok(correct as f64 / set.len().max(1) as f64)
}

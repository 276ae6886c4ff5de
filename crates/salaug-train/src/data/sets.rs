//! The training and test sets of a run, read, subset and prepared as its config says, with the
//! network's input normalisation.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::{load, locate, DatasetKind, FolderSet, Images, Split};
use crate::config::DataConfig;

/// The prepared training and test images.
#[derive(Debug, Clone)]
pub struct Data {
    /// Training images.
    pub train: Arc<Images>,
    /// Held-out test images.
    pub test: Arc<Images>,
    /// The validation split held out of the training images (`data.validation`).
    pub validation: Option<Arc<Images>>,
    /// Where they were read from.
    pub root: PathBuf,
    /// Per-channel mean of the network's input normalisation, in `[0, 1]` units.
    pub mean: Vec<f64>,
    /// Per-channel standard deviation of the input normalisation.
    pub std: Vec<f64>,
}

/// Finds, reads, subsets and prepares the data of a run's `[data]` section, with its input
/// normalisation: `data.mean` / `data.std`, else the training images' channel statistics (see
/// [`channel_stats`]). Class folders are listed here and decoded when batches ask for them.
pub fn load_data(config: &DataConfig) -> Result<Data> {
    let kind = config.dataset;
    let root = locate(kind, config.dir.as_deref())?;
    tracing::info!("reading {} from {}", kind.name(), root.display());
    let (train, test) = if kind == DatasetKind::ImageFolder {
        let size = config.folder_size;
        (
            Images::Files(FolderSet::scan(&root, Split::Train, size)?),
            Images::Files(FolderSet::scan(&root, Split::Test, size)?),
        )
    } else {
        (
            Images::Memory(load(kind, &root, Split::Train)?),
            Images::Memory(load(kind, &root, Split::Test)?),
        )
    };
    let prep = config.prepare;
    let train = train.balanced_subset(config.train_limit).prepare(prep);
    let (train, validation) = match config.validation {
        Some(holdout) => {
            let k = holdout.of(train.len())?;
            let (train, held) = train.hold_out(k, VALIDATION_SEED);
            (train, Some(Arc::new(held)))
        }
        None => (train, None),
    };
    let test = test.balanced_subset(config.test_limit).prepare(prep);
    for set in [&train, &test] {
        if let Images::Files(files) = set {
            files.check_headers()?;
        }
    }
    let c = train.shape()[0];
    let (mean, std) = match (&config.mean, &config.std) {
        (Some(m), Some(s)) => (m.clone(), s.clone()),
        (m, s) => {
            let (mean, std) = channel_stats(&train)?;
            (m.clone().unwrap_or(mean), s.clone().unwrap_or(std))
        }
    };
    for (key, v) in [("data.mean", &mean), ("data.std", &std)] {
        let n = v.len();
        if n != 1 && n != c {
            bail!("{key} has {n} values for images with {c} channel(s)");
        }
    }
    tracing::info!(
        "{} training, {} validation and {} test images of {:?}, {} classes",
        train.len(),
        validation.as_ref().map_or(0, |v| v.len()),
        test.len(),
        train.shape(),
        train.classes()
    );
    Ok(Data {
        train: Arc::new(train),
        test: Arc::new(test),
        validation,
        root,
        mean,
        std,
    })
}

/// The seed of the validation split: fixed, not the run seed, so every run of a study (every
/// seed, strategy and setting) holds out the same images.
pub const VALIDATION_SEED: u64 = 0x5a1a_u64;

impl Data {
    /// The held-out set measured every epoch: the validation split when there is one, else
    /// the test set; and its name.
    pub fn held_out(&self) -> (&Arc<Images>, &'static str) {
        match &self.validation {
            Some(v) => (v, "validation"),
            None => (&self.test, "test"),
        }
    }
}

/// At most this many images (evenly spaced) give the channel statistics of a set read from
/// files; sets in memory use every image.
pub const STATS_FILES: usize = 2000;

/// Per-channel mean and standard deviation of a set, in `[0, 1]` units: over every image in
/// memory, over [`STATS_FILES`] evenly spaced images of a set read from files.
pub fn channel_stats(set: &Images) -> Result<(Vec<f64>, Vec<f64>)> {
    let [c, h, w] = set.shape();
    let n = set.len();
    let used: Vec<usize> = match set {
        Images::Memory(_) => (0..n).collect(),
        Images::Files(_) => {
            let k = n.min(STATS_FILES);
            (0..k).map(|j| j * n / k.max(1)).collect()
        }
    };
    let mut sum = vec![0f64; c];
    let mut sq = vec![0f64; c];
    for &i in &used {
        for (ch, plane) in set.image(i)?.chunks(h * w).enumerate() {
            for &p in plane {
                let v = p as f64 / 255.0;
                sum[ch] += v;
                sq[ch] += v * v;
            }
        }
    }
    let n = (used.len() * h * w).max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| (q / n - m * m).max(0.0).sqrt().max(1e-3))
        .collect();
    Ok((mean, std))
}

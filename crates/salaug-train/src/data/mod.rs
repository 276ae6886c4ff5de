//! Datasets in their real on-disk formats: the small ones held in memory as `u8` pixels
//! ([`ImageSet`], fastest), class folders decoded on demand ([`FolderSet`], bounded memory);
//! [`Images`] is either.
//!
//! | dataset | format | files |
//! |---|---|---|
//! | Fashion-MNIST | gzipped IDX | `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` |
//! | CIFAR-10 | binary version | `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin` |
//! | CIFAR-100 | binary version | `cifar-100-binary/{train,test}.bin` (fine labels) |
//! | SVHN | MATLAB v5 | `train_32x32.mat`, `test_32x32.mat` (label 10 is digit 0) |
//! | ImageNet-style | class folders | `<root>/{train,val}/<class>/*.{jpg,jpeg,png}` |
//!
//! Every reader checks sizes, headers and (where the dataset fixes them) checksums, and
//! names the file and the problem in its error. Nothing is cached half-written: downloads go
//! to a temporary file that is renamed only after its checksum matched.

mod cifar;
mod download;
mod folder;
mod idx;
mod mat;
mod order;
mod prepare;
mod sets;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::prelude::*;

pub use crate::config::DatasetKind;
pub use cifar::{read_cifar, CifarKind};
pub use download::{fetch, Remote};
pub use folder::{write_synthetic, FolderSet};
pub use idx::{read_fashion_mnist, read_idx_images, read_idx_labels, FASHION_MNIST_FILES};
pub use mat::{read_svhn, MatArray, MatFile};
pub use order::{steps_per_epoch, Deal, IndexDataset, Order};
pub use prepare::Prepare;
pub use sets::{channel_stats, load_data, Data, STATS_FILES, VALIDATION_SEED};

/// A failure to read a dataset, naming the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is there but its content is wrong.
    #[error("{path}: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// No folder holds the dataset.
    #[error("{dataset} not found; looked in: {looked}. {hint}")]
    NotFound {
        /// The dataset.
        dataset: &'static str,
        /// The folders searched.
        looked: String,
        /// How to get it.
        hint: String,
    },
}

impl DataError {
    pub(crate) fn corrupt(path: &Path, problem: impl Into<String>) -> Self {
        DataError::Corrupt {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Which half of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training images.
    Train,
    /// The held-out test images.
    Test,
}

/// Images as `u8` in `[n, channels, height, width]` order, with their class indices.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Pixels, row-major `[n, c, h, w]`.
    pub pixels: Vec<u8>,
    /// Class index of each image.
    pub labels: Vec<usize>,
    /// `[channels, height, width]` of every image.
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of one image, `[c, h, w]`.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.shape.iter().product::<usize>();
        &self.pixels[i * size..(i + 1) * size]
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * self.shape.iter().product::<usize>());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes,
        }
    }
}

/// The first `limit / classes` (rounded up) images of every class, in their original order,
/// at most `limit` in all: a balanced, deterministic subset. `None` when `limit` keeps every
/// image.
fn balanced_indices(labels: &[usize], classes: usize, limit: Option<usize>) -> Option<Vec<usize>> {
    let limit = limit.filter(|&l| l < labels.len())?;
    let per_class = limit.div_ceil(classes);
    let mut taken = vec![0usize; classes];
    let mut keep = Vec::with_capacity(limit);
    for (i, &l) in labels.iter().enumerate() {
        if keep.len() == limit {
            break;
        }
        if taken[l] < per_class {
            taken[l] += 1;
            keep.push(i);
        }
    }
    Some(keep)
}

/// A split's images: in memory, or decoded from files when a batch asks for them.
#[derive(Debug, Clone, PartialEq)]
pub enum Images {
    /// Held in memory (the small datasets; fastest).
    Memory(ImageSet),
    /// Class folders read on demand (memory bounded whatever the set's size).
    Files(FolderSet),
}

impl Images {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels().len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Class index of each image.
    pub fn labels(&self) -> &[usize] {
        match self {
            Images::Memory(set) => &set.labels,
            Images::Files(set) => &set.labels,
        }
    }

    /// `[channels, height, width]` of every image.
    pub fn shape(&self) -> [usize; 3] {
        match self {
            Images::Memory(set) => set.shape,
            Images::Files(set) => set.shape(),
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        match self {
            Images::Memory(set) => set.classes,
            Images::Files(set) => set.classes(),
        }
    }

    /// Pixels of image `i`, `[c, h, w]` (read from its file for [`Images::Files`]).
    pub fn image(&self, i: usize) -> Result<std::borrow::Cow<'_, [u8]>, DataError> {
        Ok(match self {
            Images::Memory(set) => std::borrow::Cow::Borrowed(set.image(i)),
            Images::Files(set) => std::borrow::Cow::Owned(set.decode(i)?),
        })
    }

    /// A balanced, deterministic subset of at most `limit` images (see [`ImageSet`]'s
    /// readers for the order), or everything when `limit` is `None`.
    pub fn balanced_subset(self, limit: Option<usize>) -> Images {
        let Some(keep) = balanced_indices(self.labels(), self.classes(), limit) else {
            return self;
        };
        match self {
            Images::Memory(set) => Images::Memory(set.select(&keep)),
            Images::Files(set) => Images::Files(set.select(&keep)),
        }
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Images {
        match self {
            Images::Memory(set) => Images::Memory(set.select(indices)),
            Images::Files(set) => Images::Files(set.select(indices)),
        }
    }

    /// Splits off `k` images drawn uniformly by `seed`: `(the rest, the k)`, each in the
    /// original order.
    pub fn hold_out(&self, k: usize, seed: u64) -> (Images, Images) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let (held, kept) = order.split_at(k.min(order.len()));
        let (mut held, mut kept) = (held.to_vec(), kept.to_vec());
        held.sort_unstable();
        kept.sort_unstable();
        (self.select(&kept), self.select(&held))
    }

    /// Applies `prepare` (at once in memory; per image as it is decoded for files).
    pub fn prepare(self, prepare: Prepare) -> Images {
        match self {
            Images::Memory(set) => Images::Memory(prepare.apply(set)),
            Images::Files(mut set) => {
                set.prepare = prepare;
                Images::Files(set)
            }
        }
    }

    /// Images `[n, c, h, w]` in `[0, 1]` as a tensor, for the given indices.
    pub fn tensor<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, DataError> {
        let [c, h, w] = self.shape();
        let mut values = Vec::with_capacity(indices.len() * c * h * w);
        for &i in indices {
            values.extend(self.image(i)?.iter().map(|&p| p as f32 / 255.0));
        }
        Ok(Tensor::from_data(
            TensorData::new(values, [indices.len(), c, h, w]),
            device,
        ))
    }
}

/// Loads one split of a dataset from `root` (the folder holding its files).
pub fn load(kind: DatasetKind, root: &Path, split: Split) -> Result<ImageSet, DataError> {
    match kind {
        DatasetKind::FashionMnist => read_fashion_mnist(root, split),
        DatasetKind::Cifar10 => read_cifar(root, CifarKind::Cifar10, split),
        DatasetKind::Cifar100 => read_cifar(root, CifarKind::Cifar100, split),
        DatasetKind::Svhn => read_svhn(root, split),
        DatasetKind::ImageFolder => Err(DataError::NotFound {
            dataset: "image_folder",
            looked: root.display().to_string(),
            hint: "class folders are listed with FolderSet::scan and a target size".into(),
        }),
    }
}

/// Whether `root` holds the files of `kind`.
pub fn present(kind: DatasetKind, root: &Path) -> bool {
    let files: Vec<&str> = match kind {
        DatasetKind::FashionMnist => FASHION_MNIST_FILES.iter().map(|f| f.0).collect(),
        DatasetKind::Cifar10 => vec!["cifar-10-batches-bin/test_batch.bin"],
        DatasetKind::Cifar100 => vec!["cifar-100-binary/test.bin"],
        DatasetKind::Svhn => vec!["train_32x32.mat", "test_32x32.mat"],
        DatasetKind::ImageFolder => vec!["train"],
    };
    files.iter().all(|f| root.join(f).exists())
}

/// Finds the folder holding `kind` in [`salaug_spec::data::search_path`], or fetches it into
/// the download cache (with the `download` feature; the cache's folder is the search path's
/// last). With an explicit folder, data missing there is an error that names where it looked
/// (no fallback, no download).
pub fn locate(kind: DatasetKind, explicit: Option<&Path>) -> Result<PathBuf, DataError> {
    let looked = salaug_spec::data::search_path(kind.name(), explicit);
    if let Some(found) = looked.iter().find(|p| present(kind, p)) {
        return Ok(found.clone());
    }
    if let Some(remote) = Remote::of(kind).filter(|_| explicit.is_none()) {
        if download::enabled() {
            let target = salaug_spec::data::cache_dir().join(kind.name());
            fetch(&remote, &target)?;
            return Ok(target);
        }
    }
    let hint = match kind {
        DatasetKind::FashionMnist => {
            "Install it with `apt-get install dataset-fashion-mnist`, point `data.dir` at the files (`--set data.dir=DIR`, or `--data-dir` for cargo xtask reproduce), or build salaug with `--features download` to fetch it"
        }
        DatasetKind::ImageFolder => "Set `data.dir` to a folder with train/ and val/ class folders",
        DatasetKind::Svhn => "Set `data.dir` (or $SALAUG_DATA) to the folder with its files, or build salaug with `--features download` to fetch it",
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => "Set `data.dir` (or $SALAUG_DATA) to the folder holding the unpacked binary version (cifar-10-batches-bin/ or cifar-100-binary/)",
    };
    Err(DataError::NotFound {
        dataset: kind.name(),
        looked: looked
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        hint: hint.into(),
    })
}

/// One training example: its index in the [`ImageSet`].
pub type Item = usize;

/// A batch: images in `[0, 1]`, class indices, and the dataset indices of its images.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    /// `[batch, channels, h, w]` in `[0, 1]`.
    pub images: Tensor<B, 4>,
    /// `[batch]` class indices.
    pub targets: Tensor<B, 1, Int>,
    /// Class indices on the host.
    pub labels: Vec<usize>,
    /// The images' indices in the dataset (they seed the augmentation of this batch).
    pub indices: Vec<usize>,
    /// The device share of the epoch the batch belongs to (0 with one device; [`Deal`]).
    pub shard: usize,
}

/// Turns indices into a [`Batch`] from prepared [`Images`]; in burn's data loader it runs in
/// the worker threads, so files are decoded there.
#[derive(Debug, Clone)]
pub struct ImageBatcher {
    set: Arc<Images>,
    deal: Option<Arc<Deal>>,
}

impl ImageBatcher {
    /// A batcher over `set`.
    pub fn new(set: Arc<Images>) -> Self {
        Self { set, deal: None }
    }

    /// A batcher over `set` whose batches record their shard of `deal`.
    pub fn dealt(set: Arc<Images>, deal: Arc<Deal>) -> Self {
        Self {
            set,
            deal: Some(deal),
        }
    }

    /// The batch of the images at `indices`.
    ///
    /// # Panics
    /// If an image file that passed [`FolderSet::scan`]'s header check cannot be decoded
    /// (burn's batchers cannot return errors); the message names the file.
    pub fn make<B: Backend>(&self, indices: Vec<usize>, device: &B::Device) -> Batch<B> {
        self.try_make(indices, device)
            .unwrap_or_else(|e| panic!("reading a batch: {e}"))
    }

    /// The batch of the images at `indices`, or the error of the first image that cannot be
    /// read.
    pub fn try_make<B: Backend>(
        &self,
        indices: Vec<usize>,
        device: &B::Device,
    ) -> Result<Batch<B>, DataError> {
        let labels: Vec<usize> = indices.iter().map(|&i| self.set.labels()[i]).collect();
        let targets = Tensor::from_data(
            TensorData::new(
                labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
                [labels.len()],
            ),
            device,
        );
        let shard = match (&self.deal, indices.first()) {
            (Some(deal), Some(&first)) => deal.shard_of(first),
            _ => 0,
        };
        Ok(Batch {
            images: self.set.tensor(&indices, device)?,
            targets,
            labels,
            indices,
            shard,
        })
    }
}

/// burn's data loader over `set`: batches of `batch` images, assembled (and, for class folders,
/// decoded) in `workers` threads, in the order `order`.
pub fn loader<B: Backend>(
    set: &Arc<Images>,
    batch: usize,
    workers: usize,
    order: Order,
    device: &B::Device,
) -> Arc<dyn DataLoader<B, Batch<B>>> {
    let (batcher, dataset) = match &order {
        Order::Dealt(deal) => (
            ImageBatcher::dealt(Arc::clone(set), Arc::clone(deal)),
            IndexDataset::dealt(Arc::clone(deal)),
        ),
        _ => (
            ImageBatcher::new(Arc::clone(set)),
            IndexDataset::new(set.len()),
        ),
    };
    let mut builder = DataLoaderBuilder::new(batcher)
        .batch_size(batch)
        .num_workers(workers)
        .set_device(device.clone());
    if let Order::Shuffled(seed) = order {
        builder = builder.shuffle(seed);
    }
    builder.build(dataset)
}

impl<B: Backend> Batcher<B, Item, Batch<B>> for ImageBatcher {
    fn batch(&self, items: Vec<Item>, device: &B::Device) -> Batch<B> {
        self.make(items, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_folder_without_the_data_is_an_error_naming_it() {
        let empty = std::env::temp_dir().join(format!("salaug-no-data-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let cache = salaug_spec::data::cache_dir();
        let e = locate(DatasetKind::FashionMnist, Some(&empty))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&empty.display().to_string()), "{e}");
        assert!(
            !e.contains(salaug_spec::data::DEBIAN_FASHION_MNIST),
            "no fallback to system folders: {e}"
        );
        assert!(!e.contains(&cache.display().to_string()), "{e}");
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn a_held_out_split_is_disjoint_seeded_and_sized_as_asked() {
        use crate::config::Holdout;
        let set = Images::Memory(ImageSet {
            pixels: (0..50u8).collect(),
            labels: (0..50).map(|i| i % 5).collect(),
            shape: [1, 1, 1],
            classes: 5,
        });
        let (rest, held) = set.hold_out(10, 7);
        assert_eq!((rest.len(), held.len()), (40, 10));
        let pixels =
            |s: &Images| -> Vec<u8> { (0..s.len()).map(|i| s.image(i).unwrap()[0]).collect() };
        let (r, h) = (pixels(&rest), pixels(&held));
        assert!(h.iter().all(|p| !r.contains(p)), "disjoint");
        let mut all = [r.clone(), h.clone()].concat();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..50u8).collect::<Vec<_>>(),
            "together, every image once"
        );
        assert!(h.windows(2).all(|w| w[0] < w[1]), "in the original order");
        assert_ne!(
            h,
            (0..10u8).collect::<Vec<_>>(),
            "drawn, not the first ones"
        );
        assert_eq!(
            pixels(&set.hold_out(10, 7).1),
            h,
            "the same seed, the same split"
        );
        assert_eq!(Holdout::Fraction(0.1).of(50).unwrap(), 5);
        assert_eq!(Holdout::Count(48).of(50).unwrap(), 48);
        let e = Holdout::Count(49).of(50).unwrap_err().to_string();
        assert!(e.contains("at least 2 must be left"), "{e}");
    }
}

//! `cargo xtask bench data`: how fast the class-folder data path feeds the training step.
//!
//! Writes a class-folder set of JPEGs (or reads `SALAUG_BENCH_DATA`), then measures, in one
//! run:
//! 1. images/s decoded: an epoch through burn's data loader with `train.workers` threads (the
//!    files read, resized, centre-cropped and batched, as `salaug train` reads them);
//! 2. images/s decoded and augmented: the same, with the run's augmentation applied to each
//!    batch (as the step does, on the main thread);
//! 3. the step's own images/s: `salaug time`'s measurement of the training step on the same
//!    data (originals per second; each step also runs their augmented copies).
//!
//! ```text
//! SALAUG_BENCH_IMAGES=4096 SALAUG_BENCH_SIZE=64 SALAUG_BENCH_ARCH=small_cnn \
//!     cargo run --release -p salaug-train --example bench_data
//! ```

use std::path::PathBuf;
use std::time::Instant;

use rand::{rngs::StdRng, SeedableRng};
use salaug_train::backend::Selected;
use salaug_train::data::{load_data, loader, write_synthetic, Batch, Order};
use salaug_train::timing::time_steps;
use salaug_train::RunConfig;

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One epoch through the loader; with `augment`, the run's augmentation on every batch.
/// Returns images per second.
fn epoch(config: &RunConfig, augment: bool) -> f64 {
    let data = load_data(&config.data).expect("the generated set loads");
    let device = Default::default();
    let loader = loader::<Selected>(
        &data.train,
        config.train.batch_size,
        config.train.workers,
        Order::Shuffled(1),
        &device,
    );
    let started = Instant::now();
    let mut images = 0;
    let mut rng = StdRng::seed_from_u64(0);
    for batch in loader.iter() {
        let batch: Batch<Selected> = batch;
        images += batch.labels.len();
        if augment {
            let out = config
                .augment
                .run(batch.images, &mut rng)
                .expect("the augmentation runs");
            // Wait for the result (lazy backends).
            let _ = out.images.into_data();
        }
    }
    images as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let images = env("SALAUG_BENCH_IMAGES", 4096usize);
    let size = env("SALAUG_BENCH_SIZE", 64usize);
    let arch = env("SALAUG_BENCH_ARCH", "small_cnn".to_string());
    let workers = env("SALAUG_BENCH_WORKERS", 2usize);
    let batch = env("SALAUG_BENCH_BATCH", 32usize);
    let tmp;
    let root: PathBuf = match std::env::var("SALAUG_BENCH_DATA") {
        Ok(dir) => dir.into(),
        Err(_) => {
            tmp = tempfile::tempdir().expect("a temporary folder");
            let side = (size as f64 / 0.875).round() as u32 + 8;
            eprintln!(
                "writing {images} JPEGs of {side}×{side} to {}",
                tmp.path().display()
            );
            write_synthetic(tmp.path(), images, 100, 10, side).expect("write the JPEGs");
            tmp.path().to_path_buf()
        }
    };
    let config = RunConfig::parse(
        "[data]\ndataset = \"image_folder\"\n",
        &[
            format!("data.dir = \"{}\"", root.display()),
            format!("data.folder_size = {size}"),
            format!("model.arch = \"{arch}\""),
            "model.stem = \"small\"".into(),
            "train.strategy = \"sal\"".into(),
            format!("train.batch_size = {batch}"),
            format!("train.workers = {workers}"),
            "augment = {kind = \"rotation\", p = 1.0, max_degrees = 10.0}".into(),
        ],
    )
    .expect("a valid bench config");
    let decoded = epoch(&config, false);
    let augmented = epoch(&config, true);
    let timing = time_steps::<Selected>(config.clone(), 1, 3, false, &Default::default())
        .expect("the step runs");
    let step = timing.batch as f64 / (timing.median_ms / 1e3);
    println!("| {images} JPEGs at {size}×{size}, {workers} workers, batch {batch} | images/s |");
    println!("|---|---|");
    println!("| decoded (loader) | {decoded:.0} |");
    println!("| decoded + rotation | {augmented:.0} |");
    println!(
        "| {arch} saliency step (originals/s; median {:.0} ms) | {step:.1} |",
        timing.median_ms
    );
    println!(
        "The loader feeds the step {:.0}× faster than it consumes.",
        augmented / step
    );
}

//! Training on several devices (burn's MultiDevice strategy, the CPU device listed twice) on
//! real Fashion-MNIST: one step of two devices is the documented update, and a run directory
//! belongs to one process at a time.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use salaug_train::backend::{parse_devices, Selected};
use salaug_train::data::{load_data, ImageBatcher, Order};
use salaug_train::run::{load_run, train, RunDir};
use salaug_train::trainee::{build_model, Trainee};
use salaug_train::RunConfig;

mod common;
use common::{floats, grad_of, require_data, ONE_STEP};

type AB = Autodiff<Selected>;

/// [`ONE_STEP`] on two devices with one batch of 4 each: one optimiser step.
fn two_device_config() -> RunConfig {
    RunConfig::parse(ONE_STEP, &["train.devices = [\"cpu\", \"cpu\"]".into()]).unwrap()
}

/// The gradient of `model`'s step loss on `batch`, by parameter.
fn gradient(model: &Trainee<AB>, batch: &salaug_train::data::Batch<AB>) -> GradientsParams {
    let l = model.losses(batch).unwrap();
    GradientsParams::from_grads(l.total.backward(), model)
}

#[test]
fn two_devices_train_the_mean_of_their_gradients_and_shard_0_keeps_the_running_statistics() {
    require_data();
    let config = two_device_config();
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir::lock(&tmp.path().join("run")).unwrap();
    let devices = parse_devices(&config.train.devices).unwrap();
    train::<Selected>(config.clone(), &run, false, &devices, None).unwrap();
    let (_, _, trained) = load_run::<Selected>(run.path(), &devices[0]).unwrap();

    // The same step by hand: the initial model, the epoch's deal, each shard's gradient.
    let data = load_data(&config.data).unwrap();
    let device = &devices[0];
    let model = build_model::<AB>(&config, &data, device).unwrap();
    let Order::Dealt(deal) = Order::of_epoch(8, 2, config.seed, 1) else {
        panic!("two devices deal their epoch");
    };
    let batcher = ImageBatcher::dealt(data.train.clone(), deal.clone());
    let batch = |s: usize| batcher.make::<AB>(deal.shard(s).to_vec(), device);
    let (b0, b1) = (batch(0), batch(1));
    assert_eq!((b0.shard, b1.shard), (0, 1));
    let before = floats(&model.valid());
    let g0 = gradient(&model, &b0);
    // After shard 0's step: its running statistics (the parameters are unchanged).
    let after0 = floats(&model.valid());
    let g1 = gradient(&Trainee::from_inner(model.valid()), &b1);

    let lr = config.train.lr as f32;
    let got = floats(&trained);
    assert_eq!(got.len(), before.len());
    let (mut moved, mut worst, mut params) = (0.0f32, 0.0f32, 0);
    for (((id, w0), (_, stat0)), (_, w)) in before.iter().zip(&after0).zip(&got) {
        let grads = grad_of(&g0, *id).zip(grad_of(&g1, *id));
        let is_param = grads.is_some();
        for i in 0..w0.len() {
            let expected = match &grads {
                Some((a, b)) => w0[i] - lr * (a[i] + b[i]) / 2.0,
                None => stat0[i],
            };
            worst = worst.max((w[i] - expected).abs() / (1.0 + expected.abs()));
            moved = moved.max((w[i] - w0[i]).abs());
        }
        params += is_param as usize;
    }
    assert!(params >= 4, "{params} parameter tensors");
    assert!(
        moved > 1e-3,
        "the step moved the weights by at most {moved}"
    );
    assert!(
        worst < 1e-5,
        "two devices: weights differ from w - lr·(g0 + g1)/2 (and the running statistics \
         from shard 0's) by {worst:e}"
    );
}

#[test]
fn a_second_process_on_a_run_directory_fails_at_once_and_the_first_run_is_intact() {
    require_data();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ci-fmnist.toml");
    let start = |seed: &str| {
        Command::new(env!("CARGO_BIN_EXE_salaug"))
            .args(["train", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&dir)
            .args([
                "--set",
                "data.train_limit=200",
                "--set",
                "data.test_limit=100",
            ])
            .args(["--set", "metrics.held_out_images=0", "--set", seed])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = start("seed=1");
    // Wait (bounded) until the first holds the lock: it writes its pid into the lock file.
    let lock = dir.join(".lock");
    let waited = Instant::now();
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != first.id().to_string() {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the first run never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let second = start("seed=2").wait_with_output().unwrap();
    let refused_in = started.elapsed();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is in use") && err.contains(&format!("process {}", first.id())),
        "{err}"
    );
    assert!(
        refused_in < Duration::from_secs(10),
        "refused after {refused_in:?}"
    );

    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // Two epochs of the first run's seed, nothing of the second.
    let rows = salaug_train::metrics::read_metrics(&dir).unwrap();
    assert_eq!(rows.iter().map(|m| m.epoch).collect::<Vec<_>>(), [1, 2]);
    let resolved = RunConfig::load(&dir.join("config.toml"), &[]).unwrap();
    assert_eq!(resolved.seed, 1);
    let log = std::fs::read_to_string(dir.join("train.log")).unwrap();
    assert!(!log.contains("is in use"), "the second wrote into the log");
}

//! End-to-end runs of the `salaug` binary on real Fashion-MNIST (Debian package
//! `dataset-fashion-mnist`, which `.ci/run` installs).
//!
//! The runs are serialised (one lock): they share the two cores and the backend's seed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::backend::Autodiff;
use salaug_train::backend::Selected;
use salaug_train::metrics::{evaluate, read_metrics};
use salaug_train::run::load_run;

static LOCK: Mutex<()> = Mutex::new(());

const FMNIST: &str = salaug_spec::data::DEBIAN_FASHION_MNIST;

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ci-fmnist.toml")
}

fn require_data() {
    assert!(
        Path::new(FMNIST).join("t10k-images-idx3-ubyte.gz").exists(),
        "these tests need real Fashion-MNIST: apt-get install dataset-fashion-mnist"
    );
}

fn salaug(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_salaug"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the salaug binary runs")
}

/// `train --config ci-fmnist.toml --out DIR --set …`.
fn train_args(dir: &Path, sets: &[&str]) -> Vec<String> {
    let mut args = vec![
        "train".to_string(),
        "--config".into(),
        config().display().to_string(),
        "--out".into(),
        dir.display().to_string(),
    ];
    for s in sets {
        args.push("--set".into());
        args.push(s.to_string());
    }
    args
}

fn train(dir: &Path, sets: &[&str]) -> Output {
    let args = train_args(dir, sets);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    salaug(&args)
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "salaug failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ref_and_sal_learn_fashion_mnist_and_sal_is_more_consistent() {
    require_data();
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (r, s) = (tmp.path().join("ref"), tmp.path().join("sal"));
    ok(&train(&r, &["train.strategy=ref"]));
    ok(&train(&s, &["train.strategy=sal"]));
    let (mr, ms) = (read_metrics(&r).unwrap(), read_metrics(&s).unwrap());
    let (lr, ls) = (mr.last().unwrap(), ms.last().unwrap());
    eprintln!("ref: {lr:?}\nsal: {ls:?}");
    assert!(lr.test_acc >= 0.70, "ref test accuracy {}", lr.test_acc);
    assert!(ls.test_acc >= 0.70, "sal test accuracy {}", ls.test_acc);
    assert!(
        ls.consistency < lr.consistency,
        "sal should lower the saliency-consistency distance: ref {} sal {}",
        lr.consistency,
        ls.consistency
    );
    assert!(ls.train_sal > 0.0 && lr.train_sal == 0.0);
    // The held-out measures were taken, and the trained networks' gradient maps order pixels
    // better than chance: removing the most salient pixels first lowers the label's
    // probability faster than a random order, and revealing them first raises it faster.
    for m in [lr, ls] {
        let h = &m.held_out;
        for v in [
            h.aug_acc,
            h.panel_acc,
            h.map_iou,
            h.deletion_auc,
            h.insertion_auc,
        ] {
            assert!((0.0..=1.0).contains(&v), "{h:?}");
        }
        assert!((-1.0..=1.0).contains(&h.map_spearman), "{h:?}");
        assert!(h.deletion_auc < h.deletion_auc_random, "{h:?}");
        assert!(h.insertion_auc > h.insertion_auc_random, "{h:?}");
    }

    // BatchNorm running statistics were updated and saved: evaluation-mode accuracy of the
    // saved model is in line with its batch-statistics (training-mode) accuracy.
    let device = Default::default();
    let (_, data, model) = load_run::<Autodiff<Selected>>(&s, &device).unwrap();
    let eval_mode = evaluate(
        &burn::module::AutodiffModule::valid(&model),
        &data.test,
        250,
        &device,
    )
    .unwrap();
    let train_mode = evaluate(&model, &data.test, 250, &device).unwrap();
    eprintln!("eval-mode {eval_mode} train-mode {train_mode}");
    assert!(
        (eval_mode - ls.test_acc).abs() < 1e-9,
        "eval reproduces the metrics row"
    );
    assert!(
        (eval_mode - train_mode).abs() < 0.05,
        "eval-mode {eval_mode} vs batch-statistics {train_mode}"
    );

    // `salaug eval` and `salaug saliency` on the finished run.
    let out = salaug(&["eval", "--run", s.to_str().unwrap()]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("clean acc. (%)"));
    let maps = tmp.path().join("maps");
    ok(&salaug(&[
        "saliency",
        "--run",
        r.to_str().unwrap(),
        s.to_str().unwrap(),
        "--test",
        "2",
        "--out",
        maps.to_str().unwrap(),
    ]));
    let pngs: Vec<_> = std::fs::read_dir(&maps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    assert_eq!(
        pngs.len(),
        7,
        "image, map and overlay for 2 images, and the grid"
    );
    for p in &pngs {
        image::open(p).expect("a readable PNG");
    }
    // The grid: 2 rows; the image and 4 columns per run, for the two runs.
    let grid = image::open(maps.join("grid.png")).unwrap();
    let tile = 112 / 28 * 28 + 4;
    assert_eq!(grid.height(), 2 * tile);
    assert_eq!(grid.width(), 9 * tile + 2 * 4);
    let legend = std::fs::read_to_string(maps.join("grid.txt")).unwrap();
    assert!(
        legend.contains("/ref]") && legend.contains("/sal]"),
        "{legend}"
    );
    // Training curves of both runs as one SVG.
    let svg = tmp.path().join("curves.svg");
    ok(&salaug(&[
        "plot",
        "--run",
        r.to_str().unwrap(),
        s.to_str().unwrap(),
        "--out",
        svg.to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("insertion AUC"),
        "{}",
        &text[..200.min(text.len())]
    );
    // Bad input is an error, not a panic or a half-written file.
    let out = salaug(&[
        "plot",
        "--run",
        tmp.path().join("nothing").to_str().unwrap(),
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no finished epoch"));
    let out = salaug(&[
        "saliency",
        "--run",
        s.to_str().unwrap(),
        "--test",
        "1",
        "--transform",
        "twirl",
        "--out",
        maps.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--transform"));
}

/// The method and the held-out L_sal distance that `salaug eval` prints.
fn eval_distance(run: &Path, method: Option<&str>) -> (String, f64) {
    let mut args = vec!["eval", "--run", run.to_str().unwrap()];
    args.extend(method.map(|m| ["--method", m]).into_iter().flatten());
    let out = salaug(&args);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let name = text
        .split("saliency method ")
        .nth(1)
        .and_then(|t| t.split_once(':'))
        .unwrap_or_else(|| panic!("no method in {text}"))
        .0;
    let measure = salaug_spec::measures::by_key("consistency").unwrap();
    let value = text
        .split(&format!("{} ", measure.head))
        .nth(1)
        .unwrap_or_else(|| panic!("no distance in {text}"))
        .split(',')
        .next()
        .unwrap();
    // Printed as the table shows it: times the measure's scale.
    let value: f64 = value.trim().parse().unwrap();
    (name.to_string(), value / measure.scale)
}

/// Guided backpropagation, DeconvNet, Grad-CAM, guided Grad-CAM and SmoothGrad (around the
/// gradient, 2 samples) each train on Fashion-MNIST (the CI config) and lower their own
/// held-out L_sal distance against their `ref` twin (same seed; its distance is measured with
/// the same method). SmoothGrad around the guided map did not, in runs of this size
/// (docs/method.md). `salaug eval --method` measures a run with another method,
/// and `salaug saliency --method` draws every method's maps.
#[test]
fn every_saliency_method_trains_and_lowers_its_own_held_out_distance() {
    require_data();
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    // The methods that use the model's hooks (from the library's one list), by name, and
    // SmoothGrad with 2 samples.
    let mut methods: Vec<(String, String)> = salaug_core::SaliencyKind::every()
        .iter()
        .filter(|k| k.uses_hooks())
        .map(|k| (k.name(), format!("\"{}\"", k.name())))
        .collect();
    methods.push((
        "smooth_grad".into(),
        "{ smooth_grad = { of = \"gradient\", samples = 2 } }".into(),
    ));
    let mut report = Vec::new();
    for (name, method) in methods {
        let set = format!("loss.method={method}");
        let (r, s) = (
            tmp.path().join(format!("ref-{name}")),
            tmp.path().join(format!("sal-{name}")),
        );
        ok(&train(&r, &["train.strategy=ref", &set]));
        ok(&train(&s, &["train.strategy=sal", &set]));
        let (lr, ls) = (
            read_metrics(&r).unwrap().pop().unwrap(),
            read_metrics(&s).unwrap().pop().unwrap(),
        );
        report.push(format!(
            "{name}: ref {:.5} ({:.1}%) sal {:.5} ({:.1}%)",
            lr.consistency,
            100.0 * lr.test_acc,
            ls.consistency,
            100.0 * ls.test_acc
        ));
        eprintln!("{}", report.last().unwrap());
        assert!(ls.train_sal > 0.0, "{name}: L_sal was trained");
        assert!(
            ls.test_acc >= 0.70,
            "{name}: sal test accuracy {}",
            ls.test_acc
        );
        assert!(
            ls.consistency < lr.consistency,
            "{name}: sal should lower its own held-out distance: {}",
            report.last().unwrap()
        );
    }
    // The ref twins differ only in the method of their metrics: `eval --method` on one
    // reproduces another's row.
    let guided_ref = tmp.path().join("ref-guided_backprop");
    let cam_row = read_metrics(&tmp.path().join("ref-grad_cam"))
        .unwrap()
        .pop()
        .unwrap();
    let (name, value) = eval_distance(&guided_ref, Some("grad_cam"));
    assert_eq!(name, "grad_cam");
    assert!(
        (value - cam_row.consistency).abs() < 1e-5,
        "eval --method grad_cam {value} vs the grad_cam twin's {}",
        cam_row.consistency
    );
    assert_eq!(eval_distance(&guided_ref, None).0, "guided_backprop");
    // Every method's maps of two runs in one grid.
    let maps = tmp.path().join("maps");
    ok(&salaug(&[
        "saliency",
        "--run",
        guided_ref.to_str().unwrap(),
        tmp.path().join("sal-grad_cam").to_str().unwrap(),
        "--test",
        "3",
        "--out",
        maps.to_str().unwrap(),
        "--method",
        "gradient",
        "guided_backprop",
        "deconvnet",
        "grad_cam:block1",
        "guided_grad_cam",
    ]));
    let grid = image::open(maps.join("methods.png")).unwrap();
    let tile = 112 / 28 * 28 + 4;
    assert_eq!(grid.height(), 3 * tile);
    assert_eq!(grid.width(), 11 * tile + 2 * 4, "the image and 2 × 5 maps");
    let legend = std::fs::read_to_string(maps.join("methods.txt")).unwrap();
    assert!(
        legend.contains("ref-guided_backprop] grad_cam:block1")
            && legend.contains("sal-grad_cam] guided_grad_cam"),
        "{legend}"
    );
    // Bad methods are errors that name them.
    let out = salaug(&[
        "saliency",
        "--run",
        guided_ref.to_str().unwrap(),
        "--test",
        "1",
        "--out",
        maps.to_str().unwrap(),
        "--method",
        "grad_cam:nope",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("block2"), "{err}");
    let out = salaug(&[
        "eval",
        "--run",
        guided_ref.to_str().unwrap(),
        "--method",
        "guided",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("saliency method"));
    let out = train(
        &tmp.path().join("bad-layer"),
        &["loss.method={ grad_cam = { layer = \"conv9\" } }"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("conv9") && err.contains("block2"), "{err}");
    eprintln!("{}", report.join("\n"));
}

#[test]
fn a_killed_run_resumes_and_gives_the_same_results() {
    require_data();
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let small = [
        "train.strategy=sal",
        "data.train_limit=256",
        "data.test_limit=128",
        "metrics.consistency_images=64",
        "train.epochs=3",
    ];
    let whole = tmp.path().join("whole");
    ok(&train(&whole, &small));

    let killed = tmp.path().join("killed");
    let args = train_args(&killed, &small);
    let child = Arc::new(Mutex::new(
        Command::new(env!("CARGO_BIN_EXE_salaug"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    ));
    let started = Instant::now();
    loop {
        if read_metrics(&killed).map(|m| m.len()).unwrap_or(0) >= 1 {
            child.lock().unwrap().kill().unwrap();
            break;
        }
        if let Some(status) = child.lock().unwrap().try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "no first epoch"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.lock().unwrap().wait().unwrap();
    let before = read_metrics(&killed).unwrap().len();
    assert!(before < 3, "killed before the end");

    // Without --resume the directory is refused; with it the run finishes.
    let refused = train(&killed, &small);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
    ok(&salaug(&["train", "--resume", killed.to_str().unwrap()]));
    let (a, b) = (
        read_metrics(&whole).unwrap(),
        read_metrics(&killed).unwrap(),
    );
    assert_eq!(b.iter().map(|m| m.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.train_loss, x.test_acc, x.consistency),
            (y.train_loss, y.test_acc, y.consistency),
            "epoch {}: same seed, same results",
            x.epoch
        );
    }
}

/// A run that holds out a validation split, keeps its best epoch by the held-out L_sal
/// distance and stops early when validation accuracy stalls (calibrated: it stops after
/// epoch 3 of 8 and keeps epoch 1).
const SELECTING: [&str; 9] = [
    "data.train_limit=400",
    "data.test_limit=200",
    "data.validation=80",
    "metrics.consistency_images=64",
    "metrics.held_out_images=0",
    "train.epochs=8",
    "train.keep=\"best:consistency\"",
    "train.early_stop={measure=\"test_acc\", patience=1, min_delta=0.06}",
    "train.log_every=5",
];

#[test]
fn validation_best_model_and_early_stopping_end_to_end_and_after_a_kill() {
    require_data();
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let out = Command::new(env!("CARGO_BIN_EXE_salaug"))
        .args(train_args(&whole, &SELECTING))
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    ok(&out);
    let rows = read_metrics(&whole).unwrap();
    let stop = rows.len();
    assert!((2..8).contains(&stop), "stopped early: {stop} epochs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train.early_stop: test_acc has not improved"),
        "{err}"
    );
    assert!(
        err.contains("validation: "),
        "a held-out bar or line: {err}"
    );
    assert!(err.contains("images/s") && err.contains("ETA"), "{err}");
    // The kept epoch is the one with the lowest validation distance; result.csv holds the
    // kept model's test-set measures, which differ from its validation row.
    let best = salaug_train::select::best(&rows, "consistency").unwrap();
    let result = salaug_spec::metrics::result(&whole).unwrap().unwrap();
    assert_eq!(result.epoch, best.epoch);
    let row = &rows[best.epoch - 1];
    assert_eq!(result.train_loss, row.train_loss);
    // The test accuracy of model.mpk is the result's.
    let device = Default::default();
    let (_, data, model) = load_run::<Selected>(&whole, &device).unwrap();
    assert_eq!(data.validation.as_ref().map(|v| v.len()), Some(80));
    assert_eq!(data.train.len(), 320);
    let acc = evaluate(&model, &data.test, 100, &device).unwrap();
    assert!(
        (acc - result.test_acc).abs() < 1e-6,
        "{acc} {}",
        result.test_acc
    );
    // ...and its validation accuracy is the kept epoch's row: the rows measure validation.
    let validation = data.validation.as_ref().unwrap();
    let val_acc = evaluate(&model, validation, 100, &device).unwrap();
    assert!(
        (val_acc - row.test_acc).abs() < 1e-6,
        "{val_acc} {}",
        row.test_acc
    );

    // Killed after its first epoch and resumed: the same epochs, stop and kept model.
    let killed = tmp.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_salaug"))
        .args(train_args(&killed, &SELECTING))
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let started = Instant::now();
    while read_metrics(&killed).map(|m| m.len()).unwrap_or(0) < 1 {
        assert!(child.try_wait().unwrap().is_none(), "ended before the kill");
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no first epoch"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = read_metrics(&killed).unwrap().len();
    assert!(
        at_kill < stop,
        "killed before the stop ({at_kill} of {stop})"
    );
    ok(&salaug(&["train", "--resume", killed.to_str().unwrap()]));
    let again = read_metrics(&killed).unwrap();
    assert_eq!(again.len(), stop);
    for (a, b) in rows.iter().zip(&again) {
        assert_eq!((a.train_loss, a.test_acc), (b.train_loss, b.test_acc));
    }
    let mut resumed = salaug_spec::metrics::result(&killed).unwrap().unwrap();
    resumed.seconds = result.seconds;
    assert_eq!(resumed.csv_row(), result.csv_row(), "but for the wall time");
    // model.mpk holds the kept model (its test accuracy is the result's).
    let (_, _, model) = load_run::<Selected>(&killed, &device).unwrap();
    let again_acc = evaluate(&model, &data.test, 100, &device).unwrap();
    assert_eq!(again_acc, acc, "the same kept model");
    // Resuming a run that has ended does nothing.
    ok(&salaug(&["train", "--resume", killed.to_str().unwrap()]));
    assert_eq!(read_metrics(&killed).unwrap().len(), stop);
}

#[test]
fn a_non_finite_loss_stops_the_run_at_its_step_naming_the_term() {
    require_data();
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("diverged");
    let out = train(
        &dir,
        &[
            "data.train_limit=400",
            "data.test_limit=100",
            "train.lr=1e4",
            "train.log_every=4",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: epoch 1 step "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("is not finite"), "{line}");
    assert!(
        ["L_class", "L_sal", "L_inv", "L "]
            .iter()
            .any(|t| line.contains(t)),
        "{line}"
    );
    let step: usize = line["error: epoch 1 step ".len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Found by the reads every 4 steps: it stops within 4 steps of it, long before the end
    // of the epoch (25 steps).
    assert!(step < 20, "{line}");
    assert!(
        read_metrics(&dir).unwrap().is_empty(),
        "nothing of the epoch is kept"
    );
    assert!(!dir.join("model.mpk").exists());
}

/// `sal` with the finite-difference L_sal gradient trains end to end through `salaug train`
/// (a finite, non-zero L_sal in every row, the result written); a method it cannot serve is a
/// config error before training, naming the key to change.
#[test]
fn the_finite_difference_path_trains_end_to_end() {
    require_data();
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fd");
    let small = [
        "data.train_limit=400",
        "data.test_limit=100",
        "train.strategy=\"sal\"",
    ];
    let fd = "loss.second_order={finite_difference={}}";
    let out = train(&dir, &[small[0], small[1], small[2], fd]);
    ok(&out);
    let rows = read_metrics(&dir).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(r.train_sal.is_finite() && r.train_sal > 0.0, "{r:?}");
    }
    // Ten classes: chance is 0.1.
    assert!(rows[1].test_acc > 0.2, "{:?}", rows[1]);
    assert!(dir.join("result.csv").exists());
    let bad = tmp.path().join("bad");
    let out = train(
        &bad,
        &[
            small[0],
            small[1],
            small[2],
            fd,
            "loss.method=\"guided_backprop\"",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loss.second_order = \"exact\""), "{err}");
    assert!(!bad.join("metrics.csv").exists());
}

/// `salaug step`: a record agrees with itself exactly; a record with one gradient doctored, of
/// another config, or not a record at all is refused with a message and a non-zero exit.
#[test]
fn a_step_record_agrees_with_itself_and_a_doctored_one_is_refused() {
    use salaug_train::parity::StepRecord;
    require_data();
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).display().to_string();
    let cfg = config().display().to_string();
    let step = |out: &str, extra: &[&str]| {
        let mut args = vec!["step", "--config", &cfg, "--set", "train.strategy=\"sal\""];
        args.extend(["--out", out]);
        args.extend(extra);
        salaug(&args)
    };
    let first = path("first.safetensors");
    ok(&step(&first, &[]));
    let record = StepRecord::read(Path::new(&first)).unwrap();
    for key in [
        "loss/total",
        "loss/class",
        "loss/sal",
        "param/model.SmallCnn.fc.weight",
    ] {
        assert!(
            record.tensors.contains_key(key),
            "{key}: {:?}",
            record.tensors.keys()
        );
    }

    let again = step(&path("again.safetensors"), &["--against", &first]);
    ok(&again);
    let agreement =
        salaug_spec::StepAgreement::from_output(&String::from_utf8_lossy(&again.stdout)).unwrap();
    assert!(agreement.agree, "{agreement:?}");
    assert_eq!(agreement.grad_rel, 0.0, "{agreement:?}");
    assert!(
        agreement.losses.iter().all(|(_, e)| *e == 0.0),
        "{agreement:?}"
    );
    assert_eq!(agreement.params, record.under_count("grad/"));
    assert!(agreement.params >= 8, "{agreement:?}");

    let mut doctored = record.clone();
    let fc = "grad/model.SmallCnn.fc.weight";
    let g = &mut doctored.tensors.get_mut(fc).unwrap().1;
    g.iter_mut().for_each(|v| *v *= 2.0);
    let doctored_path = path("doctored.safetensors");
    doctored.write(Path::new(&doctored_path)).unwrap();
    let out = step(&path("d.safetensors"), &["--against", &doctored_path]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("disagrees") && err.contains("model.SmallCnn.fc.weight"),
        "{err}"
    );
    let said = salaug_spec::StepAgreement::from_output(&String::from_utf8_lossy(&out.stdout));
    assert!(!said.unwrap().agree);

    let out = step(
        &path("other.safetensors"),
        &["--against", &first, "--set", "train.batch_size=8"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("different configs"), "{err}");

    let junk = path("junk.safetensors");
    std::fs::write(&junk, b"not a record").unwrap();
    let out = step(&path("j.safetensors"), &["--against", &junk]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a `salaug step` record"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn corrupt_data_and_bad_config_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // A truncated IDX image file next to a good label file.
    let data = tmp.path().join("fm");
    std::fs::create_dir(&data).unwrap();
    for split in ["train", "t10k"] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        use std::io::Write;
        gz.write_all(&[0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2, 3])
            .unwrap();
        std::fs::write(
            data.join(format!("{split}-images-idx3-ubyte.gz")),
            gz.finish().unwrap(),
        )
        .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[0, 0, 8, 1, 0, 0, 0, 10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
            .unwrap();
        std::fs::write(
            data.join(format!("{split}-labels-idx1-ubyte.gz")),
            gz.finish().unwrap(),
        )
        .unwrap();
    }
    let dir = format!("data.dir=\"{}\"", data.display());
    let out = train(&tmp.path().join("run"), &[&dir]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("train-images-idx3-ubyte.gz") && err.contains("truncated"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!tmp.path().join("run/metrics.csv").exists());

    for (set, key) in [("train.lr=-1", "train.lr"), ("augment.p=1.5", "p")] {
        let out = train(&tmp.path().join("run2"), &[set]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set}");
        assert!(
            err.contains(key) && !err.contains("panicked"),
            "{set}: {err}"
        );
    }
    let out = salaug(&["train", "--resume", tmp.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a run directory"));
}

/// A class-folder (ImageNet-style) set trains end to end through the streamed data path, with
/// SmoothGrad as the saliency method; a file that is not an image is an error before training
/// that names it.
#[test]
fn a_class_folder_set_trains_end_to_end_and_a_bad_file_is_named() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("folders");
    salaug_train::data::write_synthetic(&data, 64, 20, 4, 40).unwrap();
    let sets = [
        "data.dataset=\"image_folder\"".to_string(),
        format!("data.dir=\"{}\"", data.display()),
        "data.folder_size=32".into(),
        "train.epochs=1".into(),
        "loss.method={smooth_grad={of=\"gradient\", samples=2}}".into(),
        "metrics.consistency_images=8".into(),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let run = tmp.path().join("run");
    ok(&train(&run, &sets));
    let metrics = read_metrics(&run).unwrap();
    assert_eq!(metrics.len(), 1);
    assert!(metrics[0].train_sal > 0.0 && metrics[0].test_acc.is_finite());

    std::fs::write(data.join("train/c01/broken.jpg"), b"not a jpeg").unwrap();
    let out = train(&tmp.path().join("run2"), &sets);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("broken.jpg") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!tmp.path().join("run2/metrics.csv").exists());
}

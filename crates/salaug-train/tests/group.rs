//! Several processes training one model (`salaug launch --local 2`, burn-collective on
//! loopback) on real Fashion-MNIST: one step of the group is the documented update and the
//! ranks end bit-identical; its sockets listen on loopback only; and each fault (an
//! unreachable orchestrator, ranks with different configs, a rank killed mid-epoch) ends every
//! rank with an error that says what happened, within a bound, after which `--resume`
//! finishes the run as an unbroken one would.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ParamId};
use burn::optim::GradientsParams;
use burn::record::Recorder;
use salaug_train::backend::Selected;
use salaug_train::data::{load_data, ImageBatcher, Order};
use salaug_train::run::{load_run, ModelRecorder};
use salaug_train::trainee::{build_model, Trainee};
use salaug_train::RunConfig;

mod common;
use common::{floats, grad_of, require_data, ONE_STEP};

type AB = Autodiff<Selected>;

/// The tests start processes that train on both cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A short real run: 400 images, 2 epochs of 13 steps per rank.
const SHORT: &str = r#"
seed = 5
[data]
dataset = "fashion_mnist"
train_limit = 400
test_limit = 100
[model]
arch = "small_cnn"
stem = "small"
width = 0.5
[augment]
kind = "rotation"
max_degrees = 10.0
p = 1.0
[train]
strategy = "sal"
epochs = 2
batch_size = 16
lr = 0.05
optimizer = { kind = "sgd", momentum = 0.9, nesterov = true, weight_decay = 5e-4 }
schedule = { kind = "cosine" }
[loss]
beta = 10.0
[metrics]
consistency_images = 32
held_out_images = 0
"#;

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn salaug() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_salaug"));
    c.env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A free TCP port on loopback, with the next `n` free too (the ranks' ports), below the
/// ephemeral range (where the ranks' own outgoing connections take their ports). The tests
/// of this file run in parallel in one process: each call takes its own block of ports.
fn free_ports(n: u16) -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 6_000) as u16;
    loop {
        let port = base + 8 * NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if (0..=n).all(|k| std::net::TcpListener::bind(("127.0.0.1", port + k)).is_ok()) {
            return port;
        }
    }
}

/// `salaug train` as rank `rank` of a 2-rank group whose orchestrator is on loopback `port`,
/// with one `--set`, `--group-timeout 60` and, with `listen`, the rank's port beside it.
fn start_rank(config: &Path, run: &Path, set: &str, rank: u16, port: u16, listen: bool) -> Child {
    let mut c = salaug();
    c.args(["train", "--config", config.to_str().unwrap()])
        .args(["--out", run.to_str().unwrap(), "--set", set])
        .args([
            "--world",
            "2",
            "--rank",
            &rank.to_string(),
            "--group-timeout",
            "60",
        ])
        .args(["--orchestrator", &format!("127.0.0.1:{port}")]);
    if listen {
        c.args(["--listen", &format!("127.0.0.1:{}", port + 1 + rank)]);
    }
    c.spawn().unwrap()
}

/// Waits for `child`, at most `limit` (then kills it and fails the test).
fn finish(mut child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `salaug launch --local 2 [--port P] -- train <args>`, waited for (at most `limit`).
fn launch(port: Option<u16>, args: &[&str], limit: Duration) -> Output {
    let mut c = salaug();
    c.args(["launch", "--local", "2"]);
    if let Some(p) = port {
        c.args(["--port", &p.to_string()]);
    }
    c.arg("--").arg("train").args(args);
    finish(c.spawn().unwrap(), limit, "salaug launch")
}

/// A checkpointed model of a run directory (`checkpoint/model-<epoch>.mpk`).
fn checkpoint(dir: &Path, config: &RunConfig, epoch: usize) -> Trainee<Selected> {
    let device = Default::default();
    let data = load_data(&config.data).unwrap();
    let model = build_model::<Selected>(config, &data, &device).unwrap();
    let file = dir.join("checkpoint").join(format!("model-{epoch}"));
    model.load_record(ModelRecorder::new().load(file, &device).unwrap())
}

#[test]
fn two_ranks_train_the_mean_of_their_gradients_and_end_bit_identical() {
    require_data();
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let config_file = write_config(tmp.path(), ONE_STEP);
    let run = tmp.path().join("run");
    let out = launch(
        None,
        &[
            "--config",
            config_file.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--group-timeout",
            "120",
        ],
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let device = Default::default();
    let (config, data, trained) = load_run::<Selected>(&run, &device).unwrap();

    // Rank 1 holds rank 0's model, bit for bit, running statistics included.
    let rank0 = floats(&checkpoint(&run, &config, 1));
    let rank1 = floats(&checkpoint(&run.join("rank-1"), &config, 1));
    let bits = |v: &[(ParamId, Vec<f32>)]| -> Vec<Vec<u32>> {
        v.iter()
            .map(|(_, x)| x.iter().map(|f| f.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&rank0), bits(&rank1), "the ranks' checkpoints differ");
    let got = floats(&trained);
    assert_eq!(bits(&got), bits(&rank0), "model.mpk is not the checkpoint");

    // The same step in this process: the initial model (built again for each rank, from the
    // run seed), each rank's images, each one's gradient; w - lr·(g0 + g1)/2, and rank 0's
    // running statistics.
    let n = data.train.len();
    type Floats = Vec<(ParamId, Vec<f32>)>;
    let ranks: Vec<(Floats, GradientsParams, Floats)> = (0..2)
        .map(|rank| {
            let Order::Dealt(deal) = Order::of_rank_epoch(n, 2, rank, config.seed, 1) else {
                panic!("a rank's epoch is dealt");
            };
            let batcher = ImageBatcher::dealt(data.train.clone(), deal.clone());
            let batch = batcher.make::<AB>(deal.shard(0).to_vec(), &device);
            let fresh = build_model::<AB>(&config, &data, &device).unwrap();
            let before = floats(&fresh.valid());
            let l = fresh.losses(&batch).unwrap();
            let g = GradientsParams::from_grads(l.total.backward(), &fresh);
            (before, g, floats(&fresh.valid()))
        })
        .collect();
    let (before, stats0) = (&ranks[0].0, &ranks[0].2);
    assert_eq!(
        bits(before),
        bits(&ranks[1].0),
        "two builds of the initial model differ"
    );
    let lr = config.train.lr as f32;
    let (mut moved, mut worst, mut params) = (0.0f32, 0.0f32, 0);
    for (k, ((_, w0), (_, w))) in before.iter().zip(&got).enumerate() {
        let g = grad_of(&ranks[0].1, ranks[0].0[k].0).zip(grad_of(&ranks[1].1, ranks[1].0[k].0));
        params += g.is_some() as usize;
        for i in 0..w0.len() {
            let expected = match &g {
                Some((a, b)) => w0[i] - lr * (a[i] + b[i]) / 2.0,
                None => stats0[k].1[i],
            };
            worst = worst.max((w[i] - expected).abs() / (1.0 + expected.abs()));
            moved = moved.max((w[i] - w0[i]).abs());
        }
    }
    assert!(params >= 4, "{params} parameter tensors");
    assert!(
        moved > 1e-3,
        "the step moved the weights by at most {moved}"
    );
    assert!(
        worst < 1e-5,
        "two ranks: weights differ from w - lr·(g0 + g1)/2 (and the running statistics from \
         rank 0's) by {worst:e}"
    );
}

/// The local addresses of the TCP sockets listening on `ports`, from /proc/net/tcp and tcp6.
fn listening(ports: &[u16]) -> Vec<(u16, String)> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            let (Some(local), Some("0A")) = (f.get(1), f.get(3).copied()) else {
                continue;
            };
            let (ip, port) = local.rsplit_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            if ports.contains(&port) {
                found.push((port, ip.to_string()));
            }
        }
    }
    found
}

#[test]
fn a_local_launch_listens_on_loopback_only() {
    require_data();
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let config_file = write_config(tmp.path(), SHORT);
    let run = tmp.path().join("run");
    let port = free_ports(2);
    let ports = [port, port + 1, port + 2];
    let mut c = salaug();
    c.args([
        "launch",
        "--local",
        "2",
        "--port",
        &port.to_string(),
        "--",
        "train",
    ])
    .args(["--config", config_file.to_str().unwrap()])
    .args(["--out", run.to_str().unwrap(), "--group-timeout", "120"]);
    let child = c.spawn().unwrap();
    // Poll the socket tables while the group trains, until all three ports listen.
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(120) {
        seen = listening(&ports);
        let mut up: Vec<u16> = seen.iter().map(|(p, _)| *p).collect();
        up.sort();
        up.dedup();
        if up.len() == ports.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = finish(child, Duration::from_secs(300), "salaug launch");
    assert!(out.status.success(), "{}", stderr(&out));
    let mut up: Vec<u16> = seen.iter().map(|(p, _)| *p).collect();
    up.sort();
    up.dedup();
    assert_eq!(up, ports, "not every port was seen listening: {seen:?}");
    // 0100007F is 127.0.0.1 in /proc/net/tcp's byte order.
    for (port, ip) in &seen {
        assert_eq!(
            ip, "0100007F",
            "port {port} listens on {ip}, not on 127.0.0.1"
        );
    }
}

#[test]
fn a_rank_that_cannot_reach_the_orchestrator_fails_in_time_naming_the_address() {
    require_data();
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let config_file = write_config(tmp.path(), SHORT);
    let port = free_ports(2);
    let started = Instant::now();
    let child = salaug()
        .args(["train", "--config", config_file.to_str().unwrap()])
        .args(["--out", tmp.path().join("run").to_str().unwrap()])
        .args(["--world", "2", "--rank", "1", "--group-timeout", "3"])
        .args(["--orchestrator", &format!("127.0.0.1:{port}")])
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(60), "the lone rank");
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot reach the orchestrator at ws://127.0.0.1:{port}"
        )) && err.contains("tried for 3 s"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "failed after {took:?}");
}

#[test]
fn ranks_with_different_configs_refuse_to_start() {
    require_data();
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let config_file = write_config(tmp.path(), SHORT);
    let port = free_ports(2);
    let run = tmp.path().join("run");
    let rank = |r: u16, lr: &str| start_rank(&config_file, &run, lr, r, port, true);
    let (r0, r1) = (rank(0, "train.lr=0.05"), rank(1, "train.lr=0.1"));
    let limit = Duration::from_secs(120);
    let (o0, o1) = (finish(r0, limit, "rank 0"), finish(r1, limit, "rank 1"));
    let (e0, e1) = (stderr(&o0), stderr(&o1));
    assert_eq!(o1.status.code(), Some(1), "{e1}");
    assert!(
        e1.contains("rank 1: its resolved config differs from rank 0's"),
        "{e1}"
    );
    assert_eq!(o0.status.code(), Some(1), "{e0}");
    assert!(
        e0.contains("rank 0: 1 other rank(s) failed the check of resolved config"),
        "{e0}"
    );
    assert!(
        salaug_train::metrics::read_metrics(&run)
            .unwrap()
            .is_empty(),
        "a refused group trained"
    );
}

/// The pid in a run directory's lock file, once a process holds it.
fn holder(dir: &Path, limit: Duration) -> u32 {
    let started = Instant::now();
    loop {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(dir.join(".lock")) {
            let _ = f.read_to_string(&mut text);
        }
        if let Ok(pid) = text.trim().parse() {
            return pid;
        }
        assert!(started.elapsed() < limit, "{} never locked", dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_rank_killed_mid_epoch_stops_the_group_and_resume_finishes_as_an_unbroken_run() {
    require_data();
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let config_file = write_config(tmp.path(), SHORT);
    let unbroken = tmp.path().join("unbroken");
    let args = |out: &Path| -> Vec<String> {
        [
            "--config",
            config_file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let limit = Duration::from_secs(300);
    fn arg_refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let out = launch(None, &arg_refs(&args(&unbroken)), limit);
    assert!(out.status.success(), "{}", stderr(&out));

    // The same run, rank 1 killed during epoch 2 (after epoch 1's metrics row).
    let broken = tmp.path().join("broken");
    let mut c = salaug();
    c.args(["launch", "--local", "2", "--", "train"])
        .args(arg_refs(&args(&broken)));
    let child = c.spawn().unwrap();
    let started = Instant::now();
    while salaug_train::metrics::read_metrics(&broken)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(started.elapsed() < limit, "epoch 1 never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rank1 = holder(&broken.join("rank-1"), limit);
    let killed = Command::new("kill")
        .args(["-9", &rank1.to_string()])
        .status();
    assert!(killed.unwrap().success());
    let out = finish(child, Duration::from_secs(60), "the broken launch");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("rank 1 of 2 failed (signal: 9") && err.contains("stopped the others"),
        "{err}"
    );
    let rows = salaug_train::metrics::read_metrics(&broken).unwrap();
    assert_eq!(rows.iter().map(|m| m.epoch).collect::<Vec<_>>(), [1]);

    let out = launch(None, &["--resume", broken.to_str().unwrap()], limit);
    assert!(out.status.success(), "{}", stderr(&out));
    let a = salaug_train::metrics::read_metrics(&unbroken).unwrap();
    let b = salaug_train::metrics::read_metrics(&broken).unwrap();
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.epoch, x.train_loss, x.test_acc, x.test_loss),
            (y.epoch, y.train_loss, y.test_acc, y.test_loss),
            "the resumed group differs from the unbroken one"
        );
    }
    let m = |dir: &Path| -> Vec<Vec<f32>> {
        let model = load_run::<Selected>(dir, &Default::default()).unwrap().2;
        floats(&model).into_iter().map(|(_, v)| v).collect()
    };
    assert!(m(&unbroken) == m(&broken), "the final models differ");
}

#[test]
fn without_launch_the_rank_left_names_the_rank_that_died() {
    require_data();
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let config_file = write_config(tmp.path(), SHORT);
    let port = free_ports(2);
    let run = tmp.path().join("run");
    let rank = |r: u16| start_rank(&config_file, &run, "train.epochs=50", r, port, false);
    let (r0, mut r1) = (rank(0), rank(1));
    let limit = Duration::from_secs(300);
    let started = Instant::now();
    while salaug_train::metrics::read_metrics(&run)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(started.elapsed() < limit, "epoch 1 never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    r1.kill().unwrap();
    let _ = r1.wait();
    let killed = Instant::now();
    let out = finish(r0, Duration::from_secs(90), "rank 0 after rank 1 died");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("rank 1 (127.0.0.1:{}) does not answer", port + 2)),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        killed.elapsed() < Duration::from_secs(60),
        "rank 0 took {:?}",
        killed.elapsed()
    );
}

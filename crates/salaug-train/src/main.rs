//! `salaug`: train, evaluate and inspect saliency-augmented classifiers.
//!
//! ```sh
//! salaug train --config configs/fmnist-sal.toml --set train.epochs=3 --out runs/sal
//! salaug train --resume runs/sal          # continue a killed run
//! salaug eval --run runs/sal
//! salaug saliency --run runs/sal --test 8 --out maps/ --method gradient guided_backprop grad_cam
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use salaug_train::backend::Selected;
use salaug_train::group::{Group, GroupArgs};
use salaug_train::metrics::{consistency, evaluate, held_out, read_metrics};
use salaug_train::run::{load_run, train};
use salaug_train::{saliency_png, RunConfig};
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

#[derive(Parser)]
#[command(
    name = "salaug",
    version,
    about = "Saliency-map based data augmentation on Burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `salaug train`'s group flags ([`salaug_train::group::GroupArgs`]).
#[derive(clap::Args, Debug, Default)]
struct GroupFlags {
    /// Number of ranks in the group (one process, one device each).
    #[arg(long)]
    world: Option<usize>,
    /// This process's rank, `0..world`; rank 0 writes the run.
    #[arg(long)]
    rank: Option<usize>,
    /// `host:port` (or `ws://host:port`) of rank 0, where it hosts the orchestrator.
    #[arg(long, value_name = "HOST:PORT")]
    orchestrator: Option<String>,
    /// `host:port` where the other ranks reach this rank (default: orchestrator port + 1 +
    /// rank, on this host's name, or on loopback when the orchestrator is).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Seconds any wait for the group may take before the rank fails (default 600).
    #[arg(long, value_name = "SECONDS")]
    group_timeout: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model; the run directory gets the resolved config, metrics.csv, checkpoints,
    /// the log and the final model.
    Train {
        /// The run config (TOML). Not needed with --resume.
        #[arg(long, required_unless_present = "resume")]
        config: Option<PathBuf>,
        /// Override a config value: `--set train.epochs=3 --set augment.kind=rotation`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Run directory (default: `runs/<config file stem>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in this directory after its last finished epoch.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "set", "out"])]
        resume: Option<PathBuf>,
        /// The devices that train (sets `train.devices`; also with --resume, e.g. to continue
        /// on another machine): `cpu`, `cuda:0,cuda:1`, `wgpu:0`, `default`. With several, each
        /// trains its own batch of `train.batch_size` per step and their gradients are
        /// averaged (docs/training.md).
        #[arg(long, value_delimiter = ',', value_name = "DEVICE,...")]
        devices: Vec<String>,
        /// Several processes (ranks) training one model (docs/training.md, "Several
        /// processes and machines"); absent flags are read from SLURM's or torchrun's
        /// variables (SLURM_NTASKS/SLURM_PROCID, WORLD_SIZE/RANK, MASTER_ADDR/MASTER_PORT).
        #[command(flatten)]
        group: GroupFlags,
    },
    /// Start N ranks of `salaug train` on this machine (loopback), e.g.
    /// `salaug launch --local 2 -- train --config c.toml --out runs/x`; waits for them, and
    /// stops the others when one fails.
    Launch {
        /// Number of ranks to start.
        #[arg(long)]
        local: usize,
        /// The orchestrator's port (rank 0 hosts it; rank r serves its tensors on port + 1 + r).
        /// Default: a free port.
        #[arg(long)]
        port: Option<u16>,
        /// The `salaug` command every rank runs (`train …`), after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Writes a finished run's final model in torchvision's key layout (`.safetensors`):
    /// `torchvision.models.resnet18(num_classes=C).load_state_dict(
    /// safetensors.torch.load_file(path))` takes it (ResNet-18/50,
    /// DenseNet-121/169, VGG-16/19-BN; ImageNet stem, width 1).
    Export {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// The file to write (`.safetensors`).
        #[arg(long)]
        out: PathBuf,
    },
    /// The held-out measures of a finished run's final model (on its `metrics.held_out_images`).
    Eval {
        /// The run directory.
        #[arg(long)]
        run: PathBuf,
        /// The saliency method of the held-out L_sal distance (default: the run's
        /// `loss.method`), e.g. to measure a `ref` run with the method its `sal` twin trained
        /// (gradient, guided_backprop, deconvnet, grad_cam or grad_cam:LAYER, …).
        #[arg(long)]
        method: Option<salaug_core::SaliencyKind>,
    },
    /// Saliency maps of images as PNGs: per image the image, its map and an overlay, and one
    /// grid with every run side by side (e.g. `--run ref_dir --run sal_dir`), including the
    /// warped-back map of a transformed image.
    Saliency {
        /// Run directories (finished runs on the same dataset); the first gives the per-image
        /// files.
        #[arg(long, num_args = 1.., required = true)]
        run: Vec<PathBuf>,
        /// Image files (PNG/JPEG); resized to the model's input.
        #[arg(long, num_args = 1..)]
        images: Vec<PathBuf>,
        /// Or the first N test images of the run's dataset.
        #[arg(long, default_value_t = 0)]
        test: usize,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The panel transform of the grid's warped-back column (horizontal_flip,
        /// vertical_flip, rotation, rescale).
        #[arg(long, default_value = "rotation")]
        transform: String,
        /// Also `methods.png`: each run's map with each of these methods (gradient,
        /// input_x_gradient, guided_backprop, deconvnet, grad_cam or grad_cam:LAYER,
        /// guided_grad_cam or guided_grad_cam:LAYER, smooth_grad:METHOD).
        #[arg(long, num_args = 1..)]
        method: Vec<salaug_core::SaliencyKind>,
    },
    /// Training curves of runs (loss terms, accuracies, map agreement, deletion/insertion,
    /// the held-out L_sal distance per epoch) as one SVG.
    Plot {
        /// Run directories (up to 6).
        #[arg(long, num_args = 1.., required = true)]
        run: Vec<PathBuf>,
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Time training steps of a config: wall time per step, CPU use and peak memory (the
    /// paper's table 4, `cargo xtask bench peer`); prints one JSON line (`salaug_spec::StepTiming`).
    Time {
        /// The run config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Override a config value.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 100)]
        warmup: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 100)]
        iters: usize,
        /// Compute T(x) before each step's timer starts (the paper's table 4: image
        /// transformation excluded; the maps' inverse warp is still timed).
        #[arg(long)]
        exclude_transform: bool,
    },
    /// Record one training step of a config (the model's tensors before it, the losses and
    /// every parameter's gradient) to a .safetensors file; with --against, start from another
    /// record's weights (e.g. one made by the CPU build), compare, print one JSON line
    /// (`salaug_spec::StepAgreement`) and exit 1 when they disagree beyond --tol.
    Step {
        /// The run config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Override a config value.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The record to write (.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// A record of the same config to start from and compare with.
        #[arg(long)]
        against: Option<PathBuf>,
        /// The largest relative error of each loss term and of the whole gradient.
        #[arg(long, default_value_t = 1e-3)]
        tol: f64,
        /// The device (as in train.devices).
        #[arg(long, default_value = "default")]
        device: String,
    },
}

fn init_logging(log_file: Option<&Path>) -> Result<()> {
    let filter = || {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new(
                "info,burn_train=warn,burn_core=warn,burn_collective=warn,burn_communication=warn",
            )
        })
    };
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter());
    let file = match log_file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log {}", path.display()))?;
            Some(
                fmt::layer()
                    .with_writer(Mutex::new(f))
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(filter()),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
    Ok(())
}

/// The backend's default device, once the machine is known to run the backend.
fn default_device() -> Result<salaug_train::backend::Device> {
    salaug_train::backend::parse_device("default").map_err(|e| anyhow::anyhow!(e))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            config,
            set,
            out,
            resume,
            devices,
            group,
        } => {
            let group = Group::resolve(
                &GroupArgs {
                    world: group.world,
                    rank: group.rank,
                    orchestrator: group.orchestrator,
                    listen: group.listen,
                    timeout_s: group.group_timeout,
                },
                |name| std::env::var(name).ok(),
            )?;
            // A rank other than 0 reads and writes its own directory inside the run's.
            let (out, resume) = match &group {
                Some(g) => (
                    out.as_deref().map(|o| g.rank_dir(o)),
                    resume.as_deref().map(|r| g.rank_dir(r)),
                ),
                None => (out, resume),
            };
            let (mut config, dir, resume) =
                salaug_train::run::resolve(config.as_deref(), &set, out, resume)?;
            if !devices.is_empty() {
                config.train.devices = devices;
            }
            let devices = salaug_train::backend::parse_devices(&config.train.devices)?;
            if group.is_some() && devices.len() > 1 {
                anyhow::bail!(
                    "train.devices = {:?}: a rank of a group (--world) trains on one device; \
                     start one rank per device instead",
                    config.train.devices
                );
            }
            let run_dir = salaug_train::run::RunDir::lock(&dir)?;
            init_logging(Some(&dir.join("train.log")))?;
            let member = match group {
                Some(g) => {
                    tracing::info!(
                        "rank {} of {}: orchestrator {}, listening on {}",
                        g.rank,
                        g.world,
                        g.orchestrator.ws(),
                        g.listen
                    );
                    Some(g.join::<Selected>(&devices[0])?)
                }
                None => None,
            };
            tracing::info!(
                "{} run in {} ({} on {}, strategy {}, augmentation {}, {} on {})",
                if resume { "resuming" } else { "starting" },
                dir.display(),
                config.model.arch,
                config.data.dataset.name(),
                config.train.strategy.name(),
                config.augment.name(),
                salaug_train::backend::NAME,
                config.train.devices.join(",")
            );
            let metrics = train::<Selected>(config, &run_dir, resume, &devices, member.as_ref())?;
            if let (Some(last), Some(kept)) = (metrics.last(), salaug_spec::metrics::result(&dir)?)
            {
                println!(
                    "{}: {} epochs, kept epoch {}: test accuracy {:.2}%, saliency consistency \
                     {:.5}",
                    dir.display(),
                    last.epoch,
                    kept.epoch,
                    100.0 * kept.test_acc,
                    kept.consistency
                );
            }
        }
        Command::Launch {
            local,
            port,
            command,
        } => launch(local, port, &command)?,
        Command::Export { run, out } => {
            init_logging(None)?;
            let device = default_device()?;
            let (config, data, model) = load_run::<Selected>(&run, &device)?;
            let [c, _, _] = data.train.shape();
            let model_config = config.model_config(c, data.train.classes());
            salaug_train::weights::export(&model.model, &model_config, &out)?;
            println!(
                "{}: {} in torchvision's layout",
                out.display(),
                model_config.arch.name()
            );
        }
        Command::Eval { run, method } => {
            init_logging(None)?;
            let device = default_device()?;
            let (config, data, model) = load_run::<Selected>(&run, &device)?;
            let acc = evaluate(&model, &data.test, 256, &device)?;
            let method = method.unwrap_or_else(|| config.loss.method.clone());
            let cons = consistency(
                &model,
                &method,
                &data.test,
                config.metrics.consistency_images,
                &device,
            )?;
            let h = held_out(
                &model,
                &data.test,
                &config.augment,
                config.metrics.held_out_images,
                &device,
            )?;
            let epochs = read_metrics(&run)?.len();
            let mut row = salaug_spec::EpochMetrics::not_measured(epochs);
            row.test_acc = acc;
            row.consistency = cons;
            row.held_out = h;
            println!(
                "{}: {} epochs, {} test images, saliency method {}: {}",
                run.display(),
                epochs,
                data.test.len(),
                method.name(),
                salaug_spec::measures::summary(&row)
            );
        }
        Command::Saliency {
            run,
            images,
            test,
            out,
            transform,
            method,
        } => {
            init_logging(None)?;
            let device = default_device()?;
            if images.is_empty() && test == 0 {
                bail!("pass --images FILE... or --test N");
            }
            let mut runs = Vec::new();
            let mut data = None;
            for dir in &run {
                let (_, d, model) = load_run::<Selected>(dir, &device)?;
                if let Some(first) = &data {
                    let first: &salaug_train::data::Data = first;
                    if first.test.shape() != d.test.shape() {
                        bail!(
                            "{}: images of {:?}, but the first run's are {:?}",
                            dir.display(),
                            d.test.shape(),
                            first.test.shape()
                        );
                    }
                }
                runs.push((salaug_train::plot::run_label(dir), model));
                data.get_or_insert(d);
            }
            let data = data.expect("at least one run");
            let written = saliency_png::write_maps(
                &runs, &data, &images, test, &transform, &method, &out, &device,
            )?;
            println!("wrote {} files to {}", written, out.display());
        }
        Command::Plot { run, out } => {
            let n = salaug_train::plot::plot_runs(&run, &out)?;
            println!("wrote the curves of {n} run(s) to {}", out.display());
        }
        Command::Time {
            config,
            set,
            warmup,
            iters,
            exclude_transform,
        } => {
            init_logging(None)?;
            let device = default_device()?;
            let config = RunConfig::load(&config, &set)?;
            let t = salaug_train::timing::time_steps::<Selected>(
                config,
                warmup,
                iters,
                exclude_transform,
                &device,
            )?;
            println!("{}", t.to_json_line());
        }
        Command::Step {
            config,
            set,
            out,
            against,
            tol,
            device,
        } => {
            use salaug_train::parity::{compare, record_step, StepRecord};
            init_logging(None)?;
            if out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
                bail!(
                    "--out {}: salaug step writes a .safetensors file",
                    out.display()
                );
            }
            if !tol.is_finite() || tol <= 0.0 {
                bail!("--tol {tol}: must be positive");
            }
            let config = RunConfig::load(&config, &set)?;
            let device = salaug_train::backend::parse_device(&device)
                .map_err(|e| anyhow::anyhow!("--device: {e}"))?;
            let theirs = against.as_deref().map(StepRecord::read).transpose()?;
            let ours = record_step::<Selected>(&config, theirs.as_ref(), &device)?;
            ours.write(&out)?;
            if let Some(theirs) = &theirs {
                let agreement = compare(&ours, theirs, tol)?;
                println!("{}", agreement.to_json_line());
                if !agreement.agree {
                    bail!(
                        "the step on {} disagrees with {}'s beyond --tol {tol}: gradient {:.3e}, \
                         worst parameter {} {:.3e}, losses {:?}",
                        agreement.device,
                        agreement.against_device,
                        agreement.grad_rel,
                        agreement.worst.0,
                        agreement.worst.1,
                        agreement.losses
                    );
                }
            }
        }
    }
    Ok(())
}

/// `salaug launch --local N [--port P] -- train …`: N ranks on loopback.
fn launch(ranks: usize, port: Option<u16>, command: &[String]) -> Result<()> {
    use std::process::{Command, Stdio};
    use std::time::Duration;
    if ranks < 2 {
        bail!("--local {ranks}: a group needs at least 2 ranks (run `salaug train` for one)");
    }
    if command.first().map(String::as_str) != Some("train") {
        bail!("salaug launch runs `train`: salaug launch --local {ranks} -- train --config …");
    }
    const GROUP: [&str; 4] = ["--world", "--rank", "--orchestrator", "--listen"];
    if let Some(flag) = command
        .iter()
        .find(|a| GROUP.iter().any(|g| a.starts_with(g)))
    {
        bail!("salaug launch sets {flag} itself; leave it out of the command");
    }
    let port = match port {
        Some(p) => p,
        None => free_ports(ranks)?,
    };
    if usize::from(port) + ranks >= usize::from(u16::MAX) {
        bail!("--port {port}: ranks listen on port + 1 … port + {ranks}, past 65535");
    }
    let exe = std::env::current_exe().context("finding the salaug executable")?;
    let mut children = Vec::with_capacity(ranks);
    for rank in 0..ranks {
        let mut child = Command::new(&exe);
        child
            .args(command)
            .args(["--world", &ranks.to_string(), "--rank", &rank.to_string()])
            .args(["--orchestrator", &format!("127.0.0.1:{port}")])
            .args([
                "--listen",
                &format!("127.0.0.1:{}", usize::from(port) + 1 + rank),
            ]);
        if rank > 0 {
            // Rank 0 speaks for the group; the others' logs are in their rank directories.
            child.stdout(Stdio::null());
            if std::env::var_os("RUST_LOG").is_none() {
                child.env("RUST_LOG", "warn");
            }
        }
        let spawned = child
            .spawn()
            .with_context(|| format!("starting rank {rank}"))?;
        children.push(Some(spawned));
    }
    // Wait for all. When one fails, the others usually fail within moments, because of it
    // (a rank whose peer died names that peer): give them two seconds, stop those still
    // running (they would wait until their timeout), and report the failures, the ranks
    // ended by a signal first.
    let mut failed: Vec<(usize, std::process::ExitStatus)> = Vec::new();
    let mut first_failure: Option<std::time::Instant> = None;
    while children.iter().any(Option::is_some) {
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Some(status) = child.try_wait().context("waiting for a rank")? {
                *slot = None;
                if !status.success() {
                    failed.push((rank, status));
                    first_failure.get_or_insert_with(std::time::Instant::now);
                }
            }
        }
        if first_failure.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
                let _ = child.wait();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    failed.sort_by_key(|(rank, status)| (!by_signal(status), *rank));
    match failed.as_slice() {
        [] => Ok(()),
        all => {
            let said: Vec<String> = all
                .iter()
                .map(|(rank, status)| format!("rank {rank} of {ranks} failed ({status})"))
                .collect();
            bail!("{}; stopped the others", said.join(", then "))
        }
    }
}

/// A port `p` of loopback with `p … p + ranks` all free: drawn below Linux's ephemeral range
/// (32768–60999), where outgoing connections (the ranks' own among them) take their ports.
fn free_ports(ranks: usize) -> Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    let mut draw = std::collections::hash_map::RandomState::new().build_hasher();
    for _ in 0..200 {
        draw.write_u8(0);
        let port = 20_000 + (draw.finish() % 12_000) as u16;
        let free = (0..=ranks as u16)
            .all(|k| std::net::TcpListener::bind(("127.0.0.1", port + k)).is_ok());
        if free {
            return Ok(port);
        }
    }
    bail!(
        "found no {} free consecutive ports on loopback; pass --port",
        ranks + 1
    )
}

/// Whether a process was ended by a signal (never, off Unix).
fn by_signal(status: &std::process::ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        status.signal().is_some()
    }
    #[cfg(not(unix))]
    {
        let _ = status;
        false
    }
}

fn main() -> ExitCode {
    salaug_train::backend::tune_allocator();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

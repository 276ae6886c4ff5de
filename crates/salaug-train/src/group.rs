//! Several processes training one model: data parallelism over burn-collective, on one machine
//! or several.
//!
//! A group has `world` processes (ranks), one device each. Every rank builds the same initial
//! model (the run seed seeds the initialisation), trains on its own shard of each epoch
//! ([`crate::data::Deal::for_rank`]) and, after every backward, replaces its gradients by their
//! mean over the group ([`Member::mean_gradients`]), so every rank takes the same optimiser
//! step. Rank 0 writes the run (metrics, checkpoints, model); rank `r > 0` keeps its own
//! checkpoints in `<run>/rank-<r>` (what `--resume` reads back on that rank).
//!
//! Gradients are reduced in the model's visiting order, one flat tensor per step, so the
//! ranks' random `ParamId`s never have to agree. The ranks check at the start that their
//! resolved configs agree and that each holds the checkpoint to resume from, and after every
//! epoch that their weights are still rank 0's, bit for bit; a disagreement is an error on
//! every rank, not a silent divergence.
//!
//! Transport: rank 0 hosts burn-collective's global orchestrator (WebSocket) on the
//! orchestrator address's port; each rank serves its tensors on its `listen` port. A server
//! listens on the interface its address names when that is an IP address (`127.0.0.1` for a
//! local launch: nothing outside the machine can connect), and on every interface when it is
//! a host name (which may resolve to a loopback address on the host itself). There is no
//! authentication: keep the ports behind a firewall or on a private network. No wait is unbounded: connecting to the orchestrator
//! and every collective operation fail after [`Group::timeout`] with an error naming the rank
//! and what it waited for.

use std::fmt;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::TensorPrimitive;
use burn_collective::{AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation};

/// The default of [`Group::timeout`], in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 600;

/// A host and a port (`host:port`, also written `ws://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bare = s.strip_prefix("ws://").unwrap_or(s).trim_end_matches('/');
        let bad = || format!("`{s}` is not host:port (e.g. 10.0.0.1:29500 or ws://node1:29500)");
        let (host, port) = bare.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 || host.contains('/') {
            return Err(bad());
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Endpoint {
    /// The WebSocket address burn-communication takes.
    pub fn ws(&self) -> String {
        format!("ws://{self}")
    }

    /// The interface a server at this address listens on: the address itself when it is an
    /// IP address (`localhost` counts as `127.0.0.1`), every interface (`0.0.0.0`) for a host
    /// name, whose address as seen from this host may differ from the one the others reach.
    pub fn bind_host(&self) -> String {
        match self.host.as_str() {
            "localhost" => "127.0.0.1".to_string(),
            h if h.parse::<std::net::IpAddr>().is_ok() => h.to_string(),
            _ => "0.0.0.0".to_string(),
        }
    }
}

/// The group flags of `salaug train`, before the scheduler's variables fill them in.
#[derive(Debug, Clone, Default)]
pub struct GroupArgs {
    /// `--world`: the number of ranks.
    pub world: Option<usize>,
    /// `--rank`: this process's rank, `0..world`.
    pub rank: Option<usize>,
    /// `--orchestrator host:port`: where rank 0 hosts the orchestrator.
    pub orchestrator: Option<String>,
    /// `--listen host:port`: where the other ranks reach this rank's tensor service.
    pub listen: Option<String>,
    /// `--group-timeout` in seconds.
    pub timeout_s: Option<u64>,
}

/// One process's place in a group of processes that train together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Number of ranks (≥ 2).
    pub world: usize,
    /// This rank, `0..world`.
    pub rank: usize,
    /// Where rank 0 hosts the orchestrator (it listens on this port) and every rank connects.
    pub orchestrator: Endpoint,
    /// Where the other ranks reach this rank's tensor service (it listens on this port).
    pub listen: Endpoint,
    /// The longest any wait may take: connecting, and each collective operation (which
    /// includes waiting for rank 0's evaluation at the end of an epoch).
    pub timeout: Duration,
}

impl Group {
    /// The group of the flags, or where a flag is absent, of the variables a cluster scheduler
    /// sets: `SLURM_NTASKS`/`SLURM_PROCID` (SLURM) or `WORLD_SIZE`/`RANK` (torchrun), and
    /// `MASTER_ADDR`/`MASTER_PORT` for the orchestrator. `None` for a single process (no
    /// world, or a world of one). `env` reads a variable (`std::env::var` in the program).
    pub fn resolve(
        args: &GroupArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Group>> {
        let number = |names: &[&str]| -> Result<Option<usize>> {
            for name in names {
                if let Some(v) = env(name) {
                    return v
                        .trim()
                        .parse()
                        .map(Some)
                        .with_context(|| format!("{name}={v} is not a number"));
                }
            }
            Ok(None)
        };
        let world = match args.world {
            Some(w) => Some(w),
            None => number(&["SLURM_NTASKS", "WORLD_SIZE"])?,
        };
        let Some(world) = world else {
            if args.rank.is_some() || args.orchestrator.is_some() || args.listen.is_some() {
                bail!("--rank, --orchestrator and --listen need --world (the number of ranks)");
            }
            return Ok(None);
        };
        if world == 0 {
            bail!("--world must be at least 1");
        }
        if world == 1 {
            return Ok(None);
        }
        if world > u16::MAX as usize {
            bail!("--world {world}: at most {} ranks", u16::MAX);
        }
        let rank = match args.rank {
            Some(r) => r,
            None => number(&["SLURM_PROCID", "RANK"])?.with_context(|| {
                format!("a group of {world} needs --rank (or SLURM_PROCID or RANK)")
            })?,
        };
        if rank >= world {
            bail!("--rank {rank} is not below --world {world}");
        }
        let orchestrator: Endpoint = match &args.orchestrator {
            Some(s) => s
                .parse()
                .map_err(|e| anyhow::anyhow!("--orchestrator: {e}"))?,
            None => match (env("MASTER_ADDR"), env("MASTER_PORT")) {
                (Some(host), Some(port)) => format!("{host}:{port}")
                    .parse()
                    .map_err(|e| anyhow::anyhow!("MASTER_ADDR/MASTER_PORT: {e}"))?,
                _ => bail!(
                    "a group of {world} needs --orchestrator host:port (or MASTER_ADDR and \
                     MASTER_PORT): rank 0's host and a free port"
                ),
            },
        };
        let listen: Endpoint = match &args.listen {
            Some(s) => s.parse().map_err(|e| anyhow::anyhow!("--listen: {e}"))?,
            None => {
                // Beside the orchestrator's port, one port per rank; this host as the others
                // see it: loopback when the orchestrator is on loopback, else the host name.
                let port = usize::from(orchestrator.port) + 1 + rank;
                let port = u16::try_from(port).ok().with_context(|| {
                    format!(
                        "no default --listen port above {} for rank {rank}",
                        orchestrator.port
                    )
                })?;
                let loopback =
                    ["127.0.0.1", "localhost", "::1"].contains(&orchestrator.host.as_str());
                let host = if loopback {
                    orchestrator.host.clone()
                } else {
                    env("HOSTNAME")
                        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .context("no host name for --listen: pass --listen host:port")?
                };
                Endpoint { host, port }
            }
        };
        let timeout_s = args.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
        if timeout_s == 0 {
            bail!("--group-timeout must be at least 1 second");
        }
        Ok(Some(Group {
            world,
            rank,
            orchestrator,
            listen,
            timeout: Duration::from_secs(timeout_s),
        }))
    }

    /// The directory this rank trains into, given the run directory: the run directory itself
    /// for rank 0, `<run>/rank-<r>` for the others.
    pub fn rank_dir(&self, run: &std::path::Path) -> std::path::PathBuf {
        match self.rank {
            0 => run.to_path_buf(),
            r => run.join(format!("rank-{r}")),
        }
    }

    /// Joins the group on `device` of backend `B` (the backend the gradients live on, i.e. the
    /// inner backend of the Learner's). Rank 0 first starts the orchestrator. Blocks until
    /// every rank has joined, at most [`Group::timeout`].
    pub fn join<B: Backend>(self, device: &B::Device) -> Result<Arc<Member>> {
        quiet_transport_panics();
        let watchdog = Watchdog::start(self.rank, self.timeout);
        if self.rank == 0 {
            let port = self.orchestrator.port;
            let host = self.orchestrator.bind_host();
            TcpListener::bind((host.as_str(), port))
                .with_context(|| format!("rank 0 cannot host the orchestrator on {host}:{port}"))?;
            std::thread::Builder::new()
                .name("salaug-orchestrator".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .enable_all()
                        .build()
                        .expect("a tokio runtime for the orchestrator");
                    runtime.block_on(burn_collective::start_global_orchestrator_on(&host, port));
                })
                .context("starting the orchestrator thread")?;
        }
        let listen_host = self.listen.bind_host();
        TcpListener::bind((listen_host.as_str(), self.listen.port)).with_context(|| {
            format!(
                "rank {} cannot serve its tensors on {listen_host}:{} (--listen {})",
                self.rank, self.listen.port, self.listen
            )
        })?;
        self.wait_for_orchestrator()?;
        let ws = |e: &Endpoint| {
            burn_communication::Address::from_str(&e.ws()).map_err(|e| anyhow::anyhow!(e))
        };
        let config = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(self.world as u32)
            .with_global_address(ws(&self.orchestrator)?)
            .with_node_address(ws(&self.listen)?)
            .with_data_service_port(self.listen.port)
            .with_data_service_host(listen_host)
            .with_global_all_reduce_strategy(AllReduceStrategy::Centralized);
        let peer = PeerId::from(self.rank);
        watchdog
            .during(
                &format!("joining the group at {}", self.orchestrator.ws()),
                || burn_collective::register::<B>(peer, device.clone(), config),
            )
            .map_err(|e| anyhow::anyhow!("rank {} could not join the group: {e:?}", self.rank))?;
        let member = Member {
            group: self,
            peer,
            watchdog,
            traffic: Mutex::default(),
        };
        let peers = member.exchange_endpoints::<B>(device)?;
        let _ = member.watchdog.peers.set(peers);
        Ok(Arc::new(member))
    }

    /// Connects to the orchestrator's port until it answers or the timeout passes.
    fn wait_for_orchestrator(&self) -> Result<()> {
        let started = Instant::now();
        let target = format!("{}", self.orchestrator);
        loop {
            let reached = target.to_socket_addrs().ok().and_then(|mut addrs| {
                addrs.find(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok())
            });
            if reached.is_some() {
                return Ok(());
            }
            if started.elapsed() >= self.timeout {
                bail!(
                    "rank {} cannot reach the orchestrator at {} (tried for {} s; rank 0 hosts \
                     it: is rank 0 running, and is the address right?)",
                    self.rank,
                    self.orchestrator.ws(),
                    self.timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A rank that has joined its group: the collective operations of a run.
#[derive(Debug)]
pub struct Member {
    /// The group.
    pub group: Group,
    peer: PeerId,
    watchdog: Watchdog,
    /// The gradient all-reduces so far: how many, the bytes each rank sent into them, and the
    /// seconds spent in them (waiting for the slowest rank included).
    traffic: Mutex<Traffic>,
}

/// What the gradient all-reduces of a rank have cost ([`Member::traffic`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Traffic {
    /// Number of all-reduces (one per step).
    pub calls: usize,
    /// Bytes of gradient (f32) handed to them.
    pub bytes: usize,
    /// Seconds spent in them.
    pub seconds: f64,
}

impl Member {
    /// This rank.
    pub fn rank(&self) -> usize {
        self.group.rank
    }

    /// All-reduces `values` over the group (every rank calls this, in the same order, with
    /// the same length).
    fn all_reduce<B: Backend>(
        &self,
        values: Tensor<B, 1>,
        op: ReduceOperation,
        what: &str,
    ) -> Result<Tensor<B, 1>> {
        let reduced = self
            .watchdog
            .during(what, || {
                burn_collective::all_reduce::<B>(self.peer, values.into_primitive().tensor(), op)
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "rank {}: {what} failed ({e:?}): {}",
                    self.rank(),
                    silent(self.rank(), self.watchdog.peers.get())
                )
            })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(reduced)))
    }

    /// Every rank's `listen` endpoint, in rank order (each rank fills its own slot of one
    /// sum; bytes travel as exact small floats), so that a rank can name the ones that stop.
    fn exchange_endpoints<B: Backend>(&self, device: &B::Device) -> Result<Vec<Endpoint>> {
        const SLOT: usize = 256;
        let mine = self.group.listen.to_string().into_bytes();
        if mine.len() > SLOT {
            bail!("--listen {}: longer than {SLOT} bytes", self.group.listen);
        }
        let mut all = vec![0.0f32; SLOT * self.group.world];
        for (i, b) in mine.iter().enumerate() {
            all[self.rank() * SLOT + i] = f32::from(*b);
        }
        let t = Tensor::<B, 1>::from_floats(all.as_slice(), device);
        let summed = self.all_reduce(t, ReduceOperation::Sum, "exchanging addresses")?;
        let summed = summed
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 data");
        summed
            .chunks(SLOT)
            .enumerate()
            .map(|(r, slot)| {
                let bytes: Vec<u8> = slot
                    .iter()
                    .take_while(|b| **b > 0.0)
                    .map(|b| *b as u8)
                    .collect();
                String::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("rank {r} sent no address (is it a salaug rank?)"))
            })
            .collect()
    }

    /// Sums `values` over the group, to f64 precision (each value travels as two f32s).
    pub fn sum<B: Backend>(
        &self,
        values: &[f64],
        what: &str,
        device: &B::Device,
    ) -> Result<Vec<f64>> {
        let split: Vec<f32> = values
            .iter()
            .flat_map(|&v| {
                let hi = v as f32;
                [hi, (v - hi as f64) as f32]
            })
            .collect();
        let t = Tensor::<B, 1>::from_floats(split.as_slice(), device);
        let summed = self.all_reduce(t, ReduceOperation::Sum, what)?;
        let s = summed
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 data");
        Ok(s.chunks(2).map(|p| p[0] as f64 + p[1] as f64).collect())
    }

    /// Rank 0's `values` on every rank, exactly (the others add zeros).
    pub fn from_root<B: Backend>(
        &self,
        values: &[f64],
        what: &str,
        device: &B::Device,
    ) -> Result<Vec<f64>> {
        let mine = match self.rank() {
            0 => values.to_vec(),
            _ => vec![0.0; values.len()],
        };
        self.sum::<B>(&mine, what, device)
    }

    /// Fails on every rank if `ok` is false on any: `problem` is this rank's error; the others
    /// say how many ranks failed the check named `what`.
    pub fn all_ok<B: Backend>(
        &self,
        ok: bool,
        what: &str,
        problem: impl FnOnce() -> String,
        device: &B::Device,
    ) -> Result<()> {
        let failed = self.sum::<B>(&[(!ok) as u8 as f64], what, device)?[0] as usize;
        match (ok, failed) {
            (_, 0) => Ok(()),
            (false, _) => bail!("rank {}: {}", self.rank(), problem()),
            (true, n) => bail!(
                "rank {}: {n} other rank(s) failed the check of {what}",
                self.rank()
            ),
        }
    }

    /// Fails on every rank unless `bytes` are the same on every rank as on rank 0 (compared
    /// by a 64-bit FNV-1a hash).
    pub fn agree<B: Backend>(&self, what: &str, bytes: &[u8], device: &B::Device) -> Result<()> {
        let hash = fnv1a(bytes).to_le_bytes().map(f64::from);
        let root = self.from_root::<B>(&hash, what, device)?;
        self.all_ok::<B>(
            root == hash,
            what,
            || format!("its {what} differs from rank 0's"),
            device,
        )
    }

    /// Replaces `grads` (of `model`, from one backward) by their mean over the group, in one
    /// collective operation: every parameter that requires a gradient, in the model's visiting
    /// order, a zero gradient where a rank has none, and a flag per parameter so that a
    /// parameter no rank has a gradient for stays without one.
    pub fn mean_gradients<B, M>(
        &self,
        model: &M,
        mut grads: GradientsParams,
    ) -> Result<GradientsParams>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
    {
        struct Gather<'a, I: Backend> {
            grads: &'a mut GradientsParams,
            parts: Vec<Tensor<I, 1>>,
            params: Vec<(ParamId, usize)>,
            device: Option<I::Device>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<'_, B::InnerBackend> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let value = p.val();
                if !value.is_require_grad() {
                    return;
                }
                let n = value.shape().num_elements();
                let device = value.inner().device();
                let (grad, present) = match self.grads.remove::<B::InnerBackend, D>(p.id) {
                    Some(g) => (g.reshape([n]), 1.0),
                    None => (Tensor::zeros([n], &device), 0.0),
                };
                self.parts.push(grad);
                self.parts.push(Tensor::from_floats([present], &device));
                self.params.push((p.id, n));
                self.device.get_or_insert(device);
            }
        }
        struct Scatter<'a, I: Backend> {
            grads: &'a mut GradientsParams,
            flat: Tensor<I, 1>,
            at: usize,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Scatter<'_, B::InnerBackend> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let value = p.val();
                if !value.is_require_grad() {
                    return;
                }
                let n = value.shape().num_elements();
                let present = self
                    .flat
                    .clone()
                    .slice(self.at + n..self.at + n + 1)
                    .into_scalar();
                if present.elem::<f32>() > 0.0 {
                    let g = self.flat.clone().slice(self.at..self.at + n);
                    self.grads
                        .register::<B::InnerBackend, D>(p.id, g.reshape(value.shape()));
                }
                self.at += n + 1;
            }
        }
        let mut gather = Gather::<B::InnerBackend> {
            grads: &mut grads,
            parts: Vec::new(),
            params: Vec::new(),
            device: None,
        };
        model.visit(&mut gather);
        if gather.parts.is_empty() {
            return Ok(grads);
        }
        let flat = Tensor::cat(std::mem::take(&mut gather.parts), 0);
        let bytes = flat.shape().num_elements() * std::mem::size_of::<f32>();
        let started = Instant::now();
        let flat = self.all_reduce(flat, ReduceOperation::Mean, "the gradient all-reduce")?;
        {
            let mut t = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
            t.calls += 1;
            t.bytes += bytes;
            t.seconds += started.elapsed().as_secs_f64();
        }
        let mut scatter = Scatter::<B::InnerBackend> {
            grads: &mut grads,
            flat,
            at: 0,
        };
        model.visit(&mut scatter);
        Ok(grads)
    }

    /// The sum and the sum of squares of every parameter of an autodiff `model` that requires
    /// a gradient, in f64 (the fingerprint that the ranks compare after each epoch).
    pub fn fingerprint<B: Backend, M: Module<B>>(model: &M) -> [f64; 2] {
        struct Sums([f64; 2]);
        impl<B: Backend> ModuleVisitor<B> for Sums {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let v = p.val();
                if !v.is_require_grad() {
                    return; // BatchNorm running statistics: each rank's own
                }
                let data = v.into_data().convert::<f64>();
                for x in data.as_slice::<f64>().expect("f64 data") {
                    self.0[0] += x;
                    self.0[1] += x * x;
                }
            }
        }
        let mut sums = Sums([0.0; 2]);
        model.visit(&mut sums);
        sums.0
    }

    /// `model` with every float parameter, trained weights and buffers (BatchNorm running
    /// statistics) alike, replaced by rank 0's, exactly (one sum in which the other ranks add
    /// negative zeros, which leave every value, −0 included, as it is). After it the ranks hold the same model bit for bit: evaluation, checkpoints and
    /// a resumed epoch start from rank 0's running statistics, as PyTorch DDP's
    /// `broadcast_buffers` gives.
    pub fn from_root_model<B: Backend, M: Module<B>>(
        &self,
        model: M,
        device: &B::Device,
    ) -> Result<M> {
        struct Gather<B: Backend>(Vec<Tensor<B, 1>>);
        impl<B: Backend> ModuleVisitor<B> for Gather<B> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let v = p.val();
                let n = v.shape().num_elements();
                self.0.push(v.reshape([n]));
            }
        }
        struct Scatter<B: Backend> {
            flat: Tensor<B, 1>,
            at: usize,
        }
        impl<B: Backend> burn::module::ModuleMapper<B> for Scatter<B> {
            fn map_float<const D: usize>(
                &mut self,
                param: Param<Tensor<B, D>>,
            ) -> Param<Tensor<B, D>> {
                let (id, value, mapper) = param.consume();
                let shape = value.shape();
                let n = shape.num_elements();
                let root = self.flat.clone().slice(self.at..self.at + n).reshape(shape);
                self.at += n;
                Param::from_mapped_value(id, root, mapper)
            }
        }
        let mut gather = Gather::<B>(Vec::new());
        model.visit(&mut gather);
        if gather.0.is_empty() {
            return Ok(model);
        }
        let flat = Tensor::cat(gather.0, 0);
        let flat = match self.rank() {
            0 => flat,
            _ => flat.full_like(-0.0),
        };
        let flat = self.all_reduce(flat, ReduceOperation::Sum, "rank 0's model")?;
        let flat = flat.to_device(device);
        Ok(model.map(&mut Scatter { flat, at: 0 }))
    }

    /// What the gradient all-reduces have cost so far.
    pub fn traffic(&self) -> Traffic {
        *self.traffic.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leaves the group (every rank, at the end of the run), logging what the gradient
    /// all-reduces cost.
    pub fn finish<B: Backend>(&self) -> Result<()> {
        let t = self.traffic();
        if t.calls > 0 {
            tracing::info!(
                "rank {}: {} gradient all-reduces of {:.2} MB each, {:.2} s in all ({:.1} ms \
                 each, waiting for the slowest rank included)",
                self.rank(),
                t.calls,
                t.bytes as f64 / t.calls as f64 / 1e6,
                t.seconds,
                1e3 * t.seconds / t.calls as f64
            );
        }
        self.watchdog
            .during("leaving the group", || {
                burn_collective::finish_collective::<B>(self.peer)
            })
            .map_err(|e| {
                anyhow::anyhow!("rank {}: leaving the group failed: {e:?}", self.rank())
            })?;
        if self.rank() == 0 {
            // Every rank leaves through the orchestrator, which lives in this process: had rank
            // 0 ended first, a rank still leaving would wait for an answer that never comes.
            // A rank has left once its process has ended, closing its tensor service.
            self.watchdog
                .during("waiting for the other ranks to leave", || {
                    while !self.still_here().is_empty() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
        }
        Ok(())
    }

    /// The ranks other than this one whose tensor service still answers.
    fn still_here(&self) -> Vec<usize> {
        let peers = self.watchdog.peers.get().map(Vec::as_slice).unwrap_or(&[]);
        (0..peers.len())
            .filter(|&r| r != self.rank() && answers(&peers[r]))
            .collect()
    }
}

/// Ends the process with `error` where a `Result` cannot be returned (inside burn's training
/// step): a failed collective operation leaves nothing to continue with, and the other ranks
/// fail at their next wait.
pub fn fail(error: &anyhow::Error) -> ! {
    tracing::error!("{error:#}");
    eprintln!("error: {error:#}");
    std::process::exit(1)
}

/// burn-collective's transport panics on its runtime's threads when a peer goes away (a
/// closed socket, a tensor that never comes); the collective operation then fails, and that
/// failure is reported as an error naming the rank that stopped. The panics themselves (a
/// message and a backtrace each) go to the log at debug level instead of stderr.
fn quiet_transport_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        if thread.name().is_some_and(|n| n.starts_with("tokio-")) {
            tracing::debug!("burn-collective transport: {info}");
        } else {
            default(info);
        }
    }));
}

/// Which ranks other than `rank` do not answer on their tensor service (a TCP connection to
/// each, one second at most), said as the end of an error message.
fn silent(rank: usize, peers: Option<&Vec<Endpoint>>) -> String {
    let Some(peers) = peers else {
        return "a rank has stopped or cannot be reached".to_string();
    };
    let gone: Vec<String> = peers
        .iter()
        .enumerate()
        .filter(|&(r, e)| r != rank && !answers(e))
        .map(|(r, e)| format!("rank {r} ({e})"))
        .collect();
    match gone.len() {
        0 => "every rank still answers, but one has not taken part".to_string(),
        _ => format!("{} does not answer: it has stopped", gone.join(", ")),
    }
}

/// Whether a TCP connection to `e` succeeds within a second.
fn answers(e: &Endpoint) -> bool {
    let addrs = e
        .to_string()
        .to_socket_addrs()
        .map(|a| a.collect::<Vec<_>>());
    addrs.is_ok_and(|a| {
        a.iter()
            .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok())
    })
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Ends the process with an error when one wait of the group lasts longer than the timeout
/// (a collective operation of burn-collective has no timeout of its own: a rank that died
/// would leave the others waiting forever).
#[derive(Debug, Clone)]
struct Watchdog {
    waiting: Arc<Mutex<Option<(Instant, String)>>>,
    /// Every rank's `listen` endpoint, once the ranks have exchanged them.
    peers: Arc<OnceLock<Vec<Endpoint>>>,
}

impl Watchdog {
    fn start(rank: usize, timeout: Duration) -> Watchdog {
        let waiting: Arc<Mutex<Option<(Instant, String)>>> = Arc::default();
        let peers: Arc<OnceLock<Vec<Endpoint>>> = Arc::default();
        let watched = Arc::clone(&waiting);
        let known = Arc::clone(&peers);
        std::thread::Builder::new()
            .name("salaug-group-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                let state = watched.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((since, what)) = state.as_ref() {
                    if since.elapsed() > timeout {
                        let message = format!(
                            "rank {rank} waited more than {} s for the group while {what}: {} \
                             (raise --group-timeout if rank 0's evaluation takes longer)",
                            timeout.as_secs(),
                            silent(rank, known.get())
                        );
                        tracing::error!("{message}");
                        eprintln!("error: {message}");
                        std::process::exit(1);
                    }
                }
            })
            .expect("the watchdog thread");
        Watchdog { waiting, peers }
    }

    fn during<T>(&self, what: &str, f: impl FnOnce() -> T) -> T {
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), what.to_string()));
        let out = f();
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = None;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_come_first_then_slurm_then_torchrun_variables() {
        let none = GroupArgs::default();
        assert_eq!(Group::resolve(&none, env(&[])).unwrap(), None);
        let torchrun = [
            ("WORLD_SIZE", "4"),
            ("RANK", "2"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
            ("HOSTNAME", "node1"),
        ];
        let g = Group::resolve(&none, env(&torchrun)).unwrap().unwrap();
        assert_eq!((g.world, g.rank), (4, 2));
        assert_eq!(g.orchestrator.to_string(), "node0:29500");
        assert_eq!(g.listen.to_string(), "node1:29503");
        assert_eq!(g.timeout, Duration::from_secs(DEFAULT_TIMEOUT_S));
        let slurm = [
            ("SLURM_NTASKS", "3"),
            ("SLURM_PROCID", "1"),
            ("WORLD_SIZE", "9"),
            ("RANK", "7"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "4000"),
        ];
        let g = Group::resolve(&none, env(&slurm)).unwrap().unwrap();
        assert_eq!((g.world, g.rank), (3, 1));
        assert_eq!(
            g.listen.to_string(),
            "127.0.0.1:4002",
            "loopback orchestrator, loopback rank"
        );
        let flags = GroupArgs {
            world: Some(2),
            rank: Some(1),
            orchestrator: Some("ws://10.0.0.1:5000".into()),
            listen: Some("10.0.0.2:6000".into()),
            timeout_s: Some(5),
        };
        let g = Group::resolve(&flags, env(&slurm)).unwrap().unwrap();
        assert_eq!((g.world, g.rank, g.timeout), (2, 1, Duration::from_secs(5)));
        assert_eq!(
            (g.orchestrator.ws(), g.listen.to_string()),
            ("ws://10.0.0.1:5000".into(), "10.0.0.2:6000".into())
        );
        // A world of one is a single process.
        let one = GroupArgs {
            world: Some(1),
            ..GroupArgs::default()
        };
        assert_eq!(Group::resolve(&one, env(&[])).unwrap(), None);
    }

    #[test]
    fn bad_group_settings_are_errors_that_name_the_setting() {
        let err = |args: GroupArgs, vars: &[(&str, &str)]| {
            Group::resolve(&args, env(vars)).unwrap_err().to_string()
        };
        let world = |w| GroupArgs {
            world: Some(w),
            ..GroupArgs::default()
        };
        assert!(err(
            GroupArgs {
                rank: Some(1),
                ..GroupArgs::default()
            },
            &[]
        )
        .contains("need --world"));
        assert!(err(world(0), &[]).contains("at least 1"));
        assert!(err(world(2), &[]).contains("needs --rank"));
        assert!(err(
            GroupArgs {
                rank: Some(2),
                ..world(2)
            },
            &[]
        )
        .contains("not below --world 2"));
        assert!(err(
            GroupArgs {
                rank: Some(0),
                ..world(2)
            },
            &[]
        )
        .contains("--orchestrator host:port"));
        let bad = GroupArgs {
            rank: Some(0),
            orchestrator: Some("node0".into()),
            ..world(2)
        };
        assert!(err(bad, &[]).contains("`node0` is not host:port"));
        assert!(err(GroupArgs::default(), &[("WORLD_SIZE", "two")])
            .contains("WORLD_SIZE=two is not a number"));
        let zero = GroupArgs {
            rank: Some(0),
            orchestrator: Some("h:1".into()),
            timeout_s: Some(0),
            ..world(2)
        };
        assert!(err(zero, &[]).contains("--group-timeout"));
    }

    #[test]
    fn rank_directories() {
        let g = |rank| Group {
            world: 2,
            rank,
            orchestrator: "h:1".parse().unwrap(),
            listen: "h:2".parse().unwrap(),
            timeout: Duration::from_secs(1),
        };
        let run = std::path::Path::new("runs/x");
        assert_eq!(g(0).rank_dir(run), run);
        assert_eq!(g(1).rank_dir(run), run.join("rank-1"));
    }
}

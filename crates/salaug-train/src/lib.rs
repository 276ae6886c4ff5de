//! # salaug-train
//!
//! Datasets in their real formats, the Burn Learner with the saliency training step, the run
//! loop with checkpoints, resume and per-epoch metrics, and the `salaug` command-line tool
//! built on them.
//!
//! Data flows one way: config → data → step → metrics → run loop. Which file owns which job:
//!
//! | file | job |
//! |---|---|
//! | [`config`] | the run config (TOML, `--set` overrides, validation) and what it builds: the model config, the optimiser (one dispatch, [`config::WithOptimizer`]) and the schedule |
//! | [`data`] | dataset readers (Fashion-MNIST IDX, CIFAR binary, SVHN `.mat`), class folders streamed from disk ([`data::FolderSet`]), downloads, and [`data::load_data`]: the run's training and test sets ([`data::Images`], in memory or from files) with their input normalisation |
//! | [`trainee`] | the model as the Learner trains it ([`trainee::build_model`]), the step's plan (built once from the config), the saliency training step (`TrainStep`, `L_sal` by `salaug_core::SaliencyLoss::of_batch`) and the evaluation step; their measurements stay on the device until the epoch ends |
//! | [`metrics`] | the held-out measures (clean, augmented and panel accuracy, map agreement, deletion/insertion, the held-out `L_sal` distance) and `metrics.csv` (columns defined in `salaug_spec::metrics`) |
//! | [`plot`] | `salaug plot`: training curves from `metrics.csv` as SVG (plotters) |
//! | [`run`] | the epoch loop around burn's Learner: run directory, preflight, checkpoints, `--resume`, loading a finished run |
//! | [`timing`] | `salaug time`: wall time, CPU use and memory of training steps |
//! | [`schedule`] | learning-rate schedules stepped per iteration |
//! | [`render`] | progress bars and log lines |
//! | [`saliency_png`] | `salaug saliency`: maps, overlays and a side-by-side grid of runs as PNG |
//! | `main.rs` | the command line: one entry point per subcommand |
//!
//! What crosses a process boundary (table specs, metrics columns, the timing record, data
//! search paths) is defined in the burn-free `salaug-spec` crate, shared with `cargo xtask`.
//!
//! Errors: the libraries (salaug-core, salaug-augment, salaug-spec, [`data`]) return their own
//! `thiserror` enums (salaug-augment's wraps salaug-core's); this crate's run-level code and the
//! CLI use `anyhow` with context, and `main` prints the chain and exits non-zero.

pub mod config;
pub mod data;
pub mod metrics;
pub mod plot;
pub mod render;
pub mod run;
pub mod saliency_png;
pub mod schedule;
pub mod timing;
pub mod trainee;

pub use config::RunConfig;

//! # salaug-train
//!
//! Datasets in their real formats, the Burn Learner with the saliency training step, the run
//! loop with checkpoints, resume and per-epoch metrics, and the `salaug` command-line tool
//! built on them.
//!
//! The modules depend one way: [`config`] ← {[`data`], [`optim`], [`schedule`]} ←
//! {[`tally`], [`group`]} ← [`trainee`] (the step) ← [`metrics`] ← [`run`] ← `main.rs`; [`backend`] is
//! read by the programs only. Which file owns which job:
//!
//! | file | job |
//! |---|---|
//! | [`config`] | the run config: one struct per TOML table ([`config::sections`], one `Default` and one `validate` each), `--set` overrides, parsing; it imports no other module of the crate |
//! | [`data`] | dataset readers (Fashion-MNIST IDX, CIFAR binary, SVHN `.mat`), class folders streamed from disk ([`data::FolderSet`]), downloads, and [`data::load_data`]: the training and test sets of a `[data]` section ([`data::Images`], in memory or from files) with their input normalisation |
//! | [`optim`] | burn's optimiser of `train.optimizer` (one dispatch, [`optim::with_optimizer`]) |
//! | [`schedule`] | learning-rate schedules stepped per iteration |
//! | [`trainee`] | the model as the Learner trains it ([`trainee::build_model`]), the step's plan (built once from the config), the saliency training step (`TrainStep`, `L_sal` by `salaug_core::SaliencyLoss::of_batch`) and the evaluation step |
//! | [`tally`] | the steps' measurements: one row per step left on its device (of any backend level), summed into a typed [`tally::Tally`] when the epoch ends |
//! | [`group`] | several processes (ranks) training one model over burn-collective: the group from flags or a scheduler's variables, joining it (rank 0 hosts the orchestrator), the gradients' mean in visiting order, the ranks' agreement checks, a timeout on every wait |
//! | [`metrics`] | the held-out measures (clean, augmented and panel accuracy, map agreement, deletion/insertion, the held-out `L_sal` distance) and `metrics.csv` (columns: `salaug_spec::measures::MEASURES`) |
//! | [`run`] | the epoch loop around burn's Learner: run directory, preflight, checkpoints, `--resume`, loading a finished run |
//! | [`timing`] | `salaug time`: wall time, CPU use and memory of training steps |
//! | [`plot`] | `salaug plot`: training curves from `metrics.csv` as SVG (plotters), one panel per group of measures |
//! | [`render`] | progress bars and log lines |
//! | [`saliency_png`] | `salaug saliency`: maps, overlays and a side-by-side grid of runs as PNG |
//! | [`backend`] | the backend chosen by cargo feature and the allocator tuning, for programs |
//! | `main.rs` | the command line: one entry point per subcommand |
//!
//! ## What a contributor touches to add a unit
//!
//! Counted in code places (match arms, list entries, declarations; tests and docs apart) before
//! and after the restructure of December 2026 (the review of 4ce5742 counted "before"):
//!
//! | to add | before | now | where, now |
//! |---|---|---|---|
//! | a held-out measure | ≈ 12 in 7 files of 3 crates | 4 in 3 files | its field in `salaug_spec::HeldOut` and its NaN in `HeldOut::default`, one row of `salaug_spec::measures::MEASURES` (CSV column and format, heading, scale, direction, plot panel, table column), its computation in [`metrics::held_out`]; `metrics.csv`, the log line, `salaug eval`, `salaug plot` and the xtask tables iterate the table |
//! | a dataset format | ≈ 8 in 3–4 files | 6 in 3 files | its reader file in `data/`, one line of [`config::DatasetKind`] (the name, written once: serde, `FromStr`, `Display`, `ALL`), its arms in [`data::load`], [`data::present`] and the not-found hint of [`data::locate`]; optionally `data::Remote::of` |
//! | an augmentation | 4 | 4 | unchanged: its type, `pub mod` / `pub use` and one `augmentations!` line in salaug-augment |
//! | a saliency method | ≈ 9 code + 5 test lists | ≈ 9 code + 0 test lists | its file in `salaug_core::saliency` (`mod` / `pub use`), the `SaliencyKind` variant with its arms in `name()`, `FromStr` (which now parses configs too), `attribute` and `uses_hooks` (the compiler asks for each), one entry of `SaliencyKind::every()`, the crate-root re-export, the xtask bench's `METHODS` (it sets per-method bench settings); the core, zoo and end-to-end method tests iterate `every()` |
//! | a model family | ≈ 10 code + 4 test | 3 code + test references | its module (with `FEATURES`, `CAM_LAYER`, `forward_features`), `pub mod` / `pub use`, one `families` line and one `archs` line per architecture in `salaug_models`' `zoo!` list (which writes `Arch`, its names, `Model` and every dispatch); the zoo tests iterate `Arch::ALL` and hold torchvision's parameter counts and the feature shapes as references |
//!
//! What crosses a process boundary (table specs, metrics columns, the timing record, data
//! search paths) is defined in the burn-free `salaug-spec` crate, shared with `cargo xtask`.
//!
//! Errors: the libraries (salaug-core, salaug-augment, salaug-spec, [`data`]) return their own
//! `thiserror` enums (salaug-augment's wraps salaug-core's); this crate's run-level code and the
//! CLI use `anyhow` with context, and `main` prints the chain and exits non-zero.

pub mod backend;
pub mod config;
pub mod data;
pub mod group;
pub mod metrics;
pub mod optim;
pub mod parity;
pub mod plot;
pub mod render;
pub mod run;
pub mod saliency_png;
pub mod schedule;
pub mod select;
pub mod tally;
pub mod timing;
pub mod trainee;
pub mod weights;

pub use config::RunConfig;

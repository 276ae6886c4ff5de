//! # salaug-train
//!
//! Datasets in their real formats ([`data`]), the Burn Learner with the saliency training step
//! ([`trainee`]), the run loop with checkpoints, resume and per-epoch metrics ([`run`]), and
//! the `salaug` command-line tool built on them.

pub mod config;
pub mod data;
pub mod render;
pub mod run;
pub mod saliency_png;
pub mod schedule;
pub mod timing;
pub mod trainee;

pub use config::RunConfig;

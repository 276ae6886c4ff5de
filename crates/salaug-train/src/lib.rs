//! # salaug-train
//!
//! Datasets, the Burn Learner with a saliency TrainStep, and the `salaug` command-line tool.
//!
//! **Not written yet.** This crate is part of the workspace layout; it holds no code until its
//! issue is done, and nothing in it claims to work. Use [`salaug_core`] with your own model
//! meanwhile.

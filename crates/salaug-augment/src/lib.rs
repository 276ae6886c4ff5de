//! # salaug-augment
//!
//! The paper's augmentations as batched tensor ops, each with its parameter sampling, apply and tested inverse (or expected-map) side by side.
//!
//! **Not written yet.** This crate is part of the workspace layout; it holds no code until its
//! issue is done, and nothing in it claims to work. Use [`salaug_core`] with your own model
//! meanwhile.

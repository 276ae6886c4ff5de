//! # salaug-models
//!
//! The paper's model zoo (ResNet-18/50, DenseNet-121/169, VGG-16/19-BN, a small CNN), built only from twice-differentiable operations.
//!
//! **Not written yet.** This crate is part of the workspace layout; it holds no code until its
//! issue is done, and nothing in it claims to work. Use [`salaug_core`] with your own model
//! meanwhile.

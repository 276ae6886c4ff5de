//! # salaug-models
//!
//! The paper's model zoo, built only from twice-differentiable operations.
//!
//! So far: [`ops`], the layers that replace burn 0.21's unsafe ones (linear, max/avg pooling,
//! global average pooling), each checked against burn's forward and against finite
//! differences at second order. The models themselves (ResNet-18/50, DenseNet-121/169,
//! VGG-16/19-BN, a small CNN) are not written yet.

pub mod ops;

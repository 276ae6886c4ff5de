//! The backend chosen by cargo feature, for binaries, examples and benchmarks.
//!
//! The library itself is generic over the backend; only programs name one. With several
//! backend features on, the first of `flex`, `ndarray`, `wgpu`, `cuda` wins.

/// The backend selected by the enabled cargo feature.
#[cfg(feature = "flex")]
pub type Selected = burn::backend::Flex;
/// The backend selected by the enabled cargo feature.
#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
pub type Selected = burn::backend::NdArray;
/// The backend selected by the enabled cargo feature.
#[cfg(all(not(feature = "flex"), not(feature = "ndarray"), feature = "wgpu"))]
pub type Selected = burn::backend::Wgpu;
/// The backend selected by the enabled cargo feature.
#[cfg(all(
    not(feature = "flex"),
    not(feature = "ndarray"),
    not(feature = "wgpu"),
    feature = "cuda"
))]
pub type Selected = burn::backend::Cuda;

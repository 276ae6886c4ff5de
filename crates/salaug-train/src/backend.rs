//! The backend chosen by cargo feature, for the `salaug` binary, the benchmarks and the tests:
//! the only file of salaug that names a backend for a program. The libraries (salaug-core,
//! salaug-models, salaug-augment and the rest of this crate) are generic over the backend.
//! With several backend features on, the first of `flex`, `ndarray`, `wgpu`, `cuda` wins.

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

/// Tunes the C allocator for tensor workloads; programs call it first thing in `main`.
///
/// CPU backends allocate a fresh buffer for almost every tensor, many of them megabytes large.
/// glibc serves large requests with `mmap` and trims the heap top back to the kernel when it
/// is freed, so each step pays page faults and the kernel's zeroing of every new page again.
/// With the mmap threshold at its maximum (32 MiB) and heap trimming off, freed buffers are
/// reused instead. On the training step of `cargo xtask bench peer` (small CNN, saliency) this
/// was 15–25 % faster and its peak memory lower (docs/benchmarks.md). A library leaves this to
/// the program; elsewhere than glibc it does nothing.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

//! # salaug-spec
//!
//! One definition of what crosses a process boundary: the `salaug` command line writes these
//! records and `cargo xtask` (and the tests) read them back, through the same types. The crate
//! is burn-free so that xtask builds in seconds.

pub mod data;
pub mod measures;
pub mod metrics;
pub mod paper;
pub mod step;
pub mod table;
pub mod timing;

pub use measures::{Measure, MEASURES};
pub use metrics::{EpochMetrics, HeldOut, MetricsError};
pub use paper::PaperFigures;
pub use step::StepAgreement;
pub use table::{Cell, Mode, SpecError, TableSpec, Variant};
pub use timing::StepTiming;

/// Writes `bytes` to `path` whole or not at all: to `<path>.part`, then renamed over `path`, so
/// that a process killed while writing leaves the old file (or none), never a partial one.
pub fn write_whole(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    std::fs::write(&part, bytes)?;
    std::fs::rename(&part, path)
}

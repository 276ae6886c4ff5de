//! # salaug-spec
//!
//! One definition of what crosses a process boundary: the `salaug` command line writes these
//! records and `cargo xtask` (and the tests) read them back, through the same types. The crate
//! is burn-free so that xtask builds in seconds.

pub mod data;
pub mod measures;
pub mod metrics;
pub mod paper;
pub mod table;
pub mod timing;

pub use measures::{Measure, MEASURES};
pub use metrics::{EpochMetrics, HeldOut, MetricsError};
pub use paper::PaperFigures;
pub use table::{Cell, Mode, SpecError, TableSpec};
pub use timing::StepTiming;

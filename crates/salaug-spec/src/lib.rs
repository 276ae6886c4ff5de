//! # salaug-spec
//!
//! One definition of what crosses a process boundary: the `salaug` command line writes these
//! records and `cargo xtask` (and the tests) read them back, through the same types. The crate
//! is burn-free so that xtask builds in seconds.

pub mod timing;

pub use timing::StepTiming;

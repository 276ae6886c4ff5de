//! `cargo xtask gradcheck-full`: the slow finite-difference checks that CI skips.

use anyhow::Result;

use crate::salaug_bin::cargo;

/// The `#[ignore]`d tests of `salaug-models`' `gradcheck`, in release mode.
pub fn handle() -> Result<()> {
    cargo(&[
        "test",
        "--release",
        "-p",
        "salaug-models",
        "--test",
        "gradcheck",
        "--",
        "--ignored",
        "--nocapture",
    ])
}

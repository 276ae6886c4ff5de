//! Fashion-MNIST, the data of the CPU modes and the step benchmarks: finding it where
//! `salaug` looks, else installing the Debian package, else asking for a `salaug` that
//! downloads it.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};
use salaug_spec::data::DEBIAN_FASHION_MNIST;

/// A file every copy of the data set has.
const FILE: &str = "t10k-images-idx3-ubyte.gz";

/// Finds Fashion-MNIST where `salaug` looks, else installs the Debian package (as root, or
/// with sudo), else asks for a `salaug` built with the `download` feature, which fetches the
/// official files (md5-checked) into its cache. Returns whether to build with `download`.
pub fn ensure(data_dir: Option<&Path>) -> Result<bool> {
    let places = salaug_spec::data::search_path("fashion_mnist", data_dir);
    if let Some(found) = places.iter().find(|p| p.join(FILE).exists()) {
        eprintln!("data: Fashion-MNIST found in {}", found.display());
        return Ok(false);
    }
    if data_dir.is_some() {
        bail!(
            "Fashion-MNIST is not in the --data-dir given (looked in {})",
            places
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if install_debian_package() {
        return Ok(false);
    }
    eprintln!(
        "data: Fashion-MNIST not found; building salaug with the `download` feature to fetch it from its official address (md5-checked) into $SALAUG_DATA or ~/.cache/salaug"
    );
    Ok(true)
}

/// `apt-get install dataset-fashion-mnist` (after `apt-get update` if that fails), as root or
/// with password-less sudo; whether the data are then in [`DEBIAN_FASHION_MNIST`].
fn install_debian_package() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let sudo = !root
        && Command::new("sudo")
            .args(["-n", "true"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    let apt = Command::new("apt-get").arg("--version").output().is_ok();
    if !(apt && (root || sudo)) {
        return false;
    }
    eprintln!("data: Fashion-MNIST not found; installing the Debian package: apt-get install -y dataset-fashion-mnist");
    let run = |args: &[&str]| -> bool {
        let mut c = if sudo {
            Command::new("sudo")
        } else {
            Command::new(args[0])
        };
        if sudo {
            c.args(args);
        } else {
            c.args(&args[1..]);
        }
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let installed = run(&["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"])
        || (run(&["apt-get", "update", "-qq"])
            && run(&["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"]));
    if installed && Path::new(DEBIAN_FASHION_MNIST).join(FILE).exists() {
        eprintln!("data: installed to {DEBIAN_FASHION_MNIST}");
        return true;
    }
    eprintln!("data: the Debian package could not be installed");
    false
}

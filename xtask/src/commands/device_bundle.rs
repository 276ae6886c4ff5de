//! `cargo xtask device-bundle`: everything a borrowed GPU machine (no Rust toolchain, no
//! network, a working tree of at most 64 MiB) needs to check and time salaug in minutes:
//! stripped, gzipped `salaug` binaries of the `cuda` and `flex` builds (cudarc loads the CUDA
//! driver at run time, so the build needs no CUDA here; stripped, the two are 70 MiB, gzipped
//! 19 MiB, and `run.sh` unpacks them), a Fashion-MNIST subset, the configs it
//! runs, the PyTorch peer step, and `run.sh` (xtask/device/run.sh: what it runs and in what
//! time).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::fashion_mnist;
use crate::salaug_bin::{build, workspace_root};

/// The script and the PyTorch step that the bundle carries (one copy each, in the repository).
const RUN_SH: &str = include_str!("../../device/run.sh");
const TORCH_STEP: &str = include_str!("../../device/torch_gpu_step.py");
/// The configs `run.sh` names.
const CONFIGS: [&str; 3] = ["ci-fmnist.toml", "bench-peer.toml", "cpu-base.toml"];
/// The most a working tree sent to the GPU machine may hold.
const LIMIT_MIB: f64 = 64.0;

/// The flags of `cargo xtask device-bundle`.
#[derive(Debug, Args)]
pub struct DeviceBundleArgs {
    /// Where to write the bundle (replaced whole).
    #[arg(long, default_value = "target/device-bundle")]
    out: PathBuf,
    /// Training images of the Fashion-MNIST subset (the first ones of the training file).
    #[arg(long, default_value_t = 12_000)]
    train_images: usize,
    /// Test images of the subset.
    #[arg(long, default_value_t = 2_000)]
    test_images: usize,
    /// Reuse binaries already in the bundle instead of building them.
    #[arg(long)]
    no_build: bool,
    /// Space left for the rest of the working tree that travels with the bundle (MiB).
    #[arg(long, default_value_t = 8.0)]
    reserve_mib: f64,
}

pub fn handle(args: DeviceBundleArgs) -> Result<()> {
    let root = workspace_root();
    let out = root.join(&args.out);
    let bin = out.join("bin");
    if args.no_build {
        for b in ["salaug-cuda.gz", "salaug-flex.gz"] {
            if !bin.join(b).exists() {
                bail!("--no-build: {} is missing", bin.join(b).display());
            }
        }
    } else {
        if bin.exists() {
            std::fs::remove_dir_all(&bin)?;
        }
        std::fs::create_dir_all(&bin)?;
        // The cuda build first: the flex one is then the target folder's `salaug` again.
        for (backend, name) in [("cuda", "salaug-cuda"), ("flex", "salaug-flex")] {
            let built = build(backend, false)?;
            let dest = bin.join(name);
            std::fs::copy(&built, &dest)
                .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
            strip(&dest)?;
            gzip(&dest)?;
        }
    }
    for dir in ["configs", "data"] {
        let d = out.join(dir);
        if d.exists() {
            std::fs::remove_dir_all(&d)?;
        }
    }
    std::fs::create_dir_all(out.join("configs"))?;
    for c in CONFIGS {
        std::fs::copy(root.join("configs").join(c), out.join("configs").join(c))
            .with_context(|| format!("copying configs/{c}"))?;
    }
    fashion_mnist::ensure(None)?;
    let from = salaug_spec::data::search_path("fashion_mnist", None)
        .into_iter()
        .find(|p| p.join("t10k-images-idx3-ubyte.gz").exists())
        .context("Fashion-MNIST: not found after installing it")?;
    let to = out.join("data").join("fashion_mnist");
    std::fs::create_dir_all(&to)?;
    for (split, n) in [("train", args.train_images), ("t10k", args.test_images)] {
        subset(
            &from.join(format!("{split}-images-idx3-ubyte.gz")),
            &to.join(format!("{split}-images-idx3-ubyte.gz")),
            n,
            28 * 28,
        )?;
        subset(
            &from.join(format!("{split}-labels-idx1-ubyte.gz")),
            &to.join(format!("{split}-labels-idx1-ubyte.gz")),
            n,
            1,
        )?;
    }
    let peer = root.join("../shared/peers/torch_saliency_bench.py");
    std::fs::copy(&peer, out.join("torch_saliency_bench.py"))
        .with_context(|| format!("copying the PyTorch peer step {}", peer.display()))?;
    std::fs::write(out.join("torch_gpu_step.py"), TORCH_STEP)?;
    std::fs::write(out.join("run.sh"), RUN_SH)?;
    let mut files = Vec::new();
    list(&out, &mut files)?;
    let total: u64 = files.iter().map(|(_, n)| n).sum();
    for (path, bytes) in &files {
        let rel = path.strip_prefix(&out).unwrap_or(path);
        eprintln!("{:>10.2} MiB  {}", *bytes as f64 / 1048576.0, rel.display());
    }
    let mib = total as f64 / 1048576.0;
    eprintln!("{mib:>10.2} MiB  in all ({})", out.display());
    if mib + args.reserve_mib > LIMIT_MIB {
        bail!(
            "the bundle is {mib:.1} MiB: with {:.0} MiB for the rest of the working tree it \
             exceeds the {LIMIT_MIB} MiB a GPU machine takes (lower --train-images)",
            args.reserve_mib
        );
    }
    println!("{}", out.display());
    Ok(())
}

/// `strip` (binutils) on `path`: the symbols and debug sections out, nothing rebuilt.
fn strip(path: &Path) -> Result<()> {
    let status = Command::new("strip")
        .arg(path)
        .status()
        .context("could not run `strip` (binutils)")?;
    if !status.success() {
        bail!("strip {} failed with {status}", path.display());
    }
    Ok(())
}

/// Replaces `path` by `path.gz`.
fn gzip(path: &Path) -> Result<()> {
    let gz_path = path.with_extension("gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz_path)
            .with_context(|| format!("creating {}", gz_path.display()))?,
        flate2::Compression::default(),
    );
    std::io::copy(&mut std::fs::File::open(path)?, &mut gz)?;
    gz.finish()?;
    std::fs::remove_file(path)?;
    Ok(())
}

/// The first `n` items of the gzipped IDX file `from` (items of `item` bytes) written to `to`
/// as a gzipped IDX file of its own.
fn subset(from: &Path, to: &Path, n: usize, item: usize) -> Result<()> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(from)?)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading {}", from.display()))?;
    if raw.len() < 8 {
        bail!("{}: not an IDX file", from.display());
    }
    let dims = raw[3] as usize;
    let header = 4 + 4 * dims;
    let count = u32::from_be_bytes(raw[4..8].try_into().unwrap()) as usize;
    if count < n || raw.len() != header + count * item {
        bail!(
            "{}: {count} items of {item} bytes expected in {} bytes (want {n})",
            from.display(),
            raw.len()
        );
    }
    let mut bytes = raw[..header].to_vec();
    bytes[4..8].copy_from_slice(&(n as u32).to_be_bytes());
    bytes.extend_from_slice(&raw[header..header + n * item]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bytes)?;
    std::fs::write(to, gz.finish()?).with_context(|| format!("writing {}", to.display()))
}

fn list(dir: &Path, files: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let meta = e.metadata()?;
        if meta.is_dir() {
            list(&e.path(), files)?;
        } else {
            files.push((e.path(), meta.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subset keeps the IDX header (with the new count) and the first items.
    #[test]
    fn a_subset_is_the_first_items_with_their_count() {
        let tmp = std::env::temp_dir().join(format!("xtask-subset-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let mut idx = vec![0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 1];
        idx.extend(0u8..10);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&idx).unwrap();
        std::fs::write(tmp.join("a.gz"), gz.finish().unwrap()).unwrap();
        subset(&tmp.join("a.gz"), &tmp.join("b.gz"), 3, 2).unwrap();
        let mut got = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(tmp.join("b.gz")).unwrap())
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(
            got,
            [0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 1, 2, 3, 4, 5]
        );
        let err = subset(&tmp.join("a.gz"), &tmp.join("c.gz"), 6, 2).unwrap_err();
        assert!(err.to_string().contains("want 6"), "{err}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}

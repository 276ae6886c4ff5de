//! Loads a torchvision `state_dict` written by `torchvision_parity.py` (as `.pth` and as
//! `.safetensors`) into salaug's model of the same architecture and compares its evaluation
//! logits with torchvision's on the script's 8 images. Run by `cargo xtask torchvision-parity`.
//!
//! Usage: `torchvision_parity DIR ARCH` (DIR holds weights.pth, weights.safetensors and
//! io.safetensors). Prints one line per file; exits non-zero when a logit differs by more than
//! 1e-4.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use salaug_models::{Arch, ModelConfig, Stem};
use salaug_train::backend::Selected;
use salaug_train::weights::load_pretrained;

fn tensor(st: &safetensors::SafeTensors, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let t = st
        .tensor(name)
        .with_context(|| format!("io.safetensors: no {name}"))?;
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((t.shape().to_vec(), v))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, arch] = args.as_slice() else {
        bail!("usage: torchvision_parity DIR ARCH");
    };
    let dir = PathBuf::from(dir);
    let arch = Arch::from_name(arch).with_context(|| format!("no architecture {arch}"))?;
    let bytes = std::fs::read(dir.join("io.safetensors")).context("reading io.safetensors")?;
    let io = safetensors::SafeTensors::deserialize(&bytes)?;
    let (xs, x) = tensor(&io, "x")?;
    let (_, want) = tensor(&io, "logits")?;
    let device = Default::default();
    let x = Tensor::<Selected, 1>::from_floats(x.as_slice(), &device)
        .reshape([xs[0], xs[1], xs[2], xs[3]]);
    let config = ModelConfig::new(arch, Stem::ImageNet, 3, 1000);
    let mut worst = 0.0f32;
    for file in ["weights.pth", "weights.safetensors"] {
        let mut model = config.init::<Selected>(&device);
        let loaded = load_pretrained(&mut model, &config, &dir.join(file))?;
        let (logits, _) = model.forward_features(x.clone());
        let got = logits.into_data().convert::<f32>().to_vec::<f32>().unwrap();
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        println!(
            "{} from {file}: {} tensors, max |logit difference| {diff:.2e} over {} logits \
             (|logit| up to {scale:.3})",
            arch.name(),
            loaded.applied,
            got.len()
        );
        worst = worst.max(diff);
    }
    if worst > 1e-4 {
        bail!("{}: logits differ by {worst:.2e} (> 1e-4)", arch.name());
    }
    Ok(())
}

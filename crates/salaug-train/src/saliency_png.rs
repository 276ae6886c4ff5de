//! `salaug saliency`: PNGs of an image, its saliency map and an overlay.
//!
//! The map explains the model's predicted class with the run's saliency method (`loss.method`;
//! for the gradient, the input gradient of that logit), absolute value, max over channels,
//! min-max scaled. BatchNorm runs with batch statistics in the
//! saliency pass (as in training), so the requested images are batched with held-out test
//! images up to 64; the prediction itself uses the running statistics.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use image::imageops::FilterType;
use salaug_core::{ChannelReduction, Classifier, Explain, SaliencyMethod};

use crate::data::Data;
use crate::data::{ImageSet, Images};
use crate::trainee::Trainee;

/// Reads `path` as a `[c, h, w]` byte image of the model's input shape.
pub fn read_input(path: &Path, [c, h, w]: [usize; 3]) -> Result<Vec<u8>> {
    let img =
        image::open(path).with_context(|| format!("{}: cannot decode image", path.display()))?;
    let img = img.resize_exact(w as u32, h as u32, FilterType::Triangle);
    Ok(match c {
        1 => img.to_luma8().into_raw(),
        3 => {
            let rgb = img.to_rgb8();
            let mut out = vec![0u8; 3 * h * w];
            for (i, p) in rgb.pixels().enumerate() {
                for ch in 0..3 {
                    out[ch * h * w + i] = p[ch];
                }
            }
            out
        }
        _ => bail!("the model takes {c} channels; only 1 and 3 can be read from image files"),
    })
}

fn write_png(path: &Path, img: image::RgbImage) -> Result<()> {
    let tmp = path.with_extension("png.part");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Writes `<name>_image.png`, `<name>_map.png` and `<name>_overlay.png` for every file in
/// `files` and the first `test` test images into `out`; returns the number of files written.
pub fn write_maps<B: Backend>(
    model: &Trainee<B>,
    data: &Data,
    files: &[PathBuf],
    test: usize,
    out: &Path,
    device: &B::Device,
) -> Result<usize> {
    let shape = data.test.shape();
    let [c, h, w] = shape;
    let mut names = Vec::new();
    let mut pixels = Vec::new();
    for f in files {
        pixels.extend(read_input(f, shape)?);
        names.push(
            f.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into()),
        );
    }
    let test = test.min(data.test.len());
    for i in 0..test {
        pixels.extend_from_slice(&data.test.image(i)?);
        names.push(format!("test{i:04}_label{}", data.test.labels()[i]));
    }
    let n = names.len();
    if n > 64 {
        bail!("{n} images; at most 64 per call");
    }
    // Context images for BatchNorm's batch statistics.
    let context = (64 - n).min(data.test.len().saturating_sub(test));
    for i in (data.test.len() - context)..data.test.len() {
        pixels.extend_from_slice(&data.test.image(i)?);
    }
    let set = Images::Memory(ImageSet {
        labels: vec![0; n + context],
        pixels,
        shape,
        classes: data.test.classes(),
    });
    let all: Vec<usize> = (0..n + context).collect();
    let x = set.tensor::<B>(&all, device)?;
    let predicted = model.logits(x.clone()).argmax(1).flatten::<1>(0, 1);
    let method = &model.plan.0.config.loss.method;
    let raw = method.attribute(model, x, &Explain::class(predicted.clone()))?;
    let maps = ChannelReduction::AbsMax.forward(raw.maps);
    let maps: Vec<f32> = maps
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 maps");
    let predicted: Vec<i64> = predicted
        .into_data()
        .convert::<i64>()
        .to_vec()
        .expect("classes");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = 0;
    for (i, name) in names.iter().enumerate() {
        let m = &maps[i * h * w..(i + 1) * h * w];
        let (lo, hi) = m
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
        let img = set.image(i)?;
        let px = |ch: usize, y: usize, x: usize| img[(ch.min(c - 1) * h + y) * w + x];
        let mut image = image::RgbImage::new(w as u32, h as u32);
        let mut map = image::RgbImage::new(w as u32, h as u32);
        let mut overlay = image::RgbImage::new(w as u32, h as u32);
        for y in 0..h {
            for x in 0..w {
                let rgb = [px(0, y, x), px(1, y, x), px(2, y, x)];
                let s = (m[y * w + x] - lo) * scale;
                let v = (255.0 * s) as u8;
                let gray = (rgb.iter().map(|&v| v as f32).sum::<f32>() / 3.0) * 0.5;
                image.put_pixel(x as u32, y as u32, image::Rgb(rgb));
                map.put_pixel(x as u32, y as u32, image::Rgb([v, v, v]));
                overlay.put_pixel(
                    x as u32,
                    y as u32,
                    image::Rgb([
                        (gray + 127.5 * s) as u8,
                        (gray * (1.0 - 0.5 * s)) as u8,
                        (gray * (1.0 - 0.5 * s)) as u8,
                    ]),
                );
            }
        }
        let stem = format!("{name}_pred{}", predicted[i]);
        for (suffix, img) in [("image", image), ("map", map), ("overlay", overlay)] {
            write_png(&out.join(format!("{stem}_{suffix}.png")), img)?;
            written += 1;
        }
    }
    Ok(written)
}

//! `salaug saliency`: saliency maps a person can look at.
//!
//! - Per image of the first run: `<name>_pred<k>_{image,map,overlay}.png`.
//! - `grid.png`: one row per image; the image, then for each run side by side (e.g. a `ref`
//!   and a `sal` run of the same seed) its map, the overlay, `T(x)` for a fixed panel
//!   transform and `T⁻¹` of the map of `T(x)` (what `L_sal` compares with the map of `x`;
//!   pixels without a source are dark blue). `grid.txt` names the columns.
//!
//! - With `--method` (any number): `methods.png`, one row per image: the image, then for each
//!   run each method's map side by side (`methods.txt` names the columns).
//!
//! A map explains the model's predicted class of `x` with the run's saliency method
//! (`loss.method`; for the gradient, the input gradient of that logit) or the one asked for,
//! absolute value, max over channels, min-max scaled per image (over valid pixels). The model
//! runs in evaluation mode (BatchNorm with running statistics), the maps included, so each
//! image's map depends on that image only.

use salaug_core::AutodiffBase;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use image::imageops::FilterType;
use rand::{rngs::StdRng, SeedableRng};
use salaug_augment::Compare;
use salaug_core::{
    BatchNormMode, ChannelReduction, Classifier, Explain, SaliencyKind, SaliencyMethod,
};

use crate::data::Data;
use crate::data::{ImageSet, Images};
use crate::metrics::{host, panel};
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

/// Predicted classes of `x` and the |maps| (max over channels) of `method` for them, in
/// evaluation mode; `[n·h·w]`.
fn maps_of<B: AutodiffBase>(
    model: &Trainee<B>,
    method: &SaliencyKind,
    x: Tensor<B, 4>,
    classes: Option<Tensor<B, 1, Int>>,
) -> Result<(Tensor<B, 1, Int>, Tensor<B, 4>)> {
    let classes = classes.unwrap_or_else(|| model.logits(x.clone()).argmax(1).flatten::<1>(0, 1));
    let explain = Explain::class(classes.clone()).with_batch_norm(BatchNormMode::Running);
    let raw = method.attribute(model, x, &explain)?;
    Ok((classes, ChannelReduction::AbsMax.forward(raw.maps)))
}

/// Min-max scaling of a map over its valid pixels (all when `valid` is `None`); invalid
/// pixels give `None`.
fn scaled(m: &[f32], valid: Option<&[f32]>) -> Vec<Option<f32>> {
    let ok = |i: usize| valid.is_none_or(|v| v[i] > 0.5);
    let (lo, hi) = (0..m.len())
        .filter(|&i| ok(i))
        .fold((f32::MAX, f32::MIN), |(a, b), i| (a.min(m[i]), b.max(m[i])));
    let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
    (0..m.len())
        .map(|i| ok(i).then(|| (m[i] - lo) * scale))
        .collect()
}

/// Tiles of one image: `[c, h, w]` bytes and a scaled map.
struct Tile<'a> {
    img: &'a [u8],
    c: usize,
    h: usize,
    w: usize,
}

impl Tile<'_> {
    fn rgb(&self, y: usize, x: usize) -> [u8; 3] {
        let (h, w) = (self.h, self.w);
        std::array::from_fn(|ch| self.img[(ch.min(self.c - 1) * h + y) * w + x])
    }
    fn image(&self) -> image::RgbImage {
        image::RgbImage::from_fn(self.w as u32, self.h as u32, |x, y| {
            image::Rgb(self.rgb(y as usize, x as usize))
        })
    }
    fn map(&self, s: &[Option<f32>]) -> image::RgbImage {
        image::RgbImage::from_fn(self.w as u32, self.h as u32, |x, y| {
            match s[y as usize * self.w + x as usize] {
                Some(v) => {
                    let v = (255.0 * v) as u8;
                    image::Rgb([v, v, v])
                }
                None => image::Rgb([0, 0, 96]),
            }
        })
    }
    fn overlay(&self, s: &[Option<f32>]) -> image::RgbImage {
        image::RgbImage::from_fn(self.w as u32, self.h as u32, |x, y| {
            let rgb = self.rgb(y as usize, x as usize);
            let gray = (rgb.iter().map(|&v| v as f32).sum::<f32>() / 3.0) * 0.5;
            let s = s[y as usize * self.w + x as usize].unwrap_or(0.0);
            image::Rgb([
                (gray + 127.5 * s) as u8,
                (gray * (1.0 - 0.5 * s)) as u8,
                (gray * (1.0 - 0.5 * s)) as u8,
            ])
        })
    }
}

/// The requested images (files, then the first `test` test images) as one in-memory set, with
/// their names.
fn gather(data: &Data, files: &[PathBuf], test: usize) -> Result<(Images, Vec<String>)> {
    let shape = data.test.shape();
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
    if n == 0 {
        bail!("no images: pass --images or --test N");
    }
    if n > 64 {
        bail!("{n} images; at most 64 per call");
    }
    let set = Images::Memory(ImageSet {
        labels: vec![0; n],
        pixels,
        shape,
        classes: data.test.classes(),
    });
    Ok((set, names))
}

/// Writes the per-image PNGs of the first run and `grid.png` (with `grid.txt`) of all `runs`
/// (label, model) into `out`, for the files in `files` and the first `test` test images;
/// `transform` names the panel transform of the warped-back column. With `methods`, also
/// `methods.png` (with `methods.txt`). Returns the number of PNG files written.
#[allow(clippy::too_many_arguments)]
pub fn write_maps<B: AutodiffBase>(
    runs: &[(String, Trainee<B>)],
    data: &Data,
    files: &[PathBuf],
    test: usize,
    transform: &str,
    methods: &[SaliencyKind],
    out: &Path,
    device: &B::Device,
) -> Result<usize> {
    let Some(t) = panel().into_iter().find(|a| a.name() == transform) else {
        bail!(
            "--transform {transform:?}: one of {}",
            panel()
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let [c, h, w] = data.test.shape();
    let (set, names) = gather(data, files, test)?;
    let n = names.len();
    let all: Vec<usize> = (0..n).collect();
    let x = set.tensor::<B>(&all, device)?;
    let tx = t.run(x.clone(), &mut StdRng::seed_from_u64(0))?;
    let tx_pixels: Vec<u8> = host(tx.images.clone().clamp(0.0, 1.0) * 255.0)
        .into_iter()
        .map(|v| v.round() as u8)
        .collect();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let hw = h * w;
    // Per run: predicted classes, scaled maps of x, scaled warped-back maps of T(x).
    let mut columns = Vec::new();
    let mut predictions = Vec::new();
    for (label, model) in runs {
        let method = &model.plan.0.loss.method;
        let (pred, s_x) = maps_of(model, method, x.clone(), None)?;
        predictions.push(pred.clone());
        let (_, s_t) = maps_of(model, method, tx.images.clone(), Some(pred.clone()))?;
        let pair = tx.transfer.pair(s_x.clone(), s_t, Compare::Inverse)?;
        let (a, b) = (host(s_x), host(pair.other));
        let mask = pair.mask.map(host);
        let pred: Vec<i64> = pred.into_data().convert::<i64>().to_vec().expect("classes");
        let maps: Vec<Vec<Option<f32>>> = (0..n)
            .map(|i| scaled(&a[i * hw..(i + 1) * hw], None))
            .collect();
        let back: Vec<Vec<Option<f32>>> = (0..n)
            .map(|i| {
                let v = mask.as_ref().map(|m| &m[i * hw..(i + 1) * hw]);
                scaled(&b[i * hw..(i + 1) * hw], v)
            })
            .collect();
        columns.push((label.clone(), pred, maps, back));
    }
    let mut written = 0;
    // Per-image files of the first run.
    let (_, pred, maps, _) = &columns[0];
    for (i, name) in names.iter().enumerate() {
        let img = set.image(i)?;
        let tile = Tile { img: &img, c, h, w };
        let stem = format!("{name}_pred{}", pred[i]);
        for (suffix, png) in [
            ("image", tile.image()),
            ("map", tile.map(&maps[i])),
            ("overlay", tile.overlay(&maps[i])),
        ] {
            write_png(&out.join(format!("{stem}_{suffix}.png")), png)?;
            written += 1;
        }
    }
    // The grid: image | per run: map, overlay, T(x), T^-1(map of T(x)).
    let mut rows = Vec::new();
    for i in 0..n {
        let img = set.image(i)?;
        let tile = Tile { img: &img, c, h, w };
        let t_img = Tile {
            img: &tx_pixels[i * c * hw..(i + 1) * c * hw],
            c,
            h,
            w,
        };
        let mut tiles = vec![tile.image()];
        for (_, _, maps, back) in &columns {
            tiles.extend([
                tile.map(&maps[i]),
                tile.overlay(&maps[i]),
                t_img.image(),
                t_img.map(&back[i]),
            ]);
        }
        rows.push(tiles);
    }
    let grid = paste(&rows, 4, [h, w]);
    write_png(&out.join("grid.png"), grid)?;
    written += 1;
    let mut legend = String::from("grid.png: one row per image; columns: image");
    for (label, pred, _, _) in &columns {
        legend.push_str(&format!(
            " | [{label}] map, overlay, T(x) ({transform}, seed 0), T^-1(map of T(x)) (dark blue: no source pixel)"
        ));
        legend.push_str(&format!("; predicted classes {pred:?}"));
    }
    write_legend(&out.join("grid.txt"), legend, &names)?;
    if !methods.is_empty() {
        written += write_method_grid(runs, &predictions, methods, &set, &names, &x, out)?;
    }
    Ok(written)
}

/// `methods.png` and `methods.txt`: per image, the image and each run's map for each method
/// (each run explains its own predicted classes, `predictions`).
fn write_method_grid<B: AutodiffBase>(
    runs: &[(String, Trainee<B>)],
    predictions: &[Tensor<B, 1, Int>],
    methods: &[SaliencyKind],
    set: &Images,
    names: &[String],
    x: &Tensor<B, 4>,
    out: &Path,
) -> Result<usize> {
    let [c, h, w] = set.shape();
    let hw = h * w;
    let n = names.len();
    let mut maps = Vec::new(); // per run, per method: scaled maps per image
    let mut legend = String::from("methods.png: one row per image; columns: image");
    for ((label, model), pred) in runs.iter().zip(predictions) {
        for method in methods {
            let (_, s) = maps_of(model, method, x.clone(), Some(pred.clone()))
                .with_context(|| format!("[{label}] saliency method {}", method.name()))?;
            let s = host(s);
            maps.push(
                (0..n)
                    .map(|i| scaled(&s[i * hw..(i + 1) * hw], None))
                    .collect::<Vec<_>>(),
            );
            legend.push_str(&format!(" | [{label}] {}", method.name()));
        }
    }
    let mut rows = Vec::new();
    for i in 0..n {
        let img = set.image(i)?;
        let tile = Tile { img: &img, c, h, w };
        let mut tiles = vec![tile.image()];
        tiles.extend(maps.iter().map(|m| tile.map(&m[i])));
        rows.push(tiles);
    }
    write_png(
        &out.join("methods.png"),
        paste(&rows, methods.len(), [h, w]),
    )?;
    write_legend(&out.join("methods.txt"), legend, names)?;
    Ok(1)
}

/// Writes `legend` (the columns of a grid) and the names of its rows to `path`.
fn write_legend(path: &Path, mut legend: String, rows: &[String]) -> Result<()> {
    legend.push_str("\nrows: ");
    legend.push_str(&rows.join(", "));
    legend.push('\n');
    std::fs::write(path, legend).with_context(|| format!("writing {}", path.display()))
}

/// One picture of `rows` of equal-size tiles, enlarged to about 112 pixels: a gap between
/// tiles, and a double gap after the first column and after every `group` columns after it.
fn paste(rows: &[Vec<image::RgbImage>], group: usize, [h, w]: [usize; 2]) -> image::RgbImage {
    let zoom = (112 / h.max(w)).max(1) as u32;
    let (tw, th) = (w as u32 * zoom, h as u32 * zoom);
    let gap = 4;
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let groups = (cols.saturating_sub(1)).div_ceil(group.max(1) as u32);
    let mut grid = image::RgbImage::from_pixel(
        cols * (tw + gap) + gap * groups,
        rows.len() as u32 * (th + gap),
        image::Rgb([255, 255, 255]),
    );
    for (i, tiles) in rows.iter().enumerate() {
        for (j, t) in tiles.iter().enumerate() {
            let big = image::imageops::resize(t, tw, th, FilterType::Nearest);
            let group_gap = if j == 0 {
                0
            } else {
                gap * ((j as u32 - 1) / group.max(1) as u32 + 1)
            };
            let x0 = j as u32 * (tw + gap) + group_gap;
            image::imageops::overlay(&mut grid, &big, x0 as i64, (i as u32 * (th + gap)) as i64);
        }
    }
    grid
}

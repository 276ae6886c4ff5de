//! ImageNet-style class folders: `<root>/<split>/<class>/<image>.{jpg,jpeg,png}`.
//!
//! Classes are the sub-folders of `<root>/train`, sorted by name (as torchvision's
//! `ImageFolder`). Each image is resized so its shorter side is `size / 0.875` (256 for 224)
//! and centre-cropped to `size × size`, as the usual ImageNet evaluation transform.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::{DataError, ImageSet, Split};

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<Result<_, _>>()?;
    out.sort();
    Ok(out)
}

/// The class names of the folder dataset at `root` (the sub-folders of `root/train`).
pub fn classes(root: &Path) -> Result<Vec<String>, DataError> {
    let train = root.join("train");
    let classes: Vec<String> = sorted_entries(&train)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if classes.len() < 2 {
        return Err(DataError::corrupt(
            &train,
            format!("{} class folder(s); at least 2 are needed", classes.len()),
        ));
    }
    Ok(classes)
}

/// Reads one split (`train`, or `val` for the test split) at `size × size` RGB.
pub fn read_image_folder(root: &Path, split: Split, size: usize) -> Result<ImageSet, DataError> {
    let classes = classes(root)?;
    let dir = root.join(match split {
        Split::Train => "train",
        Split::Test => "val",
    });
    let mut set = ImageSet {
        pixels: Vec::new(),
        labels: Vec::new(),
        shape: [3, size, size],
        classes: classes.len(),
    };
    for (label, class) in classes.iter().enumerate() {
        let class_dir = dir.join(class);
        if !class_dir.is_dir() {
            continue;
        }
        for path in sorted_entries(&class_dir)? {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            if !matches!(ext.as_str(), "jpg" | "jpeg" | "png") {
                continue;
            }
            let img = image::open(&path)
                .map_err(|e| DataError::corrupt(&path, format!("cannot decode image: {e}")))?
                .to_rgb8();
            set.pixels.extend(resize_center_crop(&img, size));
            set.labels.push(label);
        }
    }
    if set.is_empty() {
        return Err(DataError::corrupt(
            &dir,
            "no .jpg/.jpeg/.png images in the class folders",
        ));
    }
    Ok(set)
}

/// Shorter side to `size / 0.875`, centre crop `size × size`, as CHW bytes.
fn resize_center_crop(img: &image::RgbImage, size: usize) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let short = (size as f64 / 0.875).round().max(size as f64);
    let scale = short / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(size as u32),
        ((h as f64 * scale).round() as u32).max(size as u32),
    );
    let resized = image::imageops::resize(img, nw, nh, FilterType::Triangle);
    let (x0, y0) = ((nw - size as u32) / 2, (nh - size as u32) / 2);
    let mut out = vec![0u8; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let p = resized.get_pixel(x0 + x as u32, y0 + y as u32);
            for c in 0..3 {
                out[(c * size + y) * size + x] = p[c];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_folders_are_sorted_and_resized() {
        let dir = tempfile::tempdir().unwrap();
        for (split, class, color) in [
            ("train", "n02", [200u8, 10, 10]),
            ("train", "n01", [10, 200, 10]),
            ("val", "n02", [200, 10, 10]),
        ] {
            let d = dir.path().join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            let img = image::RgbImage::from_pixel(40, 30, image::Rgb(color));
            img.save(d.join("a.png")).unwrap();
            img.save(d.join("b.jpg")).unwrap();
        }
        let train = read_image_folder(dir.path(), Split::Train, 16).unwrap();
        assert_eq!(train.labels, [0, 0, 1, 1], "n01 is class 0");
        assert_eq!(train.shape, [3, 16, 16]);
        assert_eq!(train.image(0)[0], 10);
        assert_eq!(train.image(2)[0], 200, "png pixel survives exactly");
        let val = read_image_folder(dir.path(), Split::Test, 16).unwrap();
        assert_eq!((val.labels.clone(), val.classes), (vec![1, 1], 2));

        std::fs::write(dir.path().join("val/n02/c.jpg"), b"not a jpeg").unwrap();
        let err = read_image_folder(dir.path(), Split::Test, 16)
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.jpg") && err.contains("decode"), "{err}");
    }
}

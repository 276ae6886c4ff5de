//! ImageNet-style class folders: `<root>/<split>/<class>/<image>.{jpg,jpeg,png}`, decoded on
//! demand.
//!
//! Classes are the sub-folders of `<root>/train`, sorted by name (as torchvision's
//! `ImageFolder`). A [`FolderSet`] holds the file list and labels only; an image is read,
//! resized so its shorter side is `size / 0.875` (256 for 224) and centre-cropped to
//! `size × size` (the usual ImageNet evaluation transform) when a batch asks for it, in burn's
//! data-loader workers. Memory therefore stays bounded whatever the set's size (the paper's
//! ImageNet would need about 190 GB as bytes in memory).

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::{DataError, ImageSet, Prepare, Split};

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

/// File names packed into one string (a million ImageNet names take about 25 MB, not the
/// hundreds of bytes per file of a `Vec<PathBuf>`).
#[derive(Debug, Clone, Default, PartialEq)]
struct Names {
    text: String,
    ends: Vec<u32>,
}

impl Names {
    fn push(&mut self, name: &str) {
        self.text.push_str(name);
        self.ends.push(self.text.len() as u32);
    }

    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// One split of a class-folder dataset: its files and labels, decoded on demand.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderSet {
    /// The split's folder (`<root>/train` or `<root>/val`).
    dir: PathBuf,
    /// The class folders' names, by class index.
    class_names: Vec<String>,
    /// Each image's file name inside its class folder, by class then name.
    names: Names,
    /// Class index of each file.
    pub labels: Vec<usize>,
    /// Side of the centre crop.
    pub size: usize,
    /// Shape changes applied after the crop.
    pub prepare: Prepare,
}

impl FolderSet {
    /// Lists one split (`train`, or `val` for the test split) for crops of `size × size` RGB
    /// (directory listings only; see [`Self::check_headers`]).
    pub fn scan(root: &Path, split: Split, size: usize) -> Result<FolderSet, DataError> {
        let classes = classes(root)?;
        let dir = root.join(match split {
            Split::Train => "train",
            Split::Test => "val",
        });
        let mut set = FolderSet {
            dir: dir.clone(),
            class_names: classes.clone(),
            names: Names::default(),
            labels: Vec::new(),
            size,
            prepare: Prepare::default(),
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
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    return Err(DataError::corrupt(&path, "the file name is not UTF-8"));
                };
                set.names.push(name);
                set.labels.push(label);
            }
        }
        if set.names.len() == 0 {
            return Err(DataError::corrupt(
                &dir,
                "no .jpg/.jpeg/.png images in the class folders",
            ));
        }
        Ok(set)
    }

    /// Reads every file's header (format and dimensions, not the pixels), so that a file that
    /// is not an image is an error before training, naming it, rather than mid-run.
    pub fn check_headers(&self) -> Result<(), DataError> {
        for i in 0..self.len() {
            let path = &self.path(i);
            image::ImageReader::open(path)
                .map_err(|e| DataError::io(path, e))?
                .with_guessed_format()
                .map_err(|e| DataError::io(path, e))?
                .into_dimensions()
                .map_err(|e| DataError::corrupt(path, format!("cannot decode image: {e}")))?;
        }
        Ok(())
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Number of classes (the class folders of `<root>/train`).
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[channels, height, width]` of every decoded image.
    pub fn shape(&self) -> [usize; 3] {
        self.prepare.shape([3, self.size, self.size])
    }

    /// The file of image `i`.
    pub fn path(&self, i: usize) -> PathBuf {
        self.dir
            .join(&self.class_names[self.labels[i]])
            .join(self.names.get(i))
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> FolderSet {
        let mut names = Names::default();
        for &i in indices {
            names.push(self.names.get(i));
        }
        FolderSet {
            dir: self.dir.clone(),
            class_names: self.class_names.clone(),
            names,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            size: self.size,
            prepare: self.prepare,
        }
    }

    /// Reads, crops and prepares image `i`: `[c, h, w]` bytes of [`Self::shape`].
    pub fn decode(&self, i: usize) -> Result<Vec<u8>, DataError> {
        let path = &self.path(i);
        let img = image::open(path)
            .map_err(|e| DataError::corrupt(path, format!("cannot decode image: {e}")))?
            .to_rgb8();
        let one = ImageSet {
            pixels: resize_center_crop(&img, self.size),
            labels: vec![self.labels[i]],
            shape: [3, self.size, self.size],
            classes: self.classes(),
        };
        Ok(self.prepare.apply(one).pixels)
    }
}

/// Writes a synthetic class-folder set under `root`: `train` and `val` JPEGs of `side × side`
/// in `classes` folders `c00`, `c01`, … (image `i` in class `i % classes`), with content that
/// varies per image. For the tests and benchmarks of the data path.
pub fn write_synthetic(
    root: &Path,
    train: usize,
    val: usize,
    classes: usize,
    side: u32,
) -> Result<(), DataError> {
    for (split, count) in [("train", train), ("val", val)] {
        for i in 0..count {
            let class = i % classes;
            let dir = root.join(split).join(format!("c{class:02}"));
            std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
            let img = image::RgbImage::from_fn(side, side, |x, y| {
                let v = (x * 3 + y * 5 + i as u32 * 7) as u8;
                image::Rgb([v, v.wrapping_mul(3), (class * 25) as u8])
            });
            let path = dir.join(format!("{i:06}.jpg"));
            img.save(&path)
                .map_err(|e| DataError::corrupt(&path, format!("cannot write: {e}")))?;
        }
    }
    Ok(())
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
        let train = FolderSet::scan(dir.path(), Split::Train, 16).unwrap();
        assert_eq!(train.labels, [0, 0, 1, 1], "n01 is class 0");
        assert_eq!(train.shape(), [3, 16, 16]);
        assert_eq!(train.decode(0).unwrap()[0], 10);
        assert_eq!(
            train.decode(2).unwrap()[0],
            200,
            "png pixel survives exactly"
        );
        assert_eq!(train.decode(3).unwrap().len(), 3 * 16 * 16);
        let val = FolderSet::scan(dir.path(), Split::Test, 16).unwrap();
        assert_eq!((val.labels.clone(), val.classes()), (vec![1, 1], 2));

        std::fs::write(dir.path().join("val/n02/c.jpg"), b"not a jpeg").unwrap();
        let val = FolderSet::scan(dir.path(), Split::Test, 16).unwrap();
        let err = val.check_headers().unwrap_err().to_string();
        assert!(err.contains("c.jpg") && err.contains("decode"), "{err}");
    }
}

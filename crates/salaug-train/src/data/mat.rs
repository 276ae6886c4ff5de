//! A reader for MATLAB level-5 MAT files (the format of SVHN's `*_32x32.mat`), and SVHN on it.
//!
//! Supports what numeric datasets use: little-endian files, `miCOMPRESSED` (zlib) and plain
//! `miMATRIX` elements, the small-element format, and real numeric arrays of any class
//! (kept as `u8` when stored as `miUINT8`, else converted to `f64`). Cells, structs, sparse
//! and complex arrays are skipped.

use std::io::Read;
use std::path::Path;

use super::{read_file, DataError, ImageSet, Split};

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// The values of a numeric array, in MATLAB's column-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    /// Stored as `miUINT8`.
    U8(Vec<u8>),
    /// Any other numeric storage, converted.
    F64(Vec<f64>),
}

impl MatData {
    fn len(&self) -> usize {
        match self {
            MatData::U8(v) => v.len(),
            MatData::F64(v) => v.len(),
        }
    }

    /// Value `i` as `f64`.
    pub fn get(&self, i: usize) -> f64 {
        match self {
            MatData::U8(v) => v[i] as f64,
            MatData::F64(v) => v[i],
        }
    }
}

/// One named numeric array.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    /// Variable name.
    pub name: String,
    /// Dimensions (at least two).
    pub dims: Vec<usize>,
    /// Values, column-major.
    pub data: MatData,
}

/// The numeric arrays of a MAT file.
#[derive(Debug, Clone, PartialEq)]
pub struct MatFile {
    /// In file order.
    pub arrays: Vec<MatArray>,
}

impl MatFile {
    /// Parses a level-5 MAT file.
    pub fn read(path: &Path) -> Result<MatFile, DataError> {
        let bytes = read_file(path)?;
        Self::parse(&bytes).map_err(|problem| DataError::corrupt(path, problem))
    }

    /// Parses the bytes of a level-5 MAT file.
    pub fn parse(bytes: &[u8]) -> Result<MatFile, String> {
        if bytes.len() < 128 {
            return Err(format!(
                "{} bytes, too short for a MAT-file header (128)",
                bytes.len()
            ));
        }
        if bytes.starts_with(b"\x89HDF") || bytes[..116].windows(4).any(|w| w == b"7.3 ") {
            return Err("a MATLAB v7.3 (HDF5) file; only level-5 MAT files are supported".into());
        }
        match &bytes[126..128] {
            b"IM" => {}
            b"MI" => return Err("a big-endian MAT file; only little-endian is supported".into()),
            other => {
                return Err(format!(
                    "endian indicator {other:?} is not 'IM': not a level-5 MAT file"
                ))
            }
        }
        let mut arrays = Vec::new();
        let mut at = 128;
        while at < bytes.len() {
            let (ty, data, next) = element(bytes, at)?;
            at = next;
            match ty {
                MI_COMPRESSED => {
                    let mut inner = Vec::new();
                    flate2::read::ZlibDecoder::new(data)
                        .read_to_end(&mut inner)
                        .map_err(|e| format!("compressed element at byte {at}: {e}"))?;
                    let (ty, data, _) = element(&inner, 0)?;
                    if ty == MI_MATRIX {
                        arrays.extend(matrix(data)?);
                    }
                }
                MI_MATRIX => arrays.extend(matrix(data)?),
                _ => {}
            }
        }
        Ok(MatFile { arrays })
    }

    /// The array named `name`.
    pub fn get(&self, name: &str) -> Option<&MatArray> {
        self.arrays.iter().find(|a| a.name == name)
    }
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| {
            format!(
                "truncated: a tag at byte {at} runs past the end ({} bytes)",
                b.len()
            )
        })
}

/// The data element at `at`: its type, its data and where the next element starts.
fn element(b: &[u8], at: usize) -> Result<(u32, &[u8], usize), String> {
    let first = u32_at(b, at)?;
    if first >> 16 != 0 {
        let (n, ty) = ((first >> 16) as usize, first & 0xffff);
        if n > 4 {
            return Err(format!(
                "small data element at byte {at} claims {n} bytes (max 4)"
            ));
        }
        let data = b
            .get(at + 4..at + 4 + n)
            .ok_or_else(|| format!("truncated small element at byte {at}"))?;
        return Ok((ty, data, at + 8));
    }
    let n = u32_at(b, at + 4)? as usize;
    let start = at + 8;
    let data = b.get(start..start + n).ok_or_else(|| {
        format!(
            "truncated: element at byte {at} needs {n} bytes, {} are left",
            b.len().saturating_sub(start)
        )
    })?;
    let next = if first == MI_COMPRESSED {
        start + n
    } else {
        start + n.div_ceil(8) * 8
    };
    Ok((first, data, next.min(b.len())))
}

fn numbers(ty: u32, data: &[u8]) -> Result<MatData, String> {
    macro_rules! conv {
        ($t:ty) => {
            data.chunks_exact(std::mem::size_of::<$t>())
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("sized chunk")) as f64)
                .collect()
        };
    }
    Ok(match ty {
        MI_UINT8 => MatData::U8(data.to_vec()),
        MI_INT8 => MatData::F64(data.iter().map(|&v| v as i8 as f64).collect()),
        MI_INT16 => MatData::F64(conv!(i16)),
        MI_UINT16 => MatData::F64(conv!(u16)),
        MI_INT32 => MatData::F64(conv!(i32)),
        MI_UINT32 => MatData::F64(conv!(u32)),
        MI_SINGLE => MatData::F64(conv!(f32)),
        MI_DOUBLE => MatData::F64(conv!(f64)),
        MI_INT64 => MatData::F64(conv!(i64)),
        MI_UINT64 => MatData::F64(conv!(u64)),
        other => return Err(format!("unsupported numeric storage type {other}")),
    })
}

/// The array inside a `miMATRIX` element, if it is a real numeric array.
fn matrix(b: &[u8]) -> Result<Option<MatArray>, String> {
    let (_, flags, at) = element(b, 0)?;
    let flags = u32_at(flags, 0)?;
    let class = flags & 0xff;
    let complex = flags & 0x800 != 0;
    // 6..=15: double, single, int8..uint64.
    if !(6..=15).contains(&class) || complex {
        return Ok(None);
    }
    let (_, dims, at) = element(b, at)?;
    let dims: Vec<usize> = dims
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as usize)
        .collect();
    let (_, name, at) = element(b, at)?;
    let name = String::from_utf8_lossy(name).into_owned();
    let (ty, real, _) = element(b, at)?;
    let data = numbers(ty, real)?;
    let count: usize = dims.iter().product();
    if data.len() != count {
        return Err(format!(
            "array '{name}' of dimensions {dims:?} holds {} values, expected {count}",
            data.len()
        ));
    }
    Ok(Some(MatArray { name, dims, data }))
}

/// Reads SVHN's cropped digits (`train_32x32.mat` or `test_32x32.mat`) from `root`:
/// `X` is `32×32×3×N` uint8 (column-major), `y` is `N×1` with labels 1..10, 10 meaning 0.
pub fn read_svhn(root: &Path, split: Split) -> Result<ImageSet, DataError> {
    let path = root.join(match split {
        Split::Train => "train_32x32.mat",
        Split::Test => "test_32x32.mat",
    });
    let file = MatFile::read(&path)?;
    let bad = |problem: String| DataError::corrupt(&path, problem);
    let x = file
        .get("X")
        .ok_or_else(|| bad("no variable 'X' (the images)".into()))?;
    let y = file
        .get("y")
        .ok_or_else(|| bad("no variable 'y' (the labels)".into()))?;
    let [h, w, c, n] = match x.dims[..] {
        [h, w, c, n] => [h, w, c, n],
        [h, w, c] => [h, w, c, 1],
        _ => {
            return Err(bad(format!(
                "'X' has dimensions {:?}, expected 32×32×3×N",
                x.dims
            )))
        }
    };
    if y.data.len() != n {
        return Err(bad(format!(
            "'y' holds {} labels for {n} images",
            y.data.len()
        )));
    }
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let v = y.data.get(i);
        if !((1.0..=10.0).contains(&v) && v.fract() == 0.0) {
            return Err(bad(format!("label {v} of image {i} is not in 1..=10")));
        }
        labels.push(v as usize % 10);
    }
    let mut pixels = vec![0u8; n * c * h * w];
    for img in 0..n {
        for ch in 0..c {
            for r in 0..h {
                for col in 0..w {
                    let src = r + h * (col + w * (ch + c * img));
                    pixels[((img * c + ch) * h + r) * w + col] =
                        x.data.get(src).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    Ok(ImageSet {
        pixels,
        labels,
        shape: [c, h, w],
        classes: 10,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    fn tagged(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(ty.to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(8 + data.len().div_ceil(8) * 8, 0);
        out
    }

    /// A `miMATRIX` element as MATLAB writes it.
    fn matrix_element(name: &str, dims: &[usize], class: u32, ty: u32, data: &[u8]) -> Vec<u8> {
        let mut body = tagged(
            MI_UINT32,
            &[class.to_le_bytes(), 0u32.to_le_bytes()].concat(),
        );
        let d: Vec<u8> = dims
            .iter()
            .flat_map(|&d| (d as i32).to_le_bytes())
            .collect();
        body.extend(tagged(MI_INT32, &d));
        body.extend(tagged(MI_INT8, name.as_bytes()));
        body.extend(tagged(ty, data));
        tagged(MI_MATRIX, &body)
    }

    /// Writes SVHN's layout: `X` (32×32×3×N uint8, column-major) and `y` (N×1 double),
    /// from CHW images; `compress` wraps each variable in `miCOMPRESSED` like MATLAB's -v7.
    pub fn write_svhn(path: &Path, chw: &[Vec<u8>], labels: &[u8], compress: bool) {
        let n = labels.len();
        let mut x = vec![0u8; n * 3072];
        for (img, pixels) in chw.iter().enumerate() {
            for ch in 0..3 {
                for r in 0..32 {
                    for c in 0..32 {
                        x[r + 32 * (c + 32 * (ch + 3 * img))] = pixels[(ch * 32 + r) * 32 + c];
                    }
                }
            }
        }
        let y: Vec<u8> = labels
            .iter()
            .flat_map(|&l| (l as f64).to_le_bytes())
            .collect();
        let mut out = b"MATLAB 5.0 MAT-file, written by salaug tests".to_vec();
        out.resize(116, b' ');
        out.extend([0u8; 8]);
        out.extend(0x0100u16.to_le_bytes());
        out.extend(b"IM");
        for el in [
            matrix_element("X", &[32, 32, 3, n], 9, MI_UINT8, &x),
            matrix_element("y", &[n, 1], 6, MI_DOUBLE, &y),
        ] {
            if compress {
                let mut z =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                z.write_all(&el).unwrap();
                let z = z.finish().unwrap();
                out.extend(MI_COMPRESSED.to_le_bytes());
                out.extend((z.len() as u32).to_le_bytes());
                out.extend(z);
            } else {
                out.extend(el);
            }
        }
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn svhn_round_trip_in_both_storage_forms() {
        let dir = tempfile::tempdir().unwrap();
        let imgs: Vec<Vec<u8>> = (0..3)
            .map(|k| (0..3072).map(|i| ((i * 7 + k * 13) % 251) as u8).collect())
            .collect();
        for compress in [false, true] {
            let path = dir.path().join("test_32x32.mat");
            write_svhn(&path, &imgs, &[10, 1, 7], compress);
            let set = read_svhn(dir.path(), Split::Test).unwrap();
            assert_eq!(set.labels, [0, 1, 7], "label 10 is digit 0");
            assert_eq!(set.shape, [3, 32, 32]);
            for (k, img) in imgs.iter().enumerate() {
                assert_eq!(set.image(k), img.as_slice());
            }
        }
    }

    #[test]
    fn truncated_mat_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test_32x32.mat");
        write_svhn(&path, &[vec![0; 3072]], &[3], false);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let err = read_svhn(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(
            err.contains("test_32x32.mat") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(&path, &bytes[..50]).unwrap();
        assert!(read_svhn(dir.path(), Split::Test).is_err());
    }
}

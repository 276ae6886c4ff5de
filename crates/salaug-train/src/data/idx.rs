//! Fashion-MNIST in its real format: gzipped IDX files with big-endian headers.

use std::io::Read;
use std::path::Path;

use md5::{Digest, Md5};

use super::{read_file, DataError, ImageSet, Split};

/// The four files, their sizes once decompressed, and the md5 of the decompressed bytes
/// (the same for Zalando's upstream files and the Debian package, which recompressed them).
pub const FASHION_MNIST_FILES: [(&str, usize, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        47_040_016,
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        60_008,
        "9018921c3c673c538a1fc5bad174d6f9",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        7_840_016,
        "8181f5470baa50b63fa0f6fddb340f0a",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        10_008,
        "15d484375f8d13e6eb1aabb0c3f46965",
    ),
];

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The decompressed bytes of a gzipped file (or the bytes themselves if not gzipped).
/// If the file has the size of one of the official Fashion-MNIST files, its md5 must match.
fn decompressed(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = read_file(path)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::corrupt(path, format!("not a valid gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let Some((_, size, md5)) = FASHION_MNIST_FILES
        .iter()
        .find(|(file, size, _)| *file == name && *size == bytes.len())
    {
        let got = format!("{:x}", Md5::digest(&bytes));
        if got != *md5 {
            return Err(DataError::corrupt(
                path,
                format!(
                    "checksum mismatch: md5 of the {size} decompressed bytes is {got}, expected {md5}"
                ),
            ));
        }
    }
    Ok(bytes)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Checks an IDX file: `magic`, then `ndims` big-endian sizes, then exactly the product of
/// the sizes in bytes. Returns the sizes and the payload.
fn idx_payload<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    ndims: usize,
    what: &str,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::corrupt(
            path,
            format!(
                "{} bytes, too short for an IDX {what} header ({header})",
                bytes.len()
            ),
        ));
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(DataError::corrupt(
            path,
            format!("magic number {found:#010x}, expected {magic:#010x} (IDX u8 {what})"),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| be_u32(bytes, 4 + 4 * i) as usize)
        .collect();
    let want = header.saturating_add(dims.iter().fold(1usize, |a, &d| a.saturating_mul(d)));
    if bytes.len() != want {
        let each: Vec<String> = dims[1..].iter().map(usize::to_string).collect();
        let each = if each.is_empty() {
            String::new()
        } else {
            format!(" of {}", each.join("×"))
        };
        return Err(DataError::corrupt(
            path,
            format!(
                "header says {} {what}{each} ({want} bytes) but the file has {} bytes{}",
                dims[0],
                bytes.len(),
                if bytes.len() < want {
                    " (truncated)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok((dims, &bytes[header..]))
}

/// Reads an IDX image file (magic 0x803): `[n, 1, rows, cols]` pixels.
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, [usize; 3]), DataError> {
    let bytes = decompressed(path)?;
    let (dims, pixels) = idx_payload(path, &bytes, IMAGES_MAGIC, 3, "images")?;
    Ok((pixels.to_vec(), [dims[0], dims[1], dims[2]]))
}

/// Reads an IDX label file (magic 0x801).
pub fn read_idx_labels(path: &Path) -> Result<Vec<usize>, DataError> {
    let bytes = decompressed(path)?;
    let (_, labels) = idx_payload(path, &bytes, LABELS_MAGIC, 1, "labels")?;
    Ok(labels.iter().map(|&b| b as usize).collect())
}

/// Reads one split of Fashion-MNIST from `root`.
pub fn read_fashion_mnist(root: &Path, split: Split) -> Result<ImageSet, DataError> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images_path = root.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let labels_path = root.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let (pixels, [n, rows, cols]) = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != n {
        return Err(DataError::corrupt(
            &labels_path,
            format!(
                "{} labels for the {n} images of {}",
                labels.len(),
                images_path.display()
            ),
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l >= 10) {
        return Err(DataError::corrupt(
            &labels_path,
            format!("label {bad} outside the 10 classes"),
        ));
    }
    Ok(ImageSet {
        pixels,
        labels,
        shape: [1, rows, cols],
        classes: 10,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Writes an IDX pair in the real layout (gzipped, big-endian headers).
    pub fn write_idx(dir: &Path, prefix: &str, pixels: &[u8], labels: &[u8], rows: usize) {
        let n = labels.len();
        let mut img = Vec::new();
        for v in [IMAGES_MAGIC, n as u32, rows as u32, rows as u32] {
            img.extend(v.to_be_bytes());
        }
        img.extend_from_slice(pixels);
        let mut lbl = Vec::new();
        for v in [LABELS_MAGIC, n as u32] {
            lbl.extend(v.to_be_bytes());
        }
        lbl.extend_from_slice(labels);
        for (name, bytes) in [
            (format!("{prefix}-images-idx3-ubyte.gz"), img),
            (format!("{prefix}-labels-idx1-ubyte.gz"), lbl),
        ] {
            let f = std::fs::File::create(dir.join(name)).unwrap();
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            gz.write_all(&bytes).unwrap();
            gz.finish().unwrap();
        }
    }

    #[test]
    fn reads_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..3 * 4 * 4).map(|i| i as u8).collect();
        write_idx(dir.path(), "t10k", &pixels, &[3, 1, 4], 4);
        let set = read_fashion_mnist(dir.path(), Split::Test).unwrap();
        assert_eq!(set.shape, [1, 4, 4]);
        assert_eq!(set.labels, [3, 1, 4]);
        assert_eq!(set.image(1), &pixels[16..32]);
    }

    #[test]
    fn truncated_and_corrupt_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pixels = vec![7u8; 2 * 4 * 4];
        write_idx(dir.path(), "t10k", &pixels[..31], &[1, 2], 4);
        let err = read_fashion_mnist(dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t10k-images-idx3-ubyte.gz") && err.contains("truncated"),
            "{err}"
        );

        write_idx(dir.path(), "t10k", &pixels, &[1, 2], 4);
        let mut lbl = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        lbl.write_all(&[0, 0, 8, 1, 0, 0, 0, 1, 5]).unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte.gz"),
            lbl.finish().unwrap(),
        )
        .unwrap();
        let err = read_fashion_mnist(dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(err.contains("t10k-labels-idx1-ubyte.gz"), "{err}");

        std::fs::write(
            dir.path().join("t10k-images-idx3-ubyte.gz"),
            [0x1f, 0x8b, 8, 0, 1],
        )
        .unwrap();
        let err = read_fashion_mnist(dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gzip"), "{err}");

        write_idx(dir.path(), "t10k", &pixels, &[1, 12], 4);
        let err = read_fashion_mnist(dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 12"), "{err}");
    }

    #[test]
    fn a_full_size_file_with_wrong_bytes_fails_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let n = 10_000;
        write_idx(dir.path(), "t10k", &vec![0u8; n * 784], &vec![0u8; n], 28);
        let err = read_fashion_mnist(dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }
}

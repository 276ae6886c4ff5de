//! CIFAR-10 and CIFAR-100, binary version (<https://www.cs.toronto.edu/~kriz/cifar.html>).
//!
//! CIFAR-10: `cifar-10-batches-bin/data_batch_{1..5}.bin` and `test_batch.bin`, each record
//! one label byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, rows of 32).
//! CIFAR-100: `cifar-100-binary/{train,test}.bin`, each record a coarse and a fine label byte
//! then the same 3072 bytes; salaug uses the fine label (100 classes).

use std::path::Path;

use super::{read_file, DataError, ImageSet, Split};

/// Which CIFAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    /// 10 classes, one label byte.
    Cifar10,
    /// 100 fine classes, two label bytes.
    Cifar100,
}

const PIXELS: usize = 3 * 32 * 32;

/// Reads one split from `root`, the folder holding `cifar-10-batches-bin/` or
/// `cifar-100-binary/` (or the files themselves).
pub fn read_cifar(root: &Path, kind: CifarKind, split: Split) -> Result<ImageSet, DataError> {
    let (folder, files, label_bytes, classes): (&str, Vec<String>, usize, usize) =
        match (kind, split) {
            (CifarKind::Cifar10, Split::Train) => (
                "cifar-10-batches-bin",
                (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
                1,
                10,
            ),
            (CifarKind::Cifar10, Split::Test) => {
                ("cifar-10-batches-bin", vec!["test_batch.bin".into()], 1, 10)
            }
            (CifarKind::Cifar100, Split::Train) => {
                ("cifar-100-binary", vec!["train.bin".into()], 2, 100)
            }
            (CifarKind::Cifar100, Split::Test) => {
                ("cifar-100-binary", vec!["test.bin".into()], 2, 100)
            }
        };
    let dir = if root.join(folder).is_dir() {
        root.join(folder)
    } else {
        root.to_path_buf()
    };
    let record = label_bytes + PIXELS;
    let mut set = ImageSet {
        pixels: Vec::new(),
        labels: Vec::new(),
        shape: [3, 32, 32],
        classes,
    };
    for file in files {
        let path = dir.join(file);
        let bytes = read_file(&path)?;
        if bytes.is_empty() || bytes.len() % record != 0 {
            return Err(DataError::corrupt(
                &path,
                format!(
                    "{} bytes is not a whole number of {record}-byte records ({label_bytes} label byte(s) + {PIXELS} pixels){}",
                    bytes.len(),
                    if bytes.len() % record != 0 { ": truncated or not the binary version" } else { "" }
                ),
            ));
        }
        for (i, chunk) in bytes.chunks_exact(record).enumerate() {
            let label = chunk[label_bytes - 1] as usize;
            if label >= classes {
                return Err(DataError::corrupt(
                    &path,
                    format!("record {i}: label {label} outside the {classes} classes"),
                ));
            }
            set.labels.push(label);
            set.pixels.extend_from_slice(&chunk[label_bytes..]);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: &[u8], fill: u8) -> Vec<u8> {
        let mut r = label.to_vec();
        r.extend((0..PIXELS).map(|i| fill.wrapping_add((i / 1024) as u8)));
        r
    }

    #[test]
    fn cifar10_and_100_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let c10 = dir.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&c10).unwrap();
        std::fs::write(
            c10.join("test_batch.bin"),
            [record(&[3], 10), record(&[9], 20)].concat(),
        )
        .unwrap();
        let set = read_cifar(dir.path(), CifarKind::Cifar10, Split::Test).unwrap();
        assert_eq!(set.labels, [3, 9]);
        // Planes are R, G, B in order.
        assert_eq!(set.image(1)[0], 20);
        assert_eq!(set.image(1)[1024], 21);
        assert_eq!(set.image(1)[2048], 22);

        let c100 = dir.path().join("cifar-100-binary");
        std::fs::create_dir(&c100).unwrap();
        std::fs::write(c100.join("test.bin"), record(&[4, 77], 0)).unwrap();
        let set = read_cifar(dir.path(), CifarKind::Cifar100, Split::Test).unwrap();
        assert_eq!((set.labels[0], set.classes), (77, 100));
    }

    #[test]
    fn truncated_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = record(&[1], 0);
        bytes.pop();
        std::fs::write(dir.path().join("test_batch.bin"), bytes).unwrap();
        let err = read_cifar(dir.path(), CifarKind::Cifar10, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test_batch.bin") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(dir.path().join("test_batch.bin"), record(&[10], 0)).unwrap();
        let err = read_cifar(dir.path(), CifarKind::Cifar10, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 10"), "{err}");
    }
}

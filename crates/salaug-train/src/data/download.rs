//! Fetching datasets from their official addresses (cargo feature `download`).
//!
//! Every file has a fixed md5. A download goes to `<name>.part`, is checked, and only then
//! renamed into place, so a cache never holds a half-written or wrong file.

use std::path::Path;

use md5::{Digest, Md5};

use super::{DataError, DatasetKind};

/// The files of a dataset at its official address.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `(url, file name, md5 of the downloaded bytes)`.
    pub files: Vec<(&'static str, &'static str, &'static str)>,
}

impl Remote {
    /// The official files of `kind`, where it has single-file downloads.
    pub fn of(kind: DatasetKind) -> Option<Remote> {
        Some(Remote {
            files: match kind {
                DatasetKind::FashionMnist => vec![
                    (
                        concat!(
                            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                            "train-images-idx3-ubyte.gz"
                        ),
                        "train-images-idx3-ubyte.gz",
                        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    ),
                    (
                        concat!(
                            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                            "train-labels-idx1-ubyte.gz"
                        ),
                        "train-labels-idx1-ubyte.gz",
                        "25c81989df183df01b3e8a0aad5dffbe",
                    ),
                    (
                        concat!(
                            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                            "t10k-images-idx3-ubyte.gz"
                        ),
                        "t10k-images-idx3-ubyte.gz",
                        "bef4ecab320f06d8554ea6380940ec79",
                    ),
                    (
                        concat!(
                            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                            "t10k-labels-idx1-ubyte.gz"
                        ),
                        "t10k-labels-idx1-ubyte.gz",
                        "bb300cfdad3c16e7a12a480ee83cd310",
                    ),
                ],
                DatasetKind::Svhn => vec![
                    (
                        "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                        "train_32x32.mat",
                        "e26dedcc434d2e4c54c9b2d4a06d8373",
                    ),
                    (
                        "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                        "test_32x32.mat",
                        "eb5a983be6a315427106f1b164d9cef3",
                    ),
                ],
                _ => return None,
            },
        })
    }
}

/// Whether this build can download.
pub fn enabled() -> bool {
    cfg!(feature = "download")
}

/// Checks `bytes` against `md5`, naming `path` on a mismatch.
pub fn check_md5(path: &Path, bytes: &[u8], md5: &str) -> Result<(), DataError> {
    let got = format!("{:x}", Md5::digest(bytes));
    if got == md5 {
        Ok(())
    } else {
        Err(DataError::corrupt(
            path,
            format!("checksum mismatch: md5 {got}, expected {md5}"),
        ))
    }
}

/// Downloads every file of `remote` that `dir` lacks, with a progress bar, checking md5s.
pub fn fetch(remote: &Remote, dir: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    for (url, name, md5) in &remote.files {
        let target = dir.join(name);
        if target.exists() {
            continue;
        }
        tracing::info!("downloading {url} to {}", target.display());
        let bytes = get(url).map_err(|e| DataError::corrupt(&target, e))?;
        check_md5(&target, &bytes, md5)?;
        let part = dir.join(format!("{name}.part"));
        std::fs::write(&part, &bytes).map_err(|e| DataError::io(&part, e))?;
        std::fs::rename(&part, &target).map_err(|e| DataError::io(&target, e))?;
    }
    Ok(())
}

#[cfg(feature = "download")]
fn get(url: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let response = ureq::get(url)
        .call()
        .map_err(|e| format!("download of {url} failed: {e}"))?;
    let total = response
        .header("Content-Length")
        .and_then(|v| v.parse::<u64>().ok());
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} ({eta})")
            .expect("valid template"),
    );
    bar.set_message(url.to_string());
    let mut bytes = Vec::new();
    bar.wrap_read(response.into_reader())
        .read_to_end(&mut bytes)
        .map_err(|e| format!("download of {url} interrupted: {e}"))?;
    bar.finish_and_clear();
    Ok(bytes)
}

#[cfg(not(feature = "download"))]
fn get(url: &str) -> Result<Vec<u8>, String> {
    Err(format!(
        "cannot fetch {url}: this build has no `download` feature"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_mismatch_is_named() {
        let err = check_md5(Path::new("x.gz"), b"abc", "0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.gz") && err.contains("checksum"), "{err}");
        check_md5(Path::new("x"), b"abc", "900150983cd24fb0d6963f7d28e17f72").unwrap();
    }
}

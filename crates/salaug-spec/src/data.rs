//! Where datasets are looked for: one search order for the `salaug` command line, `cargo
//! xtask` and the tests.

use std::path::{Path, PathBuf};

/// The environment variable naming a folder of datasets (and the download cache).
pub const ENV: &str = "SALAUG_DATA";

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The download cache: `$SALAUG_DATA`, else `~/.cache/salaug`, else `./.salaug-data`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(ENV) {
        return PathBuf::from(d);
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/salaug"))
        .unwrap_or_else(|| PathBuf::from(".salaug-data"))
}

/// The folders searched for the dataset `name` (`fashion_mnist`, `cifar10`, …), in order.
///
/// An explicit folder (`data.dir`, `--data-dir`) is searched alone, itself and its `name`
/// subfolder: data missing there is an error naming it, never a silent fallback to other
/// folders. Otherwise `$SALAUG_DATA/<name>`, `$SALAUG_DATA`, Debian's folder (Fashion-MNIST
/// only) and the download cache's `<name>` folder.
pub fn search_path(name: &str, explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf(), p.join(name)];
    }
    let mut out = Vec::new();
    if let Some(env) = std::env::var_os(ENV) {
        let p = PathBuf::from(env);
        out.push(p.join(name));
        out.push(p);
    }
    if name == "fashion_mnist" {
        out.push(PathBuf::from(DEBIAN_FASHION_MNIST));
    }
    let cache = cache_dir().join(name);
    if !out.contains(&cache) {
        out.push(cache);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_folder_is_searched_alone() {
        let p = Path::new("/somewhere");
        assert_eq!(
            search_path("cifar10", Some(p)),
            [
                PathBuf::from("/somewhere"),
                PathBuf::from("/somewhere/cifar10")
            ]
        );
        let fm = search_path("fashion_mnist", None);
        assert!(fm.contains(&PathBuf::from(DEBIAN_FASHION_MNIST)));
        assert_eq!(fm.last(), Some(&cache_dir().join("fashion_mnist")));
        assert!(!search_path("cifar10", None).contains(&PathBuf::from(DEBIAN_FASHION_MNIST)));
    }
}

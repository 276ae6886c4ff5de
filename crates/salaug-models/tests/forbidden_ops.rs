//! The model zoo must not use burn 0.21 operations that break under double backward:
//! `nn::Linear`/`module::linear`, max/avg/adaptive pooling, `interpolate` (they panic) and
//! `max_pool1d`, `repeat_dim`/`repeat` (silently wrong gradients); and burn's own ReLU, which
//! would bypass the ReLU hook of guided backpropagation and DeconvNet (`salaug_core::relu`). This scans every source file
//! of the crate (non-test code, comments removed) and fails naming the file and the op.

use std::path::Path;

/// Text patterns that mean one of the unsafe ops is used.
const FORBIDDEN: &[&str] = &[
    "nn::Linear",
    "module::linear",
    "nn::pool",
    "MaxPool1d",
    "MaxPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "AdaptiveAvgPool",
    "module::max_pool",
    "module::avg_pool",
    "module::adaptive_avg_pool",
    "max_pool1d",
    "interpolate",
    "Interpolate",
    "repeat_dim",
    ".repeat(",
    // burn's ReLU bypasses the hook of guided backpropagation and DeconvNet: models use
    // `salaug_core::relu`.
    "activation::relu",
    "activation::{",
];

/// The forbidden patterns found in `source`, ignoring comments and `#[cfg(test)]` code.
fn forbidden_in(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        for pattern in FORBIDDEN {
            if line.contains(pattern) {
                found.push(pattern.to_string());
            }
        }
        // Grouped imports: `use burn::nn::{BatchNorm, Linear}` names burn's Linear.
        if line.trim_start().starts_with("use burn") && line.contains("Linear") {
            found.push(format!("burn's Linear in `{}`", line.trim()));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_scanner_flags_each_kind_of_unsafe_op() {
    for bad in [
        "let l = burn::nn::LinearConfig::new(2, 3).init(d);",
        "use burn::nn::{BatchNorm, Linear};",
        "let y = burn::tensor::module::max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], false);",
        "pool: AdaptiveAvgPool2d,",
        "let y = x.repeat_dim(1, 2);",
        "let y = interpolate(x, [8, 8], opts);",
        "let y = max_pool1d(x, 2, 2, 0, 1, false);",
        "use burn::tensor::activation::relu;",
        "use burn::tensor::{activation::{relu, gelu}, Tensor};",
    ] {
        assert!(!forbidden_in(bad).is_empty(), "not flagged: {bad}");
    }
    for fine in [
        "let y = crate::ops::max_pool2d(x, 3, 2, 1); // not nn::pool",
        "use crate::ops::{Linear, LinearConfig};",
        "use salaug_core::relu;",
        "#[cfg(test)]\nmod tests { use burn::nn::Linear; }",
    ] {
        assert!(forbidden_in(fine).is_empty(), "flagged: {fine}");
    }
}

#[test]
fn models_use_only_twice_differentiable_ops() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(!files.is_empty());
    let mut bad = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        for op in forbidden_in(&source) {
            bad.push(format!("{}: {op}", file.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "unsafe ops under double backward:\n{}",
        bad.join("\n")
    );
}

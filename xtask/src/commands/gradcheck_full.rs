//! `cargo xtask gradcheck-full`: the slow finite-difference checks that CI skips, one model at
//! a time, with PASS or FAIL and the time of each.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use crate::salaug_bin::cargo;

/// The full-depth checks: (model, the `#[ignore]`d test of `salaug-models/tests/gradcheck.rs`).
pub const CHECKS: [(&str, &str); 3] = [
    ("resnet50", "resnet50_narrow_passes_gradcheck"),
    ("densenet121", "densenet121_narrow_passes_gradcheck"),
    ("densenet169", "densenet169_narrow_passes_gradcheck"),
];

/// Options of `cargo xtask gradcheck-full`.
#[derive(Args, Debug)]
pub struct GradcheckFullArgs {
    /// Only these models (comma-separated), of: resnet50, densenet121, densenet169.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
}

/// Runs each selected check in its own `cargo test` (the test command's build, so nothing is
/// compiled twice), prints its report as it goes, then one PASS/FAIL line per model; an error
/// if any failed.
pub fn handle(args: GradcheckFullArgs) -> Result<()> {
    let selected = select(&args.models)?;
    let mut outcome = Vec::new();
    for (model, test) in selected {
        let start = Instant::now();
        let result = cargo(&[
            "test",
            "--workspace",
            "--release",
            "--features",
            "salaug-core/wgpu",
            "--test",
            "gradcheck",
            "--",
            "--ignored",
            "--exact",
            test,
            "--nocapture",
        ]);
        outcome.push((model, result.is_ok(), start.elapsed().as_secs_f64()));
    }
    eprintln!("\ngradcheck-full (tolerance 1e-6; reports above):");
    for (model, passed, seconds) in &outcome {
        let verdict = if *passed { "PASS" } else { "FAIL" };
        eprintln!("  {verdict}  {model:<12} {:.0} s", seconds);
    }
    let failed: Vec<&str> = (outcome.iter())
        .filter(|(_, passed, _)| !passed)
        .map(|(m, _, _)| *m)
        .collect();
    if !failed.is_empty() {
        bail!("gradcheck-full failed for {}", failed.join(", "));
    }
    Ok(())
}

/// The checks of `models` (all when empty), in [`CHECKS`]' order; an error naming an unknown
/// model.
fn select(models: &[String]) -> Result<Vec<(&'static str, &'static str)>> {
    if let Some(bad) = models.iter().find(|m| !CHECKS.iter().any(|(n, _)| n == m)) {
        let known: Vec<&str> = CHECKS.iter().map(|(n, _)| *n).collect();
        bail!(
            "gradcheck-full: no check for model `{bad}`; known: {}",
            known.join(", ")
        );
    }
    Ok(CHECKS
        .into_iter()
        .filter(|(n, _)| models.is_empty() || models.iter().any(|m| m == n))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listed test exists, `#[ignore]`d, in the models' gradcheck file, and every
    /// ignored test there is listed.
    #[test]
    fn the_checks_are_the_ignored_tests() {
        let source = include_str!("../../../crates/salaug-models/tests/gradcheck.rs");
        let ignored: Vec<&str> = source
            .split("#[ignore")
            .skip(1)
            .filter_map(|rest| rest.split("fn ").nth(1))
            .filter_map(|rest| rest.split('(').next())
            .collect();
        let mut listed: Vec<&str> = CHECKS.iter().map(|(_, t)| *t).collect();
        let mut found = ignored.clone();
        listed.sort_unstable();
        found.sort_unstable();
        assert_eq!(listed, found);
    }

    #[test]
    fn models_are_selected_by_name() {
        assert_eq!(select(&[]).unwrap().len(), CHECKS.len());
        let one = select(&["densenet169".into()]).unwrap();
        assert_eq!(one, vec![CHECKS[2]]);
        let err = select(&["resnet18".into()]).unwrap_err().to_string();
        assert!(
            err.contains("resnet18") && err.contains("densenet121"),
            "{err}"
        );
    }
}

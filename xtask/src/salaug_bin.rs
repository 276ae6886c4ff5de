//! The workspace and its `salaug` binary: the workspace root, `cargo` runs, building the
//! binary (release or the `profiling` profile), copying a build aside and running it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace's root folder (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Cargo's target folder: `$CARGO_TARGET_DIR`, else `target/` of the workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The cargo that runs xtask (`$CARGO`), else `cargo`.
pub fn cargo_command() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo <args>`, echoed to stderr; an error unless it succeeds.
pub fn cargo(args: &[&str]) -> Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = cargo_command()
        .args(args)
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!("cargo {} failed with {status}", args.join(" "));
    }
    Ok(())
}

/// Builds `salaug` in release mode with the backend feature `backend` (and `download`, which
/// fetches missing data sets); returns the binary's path in the target folder.
pub fn build(backend: &str, download: bool) -> Result<PathBuf> {
    let features = if download {
        format!("{backend},download")
    } else {
        backend.to_string()
    };
    cargo(&[
        "build",
        "--release",
        "-p",
        "salaug-train",
        "--no-default-features",
        "--features",
        &features,
    ])?;
    Ok(target_dir().join("release").join("salaug"))
}

/// Builds `salaug` in the `profiling` profile (release code with line tables) with frame
/// pointers forced; returns the binary's path.
pub fn build_profiling() -> Result<PathBuf> {
    let status = cargo_command()
        .current_dir(workspace_root())
        .env("RUSTFLAGS", "-C force-frame-pointers=yes")
        .args([
            "build",
            "--profile",
            "profiling",
            "-p",
            "salaug-train",
            "--bin",
            "salaug",
        ])
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!("building the profiling binary failed");
    }
    Ok(target_dir().join("profiling").join("salaug"))
}

/// Copies the build `built` to `dir/.salaug` (through `.salaug.part`, so a copy is whole or
/// absent): every run of a table uses this copy, even if `target/` is rebuilt meanwhile.
pub fn copy_into(built: &Path, dir: &Path) -> Result<PathBuf> {
    let bin = dir.join(".salaug");
    let part = dir.join(".salaug.part");
    std::fs::copy(built, &part)
        .and_then(|_| std::fs::rename(&part, &bin))
        .with_context(|| format!("copying {} to {}", built.display(), bin.display()))?;
    Ok(bin)
}

/// Runs `bin args…` in the workspace root, its stderr passed through; returns its stdout.
pub fn run(bin: &Path, args: &[String]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .current_dir(workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", bin.display()))?;
    if !out.status.success() {
        bail!("salaug {} failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `bin args…` as [`run`] does, but with its stderr (progress bars and log lines; the
/// run's `train.log` keeps them) held back: for runs that go on side by side. A failure's error
/// ends with the last lines of that stderr.
pub fn run_quiet(bin: &Path, args: &[String]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .with_context(|| format!("starting {}", bin.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        let tail = lines[lines.len().saturating_sub(12)..].join("\n");
        bail!("salaug {} failed ({}):\n{tail}", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_run_keeps_its_stderr_and_shows_its_end_when_it_fails() {
        let sh = Path::new("/bin/sh");
        let args = |script: &str| vec!["-c".to_string(), script.to_string()];
        let out = run_quiet(sh, &args("echo progress >&2; echo result")).unwrap();
        assert_eq!(out, "result\n");
        let script = "for i in $(seq 1 30); do echo line$i >&2; done; exit 3";
        let e = format!("{:#}", run_quiet(sh, &args(script)).unwrap_err());
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(
            e.contains("line30") && e.contains("line19"),
            "the last lines: {e}"
        );
        assert!(!e.contains("line18"), "only the last 12: {e}");
    }
}

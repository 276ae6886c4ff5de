//! `--set key=value`: dotted keys into the TOML tree of a config, before it is parsed.

use anyhow::{anyhow, bail, Result};

/// Sets `a.b.c = value` in a TOML tree (a TOML value; a bare word is taken as a string).
pub fn apply(root: &mut toml::Value, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow!("--set {assignment}: expected key=value"))?;
    let key = key.trim();
    let raw = raw.trim();
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed v"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set {assignment}: empty key segment");
    }
    let mut node = root;
    for part in &parts[..parts.len() - 1] {
        let table = node
            .as_table_mut()
            .ok_or_else(|| anyhow!("--set {assignment}: {part} is not a table"))?;
        node = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    node.as_table_mut()
        .ok_or_else(|| anyhow!("--set {assignment}: parent of {key} is not a table"))?
        .insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
